//! The limits spout enforces on what clients write, in one place: the
//! handlers check against these, and `GET /v1/sys/config` publishes them,
//! so the two cannot disagree.

/// A post's text, in code points.
pub const POST_TEXT: usize = 256;
/// A message's text, in code points.
pub const MESSAGE_TEXT: usize = 2048;
/// How long after creation a post may be revised, in seconds.
pub const REVISION_SECONDS: i64 = 300;
/// A `raw` value, serialized.
pub const RAW_BYTES: usize = 8192;
/// A poll's prompt, in code points; its options; its duration in minutes.
pub const POLL_PROMPT: usize = 256;
pub const POLL_MAX_MINUTES: i64 = 20160;
/// A presence text.
pub const PRESENCE_TEXT: usize = 100;
/// A bookmark's note.
pub const BOOKMARK_NOTE: usize = 128;
