//! Reports of posts and messages, kept for the operator.

use super::Cached;
use crate::util::now;
use rusqlite::{params, Connection};

/// The reasons pnut honours.
pub const REASONS: &[&str] = &["account_type", "nsfw", "soliciting", "user_abuse"];

/// One report, as `spout admin reports` lists it.
#[derive(Debug, Clone)]
pub struct Report {
    pub id: i64,
    pub kind: String,
    pub object_id: i64,
    pub reporter: String,
    pub reason: String,
    pub created_at: i64,
}

/// Records (or re-records, with the new reason) `reporter`'s report.
pub fn report(
    c: &Connection,
    kind: &str,
    object_id: i64,
    reporter: i64,
    reason: &str,
) -> rusqlite::Result<()> {
    c.qexec(
        "INSERT INTO reports (kind, object_id, reporter_id, reason, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, object_id, reporter_id) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at",
        params![kind, object_id, reporter, reason, now()],
    )?;
    Ok(())
}

/// Every report, newest first.
pub fn all(c: &Connection) -> rusqlite::Result<Vec<Report>> {
    let mut st = c.prepare_cached(
        "SELECT r.id, r.kind, r.object_id, u.username, r.reason, r.created_at
         FROM reports r JOIN users u ON u.id = r.reporter_id ORDER BY r.id DESC",
    )?;
    let rows = st.query_map([], |r| {
        Ok(Report {
            id: r.get(0)?,
            kind: r.get(1)?,
            object_id: r.get(2)?,
            reporter: r.get(3)?,
            reason: r.get(4)?,
            created_at: r.get(5)?,
        })
    })?;
    rows.collect()
}
