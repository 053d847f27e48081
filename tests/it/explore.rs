//! Explore streams, reports, `GET /v1/sys/stats` (issue 20).

use crate::common::*;
use serde_json::{json, Value};

type Fx = Trio;

fn fx() -> Fx {
    trio("stream,write_post,follow,messages")
}

impl Fx {
    fn ids(&self, path: &str, tok: Option<&str>) -> Vec<String> {
        let r = self.s.get(path, tok);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.body["data"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_string()).collect()
    }
}

#[test]
fn the_post_explore_streams() {
    let f = fx();
    let list = f.s.get("/v1/posts/streams/explore", None);
    let slugs: Vec<&str> =
        list.body["data"].as_array().unwrap().iter().map(|s| s["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["conversations", "photos", "trending", "missed_conversations", "moderated"]);
    assert!(list.body["data"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with("/v1/posts/streams/explore/conversations"));

    let quiet = f.post(&f.alice, json!({"text": "nobody answers this"}));
    let talked = f.post(&f.alice, json!({"text": "what do you think?"}));
    f.post(&f.bob, json!({"text": "I think so", "reply_to": talked}));
    let photo = f.post(
        &f.carol,
        json!({"text": "look", "raw": {"io.pnut.core.oembed": [{"type": "photo", "version": "1.0", "width": 10, "height": 10,
              "url": "https://example.com/a.png", "provider_name": "x", "provider_url": "https://example.com"}]}}),
    );
    f.ok("PUT", &format!("/v1/posts/{talked}/bookmark"), &f.carol, json!({}));
    f.ok("PUT", &format!("/v1/posts/{quiet}/bookmark"), &f.bob, json!({}));

    assert_eq!(f.ids("/v1/posts/streams/explore/conversations", None), [talked.as_str()]);
    assert_eq!(f.ids("/v1/posts/streams/explore/photos", None), [photo.as_str()]);
    // Trending: most done to it first (reply + bookmark, then a bookmark).
    assert_eq!(f.ids("/v1/posts/streams/explore/trending", None), [talked.as_str(), quiet.as_str()]);
    // Missed: carol follows bob, who answered alice; carol took no part.
    assert_error(&f.s.get("/v1/posts/streams/explore/missed_conversations", None), 401, "user token");
    f.ok("PUT", "/v1/users/2/follow", &f.carol, json!({}));
    assert_eq!(f.ids("/v1/posts/streams/explore/missed_conversations", Some(&f.carol)), [talked.as_str()]);
    assert!(f.ids("/v1/posts/streams/explore/missed_conversations", Some(&f.bob)).is_empty());
    // Moderated: a reported post leaves it.
    let all = f.ids("/v1/posts/streams/explore/moderated", None);
    assert!(all.contains(&quiet), "{all:?}");
    let r =
        f.s.json("POST", &format!("/v1/posts/{quiet}/report"), Some(&f.bob), json!({"reason": "soliciting"}));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["data"]["id"], quiet.as_str());
    assert!(!f.ids("/v1/posts/streams/explore/moderated", None).contains(&quiet));
    // Blocked authors are left out as in the other streams; deleted posts too.
    f.ok("PUT", "/v1/users/1/block", &f.carol, json!({}));
    assert!(f.ids("/v1/posts/streams/explore/conversations", Some(&f.carol)).is_empty());
    f.ok("DELETE", &format!("/v1/posts/{photo}"), &f.carol, json!({}));
    assert!(f.ids("/v1/posts/streams/explore/photos", None).is_empty());
    assert_error(&f.s.get("/v1/posts/streams/explore/nope", None), 404, "No explore stream 'nope'");
}

#[test]
fn the_channel_explore_streams_show_public_channels_only() {
    let f = fx();
    let mk = |acl: Value| {
        let raw = json!({"io.pnut.core.chat-settings": [{"name": "Room"}]});
        f.ok("POST", "/v1/channels", &f.alice, json!({"type": "io.pnut.core.chat", "acl": acl, "raw": raw}))
            ["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let old = mk(json!({"read": {"public": true}}));
    let newer = mk(json!({"read": {"public": true}}));
    let _private = mk(json!({"read": {"user_ids": ["3"]}}));
    f.ok("POST", &format!("/v1/channels/{old}/messages"), &f.alice, json!({"text": "still here"}));
    assert_eq!(
        f.ids("/v1/channels/streams/explore/conversations", Some(&f.carol)),
        [old.as_str(), newer.as_str()]
    );
    assert_eq!(f.ids("/v1/channels/streams/explore/new", None), [newer.as_str(), old.as_str()]);
    let list = f.s.get("/v1/channels/streams/explore", None);
    assert_eq!(list.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(f.s.get("/v1/channels/streams/explore/x", None).status, 404);
}

#[test]
fn reports_are_kept_for_the_operator() {
    let f = fx();
    let p = f.post(&f.alice, json!({"text": "buy my stuff"}));
    let path = format!("/v1/posts/{p}/report");
    assert_error(&f.s.json("POST", &path, Some(&f.bob), json!({})), 400, "reason: required");
    assert_error(&f.s.json("POST", &path, Some(&f.bob), json!({"reason": "meh"})), 400, "reason: 'meh'");
    assert_error(&f.s.json("POST", &path, Some(&f.alice), json!({"reason": "nsfw"})), 400, "your own post");
    assert_eq!(f.s.call("POST", &format!("{path}?reason=nsfw"), Some(&f.bob), None).status, 201);
    // Reporting again replaces the reason: one report per reporter.
    assert_eq!(f.s.json("POST", &path, Some(&f.bob), json!({"reason": "soliciting"})).status, 201);
    let ch = f.ok(
        "POST",
        "/v1/channels",
        &f.alice,
        json!({"type": "io.pnut.core.chat", "acl": {"read": {"public": true}},
               "raw": {"io.pnut.core.chat-settings": [{"name": "Market"}]}}),
    );
    let cid = ch["id"].as_str().unwrap();
    let m = f.ok("POST", &format!("/v1/channels/{cid}/messages"), &f.alice, json!({"text": "spam"}));
    let mpath = format!("/v1/channels/{cid}/messages/{}/report", m["id"].as_str().unwrap());
    let r = f.s.json("POST", &mpath, Some(&f.carol), json!({"reason": "user_abuse"}));
    assert_eq!((r.status, &r.body["data"]["content"]["text"]), (201, &json!("spam")), "{}", r.body);
    let out: Value = serde_json::from_str(&f.s.admin(&["reports", "list"], "")).unwrap();
    let got: Vec<(String, String, String)> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap().into(),
                r["reporter"].as_str().unwrap().into(),
                r["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("message".into(), "carol".into(), "user_abuse".into()),
            ("post".into(), "bob".into(), "soliciting".into())
        ]
    );
}

#[test]
fn sys_stats_counts_the_network() {
    let f = fx();
    let p = f.post(&f.alice, json!({"text": "one"}));
    f.post(&f.bob, json!({"text": "two"}));
    f.ok("PUT", &format!("/v1/posts/{p}/repost"), &f.carol, json!({}));
    let s = f.s.get("/v1/sys/stats", None);
    assert_eq!(s.status, 200);
    assert_eq!(
        s.body["data"],
        json!({"users": 3, "posts": 2, "channels": 0, "messages": 0, "files": 0, "polls": 0})
    );
    // pnutpy's name for the interactions list.
    f.ok("PUT", "/v1/users/1/follow", &f.bob, json!({}));
    let a = f.s.get("/v1/users/me/actions", Some(&f.alice));
    let actions: Vec<&str> =
        a.body["data"].as_array().unwrap().iter().map(|i| i["action"].as_str().unwrap()).collect();
    let mut sorted = actions.clone();
    sorted.sort();
    assert_eq!(sorted, ["follow", "repost"], "{}", a.body);
}
