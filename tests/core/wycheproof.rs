//! Wycheproof test vectors (C2SP/wycheproof, `testvectors_v1`) run through this crate's own
//! verification layer, the way the filter uses it: keys enter as JWKs through
//! [`jwks::parse_key`] / [`KeySet`], signatures are checked by [`signature::verify_signature`] with
//! the key chosen as `verify` chooses it, and whole JWS strings go through [`token::parse`].
//!
//! The rule: every `valid` vector is accepted; every `invalid` and every `acceptable` vector is
//! rejected (a strict verifier takes the stricter reading of "acceptable"). A vector may differ
//! only if it is listed in its file's exception list below, with the exact outcome we produce
//! and the reason. What the filter does not implement is counted, never skipped silently:
//! - P-521 (`ES512`), HMAC (`HS*`) and encryption: **not applicable**; the test still asserts
//!   that such a key is refused and such a token header is refused (`UnsupportedAlgorithm`);
//! - RSASSA-PSS parameters other than JWA's (RFC 7518 §3.5: MGF1 with the message hash, salt
//!   length = hash length): **rejected by JWA policy**, checked against every `PS*` algorithm.
//!
//! The JWS/JWK files are JWS, not JWT: none of their payloads is a JSON object, which a JWT
//! filter requires (RFC 7519 §7.2, step 10) and `token::parse` enforces. Those vectors are
//! therefore judged with that one rule waived (the header and signature are parsed by
//! `token::parse` with `{}` in the payload's place, the signature is checked over the original
//! `header.payload`), and the count of such vectors is printed; the unwaived filter rejects
//! all of them as `NotJsonObject`.
//!
//! The vectors live outside the crate: `../shared/vectors/wycheproof` from the manifest
//! directory, or the directory in `WYCHEPROOF_DIR`. If it is missing every test fails: these
//! tests must never pass by running nothing.
//!
//! `cargo test --test core wycheproof:: -- --nocapture` prints one tally line per file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::ffi::OsString;
use std::path::Path;

use crate::wycheproof_vectors::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use wasm_jwt_authn::testing::jose::algorithm::Algorithm;
use wasm_jwt_authn::testing::jose::jwks::{self, KeyProblem, KeySet};
use wasm_jwt_authn::testing::jose::signature::{self, Portable, SignatureError};
use wasm_jwt_authn::testing::jose::token::{self, JoseHeader, MalformedToken};

/// The JWA names the filter implements, spelled out here rather than taken from
/// `Algorithm::ALL`, so that a header naming anything else (`HS256`, `none`, `NONE`, `ES512`)
/// must be refused, and a new algorithm in `src/` shows up here as a failure to review.
const IMPLEMENTED_JWS_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

// ---------------------------------------------------------------------------------------------
// One test per family of files.

#[test]
fn rsa_pkcs1_vectors_verify_as_wycheproof_expects() {
    let mut tallies = Vec::new();
    for bits in [2048, 3072, 4096] {
        for hash in [256, 384, 512] {
            let file = format!("rsa_signature_{bits}_sha{hash}_test.json");
            tallies.push(rsa_pkcs1_file(&file));
        }
    }
    assert_agreement(tallies);
}

#[test]
fn rsa_pss_vectors_verify_as_wycheproof_expects() {
    let tallies = [
        "rsa_pss_2048_sha256_mgf1_32_test.json",
        "rsa_pss_2048_sha384_mgf1_48_test.json",
        "rsa_pss_3072_sha256_mgf1_32_test.json",
        "rsa_pss_4096_sha256_mgf1_32_test.json",
        "rsa_pss_4096_sha384_mgf1_48_test.json",
        "rsa_pss_4096_sha512_mgf1_64_test.json",
        "rsa_pss_misc_test.json",
    ]
    .map(rsa_pss_file);
    let misc = &tallies[6];
    assert!(
        misc.jwa_policy > 0 && misc.valid > 0,
        "rsa_pss_misc_test.json must hold both JWA-conformant and non-conformant groups"
    );
    assert_agreement(tallies);
}

#[test]
fn ecdsa_vectors_verify_as_wycheproof_expects() {
    let tallies = [
        "ecdsa_secp256r1_sha256_p1363_test.json",
        "ecdsa_secp384r1_sha384_p1363_test.json",
        "ecdsa_secp521r1_sha512_p1363_test.json",
    ]
    .map(ecdsa_file);
    let p521 = &tallies[2];
    assert_eq!(
        p521.not_applicable, p521.declared_total,
        "P-521 is not supported: every secp521r1 vector must be not applicable"
    );
    assert_agreement(tallies);
}

#[test]
fn ed25519_vectors_verify_as_wycheproof_expects() {
    assert_agreement([ed25519_file("ed25519_test.json")]);
}

#[test]
fn json_web_signature_vectors_verify_as_wycheproof_expects() {
    assert_agreement([jose_file(
        "json_web_signature_test.json",
        JSON_WEB_SIGNATURE_EXCEPTIONS,
    )]);
}

#[test]
fn json_web_key_vectors_verify_as_wycheproof_expects() {
    assert_agreement([jose_file("json_web_key_test.json", JSON_WEB_KEY_EXCEPTIONS)]);
}

#[test]
#[should_panic(expected = "Wycheproof vectors not found")]
fn missing_vector_directory_fails_instead_of_passing_vacuously() {
    resolve_vector_dir(
        Some(OsString::from("/nonexistent/wycheproof")),
        Path::new(env!("CARGO_MANIFEST_DIR")),
    );
}

// ---------------------------------------------------------------------------------------------
// The families.

fn rsa_pkcs1_file(file: &str) -> Tally {
    let vectors: VectorFile<RsaGroup> = load(file);
    let mut tally = Tally::new(file, vectors.number_of_tests, &[]);
    for group in &vectors.test_groups {
        let jwk = rsa_jwk(&group.public_key);
        tally.check_key_encoding(&jwk, group.public_key_jwk.as_ref(), &["n", "e"]);
        let algorithm = match group.sha.as_str() {
            "SHA-256" => Algorithm::Rs256,
            "SHA-384" => Algorithm::Rs384,
            "SHA-512" => Algorithm::Rs512,
            other => panic!("{file}: PKCS#1 v1.5 with {other} has no JWA algorithm"),
        };
        let key = jwks::parse_key(&jwk);
        for vector in &group.tests {
            let verdict = verify_primitive(&key, algorithm, vector);
            tally.judge(&vector.case(), &verdict);
        }
    }
    tally
}

fn rsa_pss_file(file: &str) -> Tally {
    let vectors: VectorFile<RsaGroup> = load(file);
    let mut tally = Tally::new(file, vectors.number_of_tests, &[]);
    for group in &vectors.test_groups {
        let jwk = rsa_jwk(&group.public_key);
        tally.check_key_encoding(&jwk, group.public_key_jwk.as_ref(), &["n", "e"]);
        let key = jwks::parse_key(&jwk);
        match jwa_pss_algorithm(group) {
            Some(algorithm) => {
                for vector in &group.tests {
                    let verdict = verify_primitive(&key, algorithm, vector);
                    tally.judge(&vector.case(), &verdict);
                }
            }
            None => {
                // Not a JWA parameter set: no PS* algorithm may accept it, whatever Wycheproof
                // says about the signature itself.
                for vector in &group.tests {
                    let accepted_as = [Algorithm::Ps256, Algorithm::Ps384, Algorithm::Ps512]
                        .into_iter()
                        .find(|&algorithm| {
                            verify_primitive(&key, algorithm, vector) == Verdict::Accepted
                        });
                    tally.judge_policy_rejection(&vector.case(), accepted_as);
                }
            }
        }
    }
    tally
}

fn ecdsa_file(file: &str) -> Tally {
    let vectors: VectorFile<EcdsaGroup> = load(file);
    let mut tally = Tally::new(file, vectors.number_of_tests, &[]);
    for group in &vectors.test_groups {
        let point = &group.public_key;
        let (curve, coordinate_bytes) = match point.curve.as_str() {
            "secp256r1" => ("P-256", 32),
            "secp384r1" => ("P-384", 48),
            "secp521r1" => ("P-521", 66),
            other => panic!("{file}: unexpected curve {other}"),
        };
        let jwk = json!({
            "kty": "EC",
            "crv": curve,
            "x": base64url(&fixed_size(&hex(&point.wx), coordinate_bytes)),
            "y": base64url(&fixed_size(&hex(&point.wy), coordinate_bytes)),
        });
        tally.check_key_encoding(&jwk, group.public_key_jwk.as_ref(), &["crv", "x", "y"]);
        let key = jwks::parse_key(&jwk);
        let algorithm = match (curve, group.sha.as_str()) {
            ("P-256", "SHA-256") => Algorithm::Es256,
            ("P-384", "SHA-384") => Algorithm::Es384,
            ("P-521", _) => {
                // Not implemented: the key must be refused as an unsupported curve.
                let refusal = match &key {
                    Err(KeyProblem::UnsupportedCurve(name)) if name == "P-521" => Ok(()),
                    Err(problem) => Err(format!(
                        "P-521 key refused for the wrong reason: {problem:?}"
                    )),
                    Ok(_) => Err("P-521 key accepted, but P-521 is not supported".to_owned()),
                };
                for vector in &group.tests {
                    tally.not_applicable(&vector.case(), refusal.clone());
                }
                continue;
            }
            (curve, hash) => panic!("{file}: {curve} with {hash} has no JWA algorithm"),
        };
        for vector in &group.tests {
            let verdict = verify_primitive(&key, algorithm, vector);
            tally.judge(&vector.case(), &verdict);
        }
    }
    tally
}

fn ed25519_file(file: &str) -> Tally {
    let vectors: VectorFile<EddsaGroup> = load(file);
    let mut tally = Tally::new(file, vectors.number_of_tests, &[]);
    for group in &vectors.test_groups {
        let jwk = json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64url(&hex(&group.public_key.pk)),
        });
        tally.check_key_encoding(&jwk, group.public_key_jwk.as_ref(), &["crv", "x"]);
        let key = jwks::parse_key(&jwk);
        for vector in &group.tests {
            let verdict = verify_primitive(&key, Algorithm::EdDsa, vector);
            tally.judge(&vector.case(), &verdict);
        }
    }
    tally
}

fn jose_file(file: &str, exceptions: &'static [Exception]) -> Tally {
    let vectors: VectorFile<JoseGroup> = load(file);
    let mut tally = Tally::new(file, vectors.number_of_tests, exceptions);
    for group in &vectors.test_groups {
        if let Some(private) = &group.private {
            tally.check_private_keys_refused(&group.comment, private);
        }
        let Some(public) = &group.public else {
            // No public key: an HMAC group (a shared `oct` secret), which the filter never
            // verifies. Its tokens must still be refused, by `alg` where the header is sound.
            let private = group.private.as_ref().expect("a group without any key");
            assert!(
                jwk_entries(private).iter().any(|jwk| jwk["kty"] == "oct"),
                "{file}: group {:?} has neither a public key nor a symmetric one",
                group.comment
            );
            for vector in &group.tests {
                let refusal = match token::parse(&vector.jws, MAX_TOKEN_BYTES) {
                    Ok(_) => Err("an HMAC-group token passed token::parse".to_owned()),
                    Err(_) => header_refusal(&vector.jws),
                };
                tally.not_applicable(&vector.case(), refusal);
            }
            continue;
        };
        let (keys, skipped) = KeySet::from_value(&json!({ "keys": jwk_entries(public) }))
            .unwrap_or_else(|error| panic!("{file}: group {:?}: {error}", group.comment));
        let refused = skipped.first().map(|skip| &skip.reason);
        if keys.is_empty() && refused == Some(&KeyProblem::UnsupportedCurve("P-521".to_owned())) {
            // ES512 is not implemented: the key is refused (above) and so is the header.
            for vector in &group.tests {
                tally.not_applicable(&vector.case(), header_refusal(&vector.jws));
            }
            continue;
        }
        for vector in &group.tests {
            let outcome = jws_verdict(&vector.jws, &keys, refused);
            if outcome.payload_rule_waived {
                tally.payload_rule_waived += 1;
            }
            if let Err(problem) = header_refusal(&vector.jws) {
                tally.mismatch(&vector.case(), &problem);
            }
            tally.judge(&vector.case(), &outcome.verdict);
        }
    }
    tally
}

// ---------------------------------------------------------------------------------------------
// Running a vector through the crate.

/// What this crate's layer concluded about one vector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Accepted,
    /// `parse_key` refused the key (every key of the set, for JWKS groups).
    KeyRefused(KeyProblem),
    /// `token::parse` refused the token.
    Malformed(MalformedToken),
    /// The token names a `kid` the key set does not have.
    UnknownKeyId,
    /// No key of the set fits the algorithm (type, curve, or the JWK's own `alg`).
    NoCompatibleKey,
    /// Every candidate key refused the signature; the last one's reason.
    BadSignature(SignatureError),
}

fn verify_primitive(
    key: &Result<jwks::Key, KeyProblem>,
    algorithm: Algorithm,
    vector: &SignatureVector,
) -> Verdict {
    let key = match key {
        Ok(key) => key,
        Err(problem) => return Verdict::KeyRefused(problem.clone()),
    };
    if !key.accepts(algorithm) {
        return Verdict::NoCompatibleKey;
    }
    match signature::verify_signature(
        &Portable,
        algorithm,
        key,
        &hex(&vector.msg),
        &hex(&vector.sig),
    ) {
        Ok(()) => Verdict::Accepted,
        Err(error) => Verdict::BadSignature(error),
    }
}

/// The key choice and signature check of `verify::check_signature` (private there): with a
/// `kid`, only keys carrying it; only keys that accept the algorithm; any one verifying wins.
fn select_and_verify(
    keys: &KeySet,
    refused: Option<&KeyProblem>,
    header: &JoseHeader,
    signing_input: &[u8],
    signature: &[u8],
) -> Verdict {
    if keys.is_empty() {
        if let Some(problem) = refused {
            return Verdict::KeyRefused(problem.clone());
        }
    }
    let key_id = header.key_id.as_deref();
    let candidates: Vec<_> = keys.candidates(key_id).collect();
    if key_id.is_some() && candidates.is_empty() {
        return Verdict::UnknownKeyId;
    }
    let mut last_error = None;
    for key in candidates
        .into_iter()
        .filter(|key| key.accepts(header.algorithm))
    {
        match signature::verify_signature(
            &Portable,
            header.algorithm,
            key,
            signing_input,
            signature,
        ) {
            Ok(()) => return Verdict::Accepted,
            Err(error) => last_error = Some(error),
        }
    }
    last_error.map_or(Verdict::NoCompatibleKey, Verdict::BadSignature)
}

struct JwsOutcome {
    verdict: Verdict,
    /// The payload is not a JSON object, so the verdict was reached with that JWT rule waived.
    payload_rule_waived: bool,
}

/// A compact JWS through `token::parse` and the key set; see the module docs for how a
/// payload that is not a JSON object is handled.
fn jws_verdict(jws: &str, keys: &KeySet, refused: Option<&KeyProblem>) -> JwsOutcome {
    match token::parse(jws, MAX_TOKEN_BYTES) {
        Ok(token) => JwsOutcome {
            verdict: select_and_verify(
                keys,
                refused,
                token.header(),
                token.signing_input().as_bytes(),
                token.signature(),
            ),
            payload_rule_waived: false,
        },
        Err(MalformedToken::NotJsonObject) => {
            // Header or payload is not a JSON object. With `{}` as the payload, the header is
            // judged alone: if it still fails the same way, the header is at fault.
            let mut segments = jws.split('.');
            let (header, payload, signature) = (
                segments.next().unwrap(),
                segments.next().unwrap(),
                segments.next().unwrap(),
            );
            let probe = format!("{header}.e30.{signature}");
            match token::parse(&probe, MAX_TOKEN_BYTES) {
                Err(MalformedToken::NotJsonObject) => JwsOutcome {
                    verdict: Verdict::Malformed(MalformedToken::NotJsonObject),
                    payload_rule_waived: false,
                },
                Err(error) => JwsOutcome {
                    verdict: Verdict::Malformed(error),
                    payload_rule_waived: true,
                },
                Ok(token) => JwsOutcome {
                    verdict: select_and_verify(
                        keys,
                        refused,
                        token.header(),
                        format!("{header}.{payload}").as_bytes(),
                        token.signature(),
                    ),
                    payload_rule_waived: true,
                },
            }
        }
        Err(error) => JwsOutcome {
            verdict: Verdict::Malformed(error),
            payload_rule_waived: false,
        },
    }
}

/// If the token's header is a canonical JSON object whose `alg` is not one we implement (and
/// nothing the parser checks earlier is wrong with it), `token::parse` must refuse it as
/// `UnsupportedAlgorithm`. The payload is replaced by `{}` and the signature left empty so that
/// only the header is judged.
fn header_refusal(jws: &str) -> Result<(), String> {
    let header_segment = jws.split('.').next().unwrap_or_default();
    let Some(header) = URL_SAFE_NO_PAD
        .decode(header_segment)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
    else {
        return Ok(());
    };
    let Some(name) = header.get("alg").and_then(Value::as_str) else {
        return Ok(());
    };
    if IMPLEMENTED_JWS_ALGORITHMS.contains(&name)
        || header.get("crit").is_some()
        || header.get("b64").is_some()
    {
        return Ok(());
    }
    match token::parse(&format!("{header_segment}.e30."), MAX_TOKEN_BYTES) {
        Err(MalformedToken::UnsupportedAlgorithm) => Ok(()),
        other => Err(format!(
            "header with `alg: {name}` must be refused as UnsupportedAlgorithm, got {:?}",
            other.map(|token| token.header().clone())
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Tallies and the verdict rule.

/// The parts of a vector a mismatch report names.
struct Case<'a> {
    tc_id: u32,
    comment: &'a str,
    flags: &'a [String],
    expected: Expected,
}

/// One file's counts, printed as its tally line, and every disagreement with Wycheproof.
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
    payload_rule_waived: usize,
    mismatches: Vec<String>,
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
            payload_rule_waived: 0,
            mismatches: Vec::new(),
        }
    }

    fn run(&self) -> usize {
        self.valid + self.rejectable + self.not_applicable + self.jwa_policy + self.excepted.len()
    }

    fn mismatch(&mut self, case: &Case<'_>, problem: &str) {
        self.mismatches.push(format!(
            "{} tcId {} ({:?}) flags {:?}: expected {}, {problem}",
            self.file, case.tc_id, case.comment, case.flags, case.expected
        ));
    }

    /// The rule: valid → accepted, invalid/acceptable → rejected, or the listed exception.
    fn judge(&mut self, case: &Case<'_>, verdict: &Verdict) {
        if let Some(exception) = self.exceptions.iter().find(|ex| ex.tc_id == case.tc_id) {
            self.excepted.push(case.tc_id);
            let got = format!("{verdict:?}");
            if got != exception.outcome {
                let problem = format!(
                    "documented exception says {} ({}), got {got}",
                    exception.outcome, exception.reason
                );
                self.mismatch(case, &problem);
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
                    self.mismatch(case, &format!("got {verdict:?}"));
                }
            }
            Expected::Invalid | Expected::Acceptable => {
                self.rejectable += 1;
                if accepted {
                    self.mismatch(case, "got Accepted");
                } else {
                    self.rejected += 1;
                }
            }
        }
    }

    /// A vector outside JWA: rejected whatever Wycheproof says about the primitive.
    fn judge_policy_rejection(&mut self, case: &Case<'_>, accepted_as: Option<Algorithm>) {
        self.jwa_policy += 1;
        if let Some(algorithm) = accepted_as {
            self.mismatch(
                case,
                &format!("not a JWA parameter set, must be rejected, but {algorithm} accepted it"),
            );
        }
    }

    fn not_applicable(&mut self, case: &Case<'_>, refusal: Result<(), String>) {
        self.not_applicable += 1;
        if let Err(problem) = refusal {
            self.mismatch(case, &format!("not applicable, but {problem}"));
        }
    }

    /// Our JWK encoding of the vector's key must match the JWK Wycheproof ships, if any: a
    /// check on the hex → base64url helpers, not on the crate.
    fn check_key_encoding(&mut self, ours: &Value, theirs: Option<&Value>, members: &[&str]) {
        let Some(theirs) = theirs else { return };
        for member in members {
            if ours[member] != theirs[member] {
                self.mismatches.push(format!(
                    "{}: test bug: our JWK `{member}` {} differs from Wycheproof's {}",
                    self.file, ours[member], theirs[member]
                ));
            }
        }
    }

    /// A private or symmetric JWK is never usable as a verification key. (Wycheproof's
    /// `private` is the signer's key set and may also hold public keys, which are not checked.)
    fn check_private_keys_refused(&mut self, group: &str, private: &Value) {
        let secret = |jwk: &Value| jwk.get("d").is_some() || jwk["kty"] == "oct";
        for jwk in jwk_entries(private).into_iter().filter(secret) {
            match jwks::parse_key(&jwk) {
                Err(KeyProblem::PrivateKeyMaterial | KeyProblem::SymmetricKey) => {}
                other => self.mismatches.push(format!(
                    "{}: group {group:?}: private JWK {} must be refused, got {other:?}",
                    self.file, jwk["kid"]
                )),
            }
        }
    }

    /// Prints the tally line and returns every mismatch, including bookkeeping failures.
    fn finish(mut self) -> Vec<String> {
        let mut line = format!(
            "{}: run {}, valid accepted {}/{}, invalid+acceptable rejected {}/{}, not applicable {}",
            self.file,
            self.run(),
            self.valid_accepted,
            self.valid,
            self.rejected,
            self.rejectable,
            self.not_applicable
        );
        if self.jwa_policy > 0 {
            line += &format!(", rejected by JWA policy {}", self.jwa_policy);
        }
        if !self.excepted.is_empty() {
            line += &format!(", documented exceptions {}", self.excepted.len());
        }
        if self.payload_rule_waived > 0 {
            line += &format!(
                " (JWT payload rule waived for {}: not a JSON object)",
                self.payload_rule_waived
            );
        }
        println!("{line}");

        if self.run() == 0 {
            self.mismatches
                .push(format!("{}: no vectors run", self.file));
        }
        if self.run() != self.declared_total {
            self.mismatches.push(format!(
                "{}: ran {} vectors, the file declares numberOfTests {}",
                self.file,
                self.run(),
                self.declared_total
            ));
        }
        for exception in self.exceptions {
            if !self.excepted.contains(&exception.tc_id) {
                self.mismatches.push(format!(
                    "{}: documented exception for tcId {} matches no vector: remove it",
                    self.file, exception.tc_id
                ));
            }
        }
        self.mismatches
    }
}

/// Prints every file's line, then fails listing every mismatch of every file.
fn assert_agreement(tallies: impl IntoIterator<Item = Tally>) {
    let mismatches: Vec<String> = tallies.into_iter().flat_map(Tally::finish).collect();
    assert!(
        mismatches.is_empty(),
        "{} disagreement(s) with Wycheproof:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Vectors as cases.

impl SignatureVector {
    fn case(&self) -> Case<'_> {
        Case {
            tc_id: self.tc_id,
            comment: &self.comment,
            flags: &self.flags,
            expected: self.result,
        }
    }
}

impl JoseVector {
    fn case(&self) -> Case<'_> {
        Case {
            tc_id: self.tc_id,
            comment: &self.comment,
            flags: &self.flags,
            expected: self.result,
        }
    }
}
