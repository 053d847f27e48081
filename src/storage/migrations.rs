//! Schema versions: `schema.sql` is version 1; later migrations live in
//! `migrations/NNN_*.sql`, are appended to `MIGRATIONS` and never edited once released. The version lives in PRAGMA user_version.

use rusqlite::Connection;

const SCHEMA_V1: &str = include_str!("../../schema.sql");

/// Migrations after version 1, in order: entry `i` moves the schema to
/// version `i + 2`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/002_posts_graph.sql"),
    include_str!("../../migrations/003_channels.sql"),
    include_str!("../../migrations/004_durable_filters.sql"),
    include_str!("../../migrations/005_user_counters.sql"),
    include_str!("../../migrations/006_drop_redundant_index.sql"),
    include_str!("../../migrations/007_drop_events_by_time.sql"),
    include_str!("../../migrations/008_events_by_object.sql"),
    include_str!("../../migrations/009_user_images.sql"),
    include_str!("../../migrations/010_oauth_web.sql"),
    include_str!("../../migrations/011_search.sql"),
    include_str!("../../migrations/012_reports.sql"),
    include_str!("../../migrations/013_app_owner.sql"),
    include_str!("../../migrations/014_deleted_at.sql"),
];

/// The schema version this build writes.
pub const LATEST: i64 = 1 + MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    if version > LATEST {
        return Err(format!("database schema version {version} is newer than this spout ({LATEST})"));
    }
    let steps = std::iter::once(SCHEMA_V1).chain(MIGRATIONS.iter().copied());
    for (i, sql) in steps.enumerate().skip(version as usize) {
        let mut step = || -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()
        };
        step().map_err(|e| format!("migration to version {}: {e}", i + 1))?;
        log::info!("database migrated to schema version {}", i + 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database migrated up to `version` only, as an older spout left it.
    fn at_version(version: usize) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA_V1).unwrap();
        for sql in &MIGRATIONS[..version - 1] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", version as i64).unwrap();
        c
    }

    #[test]
    fn migrates_fresh_and_is_idempotent() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        migrate(&mut c).unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, LATEST);
    }

    /// Version 8 indexes the events already in the log by their object.
    #[test]
    fn version_8_fills_object_ids_of_existing_events() {
        let mut c = at_version(7);
        for (kind, id) in [("post", "12"), ("user", "3"), ("message", "7")] {
            c.execute(
                "INSERT INTO events (type, audience, envelope, created_at) VALUES (?1, '{}', ?2, 0)",
                [kind, &format!(r#"{{"meta":{{"id":"{id}"}},"data":{{}}}}"#)],
            )
            .unwrap();
        }
        migrate(&mut c).unwrap();
        let ids: Vec<Option<i64>> = c
            .prepare("SELECT object_id FROM events ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids, [Some(12), None, Some(7)]);
    }

    /// Version 10: apps made before it keep the password grant; new ones
    /// do not get it unless asked.
    #[test]
    fn version_10_keeps_the_password_grant_of_existing_apps() {
        let mut c = at_version(9);
        c.execute(
            "INSERT INTO apps (client_id, secret_hash, name, created_at) VALUES ('old', x'00', 'Old', 0)",
            [],
        )
        .unwrap();
        migrate(&mut c).unwrap();
        c.execute(
            "INSERT INTO apps (client_id, secret_hash, name, created_at) VALUES ('new', x'00', 'New', 0)",
            [],
        )
        .unwrap();
        let grants: Vec<(String, bool)> = c
            .prepare("SELECT client_id, password_grant FROM apps ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(grants, [("old".to_string(), true), ("new".to_string(), false)]);
    }

    /// Version 11 indexes what is already there; deleted posts and reposts
    /// are not found.
    #[test]
    fn version_11_indexes_existing_rows() {
        let mut c = at_version(10);
        c.execute_batch(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'alice', '', 0);
             INSERT INTO apps (id, client_id, secret_hash, name, created_at) VALUES (1, 'c', x'00', 'A', 0);
             INSERT INTO posts (id, user_id, app_id, created_at, thread_id, content) VALUES
                 (1, 1, 1, 0, 1, '{\"text\":\"hello fox\"}'),
                 (2, 1, 1, 0, 2, '{\"text\":\"gone fox\"}');
             UPDATE posts SET is_deleted = 1 WHERE id = 2;",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let found = |sql: &str| -> Vec<i64> {
            c.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        assert_eq!(found("SELECT rowid FROM posts_fts WHERE posts_fts MATCH 'fox'"), [1]);
        assert_eq!(found("SELECT rowid FROM users_fts WHERE users_fts MATCH 'alice'"), [1]);
    }
}
