//! Mints demo keys and tokens from the test fixtures, for `make run`, for trying the filter
//! by hand, and for `make bench`. The keys are the committed test keys
//! (`tests/fixtures/keys/`): never trust them.
//!
//! ```text
//! cargo run --example mint -- jwks            # the public JWKS of the fixture keys
//! cargo run --example mint -- token [ALG]     # a token valid for one hour (default RS256)
//! cargo run --release --example mint -- tokens ALG COUNT ISSUER AUDIENCE [KID]
//!                                             # COUNT distinct tokens valid for one day
//! ```
//! `token`: issued by `https://idp.local.test` for audience `api://demo`, subject `demo-user`.
//!
//! `tokens`: one token a line, each with its own `jti` and `sub`, `iat` now and `exp` a day
//! later, signed with the fixture key for ALG (the one `token` uses) and its fixture `kid`, or
//! KID when given (a key set that names the same key otherwise, such as the benchmark's). The
//! signing is spread over every CPU: 100 000 ES256 tokens take seconds in a release build.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use std::io::Write as _;
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

const ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// How long `tokens` are valid.
const BATCH_LIFETIME_SECONDS: u64 = 86_400;

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
        ["token", alg] if ALGORITHMS.contains(alg) => println!("{}", demo_token(alg)),
        ["tokens", alg, count, issuer, audience, kid @ ..]
            if ALGORITHMS.contains(alg) && kid.len() <= 1 =>
        {
            let Ok(count) = count.parse::<usize>() else {
                eprintln!("mint tokens: COUNT must be a whole number, not {count:?}");
                return ExitCode::from(2);
            };
            let key = TestKey::for_algorithm(alg);
            let kid = kid.first().copied().unwrap_or(key.kid());
            if let Err(error) = batch(alg, key, kid, count, issuer, audience) {
                // A closed pipe (`| head`) is not worth a panic.
                eprintln!("mint tokens: {error}");
                return ExitCode::FAILURE;
            }
        }
        _ => {
            eprintln!(
                "usage: mint jwks | mint token [ALG] | mint tokens ALG COUNT ISSUER AUDIENCE [KID]\n\
                 ALG: {}",
                ALGORITHMS.join("|")
            );
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn demo_token(alg: &str) -> String {
    let now = now();
    let claims = json!({
        "iss": "https://idp.local.test",
        "aud": "api://demo",
        "sub": "demo-user",
        "iat": now,
        "exp": now + 3600,
    });
    support::token(alg, TestKey::for_algorithm(alg), &claims)
}

/// Prints `count` distinct tokens, in order of their index, signed on every CPU.
fn batch(
    alg: &str,
    key: TestKey,
    kid: &str,
    count: usize,
    issuer: &str,
    audience: &str,
) -> std::io::Result<()> {
    let issued_at = now();
    // In every `jti`, so tokens of two batches never collide in a cache.
    let batch_id = format!("{issued_at:x}-{:x}", std::process::id());
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string();
    let signer = Signer::new(alg, key);
    let mint = |index: usize| {
        let claims = json!({
            "iss": issuer,
            "aud": audience,
            "sub": format!("flood-user-{index}"),
            "jti": format!("flood-{alg}-{batch_id}-{index}"),
            "iat": issued_at,
            "exp": issued_at + BATCH_LIFETIME_SECONDS,
        });
        let signing_input = format!(
            "{}.{}",
            support::b64url(header.as_bytes()),
            support::b64url(claims.to_string().as_bytes())
        );
        let signature = signer.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", support::b64url(&signature))
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut output = std::io::BufWriter::new(std::io::stdout().lock());
    // Chunks small enough that no thread holds many tokens, large enough to keep all busy.
    let chunk = 4096 * threads;
    let mut start = 0;
    while start < count {
        let end = count.min(start + chunk);
        let per_thread = (end - start).div_ceil(threads);
        let parts: Vec<Vec<String>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (start..end)
                .step_by(per_thread)
                .map(|first| {
                    let mint = &mint;
                    scope.spawn(move || {
                        (first..end.min(first + per_thread))
                            .map(mint)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("minting thread"))
                .collect()
        });
        for token in parts.iter().flatten() {
            writeln!(output, "{token}")?;
        }
        start = end;
    }
    output.flush()
}

/// Signs with one fixture key. `TestKey::sign` parses the key for every signature, which is
/// half the time of an ES256 one: ES256 parses it once here.
enum Signer {
    Es256(p256::ecdsa::SigningKey),
    Fixture(String, TestKey),
}

impl Signer {
    fn new(alg: &str, key: TestKey) -> Signer {
        let fixture = Signer::Fixture(alg.to_owned(), key);
        if alg != "ES256" || key != TestKey::P256 {
            return fixture;
        }
        use p256::pkcs8::DecodePrivateKey as _;
        let pem = include_str!("../tests/fixtures/keys/p256.pem");
        let signer = Signer::Es256(p256::ecdsa::SigningKey::from_pkcs8_pem(pem).expect("P-256"));
        // ECDSA here is deterministic (RFC 6979): the same signature, or the wrong key file.
        assert_eq!(
            signer.sign(b"check"),
            fixture.sign(b"check"),
            "P-256 fixture"
        );
        signer
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Signer::Es256(key) => {
                use p256::ecdsa::signature::Signer as _;
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
            Signer::Fixture(alg, key) => key.sign(alg, message),
        }
    }
}
