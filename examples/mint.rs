//! Mints demo keys and tokens from the test fixtures, for `make run` and for trying the filter
//! by hand. The keys are the committed test keys (`tests/fixtures/keys/`): never trust them.
//!
//! ```text
//! cargo run --example mint -- jwks            # the public JWKS of the fixture keys
//! cargo run --example mint -- token [ALG]     # a token valid for one hour (default RS256)
//! ```
//! Tokens are issued by `https://idp.local.test` for audience `api://demo`, subject `demo-user`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

#[path = "../tests/support/mod.rs"]
mod support;
use support::TestKey;

const DEMO_KEYS: [TestKey; 5] = [
    TestKey::Rsa2048,
    TestKey::Rsa3072,
    TestKey::P256,
    TestKey::P384,
    TestKey::Ed25519,
];

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["jwks"] => println!("{}", support::jwks(&DEMO_KEYS)),
        ["token"] => println!("{}", demo_token("RS256")),
        ["token", alg] => println!("{}", demo_token(alg)),
        _ => {
            eprintln!("usage: mint jwks | mint token [RS256|RS384|RS512|PS256|PS384|PS512|ES256|ES384|EdDSA]");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn demo_token(alg: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": "https://idp.local.test",
        "aud": "api://demo",
        "sub": "demo-user",
        "iat": now,
        "exp": now + 3600,
    });
    support::token(alg, TestKey::for_algorithm(alg), &claims)
}
