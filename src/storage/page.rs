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
