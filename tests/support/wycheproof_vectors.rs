//! The Wycheproof vector files as `tests/core/wycheproof.rs` and `tests/e2e/wycheproof_envoy.rs` read
//! them: where they are, their schema, the documented exceptions, and the conversions from
//! their key encodings to JWKs.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use wasm_jwt_authn::testing::jose::algorithm::Algorithm;

pub const VECTOR_DIR_ENV: &str = "WYCHEPROOF_DIR";
/// Relative to `CARGO_MANIFEST_DIR`.
pub const DEFAULT_VECTOR_DIR: &str = "../shared/vectors/wycheproof";
/// Far above any vector: the size limit is not what these vectors test.
pub const MAX_TOKEN_BYTES: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Documented exceptions, per file.

/// A vector whose outcome differs from Wycheproof's on purpose: `outcome` is our exact verdict
/// (its `Debug` form), asserted as such, and `reason` says why it is right for this filter.
pub struct Exception {
    pub tc_id: u32,
    pub outcome: &'static str,
    pub reason: &'static str,
}

pub const JSON_WEB_SIGNATURE_EXCEPTIONS: &[Exception] = &[
    Exception {
        tc_id: 346,
        outcome: "NoCompatibleKey",
        reason: "RFC 7520 figure 20: the JWK says `alg: PS256`, the token `PS384`; a JWK's `alg` \
                 is the only algorithm the key verifies here (RFC 7517 §4.4, `Key::accepts`), \
                 which closes algorithm substitution",
    },
    Exception {
        tc_id: 350,
        outcome: "NoCompatibleKey",
        reason: "as tcId 346, with `key_ops: [verify]` instead of `use: sig`",
    },
];

/// None: tcId 7 (a key with the ROCA weakness, CVE-2017-15361) is refused by `parse_key`'s
/// fingerprint check, as Wycheproof expects.
pub const JSON_WEB_KEY_EXCEPTIONS: &[Exception] = &[];

/// The JWA algorithm for a PSS parameter set, if it is one (RFC 7518 §3.5).
pub fn jwa_pss_algorithm(group: &RsaGroup) -> Option<Algorithm> {
    let (algorithm, hash_bytes) = match group.sha.as_str() {
        "SHA-256" => (Algorithm::Ps256, 32),
        "SHA-384" => (Algorithm::Ps384, 48),
        "SHA-512" => (Algorithm::Ps512, 64),
        _ => return None,
    };
    let conforms = group.mgf.as_deref() == Some("MGF1")
        && group.mgf_sha.as_deref() == Some(group.sha.as_str())
        && group.s_len == Some(hash_bytes);
    conforms.then_some(algorithm)
}

// ---------------------------------------------------------------------------------------------
// Loading the vectors.

pub fn vector_dir() -> PathBuf {
    resolve_vector_dir(
        std::env::var_os(VECTOR_DIR_ENV),
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
}

pub fn resolve_vector_dir(override_dir: Option<OsString>, manifest_dir: &Path) -> PathBuf {
    let dir = match override_dir {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir.join(DEFAULT_VECTOR_DIR),
    };
    assert!(
        dir.is_dir(),
        "Wycheproof vectors not found: {} is not a directory. Point {VECTOR_DIR_ENV} at the \
         folder holding the vector JSON files (default: {DEFAULT_VECTOR_DIR} from the crate).",
        dir.display()
    );
    dir
}

pub fn load<Group: DeserializeOwned>(file: &str) -> VectorFile<Group> {
    let path = vector_dir().join(file);
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read Wycheproof file {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| {
        panic!(
            "{} does not have the expected Wycheproof schema: {error}",
            path.display()
        )
    })
}

/// Wycheproof's verdict on a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    Valid,
    Invalid,
    Acceptable,
}

impl std::fmt::Display for Expected {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Expected::Valid => "valid (accept)",
            Expected::Invalid => "invalid (reject)",
            Expected::Acceptable => "acceptable (reject)",
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VectorFile<Group> {
    pub number_of_tests: usize,
    pub test_groups: Vec<Group>,
}

/// A vector of the primitive files: a hex message and signature.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureVector {
    pub tc_id: u32,
    pub comment: String,
    pub flags: Vec<String>,
    pub msg: String,
    pub sig: String,
    pub result: Expected,
}

/// RSASSA-PKCS1-v1_5 and RSASSA-PSS groups (`mgf`, `mgfSha`, `sLen` are PSS only).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RsaGroup {
    pub public_key: RsaNumbers,
    pub sha: String,
    pub mgf: Option<String>,
    pub mgf_sha: Option<String>,
    pub s_len: Option<usize>,
    /// Wycheproof's own JWK of the key (`keyJwk` in the PKCS#1 files).
    #[serde(alias = "keyJwk")]
    pub public_key_jwk: Option<Value>,
    pub tests: Vec<SignatureVector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RsaNumbers {
    pub modulus: String,
    pub public_exponent: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcdsaGroup {
    pub public_key: EcPoint,
    pub sha: String,
    pub public_key_jwk: Option<Value>,
    pub tests: Vec<SignatureVector>,
}

#[derive(Deserialize)]
pub struct EcPoint {
    pub curve: String,
    pub wx: String,
    pub wy: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EddsaGroup {
    pub public_key: EddsaKey,
    pub public_key_jwk: Option<Value>,
    pub tests: Vec<SignatureVector>,
}

#[derive(Deserialize)]
pub struct EddsaKey {
    pub pk: String,
}

/// A JSON Web Signature / JSON Web Key group: a JWK or JWKS, public and/or private.
#[derive(Deserialize)]
pub struct JoseGroup {
    pub comment: String,
    pub public: Option<Value>,
    pub private: Option<Value>,
    pub tests: Vec<JoseVector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoseVector {
    pub tc_id: u32,
    pub comment: String,
    pub flags: Vec<String>,
    pub jws: String,
    pub result: Expected,
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers.

/// The JWKs of a group's key: a JWKS's `keys`, or the one JWK.
pub fn jwk_entries(key: &Value) -> Vec<Value> {
    match key.get("keys").and_then(Value::as_array) {
        Some(keys) => keys.clone(),
        None => vec![key.clone()],
    }
}

/// RFC 7518 §6.3.1: `n` and `e` are unsigned big-endian, without leading zero bytes
/// (Wycheproof's hex keeps a `00` sign byte).
pub fn rsa_jwk(numbers: &RsaNumbers) -> Value {
    json!({
        "kty": "RSA",
        "n": base64url(strip_leading_zeros(&hex(&numbers.modulus))),
        "e": base64url(strip_leading_zeros(&hex(&numbers.public_exponent))),
    })
}

pub fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(bytes.len());
    &bytes[first..]
}

/// RFC 7518 §6.2.1.2: a coordinate is exactly the field size; Wycheproof's hex may carry a
/// `00` sign byte or drop leading zeros.
pub fn fixed_size(bytes: &[u8], size: usize) -> Vec<u8> {
    let digits = strip_leading_zeros(bytes);
    assert!(
        digits.len() <= size,
        "coordinate of {} bytes for a {size}-byte field",
        digits.len()
    );
    let mut fixed = vec![0; size - digits.len()];
    fixed.extend_from_slice(digits);
    fixed
}

pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd-length hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|at| {
            u8::from_str_radix(&text[at..at + 2], 16)
                .unwrap_or_else(|_| panic!("not hex: {text:?}"))
        })
        .collect()
}
