//! Interactions: what others did to a user or to one post (follows,
//! bookmarks, reposts, replies, mentions, poll answers), read from the rows
//! those actions left, so there is nothing extra to write or to forget to
//! delete: an unbookmark, an unfollow or a deleted reply takes its
//! interaction with it.
//!
//! Each row's `pagination_id` is its time in seconds in the high 32 bits,
//! the action in 3 bits and the row's own id in the low 29, so one page
//! window orders and pages every kind together, newest first.

use super::page::trim_page;
use super::Page;
use rusqlite::{params_from_iter, Connection};

/// Interactions come from the target user's newest this many posts, polls,
/// followers and mentions: what one page costs is bounded by it, not by
/// everything a user ever posted or was followed by.
pub const WINDOW: i64 = 1_000;

/// The interaction actions, in the order of their bits.
pub const ACTIONS: &[&str] = &["follow", "bookmark", "repost", "reply", "mention", "poll_response"];

/// One interaction: `object_id` is the user followed, the post acted on
/// (the mentioning post for a mention) or the poll answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub pagination_id: i64,
    pub action: &'static str,
    pub actor: i64,
    pub object_id: i64,
    pub at: i64,
}

/// Whose interactions.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Against this user and their posts and polls.
    User(i64),
    /// Against this one post (bookmarks, reposts, replies).
    Post(i64),
}

/// The columns every part selects: pid, kind, actor, oid, at.
fn cols(kind: usize, at: &str, id: &str, actor: &str, oid: &str) -> String {
    format!("(({at} << 32) | ({kind} << 29) | ({id} & 536870911)) AS pid, {kind} AS kind, {actor} AS actor, {oid} AS oid, {at} AS at")
}

/// A page of interactions of the `actions` asked for. `viewer` leaves out
/// actors they muted or blocked, or who blocked them.
pub fn page(
    c: &Connection,
    target: Target,
    actions: &[&str],
    viewer: Option<i64>,
    p: &Page,
) -> rusqlite::Result<(Vec<Interaction>, bool)> {
    let (t, on_post) = match target {
        Target::User(u) => (u, false),
        Target::Post(id) => (id, true),
    };
    // The post acted on: the target post, or one of the target user's
    // newest WINDOW posts (the cost of a page is bounded by that window,
    // not by everything the user ever posted).
    let mine = if on_post {
        "p.id = ?1".to_string()
    } else {
        format!("p.id IN (SELECT id FROM posts WHERE user_id = ?1 ORDER BY id DESC LIMIT {WINDOW})")
    };
    let mut parts: Vec<String> = Vec::new();
    for (kind, action) in ACTIONS.iter().enumerate() {
        if !actions.contains(action) {
            continue;
        }
        let sql = match (*action, on_post) {
            ("follow", false) => format!(
                "SELECT {} FROM follows f WHERE f.id IN
                   (SELECT id FROM follows WHERE followed_id = ?1 ORDER BY id DESC LIMIT {WINDOW})",
                cols(kind, "f.created_at", "f.id", "f.follower_id", "f.followed_id")
            ),
            ("bookmark", _) => format!(
                "SELECT {} FROM bookmarks b JOIN posts p ON p.id = b.post_id
                 WHERE {mine} AND p.is_deleted = 0 AND b.user_id != p.user_id",
                cols(kind, "b.created_at", "b.id", "b.user_id", "p.id")
            ),
            ("repost", _) => format!(
                "SELECT {} FROM posts r JOIN posts p ON p.id = r.repost_of
                 WHERE {mine} AND p.is_deleted = 0 AND r.is_deleted = 0 AND r.user_id != p.user_id",
                cols(kind, "r.created_at", "r.id", "r.user_id", "p.id")
            ),
            ("reply", _) => format!(
                "SELECT {} FROM posts r JOIN posts p ON p.id = r.reply_to
                 WHERE {mine} AND p.is_deleted = 0 AND r.is_deleted = 0 AND r.user_id != p.user_id",
                cols(kind, "r.created_at", "r.id", "r.user_id", "p.id")
            ),
            ("mention", false) => format!(
                "SELECT {} FROM posts p WHERE p.id IN
                   (SELECT post_id FROM post_mentions WHERE user_id = ?1 ORDER BY post_id DESC LIMIT {WINDOW})
                 AND p.is_deleted = 0 AND p.repost_of IS NULL AND p.user_id != ?1",
                cols(kind, "p.created_at", "p.id", "p.user_id", "p.id")
            ),
            ("poll_response", false) => format!(
                "SELECT {} FROM poll_respondents r JOIN polls q ON q.id = r.poll_id
                 WHERE q.id IN (SELECT id FROM polls WHERE user_id = ?1 ORDER BY id DESC LIMIT {WINDOW})
                   AND q.is_deleted = 0 AND r.user_id != ?1",
                cols(kind, "r.created_at", "r.rowid", "r.user_id", "q.id")
            ),
            _ => continue,
        };
        parts.push(sql);
    }
    if parts.is_empty() {
        return Ok((Vec::new(), false));
    }
    let n = p.count.unsigned_abs() as i64;
    let args = [t, viewer.unwrap_or(0), p.since.unwrap_or(0), p.before.unwrap_or(i64::MAX), n + 1];
    // ?2 is the viewer (0: nobody, so nobody is hidden).
    let hide = "actor NOT IN (SELECT muted_id FROM mutes WHERE user_id = ?2)
                AND actor NOT IN (SELECT blocked_id FROM blocks WHERE user_id = ?2)
                AND actor NOT IN (SELECT user_id FROM blocks WHERE blocked_id = ?2)";
    let order = if p.count < 0 { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT pid, kind, actor, oid, at FROM ({}) WHERE pid > ?3 AND pid < ?4 AND {hide} ORDER BY pid {order} LIMIT ?5",
        parts.join(" UNION ALL ")
    );
    let mut st = c.prepare_cached(&sql)?;
    let rows = super::page::budgeted(c, super::page::QUERY_BUDGET, || {
        st.query_map(params_from_iter(args), |r| {
            let kind: usize = r.get(1)?;
            Ok(Interaction {
                pagination_id: r.get(0)?,
                action: ACTIONS.get(kind).copied().unwrap_or("follow"),
                actor: r.get(2)?,
                object_id: r.get(3)?,
                at: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()
    })?;
    Ok(trim_page(rows, p.count))
}
