//! Wycheproof vectors through a real Envoy, on both signature backends: proof that handing
//! `RS*`/`ES*` signatures to the host's `verify_signature` (BoringSSL) changes no verdict.
//!
//! `tests/crypto_probe/` is a test-only proxy-wasm module that takes one signature per request
//! (algorithm, JWK, message, signature in headers) and answers what the filter's own code made
//! of it inside the proxy: [`jwks::parse_key`], [`wasm_jwt_authn::testing::jose::signature::check`], the portable
//! verdict, and the host's verdict on `host_arguments()`, called as the filter's adapter calls
//! it. This test builds the probe, starts one Envoy with it, sends every vector of the files
//! below over one keep-alive connection, and asserts for every vector:
//!
//! - the host answered whenever the algorithm is hosted and the signature passed `check`, and
//!   its verdict equals the portable one (a disagreement names the file, tcId and both);
//! - what `parse_key` and `check` said inside Envoy equals what they say natively;
//! - the verdict matches Wycheproof's by the rule of `tests/core/wycheproof.rs` (valid → accepted,
//!   invalid/acceptable → rejected), with the same documented exceptions, the same JWA policy
//!   for RSASSA-PSS parameter sets (none of `PS*` may accept them), and the same key
//!   selection for the JWS/JWK files (the filter's `token::parse`, `KeySet::candidates` and
//!   `Key::accepts` run natively; each candidate's signature goes through Envoy).
//!
//! It fails on a missing file, on a file whose vectors do not all run, and unless every hosted
//! algorithm (RS256, RS384, RS512, ES256, ES384) sent at least one vector through the host.
//! P-521 is not a JWA algorithm this filter implements and is left to `tests/core/wycheproof.rs`.
//!
//! Needs `ENVOY_BIN` (or `.venv/bin/envoy`); builds the probe itself into
//! `target/crypto_probe`. `cargo test --test e2e wycheproof_envoy:: -- --nocapture` prints one tally
//! line per file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use wasm_jwt_authn::testing::jose::algorithm::Algorithm;
use wasm_jwt_authn::testing::jose::jwks::{self, KeyProblem, KeySet};
use wasm_jwt_authn::testing::jose::signature;
use wasm_jwt_authn::testing::jose::token::{self, JoseHeader, MalformedToken};

use crate::envoy;
use crate::envoy::{Envoy, Options};
use crate::wycheproof_vectors::*;

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");
/// The algorithms the host verifies (`host_crypto::hash_function`).
const HOSTED: [Algorithm; 5] = [
    Algorithm::Rs256,
    Algorithm::Rs384,
    Algorithm::Rs512,
    Algorithm::Es256,
    Algorithm::Es384,
];

#[test]
fn wycheproof_verdicts_are_identical_on_the_host_and_portable_backends_in_envoy() {
    let started = Instant::now();
    let probe = build_probe();
    let built = started.elapsed();
    let envoy = Envoy::start(
        "wycheproof-probe",
        "{}",
        envoy::free_port(),
        &Options {
            code: Some(json!({"local": {"filename": probe}})),
            ..Options::default()
        },
    );
    let ready = started.elapsed();
    let mut runner = Runner {
        client: ProbeClient::new(envoy.listener()),
        host_by_algorithm: BTreeMap::new(),
        native_keys: HashMap::new(),
    };

    let mut tallies = Vec::new();
    for bits in [2048, 3072, 4096] {
        for hash in [256, 384, 512] {
            tallies
                .push(runner.rsa_pkcs1_file(&format!("rsa_signature_{bits}_sha{hash}_test.json")));
        }
    }
    for file in [
        "ecdsa_secp256r1_sha256_p1363_test.json",
        "ecdsa_secp384r1_sha384_p1363_test.json",
    ] {
        tallies.push(runner.ecdsa_file(file));
    }
    for file in [
        "rsa_pss_2048_sha256_mgf1_32_test.json",
        "rsa_pss_2048_sha384_mgf1_48_test.json",
        "rsa_pss_3072_sha256_mgf1_32_test.json",
        "rsa_pss_4096_sha256_mgf1_32_test.json",
        "rsa_pss_4096_sha384_mgf1_48_test.json",
        "rsa_pss_4096_sha512_mgf1_64_test.json",
        "rsa_pss_misc_test.json",
    ] {
        tallies.push(runner.rsa_pss_file(file));
    }
    tallies.push(runner.ed25519_file("ed25519_test.json"));
    tallies.push(runner.jose_file(
        "json_web_signature_test.json",
        JSON_WEB_SIGNATURE_EXCEPTIONS,
    ));
    tallies.push(runner.jose_file("json_web_key_test.json", &[]));

    let (mut vectors, mut requests, mut through_host, mut host_agrees) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    for tally in tallies {
        vectors += tally.run();
        requests += tally.requests;
        through_host += tally.through_host;
        host_agrees += tally.host_agrees;
        problems.extend(tally.finish());
    }
    let by_algorithm: Vec<String> = HOSTED
        .iter()
        .map(|algorithm| {
            let count = runner
                .host_by_algorithm
                .get(algorithm.name())
                .copied()
                .unwrap_or(0);
            if count == 0 {
                problems.push(format!("no {algorithm} vector went through the host"));
            }
            format!("{algorithm} {count}")
        })
        .collect();
    println!(
        "total: {vectors} vectors, {requests} probe requests over {} connection(s), through \
         host {through_host} ({}), host == portable {host_agrees}/{through_host}; probe built in \
         {built:.1?}, Envoy ready at {ready:.1?}, done at {:.1?}",
        runner.client.connections,
        by_algorithm.join(", "),
        started.elapsed()
    );
    assert!(vectors > 0, "no vectors ran");
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The probe module and the connection to it.

/// Builds `tests/crypto_probe` into `target/crypto_probe`, apart from the filter's own build.
fn build_probe() -> PathBuf {
    let repository = Path::new(REPOSITORY);
    let target_dir = repository.join("target/crypto_probe");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let output = Command::new(cargo)
        .args([
            "build",
            "--locked",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(repository.join("tests/crypto_probe/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .expect("run cargo to build the probe");
    assert!(
        output.status.success(),
        "building tests/crypto_probe failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let module = target_dir.join("wasm32-wasip1/release/crypto_probe.wasm");
    assert!(module.is_file(), "no probe module at {}", module.display());
    module
}

/// What the probe answered for one signature (see `tests/crypto_probe/src/lib.rs`).
#[derive(Debug, Deserialize)]
struct ProbeAnswer {
    key: String,
    check: Option<String>,
    portable: Option<bool>,
    /// `true`/`false`, `null`, or `"unavailable:<why>"`.
    host: Value,
}

impl ProbeAnswer {
    /// The verdict of the filter's signature step: key usable, form checked, signature good.
    fn verdict(&self) -> Verdict {
        if self.key != "ok" {
            return Verdict::KeyRefused(self.key.clone());
        }
        match (self.check.as_deref(), self.portable) {
            (Some("ok"), Some(true)) => Verdict::Accepted,
            (Some("ok"), _) => Verdict::BadSignature("Invalid".to_owned()),
            (error, _) => Verdict::BadSignature(error.unwrap_or("no check").to_owned()),
        }
    }
}

/// HTTP/1.1 to the probe over one keep-alive connection (reopened if Envoy closes it).
struct ProbeClient {
    address: SocketAddr,
    connection: Option<BufReader<TcpStream>>,
    connections: usize,
}

impl ProbeClient {
    fn new(address: SocketAddr) -> ProbeClient {
        ProbeClient {
            address,
            connection: None,
            connections: 0,
        }
    }

    fn ask(
        &mut self,
        algorithm: Algorithm,
        jwk: &Value,
        message: &[u8],
        signature: &[u8],
    ) -> ProbeAnswer {
        let request = format!(
            "GET /probe HTTP/1.1\r\nhost: probe\r\nx-alg: {}\r\nx-jwk: {}\r\nx-message: {}\r\n\
             x-signature: {}\r\n\r\n",
            algorithm.name(),
            base64url(jwk.to_string().as_bytes()),
            base64url(message),
            base64url(signature),
        );
        // The probe has no state, so a request on a connection Envoy closed meanwhile is simply
        // sent again on a new one.
        let (status, body) = self
            .exchange(request.as_bytes())
            .or_else(|first| {
                self.connection = None;
                self.exchange(request.as_bytes())
                    .map_err(|second| format!("{first}; on a new connection: {second}"))
            })
            .unwrap_or_else(|error| panic!("probe request to {}: {error}", self.address));
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "the probe refused a request: {text}");
        serde_json::from_slice(&body).unwrap_or_else(|error| {
            panic!("probe answer is not the expected JSON ({error}): {text}")
        })
    }

    /// One request and its response; `Err` on any I/O or framing problem.
    fn exchange(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(self.address).map_err(|error| error.to_string())?;
            stream
                .set_nodelay(true)
                .map_err(|error| error.to_string())?;
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|error| error.to_string())?;
            self.connection = Some(BufReader::new(stream));
            self.connections += 1;
        }
        let connection = self.connection.as_mut().unwrap();
        connection
            .get_mut()
            .write_all(request)
            .map_err(|error| format!("send: {error}"))?;
        let mut line = String::new();
        let read_line = |connection: &mut BufReader<TcpStream>, line: &mut String| {
            line.clear();
            match connection.read_line(line) {
                Ok(0) => Err("connection closed".to_owned()),
                Ok(_) => Ok(()),
                Err(error) => Err(format!("read: {error}")),
            }
        };
        read_line(connection, &mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let (mut length, mut close) = (None, false);
        loop {
            read_line(connection, &mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    length = value.parse::<usize>().ok();
                } else if name == "connection" && value.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let length = length.ok_or("response without content-length")?;
        let mut body = vec![0; length];
        connection
            .read_exact(&mut body)
            .map_err(|error| format!("read body: {error}"))?;
        if close {
            self.connection = None;
        }
        Ok((status, body))
    }
}

// ---------------------------------------------------------------------------------------------
// The families.

struct Runner {
    client: ProbeClient,
    /// Host verdicts per algorithm name, over all files.
    host_by_algorithm: BTreeMap<&'static str, usize>,
    /// `parse_key` natively, by JWK text: a group's key is parsed once, not once per vector.
    native_keys: HashMap<String, Result<jwks::Key, KeyProblem>>,
}

impl Runner {
    /// The probe's `key` and `check` for the same input, computed natively. (Not the portable
    /// verdict: this crate is unoptimised in test builds and its RSA would take most of the
    /// test's time; `tests/core/wycheproof.rs` holds the native verdicts to Wycheproof's.)
    fn native_key_and_check(
        &mut self,
        algorithm: Algorithm,
        jwk: &Value,
        message: &[u8],
        signature: &[u8],
    ) -> (String, Option<String>) {
        let key = self
            .native_keys
            .entry(jwk.to_string())
            .or_insert_with(|| jwks::parse_key(jwk));
        match key {
            Err(problem) => (format!("{problem:?}"), None),
            Ok(key) => match signature::check(algorithm, key, message, signature) {
                Err(error) => ("ok".to_owned(), Some(format!("{error:?}"))),
                Ok(_) => ("ok".to_owned(), Some("ok".to_owned())),
            },
        }
    }

    fn rsa_pkcs1_file(&mut self, file: &str) -> Tally {
        let vectors: VectorFile<RsaGroup> = load(file);
        let mut tally = Tally::new(file, vectors.number_of_tests, &[]);
        for group in &vectors.test_groups {
            let jwk = rsa_jwk(&group.public_key);
            let algorithm = match group.sha.as_str() {
                "SHA-256" => Algorithm::Rs256,
                "SHA-384" => Algorithm::Rs384,
                "SHA-512" => Algorithm::Rs512,
                other => panic!("{file}: PKCS#1 v1.5 with {other} has no JWA algorithm"),
            };
            for vector in &group.tests {
                let verdict = self.primitive(&mut tally, &vector.case(), algorithm, &jwk, vector);
                tally.judge(&vector.case(), &verdict);
            }
        }
        tally
    }

    fn rsa_pss_file(&mut self, file: &str) -> Tally {
        let vectors: VectorFile<RsaGroup> = load(file);
        let mut tally = Tally::new(file, vectors.number_of_tests, &[]);
        for group in &vectors.test_groups {
            let jwk = rsa_jwk(&group.public_key);
            match jwa_pss_algorithm(group) {
                Some(algorithm) => {
                    for vector in &group.tests {
                        let verdict =
                            self.primitive(&mut tally, &vector.case(), algorithm, &jwk, vector);
                        tally.judge(&vector.case(), &verdict);
                    }
                }
                None => {
                    // Not a JWA parameter set: no PS* algorithm may accept it.
                    for vector in &group.tests {
                        let mut accepted_as = None;
                        for algorithm in [Algorithm::Ps256, Algorithm::Ps384, Algorithm::Ps512] {
                            let verdict =
                                self.primitive(&mut tally, &vector.case(), algorithm, &jwk, vector);
                            if verdict == Verdict::Accepted {
                                accepted_as = Some(algorithm);
                            }
                        }
                        tally.judge_policy_rejection(&vector.case(), accepted_as);
                    }
                }
            }
        }
        tally
    }

    fn ecdsa_file(&mut self, file: &str) -> Tally {
        let vectors: VectorFile<EcdsaGroup> = load(file);
        let mut tally = Tally::new(file, vectors.number_of_tests, &[]);
        for group in &vectors.test_groups {
            let point = &group.public_key;
            let (curve, coordinate_bytes, algorithm) =
                match (point.curve.as_str(), group.sha.as_str()) {
                    ("secp256r1", "SHA-256") => ("P-256", 32, Algorithm::Es256),
                    ("secp384r1", "SHA-384") => ("P-384", 48, Algorithm::Es384),
                    (curve, hash) => panic!("{file}: {curve} with {hash} is not run here"),
                };
            let jwk = json!({
                "kty": "EC",
                "crv": curve,
                "x": base64url(&fixed_size(&hex(&point.wx), coordinate_bytes)),
                "y": base64url(&fixed_size(&hex(&point.wy), coordinate_bytes)),
            });
            for vector in &group.tests {
                let verdict = self.primitive(&mut tally, &vector.case(), algorithm, &jwk, vector);
                tally.judge(&vector.case(), &verdict);
            }
        }
        tally
    }

    fn ed25519_file(&mut self, file: &str) -> Tally {
        let vectors: VectorFile<EddsaGroup> = load(file);
        let mut tally = Tally::new(file, vectors.number_of_tests, &[]);
        for group in &vectors.test_groups {
            let jwk = json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": base64url(&hex(&group.public_key.pk)),
            });
            for vector in &group.tests {
                let verdict =
                    self.primitive(&mut tally, &vector.case(), Algorithm::EdDsa, &jwk, vector);
                tally.judge(&vector.case(), &verdict);
            }
        }
        tally
    }

    fn jose_file(&mut self, file: &str, exceptions: &'static [Exception]) -> Tally {
        let vectors: VectorFile<JoseGroup> = load(file);
        let mut tally = Tally::new(file, vectors.number_of_tests, exceptions);
        for group in &vectors.test_groups {
            let entries = group.public.as_ref().map(jwk_entries).unwrap_or_default();
            let (keys, skipped) = KeySet::from_value(&json!({ "keys": entries }))
                .unwrap_or_else(|error| panic!("{file}: group {:?}: {error}", group.comment));
            let refused = skipped.first().map(|skip| &skip.reason);
            // As in tests/core/wycheproof.rs: HMAC groups (no public key) and ES512 groups are not
            // applicable; their tokens must still be refused.
            let not_applicable = group.public.is_none()
                || (keys.is_empty()
                    && refused == Some(&KeyProblem::UnsupportedCurve("P-521".to_owned())));
            let keys = KeyWithJwk::pair(&keys, &entries);
            for vector in &group.tests {
                let verdict = self.jws(&mut tally, &vector.case(), &vector.jws, &keys, refused);
                if not_applicable {
                    tally.not_applicable(&vector.case(), &verdict);
                } else {
                    tally.judge(&vector.case(), &verdict);
                }
            }
        }
        tally
    }

    /// A primitive vector (hex message and signature) with a key given as a JWK.
    fn primitive(
        &mut self,
        tally: &mut Tally,
        case: &Case<'_>,
        algorithm: Algorithm,
        jwk: &Value,
        vector: &SignatureVector,
    ) -> Verdict {
        self.signature(
            tally,
            case,
            algorithm,
            jwk,
            &hex(&vector.msg),
            &hex(&vector.sig),
        )
    }

    /// One signature through Envoy, with every per-signature assertion.
    fn signature(
        &mut self,
        tally: &mut Tally,
        case: &Case<'_>,
        algorithm: Algorithm,
        jwk: &Value,
        message: &[u8],
        signature: &[u8],
    ) -> Verdict {
        let answer = self.client.ask(algorithm, jwk, message, signature);
        tally.requests += 1;
        let native = self.native_key_and_check(algorithm, jwk, message, signature);
        let inside = (answer.key.clone(), answer.check.clone());
        if inside != native {
            tally.problem(
                case,
                &format!("{algorithm}: key and check in Envoy {inside:?}, natively {native:?}"),
            );
        }
        let checked = answer.key == "ok" && answer.check.as_deref() == Some("ok");
        match &answer.host {
            Value::Bool(host) => {
                tally.through_host += 1;
                *self.host_by_algorithm.entry(algorithm.name()).or_default() += 1;
                if Some(*host) == answer.portable {
                    tally.host_agrees += 1;
                } else {
                    tally.problem(
                        case,
                        &format!(
                            "HOST AND PORTABLE DISAGREE on {algorithm}: host {host}, portable {:?}",
                            answer.portable
                        ),
                    );
                }
            }
            Value::Null if checked && HOSTED.contains(&algorithm) => {
                tally.problem(
                    case,
                    &format!("{algorithm} was checked but the host gave no verdict"),
                );
            }
            Value::Null => {}
            other => tally.problem(case, &format!("{algorithm}: host {other}")),
        }
        answer.verdict()
    }

    /// A compact JWS: `tests/core/wycheproof.rs`'s `jws_verdict`, each candidate key's signature
    /// check sent through Envoy.
    fn jws(
        &mut self,
        tally: &mut Tally,
        case: &Case<'_>,
        jws: &str,
        keys: &[KeyWithJwk],
        refused: Option<&KeyProblem>,
    ) -> Verdict {
        match token::parse(jws, MAX_TOKEN_BYTES) {
            Ok(token) => self.select_and_verify(
                tally,
                case,
                keys,
                refused,
                token.header(),
                token.signing_input().as_bytes(),
                token.signature(),
            ),
            // The JWS files' payloads are not JSON objects: judged with that JWT rule waived, as
            // in tests/core/wycheproof.rs (the header alone must parse, the signature covers the
            // original `header.payload`).
            Err(MalformedToken::NotJsonObject) => {
                let mut segments = jws.split('.');
                let (header, payload, signature) = (
                    segments.next().unwrap(),
                    segments.next().unwrap(),
                    segments.next().unwrap(),
                );
                match token::parse(&format!("{header}.e30.{signature}"), MAX_TOKEN_BYTES) {
                    Err(error) => Verdict::Malformed(error),
                    Ok(token) => self.select_and_verify(
                        tally,
                        case,
                        keys,
                        refused,
                        token.header(),
                        format!("{header}.{payload}").as_bytes(),
                        token.signature(),
                    ),
                }
            }
            Err(error) => Verdict::Malformed(error),
        }
    }

    /// The key choice of `verify::check_signature`: with a `kid`, only keys carrying it; only
    /// keys that accept the algorithm; any one verifying wins.
    #[allow(clippy::too_many_arguments)]
    fn select_and_verify(
        &mut self,
        tally: &mut Tally,
        case: &Case<'_>,
        keys: &[KeyWithJwk],
        refused: Option<&KeyProblem>,
        header: &JoseHeader,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Verdict {
        if keys.is_empty() {
            if let Some(problem) = refused {
                return Verdict::KeyRefused(format!("{problem:?}"));
            }
        }
        let key_id = header.key_id.as_deref();
        let candidates: Vec<&KeyWithJwk> = keys
            .iter()
            .filter(|key| key_id.is_none() || key.key.id.as_deref() == key_id)
            .collect();
        if key_id.is_some() && candidates.is_empty() {
            return Verdict::UnknownKeyId;
        }
        let mut last = None;
        for candidate in candidates
            .into_iter()
            .filter(|candidate| candidate.key.accepts(header.algorithm))
        {
            match self.signature(
                tally,
                case,
                header.algorithm,
                &candidate.jwk,
                signing_input,
                signature,
            ) {
                Verdict::Accepted => return Verdict::Accepted,
                other => last = Some(other),
            }
        }
        last.unwrap_or(Verdict::NoCompatibleKey)
    }
}

/// A usable key of a JWKS and the JWK it came from (the probe parses the JWK itself).
struct KeyWithJwk {
    key: jwks::Key,
    jwk: Value,
}

impl KeyWithJwk {
    /// Pairs each key of `keys` with its entry of `entries`, in the set's order.
    fn pair(keys: &KeySet, entries: &[Value]) -> Vec<KeyWithJwk> {
        keys.candidates(None)
            .map(|key| {
                let jwk = entries
                    .iter()
                    .find(|entry| {
                        jwks::parse_key(entry)
                            .is_ok_and(|parsed| parsed.fingerprint == key.fingerprint)
                    })
                    .expect("every key of a set comes from one of its entries")
                    .clone();
                KeyWithJwk {
                    key: key.clone(),
                    jwk,
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Verdicts, tallies and the rule.

/// What the filter's layer concluded about one vector (as in `tests/core/wycheproof.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Accepted,
    KeyRefused(String),
    Malformed(MalformedToken),
    UnknownKeyId,
    NoCompatibleKey,
    BadSignature(String),
}

struct Case<'a> {
    tc_id: u32,
    comment: &'a str,
    expected: Expected,
}

/// One file's counts, printed as its tally line, and its problems.
struct Tally {
    file: String,
    declared_total: usize,
    exceptions: &'static [Exception],
    valid: usize,
    valid_accepted: usize,
    rejectable: usize,
    rejected: usize,
    not_applicable: usize,
    jwa_policy: usize,
    excepted: Vec<u32>,
    requests: usize,
    through_host: usize,
    host_agrees: usize,
    problems: Vec<String>,
}

impl Tally {
    fn new(file: &str, declared_total: usize, exceptions: &'static [Exception]) -> Tally {
        Tally {
            file: file.to_owned(),
            declared_total,
            exceptions,
            valid: 0,
            valid_accepted: 0,
            rejectable: 0,
            rejected: 0,
            not_applicable: 0,
            jwa_policy: 0,
            excepted: Vec::new(),
            requests: 0,
            through_host: 0,
            host_agrees: 0,
            problems: Vec::new(),
        }
    }

    fn run(&self) -> usize {
        self.valid + self.rejectable + self.not_applicable + self.jwa_policy + self.excepted.len()
    }

    fn problem(&mut self, case: &Case<'_>, problem: &str) {
        self.problems.push(format!(
            "{} tcId {} ({:?}, expected {}): {problem}",
            self.file, case.tc_id, case.comment, case.expected
        ));
    }

    /// valid → accepted, invalid/acceptable → rejected, or the listed exception.
    fn judge(&mut self, case: &Case<'_>, verdict: &Verdict) {
        if let Some(exception) = self.exceptions.iter().find(|ex| ex.tc_id == case.tc_id) {
            self.excepted.push(case.tc_id);
            let got = format!("{verdict:?}");
            if got != exception.outcome {
                let problem = format!("documented exception says {}, got {got}", exception.outcome);
                self.problem(case, &problem);
            }
            return;
        }
        let accepted = *verdict == Verdict::Accepted;
        match case.expected {
            Expected::Valid => {
                self.valid += 1;
                if accepted {
                    self.valid_accepted += 1;
                } else {
                    self.problem(case, &format!("got {verdict:?}"));
                }
            }
            Expected::Invalid | Expected::Acceptable => {
                self.rejectable += 1;
                if accepted {
                    self.problem(case, "got Accepted");
                } else {
                    self.rejected += 1;
                }
            }
        }
    }

    fn judge_policy_rejection(&mut self, case: &Case<'_>, accepted_as: Option<Algorithm>) {
        self.jwa_policy += 1;
        if let Some(algorithm) = accepted_as {
            self.problem(
                case,
                &format!("not a JWA parameter set, must be rejected, but {algorithm} accepted it"),
            );
        }
    }

    fn not_applicable(&mut self, case: &Case<'_>, verdict: &Verdict) {
        self.not_applicable += 1;
        if *verdict == Verdict::Accepted {
            self.problem(case, "not applicable, but Accepted");
        }
    }

    /// Prints the tally line and returns every problem, including bookkeeping failures.
    fn finish(mut self) -> Vec<String> {
        let mut line = format!(
            "{}: run {} ({} probe requests), through host {}, host == portable {}/{}, \
             valid accepted {}/{}, invalid+acceptable rejected {}/{}",
            self.file,
            self.run(),
            self.requests,
            self.through_host,
            self.host_agrees,
            self.through_host,
            self.valid_accepted,
            self.valid,
            self.rejected,
            self.rejectable,
        );
        if self.not_applicable > 0 {
            line += &format!(", not applicable {}", self.not_applicable);
        }
        if self.jwa_policy > 0 {
            line += &format!(", rejected by JWA policy {}", self.jwa_policy);
        }
        if !self.excepted.is_empty() {
            line += &format!(", documented exceptions {}", self.excepted.len());
        }
        println!("{line}");

        if self.run() == 0 {
            self.problems.push(format!("{}: no vectors run", self.file));
        }
        if self.run() != self.declared_total {
            self.problems.push(format!(
                "{}: ran {} vectors, the file declares numberOfTests {}",
                self.file,
                self.run(),
                self.declared_total
            ));
        }
        for exception in self.exceptions {
            if !self.excepted.contains(&exception.tc_id) {
                self.problems.push(format!(
                    "{}: documented exception for tcId {} matches no vector",
                    self.file, exception.tc_id
                ));
            }
        }
        self.problems
    }
}

// ---------------------------------------------------------------------------------------------
// Vectors as cases (files, schema and exceptions: tests/support/wycheproof_vectors.rs).

impl SignatureVector {
    fn case(&self) -> Case<'_> {
        Case {
            tc_id: self.tc_id,
            comment: &self.comment,
            expected: self.result,
        }
    }
}

impl JoseVector {
    fn case(&self) -> Case<'_> {
        Case {
            tc_id: self.tc_id,
            comment: &self.comment,
            expected: self.result,
        }
    }
}
