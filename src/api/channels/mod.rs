//! Channels with ACLs, subscriptions (seed 004), mutes, markers and channel
//! presence; messages, files and polls in submodules. Every change writes
//! its stream event in the same transaction; the audience of channel and
//! message events is the set of users who may read the channel.

mod files;
mod messages;
mod polls;

use super::users::{find_user, merge_raw, user_value};
use super::{parse_id, Ctx, Route};
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, NewEvent, ObjType};
pub use crate::http::params::{page, page_meta};
use crate::http::{Req, Resp};
use crate::model::{prune, Kind, Opts};
use crate::storage::channels::{self as store, Acl, ChannelRow, Group};
use crate::storage::Page;
use crate::storage::{apps, Tx};
use crate::util::{iso8601, now};
use rusqlite::Connection;
use serde_json::{json, Map, Value};

/// Routes of this module (tried after the posts table). Literal paths
/// come before `{}` ones.
pub const ROUTES: &[Route] = &[
    ("POST", "/v1/channels", create_channel),
    ("GET", "/v1/channels", get_channels),
    ("POST", "/v1/channels/pm/messages", messages::create_pm),
    ("GET", "/v1/channels/messages", messages::get_many),
    ("GET", "/v1/channels/{}", get_channel),
    ("PUT", "/v1/channels/{}", update_channel),
    ("PATCH", "/v1/channels/{}", update_channel),
    ("DELETE", "/v1/channels/{}", deactivate_channel),
    ("PUT", "/v1/channels/{}/subscribe", subscribe),
    ("DELETE", "/v1/channels/{}/subscribe", unsubscribe),
    ("GET", "/v1/channels/{}/subscribers", subscribers),
    ("GET", "/v1/channels/{}/presence", channel_presence),
    ("PUT", "/v1/channels/{}/mute", mute),
    ("DELETE", "/v1/channels/{}/mute", unmute),
    ("GET", "/v1/channels/{}/messages", messages::list),
    ("POST", "/v1/channels/{}/messages", messages::create),
    ("GET", "/v1/channels/{}/sticky_messages", messages::sticky_list),
    ("GET", "/v1/channels/{}/messages/{}", messages::get_one),
    ("GET", "/v1/channels/{}/messages/{}/thread", messages::thread),
    ("DELETE", "/v1/channels/{}/messages/{}", messages::delete),
    ("PUT", "/v1/channels/{}/messages/{}/sticky", messages::sticky),
    ("DELETE", "/v1/channels/{}/messages/{}/sticky", messages::unsticky),
    ("GET", "/v1/users/me/channels", my_channels),
    ("GET", "/v1/users/me/messages", messages::mine),
    ("GET", "/v1/users/me/channels/subscribed", subscribed),
    ("GET", "/v1/users/me/channels/muted", muted),
    ("GET", "/v1/users/me/channels/existing_pm", existing_pm),
    ("GET", "/v1/users/me/channels/num_unread", num_unread),
    ("DELETE", "/v1/users/me/channels/num_unread", mark_all_read),
    ("PUT", "/v1/users/me/presence/channels/{}", set_presence),
    ("POST", "/v1/markers", markers),
    ("POST", "/v1/files", files::create),
    ("GET", "/v1/files", files::get_many),
    ("GET", "/v1/users/me/files", files::mine),
    ("GET", "/v1/files/{}", files::get_one),
    ("PUT", "/v1/files/{}", files::update),
    ("PATCH", "/v1/files/{}", files::update),
    ("DELETE", "/v1/files/{}", files::delete),
    ("GET", "/v1/files/{}/content", files::get_content),
    ("PUT", "/v1/files/{}/content", files::put_content),
    ("POST", "/v1/polls", polls::create),
    ("GET", "/v1/polls", polls::get_many),
    ("GET", "/v1/users/me/polls", polls::mine),
    ("GET", "/v1/users/me/polls/responses", polls::answered),
    ("GET", "/v1/polls/{}", polls::get_one),
    ("DELETE", "/v1/polls/{}", polls::delete),
    ("PUT", "/v1/polls/{}/response", polls::respond),
    ("PUT", "/v1/polls/{}/response/{}", polls::respond_one),
];

pub const PM: &str = auth::PM_CHANNEL;
pub const CHAT: &str = "io.pnut.core.chat";
const CHAT_SETTINGS: &str = "io.pnut.core.chat-settings";

// ------------------------------------------------------------------ callers

/// Who is reading: nobody, a user (whose token's scopes decide which
/// channel types it covers, `auth::covers_channel`), or an app reading for
/// the users who authorized it (with their scopes).
pub enum Caller {
    Anon,
    User { id: i64, scopes: Vec<String> },
    App(Vec<(i64, Vec<String>)>),
}

impl Caller {
    pub fn user(&self) -> Option<i64> {
        match self {
            Caller::User { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// A public channel, or one the caller may read with a scope that
    /// covers its type.
    pub fn can_read(&self, ch: &ChannelRow) -> bool {
        ch.acl.read.public
            || match self {
                Caller::Anon => false,
                Caller::User { id, scopes } => {
                    auth::covers_channel(scopes, &ch.kind) && ch.can_read(Some(*id))
                }
                Caller::App(users) => {
                    users.iter().any(|(u, s)| auth::covers_channel(s, &ch.kind) && ch.can_read(Some(*u)))
                }
            }
    }

    /// A message of `ch` written by `author`: readable with the channel, or
    /// by its author (who may have lost access) with a covering scope.
    pub fn can_read_message(&self, ch: &ChannelRow, author: i64) -> bool {
        self.can_read(ch)
            || matches!(self, Caller::User { id, scopes } if *id == author && auth::covers_channel(scopes, &ch.kind))
    }
}

/// The user a channel endpoint acts for, with the scopes that decide which
/// channel types its token covers.
pub struct Me {
    pub id: i64,
    pub app_id: i64,
    pub scopes: Vec<String>,
}

impl Me {
    pub fn covers(&self, kind: &str) -> bool {
        auth::covers_channel(&self.scopes, kind)
    }

    /// 403 unless the token covers channels of type `kind`.
    pub fn require(&self, kind: &str) -> ApiResult<()> {
        if self.covers(kind) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("This token's scopes do not cover {kind} channels")))
        }
    }

    /// The channel (404 if missing), if the token covers its type (403).
    pub fn channel(&self, c: &Connection, raw_id: &str) -> ApiResult<ChannelRow> {
        let ch = find_channel(c, raw_id)?;
        self.require(&ch.kind)?;
        Ok(ch)
    }

    /// `channel`, and the user may read it (403).
    pub fn readable(&self, c: &Connection, raw_id: &str) -> ApiResult<ChannelRow> {
        let ch = self.channel(c, raw_id)?;
        if !ch.can_read(Some(self.id)) {
            return Err(ApiError::forbidden(format!("You may not read channel {}", ch.id)));
        }
        Ok(ch)
    }
}

/// The caller of a read endpoint open to users (`messages` or
/// `public_messages`), apps, and anonymous readers of public channels.
pub fn reader(ctx: &Ctx, req: &Req) -> ApiResult<Caller> {
    let Some(p) = auth::optional(&ctx.db, req)? else { return Ok(Caller::Anon) };
    match p.user_id {
        Some(id) => {
            if !auth::reads_channels(&p.scopes) {
                return Err(ApiError::forbidden(MESSAGES_SCOPE));
            }
            Ok(Caller::User { id, scopes: p.scopes })
        }
        None => {
            let users = ctx.db.read(|c| Ok(apps::authorizations_of_app(c, p.app.id)?))?;
            Ok(Caller::App(users.into_iter().map(|a| (a.user_id, a.scopes)).collect()))
        }
    }
}

const MESSAGES_SCOPE: &str = "This endpoint requires the 'messages' or 'public_messages' scope";

/// A user token with `messages` or `public_messages` (which channels it
/// reaches is checked per channel: `Me::channel`, `Me::covers`).
pub fn writer(ctx: &Ctx, req: &Req) -> ApiResult<Me> {
    let (p, uid) = auth::user(&ctx.db, req, None)?;
    if !auth::reads_channels(&p.scopes) {
        return Err(ApiError::forbidden(MESSAGES_SCOPE));
    }
    Ok(Me { id: uid, app_id: p.app.id, scopes: p.scopes })
}

pub fn find_channel(c: &Connection, raw_id: &str) -> ApiResult<ChannelRow> {
    let id = parse_id("channel_id", raw_id)?;
    store::channel(c, id)?.ok_or_else(|| ApiError::not_found(format!("Channel not found: {id}")))
}

/// The channel if `caller` may read it; 404 for a missing one, 403 otherwise.
pub fn readable_channel(c: &Connection, raw_id: &str, caller: &Caller) -> ApiResult<ChannelRow> {
    let ch = find_channel(c, raw_id)?;
    if !caller.can_read(&ch) {
        return Err(ApiError::forbidden(format!("You may not read channel {}", ch.id)));
    }
    Ok(ch)
}

// --------------------------------------------------------- params and pages

/// The page window, with a channel marker the special bounds `last_read`,
/// `last_read_inclusive`, `marker`, `marker_inclusive` (inclusive moves the
/// bound by one so the marked message itself is in the window). Without a
/// marker they mean "no bound".
pub fn page_with_marker(req: &Req, marker: Option<&store::MarkerRow>) -> ApiResult<Page> {
    crate::http::params::page_with(req, |v, adjust| {
        let m = marker;
        Some(match v {
            "last_read" => m.map(|m| m.last_read_id),
            "last_read_inclusive" => m.map(|m| m.last_read_id + adjust),
            "marker" => m.map(|m| m.id),
            "marker_inclusive" => m.map(|m| m.id + adjust),
            _ => return None,
        })
    })
}

/// A comma-separated `ids=` list of at most `max` ids.
pub fn id_list(req: &Req, max: usize) -> ApiResult<Vec<i64>> {
    crate::http::params::id_list(req, max, "comma-separated ids")
}

/// A JSON boolean or a form/query 0/1/true/false, naming the field on error.
pub fn bool_field(m: &Map<String, Value>, field: &str) -> ApiResult<Option<bool>> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "1" || s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "0" || s == "false" => Ok(Some(false)),
        Some(Value::Number(n)) if n.as_i64() == Some(1) || n.as_i64() == Some(0) => {
            Ok(Some(n.as_i64() == Some(1)))
        }
        Some(_) => Err(ApiError::bad_request(format!("{field}: must be a boolean"))),
    }
}

/// An id given as a JSON number or string.
pub fn id_value(v: &Value, field: &str) -> ApiResult<i64> {
    match v {
        Value::Number(n) => n.as_i64().filter(|n| *n > 0),
        Value::String(s) => s.trim().parse::<i64>().ok().filter(|n| *n > 0),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request(format!("{field}: '{v}' is not a valid id")))
}

/// A raw object given on create: a map of type → list of objects.
pub fn new_raw(body: &Map<String, Value>) -> ApiResult<Value> {
    match body.get("raw") {
        None | Some(Value::Null) => Ok(json!({})),
        Some(r) => merge_raw(&json!({}), r),
    }
}

// ----------------------------------------------------------------- render

fn acl_value(ch: &ChannelRow, viewer: Option<i64>) -> Value {
    let ids = |g: &Group| g.user_ids.iter().map(i64::to_string).collect::<Vec<_>>();
    let a = &ch.acl;
    let mut v = json!({
        "full": {"immutable": a.full.immutable, "user_ids": ids(&a.full)},
        "write": {"any_user": a.write.any_user, "immutable": a.write.immutable, "user_ids": ids(&a.write)},
        "read": {"any_user": a.read.any_user || a.write.any_user, "immutable": a.read.immutable,
                 "public": a.read.public, "user_ids": ids(&a.read)},
    });
    if viewer.is_some() {
        v["full"]["you"] = json!(ch.can_full(viewer));
        v["write"]["you"] = json!(ch.can_write(viewer));
        v["read"]["you"] = json!(ch.can_read(viewer));
    }
    v
}

/// Raw for output: a chat room's `description.text` becomes a content object.
fn raw_value(c: &Connection, raw: &Value) -> Value {
    let mut raw = raw.clone();
    if let Some(Value::Object(s)) = raw.get_mut(CHAT_SETTINGS).and_then(|l| l.get_mut(0)) {
        if let Some(text) = s.get("description").and_then(|d| d["text"].as_str()).map(str::to_string) {
            s.insert("description".into(), crate::storage::users::text_content(c, &text));
        }
    }
    raw
}

pub fn marker_value(m: &store::MarkerRow) -> Value {
    json!({
        "name": m.name,
        "id": m.id.to_string(),
        "last_read_id": m.last_read_id.to_string(),
        "percentage": m.percentage,
        "updated_at": iso8601(m.updated_at),
        "version": m.version.to_string(),
    })
}

/// The full channel object (raw, recent message, marker included; callers
/// prune). `viewer` adds `you_*`, `has_unread`, ACL `you` and the marker;
/// event data is rendered without a viewer.
pub fn channel_value(
    c: &Connection,
    api_url: &str,
    ch: &ChannelRow,
    viewer: Option<i64>,
) -> ApiResult<Value> {
    let st = store::channel_stats(c, ch.id)?;
    let mut v = json!({
        "id": ch.id.to_string(),
        "type": ch.kind,
        "created_at": iso8601(ch.created_at),
        "acl": acl_value(ch, viewer),
        "counts": {"messages": st.messages, "subscribers": st.subscribers},
        "has_sticky_messages": st.has_sticky,
        "raw": raw_value(c, &ch.raw),
    });
    if let Some(owner) = ch.owner_id {
        v["user"] = crate::render::user_json_by_id(c, api_url, owner)?;
    }
    if !ch.is_active {
        v["is_active"] = json!(false);
    }
    if let Some(rid) = st.recent_id {
        v["recent_message_id"] = json!(rid.to_string());
        // The newest message is the most recent live one unless deleted.
        let fetched;
        let recent = match &st.newest {
            Some(n) if n.id == rid => Some(n),
            _ => {
                fetched = store::message(c, rid)?;
                fetched.as_ref()
            }
        };
        if let Some(m) = recent {
            v["recent_message"] = messages::message_value(c, api_url, m)?;
        }
    }
    if let Some(newest) = st.newest.filter(|m| m.is_deleted) {
        v["recent_deleted_message_id"] = json!(newest.id.to_string());
        v["recent_deleted_message"] = messages::message_value(c, api_url, &newest)?;
    }
    if let Some(u) = viewer {
        let marker = store::marker(c, u, &format!("channel:{}", ch.id))?;
        let last_read = marker.as_ref().map(|m| m.last_read_id).unwrap_or(0);
        v["has_unread"] = json!(store::has_unread_after(c, ch.id, u, last_read)?);
        v["you_subscribed"] = json!(store::is_subscribed(c, ch.id, u)?);
        v["you_muted"] = json!(store::is_muted(c, ch.id, u)?);
        if let Some(m) = marker {
            v["marker"] = marker_value(&m);
        }
    }
    Ok(v)
}

/// Rendering options for channels: `include_marker` defaults to `marker_default`.
pub fn channel_opts(req: &Req, marker_default: bool) -> Opts {
    Opts { marker: req.flag("include_marker", marker_default), ..Opts::from_req(req) }
}

fn rendered(mut v: Value, opts: &Opts) -> Value {
    prune(&mut v, Kind::Channel, opts);
    v
}

// ------------------------------------------------------------------ events

pub fn emit_channel(tx: &mut Tx, api_url: &str, ch: &ChannelRow, audience: Audience) -> ApiResult<()> {
    let data = channel_value(tx, api_url, ch, None)?;
    tx.emit(NewEvent {
        kind: ObjType::Channel,
        audience,
        auth: None,
        envelope: json!({"meta": {"timestamp": now(), "id": ch.id.to_string(), "type": "channel"}, "data": data}),
    })
}

pub fn emit_subscription(
    tx: &mut Tx,
    api_url: &str,
    ch: &ChannelRow,
    uid: i64,
    deleted: bool,
) -> ApiResult<()> {
    let data = json!({
        "user": crate::render::user_json_by_id(tx, api_url, uid)?,
        "channel": channel_value(tx, api_url, ch, None)?,
    });
    let mut meta = json!({"timestamp": now(), "id": ch.id.to_string(), "type": "channel_subscription"});
    if deleted {
        meta["is_deleted"] = json!(true);
    }
    tx.emit(NewEvent {
        kind: ObjType::ChannelSubscription,
        audience: ch.audience_of(uid),
        auth: None,
        envelope: crate::util::obj([("meta", meta), ("data", data)]),
    })
}

/// Subscribes `uid` (unmuting), with its event if the subscription is new.
pub fn subscribe_user(tx: &mut Tx, api_url: &str, ch: &ChannelRow, uid: i64) -> ApiResult<()> {
    store::set_muted(tx, ch.id, uid, false)?;
    if store::subscribe(tx, ch.id, uid)? {
        emit_subscription(tx, api_url, ch, uid, false)?;
    }
    Ok(())
}

/// Unsubscribes `uid` and drops their marker, with the event if they were
/// subscribed.
fn unsubscribe_user(tx: &mut Tx, api_url: &str, ch: &ChannelRow, uid: i64) -> ApiResult<()> {
    store::delete_marker(tx, uid, &format!("channel:{}", ch.id))?;
    if store::unsubscribe(tx, ch.id, uid)? {
        emit_subscription(tx, api_url, ch, uid, true)?;
    }
    Ok(())
}

// --------------------------------------------------------------------- ACL

const GROUPS: [&str; 3] = ["full", "write", "read"];

fn group_mut<'a>(acl: &'a mut Acl, name: &str) -> &'a mut Group {
    match name {
        "full" => &mut acl.full,
        "write" => &mut acl.write,
        _ => &mut acl.read,
    }
}

/// Applies an `acl` input to `base`. On create every group is new; on
/// update an immutable group may not change and only the owner may change
/// `full`. A user ends up in at most one group: naming a user in a lower
/// group removes them from higher groups not named in the same input.
pub fn apply_acl(
    c: &Connection,
    base: &Acl,
    input: &Value,
    creating: bool,
    owner: Option<i64>,
    caller_is_owner: bool,
) -> ApiResult<Acl> {
    let Value::Object(inp) = input else {
        return Err(ApiError::bad_request("acl: must be an object with full, write and read"));
    };
    if let Some(k) = inp.keys().find(|k| !GROUPS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("acl: unknown group '{k}' (use full, write, read)")));
    }
    let mut acl = base.clone();
    let mut given = Vec::new();
    for name in GROUPS {
        let Some(g) = inp.get(name) else { continue };
        let Value::Object(g) = g else {
            return Err(ApiError::bad_request(format!("acl.{name}: must be an object")));
        };
        let old = group_mut(&mut acl, name).clone();
        let mut new = old.clone();
        for (k, v) in g {
            let field = format!("acl.{name}.{k}");
            match k.as_str() {
                "any_user" | "immutable" | "public" => {
                    let b = v
                        .as_bool()
                        .ok_or_else(|| ApiError::bad_request(format!("{field}: must be a boolean")))?;
                    match k.as_str() {
                        "any_user" if name == "full" && b => {
                            return Err(ApiError::bad_request(format!(
                                "{field}: the full group cannot be any_user"
                            )))
                        }
                        "public" if name != "read" && b => {
                            return Err(ApiError::bad_request(format!(
                                "{field}: only the read group can be public"
                            )))
                        }
                        "any_user" => new.any_user = b,
                        "public" => new.public = b,
                        _ => new.immutable = b,
                    }
                }
                "user_ids" => {
                    let Value::Array(list) = v else {
                        return Err(ApiError::bad_request(format!("{field}: must be a list of user ids")));
                    };
                    let mut ids = Vec::new();
                    for item in list {
                        let id = match item {
                            Value::String(s) if s.starts_with('@') => {
                                find_user(c, s, None)
                                    .map_err(|_| ApiError::bad_request(format!("{field}: no user {s}")))?
                                    .id
                            }
                            other => id_value(other, &field)?,
                        };
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                    let found = store::existing_user_ids(c, &ids)?;
                    if let Some(missing) = ids.iter().find(|i| !found.contains(i)) {
                        return Err(ApiError::bad_request(format!("{field}: user {missing} does not exist")));
                    }
                    new.user_ids = ids;
                }
                // Output-only keys that clients echo back.
                "you" | "users" => {}
                _ => return Err(ApiError::bad_request(format!("{field}: unknown key"))),
            }
        }
        if new != old {
            if !creating && old.immutable {
                return Err(ApiError::bad_request(format!("acl.{name}: this group is immutable")));
            }
            if !creating && name == "full" && !caller_is_owner {
                return Err(ApiError::forbidden("acl.full: only the channel owner may change it"));
            }
        }
        *group_mut(&mut acl, name) = new;
        given.push(name);
    }
    // Moving down: a user named in a lower group leaves higher groups that
    // this input did not name.
    for (i, lower) in GROUPS.iter().enumerate().rev() {
        if !given.contains(lower) {
            continue;
        }
        let ids = group_mut(&mut acl, lower).user_ids.clone();
        for higher in &GROUPS[..i] {
            if !given.contains(higher) {
                let hg = group_mut(&mut acl, higher);
                if hg.immutable && !creating && ids.iter().any(|u| hg.user_ids.contains(u)) {
                    return Err(ApiError::bad_request(format!("acl.{higher}: this group is immutable")));
                }
                hg.user_ids.retain(|u| !ids.contains(u));
            }
        }
    }
    // One group per user (the highest wins); the owner is never listed.
    let full = acl.full.user_ids.clone();
    acl.write.user_ids.retain(|u| !full.contains(u));
    let write = acl.write.user_ids.clone();
    acl.read.user_ids.retain(|u| !full.contains(u) && !write.contains(u));
    if let Some(o) = owner {
        for g in [&mut acl.full, &mut acl.write, &mut acl.read] {
            g.user_ids.retain(|u| *u != o);
        }
    }
    if acl.write.any_user {
        acl.read.any_user = true;
    }
    Ok(acl)
}

fn check_type(t: &str) -> ApiResult<()> {
    if t.is_empty()
        || t.len() > 128
        || !t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(ApiError::bad_request("type: required; letters, digits, '_', '.', '-', at most 128"));
    }
    Ok(())
}

/// `io.pnut.core.chat` rooms need `io.pnut.core.chat-settings` with a name.
fn check_chat_raw(kind: &str, raw: &Value) -> ApiResult<()> {
    let settings = raw.get(CHAT_SETTINGS);
    if kind != CHAT && settings.is_none() {
        return Ok(());
    }
    let field = format!("raw.{CHAT_SETTINGS}");
    let s = settings.and_then(|l| l.get(0)).ok_or_else(|| {
        ApiError::bad_request(format!("{field}: required for {CHAT} channels (with a name)"))
    })?;
    match s.get("name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() && n.chars().count() <= 128 => {}
        _ => return Err(ApiError::bad_request(format!("{field}.name: required, at most 128 characters"))),
    }
    if let Some(d) = s.get("description") {
        match d.get("text").and_then(Value::as_str) {
            Some(t) if t.chars().count() <= 256 => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "{field}.description.text: at most 256 characters"
                )))
            }
        }
    }
    if let Some(cats) = s.get("categories") {
        const OK: [&str; 8] =
            ["fun", "lifestyle", "profession", "language", "community", "tech", "event", "general"];
        let good = cats
            .as_array()
            .is_some_and(|l| l.len() <= 3 && l.iter().all(|c| c.as_str().is_some_and(|c| OK.contains(&c))));
        if !good {
            return Err(ApiError::bad_request(format!("{field}.categories: at most 3 of {}", OK.join(", "))));
        }
    }
    Ok(())
}

// ----------------------------------------------------------- channel CRUD

pub fn create_channel(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let body = req.params()?;
    let kind = crate::http::str_field(&body, "type")?.unwrap_or("");
    check_type(kind)?;
    me.require(kind)?;
    if kind == PM {
        return Err(ApiError::bad_request(
            "type: io.pnut.core.pm channels are created by POST /v1/channels/pm/messages",
        ));
    }
    let raw = new_raw(&body)?;
    check_chat_raw(kind, &raw)?;
    let v = ctx.db.write(|tx| {
        let acl = match body.get("acl") {
            None | Some(Value::Null) => Acl::default(),
            Some(a) => apply_acl(tx, &Acl::default(), a, true, Some(uid), true)?,
        };
        let ch = store::insert_channel(tx, kind, Some(uid), &acl, &raw, None)?;
        emit_channel(tx, &ctx.api_url, &ch, ch.audience())?;
        // The creator is subscribed to a new channel.
        subscribe_user(tx, &ctx.api_url, &ch, uid)?;
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::data(201, rendered(v, &channel_opts(req, false))))
}

pub fn get_channel(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let v = ctx.db.read(|c| {
        let ch = readable_channel(c, p[0], &caller)?;
        channel_value(c, &ctx.api_url, &ch, caller.user())
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn get_channels(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let ids = id_list(req, 200)?;
    let opts = channel_opts(req, true);
    let list = ctx.db.read(|c| {
        let mut out = Vec::new();
        for id in ids {
            if let Some(ch) = store::channel(c, id)?.filter(|ch| caller.can_read(ch)) {
                out.push(rendered(channel_value(c, &ctx.api_url, &ch, caller.user())?, &opts));
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

/// Owner or full access: `acl` (owner for `full`) and `raw`.
pub fn update_channel(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let body = req.params()?;
    let v = ctx.db.write(|tx| {
        let mut ch = me.channel(tx, p[0])?;
        if !ch.can_full(Some(uid)) {
            return Err(ApiError::forbidden(
                "Only the owner or users with full access may edit this channel",
            ));
        }
        if !ch.is_active {
            return Err(ApiError::forbidden("This channel is inactive"));
        }
        let before = ch.audience();
        if let Some(a) = body.get("acl").filter(|a| !a.is_null()) {
            ch.acl = apply_acl(tx, &ch.acl, a, false, ch.owner_id, ch.owner_id == Some(uid))?;
        }
        if let Some(r) = body.get("raw").filter(|r| !r.is_null()) {
            ch.raw = merge_raw(&ch.raw, r)?;
            check_chat_raw(&ch.kind, &ch.raw)?;
        }
        store::save_channel(tx, &ch)?;
        // Users who lost access still hear about the change that removed them.
        let audience = match (before, ch.audience()) {
            (
                Audience::Channel { channel_type, users: Some(mut a) },
                Audience::Channel { users: Some(b), .. },
            ) => {
                for u in b {
                    if !a.contains(&u) {
                        a.push(u);
                    }
                }
                Audience::Channel { channel_type, users: Some(a) }
            }
            (before @ Audience::Channel { users: None, .. }, _) => before,
            (_, after) => after,
        };
        emit_channel(tx, &ctx.api_url, &ch, audience)?;
        // A subscriber who may no longer read the channel is unsubscribed
        // (their apps get the subscription's end), so it leaves their inbox,
        // recent message and unread counts at once.
        for u in store::subscriber_ids(tx, ch.id)? {
            if !ch.can_read(Some(u)) {
                unsubscribe_user(tx, &ctx.api_url, &ch, u)?;
            }
        }
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

/// Owner only, not PMs: irreversible; drops subscriptions, keeps messages.
pub fn deactivate_channel(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let v = ctx.db.write(|tx| {
        let mut ch = me.channel(tx, p[0])?;
        if ch.kind == PM {
            return Err(ApiError::forbidden("PM channels cannot be deactivated"));
        }
        if ch.owner_id != Some(uid) {
            return Err(ApiError::forbidden("Only the channel owner may deactivate it"));
        }
        if ch.is_active {
            ch.is_active = false;
            store::save_channel(tx, &ch)?;
            for u in store::drop_subscriptions(tx, ch.id)? {
                store::delete_marker(tx, u, &format!("channel:{}", ch.id))?;
                emit_subscription(tx, &ctx.api_url, &ch, u, true)?;
            }
            emit_channel(tx, &ctx.api_url, &ch, ch.audience())?;
        }
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn my_channels(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let pg = page(req)?;
    let opts = channel_opts(req, true);
    let (list, keys, more) = ctx.db.read(|c| {
        let (rows, more) = store::owned_channels(c, uid, &pg, req.flag("include_inactive", false))?;
        let mut out = Vec::new();
        // A channel of a type the token does not cover is left out of the
        // page (which may then be short).
        for ch in rows.iter().filter(|ch| me.covers(&ch.kind)) {
            out.push(rendered(channel_value(c, &ctx.api_url, ch, Some(uid))?, &opts));
        }
        Ok((out, rows.iter().map(|r| r.id).collect::<Vec<_>>(), more))
    })?;
    Ok(Resp::with_meta(200, page_meta(&keys, more), Value::Array(list)))
}

// ------------------------------------------------------ subscriptions (004)

pub fn subscribe(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let v = ctx.db.write(|tx| {
        let ch = me.readable(tx, p[0])?;
        if !ch.is_active {
            return Err(ApiError::forbidden("This channel is inactive"));
        }
        subscribe_user(tx, &ctx.api_url, &ch, uid)?;
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn unsubscribe(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let v = ctx.db.write(|tx| {
        // Someone who may not read the channel learns nothing about it
        // (its recent message, counts) from this answer.
        let ch = me.readable(tx, p[0])?;
        unsubscribe_user(tx, &ctx.api_url, &ch, uid)?;
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn subscribers(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let pg = page(req)?;
    let presence = req.flag("include_presence", false);
    let opts = Opts::from_req(req);
    let (list, keys, more) = ctx.db.read(|c| {
        let ch = readable_channel(c, p[0], &caller)?;
        let (rows, more) = store::subscribers(c, ch.id, &pg)?;
        let mut out = Vec::new();
        for (key, u) in &rows {
            let Some(row) = crate::storage::users::by_id(c, *u)? else { continue };
            let mut v = user_value(c, &ctx.api_url, &row, caller.user())?;
            v["pagination_id"] = json!(key.to_string());
            if presence {
                let p = store::channel_presence(c, ch.id, *u)?.and_then(|(p, _)| p);
                v["presence"] = json!(p.unwrap_or_else(|| "offline".into()));
            }
            prune(&mut v, Kind::User, &opts);
            out.push(v);
        }
        Ok((out, rows.iter().map(|r| r.0).collect::<Vec<_>>(), more))
    })?;
    Ok(Resp::with_meta(200, page_meta(&keys, more), Value::Array(list)))
}

/// Comma-separated channel types from `name`.
fn type_list(req: &Req, name: &str) -> Option<Vec<String>> {
    req.param(name)
        .map(|s| s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect())
}

/// The channels `me` is subscribed to, may read now, and its token covers.
fn my_subscriptions(c: &Connection, me: &Me) -> ApiResult<Vec<ChannelRow>> {
    let mut subs = store::subscribed_channels(c, me.id)?;
    subs.retain(|ch| me.covers(&ch.kind) && ch.can_read(Some(me.id)));
    Ok(subs)
}

/// Counts of subscribed channels with unread messages, per type; chat and
/// PM are always present.
fn unread_counts(c: &Connection, uid: i64, subs: &[ChannelRow]) -> ApiResult<Map<String, Value>> {
    let mut m = Map::new();
    m.insert(CHAT.into(), json!(0));
    m.insert(PM.into(), json!(0));
    for ch in subs {
        let entry = m.entry(ch.kind.clone()).or_insert(json!(0));
        if store::has_unread(c, ch.id, uid)? {
            *entry = json!(entry.as_i64().unwrap_or(0) + 1);
        }
    }
    Ok(m)
}

/// Seed 004: the inbox, most recent activity first, paginated by
/// `pagination_id` (the channel's activity number), `meta.unread_counts`.
pub fn subscribed(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let pg = page(req)?;
    let opts = channel_opts(req, true);
    let include_read = req.flag("include_read", true);
    let only = type_list(req, "channel_types");
    let exclude = if only.is_some() { None } else { type_list(req, "exclude_channel_types") };
    let (list, keys, more, counts) = ctx.db.read(|c| {
        let subs = my_subscriptions(c, &me)?;
        let counts = unread_counts(c, uid, &subs)?;
        let mut window = Vec::new();
        for ch in subs {
            if only.as_ref().is_some_and(|o| !o.contains(&ch.kind))
                || exclude.as_ref().is_some_and(|e| e.contains(&ch.kind))
                || pg.since.is_some_and(|s| ch.activity <= s)
                || pg.before.is_some_and(|b| ch.activity >= b)
                || (!include_read && !store::has_unread(c, ch.id, uid)?)
            {
                continue;
            }
            window.push(ch);
        }
        let n = pg.count.unsigned_abs() as usize;
        let more = window.len() > n;
        let picked: Vec<ChannelRow> = if pg.count > 0 {
            window.into_iter().take(n).collect()
        } else {
            let skip = window.len().saturating_sub(n);
            window.into_iter().skip(skip).collect()
        };
        let mut out = Vec::new();
        for ch in &picked {
            let mut v = rendered(channel_value(c, &ctx.api_url, ch, Some(uid))?, &opts);
            v["pagination_id"] = json!(ch.activity.to_string());
            out.push(v);
        }
        Ok((out, picked.iter().map(|c| c.activity).collect::<Vec<_>>(), more, counts))
    })?;
    let mut meta = page_meta(&keys, more);
    meta.insert("unread_counts".into(), Value::Object(counts));
    Ok(Resp::with_meta(200, meta, Value::Array(list)))
}

fn unread_types(req: &Req) -> ApiResult<Vec<String>> {
    let types = type_list(req, "channel_types").unwrap_or_else(|| vec![PM.to_string()]);
    if types.is_empty() || types.len() > 4 {
        return Err(ApiError::bad_request("channel_types: one to four channel types"));
    }
    Ok(types)
}

/// `{"io.pnut.core.pm": n}`: subscribed channels of each type with unread messages.
pub fn num_unread(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let types = unread_types(req)?;
    let counts = ctx.db.read(|c| {
        let subs = my_subscriptions(c, &me)?;
        let all = unread_counts(c, uid, &subs)?;
        Ok(types.iter().map(|t| (t.clone(), all.get(t).cloned().unwrap_or(json!(0)))).collect::<Map<_, _>>())
    })?;
    Ok(Resp::ok(Value::Object(counts)))
}

/// Marks every subscribed channel of the types read; answers the (now zero) counts.
pub fn mark_all_read(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let types = unread_types(req)?;
    let counts = ctx.db.write(|tx| {
        let subscribed = my_subscriptions(tx, &me)?;
        for ch in subscribed.iter().filter(|ch| types.contains(&ch.kind)) {
            if let Some(newest) = store::channel_stats(tx, ch.id)?.recent_id {
                store::set_marker(tx, uid, &format!("channel:{}", ch.id), newest, 0, false)?;
            }
        }
        let all = unread_counts(tx, uid, &subscribed)?;
        Ok(types.iter().map(|t| (t.clone(), all.get(t).cloned().unwrap_or(json!(0)))).collect::<Map<_, _>>())
    })?;
    Ok(Resp::ok(Value::Object(counts)))
}

// ------------------------------------------------------------------- mutes

/// Muting unsubscribes and keeps PMs from subscribing the user again.
pub fn mute(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let v = ctx.db.write(|tx| {
        let ch = me.readable(tx, p[0])?;
        unsubscribe_user(tx, &ctx.api_url, &ch, uid)?;
        store::set_muted(tx, ch.id, uid, true)?;
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn unmute(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let v = ctx.db.write(|tx| {
        let ch = me.channel(tx, p[0])?;
        store::set_muted(tx, ch.id, uid, false)?;
        channel_value(tx, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

pub fn muted(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let pg = page(req)?;
    let opts = channel_opts(req, true);
    let (list, keys, more) = ctx.db.read(|c| {
        let (rows, more) = store::muted_channels(c, uid, &pg)?;
        let mut out = Vec::new();
        for (key, ch) in rows.iter().filter(|(_, ch)| me.covers(&ch.kind)) {
            let mut v = rendered(channel_value(c, &ctx.api_url, ch, Some(uid))?, &opts);
            v["pagination_id"] = json!(key.to_string());
            out.push(v);
        }
        Ok((out, rows.iter().map(|r| r.0).collect::<Vec<_>>(), more))
    })?;
    Ok(Resp::with_meta(200, page_meta(&keys, more), Value::Array(list)))
}

// --------------------------------------------------------------------- PMs

/// The PM key for a set of participants: sorted ids, comma-joined.
pub fn pm_key(users: &[i64]) -> String {
    let mut u = users.to_vec();
    u.sort_unstable();
    u.dedup();
    u.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// Resolves `destinations` (a list, or comma-separated string, of ids or
/// `@names`) plus the sender to the participant set.
pub fn participants(c: &Connection, me: i64, dest: &Value, field: &str) -> ApiResult<Vec<i64>> {
    let items: Vec<Value> = match dest {
        Value::Array(l) => l.clone(),
        Value::String(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| json!(s)).collect(),
        Value::Number(_) => vec![dest.clone()],
        _ => return Err(ApiError::bad_request(format!("{field}: a list of user ids or @usernames"))),
    };
    let mut users = vec![me];
    for it in &items {
        let ident = match it {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(ApiError::bad_request(format!("{field}: '{it}' is not a user id or @username"))),
        };
        let u = find_user(c, &ident, Some(me)).map_err(|e| {
            if e.status == 404 {
                ApiError::bad_request(format!("{field}: no user {ident}"))
            } else {
                ApiError::bad_request(format!("{field}: {}", e.message))
            }
        })?;
        if !users.contains(&u.id) {
            users.push(u.id);
        }
    }
    if users.len() < 2 {
        return Err(ApiError::bad_request(format!("{field}: name at least one user other than yourself")));
    }
    Ok(users)
}

pub fn existing_pm(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    me.require(PM)?;
    let ids =
        req.param("ids").ok_or_else(|| ApiError::bad_request("ids: required (user ids or @usernames)"))?;
    let v = ctx.db.read(|c| {
        let users = participants(c, uid, &json!(ids), "ids")?;
        let ch = store::channel_by_pm_key(c, &pm_key(&users))?
            .ok_or_else(|| ApiError::not_found("No PM channel exists with exactly those users"))?;
        channel_value(c, &ctx.api_url, &ch, Some(uid))
    })?;
    Ok(Resp::ok(rendered(v, &channel_opts(req, false))))
}

// ----------------------------------------------------------------- markers

/// `POST /v1/markers`: a list (≤10) of `{name, id, percentage?}`; channel
/// markers need read access. `reset_read_id=1` lets `last_read_id` go back.
pub fn markers(ctx: &Ctx, req: &Req, _: &[&str]) -> ApiResult<Resp> {
    let p = auth::any(&ctx.db, req)?;
    let uid = p.user_id.ok_or_else(|| ApiError::forbidden("This endpoint requires a user token"))?;
    if req.content_type().as_deref() != Some("application/json") {
        return Err(ApiError::bad_request("Content-Type must be application/json"));
    }
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let items = match body {
        Value::Array(l) => l,
        o @ Value::Object(_) => vec![o],
        _ => return Err(ApiError::bad_request("markers: send a list of {name, id} objects")),
    };
    if items.is_empty() || items.len() > 10 {
        return Err(ApiError::bad_request("markers: one to ten markers per request"));
    }
    let reset = req.flag("reset_read_id", false);
    let out = ctx.db.write(|tx| {
        let mut out = Vec::new();
        for (i, m) in items.iter().enumerate() {
            let name = m.get("name").and_then(Value::as_str).filter(|n| !n.is_empty() && n.len() <= 64);
            let name = name.ok_or_else(|| ApiError::bad_request(format!("markers[{i}].name: required")))?;
            let id = id_value(m.get("id").unwrap_or(&Value::Null), &format!("markers[{i}].id"))?;
            let pct = match m.get("percentage") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_i64()
                    .filter(|p| (0..=100).contains(p))
                    .ok_or_else(|| ApiError::bad_request(format!("markers[{i}].percentage: 0 to 100")))?,
            };
            if let Some(cid) = name.strip_prefix("channel:") {
                let ch = find_channel(tx, cid)
                    .map_err(|e| ApiError::new(e.status, format!("markers[{i}].name: {}", e.message)))?;
                if !ch.can_read(Some(uid)) || !auth::covers_channel(&p.scopes, &ch.kind) {
                    return Err(ApiError::forbidden(format!("markers[{i}].name: you may not read channel {}", ch.id)));
                }
            } else if !matches!(name, "global" | "personal" | "unified" | "mentions") {
                return Err(ApiError::bad_request(format!(
                    "markers[{i}].name: '{name}' is not a marker name (global, personal, mentions, channel:ID)"
                )));
            }
            out.push(marker_value(&store::set_marker(tx, uid, name, id, pct, reset)?));
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(out)))
}

// ---------------------------------------------------------------- presence

/// The presence object (`channel_id` added for channel presence).
fn presence_value(ctx: &Ctx, u: &crate::storage::UserRow, presence: &str, seen: i64, cid: i64) -> Value {
    let mut pv = json!({
        "id": u.id.to_string(),
        "username": u.username,
        "avatar_image": format!("{}/v1/users/{}/avatar", ctx.api_url, u.id),
        "presence": presence,
        "last_seen_at": iso8601(seen),
        "channel_id": cid.to_string(),
    });
    if let Some(n) = &u.name {
        pv["name"] = json!(n);
    }
    pv
}

/// `GET /v1/channels/{id}/presence`: users present in the channel (offline
/// users are not listed).
pub fn channel_presence(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let caller = reader(ctx, req)?;
    let list = ctx.db.read(|c| {
        let ch = readable_channel(c, p[0], &caller)?;
        let mut out = Vec::new();
        for (uid, presence, seen) in store::present_in_channel(c, ch.id)? {
            if let Some(u) = crate::storage::users::by_id(c, uid)? {
                out.push(presence_value(ctx, &u, &presence, seen, ch.id));
            }
        }
        Ok(out)
    })?;
    Ok(Resp::ok(Value::Array(list)))
}

/// `PUT /v1/users/me/presence/channels/{id}`: `presence` (missing or `1` →
/// "online"; `offline`/`0` clears) for 15 minutes; emits
/// `user_channel_presence` with `[presence]`, the presence carrying `channel_id`.
pub fn set_presence(ctx: &Ctx, req: &Req, p: &[&str]) -> ApiResult<Resp> {
    let me = writer(ctx, req)?;
    let uid = me.id;
    let mut body = req.params()?;
    for (k, v) in &req.query {
        if k == "presence" && !body.contains_key("presence") {
            body.insert(k.clone(), json!(v));
        }
    }
    let presence = match body.get("presence") {
        None | Some(Value::Null) => Some("online".to_string()),
        Some(Value::String(s)) if s == "1" || s.is_empty() => Some("online".to_string()),
        Some(Value::String(s)) if s == "0" || s == "offline" => None,
        Some(Value::String(s)) if s.chars().count() <= 100 => Some(s.clone()),
        Some(Value::Number(n)) if n.as_i64() == Some(1) => Some("online".to_string()),
        Some(Value::Number(n)) if n.as_i64() == Some(0) => None,
        Some(_) => return Err(ApiError::bad_request("presence: a string of at most 100 characters")),
    };
    let v = ctx.db.write(|tx| {
        let ch = me.readable(tx, p[0])?;
        store::set_channel_presence(tx, ch.id, uid, presence.as_deref(), now() + 15 * 60)?;
        let u = crate::storage::users::by_id(tx, uid)?.ok_or_else(ApiError::internal)?;
        let pv = presence_value(ctx, &u, presence.as_deref().unwrap_or("offline"), now(), ch.id);
        tx.emit(NewEvent {
            kind: ObjType::UserChannelPresence,
            audience: ch.audience_of(uid),
            auth: None,
            envelope: json!({
                "meta": {"timestamp": now(), "id": uid.to_string(), "type": "user_channel_presence",
                         "channel_id": ch.id.to_string()},
                "data": [pv.clone()],
            }),
        })?;
        Ok(pv)
    })?;
    Ok(Resp::ok(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::storage::migrations::migrate(&mut c).unwrap();
        for name in ["u1", "u2", "u3"] {
            crate::storage::users::create(&c, name, "!").unwrap().unwrap();
        }
        c
    }

    #[test]
    fn acl_groups_are_exclusive_and_move_down() {
        let c = db();
        let acl = apply_acl(
            &c,
            &Acl::default(),
            &json!({"full": {"user_ids": ["2"]}, "write": {"user_ids": [2, "3"]}, "read": {"user_ids": ["@u3", "1"]}}),
            true,
            Some(1),
            true,
        )
        .unwrap();
        assert_eq!((acl.full.user_ids.clone(), acl.write.user_ids.clone()), (vec![2], vec![3]));
        assert!(acl.read.user_ids.is_empty(), "the owner is never listed; u3 is in write");
        // Naming u2 in read alone moves them down out of full.
        let moved = apply_acl(&c, &acl, &json!({"read": {"user_ids": ["2"]}}), false, Some(1), true).unwrap();
        assert_eq!((moved.full.user_ids.len(), moved.read.user_ids.clone()), (0, vec![2]));
        // A full user may not change full; nobody may change an immutable group.
        let e = apply_acl(&c, &acl, &json!({"full": {"user_ids": []}}), false, Some(1), false).unwrap_err();
        assert_eq!(e.status, 403);
        let frozen = Acl { write: Group { immutable: true, ..acl.write.clone() }, ..acl.clone() };
        let e =
            apply_acl(&c, &frozen, &json!({"write": {"any_user": true}}), false, Some(1), true).unwrap_err();
        assert!(e.message.contains("acl.write"), "{}", e.message);
        // write.any_user opens reading too.
        let open = apply_acl(&c, &acl, &json!({"write": {"any_user": true}}), false, Some(1), true).unwrap();
        assert!(open.read.any_user);
    }

    #[test]
    fn pm_keys_ignore_order_and_repeats() {
        assert_eq!(pm_key(&[3, 1, 3, 2]), "1,2,3");
    }
}
