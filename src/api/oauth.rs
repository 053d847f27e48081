//! OAuth token exchange (authorization_code, client_credentials, password),
//! the calling token (`GET`/`DELETE /v1/token`), an app's authorized users
//! and the client objects. Grants and revocations go through `grants`.

use super::users::user_value;
use super::Ctx;
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::http::{str_field, Req, Resp};
use crate::model::{self, prune, Kind, Opts};
use crate::storage::{apps, oauth, users, App, Principal, Tx};
use crate::util::now;
use serde_json::{json, Value};

fn required<'a>(m: &'a serde_json::Map<String, Value>, name: &str) -> ApiResult<&'a str> {
    str_field(m, name)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("{name}: required")))
}

/// `POST /v1/oauth/access_token`: plain OAuth JSON on success.
pub fn access_token(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let body = req.params()?;
    let grant = required(&body, "grant_type")?;
    let client_id = required(&body, "client_id")?;
    let bad_credentials =
        || ApiError::unauthorized("Invalid credentials: the client secret, username or password is wrong");
    match grant {
        "client_credentials" => {
            let secret = required(&body, "client_secret")?;
            let out = ctx.db.write(|tx| {
                let app = apps::app_with_secret(tx, client_id, secret)?.ok_or_else(bad_credentials)?;
                let (_, token) = apps::create_app_token(tx, app.id)?;
                Ok(json!({"access_token": token, "token": model::token(&app, &[], None)}))
            })?;
            Ok(Resp::plain(200, out))
        }
        "password" => {
            let secret = match str_field(&body, "password_grant_secret")? {
                Some(s) if !s.is_empty() => s,
                _ => required(&body, "client_secret").map_err(|_| {
                    ApiError::bad_request("password_grant_secret: required (or client_secret)")
                })?,
            };
            let username = required(&body, "username")?;
            let password = required(&body, "password")?;
            let scopes = auth::parse_scopes(str_field(&body, "scope")?.unwrap_or(""))?;
            // An unknown app is refused before any password hashing; the
            // slow check runs under the login guard (failure budgets per
            // account and address, a small pool), outside the write lock.
            let app = ctx.db.read(|c| Ok(apps::app_with_secret(c, client_id, secret)?))?;
            let app = app.ok_or_else(bad_credentials)?;
            // Refused before any password is looked at: an app without the
            // grant must not become a way to test passwords.
            if !app.password_grant {
                return Err(ApiError::forbidden(
                    "This app may not use the password grant: send the user through /oauth/authenticate",
                ));
            }
            let uid = ctx.login.check_user(&ctx.db, username, password, req.remote)?;
            let user = uid.map(|id| ctx.db.read(|c| Ok(users::by_id(c, id)?))).transpose()?.flatten();
            let user = user.ok_or_else(bad_credentials)?;
            let out = ctx.db.write(|tx| {
                let g = crate::grants::grant(tx, &ctx.api_url, &app, user.id, &scopes)?;
                user_token_answer(tx, &ctx.api_url, &app, &user, &scopes, &g.token)
            })?;
            Ok(Resp::plain(200, out).header("X-OAuth-Scopes", &scopes.join(",")))
        }
        "authorization_code" => {
            let secret = required(&body, "client_secret")?;
            let code = required(&body, "code")?;
            let redirect_uri = required(&body, "redirect_uri")?;
            let verifier = str_field(&body, "code_verifier")?;
            let app = ctx.db.read(|c| Ok(apps::app_with_secret(c, client_id, secret)?));
            let app = app?.ok_or_else(bad_credentials)?;
            let (out, scopes) = exchange_code(ctx, &app, code, redirect_uri, verifier)?;
            Ok(Resp::plain(200, out).header("X-OAuth-Scopes", &scopes.join(",")))
        }
        other => Err(ApiError::bad_request(format!(
            "grant_type: '{other}' is not supported (use authorization_code, client_credentials or password)"
        ))),
    }
}

/// What the token endpoint answers for a user token (pnut's shape).
fn user_token_answer(
    tx: &Tx,
    api_url: &str,
    app: &App,
    user: &users::UserRow,
    scopes: &[String],
    token: &str,
) -> ApiResult<Value> {
    let uv = user_value(tx, api_url, user, Some(user.id))?;
    Ok(json!({
        "access_token": token,
        "token": model::token(app, scopes, Some(uv)),
        "user_id": user.id.to_string(),
        "username": user.username,
    }))
}

/// Trades an authorization code for a token: the code must be this app's,
/// unexpired, unused, for this exact `redirect_uri`, and pass its PKCE
/// challenge when it has one. A second use of a code revokes the token the
/// first one made (RFC 6749 §4.1.2) and is refused.
fn exchange_code(
    ctx: &Ctx,
    app: &App,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> ApiResult<(Value, Vec<String>)> {
    let invalid = |why: &str| ApiError::bad_request(format!("code: {why}"));
    ctx.db.write(|tx| {
        let c =
            oauth::code(tx, code)?.filter(|c| c.app_id == app.id).ok_or_else(|| invalid("unknown code"))?;
        if let Some(token_id) = c.token_id {
            let p =
                Principal { token_id, app: app.clone(), user_id: Some(c.user_id), scopes: c.scopes.clone() };
            if apps::token_exists(tx, token_id)? {
                crate::grants::revoke_token(tx, &ctx.api_url, &p)?;
            }
            return Ok(Err(invalid("already used; the token it gave was revoked")));
        }
        if c.expires_at <= now() {
            return Ok(Err(invalid("expired; send the user through the flow again")));
        }
        if c.redirect_uri != redirect_uri {
            return Ok(Err(ApiError::bad_request("redirect_uri: not the one the code was issued for")));
        }
        match (&c.challenge, verifier) {
            (None, None) => {}
            (None, Some(_)) => {
                return Ok(Err(ApiError::bad_request(
                    "code_verifier: the authorization request had no code_challenge",
                )))
            }
            (Some(_), None) => return Ok(Err(ApiError::bad_request("code_verifier: required (PKCE)"))),
            (Some(ch), Some(v)) => {
                if !(43..=128).contains(&v.len()) {
                    return Ok(Err(ApiError::bad_request("code_verifier: 43 to 128 characters (RFC 7636)")));
                }
                if !crate::util::ct_eq(pkce_s256(v).as_bytes(), ch.as_bytes()) {
                    return Ok(Err(ApiError::bad_request(
                        "code_verifier: does not match the code_challenge",
                    )));
                }
            }
        }
        let user = users::by_id(tx, c.user_id)?.ok_or_else(|| invalid("unknown code"))?;
        let g = crate::grants::grant(tx, &ctx.api_url, app, user.id, &c.scopes)?;
        oauth::mark_code_used(tx, code, g.token_id)?;
        Ok(Ok((user_token_answer(tx, &ctx.api_url, app, &user, &c.scopes, &g.token)?, c.scopes)))
    })?
}

/// PKCE S256 (RFC 7636 §4.2): base64url(SHA-256(verifier)), unpadded.
pub(crate) fn pkce_s256(verifier: &str) -> String {
    crate::util::base64url(&crate::util::sha256(verifier))
}

fn token_value(ctx: &Ctx, p: &Principal, req: &Req) -> ApiResult<Value> {
    let user = match p.user_id {
        Some(uid) => Some(ctx.db.read(|c| {
            let u = users::by_id(c, uid)?.ok_or_else(ApiError::internal)?;
            user_value(c, &ctx.api_url, &u, Some(uid))
        })?),
        None => None,
    };
    let mut v = model::token(&p.app, &p.scopes, user);
    prune(&mut v, Kind::Other, &Opts::from_req(req));
    Ok(v)
}

pub fn get_token(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let p = auth::any(&ctx.db, req)?;
    Ok(Resp::ok(token_value(ctx, &p, req)?).header("X-OAuth-Scopes", &p.scopes.join(",")))
}

/// Revokes the calling token at once and returns it.
pub fn delete_token(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let p = auth::any(&ctx.db, req)?;
    let v = token_value(ctx, &p, req)?;
    ctx.db.write(|tx| crate::grants::revoke_token(tx, &ctx.api_url, &p))?;
    Ok(Resp::ok(v))
}

pub fn app_user_ids(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    let rows = ctx.db.read(|c| Ok(apps::authorizations_of_app(c, p.app.id)?))?;
    Ok(Resp::ok(json!(rows.iter().map(|r| r.user_id.to_string()).collect::<Vec<_>>())))
}

pub fn app_user_tokens(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let p = auth::app(&ctx.db, req)?;
    let opts = Opts::from_req(req);
    let list = ctx.db.read(|c| {
        let mut out = Vec::new();
        for r in apps::authorizations_of_app(c, p.app.id)? {
            if let Some(u) = users::by_id(c, r.user_id)? {
                let mut v = model::token(&p.app, &r.scopes, Some(user_value(c, &ctx.api_url, &u, None)?));
                prune(&mut v, Kind::Other, &opts);
                out.push(v);
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

/// A client (app) as pnut shows it: `id` (the client id), `name`, `url`,
/// `created_at`, `posts` made with it, and its owner as `user` when the
/// operator set one. No secret, no internal id.
fn client_value(
    c: &crate::storage::Connection,
    ctx: &Ctx,
    app: &App,
    viewer: Option<i64>,
) -> ApiResult<Value> {
    let (owner, posts) = apps::client_facts(c, app.id)?;
    let mut v = json!({
        "id": app.client_id,
        "name": app.name,
        "url": app.url,
        "created_at": crate::util::iso8601(app.created_at),
        "posts": posts,
    });
    if let Some(u) = owner.map(|o| users::by_id(c, o)).transpose()?.flatten() {
        v["user"] = user_value(c, &ctx.api_url, &u, viewer)?;
    }
    Ok(v)
}

/// `GET /v1/clients/{client_id}`.
pub fn get_client(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let viewer = auth::optional(&ctx.db, req)?.and_then(|p| p.user_id);
    let v = ctx.db.read(|c| {
        let app = apps::app_by_client_id(c, p[0])?
            .ok_or_else(|| ApiError::not_found(format!("Client not found: {}", p[0])))?;
        client_value(c, ctx, &app, viewer)
    })?;
    Ok(Resp::ok(v))
}

/// `GET /v1/users/{id}/clients`: the apps the user owns.
pub fn user_clients(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let viewer = auth::optional(&ctx.db, req)?.and_then(|p| p.user_id);
    let list = ctx.db.read(|c| {
        let u = super::users::find_user(c, p[0], viewer)?;
        let mut out = Vec::new();
        for app in apps::apps_of_owner(c, u.id)? {
            out.push(client_value(c, ctx, &app, viewer)?);
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}
