//! Search (issue 20): posts, users, channels, messages and polls; what a
//! search shows is what a fetch by id would show, and nothing more.

use crate::common::*;
use serde_json::json;

const SCOPES: &str = "stream,write_post,follow,messages,polls,update_profile";

type Fx = Trio;

fn fx() -> Fx {
    trio(SCOPES)
}

impl Fx {
    /// The ids (or usernames for users) a search found, in order.
    fn found(&self, path: &str, tok: Option<&str>) -> Vec<String> {
        let r = self.s.get(path, tok);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["username"].as_str().or(v["id"].as_str()).unwrap().to_string())
            .collect()
    }
}

#[test]
fn posts_by_words_relevance_paging_and_filters() {
    let f = fx();
    let p1 = f.post(&f.alice, json!({"text": "the quick brown fox #animals"}));
    let p2 = f.post(&f.bob, json!({"text": "a fox, a fox, a fox jumps over the fox"}));
    let p3 = f.post(&f.carol, json!({"text": "nothing to see here"}));
    let reply = f.post(&f.carol, json!({"text": "what does the fox say", "reply_to": p1}));
    f.ok("PUT", &format!("/v1/posts/{p1}/repost"), &f.bob, json!({}));
    // Relevance (the default with q): the post that says fox most comes first.
    let got = f.found("/v1/posts/search?q=fox", None);
    assert_eq!(got.len(), 3, "{got:?} (reposts are never results)");
    assert_eq!(got[0], p2);
    assert!(!got.contains(&p3));
    // order=id: newest first.
    assert_eq!(f.found("/v1/posts/search?q=fox&order=id", None), [reply.as_str(), p2.as_str(), p1.as_str()]);
    // Words are all required, case and accents do not matter; prefixes with *.
    assert_eq!(f.found("/v1/posts/search?q=QUICK%20fox", None), [p1.as_str()]);
    assert_eq!(f.found("/v1/posts/search?q=jump*", None), [p2.as_str()]);
    // Paging through relevance: one at a time, no repeats.
    let r = f.s.get("/v1/posts/search?q=fox&count=1", None);
    assert_eq!(r.body["meta"]["more"], true);
    let min = r.body["meta"]["min_id"].as_str().unwrap().to_string();
    let next = f.found(&format!("/v1/posts/search?q=fox&count=2&before_id={min}"), None);
    assert_eq!(next.len(), 2);
    assert!(!next.contains(&r.body["data"][0]["id"].as_str().unwrap().to_string()));
    // Filters.
    assert_eq!(f.found("/v1/posts/search?q=fox&creator_id=2", None), [p2.as_str()]);
    assert_eq!(f.found("/v1/posts/search?tags=animals", None), [p1.as_str()]);
    assert_eq!(f.found("/v1/posts/search?q=fox&is_reply=1", None), [reply.as_str()]);
    assert_eq!(f.found(&format!("/v1/posts/search?reply_to={p1}"), None), [reply.as_str()]);
    assert_eq!(f.found("/v1/posts/search?q=fox&exclude_user_ids=2,3&order=id", None), [p1.as_str()]);
    // Revised text is what is found; deleted posts are gone.
    f.ok("PUT", &format!("/v1/posts/{p3}"), &f.carol, json!({"text": "now a fox too"}));
    assert!(f.found("/v1/posts/search?q=fox", None).contains(&p3));
    assert!(f.found("/v1/posts/search?q=nothing", None).is_empty());
    f.ok("DELETE", &format!("/v1/posts/{p2}"), &f.bob, json!({}));
    assert!(!f.found("/v1/posts/search?q=fox", None).contains(&p2));
    // Bad input.
    assert_error(&f.s.get("/v1/posts/search?q=***", None), 400, "q: has no word");
    assert_error(&f.s.get(&format!("/v1/posts/search?q={}", "a".repeat(300)), None), 400, "q: longer than");
    assert_error(&f.s.get("/v1/posts/search?q=fox&order=best", None), 400, "order");
    assert_error(&f.s.get("/v1/posts/search?is_reply=maybe", None), 400, "is_reply");
    assert_error(&f.s.get("/v1/posts/search?created_after=yesterday", None), 400, "created_after");
    // FTS5 syntax is only words here, never an error.
    assert_eq!(f.s.get("/v1/posts/search?q=fox%20OR%20NEAR(%22x", None).status, 200);
}

#[test]
fn blocked_and_muted_authors_are_left_out_as_in_the_streams() {
    let f = fx();
    let by_bob = f.post(&f.bob, json!({"text": "ferret facts"}));
    let by_carol = f.post(&f.carol, json!({"text": "ferret news"}));
    f.ok("PUT", "/v1/users/2/block", &f.alice, json!({}));
    f.ok("PUT", "/v1/users/3/mute", &f.alice, json!({}));
    assert!(f.found("/v1/posts/search?q=ferret", Some(&f.alice)).is_empty());
    assert_eq!(f.found("/v1/posts/search?q=ferret&include_muted=1", Some(&f.alice)), [by_carol.as_str()]);
    let mut all = f.found("/v1/posts/search?q=ferret", None);
    all.sort();
    assert_eq!(all, [by_bob, by_carol]);
    // Users too: a blocked user is not found by the blocker.
    assert_eq!(f.found("/v1/users/search?q=bob", Some(&f.alice)), Vec::<String>::new());
    assert_eq!(f.found("/v1/users/search?q=bob", Some(&f.carol)), ["bob"]);
}

#[test]
fn users_by_name_description_and_type() {
    let f = fx();
    f.ok(
        "PATCH",
        "/v1/users/me",
        &f.bob,
        json!({"name": "Robert Tables", "content": {"text": "I like sailing"}}),
    );
    assert_eq!(f.found("/v1/users/search?q=robert", None), ["bob"]);
    assert_eq!(f.found("/v1/users/search?q=sailing", None), ["bob"]);
    assert_eq!(f.found("/v1/users/search?q=alice", None), ["alice"]);
    assert_eq!(f.found("/v1/users/search?q=alice&user_types=bot", None), Vec::<String>::new());
    assert_error(&f.s.get("/v1/users/search?user_types=robot", None), 400, "user_types");
    f.ok("PUT", "/v1/users/2/follow", &f.alice, json!({}));
    assert_eq!(f.found("/v1/users/search?is_following=1", Some(&f.alice)), ["bob"]);
    assert_error(&f.s.get("/v1/users/search?is_following=1", None), 401, "is_following");
}

#[test]
fn private_channels_and_their_messages_stay_private() {
    let f = fx();
    let public = f.ok(
        "POST",
        "/v1/channels",
        &f.alice,
        json!({"type": "io.pnut.core.chat", "acl": {"read": {"public": true}},
               "raw": {"io.pnut.core.chat-settings": [{"name": "Gardening club", "categories": ["lifestyle"]}]}}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let private = f.ok(
        "POST",
        "/v1/channels",
        &f.alice,
        json!({"type": "io.pnut.core.chat", "acl": {"read": {"user_ids": ["2"]}},
               "raw": {"io.pnut.core.chat-settings": [{"name": "Secret gardening"}]}}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let msg = |ch: &str, text: &str| {
        f.ok("POST", &format!("/v1/channels/{ch}/messages"), &f.alice, json!({"text": text}))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let m_pub = msg(&public, "tomatoes need sun");
    let m_priv = msg(&private, "tomatoes are secretly fruit");
    // Carol may read only the public one; bob both; anonymous only public.
    assert_eq!(f.found("/v1/channels/search?q=gardening", Some(&f.carol)), [public.as_str()]);
    assert_eq!(f.found("/v1/channels/search?q=gardening", Some(&f.bob)), [private.as_str(), public.as_str()]);
    assert_eq!(f.found("/v1/channels/search?q=gardening", None), [public.as_str()]);
    assert_eq!(f.found("/v1/channels/search?categories=lifestyle", None), [public.as_str()]);
    assert_eq!(f.found("/v1/channels/search?q=gardening&is_private=1", Some(&f.bob)), [private.as_str()]);
    assert_eq!(f.found("/v1/channels/messages/search?q=tomatoes", Some(&f.carol)), [m_pub.as_str()]);
    assert_eq!(f.found("/v1/channels/messages/search?q=tomatoes", None), [m_pub.as_str()]);
    assert_eq!(
        f.found("/v1/channels/messages/search?q=tomatoes", Some(&f.bob)),
        [m_priv.clone(), m_pub.clone()]
    );
    assert_eq!(
        f.found(&format!("/v1/channels/messages/search?q=tomatoes&channel_ids={private}"), Some(&f.carol)),
        Vec::<String>::new()
    );
    // A deleted message is gone from search.
    f.ok("DELETE", &format!("/v1/channels/{private}/messages/{m_priv}"), &f.alice, json!({}));
    assert_eq!(f.found("/v1/channels/messages/search?q=tomatoes", Some(&f.bob)), [m_pub.as_str()]);
}

#[test]
fn polls_that_are_private_are_found_only_by_their_owner() {
    let f = fx();
    let mk = |public: bool, prompt: &str| {
        f.ok(
            "POST",
            "/v1/polls",
            &f.alice,
            json!({"type": "com.example.poll", "prompt": prompt, "is_public": public,
                   "options": [{"text": "pizza"}, {"text": "pasta"}], "duration": 60}),
        )["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let open = mk(true, "Dinner tonight?");
    let closed = mk(false, "Dinner tomorrow?");
    assert_eq!(f.found("/v1/polls/search?q=dinner", Some(&f.bob)), [open.as_str()]);
    assert_eq!(f.found("/v1/polls/search?q=dinner", Some(&f.alice)), [closed.as_str(), open.as_str()]);
    assert_eq!(f.found("/v1/polls/search?q=pasta", Some(&f.bob)), [open.as_str()]);
}
