//! App stream management: /v1/streams exactly as pnut defines it.

use crate::common::*;
use serde_json::{json, Value};

fn setup() -> (Server, String, String) {
    let s = Server::start();
    s.add_user("alice", "pw");
    let app = s.add_app("one");
    let t = s.app_token(&app);
    let ut = s.user_token(&app, "alice", "pw", "stream");
    (s, t, ut)
}

fn assert_error(r: &Resp, status: u16, needles: &[&str]) {
    crate::common::assert_error(r, status, "");
    for n in needles {
        crate::common::assert_error(r, status, n);
    }
}

fn endpoint(s: &Server) -> String {
    format!("ws://{}/v1/app", s.stream_addr)
}

#[test]
fn create_get_list_update_delete_shapes() {
    let (s, t, _) = setup();
    let r = s.json(
        "POST",
        "/v1/streams",
        Some(&t),
        json!({"type": "long_poll", "object_types": ["post", "message", "post"], "key": "butterball"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["meta"], json!({"code": 200}));
    let expected = json!({
        "key": "butterball",
        "object_types": ["post", "message"],
        "endpoint": endpoint(&s),
        "type": "long_poll"
    });
    assert_eq!(r.body["data"], expected);
    assert_eq!(s.get("/v1/streams/butterball", Some(&t)).body["data"], expected);
    assert_eq!(s.get("/v1/streams", Some(&t)).body["data"], json!([expected]));
    assert_eq!(s.get("/v1/streams?key=butterball", Some(&t)).body["data"], json!([expected]));
    assert_eq!(s.get("/v1/streams?key=other", Some(&t)).body["data"], json!([]));

    // PUT changes object_types; the stream's own key renames nothing (a new
    // key renames it: put_with_a_new_key_renames_the_stream).
    let r = s.json(
        "PUT",
        "/v1/streams/butterball",
        Some(&t),
        json!({"object_types": ["bookmark"], "key": "butterball", "type": "long_poll"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["key"], "butterball");
    assert_eq!(r.body["data"]["object_types"], json!(["bookmark"]));
    assert_eq!(s.get("/v1/streams/butterball", Some(&t)).body["data"]["object_types"], json!(["bookmark"]));

    let d = s.call("DELETE", "/v1/streams/butterball", Some(&t), None);
    assert_eq!(d.status, 200);
    assert_eq!(d.body["data"]["is_deleted"], true);
    assert_eq!(d.body["data"]["key"], "butterball");
    assert_eq!(d.body["data"]["object_types"], json!(["bookmark"]));
    assert_error(&s.get("/v1/streams/butterball", Some(&t)), 404, &["Stream not found"]);
    // The key can be reused.
    assert_eq!(s.create_stream(&t, "butterball", &["user"]), "butterball");
}

#[test]
fn assigned_keys_are_numeric_and_delete_all_lists_them() {
    let (s, t, _) = setup();
    let mut keys = Vec::new();
    for _ in 0..2 {
        let r =
            s.json("POST", "/v1/streams", Some(&t), json!({"type": "long_poll", "object_types": ["post"]}));
        assert_eq!(r.status, 200, "{}", r.body);
        keys.push(r.body["data"]["key"].as_str().unwrap().to_string());
    }
    assert_eq!(keys, vec!["1", "2"]);
    let d = s.call("DELETE", "/v1/streams", Some(&t), None);
    assert_eq!(d.status, 200);
    let list = d.body["data"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|x| x["is_deleted"] == true));
    assert_eq!(s.get("/v1/streams", Some(&t)).body["data"], json!([]));
    let d = s.call("DELETE", "/v1/streams", Some(&t), None);
    assert_eq!(d.body["data"], json!([]), "deleting none is an empty list");
}

#[test]
fn validation_errors_name_the_field() {
    let (s, t, _) = setup();
    let post = |body: Value| s.json("POST", "/v1/streams", Some(&t), body);
    assert_error(
        &post(json!({"type": "long_poll", "object_types": ["post", "stars"]})),
        400,
        &["object_types", "stars"],
    );
    assert_error(&post(json!({"type": "long_poll", "object_types": []})), 400, &["object_types", "empty"]);
    assert_error(&post(json!({"type": "long_poll", "object_types": "post"})), 400, &["object_types"]);
    assert_error(&post(json!({"type": "long_poll"})), 400, &["object_types"]);
    assert_error(&post(json!({"type": "short_poll", "object_types": ["post"]})), 400, &["type", "long_poll"]);
    assert_error(&post(json!({"object_types": ["post"]})), 400, &["type"]);
    assert_error(
        &post(json!({"type": "long_poll", "object_types": ["post"], "key": "bad-key"})),
        400,
        &["key", "bad-key"],
    );
    assert_error(
        &post(json!({"type": "long_poll", "object_types": ["post"], "key": "k".repeat(33)})),
        400,
        &["key"],
    );
    assert_error(&post(json!({"type": "long_poll", "object_types": ["post"], "key": 7})), 400, &["key"]);
    s.create_stream(&t, "taken", &["post"]);
    assert_error(
        &post(json!({"type": "long_poll", "object_types": ["post"], "key": "taken"})),
        400,
        &["key", "taken"],
    );
    let r = s.call(
        "POST",
        "/v1/streams",
        Some(&t),
        Some(("application/x-www-form-urlencoded", "type=long_poll")),
    );
    assert_error(&r, 400, &["application/json"]);
    let r = s.call("POST", "/v1/streams", Some(&t), Some(("application/json", "{\"type\": [")));
    assert_error(&r, 400, &["JSON"]);
    let r = s.json("PUT", "/v1/streams/taken", Some(&t), json!({"object_types": ["nope"]}));
    assert_error(&r, 400, &["object_types", "nope"]);
    let r = s.json("PUT", "/v1/streams/taken", Some(&t), json!({"object_types": ["post"], "type": "other"}));
    assert_error(&r, 400, &["type"]);
    // Nothing of the failed requests was written.
    assert_eq!(s.get("/v1/streams", Some(&t)).body["data"].as_array().unwrap().len(), 1);
    assert_eq!(s.get("/v1/streams/taken", Some(&t)).body["data"]["object_types"], json!(["post"]));
}

#[test]
fn body_over_the_cap_is_413() {
    let s = Server::start_with(&["--max-body", "1024"]);
    let app = s.add_app("one");
    let t = s.app_token(&app);
    let types: Vec<&str> = std::iter::repeat_n("post", 400).collect();
    let r = s.json("POST", "/v1/streams", Some(&t), json!({"type": "long_poll", "object_types": types}));
    assert_error(&r, 413, &["1024"]);
    assert_eq!(s.get("/v1/streams", Some(&t)).body["data"], json!([]));
}

#[test]
fn app_tokens_only() {
    let (s, t, ut) = setup();
    s.create_stream(&t, "k", &["post"]);
    for (m, p) in [
        ("GET", "/v1/streams"),
        ("GET", "/v1/streams/k"),
        ("DELETE", "/v1/streams/k"),
        ("DELETE", "/v1/streams"),
    ] {
        let r = s.call(m, p, None, None);
        assert_error(&r, 401, &[]);
        let r = s.call(m, p, Some(&ut), None);
        assert_error(&r, 403, &["app token"]);
    }
    let r = s.json("POST", "/v1/streams", Some(&ut), json!({"type": "long_poll", "object_types": ["post"]}));
    assert_error(&r, 403, &["app token"]);
    let r = s.json("PUT", "/v1/streams/k", Some(&ut), json!({"object_types": ["user"]}));
    assert_error(&r, 403, &["app token"]);
    assert_eq!(s.get("/v1/streams/k", Some(&t)).body["data"]["object_types"], json!(["post"]));
}

#[test]
fn five_streams_at_most_even_under_concurrent_posts() {
    let (s, t, _) = setup();
    let results: Vec<u16> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    s.json(
                        "POST",
                        "/v1/streams",
                        Some(&t),
                        json!({"type": "long_poll", "object_types": ["post"]}),
                    )
                    .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|c| **c == 200).count(), 5, "{results:?}");
    assert_eq!(results.iter().filter(|c| **c == 400).count(), 3, "{results:?}");
    assert_eq!(s.get("/v1/streams", Some(&t)).body["data"].as_array().unwrap().len(), 5);
    let r = s.json(
        "POST",
        "/v1/streams",
        Some(&t),
        json!({"type": "long_poll", "object_types": ["post"], "key": "sixth"}),
    );
    assert_error(&r, 400, &["maximum of 5"]);
    assert_error(&s.get("/v1/streams/sixth", Some(&t)), 404, &[]);
}

#[test]
fn apps_are_isolated() {
    let (s, ta, _) = setup();
    let app_b = s.add_app("two");
    let tb = s.app_token(&app_b);
    s.create_stream(&ta, "shared", &["post"]);
    s.create_stream(&ta, "only_a", &["post"]);
    // The same key may exist in both apps.
    s.create_stream(&tb, "shared", &["user"]);
    assert_eq!(s.get("/v1/streams", Some(&tb)).body["data"].as_array().unwrap().len(), 1);
    assert_eq!(s.get("/v1/streams/shared", Some(&tb)).body["data"]["object_types"], json!(["user"]));
    let missing = s.get("/v1/streams/does_not_exist", Some(&tb));
    for r in [
        s.get("/v1/streams/only_a", Some(&tb)),
        s.json("PUT", "/v1/streams/only_a", Some(&tb), json!({"object_types": ["user"]})),
        s.call("DELETE", "/v1/streams/only_a", Some(&tb), None),
    ] {
        assert_error(&r, 404, &["Stream not found"]);
        assert_eq!(
            r.body["meta"]["error_message"].as_str().unwrap().replace("only_a", "X"),
            missing.body["meta"]["error_message"].as_str().unwrap().replace("does_not_exist", "X"),
            "another app's key looks exactly like a missing one"
        );
    }
    let d = s.call("DELETE", "/v1/streams", Some(&tb), None);
    assert_eq!(d.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(s.get("/v1/streams", Some(&ta)).body["data"].as_array().unwrap().len(), 2);
    assert_eq!(s.get("/v1/streams/only_a", Some(&ta)).body["data"]["object_types"], json!(["post"]));
}

#[test]
fn streams_survive_a_restart() {
    let (mut s, t, _) = setup();
    s.create_stream(&t, "durable", &["post", "user"]);
    s.restart();
    let r = s.get("/v1/streams/durable", Some(&t));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["object_types"], json!(["post", "user"]));
    assert_eq!(r.body["data"]["endpoint"], endpoint(&s), "endpoint follows the new listener");
}

/// phpnut's stock createStream() and updateStream() work unchanged: they
/// send App.net's type names, and delete with a form Content-Type and an
/// empty body. The stream object shows pnut's names; a follow reaches it.
#[test]
fn phpnut_stock_create_update_and_delete_work() {
    let s = Server::start();
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let app = s.add_app("one");
    let t = s.app_token(&app);
    let alice = s.user_token(&app, "alice", "pw", "stream,follow");
    s.user_token(&app, "bob", "pw", "stream,follow");
    let phpnut = json!({"object_types": ["post", "bookmark", "user_follow"], "type": "long_poll"});
    let r = s.json("POST", "/v1/streams", Some(&t), phpnut);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["object_types"], json!(["post", "bookmark", "follow"]));
    let key = r.body["data"]["key"].as_str().unwrap().to_string();
    let update = json!({"object_types": ["post", "star", "user_follow"], "type": "long_poll"});
    let r = s.json("PUT", &format!("/v1/streams/{key}"), Some(&t), update);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["object_types"], json!(["post", "bookmark", "follow"]));
    // A follow between two users who authorized the app arrives as `follow`.
    let (mut ws, _) = s.ws(&format!("access_token={t}&key={key}"));
    let r = s.call("PUT", "/v1/users/@bob/follow", Some(&alice), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ws.next_event()["meta"]["type"], "follow");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = s.call_h("DELETE", &format!("/v1/streams/{key}"), Some(&t), None, &form);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.get(&format!("/v1/streams/{key}"), Some(&t)).status, 404);
}

/// `PUT` with a new `key` renames the stream (App.net lists `key` among the
/// fields a PUT uses): live connections stay attached and hear it in a
/// `stream_updated` control message; a taken or invalid key is a 400 that
/// changes nothing.
#[test]
fn put_with_a_new_key_renames_the_stream() {
    let s = Server::start();
    s.add_user("alice", "pw");
    let app = s.add_app("one");
    let t = s.app_token(&app);
    let alice = s.user_token(&app, "alice", "pw", "update_profile");
    let mk = |key: &str| {
        let r = s.json(
            "POST",
            "/v1/streams",
            Some(&t),
            json!({"type": "long_poll", "object_types": ["user"], "key": key}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };
    mk("old");
    mk("other");
    let (mut ws, _) = s.ws(&format!("access_token={t}&key=old"));
    let put = |key: Value| {
        s.json("PUT", "/v1/streams/old", Some(&t), json!({"object_types": ["user"], "key": key}))
    };
    assert_error(&put(json!("other")), 400, &["key", "already taken"]);
    assert_error(&put(json!("bad key!")), 400, &["key", "not valid"]);
    let r = put(json!("renamed"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["key"], "renamed");
    assert_eq!(s.get("/v1/streams/old", Some(&t)).status, 404);
    assert_eq!(s.get("/v1/streams/renamed", Some(&t)).body["data"]["key"], "renamed");
    let control = ws.next_json().unwrap();
    assert_eq!(control["meta"]["control"]["type"], "stream_updated", "{control}");
    assert_eq!(control["meta"]["control"]["key"], "renamed", "{control}");
    // Still attached: a profile change reaches it.
    let u = s.json("PATCH", "/v1/users/me", Some(&alice), json!({"name": "Al"}));
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(ws.next_event()["meta"]["type"], "user");
}
