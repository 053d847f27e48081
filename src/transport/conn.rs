//! One connection's thread: parks until the stream reactor (client input,
//! room to write) or the hub (a backlog, a close) wakes it, or its keepalive
//! or heartbeat is due, so an idle connection costs no CPU and one
//! descriptor. It owns the read side, drains its backlog, and ends the
//! connection with a control message and a close.

use super::ConnCfg;
use crate::filter::Filter;
use crate::hub::{render, Close, Flushed, Hub, Outlet, Reply};
use crate::model::Opts;
use crate::storage::EventLog;
use crate::storage::{streams, Db};
use crate::wire::{self, Transport};
use rustix::net::{recv, RecvFlags};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket};

/// Client messages read per pass of the connection loop, so that one that
/// floods (pings, empty messages) still gets its closes, keepalive checks
/// and replay in between.
const MESSAGES_PER_PASS: usize = 64;

/// How long a closing connection may take to drain its last frames.
const DRAIN: Duration = Duration::from_secs(2);

/// tungstenite's view of the socket: reads never block; writes (pongs and
/// close replies) go through the outlet, so they queue behind events whole,
/// under the same budget (`over` says a write found it full).
struct WsIo {
    outlet: Arc<Outlet>,
    over: bool,
}

impl Read for WsIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match recv(self.outlet.socket(), buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) => Ok(n),
            Err(e) => Err(e.into()),
        }
    }
}

impl Write for WsIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.outlet.send_reply(buf.to_vec()) {
            Reply::Sent => Ok(buf.len()),
            Reply::Over => {
                self.over = true;
                Err(io::Error::other("the connection's backlog is full"))
            }
            Reply::Failed => Err(io::Error::new(io::ErrorKind::BrokenPipe, "connection broken")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Small buffers and caps: a client only sends keepalives.
fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Parks until woken or `until`. Every wake-up is followed by non-blocking
/// attempts to read and to flush, so the reason need not be known.
fn wait(until: Instant) {
    let left = until.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        std::thread::park_timeout(left);
    }
}

/// Sends the control message and the final frame of a server-side close,
/// drains for a bounded time, then ends the connection gracefully (FIN, then
/// discard what the client still sends, so the close is not lost to a RST).
fn finish(sock: &TcpStream, outlet: &Outlet, t: Transport, c: &Close) {
    // The server ends this connection: its place is free at once, so a
    // client that reconnects right away is not refused with a 429.
    outlet.release_slot();
    if let Some(ctrl) = &c.control {
        outlet.send(crate::hub::control_frame(t, ctrl), 0);
    }
    outlet.send(
        match t {
            Transport::Ws => wire::ws_close(c.code, &c.reason),
            Transport::Chunked => wire::CHUNK_END.to_vec(),
        },
        0,
    );
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        match outlet.flush() {
            Flushed::Empty | Flushed::Failed => break,
            Flushed::Pending => wait(deadline),
        }
    }
    let _ = sock.shutdown(Shutdown::Write);
    let mut scratch = [0u8; 1024];
    while Instant::now() < deadline {
        match recv(sock, &mut scratch[..], RecvFlags::DONTWAIT) {
            Ok((0, _)) => break,
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => wait(deadline),
            Err(_) => break,
        }
    }
}

/// Log positions read per replay step.
const REPLAY_PAGE: i64 = 256;

/// Delivers what a stream missed, from the event log, before going live
/// (DESIGN.md §3; the protocol is `Outlet::begin_round` / `go_live`).
pub struct Replay {
    /// Replayed up to this seq.
    pub pos: i64,
    /// The end of the current round.
    pub target: Option<i64>,
    pub live: bool,
    pub stream_id: i64,
    pub types: u16,
    pub app_id: i64,
    pub filter: Option<Arc<Filter>>,
    pub opts: Opts,
    pub transport: Transport,
    pub db: Arc<Db>,
    pub hub: Hub,
    pub backlog: usize,
    /// The connection's subscription parameters (as live delivery has them).
    pub subscription: Arc<crate::delivery::Subscription>,
}

impl Replay {
    /// Is there replay work to do right now (joined, and the backlog has
    /// room)? The connection loop then does not sleep.
    fn ready(&self, outlet: &Outlet) -> bool {
        !self.live && outlet.joined.load(Ordering::SeqCst) && outlet.queued_bytes() <= self.backlog / 2
    }

    /// Reloads the stream's object types and filter (unchanged if the
    /// stream is gone: its deletion closes the connection).
    fn refresh(&mut self) -> Result<(), String> {
        let id = self.stream_id;
        let now = self
            .db
            .read(|c| {
                let Some(s) = streams::by_id(c, id)? else { return Ok(None) };
                let f = crate::storage::filters::of_stream(c, s.filter_id)?;
                Ok(Some((crate::event::types_to_bits(&s.object_types), f)))
            })
            .map_err(|e| e.message)?;
        if let Some((types, filter)) = now {
            self.types = types;
            self.filter = filter;
        }
        Ok(())
    }

    /// One step: start a round, replay a page, or go live.
    fn step(&mut self, outlet: &Outlet) -> Result<(), String> {
        if !self.ready(outlet) {
            return Ok(());
        }
        let Some(target) = self.target else {
            let t = outlet.begin_round(self.hub.last_seq());
            // The stream may have changed since the connection opened (the
            // hub applied the change to live events at once): replay this
            // round with its object types and filter as they are now.
            self.refresh()?;
            log::debug!("connection {}: replay round from {} to {t}", outlet.id, self.pos);
            self.target = Some(t);
            return Ok(());
        };
        if self.pos < target {
            let upto = target.min(self.pos + REPLAY_PAGE);
            let events = self.db.events_between(self.pos, upto).map_err(|e| e.message)?;
            let channels = crate::delivery::channels_now(&self.db, &events)?;
            log::debug!("connection {}: replaying {} events after {}", outlet.id, events.len(), self.pos);
            for ev in &events {
                // The app's grants and the channels' ACLs as they are now,
                // for every event: a user who revokes the app mid-replay, or
                // leaves a channel, is out from the next one.
                if self.hub.wants_now(ev, self.types, self.app_id, self.filter.as_deref(), &channels)
                    && self.subscription.admits(ev)
                    && !outlet.send(render(ev, &self.opts, self.transport), ev.seq)
                {
                    return Err("client went away during replay".into());
                }
            }
            self.pos = upto;
        } else if outlet.go_live(self.pos) {
            log::debug!("connection {}: live after {}", outlet.id, self.pos);
            self.live = true;
        } else {
            // Live events overflowed the hold while we replayed: go again.
            self.target = None;
        }
        Ok(())
    }
}

/// Serves a websocket connection until it ends; returns why it ended.
pub fn run_ws(rest: Vec<u8>, outlet: &Arc<Outlet>, cc: &ConnCfg, replay: &mut Replay) -> String {
    // One socket handle, owned by the outlet, serves reads and writes: a
    // connection costs one descriptor.
    let sock = outlet.socket();
    let io = WsIo { outlet: outlet.clone(), over: false };
    let mut ws = WebSocket::from_partially_read(io, rest, Role::Server, Some(ws_config(cc.ws_max_message)));
    let mut last_heard = Instant::now();
    // True when input may be waiting without the reactor saying so again.
    let mut input_waiting = true;
    loop {
        if let Some(c) = outlet.take_close() {
            finish(sock, outlet, Transport::Ws, &c);
            return format!("closed by the server: {}", c.reason);
        }
        let deadline = last_heard + cc.keepalive;
        if Instant::now() >= deadline {
            let secs = cc.keepalive.as_secs();
            let c = Close {
                code: 1008,
                reason: format!("keepalive timeout: nothing received from the client for {secs} s"),
                control: None,
            };
            finish(sock, outlet, Transport::Ws, &c);
            return c.reason;
        }
        if let Err(e) = replay.step(outlet) {
            return e;
        }
        // Bytes that came with the handshake (or past the last pass's
        // share) are read without waiting, and replay work goes on without
        // sleeping.
        if !input_waiting && !replay.ready(outlet) {
            wait(deadline);
        }
        let mut read = 0;
        input_waiting = loop {
            if read == MESSAGES_PER_PASS {
                break true;
            }
            read += 1;
            match ws.read() {
                Ok(msg) => {
                    last_heard = Instant::now();
                    match msg {
                        // pnut answers every client message with a pong;
                        // spout sends a websocket pong frame, which
                        // clients handle without seeing it as an event.
                        Message::Text(_) | Message::Binary(_) => match outlet.send_reply(vec![0x8a, 0]) {
                            Reply::Sent => {}
                            Reply::Over => return slow(sock, outlet),
                            Reply::Failed => return "client went away".into(),
                        },
                        Message::Close(_) => {
                            let _ = ws.flush();
                            let _ = outlet.flush();
                            let _ = sock.shutdown(Shutdown::Both);
                            return "closed by the client".into();
                        }
                        // tungstenite queues the pong for a ping itself.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(WsError::Io(_)) if ws.get_ref().over => return slow(sock, outlet),
                Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                    return "closed by the client".into();
                }
                Err(WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => {
                    return "client hung up".into();
                }
                Err(WsError::Capacity(e)) => {
                    let c = Close { code: 1009, reason: format!("message too big: {e}"), control: None };
                    finish(sock, outlet, Transport::Ws, &c);
                    return c.reason;
                }
                Err(WsError::Protocol(e)) => {
                    let c = Close { code: 1002, reason: format!("protocol error: {e}"), control: None };
                    finish(sock, outlet, Transport::Ws, &c);
                    return c.reason;
                }
                Err(WsError::Utf8(_)) => {
                    let c =
                        Close { code: 1007, reason: "invalid UTF-8 in a text message".into(), control: None };
                    finish(sock, outlet, Transport::Ws, &c);
                    return c.reason;
                }
                Err(e) => return format!("client connection failed: {e}"),
            }
        };
        // Push out a pong tungstenite may have queued.
        let _ = ws.flush();
        if ws.get_ref().over {
            return slow(sock, outlet);
        }
        if outlet.flush() == Flushed::Failed {
            return "client went away".into();
        }
    }
}

/// Ends a connection whose client sends but does not read: the backlog is
/// full, so only the close goes out (after what is already on its way).
fn slow(sock: &TcpStream, outlet: &Outlet) -> String {
    log::info!("connection {}: slow consumer (it sends but does not read), disconnecting", outlet.id);
    let c = Close::slow_consumer();
    outlet.close(c.clone());
    let _ = outlet.take_close();
    finish(sock, outlet, Transport::Ws, &c);
    c.reason
}

/// Serves a chunked HTTP stream until it ends; returns why it ended.
pub fn run_chunked(outlet: &Arc<Outlet>, cc: &ConnCfg, replay: &mut Replay) -> String {
    let sock = outlet.socket();
    let mut next_beat = Instant::now() + cc.heartbeat;
    let mut scratch = [0u8; 512];
    loop {
        if let Some(c) = outlet.take_close() {
            finish(sock, outlet, Transport::Chunked, &c);
            return format!("closed by the server: {}", c.reason);
        }
        if let Err(e) = replay.step(outlet) {
            return e;
        }
        if !replay.ready(outlet) {
            wait(next_beat);
        }
        // A chunked client sends nothing after its request; input here is
        // either the end of the connection or ignored. Read until the socket
        // is empty: the reactor signals new input only once.
        loop {
            match recv(sock, &mut scratch[..], RecvFlags::DONTWAIT) {
                Ok((0, _)) => return "client hung up".into(),
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => return format!("client connection failed: {e}"),
            }
        }
        if Instant::now() >= next_beat {
            next_beat = Instant::now() + cc.heartbeat;
            if !outlet.send(wire::CHUNK_HEARTBEAT.to_vec(), 0) {
                return "client went away (heartbeat failed)".into();
            }
        }
        if outlet.flush() == Flushed::Failed {
            return "client went away".into();
        }
    }
}
