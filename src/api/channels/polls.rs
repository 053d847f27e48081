//! Polls: create, read, answer (v1 `positions` and the older path form
//! pnutpy 0.5.4 sends), delete, list. Polls close at `closed_at` by the
//! poll closer in `storage::channels`; `poll` events go to the owner and
//! everyone who answered.

use super::{bool_field, id_list, new_raw, page, page_meta};
use crate::api::{parse_id, Ctx};
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::ObjType;
use crate::http::{Req, Resp};
use crate::model::{prune, Kind, Opts};
use crate::storage::channels::{self as store, NewPoll, PollRow};
use crate::storage::events;
use crate::storage::Connection;
use crate::util::now;
use serde_json::{json, Value};

/// The shortest poll: pnut asks for one minute; spout accepts `closed_at`
/// one second ahead so clients (and tests) can run short polls.
pub const MIN_SECONDS: i64 = 1;
const MAX_SECONDS: i64 = crate::api::limits::POLL_MAX_MINUTES * 60;

/// The caller of a polls endpoint, and which poll types its scope reaches
/// (`polls`, `write_post`: all; `polls:TYPE`: that type).
struct Poller {
    uid: i64,
    app_id: i64,
    scopes: Vec<String>,
}

impl Poller {
    fn covers(&self, kind: &str) -> bool {
        auth::has_scope(&self.scopes, &format!("polls:{kind}")) || auth::has_scope(&self.scopes, "write_post")
    }

    fn check(&self, p: PollRow) -> ApiResult<PollRow> {
        if self.covers(&p.kind) {
            return Ok(p);
        }
        Err(ApiError::forbidden(format!("This token's polls scope does not cover polls of type {}", p.kind)))
    }
}

fn poller(ctx: &Ctx, req: &Req) -> ApiResult<Poller> {
    let (p, uid) = auth::user(&ctx.db, req, None)?;
    if !auth::has_scope(&p.scopes, "polls") && !auth::has_scope(&p.scopes, "write_post") {
        return Err(ApiError::forbidden("This endpoint requires the 'polls' (or 'write_post') scope"));
    }
    Ok(Poller { uid, app_id: p.app.id, scopes: p.scopes })
}

/// Unix seconds from `2016-12-11T18:14:12Z` (or a number of unix seconds).
pub fn parse_time(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00")).unwrap_or(s);
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let time = time.split('.').next()?;
    let t: Vec<i64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if d.len() != 3 || t.len() < 2 || t.len() > 3 {
        return None;
    }
    let (y, m, day) = (d[0], d[1], d[2]);
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || t[0] > 23
        || t[1] > 59
        || t.get(2).copied().unwrap_or(0) > 60
    {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + t[0] * 3600 + t[1] * 60 + t.get(2).copied().unwrap_or(0))
}

fn find_poll(c: &Connection, raw: &str) -> ApiResult<PollRow> {
    let id = parse_id("poll_id", raw)?;
    store::poll(c, id)?
        .filter(|p| !p.is_deleted)
        .ok_or_else(|| ApiError::not_found(format!("Poll not found: {id}")))
}

/// Public polls, the owner, those who answered, or the right `poll_token`.
fn may_see(c: &Connection, p: &PollRow, uid: i64, req: &Req) -> ApiResult<bool> {
    Ok(p.is_public
        || p.user_id == uid
        || req.param("poll_token") == Some(p.poll_token.as_str())
        || store::poll_respondents(c, p.id)?.contains(&uid))
}

fn value(c: &Connection, ctx: &Ctx, p: &PollRow, uid: i64, opts: &Opts) -> ApiResult<Value> {
    let mut v = crate::render::poll_json(c, &ctx.api_url, p, Some(uid), p.user_id == uid)?;
    prune(&mut v, Kind::Poll, opts);
    Ok(v)
}

pub fn create(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let pl = poller(ctx, req)?;
    let (uid, app_id) = (pl.uid, pl.app_id);
    let body = req.json_object()?;
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("");
    super::check_type(kind)?;
    if !pl.covers(kind) {
        return Err(ApiError::forbidden(format!(
            "This token's polls scope does not cover polls of type {kind}"
        )));
    }
    let prompt = match body.get("prompt") {
        Some(Value::String(s))
            if !s.trim().is_empty() && s.chars().count() <= crate::api::limits::POLL_PROMPT =>
        {
            s.clone()
        }
        _ => return Err(ApiError::bad_request("prompt: required, at most 256 characters")),
    };
    let Some(Value::Array(opts)) = body.get("options") else {
        return Err(ApiError::bad_request("options: required, a list of 2 to 10 {text} objects"));
    };
    if !(2..=10).contains(&opts.len()) {
        return Err(ApiError::bad_request("options: 2 to 10 options"));
    }
    let mut texts = Vec::new();
    for (i, o) in opts.iter().enumerate() {
        let t = o.get("text").and_then(Value::as_str).or_else(|| o.as_str());
        match t {
            Some(t) if !t.trim().is_empty() && t.chars().count() <= 64 => texts.push(t.to_string()),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "options[{i}].text: required, at most 64 characters"
                )))
            }
        }
    }
    let t = now();
    let closed_at =
        match (body.get("duration").filter(|v| !v.is_null()), body.get("closed_at").filter(|v| !v.is_null()))
        {
            (Some(d), None) => {
                let m = d.as_i64().or_else(|| d.as_str().and_then(|s| s.parse().ok()));
                match m {
                    Some(m) if (1..=crate::api::limits::POLL_MAX_MINUTES).contains(&m) => t + m * 60,
                    _ => return Err(ApiError::bad_request("duration: minutes, 1 to 20160")),
                }
            }
            (None, Some(c)) => match parse_time(c) {
                Some(at) if at >= t + MIN_SECONDS && at <= t + MAX_SECONDS => at,
                Some(_) => {
                    return Err(ApiError::bad_request(format!(
                        "closed_at: must be between {MIN_SECONDS} second(s) and two weeks ahead"
                    )))
                }
                None => {
                    return Err(ApiError::bad_request(
                        "closed_at: an ISO 8601 time like 2024-01-02T03:04:05Z",
                    ))
                }
            },
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("duration, closed_at: give one, not both"))
            }
            (None, None) => return Err(ApiError::bad_request("duration: required (or closed_at)")),
        };
    let max_options = match body.get("max_options") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 1 && *n <= texts.len() as i64)
            .ok_or_else(|| ApiError::bad_request("max_options: 1 to the number of options"))?,
    };
    let is_anonymous = bool_field(&body, "is_anonymous")?.unwrap_or(true);
    let is_public = bool_field(&body, "is_public")?.unwrap_or(false);
    let raw = new_raw(&body)?;
    let v = ctx.db.write(|tx| {
        let p = store::insert_poll(
            tx,
            &NewPoll {
                user_id: uid,
                app_id,
                kind,
                prompt: &prompt,
                options: &texts,
                max_options,
                is_anonymous,
                is_public,
                raw: &raw,
                closed_at,
            },
        )?;
        crate::render::emit_poll(tx, &ctx.api_url, &p, uid, json!({}))?;
        value(tx, ctx, &p, uid, &Opts::from_req(req))
    })?;
    ctx.polls.wake();
    Ok(Resp::data(201, v))
}

pub fn get_one(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let pl = poller(ctx, req)?;
    let uid = pl.uid;
    let v = ctx.db.read(|c| {
        let poll = pl.check(find_poll(c, p[0])?)?;
        if !may_see(c, &poll, uid, req)? {
            return Err(ApiError::forbidden("poll_token: required for a private poll"));
        }
        value(c, ctx, &poll, uid, &Opts::from_req(req))
    })?;
    Ok(Resp::ok(v))
}

pub fn get_many(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let pl = poller(ctx, req)?;
    let uid = pl.uid;
    let ids = id_list(req, 100)?;
    let opts = Opts::from_req(req);
    let list = ctx.db.read(|c| {
        let mut out = Vec::new();
        for id in ids {
            if let Some(p) = store::poll(c, id)?.filter(|p| !p.is_deleted && pl.covers(&p.kind)) {
                if may_see(c, &p, uid, req)? {
                    out.push(value(c, ctx, &p, uid, &opts)?);
                }
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

pub fn mine(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let pl = poller(ctx, req)?;
    let uid = pl.uid;
    let pg = page(req)?;
    let opts = Opts::from_req(req);
    let (list, keys, more) = ctx.db.read(|c| {
        let (mut rows, more) = store::polls_of(c, uid, &pg)?;
        rows.retain(|p| pl.covers(&p.kind));
        let mut out = Vec::new();
        for p in &rows {
            out.push(value(c, ctx, p, uid, &opts)?);
        }
        Ok((out, rows.iter().map(|p| p.id).collect::<Vec<_>>(), more))
    })?;
    Ok(Resp::with_meta(200, page_meta(&keys, more), Value::Array(list)))
}

/// `GET /v1/users/me/polls/responses`: polls the caller answered, with
/// `pagination_id`.
pub fn answered(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let pl = poller(ctx, req)?;
    let uid = pl.uid;
    let pg = page(req)?;
    let opts = Opts::from_req(req);
    let (list, keys, more) = ctx.db.read(|c| {
        let (mut rows, more) = store::polls_answered(c, uid, &pg)?;
        rows.retain(|(_, p)| pl.covers(&p.kind));
        let mut out = Vec::new();
        for (key, p) in &rows {
            let mut v = value(c, ctx, p, uid, &opts)?;
            v["pagination_id"] = json!(key.to_string());
            out.push(v);
        }
        Ok((out, rows.iter().map(|r| r.0).collect::<Vec<_>>(), more))
    })?;
    Ok(Resp::with_meta(200, page_meta(&keys, more), Value::Array(list)))
}

fn answer(ctx: &Ctx, req: &Req, raw_id: &str, positions: Vec<i64>) -> ApiResult<Resp> {
    let pl = poller(ctx, req)?;
    let uid = pl.uid;
    let v = ctx.db.write(|tx| {
        let p = pl.check(find_poll(tx, raw_id)?)?;
        if !may_see(tx, &p, uid, req)? {
            return Err(ApiError::forbidden("poll_token: required for a private poll"));
        }
        if p.is_closed || p.closed_at <= now() {
            return Err(ApiError::bad_request("poll_id: this poll is closed"));
        }
        let mut seen = Vec::new();
        for pos in &positions {
            if *pos < 1 || *pos > p.options.len() as i64 {
                return Err(ApiError::bad_request(format!("positions: unknown position {pos}")));
            }
            if seen.contains(pos) {
                return Err(ApiError::bad_request(format!("positions: {pos} given twice")));
            }
            seen.push(*pos);
        }
        if seen.len() as i64 > p.max_options {
            return Err(ApiError::bad_request(format!("positions: at most {} choice(s)", p.max_options)));
        }
        if store::set_poll_response(tx, p.id, uid, &seen)? {
            crate::render::emit_poll(tx, &ctx.api_url, &p, uid, json!({}))?;
        }
        value(tx, ctx, &p, uid, &Opts::from_req(req))
    })?;
    Ok(Resp::ok(v))
}

/// `PUT /v1/polls/{id}/response`: `positions` as a JSON list, or a
/// comma-separated form or query value; `[]` clears the answer.
pub fn respond(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let body = req.params()?;
    let given = body.get("positions").cloned().or_else(|| req.param("positions").map(|s| json!(s)));
    let bad = || ApiError::bad_request("positions: a list of option positions");
    let positions: Vec<i64> = match given {
        Some(Value::Array(l)) => l
            .iter()
            .map(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
            .collect::<Option<_>>()
            .ok_or_else(bad)?,
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()
            .ok_or_else(bad)?,
        Some(Value::Number(n)) => vec![n.as_i64().ok_or_else(bad)?],
        _ => return Err(ApiError::bad_request("positions: required")),
    };
    answer(ctx, req, p[0], positions)
}

/// The v0 form pnutpy 0.5.4 still sends: `PUT /v1/polls/{id}/response/{position}`.
pub fn respond_one(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let pos = p[1]
        .parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("position: '{}' is not a position", p[1])))?;
    answer(ctx, req, p[0], vec![pos])
}

pub fn delete(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let pl = poller(ctx, req)?;
    let uid = pl.uid;
    let v = ctx.db.write(|tx| {
        let poll = pl.check(find_poll(tx, p[0])?)?;
        if poll.user_id != uid {
            return Err(ApiError::forbidden("Only the poll's owner may delete it"));
        }
        store::delete_poll(tx, poll.id)?;
        let gone = PollRow { is_deleted: true, ..poll };
        // Deletion is final (issue 16): the poll's earlier events now
        // carry it as deleted, in this transaction.
        let shown = crate::render::poll_json(tx, &ctx.api_url, &gone, None, false)?;
        events::rewrite(tx, ObjType::Poll, gone.id, i64::MAX, |env| {
            if let Some(slot) = env.pointer_mut("/data/poll") {
                *slot = shown.clone();
            }
        })?;
        crate::render::emit_poll_end(tx, &ctx.api_url, &gone, uid, "is_deleted")?;
        value(tx, ctx, &gone, uid, &Opts::from_req(req))
    })?;
    Ok(Resp::ok(v))
}

/// `GET /v1/polls/search`: `q` (prompt and options), `type`, `creator_id`;
/// newest first, only polls the caller may see (as `?ids=` shows them).
pub fn search(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    use crate::api::search as sp;
    let pl = poller(ctx, req)?;
    let uid = pl.uid;
    let kind = req.param("type").filter(|s| !s.is_empty());
    let creator = sp::id(req, "creator_id")?;
    let opts = Opts::from_req(req);
    sp::scan(ctx, req, "polls_fts", "polls", |c, id| {
        let Some(p) = store::poll(c, id)? else { return Ok(None) };
        let ok = !p.is_deleted
            && pl.covers(&p.kind)
            && kind.is_none_or(|k| k == p.kind)
            && creator.is_none_or(|u| u == p.user_id)
            && may_see(c, &p, uid, req)?;
        ok.then(|| value(c, ctx, &p, uid, &opts)).transpose()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_parse() {
        assert_eq!(parse_time(&json!("2016-12-11T18:14:12Z")), Some(1_481_480_052));
        assert_eq!(parse_time(&json!("2000-02-29T00:00:00Z")), Some(951_782_400));
        assert_eq!(parse_time(&json!(5)), Some(5));
        assert_eq!(parse_time(&json!("nope")), None);
        assert_eq!(parse_time(&json!("2016-13-11T18:14:12Z")), None);
    }
}
