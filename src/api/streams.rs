//! App Stream management (`/v1/streams`): app tokens only, at most five
//! streams per app, keys unique within an app, apps isolated from each other.

use super::Ctx;
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{types_to_bits, ObjType, Signal};
use crate::filter::Filter;
use crate::http::{Req, Resp};
use crate::model;
use crate::storage::Connection;
use crate::storage::{apps, filters, streams, Principal, StreamRow};
use serde_json::{Map, Value};
use std::sync::Arc;

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
        let t = item.as_str().and_then(ObjType::from_client).ok_or_else(|| {
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

/// A filter a stream uses: its id and compiled form.
type AttachedFilter = (i64, Arc<Filter>);

/// `filter_id` from a body: absent → `None` (unchanged), `null` → detach,
/// an id → that filter, which must exist and belong to a user who
/// authorized the app (403 otherwise).
fn check_filter(
    c: &Connection,
    body: &Map<String, Value>,
    app_id: i64,
) -> ApiResult<Option<Option<AttachedFilter>>> {
    let v = match body.get("filter_id") {
        None => return Ok(None),
        Some(Value::Null) => return Ok(Some(None)),
        Some(v) => v,
    };
    let id = match v {
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request(format!("filter_id: {v} is not a filter id")))?;
    let row = filters::get(c, id)?
        .ok_or_else(|| ApiError::bad_request(format!("filter_id: no filter {id} exists")))?;
    let authorized = apps::authorizations_of_app(c, app_id)?.iter().any(|a| a.user_id == row.user_id);
    if !authorized {
        return Err(ApiError::forbidden(format!(
            "filter_id: filter {id} belongs to a user who has not authorized this app"
        )));
    }
    let f = super::filters::compile(&row).ok_or_else(ApiError::internal)?;
    Ok(Some(Some((id, f))))
}

/// The stream object, with the filter embedded when it has one.
fn stream_value(c: &Connection, ctx: &Ctx, s: &StreamRow) -> ApiResult<Value> {
    let mut v = model::stream(s, &ctx.stream_endpoint);
    if let Some(fid) = s.filter_id {
        if let Some(row) = filters::get(c, fid)? {
            v["filter"] = super::filters::filter_value(c, ctx, &row, None)?;
        }
    }
    Ok(v)
}

fn deleted_value(c: &Connection, ctx: &Ctx, s: &StreamRow) -> ApiResult<Value> {
    let mut v = stream_value(c, ctx, s)?;
    v["is_deleted"] = Value::Bool(true);
    Ok(v)
}

fn find(c: &Connection, p: &Principal, key: &str) -> ApiResult<StreamRow> {
    streams::get(c, p.app.id, key)?.ok_or_else(|| ApiError::not_found(format!("Stream not found: {key}")))
}

pub fn list(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    let key = req.param("key");
    let data = ctx.db.read(|c| {
        let rows = streams::list(c, p.app.id)?;
        rows.iter().filter(|s| key.is_none_or(|k| k == s.key)).map(|s| stream_value(c, ctx, s)).collect()
    })?;
    Ok(Resp::ok(Value::Array(data)))
}

pub fn get_one(ctx: &Ctx, req: &Req, params: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    Ok(Resp::ok(ctx.db.read(|c| stream_value(c, ctx, &find(c, &p, params[0])?))?))
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
    let v = ctx.db.write(|tx| {
        let filter = check_filter(tx, &body, p.app.id)?.flatten();
        if streams::count(tx, p.app.id)? >= MAX_STREAMS {
            return Err(ApiError::bad_request(format!(
                "This app already has the maximum of {MAX_STREAMS} streams; delete one first"
            )));
        }
        let row =
            streams::create(tx, p.app.id, key.as_deref(), &types, filter.map(|f| f.0))?.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "key: '{}' is already taken by another stream of this app",
                    key.as_deref().unwrap_or("")
                ))
            })?;
        stream_value(tx, ctx, &row)
    })?;
    Ok(Resp::ok(v))
}

pub fn update(ctx: &Ctx, req: &Req, params: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    let body = req.json_object()?;
    check_type(&body, false)?;
    let types = parse_object_types(body.get("object_types"))?;
    let new_key = match body.get("key") {
        None | Some(Value::Null) => None,
        Some(v) => Some(check_key(v)?),
    };
    let v = ctx.db.write(|tx| {
        let mut s = find(tx, &p, params[0])?;
        // A new key renames the stream; live connections stay attached.
        if let Some(k) = new_key.as_deref().filter(|k| *k != s.key) {
            if !streams::rename(tx, s.id, k)? {
                return Err(ApiError::bad_request(format!(
                    "key: '{k}' is already taken by another stream of this app"
                )));
            }
            s.key = k.to_string();
        }
        let filter = match check_filter(tx, &body, p.app.id)? {
            Some(f) => f,
            None => match s.filter_id {
                Some(fid) => filters::of_stream(tx, Some(fid))?.map(|f| (fid, f)),
                None => None,
            },
        };
        s.filter_id = filter.as_ref().map(|f| f.0);
        streams::update(tx, s.id, &types, s.filter_id)?;
        s.object_types = types.clone();
        tx.signal(Signal::StreamUpdated {
            stream_id: s.id,
            key: s.key.clone(),
            types: types_to_bits(&types),
            filter_id: s.filter_id,
            filter: filter.map(|f| f.1),
        })?;
        stream_value(tx, ctx, &s)
    })?;
    Ok(Resp::ok(v))
}

pub fn delete_one(ctx: &Ctx, req: &Req, params: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    let v = ctx.db.write(|tx| {
        let s = find(tx, &p, params[0])?;
        let v = deleted_value(tx, ctx, &s)?;
        streams::delete_live(tx, s.id)?;
        Ok(v)
    })?;
    Ok(Resp::ok(v))
}

pub fn delete_all(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    let v = ctx.db.write(|tx| {
        let rows = streams::list(tx, p.app.id)?;
        let mut out = Vec::new();
        for s in &rows {
            out.push(deleted_value(tx, ctx, s)?);
            streams::delete_live(tx, s.id)?;
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_types_validation() {
        let t = parse_object_types(Some(&json!(["post", "user", "post"]))).unwrap();
        assert_eq!(t, vec![ObjType::Post, ObjType::User]);
        let e = parse_object_types(Some(&json!(["post", "stars"]))).unwrap_err();
        assert!(e.message.contains("object_types") && e.message.contains("stars"), "{}", e.message);
        // App.net's names are pnut's types.
        let t = parse_object_types(Some(&json!(["post", "star", "user_follow", "bookmark"]))).unwrap();
        assert_eq!(t, vec![ObjType::Post, ObjType::Bookmark, ObjType::Follow]);
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
