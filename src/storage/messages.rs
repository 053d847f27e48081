//! Channel messages: rows, lists, stickies, replies, and what is unread.

use super::channels::{marker, next_activity, subscriber_count};
use super::Page;
use super::{json_col, Cached};
use crate::util::now;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct MessageRow {
    pub id: i64,
    pub channel_id: i64,
    pub user_id: i64,
    pub app_id: i64,
    pub text: String,
    pub raw: Value,
    pub reply_to: Option<i64>,
    pub thread_id: i64,
    pub is_nsfw: bool,
    pub is_deleted: bool,
    pub deleted_by: Option<i64>,
    pub is_sticky: bool,
    pub created_at: i64,
}

const MSG_COLS: &str =
    "id, channel_id, user_id, app_id, text, raw, reply_to, thread_id, is_nsfw, is_deleted, deleted_by, is_sticky, created_at";

fn message_from(r: &Row) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        channel_id: r.get(1)?,
        user_id: r.get(2)?,
        app_id: r.get(3)?,
        text: r.get(4)?,
        raw: json_col(r, 5)?,
        reply_to: r.get(6)?,
        thread_id: r.get(7)?,
        is_nsfw: r.get(8)?,
        is_deleted: r.get(9)?,
        deleted_by: r.get(10)?,
        is_sticky: r.get(11)?,
        created_at: r.get(12)?,
    })
}

pub struct NewMessage<'a> {
    pub channel_id: i64,
    pub user_id: i64,
    pub app_id: i64,
    pub text: &'a str,
    pub raw: &'a Value,
    pub reply_to: Option<(i64, i64)>,
    pub is_nsfw: bool,
}

/// Inserts a message (thread: the reply's thread or itself) and moves the
/// channel to the top of its subscribers' inboxes.
pub fn insert_message(c: &Connection, m: &NewMessage) -> rusqlite::Result<MessageRow> {
    c.qexec(
        "INSERT INTO messages (channel_id, user_id, app_id, text, raw, reply_to, thread_id, is_nsfw, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
        params![
            m.channel_id,
            m.user_id,
            m.app_id,
            m.text,
            m.raw.to_string(),
            m.reply_to.map(|r| r.0),
            m.is_nsfw,
            now()
        ],
    )?;
    let id = c.last_insert_rowid();
    let thread = m.reply_to.map(|r| r.1).unwrap_or(id);
    c.qexec("UPDATE messages SET thread_id = ?1 WHERE id = ?2", params![thread, id])?;
    let act = next_activity(c)?;
    c.qexec("UPDATE channels SET activity = ?1 WHERE id = ?2", params![act, m.channel_id])?;
    message(c, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub fn message(c: &Connection, id: i64) -> rusqlite::Result<Option<MessageRow>> {
    c.qrow(&format!("SELECT {MSG_COLS} FROM messages WHERE id = ?1"), [id], message_from).optional()
}

/// Whose messages a page lists.
#[derive(Clone, Copy)]
pub enum MessagesOf {
    Channel(i64),
    Thread(i64),
    /// A user's own, in every channel.
    Author(i64),
}

/// Messages of a channel, a thread or an author, paginated by id.
pub fn messages(
    c: &Connection,
    of: MessagesOf,
    p: &Page,
    include_deleted: bool,
) -> rusqlite::Result<(Vec<MessageRow>, bool)> {
    let (key, value) = match of {
        MessagesOf::Channel(id) => ("channel_id", id),
        MessagesOf::Thread(id) => ("thread_id", id),
        MessagesOf::Author(id) => ("user_id", id),
    };
    let (w, o) = p.sql("id");
    let del = if include_deleted { "" } else { " AND is_deleted = 0" };
    let mut st = c.prepare_cached(&format!("SELECT {MSG_COLS} FROM messages WHERE {key} = ?1{del}{w}{o}"))?;
    let rows = st.query_map([value], message_from)?.collect::<Result<Vec<_>, _>>()?;
    Ok(p.finish(rows))
}

pub fn sticky_messages(c: &Connection, cid: i64) -> rusqlite::Result<Vec<MessageRow>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {MSG_COLS} FROM messages WHERE channel_id = ?1 AND is_sticky = 1 AND is_deleted = 0 ORDER BY id DESC"
    ))?;
    let rows = st.query_map([cid], message_from)?;
    rows.collect()
}

pub fn delete_message(c: &Connection, id: i64, deleted_by: Option<i64>) -> rusqlite::Result<()> {
    c.qexec(
        "UPDATE messages SET is_deleted = 1, is_sticky = 0, deleted_by = ?1 WHERE id = ?2",
        params![deleted_by, id],
    )?;
    Ok(())
}

pub fn set_sticky(c: &Connection, id: i64, sticky: bool) -> rusqlite::Result<()> {
    c.qexec("UPDATE messages SET is_sticky = ?1 WHERE id = ?2", params![sticky, id])?;
    Ok(())
}

pub fn reply_count(c: &Connection, id: i64) -> rusqlite::Result<i64> {
    c.qrow("SELECT COUNT(*) FROM messages WHERE reply_to = ?1 AND is_deleted = 0", [id], |r| r.get(0))
}

/// Numbers and pointers a channel object shows.
#[derive(Clone, Debug, Default)]
pub struct ChannelStats {
    pub messages: i64,
    pub subscribers: i64,
    pub has_sticky: bool,
    /// Newest message of any state.
    pub newest: Option<MessageRow>,
    /// Newest non-deleted message id.
    pub recent_id: Option<i64>,
}

pub fn channel_stats(c: &Connection, cid: i64) -> rusqlite::Result<ChannelStats> {
    let (messages, has_sticky, recent_id): (i64, bool, Option<i64>) = c.qrow(
        "SELECT COUNT(*), COALESCE(MAX(is_sticky), 0), MAX(id) FROM messages WHERE channel_id = ?1 AND is_deleted = 0",
        [cid],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let newest = c
        .qrow(
            &format!("SELECT {MSG_COLS} FROM messages WHERE channel_id = ?1 ORDER BY id DESC LIMIT 1"),
            [cid],
            message_from,
        )
        .optional()?;
    Ok(ChannelStats { messages, subscribers: subscriber_count(c, cid)?, has_sticky, newest, recent_id })
}

/// Does `uid` have an unread message in the channel? Unread: a non-deleted
/// message by someone else above the user's `channel:{id}` marker (or any
/// such message without a marker).
pub fn has_unread(c: &Connection, cid: i64, uid: i64) -> rusqlite::Result<bool> {
    let m = marker(c, uid, &format!("channel:{cid}"))?;
    has_unread_after(c, cid, uid, m.map(|m| m.last_read_id).unwrap_or(0))
}

/// `has_unread` for a caller that already read the marker (`last`: its
/// `last_read_id`, 0 without one).
pub fn has_unread_after(c: &Connection, cid: i64, uid: i64, last: i64) -> rusqlite::Result<bool> {
    c.qrow(
        "SELECT EXISTS(SELECT 1 FROM messages WHERE channel_id = ?1 AND id > ?2 AND is_deleted = 0 AND user_id != ?3)",
        params![cid, last, uid],
        |r| r.get(0),
    )
}
