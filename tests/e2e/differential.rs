//! Differential test: the same corpus through Envoy's native `envoy.filters.http.jwt_authn` and
//! through Envoy with this filter, equivalently configured, compared request by request.
//!
//! Both Envoys (1.40) run side by side in front of their own echo upstream, with one provider:
//! the same issuer, audiences and inline JWKS (the fixture RSA-2048, P-256, P-384 and Ed25519
//! keys, so every algorithm both implement: RS/PS 256/384/512, ES256, ES384, EdDSA), the token in
//! `Authorization: Bearer`, forwarded, 60 s of clock skew, required on every path. Each filter
//! keeps its other defaults — what a user switching from one to the other gets: we require
//! `exp` (`required_claims: ["exp"]`), native does not (`require_expiration: false`).
//!
//! The corpus (`differential/corpus.rs`) is valid tokens of every algorithm and thousands of
//! mutations. Each request's outcome is `allow` (`200` from the upstream) or `deny` (`400`,
//! `401`, `403`); the report counts, per mutation class, the agreements and both directions of
//! disagreement, and lists every disagreement group. `differential/REPORT.md` explains each.
//!
//! The test asserts that every valid token is allowed by both, that nothing errs, and that every
//! case we allow and native denies is one of [`EXPLAINED_WE_ALLOW`] (by design) or
//! [`REPORTED_BUGS`] (a bug in `src/`, reported, tolerated until fixed). Being stricter than native
//! is by design (README: canonical base64url, no duplicate members, no `crit`, `exp` required,
//! no future `iat`, …) and is reported, not asserted.
//!
//! `#[ignore]`d: `make differential` runs it (`--ignored`), with `ENVOY_BIN` and
//! `WASM_JWT_AUTHN_WASM` as for the end-to-end tests. `DIFFERENTIAL_THREADS` (default 4) sets
//! how many requests are in flight.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod corpus;
mod report;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::envoy::{AuthFilter, Envoy, Options};
use crate::http;
use crate::upstream::EchoUpstream;
use corpus::{Case, AUDIENCE, HTTPS_AUDIENCE, ISSUER};
use report::{Comparison, Outcome, Verdict};

/// Cases we allow and native `jwt_authn` denies, by `class/variant` (any algorithm), with why
/// that is right. Any other such case fails the test: it is a bug until explained here.
const EXPLAINED_WE_ALLOW: &[(&str, &str)] = &[
    (
        "json/payload-deep-nesting-100",
        "nesting limits differ: native's JSON parser (protobuf) takes at most 100 levels, ours \
         (serde_json) 127; a signed claim 101-127 levels deep is still the issuer's, and the \
         token is bounded by max_token_bytes",
    ),
    (
        "json/payload-deep-nesting-126",
        "nesting limits differ: native's JSON parser (protobuf) takes at most 100 levels, ours \
         (serde_json) 127; a signed claim 101-127 levels deep is still the issuer's, and the \
         token is bounded by max_token_bytes",
    ),
    (
        "transport/bearer-lowercase",
        "auth schemes are case-insensitive (RFC 9110 §11.1); native matches `value_prefix` \
         case-sensitively (istio#22608)",
    ),
    (
        "transport/bearer-uppercase",
        "auth schemes are case-insensitive (RFC 9110 §11.1); native matches `value_prefix` \
         case-sensitively (istio#22608)",
    ),
    (
        "transport/bearer-mixed-case",
        "auth schemes are case-insensitive (RFC 9110 §11.1); native matches `value_prefix` \
         case-sensitively (istio#22608)",
    ),
];

/// Cases we allow and native denies because of a bug in `src/`, reported with a reproduction in
/// `differential/REPORT.md`; tolerated so the run stays useful until the fix lands, and
/// flagged as bugs in the report. Remove an entry when its fix lands (the run says so).
const REPORTED_BUGS: &[(&str, &str)] = &[];

/// The filter's configuration: one provider, required on every path.
fn our_configuration() -> Value {
    json!({
        "providers": [{
            "name": "corp",
            "issuer": ISSUER,
            "audiences": [AUDIENCE, HTTPS_AUDIENCE],
            "jwks": {"inline": corpus::trusted_jwks()},
            "token_sources": [{"header": "authorization", "prefix": "Bearer "}],
            "clock_skew_seconds": 60,
            "forward_token": true
        }],
        "rules": [{"match": {"path_prefix": "/"}, "providers": ["corp"]}]
    })
}

/// Native `jwt_authn`'s equivalent: the same provider, required on every route.
fn native_configuration() -> Value {
    json!({
        "providers": {
            "corp": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE, HTTPS_AUDIENCE],
                "local_jwks": {"inline_string": corpus::trusted_jwks().to_string()},
                "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
                "forward": true,
                "clock_skew_seconds": 60
            }
        },
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "corp"}}]
    })
}

fn now() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(elapsed.as_secs()).unwrap()
}

/// Sends one case (retrying once a connection failure) and reads the verdict.
fn verdict(address: SocketAddr, case: &Case, ours: bool) -> Verdict {
    let headers: Vec<(&str, &str)> = case
        .authorization
        .iter()
        .map(|value| ("authorization", value.as_str()))
        .collect();
    let mut response = http::send(address, "GET", "/orders", &headers, &[]);
    if response.is_err() {
        response = http::send(address, "GET", "/orders", &headers, &[]);
    }
    Verdict::of(response, ours)
}

/// Every case through both Envoys, `threads` at a time; outcomes in corpus order.
fn run(cases: Vec<Case>, native: SocketAddr, ours: SocketAddr, threads: usize) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let mut verdicts: Vec<(usize, Verdict, Verdict)> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some(case) = cases.get(index) else {
                            break done;
                        };
                        // Back to back, so both see the same second of the clock.
                        let native = verdict(native, case, false);
                        let ours = verdict(ours, case, true);
                        done.push((index, ours, native));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("worker"))
            .collect()
    });
    verdicts.sort_by_key(|(index, _, _)| *index);
    assert_eq!(verdicts.len(), cases.len());
    cases
        .into_iter()
        .zip(verdicts)
        .map(|(case, (_, ours, native))| Outcome { case, ours, native })
        .collect()
}

#[test]
#[ignore = "slow (two Envoys, thousands of requests): run by `make differential`"]
fn native_jwt_authn_and_the_filter_differ_only_where_explained() {
    let started = Instant::now();
    let native_upstream = EchoUpstream::start();
    let our_upstream = EchoUpstream::start();
    let native = Envoy::start(
        "differential-native",
        &native_configuration().to_string(),
        native_upstream.port(),
        &Options {
            auth_filter: AuthFilter::NativeJwtAuthn,
            ..Options::default()
        },
    );
    let ours = Envoy::start(
        "differential-wasm",
        &our_configuration().to_string(),
        our_upstream.port(),
        &Options::default(),
    );

    let generated = Instant::now();
    let cases = corpus::corpus(now);
    let generation = generated.elapsed();
    let threads = std::env::var("DIFFERENTIAL_THREADS")
        .ok()
        .and_then(|threads| threads.parse().ok())
        .unwrap_or(4);
    let sent = Instant::now();
    let outcomes = run(cases, native.listener(), ours.listener(), threads);
    let sending = sent.elapsed();
    let elapsed = format!(
        "corpus made in {:.1} s, sent in {:.1} s with {threads} threads, {:.1} s in all",
        generation.as_secs_f64(),
        sending.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let markdown = report::markdown(&outcomes, &elapsed, EXPLAINED_WE_ALLOW, REPORTED_BUGS);
    let directory = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target directory")
        .join("differential");
    fs::create_dir_all(&directory).expect("create target/differential");
    fs::write(directory.join("report.md"), &markdown).expect("write report.md");
    fs::write(
        directory.join("disagreements.tsv"),
        report::disagreements_tsv(&outcomes),
    )
    .expect("write disagreements.tsv");
    fs::write(
        directory.join("outcomes.tsv"),
        report::outcomes_tsv(&outcomes),
    )
    .expect("write outcomes.tsv");
    println!(
        "\ndifferential: {} cases, {elapsed}\n\n{}\ndifferential: report in {}",
        outcomes.len(),
        report::table(&outcomes),
        directory.join("report.md").display()
    );

    let mut failures = Vec::new();
    for outcome in &outcomes {
        let name = outcome.case.name();
        let ours = outcome.ours.label();
        let native = outcome.native.label();
        match outcome.comparison() {
            Comparison::Error => failures.push(format!("{name}: ours {ours}, native {native}")),
            Comparison::WeAllowNativeDenies => {
                let key = outcome.case.key();
                if REPORTED_BUGS.iter().any(|(bug, _)| *bug == key) {
                    println!(
                        "differential: BUG (reported): {name}: we allow, native denies ({native})"
                    );
                } else if !EXPLAINED_WE_ALLOW.iter().any(|(known, _)| *known == key) {
                    failures.push(format!(
                        "{name}: we allow, native denies ({native}), unexplained: {}",
                        outcome.case.authorization.join(" | ")
                    ));
                }
            }
            Comparison::BothAllow | Comparison::BothDeny | Comparison::WeDenyNativeAllows => {}
        }
        if outcome.case.class == "valid" && outcome.comparison() != Comparison::BothAllow {
            failures.push(format!(
                "{name}: a valid token must be allowed by both: ours {ours}, native {native}"
            ));
        }
    }
    for (key, _) in EXPLAINED_WE_ALLOW.iter().chain(REPORTED_BUGS) {
        if !outcomes.iter().any(|outcome| {
            outcome.case.key() == *key && outcome.comparison() == Comparison::WeAllowNativeDenies
        }) {
            println!("differential: note: {key} no longer disagrees: remove it from the list");
        }
    }
    // Stopped before asserting: a panic would make them print their (long) access logs.
    drop((native, ours));
    assert!(
        failures.is_empty(),
        "{} failure(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
