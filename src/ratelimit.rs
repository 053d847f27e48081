//! Requests per token (per client address without one) in fixed windows,
//! with pnut's headers (`X-RateLimit-Limit`, `-Remaining`, `-Reset`) on every
//! answer and a 429 with `Retry-After` and `meta.retry_in` past the limit.
//! Keys are kept in memory only and never logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    limit: u64,
    window: Duration,
    windows: Mutex<HashMap<String, (Instant, u64)>>,
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
        RateLimiter { limit, window, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts one request under the key `key` builds (only when limiting
    /// is on, so a server without a limit builds none).
    pub fn check(&self, key: impl FnOnce() -> String, now: Instant) -> Option<Verdict> {
        if self.limit == 0 {
            return None;
        }
        let key = key();
        let mut m = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 100_000 {
            // Forget finished windows so the map stays bounded.
            let w = self.window;
            m.retain(|_, (start, _)| now.duration_since(*start) < w);
        }
        let e = m.entry(key).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        let allowed = e.1 < self.limit;
        if allowed {
            e.1 += 1;
        }
        let reset = self.window.saturating_sub(now.duration_since(e.0)).as_secs().max(1);
        Some(Verdict { allowed, limit: self.limit, remaining: self.limit - e.1, reset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_and_reset() {
        let r = RateLimiter::new(2, Duration::from_secs(60));
        let t = Instant::now();
        assert_eq!(
            r.check(|| "a".into(), t).unwrap(),
            Verdict { allowed: true, limit: 2, remaining: 1, reset: 60 }
        );
        assert!(r.check(|| "a".into(), t).unwrap().allowed);
        let v = r.check(|| "a".into(), t + Duration::from_secs(10)).unwrap();
        assert!(!v.allowed);
        assert_eq!((v.remaining, v.reset), (0, 50));
        assert!(r.check(|| "b".into(), t).unwrap().allowed, "keys are separate");
        assert!(r.check(|| "a".into(), t + Duration::from_secs(61)).unwrap().allowed, "a new window");
        let off = RateLimiter::new(0, Duration::from_secs(1));
        assert!(off.check(|| unreachable!("no key is built when limiting is off"), t).is_none());
    }
}
