//! pnut object shapes (users, tokens, apps, streams) and rendering options:
//! objects are built complete and `prune` removes what a request or a
//! connection did not ask for (raw, html, counts).

use crate::http::Req;
use crate::storage::{App, StreamRow, UserRow};
use crate::util::iso8601;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value};

/// Which optional parts a reader wants (pnut's `include_*` parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Opts {
    pub raw_user: bool,
    pub raw_post: bool,
    pub raw_channel: bool,
    pub raw_message: bool,
    pub raw_file: bool,
    pub raw_poll: bool,
    pub html: bool,
    pub counts: bool,
    pub bookmarked_by: bool,
    pub reposted_by: bool,
    pub marker: bool,
    pub recent_message: bool,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            raw_user: false,
            raw_post: false,
            raw_channel: false,
            raw_message: false,
            raw_file: false,
            raw_poll: false,
            html: true,
            counts: true,
            bookmarked_by: false,
            reposted_by: false,
            marker: false,
            recent_message: false,
        }
    }
}

impl Opts {
    /// Reads pnut's general and per-type `include_*` query parameters.
    pub fn from_req(req: &Req) -> Opts {
        let raw = req.flag("include_raw", false);
        let html = req.flag("include_html", true);
        Opts {
            raw_user: req.flag("include_user_raw", raw),
            raw_post: req.flag("include_post_raw", raw),
            raw_channel: req.flag("include_channel_raw", raw),
            raw_message: req.flag("include_message_raw", raw),
            raw_file: req.flag("include_file_raw", raw),
            raw_poll: req.flag("include_poll_raw", raw),
            html,
            counts: req.flag("include_counts", true),
            bookmarked_by: req.flag("include_bookmarked_by", false),
            reposted_by: req.flag("include_reposted_by", false),
            marker: req.flag("include_marker", false),
            recent_message: req.flag("include_recent_message", false),
        }
    }

    /// The option set whose `bits` are `b` (tests walk every one).
    #[cfg(test)]
    pub(crate) fn from_bits(b: u16) -> Opts {
        let f = |i: u16| b & (1 << i) != 0;
        Opts {
            raw_user: f(0),
            raw_post: f(1),
            raw_channel: f(2),
            raw_message: f(3),
            raw_file: f(4),
            raw_poll: f(5),
            html: f(6),
            counts: f(7),
            bookmarked_by: f(8),
            reposted_by: f(9),
            marker: f(10),
            recent_message: f(11),
        }
    }

    /// A compact key for caching one rendering per option set.
    pub fn bits(&self) -> u16 {
        [
            self.raw_user,
            self.raw_post,
            self.raw_channel,
            self.raw_message,
            self.raw_file,
            self.raw_poll,
            self.html,
            self.counts,
            self.bookmarked_by,
            self.reposted_by,
            self.marker,
            self.recent_message,
        ]
        .iter()
        .enumerate()
        .fold(0, |acc, (i, b)| acc | (u16::from(*b) << i))
    }
}

/// The kind of object a JSON value is, for pruning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    User,
    Post,
    Channel,
    Message,
    File,
    Poll,
    /// A wrapper (`{user, post}`, a token, presence): walk its children.
    Other,
}

impl Kind {
    /// The kind of an event's `data` for an object type name.
    pub fn of_type(t: &str) -> Kind {
        match t {
            "post" => Kind::Post,
            "message" => Kind::Message,
            "channel" => Kind::Channel,
            "file" => Kind::File,
            "user" => Kind::User,
            _ => Kind::Other,
        }
    }

    fn of_key(k: &str) -> Option<Kind> {
        Some(match k {
            "user" | "followed_user" | "muted_user" | "blocked_user" | "owner" => Kind::User,
            "post" | "repost_of" => Kind::Post,
            "channel" => Kind::Channel,
            "message" | "recent_message" | "recent_deleted_message" => Kind::Message,
            "file" => Kind::File,
            "poll" => Kind::Poll,
            "bookmarked_by" | "reposted_by" | "users" => Kind::User,
            _ => return None,
        })
    }
}

/// Removes from `v` (an object of `kind`, or a list of them) the parts `o`
/// does not ask for.
pub fn prune(v: &mut Value, kind: Kind, o: &Opts) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| prune(i, kind, o)),
        Value::Object(m) => prune_object(m, kind, o),
        _ => {}
    }
}

/// Whether `prune` removes member `k` from an object of `kind`.
fn drops(kind: Kind, k: &str, o: &Opts) -> bool {
    match k {
        "raw" => !match kind {
            Kind::User => o.raw_user,
            Kind::Post => o.raw_post,
            Kind::Channel => o.raw_channel,
            Kind::Message => o.raw_message,
            Kind::File => o.raw_file,
            Kind::Poll => o.raw_poll,
            Kind::Other => true,
        },
        "counts" => !o.counts && matches!(kind, Kind::User | Kind::Post),
        "bookmarked_by" => !o.bookmarked_by && kind == Kind::Post,
        "reposted_by" => !o.reposted_by && kind == Kind::Post,
        "marker" => !o.marker && kind == Kind::Channel,
        "recent_message" | "recent_deleted_message" => !o.recent_message && kind == Kind::Channel,
        _ => false,
    }
}

/// How `prune` treats member `k` (holding `child`) of an object of `kind`
/// that it keeps: walked as an object of some kind, stripped of its `html`
/// (an object's `content` without `include_html`), or left alone (`None`).
enum Child {
    Walk(Kind),
    NoHtml,
}

fn child_of(kind: Kind, k: &str, child: &Value, o: &Opts) -> Option<Child> {
    if let Some(ck) = Kind::of_key(k) {
        Some(Child::Walk(ck))
    } else if kind == Kind::Other && k == "data" && matches!(child, Value::Object(_) | Value::Array(_)) {
        Some(Child::Walk(Kind::Other))
    } else if kind != Kind::Other && k == "content" && !o.html && child.is_object() {
        Some(Child::NoHtml)
    } else {
        None
    }
}

fn prune_object(m: &mut Map<String, Value>, kind: Kind, o: &Opts) {
    m.retain(|k, _| !drops(kind, k, o));
    for (k, child) in m.iter_mut() {
        match child_of(kind, k, child, o) {
            Some(Child::Walk(ck)) => prune(child, ck, o),
            Some(Child::NoHtml) => {
                if let Value::Object(c) = child {
                    c.remove("html");
                }
            }
            None => {}
        }
    }
}

/// `v` (an object of `kind`, or a list of them) serialized as `prune` would
/// leave it, without copying it first (the hub renders shared events so).
pub struct Pruned<'a> {
    pub v: &'a Value,
    pub kind: Kind,
    pub opts: &'a Opts,
}

impl Serialize for Pruned<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.v {
            Value::Array(items) => s.collect_seq(items.iter().map(|v| Pruned { v, ..*self })),
            Value::Object(m) => {
                let (kind, o) = (self.kind, self.opts);
                let mut out = s.serialize_map(None)?;
                for (k, child) in m.iter().filter(|(k, _)| !drops(kind, k, o)) {
                    match child_of(kind, k, child, o) {
                        Some(Child::Walk(ck)) => {
                            out.serialize_entry(k, &Pruned { v: child, kind: ck, opts: o })?
                        }
                        Some(Child::NoHtml) => out.serialize_entry(k, &Without { v: child, key: "html" })?,
                        None => out.serialize_entry(k, child)?,
                    }
                }
                out.end()
            }
            other => other.serialize(s),
        }
    }
}

/// An object serialized without one of its members.
struct Without<'a> {
    v: &'a Value,
    key: &'a str,
}

impl Serialize for Without<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.v {
            Value::Object(m) => s.collect_map(m.iter().filter(|(k, _)| *k != self.key)),
            other => other.serialize(s),
        }
    }
}

/// The viewer-dependent flags on a user (authenticated requests only).
#[derive(Clone, Copy, Debug, Default)]
pub struct Relation {
    pub follows_you: bool,
    pub you_follow: bool,
    pub you_muted: bool,
    pub you_blocked: bool,
    pub you_can_follow: bool,
}

/// The size of the default avatar and cover (a plain image, generated).
pub const AVATAR_DEFAULT: (u32, u32) = (200, 200);
pub const COVER_DEFAULT: (u32, u32) = (960, 223);

/// The full pnut user object. `content` is built by the caller (it needs
/// mention lookups); `markdown_text` is for the user's own profile only.
pub fn user(u: &UserRow, content: Value, counts: Value, api_url: &str, rel: Option<Relation>) -> Value {
    let mut content = content;
    let image = |what: &str, own: Option<(u32, u32)>, (dw, dh): (u32, u32)| {
        let (w, h) = own.unwrap_or((dw, dh));
        json!({"url": format!("{api_url}/v1/users/{}/{what}", u.id), "width": w, "height": h, "is_default": own.is_none()})
    };
    content["avatar_image"] = image("avatar", u.avatar, AVATAR_DEFAULT);
    content["cover_image"] = image("cover", u.cover, COVER_DEFAULT);
    let mut v = json!({
        "id": u.id.to_string(),
        "username": u.username,
        "type": u.kind,
        "created_at": iso8601(u.created_at),
        "locale": u.locale,
        "timezone": u.timezone,
        "raw": u.raw,
    });
    v["content"] = content;
    v["counts"] = counts;
    if let Some(name) = &u.name {
        v["name"] = json!(name);
    }
    if let Some(r) = rel {
        set_relation(&mut v, r);
    }
    v
}

/// Sets the viewer-dependent flags on a user object.
pub fn set_relation(v: &mut Value, r: Relation) {
    v["follows_you"] = json!(r.follows_you);
    v["you_follow"] = json!(r.you_follow);
    v["you_muted"] = json!(r.you_muted);
    v["you_blocked"] = json!(r.you_blocked);
    v["you_can_follow"] = json!(r.you_can_follow);
}

/// The client ("source") object.
pub fn app(a: &App) -> Value {
    json!({"id": a.client_id, "name": a.name, "url": a.url})
}

/// pnut's token object; `user` is absent for app tokens.
pub fn token(a: &App, scopes: &[String], user: Option<Value>) -> Value {
    let mut v = json!({
        "app": app(a),
        "scopes": scopes,
        "storage": {"available": 0, "total": 0},
    });
    if let Some(u) = user {
        v["user"] = u;
    }
    v
}

/// The stream object: `{key, object_types, endpoint, type}`.
pub fn stream(s: &StreamRow, endpoint: &str) -> Value {
    json!({
        "key": s.key,
        "object_types": s.object_types.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "endpoint": endpoint,
        "type": "long_poll",
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn prune_follows_kinds() {
        let mut v = json!({
            "meta": {"type": "bookmark"},
            "data": {
                "user": {"id": "1", "raw": {"a": []}, "content": {"text": "x", "html": "<b>"}},
                "post": {"id": "2", "raw": {"b": []}, "bookmarked_by": [], "user": {"raw": {}}}
            }
        });
        let o = Opts { raw_post: true, html: false, ..Opts::default() };
        prune(&mut v, Kind::Other, &o);
        assert!(v["data"]["user"].get("raw").is_none());
        assert!(v["data"]["user"]["content"].get("html").is_none());
        assert!(v["data"]["post"].get("raw").is_some());
        assert!(v["data"]["post"].get("bookmarked_by").is_none());
        assert!(v["data"]["post"]["user"].get("raw").is_none());
    }

    /// Every kind of object and wrapper `prune` knows, each with every
    /// optional part.
    pub(crate) fn everything() -> Value {
        let user = json!({"id": "1", "raw": {"a": []}, "counts": {"posts": 1},
            "content": {"text": "x", "html": "<b>", "raw": 1}, "name": "n"});
        let message = json!({"id": "5", "raw": {}, "content": {"html": "h", "text": "t"}, "user": user});
        json!({
            "meta": {"type": "bookmark", "id": "9", "zeta": 1, "another": [1, {"raw": 2}]},
            "data": {
                "user": user,
                "post": {"id": "2", "raw": {"b": []}, "bookmarked_by": [user], "reposted_by": [user],
                    "counts": {"replies": 0}, "content": {"html": "<p>", "text": "t"}, "user": user,
                    "repost_of": {"id": "3", "raw": [], "user": user, "content": "not an object"}},
                "channel": {"id": "4", "raw": [{"x": 1}], "marker": {"id": "5"}, "recent_message": message,
                    "recent_deleted_message": message, "owner": user, "counts": {"messages": 1},
                    "content": {"html": "c"}},
                "message": message,
                "file": {"id": "6", "raw": {}, "content": {"html": "f"}},
                "poll": {"id": "7", "raw": {}, "options": [{"text": "o"}], "user": user},
                "users": [user, user],
                "data": [{"raw": 1, "user": user}],
                "content": {"html": "top"},
                "raw": {"kept": "in a wrapper"},
                "counts": {"kept": true}
            }
        })
    }

    #[test]
    fn pruned_serializes_what_prune_leaves() {
        let v = everything();
        // Every third option set: each option both on and off, among many
        // combinations of the others.
        for b in (0..1u16 << 12).step_by(3) {
            let o = Opts::from_bits(b);
            assert_eq!(o.bits(), b);
            for kind in [Kind::Other, Kind::Post, Kind::User, Kind::Channel] {
                let mut pruned = v.clone();
                prune(&mut pruned, kind, &o);
                let direct = serde_json::to_string(&Pruned { v: &v, kind, opts: &o }).unwrap();
                assert_eq!(direct, pruned.to_string(), "options {b:#x}, {kind:?}");
            }
        }
    }

    #[test]
    fn option_bits_differ() {
        let a = Opts::default();
        let b = Opts { html: false, ..a };
        assert_ne!(a.bits(), b.bits());
    }
}
