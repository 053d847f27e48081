//! Files: rows, content, and a user's list.

use super::Page;
use super::{json_col, Cached};
use crate::util::now;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct FileRow {
    pub id: i64,
    pub user_id: i64,
    pub app_id: i64,
    pub kind_type: String,
    pub kind: String,
    pub name: String,
    pub mime_type: Option<String>,
    pub is_public: bool,
    pub raw: Value,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub file_token: String,
    pub is_deleted: bool,
    pub created_at: i64,
}

const FILE_COLS: &str = "id, user_id, app_id, type, kind, name, mime_type, is_public, raw, length(content), sha256, file_token, is_deleted, created_at";

fn file_from(r: &Row) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        app_id: r.get(2)?,
        kind_type: r.get(3)?,
        kind: r.get(4)?,
        name: r.get(5)?,
        mime_type: r.get(6)?,
        is_public: r.get(7)?,
        raw: json_col(r, 8)?,
        size: r.get(9)?,
        sha256: r.get(10)?,
        file_token: r.get(11)?,
        is_deleted: r.get(12)?,
        created_at: r.get(13)?,
    })
}

pub struct NewFile<'a> {
    pub user_id: i64,
    pub app_id: i64,
    pub kind_type: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub mime_type: Option<&'a str>,
    pub is_public: bool,
    pub raw: &'a Value,
    pub content: Option<&'a [u8]>,
}

pub fn insert_file(c: &Connection, f: &NewFile) -> rusqlite::Result<FileRow> {
    let sha = f.content.map(sha256_hex);
    c.qexec(
        "INSERT INTO files (user_id, app_id, type, kind, name, mime_type, is_public, raw, content, sha256, file_token, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            f.user_id,
            f.app_id,
            f.kind_type,
            f.kind,
            f.name,
            f.mime_type,
            f.is_public,
            f.raw.to_string(),
            f.content,
            sha,
            crate::util::new_secret(),
            now()
        ],
    )?;
    file(c, c.last_insert_rowid())?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

pub fn file(c: &Connection, id: i64) -> rusqlite::Result<Option<FileRow>> {
    c.qrow(&format!("SELECT {FILE_COLS} FROM files WHERE id = ?1"), [id], file_from).optional()
}

pub fn file_content(c: &Connection, id: i64) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(c.qrow("SELECT content FROM files WHERE id = ?1", [id], |r| r.get(0)).optional()?.flatten())
}

pub fn save_file(c: &Connection, f: &FileRow) -> rusqlite::Result<()> {
    c.qexec(
        "UPDATE files SET name = ?1, is_public = ?2, raw = ?3, is_deleted = ?4 WHERE id = ?5",
        params![f.name, f.is_public, f.raw.to_string(), f.is_deleted, f.id],
    )?;
    Ok(())
}

/// A deleted file's bytes go at once (nothing serves them any more).
pub fn drop_file_content(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.qexec("UPDATE files SET content = NULL WHERE id = ?1", [id])?;
    Ok(())
}

pub fn set_file_content(c: &Connection, id: i64, content: &[u8], mime: Option<&str>) -> rusqlite::Result<()> {
    c.qexec(
        "UPDATE files SET content = ?1, sha256 = ?2, mime_type = COALESCE(?3, mime_type) WHERE id = ?4",
        params![content, sha256_hex(content), mime, id],
    )?;
    Ok(())
}

pub fn files_of(c: &Connection, uid: i64, p: &Page) -> rusqlite::Result<(Vec<FileRow>, bool)> {
    let (w, o) = p.sql("id");
    let mut st = c.prepare_cached(&format!(
        "SELECT {FILE_COLS} FROM files WHERE user_id = ?1 AND is_deleted = 0{w}{o}"
    ))?;
    let rows = st.query_map([uid], file_from)?.collect::<Result<Vec<_>, _>>()?;
    Ok(p.finish(rows))
}
