//! Starts the two listeners and their threads; `ServerHandle` knows the bound
//! addresses and stops everything. The only user of tiny_http besides `http`.

use crate::api::{self, Ctx};
use crate::config::Config;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::hub::Hub;
use crate::storage::Db;
use crate::transport;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Starts a named thread (every thread in spout goes through here).
pub fn spawn<F: FnOnce() + Send + 'static>(
    name: String,
    stack: Option<usize>,
    f: F,
) -> std::io::Result<JoinHandle<()>> {
    let mut b = std::thread::Builder::new().name(name);
    if let Some(s) = stack {
        b = b.stack_size(s);
    }
    b.spawn(f)
}

/// A running server.
pub struct ServerHandle {
    pub api_addr: SocketAddr,
    pub stream_addr: SocketAddr,
    http: Arc<tiny_http::Server>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub hub: Hub,
    pub db: Arc<Db>,
}

/// Opens the database, binds both listeners and starts serving.
pub fn start(cfg: Config) -> Result<ServerHandle, String> {
    let db = Arc::new(Db::open(&cfg.db, cfg.sync_full)?);
    let http = tiny_http::Server::http(cfg.api_addr)
        .map_err(|e| format!("cannot listen on {} (--api-addr): {e}", cfg.api_addr))?;
    let api_addr =
        http.server_addr().to_ip().ok_or_else(|| "the API listener has no IP address".to_string())?;
    let stream_listener = TcpListener::bind(cfg.stream_addr)
        .map_err(|e| format!("cannot listen on {} (--stream-addr): {e}", cfg.stream_addr))?;
    let stream_addr = stream_listener.local_addr().map_err(|e| e.to_string())?;

    let api_url = cfg.public_api_url.clone().unwrap_or_else(|| format!("http://{api_addr}"));
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
    let hub = Hub::start(db.clone(), &cfg).map_err(|e| format!("cannot start the hub: {e}"))?;
    let ctx = Arc::new(Ctx {
        db: db.clone(),
        api_url,
        stream_endpoint: format!("{stream_base}/v1/app"),
        hub: hub.clone(),
        started: std::time::Instant::now(),
    });
    let sink_hub = hub.clone();
    db.set_sink(Box::new(move |items| sink_hub.publish(items)));

    let http = Arc::new(http);
    let stopping = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let limiter = Arc::new(crate::ratelimit::RateLimiter::new(cfg.rate_limit, cfg.rate_window));
    for i in 0..cfg.http_threads {
        let (http, ctx, max_body, limiter) = (http.clone(), ctx.clone(), cfg.max_body, limiter.clone());
        let t = spawn(format!("api-{i}"), None, move || {
            while let Ok(rq) = http.recv() {
                handle(&ctx, rq, max_body, &limiter);
            }
        })
        .map_err(|e| e.to_string())?;
        threads.push(t);
    }
    {
        let (db, stopping) = (db.clone(), stopping.clone());
        // Events written by `spout admin` in another process reach the hub
        // through the log; look for them ten times a second. The same
        // thread checkpoints the WAL, which the writer no longer does in a
        // commit: often, so each checkpoint and its burst of disk writes is
        // small. At 100 x 2,000 posts/s, p99 with a checkpoint every 1 s:
        // 17-21 ms; 250 ms: 9-12 ms; 100 ms: 7-8.5 ms (alternating runs;
        // every 2 s, each one had stalled writes for up to 60 ms). Without
        // any checkpoint it was 4-6.5 ms, so their disk writes are much of
        // the tail. The thread also has the WAL start over when the
        // checkpoints cannot catch up (`Db::checkpoint_restart`) and reserves
        // the blocks the WAL will grow into (`Db::reserve_wal`).
        threads.push(
            spawn("log-tail".into(), None, move || {
                let mut wal_len = 0;
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::park_timeout(Duration::from_millis(100));
                    db.catch_up();
                    db.reserve_wal(&mut wal_len);
                    match db.checkpoint_passive() {
                        Ok(frames) if frames > db.wal_restart_frames() => {
                            // Sync what the checkpoints copied, and copy what
                            // came meanwhile, so that the restart, which
                            // pauses writes, has little of either left.
                            let r = db.sync_file().and_then(|_| db.checkpoint_passive());
                            if let Err(e) = r.and_then(|_| db.checkpoint_restart()) {
                                log::warn!("WAL restart failed: {}", e.message);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => log::warn!("WAL checkpoint failed: {}", e.message),
                    }
                }
            })
            .map_err(|e| e.to_string())?,
        );
    }
    {
        let (db, hub, stopping) = (db.clone(), hub.clone(), stopping.clone());
        let (every, secs, count) = (cfg.prune_every, cfg.retention_secs, cfg.retention_events);
        threads.push(
            spawn("retention".into(), None, move || loop {
                std::thread::park_timeout(every);
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                if let Err(e) = crate::retention::prune(&db, Some(&hub), secs, count) {
                    log::warn!("retention pass failed: {}", e.message);
                }
            })
            .map_err(|e| e.to_string())?,
        );
    }
    // Polls close at closed_at: those that came due while the server was
    // down are closed (with their events) before serving, then a thread.
    threads.push(crate::storage::channels::start_poll_closer(
        db.clone(),
        ctx.api_url.clone(),
        stopping.clone(),
    )?);
    threads.push(transport::start_listener(
        stream_listener,
        ctx.clone(),
        hub.clone(),
        &cfg,
        stopping.clone(),
    )?);
    Ok(ServerHandle { api_addr, stream_addr, http, stopping, threads, hub, db })
}

impl ServerHandle {
    /// Stops accepting and wakes every thread; `join` waits for them.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in 0..64 {
            self.http.unblock();
        }
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
        let deadline = std::time::Instant::now() + grace;
        self.shutdown();
        let db = self.db.clone();
        while transport::LIVE_THREADS.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
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

fn respond(rq: tiny_http::Request, mut resp: Resp, pretty: bool, close: bool) {
    let (status, extra) = (resp.status, std::mem::take(&mut resp.headers));
    let (content_type, body) = resp.into_body(pretty);
    let mut r = tiny_http::Response::from_data(body).with_status_code(status);
    let mut headers = vec![("Content-Type".to_string(), content_type)];
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

/// Reads one request (body capped), dispatches it with panics caught, and
/// answers. Never panics itself.
fn handle(ctx: &Ctx, mut rq: tiny_http::Request, max_body: usize, limiter: &crate::ratelimit::RateLimiter) {
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
    let mut req = Req::new(rq.method().as_str(), rq.url(), headers, body);
    req.remote = rq.remote_addr().map(|a| a.ip());
    let key = || {
        crate::auth::bearer(&req)
            .map(|t| format!("t:{t}"))
            .unwrap_or_else(|| format!("a:{}", req.remote.map(|ip| ip.to_string()).unwrap_or_default()))
    };
    let verdict = limiter.check(key, std::time::Instant::now());
    let resp = match &verdict {
        Some(v) if !v.allowed => {
            let e = ApiError::new(429, format!("Rate limit exceeded: try again in {} seconds", v.reset));
            let mut r = Resp::error(&e).header("Retry-After", &v.reset.to_string());
            r.body["meta"]["retry_in"] = serde_json::json!(v.reset);
            r
        }
        _ => catch_unwind(AssertUnwindSafe(|| api::dispatch(ctx, &req))).unwrap_or_else(|_| {
            log::error!("handler panicked on {} {}", req.method, req.path);
            Resp::error(&ApiError::internal())
        }),
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
