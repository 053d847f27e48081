//! Interactions (issue 20): what others did to a user and their posts and
//! polls, and to one post; filters, paging, muted and blocked actors, and
//! undone or deleted actions gone.

use crate::common::*;
use serde_json::{json, Value};

type Fx = Trio;

fn fx() -> Fx {
    trio("stream,write_post,follow,polls")
}

impl Fx {
    fn list(&self, path: &str, tok: Option<&str>) -> Value {
        let r = self.s.get(path, tok);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.body
    }
}

/// (action, actor username) of each interaction, newest first.
fn summary(body: &Value) -> Vec<(String, String)> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let who =
                i["users"].get(0).map_or("-".to_string(), |u| u["username"].as_str().unwrap().to_string());
            (i["action"].as_str().unwrap().to_string(), who)
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn what_others_did_to_me_newest_first_with_filters_and_paging() {
    let f = fx();
    let p = f.post(&f.alice, json!({"text": "hello"}));
    f.ok("PUT", "/v1/users/1/follow", &f.bob, json!({}));
    f.post(&f.bob, json!({"text": "hi back", "reply_to": p}));
    f.ok("PUT", &format!("/v1/posts/{p}/repost"), &f.bob, json!({}));
    f.ok("PUT", &format!("/v1/posts/{p}/bookmark"), &f.bob, json!({}));
    f.post(&f.carol, json!({"text": "look @alice"}));
    let poll = f.ok(
        "POST",
        "/v1/polls",
        &f.alice,
        json!({"type": "com.example.poll", "prompt": "Tea?", "is_anonymous": false, "is_public": true,
                     "options": [{"text": "yes"}, {"text": "no"}], "duration": 60}),
    );
    let poll_id = poll["id"].as_str().unwrap().to_string();
    f.ok("PUT", &format!("/v1/polls/{poll_id}/response"), &f.carol, json!({"positions": [1]}));
    // Her own actions are not interactions.
    f.ok("PUT", &format!("/v1/posts/{p}/bookmark"), &f.alice, json!({}));

    let all = f.list("/v1/users/me/interactions", Some(&f.alice));
    let mut got = summary(&all);
    got.sort();
    let mut want = pairs(&[
        ("follow", "bob"),
        ("reply", "bob"),
        ("repost", "bob"),
        ("bookmark", "bob"),
        ("mention", "carol"),
        ("poll_response", "carol"),
    ]);
    want.sort();
    assert_eq!(got, want, "{all}");
    let first = &all["data"][0];
    assert!(first["event_date"].as_str().unwrap().ends_with('Z'));
    assert!(first["pagination_id"].is_string());
    for i in all["data"].as_array().unwrap() {
        let o = &i["objects"][0];
        match i["action"].as_str().unwrap() {
            "follow" => assert_eq!(o["username"], "alice"),
            "poll_response" => assert_eq!(o["prompt"], "Tea?"),
            "mention" => assert_eq!(o["content"]["text"], "look @alice"),
            _ => assert_eq!(o["id"], p.as_str(), "{i}"),
        }
    }
    // filters (pnut) / interaction_types (pnutpy), exclude.
    let only = f.list("/v1/users/me/interactions?filters=bookmark,follow", Some(&f.alice));
    let mut got = summary(&only);
    got.sort();
    assert_eq!(got, pairs(&[("bookmark", "bob"), ("follow", "bob")]));
    let only = f.list("/v1/users/me/interactions?interaction_types=repost", Some(&f.alice));
    assert_eq!(summary(&only), pairs(&[("repost", "bob")]));
    let but = f.list("/v1/users/me/interactions?exclude=bookmark,follow,reply,repost", Some(&f.alice));
    assert_eq!(summary(&but).len(), 2);
    assert_error(&f.s.get("/v1/users/me/interactions?filters=star", Some(&f.alice)), 400, "filters: 'star'");
    // Paging: two at a time, no repeats, all six in the end.
    let mut seen = Vec::new();
    let mut before = String::new();
    for _ in 0..5 {
        let b = f.list(&format!("/v1/users/me/interactions?count=2{before}"), Some(&f.alice));
        seen.extend(
            b["data"].as_array().unwrap().iter().map(|i| i["pagination_id"].as_str().unwrap().to_string()),
        );
        if b["meta"]["more"] == false {
            break;
        }
        before = format!("&before_id={}", b["meta"]["min_id"].as_str().unwrap());
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (6, 6), "{seen:?}");
    // An app token is not a user.
    assert_eq!(f.s.get("/v1/users/me/interactions", None).status, 401);
}

#[test]
fn undone_deleted_muted_and_blocked_actions_are_gone() {
    let f = fx();
    let p = f.post(&f.alice, json!({"text": "hello"}));
    let reply = f.post(&f.bob, json!({"text": "hi back", "reply_to": p}));
    f.ok("PUT", &format!("/v1/posts/{p}/bookmark"), &f.bob, json!({}));
    f.ok("PUT", "/v1/users/1/follow", &f.carol, json!({}));
    f.ok("PUT", &format!("/v1/posts/{p}/repost"), &f.carol, json!({}));
    assert_eq!(summary(&f.list("/v1/users/me/interactions", Some(&f.alice))).len(), 4);
    // Undone: unbookmark, delete the reply, unfollow.
    f.ok("DELETE", &format!("/v1/posts/{p}/bookmark"), &f.bob, json!({}));
    f.ok("DELETE", &format!("/v1/posts/{reply}"), &f.bob, json!({}));
    f.ok("DELETE", "/v1/users/1/follow", &f.carol, json!({}));
    assert_eq!(summary(&f.list("/v1/users/me/interactions", Some(&f.alice))), pairs(&[("repost", "carol")]));
    // Muted or blocked actors are left out, as in the post streams.
    f.ok("PUT", "/v1/users/3/mute", &f.alice, json!({}));
    assert_eq!(summary(&f.list("/v1/users/me/interactions", Some(&f.alice))), pairs(&[]));
    f.ok("DELETE", "/v1/users/3/mute", &f.alice, json!({}));
    f.ok("PUT", "/v1/users/1/block", &f.carol, json!({}));
    assert_eq!(summary(&f.list("/v1/users/me/interactions", Some(&f.alice))), pairs(&[]));
}

#[test]
fn one_posts_interactions_have_users_and_no_objects() {
    let f = fx();
    let p = f.post(&f.alice, json!({"text": "hello"}));
    f.post(&f.bob, json!({"text": "hi", "reply_to": p}));
    f.ok("PUT", &format!("/v1/posts/{p}/bookmark"), &f.carol, json!({}));
    f.ok("PUT", "/v1/users/1/follow", &f.bob, json!({}));
    let body = f.list(&format!("/v1/posts/{p}/interactions"), None);
    let mut got = summary(&body);
    got.sort();
    assert_eq!(got, pairs(&[("bookmark", "carol"), ("reply", "bob")]));
    assert!(body["data"][0].get("objects").is_none(), "{body}");
    let only = f.list(&format!("/v1/posts/{p}/interactions?filters=reply"), Some(&f.carol));
    assert_eq!(summary(&only), pairs(&[("reply", "bob")]));
    assert_error(
        &f.s.get(&format!("/v1/posts/{p}/interactions?filters=follow"), None),
        400,
        "filters: 'follow'",
    );
    assert_eq!(f.s.get("/v1/posts/999/interactions", None).status, 404);
    f.ok("DELETE", &format!("/v1/posts/{p}"), &f.alice, json!({}));
    assert_eq!(f.s.get(&format!("/v1/posts/{p}/interactions"), None).status, 404);
}

/// Near interactions are grouped as pnut groups them: the same action on
/// the same object within a day is one interaction with every user,
/// newest first.
#[test]
fn the_same_action_on_the_same_object_is_one_interaction() {
    let f = fx();
    let p = f.post(&f.alice, json!({"text": "hello"}));
    let q = f.post(&f.alice, json!({"text": "another"}));
    for tok in [&f.bob, &f.carol] {
        f.ok("PUT", &format!("/v1/posts/{p}/bookmark"), tok, json!({}));
        f.ok("PUT", "/v1/users/1/follow", tok, json!({}));
    }
    f.ok("PUT", &format!("/v1/posts/{q}/bookmark"), &f.bob, json!({}));
    let all = f.list("/v1/users/me/interactions", Some(&f.alice));
    let mut got: Vec<(String, String, Vec<String>)> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let users =
                i["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string());
            let mut users: Vec<String> = users.collect();
            users.sort();
            (
                i["action"].as_str().unwrap().to_string(),
                i["objects"][0]["id"].as_str().unwrap().to_string(),
                users,
            )
        })
        .collect();
    got.sort();
    let both = vec!["bob".to_string(), "carol".to_string()];
    assert_eq!(
        got,
        [
            ("bookmark".to_string(), p.clone(), both.clone()),
            ("bookmark".to_string(), q.clone(), vec!["bob".to_string()]),
            ("follow".to_string(), "1".to_string(), both),
        ],
        "{all}"
    );
}
