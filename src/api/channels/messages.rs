//! Messages: create (also the PM shortcut that finds or creates the PM
//! channel), read, list, delete, sticky. Create and delete emit `message`
//! events whose audience is everyone who may read the channel.

use super::{
    bool_field, emit_channel, find_channel, id_list, id_value, new_raw, page, page_meta, page_with_marker,
    participants, pm_key, readable_channel, reader, subscribe_user, writer, CHAT, PM,
};
use crate::api::{parse_id, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::event::{Event, NewEvent, ObjType};
use crate::http::{Req, Resp};
use crate::model::{prune, Kind, Opts};
use crate::storage::channels::{self as store, Acl, ChannelRow, Group, MessageRow, NewMessage};
use crate::storage::Connection;
use crate::storage::{events, Tx};
use crate::util::{iso8601, now};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The full message object (raw, html, user included; callers prune).
pub fn message_value(c: &Connection, api_url: &str, m: &MessageRow) -> ApiResult<Value> {
    let mut v = json!({
        "id": m.id.to_string(),
        "channel_id": m.channel_id.to_string(),
        "created_at": iso8601(m.created_at),
        "user": crate::render::user_json_by_id(c, api_url, m.user_id)?,
        "source": crate::render::source_json(c, m.app_id)?,
        "thread_id": m.thread_id.to_string(),
        "counts": {"replies": store::reply_count(c, m.id)?},
        "is_sticky": m.is_sticky,
        "raw": m.raw,
    });
    if let Some(r) = m.reply_to {
        v["reply_to"] = json!(r.to_string());
    }
    if m.is_deleted {
        v["is_deleted"] = json!(true);
        if let Some(by) = m.deleted_by {
            v["deleted_by"] = json!(by.to_string());
        }
    } else {
        v["content"] = crate::storage::users::text_content(c, &m.text);
    }
    if m.is_nsfw {
        v["is_nsfw"] = json!(true);
    }
    Ok(v)
}

fn rendered(mut v: Value, opts: &Opts) -> Value {
    prune(&mut v, Kind::Message, opts);
    v
}

/// Writes a `message` event: `[message]`, meta `channel_type`,
/// `channel_name` (chat rooms), and on create `subscribed_user_ids` and
/// `suppress_notifications`; on delete `is_deleted`. Returns the event: the
/// message it carries is the caller's answer, rendered once and copied out
/// after the transaction, off the writer thread (`Event::object`).
fn emit_message(
    tx: &mut Tx,
    api_url: &str,
    ch: &ChannelRow,
    m: &MessageRow,
    deleted: bool,
) -> ApiResult<Arc<Event>> {
    let subscribers = store::subscriber_ids(tx, ch.id)?;
    let mut meta = json!({
        "timestamp": now(), "id": m.id.to_string(), "type": "message", "channel_type": ch.kind,
        "suppress_notifications": store::suppressed(tx, m.user_id, &subscribers)?,
        "suppress_notifications_all": !crate::storage::users::is_human(tx, m.user_id)?,
    });
    if ch.kind == CHAT {
        if let Some(n) = ch.chat_name() {
            meta["channel_name"] = json!(n);
        }
    }
    if deleted {
        meta["is_deleted"] = json!(true);
    } else {
        let subs: Vec<String> = subscribers.iter().map(i64::to_string).collect();
        meta["subscribed_user_ids"] = json!(subs);
    }
    let data = Value::Array(vec![message_value(tx, api_url, m)?]);
    tx.emit_shared(NewEvent {
        kind: ObjType::Message,
        audience: ch.audience(),
        auth: None,
        envelope: crate::util::obj([("meta", meta), ("data", data)]),
    })
}

/// Validated message input.
struct Input {
    text: String,
    raw: Value,
    reply_to: Option<i64>,
    is_nsfw: bool,
}

fn input(body: &Map<String, Value>) -> ApiResult<Input> {
    let text = match body.get("text") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ApiError::bad_request("text: required"));
        }
        Some(_) => return Err(ApiError::bad_request("text: must be a string")),
    };
    let n = text.chars().count();
    if n > crate::api::limits::MESSAGE_TEXT {
        let max = crate::api::limits::MESSAGE_TEXT;
        return Err(ApiError::bad_request(format!("text: at most {max} characters (got {n})")));
    }
    let reply_to = match body.get("reply_to") {
        None | Some(Value::Null) => None,
        Some(v) => Some(id_value(v, "reply_to")?),
    };
    Ok(Input { text, raw: new_raw(body)?, reply_to, is_nsfw: bool_field(body, "is_nsfw")?.unwrap_or(false) })
}

/// Creates a message in `ch` (write access checked here) with its event.
fn post(
    tx: &mut Tx,
    api_url: &str,
    ch: &ChannelRow,
    uid: i64,
    app_id: i64,
    inp: &Input,
    update_marker: bool,
) -> ApiResult<Arc<Event>> {
    if !ch.is_active {
        return Err(ApiError::forbidden("This channel is inactive"));
    }
    if !ch.can_write(Some(uid)) {
        return Err(ApiError::forbidden(format!("You may not write to channel {}", ch.id)));
    }
    let reply = match inp.reply_to {
        None => None,
        Some(r) => {
            let m = store::message(tx, r)?
                .filter(|m| m.channel_id == ch.id)
                .ok_or_else(|| ApiError::bad_request(format!("reply_to: no message {r} in this channel")))?;
            Some((m.id, m.thread_id))
        }
    };
    let m = store::insert_message(
        tx,
        &NewMessage {
            channel_id: ch.id,
            user_id: uid,
            app_id,
            text: &inp.text,
            raw: &inp.raw,
            reply_to: reply,
            is_nsfw: inp.is_nsfw,
        },
    )?;
    if update_marker {
        store::set_marker(tx, uid, &format!("channel:{}", ch.id), m.id, 0, false)?;
    }
    emit_message(tx, api_url, ch, &m, false)
}

pub fn create(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let (uid, app_id) = (me.id, me.app_id);
    let inp = input(&req.json_object()?)?;
    let update_marker = req.flag("update_marker", false);
    let ev = ctx.db.write(|tx| {
        let ch = me.channel(tx, p[0])?;
        post(tx, &ctx.api_url, &ch, uid, app_id, &inp, update_marker)
    })?;
    Ok(Resp::data(201, rendered(ev.object(), &Opts::from_req(req))))
}

/// `POST /v1/channels/pm/messages`: finds the PM channel for exactly the
/// sender plus `destinations`, or creates it (write ACL = everyone, all
/// groups immutable, no owner); participants who have not muted it are
/// subscribed.
pub fn create_pm(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let (uid, app_id) = (me.id, me.app_id);
    let body = req.json_object()?;
    let inp = input(&body)?;
    let dest = body.get("destinations").ok_or_else(|| ApiError::bad_request("destinations: required"))?;
    me.require(PM)?;
    let update_marker = req.flag("update_marker", false);
    let ev = ctx.db.write(|tx| {
        let users = participants(tx, uid, dest, "destinations")?;
        let key = pm_key(&users);
        let ch = match store::channel_by_pm_key(tx, &key)? {
            Some(ch) => ch,
            None => {
                let mut sorted = users.clone();
                sorted.sort_unstable();
                let acl = Acl {
                    full: Group { immutable: true, ..Group::default() },
                    write: Group { immutable: true, user_ids: sorted, ..Group::default() },
                    read: Group { immutable: true, ..Group::default() },
                };
                let ch = store::insert_channel(tx, PM, None, &acl, &json!({}), Some(&key))?;
                emit_channel(tx, &ctx.api_url, &ch, ch.audience())?;
                ch
            }
        };
        for u in &users {
            if *u == uid || !store::is_muted(tx, ch.id, *u)? {
                subscribe_user(tx, &ctx.api_url, &ch, *u)?;
            }
        }
        post(tx, &ctx.api_url, &ch, uid, app_id, &inp, update_marker)
    })?;
    Ok(Resp::data(201, rendered(ev.object(), &Opts::from_req(req))))
}

pub fn list(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let include_deleted = req.flag("include_deleted", true);
    let opts = Opts::from_req(req);
    let (list, keys, more, marker) = ctx.db.read(|c| {
        let ch = readable_channel(c, p[0], &caller)?;
        let marker = match caller.user() {
            Some(u) => store::marker(c, u, &format!("channel:{}", ch.id))?,
            None => None,
        };
        let pg = page_with_marker(req, marker.as_ref())?;
        let (rows, more) = store::messages(c, store::MessagesOf::Channel(ch.id), &pg, include_deleted)?;
        let out = render_rows(c, &ctx.api_url, &rows, &opts)?;
        let marker = marker.map(|m| super::marker_value(&m));
        Ok((out, ids(&rows), more, marker))
    })?;
    let mut meta = page_meta(&keys, more);
    if let Some(m) = marker {
        meta.insert("marker".into(), m);
    }
    Ok(Resp::with_meta(200, meta, Value::Array(list)))
}

/// A message of a channel; the author may read it without channel access.
fn find_message(c: &Connection, ch: &ChannelRow, raw_id: &str) -> ApiResult<MessageRow> {
    let id = parse_id("message_id", raw_id)?;
    store::message(c, id)?
        .filter(|m| m.channel_id == ch.id)
        .ok_or_else(|| ApiError::not_found(format!("Message not found: {id}")))
}

pub fn get_one(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let v = ctx.db.read(|c| {
        let ch = find_channel(c, p[0])?;
        let m = find_message(c, &ch, p[1])?;
        if !caller.can_read_message(&ch, m.user_id) {
            return Err(ApiError::forbidden(format!("You may not read channel {}", ch.id)));
        }
        message_value(c, &ctx.api_url, &m)
    })?;
    Ok(Resp::ok(rendered(v, &Opts::from_req(req))))
}

pub fn get_many(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let ids = id_list(req, 200)?;
    let opts = Opts::from_req(req);
    let list = ctx.db.read(|c| {
        let mut out = Vec::new();
        for id in ids {
            let Some(m) = store::message(c, id)? else { continue };
            let Some(ch) = store::channel(c, m.channel_id)? else { continue };
            if caller.can_read_message(&ch, m.user_id) {
                out.push(rendered(message_value(c, &ctx.api_url, &m)?, &opts));
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

/// The author, or a full-access user in a non-PM channel (`deleted_by`).
pub fn delete(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    /// What the write did.
    enum Deletion {
        Now(Arc<Event>),
        /// Deleted before: nothing was written.
        Before(MessageRow),
    }
    let me = writer(ctx, req)?;
    let uid = me.id;
    let done = ctx.db.write(|tx| {
        let ch = me.channel(tx, p[0])?;
        let m = find_message(tx, &ch, p[1])?;
        let by_author = m.user_id == uid;
        let moderator = ch.kind != PM && ch.can_full(Some(uid));
        if !(by_author || moderator) {
            return Err(ApiError::forbidden(
                "Only the author or a user with full access may delete this message",
            ));
        }
        if m.is_deleted {
            return Ok(Deletion::Before(m));
        }
        let by = if by_author { None } else { Some(uid) };
        store::delete_message(tx, m.id, by)?;
        let m = store::message(tx, m.id)?.ok_or_else(ApiError::internal)?;
        redact_message(tx, &ctx.api_url, &m)?;
        Ok(Deletion::Now(emit_message(tx, &ctx.api_url, &ch, &m, true)?))
    })?;
    let v = match done {
        Deletion::Now(ev) => ev.object(),
        // Rendered on a reader, not on the writer.
        Deletion::Before(m) => ctx.db.read(|c| message_value(c, &ctx.api_url, &m))?,
    };
    Ok(Resp::ok(rendered(v, &Opts::from_req(req))))
}

/// Deletion is final (issue 16): the events already in the log that
/// carried message `m` (just deleted) carry it as REST now shows it,
/// without its text: its own events, and the channel and subscription
/// events of its channel that show it as the recent message. Runs in the
/// deleting transaction, so no replay after the commit sees the content.
fn redact_message(tx: &Tx, api_url: &str, m: &MessageRow) -> ApiResult<()> {
    let gone = message_value(tx, api_url, m)?;
    let id = json!(m.id.to_string());
    let set = |at: &'static str| {
        let (gone, id) = (&gone, &id);
        move |env: &mut Value| {
            if let Some(slot) = env.pointer_mut(at).filter(|v| v.get("id") == Some(id)) {
                *slot = gone.clone();
            }
        }
    };
    events::rewrite(tx, ObjType::Message, m.id, i64::MAX, set("/data/0"))?;
    events::rewrite(tx, ObjType::Channel, m.channel_id, i64::MAX, set("/data/recent_message"))?;
    events::rewrite(
        tx,
        ObjType::ChannelSubscription,
        m.channel_id,
        i64::MAX,
        set("/data/channel/recent_message"),
    )?;
    Ok(())
}

fn set_sticky(ctx: &Ctx, req: &Req, p: &[&str], sticky: bool) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let v = ctx.db.write(|tx| {
        let ch = me.channel(tx, p[0])?;
        let allowed = if ch.kind == PM { ch.can_write(Some(uid)) } else { ch.can_full(Some(uid)) };
        if !allowed {
            return Err(ApiError::forbidden("Only users with full access may change sticky messages"));
        }
        let m = find_message(tx, &ch, p[1])?;
        if m.is_deleted {
            return Err(ApiError::bad_request("message_id: a deleted message cannot be sticky"));
        }
        store::set_sticky(tx, m.id, sticky)?;
        let m = store::message(tx, m.id)?.ok_or_else(ApiError::internal)?;
        message_value(tx, &ctx.api_url, &m)
    })?;
    Ok(Resp::ok(rendered(v, &Opts::from_req(req))))
}

pub fn sticky(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    set_sticky(ctx, req, p, true)
}

pub fn unsticky(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    set_sticky(ctx, req, p, false)
}

pub fn sticky_list(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let opts = Opts::from_req(req);
    let list = ctx.db.read(|c| {
        let ch = readable_channel(c, p[0], &caller)?;
        let mut out = Vec::new();
        for m in store::sticky_messages(c, ch.id)? {
            let mut v = rendered(message_value(c, &ctx.api_url, &m)?, &opts);
            v["pagination_id"] = json!(m.id.to_string());
            out.push(v);
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

/// A page of messages rendered for the reader's options.
fn render_rows(c: &Connection, api_url: &str, rows: &[MessageRow], opts: &Opts) -> ApiResult<Vec<Value>> {
    rows.iter().map(|m| Ok(rendered(message_value(c, api_url, m)?, opts))).collect()
}

/// The ids of a page, for its pagination meta.
fn ids(rows: &[MessageRow]) -> Vec<i64> {
    rows.iter().map(|m| m.id).collect()
}

/// `GET /v1/channels/{id}/messages/{mid}/thread`: the message's thread.
pub fn thread(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let pg = page(req)?;
    let include_deleted = req.flag("include_deleted", true);
    let opts = Opts::from_req(req);
    let (list, keys, more) = ctx.db.read(|c| {
        let ch = readable_channel(c, p[0], &caller)?;
        let m = find_message(c, &ch, p[1])?;
        let (rows, more) = store::messages(c, store::MessagesOf::Thread(m.thread_id), &pg, include_deleted)?;
        let out = render_rows(c, &ctx.api_url, &rows, &opts)?;
        Ok((out, ids(&rows), more))
    })?;
    Ok(Resp::with_meta(200, page_meta(&keys, more), Value::Array(list)))
}

/// `GET /v1/users/me/messages`: the caller's own messages, newest first.
pub fn mine(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let pg = page(req)?;
    let include_deleted = req.flag("include_deleted", true);
    let opts = Opts::from_req(req);
    let (list, keys, more) = ctx.db.read(|c| {
        let (rows, more) = store::messages(c, store::MessagesOf::Author(uid), &pg, include_deleted)?;
        // Messages in channels of a type the token does not cover are left
        // out (the page may then be short; its bounds stay the same).
        let mut kinds: Vec<(i64, bool)> = Vec::new();
        let mut shown = Vec::new();
        for m in &rows {
            let covered = match kinds.iter().find(|(id, _)| *id == m.channel_id) {
                Some((_, k)) => *k,
                None => {
                    let k = store::channel(c, m.channel_id)?.is_some_and(|ch| me.covers(&ch.kind));
                    kinds.push((m.channel_id, k));
                    k
                }
            };
            if covered {
                shown.push(m.clone());
            }
        }
        let out = render_rows(c, &ctx.api_url, &shown, &opts)?;
        Ok((out, ids(&rows), more))
    })?;
    Ok(Resp::with_meta(200, page_meta(&keys, more), Value::Array(list)))
}

/// `GET /v1/channels/messages/search`: `q`, `channel_ids`, `creator_id`;
/// newest first, only messages the caller may read (as `?ids=` shows them).
pub fn search(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    use crate::api::search as sp;
    let caller = reader(ctx, req)?;
    let channels = sp::ids(req, "channel_ids")?;
    let creator = sp::id(req, "creator_id")?;
    let opts = Opts::from_req(req);
    sp::scan(ctx, req, "messages_fts", "messages", |c, id| {
        let Some(m) = store::message(c, id)? else { return Ok(None) };
        if m.is_deleted
            || (!channels.is_empty() && !channels.contains(&m.channel_id))
            || creator.is_some_and(|u| u != m.user_id)
        {
            return Ok(None);
        }
        let Some(ch) = store::channel(c, m.channel_id)? else { return Ok(None) };
        if !caller.can_read_message(&ch, m.user_id) {
            return Ok(None);
        }
        Ok(Some(rendered(message_value(c, &ctx.api_url, &m)?, &opts)))
    })
}

/// `POST /v1/channels/{cid}/messages/{mid}/report`: a message the caller
/// may read, not their own; kept for the operator. 201 with the message.
pub fn report(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let reason = crate::api::posts_report_reason(req)?;
    let v = ctx.db.write_content(|tx| {
        let ch = me.readable(tx, p[0])?;
        let m = find_message(tx, &ch, p[1])?;
        if m.is_deleted {
            return Err(ApiError::not_found(format!("Message not found: {} was deleted", m.id)));
        }
        if m.user_id == me.id {
            return Err(ApiError::bad_request("You cannot report your own message"));
        }
        crate::storage::reports::report(tx, "message", m.id, me.id, &reason)?;
        message_value(tx, &ctx.api_url, &m)
    })?;
    Ok(Resp::data(201, rendered(v, &Opts::from_req(req))))
}
