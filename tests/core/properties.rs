//! Property tests on stable: valid tokens, key sets and configurations, mutated a few thousand
//! times each by a seeded PRNG, through the same code the filter runs.
//!
//! The properties:
//! - nothing panics, whatever the mutation;
//! - a mutated token is never allowed unless the token the filter picked out of the request is
//!   byte for byte a token a key holder signed (the signature covers every byte of header and
//!   payload, and the encoding has one spelling, so no other bytes verify; splicing whole
//!   segments of valid tokens may rebuild one of them exactly);
//! - a mutated key set that still verifies a fixture token holds that fixture's very key;
//! - a refused configuration always names the field at fault.
//!
//! Deterministic: the PRNG is xorshift64 with fixed seeds, so a failure names the case number
//! and reproduces on every run. The fuzz targets in `fuzz/` explore the same code without
//! bounds (`make fuzz`); these run in `cargo test` in a few seconds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use serde_json::{json, Value};
use wasm_jwt_authn::testing::base::ids::{ListIndex, ProviderIndex};
use wasm_jwt_authn::testing::base::time::UnixSeconds;
use wasm_jwt_authn::testing::config::{Config, KeySource};
use wasm_jwt_authn::testing::decision::{authenticate, Attempt, Decision, Services};
use wasm_jwt_authn::testing::fetch::remote::{AddressesNow, KeysNow, RemoteDocuments};
use wasm_jwt_authn::testing::introspection::IntrospectionCache;
use wasm_jwt_authn::testing::jose::jwks::KeySet;
use wasm_jwt_authn::testing::jose::signature::Portable;
use wasm_jwt_authn::testing::jose::token as jws;
use wasm_jwt_authn::testing::request::{token, Request};
use wasm_jwt_authn::testing::verify;
use wasm_jwt_authn::testing::verify::cache::TokenCache;

use crate::support::{jwks, sign_raw, token, TestKey};

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://idp.example.com";
const PARTNER_ISSUER: &str = "https://partner.example.com";
const AUDIENCE: &str = "api://orders";

const TOKEN_CASES: usize = 4_000;
const KEY_SET_CASES: usize = 3_000;
const CONFIG_CASES: usize = 3_000;

// ---------------------------------------------------------------------------------------------
// A small deterministic PRNG: no dependency, the same cases on every run and platform.

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // xorshift has one fixed point, zero.
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn one_in(&mut self, odds: usize) -> bool {
        self.below(odds) == 0
    }
}

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Bytes a mutation inserts: mostly ones a token or JSON text is made of, then separators and
/// characters that parsers and extractors treat specially.
fn interesting_byte(rng: &mut Rng) -> u8 {
    match rng.below(4) {
        0 | 1 => *rng.pick(BASE64URL),
        2 => *rng.pick(b".=+/ ,;&\t\"\\\r\n\0%{}[]:"),
        _ => rng.next() as u8,
    }
}

// ---------------------------------------------------------------------------------------------
// The configuration under test: three providers with different sources and checks.

fn corp_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, "api://unrelated"],
        "sub": "user-1",
        "exp": NOW + 600,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "realm_access": {"roles": ["reader", "writer"]}
    })
}

const CORP_KEYS: [TestKey; 4] = [
    TestKey::Rsa2048,
    TestKey::P256,
    TestKey::P384,
    TestKey::Ed25519,
];

fn config_document() -> Value {
    json!({
        "providers": [
            {
                "name": "corp",
                "issuer": ISSUER,
                "audiences": [AUDIENCE, "api://other"],
                "jwks": {"inline": jwks(&CORP_KEYS)},
                "max_lifetime_seconds": 86400,
                "claims_to_headers": [
                    {"claim": ["sub"], "header": "x-jwt-sub"},
                    {"claim": ["realm_access", "roles"], "header": "x-jwt-roles"}
                ],
                "payload_header": "x-jwt-payload"
            },
            {
                "name": "partner",
                "issuer": PARTNER_ISSUER,
                "audiences": [AUDIENCE],
                "algorithms": ["ES256"],
                "jwks": {"inline": jwks(&[TestKey::P256])},
                "token_sources": [{"query": "access_token"}, {"cookie": "session"}],
                "token_types": ["at+jwt"],
                "required_claims": ["exp", "sub"],
                "forward_token": false
            },
            {
                "name": "remote",
                "issuer": "https://remote.example.com",
                "audiences": [AUDIENCE],
                "discovery": {"upstream": "idp", "refresh_seconds": 300},
                "token_sources": [{"header": "x-remote-token"}],
                "clock_skew_seconds": 0
            }
        ],
        "rules": [
            {"match": {"path_prefix": "/healthz"}, "allow": "anonymous"},
            {"match": {"path_prefix": "/partner"}, "providers": ["partner"]},
            {"match": {"path_prefix": "/remote"}, "providers": ["remote"]},
            {"match": {"path_exact": "/admin", "methods": ["POST"]}, "providers": ["corp"]}
        ],
        "realm": "orders"
    })
}

fn load(document: &Value) -> Config {
    Config::from_json(document.to_string().as_bytes())
        .expect("valid test configuration")
        .config
}

/// Remote keys that are always there: the remote provider's decisions run to the end.
struct AlwaysFresh(KeySet);

impl RemoteDocuments for AlwaysFresh {
    fn keys_now(&self, _provider: ProviderIndex, _now: UnixSeconds) -> KeysNow<'_> {
        KeysNow::Fresh(&self.0)
    }

    fn address_list_now(&self, _list: ListIndex, _now: UnixSeconds) -> AddressesNow<'_> {
        AddressesNow::Unavailable
    }
}

fn remote_keys() -> AlwaysFresh {
    AlwaysFresh(KeySet::from_value(&jwks(&[TestKey::Rsa3072])).unwrap().0)
}

/// Where a valid token is sent: the request carrying `token` in its provider's source.
#[derive(Debug, Clone, Copy)]
enum Carrier {
    Bearer,
    Query,
    RemoteHeader,
}

impl Carrier {
    fn request_parts(self, token: &str) -> (String, Vec<(String, String)>) {
        match self {
            Carrier::Bearer => (
                "/orders".to_owned(),
                vec![("authorization".to_owned(), format!("Bearer {token}"))],
            ),
            Carrier::Query => (format!("/partner/x?a=1&access_token={token}"), Vec::new()),
            Carrier::RemoteHeader => (
                "/remote".to_owned(),
                vec![("x-remote-token".to_owned(), token.to_owned())],
            ),
        }
    }
}

/// The valid tokens mutations start from, each with where it is sent.
fn valid_tokens() -> Vec<(String, Carrier)> {
    let mut tokens: Vec<(String, Carrier)> = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
        .iter()
        .map(|alg| {
            let key = TestKey::for_algorithm(alg);
            (token(alg, key, &corp_claims()), Carrier::Bearer)
        })
        .collect();
    // Without `kid`: every compatible key is tried.
    tokens.push((
        sign_raw(
            "EdDSA",
            TestKey::Ed25519,
            r#"{"alg":"EdDSA"}"#,
            &corp_claims().to_string(),
        ),
        Carrier::Bearer,
    ));
    let partner = json!({"iss": PARTNER_ISSUER, "aud": AUDIENCE, "sub": "p", "exp": NOW + 60});
    tokens.push((
        sign_raw(
            "ES256",
            TestKey::P256,
            r#"{"alg":"ES256","typ":"at+jwt","kid":"p256"}"#,
            &partner.to_string(),
        ),
        Carrier::Query,
    ));
    let remote = json!({"iss": "https://remote.example.com", "aud": AUDIENCE, "exp": NOW + 1});
    tokens.push((
        token("RS256", TestKey::Rsa3072, &remote),
        Carrier::RemoteHeader,
    ));
    tokens
}

fn decide(config: &Config, remote: &AlwaysFresh, carrier: Carrier, token: &str) -> Decision {
    let (path, headers) = carrier.request_parts(token);
    let request = Request {
        method: "GET",
        path: &path,
        headers: &headers,
        source_address: None,
    };
    authenticate_portably(config, remote, &request)
}

/// Decides with the portable signature code and no token cache.
fn authenticate_portably(
    config: &Config,
    remote: &dyn RemoteDocuments,
    request: &Request<'_>,
) -> Decision {
    let mut services = Services {
        remote,
        introspections: &IntrospectionCache::new(0),
        signatures: &Portable,
        token_cache: &mut TokenCache::new(0),
    };
    authenticate(config, &mut services, request, NOW, Attempt::First)
}

/// The token the filter picks out of the request that carries `token`.
fn extracted(config: &Config, carrier: Carrier, token: &str) -> Option<String> {
    let (path, headers) = carrier.request_parts(token);
    let request = Request {
        method: "GET",
        path: &path,
        headers: &headers,
        source_address: None,
    };
    token::extract(&request, config.token_sources())
        .ok()
        .flatten()
        .map(|found| found.value.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Token mutations.

/// One random mutation of a token's bytes.
fn mutate_token(rng: &mut Rng, token: &[u8], others: &[&str]) -> Vec<u8> {
    let mut bytes = token.to_vec();
    match rng.below(7) {
        // A bit flip anywhere.
        0 => {
            let position = rng.below(bytes.len());
            bytes[position] ^= 1 << rng.below(8);
        }
        // A byte inserted.
        1 => {
            let position = rng.below(bytes.len() + 1);
            bytes.insert(position, interesting_byte(rng));
        }
        // A byte deleted.
        2 => {
            let position = rng.below(bytes.len());
            bytes.remove(position);
        }
        // A base64url character replaced by another one: the text stays in the alphabet.
        3 => {
            let position = rng.below(bytes.len());
            if bytes[position] != b'.' {
                bytes[position] = *rng.pick(BASE64URL);
            }
        }
        // Two segments swapped.
        4 => {
            let mut segments: Vec<&[u8]> = token.split(|byte| *byte == b'.').collect();
            let (first, second) = (rng.below(segments.len()), rng.below(segments.len()));
            segments.swap(first, second);
            bytes = segments.join(&b'.');
        }
        // A segment duplicated: in another segment's place, or as an extra segment.
        5 => {
            let mut segments: Vec<&[u8]> = token.split(|byte| *byte == b'.').collect();
            let copied = segments[rng.below(segments.len())];
            if rng.one_in(2) {
                let position = rng.below(segments.len() + 1);
                segments.insert(position, copied);
            } else {
                let position = rng.below(segments.len());
                segments[position] = copied;
            }
            bytes = segments.join(&b'.');
        }
        // A segment spliced in from another valid token (same keys, other claims or algorithm).
        _ => {
            let other: Vec<&[u8]> = rng
                .pick(others)
                .as_bytes()
                .split(|byte| *byte == b'.')
                .collect();
            let mut segments: Vec<&[u8]> = token.split(|byte| *byte == b'.').collect();
            let position = rng.below(segments.len().min(other.len()));
            segments[position] = other[position];
            bytes = segments.join(&b'.');
        }
    }
    bytes
}

#[test]
fn mutated_tokens_are_never_allowed_unless_the_filter_sees_a_signed_token_unchanged() {
    let config = load(&config_document());
    let remote = remote_keys();
    let tokens = valid_tokens();
    for (token, carrier) in &tokens {
        assert!(
            matches!(
                decide(&config, &remote, *carrier, token),
                Decision::Allow(_)
            ),
            "the unmutated {carrier:?} token {token} must be allowed"
        );
    }
    let texts: Vec<&str> = tokens.iter().map(|(token, _)| token.as_str()).collect();

    let mut rng = Rng::new(0x70_6b_65_6e);
    let (mut allowed, mut allowed_as_original, mut changed) = (0, 0, 0);
    for case in 0..TOKEN_CASES {
        let (original, carrier) = rng.pick(&tokens);
        let mut bytes = original.as_bytes().to_vec();
        for _ in 0..1 + rng.below(3) {
            bytes = mutate_token(&mut rng, &bytes, &texts);
        }
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        if mutated != *original {
            changed += 1;
        }

        // Straight through parsing and verification: only bytes a key holder signed verify.
        // (Splicing whole segments can rebuild another valid token exactly; that one may.)
        if let Ok(untrusted) = jws::parse(&mutated, config.max_token_bytes()) {
            for provider in config.providers() {
                let Some(KeySource::Inline(keys)) = provider.keys() else {
                    continue;
                };
                if verify::verify(untrusted.clone(), provider, keys, NOW, &Portable).is_ok() {
                    assert!(
                        texts.contains(&mutated.as_str()),
                        "case {case}: the mutated token {mutated:?} verified for {}",
                        provider.name
                    );
                }
            }
        }

        // Through the whole request flow: what the filter picked out must be a signed token.
        if let Decision::Allow(_) = decide(&config, &remote, *carrier, &mutated) {
            allowed += 1;
            let found = extracted(&config, *carrier, &mutated);
            assert!(
                found.as_deref().is_some_and(|found| texts.contains(&found)),
                "case {case}: allowed {carrier:?} request with the mutated token {mutated:?}"
            );
            if found.as_deref() == Some(original.as_str()) {
                allowed_as_original += 1;
            }
        }
    }
    // The property means something only if the mutations really change the tokens. (Allowed
    // mutations are ones the extraction undoes: a trailing space, a second credential after a
    // comma, a parameter after `&`.)
    assert!(
        changed > TOKEN_CASES * 9 / 10,
        "{changed} of {TOKEN_CASES} changed"
    );
    println!(
        "token cases: {TOKEN_CASES}, changed {changed}, allowed {allowed} \
         ({allowed_as_original} as the original token)"
    );
}

// ---------------------------------------------------------------------------------------------
// JSON value mutations, for key sets and configurations.

/// One step of a path into a JSON document.
#[derive(Debug, Clone)]
enum Step {
    Member(String),
    Element(usize),
}

/// The path of every value in `value`, the root (empty path) first.
fn paths(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, path: &mut Vec<Step>, all: &mut Vec<Vec<Step>>) {
        all.push(path.clone());
        match value {
            Value::Object(members) => {
                for (name, member) in members {
                    path.push(Step::Member(name.clone()));
                    walk(member, path, all);
                    path.pop();
                }
            }
            Value::Array(elements) => {
                for (index, element) in elements.iter().enumerate() {
                    path.push(Step::Element(index));
                    walk(element, path, all);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut all = Vec::new();
    walk(value, &mut Vec::new(), &mut all);
    all
}

fn at<'a>(value: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(value, |value, step| match step {
        Step::Member(name) => &mut value[name.as_str()],
        Step::Element(index) => &mut value[*index],
    })
}

/// Member names the documents under test use, and a few they must refuse or ignore.
const NAMES: [&str; 24] = [
    "kty",
    "kid",
    "alg",
    "use",
    "key_ops",
    "crv",
    "n",
    "e",
    "x",
    "y",
    "d",
    "keys",
    "providers",
    "name",
    "issuer",
    "audiences",
    "audience",
    "jwks",
    "inline",
    "rules",
    "match",
    "allow",
    "uri",
    "upstream",
];

fn random_string(rng: &mut Rng) -> String {
    let length = rng.below(12);
    (0..length)
        .map(|_| char::from(interesting_byte(rng) & 0x7f))
        .collect()
}

/// A value of any type, biased towards the edge values validators must handle.
fn replacement(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => json!(rng.one_in(2)),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(u64::MAX),
        5 => json!(1e300),
        6 => json!(""),
        7 => json!([]),
        8 => json!({}),
        9 => json!(rng.pick(&NAMES)),
        10 => json!(rng.next() % 100_000),
        _ => json!(random_string(rng)),
    }
}

/// One random mutation of the value at a random non-root path of `document`.
fn mutate_json(rng: &mut Rng, document: &mut Value) {
    let candidates = paths(document);
    // The root is left alone: a document that is not an object has no field to name.
    let Some(path) = candidates.get(1 + rng.below(candidates.len().max(2) - 1)) else {
        // Nothing below the root is left: give it a member back.
        document[*rng.pick(&NAMES)] = replacement(rng);
        return;
    };
    let target = at(document, path);
    match rng.below(8) {
        // Replaced by a value of any type.
        0 | 1 => *target = replacement(rng),
        // Removed from its object or array.
        2 => {
            let (last, parent) = path.split_last().unwrap();
            match (at(document, parent), last) {
                (Value::Object(members), Step::Member(name)) => {
                    members.remove(name);
                }
                (Value::Array(elements), Step::Element(index)) => {
                    elements.remove(*index);
                }
                _ => panic!("a path step matches its parent"),
            }
        }
        // A member added to an object, or an element duplicated in an array.
        3 => match target {
            Value::Object(members) => {
                members.insert(rng.pick(&NAMES).to_string(), replacement(rng));
            }
            Value::Array(elements) if !elements.is_empty() => {
                let copy = elements[rng.below(elements.len())].clone();
                elements.insert(rng.below(elements.len() + 1), copy);
            }
            other => *other = json!([other.clone()]),
        },
        // A string edited: a character replaced, inserted or removed, or its case changed.
        4 | 5 => match target {
            Value::String(text) if !text.is_empty() => {
                let mut bytes = text.clone().into_bytes();
                let position = rng.below(bytes.len());
                match rng.below(4) {
                    0 => bytes[position] = *rng.pick(BASE64URL),
                    1 => bytes.insert(position, interesting_byte(rng) & 0x7f),
                    2 => {
                        bytes.remove(position);
                    }
                    _ => bytes = text.to_uppercase().into_bytes(),
                }
                *text = String::from_utf8_lossy(&bytes).into_owned();
            }
            other => *other = replacement(rng),
        },
        // A number moved by one or to an extreme.
        6 => match target.as_i64() {
            Some(number) => {
                *target = json!(*rng.pick(&[
                    number.saturating_add(1),
                    number.saturating_sub(1),
                    -number,
                    0,
                    i64::MAX
                ]))
            }
            None => *target = replacement(rng),
        },
        // A member renamed.
        _ => {
            let (last, parent) = path.split_last().unwrap();
            if let (Value::Object(members), Step::Member(name)) = (at(document, parent), last) {
                let value = members.remove(name).unwrap();
                let renamed = if rng.one_in(2) {
                    rng.pick(&NAMES).to_string()
                } else {
                    format!("{name}{}", char::from(*rng.pick(BASE64URL)))
                };
                members.insert(renamed, value);
            }
        }
    }
}

fn mutated(rng: &mut Rng, original: &Value) -> Value {
    let mut document = original.clone();
    for _ in 0..1 + rng.below(3) {
        mutate_json(rng, &mut document);
    }
    document
}

// ---------------------------------------------------------------------------------------------
// Key sets.

/// A fixture key as parsed, compared through `Debug` (the one form the key types share).
fn parsed_form(key: TestKey) -> String {
    let (set, _) = KeySet::from_value(&jwks(&[key])).unwrap();
    format!("{:?}", set.keys()[0].public_key)
}

#[test]
fn mutated_key_sets_never_verify_a_token_without_its_original_key() {
    let original = jwks(&CORP_KEYS);
    let tokens: Vec<(TestKey, String)> = ["RS256", "ES256", "ES384", "EdDSA"]
        .iter()
        .map(|alg| {
            let key = TestKey::for_algorithm(alg);
            (key, token(alg, key, &corp_claims()))
        })
        .collect();
    let expected: Vec<String> = CORP_KEYS.iter().map(|key| parsed_form(*key)).collect();

    let remote = remote_keys();
    let mut rng = Rng::new(0x6a_77_6b_73);
    let (mut loaded, mut allowed) = (0, 0);
    for case in 0..KEY_SET_CASES {
        let document = mutated(&mut rng, &original);
        let text = document.to_string();
        if let Ok((set, skipped)) = KeySet::from_json(text.as_bytes()) {
            let entries = document["keys"].as_array().map_or(0, Vec::len);
            assert_eq!(set.len() + skipped.len(), entries, "case {case}: {text}");
            assert!(
                skipped.windows(2).all(|pair| pair[0].index < pair[1].index)
                    && skipped.iter().all(|key| key.index < entries),
                "case {case}: skipped {skipped:?}"
            );
        }

        let configuration = json!({"providers": [{
            "name": "corp", "issuer": ISSUER, "audiences": [AUDIENCE],
            "jwks": {"inline": document}
        }]});
        let config = match Config::from_json(configuration.to_string().as_bytes()) {
            Ok(done) => done.config,
            Err(error) => {
                assert!(
                    error.field.starts_with("providers[0].jwks"),
                    "case {case}: a key set problem is reported at the key set: {error}"
                );
                continue;
            }
        };
        loaded += 1;
        let Some(KeySource::Inline(set)) = config.providers()[0].keys() else {
            panic!("an inline key set stays inline");
        };
        // One token per case, and the ES384 one (CORP_KEYS[2]) rarely: a P-384 verification
        // costs tens of milliseconds in a debug build, a hundred times the others.
        let chosen = if rng.one_in(10) {
            2
        } else {
            *rng.pick(&[0, 1, 3])
        };
        for ((key, token), expected) in tokens.iter().zip(&expected).skip(chosen).take(1) {
            let headers = vec![("authorization".to_owned(), format!("Bearer {token}"))];
            let request = Request {
                method: "GET",
                path: "/",
                headers: &headers,
                source_address: None,
            };
            if let Decision::Allow(_) = authenticate_portably(&config, &remote, &request) {
                allowed += 1;
                let holds_it = set.keys().iter().any(|candidate| {
                    candidate.id.as_deref() == Some(key.kid())
                        && format!("{:?}", candidate.public_key) == *expected
                });
                assert!(
                    holds_it,
                    "case {case}: a {key:?} token verified under {text}"
                );
            }
        }
    }
    // Not vacuous: most mutated sets still load, and many still verify their tokens.
    assert!(loaded > KEY_SET_CASES / 2 && allowed > KEY_SET_CASES / 10);
    println!("key set cases: {KEY_SET_CASES}, loaded {loaded}, tokens allowed {allowed}");
}

// ---------------------------------------------------------------------------------------------
// Configurations.

/// Whether a refusal names the field at fault: in `field`, or (for a member missing from or
/// unknown to the top level, which has no path of its own) in the message.
fn names_a_field(field: &str, problem: &str) -> bool {
    let at_top = field.is_empty() || field == ".";
    !at_top || problem.starts_with("missing field `") || problem.starts_with("unknown field `")
}

#[test]
fn mutated_configurations_are_refused_with_the_field_named_or_decide_without_panicking() {
    let mut discovery = config_document();
    discovery["providers"][0]["discovery"] = json!({"upstream": "idp", "jwks_upstream": "keys"});
    discovery["providers"][0]
        .as_object_mut()
        .unwrap()
        .remove("jwks");
    discovery["providers"][1]["jwks"] =
        json!({"uri": "https://partner.example.com/keys", "upstream": "partner", "timeout_ms": 10});
    let originals = [config_document(), discovery];
    for original in &originals {
        load(original);
    }
    let remote = remote_keys();
    let tokens = valid_tokens();

    let mut rng = Rng::new(0x63_6f_6e_66);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..CONFIG_CASES {
        let original = &originals[rng.below(originals.len())];
        let document = mutated(&mut rng, original);
        let text = document.to_string();
        match Config::from_json(text.as_bytes()) {
            Err(error) => {
                refused += 1;
                assert!(
                    names_a_field(&error.field, &error.problem),
                    "case {case}: {error} names no field; configuration: {text}"
                );
                assert!(!error.problem.is_empty());
            }
            Ok(loaded) => {
                accepted += 1;
                for _ in 0..3 {
                    let (token, carrier) = rng.pick(&tokens);
                    decide(&loaded.config, &remote, *carrier, token);
                }
            }
        }
    }
    assert!(accepted > CONFIG_CASES / 20 && refused > CONFIG_CASES / 2);
    println!("configuration cases: {CONFIG_CASES}, accepted {accepted}, refused {refused}");
}
