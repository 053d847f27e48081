//! Frames: an event rendered once per option set and transport, and
//! control documents.

use super::*;
use crate::event::Event;
use crate::model::{Kind, Opts, Pruned};
use crate::wire::{self, Transport};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use std::sync::Arc;

/// Renders one event for one option set and transport; `meta.position` is
/// the event's place in the log (what a client passes back as `position`).
/// Serialized straight from the shared event: no copy of it is made.
pub fn render(ev: &Event, opts: &Opts, t: Transport) -> Bytes {
    let payload = serde_json::to_vec(&Rendered { ev, opts }).unwrap_or_default();
    Arc::new(wire::frame(t, &payload))
}

/// An event's envelope with its `data` pruned for `opts` and
/// `meta.position` set.
struct Rendered<'a> {
    ev: &'a Event,
    opts: &'a Opts,
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Value::Object(env) = &self.ev.envelope else { return self.ev.envelope.serialize(s) };
        let mut out = s.serialize_map(None)?;
        for (k, v) in env {
            match (k.as_str(), v) {
                ("data", _) => out.serialize_entry(
                    k,
                    &Pruned { v, kind: Kind::of_type(self.ev.kind.as_str()), opts: self.opts },
                )?,
                ("meta", Value::Object(meta)) => {
                    out.serialize_entry(k, &WithPosition { meta, seq: self.ev.seq })?
                }
                _ => out.serialize_entry(k, v)?,
            }
        }
        out.end()
    }
}

/// `meta` with `position` (the log seq, as a string) in its sorted place,
/// as a `Map` (a BTreeMap) would hold it.
struct WithPosition<'a> {
    meta: &'a serde_json::Map<String, Value>,
    seq: i64,
}

impl Serialize for WithPosition<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(None)?;
        let mut placed = false;
        for (k, v) in self.meta.iter().filter(|(k, _)| *k != "position") {
            if !placed && k.as_str() > "position" {
                out.serialize_entry("position", &self.seq.to_string())?;
                placed = true;
            }
            out.serialize_entry(k, v)?;
        }
        if !placed {
            out.serialize_entry("position", &self.seq.to_string())?;
        }
        out.end()
    }
}

/// A control document framed for a transport.
pub fn control_frame(t: Transport, doc: &serde_json::Value) -> Bytes {
    Arc::new(wire::frame(t, &serde_json::to_vec(doc).unwrap_or_default()))
}
