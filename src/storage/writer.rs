//! The writer thread: it owns the writer connection and runs every write
//! (`Db::write`) with group commit, the writes queued at a moment sharing
//! one IMMEDIATE transaction, each under its own savepoint, then publishes
//! the transaction's outbox to the sink in commit order.

use super::{events, Cached, Outbox, Sink, Tx};
use crate::error::{ApiError, ApiResult};
use crossbeam_channel::{bounded, Receiver, Sender};
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Most writes one transaction (group commit) takes.
const MAX_BATCH: usize = 64;

/// The writer connection; owned by the writer thread.
pub(super) struct Writer {
    pub(super) conn: Connection,
    /// Highest event seq handed to the sink.
    pub(super) published: i64,
    pub(super) sink: Arc<OnceLock<Sink>>,
    /// Bumped after each commit that may have changed a token, an
    /// authorization, an app or a user (`Db::principal`).
    pub(super) auth_gen: Arc<AtomicU64>,
}

/// The body of a `Db::write`: runs in the batch's transaction under its own
/// savepoint and says whether to keep what it did.
type WriteFn = Box<dyn FnOnce(&mut Tx) -> bool + Send + 'static>;

/// Work for the writer thread.
pub(super) enum Job {
    Write(WriteJob),
    /// Runs between transactions (catch-up, checkpoint).
    Plain(Box<dyn FnOnce(&mut Writer) + Send + 'static>),
}

pub(super) struct WriteJob {
    run: Option<WriteFn>,
    done: Arc<Done>,
    /// The write may change who a token is (`Db::write` against
    /// `Db::write_content`).
    touches_auth: bool,
}

impl WriteJob {
    /// Tells the caller how its write ended: `None`, the body's own result
    /// stands; `Some`, the write was not committed after all.
    fn finish(mut self, outcome: Option<ApiError>) {
        drop(self.run.take());
        self.done.set(outcome);
    }
}

impl Drop for WriteJob {
    /// A job dropped unfinished (the writer is going away) still releases
    /// its caller, and only after its body is gone (`Db::write` relies on
    /// that).
    fn drop(&mut self) {
        drop(self.run.take());
        self.done.set(Some(ApiError::internal()));
    }
}

/// A write's outcome, handed from the writer thread to the caller, who
/// sleeps on the condvar (a channel's receive spins and yields first, which
/// cost the API threads CPU the writer needed).
#[derive(Default)]
struct Done {
    outcome: Mutex<Option<Option<ApiError>>>,
    cv: Condvar,
}

impl Done {
    /// The first outcome counts.
    fn set(&self, o: Option<ApiError>) {
        let mut g = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(o);
            self.cv.notify_one();
        }
    }

    fn wait(&self) -> Option<ApiError> {
        let mut g = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(o) = g.take() {
                return o;
            }
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Runs `f` on the writer thread (see `Db::write`) and waits for its outcome.
///
/// The one `unsafe` block of the crate: the body borrows from the caller's
/// stack, and the writer thread is long-lived, so the body's lifetime is
/// erased to send it there. Sound because this function does not return
/// before the body is gone (the SAFETY comment says why). Making bodies
/// `'static` instead would mean cloning what every one of the hundred-odd
/// writes borrows.
#[allow(unsafe_code)]
pub(super) fn submit<T: Send>(
    jobs: &Sender<Job>,
    touches_auth: bool,
    f: impl FnOnce(&mut Tx) -> ApiResult<T> + Send,
) -> ApiResult<T> {
    let mut slot: Option<ApiResult<T>> = None;
    let done = Arc::new(Done::default());
    {
        let out = &mut slot;
        let run: Box<dyn FnOnce(&mut Tx) -> bool + Send + '_> = Box::new(move |tx: &mut Tx| {
            let r = f(tx);
            let ok = r.is_ok();
            *out = Some(r);
            ok
        });
        // SAFETY: only the lifetime is erased (same fat-pointer layout).
        // `run` borrows `slot` and whatever `f` borrows, all of which
        // outlive this call, and this call does not return before `run`
        // is gone: `done.wait()` below returns only once the job set an
        // outcome, which `WriteJob::finish` and `WriteJob::drop` both do
        // after dropping the body if the job still holds it; the writer
        // takes the body out of the job only to call it, which consumes
        // it (also when it panics) before the job is finished. The
        // writer runs each body inside `catch_unwind`, and nothing here
        // can unwind between the send and the wait. If the
        // send fails, the job comes back in the error and is dropped
        // here, before we return.
        let run: WriteFn =
            unsafe { std::mem::transmute::<Box<dyn FnOnce(&mut Tx) -> bool + Send + '_>, WriteFn>(run) };
        let job = WriteJob { run: Some(run), done: done.clone(), touches_auth };
        if let Err(e) = jobs.send(Job::Write(job)) {
            drop(e);
            return Err(ApiError::internal());
        }
    }
    match done.wait() {
        None => slot.unwrap_or_else(|| Err(ApiError::internal())),
        Some(e) => Err(e),
    }
}

/// Runs `f` on the writer thread between transactions and waits for it.
pub(super) fn plain<T: Send + 'static>(
    jobs: &Sender<Job>,
    f: impl FnOnce(&mut Writer) -> T + Send + 'static,
) -> ApiResult<T> {
    let (tx, rx) = bounded(1);
    let job = Job::Plain(Box::new(move |w: &mut Writer| {
        let _ = tx.send(f(w));
    }));
    jobs.send(job).map_err(|_| ApiError::internal())?;
    rx.recv().map_err(|_| ApiError::internal())
}

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Job>) {
        let mut writes: Vec<WriteJob> = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(job) = next.take() {
                taken += 1;
                match job {
                    Job::Write(j) => writes.push(j),
                    Job::Plain(f) => {
                        self.commit_batch(std::mem::take(&mut writes));
                        // A panic drops its reply channel: the caller gets an
                        // error, and the writer goes on.
                        if catch_unwind(AssertUnwindSafe(|| f(&mut self))).is_err() {
                            log::error!("a database maintenance job panicked");
                        }
                    }
                }
                if taken < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.commit_batch(std::mem::take(&mut writes));
        }
    }

    fn exec(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.qexec(sql, []).map(|_| ())
    }

    /// Runs `jobs` in one transaction, each under a savepoint, commits,
    /// publishes, then tells each caller. A job alone needs no savepoint:
    /// if it fails, the whole transaction is rolled back. (A savepoint
    /// copies each page's first change to a statement journal, and opening
    /// and releasing it are two more statements.)
    fn commit_batch(&mut self, jobs: Vec<WriteJob>) {
        if jobs.is_empty() {
            return;
        }
        let alone = jobs.len() == 1;
        let touches_auth = jobs.iter().any(|j| j.touches_auth);
        if let Err(e) = self.exec("BEGIN IMMEDIATE") {
            let e = ApiError::from(e);
            for j in jobs {
                j.finish(Some(e.clone()));
            }
            return;
        }
        let mut out: Vec<Outbox> = Vec::new();
        let mut kept: Vec<WriteJob> = Vec::new();
        for mut job in jobs {
            if let Err(e) = if alone { Ok(()) } else { self.exec("SAVEPOINT job") } {
                // The body never runs; `finish` drops it before answering.
                log::error!("cannot open a savepoint: {e}");
                job.finish(Some(ApiError::internal()));
                continue;
            }
            let Some(run) = job.run.take() else {
                if !alone {
                    let _ = self.exec("RELEASE job");
                }
                continue;
            };
            let mut tx = Tx { conn: &self.conn, out: Vec::new() };
            // `run` moves into the closure: called, or dropped while a panic
            // unwinds, it is gone before `job` is finished below.
            let ok = catch_unwind(AssertUnwindSafe(|| run(&mut tx))).unwrap_or_else(|_| {
                log::error!("a database write panicked; it was rolled back");
                false
            });
            let produced = tx.out;
            if ok && (alone || self.exec("RELEASE job").is_ok()) {
                out.extend(produced);
                kept.push(job);
                continue;
            }
            // Undo this write alone. (The caller's result is already its
            // error, or, if only the release failed, is overridden here.)
            let undone = !alone && self.exec("ROLLBACK TO job").is_ok() && self.exec("RELEASE job").is_ok();
            job.finish(ok.then(ApiError::internal));
            if alone {
                let _ = self.exec("ROLLBACK");
                return;
            }
            if !undone || self.conn.is_autocommit() {
                // The error took the whole transaction with it: the writes
                // kept so far are gone too.
                log::error!("a failed write aborted its transaction; {} writes in it failed", kept.len());
                let _ = self.exec("ROLLBACK");
                for k in kept.drain(..) {
                    k.finish(Some(ApiError::internal()));
                }
                out.clear();
                if let Err(e) = self.exec("BEGIN IMMEDIATE") {
                    log::error!("cannot begin a write transaction: {e}");
                    return;
                }
            }
        }
        match self.exec("COMMIT") {
            Ok(()) => {
                // Before anyone is answered (`Db::principal`).
                if touches_auth {
                    self.auth_gen.fetch_add(1, Ordering::SeqCst);
                }
                // These writes are committed: a panic here must not answer
                // them with an error (a retry would write them twice) nor
                // leave the hub without their events. Stop at once; on the
                // next start, streams replay the log from their cursors.
                if catch_unwind(AssertUnwindSafe(|| self.publish(out))).is_err() {
                    log::error!("publishing committed events panicked; aborting so nothing is lost or answered wrongly");
                    std::process::abort();
                }
                for k in kept {
                    k.finish(None);
                }
            }
            Err(e) => {
                log::error!("commit failed: {e}");
                let _ = self.exec("ROLLBACK");
                let e = ApiError::from(e);
                for k in kept {
                    k.finish(Some(e.clone()));
                }
            }
        }
    }

    pub(super) fn publish(&mut self, out: Vec<Outbox>) {
        // Rows before ours that the hub has not had were written by other
        // processes (`spout admin`): events and signals, read from the log.
        let first_ours = out.iter().map(Outbox::seq).min();
        let mut items = Vec::new();
        let gap_end = first_ours.unwrap_or(i64::MAX);
        if gap_end > self.published + 1 {
            match events::range_outbox(&self.conn, self.published, gap_end) {
                Ok(rows) => {
                    // Another process changed tokens (`spout admin token
                    // revoke`, a grant): cached lookups end here, not only
                    // at their time limit.
                    let auth = rows.iter().any(|r| {
                        matches!(r, Outbox::Signal(_, crate::event::Signal::TokenRevoked { .. }))
                            || matches!(r, Outbox::Event(e) if e.auth.is_some())
                    });
                    if auth {
                        self.auth_gen.fetch_add(1, Ordering::SeqCst);
                    }
                    items.extend(rows)
                }
                Err(e) => log::error!("reading events written elsewhere: {e}"),
            }
        }
        items.extend(out);
        for it in &items {
            self.published = self.published.max(it.seq());
        }
        if items.is_empty() {
            return;
        }
        if let Some(sink) = self.sink.get() {
            sink(items);
        }
    }
}
