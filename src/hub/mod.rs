//! The hub: one thread that takes committed events in commit order, decides
//! once per (event, app) who may see them, renders each once per option set,
//! and writes the shared bytes to every caught-up connection without
//! blocking (DESIGN.md §3). Connections that are behind get the bytes in
//! their bounded backlog, which their own thread drains. Also: per-app
//! connection slots and the slow-consumer policy.
//!
//! Here: the handle (`Hub`) and the connection slots; `state` the hub
//! thread and its fan-out; `outlet` a connection's write side and backlog;
//! `frames` rendering. Who may receive what is `crate::delivery`.

mod frames;
mod outlet;
mod state;

use crate::config::Config;
use crate::delivery::{admits, wants, ChannelsNow, Grants};
use crate::delivery::{filter_passes, message_channel};
use crate::event::{Event, Outbox};
use crate::filter::Filter;
use crate::model::Opts;
use crate::storage::EventLog;
use crate::storage::{apps, streams, Db};
use crate::wire::Transport;
use crossbeam_channel::{bounded, Sender};
pub use frames::{control_frame, render};
pub use outlet::{control, Bytes, Close, Flushed, Outlet, Reply, Tagged};
use state::HubState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

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
    /// The connection's own subscription parameters.
    pub subscription: Arc<crate::delivery::Subscription>,
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

#[cfg(test)]
mod tests {
    use super::state::Pending;
    use super::*;
    use crate::event::{Audience, ObjType, Signal};
    use crate::model::{prune, Kind};
    use crate::wire;
    use crossbeam_channel::Receiver;
    use serde_json::json;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

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
                subscription: Default::default(),
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
