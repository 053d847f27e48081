//! App.net filters end to end: operators, wildcards, policies, the
//! `$authorized_userids` variable, validation and bounds, CRUD, and
//! changes reaching open connections.

use crate::common::*;
use crate::world::*;
use serde_json::{json, Value};

/// Runs a filter end to end: a stream of posts and user events uses it;
/// each `(token, body)` is posted, then a profile change (a user event the
/// post clauses do not apply to) marks the end. Returns the texts of the
/// posts that arrived, in order.
fn through_filter(f: &Fx, key: &str, policy: &str, clauses: Value, posts: &[(&str, Value)]) -> Vec<String> {
    let fid = f.filter(&f.alice, policy, clauses);
    f.stream_with_filter(key, &["post", "user"], &fid);
    let mut ws = f.connect(key, "");
    for (tok, body) in posts {
        f.post_as(tok, body.clone());
    }
    f.set_name(&f.alice, &format!("marker {key}"));
    let mut got = Vec::new();
    loop {
        let ev = event(&mut ws);
        if ev["meta"]["type"] == "user" {
            assert_eq!(ev["data"]["name"], format!("marker {key}").as_str());
            break;
        }
        got.push(ev["data"][0]["content"]["text"].as_str().unwrap().to_string());
    }
    close(ws);
    assert_eq!(f.s.call("DELETE", &format!("/v1/streams/{key}"), Some(&f.tok), None).status, 200);
    got
}

/// These tests post the same texts once per filter they try.
const SAME_TEXT_AGAIN: &[&str] = &["--duplicate-window-secs", "0"];

fn cl(op: &str, field: &str, value: Value) -> Value {
    json!({"object_type": "post", "operator": op, "field": field, "value": value})
}

fn texts(f: &Fx, t: &[&str]) -> Vec<(String, Value)> {
    t.iter().map(|s| (f.alice.clone(), json!({ "text": s }))).collect()
}

fn run(f: &Fx, key: &str, policy: &str, clauses: Value, t: &[&str]) -> Vec<String> {
    let owned = texts(f, t);
    let refs: Vec<(&str, Value)> = owned.iter().map(|(a, b)| (a.as_str(), b.clone())).collect();
    through_filter(f, key, policy, clauses, &refs)
}

#[test]
fn filter_operators_end_to_end() {
    let f = fx_with(SAME_TEXT_AGAIN);
    // Post ids will be 1..=5 for the first run; later runs continue.
    let five = ["apple", "banana", "cherry apple", "date", "elder"];
    assert_eq!(
        run(&f, "eq", "include_any", json!([cl("equals", "/data/0/content/text", json!("banana"))]), &five),
        strs(&["banana"])
    );
    assert_eq!(
        run(&f, "m", "include_any", json!([cl("matches", "/data/0/content/text", json!("apple"))]), &five),
        strs(&["apple", "cherry apple"])
    );
    // Ids 11..=15 in this run: compare the id (a numeric string) as integers.
    let cmp = |op: &str, n: i64| run(&f, op, "include_any", json!([cl(op, "/data/0/id", json!(n))]), &five);
    assert_eq!(cmp("lt", 13), strs(&["apple", "banana"]));
    assert_eq!(cmp("le", 18), strs(&["apple", "banana", "cherry apple"]));
    assert_eq!(cmp("gt", 23), strs(&["date", "elder"]));
    assert_eq!(cmp("ge", 28), strs(&["cherry apple", "date", "elder"]));
    assert_eq!(
        run(
            &f,
            "one",
            "include_any",
            json!([cl("one_of", "/data/0/content/text", json!(["date", "apple", "x"]))]),
            &five
        ),
        strs(&["apple", "date"])
    );
}

#[test]
fn filter_wildcards_escapes_and_meta_paths() {
    let f = fx_with(SAME_TEXT_AGAIN);
    // `*` over the data list and the tag list.
    let tags = ["#rust one", "#go two", "#go #rust three", "none"];
    assert_eq!(
        run(
            &f,
            "w",
            "include_any",
            json!([cl("equals", "/data/*/content/entities/tags/*/text", json!("rust"))]),
            &tags
        ),
        strs(&["#rust one", "#go #rust three"])
    );
    // `~2` is a literal `*` in a key (here inside raw).
    let raw = [
        (f.alice.as_str(), json!({"text": "star", "raw": {"com.example.t": [{"a*b": "yes"}]}})),
        (f.alice.as_str(), json!({"text": "plain", "raw": {"com.example.t": [{"ab": "yes"}]}})),
        (f.alice.as_str(), json!({"text": "none"})),
    ];
    assert_eq!(
        through_filter(
            &f,
            "esc",
            "include_any",
            json!([cl("equals", "/data/0/raw/com.example.t/*/a~2b", json!("yes"))]),
            &raw
        ),
        strs(&["star"])
    );
    // Envelope meta is addressable too; a meta value that never matches
    // drops every post.
    assert_eq!(
        run(&f, "meta", "include_any", json!([cl("equals", "/meta/type", json!("post"))]), &["a", "b"]),
        strs(&["a", "b"])
    );
    assert_eq!(
        run(&f, "meta2", "include_any", json!([cl("equals", "/meta/type", json!("user"))]), &["a", "b"]),
        Vec::<String>::new()
    );
}

#[test]
fn filter_policies_end_to_end() {
    let f = fx_with(SAME_TEXT_AGAIN);
    let t = ["apple pie", "apple", "pie", "neither"];
    let two = json!([
        cl("matches", "/data/0/content/text", json!("apple")),
        cl("matches", "/data/0/content/text", json!("pie"))
    ]);
    assert_eq!(run(&f, "ia", "include_any", two.clone(), &t), strs(&["apple pie", "apple", "pie"]));
    assert_eq!(run(&f, "il", "include_all", two.clone(), &t), strs(&["apple pie"]));
    assert_eq!(run(&f, "xa", "exclude_any", two.clone(), &t), strs(&["neither"]));
    assert_eq!(run(&f, "xl", "exclude_all", two, &t), strs(&["apple", "pie", "neither"]));
}

#[test]
fn filter_authorized_userids_variable() {
    let f = fx_with(SAME_TEXT_AGAIN);
    // alice and bob authorized app A; carol did not (she posts via app X).
    let by = [
        (f.alice.as_str(), json!({"text": "from alice"})),
        (f.carol.as_str(), json!({"text": "from carol"})),
        (f.bob.as_str(), json!({"text": "from bob"})),
    ];
    assert_eq!(
        through_filter(
            &f,
            "auth",
            "include_any",
            json!([cl("one_of", "/data/0/user/id", json!("$authorized_userids"))]),
            &by
        ),
        strs(&["from alice", "from bob"])
    );
    assert_eq!(
        through_filter(
            &f,
            "notauth",
            "exclude_any",
            json!([cl("one_of", "/data/*/user/id", json!("$authorized_userids"))]),
            &by
        ),
        strs(&["from carol"])
    );
}

#[test]
fn filter_validation_names_the_clause() {
    let f = fx();
    let bad = |policy: Value, clauses: Value, needle: &str| {
        let r = f.s.json(
            "POST",
            "/v1/filters",
            Some(&f.alice),
            json!({"match_policy": policy, "clauses": clauses}),
        );
        assert_eq!(r.status, 400, "{needle}: {}", r.body);
        let m = r.body["meta"]["error_message"].as_str().unwrap_or("");
        assert!(m.contains(needle), "{m:?} should name {needle:?}");
    };
    let ok = cl("equals", "/data/0/id", json!("1"));
    bad(json!("include_any"), json!([ok.clone(), cl("like", "/a", json!(1))]), "clauses[1].operator");
    bad(json!("include_any"), json!([cl("equals", "no/slash", json!(1))]), "clauses[0].field");
    bad(
        json!("include_any"),
        json!([ok.clone(), ok.clone(), cl("equals", "/a~9", json!(1))]),
        "clauses[2].field",
    );
    bad(json!("include_any"), json!([cl("gt", "/a", json!("many"))]), "clauses[0].value");
    bad(json!("include_any"), json!([cl("one_of", "/a", json!("$someone"))]), "clauses[0].value");
    bad(json!("include_any"), json!([cl("matches", "/a", json!(5))]), "clauses[0].value");
    bad(json!("include_some"), json!([ok.clone()]), "match_policy");
    bad(json!("include_any"), json!([]), "clauses");
    let wrong_type =
        json!([ok.clone(), {"object_type": "stars", "operator": "equals", "field": "/a", "value": 1}]);
    bad(json!("include_any"), wrong_type, "clauses[1].object_type");
    // A bad update is refused the same way and changes nothing.
    let id = f.filter(&f.alice, "include_any", json!([ok.clone()]));
    let r = f.s.json(
        "PUT",
        &format!("/v1/filters/{id}"),
        Some(&f.alice),
        json!({"match_policy": "include_any", "clauses": [ok.clone(), cl("le", "/a", json!([1]))]}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["meta"]["error_message"].as_str().unwrap().contains("clauses[1].value"), "{}", r.body);
    let g = f.s.get(&format!("/v1/filters/{id}"), Some(&f.alice));
    assert_eq!(g.status, 200);
    assert_eq!(g.body["data"]["clauses"], json!([ok]));
    assert_eq!(g.body["data"]["owner"]["username"], "alice");
    // Filters are the owner's: another user gets a 404.
    assert_eq!(f.s.get(&format!("/v1/filters/{id}"), Some(&f.bob)).status, 404);
}

#[test]
fn a_filter_of_a_user_who_did_not_authorize_the_app_is_refused() {
    let f = fx();
    let theirs =
        f.filter(&f.carol, "include_any", json!([cl("matches", "/data/0/content/text", json!("x"))]));
    let r = f.s.json(
        "POST",
        "/v1/streams",
        Some(&f.tok),
        json!({"type": "long_poll", "object_types": ["post"], "key": "k", "filter_id": theirs}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body["meta"]["error_message"].as_str().unwrap().contains("filter_id"), "{}", r.body);
    f.s.create_stream(&f.tok, "k", &["post"]);
    let r = f.s.json(
        "PUT",
        "/v1/streams/k",
        Some(&f.tok),
        json!({"object_types": ["post"], "filter_id": theirs}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let g = f.s.get("/v1/streams/k", Some(&f.tok));
    assert!(g.body["data"].get("filter").is_none(), "unchanged: {}", g.body);
    // alice authorized the app: her filter attaches.
    let mine = f.filter(&f.alice, "include_any", json!([cl("matches", "/data/0/content/text", json!("x"))]));
    let r =
        f.s.json("PUT", "/v1/streams/k", Some(&f.tok), json!({"object_types": ["post"], "filter_id": mine}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["filter"]["id"], mine.as_str());
}

#[test]
fn a_filter_update_reaches_an_open_connection() {
    let f = fx();
    let fid =
        f.filter(&f.alice, "exclude_any", json!([cl("matches", "/data/0/content/text", json!("apple"))]));
    f.stream_with_filter("k", &["post"], &fid);
    let mut ws = f.connect("k", "");
    f.post("apple one");
    let b = f.post("banana one");
    assert_eq!(posts(&mut ws, 1).0, [b]);
    let r = f.s.json(
        "PUT",
        &format!("/v1/filters/{fid}"),
        Some(&f.alice),
        json!({"match_policy": "exclude_any", "clauses": [cl("matches", "/data/0/content/text", json!("banana"))]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = control(&mut ws, "stream_updated");
    assert_eq!(c["filter_id"], fid.as_str(), "{c}");
    f.post("banana two");
    let a = f.post("apple two");
    assert_eq!(posts(&mut ws, 1).0, [a], "the new filter applies at once");
    // The stream object embeds the changed filter.
    let g = f.s.get("/v1/streams/k", Some(&f.tok));
    assert_eq!(g.body["data"]["filter"]["clauses"][0]["value"], "banana", "{}", g.body);
}

#[test]
fn attaching_a_filter_by_put_reaches_an_open_connection() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    let fid =
        f.filter(&f.alice, "include_any", json!([cl("matches", "/data/0/content/text", json!("keep"))]));
    let r =
        f.s.json("PUT", "/v1/streams/k", Some(&f.tok), json!({"object_types": ["post"], "filter_id": fid}));
    assert_eq!(r.status, 200, "{}", r.body);
    let c = control(&mut ws, "stream_updated");
    assert_eq!(c["filter_id"], fid.as_str(), "{c}");
    f.post("drop me");
    let k = f.post("keep me");
    assert_eq!(posts(&mut ws, 1).0, [k]);
}

/// Deleting a filter a live stream uses detaches it at once: a control
/// message, then unfiltered events.
#[test]
fn deleting_a_filter_detaches_it_from_an_open_connection() {
    let f = fx();
    let fid =
        f.filter(&f.alice, "exclude_any", json!([cl("matches", "/data/0/content/text", json!("apple"))]));
    f.stream_with_filter("k", &["post"], &fid);
    let mut ws = f.connect("k", "");
    assert_eq!(f.s.call("DELETE", &format!("/v1/filters/{fid}"), Some(&f.alice), None).status, 200);
    let c = control(&mut ws, "stream_updated");
    assert!(c["filter_id"].is_null(), "{c}");
    let a = f.post("apple");
    assert_eq!(posts(&mut ws, 1).0, [a]);
    let g = f.s.get("/v1/streams/k", Some(&f.tok));
    assert!(g.body["data"].get("filter").is_none(), "{}", g.body);
}

/// `/v1/filters` CRUD: user token only, owner's filters only, the filter
/// object's keys, DELETE of all.
#[test]
fn filter_crud() {
    let f = fx();
    let c = cl("matches", "/data/0/content/text", json!("x"));
    let r = f.s.json(
        "POST",
        "/v1/filters",
        Some(&f.alice),
        json!({"name": "mine", "match_policy": "include_any", "clauses": [c.clone()]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let one = r.body["data"].clone();
    let mut keys: Vec<&str> = one.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["clauses", "id", "match_policy", "name", "owner"]);
    assert_eq!(one["owner"]["username"], "alice");
    let two = f.filter(&f.alice, "exclude_all", json!([c.clone()]));
    let bobs = f.filter(&f.bob, "include_any", json!([c.clone()]));
    assert_eq!(
        f.s.json("POST", "/v1/filters", Some(&f.tok), json!({})).status,
        403,
        "an app token is refused"
    );
    let list = f.s.get("/v1/filters", Some(&f.alice));
    let ids: Vec<&str> =
        list.body["data"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [one["id"].as_str().unwrap(), two.as_str()]);
    // Update replaces name, policy and clauses.
    let r = f.s.json(
        "PUT",
        &format!("/v1/filters/{two}"),
        Some(&f.alice),
        json!({"name": "renamed", "match_policy": "include_all", "clauses": [c.clone(), c.clone()]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["name"], "renamed");
    assert_eq!(r.body["data"]["match_policy"], "include_all");
    assert_eq!(r.body["data"]["clauses"].as_array().unwrap().len(), 2);
    // bob's filter is not alice's to touch.
    assert_eq!(f.s.call("DELETE", &format!("/v1/filters/{bobs}"), Some(&f.alice), None).status, 404);
    let r = f.s.call("DELETE", "/v1/filters", Some(&f.alice), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(f.s.get("/v1/filters", Some(&f.alice)).body["data"], json!([]));
    assert_eq!(f.s.get(&format!("/v1/filters/{bobs}"), Some(&f.bob)).status, 200, "bob's filter stays");
}

/// Point 7: a filter's cost is bounded when it is written: each bound a 400
/// naming it, and a filter at every bound is accepted.
#[test]
fn filters_past_their_bounds_are_refused_by_name() {
    let s = Server::start();
    let app = s.add_app("a");
    s.add_user("u", "pw-pw-pw-1");
    let ut = s.user_token(&app, "u", "pw-pw-pw-1", "basic");
    let clause = |op: &str, field: &str, value: serde_json::Value| json!({"object_type": "post", "operator": op, "field": field, "value": value});
    let post = |clauses: serde_json::Value| {
        s.json("POST", "/v1/filters", Some(&ut), json!({"match_policy": "include_any", "clauses": clauses}))
    };
    let at_every_bound = clause("one_of", "/data/*/x/*/a/b/c/d/e/f", json!(vec!["v".repeat(100); 100]));
    let r = post(json!(vec![at_every_bound.clone(); 1]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_error(&post(json!(vec![clause("equals", "/a", json!(1)); 21])), 400, "at most 20 clauses");
    assert_error(&post(json!([clause("one_of", "/a", json!(vec![1; 101]))])), 400, "at most 100 values");
    assert_error(&post(json!([clause("equals", "/*/*/*", json!(1))])), 400, "at most 2 wildcards");
    assert_error(
        &post(json!([clause("equals", "/a/b/c/d/e/f/g/h/i/j/k", json!(1))])),
        400,
        "at most 10 segments",
    );
    assert_error(&post(json!([clause("matches", "/a", json!("x".repeat(300)))])), 400, "at most 256 bytes");
    assert_error(&post(json!(vec![at_every_bound; 20])), 400, "at most 16384 bytes");
}
