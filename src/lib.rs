//! spout: a pnut.io v1 API server built around App Streams. The binary is
//! `src/main.rs`; this library holds everything so tests and examples can
//! reach the few parts they need.

// One `unsafe` block, in `storage::writer::submit`, allowed there alone.
#![deny(unsafe_code)]

mod admission;
pub mod api;
pub mod auth;
pub mod config;
mod ctx;
mod delivery;
pub mod error;
mod event;
mod filter;
pub mod grants;
mod http;
mod hub;
mod jobs;
mod login;
mod model;
#[cfg(test)]
mod proptests;
mod ratelimit;
mod render;
mod retention;
pub mod server;
pub mod storage;
mod text;
mod thread;
mod transport;
pub mod util;
pub mod web;
mod wire;
