//! The `poll-closer` thread: polls close at their `closed_at`, with their
//! close event. Polls that came due while the server was down are closed
//! before it serves (so their events come first); then the thread sleeps
//! until the next poll is due (at most a minute), woken early by a new poll
//! (`Waker`).

use crate::error::ApiResult;
use crate::render::emit_poll_end;
use crate::storage::channels::{due_polls, next_close, PollRow};
use crate::storage::{Cached, Db};
use crate::util::now;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

/// Wakes the poll closer (a new poll may come due before the one it waits
/// for). Cheap to clone; a no-op until the thread runs.
#[derive(Clone, Default)]
pub struct Waker(Arc<Mutex<Option<Thread>>>);

impl Waker {
    pub fn wake(&self) {
        if let Some(t) = self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            t.unpark();
        }
    }
}

/// Closes the polls already due, then starts the thread; `waker` wakes it.
pub fn start(
    db: Arc<Db>,
    api_url: String,
    waker: Waker,
    stopping: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    close_due(&db, &api_url).map_err(|e| format!("closing due polls: {}", e.message))?;
    crate::thread::spawn("poll-closer".into(), None, move || {
        // Registered before the first look at the next due time, so a poll
        // created from here on always wakes a thread that will re-read it.
        *waker.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::thread::current());
        while !stopping.load(Ordering::Relaxed) {
            let next = db.read(|c| Ok(next_close(c)?)).ok().flatten();
            let wait = match next {
                Some(t) => (t - now()).clamp(0, 60),
                None => 60,
            };
            if wait > 0 {
                std::thread::park_timeout(Duration::from_secs(wait as u64));
            }
            if stopping.load(Ordering::Relaxed) {
                break;
            }
            if let Err(e) = close_due(&db, &api_url) {
                log::error!("poll closer: {}", e.message);
                std::thread::park_timeout(Duration::from_secs(1));
            }
        }
    })
    .map_err(|e| e.to_string())
}

/// Closes every due poll: marks it closed and writes its close event in the
/// same transaction, so each poll's close event exists exactly once.
fn close_due(db: &Db, api_url: &str) -> ApiResult<usize> {
    db.write(|tx| {
        let due = due_polls(tx, now())?;
        for p in &due {
            tx.qexec("UPDATE polls SET is_closed = 1 WHERE id = ?1", [p.id])?;
            let closed = PollRow { is_closed: true, ..p.clone() };
            emit_poll_end(tx, api_url, &closed, p.user_id, "is_closed")?;
        }
        Ok(due.len())
    })
}
