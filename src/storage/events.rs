//! The event log: insert within a write transaction, read ranges for replay.

use super::Cached;
use crate::event::{Event, NewEvent, ObjType, Outbox, Signal};
use crate::util::now;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

/// The types of event a deletion rewrites (`rewrite`): they are indexed
/// by the object they are about, `meta.id` (a post, bookmark's post,
/// message, file, poll, or channel).
fn object_id(e: &NewEvent) -> Option<i64> {
    match e.kind {
        ObjType::Post
        | ObjType::Bookmark
        | ObjType::Message
        | ObjType::File
        | ObjType::Poll
        | ObjType::Channel
        | ObjType::ChannelSubscription => e.envelope["meta"]["id"].as_str()?.parse().ok(),
        _ => None,
    }
}

pub fn insert(c: &Connection, e: NewEvent) -> rusqlite::Result<Event> {
    let created_at = now();
    let audience = serde_json::to_string(&e.audience).unwrap_or_default();
    let auth = e.auth.as_ref().and_then(|a| serde_json::to_string(a).ok());
    c.qexec(
        "INSERT INTO events (type, audience, auth, envelope, created_at, object_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![e.kind.as_str(), audience, auth, e.envelope.to_string(), created_at, object_id(&e)],
    )?;
    Ok(Event {
        seq: c.last_insert_rowid(),
        kind: e.kind,
        audience: e.audience,
        auth: e.auth,
        envelope: e.envelope,
        created_at,
    })
}

/// The `type` of the log rows that hold signals: never sent to a client,
/// read only by the hub (`range_outbox`), in order with the events.
pub const SIGNAL: &str = "signal";

/// Writes `s` to the log in this transaction; returns its seq. A change
/// made by another process (`spout admin`) reaches the server's live
/// connections this way, in commit order with the events.
pub fn insert_signal(c: &Connection, s: &Signal) -> rusqlite::Result<i64> {
    c.qexec(
        "INSERT INTO events (type, audience, auth, envelope, created_at) VALUES (?1, 'null', NULL, ?2, ?3)",
        params![SIGNAL, s.to_row().to_string(), now()],
    )?;
    Ok(c.last_insert_rowid())
}

/// Rewrites the stored events of type `kind` about object `id` (its
/// `meta.id`) with seq below `before`: `edit` changes each envelope in
/// place, and those it changed are saved. A deletion calls this in its own
/// transaction, so no replay after the commit sees the old content.
/// Returns how many events changed.
pub fn rewrite(
    c: &Connection,
    kind: ObjType,
    id: i64,
    before: i64,
    mut edit: impl FnMut(&mut Value),
) -> rusqlite::Result<usize> {
    let rows: Vec<(i64, String)> = {
        let mut st = c.prepare_cached(
            "SELECT seq, envelope FROM events WHERE object_id = ?1 AND type = ?2 AND seq < ?3",
        )?;
        let rows = st.query_map(params![id, kind.as_str(), before], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut changed = 0;
    for (seq, text) in rows {
        let Ok(mut env) = serde_json::from_str::<Value>(&text) else { continue };
        let was = env.clone();
        edit(&mut env);
        if env != was {
            c.qexec("UPDATE events SET envelope = ?1 WHERE seq = ?2", params![env.to_string(), seq])?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// The oldest seq still in the log (retention removes older ones).
pub fn first_seq(c: &Connection) -> rusqlite::Result<Option<i64>> {
    c.qrow("SELECT MIN(seq) FROM events", [], |r| r.get(0))
}

/// The newest seq created before `time` (0 if none).
///
/// Events are appended in time order, so this bisects the log by seq (about
/// 40 point reads) rather than keep an index on time. Should the clock be
/// set back, events written meanwhile are out of order and the answer may
/// be off by them: retention by age then errs by that step.
pub fn last_seq_before(c: &Connection, time: i64) -> rusqlite::Result<i64> {
    let first_at = |seq: i64| -> rusqlite::Result<Option<(i64, i64)>> {
        c.qrow("SELECT seq, created_at FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1", [seq], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
    };
    let (mut lo, mut hi) =
        (0i64, c.qrow("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get::<_, i64>(0))?);
    let mut found = 0;
    // Invariant: every event with seq < lo is older than `time`; none with
    // seq > hi is.
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        match first_at(mid)? {
            Some((seq, at)) if seq <= hi && at < time => {
                found = seq;
                lo = seq + 1;
            }
            _ => hi = mid - 1,
        }
    }
    Ok(found)
}

/// Deletes up to `limit` of the oldest events with seq <= `upto`.
pub fn delete_upto(c: &Connection, upto: i64, limit: i64) -> rusqlite::Result<usize> {
    c.qexec(
        "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq <= ?1 ORDER BY seq LIMIT ?2)",
        params![upto, limit],
    )
}

/// The highest seq ever given out (retention may have deleted it: the
/// AUTOINCREMENT counter remembers).
pub fn max_seq(c: &Connection) -> rusqlite::Result<i64> {
    c.qrow(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
                    COALESCE((SELECT MAX(seq) FROM events), 0))",
        [],
        |r| r.get(0),
    )
}

/// Events with `after < seq < before`, oldest first, without the signal
/// rows. Rows that no longer parse (which would be a bug) are logged and
/// skipped, never fatal.
pub fn range(c: &Connection, after: i64, before: i64) -> rusqlite::Result<Vec<Event>> {
    let mut st = c.prepare_cached(
        "SELECT seq, type, audience, auth, envelope, created_at FROM events
         WHERE seq > ?1 AND seq < ?2 AND type <> 'signal' ORDER BY seq",
    )?;
    let rows = st.query_map(params![after, before], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, kind, audience, auth, envelope, created_at) = row?;
        let parsed = (|| {
            Some(Event {
                seq,
                kind: ObjType::parse(&kind)?,
                audience: serde_json::from_str(&audience).ok()?,
                auth: match auth {
                    Some(a) => Some(serde_json::from_str(&a).ok()?),
                    None => None,
                },
                envelope: serde_json::from_str(&envelope).ok()?,
                created_at,
            })
        })();
        match parsed {
            Some(e) => out.push(e),
            None => log::error!("event {seq} in the log does not parse; skipped"),
        }
    }
    Ok(out)
}

/// Events and signals with `after < seq < before`, in log order: what the
/// hub gets for rows written by another process.
pub fn range_outbox(c: &Connection, after: i64, before: i64) -> rusqlite::Result<Vec<Outbox>> {
    let mut st = c.prepare_cached(
        "SELECT seq, envelope FROM events WHERE seq > ?1 AND seq < ?2 AND type = 'signal' ORDER BY seq",
    )?;
    let rows = st.query_map(params![after, before], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut signals = Vec::new();
    for row in rows {
        let (seq, row) = row?;
        let load = |id| super::filters::load(c, id).ok().flatten();
        match serde_json::from_str(&row).ok().and_then(|v: Value| Signal::from_row(&v, load)) {
            Some(s) => signals.push(Outbox::Signal(seq, s)),
            None => log::error!("signal {seq} in the log does not parse; skipped"),
        }
    }
    let mut out: Vec<Outbox> =
        range(c, after, before)?.into_iter().map(|e| Outbox::Event(std::sync::Arc::new(e))).collect();
    if !signals.is_empty() {
        out.extend(signals);
        out.sort_by_key(Outbox::seq);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bisection agrees with a scan of the log, with gaps in seq
    /// (retention, rolled-back events) and several events per second.
    #[test]
    fn last_seq_before_agrees_with_a_scan() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT, audience TEXT,
             auth TEXT, envelope TEXT, created_at INTEGER NOT NULL)",
        )
        .unwrap();
        let scan = |t: i64| -> i64 {
            c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events WHERE created_at < ?1", [t], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(last_seq_before(&c, 100).unwrap(), 0);
        let mut at = 1000;
        for seq in 1..400i64 {
            if seq % 7 == 0 || (120..180).contains(&seq) {
                continue;
            }
            at += seq % 3;
            c.execute("INSERT INTO events (seq, created_at) VALUES (?1, ?2)", [seq, at]).unwrap();
        }
        c.execute("DELETE FROM events WHERE seq < 40", []).unwrap();
        for t in 990..at + 3 {
            assert_eq!(last_seq_before(&c, t).unwrap(), scan(t), "time {t}");
        }
    }
}
