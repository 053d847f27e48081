//! The only place with SQL. One writer connection (IMMEDIATE transactions)
//! and a small pool of readers; migrations; the event log as outbox, handed
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
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Where committed outbox items go (the hub). Called with the writer lock
/// held, so items arrive in commit order; it must not block for long.
pub type Sink = Box<dyn Fn(Vec<Outbox>) + Send + Sync>;

struct Writer {
    conn: Connection,
    /// Highest event seq handed to the sink.
    published: i64,
}

/// A handle on the database; cheap to share behind an `Arc`.
pub struct Db {
    path: PathBuf,
    sync_full: bool,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    sink: OnceLock<Sink>,
}

/// A write transaction plus the outbox items it produces.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
    out: Vec<Outbox>,
}

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.tx
    }
}

impl Tx<'_> {
    /// Writes the event row in this transaction; it is published after commit.
    pub fn emit(&mut self, e: NewEvent) -> ApiResult<()> {
        let ev = events::insert(&self.tx, e)?;
        self.out.push(Outbox::Event(Arc::new(ev)));
        Ok(())
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
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if sync_full { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

impl Db {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path, sync_full: bool) -> Result<Db, String> {
        let mut conn = open_conn(path, sync_full)
            .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
        migrations::migrate(&mut conn).map_err(|e| format!("migration failed: {e}"))?;
        // The writer never checkpoints inside a commit (that fsyncs the
        // database file while every other writer waits); `checkpoint_passive`
        // does it from another connection, off the write path.
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(|e| e.to_string())?;
        let published = events::max_seq(&conn).map_err(|e| e.to_string())?;
        Ok(Db {
            path: path.to_path_buf(),
            sync_full,
            writer: Mutex::new(Writer { conn, published }),
            readers: Mutex::new(Vec::new()),
            sink: OnceLock::new(),
        })
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

    /// Runs `f` in one IMMEDIATE transaction. On `Ok` it commits and then
    /// publishes the outbox (events first written by other processes, such
    /// as `spout admin`, go before ours). On `Err` nothing is written.
    pub fn write<T>(&self, f: impl FnOnce(&mut Tx) -> ApiResult<T>) -> ApiResult<T> {
        let mut guard = self.writer.lock().map_err(|_| ApiError::internal())?;
        let w: &mut Writer = &mut guard;
        let (value, out) = {
            let tx = w.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut tx = Tx { tx, out: Vec::new() };
            let value = f(&mut tx)?;
            let Tx { tx, out } = tx;
            tx.commit()?;
            (value, out)
        };
        self.publish(w, out);
        Ok(value)
    }

    /// Publishes events committed by other processes that the hub has not
    /// seen yet. The server calls this every few seconds.
    pub fn catch_up(&self) {
        if let Ok(mut w) = self.writer.lock() {
            self.publish(&mut w, Vec::new());
        }
    }

    fn publish(&self, w: &mut Writer, out: Vec<Outbox>) {
        let first_ours = out.iter().find_map(|o| match o {
            Outbox::Event(e) => Some(e.seq),
            _ => None,
        });
        let mut items = Vec::new();
        let gap_end = first_ours.unwrap_or(i64::MAX);
        if gap_end > w.published + 1 {
            match events::range(&w.conn, w.published, gap_end) {
                Ok(evs) => items.extend(evs.into_iter().map(|e| Outbox::Event(Arc::new(e)))),
                Err(e) => log::error!("reading events written elsewhere: {e}"),
            }
        }
        items.extend(out);
        for it in &items {
            if let Outbox::Event(e) = it {
                w.published = w.published.max(e.seq);
            }
        }
        if items.is_empty() {
            return;
        }
        if let Some(sink) = self.sink.get() {
            sink(items);
        }
    }

    /// Copies what the WAL holds into the database file without blocking
    /// writers (run every few seconds by the server).
    pub fn checkpoint_passive(&self) -> ApiResult<()> {
        self.read(|c| {
            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            Ok(())
        })
    }

    /// Copies the WAL into the database file and truncates it (shutdown).
    pub fn checkpoint(&self) -> ApiResult<()> {
        let w = self.writer.lock().map_err(|_| ApiError::internal())?;
        w.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
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
