//! WAL upkeep: passive checkpoints beside the writer, a restart when the
//! WAL grew past `WAL_RESTART_BYTES`, blocks reserved ahead of its growth,
//! and the database file synced before a restart. The log-tail thread
//! (`server`) calls these.

use super::Db;
use crate::error::{ApiError, ApiResult};

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
pub(super) const WAL_KEEP_BYTES: i64 = WAL_RESTART_BYTES / 4 * 5;

/// Each WAL frame is a page after a header of this size.
pub(super) const WAL_FRAME_HEADER: i64 = 24;

impl Db {
    /// How many WAL frames make `WAL_RESTART_BYTES` (the log-tail thread
    /// restarts the WAL past it).
    pub fn wal_restart_frames(&self) -> i64 {
        self.restart_frames
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
}
