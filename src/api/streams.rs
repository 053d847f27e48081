//! App Stream management (`/v1/streams`): app tokens only, at most five
//! streams per app, keys unique within an app, apps isolated from each other.

use super::Ctx;
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{types_to_bits, ObjType, Signal};
use crate::http::{Req, Resp};
use crate::model;
use crate::storage::{streams, Principal, StreamRow};
use serde_json::{Map, Value};

/// Streams one app may have (pnut: 5).
pub const MAX_STREAMS: i64 = 5;

/// Validates `object_types`: a non-empty array of known names; duplicates
/// collapse, first occurrence kept.
pub fn parse_object_types(v: Option<&Value>) -> ApiResult<Vec<ObjType>> {
    let Some(v) = v else {
        return Err(ApiError::bad_request("object_types: required (a non-empty array of object types)"));
    };
    let Value::Array(items) = v else {
        return Err(ApiError::bad_request(format!(
            "object_types: must be an array of object types, got {v}"
        )));
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("object_types: must not be empty"));
    }
    let mut out = Vec::new();
    for item in items {
        let t = item.as_str().and_then(ObjType::parse).ok_or_else(|| {
            let valid: Vec<&str> = ObjType::ALL.iter().map(|t| t.as_str()).collect();
            ApiError::bad_request(format!(
                "object_types: unknown object type {item} (valid: {})",
                valid.join(", ")
            ))
        })?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn check_type(body: &Map<String, Value>, required: bool) -> ApiResult<()> {
    match body.get("type") {
        None if !required => Ok(()),
        None => Err(ApiError::bad_request("type: required; the only stream type is 'long_poll'")),
        Some(Value::String(s)) if s == "long_poll" => Ok(()),
        Some(v) => Err(ApiError::bad_request(format!(
            "type: {v} is not supported; the only stream type is 'long_poll'"
        ))),
    }
}

fn check_key(v: &Value) -> ApiResult<String> {
    let key = v.as_str().ok_or_else(|| ApiError::bad_request(format!("key: must be a string, got {v}")))?;
    let ok =
        !key.is_empty() && key.len() <= 32 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(ApiError::bad_request(format!(
            "key: '{key}' is not valid (1 to 32 characters: letters, digits and _)"
        )));
    }
    Ok(key.to_string())
}

fn check_filter(body: &Map<String, Value>) -> ApiResult<()> {
    match body.get("filter_id") {
        None | Some(Value::Null) => Ok(()),
        Some(v) => Err(ApiError::bad_request(format!("filter_id: no filter {v} exists"))),
    }
}

fn stream_value(ctx: &Ctx, s: &StreamRow) -> Value {
    model::stream(s, &ctx.stream_endpoint)
}

fn deleted_value(ctx: &Ctx, s: &StreamRow) -> Value {
    let mut v = stream_value(ctx, s);
    v["is_deleted"] = Value::Bool(true);
    v
}

fn find(ctx: &Ctx, p: &Principal, key: &str) -> ApiResult<StreamRow> {
    ctx.db
        .read(|c| Ok(streams::get(c, p.app.id, key)?))?
        .ok_or_else(|| ApiError::not_found(format!("Stream not found: {key}")))
}

pub fn list(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    let rows = ctx.db.read(|c| Ok(streams::list(c, p.app.id)?))?;
    let key = req.param("key");
    let data: Vec<Value> =
        rows.iter().filter(|s| key.is_none_or(|k| k == s.key)).map(|s| stream_value(ctx, s)).collect();
    Ok(Resp::ok(Value::Array(data)))
}

pub fn get_one(ctx: &Ctx, req: &Req, params: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    Ok(Resp::ok(stream_value(ctx, &find(ctx, &p, params[0])?)))
}

pub fn create(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    let body = req.json_object()?;
    check_type(&body, true)?;
    let types = parse_object_types(body.get("object_types"))?;
    let key = match body.get("key") {
        None | Some(Value::Null) => None,
        Some(v) => Some(check_key(v)?),
    };
    check_filter(&body)?;
    let row = ctx.db.write(|tx| {
        if streams::count(tx, p.app.id)? >= MAX_STREAMS {
            return Err(ApiError::bad_request(format!(
                "This app already has the maximum of {MAX_STREAMS} streams; delete one first"
            )));
        }
        streams::create(tx, p.app.id, key.as_deref(), &types)?.ok_or_else(|| {
            ApiError::bad_request(format!(
                "key: '{}' is already taken by another stream of this app",
                key.as_deref().unwrap_or("")
            ))
        })
    })?;
    Ok(Resp::ok(stream_value(ctx, &row)))
}

pub fn update(ctx: &Ctx, req: &Req, params: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    let body = req.json_object()?;
    check_type(&body, false)?;
    let types = parse_object_types(body.get("object_types"))?;
    check_filter(&body)?;
    let row = ctx.db.write(|tx| {
        let mut s = streams::get(tx, p.app.id, params[0])?
            .ok_or_else(|| ApiError::not_found(format!("Stream not found: {}", params[0])))?;
        streams::update_types(tx, s.id, &types)?;
        s.object_types = types.clone();
        tx.signal(Signal::StreamUpdated { stream_id: s.id, types: types_to_bits(&types) });
        Ok(s)
    })?;
    Ok(Resp::ok(stream_value(ctx, &row)))
}

pub fn delete_one(ctx: &Ctx, req: &Req, params: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    let row = ctx.db.write(|tx| {
        let s = streams::get(tx, p.app.id, params[0])?
            .ok_or_else(|| ApiError::not_found(format!("Stream not found: {}", params[0])))?;
        streams::delete(tx, s.id)?;
        tx.signal(Signal::StreamDeleted { stream_id: s.id });
        Ok(s)
    })?;
    Ok(Resp::ok(deleted_value(ctx, &row)))
}

pub fn delete_all(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    let rows = ctx.db.write(|tx| {
        let rows = streams::list(tx, p.app.id)?;
        for s in &rows {
            streams::delete(tx, s.id)?;
            tx.signal(Signal::StreamDeleted { stream_id: s.id });
        }
        Ok(rows)
    })?;
    Ok(Resp::ok(Value::Array(rows.iter().map(|s| deleted_value(ctx, s)).collect())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_types_validation() {
        let t = parse_object_types(Some(&json!(["post", "user", "post"]))).unwrap();
        assert_eq!(t, vec![ObjType::Post, ObjType::User]);
        let e = parse_object_types(Some(&json!(["post", "star"]))).unwrap_err();
        assert!(e.message.contains("object_types") && e.message.contains("star"), "{}", e.message);
        assert!(parse_object_types(Some(&json!([]))).unwrap_err().message.contains("empty"));
        assert!(parse_object_types(Some(&json!("post"))).unwrap_err().message.contains("array"));
        assert!(parse_object_types(None).unwrap_err().message.contains("required"));
    }

    #[test]
    fn key_validation() {
        assert_eq!(check_key(&json!("a_B9")).unwrap(), "a_B9");
        assert!(check_key(&json!("")).is_err());
        assert!(check_key(&json!("a-b")).unwrap_err().message.contains("key"));
        assert!(check_key(&json!("x".repeat(33))).is_err());
        assert!(check_key(&json!(5)).is_err());
    }
}
