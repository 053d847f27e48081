//! The event log as the rest of the server sees it: one interface for
//! what reads it (replay, retention) and for what it feeds (the hub, through
//! the sink, with the events and signals of every commit in commit order,
//! this process's and other processes' alike). Another backend (a networked
//! log, another database) implements this trait, and the hub and the
//! transports do not change.

use super::{events, Db, Sink};
use crate::error::ApiResult;
use crate::event::Event;

pub trait EventLog: Send + Sync {
    /// Committed events with `after < seq <= upto`, oldest first (replay).
    fn events_between(&self, after: i64, upto: i64) -> ApiResult<Vec<Event>>;
    /// The oldest seq still in the log (retention removes from the front).
    fn first_seq(&self) -> ApiResult<Option<i64>>;
    /// The newest seq written.
    fn last_seq(&self) -> ApiResult<i64>;
    /// The newest seq written before `time` (unix seconds; 0 if none).
    fn last_seq_before(&self, time: i64) -> ApiResult<i64>;
    /// Removes up to `limit` of the oldest rows with seq <= `upto`; returns
    /// how many it removed.
    fn delete_upto(&self, upto: i64, limit: i64) -> ApiResult<usize>;
    /// Where committed events and signals go, in commit order (the hub).
    /// Only the first call counts.
    fn set_sink(&self, sink: Sink);
    /// Hands the sink what other writers committed since it last looked.
    fn catch_up(&self);
}

impl EventLog for Db {
    fn events_between(&self, after: i64, upto: i64) -> ApiResult<Vec<Event>> {
        self.read(|c| Ok(events::range(c, after, upto + 1)?))
    }

    fn first_seq(&self) -> ApiResult<Option<i64>> {
        self.read(|c| Ok(events::first_seq(c)?))
    }

    fn last_seq(&self) -> ApiResult<i64> {
        self.read(|c| Ok(events::max_seq(c)?))
    }

    fn last_seq_before(&self, time: i64) -> ApiResult<i64> {
        self.read(|c| Ok(events::last_seq_before(c, time)?))
    }

    fn delete_upto(&self, upto: i64, limit: i64) -> ApiResult<usize> {
        self.write(|tx| Ok(events::delete_upto(tx, upto, limit)?))
    }

    fn set_sink(&self, sink: Sink) {
        let _ = self.sink.set(sink);
    }

    fn catch_up(&self) {
        let _ = self.plain(|w| w.publish(Vec::new()));
    }
}
