//! spout: a pnut.io v1 API server built around App Streams. The binary is
//! `src/main.rs`; this library holds everything so tests and examples can
//! reach the few parts they need.

// One `unsafe` block, in `storage::writer::submit`, allowed there alone.
#![deny(unsafe_code)]

pub mod admission;
pub mod api;
pub mod auth;
pub mod config;
pub mod ctx;
pub mod delivery;
pub mod error;
pub mod event;
pub mod filter;
pub mod http;
pub mod hub;
pub mod jobs;
pub mod login;
pub mod model;
#[cfg(test)]
mod proptests;
pub mod ratelimit;
pub mod retention;
pub mod server;
pub mod storage;
pub mod text;
pub mod thread;
pub mod transport;
pub mod util;
pub mod wire;
