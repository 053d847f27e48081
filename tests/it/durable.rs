//! Durable delivery (issue 8): replay after a disconnect and after kill -9,
//! purge, resume by position, retention notices, auto_delete, App.net
//! filters end to end, live stream and filter updates, and the replay/live
//! handover under a concurrent writer.

use crate::common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PW: &str = "pw";
const SCOPES: &str = "stream,write_post,update_profile";

/// One server, app A (alice and bob authorized it), app X (only carol).
struct Fx {
    s: Server,

    tok: String,
    alice: String,
    bob: String,
    carol: String,
}

impl Drop for Fx {
    /// On a failure, the server's log (its last lines) helps tell why.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.s.kill_log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- server log (last 40 lines) ---\n{}",
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

fn fx_with(flags: &[&str]) -> Fx {
    let s = Server::start_with(flags);
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, PW);
    }
    let app = s.add_app("A");
    let other = s.add_app("X");
    let tok = s.app_token(&app);
    let alice = s.user_token(&app, "alice", PW, SCOPES);
    let bob = s.user_token(&app, "bob", PW, SCOPES);
    let carol = s.user_token(&other, "carol", PW, SCOPES);
    Fx { s, tok, alice, bob, carol }
}

fn fx() -> Fx {
    fx_with(&[])
}

impl Fx {
    fn connect(&self, key: &str, query: &str) -> Ws {
        let (ws, hello) = self.s.ws(&format!("access_token={}&key={key}{query}", self.tok));
        assert_eq!(hello["meta"]["stream"]["key"], key, "{hello}");
        ws
    }

    /// Posts `text` as the holder of `tok`; returns the post id.
    fn post_as(&self, tok: &str, body: Value) -> String {
        let r = self.s.json("POST", "/v1/posts", Some(tok), body);
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["data"]["id"].as_str().unwrap().to_string()
    }

    fn post(&self, text: &str) -> String {
        self.post_as(&self.alice, json!({ "text": text }))
    }

    fn set_name(&self, tok: &str, name: &str) {
        let r = self.s.json("PATCH", "/v1/users/me", Some(tok), json!({ "name": name }));
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// Creates a filter owned by the holder of `tok`; returns its id.
    fn filter(&self, tok: &str, policy: &str, clauses: Value) -> String {
        let r = self.s.json(
            "POST",
            "/v1/filters",
            Some(tok),
            json!({"match_policy": policy, "clauses": clauses}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["data"]["id"].as_str().unwrap().to_string()
    }

    fn stream_with_filter(&self, key: &str, types: &[&str], filter_id: &str) {
        let r = self.s.json(
            "POST",
            "/v1/streams",
            Some(&self.tok),
            json!({"type": "long_poll", "object_types": types, "key": key, "filter_id": filter_id}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["data"]["filter"]["id"], filter_id, "the stream embeds its filter: {}", r.body);
    }
}

/// An event's log position (`meta.position`, a numeric string).
fn pos(ev: &Value) -> i64 {
    ev["meta"]["position"]
        .as_str()
        .unwrap_or_else(|| panic!("meta.position missing: {ev}"))
        .parse()
        .unwrap_or_else(|_| panic!("meta.position not numeric: {ev}"))
}

/// The id of a post event's post.
fn post_id(ev: &Value) -> String {
    assert_eq!(ev["meta"]["type"], "post", "{ev}");
    ev["data"][0]["id"].as_str().unwrap().to_string()
}

/// The next message, which must be an event (not a control message).
fn event(ws: &mut Ws) -> Value {
    let v = ws.next_json().unwrap();
    assert!(v["meta"].get("control").is_none(), "unexpected control message: {v}");
    assert!(v["meta"]["type"].is_string(), "not an event: {v}");
    v
}

/// The next message, which must be a control message of `kind`.
fn control(ws: &mut Ws, kind: &str) -> Value {
    let v = ws.next_json().unwrap();
    assert_eq!(v["meta"]["control"]["type"], kind, "expected a {kind} control message: {v}");
    assert!(v.get("data").is_none() && v["meta"].get("type").is_none(), "{v}");
    v["meta"]["control"].clone()
}

/// Reads `n` post events; asserts positions strictly increase; returns
/// (post ids, positions).
fn posts(ws: &mut Ws, n: usize) -> (Vec<String>, Vec<i64>) {
    let (mut ids, mut ps) = (Vec::new(), Vec::<i64>::new());
    for _ in 0..n {
        let ev = event(ws);
        let p = pos(&ev);
        if let Some(last) = ps.last() {
            assert!(p > *last, "positions must increase: {p} after {last}: {ev}");
        }
        ids.push(post_id(&ev));
        ps.push(p);
    }
    (ids, ps)
}

/// Ends a websocket the way a client does (close handshake), and waits for
/// the server's close.
fn close(mut ws: Ws) {
    let _ = ws.0.close(None);
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "the server never answered the close");
        match ws.0.read() {
            Ok(_) => continue,
            Err(_) => return,
        }
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn reconnect_delivers_what_was_missed_once_and_in_order() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    let p1 = f.post("one");
    let (ids, first) = posts(&mut ws, 1);
    assert_eq!(ids, [p1]);
    close(ws);
    let away: Vec<String> = (2..=6).map(|i| f.post(&format!("away {i}"))).collect();
    let mut ws = f.connect("k", "");
    let (ids, ps) = posts(&mut ws, 5);
    assert_eq!(ids, away, "exactly the missed posts, in order, p1 not again");
    assert!(ps[0] > first[0]);
    // Then live, with nothing repeated in between.
    let p7 = f.post("live");
    let (ids, live) = posts(&mut ws, 1);
    assert_eq!(ids, [p7]);
    assert!(live[0] > ps[4]);
    // A second disconnect with nothing missed replays nothing.
    close(ws);
    let mut ws = f.connect("k", "");
    let p8 = f.post("after");
    assert_eq!(posts(&mut ws, 1).0, [p8]);
}

#[test]
fn events_missed_before_a_kill_arrive_after_restart() {
    let mut f = fx();
    f.s.create_stream(&f.tok, "k", &["post", "user"]);
    let mut ws = f.connect("k", "");
    let p1 = f.post("before");
    assert_eq!(posts(&mut ws, 1).0, [p1]);
    close(ws);
    let away: Vec<String> = (0..4).map(|i| f.post(&format!("away {i}"))).collect();
    f.s.restart();
    let mut ws = f.connect("k", "");
    let (ids, ps) = posts(&mut ws, 4);
    assert_eq!(ids, away);
    let p = f.post("after restart");
    let (ids, live) = posts(&mut ws, 1);
    assert_eq!(ids, [p]);
    assert!(live[0] > ps[3]);
}

#[test]
fn kill_while_connected_then_resume_by_position_loses_nothing() {
    let mut f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    let sent: Vec<String> = (0..3).map(|i| f.post(&format!("p{i}"))).collect();
    let (ids, ps) = posts(&mut ws, 3);
    assert_eq!(ids, sent);
    // The server dies with the client connected; more happens after.
    f.s.restart();
    let more: Vec<String> = (0..2).map(|i| f.post(&format!("q{i}"))).collect();
    // Resuming from the last position seen: exactly what follows it.
    let mut ws = f.connect("k", &format!("&position={}", ps[2]));
    assert_eq!(posts(&mut ws, 2).0, more);
    close(ws);
    // Without a position the stream's own cursor is used: at least once,
    // so it may repeat, but it never skips and keeps order.
    let last = f.post("r");
    let mut ws = f.connect("k", "");
    let ev = event(&mut ws);
    assert_eq!(post_id(&ev), last, "the cursor saved at the last close is exact: {ev}");
}

#[test]
fn purge_skips_the_queue_and_goes_live() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let ws = f.connect("k", "");
    close(ws);
    for i in 0..3 {
        f.post(&format!("queued {i}"));
    }
    let mut ws = f.connect("k", "&purge=1");
    let p = f.post("live");
    assert_eq!(posts(&mut ws, 1).0, [p], "queued posts were purged");
    close(ws);
    // The purge moved the cursor: the purged posts never come back.
    let mut ws = f.connect("k", "");
    let q = f.post("later");
    assert_eq!(posts(&mut ws, 1).0, [q]);
}

#[test]
fn position_resumes_exactly_after_it_and_wins_over_the_cursor() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    let sent: Vec<String> = (0..5).map(|i| f.post(&format!("p{i}"))).collect();
    let (ids, ps) = posts(&mut ws, 5);
    assert_eq!(ids, sent);
    close(ws);
    // The stream's cursor is after the fifth; position 2 asks for 3..5 again.
    let mut ws = f.connect("k", &format!("&position={}", ps[1]));
    let (ids, again) = posts(&mut ws, 3);
    assert_eq!(ids, sent[2..].to_vec());
    assert_eq!(again, ps[2..].to_vec(), "the same positions as the first time");
    let p = f.post("live");
    assert_eq!(posts(&mut ws, 1).0, [p]);
    close(ws);
    // position=0 replays everything still in the log for this stream.
    let mut ws = f.connect("k", "&position=0");
    assert_eq!(posts(&mut ws, 5).0, sent);
}

#[test]
fn retention_by_count_reports_what_was_dropped_first() {
    let mut f = fx_with(&["--retention-events", "3"]);
    f.s.create_stream(&f.tok, "k", &["post"]);
    let ws = f.connect("k", "");
    close(ws);
    let sent: Vec<String> = (0..10).map(|i| f.post(&format!("p{i}"))).collect();
    // Retention runs once at start.
    f.s.restart();
    let mut ws = f.connect("k", "");
    let c = control(&mut ws, "events_dropped");
    assert_eq!(c["dropped"], 7, "{c}");
    assert!(c["message"].is_string(), "{c}");
    assert_eq!(posts(&mut ws, 3).0, sent[7..].to_vec());
    let p = f.post("live");
    assert_eq!(posts(&mut ws, 1).0, [p]);
    close(ws);
    // Reported once: the next connection gets no notice.
    let mut ws = f.connect("k", "");
    let q = f.post("again");
    assert_eq!(posts(&mut ws, 1).0, [q]);
}

#[test]
fn auto_delete_removes_the_stream_when_the_connection_ends() {
    let f = fx();
    f.s.create_stream(&f.tok, "gone", &["post"]);
    f.s.create_stream(&f.tok, "kept", &["post"]);
    let mut ws = f.connect("gone", "&auto_delete=1");
    let kept = f.connect("kept", "");
    let p = f.post("x");
    assert_eq!(posts(&mut ws, 1).0, [p]);
    assert_eq!(f.s.get("/v1/streams/gone", Some(&f.tok)).status, 200, "still there while connected");
    close(ws);
    let start = Instant::now();
    loop {
        let r = f.s.get("/v1/streams/gone", Some(&f.tok));
        if r.status == 404 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(start.elapsed() < DEADLINE, "the auto_delete stream was never deleted");
        std::thread::sleep(Duration::from_millis(20));
    }
    close(kept);
    assert_eq!(f.s.get("/v1/streams/kept", Some(&f.tok)).status, 200, "only the auto_delete one goes");
}

#[test]
fn two_live_connections_on_one_stream_both_get_everything() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut a = f.connect("k", "");
    let mut b = f.connect("k", "");
    let sent: Vec<String> = (0..6).map(|i| f.post(&format!("p{i}"))).collect();
    let (ia, pa) = posts(&mut a, 6);
    let (ib, pb) = posts(&mut b, 6);
    assert_eq!(ia, sent);
    assert_eq!(ib, sent);
    assert_eq!(pa, pb);
}

// ---------------------------------------------------------------- filters

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
    let f = fx();
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
    let f = fx();
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
    let f = fx();
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
    let f = fx();
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
        json!([ok.clone(), {"object_type": "star", "operator": "equals", "field": "/a", "value": 1}]);
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

// ------------------------------------------------------- live stream updates

#[test]
fn object_types_change_reaches_an_open_connection_at_once() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    let p = f.post("before");
    assert_eq!(posts(&mut ws, 1).0, [p]);
    let r = f.s.json("PUT", "/v1/streams/k", Some(&f.tok), json!({"object_types": ["user"]}));
    assert_eq!(r.status, 200, "{}", r.body);
    let c = control(&mut ws, "stream_updated");
    assert_eq!(c["object_types"], json!(["user"]), "{c}");
    // A post no longer arrives; a profile change does, next.
    f.post("not for this stream any more");
    f.set_name(&f.alice, "Alice");
    let ev = event(&mut ws);
    assert_eq!(ev["meta"]["type"], "user", "{ev}");
    assert_eq!(ev["data"]["name"], "Alice");
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

#[test]
fn deleting_the_stream_sends_a_control_message_before_closing() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    assert_eq!(f.s.call("DELETE", "/v1/streams/k", Some(&f.tok), None).status, 200);
    let c = control(&mut ws, "stream_deleted");
    assert!(c["message"].is_string(), "{c}");
    match ws.next() {
        WsNext::Closed(Some((code, reason))) => {
            assert_eq!(code, 1000);
            assert!(reason.contains("deleted"), "{reason}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

// ------------------------------------------------------------- handover

/// A writer posts continuously while a client connects (and reconnects):
/// everything the stream should get arrives exactly once, with consecutive
/// positions (the log holds only posts after the stream was created).
#[test]
fn no_gap_and_no_duplicate_across_the_replay_live_handover() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    const N: usize = 300;
    let api = f.s.api.clone();
    let alice = f.alice.clone();
    let writer = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut ids = Vec::new();
        for i in 0..N {
            let r = agent
                .post(format!("{api}/v1/posts"))
                .header("Authorization", format!("Bearer {alice}"))
                .header("Content-Type", "application/json")
                .send(json!({ "text": format!("w{i}") }).to_string())
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            let v: Value = serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap();
            ids.push(v["data"]["id"].as_str().unwrap().to_string());
        }
        ids
    });
    let mut got: Vec<(i64, String)> = Vec::new();
    // Several connections while the writer runs, each reading a few events
    // then closing; the last one reads to the end. Events the server had
    // already written when a client hung up count as delivered, so each new
    // connection resumes after the last position this client processed.
    let start = Instant::now();
    for round in 0.. {
        assert!(start.elapsed() < Duration::from_secs(60), "writer too slow");
        let resume = got.last().map(|(p, _)| format!("&position={p}")).unwrap_or_default();
        let mut ws = f.connect("k", &resume);
        let last_round = round >= 6 || got.len() >= N * 2 / 3;
        let want = if last_round { N - got.len() } else { 15 };
        for _ in 0..want {
            let ev = event(&mut ws);
            got.push((pos(&ev), post_id(&ev)));
        }
        close(ws);
        if last_round {
            break;
        }
    }
    let ids = writer.join().unwrap();
    let positions: Vec<i64> = got.iter().map(|g| g.0).collect();
    for w in positions.windows(2) {
        assert_eq!(w[1], w[0] + 1, "consecutive positions, no gap, no duplicate: {positions:?}");
    }
    let got_ids: Vec<String> = got.into_iter().map(|g| g.1).collect();
    assert_eq!(got_ids, ids, "every post once, in order");
}

// ------------------------------------------------------------ more probes

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

/// A websocket client whose socket has a tiny receive buffer.
fn small_buffer_ws(addr: &str, query: &str) -> Ws {
    use rustix::net::{connect, socket, sockopt, AddressFamily, SocketType};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    sockopt::set_socket_recv_buffer_size(&fd, 4096).unwrap();
    let sa: std::net::SocketAddr = addr.parse().unwrap();
    connect(&fd, &sa).unwrap();
    let s = std::net::TcpStream::from(fd);
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let (ws, _) = tungstenite::client::client(
        format!("ws://{addr}/v1/app?{query}"),
        tungstenite::stream::MaybeTlsStream::Plain(s),
    )
    .expect("handshake");
    let mut ws = Ws(ws);
    ws.set_timeout(DEADLINE);
    ws
}

/// A client that vanishes while its replay is still queued on the server:
/// what was never written to its socket must be replayed on the next
/// connect (the cursor only counts what was written).
#[test]
fn replayed_events_still_queued_when_the_client_vanishes_are_not_lost() {
    // The server's kernel send buffer is 256 KiB, which Linux doubles, and
    // the client's receive buffer is 4 KiB: the kernel can take at most
    // about 530 KB of the replay. 160 posts of 8 KB (about 1.3 MB) leave
    // about 90 of them queued on the server when the client vanishes (the
    // test asks for 40, room for the kernel's accounting), and stay under
    // half of a 4 MiB backlog, so the replay goes live at once with most
    // of it still queued.
    let f = fx_with(&["--max-conns-per-app", "1", "--conn-backlog-bytes", "4194304"]);
    f.s.create_stream(&f.tok, "k", &["post"]);
    let filler = "x".repeat(8000);
    let n = 160;
    let sent: Vec<String> = (0..n)
        .map(|i| {
            f.post_as(
                &f.alice,
                json!({"text": format!("p{i}"), "raw": {"com.example.fill": [{"f": filler}]}}),
            )
        })
        .collect();
    let mut ws = small_buffer_ws(&f.s.stream_addr, &format!("access_token={}&key=k&include_raw=1", f.tok));
    let hello = ws.next_json().unwrap();
    assert!(hello["meta"]["connection_id"].is_string(), "{hello}");
    // Read a few, then crash (no close handshake).
    let (ids, _) = posts(&mut ws, 10);
    assert_eq!(ids, sent[..10].to_vec());
    drop(ws);
    // Whatever was never written to the socket must come again. With one
    // connection per app, the reconnect succeeds once the server has
    // noticed the crash.
    let start = Instant::now();
    let mut ws = loop {
        let url = format!("ws://{}/v1/app?access_token={}&key=k", f.s.stream_addr, f.tok);
        match tungstenite::connect(url) {
            Ok((sock, _)) => {
                let mut ws = Ws(sock);
                ws.set_timeout(DEADLINE);
                ws.next_json().unwrap();
                break ws;
            }
            Err(_) if start.elapsed() < DEADLINE => std::thread::yield_now(),
            Err(e) => panic!("reconnect: {e}"),
        }
    };
    let marker = f.post("marker");
    let mut got = Vec::new();
    loop {
        let id = post_id(&event(&mut ws));
        if id == marker {
            break;
        }
        got.push(id);
    }
    assert!(
        got.len() >= 40 && got.last() == sent.last(),
        "only {} of the last {} posts came again: {got:?}",
        got.len(),
        n - 10
    );
    let first = sent.iter().position(|s| *s == got[0]).unwrap();
    assert_eq!(got, sent[first..].to_vec(), "consecutive, in order");
}

/// A stream update that lands while the connection is still replaying (the
/// client reads slowly, so the replay waits on its backlog) and live events
/// that overflow the hold meanwhile: the control message must still arrive,
/// and an event of the newly added type must not be lost.
#[test]
fn a_stream_update_during_a_slow_replay_is_not_lost() {
    let f = fx_with(&["--conn-backlog-bytes", "65536"]);
    f.s.create_stream(&f.tok, "k", &["post"]);
    let filler = "x".repeat(8000);
    let big = |i: usize| json!({"text": format!("p{i}"), "raw": {"com.example.fill": [{"f": filler}]}});
    // ~800 KB queued: more than the kernel buffers plus half the backlog, so
    // the replay cannot finish while the client reads nothing.
    let queued: Vec<String> = (0..100).map(|i| f.post_as(&f.alice, big(i))).collect();
    let mut ws = small_buffer_ws(&f.s.stream_addr, &format!("access_token={}&key=k&include_raw=1", f.tok));
    let hello = ws.next_json().unwrap();
    assert!(hello["meta"]["connection_id"].is_string(), "{hello}");
    let r = f.s.json("PUT", "/v1/streams/k", Some(&f.tok), json!({"object_types": ["post", "user"]}));
    assert_eq!(r.status, 200, "{}", r.body);
    f.set_name(&f.alice, "New Alice");
    // Live posts worth more than the backlog while the replay waits.
    let live: Vec<String> = (100..110).map(|i| f.post_as(&f.alice, big(i))).collect();
    let mut marker = f.post("marker");
    let (mut got, mut controls, mut users) = (Vec::new(), Vec::new(), Vec::new());
    let mut markers = 0;
    loop {
        let v = ws.next_json().unwrap();
        if v["meta"].get("control").is_some() {
            controls.push(v["meta"]["control"]["type"].as_str().unwrap_or("").to_string());
            continue;
        }
        if v["meta"]["type"] == "user" {
            users.push(v["data"]["name"].as_str().unwrap_or("").to_string());
            continue;
        }
        let id = post_id(&v);
        if id == marker {
            if markers == 1 {
                break;
            }
            // A second marker, so a control message held until the replay
            // went live is read too.
            marker = f.post("marker 2");
            markers = 1;
            continue;
        }
        got.push(id);
    }
    let all: Vec<String> = queued.into_iter().chain(live).collect();
    assert_eq!(got, all, "every post once, in order");
    assert_eq!(controls, ["stream_updated"], "the update's control message arrived");
    assert_eq!(users, ["New Alice"], "the user event made after the update arrived");
}

/// Replay follows the stream as it is now: a type removed while the client
/// was away is not replayed; one still wanted is.
#[test]
fn replay_uses_the_object_types_the_stream_has_now() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post", "user"]);
    let ws = f.connect("k", "");
    close(ws);
    f.post("a post while away");
    f.set_name(&f.alice, "Away Alice");
    let r = f.s.json("PUT", "/v1/streams/k", Some(&f.tok), json!({"object_types": ["user"]}));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut ws = f.connect("k", "");
    let ev = event(&mut ws);
    assert_eq!(ev["meta"]["type"], "user", "{ev}");
    assert_eq!(ev["data"]["name"], "Away Alice");
    f.post("live post");
    f.set_name(&f.alice, "Live Alice");
    let ev = event(&mut ws);
    assert_eq!(ev["data"]["name"], "Live Alice", "{ev}");
}

/// The chunked (App.net) transport replays the same way.
#[test]
fn chunked_transport_replays_what_was_missed() {
    use std::io::{BufRead, BufReader, Read, Write};
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let ws = f.connect("k", "");
    close(ws);
    let away: Vec<String> = (0..3).map(|i| f.post(&format!("away {i}"))).collect();
    let mut sock = std::net::TcpStream::connect(&f.s.stream_addr).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(sock, "GET /v1/app?key=k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n", f.tok).unwrap();
    let mut r = BufReader::new(sock);
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "head");
        if line == "\r\n" {
            break;
        }
    }
    let mut next = || loop {
        let mut size = String::new();
        r.read_line(&mut size).unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        assert!(n > 0, "the stream ended");
        let mut buf = vec![0u8; n + 2];
        r.read_exact(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap().trim_end().to_string();
        if !text.is_empty() {
            return serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    assert!(next()["meta"]["connection_id"].is_string());
    let mut last = 0;
    for id in &away {
        let ev = next();
        assert_eq!(&post_id(&ev), id);
        assert!(pos(&ev) > last);
        last = pos(&ev);
    }
    let p = f.post("live");
    assert_eq!(post_id(&next()), p);
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

/// A position beyond the end of the log (a client's stale state from
/// another database, a typo) must not poison the stream: events missed
/// after that connection ends are still replayed on the next one.
#[test]
fn a_position_past_the_end_does_not_poison_the_stream_cursor() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "&position=1000000");
    let p = f.post("live");
    assert_eq!(posts(&mut ws, 1).0, [p]);
    close(ws);
    let away = f.post("away");
    let mut ws = f.connect("k", "");
    let ev = match ws.next() {
        WsNext::Json(v) => v,
        other => panic!("no replay ({other:?})"),
    };
    assert_eq!(post_id(&ev), away, "the post made while away is replayed: {ev}");
}

/// `?purge=1` skips what was queued before the connection, never an event
/// made after the client got its connection message (repeated, since the
/// old failure depended on timing).
#[test]
fn purge_never_skips_events_made_after_the_connection_message() {
    let f = fx();
    f.s.create_stream(&f.tok, "k", &["post"]);
    for i in 0..15 {
        f.post(&format!("queued {i}"));
        let mut ws = f.connect("k", "&purge=1");
        let p = f.post(&format!("live {i}"));
        assert_eq!(posts(&mut ws, 1).0, [p], "round {i}");
        close(ws);
    }
}

// ---------------------------------------------------------- fixed probes

/// The current Unix time in seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Waits (bounded) until the wall clock reaches `t` seconds.
fn wait_clock(t: i64) {
    let start = Instant::now();
    while unix_now() < t {
        assert!(start.elapsed() < DEADLINE, "clock");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Retention by age: events older than --retention-secs leave the log; the
/// stream that had not received them is told how many, both on a plain
/// reconnect and on a resume from a position before them.
#[test]
fn retention_by_age_reports_dropped_events() {
    let mut f = fx();
    f.s.create_stream(&f.tok, "a", &["post"]);
    f.s.create_stream(&f.tok, "b", &["post"]);
    let mut a = f.connect("a", "");
    let mut b = f.connect("b", "");
    let p0 = f.post("seen");
    assert_eq!(posts(&mut a, 1).0, std::slice::from_ref(&p0));
    let (_, ps) = posts(&mut b, 1);
    close(a);
    close(b);
    for i in 0..4 {
        f.post(&format!("old {i}"));
    }
    // Let the four posts age past one second, then restart with
    // --retention-secs 1 (retention runs at start).
    wait_clock(unix_now() + 2);
    f.s.kill();
    f.s.extra = strs(&["--retention-secs", "1"]);
    f.s.launch();
    // From the stream's cursor.
    let mut a = f.connect("a", "");
    let c = control(&mut a, "events_dropped");
    assert_eq!(c["dropped"], 4, "{c}");
    // From a position the client passes back.
    let mut b = f.connect("b", &format!("&position={}", ps[0]));
    let c = control(&mut b, "events_dropped");
    assert_eq!(c["dropped"], 4, "resuming after the last post seen lost the four old ones: {c}");
    let p = f.post("new");
    assert_eq!(posts(&mut a, 1).0, std::slice::from_ref(&p));
    assert_eq!(posts(&mut b, 1).0, [p]);
}

/// A stream that is live while retention runs loses nothing, so it must
/// never be told afterwards that events were dropped.
#[test]
fn a_live_stream_is_never_reported_as_having_dropped_events() {
    let f = fx_with(&["--retention-events", "3", "--prune-secs", "1"]);
    f.s.create_stream(&f.tok, "k", &["post"]);
    let mut ws = f.connect("k", "");
    // Post for a while (several retention passes), reading everything live.
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(3500) {
        let p = f.post(&format!("p{n}"));
        n += 1;
        assert_eq!(posts(&mut ws, 1).0, [p]);
    }
    close(ws);
    let mut ws = f.connect("k", "");
    let p = f.post("marker");
    let v = ws.next_json().unwrap();
    assert!(
        v["meta"].get("control").is_none(),
        "a stream that received all {n} events live was told it lost some: {v}"
    );
    assert_eq!(post_id(&v), p);
}

/// An auto_delete stream whose server died with the connection open is
/// gone after the restart too (the connection ended).
#[test]
fn auto_delete_survives_a_kill() {
    let mut f = fx();
    f.s.create_stream(&f.tok, "gone", &["post"]);
    let ws = f.connect("gone", "&auto_delete=1");
    f.s.restart();
    drop(ws);
    assert_eq!(
        f.s.get("/v1/streams/gone", Some(&f.tok)).status,
        404,
        "the auto_delete stream outlived its connection"
    );
}
