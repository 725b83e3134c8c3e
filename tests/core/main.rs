//! The host-free core's integration tests, natively and without Envoy, in one test binary:
//! - [`properties`]: mutated tokens, key sets and configurations never panic, and a mutated
//!   token never passes;
//! - [`wycheproof`]: the Wycheproof vectors through the crate's verification layer.
//!
//! `cargo test --test core SUITE::` runs one suite.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "../support/mod.rs"]
mod support;
#[path = "../support/wycheproof_vectors.rs"]
mod wycheproof_vectors;

mod properties;
mod wycheproof;
