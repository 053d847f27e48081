//! Admission control for both listeners: how many connections the process
//! can really hold (worked out at start from the machine's limits), and a
//! ticket per connection so that the count can never pass it. Every
//! connection holds one thread and one descriptor from its accept to its
//! close, authenticated or not, so an accept past the ceiling would end in
//! `EMFILE` or, worse, a thread that cannot be started (the process aborts
//! when it cannot map a thread's signal stack).
//!
//! Three caps, checked in the accept loop before anything is read or any
//! thread is started; past any of them the connection gets a fast 503 in
//! the pnut envelope and is closed:
//! - all connections of both listeners (`--max-conns`, at most the ceiling);
//! - connections that are not an authorized stream: every API connection,
//!   and stream connections until their head was read and authorized
//!   (`--max-pending`), so strangers cannot take every place from streams;
//! - of those, per client address, an IPv6 address by its /64
//!   (`--max-pending-per-ip`), so one host cannot take them all.

use crate::ratelimit::Key;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Descriptors kept for the rest of the process (database files, a
/// connection per reader, logs) beyond those open when the ceiling is
/// worked out.
const FD_RESERVE: u64 = 64;
/// Memory maps per connection thread: its stack and guard page, its signal
/// stack and guard page.
const MAPS_PER_THREAD: u64 = 4;
/// Memory maps kept for everything else (the heap's arenas, SQLite).
const MAPS_RESERVE: u64 = 4096;
/// Threads kept for everything else.
const THREADS_RESERVE: u64 = 256;
/// Memory a connection holds besides its queue: its thread's stack pages,
/// buffers, its place in the hub.
const CONN_MEMORY: u64 = 64 * 1024;

/// How many connections this process can hold, and which limit says so.
#[derive(Clone, Debug, PartialEq)]
pub struct Ceiling {
    pub conns: usize,
    pub because: String,
}

/// What the ceiling is worked out from (read from the system by
/// `Machine::read`, given by hand in tests).
#[derive(Clone, Debug, Default)]
pub struct Machine {
    /// RLIMIT_NOFILE (soft), and descriptors open now.
    pub nofile: Option<u64>,
    pub open_fds: u64,
    /// vm.max_map_count, and maps in use now.
    pub max_map_count: Option<u64>,
    pub maps_in_use: u64,
    /// The smaller of kernel.threads-max and RLIMIT_NPROC, and the threads
    /// running now (this process's; RLIMIT_NPROC counts the user's).
    pub max_threads: Option<u64>,
    pub threads_in_use: u64,
    /// MemTotal, in bytes.
    pub memory: Option<u64>,
}

impl Machine {
    /// Reads the limits of this process and machine. A limit that cannot
    /// be read (another OS, a locked-down /proc) does not bound.
    pub fn read() -> Machine {
        use rustix::process::{getrlimit, Resource};
        let proc_num =
            |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
        let count_dir = |path: &str| std::fs::read_dir(path).map(|d| d.count() as u64).unwrap_or(0);
        let nproc = getrlimit(Resource::Nproc).current;
        let threads_max = proc_num("/proc/sys/kernel/threads-max");
        let max_threads = match (nproc, threads_max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let memory = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
        Machine {
            nofile: getrlimit(Resource::Nofile).current,
            open_fds: count_dir("/proc/self/fd"),
            max_map_count: proc_num("/proc/sys/vm/max_map_count"),
            maps_in_use: std::fs::read_to_string("/proc/self/maps")
                .map(|m| m.lines().count() as u64)
                .unwrap_or(0),
            max_threads,
            threads_in_use: count_dir("/proc/self/task"),
            memory,
        }
    }

    /// The connections this machine can hold when each may queue
    /// `backlog` bytes: the smallest of what descriptors, memory maps,
    /// threads and three quarters of the memory allow.
    pub fn ceiling(&self, backlog: usize) -> Ceiling {
        let mut best = Ceiling { conns: usize::MAX, because: "no limit could be read".into() };
        let mut bound = |n: u64, because: String| {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n < best.conns {
                best = Ceiling { conns: n, because };
            }
        };
        if let Some(n) = self.nofile {
            let free = n.saturating_sub(self.open_fds + FD_RESERVE);
            bound(free, format!("the open-files limit (ulimit -n) is {n}"));
        }
        if let Some(n) = self.max_map_count {
            let free = n.saturating_sub(self.maps_in_use + MAPS_RESERVE) / MAPS_PER_THREAD;
            bound(
                free,
                format!("vm.max_map_count is {n} (each connection's thread takes {MAPS_PER_THREAD} maps)"),
            );
        }
        if let Some(n) = self.max_threads {
            let free = n.saturating_sub(self.threads_in_use + THREADS_RESERVE);
            bound(free, format!("at most {n} threads (kernel.threads-max, ulimit -u)"));
        }
        if let Some(m) = self.memory {
            let per = backlog as u64 + CONN_MEMORY;
            bound(m / 4 * 3 / per, format!("{} MiB of memory, {} KiB per connection", m >> 20, per >> 10));
        }
        best.conns = best.conns.max(1);
        best
    }
}

/// The three caps, and who holds a place.
pub struct Admission {
    max: usize,
    max_pending: usize,
    per_ip: usize,
    live: AtomicUsize,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    total: usize,
    /// Never more entries than `total`: an address leaves with its last
    /// connection.
    by_addr: HashMap<Key, usize>,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    Full(usize),
    Pending(usize),
    Address(usize),
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::Full(n) => format!("The server is at its limit of {n} connections; try again later"),
            Refusal::Pending(n) => format!(
                "The server is at its limit of {n} connections that are not an open stream; try again later"
            ),
            Refusal::Address(n) => format!("Too many connections from your address (the limit is {n})"),
        }
    }

    /// The whole answer: a 503 in the pnut envelope, closing.
    pub fn answer(&self) -> Vec<u8> {
        let e = crate::error::ApiError::new(503, self.message());
        let (content_type, body) = crate::http::Resp::error(&e).into_body(false);
        let mut out = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

/// A connection's place, given back when it is dropped.
pub struct Ticket {
    adm: Arc<Admission>,
    /// The address it counts against while pending.
    pending: Option<Key>,
}

impl Admission {
    pub fn new(max: usize, max_pending: usize, per_ip: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max: max.max(1),
            max_pending: max_pending.max(1),
            per_ip: per_ip.max(1),
            live: AtomicUsize::new(0),
            pending: Mutex::new(Pending::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection from `ip`, pending until `settle`.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Ticket, Refusal> {
        let key = Key::addr(ip);
        let mut p = self.lock();
        if self.live.load(Ordering::SeqCst) >= self.max {
            return Err(Refusal::Full(self.max));
        }
        if p.total >= self.max_pending {
            return Err(Refusal::Pending(self.max_pending));
        }
        let n = p.by_addr.get(&key).copied().unwrap_or(0);
        if n >= self.per_ip {
            return Err(Refusal::Address(self.per_ip));
        }
        p.by_addr.insert(key, n + 1);
        p.total += 1;
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(Ticket { adm: self.clone(), pending: Some(key) })
    }

    #[cfg(test)]
    /// Connections open now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn unpend(&self, key: Key) {
        let mut p = self.lock();
        p.total -= 1;
        match p.by_addr.get_mut(&key) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                p.by_addr.remove(&key);
            }
        }
    }
}

impl Ticket {
    /// The connection is an authorized stream now: it no longer counts
    /// against the pending caps (the per-app and total caps bound it).
    pub fn settle(&mut self) {
        if let Some(key) = self.pending.take() {
            self.adm.unpend(key);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.settle();
        self.adm.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    /// Each cap refuses past its bound, and a place given back (a dropped
    /// ticket, a settled one for the pending caps) is free again.
    #[test]
    fn caps_refuse_past_their_bound_and_free_on_drop() {
        let adm = Admission::new(4, 3, 2);
        let a1 = adm.admit(ip("10.0.0.1")).unwrap();
        let mut a2 = adm.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(adm.admit(ip("10.0.0.1")).err(), Some(Refusal::Address(2)));
        // The same /64 is the same address.
        let _b1 = adm.admit(ip("2001:db8::1")).unwrap();
        assert_eq!(adm.admit(ip("10.0.0.2")).err(), Some(Refusal::Pending(3)));
        a2.settle();
        let _c1 = adm.admit(ip("10.0.0.3")).unwrap();
        assert_eq!(adm.live(), 4);
        assert_eq!(adm.admit(ip("10.0.0.4")).err(), Some(Refusal::Full(4)));
        drop(a1);
        assert_eq!(adm.live(), 3);
        let _d = adm.admit(ip("10.0.0.1")).unwrap();
        drop(a2);
        assert_eq!(adm.live(), 3);
        let p = adm.lock();
        assert_eq!(p.total, 3);
        assert_eq!(p.by_addr.len(), 3, "an address leaves the map with its last connection");
    }

    /// The ceiling is the tightest limit, named.
    #[test]
    fn the_ceiling_is_the_tightest_limit() {
        let m = Machine {
            nofile: Some(1024),
            open_fds: 20,
            max_map_count: Some(65530),
            maps_in_use: 400,
            max_threads: Some(100_000),
            threads_in_use: 10,
            memory: Some(24 << 30),
        };
        let c = m.ceiling(1 << 20);
        assert_eq!(c.conns, 1024 - 20 - 64);
        assert!(c.because.contains("ulimit -n"), "{c:?}");
        let c = Machine { nofile: Some(1 << 20), ..m.clone() }.ceiling(1 << 20);
        assert_eq!(c.conns, (65530 - 400 - 4096) / 4);
        assert!(c.because.contains("max_map_count"), "{c:?}");
        let c = Machine { nofile: Some(1 << 20), max_map_count: None, ..m.clone() }.ceiling(1 << 20);
        assert_eq!(c.conns, (24u64 << 30) as usize / 4 * 3 / ((1 << 20) + 64 * 1024));
        assert!(c.because.contains("memory"), "{c:?}");
        assert_eq!(Machine::default().ceiling(1 << 20).conns, usize::MAX);
    }
}
