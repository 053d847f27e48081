//! Stream markers and channel presence.

use super::*;
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, NewEvent, ObjType};
use crate::http::{Req, Resp};
use crate::storage::channels::{self as store};
use crate::util::{iso8601, now};
use serde_json::{json, Value};

/// Writes a `stream_marker` event (App.net's): `data: {marker, user}`,
/// `meta.user_id`, and for a channel's marker `meta.channel_id` and
/// `channel_type`. Apps see it through a user who authorized them with the
/// scope that covers the marker's object: `stream` for the post streams,
/// the channel's scope rule for a channel.
fn emit_stream_marker(
    tx: &mut Tx,
    api_url: &str,
    uid: i64,
    marker: &Value,
    channel: Option<&ChannelRow>,
) -> ApiResult<()> {
    let mut meta = json!({"timestamp": now(), "id": uid.to_string(), "type": "stream_marker", "user_id": uid.to_string()});
    let audience = match channel {
        Some(ch) => {
            meta["channel_id"] = json!(ch.id.to_string());
            meta["channel_type"] = json!(ch.kind);
            Audience::Channel { channel_type: ch.kind.clone(), users: Some(vec![uid]) }
        }
        None => Audience::Users { users: vec![uid], scopes: vec!["stream".into()] },
    };
    let data = json!({"marker": marker, "user": crate::render::user_json_by_id(tx, api_url, uid)?});
    tx.emit(NewEvent {
        kind: ObjType::StreamMarker,
        audience,
        auth: None,
        envelope: json!({"meta": meta, "data": data}),
    })
}

/// Moves one of `uid`'s post stream markers (`personal`, `unified`, …) to
/// `id` in `tx`, with its `stream_marker` event, as `POST /v1/markers`
/// would (`update_marker=1` on a new post).
pub(crate) fn move_marker(tx: &mut Tx, api_url: &str, uid: i64, name: &str, id: i64) -> ApiResult<()> {
    let m = store::set_marker(tx, uid, name, id, 0, false)?;
    emit_stream_marker(tx, api_url, uid, &marker_value(&m), None)
}

/// `POST /v1/markers`: a list (≤10) of `{name, id, percentage?}`; channel
/// markers need read access. `reset_read_id=1` lets `last_read_id` go back.
pub fn markers(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let p = auth::any(&ctx.db, req)?;
    let uid = p.user_id.ok_or_else(|| ApiError::forbidden("This endpoint requires a user token"))?;
    if req.content_type().as_deref() != Some("application/json") {
        return Err(ApiError::bad_request("Content-Type must be application/json"));
    }
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let items = match body {
        Value::Array(l) => l,
        o @ Value::Object(_) => vec![o],
        _ => return Err(ApiError::bad_request("markers: send a list of {name, id} objects")),
    };
    if items.is_empty() || items.len() > 10 {
        return Err(ApiError::bad_request("markers: one to ten markers per request"));
    }
    let reset = req.flag("reset_read_id", false);
    let out = ctx.db.write(|tx| {
        let mut out = Vec::new();
        for (i, m) in items.iter().enumerate() {
            let name = m.get("name").and_then(Value::as_str).filter(|n| !n.is_empty() && n.len() <= 64);
            let name = name.ok_or_else(|| ApiError::bad_request(format!("markers[{i}].name: required")))?;
            let id = id_value(m.get("id").unwrap_or(&Value::Null), &format!("markers[{i}].id"))?;
            let pct = match m.get("percentage") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_i64()
                    .filter(|p| (0..=100).contains(p))
                    .ok_or_else(|| ApiError::bad_request(format!("markers[{i}].percentage: 0 to 100")))?,
            };
            let mut channel = None;
            if let Some(cid) = name.strip_prefix("channel:") {
                let ch = find_channel(tx, cid)
                    .map_err(|e| ApiError::new(e.status, format!("markers[{i}].name: {}", e.message)))?;
                if !ch.can_read(Some(uid)) || !auth::covers_channel(&p.scopes, &ch.kind) {
                    return Err(ApiError::forbidden(format!("markers[{i}].name: you may not read channel {}", ch.id)));
                }
                channel = Some(ch);
            } else if !matches!(name, "global" | "personal" | "unified" | "mentions") {
                return Err(ApiError::bad_request(format!(
                    "markers[{i}].name: '{name}' is not a marker name (global, personal, mentions, channel:ID)"
                )));
            }
            let marker = marker_value(&store::set_marker(tx, uid, name, id, pct, reset)?);
            emit_stream_marker(tx, &ctx.api_url, uid, &marker, channel.as_ref())?;
            out.push(marker);
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(out)))
}

// ---------------------------------------------------------------- presence

/// The presence object (`channel_id` added for channel presence).
pub(super) fn presence_value(
    ctx: &Ctx,
    u: &crate::storage::UserRow,
    presence: &str,
    seen: i64,
    cid: i64,
) -> Value {
    let mut pv = json!({
        "id": u.id.to_string(),
        "username": u.username,
        "avatar_image": format!("{}/v1/users/{}/avatar", ctx.api_url, u.id),
        "presence": presence,
        "last_seen_at": iso8601(seen),
        "channel_id": cid.to_string(),
    });
    if let Some(n) = &u.name {
        pv["name"] = json!(n);
    }
    pv
}

/// `GET /v1/channels/{id}/presence`: users present in the channel (offline
/// users are not listed).
pub fn channel_presence(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let list = ctx.db.read(|c| {
        let ch = readable_channel(c, p[0], &caller)?;
        let mut out = Vec::new();
        for (uid, presence, seen) in store::present_in_channel(c, ch.id)? {
            if let Some(u) = crate::storage::users::by_id(c, uid)? {
                out.push(presence_value(ctx, &u, &presence, seen, ch.id));
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

/// `PUT /v1/users/me/presence/channels/{id}`: `presence` (missing or `1` →
/// "online"; `offline`/`0` clears) for 15 minutes; emits
/// `user_channel_presence` with `[presence]`, the presence carrying `channel_id`.
pub fn set_presence(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let mut body = req.params()?;
    for (k, v) in &req.query {
        if k == "presence" && !body.contains_key("presence") {
            body.insert(k.clone(), json!(v));
        }
    }
    let presence = match body.get("presence") {
        None | Some(Value::Null) => Some("online".to_string()),
        Some(Value::String(s)) if s == "1" || s.is_empty() => Some("online".to_string()),
        Some(Value::String(s)) if s == "0" || s == "offline" => None,
        Some(Value::String(s)) if s.chars().count() <= 100 => Some(s.clone()),
        Some(Value::Number(n)) if n.as_i64() == Some(1) => Some("online".to_string()),
        Some(Value::Number(n)) if n.as_i64() == Some(0) => None,
        Some(_) => return Err(ApiError::bad_request("presence: a string of at most 100 characters")),
    };
    let v = ctx.db.write(|tx| {
        let ch = me.readable(tx, p[0])?;
        store::set_channel_presence(tx, ch.id, uid, presence.as_deref(), now() + 15 * 60)?;
        let u = crate::storage::users::by_id(tx, uid)?.ok_or_else(ApiError::internal)?;
        let pv = presence_value(ctx, &u, presence.as_deref().unwrap_or("offline"), now(), ch.id);
        tx.emit(NewEvent {
            kind: ObjType::UserChannelPresence,
            audience: ch.audience_of(uid),
            auth: None,
            envelope: json!({
                "meta": {"timestamp": now(), "id": uid.to_string(), "type": "user_channel_presence",
                         "channel_id": ch.id.to_string(), "channel_type": ch.kind},
                "data": [pv.clone()],
            }),
        })?;
        Ok(pv)
    })?;
    Ok(Resp::ok(v))
}

/// `GET /v1/users/{id}/presence/channels/{cid}`: one user's presence in a
/// channel the caller may read ("offline" when none or expired).
pub fn user_channel_presence(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let v = ctx.db.read(|c| {
        let ch = readable_channel(c, p[1], &caller)?;
        let u = crate::api::users::find_user(c, p[0], caller.user())?;
        let (presence, seen) = match store::channel_presence(c, ch.id, u.id)? {
            Some((Some(pr), seen)) => (pr, seen),
            Some((None, seen)) => ("offline".to_string(), seen),
            None => ("offline".to_string(), 0),
        };
        Ok(presence_value(ctx, &u, &presence, seen, ch.id))
    })?;
    Ok(Resp::ok(v))
}
