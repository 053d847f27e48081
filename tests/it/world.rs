//! The world most stream tests share: one server, app A (alice and bob
//! authorized it), app X (only carol), and helpers to read events.

#![allow(dead_code)]

use crate::common::*;
use serde_json::{json, Value};
use std::time::Instant;

pub const PW: &str = "pw";
pub const SCOPES: &str = "stream,write_post,update_profile";

/// One server, app A (alice and bob authorized it), app X (only carol).
pub struct Fx {
    pub s: Server,

    pub tok: String,
    pub alice: String,
    pub bob: String,
    pub carol: String,
}

impl Drop for Fx {
    /// On a failure, the server's log (its last lines) helps tell why.
    fn drop(&mut self) {
        self.s.print_log_if_panicking();
    }
}

pub fn fx_with(flags: &[&str]) -> Fx {
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

pub fn fx() -> Fx {
    fx_with(&[])
}

impl Fx {
    pub fn connect(&self, key: &str, query: &str) -> Ws {
        let (ws, hello) = self.s.ws(&format!("access_token={}&key={key}{query}", self.tok));
        assert_eq!(hello["meta"]["stream"]["key"], key, "{hello}");
        ws
    }

    /// Posts `text` as the holder of `tok`; returns the post id.
    pub fn post_as(&self, tok: &str, body: Value) -> String {
        let r = self.s.json("POST", "/v1/posts", Some(tok), body);
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["data"]["id"].as_str().unwrap().to_string()
    }

    pub fn post(&self, text: &str) -> String {
        self.post_as(&self.alice, json!({ "text": text }))
    }

    pub fn set_name(&self, tok: &str, name: &str) {
        let r = self.s.json("PATCH", "/v1/users/me", Some(tok), json!({ "name": name }));
        assert_eq!(r.status, 200, "{}", r.body);
    }

    /// Creates a filter owned by the holder of `tok`; returns its id.
    pub fn filter(&self, tok: &str, policy: &str, clauses: Value) -> String {
        let r = self.s.json(
            "POST",
            "/v1/filters",
            Some(tok),
            json!({"match_policy": policy, "clauses": clauses}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["data"]["id"].as_str().unwrap().to_string()
    }

    pub fn stream_with_filter(&self, key: &str, types: &[&str], filter_id: &str) {
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
pub fn pos(ev: &Value) -> i64 {
    ev["meta"]["position"]
        .as_str()
        .unwrap_or_else(|| panic!("meta.position missing: {ev}"))
        .parse()
        .unwrap_or_else(|_| panic!("meta.position not numeric: {ev}"))
}

/// The id of a post event's post.
pub fn post_id(ev: &Value) -> String {
    assert_eq!(ev["meta"]["type"], "post", "{ev}");
    ev["data"][0]["id"].as_str().unwrap().to_string()
}

/// The next message, which must be an event (not a control message).
pub fn event(ws: &mut Ws) -> Value {
    let v = ws.next_json().unwrap();
    assert!(v["meta"].get("control").is_none(), "unexpected control message: {v}");
    assert!(v["meta"]["type"].is_string(), "not an event: {v}");
    v
}

/// The next message, which must be a control message of `kind`.
pub fn control(ws: &mut Ws, kind: &str) -> Value {
    let v = ws.next_json().unwrap();
    assert_eq!(v["meta"]["control"]["type"], kind, "expected a {kind} control message: {v}");
    assert!(v.get("data").is_none() && v["meta"].get("type").is_none(), "{v}");
    v["meta"]["control"].clone()
}

/// Reads `n` post events; asserts positions strictly increase; returns
/// (post ids, positions).
pub fn posts(ws: &mut Ws, n: usize) -> (Vec<String>, Vec<i64>) {
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
pub fn close(mut ws: Ws) {
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

pub fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
