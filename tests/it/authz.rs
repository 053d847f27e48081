//! Authorization at delivery time and final deletion (issue 16, points 4,
//! 5, 10 and the scope and file parts of 11): what an app or a user sees
//! after a revocation, an ACL change or a deletion, on every path.

use crate::common::*;
use serde_json::{json, Value};

const PW: &str = "pw";

/// One server; app A (alice authorized it with `messages`), app X (bob and
/// carol write through it).
#[allow(dead_code)] // filled in by the later steps of this file
struct Fx {
    s: Server,
    /// App A's client id and secret.
    app: (String, String),
    /// App A's app token.
    tok: String,
    alice: String,
    bob: String,
    carol: String,
    alice_id: String,
    bob_id: String,
}

impl Drop for Fx {
    fn drop(&mut self) {
        self.s.print_log_if_panicking();
    }
}

fn fx_with(flags: &[&str]) -> Fx {
    let s = Server::start_with(flags);
    let alice_id = s.add_user("alice", PW);
    let bob_id = s.add_user("bob", PW);
    s.add_user("carol", PW);
    let app = s.add_app("A");
    let other = s.add_app("X");
    let tok = s.app_token(&app);
    let scopes = "stream,write_post,messages,files,polls";
    let alice = s.user_token(&app, "alice", PW, scopes);
    let bob = s.user_token(&other, "bob", PW, scopes);
    let carol = s.user_token(&other, "carol", PW, scopes);
    Fx { s, app, tok, alice, bob, carol, alice_id, bob_id }
}

impl Fx {
    fn ok(&self, method: &str, path: &str, tok: &str, body: Value) -> Value {
        let r = self.s.json(method, path, Some(tok), body);
        assert!(r.status == 200 || r.status == 201, "{method} {path}: {} {}", r.status, r.body);
        r.body["data"].clone()
    }

    fn post(&self, tok: &str, body: Value) -> String {
        self.ok("POST", "/v1/posts", tok, body)["id"].as_str().unwrap().to_string()
    }

    /// A PM from the holder of `tok` to `to`; returns (channel id, message id).
    fn pm(&self, tok: &str, to: &str, text: &str) -> (String, String) {
        let m = self.ok("POST", "/v1/channels/pm/messages", tok, json!({"destinations": [to], "text": text}));
        (m["channel_id"].as_str().unwrap().to_string(), m["id"].as_str().unwrap().to_string())
    }
}

/// Reads events until a post whose text is `marker`; returns the events
/// before it (control messages skipped). Bounded by the harness deadline
/// per read and by `max` events.
fn events_until(ws: &mut Ws, marker: &str, max: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..max {
        let v = ws.next_json().unwrap();
        if v["meta"].get("control").is_some() {
            continue;
        }
        if v["meta"]["type"] == "post" && v["data"][0]["content"]["text"] == marker {
            return out;
        }
        out.push(v);
    }
    panic!("no marker {marker:?} within {max} events");
}

/// Issue 16 point 4: an app that keeps itself in replay (it reads slowly)
/// gets none of the PMs sent to a user after that user revoked it. Before,
/// the replay checked a copy of the grants loaded when the connection
/// opened, and delivered every one of them.
#[test]
fn a_revocation_applies_to_the_replay_of_a_slow_reader() {
    let f = fx_with(&["--conn-backlog-bytes", "65536"]);
    f.s.create_stream(&f.tok, "k", &["post", "message"]);
    let filler = "x".repeat(8000);
    let big = |i: usize| json!({"text": format!("p{i}"), "raw": {"com.example.fill": [{"f": filler}]}});
    // ~800 KB queued: more than the kernel buffers and half the backlog,
    // so the replay cannot finish while the client reads nothing.
    for i in 0..100 {
        f.post(&f.alice, big(i));
    }
    let mut ws = small_buffer_ws(&f.s.stream_addr, &format!("access_token={}&key=k&include_raw=1", f.tok));
    assert!(ws.next_json().unwrap()["meta"]["connection_id"].is_string());
    // Alice revokes app A while its stream is still replaying.
    assert_eq!(f.s.call("DELETE", "/v1/token", Some(&f.alice), None).status, 200);
    for i in 0..20 {
        f.pm(&f.bob, "@alice", &format!("secret {i}"));
    }
    // Live posts worth more than the backlog: the held live events
    // overflow, so the replay takes another round over the log, PMs
    // included.
    for i in 100..110 {
        f.post(&f.bob, big(i));
    }
    f.post(&f.bob, json!({"text": "marker"}));
    let got = events_until(&mut ws, "marker", 1000);
    let messages: Vec<&Value> = got.iter().filter(|v| v["meta"]["type"] == "message").collect();
    assert!(
        messages.is_empty(),
        "{} PMs reached the app after the revocation: {}",
        messages.len(),
        messages[0]
    );
    assert_eq!(got.iter().filter(|v| v["meta"]["type"] == "post").count(), 110, "every post arrived");
}

/// Events of a fresh stream on app A replayed from `position=0`, up to a
/// marker post made now.
fn replay_all(f: &Fx, key: &str, types: &[&str]) -> Vec<Value> {
    let types: Vec<&str> = types.iter().copied().chain(["post"]).collect();
    f.s.create_stream(&f.tok, key, &types);
    f.post(&f.bob, json!({"text": "marker"}));
    let (mut ws, _) = f
        .s
        .ws(&format!("access_token={}&key={key}&position=0&include_raw=1&include_recent_message=1", f.tok));
    events_until(&mut ws, "marker", 1000)
}

/// Issue 16 point 10: a post deleted by its author is not replayed with its
/// text to a stream created later with `?position=0`: not its own events,
/// not a repost's (which embeds it), not a bookmark's.
#[test]
fn a_deleted_post_is_replayed_without_its_text() {
    let f = fx_with(&[]);
    let id = f
        .post(&f.alice, json!({"text": "secret post text", "raw": {"com.example.x": [{"k": "secret raw"}]}}));
    f.ok("PUT", &format!("/v1/posts/{id}/bookmark"), &f.bob, json!({}));
    f.ok("PUT", &format!("/v1/posts/{id}/repost"), &f.carol, json!({}));
    f.ok("DELETE", &format!("/v1/posts/{id}"), &f.alice, json!({}));
    let got = replay_all(&f, "k", &["bookmark"]);
    let leaked: Vec<&Value> = got.iter().filter(|v| v.to_string().contains("secret")).collect();
    assert!(
        leaked.is_empty(),
        "{} replayed events still carry the deleted post: {}",
        leaked.len(),
        leaked[0]
    );
    let first = got.iter().find(|v| v["meta"]["type"] == "post" && v["meta"]["id"] == id.as_str()).unwrap();
    assert_eq!(first["data"][0]["is_deleted"], true, "{first}");
    assert_eq!(got.iter().filter(|v| v["meta"]["type"] == "bookmark").count(), 1);
    let repost = got.iter().find(|v| v["data"][0]["repost_of"]["id"] == id.as_str()).unwrap();
    assert_eq!(repost["data"][0]["repost_of"]["is_deleted"], true, "{repost}");
}

/// Issue 16 point 10: a PM deleted before its recipient authorized an app
/// is not replayed to that app with its text.
#[test]
fn a_pm_deleted_before_the_app_was_authorized_is_replayed_without_its_text() {
    let f = fx_with(&[]);
    let (ch, mid) = f.pm(&f.bob, "@carol", "secret pm text");
    f.ok("DELETE", &format!("/v1/channels/{ch}/messages/{mid}"), &f.bob, json!({}));
    // Carol authorizes app A only now.
    f.s.user_token(&f.app, "carol", PW, "messages");
    let got = replay_all(&f, "k", &["message", "channel", "channel_subscription"]);
    let leaked: Vec<&Value> = got.iter().filter(|v| v.to_string().contains("secret")).collect();
    assert!(leaked.is_empty(), "{} replayed events still carry the deleted PM: {}", leaked.len(), leaked[0]);
    let msgs: Vec<&Value> = got.iter().filter(|v| v["meta"]["type"] == "message").collect();
    assert_eq!(msgs.len(), 2, "the PM and its deletion: {msgs:?}");
    assert!(msgs.iter().all(|m| m["data"][0]["is_deleted"] == true), "{msgs:?}");
}

/// A deleted message that was its channel's recent message is redacted in
/// the channel events that showed it too.
#[test]
fn a_deleted_message_is_redacted_in_the_channel_events_that_showed_it() {
    let f = fx_with(&[]);
    let acl = json!({"read": {"user_ids": [f.alice_id]}});
    let ch = f.ok("POST", "/v1/channels", &f.bob, json!({"type": "com.example.room", "acl": acl}));
    let ch = ch["id"].as_str().unwrap().to_string();
    let m =
        f.ok("POST", &format!("/v1/channels/{ch}/messages"), &f.bob, json!({"text": "secret recent text"}));
    let mid = m["id"].as_str().unwrap().to_string();
    // A channel event now shows the message as the recent one.
    f.ok("PUT", &format!("/v1/channels/{ch}"), &f.bob, json!({"raw": {"com.example.x": [{}]}}));
    f.ok("DELETE", &format!("/v1/channels/{ch}/messages/{mid}"), &f.bob, json!({}));
    let got = replay_all(&f, "k", &["message", "channel", "channel_subscription"]);
    assert!(
        got.iter()
            .any(|v| v["meta"]["type"] == "channel" && v["data"]["recent_message"]["id"] == mid.as_str()),
        "a channel event shows the message: {:?}",
        got.iter()
            .map(|v| (v["meta"]["type"].clone(), v["data"]["recent_message"]["id"].clone()))
            .collect::<Vec<_>>()
    );
    let leaked: Vec<&Value> = got.iter().filter(|v| v.to_string().contains("secret")).collect();
    assert!(
        leaked.is_empty(),
        "{} replayed events still carry the deleted message: {}",
        leaked.len(),
        leaked[0]
    );
}

/// Issue 16 point 11 (scopes): a `public_messages` token does not reach
/// PMs, its user's own included, by any read path, and cannot post into
/// one; it does reach the user's other channels. `messages` reaches both.
#[test]
fn public_messages_does_not_reach_pms_on_any_path() {
    let f = fx_with(&[]);
    let (pm, mid) = f.pm(&f.alice, "@bob", "private words");
    let acl = json!({"read": {"user_ids": [f.bob_id]}, "write": {"user_ids": [f.bob_id]}});
    let room = f.ok("POST", "/v1/channels", &f.alice, json!({"type": "com.example.room", "acl": acl}));
    let room = room["id"].as_str().unwrap().to_string();
    let rm = f.ok("POST", &format!("/v1/channels/{room}/messages"), &f.alice, json!({"text": "room words"}));
    let rmid = rm["id"].as_str().unwrap().to_string();
    let public = f.s.user_token(&f.s.add_app("P"), "alice", PW, "public_messages");

    // Reads: one message by id, a list of ids, the channel, its messages,
    // the author's own messages, the inbox.
    assert_error(&f.s.get(&format!("/v1/channels/{pm}/messages/{mid}"), Some(&public)), 403, "channel");
    let many = f.s.get(&format!("/v1/channels/messages?ids={mid},{rmid}"), Some(&public));
    assert_eq!(many.status, 200, "{}", many.body);
    let ids: Vec<&str> =
        many.body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [rmid.as_str()], "only the room's message: {}", many.body);
    assert_eq!(f.s.get(&format!("/v1/channels/{pm}"), Some(&public)).status, 403);
    assert_eq!(f.s.get(&format!("/v1/channels/{pm}/messages"), Some(&public)).status, 403);
    let mine = f.s.get("/v1/users/me/messages", Some(&public));
    assert_eq!(mine.status, 200, "{}", mine.body);
    let ids: Vec<&str> =
        mine.body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [rmid.as_str()], "{}", mine.body);
    let inbox = f.s.get("/v1/users/me/channels/subscribed", Some(&public));
    let chans: Vec<&str> =
        inbox.body["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(chans, [room.as_str()], "{}", inbox.body);
    // Writes: not into the PM, by id or by the PM shortcut; into the room.
    let r = f.s.json("POST", &format!("/v1/channels/{pm}/messages"), Some(&public), json!({"text": "x"}));
    assert_error(&r, 403, "io.pnut.core.pm");
    let r = f.s.json(
        "POST",
        "/v1/channels/pm/messages",
        Some(&public),
        json!({"destinations": ["@bob"], "text": "x"}),
    );
    assert_error(&r, 403, "io.pnut.core.pm");
    let r = f.s.json("POST", &format!("/v1/channels/{room}/messages"), Some(&public), json!({"text": "ok"}));
    assert_eq!(r.status, 201, "{}", r.body);
    // The full scope reaches the PM.
    let full = f.s.get(&format!("/v1/channels/{pm}/messages/{mid}"), Some(&f.alice));
    assert_eq!(full.body["data"]["content"]["text"], "private words", "{}", full.body);
}

/// The same rule on the stream: an app whose only user granted
/// `public_messages` gets that user's room messages, never their PMs.
#[test]
fn a_public_messages_grant_brings_no_pm_events() {
    let f = fx_with(&[]);
    let app = f.s.add_app("P");
    let tok = f.s.app_token(&app);
    f.s.user_token(&app, "bob", PW, "public_messages");
    f.s.create_stream(&tok, "k", &["message", "post"]);
    let (mut ws, _) = f.s.ws(&format!("access_token={tok}&key=k"));
    let acl = json!({"read": {"user_ids": [f.bob_id]}});
    let room = f.ok("POST", "/v1/channels", &f.alice, json!({"type": "com.example.room", "acl": acl}));
    let room = room["id"].as_str().unwrap().to_string();
    f.pm(&f.alice, "@bob", "private words");
    f.ok("POST", &format!("/v1/channels/{room}/messages"), &f.alice, json!({"text": "room words"}));
    f.post(&f.alice, json!({"text": "marker"}));
    let got = events_until(&mut ws, "marker", 100);
    let texts: Vec<&Value> = got.iter().map(|v| &v["data"][0]["content"]["text"]).collect();
    assert_eq!(texts, [&json!("room words")], "{got:?}");
}

/// Issue 16 point 5: once the owner removes bob from a private channel's
/// ACL, bob stops seeing it everywhere: his inbox (with its recent message
/// and unread counts), the answer to `DELETE …/subscribe` (now a 403), his
/// app's stream (it hears that the subscription ended, then nothing of the
/// channel, and a replay from the start leaves out its earlier messages).
#[test]
fn a_user_removed_from_a_channel_stops_seeing_it_everywhere() {
    let f = fx_with(&[]);
    let bapp = f.s.add_app("B");
    let btok = f.s.app_token(&bapp);
    let bob = f.s.user_token(&bapp, "bob", PW, "messages");
    f.s.create_stream(&btok, "k", &["message", "channel_subscription", "post"]);
    let (mut ws, _) = f.s.ws(&format!("access_token={btok}&key=k"));
    let acl = json!({"read": {"user_ids": [f.bob_id]}});
    let ch = f.ok("POST", "/v1/channels", &f.alice, json!({"type": "com.example.room", "acl": acl}));
    let ch = ch["id"].as_str().unwrap().to_string();
    f.ok("PUT", &format!("/v1/channels/{ch}/subscribe"), &bob, json!({}));
    f.ok("POST", &format!("/v1/channels/{ch}/messages"), &f.alice, json!({"text": "before"}));
    let inbox = f.s.get("/v1/users/me/channels/subscribed?include_recent_message=1", Some(&bob));
    assert_eq!(inbox.body["data"][0]["recent_message"]["content"]["text"], "before", "{}", inbox.body);

    f.ok("PUT", &format!("/v1/channels/{ch}"), &f.alice, json!({"acl": {"read": {"user_ids": []}}}));
    f.ok("POST", &format!("/v1/channels/{ch}/messages"), &f.alice, json!({"text": "after"}));
    let inbox = f.s.get("/v1/users/me/channels/subscribed?include_recent_message=1", Some(&bob));
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    assert_eq!(inbox.body["data"], json!([]), "{}", inbox.body);
    assert_eq!(inbox.body["meta"]["unread_counts"]["com.example.room"], json!(null), "{}", inbox.body);
    let n = f.s.get("/v1/users/me/channels/num_unread?channel_types=com.example.room", Some(&bob));
    assert_eq!(n.body["data"]["com.example.room"], 0, "{}", n.body);
    assert_error(&f.s.call("DELETE", &format!("/v1/channels/{ch}/subscribe"), Some(&bob), None), 403, "read");
    assert_error(&f.s.get(&format!("/v1/channels/{ch}/messages"), Some(&bob)), 403, "read");

    // The live stream: bob subscribed, the first message, the end of the
    // subscription, and nothing of the message after it.
    f.post(&f.alice, json!({"text": "marker"}));
    let got = events_until(&mut ws, "marker", 100);
    let kinds: Vec<(String, bool)> = got
        .iter()
        .map(|v| (v["meta"]["type"].as_str().unwrap().to_string(), v["meta"]["is_deleted"] == true))
        .collect();
    let want = [("channel_subscription", false), ("message", false), ("channel_subscription", true)];
    assert_eq!(kinds, want.map(|(k, d)| (k.to_string(), d)), "{got:?}");
    // A replay from the start leaves out the channel's messages too.
    let (mut ws, _) = f.s.ws(&format!("access_token={btok}&key=k&position=0"));
    let got = events_until(&mut ws, "marker", 100);
    assert!(got.iter().all(|v| v["meta"]["type"] != "message"), "{got:?}");
}
