//! Fixtures the fuzz targets share with the seed-corpus generator: one fixed configuration
//! with the fixture keys (inline, and "remote" through a lookup that always has them), a fixed
//! clock, and tokens signed by those keys.
//!
//! Everything is built once per process (`OnceLock`): libFuzzer calls a target millions of
//! times, and parsing RSA keys or signing tokens on each call would starve it.

use std::sync::OnceLock;

use serde_json::{json, Value};
use wasm_jwt_authn::testing::base::ids::{ListIndex, ProviderIndex};
use wasm_jwt_authn::testing::base::time::UnixSeconds;
use wasm_jwt_authn::testing::config::Config;
use wasm_jwt_authn::testing::decision::{authenticate, Attempt, Decision, Services};
use wasm_jwt_authn::testing::fetch::remote::{AddressesNow, KeysNow, RemoteDocuments};
use wasm_jwt_authn::testing::introspection::IntrospectionCache;
use wasm_jwt_authn::testing::jose::jwks::KeySet;
use wasm_jwt_authn::testing::jose::signature::Portable;
use wasm_jwt_authn::testing::request::Request;
use wasm_jwt_authn::testing::verify::cache::TokenCache;

#[path = "../../tests/support/mod.rs"]
pub mod support;

use support::{jwks, TestKey};

/// The fixed clock of every target.
pub const NOW: UnixSeconds = 1_800_000_000;
pub const ISSUER: &str = "https://idp.example.com";
pub const PARTNER_ISSUER: &str = "https://partner.example.com";
pub const REMOTE_ISSUER: &str = "https://remote.example.com";
pub const AUDIENCE: &str = "api://orders";

/// The keys the `corp` provider trusts inline, one per key type.
pub const CORP_KEYS: [TestKey; 4] = [
    TestKey::Rsa2048,
    TestKey::P256,
    TestKey::P384,
    TestKey::Ed25519,
];

/// The keys the `remote` provider's lookup always has.
pub const REMOTE_KEYS: [TestKey; 2] = [TestKey::Rsa3072, TestKey::Ed25519];

/// The configuration the `token` target (and the seed corpus) works against: three providers
/// with different sources and checks, and rules for anonymous, per-provider and method routes.
pub fn config_document() -> Value {
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
                "issuer": REMOTE_ISSUER,
                "audiences": [AUDIENCE],
                "jwks": {"uri": "https://remote.example.com/jwks", "upstream": "idp"},
                "token_sources": [{"header": "x-remote-token"}],
                "clock_skew_seconds": 0
            }
        ],
        "rules": [
            {"match": {"path_prefix": "/healthz"}, "allow": "anonymous"},
            {"match": {"path_prefix": "/partner"}, "providers": ["partner"]},
            {"match": {"path_prefix": "/remote"}, "providers": ["remote"]},
            {"match": {"path_exact": "/admin", "methods": ["POST"]}, "providers": ["corp"]}
        ]
    })
}

/// The fixed configuration, its remote keys, and valid tokens, built once.
pub struct Fixture {
    pub config: Config,
    pub remote: FixedRemoteKeys,
    /// One valid `corp` token per algorithm family (RS256, ES256, ES384, EdDSA).
    pub corp_tokens: Vec<String>,
}

/// Remote keys that are always there and fresh.
pub struct FixedRemoteKeys {
    pub keys: KeySet,
}

impl RemoteDocuments for FixedRemoteKeys {
    fn keys_now(&self, _provider: ProviderIndex, _now: UnixSeconds) -> KeysNow<'_> {
        KeysNow::Fresh(&self.keys)
    }

    fn address_list_now(&self, _list: ListIndex, _now: UnixSeconds) -> AddressesNow<'_> {
        AddressesNow::Unavailable
    }
}

/// No remote documents at all: every provider's keys and every address list are unavailable.
pub struct NoRemoteDocuments;

impl RemoteDocuments for NoRemoteDocuments {
    fn keys_now(&self, _provider: ProviderIndex, _now: UnixSeconds) -> KeysNow<'_> {
        KeysNow::Unavailable
    }

    fn address_list_now(&self, _list: ListIndex, _now: UnixSeconds) -> AddressesNow<'_> {
        AddressesNow::Unavailable
    }
}

/// The fixture, built on first use.
///
/// # Panics
/// If the fixed configuration or key set is invalid: a broken fixture, not a finding.
#[allow(clippy::expect_used)]
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let document = config_document().to_string();
        let config = Config::from_json(document.as_bytes())
            .expect("the fuzz configuration is valid")
            .config;
        let (keys, _skipped) =
            KeySet::from_value(&jwks(&REMOTE_KEYS)).expect("the remote fixture keys parse");
        let corp_tokens = ["RS256", "ES256", "ES384", "EdDSA"]
            .iter()
            .map(|alg| support::token(alg, TestKey::for_algorithm(alg), &corp_claims()))
            .collect();
        Fixture {
            config,
            remote: FixedRemoteKeys { keys },
            corp_tokens,
        }
    })
}

/// Claims a `corp` token is allowed with at [`NOW`].
pub fn corp_claims() -> Value {
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

/// Claims a `partner` token is allowed with at [`NOW`].
pub fn partner_claims() -> Value {
    json!({"iss": PARTNER_ISSUER, "aud": AUDIENCE, "sub": "partner-7", "exp": NOW + 300})
}

/// Claims a `remote` token is allowed with at [`NOW`].
pub fn remote_claims() -> Value {
    json!({"iss": REMOTE_ISSUER, "aud": AUDIENCE, "sub": "svc", "exp": NOW + 60, "iat": NOW})
}

/// Decides `request` against `config` (and again after the wait, when the first decision is to
/// wait) and renders what came out, so the response and edit code runs too. Returns the first
/// decision.
pub fn decide_fully(
    config: &Config,
    remote: &dyn RemoteDocuments,
    request: &Request<'_>,
) -> Decision {
    let decide = |attempt| {
        let mut services = Services {
            remote,
            introspections: &IntrospectionCache::new(0),
            signatures: &Portable,
            token_cache: &mut TokenCache::new(0),
        };
        authenticate(config, &mut services, request, NOW, attempt)
    };
    let first = decide(Attempt::First);
    render(config, &first);
    if let Decision::Wait(_) = first {
        let after_wait = decide(Attempt::AfterWait);
        assert!(
            !matches!(after_wait, Decision::Wait(_)),
            "a request waits at most once"
        );
        render(config, &after_wait);
    }
    first
}

fn render(config: &Config, decision: &Decision) {
    match decision {
        Decision::Deny(denial) => {
            std::hint::black_box(denial.response(config.realm()));
        }
        Decision::Allow(allowed) => {
            std::hint::black_box(format!("{allowed:?}"));
        }
        Decision::Wait(wait) => {
            std::hint::black_box(wait);
        }
        Decision::Introspect(needed) => {
            std::hint::black_box(needed);
        }
    }
}
