//! How big the network is, for `GET /v1/sys/stats`.

use super::Cached;
use rusqlite::Connection;

/// The network's counts for `GET /v1/sys/stats`: live users, posts (not
/// reposts), channels, messages, files and polls.
pub fn counts(c: &Connection) -> rusqlite::Result<[(&'static str, i64); 6]> {
    let n = |sql: &str| -> rusqlite::Result<i64> { c.qrow(sql, [], |r| r.get(0)) };
    Ok([
        ("users", n("SELECT COUNT(*) FROM users")?),
        ("posts", n("SELECT COUNT(*) FROM posts WHERE is_deleted = 0 AND repost_of IS NULL")?),
        ("channels", n("SELECT COUNT(*) FROM channels WHERE is_active = 1")?),
        ("messages", n("SELECT COUNT(*) FROM messages WHERE is_deleted = 0")?),
        ("files", n("SELECT COUNT(*) FROM files WHERE is_deleted = 0")?),
        ("polls", n("SELECT COUNT(*) FROM polls WHERE is_deleted = 0")?),
    ])
}
