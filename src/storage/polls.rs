//! Polls: rows, responses, and which are due to close.

use super::Page;
use super::{json_col, Cached};
use crate::event::Audience;
use crate::util::now;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct PollRow {
    pub id: i64,
    pub user_id: i64,
    pub app_id: i64,
    pub kind: String,
    pub prompt: String,
    pub options: Vec<String>,
    pub max_options: i64,
    pub is_anonymous: bool,
    pub is_public: bool,
    pub raw: Value,
    pub poll_token: String,
    pub closed_at: i64,
    pub is_closed: bool,
    pub is_deleted: bool,
    pub created_at: i64,
}

const POLL_COLS: &str = "id, user_id, app_id, type, prompt, options, max_options, is_anonymous, is_public, raw, poll_token, closed_at, is_closed, is_deleted, created_at";

fn poll_from(r: &Row) -> rusqlite::Result<PollRow> {
    let opts: String = r.get(5)?;
    Ok(PollRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        app_id: r.get(2)?,
        kind: r.get(3)?,
        prompt: r.get(4)?,
        options: serde_json::from_str(&opts).unwrap_or_default(),
        max_options: r.get(6)?,
        is_anonymous: r.get(7)?,
        is_public: r.get(8)?,
        raw: json_col(r, 9)?,
        poll_token: r.get(10)?,
        closed_at: r.get(11)?,
        is_closed: r.get(12)?,
        is_deleted: r.get(13)?,
        created_at: r.get(14)?,
    })
}

pub struct NewPoll<'a> {
    pub user_id: i64,
    pub app_id: i64,
    pub kind: &'a str,
    pub prompt: &'a str,
    pub options: &'a [String],
    pub max_options: i64,
    pub is_anonymous: bool,
    pub is_public: bool,
    pub raw: &'a Value,
    pub closed_at: i64,
}

pub fn insert_poll(c: &Connection, p: &NewPoll) -> rusqlite::Result<PollRow> {
    c.qexec(
        "INSERT INTO polls (user_id, app_id, type, prompt, options, max_options, is_anonymous, is_public, raw, poll_token, closed_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            p.user_id,
            p.app_id,
            p.kind,
            p.prompt,
            serde_json::to_string(p.options).unwrap_or_default(),
            p.max_options,
            p.is_anonymous,
            p.is_public,
            p.raw.to_string(),
            crate::util::new_secret(),
            p.closed_at,
            now()
        ],
    )?;
    poll(c, c.last_insert_rowid())?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub fn poll(c: &Connection, id: i64) -> rusqlite::Result<Option<PollRow>> {
    c.qrow(&format!("SELECT {POLL_COLS} FROM polls WHERE id = ?1"), [id], poll_from).optional()
}

pub fn polls_of(c: &Connection, uid: i64, p: &Page) -> rusqlite::Result<(Vec<PollRow>, bool)> {
    let (w, o) = p.sql("id");
    let mut st = c.prepare_cached(&format!(
        "SELECT {POLL_COLS} FROM polls WHERE user_id = ?1 AND is_deleted = 0{w}{o}"
    ))?;
    let rows = st.query_map([uid], poll_from)?.collect::<Result<Vec<_>, _>>()?;
    Ok(p.finish(rows))
}

/// Polls `uid` has answered (current or past answers), newest answer first;
/// the key is the answer row's rowid.
pub fn polls_answered(c: &Connection, uid: i64, p: &Page) -> rusqlite::Result<(Vec<(i64, PollRow)>, bool)> {
    let (w, o) = p.sql("r.rowid");
    let cols = POLL_COLS.split(", ").map(|k| format!("p.{k}")).collect::<Vec<_>>().join(", ");
    let mut st = c.prepare_cached(&format!(
        "SELECT r.rowid, {cols} FROM poll_respondents r JOIN polls p ON p.id = r.poll_id
         WHERE r.user_id = ?1 AND p.is_deleted = 0{w}{o}"
    ))?;
    let rows = st
        .query_map([uid], |r| {
            let key: i64 = r.get(0)?;
            let opts: String = r.get(6)?;
            Ok((
                key,
                PollRow {
                    id: r.get(1)?,
                    user_id: r.get(2)?,
                    app_id: r.get(3)?,
                    kind: r.get(4)?,
                    prompt: r.get(5)?,
                    options: serde_json::from_str(&opts).unwrap_or_default(),
                    max_options: r.get(7)?,
                    is_anonymous: r.get(8)?,
                    is_public: r.get(9)?,
                    raw: json_col(r, 10)?,
                    poll_token: r.get(11)?,
                    closed_at: r.get(12)?,
                    is_closed: r.get(13)?,
                    is_deleted: r.get(14)?,
                    created_at: r.get(15)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(p.finish(rows))
}

pub fn delete_poll(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.qexec("UPDATE polls SET is_deleted = 1 WHERE id = ?1", [id])?;
    Ok(())
}

/// (user id, position) of every current answer.
pub fn poll_responses(c: &Connection, id: i64) -> rusqlite::Result<Vec<(i64, i64)>> {
    let mut st =
        c.prepare_cached("SELECT user_id, position FROM poll_responses WHERE poll_id = ?1 ORDER BY user_id")?;
    let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

pub fn poll_respondents(c: &Connection, id: i64) -> rusqlite::Result<Vec<i64>> {
    let mut st = c.prepare_cached(
        "SELECT user_id FROM poll_respondents WHERE poll_id = ?1 ORDER BY created_at, user_id",
    )?;
    let rows = st.query_map([id], |r| r.get(0))?;
    rows.collect()
}

/// Replaces a user's answer; `true` if this is their first answer ever.
pub fn set_poll_response(c: &Connection, id: i64, uid: i64, positions: &[i64]) -> rusqlite::Result<bool> {
    c.qexec("DELETE FROM poll_responses WHERE poll_id = ?1 AND user_id = ?2", params![id, uid])?;
    for p in positions {
        c.qexec(
            "INSERT OR IGNORE INTO poll_responses (poll_id, user_id, position) VALUES (?1, ?2, ?3)",
            params![id, uid, p],
        )?;
    }
    if positions.is_empty() {
        return Ok(false);
    }
    let n = c.qexec(
        "INSERT OR IGNORE INTO poll_respondents (poll_id, user_id, created_at) VALUES (?1, ?2, ?3)",
        params![id, uid, now()],
    )?;
    Ok(n > 0)
}

/// Open polls whose `closed_at` has passed.
pub fn due_polls(c: &Connection, at: i64) -> rusqlite::Result<Vec<PollRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {POLL_COLS} FROM polls WHERE is_closed = 0 AND is_deleted = 0 AND closed_at <= ?1 ORDER BY closed_at, id"
    ))?;
    let rows = st.query_map([at], poll_from)?;
    rows.collect()
}

/// When the next open poll closes.
pub fn next_close(c: &Connection) -> rusqlite::Result<Option<i64>> {
    c.qrow("SELECT MIN(closed_at) FROM polls WHERE is_closed = 0 AND is_deleted = 0", [], |r| r.get(0))
}

/// Who sees a poll's events: its owner and everyone who answered.
pub fn poll_audience(c: &Connection, p: &PollRow) -> rusqlite::Result<Audience> {
    let mut users = vec![p.user_id];
    for u in poll_respondents(c, p.id)? {
        if !users.contains(&u) {
            users.push(u);
        }
    }
    // `polls` or `polls:TYPE` for this poll's type (pnut's extended scopes).
    Ok(Audience::Users { users, scopes: vec![format!("polls:{}", p.kind)] })
}
