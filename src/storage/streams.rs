//! App Streams: per-app rows with a key and a set of object types.

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
}

const COLS: &str = "id, app_id, key, object_types, created_at";

fn from_row(r: &Row) -> rusqlite::Result<StreamRow> {
    let types: String = r.get(3)?;
    let names: Vec<String> = serde_json::from_str(&types).unwrap_or_default();
    Ok(StreamRow {
        id: r.get(0)?,
        app_id: r.get(1)?,
        key: r.get(2)?,
        object_types: names.iter().filter_map(|n| ObjType::parse(n)).collect(),
        created_at: r.get(4)?,
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
    c.query_row(
        &format!("SELECT {COLS} FROM streams WHERE app_id = ?1 AND key = ?2"),
        params![app_id, key],
        from_row,
    )
    .optional()
}

pub fn count(c: &Connection, app_id: i64) -> rusqlite::Result<i64> {
    c.query_row("SELECT COUNT(*) FROM streams WHERE app_id = ?1", [app_id], |r| r.get(0))
}

/// Inserts a stream; with no key, assigns the smallest free numeric key.
/// `None` if the key is taken.
pub fn create(
    c: &Connection,
    app_id: i64,
    key: Option<&str>,
    types: &[ObjType],
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
    let r = c.execute(
        "INSERT INTO streams (app_id, key, object_types, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![app_id, key, types_json(types), now()],
    );
    match r {
        Ok(_) => get(c, app_id, &key),
        Err(e) if super::is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn update_types(c: &Connection, id: i64, types: &[ObjType]) -> rusqlite::Result<()> {
    c.execute("UPDATE streams SET object_types = ?1 WHERE id = ?2", params![types_json(types), id])?;
    Ok(())
}

pub fn delete(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.execute("DELETE FROM streams WHERE id = ?1", [id])?;
    Ok(())
}
