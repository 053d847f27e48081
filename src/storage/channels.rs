//! Channels, ACLs, subscriptions, mutes, messages, markers, channel
//! presence, files and polls: rows and all their SQL. Also the poll closer
//! (a thread that closes polls at `closed_at`, exactly once, emitting the
//! close event in the same transaction), and the poll rendering it needs.

use super::users::{self, UserRow};
use super::Page;
use super::{apps, json_col, Cached, Tx};
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, NewEvent, ObjType};
use crate::util::{iso8601, now};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

// ---------------------------------------------------------------------- ACL

/// One ACL group. `any_user` is meaningless on `full`, `public` only on `read`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    #[serde(default)]
    pub any_user: bool,
    #[serde(default)]
    pub immutable: bool,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub user_ids: Vec<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub full: Group,
    pub write: Group,
    pub read: Group,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChannelRow {
    pub id: i64,
    pub kind: String,
    pub owner_id: Option<i64>,
    pub acl: Acl,
    pub raw: Value,
    pub is_active: bool,
    pub pm_key: Option<String>,
    pub activity: i64,
    pub created_at: i64,
}

impl ChannelRow {
    pub fn can_full(&self, u: Option<i64>) -> bool {
        u.is_some_and(|u| self.owner_id == Some(u) || self.acl.full.user_ids.contains(&u))
    }
    pub fn can_write(&self, u: Option<i64>) -> bool {
        self.can_full(u) || u.is_some_and(|u| self.acl.write.any_user || self.acl.write.user_ids.contains(&u))
    }
    pub fn can_read(&self, u: Option<i64>) -> bool {
        self.acl.read.public
            || self.can_write(u)
            || u.is_some_and(|u| self.acl.read.any_user || self.acl.read.user_ids.contains(&u))
    }
    /// Users named by the ACL plus the owner: everyone who can read a
    /// channel that is not open to any user.
    pub fn named_users(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.owner_id.into_iter().collect();
        for g in [&self.acl.full, &self.acl.write, &self.acl.read] {
            for u in &g.user_ids {
                if !v.contains(u) {
                    v.push(*u);
                }
            }
        }
        v
    }
    /// The chat room name from raw `io.pnut.core.chat-settings`.
    pub fn chat_name(&self) -> Option<String> {
        self.raw["io.pnut.core.chat-settings"][0]["name"].as_str().map(str::to_string)
    }
    /// Who may see events about this channel: apps authorized by a user
    /// who may read it, with a scope that covers its type.
    pub fn audience(&self) -> Audience {
        let users = if self.acl.read.public || self.acl.read.any_user || self.acl.write.any_user {
            None
        } else {
            Some(self.named_users())
        };
        Audience::Channel { channel_type: self.kind.clone(), users }
    }

    /// The audience of an event about `uid` in this channel (their
    /// subscription, their presence).
    pub fn audience_of(&self, uid: i64) -> Audience {
        Audience::Channel { channel_type: self.kind.clone(), users: Some(vec![uid]) }
    }
}

const CH_COLS: &str = "id, type, owner_id, acl, raw, is_active, pm_key, activity, created_at";

fn channel_from(r: &Row) -> rusqlite::Result<ChannelRow> {
    let acl: String = r.get(3)?;
    Ok(ChannelRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        owner_id: r.get(2)?,
        acl: serde_json::from_str(&acl).unwrap_or_default(),
        raw: json_col(r, 4)?,
        is_active: r.get(5)?,
        pm_key: r.get(6)?,
        activity: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn next_activity(c: &Connection) -> rusqlite::Result<i64> {
    c.qrow("SELECT COALESCE(MAX(activity), 0) + 1 FROM channels", [], |r| r.get(0))
}

pub fn insert_channel(
    c: &Connection,
    kind: &str,
    owner: Option<i64>,
    acl: &Acl,
    raw: &Value,
    pm_key: Option<&str>,
) -> rusqlite::Result<ChannelRow> {
    let act = next_activity(c)?;
    c.qexec(
        "INSERT INTO channels (type, owner_id, acl, raw, pm_key, activity, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            kind,
            owner,
            serde_json::to_string(acl).unwrap_or_default(),
            raw.to_string(),
            pm_key,
            act,
            now()
        ],
    )?;
    channel(c, c.last_insert_rowid())?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub fn channel(c: &Connection, id: i64) -> rusqlite::Result<Option<ChannelRow>> {
    c.qrow(&format!("SELECT {CH_COLS} FROM channels WHERE id = ?1"), [id], channel_from).optional()
}

/// Who may see events about each of these channels now (their current
/// ACL); a missing channel is left out.
pub fn audiences_now(c: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<(i64, Audience)>> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(ch) = channel(c, *id)? {
            out.push((*id, ch.audience()));
        }
    }
    Ok(out)
}

pub fn channel_by_pm_key(c: &Connection, key: &str) -> rusqlite::Result<Option<ChannelRow>> {
    c.qrow(&format!("SELECT {CH_COLS} FROM channels WHERE pm_key = ?1"), [key], channel_from).optional()
}

pub fn save_channel(c: &Connection, ch: &ChannelRow) -> rusqlite::Result<()> {
    c.qexec(
        "UPDATE channels SET acl = ?1, raw = ?2, is_active = ?3 WHERE id = ?4",
        params![serde_json::to_string(&ch.acl).unwrap_or_default(), ch.raw.to_string(), ch.is_active, ch.id],
    )?;
    Ok(())
}

fn channel_list(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<Vec<ChannelRow>> {
    let mut st = c.prepare_cached(sql)?;
    let rows = st.query_map(p, channel_from)?;
    rows.collect()
}

/// Channels `uid` owns, newest first.
pub fn owned_channels(
    c: &Connection,
    uid: i64,
    p: &Page,
    include_inactive: bool,
) -> rusqlite::Result<(Vec<ChannelRow>, bool)> {
    let (w, o) = p.sql("id");
    let rows = channel_list(
        c,
        &format!("SELECT {CH_COLS} FROM channels WHERE owner_id = ?1 AND (is_active = 1 OR ?2){w}{o}"),
        params![uid, include_inactive],
    )?;
    Ok(p.finish(rows))
}

// ----------------------------------------------------- subscriptions, mutes

/// `true` if this made a new subscription.
pub fn subscribe(c: &Connection, cid: i64, uid: i64) -> rusqlite::Result<bool> {
    let n = c.qexec(
        "INSERT OR IGNORE INTO channel_subscriptions (channel_id, user_id, created_at) VALUES (?1, ?2, ?3)",
        params![cid, uid, now()],
    )?;
    Ok(n > 0)
}

/// `true` if there was a subscription to remove.
pub fn unsubscribe(c: &Connection, cid: i64, uid: i64) -> rusqlite::Result<bool> {
    Ok(c.qexec(
        "DELETE FROM channel_subscriptions WHERE channel_id = ?1 AND user_id = ?2",
        params![cid, uid],
    )? > 0)
}

pub fn is_subscribed(c: &Connection, cid: i64, uid: i64) -> rusqlite::Result<bool> {
    c.qrow(
        "SELECT EXISTS(SELECT 1 FROM channel_subscriptions WHERE channel_id = ?1 AND user_id = ?2)",
        params![cid, uid],
        |r| r.get(0),
    )
}

pub fn subscriber_ids(c: &Connection, cid: i64) -> rusqlite::Result<Vec<i64>> {
    let mut st =
        c.prepare_cached("SELECT user_id FROM channel_subscriptions WHERE channel_id = ?1 ORDER BY id")?;
    let rows = st.query_map([cid], |r| r.get(0))?;
    rows.collect()
}

/// (pagination id, user id), newest subscription first.
pub fn subscribers(c: &Connection, cid: i64, p: &Page) -> rusqlite::Result<(Vec<(i64, i64)>, bool)> {
    let (w, o) = p.sql("id");
    let mut st = c.prepare_cached(&format!(
        "SELECT id, user_id FROM channel_subscriptions WHERE channel_id = ?1{w}{o}"
    ))?;
    let rows: Vec<(i64, i64)> =
        st.query_map([cid], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(p.finish(rows))
}

pub fn subscriber_count(c: &Connection, cid: i64) -> rusqlite::Result<i64> {
    c.qrow("SELECT COUNT(*) FROM channel_subscriptions WHERE channel_id = ?1", [cid], |r| r.get(0))
}

/// Removes every subscription of a channel; returns the users who had one.
pub fn drop_subscriptions(c: &Connection, cid: i64) -> rusqlite::Result<Vec<i64>> {
    let ids = subscriber_ids(c, cid)?;
    c.qexec("DELETE FROM channel_subscriptions WHERE channel_id = ?1", [cid])?;
    Ok(ids)
}

/// Every channel `uid` is subscribed to, most recent activity first.
pub fn subscribed_channels(c: &Connection, uid: i64) -> rusqlite::Result<Vec<ChannelRow>> {
    channel_list(
        c,
        &format!(
            "SELECT {} FROM channels ch JOIN channel_subscriptions s ON s.channel_id = ch.id
             WHERE s.user_id = ?1 ORDER BY ch.activity DESC",
            CH_COLS.split(", ").map(|k| format!("ch.{k}")).collect::<Vec<_>>().join(", ")
        ),
        [uid],
    )
}

pub fn set_muted(c: &Connection, cid: i64, uid: i64, muted: bool) -> rusqlite::Result<bool> {
    let n = if muted {
        c.qexec(
            "INSERT OR IGNORE INTO channel_mutes (channel_id, user_id, created_at) VALUES (?1, ?2, ?3)",
            params![cid, uid, now()],
        )?
    } else {
        c.qexec("DELETE FROM channel_mutes WHERE channel_id = ?1 AND user_id = ?2", params![cid, uid])?
    };
    Ok(n > 0)
}

pub fn is_muted(c: &Connection, cid: i64, uid: i64) -> rusqlite::Result<bool> {
    c.qrow(
        "SELECT EXISTS(SELECT 1 FROM channel_mutes WHERE channel_id = ?1 AND user_id = ?2)",
        params![cid, uid],
        |r| r.get(0),
    )
}

/// Muted channels of `uid`, most recently muted first (pagination by mute id).
pub fn muted_channels(
    c: &Connection,
    uid: i64,
    p: &Page,
) -> rusqlite::Result<(Vec<(i64, ChannelRow)>, bool)> {
    let (w, o) = p.sql("m.id");
    let cols = CH_COLS.split(", ").map(|k| format!("ch.{k}")).collect::<Vec<_>>().join(", ");
    let mut st = c.prepare_cached(&format!(
        "SELECT m.id, {cols} FROM channel_mutes m JOIN channels ch ON ch.id = m.channel_id WHERE m.user_id = ?1{w}{o}"
    ))?;
    let rows = st
        .query_map([uid], |r| {
            let mid: i64 = r.get(0)?;
            let acl: String = r.get(4)?;
            Ok((
                mid,
                ChannelRow {
                    id: r.get(1)?,
                    kind: r.get(2)?,
                    owner_id: r.get(3)?,
                    acl: serde_json::from_str(&acl).unwrap_or_default(),
                    raw: json_col(r, 5)?,
                    is_active: r.get(6)?,
                    pm_key: r.get(7)?,
                    activity: r.get(8)?,
                    created_at: r.get(9)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(p.finish(rows))
}

// ------------------------------------------------------------------ messages

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

// ------------------------------------------------------------------- markers

#[derive(Clone, Debug, PartialEq)]
pub struct MarkerRow {
    pub name: String,
    pub id: i64,
    pub last_read_id: i64,
    pub percentage: i64,
    pub version: i64,
    pub updated_at: i64,
}

pub fn marker(c: &Connection, uid: i64, name: &str) -> rusqlite::Result<Option<MarkerRow>> {
    c.qrow(
        "SELECT name, marker_id, last_read_id, percentage, version, updated_at FROM markers
         WHERE user_id = ?1 AND name = ?2",
        params![uid, name],
        |r| {
            Ok(MarkerRow {
                name: r.get(0)?,
                id: r.get(1)?,
                last_read_id: r.get(2)?,
                percentage: r.get(3)?,
                version: r.get(4)?,
                updated_at: r.get(5)?,
            })
        },
    )
    .optional()
}

/// Moves a marker; `last_read_id` only grows unless `reset`.
pub fn set_marker(
    c: &Connection,
    uid: i64,
    name: &str,
    id: i64,
    percentage: i64,
    reset: bool,
) -> rusqlite::Result<MarkerRow> {
    let cur = marker(c, uid, name)?;
    let last = match &cur {
        Some(m) if !reset => m.last_read_id.max(id),
        _ => id,
    };
    let version = cur.map(|m| m.version + 1).unwrap_or(1);
    c.qexec(
        "INSERT OR REPLACE INTO markers (user_id, name, marker_id, last_read_id, percentage, version, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![uid, name, id, last, percentage, version, now()],
    )?;
    marker(c, uid, name)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub fn delete_marker(c: &Connection, uid: i64, name: &str) -> rusqlite::Result<()> {
    c.qexec("DELETE FROM markers WHERE user_id = ?1 AND name = ?2", params![uid, name])?;
    Ok(())
}

// ---------------------------------------------------------- channel presence

/// Sets (or clears, with `None`) a user's presence in a channel.
pub fn set_channel_presence(
    c: &Connection,
    cid: i64,
    uid: i64,
    presence: Option<&str>,
    expires_at: i64,
) -> rusqlite::Result<()> {
    match presence {
        Some(p) => c.qexec(
            "INSERT OR REPLACE INTO channel_presence (channel_id, user_id, presence, expires_at, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![cid, uid, p, expires_at, now()],
        )?,
        None => c.qexec(
            "UPDATE channel_presence SET expires_at = 0, last_seen_at = ?3 WHERE channel_id = ?1 AND user_id = ?2",
            params![cid, uid, now()],
        )?,
    };
    Ok(())
}

/// (presence, last_seen_at); presence is `None` when offline or expired.
pub fn channel_presence(
    c: &Connection,
    cid: i64,
    uid: i64,
) -> rusqlite::Result<Option<(Option<String>, i64)>> {
    c.qrow(
        "SELECT presence, expires_at, last_seen_at FROM channel_presence WHERE channel_id = ?1 AND user_id = ?2",
        params![cid, uid],
        |r| {
            let (p, exp, seen): (String, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            Ok((if exp > now() { Some(p) } else { None }, seen))
        },
    )
    .optional()
}

/// (user id, presence, last_seen_at) of everyone present (not expired) in a channel.
pub fn present_in_channel(c: &Connection, cid: i64) -> rusqlite::Result<Vec<(i64, String, i64)>> {
    let mut st = c.prepare_cached(
        "SELECT user_id, presence, last_seen_at FROM channel_presence
         WHERE channel_id = ?1 AND expires_at > ?2 ORDER BY last_seen_at DESC, user_id",
    )?;
    let rows = st.query_map(params![cid, now()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

// --------------------------------------------------------------------- files

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

// --------------------------------------------------------------------- polls

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

// --------------------------------------------------- rendering shared with api

/// The full user object without viewer flags (for event data).
pub fn user_json(c: &Connection, api_url: &str, u: &UserRow) -> rusqlite::Result<Value> {
    let content = users::text_content(c, &u.description);
    Ok(crate::model::user(u, content, users::counts(c, u.id)?, api_url, None))
}

pub fn user_json_by_id(c: &Connection, api_url: &str, id: i64) -> ApiResult<Value> {
    let u = users::by_id(c, id)?.ok_or_else(ApiError::internal)?;
    Ok(user_json(c, api_url, &u)?)
}

pub fn source_json(c: &Connection, app_id: i64) -> rusqlite::Result<Value> {
    Ok(match apps::app_by_id(c, app_id)? {
        Some(a) => crate::model::app(&a),
        None => json!({"id": "", "name": "", "url": ""}),
    })
}

/// The full poll object (raw, user, results included); `viewer` adds
/// `is_your_response`; `with_token` shows `poll_token`.
pub fn poll_json(
    c: &Connection,
    api_url: &str,
    p: &PollRow,
    viewer: Option<i64>,
    with_token: bool,
) -> ApiResult<Value> {
    let responses = poll_responses(c, p.id)?;
    let closed = p.is_closed || p.closed_at <= now();
    let options: Vec<Value> = p
        .options
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let pos = i as i64 + 1;
            let ids: Vec<String> =
                responses.iter().filter(|(_, q)| *q == pos).map(|(u, _)| u.to_string()).collect();
            let mut o = json!({"text": text, "position": pos});
            if let Some(v) = viewer {
                o["is_your_response"] = json!(responses.iter().any(|(u, q)| *u == v && *q == pos));
            }
            // Results are shown once the poll has closed (and to its owner).
            if closed || viewer == Some(p.user_id) {
                o["respondents"] = json!(ids.len());
                if !p.is_anonymous {
                    o["respondent_ids"] = json!(ids);
                }
            }
            o
        })
        .collect();
    let mut v = json!({
        "id": p.id.to_string(),
        "type": p.kind,
        "prompt": p.prompt,
        "created_at": iso8601(p.created_at),
        "closed_at": iso8601(p.closed_at),
        "is_anonymous": p.is_anonymous,
        "is_public": p.is_public,
        "max_options": p.max_options,
        "options": options,
        "source": source_json(c, p.app_id)?,
        "user": user_json_by_id(c, api_url, p.user_id)?,
        "raw": p.raw,
    });
    if closed {
        v["is_closed"] = json!(true);
    }
    if p.is_deleted {
        v["is_deleted"] = json!(true);
    }
    if with_token {
        v["poll_token"] = json!(p.poll_token);
    }
    Ok(v)
}

/// Who sees a poll's events: its owner and everyone who answered.
pub fn poll_audience(c: &Connection, p: &PollRow) -> rusqlite::Result<Audience> {
    let mut users = vec![p.user_id];
    for u in poll_respondents(c, p.id)? {
        if !users.contains(&u) {
            users.push(u);
        }
    }
    Ok(Audience::Users { users, scopes: vec!["polls".into()] })
}

/// Writes a poll's last event, when it closed or was deleted (`flag`, set
/// true in meta): its meta also names the respondents
/// (`subscribed_user_ids`) and those of them who muted or blocked `actor`
/// (`suppress_notifications`).
pub fn emit_poll_end(tx: &mut Tx, api_url: &str, p: &PollRow, actor: i64, flag: &str) -> ApiResult<()> {
    let respondents = poll_respondents(tx, p.id)?;
    let subs: Vec<String> = respondents.iter().map(i64::to_string).collect();
    let quiet = suppressed(tx, actor, &respondents)?;
    let mut extra = json!({"subscribed_user_ids": subs, "suppress_notifications": quiet});
    extra[flag] = json!(true);
    emit_poll(tx, api_url, p, actor, extra)
}

/// Writes a `poll` event. `extra` adds meta keys (see `emit_poll_end`).
pub fn emit_poll(tx: &mut Tx, api_url: &str, p: &PollRow, actor: i64, extra: Value) -> ApiResult<()> {
    let mut meta = json!({"timestamp": now(), "id": p.id.to_string(), "type": "poll"});
    if let (Value::Object(m), Value::Object(e)) = (&mut meta, extra) {
        m.extend(e);
    }
    let data = json!({
        "poll": poll_json(tx, api_url, p, None, false)?,
        "user": user_json_by_id(tx, api_url, actor)?,
    });
    let audience = poll_audience(tx, p)?;
    tx.emit(NewEvent {
        kind: ObjType::Poll,
        audience,
        auth: None,
        envelope: crate::util::obj([("meta", meta), ("data", data)]),
    })
}

/// Those of `candidates` (other than `actor`) who muted or blocked `actor`:
/// an event's `suppress_notifications`, as id strings.
pub fn suppressed(c: &Connection, actor: i64, candidates: &[i64]) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM mutes WHERE user_id = ?1 AND muted_id = ?2)
             OR EXISTS(SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked_id = ?2)",
    )?;
    let mut out = Vec::new();
    for u in candidates.iter().filter(|u| **u != actor) {
        if st.query_row(params![u, actor], |r| r.get::<_, bool>(0))? {
            out.push(u.to_string());
        }
    }
    Ok(out)
}

/// Ids of users (helper for `ids=` lists of any type).
pub fn existing_user_ids(c: &Connection, ids: &[i64]) -> rusqlite::Result<Vec<i64>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let q = vec!["?"; ids.len()].join(",");
    let mut st = c.prepare_cached(&format!("SELECT id FROM users WHERE id IN ({q}) ORDER BY id"))?;
    let rows = st.query_map(params_from_iter(ids.iter()), |r| r.get(0))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_follow_groups() {
        let mut ch = ChannelRow {
            id: 1,
            kind: "x".into(),
            owner_id: Some(1),
            acl: Acl::default(),
            raw: json!({}),
            is_active: true,
            pm_key: None,
            activity: 1,
            created_at: 0,
        };
        ch.acl.write.user_ids = vec![2];
        ch.acl.read.user_ids = vec![3];
        assert!(ch.can_full(Some(1)) && !ch.can_full(Some(2)));
        assert!(ch.can_write(Some(2)) && !ch.can_write(Some(3)));
        assert!(ch.can_read(Some(3)) && !ch.can_read(Some(4)) && !ch.can_read(None));
        assert_eq!(ch.named_users(), vec![1, 2, 3]);
        ch.acl.read.public = true;
        assert!(ch.can_read(None));
        assert!(matches!(ch.audience(), Audience::Channel { users: None, .. }));
    }

    #[test]
    fn page_window() {
        let p = Page { since: Some(4), before: None, count: -2 };
        let (w, o) = p.sql("id");
        assert_eq!(w, " AND id > 4");
        assert_eq!(o, " ORDER BY id ASC LIMIT 3");
        let (rows, more) = p.finish(vec![5, 6, 7]);
        assert_eq!((rows, more), (vec![6, 5], true));
    }
}
