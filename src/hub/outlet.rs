//! The write side of one connection (`Outlet`), shared by the hub and the
//! connection's thread: its bounded backlog and the close it is asked for.

use super::*;
use rustix::io::Errno;
use rustix::net::{sendmsg, SendAncillaryBuffer, SendFlags};
use serde_json::json;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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
pub(super) struct OutState {
    pub(super) queue: VecDeque<Tagged>,
    /// Bytes of `queue[0]` already written.
    pub(super) offset: usize,
    /// Bytes waiting in `queue` (minus `offset`).
    pub(super) queued: usize,
    /// The highest event seq fully written to the socket.
    pub(super) sent: i64,
    /// While the connection replays from the log, the hub's frames wait
    /// here instead of going out (see `begin_round` / `go_live`).
    pub(super) holding: bool,
    pub(super) held: Vec<Tagged>,
    pub(super) held_bytes: usize,
    /// `held` outgrew the backlog limit and was dropped: replay again.
    pub(super) overflow: bool,
    /// The "buffer nearly full" notice went out.
    pub(super) warned: bool,
    /// Replay delivered the log up to here; the hub's frames at or below it
    /// are duplicates.
    pub(super) floor: i64,
    pub(super) close: Option<Close>,
    pub(super) close_taken: bool,
    /// The socket failed; nothing more is written.
    pub(super) broken: bool,
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
pub(super) enum Wrote {
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
    pub(super) sock: TcpStream,
    /// The connection's thread: woken (unparked) by the hub and by the
    /// stream reactor when its socket needs it.
    pub(super) thread: std::thread::Thread,
    pub(super) state: Mutex<OutState>,
    pub(super) max_backlog: usize,
    pub(super) slot: Mutex<Option<Slot>>,
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

    pub(super) fn lock(&self) -> MutexGuard<'_, OutState> {
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
    pub(super) fn write_some(&self, st: &mut OutState, extra: &[Tagged]) -> Wrote {
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
    pub(super) fn deliver(&self, frames: &[Tagged], warn: impl Fn() -> Bytes) -> bool {
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
