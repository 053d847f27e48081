//! The stream listener (a socket we own, DESIGN.md §2): reads the request
//! head, refuses with a complete HTTP error envelope before any upgrade,
//! then serves `/v1/app` as a websocket or as chunked HTTP, one thread per
//! connection with a small stack.

mod conn;
mod head;
mod reactor;

use head::{parse_head, read_head, refuse, refuse_fast, HeadError, MAX_HEAD};

use crate::admission::{Admission, Ticket};
use crate::auth;
use crate::config::Config;
use crate::ctx::Ctx;
use crate::delivery::Subscription;
use crate::error::{ApiError, ApiResult};
use crate::http::Req;
use crate::hub::{Hub, Outlet, Sub};
use crate::model::{self, Opts};
use crate::storage::streams;
use crate::storage::EventLog;
use crate::util::{base64url, random_bytes, LogEvery};
use crate::wire::{self, Transport};
use reactor::Reactor;
use serde_json::json;

use std::net::{TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Stack for connection threads: they parse small client frames and never
/// render events (the hub does), so 128 KiB is plenty.
const CONN_STACK: usize = 128 * 1024;

/// Connection threads still running (a graceful shutdown waits for them).
pub static LIVE_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Settings a connection thread needs.
#[derive(Clone)]
pub struct ConnCfg {
    pub keepalive: Duration,
    pub heartbeat: Duration,
    pub backlog: usize,
    /// How long a client may take to send its request head (slowloris).
    pub head_timeout: Duration,
    /// The largest websocket message (and frame) a client may send.
    pub ws_max_message: usize,
}

/// Starts the accept loop on `listener`. A connection gets its place from
/// `admission` before its thread is started (a fast 503 without one), and
/// the loop outlives every accept error; if it ends anyway while the server
/// runs, the process exits (status 70) for its supervisor to restart it.
pub fn start_listener(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    hub: Hub,
    cfg: &Config,
    admission: Arc<Admission>,
    stopping: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    let cc = ConnCfg {
        keepalive: cfg.keepalive,
        heartbeat: cfg.heartbeat,
        backlog: cfg.conn_backlog_bytes,
        head_timeout: cfg.head_timeout,
        ws_max_message: cfg.ws_max_message,
    };
    let reactor = Reactor::start().map_err(|e| format!("cannot start the stream reactor: {e}"))?;
    crate::thread::spawn("stream-accept".into(), None, move || {
        static ACCEPT_FAILED: LogEvery = LogEvery::new(Duration::from_secs(10));
        static SPAWN_FAILED: LogEvery = LogEvery::new(Duration::from_secs(10));
        let _exit = ExitUnlessStopping(stopping.clone());
        for sock in listener.incoming() {
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            let sock = match sock {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    if ACCEPT_FAILED.due() {
                        log::error!("stream listener: accept failed (going on): {e}");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            let ticket = match admission.admit(sock.peer_addr().ok().map(|a| a.ip())) {
                Ok(t) => t,
                Err(refusal) => {
                    refuse_fast(&sock, &refusal.answer());
                    continue;
                }
            };
            let (ctx, hub, cc, reactor) = (ctx.clone(), hub.clone(), cc.clone(), reactor.clone());
            LIVE_THREADS.fetch_add(1, Ordering::SeqCst);
            let r = crate::thread::spawn("conn".into(), Some(CONN_STACK), move || {
                let mut ticket = ticket;
                let r =
                    catch_unwind(AssertUnwindSafe(|| serve(sock, &ctx, &hub, &cc, &reactor, &mut ticket)));
                LIVE_THREADS.fetch_sub(1, Ordering::SeqCst);
                if r.is_err() {
                    log::error!("a stream connection thread panicked; connection dropped");
                }
            });
            // No thread for it: that one connection closes (the closure,
            // with its socket and ticket, is dropped).
            if let Err(e) = r {
                LIVE_THREADS.fetch_sub(1, Ordering::SeqCst);
                if SPAWN_FAILED.due() {
                    log::error!("cannot start a thread for a stream connection (closed it): {e}");
                }
            }
        }
    })
    .map_err(|e| e.to_string())
}

/// Ends the process (status 70, EX_SOFTWARE) if the accept loop ends, by a
/// panic or otherwise, while the server is not stopping: alive but not
/// accepting, it would never be restarted by its supervisor.
struct ExitUnlessStopping(Arc<AtomicBool>);

impl Drop for ExitUnlessStopping {
    fn drop(&mut self) {
        if !self.0.load(Ordering::SeqCst) {
            log::error!("the stream accept loop ended while the server was running; exiting");
            std::process::exit(70);
        }
    }
}

/// The subscription parameters of a stream request (pnut's list
/// parameters); a malformed one is a 400 naming it, before the upgrade.
fn subscription(req: &Req) -> ApiResult<Subscription> {
    let flag = |name: &str, default: bool| -> ApiResult<bool> {
        match req.param(name) {
            None | Some("") => Ok(default),
            Some("1") | Some("true") => Ok(true),
            Some("0") | Some("false") => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!("{name}: '{v}' is not 0 or 1"))),
        }
    };
    let types = |name: &str| -> ApiResult<Option<Vec<String>>> {
        let Some(raw) = req.param(name).filter(|v| !v.is_empty()) else { return Ok(None) };
        let list: Vec<String> =
            raw.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
        let valid = |t: &String| {
            t.len() <= 128 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if list.is_empty() || list.len() > 20 || !list.iter().all(valid) {
            return Err(ApiError::bad_request(format!(
                "{name}: a comma-separated list of at most 20 types (letters, digits, . _ -)"
            )));
        }
        Ok(Some(list))
    };
    // No viewer on an app stream: these two are accepted (pnut lists them)
    // and mean nothing here; the README says so.
    flag("include_read", true)?;
    flag("include_muted", true)?;
    Ok(Subscription {
        include_deleted: flag("include_deleted", true)?,
        channel_types: types("channel_types")?,
        file_types: types("file_types")?,
        include_incomplete: flag("include_incomplete", true)?,
        include_private: flag("include_private", true)?,
        include_directed_posts: flag("include_directed_posts", true)?,
    })
}

/// What a valid request resolved to.
struct Accepted {
    app_id: i64,
    token_id: i64,
    stream: streams::StreamRow,
    filter: Option<Arc<crate::filter::Filter>>,
}

fn authorize(ctx: &Ctx, req: &Req) -> ApiResult<Accepted> {
    let path = req.path.trim_end_matches('/');
    if path != "/v1/app" {
        return Err(ApiError::not_found(format!(
            "Not found: no stream endpoint at {}; use /v1/app",
            req.path
        )));
    }
    if req.method != "GET" {
        return Err(ApiError::new(405, "Method not allowed; use GET /v1/app"));
    }
    let p = auth::app(&ctx.db, req)?;
    let key = req
        .param("key")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::bad_request("key: required (the stream's key)"))?;
    let stream = ctx
        .db
        .read(|c| Ok(streams::get(c, p.app.id, key)?))?
        .ok_or_else(|| ApiError::not_found(format!("Stream not found: {key}")))?;
    let filter = ctx.db.read(|c| Ok(crate::storage::filters::of_stream(c, stream.filter_id)?))?;
    Ok(Accepted { app_id: p.app.id, token_id: p.token_id, stream, filter })
}

/// Kernel send buffer per stream socket. Linux sizes loopback buffers by the
/// 64 KiB MSS (megabytes per socket); a fixed size bounds kernel memory per
/// connection and makes a stalled reader show up as a slow consumer.
const SEND_BUFFER: usize = 256 * 1024;

/// Where replay starts: `?purge=1` skips what is queued, `?position=N`
/// resumes after N, otherwise after the stream's cursor. Sends the
/// `events_dropped` notice first when retention took events the stream had
/// not received.
#[allow(clippy::too_many_arguments)]
fn start_replay(
    ctx: &Ctx,
    hub: &Hub,
    req: &Req,
    acc: &Accepted,
    outlet: &Outlet,
    opts: Opts,
    transport: Transport,
    cc: &ConnCfg,
    purge_at: Option<i64>,
    end_at_hello: i64,
) -> ApiResult<conn::Replay> {
    let position = req.param("position").and_then(|p| p.parse::<i64>().ok()).filter(|p| *p >= 0);
    let first_seq = ctx.db.first_seq()?;
    // A position past the end of the log cannot have been delivered (a
    // stale or bogus one): clamp it to where the log ended before the
    // connection message, or it would hide every event up to it, including
    // ones the client makes right after connecting.
    let position = position.map(|p| p.min(end_at_hello));
    let start = match (purge_at, position) {
        (Some(p), _) | (None, Some(p)) => p,
        // After what the stream's connections already got, but never after
        // the end of the log at the connection message: events committed
        // once the client could see this connection are its own, even if
        // another live connection on the stream got them first.
        (None, None) => acc.stream.cursor.max(hub.cursor_of(acc.stream.id)).min(end_at_hello),
    };
    if purge_at.is_none() {
        // Log positions after `start` that retention already removed.
        // An empty log means everything up to the hub's last event is gone.
        let first = first_seq.unwrap_or(hub.last_seq().load(std::sync::atomic::Ordering::SeqCst) + 1);
        let lost = (first - 1 - start).max(0);
        let dropped = if position.is_some() { lost } else { acc.stream.dropped + lost };
        if dropped > 0 {
            let mut doc = crate::hub::control(
                "events_dropped",
                &format!(
                    "{dropped} events this stream had not received were dropped by the retention limits"
                ),
            );
            doc["meta"]["control"]["dropped"] = json!(dropped);
            outlet.send(crate::hub::control_frame(transport, &doc), 0);
        }
    }
    let id = acc.stream.id;
    ctx.db.write(|tx| Ok(streams::reset(tx, id, start)?))?;
    Ok(conn::Replay {
        pos: start,
        target: None,
        live: false,
        stream_id: acc.stream.id,
        types: crate::event::types_to_bits(&acc.stream.object_types),
        app_id: acc.app_id,
        filter: acc.filter.clone(),
        opts,
        transport,
        db: ctx.db.clone(),
        hub: hub.clone(),
        backlog: cc.backlog,
        subscription: Default::default(),
    })
}

/// A request that passed the handshake: authorized, with its place under
/// the per-app and total caps.
struct Handshake {
    req: Req,
    acc: Accepted,
    /// Bytes the client sent after its head.
    rest: Vec<u8>,
    transport: Transport,
    ws_key: Option<String>,
    slot: crate::hub::Slot,
    subscription: Arc<Subscription>,
}

/// Reads and checks the request head, authorizes it and reserves its
/// place; refuses (and returns `None`) otherwise.
fn handshake(
    sock: &mut TcpStream,
    ctx: &Ctx,
    hub: &Hub,
    cc: &ConnCfg,
    ticket: &mut Ticket,
) -> Option<Handshake> {
    let (head, rest) = match read_head(sock, cc.head_timeout) {
        Ok(h) => h,
        Err(HeadError::Gone) => {
            log::debug!("stream connection closed before its request head");
            return None;
        }
        Err(HeadError::Late) => {
            let secs = cc.head_timeout.as_secs();
            refuse(sock, &ApiError::new(408, format!("The request head did not arrive within {secs} s")));
            return None;
        }
        Err(HeadError::TooLong) => {
            refuse(sock, &ApiError::new(431, format!("The request head is longer than {MAX_HEAD} bytes")));
            return None;
        }
    };
    let checked = (|| {
        let req = parse_head(&head).ok_or_else(|| ApiError::bad_request("malformed HTTP request"))?;
        let acc = authorize(ctx, &req)?;
        let subscription = Arc::new(subscription(&req)?);
        let is_ws = req.header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        let ws_key = req.header("sec-websocket-key").map(str::to_string);
        if is_ws && ws_key.is_none() {
            return Err(ApiError::bad_request("Sec-WebSocket-Key: required for a websocket upgrade"));
        }
        let slot = hub.reserve(acc.app_id).map_err(|m| ApiError::new(429, m))?;
        let transport = if is_ws { Transport::Ws } else { Transport::Chunked };
        Ok(Handshake { req, acc, rest, transport, ws_key, slot, subscription })
    })();
    match checked {
        Ok(h) => {
            // An authorized stream now: bounded by the per-app and total
            // caps, no longer by the caps on strangers.
            ticket.settle();
            Some(h)
        }
        Err(e) => {
            refuse(sock, &e);
            None
        }
    }
}

/// The answer that opens the stream (the 101 upgrade or the chunked 200)
/// and the connection message.
fn opening(h: &Handshake, ctx: &Ctx) -> Vec<u8> {
    let mut stream = model::stream(&h.acc.stream, &ctx.stream_endpoint);
    if let Some(o) = stream.as_object_mut() {
        o.remove("type");
        o.insert("subscription".into(), h.subscription.to_json());
    }
    let hello = json!({"meta": {"stream": stream, "connection_id": base64url(&random_bytes(24))}});
    let hello = serde_json::to_vec(&hello).unwrap_or_default();
    let mut out = match (&h.ws_key, h.transport) {
        (Some(k), Transport::Ws) => format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            tungstenite::handshake::derive_accept_key(k.as_bytes())
        )
        .into_bytes(),
        _ => b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n".to_vec(),
    };
    out.extend_from_slice(&wire::frame(h.transport, &hello));
    out
}

/// A connection registered with the hub for a stream: on drop (whatever
/// way `serve` ends) it leaves the hub and gives back its place.
struct Joined<'a> {
    hub: &'a Hub,
    outlet: Arc<Outlet>,
    stream_id: i64,
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        self.outlet.release_slot();
        self.hub.leave(self.outlet.id);
        self.hub.unregister(self.stream_id, &self.outlet);
    }
}

/// Joins the hub (the outlet holds whatever the hub hands over), then
/// checks again: a stream deleted, changed or a token revoked between the
/// first check and the join must not leave this connection behind. Returns
/// the stream as it is once joined.
fn join(
    ctx: &Ctx,
    j: &Joined,
    req: &Req,
    mut acc: Accepted,
    (opts, transport, subscription): (Opts, Transport, &Arc<Subscription>),
) -> ApiResult<Accepted> {
    j.hub.register(acc.stream.id, &j.outlet);
    for _ in 0..5 {
        j.hub.join(Sub {
            outlet: j.outlet.clone(),
            app_id: acc.app_id,
            stream_id: acc.stream.id,
            token_id: acc.token_id,
            types: crate::event::types_to_bits(&acc.stream.object_types),
            opts,
            transport,
            filter_id: acc.stream.filter_id,
            filter: acc.filter.clone(),
            subscription: subscription.clone(),
        });
        let again = authorize(ctx, req)?;
        let same = again.stream.object_types == acc.stream.object_types
            && again.stream.filter_id == acc.stream.filter_id;
        acc = again;
        if same {
            break;
        }
        j.hub.leave(j.outlet.id);
    }
    Ok(acc)
}

fn serve(mut sock: TcpStream, ctx: &Ctx, hub: &Hub, cc: &ConnCfg, reactor: &Reactor, ticket: &mut Ticket) {
    let _ = sock.set_nodelay(true);
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(&sock, SEND_BUFFER);
    let _ = sock.set_write_timeout(Some(cc.head_timeout));
    let Some(h) = handshake(&mut sock, ctx, hub, cc, ticket) else { return };
    let out = opening(&h, ctx);
    let Handshake { req, acc, rest, transport, slot, subscription, .. } = h;
    let opts = Opts::from_req(&req);
    let _ = sock.set_read_timeout(None);
    let _ = sock.set_write_timeout(None);
    let outlet = Outlet::new(sock, cc.backlog, slot);
    let _watch = match reactor.watch(outlet.id, outlet.socket()) {
        Ok(w) => w,
        Err(e) => return log::warn!("cannot watch a stream connection: {e}"),
    };
    let joined = Joined { hub, outlet: outlet.clone(), stream_id: acc.stream.id };
    let acc = match join(ctx, &joined, &req, acc, (opts, transport, &subscription)) {
        Ok(a) => a,
        Err(e) => {
            drop(joined);
            return refuse(outlet.socket(), &e);
        }
    };
    // Where the log ends before the client can see this connection. `?purge=1`
    // skips what was queued up to here, and a `?position` past the end is
    // clamped to it. (Read later, at the first replay round, it also covered
    // events made after the client had the connection message.)
    let end_at_hello = match ctx.db.last_seq() {
        Ok(s) => s.max(hub.last_seq().load(std::sync::atomic::Ordering::SeqCst)),
        Err(e) => return log::error!("connection {}: cannot read the log's end: {}", outlet.id, e.message),
    };
    let purge_at = req.flag("purge", false).then_some(end_at_hello);
    // Marked before the client hears anything, so a crash from here on
    // still deletes the stream at the next start.
    if req.flag("auto_delete", false) {
        let id = acc.stream.id;
        if let Err(e) = ctx.db.write(|tx| Ok(streams::mark_auto_delete(tx, id)?)) {
            log::warn!("marking stream {id} auto_delete failed: {}", e.message);
        }
    }
    if !outlet.send(out, 0) {
        return;
    }
    log::info!(
        "stream connection {} opened: app {} stream '{}' ({:?})",
        outlet.id,
        acc.app_id,
        acc.stream.key,
        transport
    );
    let mut replay =
        match start_replay(ctx, hub, &req, &acc, &outlet, opts, transport, cc, purge_at, end_at_hello) {
            Ok(r) => r,
            Err(e) => return log::error!("connection {}: cannot prepare replay: {}", outlet.id, e.message),
        };
    replay.subscription = subscription;
    let end = match transport {
        Transport::Ws => conn::run_ws(rest, &outlet, cc, &mut replay),
        Transport::Chunked => conn::run_chunked(&outlet, cc, &mut replay),
    };
    outlet.finish();
    let sent = outlet.sent_seq();
    drop(joined);
    save_cursor(ctx, &req, &acc, &outlet, sent);
    log::info!("stream connection {} closed: {end}", outlet.id);
}

/// After the connection: the stream's cursor, and the stream itself gone
/// if the connection asked for `auto_delete` (unless the server is
/// shutting down: the stream is then deleted at the next start).
fn save_cursor(ctx: &Ctx, req: &Req, acc: &Accepted, outlet: &Outlet, sent: i64) {
    let server_shutdown = outlet.closed_by_server().as_deref() == Some("shutdown");
    let auto_delete = req.flag("auto_delete", false) && !server_shutdown;
    let r = ctx.db.write(|tx| {
        streams::advance(tx, acc.stream.id, sent, 0)?;
        if auto_delete && streams::by_id(tx, acc.stream.id)?.is_some() {
            streams::delete_live(tx, acc.stream.id)?;
        }
        Ok(())
    });
    if let Err(e) = r {
        log::warn!("connection {}: saving its cursor failed: {}", outlet.id, e.message);
    } else if auto_delete {
        log::info!("stream '{}' deleted with its auto_delete connection", acc.stream.key);
    }
}
