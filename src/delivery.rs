//! Who may receive an event: the one rule the hub applies live and replay
//! and retention apply from the log (grants and scopes, channel ACLs as they
//! are now, the stream's object types and filter). Pure functions, but for
//! `channels_now`, which reads the channels' current ACLs.

use crate::event::{Audience, Event};
use crate::filter::Filter;
use crate::storage::Db;
use std::collections::HashMap;

/// App id → user id → scopes granted.
pub type Grants = HashMap<i64, Vec<String>>;

/// Channel id → who may see its events now, for the messages of one
/// replay page.
pub type ChannelsNow = Vec<(i64, Audience)>;

/// The channel of a message event (`data[0].channel_id`).
pub(crate) fn message_channel(ev: &Event) -> Option<i64> {
    if ev.kind != crate::event::ObjType::Message {
        return None;
    }
    ev.envelope["data"][0]["channel_id"].as_str()?.parse().ok()
}

/// The current audiences of the channels of the message events in `events`.
pub fn channels_now(db: &Db, events: &[Event]) -> Result<ChannelsNow, String> {
    let mut ids: Vec<i64> = events.iter().filter_map(message_channel).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    db.read(|c| Ok(crate::storage::channels::audiences_now(c, &ids)?)).map_err(|e| e.message)
}

/// Is an event with this audience visible to an app with these grants?
pub fn admits(aud: &Audience, app_id: i64, grants: Option<&Grants>) -> bool {
    aud.admits(
        app_id,
        |u| grants.and_then(|m| m.get(&u)).map(|v| v.as_slice()),
        grants.into_iter().flat_map(|m| m.values().map(|v| v.as_slice())),
    )
}

/// The ids of the users who authorized an app, for `$authorized_userids`.
fn authorized_ids(grants: Option<&Grants>) -> Vec<String> {
    let mut ids: Vec<String> = grants.map(|m| m.keys().map(|k| k.to_string()).collect()).unwrap_or_default();
    ids.sort();
    ids
}

/// Does `ev` pass filter `f` for an app with these grants? The list of
/// authorized users is built only for a filter that names it.
pub(crate) fn filter_passes(f: &Filter, ev: &Event, grants: Option<&Grants>) -> bool {
    let ids = if f.uses_authorized() { authorized_ids(grants) } else { Vec::new() };
    f.passes(ev.kind, &ev.envelope, &ids)
}

/// Would a stream (types, app, filter) receive this event? The same rule
/// the hub applies live, for replay and retention.
pub fn wants(ev: &Event, types: u16, app_id: i64, filter: Option<&Filter>, grants: Option<&Grants>) -> bool {
    types & ev.kind.bit() != 0
        && admits(&ev.audience, app_id, grants)
        && filter.is_none_or(|f| filter_passes(f, ev, grants))
}

/// What one connection subscribed to beyond its stream's object types and
/// filter (pnut's list parameters on `/v1/app`), fixed for the life of the
/// connection and applied live and in replay alike. The defaults are
/// pnut's: everything.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    /// `include_deleted=0` drops events with `meta.is_deleted`.
    pub include_deleted: bool,
    /// `channel_types=a,b` keeps channel, message, subscription and
    /// channel-presence events only of those channel types.
    pub channel_types: Option<Vec<String>>,
    /// `file_types=a,b` keeps file events only of those file types.
    pub file_types: Option<Vec<String>>,
    /// `include_incomplete=0` drops events of files without content yet.
    pub include_incomplete: bool,
    /// `include_private=0` drops events of files that are not public.
    pub include_private: bool,
    /// `include_directed_posts=0` drops posts that begin with a mention.
    pub include_directed_posts: bool,
}

impl Default for Subscription {
    fn default() -> Subscription {
        Subscription {
            include_deleted: true,
            channel_types: None,
            file_types: None,
            include_incomplete: true,
            include_private: true,
            include_directed_posts: true,
        }
    }
}

impl Subscription {
    /// Does this connection take `ev` (its types, audience and filter
    /// already passed)?
    pub fn admits(&self, ev: &Event) -> bool {
        if *self == Subscription::default() {
            return true;
        }
        let meta = &ev.envelope["meta"];
        if !self.include_deleted && meta["is_deleted"] == serde_json::Value::Bool(true) {
            return false;
        }
        use crate::event::ObjType as T;
        match ev.kind {
            T::Channel | T::Message | T::ChannelSubscription | T::UserChannelPresence => {
                let Some(types) = &self.channel_types else { return true };
                let data = &ev.envelope["data"];
                let kind = meta["channel_type"]
                    .as_str()
                    .or_else(|| data["type"].as_str().filter(|_| ev.kind == T::Channel))
                    .or_else(|| data["channel"]["type"].as_str());
                kind.is_some_and(|k| types.iter().any(|t| t == k))
            }
            T::File => {
                let f = ev.object();
                let kind_ok = self
                    .file_types
                    .as_ref()
                    .is_none_or(|types| f["type"].as_str().is_some_and(|k| types.iter().any(|t| t == k)));
                kind_ok
                    && (self.include_incomplete || f["is_complete"] != serde_json::Value::Bool(false))
                    && (self.include_private || f["is_public"] == serde_json::Value::Bool(true))
            }
            T::Post => {
                if self.include_directed_posts {
                    return true;
                }
                let p = ev.object();
                let directed = p["content"]["entities"]["mentions"]
                    .as_array()
                    .and_then(|m| m.first())
                    .is_some_and(|m| m["pos"].as_u64() == Some(0));
                !directed
            }
            _ => true,
        }
    }

    /// The subscription as the connection message echoes it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "include_deleted": self.include_deleted,
            "channel_types": self.channel_types,
            "file_types": self.file_types,
            "include_incomplete": self.include_incomplete,
            "include_private": self.include_private,
            "include_directed_posts": self.include_directed_posts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Audience, ObjType};
    use serde_json::json;

    fn ev(kind: ObjType, envelope: serde_json::Value) -> Event {
        Event { seq: 1, kind, audience: Audience::Public, auth: None, envelope, created_at: 0 }
    }

    /// Directed posts begin with a mention; deleted events say so in meta.
    #[test]
    fn subscriptions_drop_directed_posts_and_deleted_events() {
        let post = |text_pos: u64, deleted: bool| {
            let mut meta = json!({"type": "post"});
            if deleted {
                meta["is_deleted"] = json!(true);
            }
            ev(
                ObjType::Post,
                json!({"meta": meta, "data": [{"content": {"entities": {"mentions": [{"pos": text_pos}]}}}]}),
            )
        };
        let all = Subscription::default();
        assert!(all.admits(&post(0, true)));
        let no_directed = Subscription { include_directed_posts: false, ..Subscription::default() };
        assert!(!no_directed.admits(&post(0, false)), "starts with a mention");
        assert!(no_directed.admits(&post(3, false)), "mentions later");
        let no_deleted = Subscription { include_deleted: false, ..Subscription::default() };
        assert!(!no_deleted.admits(&post(3, true)));
        assert!(no_deleted.admits(&post(3, false)));
    }
}
