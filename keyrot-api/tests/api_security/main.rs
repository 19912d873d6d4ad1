//! The API's security suite: every way in that a caller controls, driven through
//! `Api::handle` against the in-memory secret store.
//!
//! Each refusal is checked for its status, its public error code and its precise audit reason,
//! next to a baseline that shows the same request succeeds once the one thing under test is
//! put right, so a test fails if the check it names stops working.

// A test: a panic is how it reports a failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod world;

mod accounts;
mod admin;
mod arbitrary;
mod assorted;
mod cache;
mod headers;
mod input;
mod rate_limits;
mod routes;
mod scopes;
mod source_address;
mod tokens;
