//! Operations: `GET /health` for load balancers and `GET /v1/stats`, the
//! counters an operator needs, answered only to loopback peers (they reveal
//! which apps are connected, so they stay on the machine; reach them over
//! SSH or from a local monitoring agent).

use super::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::http::{Req, Resp};
use crate::storage::apps;
use serde_json::json;

pub fn health(ctx: &Ctx, _: &Req, _: &[&str]) -> ApiResult<Resp> {
    let version = ctx.db.schema_version()?;
    Ok(Resp::ok(json!({"status": "ok", "schema_version": version})))
}

/// `GET /v1/sys/config`: the limits this server enforces, under pnut's
/// keys, from the same constants and flags the handlers check.
pub fn sys_config(ctx: &Ctx, _: &Req, _: &[&str]) -> ApiResult<Resp> {
    use crate::api::limits as l;
    let p = &ctx.published;
    Ok(Resp::ok(json!({
        "post": {
            "max_length": l::POST_TEXT,
            "seconds_for_revision": l::REVISION_SECONDS,
            "seconds_between_duplicates": p.duplicate_secs,
        },
        "message": {"max_length": l::MESSAGE_TEXT},
        "raw": {"max_bytes": l::RAW_BYTES},
        "user": {
            "avatar_max_bytes": crate::api::images::MAX_IMAGE_BYTES,
            "cover_max_bytes": crate::api::images::MAX_IMAGE_BYTES,
            "presence_max_length": l::PRESENCE_TEXT,
        },
        "poll": {"prompt_max_length": l::POLL_PROMPT, "max_duration_minutes": l::POLL_MAX_MINUTES},
        "bookmark": {"note_max_length": l::BOOKMARK_NOTE},
        "file": {"max_bytes": p.max_body},
        "stream": {"max_per_app": crate::api::streams::MAX_STREAMS, "max_connections_per_app": p.conns_per_app},
        "rate_limit": {"requests": p.rate_limit, "window_seconds": p.rate_window_secs},
    })))
}

pub fn stats(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    if !req.remote.is_some_and(|ip| ip.is_loopback()) {
        return Err(ApiError::forbidden("/v1/stats is answered only on the loopback interface"));
    }
    let s = ctx.hub.stats();
    let names = ctx.db.read(|c| Ok(apps::list_apps(c)?))?;
    let per_app: serde_json::Map<String, serde_json::Value> = s
        .per_app
        .iter()
        .map(|(id, n)| {
            let cid =
                names.iter().find(|a| a.id == *id).map(|a| a.client_id.clone()).unwrap_or(id.to_string());
            (cid, json!(n))
        })
        .collect();
    let uptime = ctx.started.elapsed().as_secs_f64();
    Ok(Resp::ok(json!({
        "uptime_secs": uptime as u64,
        "connections": s.connections,
        "connections_per_app": per_app,
        "last_event_position": ctx.hub.last_seq().load(std::sync::atomic::Ordering::Relaxed).to_string(),
        "events_delivered": s.delivered,
        "events_delivered_per_sec": if uptime > 0.0 { s.delivered as f64 / uptime } else { 0.0 },
        "slow_consumer_disconnects": s.slow_disconnects,
        "hub_queue": s.hub_queue,
    })))
}

/// `POST /v1/text/process`: `text` as spout would store it — `text`, `html`
/// and `entities`, mentions resolved against the users as they are now —
/// without storing anything. Any token.
pub fn text_process(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    crate::auth::any(&ctx.db, req)?;
    let body = req.params()?;
    let text =
        crate::http::str_field(&body, "text")?.ok_or_else(|| ApiError::bad_request("text: required"))?;
    let max = if req.param("object_type") == Some("message") {
        crate::api::limits::MESSAGE_TEXT
    } else {
        crate::api::limits::POST_TEXT
    };
    let n = text.chars().count();
    if n > max {
        return Err(ApiError::bad_request(format!("text: at most {max} characters (got {n})")));
    }
    let opts = crate::http::params::text_opts(&body)?;
    let v = ctx.db.read(|c| Ok(crate::storage::users::text_content_with(c, text, opts)))?;
    Ok(Resp::ok(v))
}

/// How long `GET /v1/sys/stats` answers from its last count.
const STATS_SECS: u64 = 60;

/// `GET /v1/sys/stats` (no token): how big this network is, counted at most
/// once a minute (each count scans whole tables).
pub fn sys_stats(ctx: &Ctx, _: &Req, _: &[&str]) -> ApiResult<Resp> {
    let mut cached = ctx.stats.lock().unwrap_or_else(|p| p.into_inner());
    // Held while counting: callers meanwhile wait for this count rather
    // than each scanning the tables again.
    if let Some((_, v)) = cached.as_ref().filter(|(at, _)| at.elapsed().as_secs() < STATS_SECS) {
        return Ok(Resp::ok(v.clone()));
    }
    let counts = ctx.db.read(|c| Ok(crate::storage::stats::counts(c)?))?;
    let m: serde_json::Map<String, serde_json::Value> =
        counts.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let v = serde_json::Value::Object(m);
    *cached = Some((std::time::Instant::now(), v.clone()));
    Ok(Resp::ok(v))
}
