//! Scenario tests of the whole request flow, with fixture keys and a fixed clock.
#![allow(clippy::arithmetic_side_effects, clippy::unreachable)]

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use super::*;
use crate::base::ids::ListIndex;
use crate::base::time::UnixSeconds;
use crate::config::{Config, DEFAULT_RULE};
use crate::fetch::remote::{AddressesNow, KeysNow, RemoteDocuments};
use crate::introspection::IntrospectionCache;
use crate::jose::signature::Portable;
use crate::verify::cache::TokenCache;

use crate::support::{b64url, jwks, sign_raw, token, TestKey};

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://idp.example.com";
const OTHER_ISSUER: &str = "https://other.example.com";
const AUDIENCE: &str = "api://orders";

fn all_keys() -> Value {
    jwks(&[
        TestKey::Rsa2048,
        TestKey::P256,
        TestKey::P384,
        TestKey::Ed25519,
    ])
}

fn base_config() -> Value {
    json!({
        "providers": [
            {
                "name": "corp",
                "issuer": ISSUER,
                "audiences": [AUDIENCE, "api://other"],
                "jwks": {"inline": all_keys()},
                "claims_to_headers": [
                    {"claim": ["sub"], "header": "x-jwt-sub"},
                    {"claim": ["realm_access", "roles"], "header": "x-jwt-roles"}
                ]
            },
            {
                "name": "partner",
                "issuer": OTHER_ISSUER,
                "audiences": [AUDIENCE],
                "algorithms": ["ES256"],
                "jwks": {"inline": jwks(&[TestKey::P256])},
                "token_sources": [{"query": "access_token"}, {"cookie": "session"}],
                "forward_token": false
            }
        ],
        "rules": [
            {"match": {"path_prefix": "/healthz"}, "allow": "anonymous"},
            {"match": {"path_prefix": "/partner"}, "providers": ["partner"]},
            {"match": {"path_prefix": "/admin", "methods": ["POST"]}, "providers": ["corp"]}
        ]
    })
}

fn load(document: &Value) -> Config {
    Config::from_json(document.to_string().as_bytes())
        .expect("valid test configuration")
        .config
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": NOW + 600, "iat": NOW - 10})
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("authorization".to_owned(), format!("Bearer {token}"))]
}

fn decide_on(config: &Config, method: &str, path: &str, headers: &[(String, String)]) -> Decision {
    authenticate(
        config,
        &mut Services {
            remote: &NoRemoteDocuments,
            introspections: &IntrospectionCache::new(0),
            signatures: &Portable,
            token_cache: &mut TokenCache::new(0),
        },
        &Request {
            method,
            path,
            headers,
            source_address: None,
        },
        NOW,
        Attempt::First,
    )
}

fn decide_token(token: &str) -> Decision {
    decide_on(&load(&base_config()), "GET", "/orders", &bearer(token))
}

fn reason_of(decision: &Decision) -> Option<&'static str> {
    match decision {
        Decision::Allow(_) => None,
        Decision::Deny(denial) => Some(denial.reason().as_str()),
        Decision::Wait(wait) => panic!("waits for keys: {wait:?}"),
        Decision::Introspect(needed) => panic!("waits for introspection: {needed:?}"),
    }
}

fn assert_denied(decision: &Decision, expected: &str) {
    assert_eq!(
        reason_of(decision),
        Some(expected),
        "decision: {decision:?}"
    );
}

/// Header names as plain text, for comparing.
fn names(headers: &[std::sync::Arc<str>]) -> Vec<&str> {
    headers.iter().map(|name| &**name).collect()
}

/// Header pairs as plain text, for comparing.
fn pairs(headers: &[(std::sync::Arc<str>, std::sync::Arc<str>)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (&**name, &**value))
        .collect()
}

/// The response of a decision that must be a denial.
fn response_to(decision: &Decision, realm: &str) -> Response {
    match decision {
        Decision::Deny(denial) => denial.response(realm),
        other => panic!("not denied: {other:?}"),
    }
}

fn allowed(decision: Decision) -> Allowed {
    match decision {
        Decision::Allow(allowed) => allowed,
        Decision::Deny(denial) => panic!("denied: {denial:?}"),
        Decision::Wait(wait) => panic!("waits for keys: {wait:?}"),
        Decision::Introspect(needed) => panic!("waits for introspection: {needed:?}"),
    }
}

#[test]
fn every_algorithm_is_accepted_with_a_matching_key() {
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ] {
        let key = TestKey::for_algorithm(alg);
        let allowed = allowed(decide_token(&token(alg, key, &claims())));
        assert_eq!(allowed.caller.provider(), Some("corp"), "{alg}");
        assert_eq!(allowed.caller.subject(), Some("user-1"), "{alg}");
    }
}

#[test]
fn allowed_request_gets_identity_headers_and_loses_spoofed_ones() {
    let claims = with(
        claims(),
        json!({"realm_access": {"roles": ["admin", "viewer"]}}),
    );
    let allowed = allowed(decide_token(&token("ES256", TestKey::P256, &claims)));
    assert_eq!(
        names(&allowed.edits.remove_headers),
        ["x-jwt-sub", "x-jwt-roles"]
    );
    assert_eq!(
        pairs(&allowed.edits.set_headers),
        [("x-jwt-sub", "user-1"), ("x-jwt-roles", "admin,viewer")]
    );
    assert_eq!(allowed.edits.path, None);
}

#[test]
fn a_subject_with_a_line_break_is_neither_forwarded_nor_logged() {
    let claims = with(claims(), json!({"sub": "alice\r\nx-admin: true"}));
    let allowed = allowed(decide_token(&token("ES256", TestKey::P256, &claims)));
    assert_eq!(allowed.caller.subject(), None);
    assert!(allowed.edits.set_headers.is_empty(), "{:?}", allowed.edits);
}

#[test]
fn anonymous_route_needs_no_token_but_still_drops_spoofed_identity_headers() {
    let config = load(&base_config());
    let headers = vec![("x-jwt-sub".to_owned(), "admin".to_owned())];
    let allowed = allowed(decide_on(&config, "GET", "/healthz/live", &headers));
    assert_eq!(allowed.caller, Caller::Anonymous);
    assert_eq!(
        names(&allowed.edits.remove_headers),
        ["x-jwt-sub", "x-jwt-roles"]
    );
    assert!(allowed.edits.set_headers.is_empty());
}

#[test]
fn missing_token_is_a_bare_bearer_challenge() {
    let config = load(&base_config());
    let decision = decide_on(&config, "GET", "/orders", &[]);
    let Decision::Deny(denial) = decision else {
        panic!("allowed without a token");
    };
    let response = denial.response(config.realm());
    assert_eq!(response.status, 401);
    assert_eq!(
        response.headers[0],
        (
            "www-authenticate".to_owned(),
            "Bearer realm=\"wasm-jwt-authn\"".to_owned()
        )
    );
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["reason"], "missing_token");
}

#[test]
fn invalid_token_gets_rfc6750_invalid_token_challenge() {
    let expired = token(
        "ES256",
        TestKey::P256,
        &with(claims(), json!({"exp": NOW - 3600})),
    );
    let Decision::Deny(denial) = decide_token(&expired) else {
        panic!("expired token allowed");
    };
    let response = denial.response("corp");
    assert_eq!(response.status, 401);
    assert_eq!(
        response.headers[0].1,
        "Bearer realm=\"corp\", error=\"invalid_token\", error_description=\"the token has expired\""
    );
    assert_eq!(
        response.body,
        r#"{"description":"the token has expired","error":"invalid_token","reason":"expired"}"#
    );
}

#[test]
fn a_basic_authorization_header_is_not_a_token() {
    let headers = vec![("authorization".to_owned(), "Basic dXNlcjpwYXNz".to_owned())];
    assert_denied(
        &decide_on(&load(&base_config()), "GET", "/orders", &headers),
        "missing_token",
    );
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    let token = token("ES256", TestKey::P256, &claims());
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let headers = vec![("authorization".to_owned(), format!("{scheme} {token}"))];
        allowed(decide_on(&load(&base_config()), "GET", "/orders", &headers));
    }
}

#[test]
fn lifetime_checks_apply_clock_skew() {
    let cases = [
        (json!({"exp": NOW - 59}), None),
        (json!({"exp": NOW - 60}), Some("expired")),
        (json!({"nbf": NOW + 60}), None),
        (json!({"nbf": NOW + 61}), Some("not_yet_valid")),
        (json!({"iat": NOW + 60}), None),
        (json!({"iat": NOW + 61}), Some("issued_in_future")),
        (json!({"exp": null}), Some("missing_claim")),
        (json!({"exp": "tomorrow"}), Some("invalid_claim")),
        (json!({"exp": -1}), Some("invalid_claim")),
        (json!({"exp": 1e300}), Some("invalid_claim")),
        (
            json!({"exp": 18446744073709551615u64}),
            Some("invalid_claim"),
        ),
        (
            json!({"nbf": -9223372036854775808i64}),
            Some("invalid_claim"),
        ),
        (json!({"exp": (NOW as f64) + 0.5}), None),
        (json!({"jti": 42}), Some("invalid_claim")),
        (json!({"jti": {"id": 1}}), Some("invalid_claim")),
        (json!({"sub": ["a"]}), Some("invalid_claim")),
        (json!({"jti": "abc"}), None),
    ];
    for (changes, expected) in cases {
        let decision = decide_token(&token(
            "ES256",
            TestKey::P256,
            &with(claims(), changes.clone()),
        ));
        assert_eq!(reason_of(&decision), expected, "claims change {changes}");
    }
}

#[test]
fn max_lifetime_bounds_exp_minus_iat() {
    let mut document = base_config();
    document["providers"][0]["max_lifetime_seconds"] = json!(3600);
    let config = load(&document);
    let check = |changes: Value| {
        let token = token("ES256", TestKey::P256, &with(claims(), changes));
        reason_of(&decide_on(&config, "GET", "/orders", &bearer(&token)))
    };
    assert_eq!(check(json!({"iat": NOW - 10, "exp": NOW + 3590})), None);
    assert_eq!(
        check(json!({"iat": NOW - 10, "exp": NOW + 3591})),
        Some("lifetime_too_long")
    );
    assert_eq!(check(json!({"iat": null})), Some("lifetime_too_long"));
}

#[test]
fn audience_must_overlap_the_configured_audiences() {
    let cases = [
        (json!("api://other"), None),
        (json!(["x", AUDIENCE]), None),
        (json!("api://elsewhere"), Some("audience_mismatch")),
        (json!([]), Some("audience_mismatch")),
        (json!([AUDIENCE, 7]), Some("invalid_claim")),
        (json!({"aud": AUDIENCE}), Some("invalid_claim")),
    ];
    for (audience, expected) in cases {
        let claims = with(claims(), json!({ "aud": audience.clone() }));
        let decision = decide_token(&token("ES256", TestKey::P256, &claims));
        assert_eq!(reason_of(&decision), expected, "aud {audience}");
    }
    let no_audience = with(claims(), json!({"aud": null}));
    assert_denied(
        &decide_token(&token("ES256", TestKey::P256, &no_audience)),
        "missing_claim",
    );
}

#[test]
fn required_claims_are_configurable() {
    let mut document = base_config();
    document["providers"][0]["required_claims"] = json!(["exp", "jti"]);
    let config = load(&document);
    let token_without_jti = token("ES256", TestKey::P256, &claims());
    let Decision::Deny(denial) = decide_on(&config, "GET", "/orders", &bearer(&token_without_jti))
    else {
        panic!("allowed without jti");
    };
    assert_eq!(denial.claim(), Some("jti"));
    assert!(denial.response("r").body.contains(r#""claim":"jti""#));

    document["providers"][0]["required_claims"] = json!([]);
    let config = load(&document);
    let token_without_exp = token(
        "ES256",
        TestKey::P256,
        &with(claims(), json!({"exp": null})),
    );
    allowed(decide_on(
        &config,
        "GET",
        "/orders",
        &bearer(&token_without_exp),
    ));
}

#[test]
fn issuer_picks_the_provider_and_unknown_issuers_are_rejected() {
    let unknown = with(claims(), json!({"iss": "https://evil.example.com"}));
    assert_denied(
        &decide_token(&token("ES256", TestKey::P256, &unknown)),
        "unknown_issuer",
    );
    let no_issuer = with(claims(), json!({"iss": null}));
    assert_denied(
        &decide_token(&token("ES256", TestKey::P256, &no_issuer)),
        "unknown_issuer",
    );
    // Issuers compare exactly: no trailing-slash or case folding.
    let near = with(claims(), json!({"iss": format!("{ISSUER}/")}));
    assert_denied(
        &decide_token(&token("ES256", TestKey::P256, &near)),
        "unknown_issuer",
    );
}

#[test]
fn a_route_accepts_only_its_providers() {
    let config = load(&base_config());
    let corp_token = token("ES256", TestKey::P256, &claims());
    let decision = decide_on(
        &config,
        "GET",
        &format!("/partner?access_token={corp_token}"),
        &[],
    );
    assert_denied(&decision, "issuer_not_accepted");
    // Every source is searched on every route: a corp token in the header is found, and refused.
    assert_denied(
        &decide_on(&config, "GET", "/partner", &bearer(&corp_token)),
        "issuer_not_accepted",
    );
    assert_denied(&decide_on(&config, "GET", "/partner", &[]), "missing_token");
}

#[test]
fn no_matching_rule_requires_a_token_from_any_provider() {
    let config = load(&base_config());
    let partner = token(
        "ES256",
        TestKey::P256,
        &with(claims(), json!({"iss": OTHER_ISSUER})),
    );
    let path = format!("/anything?access_token={partner}");
    let allowed = allowed(decide_on(&config, "GET", &path, &[]));
    assert_eq!(allowed.caller.provider(), Some("partner"));
    // forward_token: false strips the query parameter.
    assert_eq!(allowed.edits.path.as_deref(), Some("/anything"));
}

#[test]
fn token_found_where_its_provider_does_not_send_tokens_is_rejected() {
    let config = load(&base_config());
    let partner = token(
        "ES256",
        TestKey::P256,
        &with(claims(), json!({"iss": OTHER_ISSUER})),
    );
    assert_denied(
        &decide_on(&config, "GET", "/orders", &bearer(&partner)),
        "wrong_token_source",
    );
}

#[test]
fn rule_methods_restrict_the_match() {
    let mut document = base_config();
    document["rules"] = json!([
        {"match": {"path_prefix": "/admin", "methods": ["GET"]}, "allow": "anonymous"}
    ]);
    let config = load(&document);
    allowed(decide_on(&config, "GET", "/admin", &[]));
    assert_denied(
        &decide_on(&config, "DELETE", "/admin", &[]),
        "missing_token",
    );
}

#[test]
fn path_prefixes_match_whole_segments() {
    let config = load(&base_config());
    for open in ["/healthz", "/healthz/", "/healthz/live", "/healthz?x=1"] {
        allowed(decide_on(&config, "GET", open, &[]));
    }
    for closed in ["/healthzadmin", "/healthz-internal/secrets", "/health"] {
        assert_denied(&decide_on(&config, "GET", closed, &[]), "missing_token");
    }
}

#[test]
fn first_matching_rule_wins() {
    let mut document = base_config();
    document["rules"] = json!([
        {"match": {"path_exact": "/public/secret"}, "providers": ["corp"]},
        {"match": {"path_prefix": "/public"}, "allow": "anonymous"}
    ]);
    let config = load(&document);
    allowed(decide_on(&config, "GET", "/public/page?x=1", &[]));
    assert_denied(
        &decide_on(&config, "GET", "/public/secret?x=1", &[]),
        "missing_token",
    );
}

#[test]
fn unnormalized_paths_are_refused_before_rules_match() {
    let config = load(&base_config());
    for path in [
        "/healthz/../admin",
        "/healthz/./x",
        "/healthz//x",
        "/healthz/%2e%2e/admin",
        "/healthz%2Fadmin",
        "/healthz\\admin",
        "/healthz/..",
        "/healthz/..;/admin",
        "/healthz;x",
        "/adm%69n",
        "/admin%2D",
        "/healthz%7e",
        "/a%zz",
        "/a%+5",
        "/a%2",
    ] {
        let decision = decide_on(&config, "GET", path, &[]);
        assert_denied(&decision, "unnormalized_path");
        let Decision::Deny(denial) = decision else {
            unreachable!()
        };
        assert_eq!(denial.response("r").status, 400, "{path}");
    }
    allowed(decide_on(&config, "GET", "/healthz/", &[]));
    allowed(decide_on(&config, "GET", "/healthz/a%20b%C3%A9", &[]));
}

#[test]
fn a_second_token_in_a_source_the_route_does_not_use_is_still_refused() {
    let config = load(&base_config());
    let partner = token(
        "ES256",
        TestKey::P256,
        &with(claims(), json!({"iss": OTHER_ISSUER})),
    );
    let mut headers = bearer("forged.token.here");
    headers.push(("cookie".to_owned(), "x=1".to_owned()));
    let path = format!("/partner/x?access_token={partner}");
    assert_denied(
        &decide_on(&config, "GET", &path, &headers),
        "multiple_tokens",
    );
}

#[test]
fn exact_paths_match_with_or_without_a_trailing_slash_and_methods_in_any_case() {
    let mut document = base_config();
    document["rules"] = json!([
        {"match": {"path_exact": "/public/secret", "methods": ["POST"]}, "providers": ["corp"]},
        {"match": {"path_prefix": "/"}, "allow": "anonymous"}
    ]);
    let config = load(&document);
    for (method, path) in [
        ("POST", "/public/secret"),
        ("POST", "/public/secret/"),
        ("post", "/public/secret"),
    ] {
        assert_denied(&decide_on(&config, method, path, &[]), "missing_token");
    }
    allowed(decide_on(&config, "GET", "/public/secret", &[]));
    allowed(decide_on(&config, "POST", "/public/secret/x", &[]));
}

#[test]
fn two_tokens_in_one_request_are_refused() {
    let config = load(&base_config());
    let corp = token("ES256", TestKey::P256, &claims());
    let mut headers = bearer(&corp);
    headers.extend(bearer(&corp));
    let decision = decide_on(&config, "GET", "/orders", &headers);
    assert_denied(&decision, "multiple_tokens");
    let response = response_to(&decision, "r");
    assert_eq!(response.status, 400);
    assert!(response.headers[0].1.contains("error=\"invalid_request\""));

    let partner = token(
        "ES256",
        TestKey::P256,
        &with(claims(), json!({"iss": OTHER_ISSUER})),
    );
    let headers = vec![("cookie".to_owned(), format!("session={partner}"))];
    let path = format!("/x?access_token={partner}");
    assert_denied(
        &decide_on(&config, "GET", &path, &headers),
        "multiple_tokens",
    );
}

#[test]
fn forward_token_false_strips_the_cookie_and_keeps_the_others() {
    let config = load(&base_config());
    let partner = token(
        "ES256",
        TestKey::P256,
        &with(claims(), json!({"iss": OTHER_ISSUER})),
    );
    let headers = vec![("cookie".to_owned(), format!("a=1; session={partner}; b=2"))];
    let allowed = allowed(decide_on(&config, "GET", "/partner/x", &headers));
    assert!(names(&allowed.edits.remove_headers).contains(&"cookie"));
    assert_eq!(pairs(&allowed.edits.set_headers), [("cookie", "a=1; b=2")]);
}

#[test]
fn forward_token_false_strips_the_authorization_header() {
    let mut document = base_config();
    document["providers"][0]["forward_token"] = json!(false);
    document["providers"][0]["payload_header"] = json!("x-jwt-payload");
    let config = load(&document);
    let token = token("ES256", TestKey::P256, &claims());
    let allowed = allowed(decide_on(&config, "GET", "/orders", &bearer(&token)));
    assert!(names(&allowed.edits.remove_headers).contains(&"authorization"));
    let payload = token.split('.').nth(1).unwrap();
    assert!(pairs(&allowed.edits.set_headers).contains(&("x-jwt-payload", payload)));
}

#[test]
fn algorithm_allow_list_and_key_compatibility_are_enforced() {
    let partner_claims = with(claims(), json!({"iss": OTHER_ISSUER}));
    let rs256 = token("RS256", TestKey::Rsa2048, &partner_claims);
    let config = load(&base_config());
    let decision = decide_on(&config, "GET", &format!("/x?access_token={rs256}"), &[]);
    assert_denied(&decision, "algorithm_not_allowed");

    // A P-256 key never verifies an RS256 token, even if the token names its kid.
    let header = json!({"alg": "RS256", "kid": "p256"}).to_string();
    let confused = sign_raw("RS256", TestKey::Rsa2048, &header, &claims().to_string());
    assert_denied(&decide_token(&confused), "no_compatible_key");
}

#[test]
fn keys_are_found_by_exact_kid_only() {
    let header = json!({"alg": "ES256", "kid": "P256"}).to_string();
    let wrong_case = sign_raw("ES256", TestKey::P256, &header, &claims().to_string());
    assert_denied(&decide_token(&wrong_case), "unknown_key_id");
    // Without a kid, every compatible key is tried.
    let header = json!({"alg": "ES256"}).to_string();
    allowed(decide_token(&sign_raw(
        "ES256",
        TestKey::P256,
        &header,
        &claims().to_string(),
    )));
}

#[test]
fn a_token_signed_by_an_untrusted_key_is_rejected() {
    let header = json!({"alg": "ES256", "kid": "p256"}).to_string();
    let forged = sign_raw("ES256", TestKey::P256Other, &header, &claims().to_string());
    assert_denied(&decide_token(&forged), "bad_signature");
}

#[test]
fn token_types_default_and_configured() {
    let typed = |typ: Option<&str>| {
        let mut header = json!({"alg": "ES256", "kid": "p256"});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        sign_raw(
            "ES256",
            TestKey::P256,
            &header.to_string(),
            &claims().to_string(),
        )
    };
    for accepted in [
        None,
        Some("JWT"),
        Some("jwt"),
        Some("at+jwt"),
        Some("application/at+jwt"),
    ] {
        allowed(decide_token(&typed(accepted)));
    }
    assert_denied(
        &decide_token(&typed(Some("id_token+jwt"))),
        "token_type_not_allowed",
    );

    let mut document = base_config();
    document["providers"][0]["token_types"] = json!(["at+jwt"]);
    let config = load(&document);
    let check = |token: String| reason_of(&decide_on(&config, "GET", "/orders", &bearer(&token)));
    assert_eq!(check(typed(Some("at+JWT"))), None);
    assert_eq!(check(typed(Some("JWT"))), Some("token_type_not_allowed"));
    assert_eq!(check(typed(None)), Some("token_type_not_allowed"));
}

#[test]
fn malformed_tokens_get_their_own_reasons() {
    let good = token("ES256", TestKey::P256, &claims());
    let header = b64url(br#"{"alg":"ES256","kid":"p256"}"#);
    let payload = b64url(claims().to_string().as_bytes());
    let cases = [
        ("a.b".to_owned(), "malformed_token"),
        (format!("{good}.x"), "malformed_token"),
        // 86 signature characters + "A" is the canonical spelling of 65 bytes: too long for ES256.
        (format!("{good}A"), "bad_signature"),
        // + "B" leaves a non-zero unused bit.
        (format!("{good}B"), "non_canonical_base64"),
        // 128 characters + 1 leaves a stray character that encodes no whole byte.
        (
            format!("{}A", token("ES384", TestKey::P384, &claims())),
            "non_canonical_base64",
        ),
        (format!("{good}+"), "non_canonical_base64"),
        (format!("{good}="), "non_canonical_base64"),
        (format!("{}.{payload}.sig", b64url(b"[]")), "malformed_json"),
        (
            format!("{}.{payload}.sig", b64url(b"not json")),
            "malformed_json",
        ),
        (
            format!("{header}.{}.sig", b64url(b"\"a string\"")),
            "malformed_json",
        ),
        (
            format!(
                "{}.{payload}.sig",
                b64url(br#"{"alg":"ES256","alg":"none"}"#)
            ),
            "duplicate_json_member",
        ),
        (
            format!("{header}.{}.sig", b64url(br#"{"a":{"b":1,"b":2}}"#)),
            "duplicate_json_member",
        ),
        (
            format!(
                "{}.{payload}.sig",
                b64url(br#"{"alg":"ES256","crit":["exp"]}"#)
            ),
            "critical_header",
        ),
        (
            format!(
                "{}.{payload}.sig",
                b64url(br#"{"alg":"ES256","b64":false}"#)
            ),
            "unencoded_payload",
        ),
        (
            format!("{}.{payload}.sig", b64url(br#"{"kid":"p256"}"#)),
            "malformed_header",
        ),
        (
            format!("{}.{payload}.sig", b64url(br#"{"alg":"ES256","kid":7}"#)),
            "malformed_header",
        ),
        (
            format!("{}.{payload}.", b64url(br#"{"alg":"none"}"#)),
            "unsupported_algorithm",
        ),
        (
            format!("{}.{payload}.sig", b64url(br#"{"alg":"HS256"}"#)),
            "unsupported_algorithm",
        ),
        (
            format!("{}.{payload}.sig", b64url(br#"{"alg":"es256"}"#)),
            "unsupported_algorithm",
        ),
    ];
    for (token, expected) in cases {
        assert_denied(&decide_token(&token), expected);
    }
}

#[test]
fn oversized_tokens_are_refused_before_parsing() {
    let mut document = base_config();
    document["max_token_bytes"] = json!(64);
    let config = load(&document);
    let token = token("ES256", TestKey::P256, &claims());
    assert_denied(
        &decide_on(&config, "GET", "/orders", &bearer(&token)),
        "token_too_large",
    );
}

/// Flips one bit of one decoded segment and re-encodes it canonically, so the change is
/// only in content: every such token must be denied (the bit flips of jwt-compact's tests).
#[test]
fn flipping_any_bit_of_any_segment_is_detected() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    for alg in ["RS256", "PS256", "ES256", "ES384", "EdDSA"] {
        let good = token(alg, TestKey::for_algorithm(alg), &claims());
        let segments: Vec<Vec<u8>> = good
            .split('.')
            .map(|segment| URL_SAFE_NO_PAD.decode(segment).unwrap())
            .collect();
        for (index, segment) in segments.iter().enumerate() {
            let step = (segment.len() / 13).max(1);
            for position in (0..segment.len()).step_by(step) {
                for bit in [0x01u8, 0x80] {
                    let mut tampered = segments.clone();
                    tampered[index][position] ^= bit;
                    let token = tampered
                        .iter()
                        .map(|segment| URL_SAFE_NO_PAD.encode(segment))
                        .collect::<Vec<_>>()
                        .join(".");
                    let decision = decide_token(&token);
                    assert!(
                        matches!(decision, Decision::Deny(_)),
                        "{alg}: flipping bit {bit:#x} of byte {position} in segment {index} was accepted"
                    );
                }
            }
        }
    }
}

#[test]
fn every_reason_has_a_distinct_stable_name() {
    let mut names: Vec<&str> = Reason::ALL.iter().map(|reason| reason.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Reason::ALL.len());
    for reason in Reason::ALL {
        let description = reason.description();
        assert!(
            !description.contains('"') && !description.contains('\\'),
            "{description}"
        );
    }
}

/// Remote keys as a test sets them.
struct FixedRemoteKeys(Option<crate::jose::jwks::KeySet>, bool);

impl RemoteDocuments for FixedRemoteKeys {
    fn keys_now(&self, _provider: ProviderIndex, _now: UnixSeconds) -> KeysNow<'_> {
        match (&self.0, self.1) {
            (Some(keys), _) => KeysNow::Fresh(keys),
            (None, true) => KeysNow::Pending,
            (None, false) => KeysNow::Unavailable,
        }
    }

    fn address_list_now(&self, _list: ListIndex, _now: UnixSeconds) -> AddressesNow<'_> {
        AddressesNow::Unavailable
    }
}

fn remote_config() -> Config {
    let mut document = base_config();
    document["providers"][0]["jwks"] =
        json!({"uri": "https://idp.example.com/jwks", "upstream": "idp"});
    load(&document)
}

fn decide_remote(remote: &FixedRemoteKeys, token: &str, attempt: Attempt) -> Decision {
    let headers = bearer(token);
    let request = Request {
        method: "GET",
        path: "/orders",
        headers: &headers,
        source_address: None,
    };
    let mut services = Services {
        remote,
        introspections: &IntrospectionCache::new(0),
        signatures: &Portable,
        token_cache: &mut TokenCache::new(0),
    };
    authenticate(&remote_config(), &mut services, &request, NOW, attempt)
}

#[test]
fn requests_wait_for_keys_not_yet_fetched_then_get_503_if_none_come() {
    let token = token("ES256", TestKey::P256, &claims());
    let pending = FixedRemoteKeys(None, true);
    assert_eq!(
        decide_remote(&pending, &token, Attempt::First),
        Decision::Wait(Wait {
            source: RemoteSource::Keys(ProviderIndex::new(0)),
            cause: WaitCause::KeysPending
        })
    );
    let decision = decide_remote(&pending, &token, Attempt::AfterWait);
    assert_denied(&decision, "keys_unavailable");
    let response = response_to(&decision, "r");
    assert_eq!(response.status, 503);
    assert!(response
        .headers
        .iter()
        .all(|(name, _)| name != "www-authenticate"));
    assert_eq!(
        response.body,
        r#"{"description":"the identity provider keys are unavailable","error":"temporarily_unavailable","reason":"keys_unavailable"}"#
    );
    let unavailable = FixedRemoteKeys(None, false);
    assert_denied(
        &decide_remote(&unavailable, &token, Attempt::First),
        "keys_unavailable",
    );
}

#[test]
fn an_unknown_kid_with_remote_keys_waits_for_one_refetch() {
    let (keys, _) = crate::jose::jwks::KeySet::from_value(&jwks(&[TestKey::P384])).unwrap();
    let remote = FixedRemoteKeys(Some(keys), true);
    let token = token("ES256", TestKey::P256, &claims());
    assert_eq!(
        decide_remote(&remote, &token, Attempt::First),
        Decision::Wait(Wait {
            source: RemoteSource::Keys(ProviderIndex::new(0)),
            cause: WaitCause::UnknownKeyId
        })
    );
    assert_denied(
        &decide_remote(&remote, &token, Attempt::AfterWait),
        "unknown_key_id",
    );
    // With the key in the set, the same token is allowed at once.
    let (keys, _) = crate::jose::jwks::KeySet::from_value(&jwks(&[TestKey::P256])).unwrap();
    allowed(decide_remote(
        &FixedRemoteKeys(Some(keys), true),
        &token,
        Attempt::First,
    ));
}

// ---------------------------------------------------------------------------------------------
// The token cache.

/// Portable signature math that counts how often it is asked.
#[derive(Default)]
struct CountingVerifier(std::cell::Cell<usize>);

impl crate::jose::signature::SignatureVerifier for CountingVerifier {
    fn verify(&self, signature: &crate::jose::signature::CheckedSignature<'_>) -> bool {
        self.0.set(self.0.get() + 1);
        Portable.verify(signature)
    }
}

/// Decides one request with a shared cache and verifier, at `now`.
fn decide_cached(
    config: &Config,
    remote: &dyn RemoteDocuments,
    cache: &mut TokenCache,
    verifier: &CountingVerifier,
    (method, path, headers): (&str, &str, &[(String, String)]),
    now: UnixSeconds,
) -> Decision {
    let mut services = Services {
        remote,
        introspections: &IntrospectionCache::new(0),
        signatures: verifier,
        token_cache: cache,
    };
    let request = Request {
        method,
        path,
        headers,
        source_address: None,
    };
    authenticate(config, &mut services, &request, now, Attempt::First)
}

#[test]
fn a_remembered_token_is_allowed_again_without_signature_math_and_with_the_same_edits() {
    let config = load(&base_config());
    let mut cache = TokenCache::new(10);
    let verifier = CountingVerifier::default();
    let token = token("RS256", TestKey::Rsa2048, &claims());
    let mut headers = bearer(&token);
    headers.push(("x-jwt-sub".to_owned(), "spoofed".to_owned()));
    let request = ("GET", "/orders", headers.as_slice());

    let first = allowed(decide_cached(
        &config,
        &NoRemoteDocuments,
        &mut cache,
        &verifier,
        request,
        NOW,
    ));
    assert_eq!(first.caller.verification(), Some(Verification::Signature));
    assert_eq!(verifier.0.get(), 1);
    assert_eq!(cache.len(), 1);

    let again = allowed(decide_cached(
        &config,
        &NoRemoteDocuments,
        &mut cache,
        &verifier,
        request,
        NOW + 1,
    ));
    assert_eq!(again.caller.verification(), Some(Verification::CacheHit));
    assert_eq!(verifier.0.get(), 1, "a hit does no signature math");
    assert_eq!(again.edits, first.edits);
    assert_eq!(again.caller.subject(), Some("user-1"));
    assert_eq!(again.caller.provider(), Some("corp"));
}

#[test]
fn a_tampered_copy_of_a_remembered_token_is_verified_and_refused() {
    let config = load(&base_config());
    let mut cache = TokenCache::new(10);
    let verifier = CountingVerifier::default();
    let token = token("ES256", TestKey::P256, &claims());
    let headers = bearer(&token);
    allowed(decide_cached(
        &config,
        &NoRemoteDocuments,
        &mut cache,
        &verifier,
        ("GET", "/", &headers),
        NOW,
    ));
    // Another payload with the remembered signature.
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let (header, _) = signing_input.split_once('.').unwrap();
    let forged_payload = b64url(
        with(claims(), json!({"sub": "admin"}))
            .to_string()
            .as_bytes(),
    );
    let forged = format!("{header}.{forged_payload}.{signature}");
    let decision = decide_cached(
        &config,
        &NoRemoteDocuments,
        &mut cache,
        &verifier,
        ("GET", "/", &bearer(&forged)),
        NOW,
    );
    assert_denied(&decision, "bad_signature");
    assert_eq!(verifier.0.get(), 2);
}

#[test]
fn a_remembered_token_still_expires_on_time() {
    let config = load(&base_config());
    let mut cache = TokenCache::new(10);
    let verifier = CountingVerifier::default();
    let token = token("ES256", TestKey::P256, &claims());
    let headers = bearer(&token);
    let request = ("GET", "/orders", headers.as_slice());
    allowed(decide_cached(
        &config,
        &NoRemoteDocuments,
        &mut cache,
        &verifier,
        request,
        NOW,
    ));
    // `exp` is NOW + 600 and the default skew 60 s: valid until NOW + 659.
    let last_second = decide_cached(
        &config,
        &NoRemoteDocuments,
        &mut cache,
        &verifier,
        request,
        NOW + 659,
    );
    assert_eq!(
        allowed(last_second).caller.verification(),
        Some(Verification::CacheHit)
    );
    let expired = decide_cached(
        &config,
        &NoRemoteDocuments,
        &mut cache,
        &verifier,
        request,
        NOW + 660,
    );
    assert_denied(&expired, "expired");
    assert!(cache.is_empty(), "the expired token is forgotten");
}

#[test]
fn a_remembered_token_still_obeys_the_route_and_the_token_source() {
    let config = load(&base_config());
    let mut cache = TokenCache::new(10);
    let verifier = CountingVerifier::default();
    let token = token("ES256", TestKey::P256, &claims());
    let headers = bearer(&token);
    allowed(decide_cached(
        &config,
        &NoRemoteDocuments,
        &mut cache,
        &verifier,
        ("GET", "/orders", &headers),
        NOW,
    ));
    // `/partner` accepts only the partner provider.
    let decision = decide_cached(
        &config,
        &NoRemoteDocuments,
        &mut cache,
        &verifier,
        ("GET", "/partner/x", &headers),
        NOW,
    );
    assert_denied(&decision, "issuer_not_accepted");
    // The corp provider does not take tokens from the `session` cookie.
    let cookie = vec![("cookie".to_owned(), format!("session={token}"))];
    let decision = decide_cached(
        &config,
        &NoRemoteDocuments,
        &mut cache,
        &verifier,
        ("GET", "/orders", &cookie),
        NOW,
    );
    assert_denied(&decision, "wrong_token_source");
    assert_eq!(
        cache.len(),
        1,
        "refusals for the request do not forget the token"
    );
}

#[test]
fn a_remembered_token_is_forgotten_when_its_key_leaves_the_key_set() {
    let config = remote_config();
    let mut cache = TokenCache::new(10);
    let verifier = CountingVerifier::default();
    let token = token("ES256", TestKey::P256, &claims());
    let headers = bearer(&token);
    let request = ("GET", "/orders", headers.as_slice());
    let (with_key, _) =
        crate::jose::jwks::KeySet::from_value(&jwks(&[TestKey::P256, TestKey::P384])).unwrap();
    let (without_key, _) = crate::jose::jwks::KeySet::from_value(&jwks(&[TestKey::P384])).unwrap();

    let published = FixedRemoteKeys(Some(with_key), false);
    allowed(decide_cached(
        &config, &published, &mut cache, &verifier, request, NOW,
    ));
    let hit = decide_cached(&config, &published, &mut cache, &verifier, request, NOW);
    assert_eq!(
        allowed(hit).caller.verification(),
        Some(Verification::CacheHit)
    );

    let rotated = FixedRemoteKeys(Some(without_key), false);
    let decision = decide_cached(&config, &rotated, &mut cache, &verifier, request, NOW);
    assert!(
        matches!(decision, Decision::Wait(_)),
        "{decision:?}: the kid is unknown now"
    );
    assert!(cache.is_empty());

    let unavailable = FixedRemoteKeys(None, false);
    let published = FixedRemoteKeys(
        Some(
            crate::jose::jwks::KeySet::from_value(&jwks(&[TestKey::P256]))
                .unwrap()
                .0,
        ),
        false,
    );
    allowed(decide_cached(
        &config, &published, &mut cache, &verifier, request, NOW,
    ));
    let decision = decide_cached(&config, &unavailable, &mut cache, &verifier, request, NOW);
    assert_denied(&decision, "keys_unavailable");
}

/// The base configuration with `require` on the `/admin` route (POST) and a `/reports` route.
fn policy_config() -> Config {
    let mut document = base_config();
    document["rules"] = json!([
        {"match": {"path_prefix": "/admin"}, "providers": ["corp"],
         "require": {"scopes": {"all": ["admin:write", "admin:read"]}}},
        {"match": {"path_prefix": "/reports"}, "providers": ["corp"],
         "require": {"claims": {"any": [
             {"claim": ["realm_access", "roles"], "contains": "auditor"},
             {"claim": ["https://example.com/department"], "equals": "finance"}
         ]}}},
        {"match": {"path_prefix": "/payments"}, "providers": ["corp"],
         "require": {"acr": ["urn:example:mfa"], "max_auth_age_seconds": 600}},
        {"match": {"path_prefix": "/ops"}, "providers": ["corp"],
         "require": {"roles": {"any": ["ops", "sre"]}}}
    ]);
    document["providers"][0]["role_claims"] = json!([["realm_access", "roles"], ["groups"]]);
    load(&document)
}

#[test]
fn stale_or_weak_authentication_gets_an_rfc9470_step_up_challenge() {
    let config = policy_config();
    let stale = token(
        "RS256",
        TestKey::Rsa2048,
        &with(
            claims(),
            json!({"acr": "urn:example:mfa", "auth_time": NOW - 601}),
        ),
    );
    let decision = decide_on(&config, "POST", "/payments", &bearer(&stale));
    assert_denied(&decision, "authentication_too_old");
    let response = response_to(&decision, config.realm());
    assert_eq!(response.status, 401);
    assert_eq!(
        response.headers[0],
        (
            "www-authenticate".to_owned(),
            "Bearer realm=\"wasm-jwt-authn\", error=\"insufficient_user_authentication\", \
             error_description=\"the user must authenticate again: the last authentication is too old\", \
             acr_values=\"urn:example:mfa\", max_age=600"
                .to_owned()
        )
    );
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(
        body,
        json!({
            "error": "insufficient_user_authentication",
            "reason": "authentication_too_old",
            "description": "the user must authenticate again: the last authentication is too old",
            "acr_values": "urn:example:mfa",
            "max_age": 600,
            "rule": "rules[2]"
        })
    );

    let password_only = token(
        "RS256",
        TestKey::Rsa2048,
        &with(
            claims(),
            json!({"acr": "urn:example:pwd", "auth_time": NOW - 5}),
        ),
    );
    assert_denied(
        &decide_on(&config, "POST", "/payments", &bearer(&password_only)),
        "authentication_too_weak",
    );
    let fresh_mfa = token(
        "RS256",
        TestKey::Rsa2048,
        &with(
            claims(),
            json!({"acr": "urn:example:mfa", "auth_time": NOW - 600}),
        ),
    );
    allowed(decide_on(&config, "POST", "/payments", &bearer(&fresh_mfa)));
}

#[test]
fn roles_are_read_where_the_provider_puts_them() {
    let config = policy_config();
    for roles in [
        json!({"realm_access": {"roles": ["sre"]}}),
        json!({"groups": "ops"}),
    ] {
        let token = token("RS256", TestKey::Rsa2048, &with(claims(), roles));
        allowed(decide_on(&config, "GET", "/ops/deploy", &bearer(&token)));
    }
    // `roles` at the top level is not one of this provider's role claims.
    let token = token(
        "RS256",
        TestKey::Rsa2048,
        &with(claims(), json!({"roles": ["ops"]})),
    );
    let decision = decide_on(&config, "GET", "/ops/deploy", &bearer(&token));
    assert_denied(&decision, "insufficient_role");
    let response = response_to(&decision, config.realm());
    assert_eq!(response.status, 403);
    assert!(response
        .headers
        .iter()
        .all(|(name, _)| name != "www-authenticate"));
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["roles"], json!(["ops", "sre"]));
}

#[test]
fn a_token_without_the_routes_scopes_gets_403_insufficient_scope_naming_them() {
    let config = policy_config();
    assert!(config.policy_reads_claims());
    let reader = token(
        "RS256",
        TestKey::Rsa2048,
        &with(claims(), json!({"scope": "admin:read"})),
    );
    let decision = decide_on(&config, "GET", "/admin/users", &bearer(&reader));
    assert_denied(&decision, "insufficient_scope");
    let response = response_to(&decision, config.realm());
    assert_eq!(response.status, 403);
    assert_eq!(
        response.headers[0],
        (
            "www-authenticate".to_owned(),
            "Bearer realm=\"wasm-jwt-authn\", error=\"insufficient_scope\", \
             error_description=\"the token lacks a scope this route requires\", \
             scope=\"admin:write admin:read\""
                .to_owned()
        )
    );
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(body["scope"], "admin:write admin:read");

    // Scopes from `scp` (an array) count as much as from `scope`.
    let admin = token(
        "RS256",
        TestKey::Rsa2048,
        &with(
            claims(),
            json!({"scope": "admin:read", "scp": ["admin:write"]}),
        ),
    );
    allowed(decide_on(&config, "GET", "/admin/users", &bearer(&admin)));
    // Another route asks nothing of scopes: the reader's token is enough there.
    allowed(decide_on(&config, "GET", "/orders", &bearer(&reader)));
}

#[test]
fn claim_conditions_decide_with_any_and_name_the_failed_claim() {
    let config = policy_config();
    let auditor = with(claims(), json!({"realm_access": {"roles": ["auditor"]}}));
    let finance = with(
        claims(),
        json!({"https://example.com/department": "finance"}),
    );
    let neither = with(claims(), json!({"realm_access": {"roles": ["user"]}}));
    for allowed_claims in [auditor, finance] {
        let token = token("RS256", TestKey::Rsa2048, &allowed_claims);
        allowed(decide_on(&config, "GET", "/reports/q3", &bearer(&token)));
    }
    let token = token("RS256", TestKey::Rsa2048, &neither);
    let decision = decide_on(&config, "GET", "/reports/q3", &bearer(&token));
    assert_denied(&decision, "claim_condition_failed");
    let response = response_to(&decision, config.realm());
    assert_eq!(response.status, 403);
    assert!(
        response
            .headers
            .iter()
            .all(|(name, _)| name != "www-authenticate"),
        "no RFC 6750 error code fits a claim condition"
    );
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["reason"], "claim_condition_failed");
    assert_eq!(body["claim"], json!(["realm_access", "roles"]));
}

#[test]
fn a_remembered_token_meets_each_routes_requirements_from_its_kept_claims() {
    let config = policy_config();
    let mut cache = TokenCache::new(10);
    let verifier = CountingVerifier::default();
    let token = token(
        "RS256",
        TestKey::Rsa2048,
        &with(claims(), json!({"scope": "admin:read admin:write"})),
    );
    let headers = bearer(&token);
    let mut decide = |path: &str| {
        decide_cached(
            &config,
            &NoRemoteDocuments,
            &mut cache,
            &verifier,
            ("GET", path, headers.as_slice()),
            NOW,
        )
    };
    // Verified on a route whose condition it fails: still remembered (it is valid) ...
    assert_denied(&decide("/reports"), "claim_condition_failed");
    // ... and from memory it passes the route it meets, and fails the one it does not.
    assert_eq!(
        allowed(decide("/admin")).caller.verification(),
        Some(Verification::CacheHit)
    );
    assert_denied(&decide("/reports"), "claim_condition_failed");
    assert_eq!(verifier.0.get(), 1, "one signature check in all");
}

#[test]
fn require_on_an_anonymous_rule_is_a_configuration_error() {
    let mut document = base_config();
    document["rules"] = json!([
        {"match": {"path_prefix": "/"}, "allow": "anonymous",
         "require": {"scopes": {"any": ["a"]}}}
    ]);
    let error = Config::from_json(document.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "rules[0].require");
    document["rules"][0] = json!({"match": {"path_prefix": "/"}, "providers": ["corp"],
        "require": {"claims": {"all": [{"claim": ["a"], "equals": 1, "in": [1]}]}}});
    let error = Config::from_json(document.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "rules[0].require.claims.all[0]");
    assert!(!load(&base_config()).policy_reads_claims());
}

/// Routes open only to some addresses and at some times; `client_address` as given.
fn context_config(client_address: Value) -> Config {
    let mut document = base_config();
    document["client_address"] = client_address;
    document["rules"] = json!([
        {"match": {"path_prefix": "/internal"}, "allow": "anonymous",
         "require": {"source_ips": {"any": ["10.0.0.0/8", "2001:db8::/32"], "not": ["10.66.0.0/16"]}}},
        {"match": {"path_prefix": "/batch"}, "providers": ["corp"],
         "require": {"time": {"days": ["mon", "tue", "wed", "thu", "fri"],
                              "hours": {"from": "09:00", "to": "17:00"}, "utc_offset": "+01:00"}}},
        {"match": {"path_prefix": "/"}, "providers": ["corp"]}
    ]);
    load(&document)
}

fn decide_from(
    config: &Config,
    path: &str,
    headers: &[(String, String)],
    source: &str,
    now: i64,
) -> Decision {
    authenticate(
        config,
        &mut Services {
            remote: &NoRemoteDocuments,
            introspections: &IntrospectionCache::new(0),
            signatures: &Portable,
            token_cache: &mut TokenCache::new(0),
        },
        &Request {
            method: "GET",
            path,
            headers,
            source_address: source.parse().ok(),
        },
        now,
        Attempt::First,
    )
}

#[test]
fn source_addresses_open_or_close_a_route_even_an_anonymous_one() {
    let config = context_config(json!({"from": "proxy"}));
    assert!(config.reads_source_address());
    let inside = decide_from(&config, "/internal/metrics", &[], "10.1.2.3", NOW);
    assert_eq!(allowed(inside).caller, Caller::Anonymous);
    allowed(decide_from(
        &config,
        "/internal/metrics",
        &[],
        "2001:db8::7",
        NOW,
    ));
    for outside in ["10.66.0.1", "192.0.2.1", "not an address"] {
        let decision = decide_from(&config, "/internal/metrics", &[], outside, NOW);
        assert_denied(&decision, "source_address_not_allowed");
        let response = response_to(&decision, config.realm());
        assert_eq!(response.status, 403);
        assert!(response
            .headers
            .iter()
            .all(|(name, _)| name != "www-authenticate"));
    }
    // A forwarded-for header means nothing to the filter when the proxy's address is used.
    let forwarded = vec![("x-forwarded-for".to_owned(), "10.1.2.3".to_owned())];
    assert_denied(
        &decide_from(&config, "/internal/metrics", &forwarded, "192.0.2.1", NOW),
        "source_address_not_allowed",
    );
}

#[test]
fn behind_trusted_proxies_the_client_is_read_from_x_forwarded_for() {
    let config = context_config(json!({"from": "x_forwarded_for", "trusted_hops": 1}));
    assert!(!config.reads_source_address());
    assert!(config
        .read_headers()
        .iter()
        .any(|name| name == "x-forwarded-for"));
    let via_proxy = |chain: &str| vec![("x-forwarded-for".to_owned(), chain.to_owned())];
    // The proxy appended the client's address after whatever the client claimed.
    allowed(decide_from(
        &config,
        "/internal/x",
        &via_proxy("192.0.2.1, 10.1.2.3"),
        "203.0.113.9",
        NOW,
    ));
    assert_denied(
        &decide_from(
            &config,
            "/internal/x",
            &via_proxy("10.1.2.3, 192.0.2.1"),
            "10.0.0.1",
            NOW,
        ),
        "source_address_not_allowed",
    );
    assert_denied(
        &decide_from(&config, "/internal/x", &[], "10.0.0.1", NOW),
        "source_address_not_allowed",
    );
}

#[test]
fn a_time_window_closes_a_route_before_any_token_work() {
    let config = context_config(json!({"from": "proxy"}));
    assert!(!config.policy_reads_claims());
    let token = token("RS256", TestKey::Rsa2048, &claims());
    // NOW is Friday 2027-01-15 08:00 UTC: 09:00 at +01:00, the window's first minute.
    allowed(decide_from(
        &config,
        "/batch/run",
        &bearer(&token),
        "192.0.2.1",
        NOW,
    ));
    let decision = decide_from(&config, "/batch/run", &bearer(&token), "192.0.2.1", NOW - 1);
    assert_denied(&decision, "outside_time_window");
    // Closed is closed, token or not.
    assert_denied(
        &decide_from(&config, "/batch/run", &[], "192.0.2.1", NOW - 1),
        "outside_time_window",
    );
    allowed(decide_from(
        &config,
        "/orders",
        &bearer(&token),
        "192.0.2.1",
        NOW - 1,
    ));
}

/// Deny rules next to allow rules, with names and hosts.
fn deny_config() -> Config {
    let mut document = base_config();
    document["rules"] = json!([
        {"name": "public", "match": {"path_prefix": "/public"}, "allow": "anonymous"},
        {"name": "no-admin-from-outside", "match": {"path_prefix": "/admin"},
         "deny": {"source_ips": {"not": ["10.0.0.0/8"]}}},
        {"name": "suspended", "deny": {"claims": {"any": [
            {"claim": ["status"], "equals": "suspended"}]}}},
        {"name": "closed", "match": {"path_prefix": "/public/closed"}, "deny": {}},
        {"name": "internal-host", "match": {"hosts": ["*.internal.example", "ops.example.com"]},
         "providers": ["corp"], "require": {"roles": {"any": ["ops"]}}}
    ]);
    document["providers"][0]["role_claims"] = json!([["realm_access", "roles"]]);
    load(&document)
}

fn decide_on_host(
    config: &Config,
    path: &str,
    host: &str,
    token: Option<&str>,
    source: &str,
) -> Decision {
    let mut headers = token.map(bearer).unwrap_or_default();
    headers.push((":authority".to_owned(), host.to_owned()));
    decide_from(config, path, &headers, source, NOW)
}

fn denial_rule(decision: &Decision) -> Option<&str> {
    match decision {
        Decision::Deny(denial) => denial.rule(),
        _ => None,
    }
}

#[test]
fn deny_rules_win_whatever_rule_would_allow() {
    let config = deny_config();
    let valid = token("RS256", TestKey::Rsa2048, &claims());
    // An anonymous route, but a deny rule for part of it holds with no conditions.
    let allowed_public = allowed(decide_on_host(
        &config,
        "/public/page",
        "api.example.com",
        None,
        "192.0.2.1",
    ));
    assert_eq!(&*allowed_public.rule, "public");
    let closed = decide_on_host(
        &config,
        "/public/closed",
        "api.example.com",
        None,
        "192.0.2.1",
    );
    assert_denied(&closed, "denied_by_rule");
    assert_eq!(denial_rule(&closed), Some("closed"));
    // A context deny rule refuses before any token work, valid token or not.
    for bearer_token in [Some(valid.as_str()), None] {
        let outside = decide_on_host(
            &config,
            "/admin",
            "api.example.com",
            bearer_token,
            "192.0.2.1",
        );
        assert_denied(&outside, "denied_by_rule");
        assert_eq!(denial_rule(&outside), Some("no-admin-from-outside"));
    }
    let inside = allowed(decide_on_host(
        &config,
        "/admin",
        "api.example.com",
        Some(&valid),
        "10.0.0.1",
    ));
    assert_eq!(
        &*inside.rule, "default",
        "no allow rule matched: any valid token"
    );
    // A deny rule on claims is judged once the token is verified.
    let suspended = token(
        "RS256",
        TestKey::Rsa2048,
        &with(claims(), json!({"status": "suspended"})),
    );
    let decision = decide_on_host(
        &config,
        "/orders",
        "api.example.com",
        Some(&suspended),
        "10.0.0.1",
    );
    assert_denied(&decision, "denied_by_rule");
    let response = response_to(&decision, config.realm());
    assert_eq!(response.status, 403);
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(
        body,
        json!({"error": "forbidden", "reason": "denied_by_rule",
               "description": "a deny rule refuses this request", "rule": "suspended"})
    );
}

#[test]
fn host_patterns_pick_the_rule() {
    let config = deny_config();
    assert!(config
        .read_headers()
        .iter()
        .any(|name| name == ":authority"));
    let ops = token(
        "RS256",
        TestKey::Rsa2048,
        &with(claims(), json!({"realm_access": {"roles": ["ops"]}})),
    );
    let user = token("RS256", TestKey::Rsa2048, &claims());
    for host in [
        "db.internal.example",
        "DB.Internal.Example:8443",
        "ops.example.com",
    ] {
        let decision = decide_on_host(&config, "/x", host, Some(&user), "10.0.0.1");
        assert_denied(&decision, "insufficient_role");
        assert_eq!(denial_rule(&decision), Some("internal-host"), "{host}");
        let allowed_ops = allowed(decide_on_host(&config, "/x", host, Some(&ops), "10.0.0.1"));
        assert_eq!(&*allowed_ops.rule, "internal-host");
    }
    for host in [
        "internal.example",
        "ops.example.com.evil",
        "xops.example.com",
    ] {
        let other = allowed(decide_on_host(&config, "/x", host, Some(&user), "10.0.0.1"));
        assert_eq!(&*other.rule, "default", "{host}");
    }
}

#[test]
fn rule_names_are_checked_and_unique() {
    let mut document = base_config();
    document["rules"] = json!([
        {"name": "a", "allow": "anonymous"},
        {"name": "a", "providers": ["corp"]}
    ]);
    let error = Config::from_json(document.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "rules[1].name");
    document["rules"] = json!([{"name": "with space", "allow": "anonymous"}]);
    let error = Config::from_json(document.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "rules[0].name");
    document["rules"] = json!([{"deny": {}, "providers": ["corp"]}]);
    let error = Config::from_json(document.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "rules[0]");
    document["rules"] = json!([{"match": {"hosts": ["bad host"]}, "providers": ["corp"]}]);
    let error = Config::from_json(document.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "rules[0].match.hosts[0]");
}

const DEVICE_ISSUER: &str = "https://device-trust.example.com";

/// `corp` users; `device-trust` vouches for devices in `x-device-token`, bound by `user` = `sub`.
fn device_config() -> Config {
    let mut document = base_config();
    document["providers"].as_array_mut().unwrap().push(json!({
        "name": "device-trust",
        "issuer": DEVICE_ISSUER,
        "audiences": [AUDIENCE],
        "jwks": {"inline": jwks(&[TestKey::P256])},
        "token_sources": [{"header": "x-device-token"}],
        "forward_token": false,
        "claims_to_headers": [{"claim": ["compliant"], "header": "x-device-compliant"}]
    }));
    document["device"] = json!({
        "provider": "device-trust",
        "bind": {"device_claim": ["user"], "user_claim": ["sub"]}
    });
    document["rules"] = json!([
        {"name": "finance", "match": {"path_prefix": "/finance"}, "providers": ["corp"],
         "require": {"device": {"claims": {"all": [{"claim": ["compliant"], "equals": true}]}}}}
    ]);
    load(&document)
}

fn device_token(changes: Value) -> String {
    let device = json!({"iss": DEVICE_ISSUER, "aud": AUDIENCE, "sub": "laptop-7", "user": "user-1",
                        "compliant": true, "exp": NOW + 600, "iat": NOW - 10});
    token("ES256", TestKey::P256, &with(device, changes))
}

fn with_device(user: &str, device: Option<&str>) -> Vec<(String, String)> {
    let mut headers = bearer(user);
    headers.push(("x-device-compliant".to_owned(), "true".to_owned()));
    if let Some(device) = device {
        headers.push(("x-device-token".to_owned(), device.to_owned()));
    }
    headers
}

fn device_denial(decision: &Decision) -> (Option<&'static str>, Option<Value>) {
    let Decision::Deny(denial) = decision else {
        return (None, None);
    };
    let response = denial.response("r");
    assert_eq!(response.status, 403, "{response:?}");
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body["rule"], "finance");
    (Some(denial.reason().as_str()), body.get("claim").cloned())
}

#[test]
fn a_route_can_require_a_verified_compliant_device_bound_to_the_user() {
    let config = device_config();
    assert!(config
        .read_headers()
        .iter()
        .any(|name| name == "x-device-token"));
    let user = token("RS256", TestKey::Rsa2048, &claims());
    let good = device_token(json!({}));
    let allowed_request = allowed(decide_on(
        &config,
        "GET",
        "/finance/q3",
        &with_device(&user, Some(&good)),
    ));
    assert_eq!(
        pairs(&allowed_request.edits.set_headers),
        vec![("x-jwt-sub", "user-1"), ("x-device-compliant", "true")],
        "the posture header comes from the verified device token only"
    );
    assert!(names(&allowed_request.edits.remove_headers).contains(&"x-device-compliant"));
    assert!(
        names(&allowed_request.edits.remove_headers).contains(&"x-device-token"),
        "forward_token: false strips the device token"
    );

    let cases = [
        (None, "device_token_missing"),
        (
            Some(device_token(json!({"exp": NOW - 3600}))),
            "device_token_invalid",
        ),
        (
            Some(device_token(json!({"iss": OTHER_ISSUER}))),
            "device_token_invalid",
        ),
        (
            Some(token(
                "RS256",
                TestKey::Rsa2048,
                &with(
                    claims(),
                    json!({"iss": DEVICE_ISSUER, "user": "user-1", "compliant": true}),
                ),
            )),
            "device_token_invalid",
        ),
        (
            Some(device_token(json!({"user": "user-2"}))),
            "device_not_bound",
        ),
        (
            Some(device_token(json!({"user": null}))),
            "device_not_bound",
        ),
        (
            Some(device_token(json!({"compliant": false}))),
            "device_posture_failed",
        ),
    ];
    for (device, reason) in cases {
        let decision = decide_on(
            &config,
            "GET",
            "/finance/q3",
            &with_device(&user, device.as_deref()),
        );
        let (denied, claim) = device_denial(&decision);
        assert_eq!(denied, Some(reason), "{device:?}");
        if reason == "device_posture_failed" {
            assert_eq!(claim, Some(json!(["compliant"])));
        }
    }
}

#[test]
fn device_tokens_vouch_for_no_user_and_are_not_a_second_token() {
    let config = device_config();
    let user = token("RS256", TestKey::Rsa2048, &claims());
    let device = device_token(json!({}));
    // Elsewhere the device header is not read at all: not a second token.
    let elsewhere = allowed(decide_on(
        &config,
        "GET",
        "/orders",
        &with_device(&user, Some(&device)),
    ));
    assert_eq!(
        pairs(&elsewhere.edits.set_headers),
        vec![("x-jwt-sub", "user-1")],
        "no posture header without a device rule"
    );
    // A device token as the user's token: its provider takes tokens only from its header.
    assert_denied(
        &decide_on(&config, "GET", "/orders", &bearer(&device)),
        "wrong_token_source",
    );
    // Configuration mistakes.
    let mut document = base_config();
    document["providers"][1]["token_sources"] = json!([{"header": "x-device-token"}]);
    document["device"] = json!({"provider": "partner"});
    document["rules"] = json!([{"providers": ["partner"]}]);
    let error = Config::from_json(document.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "rules[0].providers");
    document["rules"] = json!([]);
    document["providers"][1]["token_sources"] = json!([{"header": "x-a"}, {"header": "x-b"}]);
    let error = Config::from_json(document.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "providers[1].token_sources");
    let mut document = base_config();
    document["rules"] = json!([{"providers": ["corp"], "require": {"device": {}}}]);
    let error = Config::from_json(document.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "rules[0].require.device");
    document["rules"] = json!([{"deny": {"device": {}}}]);
    let error = Config::from_json(document.to_string().as_bytes()).unwrap_err();
    assert_eq!(error.field, "rules[0].deny.device");
}

/// Address lists as a test sets them: `Some` in force, `None` pending (`true`) or unavailable.
struct FixedLists(Vec<(Option<crate::policy::context::AddressSet>, bool)>);

impl RemoteDocuments for FixedLists {
    fn keys_now(&self, _provider: ProviderIndex, _now: UnixSeconds) -> KeysNow<'_> {
        KeysNow::Unavailable
    }

    fn address_list_now(&self, list: ListIndex, _now: UnixSeconds) -> AddressesNow<'_> {
        match self.0.get(list.position()) {
            Some((Some(addresses), _)) => AddressesNow::Stale(addresses),
            Some((None, true)) => AddressesNow::Pending,
            _ => AddressesNow::Unavailable,
        }
    }
}

/// A reputation deny list for every route, and a partner list that opens one route.
fn address_list_config() -> Config {
    let mut document = base_config();
    document["address_lists"] = json!([
        {"name": "reputation", "uri": "https://lists.example.com/drop.txt", "upstream": "lists"},
        {"name": "partners", "uri": "https://lists.example.com/partners.txt", "upstream": "lists",
         "refresh_seconds": 60}
    ]);
    document["rules"] = json!([
        {"name": "bad-reputation", "deny": {"source_ips": {"any_lists": ["reputation"]}}},
        {"name": "partner-feed", "match": {"path_prefix": "/feed"}, "allow": "anonymous",
         "require": {"source_ips": {"any": ["10.0.0.0/8"], "any_lists": ["partners"]}}}
    ]);
    load(&document)
}

fn decide_with_lists(
    config: &Config,
    lists: &FixedLists,
    path: &str,
    source: &str,
    attempt: Attempt,
) -> Decision {
    let token = token("RS256", TestKey::Rsa2048, &claims());
    authenticate(
        config,
        &mut Services {
            remote: lists,
            introspections: &IntrospectionCache::new(0),
            signatures: &Portable,
            token_cache: &mut TokenCache::new(0),
        },
        &Request {
            method: "GET",
            path,
            headers: &bearer(&token),
            source_address: source.parse().ok(),
        },
        NOW,
        attempt,
    )
}

fn list_of(blocks: &[&str]) -> Option<crate::policy::context::AddressSet> {
    let text = blocks.join("\n");
    Some(crate::policy::context::AddressSet::parse_list(text.as_bytes()).unwrap())
}

#[test]
fn remote_address_lists_deny_and_allow_by_the_list_in_force() {
    let config = address_list_config();
    assert_eq!(config.address_lists().len(), 2);
    assert_eq!(config.address_lists()[1].remote.refresh_seconds, 60);
    let lists = FixedLists(vec![
        (list_of(&["203.0.113.0/24"]), false),
        (list_of(&["198.51.100.0/24"]), false),
    ]);
    let first = Attempt::First;
    let listed = decide_with_lists(&config, &lists, "/orders", "203.0.113.9", first);
    assert_denied(&listed, "denied_by_rule");
    assert_eq!(denial_rule(&listed), Some("bad-reputation"));
    let clean = allowed(decide_with_lists(
        &config,
        &lists,
        "/orders",
        "192.0.2.1",
        first,
    ));
    assert_eq!(&*clean.rule, DEFAULT_RULE);
    // `any` and `any_lists` together: in either opens the route.
    for partner in ["198.51.100.20", "10.9.9.9"] {
        let decision = decide_with_lists(&config, &lists, "/feed", partner, first);
        assert_eq!(&*allowed(decision).rule, "partner-feed", "{partner}");
    }
    let stranger = decide_with_lists(&config, &lists, "/feed", "192.0.2.1", first);
    assert_denied(&stranger, "source_address_not_allowed");
    // The deny list wins on the partner route too.
    let both = decide_with_lists(&config, &lists, "/feed", "203.0.113.1", first);
    assert_denied(&both, "denied_by_rule");
}

#[test]
fn a_list_not_fetched_yet_makes_requests_wait_then_503_never_a_guess() {
    let config = address_list_config();
    let pending = FixedLists(vec![(None, true), (list_of(&["198.51.100.0/24"]), false)]);
    assert_eq!(
        decide_with_lists(&config, &pending, "/orders", "192.0.2.1", Attempt::First),
        Decision::Wait(Wait {
            source: RemoteSource::AddressList(ListIndex::new(0)),
            cause: WaitCause::ListPending,
        })
    );
    let after_wait = decide_with_lists(
        &config,
        &pending,
        "/orders",
        "192.0.2.1",
        Attempt::AfterWait,
    );
    assert_denied(&after_wait, "address_list_unavailable");
    assert_eq!(denial_rule(&after_wait), Some("bad-reputation"));
    let response = response_to(&after_wait, "r");
    assert_eq!(response.status, 503);
    assert!(response
        .headers
        .contains(&("retry-after".to_owned(), "5".to_owned())));
    // A list that cannot be had refuses at once, even where the inline blocks would decide.
    let down = FixedLists(vec![(list_of(&["198.51.100.0/24"]), false), (None, false)]);
    let decision = decide_with_lists(&config, &down, "/feed", "10.1.1.1", Attempt::First);
    assert_denied(&decision, "address_list_unavailable");
    assert_eq!(denial_rule(&decision), Some("partner-feed"));
    // Routes whose rules name no list do not depend on it.
    let mut document = base_config();
    document["address_lists"] = json!([
        {"name": "partners", "uri": "https://lists.example.com/p.txt", "upstream": "lists"}
    ]);
    document["rules"] = json!([
        {"match": {"path_prefix": "/feed"}, "allow": "anonymous",
         "require": {"source_ips": {"any_lists": ["partners"]}}}
    ]);
    let config = load(&document);
    let down = FixedLists(vec![(None, false)]);
    allowed(decide_with_lists(
        &config,
        &down,
        "/orders",
        "192.0.2.1",
        Attempt::First,
    ));
}

#[test]
fn address_list_configuration_mistakes_are_refused() {
    let refused = |lists: Value, rules: Value| {
        let mut document = base_config();
        document["address_lists"] = lists;
        document["rules"] = rules;
        Config::from_json(document.to_string().as_bytes())
            .err()
            .map(|error| error.field)
    };
    let list =
        |name: &str| json!({"name": name, "uri": "https://l.example.com/x", "upstream": "l"});
    let using = |name: &str| json!([{"deny": {"source_ips": {"any_lists": [name]}}}]);
    assert_eq!(
        refused(json!([list("reputation")]), using("reputaton")),
        Some("rules[0].deny.source_ips.any_lists[0]".to_owned())
    );
    assert_eq!(
        refused(json!([list("reputation")]), json!([])),
        Some("address_lists[0]".to_owned()),
        "a list no rule names is a mistake"
    );
    assert_eq!(
        refused(json!([list("a"), list("a")]), using("a")),
        Some("address_lists[1].name".to_owned())
    );
    assert_eq!(
        refused(json!([list("a.b")]), using("a.b")),
        Some("address_lists[0].name".to_owned())
    );
    let plain_http = json!([{"name": "a", "uri": "http://l.example.com/x", "upstream": "l"}]);
    assert_eq!(
        refused(plain_http, using("a")),
        Some("address_lists[0].uri".to_owned())
    );
    let fast = json!([{"name": "a", "uri": "https://l.example.com/x", "upstream": "l",
                       "refresh_seconds": 1}]);
    assert_eq!(
        refused(fast, using("a")),
        Some("address_lists[0].refresh_seconds".to_owned())
    );
    let unknown_field = json!([{"name": "a", "uri": "https://l.example.com/x", "upstream": "l",
                                "min_refetch_seconds": 5}]);
    assert_eq!(
        refused(unknown_field, using("a")),
        Some("address_lists[0].min_refetch_seconds".to_owned())
    );
    assert_eq!(
        refused(
            json!([list("a")]),
            json!([{"deny": {"source_ips": {"any_lists": []}}}])
        ),
        Some("rules[0].deny.source_ips.any_lists".to_owned())
    );
}

/// An opaque-token provider next to the JWT one, and a rule that reads scopes.
fn introspection_config(jwt_introspection: bool) -> Config {
    let mut document = base_config();
    let introspection = json!({
        "endpoint": "https://idp.example.com/token/introspection",
        "upstream": "idp", "client_id": "gateway", "client_secret": "secret",
        "cache_seconds": 30, "negative_cache_seconds": 5
    });
    document["providers"].as_array_mut().unwrap().push(json!({
        "name": "opaque", "issuer": "https://opaque.example.com", "audiences": [AUDIENCE],
        "introspection": introspection,
        "claims_to_headers": [{"claim": ["client_id"], "header": "x-client"}]
    }));
    if jwt_introspection {
        document["providers"][0]["introspection"] = introspection;
    }
    document["rules"] = json!([
        {"name": "writes", "match": {"path_prefix": "/write"}, "providers": ["opaque", "corp"],
         "require": {"scopes": {"all": ["write"]}}},
        {"name": "partner-only", "match": {"path_prefix": "/partner"}, "providers": ["partner"]}
    ]);
    load(&document)
}

const OPAQUE: &str = "mF_9.B5f-4.1JqM";

fn decide_introspected(
    config: &Config,
    cache: &IntrospectionCache,
    path: &str,
    token: &str,
    attempt: Attempt,
) -> Decision {
    authenticate(
        config,
        &mut Services {
            remote: &NoRemoteDocuments,
            introspections: cache,
            signatures: &Portable,
            token_cache: &mut TokenCache::new(16),
        },
        &Request {
            method: "GET",
            path,
            headers: &bearer(token),
            source_address: None,
        },
        NOW,
        attempt,
    )
}

fn answered(config: &Config, provider: usize, token: &str, answer: Value) -> IntrospectionCache {
    let mut cache = IntrospectionCache::new(16);
    let answer = match answer {
        Value::Object(members) => crate::introspection::Introspected::Active(Arc::new(members)),
        _ => crate::introspection::Introspected::Inactive,
    };
    let settings = config.providers()[provider].introspection().unwrap();
    cache.insert(ProviderIndex::new(provider), token, answer, settings, NOW);
    cache
}

fn active_answer() -> Value {
    json!({"iss": "https://opaque.example.com", "aud": AUDIENCE, "exp": NOW + 600,
           "client_id": "billing", "scope": "read write", "sub": "svc-billing"})
}

#[test]
fn an_opaque_token_is_introspected_then_judged_by_the_answer() {
    let config = introspection_config(false);
    let empty = IntrospectionCache::new(16);
    assert_eq!(
        decide_introspected(&config, &empty, "/write/x", OPAQUE, Attempt::First),
        Decision::Introspect(IntrospectionNeeded {
            provider: ProviderIndex::new(2),
            token: OPAQUE.to_owned()
        })
    );
    // Keys or lists waited for first: the token may still be introspected.
    assert!(matches!(
        decide_introspected(&config, &empty, "/write/x", OPAQUE, Attempt::AfterWait),
        Decision::Introspect(_)
    ));
    let unanswered = decide_introspected(
        &config,
        &empty,
        "/write/x",
        OPAQUE,
        Attempt::AfterIntrospection,
    );
    assert_denied(&unanswered, "introspection_unavailable");
    assert_eq!(response_to(&unanswered, "r").status, 503);

    let cache = answered(&config, 2, OPAQUE, active_answer());
    let allowed = allowed(decide_introspected(
        &config,
        &cache,
        "/write/x",
        OPAQUE,
        Attempt::First,
    ));
    assert_eq!(
        allowed.caller.verification(),
        Some(Verification::Introspection)
    );
    assert_eq!(allowed.caller.provider(), Some("opaque"));
    assert_eq!(allowed.caller.subject(), Some("svc-billing"));
    assert_eq!(&*allowed.rule, "writes");
    assert!(pairs(&allowed.edits.set_headers).contains(&("x-client", "billing")));

    let read_only = answered(
        &config,
        2,
        OPAQUE,
        with(active_answer(), json!({"scope": "read"})),
    );
    assert_denied(
        &decide_introspected(&config, &read_only, "/write/x", OPAQUE, Attempt::First),
        "insufficient_scope",
    );
    let inactive = answered(&config, 2, OPAQUE, Value::Null);
    let refused = decide_introspected(&config, &inactive, "/write/x", OPAQUE, Attempt::First);
    assert_denied(&refused, "token_inactive");
    assert_eq!(response_to(&refused, "r").status, 401);
}

#[test]
fn an_active_answer_must_still_be_for_us() {
    let config = introspection_config(false);
    for (change, reason) in [
        (json!({"aud": "api://elsewhere"}), "audience_mismatch"),
        (json!({"aud": null}), "missing_claim"),
        (json!({"iss": "https://evil.example.com"}), "invalid_claim"),
        (json!({"exp": NOW - 3_600}), "expired"),
        (json!({"exp": null}), "missing_claim"),
        (json!({"sub": 7}), "invalid_claim"),
        (json!({"token_type": "refresh_token"}), "invalid_claim"),
    ] {
        let answer = with(active_answer(), change.clone());
        let members = answer.as_object().unwrap();
        let checked = verify::check_introspected(members, &config.providers()[2], NOW)
            .map_err(|rejection| Denial::from(rejection).reason().as_str());
        assert_eq!(checked, Err(reason), "{change}");
    }
}

#[test]
fn opaque_tokens_go_only_where_the_opaque_provider_is_accepted() {
    let config = introspection_config(false);
    let cache = answered(&config, 2, OPAQUE, active_answer());
    assert_denied(
        &decide_introspected(&config, &cache, "/partner/x", OPAQUE, Attempt::First),
        "issuer_not_accepted",
    );
    // Not a bearer token's characters: refused before any call.
    for bad in ["a b", "tok\u{e9}n", "==", "a=b"] {
        assert_denied(
            &decide_introspected(&config, &cache, "/write/x", bad, Attempt::First),
            "malformed_token",
        );
    }
    // Three segments and a JSON header: a JWT, never sent to introspection.
    let broken_jwt = "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln";
    assert_denied(
        &decide_introspected(&config, &cache, "/write/x", broken_jwt, Attempt::First),
        "malformed_json",
    );
    // Dots alone make no JWT.
    assert!(matches!(
        decide_introspected(&config, &cache, "/write/x", "a.b.c", Attempt::First),
        Decision::Introspect(_)
    ));
    let oversized = "a".repeat(config.max_token_bytes() + 1);
    assert_denied(
        &decide_introspected(&config, &cache, "/write/x", &oversized, Attempt::First),
        "token_too_large",
    );
    // A JWT naming the opaque provider's issuer is nobody's: it has no keys.
    let jwt = token(
        "RS256",
        TestKey::Rsa2048,
        &with(claims(), json!({"iss": "https://opaque.example.com"})),
    );
    assert_denied(
        &decide_introspected(&config, &cache, "/write/x", &jwt, Attempt::First),
        "unknown_issuer",
    );
}

#[test]
fn a_verified_jwt_is_also_introspected_when_its_provider_says_so() {
    let config = introspection_config(true);
    let jwt = token(
        "RS256",
        TestKey::Rsa2048,
        &with(claims(), json!({"scope": "write"})),
    );
    let empty = IntrospectionCache::new(16);
    assert_eq!(
        decide_introspected(&config, &empty, "/write/x", &jwt, Attempt::First),
        Decision::Introspect(IntrospectionNeeded {
            provider: ProviderIndex::new(0),
            token: jwt.clone()
        })
    );
    // A forged token is refused without asking anyone.
    let forged = flip_last_signature_char(&jwt);
    assert_denied(
        &decide_introspected(&config, &empty, "/write/x", &forged, Attempt::First),
        "bad_signature",
    );
    let active = answered(&config, 0, &jwt, json!({}));
    let allowed = allowed(decide_introspected(
        &config,
        &active,
        "/write/x",
        &jwt,
        Attempt::First,
    ));
    assert_eq!(allowed.caller.verification(), Some(Verification::Signature));
    let revoked = answered(&config, 0, &jwt, Value::Null);
    assert_denied(
        &decide_introspected(&config, &revoked, "/write/x", &jwt, Attempt::First),
        "token_inactive",
    );
    // The token cache remembers the signature, not the answer: a hit is introspected too.
    let mut token_cache = TokenCache::new(16);
    for (cache, expected) in [(&active, None), (&revoked, Some("token_inactive"))] {
        let decision = authenticate(
            &config,
            &mut Services {
                remote: &NoRemoteDocuments,
                introspections: cache,
                signatures: &Portable,
                token_cache: &mut token_cache,
            },
            &Request {
                method: "GET",
                path: "/write/x",
                headers: &bearer(&jwt),
                source_address: None,
            },
            NOW,
            Attempt::First,
        );
        assert_eq!(reason_of(&decision), expected);
    }
    assert_eq!(token_cache.len(), 1);
}

fn flip_last_signature_char(token: &str) -> String {
    let mut characters: Vec<char> = token.chars().collect();
    let last = characters.len() - 2;
    characters[last] = if characters[last] == 'A' { 'B' } else { 'A' };
    characters.into_iter().collect()
}

#[test]
fn introspection_configuration_mistakes_are_refused() {
    let refused = |change: &dyn Fn(&mut Value)| {
        let mut document = base_config();
        document["providers"].as_array_mut().unwrap().push(json!({
            "name": "opaque", "issuer": "https://opaque.example.com", "audiences": [AUDIENCE],
            "introspection": {"endpoint": "https://idp.example.com/i", "upstream": "idp",
                              "client_id": "gateway", "client_secret": "secret"}
        }));
        change(&mut document);
        Config::from_json(document.to_string().as_bytes())
            .err()
            .map(|error| error.field)
    };
    assert_eq!(refused(&|_| {}), None);
    let second = |document: &mut Value| {
        let mut twin = document["providers"][2].clone();
        twin["name"] = json!("opaque2");
        twin["issuer"] = json!("https://opaque2.example.com");
        document["providers"].as_array_mut().unwrap().push(twin);
    };
    assert_eq!(refused(&second), Some("providers[3]".to_owned()));
    let with_algorithms = |document: &mut Value| {
        document["providers"][2]["algorithms"] = json!(["RS256"]);
    };
    assert_eq!(
        refused(&with_algorithms),
        Some("providers[2].algorithms".to_owned())
    );
    for (member, value, field) in [
        ("endpoint", json!("http://idp.example.com/i"), "endpoint"),
        ("client_id", json!(""), "client_id"),
        ("client_secret", json!(""), "client_secret"),
        ("timeout_ms", json!(0), "timeout_ms"),
        ("cache_seconds", json!(86_401), "cache_seconds"),
        ("cache_seconds", json!(0), "cache_seconds"),
        (
            "negative_cache_seconds",
            json!(3_601),
            "negative_cache_seconds",
        ),
        ("negative_cache_seconds", json!(0), "negative_cache_seconds"),
        ("cache_ttl", json!(5), "cache_ttl"),
    ] {
        let change = |document: &mut Value| {
            document["providers"][2]["introspection"][member] = value.clone();
        };
        assert_eq!(
            refused(&change),
            Some(format!("providers[2].introspection.{field}")),
            "{member}"
        );
    }
    let device = |document: &mut Value| {
        document["providers"][1]["token_sources"] = json!([{"header": "x-device-token"}]);
        document["providers"][1]["introspection"] =
            document["providers"][2]["introspection"].clone();
        document["device"] = json!({"provider": "partner"});
        document["rules"] = json!([]);
    };
    assert_eq!(refused(&device), Some("device.provider".to_owned()));
}

const TENANT_A: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const TENANT_B: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";

/// A multi-tenant provider (Entra ID v2.0) that accepts two tenants, next to the others.
fn multi_tenant_config() -> Config {
    let mut document = base_config();
    document["providers"].as_array_mut().unwrap().push(json!({
        "name": "entra", "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        "tenants": [TENANT_A, TENANT_B], "audiences": [AUDIENCE],
        "jwks": {"inline": jwks(&[TestKey::Rsa2048])}
    }));
    load(&document)
}

fn tenant_token(issuer_tenant: &str, tid: Option<&str>) -> String {
    let issuer = format!("https://login.microsoftonline.com/{issuer_tenant}/v2.0");
    let claims = with(claims(), json!({"iss": issuer, "tid": tid}));
    token("RS256", TestKey::Rsa2048, &claims)
}

#[test]
fn an_issuer_template_accepts_its_listed_tenants_only() {
    let config = multi_tenant_config();
    let provider = &config.providers()[2];
    assert!(provider.issues(&format!(
        "https://login.microsoftonline.com/{TENANT_A}/v2.0"
    )));
    assert!(!provider.issues("https://login.microsoftonline.com/{tenantid}/v2.0"));
    assert!(!provider.issues("https://login.microsoftonline.com/common/v2.0"));
    for tenant in [TENANT_A, TENANT_B] {
        let allowed = allowed(decide_on(
            &config,
            "GET",
            "/orders",
            &bearer(&tenant_token(tenant, Some(tenant))),
        ));
        assert_eq!(allowed.caller.provider(), Some("entra"));
    }
    // Another tenant of the same cloud is nobody's: never "any tenant".
    let stranger = "00000000-1111-2222-3333-444444444444";
    assert_denied(
        &decide_on(
            &config,
            "GET",
            "/orders",
            &bearer(&tenant_token(stranger, Some(stranger))),
        ),
        "unknown_issuer",
    );
    // `iss` and `tid` must name the same tenant.
    assert_denied(
        &decide_on(
            &config,
            "GET",
            "/orders",
            &bearer(&tenant_token(TENANT_A, Some(TENANT_B))),
        ),
        "invalid_claim",
    );
    assert_denied(
        &decide_on(
            &config,
            "GET",
            "/orders",
            &bearer(&tenant_token(TENANT_A, None)),
        ),
        "missing_claim",
    );
}

#[test]
fn issuer_template_mistakes_are_refused() {
    let refused = |provider: Value| {
        let mut document = base_config();
        document["providers"].as_array_mut().unwrap().push(provider);
        Config::from_json(document.to_string().as_bytes())
            .err()
            .map(|error| error.field)
    };
    let entra = |changes: Value| {
        with(
            json!({"name": "entra", "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
                   "tenants": [TENANT_A], "audiences": [AUDIENCE],
                   "jwks": {"inline": jwks(&[TestKey::Rsa2048])}}),
            changes,
        )
    };
    assert_eq!(refused(entra(json!({}))), None);
    assert_eq!(
        refused(entra(json!({"tenants": null}))),
        Some("providers[2].tenants".to_owned()),
        "a template without tenants would be any tenant"
    );
    assert_eq!(
        refused(entra(json!({"tenants": []}))),
        Some("providers[2].tenants".to_owned())
    );
    assert_eq!(
        refused(entra(json!({"tenants": ["a/b"]}))),
        Some("providers[2].tenants[0]".to_owned())
    );
    assert_eq!(
        refused(entra(json!({"issuer": "https://sts.windows.net/x/"}))),
        Some("providers[2].tenants".to_owned()),
        "tenants without a template"
    );
    assert_eq!(
        refused(entra(
            json!({"issuer": "https://{tenantid}.example.com/{tenantid}/"})
        )),
        Some("providers[2].issuer".to_owned())
    );
    assert_eq!(
        refused(entra(
            json!({"jwks": null, "discovery": {"upstream": "entra"}})
        )),
        Some("providers[2].discovery.uri".to_owned())
    );
    // An exact issuer the template also matches: which provider a token belongs to would
    // depend on their order.
    assert_eq!(
        refused(entra(
            json!({"issuer": ISSUER.replace("idp", "{tenantid}"), "tenants": ["idp"]})
        )),
        Some("providers[2].issuer".to_owned())
    );
}

#[test]
fn the_internal_error_is_a_json_answer_like_the_denials() {
    let response = Response::internal_error();
    assert_eq!(response.status, 500);
    assert_eq!(
        response.body,
        r#"{"error":"internal_error","reason":"internal_error"}"#
    );
    assert_eq!(
        response.headers,
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cache-control".to_owned(), "no-store".to_owned()),
        ]
    );
}

/// No remote documents: every provider's keys and every address list are unavailable.
pub struct NoRemoteDocuments;

impl RemoteDocuments for NoRemoteDocuments {
    fn keys_now(&self, _provider: ProviderIndex, _now: UnixSeconds) -> KeysNow<'_> {
        KeysNow::Unavailable
    }

    fn address_list_now(&self, _list: ListIndex, _now: UnixSeconds) -> AddressesNow<'_> {
        AddressesNow::Unavailable
    }
}
