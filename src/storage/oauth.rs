//! The OAuth web flow's rows: apps' registered redirect URIs, authorization
//! codes and signed-in browser sessions. Codes and sessions are stored as
//! SHA-256 of the secret the browser holds, and expired rows are removed
//! whenever a new one is made, so neither table grows past what its rate
//! and lifetime allow.

use super::Cached;
use crate::util::{new_secret, now, sha256};
use rusqlite::{params, Connection, OptionalExtension};

/// A signed-in user keeps at most this many sessions (browsers); signing
/// in once more ends the oldest.
pub const SESSIONS_PER_USER: i64 = 20;

pub fn add_redirect_uri(c: &Connection, app_id: i64, uri: &str) -> rusqlite::Result<()> {
    c.qexec("INSERT OR IGNORE INTO app_redirect_uris (app_id, uri) VALUES (?1, ?2)", params![app_id, uri])?;
    Ok(())
}

pub fn redirect_uris(c: &Connection, app_id: i64) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare_cached("SELECT uri FROM app_redirect_uris WHERE app_id = ?1 ORDER BY uri")?;
    let rows = st.query_map([app_id], |r| r.get(0))?;
    rows.collect()
}

/// What a code was issued for.
#[derive(Debug, Clone)]
pub struct Code {
    pub app_id: i64,
    pub user_id: i64,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    pub challenge: Option<String>,
    pub expires_at: i64,
    /// The token a first exchange made: the code was used.
    pub token_id: Option<i64>,
}

/// Codes a user may have waiting to be exchanged; a new one past this
/// ends the oldest (each consent makes one, so a loop of consents cannot
/// grow the table).
pub const OPEN_CODES_PER_USER: i64 = 20;

/// What a new code is issued for.
pub struct NewCode<'a> {
    pub app_id: i64,
    pub user_id: i64,
    pub scopes: &'a [String],
    pub redirect_uri: &'a str,
    pub challenge: Option<&'a str>,
}

/// Issues a code valid for `ttl_secs`; returns it (the row keeps its hash).
pub fn create_code(c: &Connection, code: &NewCode, ttl_secs: i64) -> rusqlite::Result<String> {
    let t = now();
    c.qexec("DELETE FROM oauth_codes WHERE expires_at < ?1", [t])?;
    c.qexec(
        "DELETE FROM oauth_codes WHERE user_id = ?1 AND token_id IS NULL AND hash NOT IN
           (SELECT hash FROM oauth_codes WHERE user_id = ?1 AND token_id IS NULL
            ORDER BY expires_at DESC LIMIT ?2)",
        params![code.user_id, OPEN_CODES_PER_USER - 1],
    )?;
    let secret = new_secret();
    c.qexec(
        "INSERT INTO oauth_codes (hash, app_id, user_id, scopes, redirect_uri, challenge, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            sha256(&secret),
            code.app_id,
            code.user_id,
            code.scopes.join(","),
            code.redirect_uri,
            code.challenge,
            t + ttl_secs
        ],
    )?;
    Ok(secret)
}

/// The code with this secret, used or not.
pub fn code(c: &Connection, secret: &str) -> rusqlite::Result<Option<Code>> {
    c.qrow(
        "SELECT app_id, user_id, scopes, redirect_uri, challenge, expires_at, token_id
         FROM oauth_codes WHERE hash = ?1",
        [sha256(secret)],
        |r| {
            Ok(Code {
                app_id: r.get(0)?,
                user_id: r.get(1)?,
                scopes: r
                    .get::<_, String>(2)?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                redirect_uri: r.get(3)?,
                challenge: r.get(4)?,
                expires_at: r.get(5)?,
                token_id: r.get(6)?,
            })
        },
    )
    .optional()
}

/// Marks a code used by the exchange that made `token_id`.
pub fn mark_code_used(c: &Connection, secret: &str, token_id: i64) -> rusqlite::Result<()> {
    c.qexec("UPDATE oauth_codes SET token_id = ?1 WHERE hash = ?2", params![token_id, sha256(secret)])?;
    Ok(())
}

/// Starts a session for `user_id` lasting `ttl_secs`; returns the cookie's
/// secret.
pub fn create_session(c: &Connection, user_id: i64, ttl_secs: i64) -> rusqlite::Result<String> {
    let t = now();
    c.qexec("DELETE FROM web_sessions WHERE expires_at < ?1", [t])?;
    c.qexec(
        "DELETE FROM web_sessions WHERE user_id = ?1 AND hash NOT IN
           (SELECT hash FROM web_sessions WHERE user_id = ?1 ORDER BY created_at DESC LIMIT ?2)",
        params![user_id, SESSIONS_PER_USER - 1],
    )?;
    let secret = new_secret();
    c.qexec(
        "INSERT INTO web_sessions (hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![sha256(&secret), user_id, t, t + ttl_secs],
    )?;
    Ok(secret)
}

/// The user a live session belongs to.
pub fn session_user(c: &Connection, secret: &str) -> rusqlite::Result<Option<i64>> {
    c.qrow(
        "SELECT user_id FROM web_sessions WHERE hash = ?1 AND expires_at >= ?2",
        params![sha256(secret), now()],
        |r| r.get(0),
    )
    .optional()
}

pub fn delete_session(c: &Connection, secret: &str) -> rusqlite::Result<()> {
    c.qexec("DELETE FROM web_sessions WHERE hash = ?1", [sha256(secret)])?;
    Ok(())
}
