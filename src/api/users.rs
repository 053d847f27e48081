//! Users: lookup by id, `@username` or `me`; profile updates (PUT replaces,
//! PATCH merges) emitting the `user` stream event.

use super::{parse_id, Ctx};
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, NewEvent, ObjType};
use crate::http::{Req, Resp};
use crate::model::{self, prune, Kind, Opts, Relation};
use crate::storage::Connection;
use crate::storage::{users, UserRow};
use crate::util::now;
use serde_json::{json, Map, Value};

/// The full user object (raw, html, counts all included; callers prune).
/// `viewer` adds the relationship flags.
pub fn user_value(c: &Connection, api_url: &str, u: &UserRow, viewer: Option<i64>) -> ApiResult<Value> {
    let mut v = crate::render::user_json(c, api_url, u)?;
    match viewer {
        Some(me) if me == u.id => as_own_profile(&mut v),
        Some(me) => {
            let r = crate::storage::posts::relation(c, me, u.id)?;
            model::set_relation(
                &mut v,
                Relation {
                    follows_you: r.follows_you,
                    you_follow: r.you_follow,
                    you_muted: r.you_muted,
                    you_blocked: r.you_blocked,
                    you_can_follow: !r.you_blocked && !r.blocked_you,
                },
            );
        }
        None => {}
    }
    Ok(v)
}

/// A user object (rendered for nobody) as that user reads it: the flags
/// towards oneself, and the description's markdown, which is its text.
pub fn as_own_profile(v: &mut Value) {
    model::set_relation(v, Relation::default());
    v["content"]["markdown_text"] = v["content"]["text"].clone();
}

/// Resolves `123`, `@name` or `me` to a user; 400 for a malformed
/// identifier, 404 for one that does not exist.
pub fn find_user(c: &Connection, ident: &str, me: Option<i64>) -> ApiResult<UserRow> {
    let found = if ident == "me" {
        let id = me.ok_or_else(|| ApiError::unauthorized("'me' needs a user token"))?;
        users::by_id(c, id)?
    } else if let Some(name) = ident.strip_prefix('@') {
        users::by_username(c, name)?
    } else {
        users::by_id(c, parse_id("user_id", ident)?)?
    };
    found.ok_or_else(|| ApiError::not_found(format!("User not found: {ident}")))
}

fn viewer_of(ctx: &Ctx, req: &Req) -> ApiResult<Option<i64>> {
    Ok(auth::optional(&ctx.db, req)?.and_then(|p| p.user_id))
}

fn render(mut v: Value, req: &Req) -> Value {
    prune(&mut v, Kind::User, &Opts::from_req(req));
    v
}

pub fn get_one(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let viewer = viewer_of(ctx, req)?;
    let v = ctx.db.read(|c| {
        let u = find_user(c, p[0], viewer)?;
        user_value(c, &ctx.api_url, &u, viewer)
    })?;
    Ok(Resp::ok(render(v, req)))
}

pub fn get_me(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, None)?;
    get_one(ctx, req, &[&uid.to_string()])
}

pub fn get_many(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let viewer = viewer_of(ctx, req)?;
    let idents = crate::http::params::ids(req, 200, "comma-separated user ids")?;
    let list = ctx.db.read(|c| {
        let mut out = Vec::new();
        for ident in &idents {
            match find_user(c, ident, viewer) {
                Ok(u) => out.push(render(user_value(c, &ctx.api_url, &u, viewer)?, req)),
                Err(e) if e.status == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

pub fn put_me(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    update_me(ctx, req, true)
}

pub fn patch_me(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    update_me(ctx, req, false)
}

fn opt_string(body: &Map<String, Value>, field: &str, max: usize) -> ApiResult<Option<Option<String>>> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(Some(s.clone()))),
        Some(Value::String(_)) => Err(ApiError::bad_request(format!("{field}: at most {max} characters"))),
        Some(_) => Err(ApiError::bad_request(format!("{field}: must be a string"))),
    }
}

/// Applies a raw update: named types are replaced, `[]` deletes a type,
/// types not named stay.
pub fn merge_raw(current: &Value, update: &Value) -> ApiResult<Value> {
    let Value::Object(upd) = update else {
        return Err(ApiError::bad_request("raw: must be an object mapping types to lists"));
    };
    let mut out = current.as_object().cloned().unwrap_or_default();
    for (k, v) in upd {
        match v {
            Value::Array(items) if items.is_empty() => {
                out.remove(k);
            }
            Value::Array(items) if items.iter().all(Value::is_object) => {
                out.insert(k.clone(), v.clone());
            }
            _ => return Err(ApiError::bad_request(format!("raw: '{k}' must be a list of objects"))),
        }
    }
    let merged = Value::Object(out);
    if merged.to_string().len() > crate::api::limits::RAW_BYTES {
        return Err(ApiError::bad_request(format!("raw: at most {} bytes", crate::api::limits::RAW_BYTES)));
    }
    Ok(merged)
}

fn update_me(ctx: &Ctx, req: &Req, replace: bool) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, Some("update_profile"))?;
    let body = req.json_object()?;
    let name = opt_string(&body, "name", 50)?;
    let locale = opt_string(&body, "locale", 32)?;
    let timezone = opt_string(&body, "timezone", 64)?;
    let text = match body.get("content") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => {
            opt_string(c, "text", 256).map_err(|e| ApiError::bad_request(format!("content.{}", e.message)))?
        }
        Some(_) => return Err(ApiError::bad_request("content: must be an object with text")),
    };
    if replace {
        for (field, v) in [("locale", &locale), ("timezone", &timezone)] {
            if !matches!(v, Some(Some(s)) if !s.is_empty()) {
                return Err(ApiError::bad_request(format!(
                    "{field}: required for PUT (PATCH changes only the fields given)"
                )));
            }
        }
    }
    for (field, v) in [("locale", &locale), ("timezone", &timezone)] {
        if matches!(v, Some(None)) || matches!(v, Some(Some(s)) if s.is_empty()) {
            return Err(ApiError::bad_request(format!("{field}: cannot be empty")));
        }
    }
    let v = ctx.db.write(|tx| {
        let mut u = users::by_id(tx, uid)?.ok_or_else(|| ApiError::not_found("User not found"))?;
        if replace {
            u.name = name.clone().flatten();
            u.description = text.clone().flatten().unwrap_or_default();
        } else {
            if let Some(n) = &name {
                u.name = n.clone();
            }
            if let Some(t) = &text {
                u.description = t.clone().unwrap_or_default();
            }
        }
        if let Some(Some(l)) = &locale {
            u.locale = l.clone();
        }
        if let Some(Some(t)) = &timezone {
            u.timezone = t.clone();
        }
        if let Some(raw) = body.get("raw").filter(|r| !r.is_null()) {
            u.raw = merge_raw(&u.raw, raw)?;
        }
        users::save_profile(tx, &u)?;
        let full = user_value(tx, &ctx.api_url, &u, None)?;
        tx.emit(NewEvent {
            kind: ObjType::User,
            audience: Audience::Users { users: vec![uid], scopes: vec![] },
            auth: None,
            envelope: crate::util::obj([
                ("meta", json!({"timestamp": now(), "id": uid.to_string(), "type": "user"})),
                ("data", full),
            ]),
        })?;
        user_value(tx, &ctx.api_url, &u, Some(uid))
    })?;
    Ok(Resp::ok(render(v, req)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_merge_rules() {
        let cur = json!({"a": [{"x": 1}], "b": [{"y": 2}]});
        let m = merge_raw(&cur, &json!({"a": [], "c": [{"z": 3}]})).unwrap();
        assert_eq!(m, json!({"b": [{"y": 2}], "c": [{"z": 3}]}));
        assert!(merge_raw(&cur, &json!({"a": 1})).unwrap_err().message.contains("'a'"));
        assert!(merge_raw(&cur, &json!([1])).is_err());
    }
}
