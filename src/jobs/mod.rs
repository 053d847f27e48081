//! The server's background jobs, each a thread started by `start` that
//! returns its handle and ends when `stopping` is set (and its thread is
//! unparked): the log tail and WAL upkeep, retention, the poll closer.
//! `crate::thread` lists every thread.

pub mod log_tail;
pub mod polls;
pub mod retention;
