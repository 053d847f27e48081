//! Writing posts: create, revise, delete, repost and bookmark, each with its
//! event in the same transaction.

use super::*;
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, NewEvent, ObjType};
use crate::http::params::bool_field;
use crate::http::{Req, Resp};
use crate::storage::posts::{self as store, NewPost, PostRow};
use crate::storage::{events, users, Tx};
use crate::util::now;
use serde_json::{json, Value};

pub fn create(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let (principal, uid) = auth::user(&ctx.db, req, Some("write_post"))?;
    let body = req.params()?;
    let text = body_text(&body)?;
    let reply_to = body_id(&body, "reply_to")?;
    let is_nsfw = bool_field(&body, "is_nsfw")?;
    let raw = body_raw(&body)?;
    let opts = crate::http::params::text_opts(&body)?;
    let update_marker = req.flag("update_marker", false);
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
        let content = users::text_content_with(tx, &text, opts);
        // pnut refuses the same text twice in a short window
        // (`--duplicate-window-secs`, published in sys/config).
        let window = ctx.published.duplicate_secs;
        let same = content["text"].as_str().unwrap_or_default();
        if window > 0 && store::recent_duplicate(tx, uid, same, now() - window)? {
            return Err(ApiError::new(
                409,
                format!("text: you posted the same text less than {window} seconds ago"),
            ));
        }
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
        if update_marker {
            // `update_marker=1`: the author's "personal" stream marker moves
            // to the new post (pnut).
            crate::api::channels::move_marker(tx, &ctx.api_url, uid, "personal", row.id)?;
        }
        emit_new_post(tx, &ctx.api_url, &row, &notified)
    })?;
    // The answer is the event's rendering plus the author's own flags: no
    // second rendering, and none of it (not even the copy) on the single
    // writer's thread.
    Ok(Resp::data(201, view.post(own_new_post(ev.object()))))
}

pub fn revise(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let id = parse_id("post_id", p[0])?;
    let (_, uid) = auth::user(&ctx.db, req, Some("write_post"))?;
    let body = req.params()?;
    let text = body_text(&body)?;
    let is_nsfw = bool_field(&body, "is_nsfw")?;
    let opts = crate::http::params::text_opts(&body)?;
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
        let content = users::text_content_with(tx, &text, opts);
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
pub(super) fn redact_post(tx: &Tx, api_url: &str, id: i64) -> ApiResult<()> {
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
        // Reposting a repost reposts its original (pnut).
        let target = live_original(tx, id)?;
        let id = target.id;
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
pub(super) fn emit_bookmark(
    tx: &mut Tx,
    api_url: &str,
    uid: i64,
    post: &PostRow,
    deleted: bool,
) -> ApiResult<()> {
    let user = users::by_id(tx, uid)?.ok_or_else(ApiError::internal)?;
    let pv = event_post(tx, api_url, post)?;
    let data = crate::util::obj([("user", user_value(tx, api_url, &user, None)?), ("post", pv)]);
    let suppress: Vec<Value> = store::muted_or_blocked_by(tx, &[post.user_id], uid)?
        .into_iter()
        .map(|i| json!(i.to_string()))
        .collect();
    let mut meta = json!({
        "timestamp": now(), "id": post.id.to_string(), "type": "bookmark", "suppress_notifications": suppress,
        "suppress_notifications_all": !users::is_human(tx, uid)?,
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
    if note.as_ref().is_some_and(|n| n.chars().count() > crate::api::limits::BOOKMARK_NOTE) {
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

/// The `reason` of a report, from the body or the query.
pub(crate) fn report_reason(req: &Req) -> ApiResult<String> {
    let body = req.params()?;
    let given = match crate::http::str_field(&body, "reason")? {
        Some(r) => Some(r.to_string()),
        None => req.param("reason").map(str::to_string),
    };
    let reasons = crate::storage::reports::REASONS;
    match given {
        Some(r) if reasons.contains(&r.as_str()) => Ok(r),
        Some(r) => Err(ApiError::bad_request(format!("reason: '{r}' is not one of {}", reasons.join(", ")))),
        None => Err(ApiError::bad_request(format!("reason: required, one of {}", reasons.join(", ")))),
    }
}

/// `POST /v1/posts/{id}/report`: kept for the operator (`spout admin
/// reports`); 201 with the post.
pub fn report(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, None)?;
    let id = parse_id("post_id", p[0])?;
    let reason = report_reason(req)?;
    let view = View::new(req, Some(uid));
    let v = ctx.db.write_content(|tx| {
        let post = get_post(tx, id)?;
        if post.is_deleted {
            return Err(ApiError::not_found(format!("Post not found: {id} was deleted")));
        }
        if post.user_id == uid {
            return Err(ApiError::bad_request("You cannot report your own post"));
        }
        crate::storage::reports::report(tx, "post", id, uid, &reason)?;
        view.render(tx, &ctx.api_url, &post)
    })?;
    Ok(Resp::data(201, v))
}
