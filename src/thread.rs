//! Every thread spout starts goes through `spawn`, and this is the list of
//! them (name: who starts it, what it does):
//!
//! - `db-writer` (`storage::Db::open`): owns the writer connection; runs
//!   every write with group commit and publishes committed events.
//! - `hub` (`hub::Hub::start`): fans each event out to the live
//!   connections that may receive it; `cursor-saver` beside it stores the
//!   streams' cursors.
//! - `log-tail` (`jobs::log_tail`): publishes events and signals other
//!   processes wrote (`spout admin`), and keeps the WAL small (checkpoints,
//!   restarts).
//! - `retention` (`jobs::retention`): drops old events and log rows.
//! - `poll-closer` (`jobs::polls`): closes polls when they come due.
//! - `http-accept` (vendored tiny_http) and one `http-conn` per API
//!   connection, each handling that connection's requests in turn.
//! - `stream-accept` (`transport::start_listener`), one `conn` per stream
//!   connection (128 KiB stack), and `stream-reactor`, which watches every
//!   stream socket for input and room to write.
//!
//! Password hashes run on the request's own thread, at most one per core
//! (at most 4) at once (`login`).
//! How many connection threads there may be is worked out at start
//! (`admission`).

use std::thread::JoinHandle;

/// Starts a named thread, with a `stack` size if given.
pub fn spawn<F: FnOnce() + Send + 'static>(
    name: String,
    stack: Option<usize>,
    f: F,
) -> std::io::Result<JoinHandle<()>> {
    let mut b = std::thread::Builder::new().name(name);
    if let Some(s) = stack {
        b = b.stack_size(s);
    }
    b.spawn(f)
}
