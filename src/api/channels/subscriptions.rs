//! Subscriptions (seed 004), the inbox and its unread counts, and channel mutes.

use super::*;
use crate::error::{ApiError, ApiResult};
use crate::http::{Req, Resp};
use crate::model::{prune, Kind, Opts};
use crate::storage::channels::{self as store, ChannelRow};
use crate::storage::Connection;
use serde_json::{json, Map, Value};

pub fn subscribe(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let v = ctx.db.write(|tx| {
        let ch = me.readable(tx, p[0])?;
        if !ch.is_active {
            return Err(ApiError::forbidden("This channel is inactive"));
        }
        subscribe_user(tx, &ctx.api_url, &ch, uid)?;
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn unsubscribe(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let v = ctx.db.write(|tx| {
        // Someone who may not read the channel learns nothing about it
        // (its recent message, counts) from this answer.
        let ch = me.readable(tx, p[0])?;
        unsubscribe_user(tx, &ctx.api_url, &ch, uid)?;
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn subscribers(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let pg = page(req)?;
    let presence = req.flag("include_presence", false);
    let opts = Opts::from_req(req);
    let (list, keys, more) = ctx.db.read(|c| {
        let ch = readable_channel(c, p[0], &caller)?;
        let (rows, more) = store::subscribers(c, ch.id, &pg)?;
        let mut out = Vec::new();
        for (key, u) in &rows {
            let Some(row) = crate::storage::users::by_id(c, *u)? else { continue };
            let mut v = user_value(c, &ctx.api_url, &row, caller.user())?;
            v["pagination_id"] = json!(key.to_string());
            if presence {
                let p = store::channel_presence(c, ch.id, *u)?.and_then(|(p, _)| p);
                v["presence"] = json!(p.unwrap_or_else(|| "offline".into()));
            }
            prune(&mut v, Kind::User, &opts);
            out.push(v);
        }
        Ok((out, rows.iter().map(|r| r.0).collect::<Vec<_>>(), more))
    })?;
    Ok(Resp::with_meta(200, page_meta(&keys, more), Value::Array(list)))
}

/// Comma-separated channel types from `name`.
pub(super) fn type_list(req: &Req, name: &str) -> Option<Vec<String>> {
    req.param(name)
        .map(|s| s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect())
}

/// The channels `me` is subscribed to, may read now, and its token covers.
pub(super) fn my_subscriptions(c: &Connection, me: &Me) -> ApiResult<Vec<ChannelRow>> {
    let mut subs = store::subscribed_channels(c, me.id)?;
    subs.retain(|ch| me.covers(&ch.kind) && ch.can_read(Some(me.id)));
    Ok(subs)
}

/// Counts of subscribed channels with unread messages, per type; chat and
/// PM are always present.
pub(super) fn unread_counts(c: &Connection, uid: i64, subs: &[ChannelRow]) -> ApiResult<Map<String, Value>> {
    let mut m = Map::new();
    m.insert(CHAT.into(), json!(0));
    m.insert(PM.into(), json!(0));
    for ch in subs {
        let entry = m.entry(ch.kind.clone()).or_insert(json!(0));
        if store::has_unread(c, ch.id, uid)? {
            *entry = json!(entry.as_i64().unwrap_or(0) + 1);
        }
    }
    Ok(m)
}

/// Seed 004: the inbox, most recent activity first, paginated by
/// `pagination_id` (the channel's activity number), `meta.unread_counts`.
pub fn subscribed(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let pg = page(req)?;
    let opts = channel_opts(req, true);
    let include_read = req.flag("include_read", true);
    let only = type_list(req, "channel_types");
    let exclude = if only.is_some() { None } else { type_list(req, "exclude_channel_types") };
    let (list, keys, more, counts) = ctx.db.read(|c| {
        let subs = my_subscriptions(c, &me)?;
        let counts = unread_counts(c, uid, &subs)?;
        let mut window = Vec::new();
        for ch in subs {
            if only.as_ref().is_some_and(|o| !o.contains(&ch.kind))
                || exclude.as_ref().is_some_and(|e| e.contains(&ch.kind))
                || pg.since.is_some_and(|s| ch.activity <= s)
                || pg.before.is_some_and(|b| ch.activity >= b)
                || (!include_read && !store::has_unread(c, ch.id, uid)?)
            {
                continue;
            }
            window.push(ch);
        }
        let n = pg.count.unsigned_abs() as usize;
        let more = window.len() > n;
        let picked: Vec<ChannelRow> = if pg.count > 0 {
            window.into_iter().take(n).collect()
        } else {
            let skip = window.len().saturating_sub(n);
            window.into_iter().skip(skip).collect()
        };
        let mut out = Vec::new();
        for ch in &picked {
            let mut v = rendered(channel_value(c, &ctx.api_url, ch, Some(uid))?, &opts);
            v["pagination_id"] = json!(ch.activity.to_string());
            out.push(v);
        }
        Ok((out, picked.iter().map(|c| c.activity).collect::<Vec<_>>(), more, counts))
    })?;
    let mut meta = page_meta(&keys, more);
    meta.insert("unread_counts".into(), Value::Object(counts));
    Ok(Resp::with_meta(200, meta, Value::Array(list)))
}

pub(super) fn unread_types(req: &Req) -> ApiResult<Vec<String>> {
    let types = type_list(req, "channel_types").unwrap_or_else(|| vec![PM.to_string()]);
    if types.is_empty() || types.len() > 4 {
        return Err(ApiError::bad_request("channel_types: one to four channel types"));
    }
    Ok(types)
}

/// `{"io.pnut.core.pm": n}`: subscribed channels of each type with unread messages.
pub fn num_unread(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let types = unread_types(req)?;
    let counts = ctx.db.read(|c| {
        let subs = my_subscriptions(c, &me)?;
        let all = unread_counts(c, uid, &subs)?;
        Ok(types.iter().map(|t| (t.clone(), all.get(t).cloned().unwrap_or(json!(0)))).collect::<Map<_, _>>())
    })?;
    Ok(Resp::ok(Value::Object(counts)))
}

/// Marks every subscribed channel of the types read; answers the (now zero) counts.
pub fn mark_all_read(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let types = unread_types(req)?;
    let counts = ctx.db.write(|tx| {
        let subscribed = my_subscriptions(tx, &me)?;
        for ch in subscribed.iter().filter(|ch| types.contains(&ch.kind)) {
            if let Some(newest) = store::channel_stats(tx, ch.id)?.recent_id {
                store::set_marker(tx, uid, &format!("channel:{}", ch.id), newest, 0, false)?;
            }
        }
        let all = unread_counts(tx, uid, &subscribed)?;
        Ok(types.iter().map(|t| (t.clone(), all.get(t).cloned().unwrap_or(json!(0)))).collect::<Map<_, _>>())
    })?;
    Ok(Resp::ok(Value::Object(counts)))
}

// ------------------------------------------------------------------- mutes

/// Muting unsubscribes and keeps PMs from subscribing the user again.
pub fn mute(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let v = ctx.db.write(|tx| {
        let ch = me.readable(tx, p[0])?;
        unsubscribe_user(tx, &ctx.api_url, &ch, uid)?;
        store::set_muted(tx, ch.id, uid, true)?;
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn unmute(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let v = ctx.db.write(|tx| {
        let ch = me.channel(tx, p[0])?;
        store::set_muted(tx, ch.id, uid, false)?;
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn muted(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let pg = page(req)?;
    let opts = channel_opts(req, true);
    let (list, keys, more) = ctx.db.read(|c| {
        let (rows, more) = store::muted_channels(c, uid, &pg)?;
        let mut out = Vec::new();
        for (key, ch) in rows.iter().filter(|(_, ch)| me.covers(&ch.kind)) {
            let mut v = rendered(channel_value(c, &ctx.api_url, ch, Some(uid))?, &opts);
            v["pagination_id"] = json!(key.to_string());
            out.push(v);
        }
        Ok((out, rows.iter().map(|r| r.0).collect::<Vec<_>>(), more))
    })?;
    Ok(Resp::with_meta(200, page_meta(&keys, more), Value::Array(list)))
}
