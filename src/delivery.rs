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
