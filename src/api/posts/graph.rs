//! The social graph: follow, mute, block (each with its stream event) and
//! the paged user lists on them.

use super::{page_meta, View};
use crate::api::users::{find_user, user_value};
use crate::api::Ctx;
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, NewEvent, ObjType};
use crate::http::params::page;
use crate::http::{Req, Resp};
use crate::storage::posts::{self as store, Edge, UserList};
use crate::storage::{apps, users, Tx};
use crate::util::now;
use serde_json::{json, Value};

fn names(e: Edge) -> (&'static str, &'static str, ObjType) {
    match e {
        Edge::Follow => ("follow", "followed_user", ObjType::Follow),
        Edge::Mute => ("mute", "muted_user", ObjType::Mute),
        Edge::Block => ("block", "blocked_user", ObjType::Block),
    }
}

/// Writes the `follow`/`mute`/`block` event for `from → to`. Follows are
/// public; mutes and blocks go only to apps `from` authorized.
fn emit_edge(tx: &mut Tx, api_url: &str, e: Edge, from: i64, to: i64, deleted: bool) -> ApiResult<()> {
    let (ty, key, kind) = names(e);
    let a = users::by_id(tx, from)?.ok_or_else(ApiError::internal)?;
    let b = users::by_id(tx, to)?.ok_or_else(ApiError::internal)?;
    let mut data = json!({"user": user_value(tx, api_url, &a, None)?});
    data[key] = user_value(tx, api_url, &b, None)?;
    let mut meta = json!({"timestamp": now(), "id": to.to_string(), "type": ty});
    if let Edge::Follow = e {
        // The followed user, if they muted or blocked the follower; and
        // whether the follower is a bot or a feed.
        let quiet: Vec<String> =
            crate::storage::posts::muted_or_blocked_by(tx, &[to], from)?.iter().map(i64::to_string).collect();
        meta["suppress_notifications"] = json!(quiet);
        meta["suppress_notifications_all"] = json!(!users::is_human(tx, from)?);
    }
    if deleted {
        meta["is_deleted"] = json!(true);
    }
    let audience = match e {
        Edge::Follow => Audience::Public,
        _ => Audience::Users { users: vec![from], scopes: vec![] },
    };
    tx.emit(NewEvent {
        kind,
        audience,
        auth: None,
        envelope: crate::util::obj([("meta", meta), ("data", data)]),
    })
}

fn change(ctx: &Ctx, req: &Req, p: &[&str], e: Edge, on: bool) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, Some("follow"))?;
    let view = View::new(req, Some(uid));
    let (verb, _, _) = names(e);
    let v = ctx.db.write(|tx| {
        let target = find_user(tx, p[0], Some(uid))?;
        let to = target.id;
        if to == uid {
            let what = if on { verb.to_string() } else { format!("un{verb}") };
            return Err(ApiError::bad_request(format!("user_id: you cannot {what} yourself")));
        }
        if on {
            if e == Edge::Follow {
                let r = store::relation(tx, uid, to)?;
                if r.you_blocked || r.blocked_you {
                    return Err(ApiError::forbidden(
                        "You cannot follow this user: one of you has blocked the other",
                    ));
                }
            }
            if store::link(tx, e, uid, to, now())? {
                if e == Edge::Block {
                    // Blocking removes follows both ways, as pnut does.
                    for (a, b) in [(uid, to), (to, uid)] {
                        if store::unlink(tx, Edge::Follow, a, b)? {
                            emit_edge(tx, &ctx.api_url, Edge::Follow, a, b, true)?;
                        }
                    }
                }
                emit_edge(tx, &ctx.api_url, e, uid, to, false)?;
            }
        } else if store::unlink(tx, e, uid, to)? {
            emit_edge(tx, &ctx.api_url, e, uid, to, true)?;
        }
        user_value(tx, &ctx.api_url, &target, Some(uid))
    })?;
    Ok(Resp::ok(view.user(v)))
}

pub fn follow(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    change(ctx, req, p, Edge::Follow, true)
}
pub fn unfollow(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    change(ctx, req, p, Edge::Follow, false)
}
pub fn mute(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    change(ctx, req, p, Edge::Mute, true)
}
pub fn unmute(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    change(ctx, req, p, Edge::Mute, false)
}
pub fn block(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    change(ctx, req, p, Edge::Block, true)
}
pub fn unblock(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    change(ctx, req, p, Edge::Block, false)
}

/// Who may read a list: `Open` any token; `Own` the user themself (and, for
/// `app_ok`, an app the user authorized).
#[derive(PartialEq)]
enum Access {
    Open,
    Own { app_ok: bool },
}

fn user_list(
    ctx: &Ctx,
    req: &Req,
    ident: &str,
    access: Access,
    list: fn(i64) -> UserList,
) -> ApiResult<Resp> {
    let principal = auth::any(&ctx.db, req)?;
    let viewer = principal.user_id;
    let view = View::new(req, viewer);
    let pr = page(req)?;
    let (meta, out) = ctx.db.read(|c| {
        let target = find_user(c, ident, viewer)?;
        if let Access::Own { app_ok } = access {
            let allowed = match viewer {
                Some(v) => v == target.id,
                None => {
                    app_ok
                        && apps::authorizations_of_app(c, principal.app.id)?
                            .iter()
                            .any(|a| a.user_id == target.id)
                }
            };
            if !allowed {
                return Err(ApiError::forbidden("This list is visible only to its owner"));
            }
        }
        let page = store::user_page(c, list(target.id), &pr)?;
        let mut out = Vec::new();
        for it in &page.items {
            let Some(u) = users::by_id(c, it.oid)? else { continue };
            let mut v = view.user(user_value(c, &ctx.api_url, &u, viewer)?);
            v["pagination_id"] = json!(it.pid.to_string());
            out.push(v);
        }
        Ok((page_meta(&page), out))
    })?;
    Ok(Resp::with_meta(200, meta, Value::Array(out)))
}

pub fn following(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    user_list(ctx, req, p[0], Access::Open, UserList::Following)
}
pub fn followers(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    user_list(ctx, req, p[0], Access::Open, UserList::Followers)
}
pub fn muted(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    user_list(ctx, req, p[0], Access::Own { app_ok: true }, UserList::Muted)
}
pub fn blocked(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    user_list(ctx, req, p[0], Access::Own { app_ok: false }, UserList::Blocked)
}
