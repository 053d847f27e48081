//! The `log-tail` thread: ten times a second it hands the hub what other
//! processes (`spout admin`) wrote to the log, and keeps the WAL small:
//! a passive checkpoint off the write path, a restart when the checkpoints
//! fall behind (`Db::checkpoint_restart`), blocks reserved ahead of the
//! WAL's growth (`Db::reserve_wal`). How often, and why, is measured in the
//! README (Performance: "WAL upkeep").

use crate::storage::Db;
use crate::storage::EventLog;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the thread runs.
const EVERY: Duration = Duration::from_millis(100);

pub fn start(db: Arc<Db>, stopping: Arc<AtomicBool>) -> Result<JoinHandle<()>, String> {
    crate::thread::spawn("log-tail".into(), None, move || {
        let mut wal_len = 0;
        while !stopping.load(Ordering::Relaxed) {
            std::thread::park_timeout(EVERY);
            db.catch_up();
            db.reserve_wal(&mut wal_len);
            upkeep(&db);
        }
    })
    .map_err(|e| e.to_string())
}

/// One passive checkpoint, and a restart of the WAL when it holds more
/// than `WAL_RESTART_BYTES`.
fn upkeep(db: &Db) {
    match db.checkpoint_passive() {
        Ok(frames) if frames > db.wal_restart_frames() => {
            // Sync what the checkpoints copied, and copy what came
            // meanwhile, so that the restart, which pauses writes, has
            // little of either left.
            let r = db.sync_file().and_then(|_| db.checkpoint_passive());
            if let Err(e) = r.and_then(|_| db.checkpoint_restart()) {
                log::warn!("WAL restart failed: {}", e.message);
            }
        }
        Ok(_) => {}
        Err(e) => log::warn!("WAL checkpoint failed: {}", e.message),
    }
}
