//! The hub: one thread that takes committed events in commit order, decides
//! once per (event, app) who may see them, renders each once per option set,
//! and writes the shared bytes to every caught-up connection without
//! blocking (DESIGN.md §3). Connections that are behind get the bytes in
//! their bounded backlog, which their own thread drains. Also: per-app
//! connection slots and the slow-consumer policy.

use crate::config::Config;
use crate::event::{Audience, Event, Outbox, Signal};
use crate::model::{prune, Kind, Opts};
use crate::storage::{apps, Db};
use crate::wire::{self, Transport};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;
use rustix::net::{sendmsg, SendAncillaryBuffer, SendFlags};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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
    pub fn with_control(code: u16, kind: &str, reason: impl Into<String>) -> Close {
        let reason = reason.into();
        Close { code, control: Some(json!({"meta": {"control": {"type": kind, "message": reason}}})), reason }
    }
}

/// The control document telling a connection something without closing it.
pub fn control(kind: &str, message: &str) -> serde_json::Value {
    json!({"meta": {"control": {"type": kind, "message": message}}})
}

#[derive(Default)]
struct OutState {
    queue: VecDeque<Bytes>,
    /// Bytes of `queue[0]` already written.
    offset: usize,
    /// Bytes waiting in `queue` (minus `offset`).
    queued: usize,
    close: Option<Close>,
    close_taken: bool,
    /// The socket failed; nothing more is written.
    broken: bool,
}

/// Outcome of writing as much as the socket takes.
enum Wrote {
    All,
    Blocked,
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
    wake: OwnedFd,
    state: Mutex<OutState>,
    max_backlog: usize,
    slot: Mutex<Option<Slot>>,
    /// The last event seq the hub had handled when this outlet joined.
    pub joined_at: AtomicI64,
    pub joined: AtomicBool,
}

impl Outlet {
    pub fn new(sock: TcpStream, max_backlog: usize, slot: Slot) -> std::io::Result<Arc<Outlet>> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let wake = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Arc::new(Outlet {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            sock,
            wake,
            state: Mutex::new(OutState::default()),
            max_backlog,
            slot: Mutex::new(Some(slot)),
            joined_at: AtomicI64::new(0),
            joined: AtomicBool::new(false),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, OutState> {
        // A panic elsewhere while holding this lock leaves plain data behind;
        // carry on with it rather than poison every later write.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The eventfd the connection thread polls; readable after `wake`.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    fn wake(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Resets the eventfd after the connection thread woke.
    pub fn clear_wake(&self) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut b);
    }

    /// Writes queued bytes, then `extra`, without blocking; whatever does
    /// not fit is queued (a partly written frame keeps its offset).
    fn write_locked(&self, st: &mut OutState, extra: &[Bytes]) -> Wrote {
        if st.broken {
            return Wrote::Failed;
        }
        let mut extra_from = 0;
        loop {
            let mut iov: Vec<IoSlice> = Vec::with_capacity(64);
            for (i, b) in st.queue.iter().enumerate().take(64) {
                iov.push(IoSlice::new(if i == 0 { &b[st.offset..] } else { &b[..] }));
            }
            let from_queue = iov.len();
            if from_queue < 64 {
                for b in extra[extra_from..].iter().take(64 - from_queue) {
                    iov.push(IoSlice::new(b));
                }
            }
            if iov.is_empty() {
                return Wrote::All;
            }
            let offered = iov.len() - from_queue;
            let r = sendmsg(
                &self.sock,
                &iov,
                &mut SendAncillaryBuffer::default(),
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            );
            drop(iov);
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
                let Some(head) = st.queue.front() else { break };
                let left = head.len() - st.offset;
                if n >= left {
                    n -= left;
                    st.queued -= left;
                    st.offset = 0;
                    st.queue.pop_front();
                } else {
                    st.offset += n;
                    st.queued -= n;
                    n = 0;
                }
            }
            let mut consumed_extra = 0;
            while n > 0 && consumed_extra < offered {
                let b = &extra[extra_from + consumed_extra];
                if n >= b.len() {
                    n -= b.len();
                    consumed_extra += 1;
                } else {
                    // Part of this frame went out: queue its rest.
                    st.queue.push_back(b.clone());
                    st.offset = n;
                    st.queued += b.len() - n;
                    consumed_extra += 1;
                    n = 0;
                }
            }
            extra_from += consumed_extra;
            if !st.queue.is_empty() || r.is_err() {
                // The socket is full: everything else waits in the queue.
                for b in &extra[extra_from..] {
                    st.queued += b.len();
                    st.queue.push_back(b.clone());
                }
                return if st.queue.is_empty() { Wrote::All } else { Wrote::Blocked };
            }
            if extra_from >= extra.len() && st.queue.is_empty() {
                return Wrote::All;
            }
        }
    }

    /// Hub side: hands over frames. Returns false when the connection is now
    /// over its backlog limit (a slow consumer).
    fn deliver(&self, frames: &[Bytes]) -> bool {
        let mut st = self.lock();
        if st.close.is_some() || st.broken {
            return true;
        }
        if st.queue.is_empty() {
            match self.write_locked(&mut st, frames) {
                Wrote::All => {}
                // From empty to non-empty, or broken: the thread takes over.
                Wrote::Blocked | Wrote::Failed => self.wake(),
            }
        } else {
            for f in frames {
                st.queued += f.len();
                st.queue.push_back(f.clone());
            }
        }
        st.queued <= self.max_backlog
    }

    /// Connection side: queues bytes (pongs, close frames, control messages,
    /// replayed events) behind everything already queued, then writes what
    /// the socket takes. Returns false if the socket failed.
    pub fn send(&self, bytes: Vec<u8>) -> bool {
        let mut st = self.lock();
        let b = Arc::new(bytes);
        if st.queue.is_empty() {
            !matches!(self.write_locked(&mut st, &[b]), Wrote::Failed)
        } else {
            st.queued += b.len();
            st.queue.push_back(b);
            !st.broken
        }
    }

    /// Connection side: writes queued bytes without blocking.
    pub fn flush(&self) -> Flushed {
        let mut st = self.lock();
        match self.write_locked(&mut st, &[]) {
            Wrote::All => Flushed::Empty,
            Wrote::Blocked => Flushed::Pending,
            Wrote::Failed => Flushed::Failed,
        }
    }

    /// Is anything waiting to be written? Checked under the lock right before
    /// the thread parks, so a hub write after it always wakes the thread.
    pub fn has_backlog(&self) -> bool {
        !self.lock().queue.is_empty()
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
                if let Some(b) = st.queue.pop_back() {
                    st.queued -= b.len();
                }
            }
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
    delivered: AtomicU64,
    slow_disconnects: AtomicU64,
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

impl Hub {
    /// Loads who authorized which app and starts the hub thread.
    pub fn start(db: Arc<Db>, cfg: &Config) -> Result<Hub, String> {
        let (tx, rx) = bounded(HUB_QUEUE);
        let shared = Arc::new(Shared {
            tx,
            counts: Mutex::new(Counts::default()),
            max_per_app: cfg.max_conns_per_app,
            max_total: cfg.max_conns_total,
            delivered: AtomicU64::new(0),
            slow_disconnects: AtomicU64::new(0),
        });
        let rows = db.read(|c| Ok(apps::all_authorizations(c)?)).map_err(|e| e.message)?;
        let last_seq = db.last_seq().map_err(|e| e.message)?;
        let mut grants: HashMap<i64, HashMap<i64, Vec<String>>> = HashMap::new();
        for r in rows {
            grants.entry(r.app_id).or_default().insert(r.user_id, r.scopes);
        }
        let state =
            HubState { conns: Vec::new(), index: HashMap::new(), grants, last_seq, shared: shared.clone() };
        crate::server::spawn("hub".into(), None, move || state.run(rx)).map_err(|e| e.to_string())?;
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

    /// Counters for operators: (live connections, events delivered,
    /// slow-consumer disconnects).
    pub fn stats(&self) -> (usize, u64, u64) {
        let total = self.shared.counts.lock().map(|c| c.total).unwrap_or(0);
        (
            total,
            self.shared.delivered.load(Ordering::Relaxed),
            self.shared.slow_disconnects.load(Ordering::Relaxed),
        )
    }
}

struct HubState {
    conns: Vec<Sub>,
    /// Outlet id → index in `conns`.
    index: HashMap<u64, usize>,
    /// App id → user id → scopes granted.
    grants: HashMap<i64, HashMap<i64, Vec<String>>>,
    last_seq: i64,
    shared: Arc<Shared>,
}

/// Frames for each connection gathered during one batch, in order.
#[derive(Default)]
struct Pending {
    order: Vec<u64>,
    frames: HashMap<u64, Vec<Bytes>>,
}

/// Renders one event for one option set and transport.
pub fn render(ev: &Event, opts: &Opts, t: Transport) -> Bytes {
    let mut env = ev.envelope.clone();
    if let Some(d) = env.get_mut("data") {
        prune(d, Kind::of_type(ev.kind.as_str()), opts);
    }
    let payload = serde_json::to_vec(&env).unwrap_or_default();
    Arc::new(wire::frame(t, &payload))
}

impl HubState {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
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
            let mut pending = Pending::default();
            for msg in batch {
                match msg {
                    Msg::Items(items) => {
                        for it in items {
                            match it {
                                Outbox::Event(ev) => self.event(&ev, &mut pending),
                                Outbox::Signal(s) => {
                                    self.flush(&mut pending);
                                    self.signal(s);
                                }
                            }
                        }
                    }
                    Msg::Join(sub) => {
                        sub.outlet.joined_at.store(self.last_seq, Ordering::SeqCst);
                        sub.outlet.joined.store(true, Ordering::SeqCst);
                        self.index.insert(sub.outlet.id, self.conns.len());
                        self.conns.push(sub);
                    }
                    Msg::Leave(id) => {
                        self.flush(&mut pending);
                        self.remove(id);
                    }
                    Msg::Shutdown => {
                        self.flush(&mut pending);
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
            self.flush(&mut pending);
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(i) = self.index.remove(&id) {
            self.conns.swap_remove(i);
            if let Some(moved) = self.conns.get(i) {
                self.index.insert(moved.outlet.id, i);
            }
        }
    }

    fn admits(&self, aud: &Audience, app_id: i64) -> bool {
        let g = self.grants.get(&app_id);
        aud.admits(
            app_id,
            |u| g.and_then(|m| m.get(&u)).map(|v| v.as_slice()),
            g.into_iter().flat_map(|m| m.values().map(|v| v.as_slice())),
        )
    }

    fn event(&mut self, ev: &Event, pending: &mut Pending) {
        self.last_seq = self.last_seq.max(ev.seq);
        if let Some(a) = &ev.auth {
            match &a.scopes {
                Some(s) => {
                    self.grants.entry(a.app_id).or_default().insert(a.user_id, s.clone());
                }
                None => {
                    if let Some(m) = self.grants.get_mut(&a.app_id) {
                        m.remove(&a.user_id);
                    }
                }
            }
        }
        let bit = ev.kind.bit();
        let mut visible: Vec<(i64, bool)> = Vec::new();
        let mut rendered: Vec<((u16, Transport), Bytes)> = Vec::new();
        for c in &self.conns {
            if c.types & bit == 0 {
                continue;
            }
            let ok = match visible.iter().find(|(a, _)| *a == c.app_id) {
                Some((_, ok)) => *ok,
                None => {
                    let ok = self.admits(&ev.audience, c.app_id);
                    visible.push((c.app_id, ok));
                    ok
                }
            };
            if !ok {
                continue;
            }
            let key = (c.opts.bits(), c.transport);
            let frame = match rendered.iter().find(|(k, _)| *k == key) {
                Some((_, f)) => f.clone(),
                None => {
                    let f = render(ev, &c.opts, c.transport);
                    rendered.push((key, f.clone()));
                    f
                }
            };
            let id = c.outlet.id;
            pending.frames.entry(id).or_insert_with(|| {
                pending.order.push(id);
                Vec::new()
            });
            if let Some(v) = pending.frames.get_mut(&id) {
                v.push(frame);
            }
        }
    }

    /// Writes every connection's frames of this batch in one go.
    fn flush(&mut self, pending: &mut Pending) {
        for id in pending.order.drain(..) {
            let Some(frames) = pending.frames.remove(&id) else { continue };
            let Some(&i) = self.index.get(&id) else { continue };
            let outlet = &self.conns[i].outlet;
            self.shared.delivered.fetch_add(frames.len() as u64, Ordering::Relaxed);
            if !outlet.deliver(&frames) {
                self.shared.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                log::info!("connection {id}: slow consumer, disconnecting");
                outlet.close(Close::with_control(
                    1008,
                    "slow_consumer",
                    "Disconnected: the connection's buffer filled because the client did not read fast enough",
                ));
            }
        }
    }

    fn signal(&mut self, s: Signal) {
        match s {
            Signal::StreamUpdated { stream_id, types } => {
                for c in self.conns.iter_mut().filter(|c| c.stream_id == stream_id) {
                    c.types = types;
                }
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
