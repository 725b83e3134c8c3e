//! Key material for the attack catalog: the keys Envoy trusts, keys it must not trust, and the
//! arithmetic that turns a valid signature into a malicious one.
//!
//! Trusted keys are the fixture keys (`tests/fixtures/keys/`) plus a few P-256 keys derived from
//! fixed scalars (so they need no fixture file). The attacker's P-256 key and certificate are
//! `tests/e2e/attacks/fixtures/` (see the README there). Everything here is deterministic except
//! RSA-PSS salts, which the signer draws at random.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rsa::traits::PublicKeyParts as _;
use rsa::BigUint;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::support::{b64url, TestKey};

const RSA2048_PEM: &str = include_str!("../../fixtures/keys/rsa2048.pem");
const ATTACKER_P256_PEM: &str = include_str!("fixtures/attacker-p256.pem");
const ATTACKER_P256_CERT: &str = include_str!("fixtures/attacker-p256.crt");

/// The group order of P-256 (SEC 2), big-endian.
pub const P256_ORDER: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
/// The order of the Ed25519 base point, 2^252 + 27742317777372353535851937790883648493.
const ED25519_ORDER: &str = "1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed";

/// A key that signs tokens in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// A fixture key; trusted unless it is `P256Other`, `Rsa3072` or `Rsa1024`.
    Fixture(TestKey),
    /// A P-256 key derived from the scalar `[byte; 32]` (see [`derived_p256`]).
    Derived(u8),
    /// The attacker's P-256 key (its certificate is [`attacker_certificate_der`]).
    AttackerP256,
    /// An untrusted P-384 key, derived from `[0x33; 48]`.
    AttackerP384,
    /// An untrusted Ed25519 key, from the seed `[0x44; 32]`.
    AttackerEd25519,
}

impl Signing {
    /// The `kid` a token signed by this key names by default.
    pub fn kid(self) -> String {
        match self {
            Signing::Fixture(key) => key.kid().to_owned(),
            Signing::Derived(byte) => format!("derived-{byte:02x}"),
            Signing::AttackerP256 => "attacker".to_owned(),
            Signing::AttackerP384 => "attacker-p384".to_owned(),
            Signing::AttackerEd25519 => "attacker-ed25519".to_owned(),
        }
    }

    /// Signs `message` under `alg` (the key must be of the algorithm's type).
    pub fn sign(self, alg: &str, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        match self {
            Signing::Fixture(TestKey::Rsa2048) if alg == "RS256" => {
                // Deterministic, and the same bytes `TestKey::sign` makes, from the cached key.
                use rsa::signature::SignatureEncoding as _;
                rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa2048_private())
                    .sign(message)
                    .to_vec()
            }
            Signing::Fixture(key) => key.sign(alg, message),
            Signing::Derived(byte) => {
                assert_eq!(alg, "ES256", "derived keys are P-256");
                let signature: p256::ecdsa::Signature = derived_p256(byte).sign(message);
                signature.to_bytes().to_vec()
            }
            Signing::AttackerP256 => {
                assert_eq!(alg, "ES256", "the attacker's key is P-256");
                let signature: p256::ecdsa::Signature = attacker_p256().sign(message);
                signature.to_bytes().to_vec()
            }
            Signing::AttackerP384 => {
                assert_eq!(alg, "ES384");
                let key = p384::ecdsa::SigningKey::from_slice(&[0x33; 48]).unwrap();
                let signature: p384::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
            Signing::AttackerEd25519 => {
                assert_eq!(alg, "EdDSA");
                attacker_ed25519().sk.sign(message, None).to_vec()
            }
        }
    }

    /// The public JWK (with this key's `kid`).
    pub fn jwk(self) -> Value {
        match self {
            Signing::Fixture(key) => key.jwk(),
            Signing::Derived(byte) => p256_jwk(derived_p256(byte).verifying_key(), &self.kid()),
            Signing::AttackerP256 => p256_jwk(attacker_p256().verifying_key(), &self.kid()),
            Signing::AttackerP384 => {
                let key = p384::ecdsa::SigningKey::from_slice(&[0x33; 48]).unwrap();
                let point = key.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-384", "kid": self.kid(),
                       "x": b64url(point.x().unwrap()), "y": b64url(point.y().unwrap())})
            }
            Signing::AttackerEd25519 => json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid(),
                                                "x": b64url(attacker_ed25519().pk.as_ref())}),
        }
    }
}

pub fn derived_p256(byte: u8) -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[byte; 32]).unwrap()
}

fn attacker_p256() -> p256::ecdsa::SigningKey {
    use p256::pkcs8::DecodePrivateKey as _;
    p256::ecdsa::SigningKey::from_pkcs8_pem(ATTACKER_P256_PEM).unwrap()
}

fn attacker_ed25519() -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([0x44; 32]))
}

fn p256_jwk(key: &p256::ecdsa::VerifyingKey, kid: &str) -> Value {
    let point = key.to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "kid": kid,
           "x": b64url(point.x().unwrap()), "y": b64url(point.y().unwrap())})
}

/// The attacker's self-signed certificate, DER, for `x5c`.
pub fn attacker_certificate_der() -> Vec<u8> {
    pem_body(ATTACKER_P256_CERT)
}

fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).unwrap()
}

/// The trusted RSA-2048 private key, parsed once (parsing and validating it costs more than
/// signing with it, and the catalog signs hundreds of times while searching).
pub fn rsa2048_private() -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey as _;
    static KEY: std::sync::OnceLock<rsa::RsaPrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::from_pkcs8_pem(RSA2048_PEM).unwrap())
        .clone()
}

/// The modulus of the trusted RSA-2048 key.
pub fn rsa2048_modulus() -> BigUint {
    rsa2048_private().n().clone()
}

/// A big-endian integer as exactly `length` bytes (left-padded with zeros).
pub fn fixed_width(value: &BigUint, length: usize) -> Vec<u8> {
    let bytes = value.to_bytes_be();
    assert!(bytes.len() <= length, "{} bytes > {length}", bytes.len());
    let mut padded = vec![0; length - bytes.len()];
    padded.extend_from_slice(&bytes);
    padded
}

pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What an HMAC verifier would use as its secret if it took the asymmetric key as one (the
// classic algorithm confusion, CVE-2015-9235).

/// The secret an `HS*` token is keyed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// The trusted RSA key's SubjectPublicKeyInfo PEM, with its trailing newline.
    RsaPemWithNewline,
    /// The same PEM without the trailing newline.
    RsaPemWithoutNewline,
    /// The PKCS#1 `RSA PUBLIC KEY` PEM.
    RsaPkcs1Pem,
    /// The SubjectPublicKeyInfo DER.
    RsaDer,
    /// The public JWK as JSON text, as published in the key set.
    RsaJwkText,
    /// The trusted P-256 key's SubjectPublicKeyInfo PEM.
    P256Pem,
    /// The `k` of the `oct` key the key set (wrongly) publishes.
    OctKey,
    Empty,
}

/// The symmetric key that the catalog's JWKS publishes as `oct` (and the filter must skip).
pub const OCT_SECRET: &[u8] = b"the symmetric secret that a public key set must never hold";

impl Secret {
    pub fn bytes(self) -> Vec<u8> {
        use rsa::pkcs1::EncodeRsaPublicKey as _;
        use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
        let rsa = rsa2048_private().to_public_key();
        match self {
            Secret::RsaPemWithNewline => {
                let pem = rsa.to_public_key_pem(LineEnding::LF).unwrap();
                format!("{}\n", pem.trim_end()).into_bytes()
            }
            Secret::RsaPemWithoutNewline => {
                let pem = rsa.to_public_key_pem(LineEnding::LF).unwrap();
                pem.trim_end().as_bytes().to_vec()
            }
            Secret::RsaPkcs1Pem => rsa.to_pkcs1_pem(LineEnding::LF).unwrap().into_bytes(),
            Secret::RsaDer => rsa.to_public_key_der().unwrap().as_bytes().to_vec(),
            Secret::RsaJwkText => TestKey::Rsa2048.jwk().to_string().into_bytes(),
            Secret::P256Pem => {
                use p256::pkcs8::DecodePrivateKey as _;
                let key =
                    p256::SecretKey::from_pkcs8_pem(include_str!("../../fixtures/keys/p256.pem"))
                        .unwrap();
                key.public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .unwrap()
                    .into_bytes()
            }
            Secret::OctKey => OCT_SECRET.to_vec(),
            Secret::Empty => Vec::new(),
        }
    }
}

/// HMAC (RFC 2104) with SHA-256/384/512, as `HS256`/`HS384`/`HS512` would compute it.
pub fn hmac(bits: u16, key: &[u8], message: &[u8]) -> Vec<u8> {
    fn with<D: sha2::Digest>(block: usize, key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut key = if key.len() > block {
            D::digest(key).to_vec()
        } else {
            key.to_vec()
        };
        key.resize(block, 0);
        let pad = |byte: u8| key.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
        let inner = D::new()
            .chain_update(pad(0x36))
            .chain_update(message)
            .finalize();
        D::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .to_vec()
    }
    match bits {
        256 => with::<sha2::Sha256>(64, key, message),
        384 => with::<sha2::Sha384>(128, key, message),
        _ => with::<sha2::Sha512>(128, key, message),
    }
}

// ---------------------------------------------------------------------------------------------
// RSA signatures built from numbers rather than from a private key.

/// The DigestInfo prefix of SHA-256 in EMSA-PKCS1-v1_5 (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: &str = "3031300d060960864801650304020105000420";

/// EMSA-PKCS1-v1_5(SHA-256(message)) for a 2048-bit modulus: `00 01 FF… 00 DigestInfo hash`.
/// With `e = 1` this *is* the signature: anyone can compute it.
pub fn pkcs1_encoded_message(message: &[u8]) -> Vec<u8> {
    let mut tail = hex(SHA256_DIGEST_INFO);
    tail.extend_from_slice(&sha2::Sha256::digest(message));
    let mut encoded = vec![0x00, 0x01];
    encoded.resize(256 - tail.len() - 1, 0xff);
    encoded.push(0x00);
    encoded.extend_from_slice(&tail);
    encoded
}

/// Bleichenbacher's 2006 forgery for `e = 3`: a cube root of `00 01 FF 00 DigestInfo hash
/// <garbage>`. A verifier that parses the encoded message and ignores what follows the hash
/// accepts it; one that compares the whole encoding (as RFC 8017 requires) does not.
pub fn bleichenbacher_e3_forgery(message: &[u8]) -> Vec<u8> {
    let mut prefix = vec![0x00, 0x01, 0xff, 0x00];
    prefix.extend_from_slice(&hex(SHA256_DIGEST_INFO));
    prefix.extend_from_slice(&sha2::Sha256::digest(message));
    let mut target = prefix.clone();
    target.resize(256, 0x00);
    let target = BigUint::from_bytes_be(&target);
    let root = target.nth_root(3) + 1u32;
    let cube = &root * &root * &root;
    let cube = fixed_width(&cube, 256);
    assert_eq!(
        &cube[..prefix.len()],
        &prefix[..],
        "the cube keeps the forged prefix"
    );
    fixed_width(&root, 256)
}

/// An RSA-PSS signature by the trusted RSA-2048 key with an explicit salt length.
pub fn pss_signature(bits: u16, salt_length: usize, message: &[u8]) -> Vec<u8> {
    use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
    let key = rsa2048_private();
    let mut rng = rsa::rand_core::OsRng;
    match bits {
        256 => rsa::pss::SigningKey::<sha2::Sha256>::new_with_salt_len(key, salt_length)
            .sign_with_rng(&mut rng, message)
            .to_vec(),
        384 => rsa::pss::SigningKey::<sha2::Sha384>::new_with_salt_len(key, salt_length)
            .sign_with_rng(&mut rng, message)
            .to_vec(),
        _ => rsa::pss::SigningKey::<sha2::Sha512>::new_with_salt_len(key, salt_length)
            .sign_with_rng(&mut rng, message)
            .to_vec(),
    }
}

// ---------------------------------------------------------------------------------------------
// ECDSA and EdDSA signature arithmetic.

/// The same ECDSA signature with `s` replaced by `n - s` when `high` is true and `s` is low (or
/// by the low form when `high` is false): both verify under textbook ECDSA.
pub fn ecdsa_with_s(signature: &[u8], high: bool) -> Vec<u8> {
    macro_rules! flip {
        ($curve:ident) => {{
            let parsed = $curve::ecdsa::Signature::from_slice(signature).unwrap();
            let low = parsed.normalize_s().unwrap_or(parsed);
            if high {
                let (r, s) = low.split_scalars();
                let r: $curve::FieldBytes = r.into();
                let s: $curve::FieldBytes = (-s).into();
                $curve::ecdsa::Signature::from_scalars(r, s)
                    .unwrap()
                    .to_bytes()
                    .to_vec()
            } else {
                low.to_bytes().to_vec()
            }
        }};
    }
    match signature.len() {
        64 => flip!(p256),
        96 => flip!(p384),
        other => panic!("not an ES256/ES384 signature: {other} bytes"),
    }
}

/// Whether an ECDSA signature's `s` is in the upper half of the group order.
pub fn ecdsa_s_is_high(signature: &[u8]) -> bool {
    match signature.len() {
        64 => p256::ecdsa::Signature::from_slice(signature)
            .unwrap()
            .normalize_s()
            .is_some(),
        _ => p384::ecdsa::Signature::from_slice(signature)
            .unwrap()
            .normalize_s()
            .is_some(),
    }
}

/// An `r || s` ECDSA signature as ASN.1 DER (`SEQUENCE { INTEGER r, INTEGER s }`), the form
/// JWS does not use (RFC 7518 §3.4).
pub fn ecdsa_der(signature: &[u8]) -> Vec<u8> {
    let half = signature.len() / 2;
    let integer = |bytes: &[u8]| {
        let mut bytes: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
        if bytes.first().is_none_or(|&b| b & 0x80 != 0) {
            bytes.insert(0, 0);
        }
        let mut encoded = vec![0x02, u8::try_from(bytes.len()).unwrap()];
        encoded.extend(bytes);
        encoded
    };
    let mut body = integer(&signature[..half]);
    body.extend(integer(&signature[half..]));
    let mut der = vec![0x30];
    if body.len() >= 0x80 {
        der.push(0x81);
    }
    der.push(u8::try_from(body.len()).unwrap());
    der.extend(body);
    der
}

/// An Ed25519 signature with `S + L` in place of `S` (still 32 bytes): the malleated form
/// RFC 8032 §5.1.7 requires verifiers to reject.
pub fn ed25519_add_order(signature: &[u8]) -> Vec<u8> {
    let mut order = hex(ED25519_ORDER);
    order.reverse(); // little-endian, like S
    let mut result = signature.to_vec();
    let mut carry = 0u16;
    for (index, byte) in order.iter().enumerate() {
        let sum = u16::from(result[32 + index]) + u16::from(*byte) + carry;
        result[32 + index] = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + L fits in 32 bytes");
    result
}

// ---------------------------------------------------------------------------------------------
// The main provider's key set: usable keys, and keys the filter must skip. Each entry says what
// loading it must do; the runner checks Envoy's log for exactly that.

/// What loading one JWK must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// Loaded: no warning about it.
    Used,
    /// Skipped with this reason (the text the filter logs).
    Skipped(&'static str),
}

/// One entry of the main key set.
pub struct JwkEntry {
    pub kid: &'static str,
    /// What the entry tests, for the report.
    pub about: &'static str,
    pub jwk: Value,
    pub load: Load,
}

fn with_members(mut jwk: Value, kid: &str, members: Value) -> Value {
    jwk["kid"] = json!(kid);
    for (name, value) in members.as_object().unwrap() {
        jwk[name] = value.clone();
    }
    jwk
}

/// An RSA modulus of 2048 bits with the ROCA fingerprint (CVE-2017-15361): congruent to
/// 1 = 65537^0 modulo every prime of the fingerprint. Not a product of two primes; the
/// fingerprint test is all the filter applies and all this must trip.
pub fn roca_modulus() -> BigUint {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    let product = PRIMES
        .iter()
        .fold(BigUint::from(1u32), |product, prime| product * *prime);
    let top = BigUint::from(1u32) << 2047usize;
    let mut multiplier = &top / &product + 1u32;
    if &multiplier % 2u32 == BigUint::from(1u32) {
        multiplier += 1u32; // an even multiplier makes the modulus odd
    }
    let modulus = product * multiplier + 1u32;
    assert_eq!(modulus.bits(), 2048);
    modulus
}

/// The trusted keys of the `main` provider, then keys of every kind the filter must skip.
pub fn main_key_set() -> Vec<JwkEntry> {
    let rsa = TestKey::Rsa2048.jwk();
    let p256 = TestKey::P256.jwk();
    let ed25519 = TestKey::Ed25519.jwk();
    let n = URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap();
    let x = URL_SAFE_NO_PAD.decode(p256["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(p256["y"].as_str().unwrap()).unwrap();
    let mut off_curve = x.clone();
    off_curve[31] ^= 1;
    let mut padded_n = vec![0];
    padded_n.extend_from_slice(&n);
    let mut long_y = vec![0];
    long_y.extend_from_slice(&y);
    let ed_x = URL_SAFE_NO_PAD
        .decode(ed25519["x"].as_str().unwrap())
        .unwrap();
    let mut ed_long = ed_x.clone();
    ed_long.push(0);
    // The identity point (order 1): its encoding is y = 1.
    let mut identity = vec![0; 32];
    identity[0] = 1;
    let private_p256 = {
        let key = derived_p256(0x31);
        with_members(
            Signing::Derived(0x31).jwk(),
            "private",
            json!({"d": b64url(&key.to_bytes())}),
        )
    };
    let used = Load::Used;
    let entry = |kid, about, jwk, load| JwkEntry {
        kid,
        about,
        jwk,
        load,
    };
    vec![
        entry("rsa-2048", "trusted RSA-2048", rsa.clone(), used.clone()),
        entry("p256", "trusted P-256", p256.clone(), used.clone()),
        entry("p384", "trusted P-384", TestKey::P384.jwk(), used.clone()),
        entry("ed25519", "trusted Ed25519", ed25519.clone(), used.clone()),
        entry(
            "dup",
            "first of two keys sharing a kid",
            with_members(Signing::Derived(0x21).jwk(), "dup", json!({})),
            used.clone(),
        ),
        entry(
            "dup",
            "second of two keys sharing a kid",
            with_members(Signing::Derived(0x22).jwk(), "dup", json!({})),
            used.clone(),
        ),
        entry(
            "(none)",
            "a P-256 key without kid",
            {
                let mut jwk = Signing::Derived(0x23).jwk();
                jwk.as_object_mut().unwrap().remove("kid");
                jwk
            },
            used.clone(),
        ),
        entry(
            "rsa-e3",
            "RSA-2048 modulus with e = 3 (valid, if unusual)",
            with_members(rsa.clone(), "rsa-e3", json!({"e": "Aw"})),
            used.clone(),
        ),
        entry(
            "rsa-n-leading-zero",
            "RSA modulus with a leading zero octet (RFC 7518 §6.3.1.1 says minimal)",
            with_members(
                rsa.clone(),
                "rsa-n-leading-zero",
                json!({"n": b64url(&padded_n)}),
            ),
            used.clone(),
        ),
        entry(
            "ed25519-identity",
            "Ed25519 x = identity point (small order; only its length is checked on load)",
            with_members(
                ed25519.clone(),
                "ed25519-identity",
                json!({"x": b64url(&identity)}),
            ),
            used,
        ),
        entry(
            "oct",
            "symmetric oct key",
            json!({"kty": "oct", "kid": "oct", "k": b64url(OCT_SECRET), "alg": "HS256"}),
            Load::Skipped("symmetric (`oct`) keys are never used"),
        ),
        entry(
            "private",
            "P-256 key with its private scalar d",
            private_p256,
            Load::Skipped("holds private key members"),
        ),
        entry(
            "use-enc",
            "use: enc",
            with_members(
                Signing::Derived(0x32).jwk(),
                "use-enc",
                json!({"use": "enc"}),
            ),
            Load::Skipped("`use`/`key_ops` do not allow verification"),
        ),
        entry(
            "key-ops-sign",
            "key_ops: [sign] (no verify)",
            with_members(
                Signing::Derived(0x33).jwk(),
                "key-ops-sign",
                json!({"key_ops": ["sign"]}),
            ),
            Load::Skipped("`use`/`key_ops` do not allow verification"),
        ),
        entry(
            "rsa-1024",
            "RSA-1024",
            TestKey::Rsa1024.jwk(),
            Load::Skipped("RSA modulus of 1024 bits (2048 to 8192 allowed)"),
        ),
        entry(
            "rsa-e1",
            "RSA-2048 modulus with e = 1 (signature = encoded message)",
            with_members(rsa.clone(), "rsa-e1", json!({"e": "AQ"})),
            Load::Skipped("not a valid public key"),
        ),
        entry(
            "rsa-roca",
            "RSA-2048 modulus with the ROCA fingerprint (CVE-2017-15361)",
            with_members(
                rsa.clone(),
                "rsa-roca",
                json!({"n": b64url(&roca_modulus().to_bytes_be())}),
            ),
            Load::Skipped("RSA modulus with the ROCA weakness (CVE-2017-15361)"),
        ),
        entry(
            "p256-off-curve",
            "P-256 point not on the curve (invalid-curve attack)",
            with_members(
                p256.clone(),
                "p256-off-curve",
                json!({"x": b64url(&off_curve)}),
            ),
            Load::Skipped("not a valid public key"),
        ),
        entry(
            "p256-zero-point",
            "P-256 point (0, 0)",
            with_members(
                p256.clone(),
                "p256-zero-point",
                json!({"x": b64url(&[0; 32]), "y": b64url(&[0; 32])}),
            ),
            Load::Skipped("not a valid public key"),
        ),
        entry(
            "p256-short-x",
            "P-256 x of 31 bytes (leading zero stripped)",
            with_members(p256.clone(), "p256-short-x", json!({"x": b64url(&x[1..])})),
            Load::Skipped("`x` is missing or not canonical base64url"),
        ),
        entry(
            "p256-long-y",
            "P-256 y of 33 bytes (zero-padded)",
            with_members(p256.clone(), "p256-long-y", json!({"y": b64url(&long_y)})),
            Load::Skipped("`y` is missing or not canonical base64url"),
        ),
        entry(
            "ed25519-short",
            "Ed25519 x of 31 bytes",
            with_members(
                ed25519.clone(),
                "ed25519-short",
                json!({"x": b64url(&ed_x[1..])}),
            ),
            Load::Skipped("`x` is missing or not canonical base64url"),
        ),
        entry(
            "ed25519-long",
            "Ed25519 x of 33 bytes",
            with_members(ed25519, "ed25519-long", json!({"x": b64url(&ed_long)})),
            Load::Skipped("`x` is missing or not canonical base64url"),
        ),
        entry(
            "alg-mismatch",
            "P-256 key declaring alg RS256",
            with_members(p256.clone(), "alg-mismatch", json!({"alg": "RS256"})),
            Load::Skipped("`alg` \"RS256\" is not usable with this key"),
        ),
        entry(
            "alg-hs256",
            "RSA key declaring alg HS256",
            with_members(rsa, "alg-hs256", json!({"alg": "HS256"})),
            Load::Skipped("`alg` \"HS256\" is not usable with this key"),
        ),
        entry(
            "p521",
            "EC key on P-521",
            with_members(p256, "p521", json!({"crv": "P-521"})),
            Load::Skipped("unsupported `crv` \"P-521\""),
        ),
    ]
}
