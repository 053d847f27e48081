//! App Streams: per-app rows with a key and a set of object types.

use super::Cached;
use crate::event::ObjType;
use crate::util::now;
use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRow {
    pub id: i64,
    pub app_id: i64,
    pub key: String,
    pub object_types: Vec<ObjType>,
    pub created_at: i64,
    pub filter_id: Option<i64>,
    /// The last event seq delivered (replay starts after it).
    pub cursor: i64,
    /// Events lost to retention since the last connect.
    pub dropped: i64,
}

const COLS: &str = "id, app_id, key, object_types, created_at, filter_id, cursor, dropped";

fn from_row(r: &Row) -> rusqlite::Result<StreamRow> {
    let types: String = r.get(3)?;
    let names: Vec<String> = serde_json::from_str(&types).unwrap_or_default();
    Ok(StreamRow {
        id: r.get(0)?,
        app_id: r.get(1)?,
        key: r.get(2)?,
        object_types: names.iter().filter_map(|n| ObjType::parse(n)).collect(),
        created_at: r.get(4)?,
        filter_id: r.get(5)?,
        cursor: r.get(6)?,
        dropped: r.get(7)?,
    })
}

fn types_json(types: &[ObjType]) -> String {
    serde_json::to_string(&types.iter().map(|t| t.as_str()).collect::<Vec<_>>()).unwrap_or_default()
}

pub fn list(c: &Connection, app_id: i64) -> rusqlite::Result<Vec<StreamRow>> {
    let mut st = c.prepare_cached(&format!("SELECT {COLS} FROM streams WHERE app_id = ?1 ORDER BY id"))?;
    let rows = st.query_map([app_id], from_row)?;
    rows.collect()
}

pub fn get(c: &Connection, app_id: i64, key: &str) -> rusqlite::Result<Option<StreamRow>> {
    c.qrow(
        &format!("SELECT {COLS} FROM streams WHERE app_id = ?1 AND key = ?2"),
        params![app_id, key],
        from_row,
    )
    .optional()
}

pub fn count(c: &Connection, app_id: i64) -> rusqlite::Result<i64> {
    c.qrow("SELECT COUNT(*) FROM streams WHERE app_id = ?1", [app_id], |r| r.get(0))
}

/// Inserts a stream; with no key, assigns the smallest free numeric key.
/// A new stream starts at the end of the log. `None` if the key is taken.
pub fn create(
    c: &Connection,
    app_id: i64,
    key: Option<&str>,
    types: &[ObjType],
    filter_id: Option<i64>,
) -> rusqlite::Result<Option<StreamRow>> {
    let key = match key {
        Some(k) => k.to_string(),
        None => {
            let mut n = 1;
            while get(c, app_id, &n.to_string())?.is_some() {
                n += 1;
            }
            n.to_string()
        }
    };
    let r = c.qexec(
        "INSERT INTO streams (app_id, key, object_types, created_at, filter_id, cursor)
         VALUES (?1, ?2, ?3, ?4, ?5, (SELECT COALESCE(MAX(seq), 0) FROM events))",
        params![app_id, key, types_json(types), now(), filter_id],
    );
    match r {
        Ok(_) => get(c, app_id, &key),
        Err(e) if super::is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn update(c: &Connection, id: i64, types: &[ObjType], filter_id: Option<i64>) -> rusqlite::Result<()> {
    c.qexec(
        "UPDATE streams SET object_types = ?1, filter_id = ?2 WHERE id = ?3",
        params![types_json(types), filter_id, id],
    )?;
    Ok(())
}

/// Gives stream `id` a new key; `false` if the app has a stream with it.
pub fn rename(c: &Connection, id: i64, key: &str) -> rusqlite::Result<bool> {
    match c.qexec("UPDATE streams SET key = ?1 WHERE id = ?2", params![key, id]) {
        Ok(_) => Ok(true),
        Err(e) if super::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

pub fn by_id(c: &Connection, id: i64) -> rusqlite::Result<Option<StreamRow>> {
    c.qrow(&format!("SELECT {COLS} FROM streams WHERE id = ?1"), [id], from_row).optional()
}

/// Every stream (the retention pass walks them).
pub fn all(c: &Connection) -> rusqlite::Result<Vec<StreamRow>> {
    let mut st = c.prepare_cached(&format!("SELECT {COLS} FROM streams ORDER BY id"))?;
    let rows = st.query_map([], from_row)?;
    rows.collect()
}

/// Moves the cursor forward (never back) and adds to the dropped count.
pub fn advance(c: &Connection, id: i64, cursor: i64, dropped: i64) -> rusqlite::Result<()> {
    c.qexec(
        "UPDATE streams SET cursor = MAX(cursor, ?1), dropped = dropped + ?2 WHERE id = ?3",
        params![cursor, dropped, id],
    )?;
    Ok(())
}

/// Sets the cursor (a purge or a resume moves it anywhere) and clears the
/// dropped count, which the connection has just reported.
pub fn reset(c: &Connection, id: i64, cursor: i64) -> rusqlite::Result<()> {
    c.qexec("UPDATE streams SET cursor = ?1, dropped = 0 WHERE id = ?2", params![cursor, id])?;
    Ok(())
}

/// Marks a stream for deletion when its `?auto_delete=1` connection ends.
pub fn mark_auto_delete(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.qexec("UPDATE streams SET auto_delete = 1 WHERE id = ?1", [id])?;
    Ok(())
}

/// Deletes the streams whose auto_delete connection died with the server.
pub fn delete_orphaned_auto(c: &Connection) -> rusqlite::Result<usize> {
    c.qexec("DELETE FROM streams WHERE auto_delete = 1", [])
}

pub fn delete(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.qexec("DELETE FROM streams WHERE id = ?1", [id])?;
    Ok(())
}

/// Deletes stream `id` in this transaction, with the signal that closes
/// its live connections. Shared by `DELETE /v1/streams…`, `spout admin
/// stream delete` and an `auto_delete` connection's end.
pub fn delete_live(tx: &mut super::Tx, id: i64) -> crate::error::ApiResult<()> {
    delete(tx, id)?;
    tx.signal(crate::event::Signal::StreamDeleted { stream_id: id })
}
