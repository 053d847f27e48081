//! The paged lists: the post streams, search and explore (`PostList`),
//! bookmarks, the user lists, the channel explore streams, and the one
//! page window they share (`paged`). SQL only; which posts a list holds for a
//! viewer is decided once, in `list_cond`.

use super::Cached;
use super::Page;
use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, OptionalExtension};

/// One listed item: its pagination id, the object id and an extra text
/// (the bookmark note).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub pid: i64,
    pub oid: i64,
    pub extra: Option<String>,
}

/// A page of listed items, newest first, and whether the window holds more.
pub struct Listed {
    pub items: Vec<Item>,
    pub more: bool,
}

/// Runs `inner` (a SELECT of `pid, oid, extra`) through the page window.
pub(super) fn paged(c: &Connection, inner: &str, mut args: Vec<Sql>, p: &Page) -> rusqlite::Result<Listed> {
    let n = p.count.unsigned_abs() as i64;
    let order = if p.count < 0 { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT pid, oid, extra FROM ({inner}) WHERE pid > ? AND pid < ? ORDER BY pid {order} LIMIT ?"
    );
    args.push(Sql::Integer(p.since.unwrap_or(0)));
    args.push(Sql::Integer(p.before.unwrap_or(i64::MAX)));
    args.push(Sql::Integer(n + 1));
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(args), |r| {
        Ok(Item { pid: r.get(0)?, oid: r.get(1)?, extra: r.get(2)? })
    })?;
    let (items, more) = super::trim_page(rows.collect::<rusqlite::Result<_>>()?, p.count);
    Ok(Listed { items, more })
}

/// The post lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostList {
    /// Everyone's posts (human users).
    Global,
    /// One user's posts and reposts.
    ByUser(i64),
    /// Posts mentioning the user.
    Mentions(i64),
    /// The user's and followed users' posts.
    Personal(i64),
    /// Personal plus mentions of the user.
    Unified(i64),
    /// Posts with this (normalised) tag.
    Tag(String),
    /// Posts in this thread.
    Thread(i64),
    /// A search (never deleted posts, never reposts).
    Search(Box<super::search::PostSearch>),
    /// An explore stream (never deleted posts, never reposts).
    Explore(Explore),
}

/// The explore streams (`GET /v1/posts/streams/explore`). Each looks at
/// the newest `EXPLORE_WINDOW` posts only, so its cost is bounded however
/// large the network grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Explore {
    /// Posts that started a conversation: someone else replied.
    Conversations,
    /// Posts with a photo (an oEmbed photo or an attached image file).
    Photos,
    /// Posts of the last two days that others replied to, reposted or
    /// bookmarked most, ranked (pagination as for search by relevance).
    Trending { now: i64 },
    /// Conversations among people the viewer follows that the viewer took
    /// no part in.
    MissedConversations { viewer: i64 },
    /// Posts by human users, not NSFW, that nobody reported.
    Moderated,
}

/// How many of the newest posts an explore stream looks at.
pub const EXPLORE_WINDOW: i64 = 10_000;

/// Which posts a list leaves out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hide {
    /// Posts by users this viewer blocked or was blocked by, and (unless
    /// `include_muted`) muted.
    pub for_viewer: Option<i64>,
    pub include_muted: bool,
    pub include_deleted: bool,
}

/// Which posts make `list` for this viewer (not the deleted-post rules):
/// the list's own condition and the viewer's `Hide`, with their values.
fn list_cond(list: &PostList, hide: Hide, args: &mut Vec<Sql>) -> String {
    let mut cond = match list {
        PostList::Global => "p.user_id IN (SELECT id FROM users WHERE type = 'human')".to_string(),
        PostList::ByUser(u) => {
            args.push(Sql::Integer(*u));
            "p.user_id = ?".into()
        }
        PostList::Mentions(u) => {
            args.push(Sql::Integer(*u));
            "p.id IN (SELECT post_id FROM post_mentions WHERE user_id = ?)".into()
        }
        PostList::Personal(u) => {
            args.extend([Sql::Integer(*u), Sql::Integer(*u)]);
            "(p.user_id = ? OR p.user_id IN (SELECT followed_id FROM follows WHERE follower_id = ?))".into()
        }
        PostList::Unified(u) => {
            args.extend([Sql::Integer(*u), Sql::Integer(*u), Sql::Integer(*u)]);
            "(p.user_id = ? OR p.user_id IN (SELECT followed_id FROM follows WHERE follower_id = ?)
              OR p.id IN (SELECT post_id FROM post_mentions WHERE user_id = ?))"
                .into()
        }
        PostList::Tag(t) => {
            args.push(Sql::Text(t.clone()));
            "p.id IN (SELECT post_id FROM post_tags WHERE tag = ?)".into()
        }
        PostList::Thread(t) => {
            args.push(Sql::Integer(*t));
            "p.thread_id = ?".into()
        }
        PostList::Search(s) => format!("p.is_deleted = 0 AND {}", super::search::post_filter(s, args)),
        PostList::Explore(e) => format!("p.is_deleted = 0 AND {}", explore_filter(*e, args)),
    };
    if let Some(v) = hide.for_viewer {
        args.extend([Sql::Integer(v), Sql::Integer(v)]);
        cond.push_str(
            " AND p.user_id NOT IN (SELECT blocked_id FROM blocks WHERE user_id = ?)
              AND p.user_id NOT IN (SELECT user_id FROM blocks WHERE blocked_id = ?)",
        );
        if !hide.include_muted {
            args.push(Sql::Integer(v));
            cond.push_str(" AND p.user_id NOT IN (SELECT muted_id FROM mutes WHERE user_id = ?)");
        }
    }
    cond
}

/// For a list polled with `since_id` = `since`: the posts of the list a
/// client may already hold (ids up to `since`) deleted, and those revised,
/// at or after the time post `since` was made (pnut's `meta.deleted_ids`
/// and `revised_ids`); at most 200 each, newest first.
pub fn changed_since(
    c: &Connection,
    list: &PostList,
    hide: Hide,
    since: i64,
) -> rusqlite::Result<(Vec<i64>, Vec<i64>)> {
    let Some(at) =
        c.qrow("SELECT created_at FROM posts WHERE id = ?1", [since], |r| r.get::<_, i64>(0)).optional()?
    else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut out = Vec::new();
    for changed in [
        "p.id IN (SELECT id FROM posts WHERE deleted_at >= ?)",
        "p.is_deleted = 0 AND p.id IN (SELECT post_id FROM post_revisions WHERE created_at >= ?)",
    ] {
        let mut args = vec![Sql::Integer(at), Sql::Integer(since)];
        let cond = list_cond(list, hide, &mut args);
        let sql = format!(
            "SELECT p.id FROM posts p WHERE {changed} AND p.id <= ? AND p.repost_of IS NULL AND {cond}
             ORDER BY p.id DESC LIMIT 200"
        );
        let mut st = c.prepare_cached(&sql)?;
        let ids =
            st.query_map(params_from_iter(args), |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
        out.push(ids);
    }
    let revised = out.pop().unwrap_or_default();
    Ok((out.pop().unwrap_or_default(), revised))
}

/// A page of post ids. Deleted reposts never show.
pub fn post_page(c: &Connection, list: &PostList, hide: Hide, p: &Page) -> rusqlite::Result<Listed> {
    let mut args: Vec<Sql> = Vec::new();
    let mut cond = String::from("NOT (p.repost_of IS NOT NULL AND p.is_deleted = 1)");
    if !hide.include_deleted {
        cond.push_str(" AND p.is_deleted = 0");
    }
    cond.push_str(" AND ");
    cond.push_str(&list_cond(list, hide, &mut args));
    let inner = match list {
        PostList::Search(s) => super::search::post_inner(s, &cond, &mut args),
        PostList::Explore(Explore::Trending { .. }) => {
            // Ranked by what others did to each post; numbered as search
            // results are, the best highest.
            let cap = super::search::RELEVANCE_CAP;
            format!(
                "SELECT {cap} + 1 - row_number() OVER (ORDER BY r.score DESC, r.id DESC) AS pid, r.id AS oid, NULL AS extra
                 FROM (SELECT p.id,
                         (SELECT COUNT(*) FROM posts x WHERE (x.reply_to = p.id OR x.repost_of = p.id)
                              AND x.is_deleted = 0 AND x.user_id != p.user_id)
                       + (SELECT COUNT(*) FROM bookmarks b WHERE b.post_id = p.id AND b.user_id != p.user_id) AS score
                       FROM posts p WHERE {cond}) r
                 WHERE r.score > 0 ORDER BY r.score DESC, r.id DESC LIMIT {cap}"
            )
        }
        _ => format!("SELECT p.id AS pid, p.id AS oid, NULL AS extra FROM posts p WHERE {cond}"),
    };
    // Lists shaped by the client's filters run on a budget.
    match list {
        PostList::Search(_) | PostList::Explore(_) => {
            super::page::budgeted(c, super::page::QUERY_BUDGET, || paged(c, &inner, args, p))
        }
        _ => paged(c, &inner, args, p),
    }
}

/// The `WHERE` part of an explore stream (`p` is the post).
fn explore_filter(e: Explore, args: &mut Vec<Sql>) -> String {
    let recent =
        format!("p.id > (SELECT IFNULL(MAX(id), 0) FROM posts) - {EXPLORE_WINDOW} AND p.repost_of IS NULL");
    let which = match e {
        Explore::Conversations => "p.reply_to IS NULL AND EXISTS (SELECT 1 FROM posts r
             WHERE r.reply_to = p.id AND r.is_deleted = 0 AND r.user_id != p.user_id)"
            .to_string(),
        Explore::Photos => "(EXISTS (SELECT 1 FROM json_each(p.raw, '$.\"io.pnut.core.oembed\"') o
                 WHERE json_extract(o.value, '$.type') = 'photo')
             OR EXISTS (SELECT 1 FROM json_each(p.raw, '$.\"io.pnut.core.file\"') f
                 WHERE json_extract(f.value, '$.kind') = 'image' OR json_extract(f.value, '$.mime_type') LIKE 'image/%'))"
            .to_string(),
        Explore::Trending { now } => {
            args.push(Sql::Integer(now - 2 * 86_400));
            "p.created_at > ?".to_string()
        }
        Explore::MissedConversations { viewer } => {
            args.extend([Sql::Integer(viewer), Sql::Integer(viewer), Sql::Integer(viewer)]);
            "p.reply_to IS NULL AND p.user_id != ?
             AND EXISTS (SELECT 1 FROM posts r WHERE r.thread_id = p.id AND r.id != p.id AND r.is_deleted = 0
                 AND r.user_id IN (SELECT followed_id FROM follows WHERE follower_id = ?))
             AND NOT EXISTS (SELECT 1 FROM posts m WHERE m.thread_id = p.id AND m.user_id = ?)"
                .to_string()
        }
        Explore::Moderated => "p.is_nsfw = 0 AND p.user_id IN (SELECT id FROM users WHERE type = 'human')
             AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.kind = 'post' AND r.object_id = p.id)"
            .to_string(),
    };
    format!("{recent} AND {which}")
}

/// A user's bookmarks, paged by bookmark id; `extra` is the note.
pub fn bookmark_page(c: &Connection, user: i64, include_deleted: bool, p: &Page) -> rusqlite::Result<Listed> {
    let del = if include_deleted { "" } else { " AND p.is_deleted = 0" };
    let inner = format!(
        "SELECT b.id AS pid, b.post_id AS oid, b.note AS extra FROM bookmarks b JOIN posts p ON p.id = b.post_id
         WHERE b.user_id = ?{del}"
    );
    paged(c, &inner, vec![Sql::Integer(user)], p)
}

/// The user lists on the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserList {
    Following(i64),
    Followers(i64),
    Muted(i64),
    Blocked(i64),
}

/// A page of user ids, paged by the relation's id (newest relation first).
pub fn user_page(c: &Connection, list: UserList, p: &Page) -> rusqlite::Result<Listed> {
    let (inner, u) = match list {
        UserList::Following(u) => {
            ("SELECT id AS pid, followed_id AS oid, NULL AS extra FROM follows WHERE follower_id = ?", u)
        }
        UserList::Followers(u) => {
            ("SELECT id AS pid, follower_id AS oid, NULL AS extra FROM follows WHERE followed_id = ?", u)
        }
        UserList::Muted(u) => {
            ("SELECT id AS pid, muted_id AS oid, NULL AS extra FROM mutes WHERE user_id = ?", u)
        }
        UserList::Blocked(u) => {
            ("SELECT id AS pid, blocked_id AS oid, NULL AS extra FROM blocks WHERE user_id = ?", u)
        }
    };
    paged(c, inner, vec![Sql::Integer(u)], p)
}

/// Public, active channels for the channel explore streams: by latest
/// activity (`by_activity`, the key is the activity counter) or newest.
pub fn channel_explore_page(c: &Connection, by_activity: bool, p: &Page) -> rusqlite::Result<Listed> {
    let key = if by_activity { "activity" } else { "id" };
    let inner = format!(
        "SELECT {key} AS pid, id AS oid, NULL AS extra FROM channels
         WHERE is_active = 1 AND json_extract(acl, '$.read.public') = 1"
    );
    paged(c, &inner, Vec::new(), p)
}
