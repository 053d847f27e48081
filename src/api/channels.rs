//! Channels with ACLs, subscriptions, messages, markers, files and polls,
//! each emitting its stream event.

use super::Route;

/// Routes of this module (tried after the posts table).
pub const ROUTES: &[Route] = &[];
