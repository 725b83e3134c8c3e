//! # wasm-jwt-authn
//!
//! A proxy-wasm HTTP filter that authenticates every request by its JWT access token.
//!
//! ## The request flow
//!
//! 1. **Configure** ([`config`]): the plugin configuration (JSON) becomes a [`config::Config`]
//!    that cannot be invalid: providers with their parsed key sets ([`jwks`]), rules, limits.
//!    A bad configuration is refused whole, with the field at fault named.
//! 2. **Match a rule** ([`decision`]): deny rules first, then the first allow rule whose path,
//!    method and host match decides whether the route is anonymous or which providers it
//!    accepts, and what it requires of the request's context ([`request_context`]: client
//!    address, inline or fetched address lists, time) and of the token ([`policy`]). No match
//!    means a valid token from any provider is required: deny by default.
//! 3. **Find the token** ([`token::extract`]) in the sources the accepted providers use
//!    (`Authorization: Bearer`, a query parameter, a cookie); two tokens are refused.
//! 4. **Parse strictly** ([`token::parse`]) into an [`token::UntrustedToken`]: canonical
//!    base64url, JSON objects without duplicate members, no `crit`, a known `alg`.
//! 5. **Pick the provider** by the token's `iss`, and **verify** ([`verify`]): type,
//!    algorithm allow-list, required claims, lifetime with clock skew, audience, then the
//!    signature ([`alg`]: checked in Rust, the arithmetic by the proxy's crypto or the portable
//!    code) with a key chosen by exact `kid` and compatible type. Only this step produces a
//!    [`verify::VerifiedToken`]; a token verified before is recognised by the
//!    [`token_cache`] instead, with the per-request and time checks run again. A token that is
//!    not a JWT goes to the provider of opaque tokens, and a provider with an introspection
//!    endpoint is asked whether the token is active ([`introspection`], RFC 7662; its calls in
//!    flight and the requests waiting for them: [`introspection::calls`]). Remote keys and
//!    address lists come from [`fetch`]: one worker fetches under a lease, the others adopt
//!    what it publishes in shared data, and a request waits for a document it lacks.
//! 6. **Decide** ([`decision::Decision`]): allow with [`edits::RequestEdits`] (identity
//!    headers from claims, client-sent identity headers removed, token stripped if asked), or
//!    deny with exactly one [`decision::Denial`], which maps to one response and one counter.
//!
//! Steps 1–6 are host-free: plain functions of bytes and the current time, tested natively
//! and under Node's V8. Only [`filter`] (built for proxy-wasm hosts) talks to the proxy: it
//! executes what the core asks (dispatch this fetch, wake these requests, send this response)
//! and reports what the host answered; it decides nothing.
//!
//! ## Design choices
//!
//! - **Fail closed, never panic.** A panic traps the Wasm VM and drops the worker's traffic,
//!   so clippy denies `unwrap`, `expect`, `panic!` and indexing outside tests; every bad input
//!   is a typed error with one defined response.
//! - **One spelling per token.** Lenient decoding is where JWT libraries have disagreed with
//!   each other and been bypassed; this filter accepts only the canonical form.
//! - **Time is a parameter.** The core never reads a clock; the adapter passes `now`.

pub mod alg;
pub mod algorithm;
pub mod base;
pub mod config;
pub mod decision;
mod der;
pub mod edits;
mod es384;
pub mod fetch;
mod fifo_map;
pub mod host_crypto;
pub mod introspection;
mod json;
pub mod jwks;
pub mod policy;
pub mod rego;
pub mod remote;
pub mod request_context;
pub(crate) mod rsa_math;
pub mod token;
pub mod token_cache;
pub mod verify;
pub mod waiting;
mod x509;

/// Fixture keys and token signing, shared with the integration tests.
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod support;

pub use es384::{Es384, Es384Signature};

// The proxy-wasm adapter. Not built for wasm32-unknown-unknown, where the core's tests run
// under Node: there the host functions it imports do not exist.
#[cfg(all(
    feature = "filter",
    not(all(target_arch = "wasm32", target_os = "unknown"))
))]
pub mod filter;
