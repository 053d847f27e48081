//! Bearer tokens (header or `access_token` query), app vs user tokens, and
//! scopes → the calling `Principal`, with pnut's 401/403 answers.

use crate::error::{ApiError, ApiResult};
use crate::http::Req;
use crate::storage::{Db, Principal};

/// Scopes in pnut's canonical order, each with what it lets an app do in
/// the words the consent page shows.
pub const SCOPES: &[(&str, &str)] = &[
    ("basic", "See your profile and what you can see on the network"),
    ("email", "See your email address"),
    ("files", "Upload, read and delete your files"),
    ("follow", "Follow, unfollow, mute and block accounts for you"),
    ("messages", "Read and send your private and channel messages"),
    ("public_messages", "Read and send messages in public channels"),
    ("polls", "Create and answer polls"),
    ("presence", "Show when you are online"),
    ("stream", "Read your timelines, mentions and interactions"),
    ("update_profile", "Change your profile, avatar and cover"),
    ("write_post", "Post, reply, repost and bookmark as you"),
];

/// What scope `s` (`name` or `name:type`) lets an app do, in words.
pub fn scope_words(s: &str) -> String {
    let (base, only) = s.split_once(':').map_or((s, None), |(b, t)| (b, Some(t)));
    let words = SCOPES.iter().find(|(n, _)| *n == base).map_or("Use this permission", |(_, w)| *w);
    match only {
        Some(t) => format!("{words} (only of type {t})"),
        None => words.to_string(),
    }
}

/// The token from `Authorization: Bearer …` or `?access_token=`.
pub fn bearer(req: &Req) -> Option<String> {
    if let Some(h) = req.header("authorization") {
        let h = h.trim();
        if h.len() > 7 && h[..7].eq_ignore_ascii_case("bearer ") {
            return Some(h[7..].trim().to_string());
        }
    }
    req.param("access_token").filter(|t| !t.is_empty()).map(str::to_string)
}

/// The caller, if a token was given; a bad token is a 401.
pub fn optional(db: &Db, req: &Req) -> ApiResult<Option<Principal>> {
    let Some(token) = bearer(req) else { return Ok(None) };
    let p = db.principal(&token)?;
    p.map(Some).ok_or_else(|| ApiError::unauthorized("Invalid or revoked access token"))
}

/// Any valid token.
pub fn any(db: &Db, req: &Req) -> ApiResult<Principal> {
    optional(db, req)?.ok_or_else(|| ApiError::unauthorized("Authentication required: no access token given"))
}

/// A user token holding `scope` (None: any user token).
pub fn user(db: &Db, req: &Req, scope: Option<&str>) -> ApiResult<(Principal, i64)> {
    let p = any(db, req)?;
    let Some(uid) = p.user_id else {
        return Err(ApiError::forbidden("This endpoint requires a user token; an app token was given"));
    };
    if let Some(s) = scope {
        if !has_scope(&p.scopes, s) {
            return Err(ApiError::forbidden(format!("This endpoint requires the '{s}' scope")));
        }
    }
    Ok((p, uid))
}

/// An app token.
pub fn app(db: &Db, req: &Req) -> ApiResult<Principal> {
    let p = any(db, req)?;
    if p.user_id.is_some() {
        return Err(ApiError::forbidden("This endpoint requires an app token; a user token was given"));
    }
    Ok(p)
}

/// Does a grant of `have` cover `want`? `basic` is always granted;
/// `messages` covers `public_messages`; `x:type` counts as `x`.
pub fn has_scope(have: &[String], want: &str) -> bool {
    if want == "basic" {
        return true;
    }
    // A typed want (`polls:T`): the plain scope or exactly that extension.
    if let Some((base, _)) = want.split_once(':') {
        return have.iter().any(|h| h == base || h == want);
    }
    have.iter().any(|h| {
        let base = h.split(':').next().unwrap_or(h);
        base == want || (want == "public_messages" && base == "messages")
    })
}

/// The channel type of private messages: the one type `public_messages`
/// never covers.
pub const PM_CHANNEL: &str = "io.pnut.core.pm";

/// The one rule for which scope covers which channel, shared by REST and
/// the streams (pnut: `messages` ⊃ `public_messages`, extended
/// `scope:type`): `messages` covers every channel, `public_messages` every
/// channel but PMs, and `messages:T` / `public_messages:T` only channels
/// of type T (`public_messages:io.pnut.core.pm` covers nothing).
pub fn covers_channel(scopes: &[String], channel_type: &str) -> bool {
    scopes.iter().any(|s| {
        let (base, only) = match s.split_once(':') {
            Some((b, t)) => (b, Some(t)),
            None => (s.as_str(), None),
        };
        let base_covers = match base {
            "messages" => true,
            "public_messages" => channel_type != PM_CHANNEL,
            _ => false,
        };
        base_covers && only.is_none_or(|t| t == channel_type)
    })
}

/// The one rule for which scope covers which file on REST (pnut: extended
/// `files:TYPE` for one file type, `files:core_audio` / `files:core_image`
/// by kind): `files` covers every file, `files:T` files of type T,
/// `files:core_K` files of kind K; `write_post` and `messages` cover files
/// too (to attach them).
pub fn covers_file(scopes: &[String], file_type: &str, file_kind: &str) -> bool {
    scopes.iter().any(|s| match s.split_once(':') {
        None => matches!(s.as_str(), "files" | "write_post" | "messages"),
        Some(("files", sub)) => match sub.strip_prefix("core_") {
            Some(kind) => kind == file_kind,
            None => sub == file_type,
        },
        Some(("messages", _)) => true,
        _ => false,
    })
}

/// Which file events an app stream gets through a grant: `files` all of
/// them, `files:T` those of type T; the kind-based `files:core_*` give
/// none (pnut's scope document).
pub fn covers_file_events(scopes: &[String], file_type: &str) -> bool {
    scopes.iter().any(|s| match s.split_once(':') {
        None => s == "files",
        Some(("files", sub)) => !sub.starts_with("core_") && sub == file_type,
        _ => false,
    })
}

/// Does the grant reach any channel at all (`messages` or
/// `public_messages`, plain or extended)?
pub fn reads_channels(scopes: &[String]) -> bool {
    has_scope(scopes, "public_messages")
}

/// Parses a comma- or space-separated scope list: known names (optionally
/// `name:type`), duplicates collapsed, `basic` added, canonical order.
pub fn parse_scopes(input: &str) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = vec!["basic".into()];
    for s in input.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        let base = s.split(':').next().unwrap_or(s);
        if !SCOPES.iter().any(|(n, _)| *n == base)
            || (s.contains(':') && !matches!(base, "messages" | "public_messages" | "files" | "polls"))
        {
            return Err(ApiError::bad_request(format!("scope: unknown scope '{s}'")));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    let rank = |s: &String| SCOPES.iter().position(|(k, _)| Some(*k) == s.split(':').next()).unwrap_or(99);
    out.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// Extended scopes reach their own type only; plain scopes reach all.
    #[test]
    fn extended_scopes_reach_their_type() {
        assert!(has_scope(&v(&["polls"]), "polls:com.example.a"));
        assert!(has_scope(&v(&["polls:com.example.a"]), "polls:com.example.a"));
        assert!(!has_scope(&v(&["polls:com.example.a"]), "polls:com.example.b"));
        assert!(has_scope(&v(&["polls:com.example.a"]), "polls"), "the gate: some polls");
        assert!(covers_file(&v(&["files:t"]), "t", "other"));
        assert!(!covers_file(&v(&["files:t"]), "u", "other"));
        assert!(covers_file(&v(&["files:core_image"]), "u", "image"));
        assert!(!covers_file(&v(&["files:core_image"]), "u", "audio"));
        assert!(covers_file_events(&v(&["files:t"]), "t"));
        assert!(!covers_file_events(&v(&["files:core_image"]), "t"));
        assert!(!covers_file_events(&v(&["write_post"]), "t"));
    }

    #[test]
    fn scopes_parse_and_cover() {
        assert_eq!(
            parse_scopes("stream, basic write_post,stream").unwrap(),
            vec!["basic", "stream", "write_post"]
        );
        assert_eq!(parse_scopes("").unwrap(), vec!["basic"]);
        let e = parse_scopes("stream,nope").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("nope"));
        let have: Vec<String> = vec!["basic".into(), "messages:io.pnut.core.pm".into()];
        assert!(has_scope(&have, "messages"));
        assert!(has_scope(&have, "public_messages"));
        assert!(!has_scope(&have, "stream"));
        assert!(has_scope(&[], "basic"));
    }

    #[test]
    fn the_channel_scope_rule() {
        let g = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<String>>();
        let room = "com.example.room";
        assert!(covers_channel(&g(&["messages"]), PM_CHANNEL));
        assert!(covers_channel(&g(&["messages"]), room));
        assert!(!covers_channel(&g(&["public_messages"]), PM_CHANNEL));
        assert!(covers_channel(&g(&["public_messages"]), room));
        assert!(covers_channel(&g(&["messages:io.pnut.core.pm"]), PM_CHANNEL));
        assert!(!covers_channel(&g(&["messages:io.pnut.core.pm"]), room));
        assert!(covers_channel(&g(&["public_messages:com.example.room"]), room));
        assert!(!covers_channel(&g(&["public_messages:com.example.room"]), "io.pnut.core.chat"));
        assert!(!covers_channel(&g(&["public_messages:io.pnut.core.pm"]), PM_CHANNEL));
        assert!(!covers_channel(&g(&["basic", "stream", "files"]), room));
        assert!(reads_channels(&g(&["public_messages:x.y"])) && !reads_channels(&g(&["stream"])));
    }

    #[test]
    fn bearer_from_header_or_query() {
        let r = Req::new("GET", "/v1/token", vec![("Authorization".into(), "Bearer abc".into())], vec![]);
        assert_eq!(bearer(&r).as_deref(), Some("abc"));
        let r = Req::new("GET", "/v1/token?access_token=xyz", vec![], vec![]);
        assert_eq!(bearer(&r).as_deref(), Some("xyz"));
        let r = Req::new("GET", "/v1/token", vec![("Authorization".into(), "Basic abc".into())], vec![]);
        assert_eq!(bearer(&r), None);
    }
}
