//! App.net filters (`/v1/filters`): user tokens own them; streams of apps
//! the owner authorized may use them. Changing a filter reaches every live
//! connection of every stream using it at once.

use super::users::user_value;
use super::{parse_id, Ctx};
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::Signal;
use crate::filter::Filter;
use crate::http::{Req, Resp};
use crate::model::{prune, Kind, Opts};
use crate::storage::filters::{self, FilterRow};
use crate::storage::Connection;
use crate::storage::{users, Tx};
use serde_json::{json, Value};
use std::sync::Arc;

/// Parses a stored filter (always valid: it was validated when written).
pub fn compile(row: &FilterRow) -> Option<Arc<Filter>> {
    Filter::parse(Some(&json!(row.match_policy)), Some(&row.clauses)).ok().map(Arc::new)
}

/// The filter object: `id`, `name`, `match_policy`, `clauses`, `owner`.
pub fn filter_value(c: &Connection, ctx: &Ctx, row: &FilterRow, req: Option<&Req>) -> ApiResult<Value> {
    let owner = users::by_id(c, row.user_id)?.ok_or_else(ApiError::internal)?;
    let mut owner = user_value(c, &ctx.api_url, &owner, None)?;
    prune(&mut owner, Kind::User, &req.map(Opts::from_req).unwrap_or_default());
    let mut v = json!({
        "id": row.id.to_string(),
        "match_policy": row.match_policy,
        "clauses": row.clauses,
        "owner": owner,
    });
    if let Some(n) = &row.name {
        v["name"] = json!(n);
    }
    Ok(v)
}

/// A filter from a request body, within the bounds a client's filter must
/// keep (`filter::MAX_*`): each a 400 naming the bound.
fn parse_body(req: &Req) -> ApiResult<(Option<String>, Filter)> {
    if req.body.len() > crate::filter::MAX_FILTER_BYTES {
        return Err(ApiError::bad_request(format!(
            "a filter's JSON may be at most {} bytes",
            crate::filter::MAX_FILTER_BYTES
        )));
    }
    let body = &req.json_object()?;
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= 256 => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("name: must be a string of at most 256 characters")),
    };
    let f = Filter::parse(body.get("match_policy"), body.get("clauses")).map_err(ApiError::bad_request)?;
    f.within_limits().map_err(ApiError::bad_request)?;
    Ok((name, f))
}

fn own(c: &Connection, id: &str, uid: i64) -> ApiResult<FilterRow> {
    let id = parse_id("filter_id", id)?;
    filters::get(c, id)?
        .filter(|f| f.user_id == uid)
        .ok_or_else(|| ApiError::not_found(format!("Filter not found: {id}")))
}

fn detach_and_delete(tx: &mut Tx, id: i64) -> ApiResult<()> {
    if !filters::streams_using(tx, id)?.is_empty() {
        tx.signal(Signal::FilterChanged { filter_id: id, filter: None })?;
    }
    filters::delete(tx, id)?;
    Ok(())
}

pub fn create(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, None)?;
    let (name, f) = parse_body(req)?;
    let v = ctx.db.write(|tx| {
        let row = filters::create(tx, uid, name.as_deref(), f.policy.as_str(), &f.clauses_json())?;
        filter_value(tx, ctx, &row, Some(req))
    })?;
    Ok(Resp::ok(v))
}

pub fn list(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, None)?;
    let v = ctx.db.read(|c| {
        let rows = filters::list_by_user(c, uid)?;
        rows.iter().map(|r| filter_value(c, ctx, r, Some(req))).collect::<ApiResult<Vec<_>>>()
    })?;
    Ok(Resp::ok(Value::Array(v)))
}

pub fn get_one(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, None)?;
    let v = ctx.db.read(|c| filter_value(c, ctx, &own(c, p[0], uid)?, Some(req)))?;
    Ok(Resp::ok(v))
}

pub fn update(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, None)?;
    let (name, f) = parse_body(req)?;
    let v = ctx.db.write(|tx| {
        let row = own(tx, p[0], uid)?;
        filters::update(tx, row.id, name.as_deref(), f.policy.as_str(), &f.clauses_json())?;
        tx.signal(Signal::FilterChanged { filter_id: row.id, filter: Some(Arc::new(f.clone())) })?;
        let row = filters::get(tx, row.id)?.ok_or_else(ApiError::internal)?;
        filter_value(tx, ctx, &row, Some(req))
    })?;
    Ok(Resp::ok(v))
}

pub fn delete_one(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, None)?;
    let v = ctx.db.write(|tx| {
        let row = own(tx, p[0], uid)?;
        let v = filter_value(tx, ctx, &row, Some(req))?;
        detach_and_delete(tx, row.id)?;
        Ok(v)
    })?;
    Ok(Resp::ok(v))
}

pub fn delete_all(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, None)?;
    let v = ctx.db.write(|tx| {
        let rows = filters::list_by_user(tx, uid)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(filter_value(tx, ctx, &r, Some(req))?);
            detach_and_delete(tx, r.id)?;
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(v)))
}
