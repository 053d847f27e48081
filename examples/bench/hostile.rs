//! The `hostile` scenario (issue 16): a normal fan-out measured alone, then
//! beside another tenant's stream whose filter is at every bound, then
//! beside that tenant and attackers with no account: slowloris on both
//! listeners, endless header lines on the API, and a websocket that floods
//! pings and never reads. The normal clients' p99 is the figure.

use super::{connect_ws, die, fanout, post_json, Args, Row, Target};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Slowloris connections per listener.
const SLOWLORIS: usize = 100;
/// Connections sending endless header lines at once.
const HEADER_FLOODERS: usize = 2;

/// The rows: a warm-up, alone, with the filter tenant, with the attackers
/// too.
pub fn run(t: &Target, a: &Args) -> Vec<Row> {
    let conns = a.conns.unwrap_or(100);
    let mut rows = Vec::new();
    // The first run of a fresh database pays for the WAL's growth: warm up.
    let warm = fanout(t, a, conns, a.rate, false, "hw");
    rows.push(named(warm, "hostile: warm-up", None));
    let alone = fanout(t, a, conns, a.rate, false, "h0");
    let p99 = |r: &Row| r.json["p99_us"].as_u64().unwrap_or(0);
    let base = p99(&alone).max(1);
    rows.push(named(alone, "hostile: alone", Some(base)));
    let tenant = Tenant::start(t);
    let with_filter = fanout(t, a, conns, a.rate, false, "h1");
    rows.push(named(with_filter, "hostile: +filter", Some(base)));
    let attack = Attack::start(t, &tenant);
    let attacked = fanout(t, a, conns, a.rate, false, "h2");
    let counts = attack.stop();
    let mut row = named(attacked, "hostile: +filter+attack", Some(base));
    row.cols.push(("attack conns".into(), counts.0.to_string()));
    row.cols.push(("attack MiB sent".into(), (counts.1 >> 20).to_string()));
    rows.push(row);
    tenant.stop();
    rows
}

fn named(mut r: Row, name: &str, base: Option<u64>) -> Row {
    let p99 = r.json["p99_us"].as_u64().unwrap_or(0);
    r.name = name.into();
    if let Some(base) = base {
        r.cols.push(("p99 vs alone".into(), format!("{:.2}x", p99 as f64 / base as f64)));
    }
    r.json["scenario"] = json!(name);
    r
}

/// Another tenant: a user's filter at every bound (as many one_of clauses
/// of 100 values over two wildcards as fit in 16 KiB), on a stream of an
/// app that user authorized, read by a connection that keeps up.
pub struct Tenant {
    pub app_token: String,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Tenant {
    fn start(t: &Target) -> Tenant {
        let v: Value =
            serde_json::from_str(&t.admin(&["app", "add", "bench-tenant"], "")).unwrap_or_default();
        let cid = v["client_id"].as_str().unwrap_or_default().to_string();
        t.admin(&["user", "add", "tenant"], "bench-password");
        let user_token =
            t.admin(&["token", "add", "--app", &cid, "--user", "tenant", "--scopes", "basic"], "");
        let app_token = t.admin(&["token", "add", "--app", &cid], "");
        let values: Vec<String> = (0..100).map(|i| format!("{}", 900_000_000 + i)).collect();
        let clause = |i: usize| {
            json!({"object_type": "post", "operator": "one_of",
                   "field": format!("/data/*/content/entities/*/{i}/id"), "value": values})
        };
        let mut clauses = Vec::new();
        loop {
            clauses.push(clause(clauses.len()));
            let body = json!({"match_policy": "exclude_all", "clauses": clauses});
            if clauses.len() > 20 || body.to_string().len() > 16 * 1024 {
                clauses.pop();
                break;
            }
        }
        let agent = super::agent();
        let body = json!({"match_policy": "exclude_all", "clauses": clauses});
        let (code, text) = post_json(&agent, &format!("{}/v1/filters", t.api), &user_token, &body);
        if code != 200 {
            die(&format!("creating the tenant's filter failed: {code} {text}"));
        }
        let filter: Value = serde_json::from_str(&text).unwrap_or_default();
        let stream = json!({"type": "long_poll", "object_types": ["post"], "key": "tenant",
                            "filter_id": filter["data"]["id"]});
        let (code, text) = post_json(&agent, &format!("{}/v1/streams", t.api), &app_token, &stream);
        if code != 200 {
            die(&format!("creating the tenant's stream failed: {code} {text}"));
        }
        eprintln!("bench: the tenant's filter has {} one_of clauses of 100 values", clauses.len());
        let stop = Arc::new(AtomicBool::new(false));
        let mut sock = connect_ws(&t.stream, &app_token, "tenant", None)
            .unwrap_or_else(|| die("the tenant's connection failed"));
        let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
        let s = stop.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !s.load(Ordering::Relaxed) {
                if let Ok(0) = sock.read(&mut buf) {
                    break;
                }
            }
        });
        Tenant { app_token, stop, reader: Some(reader) }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The attackers, each on its own thread until `stop`.
struct Attack {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    conns: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl Attack {
    fn start(t: &Target, tenant: &Tenant) -> Attack {
        let me = Attack {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            conns: Arc::new(AtomicU64::new(0)),
            bytes: Arc::new(AtomicU64::new(0)),
        };
        let mut threads = Vec::new();
        for addr in [t.api.trim_start_matches("http://").to_string(), t.stream.clone()] {
            let (stop, conns, bytes) = (me.stop.clone(), me.conns.clone(), me.bytes.clone());
            threads.push(std::thread::spawn(move || slowloris(&addr, &stop, &conns, &bytes)));
        }
        for _ in 0..HEADER_FLOODERS {
            let addr = t.api.trim_start_matches("http://").to_string();
            let (stop, conns, bytes) = (me.stop.clone(), me.conns.clone(), me.bytes.clone());
            threads.push(std::thread::spawn(move || header_flood(&addr, &stop, &conns, &bytes)));
        }
        let (stream, token) = (t.stream.clone(), tenant.app_token.clone());
        let (stop, conns, bytes) = (me.stop.clone(), me.conns.clone(), me.bytes.clone());
        threads.push(std::thread::spawn(move || ping_flood(&stream, &token, &stop, &conns, &bytes)));
        Attack { threads, ..me }
    }

    /// Stops the attackers; returns the connections they opened and the
    /// bytes they sent.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        (self.conns.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// Keeps `SLOWLORIS` connections sending half a head, a byte a second each;
/// replaces those the server closes.
fn slowloris(addr: &str, stop: &AtomicBool, conns: &AtomicU64, bytes: &AtomicU64) {
    let mut open: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while open.len() < SLOWLORIS {
            let Ok(mut c) = TcpStream::connect(addr) else { break };
            conns.fetch_add(1, Ordering::Relaxed);
            let _ = c.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = c.write_all(b"GET /v1/app?key=k HTTP/1.1\r\nX-A: ");
            open.push(c);
        }
        open.retain_mut(|c| c.write_all(b"a").is_ok());
        bytes.fetch_add(open.len() as u64, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Sends an endless header line, again on a new connection each time the
/// server cuts one off.
fn header_flood(addr: &str, stop: &AtomicBool, conns: &AtomicU64, bytes: &AtomicU64) {
    let chunk = vec![b'a'; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut c) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        conns.fetch_add(1, Ordering::Relaxed);
        let _ = c.set_write_timeout(Some(Duration::from_millis(500)));
        let _ = c.write_all(b"GET /health HTTP/1.1\r\nX-A: ");
        while !stop.load(Ordering::Relaxed) {
            match c.write(&chunk) {
                Ok(n) => bytes.fetch_add(n as u64, Ordering::Relaxed),
                Err(_) => break,
            };
        }
    }
}

/// A websocket that sends pings as fast as it can and never reads.
fn ping_flood(stream: &str, token: &str, stop: &AtomicBool, conns: &AtomicU64, bytes: &AtomicU64) {
    let mask = [1u8, 2, 3, 4];
    let mut ping = vec![0x89u8, 0x80 | 125];
    ping.extend_from_slice(&mask);
    ping.extend((0..125).map(|i| b'p' ^ mask[i % 4]));
    let batch = ping.repeat(256);
    while !stop.load(Ordering::Relaxed) {
        let Some(mut c) = connect_ws(stream, token, "tenant", None) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        conns.fetch_add(1, Ordering::Relaxed);
        let _ = c.set_write_timeout(Some(Duration::from_millis(500)));
        while !stop.load(Ordering::Relaxed) {
            match c.write(&batch) {
                Ok(n) => bytes.fetch_add(n as u64, Ordering::Relaxed),
                Err(_) => break,
            };
        }
    }
}
