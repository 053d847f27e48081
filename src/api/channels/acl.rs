//! ACLs: applying an update to a channel's ACL, and the checks on channel types and chat settings.

use super::*;
use crate::error::{ApiError, ApiResult};
use crate::storage::channels::{self as store, Acl, Group};
use crate::storage::Connection;
use serde_json::Value;

pub(super) const GROUPS: [&str; 3] = ["full", "write", "read"];

pub(super) fn group_mut<'a>(acl: &'a mut Acl, name: &str) -> &'a mut Group {
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

pub(super) fn check_type(t: &str) -> ApiResult<()> {
    if t.is_empty()
        || t.len() > 128
        || !t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(ApiError::bad_request("type: required; letters, digits, '_', '.', '-', at most 128"));
    }
    Ok(())
}

/// `io.pnut.core.chat` rooms need `io.pnut.core.chat-settings` with a name.
pub(super) fn check_chat_raw(kind: &str, raw: &Value) -> ApiResult<()> {
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
