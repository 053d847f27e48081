//! The poll object and the `poll` event.

use super::{source_json, user_json_by_id};
use crate::error::ApiResult;
use crate::event::{NewEvent, ObjType};
use crate::storage::channels::poll_respondents;
use crate::storage::channels::{poll_audience, poll_responses, suppressed, PollRow};
use crate::storage::Connection;
use crate::storage::Tx;
use crate::util::{iso8601, now};
use serde_json::{json, Value};

/// The full poll object (raw, user, results included); `viewer` adds
/// `is_your_response`; `with_token` shows `poll_token`.
pub fn poll_json(
    c: &Connection,
    api_url: &str,
    p: &PollRow,
    viewer: Option<i64>,
    with_token: bool,
) -> ApiResult<Value> {
    let responses = poll_responses(c, p.id)?;
    let closed = p.is_closed || p.closed_at <= now();
    let options: Vec<Value> = p
        .options
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let pos = i as i64 + 1;
            let ids: Vec<String> =
                responses.iter().filter(|(_, q)| *q == pos).map(|(u, _)| u.to_string()).collect();
            let mut o = json!({"text": text, "position": pos});
            if let Some(v) = viewer {
                o["is_your_response"] = json!(responses.iter().any(|(u, q)| *u == v && *q == pos));
            }
            // Results are shown once the poll has closed (and to its owner).
            if closed || viewer == Some(p.user_id) {
                o["respondents"] = json!(ids.len());
                if !p.is_anonymous {
                    o["respondent_ids"] = json!(ids);
                }
            }
            o
        })
        .collect();
    let mut v = json!({
        "id": p.id.to_string(),
        "type": p.kind,
        "prompt": p.prompt,
        "created_at": iso8601(p.created_at),
        "closed_at": iso8601(p.closed_at),
        "is_anonymous": p.is_anonymous,
        "is_public": p.is_public,
        "max_options": p.max_options,
        "options": options,
        "source": source_json(c, p.app_id)?,
        "user": user_json_by_id(c, api_url, p.user_id)?,
        "raw": p.raw,
    });
    if closed {
        v["is_closed"] = json!(true);
    }
    if p.is_deleted {
        v["is_deleted"] = json!(true);
    }
    if with_token {
        v["poll_token"] = json!(p.poll_token);
    }
    Ok(v)
}

/// Writes a poll's last event, when it closed or was deleted (`flag`, set
/// true in meta): its meta also names the respondents
/// (`subscribed_user_ids`) and those of them who muted or blocked `actor`
/// (`suppress_notifications`).
pub fn emit_poll_end(tx: &mut Tx, api_url: &str, p: &PollRow, actor: i64, flag: &str) -> ApiResult<()> {
    let respondents = poll_respondents(tx, p.id)?;
    let subs: Vec<String> = respondents.iter().map(i64::to_string).collect();
    let quiet = suppressed(tx, actor, &respondents)?;
    let human = crate::storage::users::is_human(tx, actor)?;
    let mut extra = json!({"subscribed_user_ids": subs, "suppress_notifications": quiet,
                           "suppress_notifications_all": !human});
    extra[flag] = json!(true);
    emit_poll(tx, api_url, p, actor, extra)
}

/// Writes a `poll` event. `extra` adds meta keys (see `emit_poll_end`).
pub fn emit_poll(tx: &mut Tx, api_url: &str, p: &PollRow, actor: i64, extra: Value) -> ApiResult<()> {
    let mut meta = json!({"timestamp": now(), "id": p.id.to_string(), "type": "poll"});
    if let (Value::Object(m), Value::Object(e)) = (&mut meta, extra) {
        m.extend(e);
    }
    let data = json!({
        "poll": poll_json(tx, api_url, p, None, false)?,
        "user": user_json_by_id(tx, api_url, actor)?,
    });
    let audience = poll_audience(tx, p)?;
    tx.emit(NewEvent {
        kind: ObjType::Poll,
        audience,
        auth: None,
        envelope: crate::util::obj([("meta", meta), ("data", data)]),
    })
}
