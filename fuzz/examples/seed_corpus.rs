//! Writes the seed corpora of the fuzz targets into `fuzz/corpus/<target>/`, one named file
//! per seed, from real tokens, key sets, configurations, discovery documents and shared
//! records built with the fixture keys:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus
//! ```
//!
//! Seeds are overwritten by name and never deleted, so regression inputs added by hand (named
//! `regression-*`) survive a regeneration. ECDSA and RSA-PSS signatures are randomized: a
//! regeneration changes those files' bytes, not what they exercise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use wasm_jwt_authn::testing::fetch::remote::{Lease, SharedDocument, SharedRecord};
use wasm_jwt_authn_fuzz::support::{b64url, jwks, sign_raw, token, TestKey};
use wasm_jwt_authn_fuzz::{
    config_document, corp_claims, partner_claims, remote_claims, AUDIENCE, CORP_KEYS, ISSUER, NOW,
    PARTNER_ISSUER,
};

struct Corpus {
    directory: PathBuf,
    written: usize,
}

impl Corpus {
    fn new(target: &str) -> Corpus {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        fs::create_dir_all(&directory).expect("create the corpus directory");
        Corpus {
            directory,
            written: 0,
        }
    }

    fn add(&mut self, name: &str, bytes: impl AsRef<[u8]>) {
        fs::write(self.directory.join(name), bytes).expect("write a seed");
        self.written += 1;
    }

    fn json(&mut self, name: &str, value: &Value) {
        self.add(name, serde_json::to_vec_pretty(value).expect("JSON"));
    }

    fn done(self) {
        println!("{}: {} seeds", self.directory.display(), self.written);
    }
}

/// `claims` with `changes` applied (a `null` removes the claim).
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

fn corp(alg: &str) -> String {
    token(alg, TestKey::for_algorithm(alg), &corp_claims())
}

fn corp_with(changes: Value) -> String {
    token("ES256", TestKey::P256, &with(corp_claims(), changes))
}

fn header_token(header: &str) -> String {
    sign_raw("ES256", TestKey::P256, header, &corp_claims().to_string())
}

fn tokens() {
    let mut corpus = Corpus::new("token");
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ] {
        corpus.add(&format!("valid-{}", alg.to_lowercase()), corp(alg));
    }
    let partner = sign_raw(
        "ES256",
        TestKey::P256,
        r#"{"alg":"ES256","typ":"at+jwt","kid":"p256"}"#,
        &partner_claims().to_string(),
    );
    corpus.add("valid-partner-at-jwt", &partner);
    corpus.add(
        "valid-remote-rsa3072",
        token("RS256", TestKey::Rsa3072, &remote_claims()),
    );
    corpus.add(
        "valid-remote-eddsa",
        token("EdDSA", TestKey::Ed25519, &remote_claims()),
    );
    corpus.add("expired", corp_with(json!({"exp": NOW - 3600})));
    corpus.add("not-yet-valid", corp_with(json!({"nbf": NOW + 3600})));
    corpus.add("issued-in-future", corp_with(json!({"iat": NOW + 3600})));
    corpus.add("no-exp", corp_with(json!({"exp": null})));
    corpus.add(
        "fractional-exp",
        corp_with(json!({"exp": NOW as f64 + 0.5})),
    );
    corpus.add("huge-exp", corp_with(json!({"exp": 1e300})));
    corpus.add(
        "lifetime-too-long",
        corp_with(json!({"iat": NOW - 100_000})),
    );
    corpus.add(
        "wrong-audience",
        corp_with(json!({"aud": "api://elsewhere"})),
    );
    corpus.add("audience-not-string", corp_with(json!({"aud": [7]})));
    corpus.add("subject-not-string", corp_with(json!({"sub": 7})));
    corpus.add(
        "claims-to-headers-values",
        corp_with(json!({"sub": "a\r\nb", "realm_access": {"roles": [1, true, {"x": null}]}})),
    );
    corpus.add(
        "unknown-issuer",
        corp_with(json!({"iss": "https://evil.example.com"})),
    );
    corpus.add(
        "partner-issuer-on-corp-route",
        corp_with(json!({"iss": PARTNER_ISSUER})),
    );
    corpus.add(
        "unknown-kid",
        header_token(r#"{"alg":"ES256","kid":"rotated"}"#),
    );
    corpus.add("no-kid", header_token(r#"{"alg":"ES256"}"#));
    corpus.add(
        "typ-application-jwt",
        header_token(r#"{"alg":"ES256","typ":"application/JWT"}"#),
    );
    corpus.add(
        "crit",
        header_token(r#"{"alg":"ES256","kid":"p256","crit":["exp"]}"#),
    );
    corpus.add(
        "b64-false",
        header_token(r#"{"alg":"ES256","kid":"p256","b64":false}"#),
    );
    corpus.add(
        "duplicate-alg",
        header_token(r#"{"alg":"ES256","alg":"ES256","kid":"p256"}"#),
    );
    corpus.add(
        "embedded-jwk",
        header_token(&format!(
            r#"{{"alg":"ES256","jwk":{}}}"#,
            TestKey::P256Other.jwk()
        )),
    );
    corpus.add(
        "signed-by-untrusted-key",
        token("ES256", TestKey::P256Other, &corp_claims()),
    );
    corpus.add(
        "alg-none",
        format!(
            "{}.{}.",
            b64url(br#"{"alg":"none"}"#),
            b64url(corp_claims().to_string().as_bytes())
        ),
    );
    corpus.add(
        "alg-hs256",
        format!(
            "{}.{}.{}",
            b64url(br#"{"alg":"HS256","kid":"rsa-2048"}"#),
            b64url(corp_claims().to_string().as_bytes()),
            b64url(&[7; 32])
        ),
    );
    let valid = corp("ES256");
    corpus.add("padded-signature", format!("{valid}=="));
    corpus.add("two-segments", valid.rsplit_once('.').unwrap().0);
    corpus.add("four-segments", format!("{valid}.e30"));
    corpus.add(
        "bearer-list",
        format!("Bearer {valid},Basic dXNlcg==, bearer {valid}"),
    );
    corpus.add("path-traversal", "/healthz/../admin?access_token=x");
    corpus.add("path-escape", "/adm%69n/%2e%2E/x%2F;y");
    corpus.done();
}

fn with_members(key: TestKey, members: Value) -> Value {
    let mut jwk = key.jwk();
    for (name, value) in members.as_object().unwrap() {
        jwk[name] = value.clone();
    }
    jwk
}

/// The RSA modulus of a fixture key, big-endian without leading zeros.
fn modulus(key: TestKey) -> Vec<u8> {
    use base64::Engine as _;
    let n = key.jwk()["n"].as_str().unwrap().to_owned();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n)
        .unwrap()
}

fn key_sets() {
    let mut corpus = Corpus::new("jwks");
    corpus.json("corp-keys", &jwks(&CORP_KEYS));
    for key in [
        TestKey::Rsa2048,
        TestKey::Rsa3072,
        TestKey::Rsa1024,
        TestKey::P256,
        TestKey::P256Other,
        TestKey::P384,
        TestKey::Ed25519,
    ] {
        corpus.json(&format!("single-{}", key.kid()), &jwks(&[key]));
    }
    // The shape identity providers publish: `use`, `alg`, `x5c`-style extra members.
    corpus.json(
        "provider-style",
        &json!({"keys": [
            with_members(TestKey::Rsa2048, json!({"use": "sig", "alg": "RS256", "x5t": "abc"})),
            with_members(TestKey::Rsa3072, json!({"use": "enc", "alg": "RSA-OAEP"})),
            with_members(TestKey::P256, json!({"key_ops": ["verify"], "alg": "ES256"})),
        ]}),
    );
    corpus.json(
        "mismatched-alg",
        &json!({"keys": [with_members(TestKey::P256, json!({"alg": "ES384"}))]}),
    );
    corpus.json(
        "key-ops-sign-only",
        &json!({"keys": [with_members(TestKey::Ed25519, json!({"key_ops": ["sign"]}))]}),
    );
    corpus.json(
        "symmetric",
        &json!({"keys": [{"kty": "oct", "kid": "hmac", "k": b64url(&[1; 32])}]}),
    );
    corpus.json(
        "private-member",
        &json!({"keys": [with_members(TestKey::P256, json!({"d": b64url(&[1; 32])}))]}),
    );
    corpus.json(
        "unsupported-curves",
        &json!({"keys": [
            with_members(TestKey::P256, json!({"crv": "P-521"})),
            with_members(TestKey::Ed25519, json!({"crv": "X25519"})),
            {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}
        ]}),
    );
    corpus.json(
        "point-not-on-curve",
        &json!({"keys": [with_members(TestKey::P256, json!({"y": b64url(&[0; 32])}))]}),
    );
    corpus.json(
        "short-coordinate",
        &json!({"keys": [with_members(TestKey::P384, json!({"x": b64url(&[5; 47])}))]}),
    );
    corpus.json(
        "rsa-exponent-one",
        &json!({"keys": [with_members(TestKey::Rsa2048, json!({"e": "AQ"}))]}),
    );
    corpus.json(
        "rsa-leading-zero",
        &json!({"keys": [with_members(TestKey::Rsa2048, json!({
            "n": b64url(&[&[0][..], &modulus(TestKey::Rsa2048)].concat())
        }))]}),
    );
    corpus.json(
        "padded-member",
        &json!({"keys": [with_members(TestKey::Ed25519, json!({
            "x": format!("{}=", TestKey::Ed25519.jwk()["x"].as_str().unwrap())
        }))]}),
    );
    corpus.json(
        "wrong-types",
        &json!({"keys": [7, null, {"kty": 1}, {"kty": "RSA", "n": 1, "e": []}, {"kty": "OKP"}]}),
    );
    corpus.json("empty", &json!({"keys": []}));
    corpus.json("keys-not-array", &json!({"keys": {"kty": "RSA"}}));
    corpus.add("not-an-object", "[1, 2, 3]");
    corpus.add("truncated", r#"{"keys": [{"kty": "EC", "crv": "P-2"#);
    corpus.done();
}

fn configurations() {
    let mut corpus = Corpus::new("config");
    corpus.json("fuzz-configuration", &config_document());
    let minimal = json!({"providers": [{
        "name": "corp", "issuer": ISSUER, "audiences": [AUDIENCE],
        "jwks": {"inline": jwks(&[TestKey::P256])}
    }]});
    corpus.json("minimal", &minimal);
    let variant = |name: &str, corpus: &mut Corpus, pointer: &str, value: Value| {
        let mut document = minimal.clone();
        let (parent, member) = pointer.rsplit_once('/').unwrap();
        document.pointer_mut(parent).unwrap()[member] = value;
        corpus.json(name, &document);
    };
    variant(
        "discovery",
        &mut corpus,
        "/providers/0/discovery",
        json!({"upstream": "idp", "jwks_upstream": "keys", "timeout_ms": 2000,
               "refresh_seconds": 300, "max_stale_seconds": 7200, "min_refetch_seconds": 10}),
    );
    variant(
        "jwks-uri",
        &mut corpus,
        "/providers/0/jwks",
        json!({"uri": "https://idp.example.com/certs", "upstream": "idp", "refresh_seconds": 60}),
    );
    variant(
        "jwks-uri-http",
        &mut corpus,
        "/providers/0/jwks",
        json!({"uri": "http://idp:8080/certs", "upstream": "idp:8080"}),
    );
    variant(
        "all-token-sources",
        &mut corpus,
        "/providers/0/token_sources",
        json!([{"header": "authorization", "prefix": "Bearer "}, {"header": "x-token"},
               {"query": "access_token"}, {"cookie": "session"}]),
    );
    variant(
        "claim-headers",
        &mut corpus,
        "/providers/0/claims_to_headers",
        json!([{"claim": ["sub"], "header": "X-Jwt-Sub"}, {"claim": ["a.b", "c"], "header": "x-c"}]),
    );
    variant(
        "reserved-claim-header",
        &mut corpus,
        "/providers/0/claims_to_headers",
        json!([{"claim": ["sub"], "header": "Host"}]),
    );
    variant(
        "token-types",
        &mut corpus,
        "/providers/0/token_types",
        json!(["at+jwt", "application/JWT"]),
    );
    variant(
        "algorithms-hs256",
        &mut corpus,
        "/providers/0/algorithms",
        json!(["ES256", "HS256"]),
    );
    variant(
        "algorithms-no-key",
        &mut corpus,
        "/providers/0/algorithms",
        json!(["EdDSA"]),
    );
    variant(
        "misspelt-audiences",
        &mut corpus,
        "/providers/0/audience",
        json!(["api://orders"]),
    );
    variant(
        "clock-skew-too-large",
        &mut corpus,
        "/providers/0/clock_skew_seconds",
        json!(86_401),
    );
    variant(
        "negative-lifetime",
        &mut corpus,
        "/providers/0/max_lifetime_seconds",
        json!(-1),
    );
    variant(
        "rules",
        &mut corpus,
        "/rules",
        json!([
            {"match": {"path_prefix": "/healthz"}, "allow": "anonymous"},
            {"match": {"path_exact": "/admin/", "methods": ["post", "PUT"]}, "providers": ["corp"]},
            {"providers": ["corp"]}
        ]),
    );
    variant(
        "rule-unknown-provider",
        &mut corpus,
        "/rules",
        json!([{"match": {"path_prefix": "/x"}, "providers": ["nobody"]}]),
    );
    variant(
        "rule-bad-path",
        &mut corpus,
        "/rules",
        json!([{"match": {"path_prefix": "x?y"}, "allow": "anonymous"}]),
    );
    variant("realm-quote", &mut corpus, "/realm", json!("a\"b"));
    variant(
        "max-token-bytes-zero",
        &mut corpus,
        "/max_token_bytes",
        json!(0),
    );
    let mut two = config_document();
    two["providers"][1]["issuer"] = json!(ISSUER);
    corpus.json("duplicate-issuer", &two);
    corpus.add("empty-providers", r#"{"providers": []}"#);
    corpus.add("not-json", "providers:\n- name: corp\n");
    corpus.done();
}

fn discovery_document(issuer: &str, jwks_uri: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": jwks_uri,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"]
    })
}

/// A discovery document and a JWKS, separated by the NUL byte the target splits at.
fn discovery_then_jwks(discovery: &Value, key_set: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(discovery).unwrap();
    bytes.push(0);
    bytes.extend(serde_json::to_vec(key_set).unwrap());
    bytes
}

fn discoveries() {
    let mut corpus = Corpus::new("discovery");
    let same_host = discovery_document(ISSUER, "https://idp.example.com/certs");
    corpus.add(
        "keycloak-style",
        discovery_then_jwks(
            &discovery_document(
                ISSUER,
                "https://idp.example.com/protocol/openid-connect/certs",
            ),
            &jwks(&CORP_KEYS),
        ),
    );
    for key in [TestKey::Rsa2048, TestKey::P384, TestKey::Ed25519] {
        corpus.add(
            &format!("single-{}", key.kid()),
            discovery_then_jwks(&same_host, &jwks(&[key])),
        );
    }
    corpus.add(
        "jwks-on-other-host",
        discovery_then_jwks(
            &discovery_document(ISSUER, "https://www.googleapis.com/oauth2/v3/certs"),
            &jwks(&[TestKey::Rsa2048]),
        ),
    );
    corpus.add(
        "http-jwks-uri",
        discovery_then_jwks(
            &discovery_document(ISSUER, "http://idp.example.com/certs"),
            &jwks(&[TestKey::P256]),
        ),
    );
    corpus.add(
        "jwks-uri-with-query",
        discovery_then_jwks(
            &discovery_document(ISSUER, "https://idp.example.com/certs?v=2"),
            &jwks(&[TestKey::P256]),
        ),
    );
    corpus.add(
        "other-issuer",
        discovery_then_jwks(
            &discovery_document("https://evil.example.com", "https://idp.example.com/certs"),
            &jwks(&[TestKey::P256]),
        ),
    );
    corpus.add(
        "issuer-trailing-slash",
        discovery_then_jwks(
            &discovery_document(&format!("{ISSUER}/"), "https://idp.example.com/certs"),
            &jwks(&[TestKey::P256]),
        ),
    );
    let mut no_uri = same_host.clone();
    no_uri.as_object_mut().unwrap().remove("jwks_uri");
    corpus.add(
        "no-jwks-uri",
        discovery_then_jwks(&no_uri, &jwks(&[TestKey::P256])),
    );
    let mut bad_uri = same_host.clone();
    bad_uri["jwks_uri"] = json!("https://user@idp.example.com/certs#frag");
    corpus.add(
        "jwks-uri-userinfo",
        discovery_then_jwks(&bad_uri, &jwks(&[TestKey::P256])),
    );
    corpus.add(
        "jwks-only-unusable",
        discovery_then_jwks(&same_host, &jwks(&[TestKey::Rsa1024])),
    );
    corpus.add(
        "jwks-symmetric",
        discovery_then_jwks(
            &same_host,
            &json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
        ),
    );
    corpus.add(
        "jwks-not-json",
        [
            serde_json::to_vec(&same_host).unwrap(),
            b"\0<html>".to_vec(),
        ]
        .concat(),
    );
    // Without a NUL the whole input is both documents: a JWKS alone, and a document that is
    // both a discovery document and a key set.
    corpus.json("jwks-alone", &jwks(&[TestKey::P256]));
    let mut both = same_host.clone();
    both["keys"] = jwks(&[TestKey::P256])["keys"].clone();
    corpus.json("discovery-and-keys", &both);
    corpus.done();
}

fn shared_records() {
    let mut corpus = Corpus::new("shared_records");
    let document = serde_json::to_vec(&jwks(&[TestKey::P256, TestKey::Ed25519])).unwrap();
    let record = |document: Option<SharedDocument>, failures: u32| SharedRecord {
        generation: 3,
        attempted_at: NOW,
        next_fetch_at: NOW + 600,
        failures,
        document,
    };
    let fetched = SharedDocument {
        fetched_at: NOW,
        refresh_at: NOW + 540,
        document: document.clone(),
    };
    corpus.add("keys", record(Some(fetched.clone()), 0).encode());
    corpus.add("keys-after-failures", record(Some(fetched), 4).encode());
    corpus.add("no-keys", record(None, 2).encode());
    corpus.add(
        "rsa-keys",
        record(
            Some(SharedDocument {
                fetched_at: 0,
                refresh_at: i64::MAX,
                document: serde_json::to_vec(&jwks(&[TestKey::Rsa2048])).unwrap(),
            }),
            0,
        )
        .encode(),
    );
    corpus.add(
        "unusable-keys",
        record(
            Some(SharedDocument {
                fetched_at: NOW,
                refresh_at: NOW - 1,
                document: br#"{"keys": [{"kty": "oct", "k": "AA"}]}"#.to_vec(),
            }),
            1,
        )
        .encode(),
    );
    corpus.add("old-version", "wjwt1 3 1800000000 1800000600 0\n");
    corpus.add(
        "negative-times",
        "wjwt2 1 -5 -1 0 -9223372036854775808 -1\n{}",
    );
    corpus.add("no-newline", "wjwt2 1 2 3 4");
    let lease = Lease {
        holder: 42,
        expires_at: NOW + 10,
    };
    corpus.add("lease", lease.encode());
    corpus.add(
        "lease-expired",
        Lease {
            holder: 7,
            expires_at: 0,
        }
        .encode(),
    );
    corpus.add("lease-extra-field", "1 2 3");
    for (name, header) in [
        ("cache-control-max-age", "max-age=300"),
        (
            "cache-control-list",
            "public, max-age=86400, must-revalidate",
        ),
        ("cache-control-quoted", "private, MAX-AGE=\"60\""),
        ("cache-control-too-short", "max-age=0"),
        ("cache-control-overflow", "max-age=99999999999999999999999"),
        ("cache-control-none", "no-cache, no-store"),
        ("cache-control-s-maxage", "s-maxage=30, max-age = 120 ,"),
    ] {
        corpus.add(name, header);
    }
    corpus.done();
}

fn main() {
    tokens();
    key_sets();
    configurations();
    discoveries();
    shared_records();
}
