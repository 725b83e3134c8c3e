//! Every test that runs the built module (`.wasm`) in a real Envoy, in one test binary so the
//! harness below compiles once.
//!
//! The harness: [`envoy`] (bootstrap, process, stats), [`http`] (a loopback HTTP/1.1 client),
//! [`stand`] (an Envoy with the filter before an echo [`upstream`]), [`idp`] (the test OpenID
//! Provider, `tests/idp/`) and [`support`] (fixture keys and token signing, shared with the
//! core's tests). The suites:
//! - [`filter`]: the filter's behaviour request by request: status, challenge, body, what the
//!   upstream received, counters, the access log;
//! - [`identity_providers`]: the published token and key shapes of the common providers;
//! - [`remote_keys`]: keys and address lists fetched from a real OpenID Provider over HTTPS;
//! - [`idp_harness`]: the test provider itself does what the other suites rely on;
//! - [`oci`]: the module as an OCI image, pulled by Envoy from a real registry;
//! - [`attacks`]: the attack catalog (SECURITY.md);
//! - [`wycheproof_envoy`]: the Wycheproof vectors through both signature backends in Envoy;
//! - [`differential`]: the same corpus through Envoy's native `jwt_authn` and the filter
//!   (`#[ignore]`d: `make differential`).
//!
//! Needs `ENVOY_BIN` (default `.venv/bin/envoy`) and `WASM_JWT_AUTHN_WASM` (default the release
//! artifact); `make test` provides both. Without them the tests fail, they never skip.
//! `cargo test --test e2e SUITE::` runs one suite.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod envoy;
mod http;
mod idp;
mod stand;
#[path = "../support/mod.rs"]
mod support;
mod upstream;
// The vector files' fields are all deserialized; this binary reads only those Envoy can test.
#[allow(dead_code)]
#[path = "../support/wycheproof_vectors.rs"]
mod wycheproof_vectors;

mod attacks;
mod differential;
mod filter;
mod identity_providers;
mod idp_harness;
mod oci;
mod remote_keys;
mod wycheproof_envoy;
