//! Search (pnut): the parameters every search shares, and the user search.
//! Posts, channels, messages and polls are searched in their own modules
//! with these helpers, so each shows exactly what a fetch by id would.

use super::users::user_value;
use super::Ctx;
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::http::params::{page, page_meta};
use crate::http::{Req, Resp};
use crate::model::{prune, Kind, Opts};
use crate::storage::search::{self as store, UserSearch};
use crate::storage::users;
use serde_json::Value;

/// Longest `q` accepted.
const MAX_Q: usize = 256;
/// Longest list parameter (tags, mentions, types, ids).
const MAX_LIST: usize = 50;

/// `q` as an FTS5 query (`None`: no `q`); 400 when it has no word or is
/// too long.
pub(crate) fn q(req: &Req) -> ApiResult<Option<String>> {
    let Some(q) = req.param("q").filter(|q| !q.trim().is_empty()) else { return Ok(None) };
    if q.len() > MAX_Q {
        return Err(ApiError::bad_request(format!("q: longer than {MAX_Q} bytes")));
    }
    store::fts_query(q).map(Some).ok_or_else(|| ApiError::bad_request("q: has no word to search for"))
}

/// `order`: `relevance` (the default when there is a `q`) or `id`.
pub(crate) fn relevance(req: &Req, has_q: bool) -> ApiResult<bool> {
    match req.param("order") {
        None | Some("") => Ok(has_q),
        Some("relevance") if has_q => Ok(true),
        Some("relevance") => Err(ApiError::bad_request("order: relevance needs a q")),
        Some("id") => Ok(false),
        Some(o) => Err(ApiError::bad_request(format!("order: '{o}' is not id or relevance"))),
    }
}

/// A `0`/`1` filter; absent is `None`.
pub(crate) fn flag(req: &Req, name: &str) -> ApiResult<Option<bool>> {
    match req.param(name) {
        None | Some("") => Ok(None),
        Some("1") | Some("true") => Ok(Some(true)),
        Some("0") | Some("false") => Ok(Some(false)),
        Some(v) => Err(ApiError::bad_request(format!("{name}: '{v}' is not 0 or 1"))),
    }
}

/// A comma-separated list (at most `MAX_LIST` items).
pub(crate) fn list(req: &Req, name: &str) -> ApiResult<Vec<String>> {
    let items: Vec<String> = req
        .param(name)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if items.len() > MAX_LIST {
        return Err(ApiError::bad_request(format!("{name}: at most {MAX_LIST} items")));
    }
    Ok(items)
}

/// A comma-separated list of ids.
pub(crate) fn ids(req: &Req, name: &str) -> ApiResult<Vec<i64>> {
    list(req, name)?.iter().map(|s| super::parse_id(name, s)).collect()
}

/// One id.
pub(crate) fn id(req: &Req, name: &str) -> ApiResult<Option<i64>> {
    req.param(name).filter(|s| !s.is_empty()).map(|s| super::parse_id(name, s)).transpose()
}

/// An ISO 8601 time (or unix seconds).
pub(crate) fn time(req: &Req, name: &str) -> ApiResult<Option<i64>> {
    let Some(v) = req.param(name).filter(|s| !s.is_empty()) else { return Ok(None) };
    let parsed = v.parse::<i64>().ok().or_else(|| super::channels::parse_time(&Value::String(v.to_string())));
    parsed
        .map(Some)
        .ok_or_else(|| ApiError::bad_request(format!("{name}: not a time like 2026-01-31T12:00:00Z")))
}

/// `user_types`: human, feed, bot.
pub(crate) fn user_types(req: &Req) -> ApiResult<Vec<String>> {
    let t = list(req, "user_types")?;
    if let Some(bad) = t.iter().find(|t| !matches!(t.as_str(), "human" | "feed" | "bot")) {
        return Err(ApiError::bad_request(format!("user_types: '{bad}' is not human, feed or bot")));
    }
    Ok(t)
}

/// A search that checks each candidate row against the caller's rights:
/// the ids `index` matches for `q` in `table` (newest first inside the page
/// window, at most `SCAN_CAP`), each rendered by `show` or left out
/// (`None`), until the page is full.
pub(crate) fn scan(
    ctx: &Ctx,
    req: &Req,
    index: &str,
    table: &str,
    show: impl Fn(&crate::storage::Connection, i64) -> ApiResult<Option<Value>>,
) -> ApiResult<Resp> {
    let q = q(req)?;
    let pr = page(req)?;
    let n = pr.count.unsigned_abs() as usize;
    let (listed, out) = ctx.db.read(|c| {
        let ids = store::candidates(c, index, q.as_deref(), table, &pr)?;
        let scanned_all = (ids.len() as i64) < store::SCAN_CAP;
        let (mut kept, mut out) = (Vec::new(), Vec::new());
        for id in ids {
            let Some(v) = show(c, id)? else { continue };
            kept.push(id);
            if kept.len() > n {
                break;
            }
            out.push(v);
        }
        Ok((store::page_of(kept, scanned_all, &pr), out))
    })?;
    let keys: Vec<i64> = listed.items.iter().map(|i| i.pid).collect();
    Ok(Resp::with_meta(200, page_meta(&keys, listed.more), Value::Array(out)))
}

/// An explore stream: slug, title, description.
pub(crate) type Explore = (&'static str, &'static str, &'static str);

/// The list of explore streams under `path` (`/v1/posts/streams/explore`),
/// each with its full URL, as pnut lists them.
pub(crate) fn explore_catalog(ctx: &Ctx, path: &str, streams: &[Explore]) -> Resp {
    let list: Vec<Value> = streams
        .iter()
        .map(|(slug, title, description)| {
            serde_json::json!({"slug": slug, "title": title, "description": description,
                               "url": format!("{}{path}/{slug}", ctx.api_url)})
        })
        .collect();
    Resp::ok(Value::Array(list))
}

/// `GET /v1/users/search`.
pub fn users(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let viewer = auth::optional(&ctx.db, req)?.and_then(|p| p.user_id);
    let q = q(req)?;
    let relevance = relevance(req, q.is_some())?;
    let rel = |name: &str| -> ApiResult<Option<(i64, bool)>> {
        match flag(req, name)? {
            None => Ok(None),
            Some(yes) => viewer
                .map(|v| Some((v, yes)))
                .ok_or_else(|| ApiError::unauthorized(format!("{name}: needs a user token"))),
        }
    };
    let s = UserSearch {
        q,
        relevance,
        user_types: user_types(req)?,
        locale: req.param("locale").filter(|s| !s.is_empty()).map(str::to_string),
        timezone: req.param("timezone").filter(|s| !s.is_empty()).map(str::to_string),
        created_after: time(req, "created_after")?,
        created_before: time(req, "created_before")?,
        is_follower: rel("is_follower")?,
        is_following: rel("is_following")?,
    };
    let pr = page(req)?;
    let opts = Opts::from_req(req);
    let (meta, out) = ctx.db.read(|c| {
        let listed = store::users(c, &s, viewer, &pr)?;
        let mut out = Vec::new();
        for it in &listed.items {
            let Some(u) = users::by_id(c, it.oid)? else { continue };
            let mut v = user_value(c, &ctx.api_url, &u, viewer)?;
            prune(&mut v, Kind::User, &opts);
            v["pagination_id"] = Value::String(it.pid.to_string());
            out.push(v);
        }
        let keys: Vec<i64> = listed.items.iter().map(|i| i.pid).collect();
        Ok((page_meta(&keys, listed.more), out))
    })?;
    Ok(Resp::with_meta(200, meta, Value::Array(out)))
}
