//! Channels, ACLs, subscriptions, mutes, markers and channel presence:
//! rows and their SQL. Messages, files and polls have their own modules,
//! re-exported here for the channel handlers.

pub use super::files::*;
pub use super::messages::*;
pub use super::polls::*;
use super::Page;
use super::{json_col, Cached};
use crate::event::Audience;
use crate::util::now;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

pub(super) fn next_activity(c: &Connection) -> rusqlite::Result<i64> {
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
        "UPDATE channels SET acl = ?1, raw = ?2, is_active = ?3, owner_id = ?4 WHERE id = ?5",
        params![
            serde_json::to_string(&ch.acl).unwrap_or_default(),
            ch.raw.to_string(),
            ch.is_active,
            ch.owner_id,
            ch.id
        ],
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
    use serde_json::json;

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
