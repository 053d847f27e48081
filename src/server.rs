//! Starts the two listeners and their threads; `ServerHandle` knows the bound
//! addresses and stops everything. The only user of tiny_http besides `http`.

use crate::api;
use crate::config::Config;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::hub::Hub;
use crate::storage::Db;
use crate::storage::EventLog;
use crate::transport;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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

/// Bounds how many API requests are answered at once (`--http-threads`: a
/// password check alone holds argon2's 19 MiB), and tells a graceful stop
/// when none is left.
struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
    max: usize,
}

#[derive(Default)]
struct GateState {
    busy: usize,
    waiting: usize,
}

/// One request's place in the `Gate`, given back on drop.
struct Pass<'a>(&'a Gate);

impl Gate {
    fn new(max: usize) -> Gate {
        Gate { state: Mutex::new(GateState::default()), cv: Condvar::new(), max: max.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a free place.
    fn enter(&self) -> Pass<'_> {
        let mut g = self.lock();
        while g.busy >= self.max {
            g.waiting += 1;
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
            g.waiting -= 1;
        }
        g.busy += 1;
        Pass(self)
    }

    /// Waits until no request is being handled, or `deadline`; says which.
    fn idle_by(&self, deadline: Instant) -> bool {
        let mut g = self.lock();
        while g.busy > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g.waiting += 1;
            g = self.cv.wait_timeout(g, left).unwrap_or_else(|p| p.into_inner()).0;
            g.waiting -= 1;
        }
        true
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        g.busy -= 1;
        if g.waiting > 0 {
            self.0.cv.notify_all();
        }
    }
}

/// The answer headers a browser client may read.
const CORS_EXPOSED: &str =
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-OAuth-Scopes, Retry-After";

/// A CORS preflight (`OPTIONS`, any path): what a browser may send.
fn preflight() -> Resp {
    Resp::bytes(204, "text/plain", Vec::new())
        .header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
        .header("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Pretty-Json")
        .header("Access-Control-Max-Age", "86400")
}

/// Is this a web page (`web`), which is never shared with other origins?
fn is_page(path: &str) -> bool {
    path.starts_with("/oauth/")
}

fn respond(rq: tiny_http::Request, mut resp: Resp, pretty: bool, close: bool) {
    let (status, extra) = (resp.status, std::mem::take(&mut resp.headers));
    let (content_type, body) = resp.into_body(pretty);
    let mut r = tiny_http::Response::from_data(body).with_status_code(status);
    // Every answer says what it is and may not be taken for anything else.
    // API answers may be read by a browser client on another origin (pnut
    // turns CORS on; API tokens travel in a header, never in a cookie, so
    // `*` lends a page no credentials it did not have). The web pages do
    // use a cookie: no other origin may read them.
    let mut headers = vec![
        ("Content-Type".to_string(), content_type),
        ("X-Content-Type-Options".to_string(), "nosniff".to_string()),
    ];
    if !is_page(rq.url()) {
        headers.push(("Access-Control-Allow-Origin".to_string(), "*".to_string()));
        headers.push(("Access-Control-Expose-Headers".to_string(), CORS_EXPOSED.to_string()));
    }
    headers.extend(extra);
    if close {
        headers.push(("Connection".into(), "close".into()));
    }
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            r.add_header(h);
        }
    }
    if let Err(e) = rq.respond(r) {
        log::debug!("client went away before the response: {e}");
    }
}

/// What a request's rate budget is counted against: its token once the
/// token is known to exist, otherwise the client's address, so made-up
/// tokens neither get budgets of their own nor grow the limiter's map.
fn rate_key(ctx: &Ctx, req: &Req) -> crate::ratelimit::Key {
    match crate::auth::bearer(req).map(|t| ctx.db.principal(&t)) {
        Some(Ok(Some(p))) => crate::ratelimit::Key::Token(p.token_id),
        _ => crate::ratelimit::Key::addr(req.remote),
    }
}

/// Reads one request (body capped), dispatches it with panics caught, and
/// writes the answer; never panics itself. Only the dispatch holds a place
/// in `gate`: a client slow to send its body or to read the answer holds
/// its own connection's thread, not one of the places.
fn handle(
    ctx: &Ctx,
    mut rq: tiny_http::Request,
    max_body: usize,
    limiter: &crate::ratelimit::RateLimiter,
    gate: &Gate,
) {
    let headers: Vec<(String, String)> = rq
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str().to_string(), h.value.as_str().to_string()))
        .collect();
    let pretty = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-pretty-json"));
    let too_large =
        || ApiError::new(413, format!("Request body is larger than the limit of {max_body} bytes"));
    if rq.body_length().is_some_and(|n| n > max_body) {
        return respond(rq, Resp::error(&too_large()), pretty, true);
    }
    let mut body = Vec::new();
    if let Err(e) = rq.as_reader().take(max_body as u64 + 1).read_to_end(&mut body) {
        log::debug!("reading a request body failed: {e}");
        if e.kind() == std::io::ErrorKind::TimedOut {
            let e = ApiError::new(408, "The request body did not arrive in time");
            return respond(rq, Resp::error(&e), pretty, true);
        }
        return respond(
            rq,
            Resp::error(&ApiError::bad_request("could not read the request body")),
            pretty,
            true,
        );
    }
    if body.len() > max_body {
        return respond(rq, Resp::error(&too_large()), pretty, true);
    }
    if rq.method().as_str() == "OPTIONS" {
        let answer = if is_page(rq.url()) { Resp::bytes(204, "text/plain", Vec::new()) } else { preflight() };
        return respond(rq, answer, pretty, false);
    }
    let mut req = Req::new(rq.method().as_str(), rq.url(), headers, body);
    req.remote = rq.remote_addr().map(|a| a.ip());
    let verdict = if limiter.is_on() { limiter.check(rate_key(ctx, &req), Instant::now()) } else { None };
    let resp = match &verdict {
        Some(v) if !v.allowed => Resp::error(
            &ApiError::new(429, format!("Rate limit exceeded: try again in {} seconds", v.reset))
                .retry_after(v.reset),
        ),
        _ => {
            // The token endpoint and the sign-in form bound their own slow
            // work (the login pool), so password checks cannot take every
            // place from other requests.
            let guarded = req.path == "/v1/oauth/access_token" || req.path == "/oauth/signin";
            let _pass = (!guarded).then(|| gate.enter());
            let answer = || {
                if is_page(&req.path) {
                    crate::web::dispatch(ctx, &req)
                } else {
                    api::dispatch(ctx, &req)
                }
            };
            catch_unwind(AssertUnwindSafe(answer)).unwrap_or_else(|_| {
                log::error!("handler panicked on {} {}", req.method, req.path);
                Resp::error(&ApiError::internal())
            })
        }
    };
    let resp = match verdict {
        Some(v) => resp
            .header("X-RateLimit-Limit", &v.limit.to_string())
            .header("X-RateLimit-Remaining", &v.remaining.to_string())
            .header("X-RateLimit-Reset", &v.reset.to_string()),
        None => resp,
    };
    let status = resp.status;
    respond(rq, resp, pretty, false);
    log::debug!("{} {} -> {status}", req.method, req.path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A full gate holds the next request until a place is given back, and
    /// a graceful stop learns when none is left.
    #[test]
    fn the_gate_bounds_requests_and_tells_when_none_is_left() {
        let gate = Arc::new(Gate::new(1));
        let first = gate.enter();
        let g = gate.clone();
        let second = std::thread::spawn(move || {
            let _pass = g.enter();
        });
        while gate.lock().waiting == 0 {
            std::thread::yield_now();
        }
        assert_eq!(gate.lock().busy, 1, "the second request got in past the limit");
        assert!(!gate.idle_by(Instant::now() + Duration::from_millis(10)));
        drop(first);
        second.join().unwrap();
        assert!(gate.idle_by(Instant::now() + Duration::from_secs(5)));
        assert_eq!(gate.lock().busy, 0);
    }

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
