//! Where authorizations change: a grant, one token revoked, an app revoked
//! by a user. Each writes, in the caller's transaction, the `token` event
//! the app's streams see and the signals that close streams opened with a
//! token that ended. Shared by the token endpoint, `DELETE /v1/token`, the
//! web pages and `spout admin`, so none of them reaches into another.

use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, AuthChange, NewEvent, ObjType, Signal};
use crate::model;
use crate::storage::{apps, users, App, Principal, Tx};
use crate::util::now;
use serde_json::json;

/// Authorizes `user_id` for `app` with `scopes` and mints a token; the
/// `token` event when the authorization is new or its scopes changed.
pub fn grant(
    tx: &mut Tx,
    api_url: &str,
    app: &App,
    user_id: i64,
    scopes: &[String],
) -> ApiResult<apps::Grant> {
    let g = apps::grant(tx, app.id, user_id, scopes)?;
    if g.changed {
        token_event(tx, api_url, app, user_id, Some(scopes))?;
    }
    for token_id in &g.dropped {
        tx.signal(Signal::TokenRevoked { token_id: *token_id })?;
    }
    Ok(g)
}

/// Revokes token `p` in this transaction: the `token` event when it was
/// the user's last token for the app (the authorization ends with it), and
/// the signal that closes the live streams opened with it. Shared by
/// `DELETE /v1/token` and `spout admin token revoke`.
pub fn revoke_token(tx: &mut Tx, api_url: &str, p: &Principal) -> ApiResult<()> {
    let ended = apps::revoke(tx, p.token_id)?;
    if let (true, Some(uid)) = (ended, p.user_id) {
        token_event(tx, api_url, &p.app, uid, None)?;
    }
    tx.signal(Signal::TokenRevoked { token_id: p.token_id })
}

/// Ends `user_id`'s authorization of `app` with all its tokens (the
/// authorized apps page): the `token` event, and the signals that close
/// live streams opened with any of them. False if there was none.
pub fn revoke_app(tx: &mut Tx, api_url: &str, app: &App, user_id: i64) -> ApiResult<bool> {
    let Some(tokens) = apps::revoke_authorization(tx, app.id, user_id)? else { return Ok(false) };
    token_event(tx, api_url, app, user_id, None)?;
    for token_id in tokens {
        tx.signal(Signal::TokenRevoked { token_id })?;
    }
    Ok(true)
}

/// Writes the `token` event for a grant, scope change or revocation
/// (`scopes == None`), carrying the authorization change for the hub.
fn token_event(
    tx: &mut Tx,
    api_url: &str,
    app: &App,
    user_id: i64,
    scopes: Option<&[String]>,
) -> ApiResult<()> {
    let user = users::by_id(tx, user_id)?.ok_or_else(ApiError::internal)?;
    let uv = crate::render::user_json(tx, api_url, &user)?;
    let shown: Vec<String> = scopes.map(<[String]>::to_vec).unwrap_or_default();
    let mut meta = json!({"timestamp": now(), "id": user_id.to_string(), "type": "token", "user_id": user_id.to_string()});
    if scopes.is_none() {
        meta["is_deleted"] = json!(true);
    }
    tx.emit(NewEvent {
        kind: ObjType::Token,
        audience: Audience::App { app_id: app.id },
        auth: Some(AuthChange { app_id: app.id, user_id, scopes: scopes.map(<[String]>::to_vec) }),
        envelope: json!({"meta": meta, "data": model::token(app, &shown, Some(uv))}),
    })
}
