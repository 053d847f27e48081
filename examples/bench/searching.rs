//! The `search` scenario (issue 20): what the full-text index costs and
//! what it gives. First ingest with the index on and off (a fresh server
//! each, the post triggers dropped for "off"), alternating; then query
//! latency of `GET /v1/posts/search` on a database of `--posts` posts
//! (default 1,000,000) written straight into SQLite by the bench (the
//! triggers index them as the server's own writes would).

use super::{agent, die, ingest, now_ns, pct, start_target, Args, Row, Target};
use serde_json::json;
use spout::storage::Connection;
use std::time::{Duration, Instant};

/// Words in the generated vocabulary; word 0 is the most common.
const VOCABULARY: usize = 4000;
/// Requests per measured query.
const QUERIES: usize = 200;
/// Posts per transaction while generating.
const BATCH: usize = 20_000;

pub fn run(t: &Target, a: &Args) -> Vec<Row> {
    let mut rows = Vec::new();
    for round in 0..2 {
        for index in [true, false] {
            let fresh = start_target(a);
            if !index {
                let c = open(&fresh.db);
                c.execute_batch(
                    "DROP TRIGGER posts_fts_ai; DROP TRIGGER posts_fts_au; DROP TRIGGER posts_fts_ad;",
                )
                .unwrap_or_else(|e| die(&format!("dropping the triggers: {e}")));
            }
            let mut r = ingest(&fresh, a);
            r.name = format!("ingest, index {} ({})", if index { "on" } else { "off" }, round + 1);
            r.json["index"] = json!(index);
            rows.push(r);
        }
    }
    rows.extend(queries(t, a));
    rows
}

fn open(db: &str) -> Connection {
    let c = Connection::open(db).unwrap_or_else(|e| die(&format!("open {db}: {e}")));
    c.busy_timeout(Duration::from_secs(30)).unwrap_or_else(|e| die(&format!("busy_timeout: {e}")));
    c
}

/// A fixed pseudo-word for each index: readable, distinct, no real words.
fn word(i: usize) -> String {
    const C: &[u8] = b"bcdfghjklmnprstvz";
    const V: &[u8] = b"aeiou";
    let mut n = i + 1;
    let mut w = String::new();
    while n > 0 {
        w.push(C[n % C.len()] as char);
        n /= C.len();
        w.push(V[n % V.len()] as char);
        n /= V.len();
    }
    w
}

/// xorshift64*: the same texts on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A word index, skewed so that low indices are common (roughly Zipf).
    fn word(&mut self) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((VOCABULARY as f64) * u.powi(3)) as usize
    }
}

/// Writes `n` posts of 5 to 25 words into the server's database.
fn generate(db: &str, n: usize) -> Duration {
    let began = Instant::now();
    let mut c = open(db);
    let one = |sql: &str| -> i64 {
        c.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| die(&format!("{sql}: {e}")))
    };
    let (user, app, first) = (
        one("SELECT MIN(id) FROM users"),
        one("SELECT MIN(id) FROM apps"),
        one("SELECT COALESCE(MAX(id), 0) + 1 FROM posts"),
    );
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let now = (now_ns() / 1_000_000_000) as i64;
    let mut id = first;
    let mut left = n;
    while left > 0 {
        let tx = c.transaction().unwrap_or_else(|e| die(&format!("transaction: {e}")));
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO posts (id, user_id, app_id, created_at, thread_id, content) VALUES (?1, ?2, ?3, ?4, ?1, ?5)",
                )
                .unwrap_or_else(|e| die(&format!("prepare: {e}")));
            for _ in 0..left.min(BATCH) {
                let words = 5 + (rng.next() % 21) as usize;
                let text: Vec<String> = (0..words).map(|_| word(rng.word())).collect();
                let text = text.join(" ");
                let content = json!({
                    "text": text,
                    "html": format!("<span itemscope=\"https://pnut.io/schemas/Post\">{text}</span>"),
                    "entities": {"links": [], "mentions": [], "tags": []},
                });
                let at = now - (n as i64 - (id - first)) / 100;
                st.execute(rusqlite::params![id, user, app, at, content.to_string()])
                    .unwrap_or_else(|e| die(&format!("insert: {e}")));
                id += 1;
            }
        }
        tx.commit().unwrap_or_else(|e| die(&format!("commit: {e}")));
        left = left.saturating_sub(BATCH);
    }
    began.elapsed()
}

/// Latency of the search endpoint for a few kinds of query.
fn queries(t: &Target, a: &Args) -> Vec<Row> {
    let n = a.posts.unwrap_or(1_000_000);
    super::setup(t, 1, 1, "search");
    let took = generate(&t.db, n);
    let size = std::fs::metadata(&t.db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(format!("{}-wal", t.db)).map(|m| m.len()).unwrap_or(0);
    eprintln!("bench: {n} posts written in {:.1} s; database {} MiB", took.as_secs_f64(), size >> 20);
    let agent = agent();
    let (common, middle, rare) = (word(0), word(40), word(VOCABULARY - 1));
    let kinds = [
        ("rare word", format!("q={rare}")),
        ("common word", format!("q={common}")),
        ("common word, order=id", format!("q={common}&order=id")),
        ("two words", format!("q={common}%20{middle}")),
        ("prefix", format!("q={}*", &middle[..2])),
    ];
    let mut rows = Vec::new();
    for (name, q) in kinds {
        let url = format!("{}/v1/posts/search?{q}&count=20", t.api);
        let mut lat = Vec::with_capacity(QUERIES);
        let mut found = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        for _ in 0..QUERIES {
            if Instant::now() > deadline {
                break;
            }
            let began = Instant::now();
            let resp = agent.get(&url).call().unwrap_or_else(|e| die(&format!("{url}: {e}")));
            let body = resp.into_body().read_to_string().unwrap_or_default();
            lat.push(began.elapsed().as_micros() as u64);
            found = body.matches("\"pagination_id\"").count();
        }
        lat.sort_unstable();
        let rss = t.stats().map(|s| s.1).unwrap_or(0);
        rows.push(Row {
            name: format!("search: {name}"),
            cols: vec![
                ("posts".into(), n.to_string()),
                ("p50 ms".into(), format!("{:.2}", pct(&lat, 0.5) as f64 / 1000.0)),
                ("p99 ms".into(), format!("{:.2}", pct(&lat, 0.99) as f64 / 1000.0)),
                ("max ms".into(), format!("{:.2}", lat.last().copied().unwrap_or(0) as f64 / 1000.0)),
                ("results".into(), found.to_string()),
                ("server RSS MiB".into(), (rss >> 10).to_string()),
            ],
            json: json!({"scenario": "search", "query": name, "posts": n, "p50_us": pct(&lat, 0.5),
                         "p99_us": pct(&lat, 0.99), "generate_secs": took.as_secs_f64(), "db_bytes": size}),
        });
    }
    rows
}
