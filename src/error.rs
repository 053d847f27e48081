//! `ApiError` and the one function that turns it into pnut's error envelope
//! `{"meta":{"code":N,"error_message":"…"}}` with the same HTTP status.

use serde_json::json;

/// An error answered to a client. The message is shown to the client, so it
/// never carries internal details (those go to the log where they happen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// Seconds after which trying again may succeed (429, 503): sent as
    /// `Retry-After` and `meta.retry_in`, as pnut does for its rate limit.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(400, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> ApiError {
        ApiError::new(401, m)
    }
    pub fn forbidden(m: impl Into<String>) -> ApiError {
        ApiError::new(403, m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(404, m)
    }
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }
    pub fn internal() -> ApiError {
        ApiError::new(500, "Internal Server Error")
    }

    /// The pnut error envelope (no `data` key).
    pub fn envelope(&self) -> serde_json::Value {
        let mut v = json!({"meta": {"code": self.status, "error_message": self.message}});
        if let Some(s) = self.retry_after {
            v["meta"]["retry_in"] = json!(s);
        }
        v
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> ApiError {
        // A query interrupted by its budget (`storage::page::budgeted`):
        // the client asked for too much at once, nothing went wrong.
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) {
            return ApiError::bad_request(
                "This query would take too long: narrow it with more words, a filter that uses ids, or a shorter window",
            );
        }
        log::error!("database error: {e}");
        ApiError::internal()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_code_and_message_and_no_data() {
        let e = ApiError::forbidden("needs scope stream");
        assert_eq!(e.envelope(), json!({"meta":{"code":403,"error_message":"needs scope stream"}}));
    }
}
