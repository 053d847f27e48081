//! Filters: owned by a user, referenced by streams.

use super::Cached;
use crate::util::now;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct FilterRow {
    pub id: i64,
    pub user_id: i64,
    pub name: Option<String>,
    pub match_policy: String,
    pub clauses: Value,
}

const COLS: &str = "id, user_id, name, match_policy, clauses";

fn from_row(r: &Row) -> rusqlite::Result<FilterRow> {
    let clauses: String = r.get(4)?;
    Ok(FilterRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        match_policy: r.get(3)?,
        clauses: serde_json::from_str(&clauses).unwrap_or(Value::Array(Vec::new())),
    })
}

pub fn create(
    c: &Connection,
    user_id: i64,
    name: Option<&str>,
    policy: &str,
    clauses: &Value,
) -> rusqlite::Result<FilterRow> {
    c.qexec(
        "INSERT INTO filters (user_id, name, match_policy, clauses, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user_id, name, policy, clauses.to_string(), now()],
    )?;
    get(c, c.last_insert_rowid())?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub fn get(c: &Connection, id: i64) -> rusqlite::Result<Option<FilterRow>> {
    c.qrow(&format!("SELECT {COLS} FROM filters WHERE id = ?1"), [id], from_row).optional()
}

/// A filter by id, compiled (`None` if it is gone or no longer parses).
pub fn load(c: &Connection, id: i64) -> rusqlite::Result<Option<std::sync::Arc<crate::filter::Filter>>> {
    Ok(get(c, id)?.and_then(|r| {
        crate::filter::Filter::parse(Some(&serde_json::json!(r.match_policy)), Some(&r.clauses))
            .ok()
            .map(std::sync::Arc::new)
    }))
}

/// A stream's filter, compiled (`None` without one, or if it is gone).
pub fn of_stream(
    c: &Connection,
    id: Option<i64>,
) -> rusqlite::Result<Option<std::sync::Arc<crate::filter::Filter>>> {
    match id {
        Some(id) => load(c, id),
        None => Ok(None),
    }
}

pub fn list_by_user(c: &Connection, user_id: i64) -> rusqlite::Result<Vec<FilterRow>> {
    let mut st = c.prepare_cached(&format!("SELECT {COLS} FROM filters WHERE user_id = ?1 ORDER BY id"))?;
    let rows = st.query_map([user_id], from_row)?;
    rows.collect()
}

pub fn update(
    c: &Connection,
    id: i64,
    name: Option<&str>,
    policy: &str,
    clauses: &Value,
) -> rusqlite::Result<()> {
    c.qexec(
        "UPDATE filters SET name = ?1, match_policy = ?2, clauses = ?3 WHERE id = ?4",
        params![name, policy, clauses.to_string(), id],
    )?;
    Ok(())
}

pub fn delete(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.qexec("DELETE FROM filters WHERE id = ?1", [id])?;
    Ok(())
}

/// Ids of the streams that use a filter.
pub fn streams_using(c: &Connection, filter_id: i64) -> rusqlite::Result<Vec<i64>> {
    let mut st = c.prepare_cached("SELECT id FROM streams WHERE filter_id = ?1 ORDER BY id")?;
    let rows = st.query_map([filter_id], |r| r.get(0))?;
    rows.collect()
}
