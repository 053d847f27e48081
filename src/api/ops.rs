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
