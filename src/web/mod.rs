//! The web pages on the API listener, under `/oauth/`: sign-in, the OAuth
//! consent flow, the authorized apps page, open sign-up. HTML from maud
//! templates (`pages`), no script, every form with a CSRF token; the
//! browser is known by one `HttpOnly`, `SameSite=Lax` cookie whose secret
//! the database keeps only hashed. These answers carry no CORS headers.

mod account;
mod flow;
mod pages;
pub mod redirect;

use crate::ctx::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::http::{Req, Resp};
use crate::storage::{oauth, users};
use crate::util::{base64url, ct_eq, new_secret, sha256};
use serde_json::{Map, Value};

const COOKIE: &str = "spout_session";
/// A signed-in session lasts this long.
const SESSION_SECS: i64 = 14 * 86_400;
/// Forms and redirects answer with no script at all; a page may not be
/// framed (clickjacking on the consent page) nor leak its URL onwards.
/// `form-action` is left out on purpose: a consent form's answer is a
/// redirect to the app, which Chromium checks against `form-action` too.
const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the web pages need from the flags.
pub struct WebConfig {
    /// `--open-registration`: anyone may create an account.
    pub open_registration: bool,
    /// `--oauth-code-secs`: how long an authorization code may be exchanged.
    pub code_secs: i64,
    /// Cookies get `Secure` when the public API URL is https.
    pub secure_cookies: bool,
    /// Sign-ups per address (`--open-registration` only).
    pub registrations: crate::ratelimit::RateLimiter,
    /// A random key of this process that CSRF tokens are made with, so a
    /// token cannot be computed from a cookie value alone (one planted by a
    /// sibling site, say). Forms open across a restart must be reloaded.
    pub csrf_key: String,
}

/// Answers a request under `/oauth/`.
pub fn dispatch(ctx: &Ctx, req: &Req) -> Resp {
    let path = if req.path.len() > 1 { req.path.trim_end_matches('/') } else { &req.path };
    let out = match (req.method.as_str(), path) {
        ("GET", "/oauth/style.css") => Ok(Resp::bytes(200, "text/css; charset=utf-8", pages::STYLE.into())
            .header("Cache-Control", "public, max-age=3600")),
        ("GET", "/oauth/authenticate") => flow::start(ctx, req, false),
        ("GET", "/oauth/authorize") => flow::start(ctx, req, true),
        ("POST", "/oauth/authorize") => flow::decide(ctx, req),
        ("GET", "/oauth/signin") => account::sign_in_page(ctx, req),
        ("POST", "/oauth/signin") => account::sign_in(ctx, req),
        ("POST", "/oauth/signout") => account::sign_out(ctx, req),
        ("GET", "/oauth/register") => account::register_page(ctx, req),
        ("POST", "/oauth/register") => account::register(ctx, req),
        ("GET", "/oauth/apps") => account::apps(ctx, req),
        ("POST", "/oauth/apps/revoke") => account::revoke(ctx, req),
        (
            _,
            "/oauth/authenticate" | "/oauth/authorize" | "/oauth/signin" | "/oauth/register" | "/oauth/apps",
        ) => Err(ApiError::new(405, format!("{} is not allowed here", req.method))),
        (_, "/oauth/signout" | "/oauth/apps/revoke") => Err(ApiError::new(405, "Use the button on the page")),
        _ => Err(ApiError::not_found("No such page")),
    };
    out.unwrap_or_else(|e| problem(&e))
}

/// A page answer: HTML with the headers every page carries.
fn page(status: u16, markup: maud::Markup) -> Resp {
    Resp::bytes(status, "text/html; charset=utf-8", markup.into_string().into_bytes())
        .header("Content-Security-Policy", CSP)
        .header("X-Frame-Options", "DENY")
        .header("Cache-Control", "no-store")
        .header("Referrer-Policy", "no-referrer")
}

/// An error as a page; what went wrong inside stays in the log.
fn problem(e: &ApiError) -> Resp {
    let title = match e.status {
        400 => "That request is not valid",
        401 | 403 => "Not allowed",
        404 => "Not found",
        429 => "Too many attempts",
        s if s >= 500 => "Something went wrong",
        _ => "That did not work",
    };
    let mut r = page(e.status, pages::problem(title, &e.message));
    if let Some(s) = e.retry_after {
        r = r.header("Retry-After", &s.to_string());
    }
    r
}

/// A redirect: 302 after a GET, 303 (see other, as a GET) after a form.
fn redirect(status: u16, location: &str) -> Resp {
    Resp::bytes(status, "text/plain; charset=utf-8", Vec::new())
        .header("Location", location)
        .header("Cache-Control", "no-store")
        .header("Referrer-Policy", "no-referrer")
}

/// The browser behind a request: its cookie (made now if it had none) and,
/// when that cookie is a live session, the signed-in user.
struct Browser {
    secret: String,
    fresh: bool,
    user: Option<users::UserRow>,
    csrf: String,
}

impl Browser {
    fn of(ctx: &Ctx, req: &Req) -> ApiResult<Browser> {
        let given = cookie(req, COOKIE).filter(|v| {
            (20..=64).contains(&v.len())
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        let token = |secret: &str| base64url(&sha256(&format!("csrf:{}:{secret}", ctx.web.csrf_key)));
        let Some(secret) = given else {
            let secret = new_secret();
            return Ok(Browser { csrf: token(&secret), secret, fresh: true, user: None });
        };
        let user = ctx.db.read(|c| match oauth::session_user(c, &secret)? {
            Some(uid) => Ok(users::by_id(c, uid)?),
            None => Ok(None),
        })?;
        Ok(Browser { csrf: token(&secret), secret, fresh: false, user })
    }

    /// The CSRF token of this browser's forms: derived from the cookie's
    /// secret and this process's key, so another site can neither read nor
    /// forge it.
    fn csrf(&self) -> String {
        self.csrf.clone()
    }

    fn check_csrf(&self, form: &Map<String, Value>) -> ApiResult<()> {
        let given = field(form, "csrf").unwrap_or("");
        if self.fresh || !ct_eq(given.as_bytes(), self.csrf().as_bytes()) {
            return Err(ApiError::forbidden(
                "This form has expired or did not come from this site: go back, reload the page and try again.",
            ));
        }
        Ok(())
    }

    /// `resp`, setting the cookie when the browser had none.
    fn finish(&self, ctx: &Ctx, resp: Resp) -> Resp {
        if self.fresh {
            resp.header("Set-Cookie", &set_cookie(ctx, &self.secret, SESSION_SECS))
        } else {
            resp
        }
    }
}

fn set_cookie(ctx: &Ctx, value: &str, max_age: i64) -> String {
    let secure = if ctx.web.secure_cookies { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/oauth; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie(req: &Req, name: &str) -> Option<String> {
    req.headers
        .iter()
        .filter(|(k, _)| k == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A form field as a string.
fn field<'a>(form: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    form.get(name).and_then(Value::as_str)
}

/// The form a page posted, which must be a form.
fn form(req: &Req) -> ApiResult<Map<String, Value>> {
    if req.content_type().as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(ApiError::bad_request("Send the form from the page"));
    }
    req.params()
}

/// A local path to go to after signing in: only our own pages.
fn safe_return(s: Option<&str>) -> Option<&str> {
    s.filter(|p| p.starts_with("/oauth/") && !p.contains(['\\', '\r', '\n']) && !p.starts_with("/oauth//"))
        .filter(|p| p.len() <= 4096)
}

/// A scope in words, for the consent and authorized apps pages.
fn scope_line(scope: &str) -> pages::ScopeLine {
    pages::ScopeLine { name: scope.to_string(), words: crate::auth::scope_words(scope) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_pages_are_a_return() {
        assert_eq!(safe_return(Some("/oauth/apps")), Some("/oauth/apps"));
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/oauth//evil",
            "/v1/token",
            "/oauth/x\r\nSet-Cookie: a",
        ] {
            assert_eq!(safe_return(Some(bad)), None, "{bad}");
        }
    }

    #[test]
    fn cookies_are_read_from_any_cookie_header() {
        let req =
            Req::new("GET", "/", vec![("Cookie".into(), "a=1; spout_session=abc; b=2".into())], Vec::new());
        assert_eq!(cookie(&req, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&req, "c"), None);
    }
}
