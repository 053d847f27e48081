//! The one integration-test binary: every module drives the real `spout`
//! executable through its HTTP and stream listeners. One module per
//! feature; `common` starts servers and talks to them, `world` is the
//! setting most stream tests share.

mod auth;
mod authz;
mod bench_smoke;
mod channels;
mod common;
mod delivery;
mod explore;
mod extras;
mod filters;
mod interactions;
mod listeners;
mod oauth_web;
mod ops;
mod posts;
mod rate_limits;
mod replay;
mod retention;
mod robustness;
mod search;
mod streams;
mod world;
