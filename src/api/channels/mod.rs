//! Channels with ACLs, subscriptions (seed 004), mutes, markers and channel
//! presence; messages, files and polls in submodules. Every change writes
//! its stream event in the same transaction; the audience of channel and
//! message events is the set of users who may read the channel.

mod acl;
mod crud;
mod files;
mod markers;
mod messages;
mod pm;
mod polls;
mod subscriptions;

use acl::*;
use crud::*;
pub(crate) use crud::{explore, explore_list, search};
pub(crate) use markers::move_marker;
use markers::*;
pub(crate) use messages::search as search_messages;
use pm::*;
pub(crate) use polls::{parse_time, search as search_polls};
use subscriptions::*;

use super::users::{find_user, merge_raw, user_value};
use super::{parse_id, Ctx, Route};
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::event::{Audience, NewEvent, ObjType};
pub use crate::http::params::{bool_field, page, page_meta};
use crate::http::Req;
use crate::model::{prune, Kind, Opts};
use crate::storage::channels::{self as store, ChannelRow, Group};
use crate::storage::Connection;
use crate::storage::Page;
use crate::storage::{apps, Tx};
use crate::util::{iso8601, now};
use serde_json::{json, Map, Value};

/// Routes of this module (tried after the posts table). Literal paths
/// come before `{}` ones.
pub const ROUTES: &[Route] = &[
    ("POST", "/v1/channels", create_channel),
    ("GET", "/v1/channels", get_channels),
    ("POST", "/v1/channels/pm/messages", messages::create_pm),
    ("GET", "/v1/channels/messages", messages::get_many),
    ("GET", "/v1/channels/{}", get_channel),
    ("PUT", "/v1/channels/{}/owner", change_owner),
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
    ("POST", "/v1/channels/{}/messages/{}/report", messages::report),
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
    ("GET", "/v1/users/{}/presence/channels/{}", user_channel_presence),
    ("POST", "/v1/markers", markers),
    ("POST", "/v1/files", files::create),
    ("GET", "/v1/files", files::get_many),
    ("DELETE", "/v1/files", files::delete_many),
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

/// Writes a `channel` event; its meta lists the channel's subscribers at
/// that moment (`subscribed_user_ids`, as the App.net document has it).
pub fn emit_channel(tx: &mut Tx, api_url: &str, ch: &ChannelRow, audience: Audience) -> ApiResult<()> {
    let data = channel_value(tx, api_url, ch, None)?;
    let subs: Vec<String> = store::subscriber_ids(tx, ch.id)?.iter().map(i64::to_string).collect();
    let meta =
        json!({"timestamp": now(), "id": ch.id.to_string(), "type": "channel", "subscribed_user_ids": subs});
    tx.emit(NewEvent {
        kind: ObjType::Channel,
        audience,
        auth: None,
        envelope: json!({"meta": meta, "data": data}),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::channels::Acl;

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
