//! Posts, reposts, revisions, bookmarks, the social graph and presence:
//! REST shapes, counts and flags, pagination, bad input, and the stream
//! event each change produces (and where it must not arrive).

use crate::common::*;
use serde_json::{json, Value};

const PW: &str = "pw";
const SCOPES: &str = "stream,write_post,follow,presence";

/// One server, one app, three users (ids 1, 2, 3) with user tokens.
struct Fx {
    s: Server,
    app: (String, String),
    app_tok: String,
    alice: String,
    bob: String,
    carol: String,
}

fn fx() -> Fx {
    let s = Server::start();
    for u in ["alice", "bob", "carol"] {
        s.add_user(u, PW);
    }
    let app = s.add_app("client");
    let app_tok = s.app_token(&app);
    let alice = s.user_token(&app, "alice", PW, SCOPES);
    let bob = s.user_token(&app, "bob", PW, SCOPES);
    let carol = s.user_token(&app, "carol", PW, SCOPES);
    Fx { s, app, app_tok, alice, bob, carol }
}

impl Fx {
    /// Opens a stream of `types` (extra `query` appended).
    fn stream(&self, key: &str, types: &[&str], query: &str) -> Ws {
        self.s.create_stream(&self.app_tok, key, types);
        let (ws, hello) = self.s.ws(&format!("access_token={}&key={key}{query}", self.app_tok));
        assert_eq!(hello["meta"]["stream"]["key"], key);
        subscribed(ws)
    }

    fn post(&self, tok: &str, body: Value) -> Value {
        let r = self.s.json("POST", "/v1/posts", Some(tok), body);
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["data"].clone()
    }

    fn put(&self, path: &str, tok: &str) -> Resp {
        self.s.call("PUT", path, Some(tok), None)
    }

    fn del(&self, path: &str, tok: &str) -> Resp {
        self.s.call("DELETE", path, Some(tok), None)
    }

    fn get(&self, path: &str, tok: Option<&str>) -> Value {
        let r = self.s.get(path, tok);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.body
    }
}

/// Waits until the connection is surely subscribed. The server writes the
/// connection message before it hands the connection to the hub, so an
/// event made right after it can be missed; the pong to a client message
/// comes from the connection thread, which runs only after that hand-over
/// is queued ahead of any later event.
fn subscribed(mut ws: Ws) -> Ws {
    ws.0.send(tungstenite::Message::Text("keepalive".into())).unwrap();
    let start = std::time::Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "no pong to a keepalive");
        match ws.0.read() {
            Ok(tungstenite::Message::Pong(_)) => return ws,
            Ok(tungstenite::Message::Text(t)) => panic!("unexpected message before any event: {t}"),
            Ok(_) => {}
            Err(e) => panic!("stream connection failed: {e}"),
        }
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect()
}

/// The next event must be a `type` event about object `id`.
fn expect(ws: &mut Ws, ty: &str, id: &str) -> Value {
    let ev = ws.next_event();
    assert_eq!(ev["meta"]["type"], ty, "{ev}");
    assert_eq!(ev["meta"]["id"], id, "{ev}");
    assert!(ev["meta"]["timestamp"].is_u64(), "{ev}");
    ev
}

#[test]
fn create_post_shape_event_and_bad_input() {
    let f = fx();
    let mut ws = f.stream("posts", &["post"], "&include_raw=1");
    let p = f.post(
        &f.alice,
        json!({"text": "hi @bob and @nobody #Rust_lang https://example.com/x", "raw": {"com.example.t": [{"a": 1}]}}),
    );
    assert_eq!(
        keys(&p),
        [
            "content",
            "counts",
            "created_at",
            "id",
            "source",
            "thread_id",
            "user",
            "you_bookmarked",
            "you_reposted"
        ]
    );
    assert_eq!(p["id"], "1");
    assert_eq!(p["thread_id"], "1");
    assert!(p["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(p["user"]["username"], "alice");
    assert_eq!(p["user"]["counts"]["posts"], 1);
    assert_eq!(p["source"], json!({"id": f.app.0, "name": "client", "url": ""}));
    assert_eq!(p["counts"], json!({"bookmarks": 0, "replies": 0, "reposts": 0, "threads": 0}));
    assert_eq!(p["you_bookmarked"], false);
    assert_eq!(p["you_reposted"], false);
    let c = &p["content"];
    assert_eq!(c["text"], "hi @bob and @nobody #Rust_lang https://example.com/x");
    assert!(c["html"].as_str().unwrap().contains("data-mention-id=\"2\""), "{c}");
    assert_eq!(c["entities"]["mentions"], json!([{"id": "2", "pos": 3, "len": 4, "text": "bob"}]));
    assert_eq!(c["entities"]["tags"], json!([{"pos": 20, "len": 10, "text": "Rust_lang"}]));
    assert_eq!(c["entities"]["links"][0]["url"], "https://example.com/x");

    // The event: one-element list, full post with raw (asked for), exact meta keys.
    let ev = expect(&mut ws, "post", "1");
    assert_eq!(
        keys(&ev["meta"]),
        ["id", "position", "suppress_notifications", "suppress_notifications_all", "timestamp", "type"]
    );
    assert_eq!(ev["meta"]["suppress_notifications"], json!([]));
    assert_eq!(ev["data"].as_array().unwrap().len(), 1);
    let d = &ev["data"][0];
    assert_eq!(d["id"], "1");
    assert_eq!(d["raw"], json!({"com.example.t": [{"a": 1}]}));
    assert_eq!(d["content"], p["content"]);
    assert!(d.get("you_bookmarked").is_none(), "no viewer on stream events: {d}");

    // A form-encoded reply; #nsfw marks it NSFW.
    let r = f.s.call(
        "POST",
        "/v1/posts",
        Some(&f.bob),
        Some(("application/x-www-form-urlencoded", "text=re%3A+%23NSFW+yes&reply_to=1")),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let reply = &r.body["data"];
    assert_eq!((reply["id"].as_str(), reply["reply_to"].as_str()), (Some("2"), Some("1")));
    assert_eq!(reply["thread_id"], "1");
    assert_eq!(reply["is_nsfw"], true);
    let ev = expect(&mut ws, "post", "2");
    assert_eq!(ev["data"][0]["reply_to"], "1");

    // GET and the include_* options.
    let g = f.get("/v1/posts/1", None)["data"].clone();
    assert_eq!(g["counts"], json!({"bookmarks": 0, "replies": 1, "reposts": 0, "threads": 1}));
    assert!(g.get("raw").is_none() && g.get("you_bookmarked").is_none(), "{g}");
    let g = f.get(
        "/v1/posts/1?include_raw=1&include_user=0&include_counts=0&include_html=0&include_client=0",
        None,
    )["data"]
        .clone();
    assert_eq!(g["raw"], json!({"com.example.t": [{"a": 1}]}));
    assert_eq!(g["user_id"], "1");
    assert!(
        g.get("user").is_none() && g.get("counts").is_none() && g["content"].get("html").is_none(),
        "{g}"
    );
    assert_eq!(g["source"], f.app.0.as_str());
    assert_error(&f.s.get("/v1/posts?ids=1,abc", None), 400, "ids");
    assert_error(&f.s.get("/v1/posts", None), 400, "ids");
    let too_many: Vec<String> = (1..=201).map(|i| i.to_string()).collect();
    assert_error(&f.s.get(&format!("/v1/posts?ids={}", too_many.join(",")), None), 400, "200");
    assert_eq!(f.get("/v1/posts/1/revisions", None)["data"], json!([]));
    let many = f.get("/v1/posts?ids=2,99,1", None);
    assert_eq!(ids(&many["data"]), ["2", "1"]);
    assert_eq!(f.get("/v1/posts?ids=99", None)["data"], json!([]));

    // Bad input: each a clear error, nothing written, no event.
    let long = "é".repeat(257);
    for (body, status, needle) in [
        (json!({"text": ""}), 400, "text"),
        (json!({"text": "   "}), 400, "text"),
        (json!({}), 400, "text: required"),
        (json!({"text": 5}), 400, "text"),
        (json!({"text": long}), 400, "at most 256"),
        (json!({"text": "x", "reply_to": 99}), 400, "reply_to"),
        (json!({"text": "x", "reply_to": "abc"}), 400, "reply_to"),
        (json!({"text": "x", "is_nsfw": "maybe"}), 400, "is_nsfw"),
        (json!({"text": "x", "raw": {"t": 1}}), 400, "raw"),
    ] {
        assert_error(&f.s.json("POST", "/v1/posts", Some(&f.alice), body), status, needle);
    }
    assert_error(&f.s.json("POST", "/v1/posts", None, json!({"text": "x"})), 401, "");
    assert_error(&f.s.json("POST", "/v1/posts", Some(&f.app_tok), json!({"text": "x"})), 403, "user token");
    let weak = f.s.user_token(&f.app, "carol", PW, "stream");
    assert_error(&f.s.json("POST", "/v1/posts", Some(&weak), json!({"text": "x"})), 403, "write_post");
    assert_error(&f.s.get("/v1/posts/abc", None), 400, "post_id");
    assert_error(&f.s.get("/v1/posts/99", None), 404, "Post not found");
    // Exactly 256 code points is fine; it is the next event (the failures wrote none).
    let ok = f.post(&f.alice, json!({"text": "é".repeat(256)}));
    expect(&mut ws, "post", ok["id"].as_str().unwrap());
    assert_eq!(f.get("/v1/users/@alice", None)["data"]["counts"]["posts"], 2);
}

#[test]
fn revise_delete_and_revisions() {
    let f = fx();
    let mut ws = f.stream("posts", &["post"], "");
    f.post(&f.alice, json!({"text": "first #tag"}));
    expect(&mut ws, "post", "1");
    assert_error(&f.s.json("PUT", "/v1/posts/1", Some(&f.bob), json!({"text": "mine #tag"})), 403, "author");
    let r = f.s.json("PUT", "/v1/posts/1", Some(&f.alice), json!({"text": "second #TAG", "is_nsfw": true}));
    assert_eq!(r.status, 201, "{}", r.body);
    let p = &r.body["data"];
    assert_eq!((p["id"].as_str(), p["is_revised"].as_bool()), (Some("1"), Some(true)));
    assert_eq!(p["content"]["text"], "second #TAG");
    assert_eq!(p["is_nsfw"], true);
    assert!(p.get("revision").is_none());
    let ev = expect(&mut ws, "post", "1");
    assert_eq!(
        keys(&ev["meta"]),
        [
            "id",
            "position",
            "revision",
            "suppress_notifications",
            "suppress_notifications_all",
            "timestamp",
            "type"
        ]
    );
    assert_eq!(ev["meta"]["revision"], 1);
    assert_eq!(ev["data"][0]["is_revised"], true);
    let revs = f.get("/v1/posts/1/revisions", None)["data"].clone();
    assert_eq!(revs.as_array().unwrap().len(), 1);
    assert_eq!(revs[0]["revision"], 0);
    assert_eq!(revs[0]["content"]["text"], "first #tag");
    assert!(revs[0].get("is_revised").is_none() && revs[0].get("is_nsfw").is_none(), "{revs}");
    assert_error(&f.s.json("PUT", "/v1/posts/1", Some(&f.alice), json!({"text": "third #tag"})), 400, "once");

    f.post(&f.alice, json!({"text": "x #a"}));
    expect(&mut ws, "post", "2");
    assert_error(
        &f.s.json("PUT", "/v1/posts/2", Some(&f.alice), json!({"text": "x #b"})),
        400,
        "same links, mentions and tags",
    );
    assert_error(&f.s.json("PUT", "/v1/posts/2", Some(&f.alice), json!({"text": ""})), 400, "text");
    let unchanged = f.get("/v1/posts/2", None)["data"].clone();
    assert_eq!(unchanged["content"]["text"], "x #a");
    assert!(unchanged.get("is_revised").is_none());
    assert_error(&f.del("/v1/posts/2", &f.bob), 403, "author");
    assert_error(&f.del("/v1/posts/99", &f.alice), 404, "Post not found");

    let d = f.del("/v1/posts/2", &f.alice);
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.body["data"]["is_deleted"], true);
    assert!(d.body["data"].get("content").is_none());
    let ev = expect(&mut ws, "post", "2");
    assert_eq!(
        keys(&ev["meta"]),
        [
            "id",
            "is_deleted",
            "position",
            "suppress_notifications",
            "suppress_notifications_all",
            "timestamp",
            "type"
        ]
    );
    assert_eq!(ev["meta"]["is_deleted"], true);
    assert_eq!(ev["data"][0]["is_deleted"], true);
    assert!(ev["data"][0].get("content").is_none());
    // Deleting again changes nothing and sends nothing.
    assert_eq!(f.del("/v1/posts/2", &f.alice).status, 200);
    assert_eq!(f.get("/v1/posts/2", None)["data"]["is_deleted"], true);
    assert_error(&f.s.get("/v1/posts/2?include_deleted=0", None), 404, "deleted");
    assert_error(&f.s.json("PUT", "/v1/posts/2", Some(&f.alice), json!({"text": "x #a"})), 400, "deleted");
    assert_error(
        &f.s.json("POST", "/v1/posts", Some(&f.bob), json!({"text": "re", "reply_to": "2"})),
        400,
        "deleted",
    );
    let list = f.get("/v1/users/@alice/posts", None)["data"].clone();
    assert_eq!(ids(&list), ["2", "1"]);
    let list = f.get("/v1/users/@alice/posts?include_deleted=0", None)["data"].clone();
    assert_eq!(ids(&list), ["1"]);
    assert_eq!(f.get("/v1/users/@alice", None)["data"]["counts"]["posts"], 1);
    f.post(&f.bob, json!({"text": "marker"}));
    expect(&mut ws, "post", "3");
}

#[test]
fn reposts_and_bookmarks_keep_counts_flags_and_events() {
    let f = fx();
    let mut ws = f.stream("pb", &["post", "bookmark"], "&include_reposted_by=1");
    f.post(&f.alice, json!({"text": "original"}));
    expect(&mut ws, "post", "1");

    let r = f.put("/v1/posts/1/repost", &f.bob);
    assert_eq!(r.status, 201, "{}", r.body);
    let o = &r.body["data"];
    assert_eq!(o["id"], "1", "returns the original");
    assert_eq!(o["you_reposted"], true);
    assert_eq!(o["counts"]["reposts"], 1);
    let ev = expect(&mut ws, "post", "2");
    let rp = &ev["data"][0];
    assert_eq!(rp["user"]["username"], "bob");
    assert_eq!(rp["thread_id"], "2");
    assert_eq!(rp["repost_of"]["id"], "1");
    assert_eq!(rp["repost_of"]["user"]["username"], "alice");
    assert_eq!(rp["content"]["text"], "original");
    assert_eq!(ev["meta"]["suppress_notifications"], json!([]));
    assert_eq!(ids(&rp["reposted_by"]), ["2"], "asked for by the connection");
    assert!(rp.get("bookmarked_by").is_none(), "not asked for");
    // Again: 200, no second repost, no event (the bookmark below is next).
    let again = f.put("/v1/posts/1/repost", &f.bob);
    assert_eq!(again.status, 200);
    assert_eq!(again.body["data"]["counts"]["reposts"], 1);
    assert_error(&f.put("/v1/posts/1/repost", &f.alice), 400, "own post");
    // A repost of a repost is one of the original: alice's own post.
    assert_error(&f.put("/v1/posts/2/repost", &f.alice), 400, "own post");
    assert_error(&f.put("/v1/posts/99/repost", &f.carol), 404, "Post not found");
    let g = f.get("/v1/posts/2", Some(&f.bob))["data"].clone();
    assert_eq!(g["repost_of"]["id"], "1");
    assert_eq!(g["you_reposted"], true);
    assert_eq!(f.get("/v1/users/@bob", None)["data"]["counts"]["posts"], 1);

    let r = f.s.json("PUT", "/v1/posts/1/bookmark", Some(&f.carol), json!({"note": "later"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["you_bookmarked"], true);
    assert_eq!(r.body["data"]["counts"]["bookmarks"], 1);
    let ev = expect(&mut ws, "bookmark", "1");
    assert_eq!(keys(&ev["data"]), ["post", "user"]);
    assert_eq!(ev["data"]["user"]["username"], "carol");
    assert_eq!(ev["data"]["post"]["id"], "1");
    assert_eq!(ev["meta"]["suppress_notifications"], json!([]));
    assert_eq!(f.put("/v1/posts/1/bookmark", &f.carol).status, 200);
    let flags = f.get("/v1/posts/1", Some(&f.carol))["data"].clone();
    assert_eq!(
        (flags["you_bookmarked"].as_bool(), flags["you_reposted"].as_bool()),
        (Some(true), Some(false))
    );
    let g = f.get("/v1/posts/1?include_bookmarked_by=1&include_reposted_by=1", None)["data"].clone();
    assert_eq!((ids(&g["bookmarked_by"]), ids(&g["reposted_by"])), (vec!["3".into()], vec!["2".into()]));
    assert!(f.get("/v1/posts/1", None)["data"].get("bookmarked_by").is_none());
    let own = f.get("/v1/users/me/bookmarks", Some(&f.carol));
    assert_eq!(ids(&own["data"]), ["1"]);
    assert_eq!(own["data"][0]["note"], "later");
    assert_eq!(own["data"][0]["pagination_id"], "1");
    assert_eq!(f.get("/v1/users/@carol", None)["data"]["counts"]["bookmarks"], 1);
    let other = f.get("/v1/users/@carol/bookmarks", Some(&f.bob));
    assert!(other["data"][0].get("note").is_none(), "notes are private");
    assert_error(&f.s.get("/v1/users/@carol/bookmarks", None), 401, "");

    let r = f.del("/v1/posts/1/bookmark", &f.carol);
    assert_eq!(r.body["data"]["you_bookmarked"], false);
    let ev = expect(&mut ws, "bookmark", "1");
    assert_eq!(ev["meta"]["is_deleted"], true);
    assert_eq!(f.del("/v1/posts/1/bookmark", &f.carol).status, 200);

    let r = f.del("/v1/posts/1/repost", &f.bob);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"]["id"], "1");
    assert_eq!(r.body["data"]["you_reposted"], false);
    assert_eq!(r.body["data"]["counts"]["reposts"], 0);
    let ev = expect(&mut ws, "post", "2");
    assert_eq!(ev["meta"]["is_deleted"], true);
    assert_eq!(ev["data"][0]["is_deleted"], true);
    assert_eq!(ev["data"][0]["repost_of"]["id"], "1");
    assert_error(&f.s.get("/v1/posts/2", None), 404, "Post not found");
    assert_eq!(f.del("/v1/posts/1/repost", &f.bob).status, 200);

    // Deleting the original deletes the live reposts, each with its event.
    assert_eq!(f.put("/v1/posts/1/repost", &f.bob).status, 201);
    expect(&mut ws, "post", "3");
    assert_eq!(f.del("/v1/posts/1", &f.alice).status, 200);
    let e1 = expect(&mut ws, "post", "1");
    let e3 = expect(&mut ws, "post", "3");
    assert_eq!(
        (e1["meta"]["is_deleted"].as_bool(), e3["meta"]["is_deleted"].as_bool()),
        (Some(true), Some(true))
    );
    assert_error(&f.s.get("/v1/posts/3", None), 404, "Post not found");
    assert_error(&f.put("/v1/posts/1/repost", &f.bob), 404, "deleted");
    assert_error(&f.put("/v1/posts/1/bookmark", &f.bob), 404, "deleted");
    assert_eq!(f.get("/v1/users/@bob", None)["data"]["counts"]["posts"], 0);
}

#[test]
fn follow_mute_block_flags_lists_and_events() {
    let f = fx();
    // carol acts through another app: her mutes and blocks are not this app's to see.
    let app2 = f.s.add_app("other");
    let carol2 = f.s.user_token(&app2, "carol", PW, "follow");
    // carol's grant to the first app ends with her token there.
    assert_eq!(f.del("/v1/token", &f.carol).status, 200);
    let mut ws = f.stream("graph", &["follow", "mute", "block"], "");

    let r = f.put("/v1/users/@bob/follow", &f.alice);
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.body["data"];
    assert_eq!(b["username"], "bob");
    assert_eq!(
        (b["you_follow"].as_bool(), b["follows_you"].as_bool(), b["you_can_follow"].as_bool()),
        (Some(true), Some(false), Some(true))
    );
    assert_eq!(b["counts"]["followers"], 1);
    let ev = expect(&mut ws, "follow", "2");
    assert_eq!(
        keys(&ev["meta"]),
        ["id", "position", "suppress_notifications", "suppress_notifications_all", "timestamp", "type"]
    );
    assert_eq!(keys(&ev["data"]), ["followed_user", "user"]);
    assert_eq!(ev["data"]["user"]["username"], "alice");
    assert_eq!(ev["data"]["followed_user"]["username"], "bob");
    assert_eq!(ev["data"]["user"]["counts"]["following"], 1);
    assert_eq!(f.put("/v1/users/2/follow", &f.alice).status, 200, "again: no change, no event");
    let a = f.get("/v1/users/@alice", Some(&f.bob))["data"].clone();
    assert_eq!((a["follows_you"].as_bool(), a["you_follow"].as_bool()), (Some(true), Some(false)));
    let me = f.get("/v1/users/me", Some(&f.alice))["data"].clone();
    assert_eq!(me["you_can_follow"], false);
    assert_eq!(me["counts"]["following"], 1);

    assert_error(&f.put("/v1/users/me/follow", &f.alice), 400, "yourself");
    assert_error(&f.put("/v1/users/1/follow", &f.alice), 400, "yourself");
    assert_error(&f.put("/v1/users/99/follow", &f.alice), 404, "User not found");
    assert_error(&f.put("/v1/users/@nobody/mute", &f.alice), 404, "User not found");
    assert_error(&f.put("/v1/users/x/block", &f.alice), 400, "user_id");
    let weak = f.s.user_token(&app2, "bob", PW, "stream");
    assert_error(&f.put("/v1/users/1/follow", &weak), 403, "follow");

    let following = f.get("/v1/users/@alice/following", Some(&f.app_tok));
    assert_eq!(ids(&following["data"]), ["2"]);
    assert_eq!(following["data"][0]["pagination_id"], "1");
    let followers = f.get("/v1/users/2/followers", Some(&f.bob));
    assert_eq!(ids(&followers["data"]), ["1"]);
    assert_eq!(followers["data"][0]["follows_you"], true);

    // Mute: only to apps the muter authorized.
    let r = f.put("/v1/users/@bob/mute", &f.alice);
    assert_eq!(r.body["data"]["you_muted"], true);
    let ev = expect(&mut ws, "mute", "2");
    assert_eq!(keys(&ev["data"]), ["muted_user", "user"]);
    assert_eq!(ev["data"]["muted_user"]["id"], "2");
    assert_eq!(ids(&f.get("/v1/users/me/muted", Some(&f.alice))["data"]), ["2"]);
    assert_eq!(ids(&f.get("/v1/users/1/muted", Some(&f.app_tok))["data"]), ["2"]);
    assert_error(&f.s.get("/v1/users/@alice/muted", Some(&f.bob)), 403, "owner");
    assert_error(&f.s.get("/v1/users/@alice/blocked", Some(&f.bob)), 403, "owner");
    // carol (not this app's user) mutes and blocks: nothing arrives here.
    assert_eq!(f.put("/v1/users/@alice/mute", &carol2).status, 200);
    assert_eq!(f.put("/v1/users/@bob/block", &carol2).status, 200);
    assert_eq!(f.del("/v1/users/@alice/mute", &carol2).status, 200);
    let r = f.del("/v1/users/@bob/mute", &f.alice);
    assert_eq!(r.body["data"]["you_muted"], false);
    let ev = expect(&mut ws, "mute", "2");
    assert_eq!(keys(&ev["meta"]), ["id", "is_deleted", "position", "timestamp", "type"]);

    // Block removes follows both ways, each with its unfollow event.
    assert_eq!(f.put("/v1/users/@alice/follow", &f.bob).status, 200);
    expect(&mut ws, "follow", "1");
    let r = f.put("/v1/users/@bob/block", &f.alice);
    let b = &r.body["data"];
    assert_eq!(
        (b["you_blocked"].as_bool(), b["you_follow"].as_bool(), b["follows_you"].as_bool()),
        (Some(true), Some(false), Some(false))
    );
    assert_eq!(b["you_can_follow"], false);
    assert_eq!(b["counts"]["followers"], 0);
    let e1 = expect(&mut ws, "follow", "2");
    assert_eq!(e1["meta"]["is_deleted"], true);
    assert_eq!(e1["data"]["user"]["id"], "1");
    let e2 = expect(&mut ws, "follow", "1");
    assert_eq!(e2["meta"]["is_deleted"], true);
    assert_eq!(e2["data"]["user"]["id"], "2");
    let ev = expect(&mut ws, "block", "2");
    assert_eq!(keys(&ev["data"]), ["blocked_user", "user"]);
    assert_eq!(ids(&f.get("/v1/users/me/blocked", Some(&f.alice))["data"]), ["2"]);
    assert_error(&f.put("/v1/users/@alice/follow", &f.bob), 403, "blocked");
    assert_eq!(f.get("/v1/users/@alice", Some(&f.bob))["data"]["you_can_follow"], false);
    let r = f.del("/v1/users/@bob/block", &f.alice);
    assert_eq!(r.body["data"]["you_blocked"], false);
    let ev = expect(&mut ws, "block", "2");
    assert_eq!(ev["meta"]["is_deleted"], true);
    // Unfollowing someone not followed: 200, no event; then a marker.
    assert_eq!(f.del("/v1/users/@bob/follow", &f.alice).status, 200);
    assert_eq!(f.put("/v1/users/@bob/follow", &f.alice).status, 200);
    expect(&mut ws, "follow", "2");
}

#[test]
fn suppress_notifications_for_muted_and_blocked_mentions() {
    let f = fx();
    let mut ws = f.stream("notify", &["post", "bookmark"], "");
    f.post(&f.bob, json!({"text": "bob's post"}));
    expect(&mut ws, "post", "1");
    assert_eq!(f.put("/v1/users/@alice/mute", &f.bob).status, 200);
    assert_eq!(f.put("/v1/users/@alice/block", &f.carol).status, 200);
    // Mention by a muted user (bob) and by a blocked user (carol).
    f.post(&f.alice, json!({"text": "@bob @carol hello"}));
    let ev = expect(&mut ws, "post", "2");
    assert_eq!(ev["meta"]["suppress_notifications"], json!(["2", "3"]));
    // Replying to bob notifies bob, who muted alice.
    f.post(&f.alice, json!({"text": "a reply", "reply_to": 1}));
    let ev = expect(&mut ws, "post", "3");
    assert_eq!(ev["meta"]["suppress_notifications"], json!(["2"]));
    // Reposting and bookmarking bob's post notify bob.
    assert_eq!(f.put("/v1/posts/1/repost", &f.alice).status, 201);
    let ev = expect(&mut ws, "post", "4");
    assert_eq!(ev["meta"]["suppress_notifications"], json!(["2"]));
    assert_eq!(f.put("/v1/posts/1/bookmark", &f.alice).status, 200);
    let ev = expect(&mut ws, "bookmark", "1");
    assert_eq!(ev["meta"]["suppress_notifications"], json!(["2"]));
    // A mention by someone nobody muted suppresses nothing.
    f.post(&f.bob, json!({"text": "@carol hi"}));
    let ev = expect(&mut ws, "post", "5");
    assert_eq!(ev["meta"]["suppress_notifications"], json!([]));
}

#[test]
fn streams_lists_and_pagination() {
    let f = fx();
    for i in 1..=5 {
        f.post(&f.alice, json!({"text": format!("alice {i} #Spout_Test")}));
    }
    f.post(&f.bob, json!({"text": "@alice from bob", "reply_to": 5})); // 6
    f.post(&f.carol, json!({"text": "carol #spouttest"})); // 7

    let g = f.get("/v1/posts/streams/global?count=2", None);
    assert_eq!(ids(&g["data"]), ["7", "6"]);
    assert_eq!(g["meta"]["more"], true);
    assert_eq!((g["meta"]["max_id"].as_str(), g["meta"]["min_id"].as_str()), (Some("7"), Some("6")));
    assert_eq!(g["data"][0]["pagination_id"], "7");
    let g = f.get("/v1/posts/streams/global?count=2&before_id=6", None);
    assert_eq!(ids(&g["data"]), ["5", "4"]);
    let g = f.get("/v1/posts/streams/global?since_id=2&count=-2", None);
    assert_eq!(ids(&g["data"]), ["4", "3"], "oldest of the window, newest first");
    assert_eq!(g["meta"]["more"], true);
    let g = f.get("/v1/posts/streams/global?since_id=2&before_id=5", None);
    assert_eq!(ids(&g["data"]), ["4", "3"]);
    assert_eq!(g["meta"]["more"], false);
    for bad in ["0", "201", "abc", "-201"] {
        let g = f.get(&format!("/v1/posts/streams/global?count={bad}"), None);
        assert_eq!(g["data"].as_array().unwrap().len(), 7, "count={bad} is ignored");
    }
    let g = f.get("/v1/posts/streams/global?count=200&since_id=7", None);
    assert_eq!(g["data"], json!([]));
    assert_eq!(g["meta"]["more"], false);
    assert!(g["meta"].get("min_id").is_none() && g["meta"].get("max_id").is_none());
    let g = f.get("/v1/posts/streams/global?count=7", None);
    assert_eq!(g["meta"]["more"], false);

    // Personal and unified streams need the stream scope.
    let me = f.get("/v1/posts/streams/me", Some(&f.alice));
    assert_eq!(ids(&me["data"]), ["5", "4", "3", "2", "1"]);
    let uni = f.get("/v1/posts/streams/unified?count=1", Some(&f.alice));
    assert_eq!(ids(&uni["data"]), ["6"], "a mention reaches unified");
    assert_eq!(f.put("/v1/users/@carol/follow", &f.alice).status, 200);
    let me = f.get("/v1/posts/streams/me?count=2", Some(&f.alice));
    assert_eq!(ids(&me["data"]), ["7", "5"]);
    let weak = f.s.user_token(&f.app, "carol", PW, "write_post");
    assert_error(&f.s.get("/v1/posts/streams/me", Some(&weak)), 403, "stream");
    assert_error(&f.s.get("/v1/posts/streams/unified", None), 401, "");

    // A user's posts and mentions, tags (both paths, normalised), thread.
    assert_eq!(ids(&f.get("/v1/users/@bob/posts", None)["data"]), ["6"]);
    assert_eq!(ids(&f.get("/v1/users/@alice/mentions", None)["data"]), ["6"]);
    assert_eq!(ids(&f.get("/v1/users/me/posts?count=1", Some(&f.carol))["data"]), ["7"]);
    assert_error(&f.s.get("/v1/users/99/posts", None), 404, "User not found");
    let t = f.get("/v1/posts/tags/spouttest?count=3", None);
    assert_eq!(ids(&t["data"]), ["7", "5", "4"]);
    assert_eq!(t["meta"]["more"], true);
    assert_eq!(ids(&f.get("/v1/posts/tag/SPOUT_TEST?before_id=3", None)["data"]), ["2", "1"]);
    let th = f.get("/v1/posts/6/thread", None);
    assert_eq!(ids(&th["data"]), ["6", "5"]);
    let th = f.get("/v1/posts/5/thread?include_user=0", None);
    assert_eq!(th["data"][1]["user_id"], "1");
    assert!(th["data"][1].get("user").is_none());
    assert_eq!(f.get("/v1/posts/5", None)["data"]["counts"]["threads"], 1);
    assert_error(&f.s.get("/v1/posts/99/thread", None), 404, "Post not found");

    // A viewer's streams leave out users they muted.
    assert_eq!(f.put("/v1/users/@carol/mute", &f.bob).status, 200);
    assert_eq!(ids(&f.get("/v1/posts/streams/global?count=2", Some(&f.bob))["data"]), ["6", "5"]);
    assert_eq!(ids(&f.get("/v1/posts/streams/global?count=1", None)["data"]), ["7"]);
    let all = f.get("/v1/posts/streams/global?count=1&include_muted=1", Some(&f.bob));
    assert_eq!(ids(&all["data"]), ["7"]);
    // Blocked users stay hidden even with include_muted=1.
    assert_eq!(f.put("/v1/users/@carol/block", &f.bob).status, 200);
    let all = f.get("/v1/posts/streams/global?count=1&include_muted=1", Some(&f.bob));
    assert_eq!(ids(&all["data"]), ["6"]);
    assert_eq!(f.del("/v1/users/@carol/block", &f.bob).status, 200);

    // Follower lists page by follow.
    assert_eq!(f.put("/v1/users/@carol/follow", &f.bob).status, 200);
    let fl = f.get("/v1/users/@carol/followers?count=1", Some(&f.carol));
    assert_eq!(ids(&fl["data"]), ["2"]);
    assert_eq!(fl["meta"]["more"], true);
    let next = fl["meta"]["min_id"].as_str().unwrap();
    let fl = f.get(&format!("/v1/users/@carol/followers?count=1&before_id={next}"), Some(&f.carol));
    assert_eq!(ids(&fl["data"]), ["1"]);
    assert_eq!(fl["meta"]["more"], false);
}

#[test]
fn presence_set_list_and_event() {
    let f = fx();
    let mut ws = f.stream("pres", &["user_presence", "post"], "");
    let r = f.s.call(
        "PUT",
        "/v1/users/me/presence",
        Some(&f.alice),
        Some(("application/x-www-form-urlencoded", "presence=writing+code")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let p = &r.body["data"];
    assert_eq!(keys(p), ["avatar_image", "id", "last_seen_at", "presence", "username"]);
    assert_eq!((p["id"].as_str(), p["presence"].as_str()), (Some("1"), Some("writing code")));
    assert!(p["avatar_image"].as_str().unwrap().ends_with("/v1/users/1/avatar"));
    let ev = expect(&mut ws, "user_presence", "1");
    assert_eq!(keys(&ev["meta"]), ["id", "position", "timestamp", "type"]);
    assert_eq!(ev["data"], json!([p]));

    // pnutpy's call: JSON body on /users/{id}/presence; missing → "online".
    let r = f.s.json("PUT", "/v1/users/2/presence", Some(&f.bob), json!({}));
    assert_eq!(r.body["data"]["presence"], "online", "{}", r.body);
    expect(&mut ws, "user_presence", "2");
    let all = f.get("/v1/presence", Some(&f.app_tok));
    assert_eq!(ids(&all["data"]), ["2", "1"]);
    let c = f.get("/v1/users/@carol/presence", Some(&f.alice))["data"].clone();
    assert_eq!(
        c,
        json!({"id": "3", "username": "carol", "avatar_image": c["avatar_image"], "presence": "offline"})
    );

    // Going offline (or an expiration in the past) sends no event.
    let r = f.s.json("PUT", "/v1/users/me/presence", Some(&f.bob), json!({"presence": "offline"}));
    assert_eq!(r.body["data"]["presence"], "offline");
    assert!(r.body["data"]["last_seen_at"].is_string());
    let r =
        f.s.json("PUT", "/v1/users/me/presence", Some(&f.alice), json!({"presence": "x", "expiration": 1}));
    assert_eq!(r.body["data"]["presence"], "offline");
    assert_eq!(f.get("/v1/presence", Some(&f.alice))["data"], json!([]));
    assert_error(
        &f.s.json("PUT", "/v1/users/me/presence", Some(&f.alice), json!({"presence": "y".repeat(101)})),
        400,
        "presence",
    );
    assert_error(
        &f.s.json("PUT", "/v1/users/me/presence", Some(&f.alice), json!({"expiration": "soon"})),
        400,
        "expiration",
    );
    assert_error(&f.s.json("PUT", "/v1/users/2/presence", Some(&f.alice), json!({})), 403, "own");
    let weak = f.s.user_token(&f.app, "carol", PW, "stream");
    assert_error(&f.s.json("PUT", "/v1/users/me/presence", Some(&weak), json!({})), 403, "presence");
    assert_error(&f.s.get("/v1/presence", None), 401, "");
    f.post(&f.alice, json!({"text": "marker"}));
    expect(&mut ws, "post", "1");
}

#[test]
fn events_follow_object_types() {
    let f = fx();
    let mut ws = f.stream("only_posts", &["post"], "");
    f.post(&f.alice, json!({"text": "one"}));
    expect(&mut ws, "post", "1");
    // Bookmarks, follows, mutes and presence are not in this stream.
    assert_eq!(f.put("/v1/posts/1/bookmark", &f.bob).status, 200);
    assert_eq!(f.put("/v1/users/@alice/follow", &f.bob).status, 200);
    assert_eq!(f.put("/v1/users/@alice/mute", &f.carol).status, 200);
    assert_eq!(f.s.json("PUT", "/v1/users/me/presence", Some(&f.bob), json!({})).status, 200);
    f.post(&f.bob, json!({"text": "two"}));
    expect(&mut ws, "post", "2");
}

/// The answer to `POST /posts` is built from the event's rendering, not by
/// reading the post back: it must be exactly what the author reads with the
/// same parameters, for a root post and a reply, with every include set.
#[test]
fn create_answer_is_what_the_author_reads_back() {
    let s = Server::start();
    for u in ["alice", "bob"] {
        s.add_user(u, PW);
    }
    let app = s.add_app("client");
    let alice = s.user_token(&app, "alice", PW, "write_post,update_profile");
    let bob = s.user_token(&app, "bob", PW, "write_post");
    let r = s.json(
        "PATCH",
        "/v1/users/me",
        Some(&alice),
        json!({"name": "Alice", "content": {"text": "hi @bob #rust https://example.com"}, "raw": {"x.y": [{"a": 1}]}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let root = s.json("POST", "/v1/posts", Some(&bob), json!({"text": "root"}));
    assert_eq!(root.status, 201, "{}", root.body);
    for (i, q) in [
        "",
        "?include_raw=1",
        "?include_post_raw=1&include_user_raw=1&include_html=0&include_counts=0",
        "?include_bookmarked_by=1&include_reposted_by=1&include_user=0&include_client=0",
    ]
    .iter()
    .enumerate()
    {
        let reply = if i % 2 == 1 { json!("1") } else { Value::Null };
        let made = s.json(
            "POST",
            &format!("/v1/posts{q}"),
            Some(&alice),
            json!({"text": format!("n{i} @bob #t{i} https://example.com/{i}"), "reply_to": reply, "raw": {"a.b": [{"i": i}]}}),
        );
        assert_eq!(made.status, 201, "{q}: {}", made.body);
        let id = made.body["data"]["id"].as_str().unwrap().to_string();
        let sep = if q.is_empty() { "?" } else { "&" };
        let read = s.get(&format!("/v1/posts/{id}{q}{sep}x=1"), Some(&alice));
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(made.body["data"], read.body["data"], "{q}");
        assert_eq!(made.body["data"]["you_bookmarked"], json!(false), "{q}");
    }
}

/// Paging input means the same on every list: an id that is not a number is
/// a 400 naming the parameter (posts used to ignore it, channels did not),
/// an invalid count is ignored, and an empty page reports only `more`.
#[test]
fn paging_input_is_read_the_same_on_every_list() {
    let f = fx();
    let t = f.s.user_token(&f.app, "alice", PW, "stream,write_post,follow,messages,files,polls");
    f.post(&t, json!({"text": "one"}));
    for path in [
        "/v1/posts/streams/global",
        "/v1/users/me/posts",
        "/v1/users/me/bookmarks",
        "/v1/users/me/following",
        "/v1/users/me/channels/subscribed",
        "/v1/users/me/files",
        "/v1/users/me/polls",
    ] {
        for p in ["before_id", "since_id"] {
            let r = f.s.get(&format!("{path}?{p}=abc"), Some(&t));
            assert_error(&r, 400, &format!("{p}: 'abc' is not a valid id"));
        }
        let ok = f.get(&format!("{path}?count=0"), Some(&t));
        assert_eq!(ok["meta"]["code"], 200, "{path}");
        let empty = f.get(&format!("{path}?before_id=1&since_id=1"), Some(&t));
        assert_eq!(empty["data"], json!([]), "{path}");
        let meta = empty["meta"].as_object().unwrap();
        assert_eq!(meta.get("more"), Some(&json!(false)), "{path}");
        assert!(meta.get("min_id").is_none() && meta.get("max_id").is_none(), "{path}: {meta:?}");
    }
}

/// Bots and feeds (issue 18): `spout admin user add --type bot` makes one;
/// every event that carries `suppress_notifications` also carries
/// `suppress_notifications_all`, true when the actor is not human; follow
/// events name the followed user when they muted the follower.
#[test]
fn bots_and_feeds_suppress_all_notifications() {
    let f = fx();
    let out = f.s.admin(&["user", "add", "--type", "bot", "robo"], PW);
    assert!(out.contains(r#""type": "bot""#), "{out}");
    let robo = f.s.user_token(&f.app, "robo", PW, SCOPES);
    let mut ws = f.stream("bots", &["post", "follow"], "");
    let by_robo = f.post(&robo, json!({"text": "beep"}));
    assert_eq!(by_robo["user"]["type"], "bot");
    let ev = expect(&mut ws, "post", by_robo["id"].as_str().unwrap());
    assert_eq!(ev["meta"]["suppress_notifications_all"], true, "{ev}");
    let by_alice = f.post(&f.alice, json!({"text": "hello"}));
    let ev = expect(&mut ws, "post", by_alice["id"].as_str().unwrap());
    assert_eq!(ev["meta"]["suppress_notifications_all"], false, "{ev}");
    // bob muted alice: her follow of bob names him; robo's follow suppresses all.
    assert_eq!(f.put("/v1/users/@alice/mute", &f.bob).status, 200);
    assert_eq!(f.put("/v1/users/@bob/follow", &f.alice).status, 200);
    let bob_id = f.get("/v1/users/@bob", Some(&f.bob))["data"]["id"].clone();
    let ev = expect(&mut ws, "follow", bob_id.as_str().unwrap());
    assert_eq!(ev["meta"]["suppress_notifications"], json!([bob_id]), "{ev}");
    assert_eq!(ev["meta"]["suppress_notifications_all"], false, "{ev}");
    assert_eq!(f.put("/v1/users/@bob/follow", &robo).status, 200);
    let ev = expect(&mut ws, "follow", bob_id.as_str().unwrap());
    assert_eq!(ev["meta"]["suppress_notifications"], json!([]), "{ev}");
    assert_eq!(ev["meta"]["suppress_notifications_all"], true, "{ev}");
}

/// Reposting a repost reposts the original, as pnut does (issue 20, part;
/// it used to be a 400).
#[test]
fn reposting_a_repost_reposts_the_original() {
    let f = fx();
    let original = f.post(&f.alice, json!({"text": "original"}));
    let oid = original["id"].as_str().unwrap().to_string();
    let r = f.put(&format!("/v1/posts/{oid}/repost"), &f.bob);
    assert_eq!(r.status, 201, "{}", r.body);
    let bobs = f.get("/v1/users/@bob/posts", Some(&f.bob))["data"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(bobs, oid);
    let r = f.put(&format!("/v1/posts/{bobs}/repost"), &f.carol);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["data"]["id"], oid.as_str(), "the original comes back");
    assert_eq!(r.body["data"]["you_reposted"], true);
    assert_eq!(f.put(&format!("/v1/posts/{oid}/repost"), &f.carol).status, 200, "already reposted");
    let o = f.get(&format!("/v1/posts/{oid}"), None);
    assert_eq!(o["data"]["counts"]["reposts"], 2, "{}", o);
}

/// `update_presence=` on any call sets the caller's presence, as pnut
/// documents (issue 20, part), with `meta.updated_presence`.
#[test]
fn update_presence_on_any_call() {
    let f = fx();
    let mut ws = f.stream("up", &["user_presence"], "");
    let r = f.s.get("/v1/posts/streams/global?update_presence=reading", Some(&f.alice));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["meta"]["updated_presence"], true, "{}", r.body);
    let ev = ws.next_event();
    assert_eq!(ev["meta"]["type"], "user_presence", "{ev}");
    assert_eq!(ev["data"][0]["presence"], "reading", "{ev}");
    let r = f.s.get("/v1/users/@alice/presence", Some(&f.alice));
    assert_eq!(r.body["data"]["presence"], "reading", "{}", r.body);
    // An app token has no user to set it for.
    let r = f.s.get("/v1/posts/streams/global?update_presence=1", Some(&f.app_tok));
    assert_eq!(r.body["meta"]["updated_presence"], false, "{}", r.body);
    // Without the parameter nothing is said.
    assert!(f.s.get("/v1/posts/streams/global", Some(&f.alice)).body["meta"]
        .get("updated_presence")
        .is_none());
}

/// The same text twice from one user inside the window is refused (409);
/// another user, another text, or the text after a delete are not. The
/// window is published in sys/config (issue 20).
#[test]
fn a_duplicate_post_is_refused_inside_the_window() {
    let f = fx();
    let body = json!({"text": "same again"});
    let first = f.post(&f.alice, body.clone());
    assert_error(
        &f.s.json("POST", "/v1/posts", Some(&f.alice), body.clone()),
        409,
        "same text less than 60 seconds",
    );
    f.post(&f.bob, body.clone());
    f.post(&f.alice, json!({"text": "same again!"}));
    assert_eq!(f.del(&format!("/v1/posts/{}", first["id"].as_str().unwrap()), &f.alice).status, 200);
    f.post(&f.alice, body);
    let cfg = f.s.get("/v1/sys/config", None);
    assert_eq!(cfg.body["data"]["post"]["seconds_between_duplicates"], 60);
    let off = Server::start_with(&["--duplicate-window-secs", "0"]);
    assert_eq!(off.get("/v1/sys/config", None).body["data"]["post"]["seconds_between_duplicates"], 0);
}

/// `update_marker=1` moves the author's "personal" marker to the new post
/// (with its `stream_marker` event); markdown links leave their label and a
/// link entity; `entities.parse_*` turn parsing off (issue 20).
#[test]
fn update_marker_markdown_links_and_parse_flags() {
    let f = fx();
    let mut ws = f.stream("m", &["stream_marker"], "");
    let p = f.s.json("POST", "/v1/posts?update_marker=1", Some(&f.alice), json!({"text": "marked"}));
    assert_eq!(p.status, 201, "{}", p.body);
    let ev = ws.next_event();
    assert_eq!(
        (ev["data"]["marker"]["name"].as_str(), ev["data"]["marker"]["id"].as_str()),
        (Some("personal"), p.body["data"]["id"].as_str()),
        "{ev}"
    );

    let md = f.post(&f.alice, json!({"text": "read [the docs](https://pnut.io/docs) now"}));
    assert_eq!(md["content"]["text"], "read the docs now");
    assert_eq!(
        md["content"]["entities"]["links"],
        json!([{"pos": 5, "len": 8, "text": "the docs", "url": "https://pnut.io/docs"}])
    );
    let plain = f.post(
        &f.alice,
        json!({"text": "[x](https://a.example) https://b.example",
               "entities": {"parse_links": false, "parse_markdown_links": false}}),
    );
    assert_eq!(plain["content"]["text"], "[x](https://a.example) https://b.example");
    assert_eq!(plain["content"]["entities"]["links"], json!([]));
    // Flat form keys work too, and text/process answers the same.
    let r = f.s.form_with_token(
        "/v1/text/process",
        &f.alice,
        &[("text", "[y](https://c.example)"), ("entities.parse_markdown_links", "0")],
    );
    assert_eq!(r.body["data"]["text"], "[y](https://c.example)", "{}", r.body);
    assert_error(
        &f.s.json(
            "POST",
            "/v1/posts",
            Some(&f.alice),
            json!({"text": "x", "entities": {"parse_links": "maybe"}}),
        ),
        400,
        "parse_links",
    );
}

/// A stream polled with `since_id` lists the posts a client may hold (ids
/// up to since_id) deleted or revised since that post was made (issue 20).
#[test]
fn polling_with_since_id_reports_deleted_and_revised_posts() {
    let f = fx();
    let old = f.post(&f.alice, json!({"text": "old one"}))["id"].as_str().unwrap().to_string();
    let kept = f.post(&f.alice, json!({"text": "kept one"}))["id"].as_str().unwrap().to_string();
    let seen = f.post(&f.alice, json!({"text": "newest seen"}))["id"].as_str().unwrap().to_string();
    assert_eq!(f.del(&format!("/v1/posts/{old}"), &f.alice).status, 200);
    let r =
        f.s.json("PUT", &format!("/v1/posts/{kept}"), Some(&f.alice), json!({"text": "kept one, revised"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let new = f.post(&f.alice, json!({"text": "brand new"}))["id"].as_str().unwrap().to_string();
    let body = f.get(&format!("/v1/users/1/posts?since_id={seen}"), None);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["id"], new.as_str());
    assert_eq!(body["meta"]["deleted_ids"], json!([old]));
    assert_eq!(body["meta"]["revised_ids"], json!([kept]));
    // Without since_id there is nothing to report.
    assert!(f.get("/v1/users/1/posts", None)["meta"].get("deleted_ids").is_none());
}
