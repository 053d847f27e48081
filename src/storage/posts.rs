//! Posts, reposts, revisions, mentions, tags, bookmarks, the social graph
//! (follows, mutes, blocks) and presence; the paged lists are in `lists`
//! (re-exported here).
//! Rendering and the rules live in `api::posts`; only SQL is here.

pub use super::lists::*;
use super::{json_col, Cached};

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct PostRow {
    pub id: i64,
    pub user_id: i64,
    pub app_id: i64,
    pub created_at: i64,
    pub thread_id: i64,
    pub reply_to: Option<i64>,
    pub repost_of: Option<i64>,
    pub content: Value,
    pub is_nsfw: bool,
    pub raw: Value,
    pub revision: i64,
    pub is_deleted: bool,
}

const COLS: &str =
    "id, user_id, app_id, created_at, thread_id, reply_to, repost_of, content, is_nsfw, raw, revision, is_deleted";

fn from_row(r: &Row) -> rusqlite::Result<PostRow> {
    Ok(PostRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        app_id: r.get(2)?,
        created_at: r.get(3)?,
        thread_id: r.get(4)?,
        reply_to: r.get(5)?,
        repost_of: r.get(6)?,
        content: json_col(r, 7)?,
        is_nsfw: r.get(8)?,
        raw: json_col(r, 9)?,
        revision: r.get(10)?,
        is_deleted: r.get(11)?,
    })
}

pub fn by_id(c: &Connection, id: i64) -> rusqlite::Result<Option<PostRow>> {
    c.qrow(&format!("SELECT {COLS} FROM posts WHERE id = ?1"), [id], from_row).optional()
}

/// What a new post or repost is made of.
pub struct NewPost<'a> {
    pub user_id: i64,
    pub app_id: i64,
    pub created_at: i64,
    /// The parent's thread (None: the post starts its own thread).
    pub thread_id: Option<i64>,
    pub reply_to: Option<i64>,
    pub repost_of: Option<i64>,
    pub content: &'a Value,
    pub is_nsfw: bool,
    pub raw: &'a Value,
}

/// Inserts a post (a root post's thread is its own id) and returns its row
/// as a read would.
pub fn insert(c: &Connection, p: &NewPost) -> rusqlite::Result<PostRow> {
    // The id SQLite would pick (the largest plus one), chosen here so that a
    // new thread's root names itself as its thread in the same insert: an
    // update afterwards rewrote the row and moved its posts_by_thread entry,
    // one more page in every commit's WAL. This runs in a write
    // transaction, so no other writer can take the id meanwhile.
    let id: i64 = c.qrow("SELECT COALESCE(MAX(id), 0) + 1 FROM posts", [], |r| r.get(0))?;
    c.qexec(
        "INSERT INTO posts (id, user_id, app_id, created_at, thread_id, reply_to, repost_of, content, is_nsfw, raw, text_hash)
         VALUES (?1, ?2, ?3, ?4, COALESCE(?5, ?1), ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            id,
            p.user_id,
            p.app_id,
            p.created_at,
            p.thread_id,
            p.reply_to,
            p.repost_of,
            p.content.to_string(),
            p.is_nsfw,
            p.raw.to_string(),
            p.repost_of.is_none().then(|| text_hash(p.content["text"].as_str().unwrap_or_default()))
        ],
    )?;
    Ok(PostRow {
        id,
        user_id: p.user_id,
        app_id: p.app_id,
        created_at: p.created_at,
        thread_id: p.thread_id.unwrap_or(id),
        reply_to: p.reply_to,
        repost_of: p.repost_of,
        content: p.content.clone(),
        is_nsfw: p.is_nsfw,
        raw: p.raw.clone(),
        revision: 0,
        is_deleted: false,
    })
}

pub fn set_mentions(c: &Connection, post_id: i64, users: &[i64]) -> rusqlite::Result<()> {
    for u in users {
        c.qexec("INSERT OR IGNORE INTO post_mentions (post_id, user_id) VALUES (?1, ?2)", [post_id, *u])?;
    }
    Ok(())
}

pub fn set_tags(c: &Connection, post_id: i64, tags: &[String]) -> rusqlite::Result<()> {
    for t in tags {
        c.qexec("INSERT OR IGNORE INTO post_tags (tag, post_id) VALUES (?1, ?2)", params![t, post_id])?;
    }
    Ok(())
}

pub fn mentioned_users(c: &Connection, post_id: i64) -> rusqlite::Result<Vec<i64>> {
    let mut st = c.prepare_cached("SELECT user_id FROM post_mentions WHERE post_id = ?1 ORDER BY user_id")?;
    let rows = st.query_map([post_id], |r| r.get(0))?;
    rows.collect()
}

/// Keeps the current version as revision `p.revision` and writes the new one.
pub fn revise(c: &Connection, p: &PostRow, content: &Value, is_nsfw: bool, now: i64) -> rusqlite::Result<()> {
    c.qexec(
        "INSERT INTO post_revisions (post_id, revision, content, is_nsfw, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![p.id, p.revision, p.content.to_string(), p.is_nsfw, now],
    )?;
    c.qexec(
        "UPDATE posts SET content = ?1, is_nsfw = ?2, revision = revision + 1 WHERE id = ?3",
        params![content.to_string(), is_nsfw, p.id],
    )?;
    Ok(())
}

/// Earlier versions, newest first: (revision, content, is_nsfw).
pub fn revisions(c: &Connection, post_id: i64) -> rusqlite::Result<Vec<(i64, Value, bool)>> {
    let mut st = c.prepare_cached(
        "SELECT revision, content, is_nsfw FROM post_revisions WHERE post_id = ?1 ORDER BY revision DESC",
    )?;
    let rows = st.query_map([post_id], |r| Ok((r.get(0)?, json_col(r, 1)?, r.get(2)?)))?;
    rows.collect()
}

/// Has `user` a live post (not a repost) with exactly `text` created at
/// or after `since`?
pub fn recent_duplicate(c: &Connection, user: i64, text: &str, since: i64) -> rusqlite::Result<bool> {
    // The hash finds the candidates (one index probe); the text itself
    // decides, so a hash collision never refuses a post.
    c.qrow(
        "SELECT EXISTS (SELECT 1 FROM posts WHERE user_id = ?1 AND text_hash = ?2 AND created_at >= ?3
           AND is_deleted = 0 AND json_extract(content, '$.text') = ?4)",
        params![user, text_hash(text), since, text],
        |r| r.get(0),
    )
}

/// The first 8 bytes of the text's SHA-256, as a number (`posts.text_hash`).
fn text_hash(text: &str) -> i64 {
    let h = crate::util::sha256(text);
    i64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
}

pub fn mark_deleted(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.qexec(
        "UPDATE posts SET is_deleted = 1, deleted_at = ?2 WHERE id = ?1",
        params![id, crate::util::now()],
    )?;
    Ok(())
}

/// Live reposts of a post.
pub fn live_reposts_of(c: &Connection, id: i64) -> rusqlite::Result<Vec<i64>> {
    let mut st =
        c.prepare_cached("SELECT id FROM posts WHERE repost_of = ?1 AND is_deleted = 0 ORDER BY id")?;
    let rows = st.query_map([id], |r| r.get(0))?;
    rows.collect()
}

/// Every repost of `id`, deleted ones included.
pub fn reposts_of(c: &Connection, id: i64) -> rusqlite::Result<Vec<i64>> {
    let mut st = c.prepare_cached("SELECT id FROM posts WHERE repost_of = ?1 ORDER BY id")?;
    let rows = st.query_map([id], |r| r.get(0))?;
    rows.collect()
}

/// `user`'s live repost of `original`, if any.
pub fn live_repost_by(c: &Connection, original: i64, user: i64) -> rusqlite::Result<Option<i64>> {
    c.qrow(
        "SELECT id FROM posts WHERE repost_of = ?1 AND user_id = ?2 AND is_deleted = 0",
        [original, user],
        |r| r.get(0),
    )
    .optional()
}

/// `counts` of a post: bookmarks, replies, reposts, threads (live posts in
/// its thread below it; non-zero only for a thread's root).
pub fn counts(c: &Connection, id: i64) -> rusqlite::Result<[i64; 4]> {
    c.qrow(
        "SELECT (SELECT COUNT(*) FROM bookmarks WHERE post_id = ?1),
                (SELECT COUNT(*) FROM posts WHERE reply_to = ?1 AND is_deleted = 0),
                (SELECT COUNT(*) FROM posts WHERE repost_of = ?1 AND is_deleted = 0),
                (SELECT COUNT(*) FROM posts WHERE thread_id = ?1 AND id != ?1 AND is_deleted = 0)",
        [id],
        |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
    )
}

/// (you_bookmarked, you_reposted) for `viewer` on post `id`.
pub fn viewer_flags(c: &Connection, id: i64, viewer: i64) -> rusqlite::Result<(bool, bool)> {
    c.qrow(
        "SELECT EXISTS(SELECT 1 FROM bookmarks WHERE post_id = ?1 AND user_id = ?2),
                EXISTS(SELECT 1 FROM posts WHERE repost_of = ?1 AND user_id = ?2 AND is_deleted = 0)",
        [id, viewer],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The newest `limit` users who bookmarked a post.
pub fn bookmarkers(c: &Connection, post: i64, limit: i64) -> rusqlite::Result<Vec<i64>> {
    let mut st =
        c.prepare_cached("SELECT user_id FROM bookmarks WHERE post_id = ?1 ORDER BY id DESC LIMIT ?2")?;
    let rows = st.query_map([post, limit], |r| r.get(0))?;
    rows.collect()
}

/// The newest `limit` users with a live repost of a post.
pub fn reposters(c: &Connection, post: i64, limit: i64) -> rusqlite::Result<Vec<i64>> {
    let mut st = c.prepare_cached(
        "SELECT user_id FROM posts WHERE repost_of = ?1 AND is_deleted = 0 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = st.query_map([post, limit], |r| r.get(0))?;
    rows.collect()
}

/// Adds a bookmark; false if it was there already.
pub fn bookmark(
    c: &Connection,
    user: i64,
    post: i64,
    note: Option<&str>,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = c.qexec(
        "INSERT OR IGNORE INTO bookmarks (user_id, post_id, note, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![user, post, note, now],
    )?;
    Ok(n > 0)
}

/// Removes a bookmark; false if there was none.
pub fn unbookmark(c: &Connection, user: i64, post: i64) -> rusqlite::Result<bool> {
    Ok(c.qexec("DELETE FROM bookmarks WHERE user_id = ?1 AND post_id = ?2", [user, post])? > 0)
}

/// The three relations between users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Follow,
    Mute,
    Block,
}

impl Edge {
    /// (table, from column, to column)
    fn cols(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Edge::Follow => ("follows", "follower_id", "followed_id"),
            Edge::Mute => ("mutes", "user_id", "muted_id"),
            Edge::Block => ("blocks", "user_id", "blocked_id"),
        }
    }
}

/// Adds `from → to`; false if it was there already.
pub fn link(c: &Connection, e: Edge, from: i64, to: i64, now: i64) -> rusqlite::Result<bool> {
    let (t, a, b) = e.cols();
    let n = c.qexec(
        &format!("INSERT OR IGNORE INTO {t} ({a}, {b}, created_at) VALUES (?1, ?2, ?3)"),
        params![from, to, now],
    )?;
    Ok(n > 0)
}

/// Removes `from → to`; false if there was none.
pub fn unlink(c: &Connection, e: Edge, from: i64, to: i64) -> rusqlite::Result<bool> {
    let (t, a, b) = e.cols();
    Ok(c.qexec(&format!("DELETE FROM {t} WHERE {a} = ?1 AND {b} = ?2"), [from, to])? > 0)
}

pub fn has(c: &Connection, e: Edge, from: i64, to: i64) -> rusqlite::Result<bool> {
    let (t, a, b) = e.cols();
    c.qrow(&format!("SELECT EXISTS(SELECT 1 FROM {t} WHERE {a} = ?1 AND {b} = ?2)"), [from, to], |r| r.get(0))
}

/// How `viewer` and `target` relate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rel {
    pub you_follow: bool,
    pub follows_you: bool,
    pub you_muted: bool,
    pub you_blocked: bool,
    pub blocked_you: bool,
}

pub fn relation(c: &Connection, viewer: i64, target: i64) -> rusqlite::Result<Rel> {
    c.qrow(
        "SELECT EXISTS(SELECT 1 FROM follows WHERE follower_id = ?1 AND followed_id = ?2),
                EXISTS(SELECT 1 FROM follows WHERE follower_id = ?2 AND followed_id = ?1),
                EXISTS(SELECT 1 FROM mutes WHERE user_id = ?1 AND muted_id = ?2),
                EXISTS(SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked_id = ?2),
                EXISTS(SELECT 1 FROM blocks WHERE user_id = ?2 AND blocked_id = ?1)",
        [viewer, target],
        |r| {
            Ok(Rel {
                you_follow: r.get(0)?,
                follows_you: r.get(1)?,
                you_muted: r.get(2)?,
                you_blocked: r.get(3)?,
                blocked_you: r.get(4)?,
            })
        },
    )
}

/// Of `users`, those who muted or blocked `actor` (sorted, no repeats).
pub fn muted_or_blocked_by(c: &Connection, users: &[i64], actor: i64) -> rusqlite::Result<Vec<i64>> {
    let mut out = Vec::new();
    for u in users {
        let hit: bool = c.qrow(
            "SELECT EXISTS(SELECT 1 FROM mutes WHERE user_id = ?1 AND muted_id = ?2)
                 OR EXISTS(SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked_id = ?2)",
            [*u, actor],
            |r| r.get(0),
        )?;
        if hit && *u != actor {
            out.push(*u);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Numbers for a user's `counts`: (posts, followers, following, bookmarks).
pub fn user_counts(c: &Connection, id: i64) -> rusqlite::Result<[i64; 4]> {
    // Kept by triggers (migration 5).
    Ok(c.qrow(
        "SELECT posts, followers, following, bookmarks FROM user_counts WHERE user_id = ?1",
        [id],
        |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
    )
    .optional()?
    .unwrap_or([0; 4]))
}

/// A stored presence: (presence or None for offline, expires_at, last_seen_at).
pub type PresenceRow = (Option<String>, i64, i64);

/// Sets (Some) or clears (None) a user's presence.
pub fn set_presence(
    c: &Connection,
    user: i64,
    presence: Option<&str>,
    expires_at: i64,
    now: i64,
) -> rusqlite::Result<()> {
    c.qexec(
        "INSERT INTO presence (user_id, presence, expires_at, last_seen_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(user_id) DO UPDATE SET presence = ?2, expires_at = ?3, last_seen_at = ?4",
        params![user, presence, expires_at, now],
    )?;
    Ok(())
}

pub fn presence_of(c: &Connection, user: i64) -> rusqlite::Result<Option<PresenceRow>> {
    c.qrow("SELECT presence, expires_at, last_seen_at FROM presence WHERE user_id = ?1", [user], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .optional()
}

/// Users whose presence is set and not expired at `now`, most recent first.
pub fn online(c: &Connection, now: i64) -> rusqlite::Result<Vec<i64>> {
    let mut st = c.prepare_cached(
        "SELECT user_id FROM presence WHERE presence IS NOT NULL AND expires_at > ?1
         ORDER BY last_seen_at DESC, user_id DESC",
    )?;
    let rows = st.query_map([now], |r| r.get(0))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Page;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::storage::migrations::migrate(&mut c).unwrap();
        c.execute_batch(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES (1, 'a', '!', 0), (2, 'b', '!', 0);
             INSERT INTO apps (id, client_id, secret_hash, name, created_at) VALUES (1, 'c', x'00', 'app', 0);",
        )
        .unwrap();
        c
    }

    fn post(c: &Connection, user: i64) -> i64 {
        let v = serde_json::json!({});
        insert(
            c,
            &NewPost {
                user_id: user,
                app_id: 1,
                created_at: 0,
                thread_id: None,
                reply_to: None,
                repost_of: None,
                content: &v,
                is_nsfw: false,
                raw: &v,
            },
        )
        .unwrap()
        .id
    }

    /// The row `insert` returns is the row a read returns, for a root post
    /// and for a reply.
    #[test]
    fn insert_returns_the_stored_row() {
        let c = db();
        let (content, raw) =
            (serde_json::json!({"text": "hi", "entities": {}}), serde_json::json!({"a": [1]}));
        let root = post(&c, 1);
        let new = NewPost {
            user_id: 1,
            app_id: 1,
            created_at: 42,
            thread_id: Some(root),
            reply_to: Some(root),
            repost_of: None,
            content: &content,
            is_nsfw: true,
            raw: &raw,
        };
        let row = insert(&c, &new).unwrap();
        assert_eq!(by_id(&c, row.id).unwrap(), Some(row));
        let root_row = insert(&c, &NewPost { thread_id: None, reply_to: None, ..new }).unwrap();
        assert_eq!(root_row.thread_id, root_row.id);
        assert_eq!(by_id(&c, root_row.id).unwrap(), Some(root_row));
    }

    fn ids(p: &Listed) -> Vec<i64> {
        p.items.iter().map(|i| i.oid).collect()
    }

    #[test]
    fn paging_windows_and_order() {
        let c = db();
        for _ in 0..5 {
            post(&c, 1);
        }
        let pr = |before, since, count| Page { before, since, count };
        let all = Hide { include_deleted: true, ..Hide::default() };
        let g = |p| post_page(&c, &PostList::Global, all, &p).unwrap();
        let p = g(pr(None, None, 2));
        assert_eq!((ids(&p), p.more), (vec![5, 4], true));
        let p = g(pr(Some(4), None, 20));
        assert_eq!((ids(&p), p.more), (vec![3, 2, 1], false));
        let p = g(pr(None, Some(1), -2));
        assert_eq!((ids(&p), p.more), (vec![3, 2], true));
        let p = g(pr(Some(5), Some(2), 20));
        assert_eq!(ids(&p), vec![4, 3]);
        let p = g(pr(None, Some(5), 20));
        assert_eq!((ids(&p), p.more), (vec![], false));
    }

    #[test]
    fn graph_edges_and_relation() {
        let c = db();
        assert!(link(&c, Edge::Follow, 1, 2, 0).unwrap());
        assert!(!link(&c, Edge::Follow, 1, 2, 0).unwrap());
        assert!(link(&c, Edge::Mute, 2, 1, 0).unwrap());
        let r = relation(&c, 1, 2).unwrap();
        assert!(r.you_follow && !r.follows_you && !r.you_muted);
        assert_eq!(muted_or_blocked_by(&c, &[2, 2, 1], 1).unwrap(), vec![2]);
        assert!(unlink(&c, Edge::Follow, 1, 2).unwrap());
        assert!(!unlink(&c, Edge::Follow, 1, 2).unwrap());
        assert_eq!(user_counts(&c, 2).unwrap(), [0, 0, 0, 0]);
    }
}
