//! Search: turning a client's words into a safe FTS5 query, and the SQL of
//! each search. The indexes are kept by triggers (migration 011); who may
//! see what is decided as everywhere else (posts: the same `Hide` as the
//! post streams; users: blocks; channels, messages, polls: by the caller,
//! row by row, from the same rules as a fetch by id).
//!
//! Ordered by relevance, a result's `pagination_id` is `RELEVANCE_CAP`
//! minus its rank (the best is highest), so the usual page window (newest
//! first, `before_id` = the last page's `min_id`) pages through it.

use super::posts::{Item, Listed};
use super::Page;
use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection};

/// Ordered by relevance, the newest this many matches are ranked (CPU per
/// query: 2,000 bm25 scores is a few milliseconds whatever the word).
pub const RELEVANCE_CAP: i64 = 2_000;
/// At most this many words in a query.
pub const MAX_TERMS: usize = 16;
/// Candidates a search that filters row by row looks at per page.
pub const SCAN_CAP: i64 = 2_000;

/// The FTS5 query for `q`: each word (letters, digits, `_`) quoted, all of
/// them required; a trailing `*` on a word of 2+ characters makes it a
/// prefix. `None` when `q` has no word. No FTS5 syntax gets through.
pub fn fts_query(q: &str) -> Option<String> {
    let mut terms = Vec::new();
    for raw in q.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '*')) {
        let prefix = raw.ends_with('*');
        let word: String = raw.chars().filter(|c| c.is_alphanumeric() || *c == '_').collect();
        if word.is_empty() {
            continue;
        }
        let star = if prefix && word.chars().count() >= 2 { "*" } else { "" };
        terms.push(format!("\"{word}\"{star}"));
        if terms.len() == MAX_TERMS {
            break;
        }
    }
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// A post search: pnut's parameters that spout filters on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostSearch {
    pub q: Option<String>,
    pub relevance: bool,
    pub creator_id: Option<i64>,
    pub reply_to: Option<i64>,
    pub thread_id: Option<i64>,
    pub tags: Vec<String>,
    pub mentions: Vec<i64>,
    pub has_mentions: Option<bool>,
    pub is_reply: Option<bool>,
    pub is_nsfw: Option<bool>,
    pub is_revised: Option<bool>,
    pub client_id: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    pub user_types: Vec<String>,
    pub exclude_user_ids: Vec<i64>,
    pub raw_types: Vec<String>,
}

fn list_sql(n: usize) -> String {
    vec!["?"; n].join(",")
}

/// The `WHERE` part of a post search (`p` is the post), with its values.
/// Reposts are never results: they have no text of their own.
pub(super) fn post_filter(s: &PostSearch, args: &mut Vec<Sql>) -> String {
    let mut w = vec!["p.repost_of IS NULL".to_string()];
    // The words are matched in the query's own FROM (`post_inner`).
    let mut int = |cond: &str, v: Option<i64>, args: &mut Vec<Sql>| {
        if let Some(v) = v {
            w.push(cond.into());
            args.push(Sql::Integer(v));
        }
    };
    int("p.user_id = ?", s.creator_id, args);
    int("p.reply_to = ?", s.reply_to, args);
    int("p.thread_id = ?", s.thread_id, args);
    int("p.created_at > ?", s.created_after, args);
    int("p.created_at < ?", s.created_before, args);
    if !s.tags.is_empty() {
        w.push(format!("p.id IN (SELECT post_id FROM post_tags WHERE tag IN ({}))", list_sql(s.tags.len())));
        args.extend(s.tags.iter().map(|t| Sql::Text(t.clone())));
    }
    match s.has_mentions {
        Some(true) => w.push("EXISTS (SELECT 1 FROM post_mentions m WHERE m.post_id = p.id)".into()),
        Some(false) => w.push("NOT EXISTS (SELECT 1 FROM post_mentions m WHERE m.post_id = p.id)".into()),
        None if !s.mentions.is_empty() => {
            w.push(format!(
                "p.id IN (SELECT post_id FROM post_mentions WHERE user_id IN ({}))",
                list_sql(s.mentions.len())
            ));
            args.extend(s.mentions.iter().map(|u| Sql::Integer(*u)));
        }
        None => {}
    }
    match s.is_reply {
        Some(true) => w.push("p.reply_to IS NOT NULL".into()),
        Some(false) => w.push("p.reply_to IS NULL".into()),
        None => {}
    }
    if s.is_nsfw == Some(false) {
        w.push("p.is_nsfw = 0".into());
    }
    if s.is_revised == Some(true) {
        w.push("p.revision > 0".into());
    }
    if let Some(cid) = &s.client_id {
        w.push("p.app_id IN (SELECT id FROM apps WHERE client_id = ?)".into());
        args.push(Sql::Text(cid.clone()));
    }
    if !s.user_types.is_empty() {
        w.push(format!(
            "p.user_id IN (SELECT id FROM users WHERE type IN ({}))",
            list_sql(s.user_types.len())
        ));
        args.extend(s.user_types.iter().map(|t| Sql::Text(t.clone())));
    }
    if !s.exclude_user_ids.is_empty() {
        w.push(format!("p.user_id NOT IN ({})", list_sql(s.exclude_user_ids.len())));
        args.extend(s.exclude_user_ids.iter().map(|u| Sql::Integer(*u)));
    }
    if !s.raw_types.is_empty() {
        w.push(format!(
            "EXISTS (SELECT 1 FROM json_each(p.raw) j WHERE j.key IN ({}))",
            list_sql(s.raw_types.len())
        ));
        args.extend(s.raw_types.iter().map(|t| Sql::Text(t.clone())));
    }
    w.join(" AND ")
}

/// The inner query (`pid, oid, extra`) of a search of `table` (as `t`,
/// the alias `cond` uses) under `cond`, its words matched in `index`;
/// `q`'s value goes first in `args`.
fn inner(
    index: &str,
    (table, t): (&str, &str),
    q: Option<&str>,
    relevance: bool,
    cond: &str,
    args: &mut Vec<Sql>,
) -> String {
    let Some(q) = q else {
        return format!("SELECT {t}.id AS pid, {t}.id AS oid, NULL AS extra FROM {table} {t} WHERE {cond}");
    };
    args.insert(0, Sql::Text(q.to_string()));
    if relevance {
        // The newest RELEVANCE_CAP matches (read from the index newest
        // first, so a common word costs no more than a rare one), ranked
        // by FTS5's bm25, newest first among equals, numbered.
        args.push(Sql::Integer(RELEVANCE_CAP));
        format!(
            "SELECT {RELEVANCE_CAP} + 1 - row_number() OVER (ORDER BY r.rank, r.id DESC) AS pid, r.id AS oid, NULL AS extra
             FROM (SELECT {t}.id, f.rank FROM {index} f JOIN {table} {t} ON {t}.id = f.rowid
                   WHERE {index} MATCH ? AND {cond} ORDER BY f.rowid DESC LIMIT ?) r"
        )
    } else {
        // By id: the page window goes to the index as rowid bounds.
        format!(
            "SELECT f.rowid AS pid, f.rowid AS oid, NULL AS extra FROM {index} f JOIN {table} {t} ON {t}.id = f.rowid
             WHERE {index} MATCH ? AND {cond}"
        )
    }
}

/// The inner query (`pid, oid, extra`) of a post search under `cond`
/// (the search's filter and the viewer's `Hide`, built by `posts`).
pub(super) fn post_inner(s: &PostSearch, cond: &str, args: &mut Vec<Sql>) -> String {
    inner("posts_fts", ("posts", "p"), s.q.as_deref(), s.relevance, cond, args)
}

/// A user search.
#[derive(Clone, Debug, Default)]
pub struct UserSearch {
    pub q: Option<String>,
    pub relevance: bool,
    pub user_types: Vec<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    /// (viewer, follows the viewer) / (viewer, followed by the viewer).
    pub is_follower: Option<(i64, bool)>,
    pub is_following: Option<(i64, bool)>,
}

/// A page of user ids matching `s`, without users who blocked `viewer` or
/// whom the viewer blocked.
pub fn users(c: &Connection, s: &UserSearch, viewer: Option<i64>, p: &Page) -> rusqlite::Result<Listed> {
    let mut args: Vec<Sql> = Vec::new();
    let mut w = vec!["1".to_string()];
    let mut text = |cond: &str, v: &Option<String>, args: &mut Vec<Sql>| {
        if let Some(v) = v {
            w.push(cond.into());
            args.push(Sql::Text(v.clone()));
        }
    };
    text("u.locale = ?", &s.locale, &mut args);
    text("u.timezone = ?", &s.timezone, &mut args);
    if let Some(t) = s.created_after {
        w.push("u.created_at > ?".into());
        args.push(Sql::Integer(t));
    }
    if let Some(t) = s.created_before {
        w.push("u.created_at < ?".into());
        args.push(Sql::Integer(t));
    }
    if !s.user_types.is_empty() {
        w.push(format!("u.type IN ({})", list_sql(s.user_types.len())));
        args.extend(s.user_types.iter().map(|t| Sql::Text(t.clone())));
    }
    if let Some((v, yes)) = s.is_follower {
        let not = if yes { "" } else { "NOT " };
        w.push(format!("u.id {not}IN (SELECT follower_id FROM follows WHERE followed_id = ?)"));
        args.push(Sql::Integer(v));
    }
    if let Some((v, yes)) = s.is_following {
        let not = if yes { "" } else { "NOT " };
        w.push(format!("u.id {not}IN (SELECT followed_id FROM follows WHERE follower_id = ?)"));
        args.push(Sql::Integer(v));
    }
    if let Some(v) = viewer {
        w.push("u.id NOT IN (SELECT blocked_id FROM blocks WHERE user_id = ?)".into());
        w.push("u.id NOT IN (SELECT user_id FROM blocks WHERE blocked_id = ?)".into());
        args.extend([Sql::Integer(v), Sql::Integer(v)]);
    }
    let cond = w.join(" AND ");
    let inner = inner("users_fts", ("users", "u"), s.q.as_deref(), s.relevance, &cond, &mut args);
    super::page::budgeted(c, super::page::QUERY_BUDGET, || super::posts::paged(c, &inner, args, p))
}

/// Ids matching `fts` in one of the other indexes (`channels_fts`,
/// `messages_fts`, `polls_fts`), newest first inside the page window, at
/// most `SCAN_CAP`: the caller keeps those the viewer may see.
pub fn candidates(
    c: &Connection,
    index: &str,
    fts: Option<&str>,
    table: &str,
    p: &Page,
) -> rusqlite::Result<Vec<i64>> {
    let (bounds, _) = p.sql("t.id");
    let (from, args) = match fts {
        Some(q) => {
            (format!("{table} t JOIN {index} f ON f.rowid = t.id WHERE {index} MATCH ?"), vec![q.to_string()])
        }
        None => (format!("{table} t WHERE 1"), Vec::new()),
    };
    let sql = format!("SELECT t.id FROM {from}{bounds} ORDER BY t.id DESC LIMIT {SCAN_CAP}");
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(args), |r| r.get(0))?;
    rows.collect()
}

/// Turns ids the caller kept (newest first, from `candidates`) into a page
/// of `p.count`, with `more` when more were kept or the scan was cut.
pub fn page_of(kept: Vec<i64>, scanned_all: bool, p: &Page) -> Listed {
    let n = p.count.unsigned_abs() as usize;
    let more = kept.len() > n || !scanned_all;
    let items = kept.into_iter().take(n).map(|id| Item { pid: id, oid: id, extra: None }).collect();
    Listed { items, more }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_words_and_nothing_else() {
        assert_eq!(fts_query("hello world").as_deref(), Some("\"hello\" \"world\""));
        assert_eq!(
            fts_query("  \"a\" OR b* NEAR(x) -- ; fo*").as_deref(),
            Some("\"a\" \"OR\" \"b\" \"NEAR\" \"x\" \"fo\"*")
        );
        assert_eq!(fts_query("café über").as_deref(), Some("\"café\" \"über\""));
        assert_eq!(fts_query("*** ---"), None);
        assert_eq!(fts_query(&"w ".repeat(50)).unwrap().matches('"').count(), MAX_TERMS * 2);
    }
}
