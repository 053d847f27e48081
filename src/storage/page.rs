//! The one page window every list uses (pnut's `since_id`, `before_id`,
//! `count`), in SQL.

/// pnut pagination: `since_id` < key < `before_id`, `count` > 0 takes the
/// newest N of that window, < 0 the oldest N; output is newest first.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub since: Option<i64>,
    pub before: Option<i64>,
    pub count: i64,
}

impl Page {
    /// SQL fragments for a key column: (`AND …` bounds, `ORDER BY … LIMIT n+1`).
    pub(crate) fn sql(&self, key: &str) -> (String, String) {
        let mut w = String::new();
        if let Some(s) = self.since {
            w.push_str(&format!(" AND {key} > {s}"));
        }
        if let Some(b) = self.before {
            w.push_str(&format!(" AND {key} < {b}"));
        }
        let dir = if self.count < 0 { "ASC" } else { "DESC" };
        (w, format!(" ORDER BY {key} {dir} LIMIT {}", self.count.unsigned_abs() + 1))
    }

    /// Trims the extra row, puts newest first; returns whether there is more.
    pub(crate) fn finish<T>(&self, rows: Vec<T>) -> (Vec<T>, bool) {
        trim_page(rows, self.count)
    }
}

/// A page read with one row more than `count` asks for (`count` < 0: the
/// oldest first, read ascending): drops the extra row, puts the page in the
/// order asked for, and says whether there was more.
pub(crate) fn trim_page<T>(mut rows: Vec<T>, count: i64) -> (Vec<T>, bool) {
    let n = count.unsigned_abs() as usize;
    let more = rows.len() > n;
    rows.truncate(n);
    if count < 0 {
        rows.reverse();
    }
    (rows, more)
}

/// SQLite steps a list query shaped by the client (search, explore,
/// interactions) may take: about a tenth of a second here. A filter that
/// matches nothing would otherwise make the server walk a whole table per
/// request; past the budget the query is interrupted and the client gets a
/// 400 asking for a narrower query (`error::ApiError`'s conversion).
pub const QUERY_BUDGET: u64 = 20_000_000;

/// Runs `f` with at most `steps` SQLite virtual-machine steps on `c`.
pub(crate) fn budgeted<T>(
    c: &rusqlite::Connection,
    steps: u64,
    f: impl FnOnce() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    const EVERY: i32 = 10_000;
    let mut left = steps / EVERY as u64;
    c.progress_handler(
        EVERY,
        Some(move || {
            left = left.saturating_sub(1);
            left == 0
        }),
    );
    let out = f();
    c.progress_handler(EVERY, None::<fn() -> bool>);
    out
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    const COUNT_TO_A_MILLION: &str =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) SELECT COUNT(*) FROM n";

    #[test]
    fn a_query_past_its_budget_is_stopped_and_is_the_clients_400() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let count = || c.query_row(COUNT_TO_A_MILLION, [], |r| r.get::<_, i64>(0));
        let e = budgeted(&c, 100_000, count).unwrap_err();
        assert_eq!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::OperationInterrupted));
        let api: crate::error::ApiError = e.into();
        assert_eq!(api.status, 400);
        assert!(api.message.contains("too long"), "{}", api.message);
        // Within budget, and after it (the handler is gone), it completes.
        assert_eq!(budgeted(&c, QUERY_BUDGET * 10, count).unwrap(), 1_000_000);
        assert_eq!(count().unwrap(), 1_000_000);
    }
}
