//! Private messages: the PM channel of a set of users.

use super::*;
use crate::error::{ApiError, ApiResult};
use crate::http::{Req, Resp};
use crate::storage::channels::{self as store};
use crate::storage::Connection;
use serde_json::{json, Value};

/// The PM key for a set of participants: sorted ids, comma-joined.
pub fn pm_key(users: &[i64]) -> String {
    let mut u = users.to_vec();
    u.sort_unstable();
    u.dedup();
    u.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// Resolves `destinations` (a list, or comma-separated string, of ids or
/// `@names`) plus the sender to the participant set.
pub fn participants(c: &Connection, me: i64, dest: &Value, field: &str) -> ApiResult<Vec<i64>> {
    let items: Vec<Value> = match dest {
        Value::Array(l) => l.clone(),
        Value::String(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| json!(s)).collect(),
        Value::Number(_) => vec![dest.clone()],
        _ => return Err(ApiError::bad_request(format!("{field}: a list of user ids or @usernames"))),
    };
    let mut users = vec![me];
    for it in &items {
        let ident = match it {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(ApiError::bad_request(format!("{field}: '{it}' is not a user id or @username"))),
        };
        let u = find_user(c, &ident, Some(me)).map_err(|e| {
            if e.status == 404 {
                ApiError::bad_request(format!("{field}: no user {ident}"))
            } else {
                ApiError::bad_request(format!("{field}: {}", e.message))
            }
        })?;
        if !users.contains(&u.id) {
            users.push(u.id);
        }
    }
    if users.len() < 2 {
        return Err(ApiError::bad_request(format!("{field}: name at least one user other than yourself")));
    }
    Ok(users)
}

pub fn existing_pm(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    me.require(PM)?;
    let ids =
        req.param("ids").ok_or_else(|| ApiError::bad_request("ids: required (user ids or @usernames)"))?;
    let v = ctx.db.read(|c| {
        let users = participants(c, uid, &json!(ids), "ids")?;
        let ch = store::channel_by_pm_key(c, &pm_key(&users))?
            .ok_or_else(|| ApiError::not_found("No PM channel exists with exactly those users"))?;
        channel_value(c, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}
