//! End-to-end tests: the built filter (`.wasm`) in a real Envoy (1.40, V8), in front of an
//! in-process echo upstream, driven over loopback HTTP/1.1.
//!
//! Each `#[test]` starts one Envoy and runs many scenarios against it, since start-up costs
//! about a second and the tests run in parallel. Every scenario asserts the whole outcome: the
//! status, the exact `WWW-Authenticate` challenge and JSON body, what the upstream received (or
//! that it received nothing), which of the filter's counters moved, and the access-log line
//! written from the filter state.
//!
//! Needs `ENVOY_BIN` (default `.venv/bin/envoy`) and `WASM_JWT_AUTHN_WASM` (default the release
//! artifact); `make test` provides both. Without them the tests fail, they never skip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::envoy::{AuthFilter, Envoy, Options};
use crate::stand::Stand;
use crate::support::{b64url, sign_raw, TestKey};
use crate::upstream::EchoUpstream;
use crate::{envoy, http, stand, support};

const AUDIENCE: &str = "api://e2e";
const MAIN_ISSUER: &str = "https://idp.e2e.test";
const ES_ONLY_ISSUER: &str = "https://es-only.e2e.test";
const HEADER_ISSUER: &str = "https://header.e2e.test";
const QUERY_ISSUER: &str = "https://query.e2e.test";
const COOKIE_ISSUER: &str = "https://cookie.e2e.test";

const ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

fn now() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(elapsed.as_secs()).unwrap()
}

/// Valid claims: issued now, expiring in an hour, for [`AUDIENCE`].
fn claims(issuer: &str, subject: &str) -> Value {
    let now = now();
    json!({"iss": issuer, "aud": AUDIENCE, "sub": subject, "exp": now + 3600, "iat": now})
}

/// A token for `claims` signed under `alg` by its usual fixture key (header `alg`, `typ`, `kid`).
fn signed(alg: &str, claims: &Value) -> String {
    support::token(alg, TestKey::for_algorithm(alg), claims)
}

/// A token with exactly this header, signed by `key` under `alg`.
fn signed_with_header(alg: &str, key: TestKey, header: &Value, claims: &Value) -> String {
    sign_raw(alg, key, &header.to_string(), &claims.to_string())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The token with one bit of its signature flipped, still canonical base64url.
fn flip_signature_bit(token: &str) -> String {
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let mut signature = decode_segment(signature);
    signature[0] ^= 0x01;
    format!("{signing_input}.{}", b64url(&signature))
}

fn decode_segment(segment: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .unwrap()
}

/// Envoy with two providers and an anonymous health check: every algorithm, every rejection.
///
/// - `main`: RSA-2048, P-256, P-384 and Ed25519 keys, all algorithms, lifetime at most 2 h,
///   `sub` → `x-jwt-sub` and `realm_access.roles` → `x-jwt-roles`;
/// - `es_only`: an RSA and a P-256 key, but only ES256 allowed; the only provider on `/es-only/`.
///
/// No rule matches other paths: a valid token from any provider is required there.
fn verifying_configuration() -> Value {
    json!({
        "providers": [
            {
                "name": "main",
                "issuer": MAIN_ISSUER,
                "audiences": [AUDIENCE],
                "jwks": {"inline": support::jwks(&[TestKey::Rsa2048, TestKey::P256, TestKey::P384, TestKey::Ed25519])},
                "max_lifetime_seconds": 7200,
                "claims_to_headers": [
                    {"claim": ["sub"], "header": "x-jwt-sub"},
                    {"claim": ["realm_access", "roles"], "header": "x-jwt-roles"}
                ]
            },
            {
                "name": "es_only",
                "issuer": ES_ONLY_ISSUER,
                "audiences": [AUDIENCE],
                "algorithms": ["ES256"],
                "jwks": {"inline": support::jwks(&[TestKey::Rsa2048, TestKey::P256])},
                "claims_to_headers": [{"claim": ["sub"], "header": "x-jwt-sub"}]
            }
        ],
        "rules": [
            {"match": {"path_prefix": "/healthz"}, "allow": "anonymous"},
            {"match": {"path_prefix": "/es-only/"}, "providers": ["es_only"]}
        ]
    })
}

#[test]
fn tokens_are_verified_and_refused_in_envoy() {
    let stand = Stand::start("verify", &verifying_configuration());

    stand.scenario("every_algorithm_is_accepted", || {
        let allowed_before = stand.envoy.counter("allowed");
        for alg in ALGORITHMS {
            let subject = format!("user-{alg}");
            let token = signed(alg, &claims(MAIN_ISSUER, &subject));
            let authorization = bearer(&token);
            let exchange = stand.get(
                &format!("/orders/{alg}"),
                &[("authorization", &authorization)],
            );
            let received = exchange.allowed(&subject);
            assert_eq!(received.path, format!("/orders/{alg}"));
            // forward_token defaults to true: the upstream sees the token as sent.
            assert_eq!(
                received.header("authorization"),
                Some(authorization.as_str())
            );
            assert_eq!(received.header("x-jwt-sub"), Some(subject.as_str()));
            assert_eq!(
                received.header("x-jwt-roles"),
                None,
                "{alg}: no roles claim"
            );
        }
        assert_eq!(
            stand.envoy.counter("allowed"),
            allowed_before + 9,
            "wasmcustom.wasm_jwt_authn.allowed"
        );
    });

    stand.scenario("nested_array_claim_becomes_a_header", || {
        let mut claims = claims(MAIN_ISSUER, "alice");
        claims["realm_access"] = json!({"roles": ["admin", "viewer"]});
        let authorization = bearer(&signed("ES256", &claims));
        let received = stand
            .get("/orders", &[("authorization", &authorization)])
            .allowed("alice");
        assert_eq!(received.header("x-jwt-roles"), Some("admin,viewer"));
    });

    stand.scenario("bearer_scheme_is_case_insensitive", || {
        let token = signed("ES256", &claims(MAIN_ISSUER, "alice"));
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let authorization = format!("{scheme} {token}");
            let received = stand
                .get("/orders", &[("authorization", &authorization)])
                .allowed("alice");
            assert_eq!(
                received.header("authorization"),
                Some(authorization.as_str())
            );
        }
    });

    stand.scenario("missing_token", || {
        stand.get("/orders", &[]).denied("missing_token");
    });

    stand.scenario("request_with_a_body", || {
        // The filter decides on the headers; a denial is sent while the body is still pending.
        let body = br#"{"item":"book","quantity":2}"#;
        stand
            .send(
                "POST",
                "/orders",
                &[("content-type", "application/json")],
                body,
            )
            .denied("missing_token");
        let authorization = bearer(&signed("ES256", &claims(MAIN_ISSUER, "alice")));
        let received = stand
            .send(
                "POST",
                "/orders",
                &[("authorization", &authorization)],
                body,
            )
            .allowed("alice");
        assert_eq!(received.method, "POST");
        assert_eq!(received.body, body);
    });

    stand.scenario("other_auth_scheme_is_no_token", || {
        stand
            .get("/orders", &[("authorization", "Basic YWxpY2U6c2VjcmV0")])
            .denied("missing_token");
    });

    stand.scenario(
        "anonymous_route_needs_no_token_and_drops_spoofed_identity",
        || {
            let received = stand
                .get(
                    "/healthz",
                    &[("x-jwt-sub", "mallory"), ("x-jwt-roles", "admin")],
                )
                .allowed_anonymously();
            assert_eq!(received.path, "/healthz");
            assert!(
                received.header_values("x-jwt-sub").is_empty(),
                "{received:?}"
            );
            assert!(
                received.header_values("x-jwt-roles").is_empty(),
                "{received:?}"
            );
        },
    );

    stand.scenario("authenticated_route_replaces_spoofed_identity", || {
        let authorization = bearer(&signed("RS256", &claims(MAIN_ISSUER, "alice")));
        let received = stand
            .get(
                "/orders",
                &[
                    ("x-jwt-sub", "mallory"),
                    ("authorization", &authorization),
                    ("x-jwt-roles", "admin"),
                ],
            )
            .allowed("alice");
        assert_eq!(received.header_values("x-jwt-sub"), ["alice"]);
        assert!(
            received.header_values("x-jwt-roles").is_empty(),
            "{received:?}"
        );
    });

    stand.scenario("dot_segments_cannot_escape_the_anonymous_route", || {
        // Envoy normalises /healthz/../orders to /orders before the filter sees it.
        stand.get("/healthz/../orders", &[]).denied("missing_token");
        stand
            .get("//healthz/..//orders", &[])
            .denied("missing_token");
    });

    stand.scenario("anonymous_prefix_does_not_open_sibling_paths", || {
        stand.get("/healthzadmin", &[]).denied("missing_token");
        stand
            .get("/healthz-internal/secrets", &[])
            .denied("missing_token");
    });

    stand.scenario("escaped_slashes_are_redirected_before_the_filter", || {
        let exchange = stand.get("/healthz%2F..%2Forders", &[]);
        assert_eq!(
            exchange.response.status,
            307,
            "{}",
            exchange.response.text()
        );
        assert_eq!(exchange.response.header("location"), Some("/orders"));
        assert!(exchange.upstream.is_empty());
        exchange.counters_moved(&[]);
        stand.expect_log(&exchange.id, 307, "-", "-", "-");
    });

    stand.scenario("unmatched_path_accepts_a_token_from_any_provider", || {
        let authorization = bearer(&signed("ES256", &claims(ES_ONLY_ISSUER, "bob")));
        let received = stand
            .get("/orders", &[("authorization", &authorization)])
            .allowed("bob");
        assert_eq!(received.header("x-jwt-sub"), Some("bob"));
    });

    stand.scenario("rule_accepts_only_its_providers", || {
        let es_only = bearer(&signed("ES256", &claims(ES_ONLY_ISSUER, "bob")));
        stand
            .get("/es-only/orders", &[("authorization", &es_only)])
            .allowed("bob");
        let main = bearer(&signed("ES256", &claims(MAIN_ISSUER, "alice")));
        stand
            .get("/es-only/orders", &[("authorization", &main)])
            .denied("issuer_not_accepted");
    });

    let now = now();
    let main_with = |changes: Value| {
        let mut claims = claims(MAIN_ISSUER, "alice");
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    };
    let refused = |name: &str, token: String, reason: &str| {
        stand.scenario(name, || {
            stand
                .get("/orders", &[("authorization", &bearer(&token))])
                .denied(reason);
        });
    };

    refused(
        "expired",
        signed(
            "RS256",
            &main_with(json!({"exp": now - 3600, "iat": now - 5400})),
        ),
        "expired",
    );
    refused(
        "not_yet_valid",
        signed("RS256", &main_with(json!({"nbf": now + 3600}))),
        "not_yet_valid",
    );
    refused(
        "issued_in_future",
        signed(
            "RS256",
            &main_with(json!({"iat": now + 3600, "exp": now + 5400})),
        ),
        "issued_in_future",
    );
    stand.scenario("missing_exp", || {
        let token = signed("RS256", &main_with(json!({"exp": null})));
        stand
            .get("/orders", &[("authorization", &bearer(&token))])
            .denied_for_claim("missing_claim", "exp");
    });
    stand.scenario("exp_is_not_a_number", || {
        let token = signed("RS256", &main_with(json!({"exp": "tomorrow"})));
        stand
            .get("/orders", &[("authorization", &bearer(&token))])
            .denied_for_claim("invalid_claim", "exp");
    });
    refused(
        "audience_mismatch",
        signed(
            "RS256",
            &main_with(json!({"aud": ["api://other", "api://another"]})),
        ),
        "audience_mismatch",
    );
    refused(
        "unknown_issuer",
        signed("RS256", &main_with(json!({"iss": "https://evil.test"}))),
        "unknown_issuer",
    );
    refused(
        "lifetime_too_long",
        signed("RS256", &main_with(json!({"exp": now + 86_400}))),
        "lifetime_too_long",
    );
    for alg in ["RS256", "PS256", "ES256", "ES384", "EdDSA"] {
        refused(
            &format!("flipped_signature_bit_{alg}"),
            flip_signature_bit(&signed(alg, &main_with(json!({})))),
            "bad_signature",
        );
    }
    refused(
        "signed_by_another_key_under_a_trusted_kid",
        signed_with_header(
            "ES256",
            TestKey::P256Other,
            &json!({"alg": "ES256", "typ": "JWT", "kid": TestKey::P256.kid()}),
            &main_with(json!({})),
        ),
        "bad_signature",
    );
    refused(
        "unknown_key_id",
        signed_with_header(
            "RS256",
            TestKey::Rsa2048,
            &json!({"alg": "RS256", "typ": "JWT", "kid": "rotated-away"}),
            &main_with(json!({})),
        ),
        "unknown_key_id",
    );
    stand.scenario("algorithm_not_allowed", || {
        // es_only has the RSA key, but allows only ES256.
        let token = signed("RS256", &claims(ES_ONLY_ISSUER, "bob"));
        stand
            .get("/es-only/orders", &[("authorization", &bearer(&token))])
            .denied("algorithm_not_allowed");
    });
    stand.scenario("no_compatible_key", || {
        // ES256 is allowed, but the kid names the RSA key.
        let token = signed_with_header(
            "ES256",
            TestKey::P256,
            &json!({"alg": "ES256", "typ": "JWT", "kid": TestKey::Rsa2048.kid()}),
            &claims(ES_ONLY_ISSUER, "bob"),
        );
        stand
            .get("/es-only/orders", &[("authorization", &bearer(&token))])
            .denied("no_compatible_key");
    });
    let claims_text = main_with(json!({})).to_string();
    refused(
        "alg_none",
        format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT"}"#),
            b64url(claims_text.as_bytes())
        ),
        "unsupported_algorithm",
    );
    refused(
        "alg_hs256",
        format!(
            "{}.{}.{}",
            b64url(br#"{"alg":"HS256","typ":"JWT","kid":"rsa-2048"}"#),
            b64url(claims_text.as_bytes()),
            b64url(&[7; 32])
        ),
        "unsupported_algorithm",
    );
    // Envoy's own jwt_authn accepts a signature with a stray trailing character; we do not:
    // `B` sets unused bits, so the segment is not the canonical encoding of any bytes.
    refused(
        "extra_signature_character",
        format!("{}B", signed("ES256", &main_with(json!({})))),
        "non_canonical_base64",
    );
    refused(
        "padded_signature",
        format!("{}==", signed("ES256", &main_with(json!({})))),
        "non_canonical_base64",
    );
    refused(
        "two_segments",
        signed("ES256", &main_with(json!({})))
            .rsplit_once('.')
            .unwrap()
            .0
            .to_owned(),
        "malformed_token",
    );
    let sub_twice = format!(
        r#"{{"iss":"{MAIN_ISSUER}","aud":"{AUDIENCE}","sub":"alice","sub":"admin","exp":{},"iat":{now}}}"#,
        now + 3600
    );
    refused(
        "duplicate_json_member",
        sign_raw(
            "ES256",
            TestKey::P256,
            r#"{"alg":"ES256","typ":"JWT","kid":"p256"}"#,
            &sub_twice,
        ),
        "duplicate_json_member",
    );
    refused(
        "critical_header",
        signed_with_header(
            "ES256",
            TestKey::P256,
            &json!({"alg": "ES256", "typ": "JWT", "kid": "p256", "crit": ["exp"], "exp": now + 60}),
            &main_with(json!({})),
        ),
        "critical_header",
    );
    refused(
        "b64_header",
        signed_with_header(
            "ES256",
            TestKey::P256,
            &json!({"alg": "ES256", "kid": "p256", "b64": false}),
            &main_with(json!({})),
        ),
        "unencoded_payload",
    );
    refused(
        "kid_is_not_a_string",
        signed_with_header(
            "ES256",
            TestKey::P256,
            &json!({"alg": "ES256", "kid": 256}),
            &main_with(json!({})),
        ),
        "malformed_header",
    );
    refused(
        "payload_is_not_json",
        sign_raw(
            "ES256",
            TestKey::P256,
            r#"{"alg":"ES256","typ":"JWT","kid":"p256"}"#,
            "not json",
        ),
        "malformed_json",
    );
    refused(
        "token_type_not_allowed",
        signed_with_header(
            "ES256",
            TestKey::P256,
            &json!({"alg": "ES256", "typ": "dpop+jwt", "kid": "p256"}),
            &main_with(json!({})),
        ),
        "token_type_not_allowed",
    );
    refused(
        "token_too_large",
        // Correctly signed, but over the 16 KiB default `max_token_bytes`.
        signed(
            "ES256",
            &main_with(json!({"padding": "x".repeat(17 * 1024)})),
        ),
        "token_too_large",
    );
    stand.scenario("two_authorization_headers", || {
        // Envoy joins repeated Authorization headers into one value ("Bearer a,Bearer b"); the
        // filter must still see two credentials, not one five-segment token.
        let first = bearer(&signed("ES256", &claims(MAIN_ISSUER, "alice")));
        let second = bearer(&signed("ES256", &claims(MAIN_ISSUER, "mallory")));
        stand
            .get(
                "/orders",
                &[("authorization", &first), ("authorization", &second)],
            )
            .denied("multiple_tokens");
    });

    stand.finish();
}

/// Envoy whose providers do not forward tokens, one per token source.
fn stripping_configuration() -> Value {
    let provider = |name: &str, issuer: &str, sources: Value| {
        json!({
            "name": name,
            "issuer": issuer,
            "audiences": [AUDIENCE],
            "jwks": {"inline": support::jwks(&[TestKey::P256])},
            "token_sources": sources,
            "forward_token": false,
            "claims_to_headers": [{"claim": ["sub"], "header": "x-jwt-sub"}],
            "payload_header": "x-jwt-payload"
        })
    };
    json!({
        "providers": [
            provider("header", HEADER_ISSUER, json!([{"header": "authorization", "prefix": "Bearer "}])),
            provider("query", QUERY_ISSUER, json!([{"query": "access_token"}])),
            provider("cookie", COOKIE_ISSUER, json!([{"cookie": "session"}]))
        ],
        "rules": [{"match": {"path_prefix": "/query-only"}, "providers": ["query"]}]
    })
}

#[test]
fn tokens_are_found_in_every_source_and_stripped_when_not_forwarded() {
    // Escaped slashes reach the filter here, which must refuse the path itself.
    let options = Options {
        escaped_slashes: envoy::EscapedSlashes::KeepUnchanged,
        ..Options::default()
    };
    let stand = Stand::start_with("strip", &stripping_configuration(), &options);

    stand.scenario("header_token_is_stripped", || {
        let token = signed("ES256", &claims(HEADER_ISSUER, "alice"));
        let received = stand
            .get(
                "/orders",
                &[
                    ("authorization", &bearer(&token)),
                    ("x-jwt-sub", "mallory"),
                    ("x-jwt-payload", "e30"),
                ],
            )
            .allowed("alice");
        assert!(
            received.header_values("authorization").is_empty(),
            "{received:?}"
        );
        assert_eq!(received.header_values("x-jwt-sub"), ["alice"]);
        // payload_header: the verified payload segment, as it came.
        let payload = token.split('.').nth(1).unwrap();
        assert_eq!(received.header_values("x-jwt-payload"), [payload]);
    });

    stand.scenario("query_token_is_stripped_from_the_path", || {
        let token = signed("ES256", &claims(QUERY_ISSUER, "carol"));
        let received = stand
            .get(
                &format!("/orders?page=2&access_token={token}&sort=asc"),
                &[],
            )
            .allowed("carol");
        assert_eq!(received.path, "/orders?page=2&sort=asc");
        assert_eq!(received.header("x-jwt-sub"), Some("carol"));
        let received = stand
            .get(&format!("/orders?access_token={token}"), &[])
            .allowed("carol");
        assert_eq!(received.path, "/orders");
    });

    stand.scenario("cookie_token_is_stripped_from_the_cookies", || {
        let token = signed("ES256", &claims(COOKIE_ISSUER, "dave"));
        let cookies = format!("theme=dark; session={token}; lang=en");
        let received = stand
            .get("/orders", &[("cookie", &cookies)])
            .allowed("dave");
        assert_eq!(received.header("cookie"), Some("theme=dark; lang=en"));
        let only = format!("session={token}");
        let received = stand.get("/orders", &[("cookie", &only)]).allowed("dave");
        assert!(received.header_values("cookie").is_empty(), "{received:?}");
    });

    stand.scenario("tokens_in_header_and_query", || {
        let header = signed("ES256", &claims(HEADER_ISSUER, "alice"));
        let query = signed("ES256", &claims(QUERY_ISSUER, "carol"));
        stand
            .get(
                &format!("/orders?access_token={query}"),
                &[("authorization", &bearer(&header))],
            )
            .denied("multiple_tokens");
    });

    stand.scenario("forged_second_token_outside_the_routes_sources", || {
        // The route accepts only query tokens, yet a bearer header next to a valid one must not
        // ride along to the upstream unverified.
        let query = signed("ES256", &claims(QUERY_ISSUER, "carol"));
        stand
            .get(
                &format!("/query-only?access_token={query}"),
                &[("authorization", "Bearer forged.token.value")],
            )
            .denied("multiple_tokens");
    });

    stand.scenario("token_in_another_providers_source", || {
        // A header-provider token must come in the header, not the query string.
        let token = signed("ES256", &claims(HEADER_ISSUER, "alice"));
        stand
            .get(&format!("/orders?access_token={token}"), &[])
            .denied("wrong_token_source");
    });

    stand.scenario("escaped_slash_in_path", || {
        let token = signed("ES256", &claims(HEADER_ISSUER, "alice"));
        stand
            .get(
                "/orders%2F..%2Fadmin",
                &[("authorization", &bearer(&token))],
            )
            .denied("unnormalized_path");
    });

    stand.finish();
}

/// Rules that require scopes (`/admin/`) and claim conditions (`/reports/`) of `main`'s tokens.
fn requiring_configuration() -> Value {
    let mut configuration = verifying_configuration();
    configuration["rules"] = json!([
        {"name": "admin", "match": {"path_prefix": "/admin/"}, "providers": ["main"],
         "require": {"scopes": {"all": ["admin:read", "admin:write"]}}},
        {"name": "reports", "match": {"path_prefix": "/reports/"}, "providers": ["main"],
         "require": {"claims": {"any": [
             {"claim": ["realm_access", "roles"], "contains": "auditor"},
             {"claim": ["https://e2e.test/department"], "equals": "finance"}
         ]}}},
        {"name": "payments", "match": {"path_prefix": "/payments/"}, "providers": ["main"],
         "require": {"acr": ["urn:e2e:mfa"], "max_auth_age_seconds": 300}},
        {"name": "ops", "match": {"path_prefix": "/ops/"}, "providers": ["main"],
         "require": {"roles": {"any": ["sre"]}}},
        {"name": "loopback", "match": {"path_prefix": "/loopback/"}, "allow": "anonymous",
         "require": {"source_ips": {"any": ["127.0.0.0/8", "::1"]}}},
        {"name": "intranet", "match": {"path_prefix": "/intranet/"}, "allow": "anonymous",
         "require": {"source_ips": {"any": ["10.0.0.0/8"]}}},
        {"name": "later", "match": {"path_prefix": "/later/"}, "providers": ["main"],
         "require": {"time": {"hours": closed_hours()}}},
        {"name": "no-legacy", "match": {"path_prefix": "/legacy/"}, "deny": {}},
        {"name": "no-suspended", "deny": {"claims": {"all": [
            {"claim": ["status"], "equals": "suspended"}]}}}
    ]);
    configuration["providers"][0]["role_claims"] = json!([["groups"]]);
    configuration
}

/// An hour of the day (UTC) that begins two hours from now: a window closed for this test.
fn closed_hours() -> Value {
    let hour = (now().rem_euclid(86_400) / 3600 + 2) % 24;
    json!({"from": format!("{hour:02}:00"), "to": format!("{:02}:00", (hour + 1) % 24)})
}

#[test]
fn rule_requirements_answer_403_in_envoy() {
    // The client's connection, not its X-Forwarded-For, is `source.address`.
    let options = Options {
        use_remote_address: true,
        ..Options::default()
    };
    let stand = Stand::start_with("require", &requiring_configuration(), &options);
    let with = |subject: &str, extra: Value| {
        let mut claims = claims(MAIN_ISSUER, subject);
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        signed("RS256", &claims)
    };

    stand.scenario("missing_scope_is_403_insufficient_scope", || {
        let reader = with("reader", json!({"scope": "admin:read"}));
        let challenge = "Bearer realm=\"wasm-jwt-authn\", error=\"insufficient_scope\", \
             error_description=\"the token lacks a scope this route requires\", \
             scope=\"admin:read admin:write\"";
        for _ in 0..2 {
            // The second time from the token cache: the same answer.
            stand
                .get("/admin/users", &[("authorization", &bearer(&reader))])
                .forbidden(
                    "insufficient_scope",
                    "admin",
                    Some(challenge),
                    Some(("scope", json!("admin:read admin:write"))),
                );
        }
        // The same token is enough where no scope is required.
        let exchange = stand.get("/orders", &[("authorization", &bearer(&reader))]);
        exchange.allowed("reader");
        exchange.decided_by("default");
    });

    stand.scenario("scopes_from_scope_and_scp_together", || {
        let admin = with(
            "admin",
            json!({"scope": "admin:read", "scp": ["admin:write"]}),
        );
        let exchange = stand.get("/admin/users", &[("authorization", &bearer(&admin))]);
        exchange.allowed("admin");
        exchange.decided_by("admin");
    });

    stand.scenario("step_up_for_stale_or_weak_authentication", || {
        let stale = with(
            "payer",
            json!({"acr": "urn:e2e:mfa", "auth_time": now() - 3600}),
        );
        let weak = with("payer", json!({"acr": "urn:e2e:pwd", "auth_time": now()}));
        for (token, reason, description) in [
            (
                &stale,
                "authentication_too_old",
                "the user must authenticate again: the last authentication is too old",
            ),
            (
                &weak,
                "authentication_too_weak",
                "the user must authenticate again with a stronger method",
            ),
        ] {
            let exchange = stand.get("/payments/1", &[("authorization", &bearer(token))]);
            let challenge = format!(
                "Bearer realm=\"wasm-jwt-authn\", error=\"insufficient_user_authentication\", \
                 error_description=\"{description}\", acr_values=\"urn:e2e:mfa\", max_age=300"
            );
            exchange.stepped_up(
                reason,
                "payments",
                &challenge,
                &json!({"acr_values": "urn:e2e:mfa", "max_age": 300}),
            );
        }
        let fresh = with(
            "payer",
            json!({"acr": "urn:e2e:mfa", "auth_time": now() - 10}),
        );
        stand
            .get("/payments/1", &[("authorization", &bearer(&fresh))])
            .allowed("payer");
    });

    stand.scenario("roles_at_the_providers_role_claims", || {
        let sre = with("sre", json!({"groups": ["sre", "dev"]}));
        stand
            .get("/ops/deploy", &[("authorization", &bearer(&sre))])
            .allowed("sre");
        let top_level = with("dev", json!({"roles": ["sre"]}));
        stand
            .get("/ops/deploy", &[("authorization", &bearer(&top_level))])
            .forbidden(
                "insufficient_role",
                "ops",
                None,
                Some(("roles", json!(["sre"]))),
            );
    });

    stand.scenario("source_address_and_time_window", || {
        // The test client connects from loopback: Envoy's `source.address`.
        let exchange = stand.get("/loopback/status", &[]);
        exchange.allowed_anonymously();
        exchange.decided_by("loopback");
        // A forwarded-for header does not make the client someone else.
        stand
            .get("/intranet/status", &[("x-forwarded-for", "10.1.2.3")])
            .forbidden("source_address_not_allowed", "intranet", None, None);
        let token = with("early", json!({}));
        stand
            .get("/later/report", &[("authorization", &bearer(&token))])
            .forbidden("outside_time_window", "later", None, None);
    });

    stand.scenario("deny_rules_win", || {
        stand
            .get("/legacy/api", &[])
            .forbidden("denied_by_rule", "no-legacy", None, None);
        let suspended = with(
            "suspended",
            json!({"status": "suspended", "scope": "admin:read admin:write"}),
        );
        for path in ["/orders", "/admin/users"] {
            stand
                .get(path, &[("authorization", &bearer(&suspended))])
                .forbidden("denied_by_rule", "no-suspended", None, None);
        }
    });

    stand.scenario("claim_conditions", || {
        let auditor = with("auditor", json!({"realm_access": {"roles": ["auditor"]}}));
        let finance = with("finance", json!({"https://e2e.test/department": "finance"}));
        let neither = with("intern", json!({"realm_access": {"roles": ["user"]}}));
        stand
            .get("/reports/q3", &[("authorization", &bearer(&auditor))])
            .allowed("auditor");
        stand
            .get("/reports/q3", &[("authorization", &bearer(&finance))])
            .allowed("finance");
        stand
            .get("/reports/q3", &[("authorization", &bearer(&neither))])
            .forbidden(
                "claim_condition_failed",
                "reports",
                None,
                Some(("claim", json!(["realm_access", "roles"]))),
            );
    });

    stand.finish();
}

#[test]
fn behind_a_trusted_proxy_the_client_address_comes_from_x_forwarded_for() {
    let configuration = json!({
        "providers": verifying_configuration()["providers"],
        "client_address": {"from": "x_forwarded_for", "trusted_hops": 1},
        "rules": [
            {"match": {"path_prefix": "/intranet/"}, "allow": "anonymous",
             "require": {"source_ips": {"any": ["10.0.0.0/8"], "not": ["10.66.0.0/16"]}}}
        ]
    });
    let stand = Stand::start("forwarded", &configuration);
    stand.scenario("the_entry_the_proxy_appended_decides", || {
        stand
            .get("/intranet/a", &[("x-forwarded-for", "192.0.2.1, 10.1.2.3")])
            .allowed_anonymously();
        for chain in ["10.1.2.3, 192.0.2.1", "10.66.0.9", "not-an-address"] {
            stand
                .get("/intranet/a", &[("x-forwarded-for", chain)])
                .forbidden("source_address_not_allowed", "rules[0]", None, None);
        }
        stand.get("/intranet/a", &[]).forbidden(
            "source_address_not_allowed",
            "rules[0]",
            None,
            None,
        );
    });
    stand.finish();
}

/// A reputation list fetched from a list server, refreshed while Envoy runs, shared by two
/// workers; and a list whose server is down, which refuses its route `503` and nothing else.
#[test]
fn a_remote_address_list_is_fetched_shared_and_refreshed_in_envoy() {
    let lists = EchoUpstream::start();
    lists.serve_document(
        "/drop.txt",
        "text/plain",
        "; reputation\n192.0.2.0/24 ; SBL1\n",
    );
    let configuration = json!({
        "providers": verifying_configuration()["providers"],
        "address_lists": [
            {"name": "reputation", "uri": "http://lists.e2e.test/drop.txt", "upstream": "lists",
             "allow_http": true, "refresh_seconds": 30},
            {"name": "partners", "uri": "http://down.e2e.test/partners.txt", "upstream": "down",
             "allow_http": true}
        ],
        "rules": [
            {"name": "reputation", "deny": {"source_ips": {"any_lists": ["reputation"]}}},
            {"name": "partner-feed", "match": {"path_prefix": "/partner/"}, "allow": "anonymous",
             "require": {"source_ips": {"any_lists": ["partners"]}}},
            {"name": "public", "match": {"path_prefix": "/public/"}, "allow": "anonymous"}
        ]
    });
    let options = Options {
        // The connection's peer (127.0.0.1) is the client address.
        use_remote_address: true,
        concurrency: 2,
        clusters: vec![
            envoy::loopback_cluster("lists", lists.port()),
            envoy::loopback_cluster("down", envoy::free_port()),
        ],
        ..Options::default()
    };
    let stand = Stand::start_with("address-lists", &configuration, &options);
    let list_fetches = || {
        lists
            .take()
            .iter()
            .filter(|request| request.path == "/drop.txt")
            .inspect(|request| {
                assert_eq!(request.method, "GET");
                assert_eq!(request.header("accept"), Some("text/plain"));
                assert_eq!(request.header("host"), Some("lists.e2e.test"));
            })
            .count()
    };
    stand.scenario("an_address_not_on_the_list_passes", || {
        let exchange = stand.get("/public/a", &[]);
        exchange.allowed_anonymously();
        exchange.decided_by("public");
    });
    stand.scenario("a_list_that_cannot_be_had_refuses_its_route_503", || {
        stand
            .get("/partner/feed", &[])
            .unavailable("address_list_unavailable", Some("partner-feed"));
    });
    stand.scenario("two_workers_fetch_the_list_once", || {
        assert_eq!(list_fetches(), 1, "one fetch for both workers");
        assert_eq!(stand.envoy.counter("address_lists.fetch_success"), 1);
        assert!(
            stand
                .envoy
                .counter("address_lists.fetch_failure.unreachable")
                >= 1
        );
    });
    stand.scenario("the_refreshed_list_denies_the_newly_listed_client", || {
        lists.serve_document(
            "/drop.txt",
            "text/plain",
            "; reputation\n192.0.2.0/24\n127.0.0.0/8 ; now listed\n",
        );
        let started = std::time::Instant::now();
        while stand.get("/public/a", &[]).response.status == 200 {
            assert!(
                started.elapsed() < Duration::from_secs(45),
                "the refresh (every 27 to 30 s) did not bring the new list"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        stand
            .get("/public/a", &[])
            .forbidden("denied_by_rule", "reputation", None, None);
        let token = signed("RS256", &claims(MAIN_ISSUER, "user-1"));
        stand
            .get("/orders", &[("authorization", &bearer(&token))])
            .forbidden("denied_by_rule", "reputation", None, None);
        assert_eq!(list_fetches(), 1, "one refresh for both workers");
        assert_eq!(stand.envoy.counter("address_lists.fetch_success"), 2);
        assert!(
            stand
                .envoy
                .counter("address_lists.adopted_from_other_worker")
                >= 2,
            "the worker that did not fetch adopted each list"
        );
    });
    stand.finish();
}

/// A provider that verifies JWTs with its keys and then asks its introspection endpoint
/// whether they are still active: the answer is what the endpoint serves, and a revoked token
/// is refused once the remembered "active" is older than `cache_seconds`.
#[test]
fn a_verified_jwt_is_refused_once_introspection_says_it_is_revoked() {
    let introspector = EchoUpstream::start();
    introspector.serve_document("/introspect", "application/json", r#"{"active":true}"#);
    let mut configuration = verifying_configuration();
    configuration["providers"][0]["allow_http"] = json!(true);
    configuration["providers"][0]["introspection"] = json!({
        "endpoint": "http://introspect.e2e.test/introspect", "upstream": "introspector",
        "client_id": "gateway", "client_secret": "s3cret",
        "cache_seconds": 1, "negative_cache_seconds": 1
    });
    let options = Options {
        clusters: vec![envoy::loopback_cluster("introspector", introspector.port())],
        ..Options::default()
    };
    let stand = Stand::start_with("jwt-introspection", &configuration, &options);
    let token = signed("RS256", &claims(MAIN_ISSUER, "user-1"));
    let authorization = bearer(&token);
    stand.scenario(
        "an_active_token_is_asked_about_once_then_remembered",
        || {
            stand
                .get("/orders", &[("authorization", &authorization)])
                .allowed("user-1");
            stand
                .get("/orders", &[("authorization", &authorization)])
                .allowed("user-1");
            let calls = introspector.take();
            assert_eq!(calls.len(), 1, "one introspection call: {calls:?}");
            let call = &calls[0];
            assert_eq!(
                (call.method.as_str(), call.path.as_str()),
                ("POST", "/introspect")
            );
            assert_eq!(call.header("host"), Some("introspect.e2e.test"));
            // RFC 6749 §2.3.1: Basic base64("gateway:s3cret").
            assert_eq!(
                call.header("authorization"),
                Some("Basic Z2F0ZXdheTpzM2NyZXQ=")
            );
            assert_eq!(
                call.header("content-type"),
                Some("application/x-www-form-urlencoded")
            );
            assert_eq!(
                String::from_utf8_lossy(&call.body),
                format!("token={token}&token_type_hint=access_token")
            );
            assert_eq!(stand.envoy.counter("introspection.active"), 1);
        },
    );
    stand.scenario("a_forged_token_is_refused_without_asking", || {
        let forged = flip_signature_bit(&token);
        stand
            .get("/orders", &[("authorization", &bearer(&forged))])
            .denied("bad_signature");
        assert!(introspector.take().is_empty());
    });
    stand.scenario("a_revoked_token_is_refused_after_cache_seconds", || {
        introspector.serve_document("/introspect", "application/json", r#"{"active":false}"#);
        // Past the remembered answer's second on the filter's whole-second clock.
        std::thread::sleep(Duration::from_millis(2_100));
        stand
            .get("/orders", &[("authorization", &authorization)])
            .denied("token_inactive");
        assert_eq!(introspector.take().len(), 1);
        assert_eq!(stand.envoy.counter("introspection.inactive"), 1);
    });
    stand.finish();
}

const DEVICE_ISSUER: &str = "https://device-trust.e2e.test";

#[test]
fn device_posture_in_envoy() {
    let mut configuration = verifying_configuration();
    configuration["providers"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": "device-trust",
            "issuer": DEVICE_ISSUER,
            "audiences": [AUDIENCE],
            "jwks": {"inline": support::jwks(&[TestKey::P256])},
            "token_sources": [{"header": "x-device-token"}],
            "claims_to_headers": [{"claim": ["compliant"], "header": "x-device-compliant"}]
        }));
    configuration["device"] = json!({
        "provider": "device-trust",
        "bind": {"device_claim": ["user"], "user_claim": ["sub"]}
    });
    configuration["rules"] = json!([
        {"name": "finance", "match": {"path_prefix": "/finance/"}, "providers": ["main"],
         "require": {"device": {"claims": {"all": [{"claim": ["compliant"], "equals": true}]}}}}
    ]);
    let stand = Stand::start("device", &configuration);
    let user = signed("RS256", &claims(MAIN_ISSUER, "alice"));
    let device = |changes: Value| {
        let mut claims = claims(DEVICE_ISSUER, "laptop-7");
        claims["user"] = json!("alice");
        claims["compliant"] = json!(true);
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        signed("ES256", &claims)
    };

    stand.scenario("a_compliant_device_of_the_user", || {
        let device = device(json!({}));
        let exchange = stand.get(
            "/finance/q3",
            &[
                ("authorization", &bearer(&user)),
                ("x-device-token", &device),
                ("x-device-compliant", "spoofed"),
            ],
        );
        let received = exchange.allowed("alice");
        exchange.decided_by("finance");
        assert_eq!(received.header_values("x-device-compliant"), ["true"]);
    });

    stand.scenario("no_other_or_noncompliant_device", || {
        stand
            .get("/finance/q3", &[("authorization", &bearer(&user))])
            .forbidden("device_token_missing", "finance", None, None);
        let someone_elses = device(json!({"user": "mallory"}));
        stand
            .get(
                "/finance/q3",
                &[
                    ("authorization", &bearer(&user)),
                    ("x-device-token", &someone_elses),
                ],
            )
            .forbidden("device_not_bound", "finance", None, None);
        let noncompliant = device(json!({"compliant": false}));
        stand
            .get(
                "/finance/q3",
                &[
                    ("authorization", &bearer(&user)),
                    ("x-device-token", &noncompliant),
                ],
            )
            .forbidden(
                "device_posture_failed",
                "finance",
                None,
                Some(("claim", json!(["compliant"]))),
            );
        let forged = flip_signature_bit(&device(json!({})));
        stand
            .get(
                "/finance/q3",
                &[
                    ("authorization", &bearer(&user)),
                    ("x-device-token", &forged),
                ],
            )
            .forbidden("device_token_invalid", "finance", None, None);
    });

    stand.finish();
}

/// OPA's Envoy policy primer, adapted only where it verified the JWT (see the file's header).
const ENVOY_PRIMER_POLICY: &str = include_str!("../fixtures/rego/envoy-primer.rego");

/// An opa-envoy object result: a custom denial for one region, headers for the upstream else.
const OBJECT_POLICY: &str = r#"package envoy.authz
import rego.v1
allow := {"allowed": false, "http_status": 451, "body": "unavailable here", "headers": {"x-policy": "legal"}} if {
    input.parsed_query.region[0] == "eu"
} else := {"allowed": true, "headers": {"x-policy": "ok"}}
"#;

#[test]
fn rego_policies_decide_in_envoy() {
    let configuration = json!({
        "providers": verifying_configuration()["providers"],
        "rules": [
            {"name": "people", "match": {"path_prefix": "/people"}, "providers": ["main"],
             "require": {"rego": {"policy": ENVOY_PRIMER_POLICY}}},
            {"name": "regional", "match": {"path_prefix": "/regional"}, "allow": "anonymous",
             "require": {"rego": {"policy": OBJECT_POLICY}}}
        ]
    });
    let options = Options {
        auth_filter: AuthFilter::WasmRego,
        ..Options::default()
    };
    let stand = Stand::start_with("rego", &configuration, &options);
    let token = |role: &str| {
        let mut claims = claims(MAIN_ISSUER, "alice");
        claims["role"] = json!(role);
        claims["nbf"] = json!(now() - 60);
        signed("RS256", &claims)
    };
    let rego_denied = |exchange: &stand::Exchange<'_>, status: u16, body: &str| {
        assert_eq!(
            exchange.response.status,
            status,
            "{}",
            exchange.response.text()
        );
        assert_eq!(exchange.response.text(), body);
        assert_eq!(exchange.response.header("cache-control"), Some("no-store"));
        assert!(
            exchange.upstream.is_empty(),
            "a denied request reached the upstream"
        );
        exchange.counters_moved(&["denied.rego_denied"]);
        stand.expect_log(&exchange.id, status, "deny", "-", "rego_denied");
    };

    stand.scenario("the_envoy_primer_policy_unchanged", || {
        for role in ["guest", "admin"] {
            let exchange = stand.get("/people/bob", &[("authorization", &bearer(&token(role)))]);
            exchange.allowed("alice");
            exchange.decided_by("people");
        }
        for (method, path, role) in [
            ("GET", "/people/bob", "user"),
            ("DELETE", "/people/bob", "admin"),
        ] {
            let exchange = stand.send(
                method,
                path,
                &[("authorization", &bearer(&token(role)))],
                &[],
            );
            rego_denied(&exchange, 403, "");
            exchange.decided_by("people");
        }
        // Authentication still comes first: no token, no policy.
        stand.get("/people/bob", &[]).denied("missing_token");
    });

    stand.scenario("opa_envoy_object_results", || {
        let exchange = stand.get("/regional/x?region=eu", &[]);
        rego_denied(&exchange, 451, "unavailable here");
        assert_eq!(exchange.response.header("x-policy"), Some("legal"));
        exchange.decided_by("regional");
        let exchange = stand.get("/regional/x", &[("x-policy", "spoofed")]);
        let received = exchange.allowed_anonymously();
        assert_eq!(received.header_values("x-policy"), ["ok"]);
    });

    stand.finish();
}

#[test]
fn invalid_configuration_fails_closed() {
    let upstream = EchoUpstream::start();
    let mut misspelt = verifying_configuration();
    let provider = misspelt["providers"][0].as_object_mut().unwrap();
    let audiences = provider.remove("audiences").unwrap();
    provider.insert("audience".to_owned(), audiences);
    let mut unknown_provider = verifying_configuration();
    unknown_provider["rules"][1]["providers"] = json!(["nobody"]);
    let cases = [
        (
            "misspelt-field",
            misspelt.to_string(),
            "invalid configuration at `providers[0].audience`: unknown field `audience`",
        ),
        (
            "unknown-provider",
            unknown_provider.to_string(),
            "invalid configuration at `rules[1].providers[0]`: no provider is named \"nobody\"",
        ),
        (
            "not-json",
            "{\"providers\": [".to_owned(),
            "invalid configuration at `providers`: EOF while parsing a list",
        ),
        (
            "rego-without-rego",
            json!({
                "providers": verifying_configuration()["providers"],
                "rules": [{"providers": ["main"], "require": {"rego": {"policy": OBJECT_POLICY}}}]
            })
            .to_string(),
            "invalid configuration at `rules[0].require.rego`: this module is built without Rego: \
             load wasm_jwt_authn_rego.wasm for rules with `rego`",
        ),
    ];
    for (name, configuration, logged) in cases {
        let options = Options {
            listener_port: envoy::free_port(),
            ..Options::default()
        };
        let listener = std::net::SocketAddr::from(([127, 0, 0, 1], options.listener_port));
        let mut envoy = Envoy::spawn(name, &configuration, upstream.port(), &options);
        // Envoy refuses the whole bootstrap: while it starts and after it has exited, no
        // request may get an answer from the upstream.
        while envoy.is_running() {
            if let Ok(response) = http::send(listener, "GET", "/orders", &[], &[]) {
                assert_ne!(response.status, 200, "{name}: {}", response.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = envoy.wait_exit(Duration::from_secs(20));
        assert!(!status.success(), "{name}: Envoy exited with {status}");
        let log = envoy.log();
        assert!(
            log.contains(logged),
            "{name}: Envoy's log should name the problem ({logged})"
        );
        assert!(
            log.contains("Unable to create Wasm plugin wasm_jwt_authn"),
            "{name}"
        );
        assert!(
            http::send(listener, "GET", "/orders", &[], &[]).is_err(),
            "{name}: the listener answers after Envoy exited"
        );
        assert!(
            upstream.take().is_empty(),
            "{name}: the upstream got a request"
        );
    }
}
