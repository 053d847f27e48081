//! The only place with SQL. One writer thread owning the writer connection
//! (group commit: the writes queued at a moment share one IMMEDIATE
//! transaction, each under its own savepoint) and a small pool of readers; migrations; the event log as outbox, handed
//! to the hub after commit and in commit order.

pub mod apps;
pub mod channels;
pub mod events;
pub mod filters;
pub mod migrations;
pub mod posts;
pub mod streams;
pub mod users;

pub use apps::{App, AuthRow, Principal};
pub use streams::StreamRow;
pub use users::UserRow;

use crate::error::{ApiError, ApiResult};
use crate::event::{Event, NewEvent, Outbox, Signal};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where committed outbox items go (the hub). Called on the writer thread
/// right after each commit, so items arrive in commit order; it must not
/// block for long.
pub type Sink = Box<dyn Fn(Vec<Outbox>) + Send + Sync>;

/// When the WAL holds more than this many bytes, the server has it start
/// over (`Db::checkpoint_restart`). Each restart pauses writes for 5-10 ms
/// here (its last pages and syncs), so it is rare: at 2,000 posts/s (5.6
/// KiB of WAL per post with 1 KiB pages) about every 23 s.
pub const WAL_RESTART_BYTES: i64 = 256 << 20;

/// The WAL file is truncated to this size when it starts over, so it is
/// reused rather than grown (growing it had ext4 zero every new block).
/// It must exceed what the WAL holds when it restarts, as writes go on
/// while the restart is prepared. When it was less (64 Ki x 4 KiB, while a
/// frame is a page plus a 24-byte header), every restart truncated the
/// WAL: a 7.6 ms `ftruncate` on the writer thread while writes waited
/// (perf trace, 100 x 2,000 posts/s), and the WAL then grew again.
const WAL_KEEP_BYTES: i64 = WAL_RESTART_BYTES / 4 * 5;

/// Each WAL frame is a page after a header of this size.
const WAL_FRAME_HEADER: i64 = 24;

/// The page size of a new database (SQLite's default is 4 KiB; a database
/// keeps the size it was created with). A commit writes every page it
/// touched in full to the WAL, and a post touches about five, most of them
/// the partly filled last page of a table or index. Measured with
/// `perf trace -s -e pwrite64` on the writer under 100 x 2,000 posts/s: 16.5
/// KiB of WAL per post with 4 KiB pages, 9.6 with 2 KiB, 5.6 with 1 KiB, so
/// the checkpoints have a third of the bytes to sync and copy.
const NEW_PAGE_SIZE: i64 = 1024;

/// A page read with one row more than `count` asks for (`count` < 0: the
/// oldest first, read ascending): drops the extra row, puts the page in the
/// order asked for, and says whether there was more.
pub(crate) fn trim_page<T>(mut rows: Vec<T>, count: i64) -> (Vec<T>, bool) {
    let n = count.unsigned_abs() as usize;
    let more = rows.len() > n;
    rows.truncate(n);
    if count < 0 {
        rows.reverse();
    }
    (rows, more)
}

/// Most writes one transaction (group commit) takes.
const MAX_BATCH: usize = 64;

/// The writer connection; owned by the writer thread.
struct Writer {
    conn: Connection,
    /// Highest event seq handed to the sink.
    published: i64,
    sink: Arc<OnceLock<Sink>>,
    /// Bumped after each commit that may have changed a token, an
    /// authorization, an app or a user (`Db::principal`).
    auth_gen: Arc<AtomicU64>,
}

/// The body of a `Db::write`: runs in the batch's transaction under its own
/// savepoint and says whether to keep what it did.
type WriteFn = Box<dyn FnOnce(&mut Tx) -> bool + Send + 'static>;

/// Work for the writer thread.
enum Job {
    Write(WriteJob),
    /// Runs between transactions (catch-up, checkpoint).
    Plain(Box<dyn FnOnce(&mut Writer) + Send + 'static>),
}

struct WriteJob {
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

/// A handle on the database; cheap to share behind an `Arc`.
pub struct Db {
    path: PathBuf,
    sync_full: bool,
    jobs: Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    sink: Arc<OnceLock<Sink>>,
    /// The database file for `sync_file`, opened once and never closed:
    /// closing any descriptor of a file drops every POSIX lock the process
    /// holds on it, SQLite's included.
    file: Mutex<Option<&'static std::fs::File>>,
    /// `WAL_RESTART_BYTES` in frames of this database's page size.
    restart_frames: i64,
    /// See `Writer::auth_gen`.
    auth_gen: Arc<AtomicU64>,
    /// Token hash → the principal read at `auth_gen`'s value and when.
    principals: Mutex<HashMap<Vec<u8>, CachedPrincipal>>,
}

/// A token lookup, kept while no write could have changed its answer.
struct CachedPrincipal {
    /// `auth_gen` as it was before the lookup's read began.
    auth_gen: u64,
    at: Instant,
    principal: Principal,
}

/// How long a cached token lookup is used at most: writes by another
/// process (`spout admin`) do not bump `auth_gen`.
const PRINCIPAL_TTL: Duration = Duration::from_secs(1);

/// Most token lookups kept; the cache starts over when full.
const PRINCIPAL_CACHE: usize = 4096;

/// A write's view of the transaction, plus the outbox items it produces.
pub struct Tx<'a> {
    conn: &'a Connection,
    out: Vec<Outbox>,
}

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Tx<'_> {
    /// Writes the event row in this transaction; it is published after commit.
    pub fn emit(&mut self, e: NewEvent) -> ApiResult<()> {
        self.emit_shared(e).map(|_| ())
    }

    /// `emit`, returning the event as the hub will get it (the caller can
    /// take its answer from it after the transaction, off the writer thread).
    pub fn emit_shared(&mut self, e: NewEvent) -> ApiResult<Arc<Event>> {
        let ev = Arc::new(events::insert(self.conn, e)?);
        self.out.push(Outbox::Event(ev.clone()));
        Ok(ev)
    }

    /// A hub signal published after commit, ordered with the events.
    pub fn signal(&mut self, s: Signal) {
        self.out.push(Outbox::Signal(s));
    }
}

fn open_conn(path: &Path, sync_full: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Takes effect only while the file is still empty (before WAL mode).
    conn.pragma_update(None, "page_size", NEW_PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if sync_full { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// The longest bearer token looked up at all.
const MAX_TOKEN_LEN: usize = 256;

impl Db {
    /// Opens (creating and migrating if needed) the database at `path` and
    /// starts its writer thread.
    pub fn open(path: &Path, sync_full: bool) -> Result<Db, String> {
        let mut conn = open_conn(path, sync_full)
            .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
        migrations::migrate(&mut conn).map_err(|e| format!("migration failed: {e}"))?;
        // The writer never checkpoints inside a commit (that fsyncs the
        // database file while every other writer waits); `checkpoint_passive`
        // does it from another connection, off the write path.
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(|e| e.to_string())?;
        // A WAL that once grew is cut back to this size when it restarts.
        conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES).map_err(|e| e.to_string())?;
        let published = events::max_seq(&conn).map_err(|e| e.to_string())?;
        let page_size: i64 =
            conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        let restart_frames = WAL_RESTART_BYTES / (page_size + WAL_FRAME_HEADER);
        let sink = Arc::new(OnceLock::new());
        let auth_gen = Arc::new(AtomicU64::new(0));
        let writer = Writer { conn, published, sink: sink.clone(), auth_gen: auth_gen.clone() };
        // Unbounded: every sender waits for its own job, so at most one job
        // per thread is queued.
        let (jobs, rx) = unbounded();
        crate::server::spawn("db-writer".into(), None, move || writer.run(rx))
            .map_err(|e| format!("cannot start the database writer: {e}"))?;
        Ok(Db {
            path: path.to_path_buf(),
            sync_full,
            jobs,
            readers: Mutex::new(Vec::new()),
            sink,
            file: Mutex::new(None),
            restart_frames,
            auth_gen,
            principals: Mutex::new(HashMap::new()),
        })
    }

    /// How many WAL frames make `WAL_RESTART_BYTES` (the log-tail thread
    /// restarts the WAL past it).
    pub fn wal_restart_frames(&self) -> i64 {
        self.restart_frames
    }

    /// Installs where committed events go. Only the first call counts.
    pub fn set_sink(&self, sink: Sink) {
        let _ = self.sink.set(sink);
    }

    /// Runs `f` on a reader connection.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> ApiResult<T>) -> ApiResult<T> {
        let conn = self.readers.lock().ok().and_then(|mut r| r.pop());
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.path, self.sync_full)?,
        };
        let out = f(&conn);
        if let Ok(mut r) = self.readers.lock() {
            if r.len() < 16 {
                r.push(conn);
            }
        }
        out
    }

    /// Runs `f` on the writer thread in an IMMEDIATE transaction and returns
    /// once that transaction has committed and its outbox was published
    /// (events first written by other processes, such as `spout admin`, go
    /// before ours). On `Err` nothing `f` did is written.
    ///
    /// Group commit: the writer runs every write queued at that moment (up
    /// to `MAX_BATCH`) in one transaction, each under its own savepoint
    /// (unless it is alone), so one failing write rolls back alone and the
    /// commit's cost is shared.
    pub fn write<T: Send>(&self, f: impl FnOnce(&mut Tx) -> ApiResult<T> + Send) -> ApiResult<T> {
        self.write_job(true, f)
    }

    /// `write`, for a write that changes no token, authorization, app or
    /// user row (a post, a message): cached token lookups stay valid.
    pub fn write_content<T: Send>(&self, f: impl FnOnce(&mut Tx) -> ApiResult<T> + Send) -> ApiResult<T> {
        self.write_job(false, f)
    }

    fn write_job<T: Send>(
        &self,
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
            if let Err(e) = self.jobs.send(Job::Write(job)) {
                drop(e);
                return Err(ApiError::internal());
            }
        }
        match done.wait() {
            None => slot.unwrap_or_else(|| Err(ApiError::internal())),
            Some(e) => Err(e),
        }
    }

    /// Who a bearer token is, if anyone. Looked up in the database, or
    /// taken from a lookup made since the last commit that could have
    /// changed the answer (and within `PRINCIPAL_TTL`): such a commit bumps
    /// `auth_gen` before its caller is answered, so a revoked token fails
    /// from the moment its revocation is answered.
    pub fn principal(&self, token: &str) -> ApiResult<Option<Principal>> {
        // Ours are 43 characters; a longer one is not worth hashing.
        if token.len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
        let hash = crate::util::sha256(token);
        let generation = self.auth_gen.load(Ordering::SeqCst);
        if let Ok(cache) = self.principals.lock() {
            if let Some(c) = cache.get(&hash) {
                if c.auth_gen == generation && c.at.elapsed() < PRINCIPAL_TTL {
                    return Ok(Some(c.principal.clone()));
                }
            }
        }
        let found = self.read(|c| Ok(apps::principal_by_hash(c, &hash)?))?;
        if let (Some(p), Ok(mut cache)) = (&found, self.principals.lock()) {
            if cache.len() >= PRINCIPAL_CACHE {
                cache.clear();
            }
            let at = Instant::now();
            cache.insert(hash, CachedPrincipal { auth_gen: generation, at, principal: p.clone() });
        }
        Ok(found)
    }

    /// Runs `f` on the writer thread between transactions and waits for it.
    fn plain<T: Send + 'static>(&self, f: impl FnOnce(&mut Writer) -> T + Send + 'static) -> ApiResult<T> {
        let (tx, rx) = bounded(1);
        let job = Job::Plain(Box::new(move |w: &mut Writer| {
            let _ = tx.send(f(w));
        }));
        self.jobs.send(job).map_err(|_| ApiError::internal())?;
        rx.recv().map_err(|_| ApiError::internal())
    }

    /// Publishes events committed by other processes that the hub has not
    /// seen yet. The server calls this every few seconds.
    pub fn catch_up(&self) {
        let _ = self.plain(|w| w.publish(Vec::new()));
    }

    /// Copies what the WAL holds into the database file without blocking
    /// writers (run every few seconds by the server).
    /// Returns how many frames the WAL holds.
    pub fn checkpoint_passive(&self) -> ApiResult<i64> {
        self.read(|c| Ok(c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))?))
    }

    /// Keeps disk blocks reserved past the WAL's end for the next two
    /// intervals' growth (the growth since the last call, `grown_to`),
    /// without changing its size or contents, so it is safe beside any
    /// writer. Until the WAL first starts over every commit grows the file,
    /// and ext4 allocated blocks on the write path. Alternating runs of the
    /// bench (whose runs fall mostly in that first cycle): 100 x 2,000/s p99
    /// 27, 15, 16 ms without, 17.5, 14, 12 ms with a reserve; ingest 3,663
    /// to 3,689 posts/s without, 3,720 to 3,779 with. A quiet WAL reserves
    /// nothing. Where the filesystem cannot, nothing changes.
    pub fn reserve_wal(&self, grown_to: &mut u64) {
        let wal = format!("{}-wal", self.path.display());
        // SQLite locks the database and -shm files, never the WAL, so this
        // descriptor may be closed.
        let Ok(f) = std::fs::OpenOptions::new().write(true).open(&wal) else { return };
        let Ok(len) = f.metadata().map(|m| m.len()) else { return };
        let growth = len.saturating_sub(*grown_to);
        *grown_to = len;
        if growth > 0 && len < WAL_KEEP_BYTES as u64 {
            let flags = rustix::fs::FallocateFlags::KEEP_SIZE;
            if let Err(e) = rustix::fs::fallocate(&f, flags, len, 2 * growth) {
                log::debug!("cannot reserve blocks for {wal}: {e}");
            }
        }
    }

    /// Writes to disk what checkpoints copied into the database file.
    /// SQLite syncs that file only when a checkpoint copied the whole WAL,
    /// which under steady writes is only `checkpoint_restart`'s: that one
    /// then had seconds of copied pages to write while writes waited (76 ms
    /// here at 2,000 posts/s). Synced here first, beside the writer, it has
    /// only its own last pages to write.
    pub fn sync_file(&self) -> ApiResult<()> {
        let mut slot = self.file.lock().map_err(|_| ApiError::internal())?;
        let io = |e: std::io::Error| {
            log::error!("cannot sync {}: {e}", self.path.display());
            ApiError::internal()
        };
        let file = match *slot {
            Some(f) => f,
            None => *slot.insert(Box::leak(Box::new(std::fs::File::open(&self.path).map_err(io)?))),
        };
        file.sync_data().map_err(io)
    }

    /// Lets the WAL start over from its beginning. The passive checkpoints
    /// run beside the writer and never catch up with it while writes keep
    /// coming (even at 200 posts/s), so the WAL only grew: 93 MB after 12 s
    /// at 200 posts/s, 760 MB after 10 s of bench ingest, and readers search
    /// an ever longer WAL index. A passive checkpoint on the writer thread,
    /// between transactions, copies the last frames, and the next commit
    /// restarts the WAL. It pauses writes while it copies and syncs (5-10 ms
    /// here after `sync_file`, 70-100 ms without), hence only past
    /// `WAL_RESTART_BYTES`.
    pub fn checkpoint_restart(&self) -> ApiResult<()> {
        self.writer_checkpoint("PRAGMA wal_checkpoint(PASSIVE)")
    }

    /// Copies the WAL into the database file and truncates it (shutdown).
    pub fn checkpoint(&self) -> ApiResult<()> {
        self.writer_checkpoint("PRAGMA wal_checkpoint(TRUNCATE)")
    }

    /// Runs a checkpoint `pragma` on the writer thread, between transactions.
    fn writer_checkpoint(&self, pragma: &'static str) -> ApiResult<()> {
        self.plain(move |w| w.conn.query_row(pragma, [], |_| Ok(())))??;
        Ok(())
    }

    /// Committed events with `after < seq <= upto`, oldest first (replay).
    pub fn events_between(&self, after: i64, upto: i64) -> ApiResult<Vec<Event>> {
        self.read(|c| Ok(events::range(c, after, upto + 1)?))
    }

    /// The newest event seq.
    pub fn last_seq(&self) -> ApiResult<i64> {
        self.read(|c| Ok(events::max_seq(c)?))
    }

    /// The schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> ApiResult<i64> {
        self.read(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
    }
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
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

    fn publish(&mut self, out: Vec<Outbox>) {
        let first_ours = out.iter().find_map(|o| match o {
            Outbox::Event(e) => Some(e.seq),
            _ => None,
        });
        let mut items = Vec::new();
        let gap_end = first_ours.unwrap_or(i64::MAX);
        if gap_end > self.published + 1 {
            match events::range(&self.conn, self.published, gap_end) {
                Ok(evs) => items.extend(evs.into_iter().map(|e| Outbox::Event(Arc::new(e)))),
                Err(e) => log::error!("reading events written elsewhere: {e}"),
            }
        }
        items.extend(out);
        for it in &items {
            if let Outbox::Event(e) = it {
                self.published = self.published.max(e.seq);
            }
        }
        if items.is_empty() {
            return;
        }
        if let Some(sink) = self.sink.get() {
            sink(items);
        }
    }
}

/// A stored JSON column (`raw`, content); one that does not parse reads as
/// `{}`.
pub(crate) fn json_col(r: &rusqlite::Row, i: usize) -> rusqlite::Result<serde_json::Value> {
    let s: String = r.get(i)?;
    Ok(serde_json::from_str(&s).unwrap_or_else(|_| serde_json::Value::Object(Default::default())))
}

/// `query_row` and `execute` through the connection's statement cache: the
/// same SQL is parsed once per connection, not once per request (parsing was
/// a quarter of the server's CPU under write load).
pub trait Cached {
    fn qrow<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>;
    fn qexec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl Cached for Connection {
    fn qrow<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
    fn qexec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

/// Maps a UNIQUE violation to `None` so callers can answer it clearly.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp_db(tag: &str) -> (Db, PathBuf) {
        let dir = std::env::temp_dir().join(format!("spout-db-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (Db::open(&dir.join("t.db"), false).unwrap(), dir)
    }

    fn names(db: &Db) -> Vec<String> {
        db.read(|c| {
            let mut st = c.prepare("SELECT username FROM users ORDER BY username")?;
            let v = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(v)
        })
        .unwrap()
    }

    /// The seqs of the events the writer publishes, in order.
    fn published(db: &Db) -> Arc<Mutex<Vec<i64>>> {
        let published = Arc::new(Mutex::new(Vec::<i64>::new()));
        let p = published.clone();
        db.set_sink(Box::new(move |items| {
            p.lock().unwrap().extend(items.iter().filter_map(|it| match it {
                Outbox::Event(e) => Some(e.seq),
                Outbox::Signal(_) => None,
            }))
        }));
        published
    }

    /// A write's body: a user and its event.
    fn user_with_event(tx: &mut Tx, name: &str) -> ApiResult<()> {
        users::create(tx, name, "x")?;
        tx.emit(NewEvent {
            kind: crate::event::ObjType::User,
            audience: crate::event::Audience::Public,
            auth: None,
            envelope: serde_json::json!({"name": name}),
        })
    }

    /// A new database gets small pages; one created with SQLite's default
    /// keeps its own. The WAL restart point is the same byte budget in
    /// either's frames.
    #[test]
    fn new_databases_get_small_pages_and_old_ones_keep_theirs() {
        let (db, dir) = temp_db("pages");
        let size =
            |d: &Db| d.read(|c| Ok(c.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))?)).unwrap();
        assert_eq!(size(&db), 1024);
        assert_eq!(db.wal_restart_frames(), (256 << 20) / (1024 + 24));
        drop(db);
        let old = dir.join("old.db");
        rusqlite::Connection::open(&old).unwrap().execute_batch("CREATE TABLE x (y)").unwrap();
        let db = Db::open(&old, false).unwrap();
        assert_eq!(size(&db), 4096);
        assert_eq!(db.wal_restart_frames(), (256 << 20) / (4096 + 24));
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// After the WAL grew, blocks for twice that growth are reserved past
    /// its end, and its size and bytes stay as they were.
    #[test]
    fn reserve_wal_reserves_past_the_end_without_changing_the_file() {
        use std::os::unix::fs::MetadataExt;
        let (db, dir) = temp_db("reserve");
        let wal = dir.join("t.db-wal");
        let mut grown_to = std::fs::metadata(&wal).unwrap().len();
        for i in 0..200 {
            db.write(|tx| Ok(users::create(tx, &format!("user{i:03}"), "x")?)).unwrap();
        }
        let (before, bytes) = (std::fs::metadata(&wal).unwrap(), std::fs::read(&wal).unwrap());
        let growth = before.len() - grown_to;
        assert!(growth > 100 * 1024, "the WAL grew by only {growth} bytes");
        db.reserve_wal(&mut grown_to);
        let after = std::fs::metadata(&wal).unwrap();
        assert_eq!(grown_to, before.len());
        assert_eq!(after.len(), before.len());
        assert_eq!(std::fs::read(&wal).unwrap(), bytes);
        assert!(
            after.blocks() * 512 >= before.len() + 2 * growth,
            "{} bytes allocated for a {}-byte WAL that grew by {growth}",
            after.blocks() * 512,
            after.len()
        );
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A token lookup is cached until a write that may change tokens
    /// commits: a content write leaves it (shown here by a content write
    /// that, against its promise, deletes the token: the cache still
    /// answers), and any other write ends it before its caller is answered.
    #[test]
    fn token_lookups_are_cached_until_a_write_that_may_change_them() {
        let (db, dir) = temp_db("principal");
        let (app, token) = db
            .write(|tx| {
                let (app, _) = apps::create_app(tx, "A")?;
                Ok((app.id, apps::create_app_token(tx, app.id)?.1))
            })
            .unwrap();
        let p = db.principal(&token).unwrap().expect("a valid token");
        assert_eq!((p.app.id, p.user_id), (app, None));
        assert!(db.principal("not a token").unwrap().is_none());
        db.write_content(|tx| Ok(tx.execute("DELETE FROM tokens", [])?)).unwrap();
        assert_eq!(db.principal(&token).unwrap().map(|p| p.token_id), Some(p.token_id));
        db.write(|tx| Ok(users::create(tx, "someone", "x")?)).unwrap();
        assert!(db.principal(&token).unwrap().is_none(), "deleted tokens fail after a write");
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A write alone in its transaction (no savepoint) that fails or
    /// panics after writing leaves nothing behind and publishes nothing,
    /// and the next write still works.
    #[test]
    fn a_lone_write_that_fails_leaves_nothing() {
        let (db, dir) = temp_db("lone");
        let published = published(&db);
        let write = |name: &'static str, end: u8| {
            db.write(|tx| {
                user_with_event(tx, name)?;
                match end {
                    0 => Ok(()),
                    1 => Err(ApiError::bad_request("refused after writing")),
                    _ => panic!("a write that panics"),
                }
            })
        };
        assert_eq!(write("refused", 1).unwrap_err().status, 400);
        assert_eq!(write("panicked", 2).unwrap_err().status, 500);
        assert!(names(&db).is_empty());
        assert!(published.lock().unwrap().is_empty());
        write("kept", 0).unwrap();
        assert_eq!(names(&db), vec!["kept".to_string()]);
        assert_eq!(published.lock().unwrap().len(), 1);
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Many threads write at once, so the writer batches them into shared
    /// transactions: every write that succeeded is there, every write that
    /// failed (after writing) or panicked left nothing, and the outbox holds
    /// exactly the kept writes' events, in commit order.
    #[test]
    fn group_commit_keeps_each_writes_own_outcome() {
        let (db, dir) = temp_db("group");
        let db = Arc::new(db);
        let published = published(&db);
        let oks = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (db, oks) = (db.clone(), oks.clone());
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let name = format!("u{t}x{i:02}");
                        let r = db.write(|tx| {
                            user_with_event(tx, &name)?;
                            match i % 5 {
                                3 => Err(ApiError::bad_request("refused after writing")),
                                4 if t % 2 == 0 => panic!("a write that panics"),
                                _ => Ok(name.clone()),
                            }
                        });
                        match (i % 5, r) {
                            (3, Err(e)) => assert_eq!(e.status, 400),
                            (4, Err(e)) if t % 2 == 0 => assert_eq!(e.status, 500),
                            (_, Ok(n)) => {
                                assert_eq!(n, name);
                                oks.fetch_add(1, Ordering::SeqCst);
                            }
                            (k, r) => panic!("write {name} (kind {k}) got {:?}", r.map_err(|e| e.message)),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut want: Vec<String> = (0..8)
            .flat_map(|t| {
                (0..50)
                    .filter(move |i| i % 5 != 3 && !(i % 5 == 4 && t % 2 == 0))
                    .map(move |i| format!("u{t}x{i:02}"))
            })
            .collect();
        want.sort();
        assert_eq!(names(&db), want);
        assert_eq!(oks.load(Ordering::SeqCst), want.len());
        let seqs = published.lock().unwrap().clone();
        assert_eq!(seqs.len(), want.len(), "one event per kept write");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "published in commit order: {seqs:?}");
        let logged: i64 =
            db.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?)).unwrap();
        assert_eq!(logged as usize, want.len());
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
