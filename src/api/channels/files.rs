//! Files: multipart upload (as pnutpy sends it: part `content` plus
//! `type`, `name`, `kind`, `is_public`), JSON placeholders, metadata
//! updates, content upload, delete, lists. Content is stored in SQLite and
//! capped by `--max-body`. Every change emits a `file` event to the owner's
//! apps holding the `files` scope.

use super::{bool_field, id_list, page, page_meta};
use crate::api::users::merge_raw;
use crate::api::{parse_id, Ctx};
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, Event, NewEvent, ObjType};
use crate::http::multipart;
use crate::http::{Req, Resp};
use crate::model::{prune, Kind, Opts};
use crate::storage::channels::{self as store, FileRow, NewFile};
use crate::storage::Connection;
use crate::storage::{events, Tx};
use crate::util::{iso8601, now};
use serde_json::{json, Map, Value};
use std::sync::Arc;

const KINDS: [&str; 4] = ["image", "audio", "video", "other"];

/// The caller of a files endpoint: a user token with a scope that reaches
/// files; which files it reaches is `covers` (extended `files:TYPE` and
/// `files:core_KIND` scopes reach only those).
struct Filer {
    uid: i64,
    app_id: i64,
    scopes: Vec<String>,
}

impl Filer {
    fn covers(&self, f: &FileRow) -> bool {
        auth::covers_file(&self.scopes, &f.kind_type, &f.kind)
    }

    /// `f`, or a 403 when this token's scope does not reach it.
    fn check(&self, f: FileRow) -> ApiResult<FileRow> {
        if self.covers(&f) {
            return Ok(f);
        }
        Err(ApiError::forbidden(format!(
            "This token's files scope does not cover files of type {} ({})",
            f.kind_type, f.kind
        )))
    }
}

fn filer(ctx: &Ctx, req: &Req) -> ApiResult<Filer> {
    let (p, uid) = auth::user(&ctx.db, req, None)?;
    if !["files", "write_post", "messages"].iter().any(|s| auth::has_scope(&p.scopes, s)) {
        return Err(ApiError::forbidden("This endpoint requires the 'files' scope"));
    }
    Ok(Filer { uid, app_id: p.app.id, scopes: p.scopes })
}

/// The full file object; `file_token` only for the owner.
fn file_value(c: &Connection, api_url: &str, f: &FileRow, owner_view: bool) -> ApiResult<Value> {
    let mut v = json!({
        "id": f.id.to_string(),
        "type": f.kind_type,
        "kind": f.kind,
        "name": f.name,
        "created_at": iso8601(f.created_at),
        "is_complete": f.size.is_some(),
        "is_public": f.is_public,
        "user": crate::render::user_json_by_id(c, api_url, f.user_id)?,
        "source": crate::render::source_json(c, f.app_id)?,
        "raw": f.raw,
    });
    if let Some(size) = f.size {
        let url = format!("{api_url}/v1/files/{}/content", f.id);
        v["mime_type"] = json!(f.mime_type.clone().unwrap_or_else(|| "application/octet-stream".into()));
        v["size"] = json!(size);
        v["total_size"] = json!(size);
        v["sha256"] = json!(f.sha256);
        v["url"] = json!(url);
        v["url_expires_at"] = json!(iso8601(now() + 3600));
        if f.is_public {
            v["url_short"] = json!(url);
        }
    }
    if f.is_deleted {
        v["is_deleted"] = json!(true);
    }
    if owner_view {
        v["file_token"] = json!(f.file_token);
    }
    Ok(v)
}

/// Writes the `file` event and returns it: its data is the caller's answer,
/// rendered once and copied out after the transaction, off the writer thread.
fn emit_file(tx: &mut Tx, api_url: &str, f: &FileRow) -> ApiResult<Arc<Event>> {
    let mut meta = json!({"timestamp": now(), "id": f.id.to_string(), "type": "file"});
    if f.is_deleted {
        meta["is_deleted"] = json!(true);
    }
    let data = file_value(tx, api_url, f, true)?;
    tx.emit_shared(NewEvent {
        kind: ObjType::File,
        audience: Audience::File { user: f.user_id, file_type: f.kind_type.clone() },
        auth: None,
        envelope: crate::util::obj([("meta", meta), ("data", data)]),
    })
}

fn render(mut v: Value, req: &Req) -> Value {
    prune(&mut v, Kind::File, &Opts::from_req(req));
    v
}

/// Form fields and the `content` part of a multipart body.
struct Upload<'a> {
    fields: Map<String, Value>,
    content: Option<(&'a [u8], Option<String>, Option<String>)>,
}

fn upload(req: &Req) -> ApiResult<Upload<'_>> {
    if req.content_type().as_deref() != Some("multipart/form-data") {
        return Ok(Upload { fields: req.params()?, content: None });
    }
    let b = multipart::boundary(req.header("content-type").unwrap_or(""))
        .ok_or_else(|| ApiError::bad_request("Content-Type: multipart/form-data needs a boundary"))?;
    let parts = multipart::parse(&req.body, &b).map_err(ApiError::bad_request)?;
    let mut up = Upload { fields: Map::new(), content: None };
    for p in parts {
        if p.name == "content" {
            up.content = Some((p.data, p.filename, p.content_type));
        } else {
            let text = String::from_utf8_lossy(p.data).into_owned();
            let v = if p.name == "raw" {
                serde_json::from_str(&text).map_err(|_| ApiError::bad_request("raw: must be JSON"))?
            } else {
                json!(text)
            };
            up.fields.insert(p.name, v);
        }
    }
    Ok(up)
}

fn text_field(m: &Map<String, Value>, name: &str, max: usize) -> ApiResult<Option<String>> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{name}: a string of at most {max} characters"))),
    }
}

pub fn create(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let fl = filer(ctx, req)?;
    let (uid, app_id) = (fl.uid, fl.app_id);
    let up = upload(req)?;
    let f = &up.fields;
    let kind_type = text_field(f, "type", 128)?.filter(|t| !t.is_empty());
    let kind_type = kind_type.ok_or_else(|| ApiError::bad_request("type: required"))?;
    if !kind_type.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(ApiError::bad_request("type: letters, digits, '_', '.', '-'"));
    }
    let mime = text_field(f, "mime_type", 128)?.or_else(|| up.content.as_ref().and_then(|c| c.2.clone()));
    let kind = match text_field(f, "kind", 16)? {
        Some(k) if KINDS.contains(&k.as_str()) => k,
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "kind: '{k}' is not one of image, audio, video, other"
            )))
        }
        None => {
            let top = mime.as_deref().and_then(|m| m.split('/').next()).unwrap_or("");
            if KINDS.contains(&top) {
                top.to_string()
            } else {
                "other".into()
            }
        }
    };
    if !auth::covers_file(&fl.scopes, &kind_type, &kind) {
        return Err(ApiError::forbidden(format!(
            "This token's files scope does not cover files of type {kind_type} ({kind})"
        )));
    }
    let name = text_field(f, "name", 256)?
        .or_else(|| up.content.as_ref().and_then(|c| c.1.clone()))
        .unwrap_or_else(|| "file".into());
    let is_public = bool_field(f, "is_public")?.unwrap_or(false);
    let raw = super::new_raw(f)?;
    let ev = ctx.db.write(|tx| {
        let file = store::insert_file(
            tx,
            &NewFile {
                user_id: uid,
                app_id,
                kind_type: &kind_type,
                kind: &kind,
                name: &name,
                mime_type: mime.as_deref(),
                is_public,
                raw: &raw,
                content: up.content.as_ref().map(|c| c.0),
            },
        )?;
        emit_file(tx, &ctx.api_url, &file)
    })?;
    Ok(Resp::data(201, render(ev.object(), req)))
}

fn find_file(c: &Connection, raw: &str) -> ApiResult<FileRow> {
    let id = parse_id("file_id", raw)?;
    store::file(c, id)?
        .filter(|f| !f.is_deleted)
        .ok_or_else(|| ApiError::not_found(format!("File not found: {id}")))
}

/// The owner, anyone for public files, or the holder of `file_token`.
fn may_see(f: &FileRow, uid: i64, req: &Req) -> bool {
    f.user_id == uid || f.is_public || req.param("file_token") == Some(f.file_token.as_str())
}

fn owned_file(c: &Connection, raw: &str, uid: i64) -> ApiResult<FileRow> {
    let f = find_file(c, raw)?;
    if f.user_id != uid {
        return Err(ApiError::forbidden("Only the file's owner may change it"));
    }
    Ok(f)
}

pub fn get_one(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let fl = filer(ctx, req)?;
    let uid = fl.uid;
    let v = ctx.db.read(|c| {
        let f = fl.check(find_file(c, p[0])?)?;
        if !may_see(&f, uid, req) {
            return Err(ApiError::forbidden("file_token: required for another user's private file"));
        }
        file_value(c, &ctx.api_url, &f, f.user_id == uid)
    })?;
    Ok(Resp::ok(render(v, req)))
}

pub fn get_many(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let fl = filer(ctx, req)?;
    let uid = fl.uid;
    let ids = id_list(req, 200)?;
    let list = ctx.db.read(|c| {
        let mut out = Vec::new();
        for id in ids {
            if let Some(f) =
                store::file(c, id)?.filter(|f| !f.is_deleted && may_see(f, uid, req) && fl.covers(f))
            {
                out.push(render(file_value(c, &ctx.api_url, &f, f.user_id == uid)?, req));
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

pub fn mine(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let fl = filer(ctx, req)?;
    let uid = fl.uid;
    let pg = page(req)?;
    let (list, keys, more) = ctx.db.read(|c| {
        let (mut rows, more) = store::files_of(c, uid, &pg)?;
        rows.retain(|f| fl.covers(f));
        let mut out = Vec::new();
        for f in &rows {
            out.push(render(file_value(c, &ctx.api_url, f, true)?, req));
        }
        Ok((out, rows.iter().map(|f| f.id).collect::<Vec<_>>(), more))
    })?;
    Ok(Resp::with_meta(200, page_meta(&keys, more), Value::Array(list)))
}

/// `name`, `is_public`, `raw` (named types replaced, `[]` deletes).
pub fn update(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let fl = filer(ctx, req)?;
    let uid = fl.uid;
    let body = req.params()?;
    let name = text_field(&body, "name", 256)?;
    let is_public = bool_field(&body, "is_public")?;
    let ev = ctx.db.write(|tx| {
        let mut f = fl.check(owned_file(tx, p[0], uid)?)?;
        if let Some(n) = &name {
            f.name = n.clone();
        }
        if let Some(b) = is_public {
            f.is_public = b;
        }
        if let Some(r) = body.get("raw").filter(|r| !r.is_null()) {
            f.raw = merge_raw(&f.raw, r)?;
        }
        store::save_file(tx, &f)?;
        emit_file(tx, &ctx.api_url, &f)
    })?;
    Ok(Resp::ok(render(ev.object(), req)))
}

pub fn delete(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let fl = filer(ctx, req)?;
    let uid = fl.uid;
    let ev = ctx.db.write(|tx| {
        let f = fl.check(owned_file(tx, p[0], uid)?)?;
        delete_in(tx, ctx, f)
    })?;
    Ok(Resp::ok(render(ev.object(), req)))
}

/// Deletes one of the caller's files in `tx`: its content goes, its earlier
/// events carry it as deleted (issue 16), and a `file` event.
fn delete_in(tx: &mut crate::storage::Tx, ctx: &Ctx, mut f: FileRow) -> ApiResult<Arc<Event>> {
    f.is_deleted = true;
    store::save_file(tx, &f)?;
    store::drop_file_content(tx, f.id)?;
    let gone = file_value(tx, &ctx.api_url, &f, true)?;
    events::rewrite(tx, ObjType::File, f.id, i64::MAX, |env| {
        if let Some(d) = env.get_mut("data") {
            *d = gone.clone();
        }
    })?;
    emit_file(tx, &ctx.api_url, &f)
}

/// `DELETE /v1/files?ids=`: several of the caller's files at once, all or
/// none (a file of someone else's refuses the whole request); answers the
/// deleted files (pnut runs this as a long operation; here it is one
/// transaction).
pub fn delete_many(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let fl = filer(ctx, req)?;
    let uid = fl.uid;
    let ids = id_list(req, 100)?;
    let evs = ctx.db.write(|tx| {
        let mut out = Vec::new();
        for id in &ids {
            let f = fl.check(owned_file(tx, &id.to_string(), uid)?)?;
            if !f.is_deleted {
                out.push(delete_in(tx, ctx, f)?);
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(evs.iter().map(|e| render(e.object(), req)).collect())))
}

/// Uploads the content of a placeholder → 204: a multipart part `content`,
/// or the raw body in the file's own Content-Type (pnut takes both).
pub fn put_content(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let fl = filer(ctx, req)?;
    let uid = fl.uid;
    let raw = !matches!(
        req.content_type().as_deref(),
        Some("multipart/form-data") | Some("application/x-www-form-urlencoded") | Some("application/json")
    );
    let (data, mime): (&[u8], Option<String>) = if raw {
        if req.body.is_empty() {
            return Err(ApiError::bad_request(
                "content: required (the raw body or a multipart part named content)",
            ));
        }
        (&req.body, req.header("content-type").map(|t| t.trim().to_string()))
    } else {
        let up = upload(req)?;
        let (data, _, mime) = up
            .content
            .ok_or_else(|| ApiError::bad_request("content: required (a multipart part named content)"))?;
        (data, mime)
    };
    ctx.db.write(|tx| {
        let f = fl.check(owned_file(tx, p[0], uid)?)?;
        if f.size.is_some() {
            return Err(ApiError::bad_request("file_id: this file already has its content"));
        }
        store::set_file_content(tx, f.id, data, mime.as_deref())?;
        let f = store::file(tx, f.id)?.ok_or_else(ApiError::internal)?;
        emit_file(tx, &ctx.api_url, &f).map(|_| ())
    })?;
    Ok(Resp::data(204, Value::Null))
}

/// Media types a browser shows without running anything: served inline.
/// Everything else (HTML, SVG, XML, JavaScript, PDF, unknown types) is a
/// download.
const INLINE: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "text/plain"];

/// A file's bytes as an answer: never sniffed (`nosniff`, on every answer
/// anyway), never able to run script in the API's origin (a sandboxing
/// `Content-Security-Policy`), and a download unless its type is one a
/// browser merely shows (`INLINE`, audio and video). A stored type with
/// anything but token characters is served as `application/octet-stream`.
fn served(mime: &str, bytes: Vec<u8>) -> Resp {
    let m = mime.trim().to_ascii_lowercase();
    let clean =
        !m.is_empty() && m.bytes().all(|b| b.is_ascii_graphic() || b == b' ') && !m.contains(['"', '\\']);
    let m = if clean { m } else { "application/octet-stream".into() };
    let essence = m.split(';').next().unwrap_or("").trim();
    let inline = INLINE.contains(&essence) || essence.starts_with("audio/") || essence.starts_with("video/");
    let r = Resp::bytes(200, &m, bytes).header("Content-Security-Policy", "sandbox; default-src 'none'");
    if inline {
        r
    } else {
        r.header("Content-Disposition", "attachment")
    }
}

/// The content: the stored bytes with their media type, as pnut serves a
/// file's `url`.
pub fn get_content(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let fl = filer(ctx, req)?;
    let uid = fl.uid;
    let v = ctx.db.read(|c| {
        let f = fl.check(find_file(c, p[0])?)?;
        if !may_see(&f, uid, req) {
            return Err(ApiError::forbidden("file_token: required for another user's private file"));
        }
        let mime = f.mime_type.unwrap_or_else(|| "application/octet-stream".into());
        Ok(store::file_content(c, f.id)?.map(|bytes| (mime, bytes)))
    })?;
    Ok(match v {
        Some((mime, bytes)) => served(&mime, bytes),
        // pnut answers 204 for a file that has no content yet.
        None => Resp::data(204, Value::Null),
    })
}
