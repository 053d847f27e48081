//! The rest of pnut v1 (issue 20): clients, channel owner transfer, bulk
//! file delete, one user's presence in a channel.

use crate::common::*;
use serde_json::{json, Value};

const PW: &str = "pw";

#[test]
fn clients_show_what_the_operator_registered() {
    let s = Server::start();
    s.add_user("alice", PW);
    let app =
        s.add_app_with(&["--password-grant", "--url", "https://notes.example", "--owner", "alice", "Notes"]);
    let other = s.add_app("Plain");
    let t = s.user_token(&app, "alice", PW, "write_post");
    assert_eq!(s.json("POST", "/v1/posts", Some(&t), json!({"text": "hi"})).status, 201);
    let c = s.get(&format!("/v1/clients/{}", app.0), None);
    assert_eq!(c.status, 200, "{}", c.body);
    let d = &c.body["data"];
    assert_eq!(
        (d["id"].as_str(), d["name"].as_str(), d["url"].as_str()),
        (Some(app.0.as_str()), Some("Notes"), Some("https://notes.example"))
    );
    assert_eq!((d["posts"].as_i64(), d["user"]["username"].as_str()), (Some(1), Some("alice")));
    assert!(d.get("secret").is_none() && d.get("client_secret").is_none(), "{d}");
    assert!(s.get(&format!("/v1/clients/{}", other.0), None).body["data"].get("user").is_none());
    let mine = s.get("/v1/users/1/clients", None);
    let ids: Vec<&str> =
        mine.body["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [app.0.as_str()]);
    assert_error(&s.get("/v1/clients/nope", None), 404, "Client not found");
}

type Fx = Trio;

fn fx() -> Fx {
    trio("messages,files")
}

impl Fx {
    fn room(&self, acl: Value) -> String {
        let r = self.s.json(
            "POST",
            "/v1/channels",
            Some(&self.alice),
            json!({"type": "io.pnut.core.chat", "acl": acl, "raw": {"io.pnut.core.chat-settings": [{"name": "Room"}]}}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["data"]["id"].as_str().unwrap().to_string()
    }
}

#[test]
fn a_channel_changes_hands_and_the_old_owner_keeps_full_access() {
    let f = fx();
    let cid = f.room(json!({"read": {"public": true}}));
    let path = format!("/v1/channels/{cid}/owner");
    assert_error(
        &f.s.json("PUT", &path, Some(&f.bob), json!({"owner_id": "2"})),
        403,
        "Only the channel's owner",
    );
    assert_error(&f.s.json("PUT", &path, Some(&f.alice), json!({})), 400, "owner_id: required");
    assert_error(&f.s.json("PUT", &path, Some(&f.alice), json!({"owner_id": "99"})), 404, "User not found");
    let r = f.s.json("PUT", &path, Some(&f.alice), json!({"owner_id": "2"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"]["user"]["username"], "bob");
    assert_eq!(r.body["data"]["acl"]["full"]["user_ids"], json!(["1"]));
    // Bob owns it now; alice may still edit (full) but not give it away.
    assert_error(
        &f.s.json("PUT", &path, Some(&f.alice), json!({"owner_id": "3"})),
        403,
        "Only the channel's owner",
    );
    let edit = f.s.json(
        "PUT",
        &format!("/v1/channels/{cid}"),
        Some(&f.alice),
        json!({"raw": {"io.pnut.core.chat-settings": [{"name": "Renamed"}]}}),
    );
    assert_eq!(edit.status, 200, "{}", edit.body);
    // A PM has no owner to change.
    let pm = f.s.json(
        "POST",
        "/v1/channels/pm/messages",
        Some(&f.alice),
        json!({"text": "hi", "destinations": ["@bob"]}),
    );
    let pm_id = pm.body["data"]["channel_id"].as_str().unwrap().to_string();
    assert_error(
        &f.s.json("PUT", &format!("/v1/channels/{pm_id}/owner"), Some(&f.alice), json!({"owner_id": "2"})),
        400,
        "PM",
    );
}

#[test]
fn several_files_go_at_once_or_not_at_all() {
    let f = fx();
    let mk = |tok: &str, name: &str| -> String {
        let r = f.s.json(
            "POST",
            "/v1/files",
            Some(tok),
            json!({"type": "com.example.note", "kind": "other", "name": name}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["data"]["id"].as_str().unwrap().to_string()
    };
    let (a1, a2, b1) = (mk(&f.alice, "a1.txt"), mk(&f.alice, "a2.txt"), mk(&f.bob, "b1.txt"));
    // One of them is bob's: nothing is deleted.
    let r = f.s.call("DELETE", &format!("/v1/files?ids={a1},{b1}"), Some(&f.alice), None);
    assert_error(&r, 403, "owner");
    assert_eq!(f.s.get(&format!("/v1/files/{a1}"), Some(&f.alice)).body["data"]["is_deleted"], json!(null));
    let r = f.s.call("DELETE", &format!("/v1/files?ids={a1},{a2}"), Some(&f.alice), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let gone: Vec<(&str, bool)> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["is_deleted"].as_bool().unwrap_or(false)))
        .collect();
    assert_eq!(gone, [(a1.as_str(), true), (a2.as_str(), true)]);
    assert_error(&f.s.call("DELETE", "/v1/files", Some(&f.alice), None), 400, "ids");
}

#[test]
fn one_users_presence_in_a_channel() {
    let f = fx();
    let open = f.room(json!({"read": {"public": true}}));
    let closed = f.room(json!({"read": {"user_ids": ["2"]}}));
    assert_eq!(
        f.s.call(
            "PUT",
            &format!("/v1/users/me/presence/channels/{open}?presence=typing"),
            Some(&f.bob),
            None
        )
        .status,
        200
    );
    let p = f.s.get(&format!("/v1/users/2/presence/channels/{open}"), Some(&f.carol));
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(
        (p.body["data"]["presence"].as_str(), p.body["data"]["username"].as_str()),
        (Some("typing"), Some("bob"))
    );
    let none = f.s.get(&format!("/v1/users/3/presence/channels/{open}"), Some(&f.bob));
    assert_eq!(none.body["data"]["presence"], "offline");
    // A channel carol may not read tells her nothing.
    assert_eq!(f.s.get(&format!("/v1/users/2/presence/channels/{closed}"), Some(&f.carol)).status, 403);
}

/// Markdown links in messages become their label and a link entity, as in
/// posts (messages are rendered from their text when read).
#[test]
fn markdown_links_in_messages() {
    let f = fx();
    let cid = f.room(json!({"read": {"public": true}}));
    let m = f.ok(
        "POST",
        &format!("/v1/channels/{cid}/messages"),
        &f.alice,
        json!({"text": "see [the docs](https://pnut.io/docs)"}),
    );
    assert_eq!(m["content"]["text"], "see the docs");
    assert_eq!(m["content"]["entities"]["links"][0]["url"], "https://pnut.io/docs");
    let again = f.s.get(&format!("/v1/channels/{cid}/messages/{}", m["id"].as_str().unwrap()), Some(&f.bob));
    assert_eq!(again.body["data"]["content"]["text"], "see the docs");
}
