//! Bounded retention of the event log: by age (events older than
//! `--retention-secs` are deleted) and by count per stream (a stream keeps at
//! most `--retention-events` undelivered events). Before an event a stream
//! had not received is dropped, the stream's `dropped` count grows, so its
//! next connection is told how many it lost.

use crate::delivery::wants;
use crate::error::ApiResult;
use crate::hub::Hub;
use crate::storage::EventLog;
use crate::storage::{streams, Db};
use crate::util::now;

/// What to do for one stream: the new cursor and how many events it loses.
/// `matched` are the (seq, created_at) of the undelivered events the stream
/// would receive, oldest first; events created before `cut_time` expire.
pub fn plan(matched: &[(i64, i64)], cursor: i64, cut_time: i64, max_events: usize) -> (i64, i64) {
    let expired = matched.iter().take_while(|(_, t)| *t < cut_time).count();
    let over = (matched.len() - expired).saturating_sub(max_events);
    let drop = expired + over;
    let new_cursor = if drop > 0 { matched[drop - 1].0.max(cursor) } else { cursor };
    (new_cursor, drop as i64)
}

/// One retention pass. Returns (events dropped from streams, log rows deleted).
pub fn prune(db: &Db, hub: Option<&Hub>, max_age_secs: i64, max_events: usize) -> ApiResult<(i64, usize)> {
    let cut_time = now() - max_age_secs;
    let all = db.read(|c| Ok(streams::all(c)?))?;
    let (max_seq, cut_seq) = (db.last_seq()?, db.last_seq_before(cut_time)?);
    let mut dropped_total = 0;
    for s in all {
        // A stream with a live connection is receiving; it has lost nothing.
        if hub.is_some_and(|h| h.is_live(s.id)) {
            continue;
        }
        let cursor = s.cursor.max(hub.map(|h| h.cursor_of(s.id)).unwrap_or(0));
        if cursor >= max_seq || (cursor >= cut_seq && max_seq - cursor <= max_events as i64) {
            continue;
        }
        let (grants, filter) = db.read(|c| {
            let g = crate::storage::apps::grants_of_app(c, s.app_id)?;
            let f = crate::storage::filters::of_stream(c, s.filter_id)?;
            Ok((g, f))
        })?;
        let types = crate::event::types_to_bits(&s.object_types);
        let mut matched = Vec::new();
        let mut pos = cursor;
        while pos < max_seq {
            let upto = max_seq.min(pos + 1024);
            for ev in db.events_between(pos, upto)? {
                if wants(&ev, types, s.app_id, filter.as_deref(), Some(&grants)) {
                    matched.push((ev.seq, ev.created_at));
                }
            }
            pos = upto;
        }
        let (new_cursor, dropped) = plan(&matched, cursor, cut_time, max_events);
        // Positions before the age cut hold nothing this stream still needs.
        let new_cursor = new_cursor.max(cut_seq.min(max_seq));
        if new_cursor > s.cursor || dropped > 0 {
            db.write(|tx| Ok(streams::advance(tx, s.id, new_cursor, dropped)?))?;
        }
        if dropped > 0 {
            log::info!("retention: stream {} lost {dropped} undelivered events", s.id);
        }
        dropped_total += dropped;
    }
    let mut deleted = 0;
    if cut_seq > 0 {
        loop {
            let n = db.delete_upto(cut_seq, 10_000)?;
            deleted += n;
            if n < 10_000 {
                break;
            }
        }
    }
    Ok((dropped_total, deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_by_age_and_count() {
        let m = [(5, 100), (7, 200), (9, 300), (11, 400)];
        assert_eq!(plan(&m, 4, 0, 10), (4, 0), "nothing to drop");
        assert_eq!(plan(&m, 4, 250, 10), (7, 2), "two expired");
        assert_eq!(plan(&m, 4, 0, 1), (9, 3), "keep the newest one");
        assert_eq!(plan(&m, 4, 250, 1), (9, 3), "age and count together");
        assert_eq!(plan(&[], 4, 1000, 1), (4, 0));
    }
}
