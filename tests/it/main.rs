//! The one integration-test binary: every module drives the real `spout`
//! executable through its HTTP and stream listeners.

mod common;
mod foundation;
mod live;
mod streams;
