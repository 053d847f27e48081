//! The hub: one thread that takes committed events in commit order, decides
//! once per (event, app) who may see them, renders each once per option set,
//! and writes the shared bytes to every caught-up connection without
//! blocking (DESIGN.md §3). Connections that are behind get the bytes in
//! their bounded backlog, which their own thread drains. Also: per-app
//! connection slots and the slow-consumer policy.

use crate::config::Config;
use crate::event::{Audience, Event, Outbox, Signal};
use crate::filter::Filter;
use crate::model::{Kind, Opts, Pruned};
use crate::storage::{apps, streams, Db};
use crate::wire::{self, Transport};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use rustix::io::Errno;
use rustix::net::{sendmsg, SendAncillaryBuffer, SendFlags};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

/// Bytes shared by every connection that receives them.
pub type Bytes = Arc<Vec<u8>>;

/// Why the server ends a connection: the control message to send first (a
/// JSON document, framed for the transport), then the close code and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
    pub control: Option<serde_json::Value>,
}

impl Close {
    /// A close preceded by the control message `{"meta":{"control":{...}}}`.
    /// The close of a connection whose backlog filled.
    pub fn slow_consumer() -> Close {
        Close::with_control(
            1008,
            "slow_consumer",
            "Disconnected: the connection's buffer filled because the client did not read fast enough",
        )
    }

    pub fn with_control(code: u16, kind: &str, reason: impl Into<String>) -> Close {
        let reason = reason.into();
        Close { code, control: Some(control(kind, &reason)), reason }
    }
}

/// The control document telling a connection something without closing it.
pub fn control(kind: &str, message: &str) -> serde_json::Value {
    json!({"meta": {"control": {"type": kind, "message": message}}})
}

/// Bytes and the event seq they carry (0 for control frames, pongs, ...).
pub type Tagged = (Bytes, i64);

#[derive(Default)]
struct OutState {
    queue: VecDeque<Tagged>,
    /// Bytes of `queue[0]` already written.
    offset: usize,
    /// Bytes waiting in `queue` (minus `offset`).
    queued: usize,
    /// The highest event seq fully written to the socket.
    sent: i64,
    /// While the connection replays from the log, the hub's frames wait
    /// here instead of going out (see `begin_round` / `go_live`).
    holding: bool,
    held: Vec<Tagged>,
    held_bytes: usize,
    /// `held` outgrew the backlog limit and was dropped: replay again.
    overflow: bool,
    /// The "buffer nearly full" notice went out.
    warned: bool,
    /// Replay delivered the log up to here; the hub's frames at or below it
    /// are duplicates.
    floor: i64,
    close: Option<Close>,
    close_taken: bool,
    /// The socket failed; nothing more is written.
    broken: bool,
}

impl OutState {
    /// Queues a frame behind everything already queued.
    fn enqueue(&mut self, f: Tagged) {
        self.queued += f.0.len();
        self.queue.push_back(f);
    }

    /// Drops the held events (they come again from the log); held control
    /// messages (seq 0) would not, so they stay.
    fn drop_held_events(&mut self) {
        self.held.retain(|(_, seq)| *seq == 0);
        self.held_bytes = self.held.iter().map(|(b, _)| b.len()).sum();
    }
}

/// Outcome of writing as much as the socket takes.
enum Wrote {
    All,
    Blocked,
    Failed,
}

/// How `Outlet::send_reply` went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Written or queued.
    Sent,
    /// The backlog is full: the client is a slow consumer.
    Over,
    /// The socket failed.
    Failed,
}

/// What `Outlet::flush` left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Nothing is queued.
    Empty,
    /// The socket is full; bytes are still queued.
    Pending,
    /// The socket failed.
    Failed,
}

/// The write side of one connection, shared by the hub and the connection's
/// thread. Every write to the socket happens under `state`'s lock, whole
/// frames in order, and never blocks.
pub struct Outlet {
    pub id: u64,
    sock: TcpStream,
    /// The connection's thread: woken (unparked) by the hub and by the
    /// stream reactor when its socket needs it.
    thread: std::thread::Thread,
    state: Mutex<OutState>,
    max_backlog: usize,
    slot: Mutex<Option<Slot>>,
    /// The hub has registered this outlet (it now gets or holds events).
    pub joined: AtomicBool,
}

impl Outlet {
    /// A new outlet starts holding: the connection replays the log first.
    /// Created on the connection's own thread, which `wake` unparks.
    pub fn new(sock: TcpStream, max_backlog: usize, slot: Slot) -> Arc<Outlet> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(Outlet {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            sock,
            thread: std::thread::current(),
            state: Mutex::new(OutState { holding: true, ..OutState::default() }),
            max_backlog,
            slot: Mutex::new(Some(slot)),
            joined: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, OutState> {
        // A panic elsewhere while holding this lock leaves plain data behind;
        // carry on with it rather than poison every later write.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the connection's thread (it parks between rounds of work; an
    /// unpark before it parks is not lost).
    pub fn wake(&self) {
        self.thread.unpark();
    }

    /// Writes queued bytes, then `extra`, without blocking; whatever does
    /// not fit is queued (a partly written frame keeps its offset).
    fn write_some(&self, st: &mut OutState, extra: &[Tagged]) -> Wrote {
        if st.broken {
            return Wrote::Failed;
        }
        let mut extra_from = 0;
        loop {
            // On the stack: this runs once per connection per batch.
            let mut iov = [IoSlice::new(&[]); 64];
            let mut used = 0;
            for (i, (b, _)) in st.queue.iter().enumerate().take(64) {
                iov[used] = IoSlice::new(if i == 0 { &b[st.offset..] } else { &b[..] });
                used += 1;
            }
            let from_queue = used;
            for (b, _) in extra[extra_from..].iter().take(64 - from_queue) {
                iov[used] = IoSlice::new(b);
                used += 1;
            }
            if used == 0 {
                return Wrote::All;
            }
            let offered = used - from_queue;
            let total: usize = iov[..used].iter().map(|b| b.len()).sum();
            let r = sendmsg(
                &self.sock,
                &iov[..used],
                &mut SendAncillaryBuffer::default(),
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            );
            // The socket is full only if it refused bytes: then (and only
            // then) it signals "writable" later, which wakes the thread. A
            // queue longer than one sendmsg's 64 slices is not "full".
            let blocked = matches!(r, Err(Errno::AGAIN)) || matches!(r, Ok(k) if k < total);
            let mut n = match r {
                Ok(0) => {
                    st.broken = true;
                    return Wrote::Failed;
                }
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => 0,
                Err(e) => {
                    log::debug!("connection {}: write failed: {e}", self.id);
                    st.broken = true;
                    return Wrote::Failed;
                }
            };
            // Consume from the queue first, then from `extra`.
            while n > 0 {
                let Some((head, seq)) = st.queue.front() else { break };
                let left = head.len() - st.offset;
                if n >= left {
                    n -= left;
                    st.sent = st.sent.max(*seq);
                    st.queued -= left;
                    st.offset = 0;
                    st.queue.pop_front();
                } else {
                    st.offset += n;
                    st.queued -= n;
                    n = 0;
                }
            }
            let mut consumed = 0;
            while n > 0 && consumed < offered {
                let (b, seq) = &extra[extra_from + consumed];
                consumed += 1;
                if n >= b.len() {
                    n -= b.len();
                    st.sent = st.sent.max(*seq);
                } else {
                    // Part of this frame went out: queue its rest.
                    st.queue.push_back((b.clone(), *seq));
                    st.offset = n;
                    st.queued += b.len() - n;
                    n = 0;
                }
            }
            extra_from += consumed;
            if blocked {
                // The socket is full: everything else waits in the queue.
                for f in &extra[extra_from..] {
                    st.enqueue(f.clone());
                }
                return if st.queue.is_empty() { Wrote::All } else { Wrote::Blocked };
            }
            if st.queue.is_empty() && extra_from >= extra.len() {
                return Wrote::All;
            }
        }
    }

    /// Hub side: hands over frames. Returns false when the connection is now
    /// over its backlog limit (a slow consumer). `warn` renders the "buffer
    /// nearly full" control frame, sent once when the backlog passes 3/4.
    fn deliver(&self, frames: &[Tagged], warn: impl Fn() -> Bytes) -> bool {
        let mut st = self.lock();
        if st.close.is_some() || st.broken {
            return true;
        }
        let owned: Vec<Tagged>;
        let frames = if frames.iter().any(|(_, seq)| *seq != 0 && *seq <= st.floor) {
            owned = frames.iter().filter(|(_, seq)| *seq == 0 || *seq > st.floor).cloned().collect();
            &owned[..]
        } else {
            frames
        };
        if st.holding {
            for f in frames {
                if f.1 == 0 {
                    // A control message is not in the log, so a replay
                    // round cannot bring it back: it is never dropped.
                    st.held_bytes += f.0.len();
                    st.held.push(f.clone());
                    continue;
                }
                if st.overflow {
                    continue;
                }
                if st.held_bytes + f.0.len() > self.max_backlog {
                    st.overflow = true;
                    st.drop_held_events();
                } else {
                    st.held_bytes += f.0.len();
                    st.held.push(f.clone());
                }
            }
            return true;
        }
        if st.queue.is_empty() {
            match self.write_some(&mut st, frames) {
                Wrote::All => {}
                // From empty to non-empty, or broken: the thread takes over.
                Wrote::Blocked | Wrote::Failed => self.wake(),
            }
        } else {
            for f in frames {
                st.enqueue(f.clone());
            }
        }
        if st.queued > self.max_backlog {
            return false;
        }
        if st.queued > self.max_backlog / 4 * 3 && !st.warned {
            st.warned = true;
            st.enqueue((warn(), 0));
        } else if st.queued < self.max_backlog / 2 {
            st.warned = false;
        }
        true
    }

    /// Connection side: queues bytes (pongs, close frames, control messages,
    /// replayed events with their seq) behind everything already queued,
    /// then writes what the socket takes. Returns false if the socket failed.
    /// Shared frames (`render`, `control_frame`) go in without a copy.
    pub fn send(&self, bytes: impl Into<Bytes>, seq: i64) -> bool {
        let mut st = self.lock();
        let b = (bytes.into(), seq);
        if st.queue.is_empty() {
            !matches!(self.write_some(&mut st, &[b]), Wrote::Failed)
        } else {
            st.enqueue(b);
            !st.broken
        }
    }

    /// Connection side: queues a frame the client's own input asked for (a
    /// pong, the answer to a text message) under the same budget as events:
    /// `Reply::Over` when the backlog is already past `max_backlog` (the
    /// client sends but does not read: a slow consumer). A pong behind an
    /// unsent pong replaces it (RFC 6455 §5.5.3: the most recent ping is
    /// the one to answer), so a flood of pings queues one pong.
    pub fn send_reply(&self, bytes: Vec<u8>) -> Reply {
        let mut st = self.lock();
        if st.broken {
            return Reply::Failed;
        }
        if st.queue.is_empty() {
            return match self.write_some(&mut st, &[(bytes.into(), 0)]) {
                Wrote::Failed => Reply::Failed,
                _ => Reply::Sent,
            };
        }
        let is_pong = |b: &[u8]| b.first() == Some(&0x8a);
        let unsent_last = st.queue.len() > 1 || st.offset == 0;
        if is_pong(&bytes) && unsent_last && st.queue.back().is_some_and(|(b, seq)| *seq == 0 && is_pong(b)) {
            if let Some((old, _)) = st.queue.pop_back() {
                st.queued -= old.len();
            }
            st.enqueue((bytes.into(), 0));
            return Reply::Sent;
        }
        if st.queued + bytes.len() > self.max_backlog {
            return Reply::Over;
        }
        st.enqueue((bytes.into(), 0));
        Reply::Sent
    }

    /// Connection side: writes queued bytes without blocking.
    pub fn flush(&self) -> Flushed {
        let mut st = self.lock();
        match self.write_some(&mut st, &[]) {
            Wrote::All => Flushed::Empty,
            Wrote::Blocked => Flushed::Pending,
            Wrote::Failed => Flushed::Failed,
        }
    }

    /// Bytes waiting in the backlog.
    pub fn queued_bytes(&self) -> usize {
        self.lock().queued
    }

    /// The highest event seq fully written to the socket.
    pub fn sent_seq(&self) -> i64 {
        self.lock().sent
    }

    /// Replay: starts a round. Everything the hub handled up to the returned
    /// seq is in the log; what it hands over from now on is held.
    pub fn begin_round(&self, last_seq: &AtomicI64) -> i64 {
        let mut st = self.lock();
        st.drop_held_events();
        st.overflow = false;
        last_seq.load(Ordering::SeqCst)
    }

    /// Replay: the log was replayed up to `replayed`. Unless the held frames
    /// overflowed meanwhile (then replay another round), the held frames
    /// after `replayed` go out and the hub writes directly from now on.
    pub fn go_live(&self, replayed: i64) -> bool {
        let mut st = self.lock();
        if st.overflow {
            return false;
        }
        st.holding = false;
        let held: Vec<Tagged> = std::mem::take(&mut st.held)
            .into_iter()
            .filter(|(_, seq)| *seq == 0 || *seq > replayed)
            .collect();
        st.held_bytes = 0;
        // Events up to `replayed` came from the log; the hub may still hand
        // some of them over (it counts an event before it delivers it):
        // those are dropped, never sent twice.
        st.floor = replayed;
        if !held.is_empty() {
            if st.queue.is_empty() {
                let _ = self.write_some(&mut st, &held);
            } else {
                for f in held {
                    st.enqueue(f);
                }
            }
        }
        true
    }

    /// Asks the connection to end (first reason wins). Its slot under the
    /// per-app limit is freed at once; queued events that have not started
    /// are dropped so the control message goes out next.
    pub fn close(&self, c: Close) {
        {
            let mut st = self.lock();
            if st.close.is_some() {
                return;
            }
            let keep = usize::from(st.offset > 0);
            while st.queue.len() > keep {
                if let Some((b, _)) = st.queue.pop_back() {
                    st.queued -= b.len();
                }
            }
            st.holding = false;
            st.held = Vec::new();
            st.close = Some(c);
        }
        self.release_slot();
        self.wake();
    }

    /// The close the server asked for, once.
    pub fn take_close(&self) -> Option<Close> {
        let mut st = self.lock();
        if st.close_taken {
            return None;
        }
        let c = st.close.clone();
        st.close_taken = c.is_some();
        c
    }

    /// The connection's thread is done: nothing more is written, so what
    /// `sent_seq` says is final (an event the hub hands over after the
    /// client left must not count as delivered).
    pub fn finish(&self) {
        self.lock().broken = true;
    }

    /// The control type of the close the server asked for, if any.
    pub fn closed_by_server(&self) -> Option<String> {
        let st = self.lock();
        let c = st.close.as_ref()?;
        Some(
            c.control
                .as_ref()
                .and_then(|d| d["meta"]["control"]["type"].as_str())
                .unwrap_or("close")
                .to_string(),
        )
    }

    pub fn release_slot(&self) {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(slot);
    }

    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }
}

/// A place under the connection limits; freed when dropped.
pub struct Slot {
    shared: Arc<Shared>,
    app_id: i64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.shared.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_app.get_mut(&self.app_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_app.remove(&self.app_id);
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_app: HashMap<i64, usize>,
}

struct Shared {
    tx: Sender<Msg>,
    counts: Mutex<Counts>,
    max_per_app: usize,
    max_total: usize,
    /// The highest event seq the hub has handled (set before it delivers).
    last_seq: AtomicI64,
    /// Stream id → highest seq written to one of its connections.
    cursors: Mutex<HashMap<i64, i64>>,
    /// Stream id → its live connections' outlets.
    live: Mutex<HashMap<i64, Vec<Arc<Outlet>>>>,
    delivered: AtomicU64,
    slow_disconnects: AtomicU64,
    /// App id → who authorized it, with their scopes, as of the last event
    /// the hub handled. Only the hub thread writes it (on a `token` event's
    /// authorization change, before it counts the event as handled); replay
    /// reads it for every event it sends, so a revocation or scope change
    /// applies to the next event on every path, never to a copy loaded once
    /// per connection.
    grants: RwLock<HashMap<i64, Grants>>,
}

/// One subscriber as the hub sees it.
pub struct Sub {
    pub outlet: Arc<Outlet>,
    pub app_id: i64,
    pub stream_id: i64,
    pub token_id: i64,
    pub types: u16,
    pub opts: Opts,
    pub transport: Transport,
    pub filter_id: Option<i64>,
    pub filter: Option<Arc<Filter>>,
}

enum Msg {
    Items(Vec<Outbox>),
    Join(Sub),
    Leave(u64),
    Shutdown,
}

/// A handle on the hub thread; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

/// Queue depth between committing writers and the hub. When it is full the
/// committing thread waits (backpressure): nothing is dropped, and the hub
/// never blocks, so the wait is short.
const HUB_QUEUE: usize = 8192;
/// How often stream cursors are saved while connections are live.
const CURSOR_SAVE: Duration = Duration::from_secs(1);

/// Most messages one flush takes in while it writes (`flush_taking_more`),
/// so that a steady stream of events cannot hold off a stream update or a
/// join for long.
const MAX_TAKEN_IN_FLUSH: usize = 64;

/// App id → user id → scopes granted.
pub type Grants = HashMap<i64, Vec<String>>;

/// Channel id → who may see its events now, for the messages of one
/// replay page.
pub type ChannelsNow = Vec<(i64, Audience)>;

/// The channel of a message event (`data[0].channel_id`).
fn message_channel(ev: &Event) -> Option<i64> {
    if ev.kind != crate::event::ObjType::Message {
        return None;
    }
    ev.envelope["data"][0]["channel_id"].as_str()?.parse().ok()
}

/// The current audiences of the channels of the message events in `events`.
pub fn channels_now(db: &Db, events: &[Event]) -> Result<ChannelsNow, String> {
    let mut ids: Vec<i64> = events.iter().filter_map(message_channel).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    db.read(|c| Ok(crate::storage::channels::audiences_now(c, &ids)?)).map_err(|e| e.message)
}

/// Who authorized `app_id`, with their scopes.
pub fn grants_of_app(c: &rusqlite::Connection, app_id: i64) -> rusqlite::Result<Grants> {
    Ok(apps::authorizations_of_app(c, app_id)?.into_iter().map(|a| (a.user_id, a.scopes)).collect())
}

/// Is an event with this audience visible to an app with these grants?
pub fn admits(aud: &Audience, app_id: i64, grants: Option<&Grants>) -> bool {
    aud.admits(
        app_id,
        |u| grants.and_then(|m| m.get(&u)).map(|v| v.as_slice()),
        grants.into_iter().flat_map(|m| m.values().map(|v| v.as_slice())),
    )
}

/// The ids of the users who authorized an app, for `$authorized_userids`.
fn authorized_ids(grants: Option<&Grants>) -> Vec<String> {
    let mut ids: Vec<String> = grants.map(|m| m.keys().map(|k| k.to_string()).collect()).unwrap_or_default();
    ids.sort();
    ids
}

/// Does `ev` pass filter `f` for an app with these grants? The list of
/// authorized users is built only for a filter that names it.
fn filter_passes(f: &Filter, ev: &Event, grants: Option<&Grants>) -> bool {
    let ids = if f.uses_authorized() { authorized_ids(grants) } else { Vec::new() };
    f.passes(ev.kind, &ev.envelope, &ids)
}

/// Would a stream (types, app, filter) receive this event? The same rule
/// the hub applies live, for replay and retention.
pub fn wants(ev: &Event, types: u16, app_id: i64, filter: Option<&Filter>, grants: Option<&Grants>) -> bool {
    types & ev.kind.bit() != 0
        && admits(&ev.audience, app_id, grants)
        && filter.is_none_or(|f| filter_passes(f, ev, grants))
}

/// Renders one event for one option set and transport; `meta.position` is
/// the event's place in the log (what a client passes back as `position`).
/// Serialized straight from the shared event: no copy of it is made.
pub fn render(ev: &Event, opts: &Opts, t: Transport) -> Bytes {
    let payload = serde_json::to_vec(&Rendered { ev, opts }).unwrap_or_default();
    Arc::new(wire::frame(t, &payload))
}

/// An event's envelope with its `data` pruned for `opts` and
/// `meta.position` set.
struct Rendered<'a> {
    ev: &'a Event,
    opts: &'a Opts,
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Value::Object(env) = &self.ev.envelope else { return self.ev.envelope.serialize(s) };
        let mut out = s.serialize_map(None)?;
        for (k, v) in env {
            match (k.as_str(), v) {
                ("data", _) => out.serialize_entry(
                    k,
                    &Pruned { v, kind: Kind::of_type(self.ev.kind.as_str()), opts: self.opts },
                )?,
                ("meta", Value::Object(meta)) => {
                    out.serialize_entry(k, &WithPosition { meta, seq: self.ev.seq })?
                }
                _ => out.serialize_entry(k, v)?,
            }
        }
        out.end()
    }
}

/// `meta` with `position` (the log seq, as a string) in its sorted place,
/// as a `Map` (a BTreeMap) would hold it.
struct WithPosition<'a> {
    meta: &'a serde_json::Map<String, Value>,
    seq: i64,
}

impl Serialize for WithPosition<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(None)?;
        let mut placed = false;
        for (k, v) in self.meta.iter().filter(|(k, _)| *k != "position") {
            if !placed && k.as_str() > "position" {
                out.serialize_entry("position", &self.seq.to_string())?;
                placed = true;
            }
            out.serialize_entry(k, v)?;
        }
        if !placed {
            out.serialize_entry("position", &self.seq.to_string())?;
        }
        out.end()
    }
}

/// A control document framed for a transport.
pub fn control_frame(t: Transport, doc: &serde_json::Value) -> Bytes {
    Arc::new(wire::frame(t, &serde_json::to_vec(doc).unwrap_or_default()))
}

impl Hub {
    /// Loads who authorized which app and starts the hub thread and the
    /// thread that saves stream cursors.
    pub fn start(db: Arc<Db>, cfg: &Config) -> Result<Hub, String> {
        let (tx, rx) = bounded(HUB_QUEUE);
        let rows = db.read(|c| Ok(apps::all_authorizations(c)?)).map_err(|e| e.message)?;
        let last_seq = db.last_seq().map_err(|e| e.message)?;
        let shared =
            Shared::new(tx, cfg.max_conns_per_app, cfg.max_conns_total.unwrap_or(usize::MAX), last_seq);
        let mut grants: HashMap<i64, Grants> = HashMap::new();
        for r in rows {
            grants.entry(r.app_id).or_default().insert(r.user_id, r.scopes);
        }
        let (save_tx, save_rx) = bounded::<Vec<(i64, i64)>>(4);
        crate::thread::spawn("cursor-saver".into(), None, move || {
            for batch in save_rx {
                let r = db.write(|tx| {
                    for (stream_id, seq) in &batch {
                        streams::advance(tx, *stream_id, *seq, 0)?;
                    }
                    Ok(())
                });
                if let Err(e) = r {
                    log::warn!("saving stream cursors failed: {}", e.message);
                }
            }
        })
        .map_err(|e| e.to_string())?;
        let state = HubState::new(grants, shared.clone(), save_tx);
        crate::thread::spawn("hub".into(), None, move || state.run(rx)).map_err(|e| e.to_string())?;
        Ok(Hub { shared })
    }

    /// Hands committed items to the hub, in the caller's (commit) order.
    pub fn publish(&self, items: Vec<Outbox>) {
        if self.shared.tx.send(Msg::Items(items)).is_err() {
            log::warn!("hub is stopped; events stay in the log for replay");
        }
    }

    /// Reserves a place under the total and per-app connection limits.
    pub fn reserve(&self, app_id: i64) -> Result<Slot, String> {
        let mut c = self.shared.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.shared.max_total {
            return Err(format!(
                "The server is at its limit of {} stream connections",
                self.shared.max_total
            ));
        }
        let n = c.per_app.get(&app_id).copied().unwrap_or(0);
        if n >= self.shared.max_per_app {
            return Err(format!(
                "This app already has the maximum of {} live stream connections",
                self.shared.max_per_app
            ));
        }
        c.total += 1;
        c.per_app.insert(app_id, n + 1);
        Ok(Slot { shared: self.shared.clone(), app_id })
    }

    pub fn join(&self, sub: Sub) {
        let _ = self.shared.tx.send(Msg::Join(sub));
    }

    pub fn leave(&self, id: u64) {
        let _ = self.shared.tx.send(Msg::Leave(id));
    }

    pub fn shutdown(&self) {
        let _ = self.shared.tx.send(Msg::Shutdown);
    }

    /// Would a stream (types, app, filter) receive this event under the
    /// app's grants as they are now (as of the last event the hub handled)?
    /// A message must also be visible under its channel's ACL as it is now
    /// (`channels`, from `channels_now`): a user removed from a channel is
    /// not replayed its earlier messages. Replay asks this for every event
    /// it sends.
    pub fn wants_now(
        &self,
        ev: &Event,
        types: u16,
        app_id: i64,
        filter: Option<&Filter>,
        channels: &ChannelsNow,
    ) -> bool {
        if types & ev.kind.bit() == 0 {
            return false;
        }
        let all = self.shared.grants.read().unwrap_or_else(|p| p.into_inner());
        let grants = all.get(&app_id);
        let channel_admits =
            || match message_channel(ev).and_then(|c| channels.iter().find(|(id, _)| *id == c)) {
                Some((_, aud)) => admits(aud, app_id, grants),
                None => true,
            };
        wants(ev, types, app_id, filter, grants) && channel_admits()
    }

    /// The highest event seq the hub has handled.
    pub fn last_seq(&self) -> &AtomicI64 {
        &self.shared.last_seq
    }

    /// How far a stream's live connections got (newer than the saved cursor
    /// while they run).
    pub fn cursor_of(&self, stream_id: i64) -> i64 {
        let saved = self.shared.cursors.lock().map(|m| m.get(&stream_id).copied().unwrap_or(0)).unwrap_or(0);
        let live = self
            .shared
            .live
            .lock()
            .map(|m| {
                m.get(&stream_id).map(|v| v.iter().map(|o| o.sent_seq()).max().unwrap_or(0)).unwrap_or(0)
            })
            .unwrap_or(0);
        saved.max(live)
    }

    /// Does the stream have a live connection?
    pub fn is_live(&self, stream_id: i64) -> bool {
        self.shared.live.lock().map(|m| m.contains_key(&stream_id)).unwrap_or(false)
    }

    /// Lists a live connection of a stream (for `cursor_of`).
    pub fn register(&self, stream_id: i64, outlet: &Arc<Outlet>) {
        if let Ok(mut m) = self.shared.live.lock() {
            m.entry(stream_id).or_default().push(outlet.clone());
        }
    }

    /// Unlists it when it ends, keeping how far it got.
    pub fn unregister(&self, stream_id: i64, outlet: &Outlet) {
        if let Ok(mut m) = self.shared.live.lock() {
            if let Some(v) = m.get_mut(&stream_id) {
                v.retain(|o| o.id != outlet.id);
                if v.is_empty() {
                    m.remove(&stream_id);
                }
            }
        }
        self.note_cursor(stream_id, outlet.sent_seq());
    }

    /// Records how far a connection got (when it ends).
    pub fn note_cursor(&self, stream_id: i64, seq: i64) {
        if let Ok(mut m) = self.shared.cursors.lock() {
            let e = m.entry(stream_id).or_insert(0);
            *e = (*e).max(seq);
        }
    }

    /// Counters for operators.
    pub fn stats(&self) -> HubStats {
        let (connections, per_app) = self
            .shared
            .counts
            .lock()
            .map(|c| (c.total, c.per_app.iter().map(|(k, v)| (*k, *v)).collect()))
            .unwrap_or_default();
        HubStats {
            connections,
            per_app,
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            slow_disconnects: self.shared.slow_disconnects.load(Ordering::Relaxed),
            hub_queue: self.shared.tx.len(),
        }
    }
}

/// What `Hub::stats` reports.
pub struct HubStats {
    pub connections: usize,
    /// (app id, live connections).
    pub per_app: Vec<(i64, usize)>,
    pub delivered: u64,
    pub slow_disconnects: u64,
    /// Items waiting for the hub.
    pub hub_queue: usize,
}

struct HubState {
    conns: Vec<Sub>,
    /// Outlet id → index in `conns`.
    index: HashMap<u64, usize>,
    shared: Arc<Shared>,
    save_tx: Sender<Vec<(i64, i64)>>,
    /// Cursors last handed to the saver.
    saved: HashMap<i64, i64>,
    last_save: Instant,
    pending: Pending,
    /// A message taken from the queue during a flush that must wait for
    /// the flush to end (it is handled first in the next round).
    deferred: Option<Msg>,
}

impl Shared {
    fn new(tx: Sender<Msg>, max_per_app: usize, max_total: usize, last_seq: i64) -> Arc<Shared> {
        Arc::new(Shared {
            tx,
            counts: Mutex::new(Counts::default()),
            max_per_app,
            max_total,
            last_seq: AtomicI64::new(last_seq),
            cursors: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            delivered: AtomicU64::new(0),
            slow_disconnects: AtomicU64::new(0),
            grants: RwLock::new(HashMap::new()),
        })
    }
}

/// Frames for each connection gathered during one batch, by index in
/// `HubState::conns` (stable until the next flush: joins append, leaves
/// flush first). Kept across batches so its vectors are reused.
#[derive(Default)]
struct Pending {
    /// Indices with frames, in the order they first got one.
    order: Vec<usize>,
    frames: Vec<Vec<Tagged>>,
}

impl Pending {
    fn push(&mut self, i: usize, f: Tagged) {
        if i >= self.frames.len() {
            self.frames.resize_with(i + 1, Vec::new);
        }
        if self.frames[i].is_empty() {
            self.order.push(i);
        }
        self.frames[i].push(f);
    }
}

/// The value `memo` holds for `key`, made (and kept) on the first ask: what
/// the hub works out once per event, app, filter or option set and shares
/// among the connections that ask again. A list: there are only a few keys.
fn once_per<K: PartialEq, V: Clone>(memo: &mut Vec<(K, V)>, key: K, make: impl FnOnce() -> V) -> V {
    if let Some((_, v)) = memo.iter().find(|(k, _)| *k == key) {
        return v.clone();
    }
    let v = make();
    memo.push((key, v.clone()));
    v
}

impl HubState {
    fn new(grants: HashMap<i64, Grants>, shared: Arc<Shared>, save_tx: Sender<Vec<(i64, i64)>>) -> HubState {
        *shared.grants.write().unwrap_or_else(|p| p.into_inner()) = grants;
        HubState {
            conns: Vec::new(),
            index: HashMap::new(),
            shared,
            save_tx,
            saved: HashMap::new(),
            last_save: Instant::now(),
            pending: Pending::default(),
            deferred: None,
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let timeout = if self.conns.is_empty() { Duration::from_secs(60) } else { CURSOR_SAVE };
            let first = match self.deferred.take().map(Ok).unwrap_or_else(|| rx.recv_timeout(timeout)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.save_cursors();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Take everything that queued up while we were busy: each
            // connection then gets all its frames in one write.
            let mut batch = vec![first];
            while batch.len() < 1024 {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut pending = std::mem::take(&mut self.pending);
            for msg in batch {
                match msg {
                    Msg::Items(items) => {
                        for it in items {
                            match it {
                                Outbox::Event(ev) => self.event(&ev, &mut pending),
                                Outbox::Signal(_, s) => {
                                    self.flush(&mut pending);
                                    self.signal(s);
                                }
                            }
                        }
                    }
                    Msg::Join(sub) => {
                        // From here on the connection gets (or holds) every
                        // event the hub handles; tell its thread.
                        sub.outlet.joined.store(true, Ordering::SeqCst);
                        sub.outlet.wake();
                        self.index.insert(sub.outlet.id, self.conns.len());
                        self.conns.push(sub);
                    }
                    Msg::Leave(id) => {
                        self.flush(&mut pending);
                        self.remove(id);
                    }
                    Msg::Shutdown => {
                        self.flush(&mut pending);
                        self.save_cursors();
                        for c in &self.conns {
                            c.outlet.close(Close::with_control(
                                1001,
                                "shutdown",
                                "The server is shutting down",
                            ));
                        }
                        return;
                    }
                }
            }
            self.flush_taking_more(&mut pending, &rx);
            self.pending = pending;
            if self.last_save.elapsed() >= CURSOR_SAVE {
                self.save_cursors();
            }
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(i) = self.index.remove(&id) {
            // The connection's thread already recorded how far it got
            // (`Hub::unregister`).
            self.conns.swap_remove(i);
            if let Some(moved) = self.conns.get(i) {
                self.index.insert(moved.outlet.id, i);
            }
        }
    }

    /// Hands changed stream cursors to the saver thread (never blocks: a
    /// full queue just means the next save carries them).
    fn save_cursors(&mut self) {
        self.last_save = Instant::now();
        let mut changed = Vec::new();
        {
            let mut m = self.shared.cursors.lock().unwrap_or_else(|p| p.into_inner());
            for c in &self.conns {
                let sent = c.outlet.sent_seq();
                let e = m.entry(c.stream_id).or_insert(0);
                *e = (*e).max(sent);
            }
            for (stream, seq) in m.iter() {
                if self.saved.get(stream) != Some(seq) {
                    changed.push((*stream, *seq));
                }
            }
        }
        if changed.is_empty() {
            return;
        }
        if self.save_tx.try_send(changed.clone()).is_ok() {
            self.saved.extend(changed);
        }
    }

    fn event(&mut self, ev: &Event, pending: &mut Pending) {
        // Grants first, then the seq: a replay that reads up to `last_seq`
        // then sees every authorization change up to it.
        if let Some(a) = &ev.auth {
            let mut grants = self.shared.grants.write().unwrap_or_else(|p| p.into_inner());
            match &a.scopes {
                Some(s) => {
                    grants.entry(a.app_id).or_default().insert(a.user_id, s.clone());
                }
                None => {
                    if let Some(m) = grants.get_mut(&a.app_id) {
                        m.remove(&a.user_id);
                        if m.is_empty() {
                            grants.remove(&a.app_id);
                        }
                    }
                }
            }
        }
        self.shared.last_seq.fetch_max(ev.seq, Ordering::SeqCst);
        let bit = ev.kind.bit();
        let mut visible: Vec<(i64, bool)> = Vec::new();
        // (filter, app) → passes; a filter is matched once per event (per
        // app only when it uses $authorized_userids).
        let mut filtered: Vec<((usize, i64), bool)> = Vec::new();
        let mut rendered: Vec<((u16, Transport), Bytes)> = Vec::new();
        let all_grants = self.shared.grants.read().unwrap_or_else(|p| p.into_inner());
        for (i, c) in self.conns.iter().enumerate() {
            if c.types & bit == 0 {
                continue;
            }
            let grants = || all_grants.get(&c.app_id);
            if !once_per(&mut visible, c.app_id, || admits(&ev.audience, c.app_id, grants())) {
                continue;
            }
            if let Some(f) = &c.filter {
                let key = (Arc::as_ptr(f) as usize, if f.uses_authorized() { c.app_id } else { 0 });
                if !once_per(&mut filtered, key, || filter_passes(f, ev, grants())) {
                    continue;
                }
            }
            let frame =
                once_per(&mut rendered, (c.opts.bits(), c.transport), || render(ev, &c.opts, c.transport));
            pending.push(i, (frame, ev.seq));
        }
    }

    /// Writes every connection's frames of this batch in one go.
    fn flush(&mut self, pending: &mut Pending) {
        self.flush_with(pending, None);
    }

    /// `flush`, taking in the events that arrive meanwhile: before each
    /// connection's write, events queued since are added to every
    /// connection's frames, so the connections not yet written send them
    /// in the same write (the others at the end of the pass, in order).
    /// A fan-out pass to 100 connections takes about a millisecond (to
    /// 1,000, several), during which about two posts arrive at 2,000/s;
    /// before, each waited for the pass to end and then for a pass of its
    /// own. Stops taking at the first message that is not plain events (it
    /// could change who gets what), which waits in `deferred` and is
    /// handled first in the next round, so messages keep their order.
    fn flush_taking_more(&mut self, pending: &mut Pending, rx: &Receiver<Msg>) {
        self.flush_with(pending, Some(rx));
    }

    fn flush_with(&mut self, pending: &mut Pending, mut rx: Option<&Receiver<Msg>>) {
        let mut taken = 0;
        let mut k = 0;
        while k < pending.order.len() {
            if let Some(r) = rx {
                if taken < MAX_TAKEN_IN_FLUSH && self.take_events(r, pending) {
                    taken += 1;
                    continue;
                }
                if self.deferred.is_some() {
                    rx = None;
                }
            }
            let i = pending.order[k];
            k += 1;
            let (c, f) = (&self.conns[i], &pending.frames[i]);
            self.shared.delivered.fetch_add(f.len() as u64, Ordering::Relaxed);
            let t = c.transport;
            let warn = || {
                control_frame(
                    t,
                    &control(
                        "buffer_nearly_full",
                        "The connection's buffer is over three quarters full; read faster or be disconnected",
                    ),
                )
            };
            if !c.outlet.deliver(f, warn) {
                self.shared.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                log::info!("connection {}: slow consumer, disconnecting", c.outlet.id);
                c.outlet.close(Close::slow_consumer());
            }
            // Written: frames that arrive later put it in `order` again.
            pending.frames[i].clear();
        }
        pending.order.clear();
    }

    /// Takes one waiting message during a flush if it holds only events,
    /// and adds them to `pending`; any other message goes to `deferred`.
    /// Returns whether it took one.
    fn take_events(&mut self, rx: &Receiver<Msg>, pending: &mut Pending) -> bool {
        let Ok(msg) = rx.try_recv() else { return false };
        match msg {
            Msg::Items(items) if items.iter().all(|it| matches!(it, Outbox::Event(_))) => {
                for it in items {
                    if let Outbox::Event(ev) = it {
                        self.event(&ev, pending);
                    }
                }
                true
            }
            other => {
                self.deferred = Some(other);
                false
            }
        }
    }

    /// Sends one control document to each of `conns`, in order with their
    /// events; it is framed once per transport.
    fn notify_all<'a>(conns: impl Iterator<Item = &'a Sub>, doc: &serde_json::Value) {
        let mut framed: Vec<(Transport, Bytes)> = Vec::new();
        for c in conns {
            let f = once_per(&mut framed, c.transport, || control_frame(c.transport, doc));
            let _ = c.outlet.deliver(&[(f, 0)], || Arc::new(Vec::new()));
        }
    }

    fn signal(&mut self, s: Signal) {
        match s {
            Signal::StreamUpdated { stream_id, types, filter_id, filter } => {
                let names: Vec<&str> = crate::event::ObjType::ALL
                    .iter()
                    .filter(|t| types & t.bit() != 0)
                    .map(|t| t.as_str())
                    .collect();
                let mut doc = control(
                    "stream_updated",
                    "The stream's object types or filter changed; events from here on follow them",
                );
                doc["meta"]["control"]["object_types"] = json!(names);
                doc["meta"]["control"]["filter_id"] = json!(filter_id.map(|f| f.to_string()));
                for c in self.conns.iter_mut().filter(|c| c.stream_id == stream_id) {
                    c.types = types;
                    c.filter_id = filter_id;
                    c.filter = filter.clone();
                }
                Self::notify_all(self.conns.iter().filter(|c| c.stream_id == stream_id), &doc);
            }
            Signal::FilterChanged { filter_id, filter } => {
                // Streams keep the filter (changed) or lose it (deleted).
                let (msg, kept) = match filter {
                    Some(_) => {
                        ("The stream's filter changed; events from here on follow it", Some(filter_id))
                    }
                    None => ("The stream's filter was deleted; events are no longer filtered", None),
                };
                let mut doc = control("stream_updated", msg);
                doc["meta"]["control"]["filter_id"] = json!(kept.map(|f| f.to_string()));
                let mut told = Vec::new();
                for (i, c) in
                    self.conns.iter_mut().enumerate().filter(|(_, c)| c.filter_id == Some(filter_id))
                {
                    c.filter = filter.clone();
                    c.filter_id = kept;
                    told.push(i);
                }
                Self::notify_all(told.into_iter().map(|i| &self.conns[i]), &doc);
            }
            Signal::StreamDeleted { stream_id } => {
                for c in self.conns.iter().filter(|c| c.stream_id == stream_id) {
                    c.outlet.close(Close::with_control(1000, "stream_deleted", "The stream was deleted"));
                }
            }
            Signal::TokenRevoked { token_id } => {
                for c in self.conns.iter().filter(|c| c.token_id == token_id) {
                    c.outlet.close(Close::with_control(
                        1008,
                        "token_revoked",
                        "The access token was revoked",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Audience, ObjType};
    use crate::model::prune;
    use std::io::Read;
    use std::net::TcpListener;

    /// A hub state (no thread) with `n` live subscribers on real sockets,
    /// its queue, and the subscribers' client ends.
    fn hub_with(n: usize) -> (HubState, Sender<Msg>, Receiver<Msg>, Vec<TcpStream>) {
        let (tx, rx) = bounded(256);
        let shared = Shared::new(tx.clone(), n, n, 0);
        let mut st = HubState::new(HashMap::new(), shared.clone(), bounded(1).0);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut clients = Vec::new();
        for k in 0..n {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let (server, _) = listener.accept().unwrap();
            let slot = Hub { shared: shared.clone() }.reserve(1).unwrap();
            let outlet = Outlet::new(server, 1 << 20, slot);
            outlet.lock().holding = false;
            st.index.insert(outlet.id, k);
            st.conns.push(Sub {
                outlet,
                app_id: 1,
                stream_id: k as i64 + 1,
                token_id: 1,
                types: u16::MAX,
                opts: Opts::default(),
                transport: Transport::Chunked,
                filter_id: None,
                filter: None,
            });
            clients.push(client);
        }
        (st, tx, rx, clients)
    }

    fn post_event(seq: i64) -> Event {
        Event {
            seq,
            kind: ObjType::Post,
            audience: Audience::Public,
            auth: None,
            envelope: json!({"meta": {"type": "post"}, "data": {"id": seq.to_string()}}),
            created_at: 0,
        }
    }

    fn post(seq: i64) -> Outbox {
        Outbox::Event(Arc::new(post_event(seq)))
    }

    /// The event positions a client has received: reads until it has
    /// `want` of them, then whatever else is already there.
    fn positions(c: &mut TcpStream, want: usize) -> Vec<i64> {
        let mut text = String::new();
        let mut buf = [0u8; 65536];
        let count = |t: &str| t.matches("\"position\":").count();
        while count(&text) < want {
            let n = c.read(&mut buf).expect("the hub's frames");
            assert!(n > 0, "closed after {text}");
            text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        c.set_nonblocking(true).unwrap();
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        c.set_nonblocking(false).unwrap();
        text.split("\"position\":\"").skip(1).map(|t| t[..t.find('"').unwrap()].parse().unwrap()).collect()
    }

    /// While the hub writes a batch, it takes in the plain events queued
    /// meanwhile, so every connection gets them in the same pass and in
    /// order; it stops at the first message that could change who gets
    /// what (a signal), which waits, with everything behind it, for the
    /// next round; and it takes at most `MAX_TAKEN_IN_FLUSH` messages.
    #[test]
    fn a_flush_takes_in_queued_events_up_to_a_signal() {
        let (mut st, tx, rx, mut clients) = hub_with(3);
        let mut pending = Pending::default();
        st.event(&post_event(1), &mut pending);
        tx.send(Msg::Items(vec![post(2), post(3)])).unwrap();
        tx.send(Msg::Items(vec![post(4)])).unwrap();
        tx.send(Msg::Items(vec![post(5), Outbox::Signal(6, Signal::StreamDeleted { stream_id: 99 })]))
            .unwrap();
        tx.send(Msg::Items(vec![post(6)])).unwrap();
        st.flush_taking_more(&mut pending, &rx);
        for c in clients.iter_mut() {
            assert_eq!(positions(c, 4), vec![1, 2, 3, 4]);
        }
        assert!(
            matches!(&st.deferred, Some(Msg::Items(items)) if items.len() == 2),
            "the message with the signal waits for the next round"
        );
        assert_eq!(rx.len(), 1, "the message behind it stays queued");
        assert!(pending.order.is_empty() && pending.frames.iter().all(Vec::is_empty));

        // At most MAX_TAKEN_IN_FLUSH messages in one flush.
        let (mut st, tx, rx, mut clients) = hub_with(2);
        let mut pending = Pending::default();
        st.event(&post_event(1), &mut pending);
        for seq in 2..=100 {
            tx.send(Msg::Items(vec![post(seq)])).unwrap();
        }
        st.flush_taking_more(&mut pending, &rx);
        let taken = 1 + MAX_TAKEN_IN_FLUSH as i64;
        for c in clients.iter_mut() {
            assert_eq!(positions(c, taken as usize), (1..=taken).collect::<Vec<_>>());
        }
        assert_eq!(rx.len(), 99 - MAX_TAKEN_IN_FLUSH);
        assert!(st.deferred.is_none());
    }

    #[test]
    fn render_is_the_pruned_envelope_with_its_position() {
        for (kind, envelope) in [
            (ObjType::Post, crate::model::tests::everything()),
            (
                ObjType::Channel,
                json!({"meta": {"a": 1, "position": "stale", "z": 2}, "data": {"raw": 1, "marker": 2}}),
            ),
            (ObjType::User, json!({"meta": {}, "data": []})),
            (ObjType::Post, json!({"meta": "not an object", "data": null, "extra": {"raw": 1}})),
        ] {
            let ev = Event { seq: 42, kind, audience: Audience::Public, auth: None, envelope, created_at: 0 };
            // Every fifth option set: each option both on and off, among
            // many combinations of the others.
            for b in (0..1u16 << 12).step_by(5) {
                let o = Opts::from_bits(b);
                let mut want = ev.envelope.clone();
                if let Some(d) = want.get_mut("data") {
                    prune(d, Kind::of_type(kind.as_str()), &o);
                }
                if let Some(m) = want.get_mut("meta").and_then(|m| m.as_object_mut()) {
                    m.insert("position".into(), json!("42"));
                }
                let want = wire::frame(Transport::Ws, want.to_string().as_bytes());
                assert_eq!(*render(&ev, &o, Transport::Ws), want, "options {b:#x}, {}", ev.envelope);
            }
        }
    }
}
