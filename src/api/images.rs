//! Avatars and covers: `GET /v1/users/{id}/avatar|cover` answers 302 to the
//! image (pnut does), which is the user's upload or a generated default,
//! never a 404; `POST /v1/users/me/avatar|cover` (multipart `avatar` /
//! `cover`, PNG, JPEG or GIF) and `DELETE` change it, with a `user` event.

use super::users::{find_user, user_value};
use super::Ctx;
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, NewEvent, ObjType};
use crate::http::{multipart, Req, Resp};
use crate::model::{prune, Kind, Opts};
use crate::storage::users;
use crate::util::now;
use serde_json::json;

/// The largest avatar or cover.
pub const MAX_IMAGE_BYTES: usize = 1 << 20;

fn which(req: &Req) -> &'static str {
    if req.path.trim_end_matches('/').ends_with("/cover") || req.path.contains("/cover/") {
        "cover"
    } else {
        "avatar"
    }
}

/// `GET /v1/users/{id}/avatar|cover` (`?w=` accepted): 302 to the image.
pub fn redirect(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let what = which(req);
    let u = ctx.db.read(|c| find_user(c, p[0], None))?;
    let to = format!("{}/v1/users/{}/{what}/image", ctx.api_url, u.id);
    Ok(Resp::bytes(302, "text/plain", Vec::new()).header("Location", &to))
}

/// `GET /v1/users/{id}/avatar|cover/image`: the bytes.
pub fn image(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let what = which(req);
    let stored = ctx.db.read(|c| {
        let u = find_user(c, p[0], None)?;
        Ok(users::image(c, u.id, what)?)
    })?;
    let (mime, bytes) =
        stored.unwrap_or_else(|| ("image/png".into(), crate::render::default_image(what).to_vec()));
    Ok(Resp::bytes(200, &mime, bytes).header("Cache-Control", "public, max-age=300"))
}

/// `POST /v1/users/me/avatar|cover`: multipart, the image in the field of
/// that name.
pub fn upload(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let what = which(req);
    let (_, uid) = auth::user(&ctx.db, req, Some("update_profile"))?;
    let b = multipart::boundary(req.header("content-type").unwrap_or("")).ok_or_else(|| {
        ApiError::bad_request(format!("{what}: send multipart/form-data with the image in '{what}'"))
    })?;
    let parts = multipart::parse(&req.body, &b).map_err(ApiError::bad_request)?;
    let part = parts.iter().find(|p| p.name == what).ok_or_else(|| {
        ApiError::bad_request(format!("{what}: required (a multipart field named '{what}')"))
    })?;
    if part.data.len() > MAX_IMAGE_BYTES {
        return Err(ApiError::bad_request(format!("{what}: at most {MAX_IMAGE_BYTES} bytes")));
    }
    let (mime, size) = crate::render::probe(part.data)
        .ok_or_else(|| ApiError::bad_request(format!("{what}: must be a PNG, JPEG or GIF image")))?;
    if size.0 == 0 || size.1 == 0 || size.0 > 10_000 || size.1 > 10_000 {
        return Err(ApiError::bad_request(format!("{what}: 1 to 10000 pixels a side")));
    }
    changed(ctx, req, uid, |tx| Ok(users::set_image(tx, uid, what, mime, size, part.data)?))
}

/// `DELETE /v1/users/me/avatar|cover`: back to the default.
pub fn remove(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let what = which(req);
    let (_, uid) = auth::user(&ctx.db, req, Some("update_profile"))?;
    changed(ctx, req, uid, |tx| Ok(users::delete_image(tx, uid, what).map(|_| ())?))
}

/// Applies `change` and writes the `user` event; answers the user.
fn changed(
    ctx: &Ctx,
    req: &Req,
    uid: i64,
    change: impl FnOnce(&crate::storage::Connection) -> ApiResult<()> + Send,
) -> ApiResult<Resp> {
    let v = ctx.db.write(|tx| {
        change(tx)?;
        let u = users::by_id(tx, uid)?.ok_or_else(|| ApiError::not_found("User not found"))?;
        let full = user_value(tx, &ctx.api_url, &u, None)?;
        tx.emit(NewEvent {
            kind: ObjType::User,
            audience: Audience::Users { users: vec![uid], scopes: vec![] },
            auth: None,
            envelope: json!({"meta": {"timestamp": now(), "id": uid.to_string(), "type": "user"}, "data": full}),
        })?;
        user_value(tx, &ctx.api_url, &u, Some(uid))
    })?;
    let mut v = v;
    prune(&mut v, Kind::User, &Opts::from_req(req));
    Ok(Resp::ok(v))
}
