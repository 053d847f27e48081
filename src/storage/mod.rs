//! The only place with SQL: the `Db` handle, its reader connections and the
//! token cache here; the writer thread and group commit in `writer`; WAL
//! upkeep in `wal`; one file per table group; migrations; the event log as
//! outbox, handed to the hub after commit and in commit order.

pub mod apps;
pub mod channels;
mod event_log;
pub mod events;
pub mod files;
pub mod filters;
pub mod interactions;
pub mod lists;
pub mod messages;
pub mod migrations;
pub mod oauth;
mod page;
pub mod polls;
pub mod posts;
pub mod reports;
pub mod search;
pub mod stats;
pub mod streams;
pub mod users;
mod wal;
mod writer;

pub use apps::{App, AuthRow, Principal};
pub use event_log::EventLog;
pub(crate) use page::trim_page;
pub use page::Page;
/// The connection type handlers read through (`Db::read`): only storage
/// depends on rusqlite itself.
pub use rusqlite::Connection;
pub use streams::StreamRow;
pub use users::UserRow;
pub use wal::WAL_RESTART_BYTES;
use wal::{WAL_FRAME_HEADER, WAL_KEEP_BYTES};
use writer::{Job, Writer};

use crate::error::{ApiError, ApiResult};
use crate::event::{Event, NewEvent, Outbox, Signal};
use crossbeam_channel::{unbounded, Sender};
use rusqlite::OpenFlags;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where committed outbox items go (the hub). Called on the writer thread
/// right after each commit, so items arrive in commit order; it must not
/// block for long.
pub type Sink = Box<dyn Fn(Vec<Outbox>) + Send + Sync>;

/// The page size of a new database (SQLite's default is 4 KiB; a database
/// keeps the size it was created with). A commit writes every page it
/// touched in full to the WAL, and a post touches about five, most of them
/// the partly filled last page of a table or index. Measured with
/// `perf trace -s -e pwrite64` on the writer under 100 x 2,000 posts/s: 16.5
/// KiB of WAL per post with 4 KiB pages, 9.6 with 2 KiB, 5.6 with 1 KiB, so
/// the checkpoints have a third of the bytes to sync and copy.
const NEW_PAGE_SIZE: i64 = 1024;

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

    /// A hub signal: written to the log in this transaction (so other
    /// processes' servers see it too) and published after commit, in order
    /// with the events.
    pub fn signal(&mut self, s: Signal) -> ApiResult<()> {
        let seq = events::insert_signal(self.conn, &s)?;
        self.out.push(Outbox::Signal(seq, s));
        Ok(())
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
        crate::thread::spawn("db-writer".into(), None, move || writer.run(rx))
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

    /// Runs `f` on a reader connection.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> ApiResult<T>) -> ApiResult<T> {
        let conn = self.readers.lock().ok().and_then(|mut r| r.pop());
        let conn = match conn {
            Some(c) => c,
            // Out of descriptors or memory: a busy server, not a broken one.
            None => open_conn(&self.path, self.sync_full).map_err(|e| {
                log::error!("cannot open a database reader: {e}");
                ApiError::new(503, "The server is out of resources for a moment; try again").retry_after(1)
            })?,
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
        writer::plain(&self.jobs, f)
    }

    fn write_job<T: Send>(
        &self,
        touches_auth: bool,
        f: impl FnOnce(&mut Tx) -> ApiResult<T> + Send,
    ) -> ApiResult<T> {
        writer::submit(&self.jobs, touches_auth, f)
    }

    /// The schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> ApiResult<i64> {
        self.read(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
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
                Outbox::Signal(..) => None,
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
                let (app, _) = apps::create_app(tx, "A", false)?;
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
