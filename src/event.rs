//! Stream events as data: object types, audiences, and the outbox items a
//! write transaction hands to the hub after commit. No I/O here.

use crate::filter::Filter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// The object types an App Stream can ask for (pnut v1 names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjType {
    Post,
    Bookmark,
    Follow,
    Mute,
    Block,
    Message,
    Channel,
    ChannelSubscription,
    Token,
    File,
    Poll,
    UserPresence,
    UserChannelPresence,
    User,
    StreamMarker,
}

impl ObjType {
    pub const ALL: [ObjType; 15] = [
        ObjType::Post,
        ObjType::Bookmark,
        ObjType::Follow,
        ObjType::Mute,
        ObjType::Block,
        ObjType::Message,
        ObjType::Channel,
        ObjType::ChannelSubscription,
        ObjType::Token,
        ObjType::File,
        ObjType::Poll,
        ObjType::UserPresence,
        ObjType::UserChannelPresence,
        ObjType::User,
        ObjType::StreamMarker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObjType::Post => "post",
            ObjType::Bookmark => "bookmark",
            ObjType::Follow => "follow",
            ObjType::Mute => "mute",
            ObjType::Block => "block",
            ObjType::Message => "message",
            ObjType::Channel => "channel",
            ObjType::ChannelSubscription => "channel_subscription",
            ObjType::Token => "token",
            ObjType::File => "file",
            ObjType::Poll => "poll",
            ObjType::UserPresence => "user_presence",
            ObjType::UserChannelPresence => "user_channel_presence",
            ObjType::User => "user",
            ObjType::StreamMarker => "stream_marker",
        }
    }

    pub fn parse(s: &str) -> Option<ObjType> {
        ObjType::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// A type as a client names it: pnut's names, and App.net's for the
    /// same things (`user_follow` is `follow`, `star` is `bookmark`), so
    /// App.net-era clients (phpnut's default `createStream`) work as
    /// they are. Objects always show pnut's names.
    pub fn from_client(s: &str) -> Option<ObjType> {
        match s {
            "user_follow" => Some(ObjType::Follow),
            "star" => Some(ObjType::Bookmark),
            _ => ObjType::parse(s),
        }
    }

    /// One bit per type, for a stream's type set.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of object types as bits, in the canonical (pnut doc) order.
pub fn types_to_bits(types: &[ObjType]) -> u16 {
    types.iter().fold(0, |acc, t| acc | t.bit())
}

/// Who may see an event, decided once when the event is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Audience {
    /// Every app.
    Public,
    /// Only this app (by internal app id).
    App { app_id: i64 },
    /// Apps that one of `users` authorized. With `scopes` non-empty, that
    /// authorization must hold at least one of them.
    Users { users: Vec<i64>, scopes: Vec<String> },
    /// Apps that any user authorized with one of `scopes` (for example
    /// channels every user may read).
    AnyUser { scopes: Vec<String> },
    /// Events about a channel of `channel_type`: apps that one of `users`
    /// (`None`: any user) authorized with a scope that covers that type
    /// (`auth::covers_channel`, the rule REST applies too).
    Channel { channel_type: String, users: Option<Vec<i64>> },
    /// Events about a file of `file_type`: apps its owner authorized with a
    /// scope that covers that type for streams (`auth::covers_file_events`).
    File { user: i64, file_type: String },
}

/// An authorization change carried by a `token` event, so the hub's map of
/// who authorized which app follows the log (also for writes made by
/// `spout admin` in another process).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthChange {
    pub app_id: i64,
    pub user_id: i64,
    /// `None`: the authorization ended.
    pub scopes: Option<Vec<String>>,
}

/// An event a write wants to emit; storage gives it its sequence number.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub kind: ObjType,
    pub audience: Audience,
    pub auth: Option<AuthChange>,
    /// The full `{meta, data}` envelope with every optional part included
    /// (raw, html, ...); rendering for a connection prunes it.
    pub envelope: Value,
}

/// A committed event.
#[derive(Clone, Debug)]
pub struct Event {
    pub seq: i64,
    pub kind: ObjType,
    pub audience: Audience,
    pub auth: Option<AuthChange>,
    pub envelope: Value,
    pub created_at: i64,
}

impl Event {
    /// A copy of the object the event carries: its `data`, or the first
    /// item when `data` is a list (posts and messages come as `[object]`).
    /// What a write answers its caller with, off the writer thread.
    pub fn object(&self) -> Value {
        match &self.envelope["data"] {
            Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
            data => data.clone(),
        }
    }
}

/// Changes to live connections that are not stream events but must reach
/// the hub in commit order with them.
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    /// New object types and filter; live connections follow at once.
    StreamUpdated {
        stream_id: i64,
        /// The stream's key (a `PUT` may rename it).
        key: String,
        types: u16,
        filter_id: Option<i64>,
        filter: Option<Arc<Filter>>,
    },
    StreamDeleted {
        stream_id: i64,
    },
    TokenRevoked {
        token_id: i64,
    },
    /// A filter was changed (`Some`) or deleted and detached (`None`).
    FilterChanged {
        filter_id: i64,
        filter: Option<Arc<Filter>>,
    },
}

impl Signal {
    /// The signal as its log row stores it (`storage::events::insert_signal`):
    /// ids only; a filter is read back by its id.
    pub fn to_row(&self) -> Value {
        match self {
            Signal::StreamUpdated { stream_id, key, types, filter_id, .. } => serde_json::json!({
                "signal": "stream_updated", "stream_id": stream_id, "key": key, "types": types,
                "filter_id": filter_id,
            }),
            Signal::StreamDeleted { stream_id } => {
                serde_json::json!({"signal": "stream_deleted", "stream_id": stream_id})
            }
            Signal::TokenRevoked { token_id } => {
                serde_json::json!({"signal": "token_revoked", "token_id": token_id})
            }
            Signal::FilterChanged { filter_id, filter } => serde_json::json!({
                "signal": "filter_changed", "filter_id": filter_id, "deleted": filter.is_none(),
            }),
        }
    }

    /// The signal a log row stores, with its filter read by `filter` (by
    /// id); `None` for a row that does not parse.
    pub fn from_row(v: &Value, filter: impl Fn(i64) -> Option<Arc<Filter>>) -> Option<Signal> {
        let id = |k: &str| v[k].as_i64();
        Some(match v["signal"].as_str()? {
            "stream_updated" => {
                let filter_id = id("filter_id");
                Signal::StreamUpdated {
                    stream_id: id("stream_id")?,
                    key: v["key"].as_str().unwrap_or_default().to_string(),
                    types: u16::try_from(v["types"].as_u64()?).ok()?,
                    filter_id,
                    filter: filter_id.and_then(&filter),
                }
            }
            "stream_deleted" => Signal::StreamDeleted { stream_id: id("stream_id")? },
            "token_revoked" => Signal::TokenRevoked { token_id: id("token_id")? },
            "filter_changed" => {
                let filter_id = id("filter_id")?;
                let deleted = v["deleted"].as_bool()?;
                Signal::FilterChanged { filter_id, filter: if deleted { None } else { filter(filter_id) } }
            }
            _ => return None,
        })
    }
}

/// What a committed write hands to the hub, in order. A signal carries the
/// seq of its row in the log (it is never sent to a client).
#[derive(Clone, Debug)]
pub enum Outbox {
    Event(Arc<Event>),
    Signal(i64, Signal),
}

impl Outbox {
    /// The item's place in the log.
    pub fn seq(&self) -> i64 {
        match self {
            Outbox::Event(e) => e.seq,
            Outbox::Signal(seq, _) => *seq,
        }
    }
}

impl Audience {
    /// Can an app whose authorizations are `grants` (user id → scopes) see an
    /// event with this audience? `app_id` is the app's internal id.
    pub fn admits<'a, F, I>(&self, app_id: i64, scopes_of: F, all_grants: I) -> bool
    where
        F: Fn(i64) -> Option<&'a [String]>,
        I: IntoIterator<Item = &'a [String]>,
    {
        // Any one of the wanted scopes, by the one rule REST uses.
        let covers = |have: &[String], want: &[String]| {
            want.is_empty() || want.iter().any(|w| crate::auth::has_scope(have, w))
        };
        match self {
            Audience::Public => true,
            Audience::App { app_id: a } => *a == app_id,
            Audience::Users { users, scopes } => {
                users.iter().any(|u| scopes_of(*u).is_some_and(|have| covers(have, scopes)))
            }
            Audience::AnyUser { scopes } => all_grants.into_iter().any(|have| covers(have, scopes)),
            Audience::Channel { channel_type, users: Some(users) } => users
                .iter()
                .any(|u| scopes_of(*u).is_some_and(|have| crate::auth::covers_channel(have, channel_type))),
            Audience::Channel { channel_type, users: None } => {
                all_grants.into_iter().any(|have| crate::auth::covers_channel(have, channel_type))
            }
            Audience::File { user, file_type } => {
                scopes_of(*user).is_some_and(|have| crate::auth::covers_file_events(have, file_type))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Every signal survives its log row; a filter comes back by its id.
    #[test]
    fn signals_round_trip_through_their_log_rows() {
        let f = Arc::new(Filter::parse(Some(&serde_json::json!("include_any")), Some(&serde_json::json!([{"object_type": "post", "operator": "equals", "field": "/data/id", "value": "1"}]))).unwrap());
        let load = |id: i64| (id == 7).then(|| f.clone());
        for s in [
            Signal::StreamUpdated {
                stream_id: 1,
                key: "k".into(),
                types: 5,
                filter_id: Some(7),
                filter: Some(f.clone()),
            },
            Signal::StreamUpdated { stream_id: 1, key: "k".into(), types: 5, filter_id: None, filter: None },
            Signal::StreamDeleted { stream_id: 2 },
            Signal::TokenRevoked { token_id: 3 },
            Signal::FilterChanged { filter_id: 7, filter: Some(f.clone()) },
            Signal::FilterChanged { filter_id: 7, filter: None },
        ] {
            assert_eq!(Signal::from_row(&s.to_row(), load), Some(s.clone()));
        }
        assert_eq!(Signal::from_row(&serde_json::json!({"signal": "nope"}), load), None);
    }

    fn grants() -> HashMap<i64, Vec<String>> {
        let mut m = HashMap::new();
        m.insert(1, vec!["basic".to_string()]);
        m.insert(2, vec!["basic".to_string(), "messages".to_string()]);
        m
    }

    fn admits(a: &Audience, app: i64, g: &HashMap<i64, Vec<String>>) -> bool {
        a.admits(app, |u| g.get(&u).map(|v| v.as_slice()), g.values().map(|v| v.as_slice()))
    }

    #[test]
    fn audiences() {
        let g = grants();
        let none = HashMap::new();
        assert!(admits(&Audience::Public, 7, &none));
        assert!(admits(&Audience::App { app_id: 7 }, 7, &none));
        assert!(!admits(&Audience::App { app_id: 8 }, 7, &g));
        let u1 = Audience::Users { users: vec![1], scopes: vec![] };
        assert!(admits(&u1, 7, &g));
        assert!(!admits(&u1, 7, &none));
        let u1m = Audience::Users { users: vec![1], scopes: vec!["messages".into()] };
        assert!(!admits(&u1m, 7, &g));
        let u2m = Audience::Users { users: vec![3, 2], scopes: vec!["messages".into()] };
        assert!(admits(&u2m, 7, &g));
        let mut ext = g.clone();
        ext.insert(3, vec!["messages:io.pnut.core.pm".to_string()]);
        let u3 = Audience::Users { users: vec![3], scopes: vec!["messages".into()] };
        assert!(admits(&u3, 7, &ext), "an extended scope counts as its base");
        let public = Audience::Users { users: vec![2], scopes: vec!["public_messages".into()] };
        assert!(admits(&public, 7, &g), "messages covers public_messages");
        let any = Audience::AnyUser { scopes: vec!["messages".into()] };
        assert!(admits(&any, 7, &g));
        assert!(!admits(&any, 7, &none));
    }

    #[test]
    fn channel_audiences_follow_the_scope_rule() {
        let mut g = HashMap::new();
        g.insert(1, vec!["public_messages".to_string()]);
        g.insert(2, vec!["messages".to_string()]);
        let pm = |users| Audience::Channel { channel_type: "io.pnut.core.pm".into(), users };
        let room = |users| Audience::Channel { channel_type: "com.example.room".into(), users };
        assert!(!admits(&pm(Some(vec![1])), 7, &g), "public_messages does not cover PMs");
        assert!(admits(&pm(Some(vec![1, 2])), 7, &g));
        assert!(admits(&room(Some(vec![1])), 7, &g));
        assert!(!admits(&room(Some(vec![3])), 7, &g));
        assert!(admits(&room(None), 7, &g));
        g.remove(&2);
        assert!(!admits(&pm(None), 7, &g));
        let stored = serde_json::to_string(&room(None)).unwrap();
        assert_eq!(serde_json::from_str::<Audience>(&stored).unwrap(), room(None));
    }

    #[test]
    fn type_names_round_trip() {
        for t in ObjType::ALL {
            assert_eq!(ObjType::parse(t.as_str()), Some(t));
        }
        assert_eq!(ObjType::parse("star"), None);
        assert_eq!(types_to_bits(&ObjType::ALL).count_ones(), 15);
    }
}
