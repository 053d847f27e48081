//! What a request handler, and the stream listener after it, is given: the
//! database, the hub, the public URLs and the password guard.

use crate::storage::Db;
use std::sync::Arc;

/// What every handler can reach.
pub struct Ctx {
    pub db: Arc<Db>,
    /// `http://host:port` of the API as clients should see it.
    pub api_url: String,
    /// The `endpoint` reported for streams, e.g. `ws://127.0.0.1:8081/v1/app`.
    pub stream_endpoint: String,
    pub hub: crate::hub::Hub,
    /// Guards password checks (failure budgets, the hashing pool).
    pub login: crate::login::Login,
    pub started: std::time::Instant,
    /// The limits from the flags that clients may want to know
    /// (`GET /v1/sys/config`).
    pub published: Published,
    /// Wakes the poll closer when a poll is created.
    pub polls: crate::jobs::polls::Waker,
    /// The web pages' settings (`web`).
    pub web: crate::web::WebConfig,
    /// `GET /v1/sys/stats` as last counted, and when (counting scans whole
    /// tables, so an anonymous caller gets a copy at most a minute old).
    pub stats: std::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>,
}

/// The flag-set limits `GET /v1/sys/config` publishes.
#[derive(Clone, Debug)]
pub struct Published {
    pub max_body: usize,
    pub rate_limit: u64,
    pub rate_window_secs: u64,
    pub conns_per_app: usize,
    /// Seconds in which the same text from one user is refused (0: never).
    pub duplicate_secs: i64,
}
