//! Interactions (pnut): `GET /v1/users/me/interactions`, what others did
//! to the caller and their posts and polls, and `GET /v1/posts/{id}/interactions`,
//! what was done to one post. Near ones (the same action on the same object
//! within a day) are one interaction with all their users, as pnut groups
//! them.

use super::{get_post, page_meta_keys, user_value, Ctx, View};
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::http::params::page;
use crate::http::{Req, Resp};
use crate::model::{prune, Kind, Opts};
use crate::storage::interactions::{self as store, Interaction, Target, ACTIONS};
use crate::storage::{polls, posts, users, Connection};
use crate::util::iso8601;
use serde_json::{json, Value};

/// What a post's interactions may be.
const POST_ACTIONS: &[&str] = &["bookmark", "repost", "reply"];

/// The actions asked for: `filters` (or pnutpy's `interaction_types`)
/// wins over `exclude` (`exclude_interaction_types`); each must be one of
/// `allowed`.
fn actions(req: &Req, allowed: &'static [&'static str]) -> ApiResult<Vec<&'static str>> {
    let list = |name: &str| -> ApiResult<Option<Vec<&'static str>>> {
        let Some(v) = req.param(name).filter(|v| !v.is_empty()) else { return Ok(None) };
        v.split(',')
            .map(|a| {
                allowed.iter().copied().find(|x| *x == a.trim()).ok_or_else(|| {
                    ApiError::bad_request(format!("{name}: '{a}' is not one of {}", allowed.join(", ")))
                })
            })
            .collect::<ApiResult<Vec<_>>>()
            .map(Some)
    };
    if let Some(only) = list("filters")?.or(list("interaction_types")?) {
        return Ok(only);
    }
    let except = list("exclude")?.or(list("exclude_interaction_types")?).unwrap_or_default();
    Ok(allowed.iter().copied().filter(|a| !except.contains(a)).collect())
}

pub fn of_me(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let (_, uid) = auth::user(&ctx.db, req, None)?;
    let which = actions(req, ACTIONS)?;
    let view = View::new(req, Some(uid));
    list(ctx, req, &view, Target::User(uid), &which, true)
}

pub fn of_post(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let id = super::parse_id("post_id", p[0])?;
    let which = actions(req, POST_ACTIONS)?;
    let view = View::optional(ctx, req)?;
    let post = ctx.db.read(|c| get_post(c, id))?;
    if post.is_deleted {
        return Err(ApiError::not_found(format!("Post not found: {id} was deleted")));
    }
    list(ctx, req, &view, Target::Post(id), &which, false)
}

fn list(ctx: &Ctx, req: &Req, view: &View, target: Target, which: &[&str], objects: bool) -> ApiResult<Resp> {
    let pr = page(req)?;
    let opts = Opts::from_req(req);
    let (meta, out) = ctx.db.read(|c| {
        let (items, more) = store::page(c, target, which, view.viewer, &pr)?;
        let mut out = Vec::with_capacity(items.len());
        for (it, actors) in grouped(&items) {
            if let Some(v) = render(c, ctx, view, &opts, it, &actors, objects)? {
                out.push(v);
            }
        }
        let keys: Vec<i64> = items.iter().map(|i| i.pagination_id).collect();
        Ok((page_meta_keys(&keys, more), out))
    })?;
    Ok(Resp::with_meta(200, meta, Value::Array(out)))
}

/// Near interactions grouped as pnut groups them: the same action on the
/// same object within `GROUP_SECS` of the group's newest one becomes one
/// interaction (the newest's date and pagination id) with every actor,
/// newest first. Groups are made within one page.
fn grouped(items: &[Interaction]) -> Vec<(&Interaction, Vec<i64>)> {
    let mut out: Vec<(&Interaction, Vec<i64>)> = Vec::new();
    for it in items {
        let near = out.iter_mut().find(|(g, _)| {
            g.action == it.action && g.object_id == it.object_id && (g.at - it.at).abs() <= GROUP_SECS
        });
        match near {
            Some((_, actors)) if !actors.contains(&it.actor) => actors.push(it.actor),
            Some(_) => {}
            None => out.push((it, vec![it.actor])),
        }
    }
    out
}

/// How near in time interactions must be to be grouped (pnut: "within a
/// short time"; two users reposting within a day are one event).
const GROUP_SECS: i64 = 86_400;

/// One interaction as pnut shapes it; `None` when a row it names is gone.
fn render(
    c: &Connection,
    ctx: &Ctx,
    view: &View,
    opts: &Opts,
    it: &Interaction,
    actors: &[i64],
    objects: bool,
) -> ApiResult<Option<Value>> {
    let mut users = Vec::with_capacity(actors.len());
    for id in actors {
        let Some(actor) = users::by_id(c, *id)? else { continue };
        let mut user = user_value(c, &ctx.api_url, &actor, view.viewer)?;
        prune(&mut user, Kind::User, opts);
        users.push(user);
    }
    if users.is_empty() {
        return Ok(None);
    }
    let mut v = json!({
        "pagination_id": it.pagination_id.to_string(),
        "event_date": iso8601(it.at),
        "action": it.action,
    });
    if objects {
        let object = match it.action {
            "follow" => {
                let Some(u) = users::by_id(c, it.object_id)? else { return Ok(None) };
                let mut o = user_value(c, &ctx.api_url, &u, view.viewer)?;
                prune(&mut o, Kind::User, opts);
                o
            }
            "poll_response" => {
                let Some(p) = polls::poll(c, it.object_id)? else { return Ok(None) };
                if p.is_anonymous {
                    users.clear();
                }
                crate::render::poll_json(c, &ctx.api_url, &p, view.viewer, false)?
            }
            _ => {
                let Some(p) = posts::by_id(c, it.object_id)? else { return Ok(None) };
                view.render(c, &ctx.api_url, &p)?
            }
        };
        v["objects"] = json!([object]);
    }
    v["users"] = Value::Array(users);
    Ok(Some(v))
}
