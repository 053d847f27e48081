//! Requests per key in fixed windows, with pnut's headers
//! (`X-RateLimit-Limit`, `-Remaining`, `-Reset`) on every answer and a 429
//! with `Retry-After` and `meta.retry_in` past the limit.
//!
//! Keys are verified identities (a token id, a user id) or a client
//! address, never a string a client chose, so a client cannot grow the map
//! by inventing keys. Windows are aligned for everyone: when the clock
//! passes into the next window the whole map is dropped at once, so expiry
//! costs O(1) per entry and no request ever scans the map. Past `max_keys`
//! distinct keys in one window, the newcomers share one budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Distinct keys one window may hold before newcomers share a budget.
pub const MAX_KEYS: usize = 100_000;

/// What a budget is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A token that exists (its id).
    Token(i64),
    /// A user account (its id).
    User(i64),
    /// A client address; IPv6 by its /64, what one host usually holds.
    Addr(IpAddr),
    /// Every key that came after the map was full.
    Overflow,
}

impl Key {
    pub fn addr(ip: Option<IpAddr>) -> Key {
        match ip {
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Key::Addr(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Key::Addr(IpAddr::V6([s[0], s[1], s[2], s[3], 0, 0, 0, 0].into()))
                }
            },
            Some(v4) => Key::Addr(v4),
            None => Key::Overflow,
        }
    }
}

pub struct RateLimiter {
    limit: u64,
    window: Duration,
    max_keys: usize,
    epoch: Instant,
    state: Mutex<Windows>,
}

struct Windows {
    /// Which window `counts` belongs to (windows since `epoch`).
    index: u64,
    counts: HashMap<Key, u64>,
}

/// The verdict for one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets.
    pub reset: u64,
}

impl RateLimiter {
    /// `limit` 0 turns limiting off.
    pub fn new(limit: u64, window: Duration) -> RateLimiter {
        RateLimiter::with_max_keys(limit, window, MAX_KEYS)
    }

    pub fn with_max_keys(limit: u64, window: Duration, max_keys: usize) -> RateLimiter {
        let window = window.max(Duration::from_secs(1));
        let state = Mutex::new(Windows { index: 0, counts: HashMap::new() });
        RateLimiter { limit, window, max_keys, epoch: Instant::now(), state }
    }

    pub fn is_on(&self) -> bool {
        self.limit > 0
    }

    /// Counts one request under `key`.
    pub fn check(&self, key: Key, now: Instant) -> Option<Verdict> {
        self.count(key, now, 1)
    }

    #[cfg(test)]
    /// The verdict for `key` without counting anything.
    pub fn peek(&self, key: Key, now: Instant) -> Option<Verdict> {
        self.count(key, now, 0)
    }

    fn count(&self, key: Key, now: Instant, add: u64) -> Option<Verdict> {
        if self.limit == 0 {
            return None;
        }
        let (index, reset) = self.index(now);
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if w.index != index {
            w.index = index;
            w.counts = HashMap::new();
        }
        let key =
            if w.counts.len() >= self.max_keys && !w.counts.contains_key(&key) { Key::Overflow } else { key };
        let used = w.counts.entry(key).or_insert(0);
        let allowed = *used + add <= self.limit && (add > 0 || *used < self.limit);
        if allowed {
            *used += add;
        }
        Some(Verdict { allowed, limit: self.limit, remaining: self.limit - *used, reset })
    }

    /// Gives back one request counted under `key` in this window.
    pub fn refund(&self, key: Key, now: Instant) {
        let index = self.index(now).0;
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if w.index == index {
            if let Some(used) = w.counts.get_mut(&key) {
                *used = used.saturating_sub(1);
            }
        }
    }

    /// The window `now` is in, and the seconds left of it.
    fn index(&self, now: Instant) -> (u64, u64) {
        let since = now.saturating_duration_since(self.epoch);
        let index = (since.as_nanos() / self.window.as_nanos()) as u64;
        let into = Duration::from_nanos((since.as_nanos() % self.window.as_nanos()) as u64);
        (index, self.window.saturating_sub(into).as_secs().max(1))
    }

    #[cfg(test)]
    /// How many keys the current window holds (for tests and stats).
    pub fn keys(&self) -> usize {
        self.state.lock().map(|w| w.counts.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_and_reset() {
        let r = RateLimiter::new(2, Duration::from_secs(60));
        let t = r.epoch;
        assert_eq!(
            r.check(Key::Token(1), t).unwrap(),
            Verdict { allowed: true, limit: 2, remaining: 1, reset: 60 }
        );
        assert!(r.check(Key::Token(1), t).unwrap().allowed);
        let v = r.check(Key::Token(1), t + Duration::from_secs(10)).unwrap();
        assert!(!v.allowed);
        assert_eq!((v.remaining, v.reset), (0, 50));
        assert!(r.check(Key::Token(2), t).unwrap().allowed, "keys are separate");
        assert!(!r.peek(Key::Token(1), t).unwrap().allowed, "peek sees a spent budget");
        assert!(r.check(Key::Token(1), t + Duration::from_secs(61)).unwrap().allowed, "a new window");
        assert_eq!(r.keys(), 1, "the old window's keys are gone");
        let off = RateLimiter::new(0, Duration::from_secs(1));
        assert!(off.check(Key::Token(1), t).is_none());
    }

    #[test]
    fn the_map_is_bounded_and_newcomers_share_a_budget() {
        let r = RateLimiter::with_max_keys(3, Duration::from_secs(60), 10);
        let t = r.epoch;
        for i in 0..10 {
            assert!(r.check(Key::Token(i), t).unwrap().allowed);
        }
        for i in 10..13 {
            assert!(r.check(Key::Token(i), t).unwrap().allowed, "the shared budget has room");
        }
        assert!(!r.check(Key::Token(99), t).unwrap().allowed, "the shared budget is spent");
        assert!(r.check(Key::Token(0), t).unwrap().allowed, "known keys keep their own");
        assert_eq!(r.keys(), 11);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Key::addr(Some(a)), Key::addr(Some(b)));
        assert_ne!(Key::addr(Some(a)), Key::addr(Some(c)));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Key::addr(Some(mapped)), Key::addr(Some("10.0.0.1".parse().unwrap())));
    }
}
