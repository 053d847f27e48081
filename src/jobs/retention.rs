//! The `retention` thread: a retention pass (`crate::retention::prune`)
//! every `--prune-secs`.

use crate::hub::Hub;
use crate::storage::Db;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub fn start(
    db: Arc<Db>,
    hub: Hub,
    every: Duration,
    max_age_secs: i64,
    max_events: usize,
    stopping: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    crate::thread::spawn("retention".into(), None, move || loop {
        std::thread::park_timeout(every);
        if stopping.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = crate::retention::prune(&db, Some(&hub), max_age_secs, max_events) {
            log::warn!("retention pass failed: {}", e.message);
        }
    })
    .map_err(|e| e.to_string())
}
