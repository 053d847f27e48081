//! Starts the two listeners and their threads; `ServerHandle` knows the bound
//! addresses and stops everything. The only user of tiny_http besides `http`.

use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::http::adapter::{handle, respond, Gate};
use crate::http::Resp;
use crate::hub::Hub;
use crate::storage::Db;
use crate::storage::EventLog;
use crate::transport;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running server.
pub struct ServerHandle {
    pub api_addr: SocketAddr,
    pub stream_addr: SocketAddr,
    /// Held for its lifetime: dropping it stops the API listener.
    _http: tiny_http::Server,
    gate: Arc<Gate>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub hub: Hub,
    pub db: Arc<Db>,
    /// Held for its lifetime: one server per database (`lock_database`).
    _lock: std::fs::File,
}

/// Opens the database, binds both listeners and starts serving.
pub fn start(mut cfg: Config) -> Result<ServerHandle, String> {
    raise_open_files_limit();
    let lock = lock_database(&cfg.db)?;
    let db = Arc::new(Db::open(&cfg.db, cfg.sync_full)?);
    let api_listener = TcpListener::bind(cfg.api_addr)
        .map_err(|e| format!("cannot listen on {} (--api-addr): {e}", cfg.api_addr))?;
    let api_addr = api_listener.local_addr().map_err(|e| e.to_string())?;
    let stream_listener = TcpListener::bind(cfg.stream_addr)
        .map_err(|e| format!("cannot listen on {} (--stream-addr): {e}", cfg.stream_addr))?;
    let stream_addr = stream_listener.local_addr().map_err(|e| e.to_string())?;

    let api_url = cfg.public_api_url.clone().unwrap_or_else(|| format!("http://{api_addr}"));
    let api_url_https = api_url.starts_with("https://");
    let stream_base = cfg.public_stream_url.clone().unwrap_or_else(|| format!("ws://{stream_addr}"));

    // Streams whose ?auto_delete=1 connection died with the last process.
    match db.write(|tx| Ok(crate::storage::streams::delete_orphaned_auto(tx)?)) {
        Ok(n) if n > 0 => log::info!("deleted {n} auto_delete streams left by the last run"),
        Ok(_) => {}
        Err(e) => log::warn!("cleaning up auto_delete streams failed: {}", e.message),
    }
    // Retention runs once before anything connects, then periodically.
    match crate::retention::prune(&db, None, cfg.retention_secs, cfg.retention_events) {
        Ok((dropped, deleted)) if dropped > 0 || deleted > 0 => {
            log::info!("retention: {dropped} undelivered events dropped, {deleted} log rows deleted")
        }
        Ok(_) => {}
        Err(e) => log::warn!("retention pass failed: {}", e.message),
    }
    let admission = admission(&mut cfg);
    let hub = Hub::start(db.clone(), &cfg).map_err(|e| format!("cannot start the hub: {e}"))?;
    let ctx = Arc::new(Ctx {
        db: db.clone(),
        api_url,
        stream_endpoint: format!("{stream_base}/v1/app"),
        hub: hub.clone(),
        login: login_guard(&cfg),
        started: std::time::Instant::now(),
        polls: crate::jobs::polls::Waker::default(),
        published: crate::ctx::Published {
            max_body: cfg.max_body,
            rate_limit: cfg.rate_limit,
            rate_window_secs: cfg.rate_window.as_secs(),
            conns_per_app: cfg.max_conns_per_app,
            duplicate_secs: cfg.duplicate_secs,
        },
        web: crate::web::WebConfig {
            open_registration: cfg.open_registration,
            code_secs: cfg.oauth_code_secs,
            secure_cookies: api_url_https,
            registrations: crate::ratelimit::RateLimiter::new(5, Duration::from_secs(3600)),
            csrf_key: crate::util::new_secret(),
        },
        stats: std::sync::Mutex::new(None),
    });
    let sink_hub = hub.clone();
    db.set_sink(Box::new(move |items| sink_hub.publish(items)));

    let stopping = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let limiter = Arc::new(crate::ratelimit::RateLimiter::new(cfg.rate_limit, cfg.rate_window));
    let gate = Arc::new(Gate::new(cfg.http_threads));
    // Each request is handled on the thread that read it from its
    // connection (vendored tiny_http, patch 5), not handed to a pool: one
    // thread wake-up less per request. Alternating runs of fanout --conns 100
    // --rate 2000 --secs 10 --writers 16: p99 4.9/4.0/4.4 ms with the pool,
    // 4.0/3.9/3.9 without; ingest unchanged.
    let handler: tiny_http::Handler = {
        let (ctx, max_body, gate, stopping) = (ctx.clone(), cfg.max_body, gate.clone(), stopping.clone());
        Arc::new(move |rq| {
            if stopping.load(Ordering::SeqCst) {
                let e = ApiError::new(503, "The server is shutting down");
                return respond(rq, Resp::error(&e), false, true);
            }
            handle(&ctx, rq, max_body, &limiter, &gate);
        })
    };
    let limits = tiny_http::Limits {
        head_timeout: cfg.head_timeout,
        body_timeout: cfg.body_timeout,
        admit: Some({
            let admission = admission.clone();
            Arc::new(move |addr: Option<SocketAddr>| match admission.admit(addr.map(|a| a.ip())) {
                Ok(ticket) => Ok(Box::new(ticket) as Box<dyn Send>),
                Err(refusal) => Err(refusal.answer()),
            })
        }),
        ..tiny_http::Limits::default()
    };
    let http = tiny_http::Server::from_listener_with_limits(api_listener, handler, limits)
        .map_err(|e| format!("cannot serve on {api_addr} (--api-addr): {e}"))?;
    threads.push(crate::jobs::log_tail::start(db.clone(), stopping.clone())?);
    let (every, secs, count) = (cfg.prune_every, cfg.retention_secs, cfg.retention_events);
    threads.push(crate::jobs::retention::start(
        db.clone(),
        hub.clone(),
        every,
        secs,
        count,
        stopping.clone(),
    )?);
    threads.push(crate::jobs::polls::start(
        db.clone(),
        ctx.api_url.clone(),
        ctx.polls.clone(),
        stopping.clone(),
    )?);
    threads.push(transport::start_listener(
        stream_listener,
        ctx.clone(),
        hub.clone(),
        &cfg,
        admission,
        stopping.clone(),
    )?);
    Ok(ServerHandle { api_addr, stream_addr, _http: http, gate, stopping, threads, hub, db, _lock: lock })
}

impl ServerHandle {
    /// Stops accepting and wakes every thread; `join` waits for them.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.hub.shutdown();
        // Wake the stream listener's accept with a connection to itself.
        let _ = std::net::TcpStream::connect_timeout(&self.stream_addr, Duration::from_millis(200));
        for t in &self.threads {
            t.thread().unpark();
        }
    }

    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Graceful stop (SIGTERM/SIGINT): stop accepting, send every stream a
    /// `shutdown` control message and a close, let in-flight requests and
    /// closing connections finish (at most `grace`), save cursors,
    /// checkpoint the WAL.
    pub fn stop(self, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.shutdown();
        let db = self.db.clone();
        if !self.gate.idle_by(deadline) {
            log::warn!("API requests still running at the end of the grace period");
        }
        while transport::LIVE_THREADS.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = transport::LIVE_THREADS.load(Ordering::SeqCst);
        if left > 0 {
            log::warn!("{left} stream connections did not finish closing in time");
        }
        self.join();
        match db.checkpoint() {
            Ok(()) => log::info!("database checkpointed; bye"),
            Err(e) => log::warn!("WAL checkpoint failed: {}", e.message),
        }
    }
}

/// Takes the exclusive lock on `<db>.lock` that says a server runs on this
/// database, and writes our pid into it. A second server would serve
/// connections the first one's signals never reach, so it refuses to start,
/// naming the process that holds the lock. The OS releases the lock when
/// the process ends, however it ends, so a crash never leaves it stuck.
/// (`spout admin` does not take it: its writes reach the server through
/// the log.)
fn lock_database(db: &std::path::Path) -> Result<std::fs::File, String> {
    use std::io::{Seek, Write};
    let path = std::path::PathBuf::from(format!("{}.lock", db.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let who =
                if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
            return Err(format!(
                "the database {} is already served by {who} (it holds {}); one server per database",
                db.display(),
                path.display()
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(format!("cannot lock {}: {e}", path.display())),
    }
    let pid = std::process::id();
    let written = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| writeln!(file, "{pid}"));
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(file)
}

/// Raises the soft open-files limit to the hard one (systemd gives 1024
/// and 524288): every connection holds a descriptor.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            log::warn!("cannot raise the open-files limit: {e}");
        }
    }
}

/// The caps on connections (`admission`), with `--max-conns` set to what
/// this machine can hold when it was `auto` or more than that.
fn admission(cfg: &mut Config) -> Arc<crate::admission::Admission> {
    let ceiling = crate::admission::Machine::read().ceiling(cfg.conn_backlog_bytes);
    let max = match cfg.max_conns_total {
        None => {
            log::info!("at most {} connections: {}", ceiling.conns, ceiling.because);
            ceiling.conns
        }
        Some(n) if n > ceiling.conns => {
            log::warn!(
                "--max-conns {n} is more than this machine can hold; lowered to {}: {}",
                ceiling.conns,
                ceiling.because
            );
            ceiling.conns
        }
        Some(n) => n,
    };
    cfg.max_conns_total = Some(max);
    crate::admission::Admission::new(max, cfg.max_pending, cfg.max_pending_per_ip)
}

/// Password checks: the failure budgets from the flags, and as many
/// hashes at once as there are cores (at most 4), with 16 more waiting.
fn login_guard(cfg: &Config) -> crate::login::Login {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    crate::login::Login::new(cfg.login_failures, cfg.login_window, cores, 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: spout\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Once a stop began, a request gets a 503 in the pnut envelope and the
    /// connection closes, rather than waiting or vanishing.
    #[test]
    fn requests_during_a_stop_get_503() {
        let dir = std::env::temp_dir().join(format!("spout-stop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("t.db").display().to_string();
        let args: Vec<String> = ["--db", &db, "--api-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let handle = start(Config::from_args(&args).unwrap()).unwrap();
        let ok = get(handle.api_addr, "/health");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        handle.shutdown();
        let stopping = get(handle.api_addr, "/health");
        assert!(stopping.starts_with("HTTP/1.1 503"), "{stopping}");
        assert!(
            stopping.contains(r#"{"meta":{"code":503,"error_message":"The server is shutting down"}}"#),
            "{stopping}"
        );
        handle.join();
        let _ = std::fs::remove_dir_all(dir);
    }
}
