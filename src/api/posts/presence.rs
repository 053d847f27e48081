//! Global user presence: who is online, one user's presence, and setting
//! one's own (which emits `user_presence` unless it goes offline).

use crate::api::users::find_user;
use crate::api::Ctx;
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, NewEvent, ObjType};
use crate::http::{Req, Resp};
use crate::storage::posts::{self as store, PresenceRow};
use crate::storage::{users, UserRow};
use crate::util::{iso8601, now};
use serde_json::{json, Value};

/// Default lifetime of a presence (pnut: 15 minutes) and the longest
/// allowed (7 days).
const DEFAULT_TTL: i64 = 15 * 60;
const MAX_TTL: i64 = 7 * 24 * 3600;
const MAX_LEN: usize = crate::api::limits::PRESENCE_TEXT;

/// `{id, username, name?, avatar_image, presence, last_seen_at?}`.
fn presence_value(api_url: &str, u: &UserRow, row: Option<PresenceRow>, at: i64) -> Value {
    let mut v = json!({
        "id": u.id.to_string(),
        "username": u.username,
        "avatar_image": format!("{api_url}/v1/users/{}/avatar", u.id),
        "presence": "offline",
    });
    if let Some(n) = &u.name {
        v["name"] = json!(n);
    }
    if let Some((p, expires, seen)) = row {
        v["last_seen_at"] = json!(iso8601(seen));
        if let Some(p) = p.filter(|_| expires > at) {
            v["presence"] = json!(p);
        }
    }
    v
}

/// `GET /v1/presence`: every user whose presence is not offline.
pub fn list(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    auth::any(&ctx.db, req)?;
    let at = now();
    let out = ctx.db.read(|c| {
        let mut out = Vec::new();
        for id in store::online(c, at)? {
            if let Some(u) = users::by_id(c, id)? {
                out.push(presence_value(&ctx.api_url, &u, store::presence_of(c, id)?, at));
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(out)))
}

pub fn get_one(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let principal = auth::any(&ctx.db, req)?;
    let v = ctx.db.read(|c| {
        let u = find_user(c, p[0], principal.user_id)?;
        Ok(presence_value(&ctx.api_url, &u, store::presence_of(c, u.id)?, now()))
    })?;
    Ok(Resp::ok(v))
}

/// What the `presence` field asks for: `Some(text)` to set, `None` offline.
fn wanted(v: Option<&Value>) -> ApiResult<Option<String>> {
    let s = match v {
        None | Some(Value::Null) | Some(Value::Bool(true)) => return Ok(Some("online".into())),
        Some(Value::Bool(false)) => return Ok(None),
        Some(Value::Number(n)) if n.as_i64() == Some(1) => return Ok(Some("online".into())),
        Some(Value::Number(n)) if n.as_i64() == Some(0) => return Ok(None),
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(ApiError::bad_request("presence: must be a string")),
    };
    match s {
        "" | "1" => Ok(Some("online".into())),
        "0" | "offline" => Ok(None),
        s if s.chars().count() > MAX_LEN => {
            Err(ApiError::bad_request(format!("presence: at most {MAX_LEN} characters")))
        }
        s => Ok(Some(s.to_string())),
    }
}

fn expiration_of(v: Option<&Value>, at: i64) -> ApiResult<i64> {
    let n = match v {
        None | Some(Value::Null) => return Ok(at + DEFAULT_TTL),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(at + DEFAULT_TTL),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    let n = n.ok_or_else(|| ApiError::bad_request("expiration: must be a unix timestamp in seconds"))?;
    Ok(n.min(at + MAX_TTL))
}

/// `PUT /v1/users/me/presence` (form, JSON or query `presence`,
/// `expiration`).
pub fn set(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, Some("presence"))?;
    let mut body = req.params()?;
    for k in ["presence", "expiration"] {
        if let (false, Some(q)) = (body.contains_key(k), req.param(k)) {
            body.insert(k.into(), json!(q));
        }
    }
    let v = ctx.db.read(|c| find_user(c, p[0], Some(uid)))?;
    if v.id != uid {
        return Err(ApiError::forbidden("You can set only your own presence (use /users/me/presence)"));
    }
    let v = apply(ctx, uid, body.get("presence"), body.get("expiration"))?;
    Ok(Resp::ok(v))
}

/// Sets `uid`'s presence (`presence`: missing/`1` online, `0`/`offline`
/// clears, else the text; `expiration` unix seconds) with its event when
/// it is set; returns the presence object. Shared by
/// `PUT /v1/users/me/presence` and `update_presence=` on any call.
pub(crate) fn apply(
    ctx: &Ctx,
    uid: i64,
    presence: Option<&Value>,
    expiration: Option<&Value>,
) -> ApiResult<Value> {
    let at = now();
    let mut presence = wanted(presence)?;
    let expires = expiration_of(expiration, at)?;
    if expires <= at {
        presence = None;
    }
    ctx.db.write(|tx| {
        let u =
            crate::storage::users::by_id(tx, uid)?.ok_or_else(|| ApiError::not_found("User not found"))?;
        let expires = if presence.is_some() { expires } else { at };
        store::set_presence(tx, uid, presence.as_deref(), expires, at)?;
        let v = presence_value(&ctx.api_url, &u, store::presence_of(tx, uid)?, at);
        if presence.is_some() {
            tx.emit(NewEvent {
                kind: ObjType::UserPresence,
                audience: Audience::Public,
                auth: None,
                envelope: json!({
                    "meta": {"timestamp": at, "id": uid.to_string(), "type": "user_presence"},
                    "data": [v.clone()],
                }),
            })?;
        }
        Ok(v)
    })
}
