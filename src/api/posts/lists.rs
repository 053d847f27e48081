//! Reading posts: one, many, the streams, tags, threads, revisions and a
//! user's posts, mentions and bookmarks.

use super::*;
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::http::params::page;
use crate::http::{Req, Resp};
use crate::storage::posts::{self as store, Listed, PostList, PostRow};
use crate::storage::Connection;
use crate::storage::Page;
use serde_json::{json, Value};

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

/// Renders a page of posts with `pagination_id` and the page meta.
pub(super) fn post_list(
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

pub(super) fn list_of(ctx: &Ctx, req: &Req, view: &View, list: PostList, hide: bool) -> ApiResult<Resp> {
    let hide = store::Hide {
        for_viewer: if hide { view.viewer } else { None },
        include_muted: req.flag("include_muted", false),
        include_deleted: view.include_deleted,
    };
    let mut resp = post_list(ctx, view, req, |c, pr| Ok(store::post_page(c, &list, hide, pr)?))?;
    // Polled with since_id: what the client may hold that changed since
    // (pnut's `deleted_ids` and `revised_ids`).
    let since = crate::http::params::page(req)?.since;
    if let (Some(since), false) = (since, matches!(list, PostList::Search(_) | PostList::Explore(_))) {
        let (deleted, revised) = ctx.db.read(|c| Ok(store::changed_since(c, &list, hide, since)?))?;
        let ids = |v: Vec<i64>| json!(v.iter().map(|i| i.to_string()).collect::<Vec<_>>());
        resp.body["meta"]["deleted_ids"] = ids(deleted);
        resp.body["meta"]["revised_ids"] = ids(revised);
    }
    Ok(resp)
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

pub(super) fn user_id_of(ctx: &Ctx, ident: &str, viewer: Option<i64>) -> ApiResult<i64> {
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

/// `GET /v1/posts/search`: the post streams' visibility (deleted posts
/// never, blocked users never, muted ones unless `include_muted`).
pub fn search(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    use crate::api::search as sp;
    let view = View::optional(ctx, req)?;
    let q = sp::q(req)?;
    let mentions = sp::list(req, "mentions")?;
    let mention_ids = ctx.db.read(|c| {
        let mut out = Vec::new();
        for m in &mentions {
            let name = m.trim_start_matches('@');
            let id = match name.parse::<i64>() {
                Ok(id) => id,
                // An unknown user matches nothing.
                Err(_) => crate::storage::users::by_username(c, name)?.map_or(-1, |u| u.id),
            };
            out.push(id);
        }
        Ok(out)
    })?;
    let s = crate::storage::search::PostSearch {
        relevance: sp::relevance(req, q.is_some())?,
        q,
        creator_id: sp::id(req, "creator_id")?,
        reply_to: sp::id(req, "reply_to")?,
        thread_id: sp::id(req, "thread_id")?,
        tags: sp::list(req, "tags")?.iter().map(|t| norm_tag(t.trim_start_matches('#'))).collect(),
        mentions: mention_ids,
        has_mentions: sp::flag(req, "has_mentions")?,
        is_reply: sp::flag(req, "is_reply")?,
        is_nsfw: sp::flag(req, "is_nsfw")?,
        is_revised: sp::flag(req, "is_revised")?,
        client_id: req.param("client_id").filter(|s| !s.is_empty()).map(str::to_string),
        created_after: sp::time(req, "created_after")?,
        created_before: sp::time(req, "created_before")?,
        user_types: sp::user_types(req)?,
        exclude_user_ids: sp::ids(req, "exclude_user_ids")?,
        raw_types: sp::list(req, "raw_types")?,
    };
    list_of(ctx, req, &view, PostList::Search(Box::new(s)), true)
}

/// The post explore streams: slug, title, description.
const EXPLORE: &[crate::api::search::Explore] = &[
    ("conversations", "Conversations", "Posts that started a conversation: someone replied"),
    ("photos", "Photos", "Posts with a photo"),
    (
        "trending",
        "Trending",
        "Posts of the last two days that others replied to, reposted or bookmarked most",
    ),
    (
        "missed_conversations",
        "Missed conversations",
        "Conversations among people you follow that you took no part in (needs a user token)",
    ),
    ("moderated", "Moderated", "Posts by people (not bots or feeds), not NSFW, that nobody reported"),
];

/// `GET /v1/posts/streams/explore`.
pub fn explore_list(ctx: &Ctx, _: &Req, _: &[&str]) -> ApiResult<Resp> {
    Ok(crate::api::search::explore_catalog(ctx, "/v1/posts/streams/explore", EXPLORE))
}

/// `GET /v1/posts/streams/explore/{slug}`: as the other post streams show
/// posts (deleted never, blocked users never, muted unless asked).
pub fn explore(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    use crate::storage::posts::Explore;
    let view = View::optional(ctx, req)?;
    let e = match p[0] {
        "conversations" => Explore::Conversations,
        "photos" => Explore::Photos,
        "trending" => Explore::Trending { now: crate::util::now() },
        "missed_conversations" => Explore::MissedConversations {
            viewer: view
                .viewer
                .ok_or_else(|| ApiError::unauthorized("missed_conversations needs a user token"))?,
        },
        "moderated" => Explore::Moderated,
        other => return Err(ApiError::not_found(format!("No explore stream '{other}'"))),
    };
    list_of(ctx, req, &view, PostList::Explore(e), true)
}
