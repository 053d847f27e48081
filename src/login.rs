//! Password checks under guard: a budget of failed attempts per account and
//! per client address (counted before the slow hash, given back on
//! success), and a small pool that runs the hashes, so guessing can neither
//! go on for long nor starve other requests of CPU and memory (argon2 takes
//! 19 MiB and tens of milliseconds per hash).

use crate::error::{ApiError, ApiResult};
use crate::ratelimit::{Key, RateLimiter, Verdict};
use std::net::IpAddr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Failed attempts one address may make per window, as a multiple of an
/// account's: one office behind one address signs many people in.
const ADDR_FACTOR: u64 = 4;
/// How long a password check waits for a place in the pool.
const POOL_WAIT: Duration = Duration::from_secs(5);

pub struct Login {
    by_user: RateLimiter,
    by_addr: RateLimiter,
    pool: Pool,
}

/// The outcome of one guarded check.
pub enum Checked {
    Ok,
    Wrong,
}

impl Login {
    /// `failures` wrong passwords per account per `window` (0: unlimited),
    /// at most `hashers` hashes at once and `queue` waiting for one.
    pub fn new(failures: u64, window: Duration, hashers: usize, queue: usize) -> Login {
        Login {
            by_user: RateLimiter::new(failures, window),
            by_addr: RateLimiter::new(failures * ADDR_FACTOR, window),
            pool: Pool::new(hashers, queue),
        }
    }

    /// Checks `password` against `stored` (`user` None: no such account;
    /// the hash still runs so timing does not tell). Refuses with 429 before
    /// hashing when the account or the address has spent its failures, and
    /// with 503 when the pool is full.
    pub fn check(
        &self,
        user: Option<i64>,
        stored: Option<&str>,
        password: &str,
        from: Option<IpAddr>,
    ) -> ApiResult<Checked> {
        let now = Instant::now();
        let addr = Key::addr(from);
        // Count the attempt first, so concurrent guesses cannot all slip
        // past a budget with one place left; a success gives it back.
        let mut counted = Vec::with_capacity(2);
        let keys = [Some((&self.by_addr, addr)), user.map(|u| (&self.by_user, Key::User(u)))];
        for (limiter, key) in keys.into_iter().flatten() {
            match limiter.check(key, now) {
                Some(v) if !v.allowed => {
                    self.refund(&counted, now);
                    return Err(too_many(&v));
                }
                Some(_) => counted.push((limiter, key)),
                None => {}
            }
        }
        let ok = match self.pool.run(|| crate::storage::users::verify_password(stored, password)) {
            Ok(ok) => ok,
            Err(e) => {
                self.refund(&counted, now);
                return Err(e);
            }
        };
        if ok {
            self.refund(&counted, now);
            Ok(Checked::Ok)
        } else {
            Ok(Checked::Wrong)
        }
    }

    /// `check` for the account named `username` (the token endpoint's
    /// password grant and the sign-in page): its id when the password is
    /// right, `None` when it is wrong or there is no such account.
    pub fn check_user(
        &self,
        db: &crate::storage::Db,
        username: &str,
        password: &str,
        from: Option<IpAddr>,
    ) -> ApiResult<Option<i64>> {
        let found = db.read(|c| Ok(crate::storage::users::password_hash(c, username)?))?;
        let (uid, stored) = found.map_or((None, None), |(id, h)| (Some(id), Some(h)));
        Ok(match self.check(uid, stored.as_deref(), password, from)? {
            Checked::Ok => uid,
            Checked::Wrong => None,
        })
    }

    fn refund(&self, counted: &[(&RateLimiter, Key)], now: Instant) {
        for (limiter, key) in counted {
            limiter.refund(*key, now);
        }
    }
}

fn too_many(v: &Verdict) -> ApiError {
    ApiError::new(
        429,
        format!("Too many failed sign-ins for this account or address: try again in {} seconds", v.reset),
    )
    .retry_after(v.reset)
}

/// At most `max` closures at once; at most `queue` more wait, each for at
/// most `POOL_WAIT`. They run on the caller's thread: the pool bounds how
/// many run, not where.
struct Pool {
    state: Mutex<(usize, usize)>,
    cv: Condvar,
    max: usize,
    queue: usize,
}

impl Pool {
    fn new(max: usize, queue: usize) -> Pool {
        Pool { state: Mutex::new((0, 0)), cv: Condvar::new(), max: max.max(1), queue }
    }

    fn run<T>(&self, f: impl FnOnce() -> T) -> ApiResult<T> {
        let busy = || ApiError::new(503, "Too many sign-ins at once: try again in a second").retry_after(1);
        {
            let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if g.0 >= self.max {
                if g.1 >= self.queue {
                    return Err(busy());
                }
                g.1 += 1;
                let deadline = Instant::now() + POOL_WAIT;
                while g.0 >= self.max {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        g.1 -= 1;
                        return Err(busy());
                    }
                    g = self.cv.wait_timeout(g, left).unwrap_or_else(|p| p.into_inner()).0;
                }
                g.1 -= 1;
            }
            g.0 += 1;
        }
        struct Done<'a>(&'a Pool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                let mut g = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
                g.0 -= 1;
                self.0.cv.notify_one();
            }
        }
        let _done = Done(self);
        Ok(f())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn failures_are_counted_per_account_and_successes_given_back() {
        let l = Login::new(2, Duration::from_secs(60), 1, 0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let hash = crate::storage::users::hash_password("right");
        for _ in 0..3 {
            assert!(matches!(l.check(Some(1), Some(&hash), "right", Some(ip)), Ok(Checked::Ok)));
        }
        for _ in 0..2 {
            assert!(matches!(l.check(Some(1), Some(&hash), "wrong", Some(ip)), Ok(Checked::Wrong)));
        }
        let Err(e) = l.check(Some(1), Some(&hash), "right", Some(ip)) else {
            panic!("the account is locked")
        };
        assert_eq!((e.status, e.retry_after.is_some()), (429, true));
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.check(Some(1), Some(&hash), "right", Some(other)).is_err(), "whatever the address");
        assert!(matches!(l.check(Some(2), Some(&hash), "right", Some(ip)), Ok(Checked::Ok)));
    }

    #[test]
    fn a_full_pool_refuses_past_its_queue() {
        let pool = Arc::new(Pool::new(1, 0));
        let (tx, rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let p = pool.clone();
        let t = std::thread::spawn(move || {
            p.run(|| {
                tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
            .is_ok()
        });
        rx.recv().unwrap();
        let e = pool.run(|| ()).expect_err("no room and no queue");
        assert_eq!(e.status, 503);
        release_tx.send(()).unwrap();
        assert!(t.join().unwrap());
        assert!(pool.run(|| ()).is_ok(), "the place was given back");
    }
}
