//! JWKS → [`KeySet`]: lenient per key, strict per set.
//!
//! A JSON Web Key Set from an identity provider routinely holds keys this filter must not or
//! cannot use: encryption keys, symmetric keys, curves it does not implement. Such a key is
//! skipped with a [`SkippedKey`] reason the caller logs; the rest of the set stays usable. The
//! set itself must be well-formed (a JSON object with a `keys` array) or it is rejected whole.
//!
//! What makes a key usable for verification:
//! - `kty` `RSA` with a modulus of at least 2048 bits (RFC 7518 §3.3) and at most 8192;
//!   `EC` on `P-256` or `P-384` with coordinates of exactly the field size (RFC 7518 §6.2.1.2)
//!   on the curve; `OKP` on `Ed25519` (RFC 8037). `oct` keys are never used: a symmetric key in
//!   a public key set would let anyone who can read the set forge tokens.
//! - `use`, when present, is `sig`; `key_ops`, when present, contains `verify`.
//! - `alg`, when present, is an algorithm this filter knows and that fits the key type.
//! - No private key members (`d`, `p`, `q`, …): a set that publishes private keys is broken.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::jose::algorithm::Algorithm;
use crate::jose::der;
use crate::jose::rsa_math::RsaVerifier;
use crate::jose::x509;

/// A public key usable for verification, in the form verification needs.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Rsa(RsaKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_compact::PublicKey),
}

impl PublicKey {
    /// Whether this key can verify `algorithm` (`kty`/`crv` compatibility).
    pub fn fits(&self, algorithm: Algorithm) -> bool {
        matches!(
            (algorithm, self),
            (
                Algorithm::Rs256
                    | Algorithm::Rs384
                    | Algorithm::Rs512
                    | Algorithm::Ps256
                    | Algorithm::Ps384
                    | Algorithm::Ps512,
                PublicKey::Rsa(_)
            ) | (Algorithm::Es256, PublicKey::P256(_))
                | (Algorithm::Es384, PublicKey::P384(_))
                | (Algorithm::EdDsa, PublicKey::Ed25519(_))
        )
    }
}

/// An RSA public key prepared for verification.
#[derive(Debug, Clone)]
pub struct RsaKey {
    pub verifier: RsaVerifier,
    /// The same key for the `rsa` crate, with the `reference-rsa` feature: the straightforward
    /// implementation, kept so benchmarks can measure the one against the other.
    #[cfg(feature = "reference-rsa")]
    pub reference: rsa::RsaPublicKey,
}

/// One usable key with the JWK members that restrict its use, and everything derived from it
/// that verification needs, computed once when the key is loaded.
#[derive(Debug, Clone)]
pub struct Key {
    /// `kid`, matched exactly against a token's `kid`.
    pub id: Option<String>,
    /// `alg`: when present, the only algorithm this key verifies.
    pub algorithm: Option<Algorithm>,
    pub public_key: PublicKey,
    /// The key as DER SubjectPublicKeyInfo: the form a host's crypto library imports.
    pub spki_der: Vec<u8>,
    /// Identifies this key with its `kid` and `alg`: what a cached verification is bound to.
    pub fingerprint: KeyFingerprint,
}

/// SHA-256 over a key's `kid`, `alg` and SubjectPublicKeyInfo.
pub type KeyFingerprint = [u8; 32];

impl Key {
    /// Whether this key may verify a token signed with `algorithm`.
    pub fn accepts(&self, algorithm: Algorithm) -> bool {
        self.public_key.fits(algorithm) && self.algorithm.is_none_or(|own| own == algorithm)
    }
}

/// The usable keys of one JWKS, in document order.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// Why a whole JWKS document was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// Not JSON, or not a JSON object.
    NotAnObject,
    /// No `keys` member, or it is not an array.
    MissingKeys,
    /// More than [`MAX_KEYS`] keys: no identity provider publishes that many, and each one
    /// costs parsing (and, without a `kid`, a signature check).
    TooManyKeys,
}

/// The most keys a JWKS may hold.
pub const MAX_KEYS: usize = 100;

impl std::fmt::Display for JwksError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            JwksError::NotAnObject => "a JWKS must be a JSON object",
            JwksError::MissingKeys => "a JWKS must have a `keys` array",
            JwksError::TooManyKeys => "a JWKS may hold at most 100 keys",
        })
    }
}

/// A key of a JWKS that was left out, with its position and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub index: usize,
    pub id: Option<String>,
    pub reason: KeyProblem,
}

/// Why one JWK is not usable for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    NotAnObject,
    /// `kty` missing or not a string.
    MissingKeyType,
    /// `oct`: symmetric keys are never used.
    SymmetricKey,
    UnsupportedKeyType(String),
    UnsupportedCurve(String),
    /// `use` is not `sig` or `key_ops` lacks `verify`.
    NotForVerification,
    /// `alg` is unknown to this filter or does not fit the key type.
    UnusableAlgorithm(String),
    /// A required member is missing, not a string, or not canonical base64url.
    BadMember(&'static str),
    /// The key holds private members; a public key set must not.
    PrivateKeyMaterial,
    /// RSA modulus below 2048 bits or above 8192.
    RsaKeySize(usize),
    /// The RSA modulus has the ROCA fingerprint (CVE-2017-15361): its factors can be found.
    WeakRsaKey,
    /// The numbers do not form a valid public key (e.g. a point not on the curve).
    InvalidKey,
    /// The certificate in `x5c` holds another key than the JWK's own members, or `x5t` /
    /// `x5t#S256` is not that certificate's thumbprint.
    CertificateMismatch,
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::NotAnObject => write!(formatter, "not a JSON object"),
            KeyProblem::MissingKeyType => write!(formatter, "missing `kty`"),
            KeyProblem::SymmetricKey => write!(formatter, "symmetric (`oct`) keys are never used"),
            KeyProblem::UnsupportedKeyType(kty) => write!(formatter, "unsupported `kty` {kty:?}"),
            KeyProblem::UnsupportedCurve(crv) => write!(formatter, "unsupported `crv` {crv:?}"),
            KeyProblem::NotForVerification => {
                write!(formatter, "`use`/`key_ops` do not allow verification")
            }
            KeyProblem::UnusableAlgorithm(alg) => {
                write!(formatter, "`alg` {alg:?} is not usable with this key")
            }
            KeyProblem::BadMember(member) => {
                write!(
                    formatter,
                    "`{member}` is missing or not canonical base64url"
                )
            }
            KeyProblem::PrivateKeyMaterial => write!(formatter, "holds private key members"),
            KeyProblem::RsaKeySize(bits) => {
                write!(
                    formatter,
                    "RSA modulus of {bits} bits (2048 to 8192 allowed)"
                )
            }
            KeyProblem::WeakRsaKey => {
                write!(
                    formatter,
                    "RSA modulus with the ROCA weakness (CVE-2017-15361)"
                )
            }
            KeyProblem::InvalidKey => write!(formatter, "not a valid public key"),
            KeyProblem::CertificateMismatch => write!(
                formatter,
                "its `x5c` certificate (or `x5t` thumbprint) is for another key"
            ),
        }
    }
}

const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;
/// Members that only private JWKs carry (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

impl KeySet {
    /// Parses a JWKS document, keeping the usable keys and reporting the others.
    pub fn from_json(document: &[u8]) -> Result<(KeySet, Vec<SkippedKey>), JwksError> {
        let value: Value = serde_json::from_slice(document).map_err(|_| JwksError::NotAnObject)?;
        KeySet::from_value(&value)
    }

    /// As [`KeySet::from_json`], for a document already parsed (e.g. inline in the config).
    pub fn from_value(document: &Value) -> Result<(KeySet, Vec<SkippedKey>), JwksError> {
        let object = document.as_object().ok_or(JwksError::NotAnObject)?;
        let entries = object
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::MissingKeys)?;
        if entries.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let mut keys = Vec::with_capacity(entries.len());
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match parse_key(entry) {
                Ok(key) => keys.push(key),
                Err(reason) => skipped.push(SkippedKey {
                    index,
                    id: entry.get("kid").and_then(Value::as_str).map(str::to_owned),
                    reason,
                }),
            }
        }
        Ok((KeySet { keys }, skipped))
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The keys a token may be verified with: with a `kid`, exactly the keys carrying that
    /// `kid` (never a fallback to others); without one, every key.
    pub fn candidates<'set>(
        &'set self,
        key_id: Option<&'set str>,
    ) -> impl Iterator<Item = &'set Key> {
        self.keys
            .iter()
            .filter(move |key| key_id.is_none() || key.id.as_deref() == key_id)
    }
}

/// Parses one JWK into a usable key, or says why it is not one.
pub fn parse_key(entry: &Value) -> Result<Key, KeyProblem> {
    let jwk = entry.as_object().ok_or(KeyProblem::NotAnObject)?;
    let key_type = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or(KeyProblem::MissingKeyType)?;
    if key_type == "oct" {
        return Err(KeyProblem::SymmetricKey);
    }
    if PRIVATE_MEMBERS
        .iter()
        .any(|member| jwk.contains_key(*member))
    {
        return Err(KeyProblem::PrivateKeyMaterial);
    }
    check_usage(jwk)?;
    let (public_key, spki_der) = match key_type {
        "RSA" => rsa_key(jwk)?,
        "EC" => ec_key(jwk)?,
        "OKP" => okp_key(jwk)?,
        other => return Err(KeyProblem::UnsupportedKeyType(other.to_owned())),
    };
    let algorithm = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => match Algorithm::from_name(name) {
            Some(algorithm) if public_key.fits(algorithm) => Some(algorithm),
            _ => return Err(KeyProblem::UnusableAlgorithm(name.clone())),
        },
        Some(other) => return Err(KeyProblem::UnusableAlgorithm(other.to_string())),
    };
    let id = match jwk.get("kid") {
        None => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return Err(KeyProblem::BadMember("kid")),
    };
    check_certificate(jwk, &spki_der)?;
    let fingerprint = fingerprint(id.as_deref(), algorithm, &spki_der);
    Ok(Key {
        id,
        algorithm,
        public_key,
        spki_der,
        fingerprint,
    })
}

/// A key's `x5c` (its certificate chain, its own certificate first) must hold the very key its
/// other members give, and `x5t` / `x5t#S256` must be that certificate's thumbprints: a JWKS
/// that names two different keys for one entry is refused rather than believed either way.
/// Without `x5c`, the thumbprints name a certificate that is not here: they are ids only.
fn check_certificate(jwk: &Map<String, Value>, spki_der: &[u8]) -> Result<(), KeyProblem> {
    use base64::engine::general_purpose::STANDARD;
    use sha1::Sha1;
    use sha2::{Digest as _, Sha256};

    let Some(chain) = jwk.get("x5c") else {
        return Ok(());
    };
    // RFC 7517 §4.7: standard (not URL-safe) base64 of the DER certificate.
    let certificate = chain
        .as_array()
        .and_then(|chain| chain.first())
        .and_then(Value::as_str)
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .ok_or(KeyProblem::BadMember("x5c"))?;
    let certified_key =
        x509::subject_public_key_info(&certificate).ok_or(KeyProblem::BadMember("x5c"))?;
    if certified_key != spki_der {
        return Err(KeyProblem::CertificateMismatch);
    }
    let thumbprints: [(&'static str, Vec<u8>); 2] = [
        ("x5t", Sha1::digest(&certificate).to_vec()),
        ("x5t#S256", Sha256::digest(&certificate).to_vec()),
    ];
    for (member, digest) in thumbprints {
        if let Some(value) = jwk.get(member) {
            let thumbprint = value
                .as_str()
                .and_then(|encoded| URL_SAFE_NO_PAD.decode(encoded).ok())
                .ok_or(KeyProblem::BadMember(member))?;
            if thumbprint != digest {
                return Err(KeyProblem::CertificateMismatch);
            }
        }
    }
    Ok(())
}

fn fingerprint(id: Option<&str>, algorithm: Option<Algorithm>, spki_der: &[u8]) -> KeyFingerprint {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    // Length-prefixed, so no two different (kid, alg) pairs hash the same bytes.
    for part in [
        id.map(str::as_bytes),
        algorithm.map(|algorithm| algorithm.name().as_bytes()),
    ] {
        match part {
            None => hasher.update([0]),
            Some(bytes) => {
                hasher.update([1]);
                hasher.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
                hasher.update(bytes);
            }
        }
    }
    hasher.update(spki_der);
    hasher.finalize().into()
}

fn check_usage(jwk: &Map<String, Value>) -> Result<(), KeyProblem> {
    match jwk.get("use") {
        None => {}
        Some(Value::String(usage)) if usage == "sig" => {}
        Some(_) => return Err(KeyProblem::NotForVerification),
    }
    match jwk.get("key_ops") {
        None => Ok(()),
        Some(Value::Array(operations))
            if operations.iter().any(|operation| operation == "verify") =>
        {
            Ok(())
        }
        Some(_) => Err(KeyProblem::NotForVerification),
    }
}

fn member_bytes(jwk: &Map<String, Value>, member: &'static str) -> Result<Vec<u8>, KeyProblem> {
    let text = jwk
        .get(member)
        .and_then(Value::as_str)
        .ok_or(KeyProblem::BadMember(member))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| KeyProblem::BadMember(member))
}

fn rsa_key(jwk: &Map<String, Value>) -> Result<(PublicKey, Vec<u8>), KeyProblem> {
    let modulus_bytes = member_bytes(jwk, "n")?;
    let exponent_bytes = member_bytes(jwk, "e")?;
    let bits = bit_length(&modulus_bytes);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(KeyProblem::RsaKeySize(bits));
    }
    if has_roca_fingerprint(&modulus_bytes) {
        return Err(KeyProblem::WeakRsaKey);
    }
    // An odd modulus, an odd exponent with 3 <= e < 2^33: what a real RSA key has, and what
    // hosts' crypto libraries (BoringSSL) insist on at import, so every backend agrees.
    let verifier =
        RsaVerifier::new(&modulus_bytes, &exponent_bytes).ok_or(KeyProblem::InvalidKey)?;
    #[cfg(feature = "reference-rsa")]
    let reference = rsa::RsaPublicKey::new_with_max_size(
        rsa::BigUint::from_bytes_be(&modulus_bytes),
        rsa::BigUint::from_bytes_be(&exponent_bytes),
        MAX_RSA_BITS,
    )
    .map_err(|_| KeyProblem::InvalidKey)?;
    let spki_der = der::rsa_public_key(&modulus_bytes, &exponent_bytes);
    let key = RsaKey {
        verifier,
        #[cfg(feature = "reference-rsa")]
        reference,
    };
    Ok((PublicKey::Rsa(key), spki_der))
}

/// The number of significant bits of a big-endian number.
fn bit_length(number: &[u8]) -> usize {
    let Some(start) = number.iter().position(|&byte| byte != 0) else {
        return 0;
    };
    let significant = number.len().saturating_sub(start);
    let top_zeros = number
        .get(start)
        .map_or(0, |top| usize::try_from(top.leading_zeros()).unwrap_or(0));
    significant.saturating_mul(8).saturating_sub(top_zeros)
}

/// The small primes of the ROCA fingerprint (Nemec et al., CCS 2017, and their detector).
const ROCA_PRIMES: [u32; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];

/// Whether a big-endian RSA modulus has the ROCA fingerprint: moduli generated by the flawed
/// library are, modulo each small prime above, a power of 65537. A random modulus passes all
/// 38 tests with negligible probability.
fn has_roca_fingerprint(modulus: &[u8]) -> bool {
    ROCA_PRIMES.iter().all(|&prime| {
        let residue = remainder(modulus, prime);
        // Walk the subgroup generated by 65537 modulo `prime` (at most `prime - 1` steps).
        let generator = 65_537_u32.checked_rem(prime).unwrap_or(0);
        let mut element = 1;
        loop {
            if element == residue {
                return true;
            }
            // Both factors are below 167: the product cannot overflow.
            element = element
                .wrapping_mul(generator)
                .checked_rem(prime)
                .unwrap_or(0);
            if element == 1 {
                return false;
            }
        }
    })
}

/// `number mod divisor` for a big-endian byte string and a small non-zero divisor.
fn remainder(number: &[u8], divisor: u32) -> u32 {
    number.iter().fold(0, |remainder: u32, &byte| {
        // `remainder < divisor <= 167`, so shifting by a byte stays far below `u32::MAX`.
        (remainder.wrapping_shl(8) | u32::from(byte))
            .checked_rem(divisor)
            .unwrap_or(0)
    })
}

fn curve(jwk: &Map<String, Value>) -> Result<&str, KeyProblem> {
    jwk.get("crv")
        .and_then(Value::as_str)
        .ok_or(KeyProblem::BadMember("crv"))
}

fn ec_key(jwk: &Map<String, Value>) -> Result<(PublicKey, Vec<u8>), KeyProblem> {
    let curve = curve(jwk)?;
    let field_size = match curve {
        "P-256" => 32,
        "P-384" => 48,
        other => return Err(KeyProblem::UnsupportedCurve(other.to_owned())),
    };
    let x = member_bytes(jwk, "x")?;
    let y = member_bytes(jwk, "y")?;
    // RFC 7518 §6.2.1.2: each coordinate is exactly the field size, leading zeros kept.
    if x.len() != field_size {
        return Err(KeyProblem::BadMember("x"));
    }
    if y.len() != field_size {
        return Err(KeyProblem::BadMember("y"));
    }
    // SEC 1 uncompressed point: 0x04 || x || y.
    let point = [&[0x04][..], &x, &y].concat();
    // `from_sec1_bytes` rejects points that are not on the curve and the identity.
    if field_size == 32 {
        let public_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map_err(|_| KeyProblem::InvalidKey)?;
        Ok((
            PublicKey::P256(public_key),
            der::ec_public_key(der::Curve::P256, &point),
        ))
    } else {
        let public_key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map_err(|_| KeyProblem::InvalidKey)?;
        Ok((
            PublicKey::P384(public_key),
            der::ec_public_key(der::Curve::P384, &point),
        ))
    }
}

fn okp_key(jwk: &Map<String, Value>) -> Result<(PublicKey, Vec<u8>), KeyProblem> {
    match curve(jwk)? {
        "Ed25519" => {
            let x = member_bytes(jwk, "x")?;
            let public_key = ed25519_compact::PublicKey::from_slice(&x)
                .map_err(|_| KeyProblem::BadMember("x"))?;
            Ok((PublicKey::Ed25519(public_key), der::ed25519_public_key(&x)))
        }
        other => Err(KeyProblem::UnsupportedCurve(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;
    use crate::support::{b64url, TestKey};

    fn problem(jwk: Value) -> KeyProblem {
        parse_key(&jwk).expect_err("key should be refused")
    }

    /// The providers' published key sets (tests/fixtures/idp/): their certificates are their keys.
    const PUBLISHED: [(&str, &str); 3] = [
        (
            "entra-id",
            include_str!("../../tests/fixtures/idp/entra-id/jwks.json"),
        ),
        (
            "auth0",
            include_str!("../../tests/fixtures/idp/auth0/jwks.json"),
        ),
        (
            "keycloak",
            include_str!("../../tests/fixtures/idp/keycloak/jwks.json"),
        ),
    ];

    #[test]
    fn published_certificates_agree_with_their_keys() {
        for (name, document) in PUBLISHED {
            let (keys, skipped) = KeySet::from_json(document.as_bytes()).unwrap();
            assert!(!keys.is_empty(), "{name}");
            // Keycloak's encryption key is skipped for its `use`, nothing for its certificate.
            assert!(
                skipped
                    .iter()
                    .all(|key| key.reason == KeyProblem::NotForVerification),
                "{name}: {skipped:?}"
            );
        }
    }

    #[test]
    fn a_certificate_or_thumbprint_for_another_key_refuses_the_key() {
        let document: Value = serde_json::from_str(PUBLISHED[0].1).unwrap();
        let first = document["keys"][0].clone();
        let second = document["keys"][1].clone();
        assert!(parse_key(&first).is_ok() && parse_key(&second).is_ok());
        // The first key's numbers with the second key's certificate.
        let mut mixed = first.clone();
        mixed["x5c"] = second["x5c"].clone();
        mixed.as_object_mut().unwrap().remove("x5t");
        assert_eq!(problem(mixed), KeyProblem::CertificateMismatch);
        let mut wrong_thumbprint = first.clone();
        wrong_thumbprint["x5t"] = second["x5t"].clone();
        assert_eq!(problem(wrong_thumbprint), KeyProblem::CertificateMismatch);
        let mut wrong_sha256 = first.clone();
        wrong_sha256["x5t#S256"] = json!(b64url(&[0_u8; 32]));
        assert_eq!(problem(wrong_sha256), KeyProblem::CertificateMismatch);
        // A thumbprint without a certificate is only an id.
        let mut no_chain = first.clone();
        no_chain.as_object_mut().unwrap().remove("x5c");
        no_chain["x5t"] = second["x5t"].clone();
        assert!(parse_key(&no_chain).is_ok());
        for bad in [
            json!([]),
            json!("MIIB"),
            json!(["not base64!"]),
            json!(["AAAA"]),
        ] {
            let mut broken = first.clone();
            broken["x5c"] = bad.clone();
            assert_eq!(problem(broken), KeyProblem::BadMember("x5c"), "{bad}");
        }
    }

    fn with(mut jwk: Value, member: &str, value: Value) -> Value {
        jwk[member] = value;
        jwk
    }

    #[test]
    fn fixture_keys_of_every_type_parse() {
        for key in [
            TestKey::Rsa2048,
            TestKey::Rsa3072,
            TestKey::P256,
            TestKey::P384,
            TestKey::Ed25519,
        ] {
            let parsed = parse_key(&key.jwk()).unwrap();
            assert_eq!(parsed.id.as_deref(), Some(key.kid()));
            assert_eq!(parsed.algorithm, None);
        }
    }

    #[test]
    fn keys_not_meant_for_verification_are_skipped_with_a_reason() {
        let p256 = TestKey::P256.jwk();
        assert_eq!(
            problem(json!({"kty": "oct", "k": "c2VjcmV0"})),
            KeyProblem::SymmetricKey
        );
        assert_eq!(
            problem(with(p256.clone(), "use", json!("enc"))),
            KeyProblem::NotForVerification
        );
        assert_eq!(
            problem(with(p256.clone(), "key_ops", json!(["encrypt"]))),
            KeyProblem::NotForVerification
        );
        assert!(parse_key(&with(p256.clone(), "key_ops", json!(["verify"]))).is_ok());
        assert!(parse_key(&with(p256.clone(), "use", json!("sig"))).is_ok());
        assert_eq!(
            problem(with(p256.clone(), "d", json!("AAAA"))),
            KeyProblem::PrivateKeyMaterial
        );
        assert_eq!(
            problem(with(p256.clone(), "alg", json!("RS256"))),
            KeyProblem::UnusableAlgorithm("RS256".to_owned())
        );
        assert_eq!(
            problem(with(p256.clone(), "alg", json!("HS256"))),
            KeyProblem::UnusableAlgorithm("HS256".to_owned())
        );
        assert_eq!(
            problem(with(p256.clone(), "kid", json!(5))),
            KeyProblem::BadMember("kid")
        );
        assert_eq!(
            problem(with(p256.clone(), "crv", json!("P-521"))),
            KeyProblem::UnsupportedCurve("P-521".to_owned())
        );
        assert_eq!(
            problem(json!({"kty": "OKP", "crv": "X25519", "x": "AAAA"})),
            KeyProblem::UnsupportedCurve("X25519".to_owned())
        );
        assert_eq!(
            problem(json!({"kty": "EC2"})),
            KeyProblem::UnsupportedKeyType("EC2".to_owned())
        );
        assert_eq!(problem(json!({"n": "AQAB"})), KeyProblem::MissingKeyType);
        assert_eq!(problem(json!("key")), KeyProblem::NotAnObject);
        assert_eq!(
            problem(TestKey::Rsa1024.jwk()),
            KeyProblem::RsaKeySize(1024)
        );
    }

    #[test]
    fn ec_coordinates_must_be_full_size_and_on_the_curve() {
        let p256 = TestKey::P256.jwk();
        let x = URL_SAFE_NO_PAD.decode(p256["x"].as_str().unwrap()).unwrap();
        assert_eq!(
            problem(with(p256.clone(), "x", json!(b64url(&x[1..])))),
            KeyProblem::BadMember("x")
        );
        let mut padded = vec![0];
        padded.extend_from_slice(&x);
        assert_eq!(
            problem(with(p256.clone(), "x", json!(b64url(&padded)))),
            KeyProblem::BadMember("x")
        );
        let mut off_curve = x.clone();
        off_curve[31] ^= 1;
        assert_eq!(
            problem(with(p256.clone(), "x", json!(b64url(&off_curve)))),
            KeyProblem::InvalidKey
        );
        assert_eq!(
            problem(with(p256, "y", json!("AA=="))),
            KeyProblem::BadMember("y")
        );
    }

    #[test]
    fn a_key_set_keeps_usable_keys_and_reports_the_rest() {
        let document = json!({"keys": [TestKey::P256.jwk(), {"kty": "oct", "k": "AA"}, TestKey::Ed25519.jwk()]});
        let (keys, skipped) = KeySet::from_value(&document).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            skipped,
            vec![SkippedKey {
                index: 1,
                id: None,
                reason: KeyProblem::SymmetricKey
            }]
        );
        assert_eq!(
            KeySet::from_json(b"[]").unwrap_err(),
            JwksError::NotAnObject
        );
        assert_eq!(
            KeySet::from_json(b"{\"keys\": {}}").unwrap_err(),
            JwksError::MissingKeys
        );
        assert_eq!(KeySet::from_json(b"{").unwrap_err(), JwksError::NotAnObject);
        let crowded = json!({"keys": vec![TestKey::P256.jwk(); MAX_KEYS + 1]});
        assert_eq!(
            KeySet::from_value(&crowded).unwrap_err(),
            JwksError::TooManyKeys
        );
        let full = json!({"keys": vec![TestKey::P256.jwk(); MAX_KEYS]});
        assert_eq!(KeySet::from_value(&full).unwrap().0.len(), MAX_KEYS);
    }

    #[test]
    fn candidates_match_kid_exactly() {
        let document = json!({"keys": [TestKey::P256.jwk(), TestKey::P384.jwk()]});
        let (keys, _) = KeySet::from_value(&document).unwrap();
        assert_eq!(keys.candidates(Some("p384")).count(), 1);
        assert_eq!(keys.candidates(Some("P384")).count(), 0);
        assert_eq!(keys.candidates(None).count(), 2);
    }

    #[test]
    fn a_key_with_alg_accepts_only_that_algorithm() {
        let key = parse_key(&with(TestKey::Rsa2048.jwk(), "alg", json!("PS256"))).unwrap();
        assert!(key.accepts(Algorithm::Ps256));
        assert!(!key.accepts(Algorithm::Rs256));
        assert!(!key.accepts(Algorithm::Es256));
    }
}
