//! Channels: create, read, update, deactivate, and one's own.

use super::*;
use crate::error::{ApiError, ApiResult};
use crate::event::Audience;
use crate::http::{Req, Resp};
use crate::storage::channels::{self as store, Acl};
use serde_json::Value;

pub fn create_channel(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let body = req.params()?;
    let kind = crate::http::str_field(&body, "type")?.unwrap_or("");
    check_type(kind)?;
    me.require(kind)?;
    if kind == PM {
        return Err(ApiError::bad_request(
            "type: io.pnut.core.pm channels are created by POST /v1/channels/pm/messages",
        ));
    }
    let raw = new_raw(&body)?;
    check_chat_raw(kind, &raw)?;
    let v = ctx.db.write(|tx| {
        let acl = match body.get("acl") {
            None | Some(Value::Null) => Acl::default(),
            Some(a) => apply_acl(tx, &Acl::default(), a, true, Some(uid), true)?,
        };
        let ch = store::insert_channel(tx, kind, Some(uid), &acl, &raw, None)?;
        // The creator is subscribed to a new channel: the channel event
        // (which lists the subscribers) comes first, then the subscription's.
        store::subscribe(tx, ch.id, uid)?;
        emit_channel(tx, &ctx.api_url, &ch, ch.audience())?;
        emit_subscription(tx, &ctx.api_url, &ch, uid, false)?;
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::data(201, rendered(v, &channel_opts(req, false))))
}

pub fn get_channel(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let v = ctx.db.read(|c| {
        let ch = readable_channel(c, p[0], &caller)?;
        channel_value(c, &ctx.api_url, &ch, caller.user())
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn get_channels(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let ids = id_list(req, 200)?;
    let opts = channel_opts(req, true);
    let list = ctx.db.read(|c| {
        let mut out = Vec::new();
        for id in ids {
            if let Some(ch) = store::channel(c, id)?.filter(|ch| caller.can_read(ch)) {
                out.push(rendered(channel_value(c, &ctx.api_url, &ch, caller.user())?, &opts));
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

/// Owner or full access: `acl` (owner for `full`) and `raw`.
pub fn update_channel(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let body = req.params()?;
    let v = ctx.db.write(|tx| {
        let mut ch = me.channel(tx, p[0])?;
        if !ch.can_full(Some(uid)) {
            return Err(ApiError::forbidden(
                "Only the owner or users with full access may edit this channel",
            ));
        }
        if !ch.is_active {
            return Err(ApiError::forbidden("This channel is inactive"));
        }
        let before = ch.audience();
        if let Some(a) = body.get("acl").filter(|a| !a.is_null()) {
            ch.acl = apply_acl(tx, &ch.acl, a, false, ch.owner_id, ch.owner_id == Some(uid))?;
        }
        if let Some(r) = body.get("raw").filter(|r| !r.is_null()) {
            ch.raw = merge_raw(&ch.raw, r)?;
            check_chat_raw(&ch.kind, &ch.raw)?;
        }
        store::save_channel(tx, &ch)?;
        // Users who lost access still hear about the change that removed them.
        let audience = match (before, ch.audience()) {
            (
                Audience::Channel { channel_type, users: Some(mut a) },
                Audience::Channel { users: Some(b), .. },
            ) => {
                for u in b {
                    if !a.contains(&u) {
                        a.push(u);
                    }
                }
                Audience::Channel { channel_type, users: Some(a) }
            }
            (before @ Audience::Channel { users: None, .. }, _) => before,
            (_, after) => after,
        };
        emit_channel(tx, &ctx.api_url, &ch, audience)?;
        // A subscriber who may no longer read the channel is unsubscribed
        // (their apps get the subscription's end), so it leaves their inbox,
        // recent message and unread counts at once.
        for u in store::subscriber_ids(tx, ch.id)? {
            if !ch.can_read(Some(u)) {
                unsubscribe_user(tx, &ctx.api_url, &ch, u)?;
            }
        }
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

/// Owner only, not PMs: irreversible; drops subscriptions, keeps messages.
pub fn deactivate_channel(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let v = ctx.db.write(|tx| {
        let mut ch = me.channel(tx, p[0])?;
        if ch.kind == PM {
            return Err(ApiError::forbidden("PM channels cannot be deactivated"));
        }
        if ch.owner_id != Some(uid) {
            return Err(ApiError::forbidden("Only the channel owner may deactivate it"));
        }
        if ch.is_active {
            ch.is_active = false;
            store::save_channel(tx, &ch)?;
            for u in store::drop_subscriptions(tx, ch.id)? {
                store::delete_marker(tx, u, &format!("channel:{}", ch.id))?;
                emit_subscription(tx, &ctx.api_url, &ch, u, true)?;
            }
            emit_channel(tx, &ctx.api_url, &ch, ch.audience())?;
        }
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn my_channels(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let pg = page(req)?;
    let opts = channel_opts(req, true);
    let (list, keys, more) = ctx.db.read(|c| {
        let (rows, more) = store::owned_channels(c, uid, &pg, req.flag("include_inactive", false))?;
        let mut out = Vec::new();
        // A channel of a type the token does not cover is left out of the
        // page (which may then be short).
        for ch in rows.iter().filter(|ch| me.covers(&ch.kind)) {
            out.push(rendered(channel_value(c, &ctx.api_url, ch, Some(uid))?, &opts));
        }
        Ok((out, rows.iter().map(|r| r.id).collect::<Vec<_>>(), more))
    })?;
    Ok(Resp::with_meta(200, page_meta(&keys, more), Value::Array(list)))
}

/// `GET /v1/channels/search`: `q` (the chat room's name and description),
/// `channel_types`, `categories`, `is_private`; newest first, only
/// channels the caller may read, as `GET /v1/channels?ids=` shows them.
pub fn search(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    use crate::api::search as sp;
    let caller = reader(ctx, req)?;
    let types = sp::list(req, "channel_types")?;
    let categories = sp::list(req, "categories")?;
    let private = sp::flag(req, "is_private")?;
    let opts = channel_opts(req, true);
    sp::scan(ctx, req, "channels_fts", "channels", |c, id| {
        let Some(ch) = store::channel(c, id)? else { return Ok(None) };
        let in_category = || {
            ch.raw["io.pnut.core.chat-settings"][0]["categories"].as_array().is_some_and(|cs| {
                cs.iter().any(|x| x.as_str().is_some_and(|x| categories.iter().any(|k| k == x)))
            })
        };
        let ok = ch.is_active
            && (types.is_empty() || types.contains(&ch.kind))
            && (categories.is_empty() || in_category())
            && private.is_none_or(|p| p != ch.acl.read.public)
            && caller.can_read(&ch);
        ok.then(|| Ok(rendered(channel_value(c, &ctx.api_url, &ch, caller.user())?, &opts))).transpose()
    })
}

/// The channel explore streams: slug, title, description.
const EXPLORE: &[crate::api::search::Explore] = &[
    ("conversations", "Conversations", "Public channels, the most recently active first"),
    ("new", "New", "Public channels, the newest first"),
];

/// `GET /v1/channels/streams/explore`.
pub fn explore_list(ctx: &Ctx, _: &Req, _: &[&str]) -> ApiResult<Resp> {
    Ok(crate::api::search::explore_catalog(ctx, "/v1/channels/streams/explore", EXPLORE))
}

/// `GET /v1/channels/streams/explore/{slug}`: public channels only.
pub fn explore(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let by_activity = match p[0] {
        "conversations" => true,
        "new" => false,
        other => return Err(ApiError::not_found(format!("No explore stream '{other}'"))),
    };
    let caller = reader(ctx, req)?;
    let pr = page(req)?;
    let opts = channel_opts(req, true);
    let (listed, out) = ctx.db.read(|c| {
        let listed = crate::storage::lists::channel_explore_page(c, by_activity, &pr)?;
        let mut out = Vec::new();
        for it in &listed.items {
            if let Some(ch) = store::channel(c, it.oid)?.filter(|ch| caller.can_read(ch)) {
                let mut v = rendered(channel_value(c, &ctx.api_url, &ch, caller.user())?, &opts);
                v["pagination_id"] = Value::String(it.pid.to_string());
                out.push(v);
            }
        }
        Ok((listed, out))
    })?;
    let keys: Vec<i64> = listed.items.iter().map(|i| i.pid).collect();
    Ok(Resp::with_meta(200, page_meta(&keys, listed.more), Value::Array(out)))
}

/// `PUT /v1/channels/{id}/owner`: `owner_id`; the owner only, not for PMs.
/// The old owner keeps full access (pnut); a `channel` event.
pub fn change_owner(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let body = req.params()?;
    let given =
        body.get("owner_id").cloned().or_else(|| req.param("owner_id").map(|s| Value::String(s.into())));
    let new_owner = id_value(&given.ok_or_else(|| ApiError::bad_request("owner_id: required"))?, "owner_id")?;
    let opts = channel_opts(req, true);
    let v = ctx.db.write(|tx| {
        let mut ch = me.channel(tx, p[0])?;
        if ch.kind == "io.pnut.core.pm" {
            return Err(ApiError::bad_request("A PM channel has no owner to change"));
        }
        if ch.owner_id != Some(uid) {
            return Err(ApiError::forbidden("Only the channel's owner may give it to someone else"));
        }
        if !ch.is_active {
            return Err(ApiError::forbidden("This channel is inactive"));
        }
        if crate::storage::users::by_id(tx, new_owner)?.is_none() {
            return Err(ApiError::not_found(format!("User not found: {new_owner}")));
        }
        if new_owner != uid {
            ch.owner_id = Some(new_owner);
            if !ch.acl.full.user_ids.contains(&uid) {
                ch.acl.full.user_ids.push(uid);
            }
            store::save_channel(tx, &ch)?;
            emit_channel(tx, &ctx.api_url, &ch, ch.audience())?;
        }
        Ok(rendered(channel_value(tx, &ctx.api_url, &ch, Some(uid))?, &opts))
    })?;
    Ok(Resp::ok(v))
}
