//! pnut objects built from stored rows for answers and events: the parts
//! that read related rows (a user's counts and mentions, an app, a poll's
//! responses). `crate::model` holds the pure shaping of one row, and
//! pruning by display options.

mod image;
mod poll;

pub use image::{default_image, probe};

pub use poll::{emit_poll, emit_poll_end, poll_json};

use crate::error::{ApiError, ApiResult};
use crate::storage::Connection;
use crate::storage::{apps, users, UserRow};
use serde_json::{json, Value};

/// The full user object without viewer flags (for event data).
pub fn user_json(c: &Connection, api_url: &str, u: &UserRow) -> ApiResult<Value> {
    let content = users::text_content(c, &u.description);
    Ok(crate::model::user(u, content, users::counts(c, u.id)?, api_url, None))
}

pub fn user_json_by_id(c: &Connection, api_url: &str, id: i64) -> ApiResult<Value> {
    let u = users::by_id(c, id)?.ok_or_else(ApiError::internal)?;
    user_json(c, api_url, &u)
}

pub fn source_json(c: &Connection, app_id: i64) -> ApiResult<Value> {
    Ok(match apps::app_by_id(c, app_id)? {
        Some(a) => crate::model::app(&a),
        None => json!({"id": "", "name": "", "url": ""}),
    })
}
