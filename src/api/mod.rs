//! The REST API: the route table, dispatch with 404/405, and the shared
//! context handlers receive. One file per resource below this module.

mod channels;
mod filters;
pub(crate) mod images;
pub mod limits;
mod oauth;
mod ops;
mod posts;
mod search;
pub(crate) mod streams;
mod users;

use crate::error::{ApiError, ApiResult};
use crate::http::{Req, Resp};

pub use crate::ctx::Ctx;
pub use crate::http::params::parse_id;
pub(crate) use posts::report_reason as posts_report_reason;

/// A route handler: the request and the path's `{}` segments in order.
pub type Handler = fn(&Ctx, &Req, &[&str]) -> ApiResult<Resp>;
/// Method, path pattern, handler.
pub type Route = (&'static str, &'static str, Handler);

/// Method, path pattern (`{}` is one path segment), handler. The first
/// pattern that matches wins, so literal paths come before `{}` ones.
const ROUTES: &[Route] = &[
    ("GET", "/health", ops::health),
    // Before the `{}` routes that would take `search` for an id.
    ("GET", "/v1/users/search", search::users),
    ("GET", "/v1/posts/search", posts::search),
    ("GET", "/v1/channels/search", channels::search),
    ("GET", "/v1/channels/messages/search", channels::search_messages),
    ("GET", "/v1/polls/search", channels::search_polls),
    ("GET", "/v1/posts/streams/explore", posts::explore_list),
    ("GET", "/v1/posts/streams/explore/{}", posts::explore),
    ("GET", "/v1/channels/streams/explore", channels::explore_list),
    ("GET", "/v1/channels/streams/explore/{}", channels::explore),
    ("GET", "/v1/sys/config", ops::sys_config),
    ("GET", "/v1/sys/stats", ops::sys_stats),
    ("POST", "/v1/text/process", ops::text_process),
    ("GET", "/v1/stats", ops::stats),
    ("POST", "/v1/oauth/access_token", oauth::access_token),
    ("GET", "/v1/token", oauth::get_token),
    ("DELETE", "/v1/token", oauth::delete_token),
    ("GET", "/v1/apps/me/users/ids", oauth::app_user_ids),
    ("GET", "/v1/apps/me/users/tokens", oauth::app_user_tokens),
    ("GET", "/v1/clients/{}", oauth::get_client),
    ("GET", "/v1/users/{}/clients", oauth::user_clients),
    ("GET", "/v1/users", users::get_many),
    ("GET", "/v1/users/me", users::get_me),
    ("PUT", "/v1/users/me", users::put_me),
    ("PATCH", "/v1/users/me", users::patch_me),
    ("GET", "/v1/users/{}", users::get_one),
    ("POST", "/v1/users/me/avatar", images::upload),
    ("DELETE", "/v1/users/me/avatar", images::remove),
    ("POST", "/v1/users/me/cover", images::upload),
    ("DELETE", "/v1/users/me/cover", images::remove),
    ("GET", "/v1/users/{}/avatar", images::redirect),
    ("GET", "/v1/users/{}/cover", images::redirect),
    ("GET", "/v1/users/{}/avatar/image", images::image),
    ("GET", "/v1/users/{}/cover/image", images::image),
    ("GET", "/v1/streams", streams::list),
    ("POST", "/v1/streams", streams::create),
    ("DELETE", "/v1/streams", streams::delete_all),
    ("GET", "/v1/streams/{}", streams::get_one),
    ("PUT", "/v1/streams/{}", streams::update),
    ("DELETE", "/v1/streams/{}", streams::delete_one),
    ("GET", "/v1/filters", filters::list),
    ("POST", "/v1/filters", filters::create),
    ("DELETE", "/v1/filters", filters::delete_all),
    ("GET", "/v1/filters/{}", filters::get_one),
    ("PUT", "/v1/filters/{}", filters::update),
    ("DELETE", "/v1/filters/{}", filters::delete_one),
];

fn matches<'a>(pattern: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut params = Vec::new();
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return Some(params),
            (Some("{}"), Some(seg)) if !seg.is_empty() => params.push(seg),
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

/// Routes a request; every failure becomes the pnut error envelope.
pub fn dispatch(ctx: &Ctx, req: &Req) -> Resp {
    let path = if req.path.len() > 1 { req.path.trim_end_matches('/') } else { &req.path };
    let mut allowed: Vec<&str> = Vec::new();
    // Tables are tried in this order; within a table the first match wins.
    let tables: [&[Route]; 3] = [ROUTES, posts::ROUTES, channels::ROUTES];
    for (method, pattern, handler) in tables.into_iter().flatten() {
        if let Some(params) = matches(pattern, path) {
            if *method == req.method {
                // A file's content may come as the raw body, in its own type.
                let raw_body_allowed = *pattern == "/v1/files/{}/content" && req.method == "PUT";
                if let Err(e) =
                    check_body_type(req).or_else(|e| if raw_body_allowed { Ok(()) } else { Err(e) })
                {
                    return Resp::error(&e);
                }
                let resp = handler(ctx, req, &params).unwrap_or_else(|e| Resp::error(&e));
                return with_presence(ctx, req, resp);
            }
            if !allowed.contains(method) {
                allowed.push(method);
            }
        }
    }
    if allowed.is_empty() {
        Resp::error(&ApiError::not_found(format!("Not found: no endpoint at {path}")))
    } else {
        let e =
            ApiError::new(405, format!("Method {} not allowed here; use {}", req.method, allowed.join(", ")));
        Resp::error(&e).header("Allow", &allowed.join(", "))
    }
}

/// `update_presence=<s>` (and `update_presence_expiration`) on any
/// successful call with a user token (scope `presence`) sets that user's presence, as
/// `PUT /v1/users/me/presence` would (pnut); `meta.updated_presence` says
/// whether it did.
fn with_presence(ctx: &Ctx, req: &Req, mut resp: Resp) -> Resp {
    let Some(value) = req.param("update_presence") else { return resp };
    if resp.status >= 300 || !resp.body.is_object() {
        return resp;
    }
    // The same scope as `PUT /v1/users/me/presence`.
    let uid = crate::auth::any(&ctx.db, req)
        .ok()
        .filter(|p| crate::auth::has_scope(&p.scopes, "presence"))
        .and_then(|p| p.user_id);
    let expiration = req.param("update_presence_expiration").map(|e| serde_json::json!(e));
    let done = uid.is_some_and(|uid| {
        posts::presence::apply(ctx, uid, Some(&serde_json::json!(value)), expiration.as_ref()).is_ok()
    });
    resp.body["meta"]["updated_presence"] = serde_json::json!(done);
    resp
}

/// A request that carries a body must say what it is (a body-less PUT or
/// DELETE may carry any Content-Type, as real clients send them).
fn check_body_type(req: &Req) -> ApiResult<()> {
    if req.body.is_empty() {
        return Ok(());
    }
    match req.content_type().as_deref() {
        Some("application/json") | Some("application/x-www-form-urlencoded") | Some("multipart/form-data") => Ok(()),
        Some(other) => Err(ApiError::bad_request(format!(
            "Content-Type {other} is not supported; send application/json, application/x-www-form-urlencoded or multipart/form-data"
        ))),
        None => Err(ApiError::bad_request("Content-Type: required for a request with a body")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_route_hides_another() {
        // Every route, asked for with a path it was written for (`{}` as
        // an id), is reached: no earlier route of the same method takes it.
        let tables: [&[Route]; 3] = [ROUTES, posts::ROUTES, channels::ROUTES];
        let all: Vec<&Route> = tables.into_iter().flatten().collect();
        for (i, (method, pattern, _)) in all.iter().enumerate() {
            let path = pattern.replace("{}", "123");
            let first = all.iter().position(|(m, p, _)| m == method && matches(p, &path).is_some());
            assert_eq!(first, Some(i), "{method} {pattern} is hidden by {:?}", first.map(|f| all[f].1));
        }
    }

    #[test]
    fn pattern_matching() {
        assert_eq!(matches("/v1/users/{}", "/v1/users/12"), Some(vec!["12"]));
        assert_eq!(matches("/v1/users/{}", "/v1/users/"), None);
        assert_eq!(matches("/v1/users/{}", "/v1/users/1/posts"), None);
        assert_eq!(matches("/v1/token", "/v1/token"), Some(vec![]));
    }
}
