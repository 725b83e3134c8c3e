//! End-to-end tests of what the filter asks the identity provider — its keys, and whether an
//! opaque token is active (RFC 7662 introspection, at the end) — the built filter (`.wasm`)
//! in a real Envoy (1.40, V8) asking a real OpenID Provider (`oidc-provider`, `tests/e2e/idp.rs`) over
//! HTTPS, through an Envoy cluster whose TLS transport socket trusts only the IdP's throwaway
//! test CA (SNI `localhost`, the certificate's `127.0.0.1` SAN checked). The filter sends the
//! URI's authority (`127.0.0.1:<port>`) as `:authority`, so discovery's `jwks_uri` names the same
//! host and the key fetch follows it.
//!
//! Each `#[test]` is one scenario with its own IdP and Envoy. Every scenario asserts exact
//! statuses and the body's `reason`, the filter's counters (`wasmcustom.wasm_jwt_authn.*`) and
//! how many discovery and JWKS requests reached the IdP (its own counters, `idp.stats()`).
//!
//! Envoy also runs the filter in a root context on its main thread, which takes part in the
//! fetch lease like a worker: with `--concurrency 1` it is usually the main thread that fetches
//! and the one worker that adopts the keys (`jwks.adopted_from_other_worker` = 1).
//!
//! Timing: the filter's clock has whole seconds, its root context ticks every 200 ms, and a
//! fetch's rate limit (`min_refetch_seconds`) counts from the second the keys were fetched; the
//! tests sleep past such boundaries rather than race them.
//!
//! Needs `ENVOY_BIN` (default `.venv/bin/envoy`), `WASM_JWT_AUTHN_WASM` (default the release
//! artifact), Node and `tests/idp/node_modules`; `make test` provides them. Without them the
//! tests fail, they never skip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::envoy::{Envoy, Options};
use crate::http::Response;
use crate::idp::{Idp, IdpOptions};
use crate::upstream::EchoUpstream;
use crate::{envoy, http, idp};

/// The filter's name for the provider, and the Envoy cluster its keys are fetched through.
const PROVIDER: &str = "idp";
const CLUSTER: &str = "idp";
/// The `sub` of the IdP's `client_credentials` tokens.
const SUBJECT: &str = idp::CLIENT_ID;
/// The `jwks.fetch_failure.<kind>` the filter counts when Envoy could not reach the IdP
/// (connection refused or reset, TLS handshake or certificate verification failed): Envoy answers
/// such a call with its own `503`, which the filter recognises.
const TRANSPORT_FAILURE: &str = "unreachable";
/// The kind counted when Envoy timed the call out (its own `504`).
const TIMEOUT_FAILURE: &str = "timeout";

/// How long a request with an unknown `kid` may take when its refetch fails at once (a reset,
/// a refused connection, garbage): the failure wakes it; a tick and a whole-second clock step
/// at most.
const REFETCH_ANSWER_BOUND: Duration = Duration::from_millis(1_500);

// ----- Envoy in front of an echo upstream, with a TLS cluster to the IdP -----------------------

/// Envoy with the filter in front of an echo upstream. Envoy is dropped first.
struct Proxy {
    envoy: Envoy,
    _upstream: EchoUpstream,
}

impl Proxy {
    fn start(name: &str, configuration: &Value, cluster: Value, concurrency: u32) -> Proxy {
        let upstream = EchoUpstream::start();
        let options = Options {
            concurrency,
            clusters: vec![cluster],
            ..Options::default()
        };
        let envoy = Envoy::start(name, &configuration.to_string(), upstream.port(), &options);
        Proxy {
            envoy,
            _upstream: upstream,
        }
    }

    fn listener(&self) -> SocketAddr {
        self.envoy.listener()
    }

    /// `GET /orders` with `token` as the bearer token, and how long the answer took.
    fn get(&self, token: &str) -> (Response, Duration) {
        get(self.listener(), token)
    }

    fn counter(&self, name: &str) -> u64 {
        self.envoy.counter(name)
    }

    /// The `jwks.fetch_failure.<kind>` counters that are not zero, by kind.
    fn fetch_failures(&self) -> BTreeMap<String, u64> {
        self.envoy
            .counters()
            .into_iter()
            .filter_map(|(name, value)| {
                let kind = name.strip_prefix("jwks.fetch_failure.")?;
                (value > 0).then(|| (kind.to_owned(), value))
            })
            .collect()
    }
}

/// A cluster to `127.0.0.1:port` over TLS that trusts only `ca` and requires the server
/// certificate to name `127.0.0.1` (the test IdP's certificate does, and `localhost`).
fn tls_cluster(port: u16, ca: &Path) -> Value {
    json!({
        "name": CLUSTER,
        "connect_timeout": "1s",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}
            }}}]}]
        },
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                // An IP literal is not a valid SNI host name (RFC 6066 §3); the certificate also
                // names `localhost`.
                "sni": "localhost",
                "common_tls_context": {"validation_context": {
                    "trusted_ca": {"filename": ca},
                    "match_typed_subject_alt_names": [
                        {"san_type": "IP_ADDRESS", "matcher": {"exact": "127.0.0.1"}}
                    ]
                }}
            }
        }
    })
}

/// The cluster to the running IdP.
fn idp_cluster(idp: &Idp) -> Value {
    tls_cluster(idp.port, &idp.ca_pem_path)
}

// ----- the filter's configuration --------------------------------------------------------------

/// One provider for the IdP's RFC 9068 access tokens, keys from `source` (`jwks` or
/// `discovery`) with `settings`; no rules, so every path needs its token.
fn configuration(idp: &Idp, source: &str, settings: Value) -> Value {
    let mut provider = json!({
        "name": PROVIDER,
        "issuer": idp.issuer,
        "audiences": [idp.resource],
        "token_types": ["at+jwt"],
        "claims_to_headers": [{"claim": ["sub"], "header": "x-jwt-sub"}]
    });
    provider[source] = settings;
    json!({"providers": [provider]})
}

/// Keys through OIDC discovery at the issuer's well-known URI, plus `extra` settings.
fn discovery_configuration(idp: &Idp, extra: &Value) -> Value {
    let mut settings = json!({"upstream": CLUSTER});
    merge(&mut settings, extra);
    configuration(idp, "discovery", settings)
}

/// Keys from the IdP's JWKS URI, plus `extra` settings.
fn jwks_configuration(idp: &Idp, extra: &Value) -> Value {
    let mut settings = json!({"uri": idp.jwks_uri(), "upstream": CLUSTER});
    merge(&mut settings, extra);
    configuration(idp, "jwks", settings)
}

fn merge(settings: &mut Value, extra: &Value) {
    for (name, value) in extra.as_object().expect("settings object") {
        settings[name] = value.clone();
    }
}

// ----- requests and their expected answers -----------------------------------------------------

fn get(listener: SocketAddr, token: &str) -> (Response, Duration) {
    let started = Instant::now();
    let authorization = format!("Bearer {token}");
    let response = http::send(
        listener,
        "GET",
        "/orders",
        &[("authorization", &authorization)],
        &[],
    )
    .unwrap_or_else(|err| panic!("GET /orders through Envoy: {err}"));
    (response, started.elapsed())
}

/// The upstream's echo of an allowed request, with the verified subject.
fn assert_allowed(response: &Response) {
    assert_eq!(
        response.status,
        200,
        "expected the upstream's 200, got {} {}",
        response.status,
        response.text()
    );
    let echo = response.json();
    assert_eq!(echo["path"], "/orders", "the echo of the request: {echo}");
    assert_eq!(echo["headers"]["x-jwt-sub"], SUBJECT, "{echo}");
}

/// A 401 for an invalid token, with `reason` in the body and the challenge.
fn assert_denied(response: &Response, reason: &str) {
    assert_eq!(
        response.status,
        401,
        "expected 401 {reason}, got {} {}",
        response.status,
        response.text()
    );
    assert_eq!(response.json()["reason"], reason, "{}", response.text());
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "challenge {challenge:?}"
    );
}

/// The exact `503` for keys that cannot be had.
fn assert_keys_unavailable(response: &Response) {
    assert_eq!(
        response.status,
        503,
        "expected 503 keys_unavailable, got {} {}",
        response.status,
        response.text()
    );
    assert_eq!(
        response.json(),
        json!({
            "error": "temporarily_unavailable",
            "reason": "keys_unavailable",
            "description": "the identity provider keys are unavailable"
        })
    );
    assert_eq!(response.header("retry-after"), Some("5"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert_eq!(response.header("content-type"), Some("application/json"));
}

/// `token` with its header's `kid` replaced: the signature no longer matters, since an unknown
/// `kid` is refused before any signature is checked.
fn with_kid(token: &str, kid: &str) -> String {
    let (header, rest) = token.split_once('.').expect("a compact JWS");
    let mut header: Value =
        serde_json::from_slice(&idp::base64url_decode(header).expect("base64url header"))
            .expect("JSON header");
    header["kid"] = json!(kid);
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

fn kid_of(token: &str) -> String {
    let (header, _) = idp::decode_jwt(token);
    header["kid"].as_str().expect("kid").to_owned()
}

/// `count` distinct made-up key ids.
fn random_kids(count: usize) -> Vec<String> {
    let mut state = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (0..count)
        .map(|index| {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            format!("unknown-{index}-{:016x}", z ^ (z >> 31))
        })
        .collect()
}

/// Sends every token from `threads` client threads (token `i` from thread `i % threads`), all
/// threads starting together; the answers in token order.
fn send_all(listener: SocketAddr, tokens: &[String], threads: usize) -> Vec<(Response, Duration)> {
    let barrier = Barrier::new(threads);
    let mut answers: Vec<Option<(Response, Duration)>> = vec![None; tokens.len()];
    thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    tokens
                        .iter()
                        .enumerate()
                        .skip(thread)
                        .step_by(threads)
                        .map(|(index, token)| (index, get(listener, token)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (index, answer) in handle.join().expect("client thread") {
                answers[index] = Some(answer);
            }
        }
    });
    answers.into_iter().map(Option::unwrap).collect()
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// What `read` returns once two reads 200 ms apart agree: counters read one after the other
/// (the filter's, Envoy's, the IdP's) are consistent only while no fetch is in flight.
fn settled<T: PartialEq>(mut read: impl FnMut() -> T) -> T {
    let mut last = read();
    for _ in 0..50 {
        thread::sleep(Duration::from_millis(200));
        let next = read();
        if next == last {
            return next;
        }
        last = next;
    }
    panic!("counters still moving after 10 s");
}

/// `(jwks, discovery)` requests the IdP received.
fn idp_fetches(idp: &Idp) -> (u64, u64) {
    let (jwks, discovery, _tokens) = idp.stats();
    (jwks, discovery)
}

/// Sleeps `seconds` and a little more, so that on the filter's whole-second clock
/// `min_refetch_seconds: seconds` has surely passed since anything done before.
fn sleep_past_refetch_limit(seconds: u64) {
    thread::sleep(Duration::from_millis(seconds * 1000 + 100));
}

// ----- the scenarios ---------------------------------------------------------------------------

/// Cold start with discovery: the filter reads the IdP's OpenID configuration (whose `issuer`
/// must be the provider's), then its `jwks_uri`, over HTTPS; the first request waits for the keys
/// and the IdP's RFC 9068 access token is accepted. Exactly one discovery and one JWKS request,
/// however many requests follow.
#[test]
fn discovery_then_jwks_then_token_accepted() {
    let idp = Idp::start(IdpOptions::default());
    let token = idp.token();
    let (header, payload) = idp::decode_jwt(&token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(payload["iss"], idp.issuer.as_str());
    let proxy = Proxy::start(
        "keys-discovery",
        &discovery_configuration(&idp, &json!({})),
        idp_cluster(&idp),
        1,
    );

    let (response, first) = proxy.get(&token);
    assert_allowed(&response);
    assert_eq!(idp_fetches(&idp), (1, 1), "one discovery, one JWKS request");
    for _ in 0..20 {
        assert_allowed(&proxy.get(&token).0);
    }
    assert_denied(
        &proxy.get(&idp.token_for("api://someone-else")).0,
        "audience_mismatch",
    );
    assert_eq!(idp_fetches(&idp), (1, 1), "the keys are reused");
    assert_eq!(proxy.counter("jwks.fetch_success"), 1);
    assert_eq!(proxy.counter("allowed"), 21);
    assert_eq!(proxy.counter("denied.audience_mismatch"), 1);
    assert_eq!(proxy.fetch_failures(), BTreeMap::new());
    // Both documents came through the TLS cluster, which validated the test CA.
    assert_eq!(proxy.envoy.stat("cluster.idp.upstream_rq_200"), Some(2));
    assert!(proxy.envoy.stat("cluster.idp.ssl.handshake").unwrap() >= 1);
    assert_eq!(
        proxy.envoy.stat("cluster.idp.ssl.fail_verify_error"),
        Some(0)
    );
    eprintln!(
        "discovery: first request answered in {first:?}; adopted_from_other_worker = {}",
        proxy.counter("jwks.adopted_from_other_worker")
    );
}

/// Key rotation without a restart: a token signed by a new key (unknown `kid`) makes the filter
/// refetch the JWKS once and is accepted; tokens of the previous key still are while the IdP
/// publishes it, and are refused (`unknown_key_id`) once it is retired.
#[test]
fn rotated_key_accepted_after_one_refetch() {
    let idp = Idp::start(IdpOptions::default());
    let proxy = Proxy::start(
        "keys-rotation",
        &jwks_configuration(&idp, &json!({"min_refetch_seconds": 1})),
        idp_cluster(&idp),
        1,
    );
    let old_token = idp.token();
    assert_allowed(&proxy.get(&old_token).0);
    assert_eq!(idp_fetches(&idp), (1, 0));

    sleep_past_refetch_limit(1);
    let new_kid = idp.rotate(false);
    let new_token = idp.token();
    assert_eq!(kid_of(&new_token), new_kid);
    assert_ne!(kid_of(&old_token), new_kid);
    let (response, waited) = proxy.get(&new_token);
    assert_allowed(&response);
    assert_eq!(idp_fetches(&idp), (2, 0), "exactly one refetch");
    assert_allowed(&proxy.get(&new_token).0);
    assert_allowed(&proxy.get(&old_token).0);
    assert_eq!(idp_fetches(&idp), (2, 0), "both keys are known now");

    sleep_past_refetch_limit(1);
    let newest_kid = idp.rotate(true);
    let newest_token = idp.token();
    assert_eq!(kid_of(&newest_token), newest_kid);
    assert_allowed(&proxy.get(&newest_token).0);
    assert_eq!(idp_fetches(&idp), (3, 0));
    sleep_past_refetch_limit(1);
    // The retired key's kid is unknown now: one refetch confirms it, then the token is refused.
    assert_denied(&proxy.get(&old_token).0, "unknown_key_id");
    assert_eq!(idp_fetches(&idp), (4, 0));

    assert_eq!(proxy.counter("jwks.fetch_success"), 4);
    assert_eq!(proxy.counter("allowed"), 5);
    assert_eq!(proxy.counter("denied.unknown_key_id"), 1);
    assert_eq!(proxy.fetch_failures(), BTreeMap::new());
    eprintln!("rotation: the first token of the new key was answered in {waited:?}");
}

/// A storm of tokens with made-up `kid`s (the IdP's real token, header re-encoded) cannot make
/// the filter hammer the IdP: the first one refetches, the others within `min_refetch_seconds`
/// (4 s here) are refused at once. All 1000 are refused as `unknown_key_id`.
#[test]
fn unknown_kid_storm_refetches_are_rate_limited() {
    const MIN_REFETCH_SECONDS: u64 = 4;
    const REQUESTS: usize = 1000;
    let idp = Idp::start(IdpOptions::default());
    let proxy = Proxy::start(
        "keys-unknown-kids",
        &jwks_configuration(&idp, &json!({"min_refetch_seconds": MIN_REFETCH_SECONDS})),
        idp_cluster(&idp),
        1,
    );
    let token = idp.token();
    assert_allowed(&proxy.get(&token).0);
    assert_eq!(idp_fetches(&idp), (1, 0));

    // Past the rate limit, so that the storm may (and does) cause one refetch.
    sleep_past_refetch_limit(MIN_REFETCH_SECONDS);
    let tokens: Vec<String> = random_kids(REQUESTS)
        .iter()
        .map(|kid| with_kid(&token, kid))
        .collect();
    let started = Instant::now();
    let answers = send_all(proxy.listener(), &tokens, 4);
    let duration = started.elapsed();
    for (response, _) in &answers {
        assert_denied(response, "unknown_key_id");
    }
    let (jwks, discovery) = idp_fetches(&idp);
    let refetches = jwks - 1;
    // One refetch per started rate-limit window (whole seconds) the storm lasted.
    let allowed = 1 + (duration.as_secs() + 1) / MIN_REFETCH_SECONDS;
    assert!(
        (1..=allowed).contains(&refetches),
        "{refetches} refetches for {REQUESTS} unknown kids in {duration:?} (at most {allowed})"
    );
    assert_eq!(discovery, 0);
    assert_eq!(proxy.counter("denied.unknown_key_id"), REQUESTS as u64);
    assert_eq!(proxy.counter("jwks.fetch_success"), jwks);
    assert_eq!(proxy.fetch_failures(), BTreeMap::new());
    assert_allowed(&proxy.get(&token).0);
    let slowest = answers.iter().map(|(_, elapsed)| *elapsed).max().unwrap();
    eprintln!(
        "unknown kids: {REQUESTS} requests in {duration:?} (slowest {slowest:?}), \
         {refetches} JWKS refetch(es)"
    );
}

/// 100 requests at once, before the proxy has any keys (the IdP answers discovery and JWKS
/// after 1 s each): they all wait for the one fetch and are all accepted.
#[test]
fn concurrent_cold_start_requests_share_one_fetch() {
    const REQUESTS: usize = 100;
    let idp = Idp::start(IdpOptions::default());
    let token = idp.token();
    idp.set_mode("all", "slow", 1000);
    let proxy = Proxy::start(
        "keys-cold-start",
        &discovery_configuration(&idp, &json!({})),
        idp_cluster(&idp),
        1,
    );
    assert_eq!(
        proxy.counter("jwks.fetch_success"),
        0,
        "keys arrived before the requests: the scenario needs a cold proxy"
    );
    let tokens = vec![token; REQUESTS];
    let answers = send_all(proxy.listener(), &tokens, REQUESTS);
    for (response, _) in &answers {
        assert_allowed(response);
    }
    assert_eq!(idp_fetches(&idp), (1, 1));
    assert_eq!(proxy.counter("jwks.fetch_success"), 1);
    assert_eq!(proxy.counter("allowed"), REQUESTS as u64);
    assert_eq!(proxy.fetch_failures(), BTreeMap::new());
    let fastest = answers.iter().map(|(_, elapsed)| *elapsed).min().unwrap();
    let slowest = answers.iter().map(|(_, elapsed)| *elapsed).max().unwrap();
    eprintln!("cold start: {REQUESTS} concurrent requests answered in {fastest:?}..{slowest:?}");
}

/// A proxy whose keys came from `idp` (one JWKS fetch, checked), with a 1 s refetch limit and a
/// 1 s fetch timeout, and a token it accepts.
fn warmed_up(idp: &Idp, name: &str) -> (Proxy, String) {
    let proxy = Proxy::start(
        name,
        &jwks_configuration(idp, &json!({"min_refetch_seconds": 1, "timeout_ms": 1000})),
        idp_cluster(idp),
        1,
    );
    let token = idp.token();
    assert_allowed(&proxy.get(&token).0);
    assert_eq!(idp_fetches(idp), (1, 0));
    (proxy, token)
}

/// Past the refetch limit, a token with an unknown `kid` forces a refetch that fails: it is
/// refused `unknown_key_id` as soon as the failure is known, and the cached keys keep
/// accepting `token`. Returns how long the refused request took.
fn unknown_kid_after_failed_refetch(proxy: &Proxy, token: &str, kid: &str) -> Duration {
    sleep_past_refetch_limit(1);
    let (response, unknown_kid_wait) = proxy.get(&with_kid(token, kid));
    assert_denied(&response, "unknown_key_id");
    assert!(
        unknown_kid_wait < REFETCH_ANSWER_BOUND,
        "{unknown_kid_wait:?}"
    );
    for _ in 0..5 {
        assert_allowed(&proxy.get(token).0);
    }
    unknown_kid_wait
}

/// The IdP goes away after the keys were fetched: first it drops every connection unanswered,
/// then it is killed. Fetches fail (an unknown `kid` forces one past the 1 s rate limit; while
/// the cached keys are fresh a failed refetch is not retried), the failures are counted, and
/// the cached keys keep accepting valid tokens.
#[test]
fn idp_down_after_warm_up_cached_keys_keep_working() {
    let idp = Idp::start(IdpOptions::default());
    let (proxy, token) = warmed_up(&idp, "keys-idp-down");

    idp.set_mode("all", "down", 0);
    let unknown_kid_wait = unknown_kid_after_failed_refetch(&proxy, &token, "rotated-away");
    // Every JWKS request the IdP dropped is one failure, and one connection Envoy saw closed
    // under a request.
    let (failures, jwks, resets) = settled(|| {
        (
            proxy.fetch_failures(),
            idp_fetches(&idp).0,
            proxy
                .envoy
                .stat("cluster.idp.upstream_cx_destroy_remote_with_active_rq"),
        )
    });
    let failed = failures.get(TRANSPORT_FAILURE).copied().unwrap_or(0);
    assert!(failed >= 1);
    assert_eq!(
        failures,
        BTreeMap::from([(TRANSPORT_FAILURE.to_owned(), failed)])
    );
    assert_eq!(jwks, 1 + failed, "JWKS requests at the IdP");
    assert_eq!(resets, Some(failed));
    assert_eq!(proxy.counter("jwks.fetch_success"), 1);

    // Killed: connections are refused now.
    drop(idp);
    sleep_past_refetch_limit(1);
    let (response, unknown_kid_wait_killed) = proxy.get(&with_kid(&token, "rotated-away-2"));
    assert_denied(&response, "unknown_key_id");
    assert!(
        unknown_kid_wait_killed < REFETCH_ANSWER_BOUND,
        "{unknown_kid_wait_killed:?}"
    );
    for _ in 0..5 {
        assert_allowed(&proxy.get(&token).0);
    }
    // Every failure since is a connection refused (or one more dropped before the kill).
    let (failures_after_kill, refused, resets) = settled(|| {
        (
            proxy.fetch_failures(),
            proxy.envoy.stat("cluster.idp.upstream_cx_connect_fail"),
            proxy
                .envoy
                .stat("cluster.idp.upstream_cx_destroy_remote_with_active_rq"),
        )
    });
    let (refused, resets) = (refused.unwrap(), resets.unwrap());
    assert!(refused >= 1);
    assert_eq!(
        failures_after_kill,
        BTreeMap::from([(TRANSPORT_FAILURE.to_owned(), resets + refused)])
    );
    assert_eq!(proxy.counter("allowed"), 11);
    assert_eq!(proxy.counter("denied.unknown_key_id"), 2);
    assert_eq!(proxy.counter("denied.keys_unavailable"), 0);
    assert_eq!(proxy.counter("jwks.fetch_success"), 1);
    eprintln!(
        "idp down: {resets} failed fetch(es) while the IdP dropped connections, {refused} refused \
         after the kill; unknown-kid answers took {unknown_kid_wait:?} and \
         {unknown_kid_wait_killed:?}"
    );
}

/// The IdP's cluster points at a closed port from the start: no keys ever, so every request
/// is answered `503 keys_unavailable` with `retry-after`, never `200`. Likewise when the IdP
/// is up but its certificate is not from the CA the cluster trusts.
#[test]
fn idp_unreachable_from_start_answers_503() {
    let idp = Idp::start(IdpOptions::default());
    let token = idp.token();
    let closed_port = envoy::free_port();
    let proxy = Proxy::start(
        "keys-unreachable",
        &jwks_configuration(&idp, &json!({"timeout_ms": 1000})),
        tls_cluster(closed_port, &idp.ca_pem_path),
        1,
    );
    let mut latencies = Vec::new();
    for _ in 0..8 {
        let (response, elapsed) = proxy.get(&token);
        assert_keys_unavailable(&response);
        assert!(elapsed < Duration::from_millis(1000 + 2500), "{elapsed:?}");
        latencies.push(elapsed);
        thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(proxy.counter("denied.keys_unavailable"), 8);
    assert_eq!(proxy.counter("allowed"), 0);
    assert_eq!(proxy.counter("jwks.fetch_success"), 0);
    // One failure per connection refused: the first fetch, then retries with backoff.
    let (failures, refused) = settled(|| {
        (
            proxy.fetch_failures(),
            proxy.envoy.stat("cluster.idp.upstream_cx_connect_fail"),
        )
    });
    let refused = refused.unwrap();
    assert!(refused >= 1);
    assert_eq!(
        failures,
        BTreeMap::from([(TRANSPORT_FAILURE.to_owned(), refused)])
    );
    assert_eq!(idp_fetches(&idp), (0, 0));
    eprintln!("unreachable: {refused} refused fetch(es), answered in {latencies:?}");

    // A certificate from another CA: the TLS handshake fails, no HTTP request reaches the IdP.
    let foreign =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("foreign-ca-{}", std::process::id()));
    let made = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/make-ca.sh"))
        .arg(&foreign)
        .output()
        .expect("run make-ca.sh");
    assert!(made.status.success(), "{made:?}");
    let untrusting = Proxy::start(
        "keys-foreign-ca",
        &jwks_configuration(&idp, &json!({"timeout_ms": 1000})),
        tls_cluster(idp.port, &foreign.join("ca.pem")),
        1,
    );
    for _ in 0..3 {
        assert_keys_unavailable(&untrusting.get(&token).0);
    }
    assert_eq!(untrusting.counter("allowed"), 0);
    let (failures, unverified) = settled(|| {
        (
            untrusting.fetch_failures(),
            untrusting.envoy.stat("cluster.idp.ssl.fail_verify_error"),
        )
    });
    let unverified = unverified.unwrap();
    assert!(unverified >= 1);
    assert_eq!(
        failures,
        BTreeMap::from([(TRANSPORT_FAILURE.to_owned(), unverified)])
    );
    assert_eq!(idp_fetches(&idp), (0, 0));
    let _ = std::fs::remove_dir_all(&foreign);
    eprintln!("foreign CA: {unverified} fetch(es) refused by certificate verification");
}

/// The IdP answers the JWKS after 3 s, the fetch times out after 1 s: requests that wait for
/// keys are answered `503` within the timeout plus a small margin (< 3.5 s), none is let
/// through, and once the IdP is fast again a retry brings the keys.
#[test]
fn idp_slower_than_timeout_answers_within_timeout() {
    const TIMEOUT_MS: u64 = 1000;
    let bound = Duration::from_millis(TIMEOUT_MS + 2500);
    let idp = Idp::start(IdpOptions::default());
    let token = idp.token();
    idp.set_mode("jwks", "slow", 3000);
    let proxy = Proxy::start(
        "keys-slow",
        &jwks_configuration(&idp, &json!({"timeout_ms": TIMEOUT_MS})),
        idp_cluster(&idp),
        1,
    );
    let started = Instant::now();
    // Five at once at cold start, then one every 250 ms for 4 s.
    let mut answers = send_all(proxy.listener(), &vec![token.clone(); 5], 5);
    while started.elapsed() < Duration::from_secs(4) {
        answers.push(proxy.get(&token));
        thread::sleep(Duration::from_millis(250));
    }
    for (response, elapsed) in &answers {
        assert_keys_unavailable(response);
        assert!(*elapsed < bound, "answered after {elapsed:?}");
    }
    let slowest = answers.iter().map(|(_, elapsed)| *elapsed).max().unwrap();
    // Each failure is a call Envoy timed out.
    let (failures, timeouts) = settled(|| {
        (
            proxy.fetch_failures(),
            proxy.envoy.stat("cluster.idp.upstream_rq_timeout"),
        )
    });
    let timeouts = timeouts.unwrap();
    assert!(timeouts >= 1);
    assert_eq!(
        failures,
        BTreeMap::from([(TIMEOUT_FAILURE.to_owned(), timeouts)])
    );
    assert!(idp_fetches(&idp).0 >= timeouts);
    assert_eq!(proxy.counter("allowed"), 0);
    assert_eq!(
        proxy.counter("denied.keys_unavailable"),
        answers.len() as u64
    );

    idp.set_mode("jwks", "normal", 0);
    // The next retry (backoff) succeeds. Until every worker has the keys (they adopt the
    // fetching worker's on their next 200 ms tick), requests still get the 503.
    let recovered = wait_until(
        "keys after the IdP is fast again",
        Duration::from_secs(12),
        || {
            let (response, _) = proxy.get(&token);
            if response.status == 200 {
                assert_allowed(&response);
                true
            } else {
                assert_keys_unavailable(&response);
                false
            }
        },
    );
    assert_eq!(proxy.counter("jwks.fetch_success"), 1);
    assert_eq!(proxy.counter("allowed"), 1);
    eprintln!(
        "slow idp: {} requests all 503, slowest {slowest:?} (bound {bound:?}); {timeouts} \
         timed-out fetch(es); keys {recovered:?} after the IdP was fast again",
        answers.len()
    );
}

/// The IdP serves garbage (200, not JSON) after the keys were fetched: the refetch fails as
/// `malformed`, the previous keys stay in force.
#[test]
fn garbage_jwks_keeps_previous_keys() {
    let idp = Idp::start(IdpOptions::default());
    let (proxy, token) = warmed_up(&idp, "keys-garbage");

    idp.set_mode("jwks", "garbage", 0);
    let unknown_kid_wait = unknown_kid_after_failed_refetch(&proxy, &token, "not-published");
    // Every refetch is malformed.
    let (failures, jwks) = settled(|| (proxy.fetch_failures(), idp_fetches(&idp).0));
    let malformed = failures.get("malformed").copied().unwrap_or(0);
    assert!(malformed >= 1, "{failures:?}");
    assert_eq!(
        failures,
        BTreeMap::from([("malformed".to_owned(), malformed)])
    );
    assert_eq!(jwks, 1 + malformed, "JWKS requests at the IdP");
    assert_eq!(proxy.counter("jwks.fetch_success"), 1);
    assert_eq!(proxy.counter("allowed"), 6);
    eprintln!(
        "garbage: {malformed} malformed fetch(es); the unknown kid was answered in {unknown_kid_wait:?}"
    );
}

/// Four workers (`--concurrency 4`) and many requests: one worker fetches (discovery, then the
/// JWKS), the others adopt its keys through shared data.
#[test]
fn four_workers_fetch_once_and_adopt() {
    const REQUESTS: usize = 10_000;
    let idp = Idp::start(IdpOptions::default());
    let token = idp.token();
    let proxy = Proxy::start(
        "keys-workers",
        &discovery_configuration(&idp, &json!({})),
        idp_cluster(&idp),
        4,
    );
    let tokens = vec![token; REQUESTS];
    let started = Instant::now();
    let answers = send_all(proxy.listener(), &tokens, 4);
    let duration = started.elapsed();
    let statuses = answers
        .iter()
        .fold(BTreeMap::new(), |mut statuses, (response, _)| {
            *statuses.entry(response.status).or_insert(0) += 1;
            statuses
        });
    assert_eq!(statuses, BTreeMap::from([(200, REQUESTS)]));
    assert_allowed(&answers[REQUESTS - 1].0);
    assert_eq!(idp_fetches(&idp), (1, 1));
    assert_eq!(proxy.counter("jwks.fetch_success"), 1);
    assert_eq!(proxy.counter("allowed"), REQUESTS as u64);
    assert_eq!(proxy.fetch_failures(), BTreeMap::new());
    let adopted = proxy.counter("jwks.adopted_from_other_worker");
    assert!(adopted >= 1);
    eprintln!(
        "4 workers: {REQUESTS} requests in {duration:?}; adopted_from_other_worker = {adopted}"
    );
}

// ----- introspection ---------------------------------------------------------------------------

/// The resource whose tokens the IdP issues opaque (see `tests/idp/server.mjs`).
const OPAQUE_RESOURCE: &str = "urn:opaque:orders";

/// One provider of opaque tokens, vouched for by the IdP's introspection endpoint alone; the
/// answer's `client_id` becomes `x-jwt-sub`, which [`assert_allowed`] checks.
fn introspection_configuration(idp: &Idp, cache_seconds: u64) -> Value {
    json!({"providers": [{
        "name": PROVIDER,
        "issuer": idp.issuer,
        "audiences": [OPAQUE_RESOURCE],
        "introspection": {
            "endpoint": idp.introspection_endpoint(),
            "upstream": CLUSTER,
            "client_id": idp::CLIENT_ID,
            "client_secret": idp::CLIENT_SECRET,
            "cache_seconds": cache_seconds,
            "negative_cache_seconds": 1
        },
        "claims_to_headers": [{"claim": ["client_id"], "header": "x-jwt-sub"}]
    }]})
}

/// The IdP's opaque tokens are introspected over TLS, one call for many requests; once the
/// token is revoked at the IdP it is refused `401 token_inactive` within `cache_seconds`; a
/// token the IdP never issued is inactive; an IdP that cannot answer gets `503`, never `200`.
#[test]
fn opaque_tokens_are_introspected_and_refused_once_revoked() {
    let idp = Idp::start(IdpOptions::default());
    let token = idp.token_for(OPAQUE_RESOURCE);
    assert_eq!(token.matches('.').count(), 0, "an opaque token: {token}");
    assert_eq!(idp.introspect(&token)["active"], true);
    let cache_seconds = 2;
    let proxy = Proxy::start(
        "introspection",
        &introspection_configuration(&idp, cache_seconds),
        idp_cluster(&idp),
        1,
    );
    idp.reset_stats();

    // Six requests at once with one token: one introspection call, joined or remembered.
    let tokens = vec![token.clone(); 6];
    for (response, _) in send_all(proxy.listener(), &tokens, 6) {
        assert_allowed(&response);
    }
    assert_eq!(idp.introspection_requests(), 1, "one call for the token");
    assert_eq!(proxy.counter("introspection.active"), 1);
    assert_eq!(proxy.counter("allowed"), 6);

    // Revoked at the IdP: refused once the remembered answer is older than cache_seconds.
    idp.revoke(&token);
    let revoked_at = Instant::now();
    let refused_after = loop {
        let (response, _) = proxy.get(&token);
        if response.status != 200 {
            assert_denied(&response, "token_inactive");
            break revoked_at.elapsed();
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(cache_seconds + 2),
            "a revoked token still accepted {:?} after revocation",
            revoked_at.elapsed()
        );
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(proxy.counter("introspection.inactive"), 1);
    // The inactive answer is remembered: a retry costs no call.
    let calls = idp.introspection_requests();
    assert_denied(&proxy.get(&token).0, "token_inactive");
    assert_eq!(idp.introspection_requests(), calls);

    // A token the IdP never issued, and a JWT (the only provider takes opaque tokens).
    assert_denied(&proxy.get("never-issued-token").0, "token_inactive");
    assert_denied(&proxy.get(&idp.token()).0, "unknown_issuer");

    // The IdP drops introspection calls: a fresh token cannot be vouched for.
    idp.set_mode("introspection", "down", 0);
    let fresh = idp.token_for(OPAQUE_RESOURCE);
    let (response, took) = proxy.get(&fresh);
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({
            "error": "temporarily_unavailable",
            "reason": "introspection_unavailable",
            "description": "the identity provider cannot say whether the token is active"
        })
    );
    assert_eq!(response.header("retry-after"), Some("5"));
    assert!(proxy.counter("introspection.failure") >= 1);
    // Nothing is remembered of a failure: back up, the same token is allowed.
    idp.set_mode("introspection", "normal", 0);
    assert_allowed(&proxy.get(&fresh).0);
    eprintln!(
        "introspection: revoked token refused after {refused_after:?} (cache_seconds \
         {cache_seconds}); the IdP-down answer took {took:?}"
    );
}
