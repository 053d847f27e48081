//! Posts, reposts, revisions, bookmarks and the post lists; the social
//! graph (`graph`) and presence (`presence`). Every change writes its stream
//! event in the same transaction.

mod graph;
mod interactions;
mod lists;
pub(crate) mod presence;
mod write;

use lists::*;
pub(crate) use lists::{explore, explore_list, search};
pub(crate) use write::report_reason;
use write::*;

use super::users::{as_own_profile, find_user, merge_raw, user_value};
use super::{parse_id, Ctx, Route};
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, Event, NewEvent, ObjType};
use crate::http::Req;
use crate::model::{self, prune, Kind, Opts};
use crate::storage::posts::{self as store, Listed, PostRow};
use crate::storage::Connection;
use crate::storage::{apps, users, Tx};
use crate::util::{iso8601, now};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Routes of this module (tried after the core table). Literal paths come
/// before `{}` ones.
pub const ROUTES: &[Route] = &[
    ("GET", "/v1/posts", get_many),
    ("POST", "/v1/posts", create),
    ("GET", "/v1/posts/streams/global", stream_global),
    ("GET", "/v1/posts/streams/me", stream_me),
    ("GET", "/v1/posts/streams/unified", stream_unified),
    ("GET", "/v1/posts/tags/{}", tagged),
    ("GET", "/v1/posts/tag/{}", tagged),
    ("GET", "/v1/posts/{}", get_one),
    ("PUT", "/v1/posts/{}", revise),
    ("DELETE", "/v1/posts/{}", delete),
    ("PUT", "/v1/posts/{}/repost", repost),
    ("DELETE", "/v1/posts/{}/repost", unrepost),
    ("PUT", "/v1/posts/{}/bookmark", bookmark),
    ("DELETE", "/v1/posts/{}/bookmark", unbookmark),
    ("GET", "/v1/posts/{}/thread", thread),
    ("GET", "/v1/posts/{}/revisions", revisions),
    ("GET", "/v1/posts/{}/interactions", interactions::of_post),
    ("GET", "/v1/users/me/interactions", interactions::of_me),
    // pnutpy's name for the same list.
    ("GET", "/v1/users/me/actions", interactions::of_me),
    ("POST", "/v1/posts/{}/report", report),
    ("GET", "/v1/users/{}/posts", user_posts),
    ("GET", "/v1/users/{}/mentions", user_mentions),
    ("GET", "/v1/users/{}/bookmarks", user_bookmarks),
    ("PUT", "/v1/users/{}/follow", graph::follow),
    ("DELETE", "/v1/users/{}/follow", graph::unfollow),
    ("PUT", "/v1/users/{}/mute", graph::mute),
    ("DELETE", "/v1/users/{}/mute", graph::unmute),
    ("PUT", "/v1/users/{}/block", graph::block),
    ("DELETE", "/v1/users/{}/block", graph::unblock),
    ("GET", "/v1/users/{}/following", graph::following),
    ("GET", "/v1/users/{}/followers", graph::followers),
    ("GET", "/v1/users/{}/muted", graph::muted),
    ("GET", "/v1/users/{}/blocked", graph::blocked),
    ("GET", "/v1/presence", presence::list),
    ("GET", "/v1/users/{}/presence", presence::get_one),
    ("PUT", "/v1/users/{}/presence", presence::set),
];

use crate::api::limits::{POST_TEXT as MAX_TEXT, REVISION_SECONDS as REVISION_WINDOW};

/// How a reader wants objects rendered: the viewer (for `you_*` flags) and
/// the `include_*` parameters.
pub(super) struct View {
    pub viewer: Option<i64>,
    pub opts: Opts,
    pub include_user: bool,
    pub include_client: bool,
    pub include_deleted: bool,
}

impl View {
    pub fn new(req: &Req, viewer: Option<i64>) -> View {
        View {
            viewer,
            opts: Opts::from_req(req),
            include_user: req.flag("include_user", true),
            include_client: req.flag("include_client", true),
            include_deleted: req.flag("include_deleted", true),
        }
    }

    /// With the caller's token if one was given.
    pub fn optional(ctx: &Ctx, req: &Req) -> ApiResult<View> {
        let viewer = auth::optional(&ctx.db, req)?.and_then(|p| p.user_id);
        Ok(View::new(req, viewer))
    }

    /// The post as this reader asked for it (with `bookmarked_by` and
    /// `reposted_by` only when asked: they cost queries).
    fn render(&self, c: &Connection, api_url: &str, p: &PostRow) -> ApiResult<Value> {
        let mut v = post_value(c, api_url, p, self.viewer)?;
        add_actors(c, api_url, &mut v, p, self.opts.bookmarked_by, self.opts.reposted_by)?;
        Ok(self.post(v))
    }

    /// A full post object pruned to what this reader asked for.
    fn post(&self, mut v: Value) -> Value {
        prune(&mut v, Kind::Post, &self.opts);
        self.shape(&mut v);
        v
    }

    /// `include_user=0` → `user_id`; `include_client=0` → source id string.
    fn shape(&self, v: &mut Value) {
        if let Value::Object(m) = v {
            if !self.include_user {
                if let Some(u) = m.remove("user") {
                    m.insert("user_id".into(), u["id"].clone());
                }
            }
            if !self.include_client {
                if let Some(s) = m.get_mut("source") {
                    *s = s["id"].clone();
                }
            }
            if let Some(r) = m.get_mut("repost_of") {
                self.shape(r);
            }
        }
    }

    pub fn user(&self, mut v: Value) -> Value {
        prune(&mut v, Kind::User, &self.opts);
        v
    }
}

/// `meta` for a page of listed items: `more`, `min_id`, `max_id`.
pub(super) fn page_meta(page: &Listed) -> Map<String, Value> {
    let keys: Vec<i64> = page.items.iter().map(|it| it.pid).collect();
    crate::http::params::page_meta(&keys, page.more)
}

pub(super) use crate::http::params::page_meta as page_meta_keys;

/// The full post object: everything included (raw, html, counts), the
/// viewer's flags if there is one. Callers prune with `View::post`.
pub(super) fn post_value(
    c: &Connection,
    api_url: &str,
    p: &PostRow,
    viewer: Option<i64>,
) -> ApiResult<Value> {
    post_value_of(c, api_url, p, viewer, false)
}

/// `post_value`; `fresh`: `p` was created in this transaction and is not a
/// repost, so its counts are all zero without asking.
fn post_value_of(
    c: &Connection,
    api_url: &str,
    p: &PostRow,
    viewer: Option<i64>,
    fresh: bool,
) -> ApiResult<Value> {
    let user = users::by_id(c, p.user_id)?.ok_or_else(ApiError::internal)?;
    let source = apps::app_by_id(c, p.app_id)?.map(|a| model::app(&a)).unwrap_or(Value::Null);
    let original = match p.repost_of {
        Some(o) => Some(store::by_id(c, o)?.ok_or_else(ApiError::internal)?),
        None => None,
    };
    // A repost mirrors its original's content, counts, raw and flags.
    let shown = original.as_ref().unwrap_or(p);
    let [bookmarks, replies, reposts, threads] =
        if fresh && original.is_none() { [0; 4] } else { store::counts(c, shown.id)? };
    let mut v = json!({
        "id": p.id.to_string(),
        "created_at": iso8601(p.created_at),
        "thread_id": p.thread_id.to_string(),
        "counts": {"bookmarks": bookmarks, "replies": replies, "reposts": reposts, "threads": threads},
    });
    v["user"] = user_value(c, api_url, &user, viewer)?;
    v["source"] = source;
    if let Some(r) = p.reply_to {
        v["reply_to"] = json!(r.to_string());
    }
    if p.is_deleted {
        v["is_deleted"] = json!(true);
    } else {
        v["content"] = shown.content.clone();
        v["raw"] = shown.raw.clone();
    }
    if shown.is_nsfw {
        v["is_nsfw"] = json!(true);
    }
    if shown.revision > 0 {
        v["is_revised"] = json!(true);
    }
    if let Some(vw) = viewer {
        let (b, r) = store::viewer_flags(c, shown.id, vw)?;
        v["you_bookmarked"] = json!(b);
        v["you_reposted"] = json!(r);
    }
    if let Some(o) = &original {
        v["repost_of"] = post_value(c, api_url, o, viewer)?;
    }
    Ok(v)
}

/// How many users `bookmarked_by` and `reposted_by` show (newest first).
const ACTOR_SAMPLE: i64 = 10;

/// Adds pnut's sampled `bookmarked_by` / `reposted_by` user lists (of the
/// original, for a repost; none on deleted posts).
fn add_actors(
    c: &Connection,
    api_url: &str,
    v: &mut Value,
    p: &PostRow,
    bm: bool,
    rp: bool,
) -> ApiResult<()> {
    if p.is_deleted {
        return Ok(());
    }
    let shown = p.repost_of.unwrap_or(p.id);
    let users_of = |ids: Vec<i64>| -> ApiResult<Value> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(u) = users::by_id(c, id)? {
                out.push(user_value(c, api_url, &u, None)?);
            }
        }
        Ok(Value::Array(out))
    };
    if bm {
        v["bookmarked_by"] = users_of(store::bookmarkers(c, shown, ACTOR_SAMPLE)?)?;
    }
    if rp {
        v["reposted_by"] = users_of(store::reposters(c, shown, ACTOR_SAMPLE)?)?;
    }
    Ok(())
}

/// The users a post event would notify who muted or blocked its author.
fn suppressed(c: &Connection, p: &PostRow) -> ApiResult<Vec<Value>> {
    let mut notified = Vec::new();
    if let Some(o) = p.repost_of {
        notified.extend(store::by_id(c, o)?.map(|o| o.user_id));
    } else {
        notified.extend(store::mentioned_users(c, p.id)?);
        if let Some(r) = p.reply_to {
            notified.extend(store::by_id(c, r)?.map(|r| r.user_id));
        }
    }
    suppressed_among(c, &notified, p.user_id)
}

/// Which of the `notified` users muted or blocked `author`.
fn suppressed_among(c: &Connection, notified: &[i64], author: i64) -> ApiResult<Vec<Value>> {
    let ids = store::muted_or_blocked_by(c, notified, author)?;
    Ok(ids.into_iter().map(|i| json!(i.to_string())).collect())
}

/// The post as events carry it: rendered for nobody, with everything
/// (`bookmarked_by` and `reposted_by` included; connections prune).
fn event_post(c: &Connection, api_url: &str, p: &PostRow) -> ApiResult<Value> {
    let mut v = post_value(c, api_url, p, None)?;
    add_actors(c, api_url, &mut v, p, true, true)?;
    Ok(v)
}

/// Writes the `post` event for `p` as it is now; `extra` adds meta keys
/// (`is_deleted`, `revision`).
fn emit_post(tx: &mut Tx, api_url: &str, p: &PostRow, extra: Option<(&str, Value)>) -> ApiResult<()> {
    let data = event_post(tx, api_url, p)?;
    let suppress = suppressed(tx, p)?;
    emit_post_data(tx, p, data, suppress, extra).map(|_| ())
}

/// Writes the `post` event for `p`, just created (not a repost), and
/// returns the event (its post is the caller's answer). Nobody can have
/// bookmarked, reposted or replied to it yet, so that takes no query;
/// `notified` (its mentions and the author of the post it replies to) is
/// known to the caller.
fn emit_new_post(tx: &mut Tx, api_url: &str, p: &PostRow, notified: &[i64]) -> ApiResult<Arc<Event>> {
    let mut data = post_value_of(tx, api_url, p, None, true)?;
    data["bookmarked_by"] = json!([]);
    data["reposted_by"] = json!([]);
    let suppress = suppressed_among(tx, notified, p.user_id)?;
    emit_post_data(tx, p, data, suppress, None)
}

/// A post its author just created, as the author reads it, from the
/// event's rendering: a read would only add the author's own flags, which
/// are known (nothing bookmarked or reposted yet; their own profile).
fn own_new_post(mut v: Value) -> Value {
    v["you_bookmarked"] = json!(false);
    v["you_reposted"] = json!(false);
    as_own_profile(&mut v["user"]);
    v
}

fn emit_post_data(
    tx: &mut Tx,
    p: &PostRow,
    data: Value,
    suppress: Vec<Value>,
    extra: Option<(&str, Value)>,
) -> ApiResult<Arc<Event>> {
    let mut meta = json!({
        "timestamp": now(),
        "id": p.id.to_string(),
        "type": "post",
    });
    meta["suppress_notifications"] = Value::Array(suppress);
    meta["suppress_notifications_all"] = json!(!users::is_human(tx, p.user_id)?);
    if let Some((k, v)) = extra {
        meta[k] = v;
    }
    tx.emit_shared(NewEvent {
        kind: ObjType::Post,
        audience: Audience::Public,
        auth: None,
        envelope: crate::util::obj([("meta", meta), ("data", Value::Array(vec![data]))]),
    })
}

fn get_post(c: &Connection, id: i64) -> ApiResult<PostRow> {
    match store::by_id(c, id)? {
        // A deleted repost is gone, as in pnut.
        Some(p) if !(p.is_deleted && p.repost_of.is_some()) => Ok(p),
        _ => Err(ApiError::not_found(format!("Post not found: {id}"))),
    }
}

/// The post a repost or bookmark acts on: the original of a repost.
fn live_original(c: &Connection, id: i64) -> ApiResult<PostRow> {
    let p = get_post(c, id)?;
    let p = match p.repost_of {
        Some(o) => get_post(c, o)?,
        None => p,
    };
    if p.is_deleted {
        return Err(ApiError::not_found(format!("Post not found: {id} was deleted")));
    }
    Ok(p)
}

fn body_id(m: &Map<String, Value>, field: &str) -> ApiResult<Option<i64>> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => parse_id(field, s).map(Some),
        Some(Value::Number(n)) => parse_id(field, &n.to_string()).map(Some),
        Some(_) => Err(ApiError::bad_request(format!("{field}: must be a post id"))),
    }
}

fn body_text(m: &Map<String, Value>) -> ApiResult<String> {
    let text = match m.get("text") {
        None | Some(Value::Null) => return Err(ApiError::bad_request("text: required")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::bad_request("text: must be a string")),
    };
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("text: must not be empty"));
    }
    let n = text.chars().count();
    if n > MAX_TEXT {
        return Err(ApiError::bad_request(format!("text: at most {MAX_TEXT} characters (got {n})")));
    }
    Ok(text.clone())
}

/// `raw` on create: a type → list-of-objects map (a JSON string in forms).
fn body_raw(m: &Map<String, Value>) -> ApiResult<Value> {
    match m.get("raw") {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::String(s)) => {
            let v: Value =
                serde_json::from_str(s).map_err(|_| ApiError::bad_request("raw: must be a JSON object"))?;
            merge_raw(&json!({}), &v)
        }
        Some(v) => merge_raw(&json!({}), v),
    }
}

/// Tag as pnut matches it: lower case, `_` removed.
fn norm_tag(t: &str) -> String {
    t.to_lowercase().replace('_', "")
}

/// (mention ids, normalised tags, link urls) of a content object, sorted.
fn entities(content: &Value) -> (Vec<i64>, Vec<String>, Vec<String>) {
    let list = |k: &str, f: &str| -> Vec<String> {
        content["entities"][k]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e[f].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut m: Vec<i64> = list("mentions", "id").iter().filter_map(|s| s.parse().ok()).collect();
    let mut t: Vec<String> = list("tags", "text").iter().map(|s| norm_tag(s)).collect();
    let mut l = list("links", "url");
    m.sort_unstable();
    m.dedup();
    t.sort();
    t.dedup();
    l.sort();
    (m, t, l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_sets_compare_normalised() {
        let a =
            json!({"entities": {"mentions": [{"id": "2"}], "tags": [{"text": "Rust_Lang"}], "links": []}});
        let b = json!({"entities": {"mentions": [{"id": "2"}], "tags": [{"text": "rustlang"}], "links": []}});
        assert_eq!(entities(&a), entities(&b));
        assert_eq!(norm_tag("NS_FW"), "nsfw");
    }
}
