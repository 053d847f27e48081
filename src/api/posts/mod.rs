//! Posts, reposts, revisions, bookmarks and the post lists; the social
//! graph (`graph`) and presence (`presence`). Every change writes its stream
//! event in the same transaction.

mod graph;
mod presence;

use super::users::{as_own_profile, find_user, merge_raw, user_value};
use super::{parse_id, Ctx, Route};
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, Event, NewEvent, ObjType};
use crate::http::params::page;
use crate::http::{Req, Resp};
use crate::model::{self, prune, Kind, Opts};
use crate::storage::posts::{self as store, Listed, NewPost, PostList, PostRow};
use crate::storage::Page;
use crate::storage::{apps, events, users, Tx};
use crate::util::{iso8601, now};
use rusqlite::Connection;
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

/// pnut's longest post, in code points.
const MAX_TEXT: usize = 256;
/// How long after creation a post may be revised (pnut's sys/config).
const REVISION_WINDOW: i64 = 300;

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

fn body_bool(m: &Map<String, Value>, field: &str) -> ApiResult<Option<bool>> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
            Ok(Some(n.as_i64() == Some(1)))
        }
        Some(Value::String(s)) if matches!(s.as_str(), "1" | "true") => Ok(Some(true)),
        Some(Value::String(s)) if matches!(s.as_str(), "0" | "false") => Ok(Some(false)),
        Some(_) => Err(ApiError::bad_request(format!("{field}: must be a boolean (true/false or 1/0)"))),
    }
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

pub fn create(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let (principal, uid) = auth::user(&ctx.db, req, Some("write_post"))?;
    let body = req.params()?;
    let text = body_text(&body)?;
    let reply_to = body_id(&body, "reply_to")?;
    let is_nsfw = body_bool(&body, "is_nsfw")?;
    let raw = body_raw(&body)?;
    let view = View::new(req, Some(uid));
    let ev = ctx.db.write_content(|tx| {
        let parent = match reply_to {
            Some(r) => match store::by_id(tx, r)? {
                Some(p) if !p.is_deleted => Some(p),
                Some(_) => return Err(ApiError::bad_request(format!("reply_to: post {r} was deleted"))),
                None => return Err(ApiError::bad_request(format!("reply_to: post {r} does not exist"))),
            },
            None => None,
        };
        // A reply to a repost replies to the original.
        let parent = match parent {
            Some(p) if p.repost_of.is_some() => Some(live_original(tx, p.id)?),
            other => other,
        };
        let content = users::text_content(tx, &text);
        let (mentions, tags, _) = entities(&content);
        let row = store::insert(
            tx,
            &NewPost {
                user_id: uid,
                app_id: principal.app.id,
                created_at: now(),
                thread_id: parent.as_ref().map(|p| p.thread_id),
                reply_to: parent.as_ref().map(|p| p.id),
                repost_of: None,
                content: &content,
                is_nsfw: is_nsfw.unwrap_or(tags.iter().any(|t| t == "nsfw")),
                raw: &raw,
            },
        )?;
        store::set_mentions(tx, row.id, &mentions)?;
        store::set_tags(tx, row.id, &tags)?;
        let mut notified = mentions;
        notified.extend(parent.as_ref().map(|p| p.user_id));
        emit_new_post(tx, &ctx.api_url, &row, &notified)
    })?;
    // The answer is the event's rendering plus the author's own flags: no
    // second rendering, and none of it (not even the copy) on the single
    // writer's thread.
    Ok(Resp::data(201, view.post(own_new_post(ev.object()))))
}

pub fn get_one(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let id = parse_id("post_id", p[0])?;
    let view = View::optional(ctx, req)?;
    let v = ctx.db.read(|c| {
        let row = get_post(c, id)?;
        if row.is_deleted && !view.include_deleted {
            return Err(ApiError::not_found(format!("Post not found: {id} was deleted")));
        }
        view.render(c, &ctx.api_url, &row)
    })?;
    Ok(Resp::ok(v))
}

pub fn get_many(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let view = View::optional(ctx, req)?;
    let ids = crate::http::params::id_list(req, 200, "comma-separated post ids")?;
    let list = ctx.db.read(|c| {
        let mut out = Vec::new();
        for id in ids {
            match get_post(c, id) {
                Ok(row) if row.is_deleted && !view.include_deleted => {}
                Ok(row) => out.push(view.render(c, &ctx.api_url, &row)?),
                Err(e) if e.status == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

pub fn revise(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let id = parse_id("post_id", p[0])?;
    let (_, uid) = auth::user(&ctx.db, req, Some("write_post"))?;
    let body = req.params()?;
    let text = body_text(&body)?;
    let is_nsfw = body_bool(&body, "is_nsfw")?;
    let view = View::new(req, Some(uid));
    let v = ctx.db.write(|tx| {
        let row = get_post(tx, id)?;
        if row.user_id != uid {
            return Err(ApiError::forbidden("Only the post's author can revise it"));
        }
        if row.is_deleted {
            return Err(ApiError::bad_request(format!("post_id: post {id} was deleted")));
        }
        if row.repost_of.is_some() {
            return Err(ApiError::bad_request("post_id: a repost cannot be revised"));
        }
        if row.revision > 0 {
            return Err(ApiError::bad_request("post_id: a post can be revised only once"));
        }
        if now() - row.created_at > REVISION_WINDOW {
            return Err(ApiError::bad_request(format!(
                "post_id: a post can be revised only within {REVISION_WINDOW} seconds of its creation"
            )));
        }
        let content = users::text_content(tx, &text);
        if entities(&content) != entities(&row.content) {
            return Err(ApiError::bad_request(
                "text: a revision must keep the same links, mentions and tags",
            ));
        }
        let nsfw = is_nsfw.unwrap_or(row.is_nsfw);
        store::revise(tx, &row, &content, nsfw, now())?;
        let row = store::by_id(tx, id)?.ok_or_else(ApiError::internal)?;
        emit_post(tx, &ctx.api_url, &row, Some(("revision", json!(row.revision))))?;
        view.render(tx, &ctx.api_url, &row)
    })?;
    Ok(Resp::data(201, v))
}

pub fn delete(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let id = parse_id("post_id", p[0])?;
    let (_, uid) = auth::user(&ctx.db, req, Some("write_post"))?;
    let view = View::new(req, Some(uid));
    let v = ctx.db.write(|tx| {
        let row = get_post(tx, id)?;
        if row.user_id != uid {
            return Err(ApiError::forbidden("Only the post's author can delete it"));
        }
        if !row.is_deleted {
            store::mark_deleted(tx, id)?;
            // Deleting an original deletes its reposts.
            let reposts = store::live_reposts_of(tx, id)?;
            for r in &reposts {
                store::mark_deleted(tx, *r)?;
            }
            redact_post(tx, &ctx.api_url, id)?;
            let row = store::by_id(tx, id)?.ok_or_else(ApiError::internal)?;
            emit_post(tx, &ctx.api_url, &row, Some(("is_deleted", json!(true))))?;
            for r in reposts {
                let rp = store::by_id(tx, r)?.ok_or_else(ApiError::internal)?;
                emit_post(tx, &ctx.api_url, &rp, Some(("is_deleted", json!(true))))?;
            }
        }
        let row = store::by_id(tx, id)?.ok_or_else(ApiError::internal)?;
        view.render(tx, &ctx.api_url, &row)
    })?;
    Ok(Resp::ok(v))
}

/// Deletion is final (issue 16): the events already in the log that
/// carried post `id` (just marked deleted) carry it as REST now shows it,
/// without its text or raw: its own events, those of every repost of it
/// (which embed it), and the bookmark events about it. Runs in the
/// deleting transaction, so no replay after the commit sees the content.
fn redact_post(tx: &Tx, api_url: &str, id: i64) -> ApiResult<()> {
    let row = store::by_id(tx, id)?.ok_or_else(ApiError::internal)?;
    let gone = event_post(tx, api_url, &row)?;
    let set = |at: &'static str, v: &Value| {
        let v = v.clone();
        move |env: &mut Value| {
            if let Some(slot) = env.pointer_mut(at) {
                *slot = v.clone();
            }
        }
    };
    events::rewrite(tx, ObjType::Post, id, i64::MAX, set("/data/0", &gone))?;
    events::rewrite(tx, ObjType::Bookmark, id, i64::MAX, set("/data/post", &gone))?;
    for r in store::reposts_of(tx, id)? {
        let rp = store::by_id(tx, r)?.ok_or_else(ApiError::internal)?;
        let shown = event_post(tx, api_url, &rp)?;
        events::rewrite(tx, ObjType::Post, r, i64::MAX, set("/data/0", &shown))?;
    }
    Ok(())
}

pub fn repost(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let id = parse_id("post_id", p[0])?;
    let (principal, uid) = auth::user(&ctx.db, req, Some("write_post"))?;
    let view = View::new(req, Some(uid));
    let (created, v) = ctx.db.write(|tx| {
        let target = get_post(tx, id)?;
        if target.is_deleted {
            return Err(ApiError::not_found(format!("Post not found: {id} was deleted")));
        }
        if target.repost_of.is_some() {
            return Err(ApiError::bad_request("post_id: a repost cannot be reposted; repost the original"));
        }
        if target.user_id == uid {
            return Err(ApiError::bad_request("post_id: you cannot repost your own post"));
        }
        let created = store::live_repost_by(tx, id, uid)?.is_none();
        if created {
            let none = json!({});
            let rp = store::insert(
                tx,
                &NewPost {
                    user_id: uid,
                    app_id: principal.app.id,
                    created_at: now(),
                    thread_id: None,
                    reply_to: None,
                    repost_of: Some(id),
                    content: &none,
                    is_nsfw: false,
                    raw: &none,
                },
            )?;
            emit_post(tx, &ctx.api_url, &rp, None)?;
        }
        Ok((created, view.render(tx, &ctx.api_url, &target)?))
    })?;
    Ok(Resp::data(if created { 201 } else { 200 }, v))
}

pub fn unrepost(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let id = parse_id("post_id", p[0])?;
    let (_, uid) = auth::user(&ctx.db, req, Some("write_post"))?;
    let view = View::new(req, Some(uid));
    let v = ctx.db.write(|tx| {
        let target = get_post(tx, id)?;
        let original = target.repost_of.unwrap_or(id);
        if let Some(rid) = store::live_repost_by(tx, original, uid)? {
            store::mark_deleted(tx, rid)?;
            let rp = store::by_id(tx, rid)?.ok_or_else(ApiError::internal)?;
            emit_post(tx, &ctx.api_url, &rp, Some(("is_deleted", json!(true))))?;
        }
        let orig = store::by_id(tx, original)?.ok_or_else(ApiError::internal)?;
        view.render(tx, &ctx.api_url, &orig)
    })?;
    Ok(Resp::ok(v))
}

/// Writes the `bookmark` event `{user, post}`.
fn emit_bookmark(tx: &mut Tx, api_url: &str, uid: i64, post: &PostRow, deleted: bool) -> ApiResult<()> {
    let user = users::by_id(tx, uid)?.ok_or_else(ApiError::internal)?;
    let pv = event_post(tx, api_url, post)?;
    let data = crate::util::obj([("user", user_value(tx, api_url, &user, None)?), ("post", pv)]);
    let suppress: Vec<Value> = store::muted_or_blocked_by(tx, &[post.user_id], uid)?
        .into_iter()
        .map(|i| json!(i.to_string()))
        .collect();
    let mut meta = json!({
        "timestamp": now(), "id": post.id.to_string(), "type": "bookmark", "suppress_notifications": suppress,
    });
    if deleted {
        meta["is_deleted"] = json!(true);
    }
    tx.emit(NewEvent {
        kind: ObjType::Bookmark,
        audience: Audience::Public,
        auth: None,
        envelope: crate::util::obj([("meta", meta), ("data", data)]),
    })
}

pub fn bookmark(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let id = parse_id("post_id", p[0])?;
    let (_, uid) = auth::user(&ctx.db, req, Some("write_post"))?;
    let body = req.params()?;
    let note = crate::http::str_field(&body, "note")?.map(str::to_string);
    if note.as_ref().is_some_and(|n| n.chars().count() > 128) {
        return Err(ApiError::bad_request("note: at most 128 characters"));
    }
    let view = View::new(req, Some(uid));
    let v = ctx.db.write(|tx| {
        let post = live_original(tx, id)?;
        if store::bookmark(tx, uid, post.id, note.as_deref(), now())? {
            emit_bookmark(tx, &ctx.api_url, uid, &post, false)?;
        }
        view.render(tx, &ctx.api_url, &post)
    })?;
    Ok(Resp::ok(v))
}

pub fn unbookmark(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let id = parse_id("post_id", p[0])?;
    let (_, uid) = auth::user(&ctx.db, req, Some("write_post"))?;
    let view = View::new(req, Some(uid));
    let v = ctx.db.write(|tx| {
        let post = get_post(tx, id)?;
        let post = match post.repost_of {
            Some(o) => store::by_id(tx, o)?.ok_or_else(ApiError::internal)?,
            None => post,
        };
        if store::unbookmark(tx, uid, post.id)? {
            emit_bookmark(tx, &ctx.api_url, uid, &post, true)?;
        }
        view.render(tx, &ctx.api_url, &post)
    })?;
    Ok(Resp::ok(v))
}

/// Renders a page of posts with `pagination_id` and the page meta.
fn post_list(
    ctx: &Ctx,
    view: &View,
    req: &Req,
    f: impl FnOnce(&Connection, &Page) -> ApiResult<Listed>,
) -> ApiResult<Resp> {
    let pr = page(req)?;
    let (meta, list) = ctx.db.read(|c| {
        let page = f(c, &pr)?;
        let mut out = Vec::new();
        for it in &page.items {
            let Some(row) = store::by_id(c, it.oid)? else { continue };
            let mut v = view.render(c, &ctx.api_url, &row)?;
            v["pagination_id"] = json!(it.pid.to_string());
            out.push(v);
        }
        Ok((page_meta(&page), out))
    })?;
    Ok(Resp::with_meta(200, meta, Value::Array(list)))
}

fn list_of(ctx: &Ctx, req: &Req, view: &View, list: PostList, hide: bool) -> ApiResult<Resp> {
    let hide = store::Hide {
        for_viewer: if hide { view.viewer } else { None },
        include_muted: req.flag("include_muted", false),
        include_deleted: view.include_deleted,
    };
    post_list(ctx, view, req, |c, pr| Ok(store::post_page(c, &list, hide, pr)?))
}

pub fn stream_global(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let view = View::optional(ctx, req)?;
    list_of(ctx, req, &view, PostList::Global, true)
}

pub fn stream_me(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, Some("stream"))?;
    list_of(ctx, req, &View::new(req, Some(uid)), PostList::Personal(uid), true)
}

pub fn stream_unified(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, Some("stream"))?;
    list_of(ctx, req, &View::new(req, Some(uid)), PostList::Unified(uid), true)
}

pub fn tagged(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let tag = norm_tag(crate::util::url_decode(p[0]).trim_start_matches('#'));
    if tag.is_empty() {
        return Err(ApiError::bad_request("tag: must not be empty"));
    }
    let view = View::optional(ctx, req)?;
    list_of(ctx, req, &view, PostList::Tag(tag), true)
}

pub fn thread(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let id = parse_id("post_id", p[0])?;
    let view = View::optional(ctx, req)?;
    let root = ctx.db.read(|c| Ok(get_post(c, id)?.thread_id))?;
    list_of(ctx, req, &view, PostList::Thread(root), false)
}

pub fn revisions(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let id = parse_id("post_id", p[0])?;
    let view = View::optional(ctx, req)?;
    let list = ctx.db.read(|c| {
        let row = get_post(c, id)?;
        let mut out = Vec::new();
        for (rev, content, nsfw) in store::revisions(c, id)? {
            let old = PostRow { content, is_nsfw: nsfw, revision: 0, ..row.clone() };
            let mut v = view.render(c, &ctx.api_url, &old)?;
            v["revision"] = json!(rev);
            out.push(v);
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

fn user_id_of(ctx: &Ctx, ident: &str, viewer: Option<i64>) -> ApiResult<i64> {
    ctx.db.read(|c| Ok(find_user(c, ident, viewer)?.id))
}

pub fn user_posts(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let view = View::optional(ctx, req)?;
    let uid = user_id_of(ctx, p[0], view.viewer)?;
    list_of(ctx, req, &view, PostList::ByUser(uid), false)
}

pub fn user_mentions(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let view = View::optional(ctx, req)?;
    let uid = user_id_of(ctx, p[0], view.viewer)?;
    list_of(ctx, req, &view, PostList::Mentions(uid), false)
}

/// A user's bookmarks, paged by bookmark; `note` on one's own list only.
pub fn user_bookmarks(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let (_, me) = auth::user(&ctx.db, req, None)?;
    let view = View::new(req, Some(me));
    let uid = user_id_of(ctx, p[0], Some(me))?;
    let pr = page(req)?;
    let (meta, list) = ctx.db.read(|c| {
        let page = store::bookmark_page(c, uid, view.include_deleted, &pr)?;
        let mut out = Vec::new();
        for it in &page.items {
            let Some(row) = store::by_id(c, it.oid)? else { continue };
            let mut v = view.render(c, &ctx.api_url, &row)?;
            v["pagination_id"] = json!(it.pid.to_string());
            if let (true, Some(n)) = (uid == me, &it.extra) {
                v["note"] = json!(n);
            }
            out.push(v);
        }
        Ok((page_meta(&page), out))
    })?;
    Ok(Resp::with_meta(200, meta, Value::Array(list)))
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
