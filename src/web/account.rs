//! Signing in and out, open sign-up, and the "your authorized apps" page
//! where a user sees and revokes what each app may do.

use super::{field, form, page, pages, problem, redirect, safe_return, scope_line, set_cookie, Browser};
use crate::ctx::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::http::{Req, Resp};
use crate::storage::{apps, oauth, users};

/// Longest username or password looked at; anything longer is wrong.
const MAX_USERNAME: usize = 64;
const MAX_PASSWORD: usize = 1024;
/// Shortest password open sign-up accepts.
const MIN_PASSWORD: usize = 8;

/// `GET /oauth/signin?return=/oauth/...`.
pub fn sign_in_page(ctx: &Ctx, req: &Req) -> ApiResult<Resp> {
    let b = Browser::of(ctx, req)?;
    let back = safe_return(req.param("return")).unwrap_or("/oauth/apps");
    if b.user.is_some() {
        return Ok(redirect(302, back));
    }
    let fields = [("return", back.to_string())];
    Ok(b.finish(ctx, page(200, pages::sign_in(&b.csrf(), &fields, None, None, ctx.web.open_registration))))
}

/// `POST /oauth/signin`: the password checked under the same guard as the
/// password grant (failure budgets per account and address, the hashing
/// pool); a new session and a new cookie on success.
pub fn sign_in(ctx: &Ctx, req: &Req) -> ApiResult<Resp> {
    let f = form(req)?;
    let b = Browser::of(ctx, req)?;
    b.check_csrf(&f)?;
    let back = safe_return(field(&f, "return")).unwrap_or("/oauth/apps").to_string();
    let username = field(&f, "username").unwrap_or("").trim();
    let password = field(&f, "password").unwrap_or("");
    let again = |status: u16, msg: &str| {
        let fields = [("return", back.clone())];
        page(status, pages::sign_in(&b.csrf(), &fields, Some(msg), None, ctx.web.open_registration))
    };
    if username.is_empty()
        || password.is_empty()
        || username.len() > MAX_USERNAME
        || password.len() > MAX_PASSWORD
    {
        return Ok(again(401, "Wrong username or password."));
    }
    let username = username.trim_start_matches('@');
    match ctx.login.check_user(&ctx.db, username, password, req.remote) {
        Ok(Some(uid)) => start_session(ctx, uid, &back),
        Ok(None) => Ok(again(401, "Wrong username or password.")),
        Err(e) if e.status == 429 || e.status == 503 => {
            let mut r = again(e.status, &e.message);
            if let Some(s) = e.retry_after {
                r = r.header("Retry-After", &s.to_string());
            }
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

/// Signs `uid` in with a new cookie (never the one the browser came with,
/// which another site may have planted) and goes to `back`.
fn start_session(ctx: &Ctx, uid: i64, back: &str) -> ApiResult<Resp> {
    let secret = ctx.db.write(|tx| Ok(oauth::create_session(tx, uid, super::SESSION_SECS)?))?;
    Ok(redirect(303, back).header("Set-Cookie", &set_cookie(ctx, &secret, super::SESSION_SECS)))
}

/// `POST /oauth/signout`.
pub fn sign_out(ctx: &Ctx, req: &Req) -> ApiResult<Resp> {
    let f = form(req)?;
    let b = Browser::of(ctx, req)?;
    b.check_csrf(&f)?;
    ctx.db.write(|tx| Ok(oauth::delete_session(tx, &b.secret)?))?;
    Ok(redirect(303, "/oauth/signin").header("Set-Cookie", &set_cookie(ctx, "", 0)))
}

fn registration_open(ctx: &Ctx) -> ApiResult<()> {
    if ctx.web.open_registration {
        Ok(())
    } else {
        Err(ApiError::not_found("Sign-up is closed here: ask the operator for an account"))
    }
}

/// `GET /oauth/register` (with `--open-registration`).
pub fn register_page(ctx: &Ctx, req: &Req) -> ApiResult<Resp> {
    registration_open(ctx)?;
    let b = Browser::of(ctx, req)?;
    Ok(b.finish(ctx, page(200, pages::register(&b.csrf(), None))))
}

/// `POST /oauth/register`: the username rule of `spout admin user add`, a
/// password of at least 8 characters, a few sign-ups per address an hour.
pub fn register(ctx: &Ctx, req: &Req) -> ApiResult<Resp> {
    registration_open(ctx)?;
    let f = form(req)?;
    let b = Browser::of(ctx, req)?;
    b.check_csrf(&f)?;
    let again = |status: u16, msg: &str| page(status, pages::register(&b.csrf(), Some(msg)));
    let username = field(&f, "username").unwrap_or("").trim();
    let password = field(&f, "password").unwrap_or("");
    if let Err(e) = users::check_username(username) {
        return Ok(again(400, &e));
    }
    if password.chars().count() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Ok(again(400, "password: at least 8 characters"));
    }
    let key = crate::ratelimit::Key::addr(req.remote);
    if let Some(v) = ctx.web.registrations.check(key, std::time::Instant::now()) {
        if !v.allowed {
            let msg = format!("Too many new accounts from your address: try again in {} seconds", v.reset);
            return Ok(again(429, &msg).header("Retry-After", &v.reset.to_string()));
        }
    }
    let hash = users::hash_password(password);
    let created = ctx.db.write(|tx| Ok(users::create(tx, username, &hash)?))?;
    let Some(user) = created else { return Ok(again(409, "That username is taken.")) };
    log::info!("open sign-up: new user {} (id {})", user.username, user.id);
    start_session(ctx, user.id, "/oauth/apps")
}

/// `GET /oauth/apps`: each app the user authorized, its scopes, a revoke
/// button. Signed out: the sign-in form, coming back here.
pub fn apps(ctx: &Ctx, req: &Req) -> ApiResult<Resp> {
    let b = Browser::of(ctx, req)?;
    let Some(user) = &b.user else {
        let fields = [("return", "/oauth/apps".to_string())];
        let p = pages::sign_in(&b.csrf(), &fields, None, None, ctx.web.open_registration);
        return Ok(b.finish(ctx, page(200, p)));
    };
    let list = ctx.db.read(|c| Ok(apps::authorizations_of_user(c, user.id)?))?;
    let rows: Vec<pages::AppRow> = list
        .into_iter()
        .map(|a| pages::AppRow {
            client_id: a.app.client_id,
            name: a.app.name,
            url: a.app.url,
            scopes: a.scopes.iter().map(|s| scope_line(s)).collect(),
            since: crate::util::iso8601(a.created_at),
        })
        .collect();
    let notice =
        (req.param("revoked") == Some("1")).then_some("The app was revoked: its tokens no longer work.");
    Ok(page(200, pages::apps(&user.username, &b.csrf(), &rows, notice)))
}

/// `POST /oauth/apps/revoke`: ends the user's authorization of one app,
/// as `DELETE /v1/token` on each of its tokens would: the `token` event to
/// the app, and every live stream opened with those tokens closes.
pub fn revoke(ctx: &Ctx, req: &Req) -> ApiResult<Resp> {
    let f = form(req)?;
    let b = Browser::of(ctx, req)?;
    b.check_csrf(&f)?;
    let Some(user) = &b.user else {
        return Err(ApiError::forbidden("You are signed out: sign in and try again"));
    };
    let client_id = field(&f, "client_id").unwrap_or("");
    let done = ctx.db.write(|tx| {
        let Some(app) = apps::app_by_client_id(tx, client_id)? else { return Ok(false) };
        crate::grants::revoke_app(tx, &ctx.api_url, &app, user.id)
    })?;
    if !done {
        return Ok(problem(&ApiError::not_found("You have not authorized that app")));
    }
    Ok(redirect(303, "/oauth/apps?revoked=1"))
}
