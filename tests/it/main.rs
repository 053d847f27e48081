//! The one integration-test binary: every module drives the real `spout`
//! executable through its HTTP and stream listeners.

mod authz;
mod bench_smoke;
mod channels;
mod common;
mod durable;
mod foundation;
mod guard;
mod hostile;
mod listeners;
mod live;
mod ops;
mod posts;
mod streams;
