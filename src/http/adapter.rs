//! The HTTP adapter: tiny_http's request in, our `Req` through the rate
//! limiter, the request gate and the right dispatcher (the API or the web
//! pages), panics caught, and our `Resp` out with the headers every answer
//! carries (CORS only on API answers). The only place besides `server.rs`
//! that touches tiny_http's request type.

use crate::api;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// Bounds how many API requests are answered at once (`--http-threads`: a
/// password check alone holds argon2's 19 MiB), and tells a graceful stop
/// when none is left.
pub struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
    max: usize,
}

#[derive(Default)]
struct GateState {
    busy: usize,
    waiting: usize,
}

/// One request's place in the `Gate`, given back on drop.
struct Pass<'a>(&'a Gate);

impl Gate {
    pub fn new(max: usize) -> Gate {
        Gate { state: Mutex::new(GateState::default()), cv: Condvar::new(), max: max.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a free place.
    fn enter(&self) -> Pass<'_> {
        let mut g = self.lock();
        while g.busy >= self.max {
            g.waiting += 1;
            g = self.cv.wait(g).unwrap_or_else(|p| p.into_inner());
            g.waiting -= 1;
        }
        g.busy += 1;
        Pass(self)
    }

    /// Waits until no request is being handled, or `deadline`; says which.
    pub fn idle_by(&self, deadline: Instant) -> bool {
        let mut g = self.lock();
        while g.busy > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g.waiting += 1;
            g = self.cv.wait_timeout(g, left).unwrap_or_else(|p| p.into_inner()).0;
            g.waiting -= 1;
        }
        true
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        g.busy -= 1;
        if g.waiting > 0 {
            self.0.cv.notify_all();
        }
    }
}

/// The answer headers a browser client may read.
const CORS_EXPOSED: &str =
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-OAuth-Scopes, Retry-After";

/// A CORS preflight (`OPTIONS`, any path): what a browser may send.
fn preflight() -> Resp {
    Resp::bytes(204, "text/plain", Vec::new())
        .header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
        .header("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Pretty-Json")
        .header("Access-Control-Max-Age", "86400")
}

/// Is this a web page (`web`), which is never shared with other origins?
fn is_page(path: &str) -> bool {
    path.starts_with("/oauth/")
}

pub fn respond(rq: tiny_http::Request, mut resp: Resp, pretty: bool, close: bool) {
    let (status, extra) = (resp.status, std::mem::take(&mut resp.headers));
    let (content_type, body) = resp.into_body(pretty);
    let mut r = tiny_http::Response::from_data(body).with_status_code(status);
    // Every answer says what it is and may not be taken for anything else.
    // API answers may be read by a browser client on another origin (pnut
    // turns CORS on; API tokens travel in a header, never in a cookie, so
    // `*` lends a page no credentials it did not have). The web pages do
    // use a cookie: no other origin may read them.
    let mut headers = vec![
        ("Content-Type".to_string(), content_type),
        ("X-Content-Type-Options".to_string(), "nosniff".to_string()),
    ];
    if !is_page(rq.url()) {
        headers.push(("Access-Control-Allow-Origin".to_string(), "*".to_string()));
        headers.push(("Access-Control-Expose-Headers".to_string(), CORS_EXPOSED.to_string()));
    }
    headers.extend(extra);
    if close {
        headers.push(("Connection".into(), "close".into()));
    }
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            r.add_header(h);
        }
    }
    if let Err(e) = rq.respond(r) {
        log::debug!("client went away before the response: {e}");
    }
}

/// What a request's rate budget is counted against: its token once the
/// token is known to exist, otherwise the client's address, so made-up
/// tokens neither get budgets of their own nor grow the limiter's map.
fn rate_key(ctx: &Ctx, req: &Req) -> crate::ratelimit::Key {
    match crate::auth::bearer(req).map(|t| ctx.db.principal(&t)) {
        Some(Ok(Some(p))) => crate::ratelimit::Key::Token(p.token_id),
        _ => crate::ratelimit::Key::addr(req.remote),
    }
}

/// Reads one request (body capped), dispatches it with panics caught, and
/// writes the answer; never panics itself. Only the dispatch holds a place
/// in `gate`: a client slow to send its body or to read the answer holds
/// its own connection's thread, not one of the places.
pub fn handle(
    ctx: &Ctx,
    mut rq: tiny_http::Request,
    max_body: usize,
    limiter: &crate::ratelimit::RateLimiter,
    gate: &Gate,
) {
    let headers: Vec<(String, String)> = rq
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str().to_string(), h.value.as_str().to_string()))
        .collect();
    let pretty = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-pretty-json"));
    let too_large =
        || ApiError::new(413, format!("Request body is larger than the limit of {max_body} bytes"));
    if rq.body_length().is_some_and(|n| n > max_body) {
        return respond(rq, Resp::error(&too_large()), pretty, true);
    }
    let mut body = Vec::new();
    if let Err(e) = rq.as_reader().take(max_body as u64 + 1).read_to_end(&mut body) {
        log::debug!("reading a request body failed: {e}");
        if e.kind() == std::io::ErrorKind::TimedOut {
            let e = ApiError::new(408, "The request body did not arrive in time");
            return respond(rq, Resp::error(&e), pretty, true);
        }
        return respond(
            rq,
            Resp::error(&ApiError::bad_request("could not read the request body")),
            pretty,
            true,
        );
    }
    if body.len() > max_body {
        return respond(rq, Resp::error(&too_large()), pretty, true);
    }
    if rq.method().as_str() == "OPTIONS" {
        let answer = if is_page(rq.url()) { Resp::bytes(204, "text/plain", Vec::new()) } else { preflight() };
        return respond(rq, answer, pretty, false);
    }
    let mut req = Req::new(rq.method().as_str(), rq.url(), headers, body);
    req.remote = rq.remote_addr().map(|a| a.ip());
    let verdict = if limiter.is_on() { limiter.check(rate_key(ctx, &req), Instant::now()) } else { None };
    let resp = match &verdict {
        Some(v) if !v.allowed => Resp::error(
            &ApiError::new(429, format!("Rate limit exceeded: try again in {} seconds", v.reset))
                .retry_after(v.reset),
        ),
        _ => {
            // The token endpoint and the sign-in form bound their own slow
            // work (the login pool), so password checks cannot take every
            // place from other requests.
            let guarded = req.path == "/v1/oauth/access_token" || req.path == "/oauth/signin";
            let _pass = (!guarded).then(|| gate.enter());
            let answer = || {
                if is_page(&req.path) {
                    crate::web::dispatch(ctx, &req)
                } else {
                    api::dispatch(ctx, &req)
                }
            };
            catch_unwind(AssertUnwindSafe(answer)).unwrap_or_else(|_| {
                log::error!("handler panicked on {} {}", req.method, req.path);
                Resp::error(&ApiError::internal())
            })
        }
    };
    let resp = match verdict {
        Some(v) => resp
            .header("X-RateLimit-Limit", &v.limit.to_string())
            .header("X-RateLimit-Remaining", &v.remaining.to_string())
            .header("X-RateLimit-Reset", &v.reset.to_string()),
        None => resp,
    };
    let status = resp.status;
    respond(rq, resp, pretty, false);
    log::debug!("{} {} -> {status}", req.method, req.path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A full gate holds the next request until a place is given back, and
    /// a graceful stop learns when none is left.
    #[test]
    fn the_gate_bounds_requests_and_tells_when_none_is_left() {
        let gate = Arc::new(Gate::new(1));
        let first = gate.enter();
        let g = gate.clone();
        let second = std::thread::spawn(move || {
            let _pass = g.enter();
        });
        while gate.lock().waiting == 0 {
            std::thread::yield_now();
        }
        assert_eq!(gate.lock().busy, 1, "the second request got in past the limit");
        assert!(!gate.idle_by(Instant::now() + Duration::from_millis(10)));
        drop(first);
        second.join().unwrap();
        assert!(gate.idle_by(Instant::now() + Duration::from_secs(5)));
        assert_eq!(gate.lock().busy, 0);
    }
}
