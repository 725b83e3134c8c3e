//! # wasm-jwt-authn
//!
//! A proxy-wasm HTTP filter that authenticates every request by its JWT access token.
//!
//! ## The layers
//!
//! Each layer uses only the ones before it (`../shared/tools/module-cycles src` checks there
//! is no loop):
//!
//! 1. [`base`]: the vocabulary every layer shares: time, provider and list numbers, HTTP
//!    locations, claims and claim paths, the bounded map.
//! 2. [`jose`]: what a token and a key set say. [`jose::token::parse`] turns the compact JWS
//!    into an [`jose::token::UntrustedToken`] strictly (canonical base64url, JSON objects
//!    without duplicate members, no `crit`, a known `alg`); [`jose::jwks`] reads key sets;
//!    [`jose::signature`] checks a signature in Rust, the arithmetic done by the proxy's crypto
//!    or the portable code.
//! 3. [`verify`]: a provider's expectations (type, algorithm allow-list, required claims,
//!    lifetime with clock skew, audience) and the signature with a key chosen by exact `kid`
//!    and compatible type. Only this step produces a [`verify::VerifiedToken`]; a token
//!    verified before is recognised by [`verify::cache`] instead, with the per-request and
//!    time checks run again.
//! 4. [`request`]: the request as authentication sees it: the token it carries
//!    ([`request::token`]: `Authorization: Bearer`, a query parameter, a cookie; two tokens are
//!    refused) and the client's address ([`request::client_address`]).
//! 5. [`policy`]: what a rule requires of the token's claims (scopes, roles, claim conditions,
//!    step-up, Rego) and of the request's context ([`policy::context`]: address sets, inline or
//!    fetched, and time windows).
//! 6. [`fetch`]: remote keys and address lists. One worker fetches under a lease, the others
//!    adopt what it publishes in shared data, and a request waits for a document it lacks
//!    ([`fetch::waiting`]). Sans-I/O: it says which call to dispatch and is told the answer.
//! 7. [`introspection`]: RFC 7662, for opaque tokens and for providers that ask whether a
//!    token is still active; its cache, and the calls in flight with the requests waiting for
//!    them ([`introspection::calls`]).
//! 8. [`config`]: the plugin configuration (JSON) becomes a [`config::Config`] that cannot be
//!    invalid: providers with their parsed key sets, rules, limits. A bad configuration is
//!    refused whole, with the field at fault named.
//! 9. [`edits`]: what an allowed request's upstream receives ([`edits::RequestEdits`]: identity
//!    headers from claims, client-sent identity headers removed, the token stripped if asked).
//! 10. [`decision`]: the route's rule (deny rules first, then the first allow rule whose path,
//!     method and host match; no match requires a valid token from any provider), then one
//!     credential (opaque, remembered, or verified now) through one finish: allow, or deny with
//!     exactly one [`decision::Denial`], which maps to one response and one counter.
//!
//! Layers 1–10 are host-free: plain functions of bytes and the current time, tested natively
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

// In layer order (blank lines keep rustfmt from sorting them).
pub(crate) mod base;

pub(crate) mod jose;

pub(crate) mod verify;

pub(crate) mod request;

pub(crate) mod policy;

pub(crate) mod fetch;

pub(crate) mod introspection;

pub(crate) mod config;

pub(crate) mod edits;

pub(crate) mod decision;

/// What the integration tests, the fuzz targets and the tools outside the crate reach.
#[doc(hidden)]
pub mod testing;

/// Fixture keys and token signing, shared with the integration tests.
#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod support;

// The proxy-wasm adapter. Not built for wasm32-unknown-unknown, where the core's tests run
// under Node: there the host functions it imports do not exist.
#[cfg(all(
    feature = "filter",
    not(all(target_arch = "wasm32", target_os = "unknown"))
))]
mod filter;
