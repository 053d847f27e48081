//! Users: accounts, password checks, profiles.

use super::Cached;
use crate::util::now;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub name: Option<String>,
    pub kind: String,
    pub locale: String,
    pub timezone: String,
    pub description: String,
    pub raw: Value,
    pub created_at: i64,
    /// The avatar's and the cover's size, `None` for the default image.
    pub avatar: Option<(u32, u32)>,
    pub cover: Option<(u32, u32)>,
}

const COLS: &str =
    "id, username, name, type, locale, timezone, description, raw, created_at, avatar_size, cover_size";

/// "WxH" → (w, h).
fn size(v: Option<String>) -> Option<(u32, u32)> {
    let v = v?;
    let (w, h) = v.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

fn from_row(r: &Row) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        username: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        locale: r.get(4)?,
        timezone: r.get(5)?,
        description: r.get(6)?,
        raw: super::json_col(r, 7)?,
        created_at: r.get(8)?,
        avatar: size(r.get(9)?),
        cover: size(r.get(10)?),
    })
}

/// A slow, salted hash (argon2id with the crate's default cost).
pub fn hash_password(password: &str) -> String {
    let salt_bytes = crate::util::random_bytes(16);
    // Encoding 16 bytes as a salt cannot fail; fall back to an unusable hash
    // rather than panic if it ever did.
    match SaltString::encode_b64(&salt_bytes).ok().and_then(|salt| {
        Argon2::default().hash_password(password.as_bytes(), &salt).ok().map(|h| h.to_string())
    }) {
        Some(h) => h,
        None => "!".into(),
    }
}

fn password_ok(stored: &str, given: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| Argon2::default().verify_password(given.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// The username rule (admin and open sign-up): 1 to 20 characters,
/// letters, digits and `_`.
pub fn check_username(name: &str) -> Result<(), String> {
    let ok =
        !name.is_empty() && name.len() <= 20 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err("username: 1 to 20 characters: letters, digits and _".into())
    }
}

/// `None` if the username is taken.
pub fn create(c: &Connection, username: &str, password_hash: &str) -> rusqlite::Result<Option<UserRow>> {
    let r = c.qexec(
        "INSERT INTO users (username, password_hash, created_at) VALUES (?1, ?2, ?3)",
        params![username, password_hash, now()],
    );
    match r {
        Ok(_) => by_id(c, c.last_insert_rowid()),
        Err(e) if super::is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores a user's avatar or cover (`which`), replacing the last one.
pub fn set_image(
    c: &Connection,
    uid: i64,
    which: &str,
    mime: &str,
    (w, h): (u32, u32),
    content: &[u8],
) -> rusqlite::Result<()> {
    c.qexec(
        "INSERT OR REPLACE INTO user_images (user_id, which, mime, content, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![uid, which, mime, content, now()],
    )?;
    let sql = if which == "avatar" {
        "UPDATE users SET avatar_size = ?1 WHERE id = ?2"
    } else {
        "UPDATE users SET cover_size = ?1 WHERE id = ?2"
    };
    c.qexec(sql, params![format!("{w}x{h}"), uid]).map(|_| ())
}

/// Goes back to the default avatar or cover; whether there was one.
pub fn delete_image(c: &Connection, uid: i64, which: &str) -> rusqlite::Result<bool> {
    let n = c.qexec("DELETE FROM user_images WHERE user_id = ?1 AND which = ?2", params![uid, which])?;
    let sql = if which == "avatar" {
        "UPDATE users SET avatar_size = NULL WHERE id = ?1"
    } else {
        "UPDATE users SET cover_size = NULL WHERE id = ?1"
    };
    c.qexec(sql, [uid])?;
    Ok(n > 0)
}

/// A user's stored avatar or cover: (media type, bytes).
pub fn image(c: &Connection, uid: i64, which: &str) -> rusqlite::Result<Option<(String, Vec<u8>)>> {
    c.qrow(
        "SELECT mime, content FROM user_images WHERE user_id = ?1 AND which = ?2",
        params![uid, which],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Sets a user's type (pnut's `human`, `bot` or `feed`).
pub fn set_kind(c: &Connection, id: i64, kind: &str) -> rusqlite::Result<()> {
    c.qexec("UPDATE users SET type = ?1 WHERE id = ?2", params![kind, id]).map(|_| ())
}

/// Whether a user is a person (pnut's `human`), not a `bot` or a `feed`:
/// what an event's `suppress_notifications_all` says of its actor.
pub fn is_human(c: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(by_id(c, id)?.is_none_or(|u| u.kind == "human"))
}

pub fn by_id(c: &Connection, id: i64) -> rusqlite::Result<Option<UserRow>> {
    c.qrow(&format!("SELECT {COLS} FROM users WHERE id = ?1"), [id], from_row).optional()
}

/// Case-insensitive.
pub fn by_username(c: &Connection, username: &str) -> rusqlite::Result<Option<UserRow>> {
    c.qrow(&format!("SELECT {COLS} FROM users WHERE username = ?1"), [username], from_row).optional()
}

/// `text` as a pnut `content` object (html, entities), its `@mentions`
/// resolved against the users table (an unknown name is no mention). The
/// one resolver: posts, messages and profile descriptions all use it.
pub fn text_content(c: &Connection, text: &str) -> serde_json::Value {
    text_content_with(c, text, crate::text::TextOpts::default())
}

/// `text_content` with what to parse (`entities.parse_*`).
pub fn text_content_with(c: &Connection, text: &str, opts: crate::text::TextOpts) -> serde_json::Value {
    crate::text::content_with(text, opts, |name| {
        by_username(c, name).ok().flatten().map(|u| (u.id, u.username))
    })
}

pub fn list(c: &Connection) -> rusqlite::Result<Vec<UserRow>> {
    let mut st = c.prepare_cached(&format!("SELECT {COLS} FROM users ORDER BY id"))?;
    let rows = st.query_map([], from_row)?;
    rows.collect()
}

/// The id and stored password hash of `username`, if there is such a user.
pub fn password_hash(c: &Connection, username: &str) -> rusqlite::Result<Option<(i64, String)>> {
    c.qrow("SELECT id, password_hash FROM users WHERE username = ?1", [username], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}

/// Does `given` match `stored`? With no stored hash (no such user) it
/// still costs one hash, so timing does not tell whether the user exists.
pub fn verify_password(stored: Option<&str>, given: &str) -> bool {
    match stored {
        Some(h) => password_ok(h, given),
        None => {
            let _ = password_ok(DUMMY_HASH, given);
            false
        }
    }
}

/// A valid argon2id hash of a random string, verified against when the user
/// does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c3BvdXRkdW1teXNhbHQ$0D3gV6Vr3ZC4Yy0o0u6WwB9m2m6dLrKX1eJkq0hEJxE";

/// Writes the profile fields of `u` (name, locale, timezone, description, raw).
pub fn save_profile(c: &Connection, u: &UserRow) -> rusqlite::Result<()> {
    c.qexec(
        "UPDATE users SET name = ?1, locale = ?2, timezone = ?3, description = ?4, raw = ?5 WHERE id = ?6",
        params![u.name, u.locale, u.timezone, u.description, u.raw.to_string(), u.id],
    )?;
    Ok(())
}

/// Numbers for `counts`: posts (live, reposts included), followers,
/// following, bookmarks, clients (authorized apps).
pub fn counts(c: &Connection, id: i64) -> rusqlite::Result<Value> {
    let clients: i64 =
        c.qrow("SELECT COUNT(*) FROM authorizations WHERE user_id = ?1", [id], |r| r.get(0))?;
    let [posts, followers, following, bookmarks] = super::posts::user_counts(c, id)?;
    Ok(serde_json::json!({
        "bookmarks": bookmarks, "clients": clients, "followers": followers, "following": following, "posts": posts
    }))
}
