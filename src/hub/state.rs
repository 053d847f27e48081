//! The hub thread's state and loop: joins and leaves, signals, and the
//! fan-out of each event to the connections that may receive it.

use super::*;
use crate::event::{Event, Outbox, Signal};
use crate::wire::Transport;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub(super) struct HubState {
    pub(super) conns: Vec<Sub>,
    /// Outlet id → index in `conns`.
    pub(super) index: HashMap<u64, usize>,
    pub(super) shared: Arc<Shared>,
    pub(super) save_tx: Sender<Vec<(i64, i64)>>,
    /// Cursors last handed to the saver.
    pub(super) saved: HashMap<i64, i64>,
    pub(super) last_save: Instant,
    pub(super) pending: Pending,
    /// A message taken from the queue during a flush that must wait for
    /// the flush to end (it is handled first in the next round).
    pub(super) deferred: Option<Msg>,
}

impl Shared {
    pub(super) fn new(tx: Sender<Msg>, max_per_app: usize, max_total: usize, last_seq: i64) -> Arc<Shared> {
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
pub(super) struct Pending {
    /// Indices with frames, in the order they first got one.
    pub(super) order: Vec<usize>,
    pub(super) frames: Vec<Vec<Tagged>>,
}

impl Pending {
    pub(super) fn push(&mut self, i: usize, f: Tagged) {
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
pub(super) fn once_per<K: PartialEq, V: Clone>(
    memo: &mut Vec<(K, V)>,
    key: K,
    make: impl FnOnce() -> V,
) -> V {
    if let Some((_, v)) = memo.iter().find(|(k, _)| *k == key) {
        return v.clone();
    }
    let v = make();
    memo.push((key, v.clone()));
    v
}

impl HubState {
    pub(super) fn new(
        grants: HashMap<i64, Grants>,
        shared: Arc<Shared>,
        save_tx: Sender<Vec<(i64, i64)>>,
    ) -> HubState {
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

    pub(super) fn run(mut self, rx: Receiver<Msg>) {
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

    pub(super) fn remove(&mut self, id: u64) {
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
    pub(super) fn save_cursors(&mut self) {
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

    pub(super) fn event(&mut self, ev: &Event, pending: &mut Pending) {
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
            if !c.subscription.admits(ev) {
                continue;
            }
            let frame =
                once_per(&mut rendered, (c.opts.bits(), c.transport), || render(ev, &c.opts, c.transport));
            pending.push(i, (frame, ev.seq));
        }
    }

    /// Writes every connection's frames of this batch in one go.
    pub(super) fn flush(&mut self, pending: &mut Pending) {
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
    pub(super) fn flush_taking_more(&mut self, pending: &mut Pending, rx: &Receiver<Msg>) {
        self.flush_with(pending, Some(rx));
    }

    pub(super) fn flush_with(&mut self, pending: &mut Pending, mut rx: Option<&Receiver<Msg>>) {
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
    pub(super) fn take_events(&mut self, rx: &Receiver<Msg>, pending: &mut Pending) -> bool {
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
    pub(super) fn notify_all<'a>(conns: impl Iterator<Item = &'a Sub>, doc: &serde_json::Value) {
        let mut framed: Vec<(Transport, Bytes)> = Vec::new();
        for c in conns {
            let f = once_per(&mut framed, c.transport, || control_frame(c.transport, doc));
            let _ = c.outlet.deliver(&[(f, 0)], || Arc::new(Vec::new()));
        }
    }

    pub(super) fn signal(&mut self, s: Signal) {
        match s {
            Signal::StreamUpdated { stream_id, key, types, filter_id, filter } => {
                let names: Vec<&str> = crate::event::ObjType::ALL
                    .iter()
                    .filter(|t| types & t.bit() != 0)
                    .map(|t| t.as_str())
                    .collect();
                let mut doc = control(
                    "stream_updated",
                    "The stream's key, object types or filter changed; events from here on follow them",
                );
                doc["meta"]["control"]["key"] = json!(key);
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
