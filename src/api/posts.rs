//! Posts, reposts, revisions, bookmarks, the social graph (follow, mute,
//! block) and presence, each emitting its stream event.

use super::Route;

/// Routes of this module (tried after the core table).
pub const ROUTES: &[Route] = &[];
