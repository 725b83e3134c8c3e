//! Signature algorithms and the one place where signature math happens.
//!
//! The algorithm names are the JWA (RFC 7518) names, matched exactly and case-sensitively:
//! `rs256` is not `RS256`. `none` and the HMAC family are not algorithms here at all, so no
//! configuration, header or key can make the filter accept an unsigned or symmetrically signed
//! token.

use jwt_compact::alg::{Ed25519, Es256};
use jwt_compact::Algorithm as _;

use crate::jose::algorithm::Algorithm;
use crate::jose::host_crypto;
use crate::jose::jwks::{Key, PublicKey, RsaKey};
use crate::jose::rsa_math::RsaHash;

/// Why a signature did not verify. Callers only need "it did not verify"; the variants exist
/// so tests can tell a wrong-length signature from a wrong signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The key's type or curve cannot verify this algorithm.
    KeyMismatch,
    /// The signature has the wrong length for the algorithm and key (RFC 7518 fixes it).
    WrongLength,
    /// Well-formed, but not a signature of this message by this key.
    Invalid,
}

/// A signature whose form fits its algorithm and key: the exact length JWA fixes (the modulus
/// size for RSA, `2 * field size` for ECDSA, 64 bytes for Ed25519), an RSA representative
/// below the modulus, ECDSA scalars `r` and `s` in `1..n`. Only [`check`] makes one, so a
/// [`SignatureVerifier`] only ever does math: every question with a single right answer is
/// settled here, in Rust, identically whichever backend then verifies.
#[derive(Debug, Clone, Copy)]
pub struct CheckedSignature<'a> {
    algorithm: Algorithm,
    key: &'a Key,
    message: &'a [u8],
    signature: &'a [u8],
}

impl<'a> CheckedSignature<'a> {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn key(&self) -> &'a Key {
        self.key
    }

    pub fn message(&self) -> &'a [u8] {
        self.message
    }

    pub fn signature(&self) -> &'a [u8] {
        self.signature
    }

    /// The host's `verify_signature` arguments for this signature, or `None` when the host
    /// cannot verify this algorithm (see [`crate::jose::host_crypto`]).
    pub fn host_arguments(&self) -> Option<Vec<u8>> {
        let hash = host_crypto::hash_function(self.algorithm)?;
        Some(host_crypto::encode_arguments(
            hash,
            &self.key.spki_der,
            &host_crypto::host_signature(self.algorithm, self.signature),
            self.message,
        ))
    }
}

/// Checks the form of `signature` for `algorithm` and `key`; see [`CheckedSignature`].
pub fn check<'a>(
    algorithm: Algorithm,
    key: &'a Key,
    message: &'a [u8],
    signature: &'a [u8],
) -> Result<CheckedSignature<'a>, SignatureError> {
    match (algorithm, &key.public_key) {
        (
            Algorithm::Rs256
            | Algorithm::Rs384
            | Algorithm::Rs512
            | Algorithm::Ps256
            | Algorithm::Ps384
            | Algorithm::Ps512,
            PublicKey::Rsa(public),
        ) => check_rsa(public, signature)?,
        (Algorithm::Es256, PublicKey::P256(_)) => {
            p256_signature(signature)?;
        }
        (Algorithm::Es384, PublicKey::P384(_)) => {
            p384_signature(signature)?;
        }
        (Algorithm::EdDsa, PublicKey::Ed25519(_)) => {
            if signature.len() != 64 {
                return Err(SignatureError::WrongLength);
            }
        }
        _ => return Err(SignatureError::KeyMismatch),
    }
    Ok(CheckedSignature {
        algorithm,
        key,
        message,
        signature,
    })
}

/// Signature math: given a [`CheckedSignature`], whether it is a signature of its message by
/// its key. Implementations: [`Portable`] (pure Rust, any host) and the adapter's host
/// backend (the proxy's own crypto library, for the algorithms it offers).
pub trait SignatureVerifier {
    fn verify(&self, signature: &CheckedSignature<'_>) -> bool;
}

/// Verifies `signature` over `message` with `key` under `algorithm`: [`check`], then the math
/// by `verifier`.
pub fn verify_signature(
    verifier: &dyn SignatureVerifier,
    algorithm: Algorithm,
    key: &Key,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let checked = check(algorithm, key, message, signature)?;
    if verifier.verify(&checked) {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

/// The pure-Rust backend: RustCrypto's curves and Ed25519, this crate's RSA.
#[derive(Debug, Clone, Copy, Default)]
pub struct Portable;

impl SignatureVerifier for Portable {
    fn verify(&self, checked: &CheckedSignature<'_>) -> bool {
        let (message, signature) = (checked.message, checked.signature);
        match (checked.algorithm, &checked.key.public_key) {
            (Algorithm::Rs256, PublicKey::Rsa(key)) => {
                verify_rsa(key, RsaScheme::Pkcs1(RsaHash::Sha256), message, signature)
            }
            (Algorithm::Rs384, PublicKey::Rsa(key)) => {
                verify_rsa(key, RsaScheme::Pkcs1(RsaHash::Sha384), message, signature)
            }
            (Algorithm::Rs512, PublicKey::Rsa(key)) => {
                verify_rsa(key, RsaScheme::Pkcs1(RsaHash::Sha512), message, signature)
            }
            (Algorithm::Ps256, PublicKey::Rsa(key)) => {
                verify_rsa(key, RsaScheme::Pss(RsaHash::Sha256), message, signature)
            }
            (Algorithm::Ps384, PublicKey::Rsa(key)) => {
                verify_rsa(key, RsaScheme::Pss(RsaHash::Sha384), message, signature)
            }
            (Algorithm::Ps512, PublicKey::Rsa(key)) => {
                verify_rsa(key, RsaScheme::Pss(RsaHash::Sha512), message, signature)
            }
            (Algorithm::Es256, PublicKey::P256(key)) => p256_signature(signature)
                .is_ok_and(|signature| Es256.verify_signature(&signature, key, message)),
            (Algorithm::Es384, PublicKey::P384(key)) => {
                p384_signature(signature).is_ok_and(|signature| {
                    crate::jose::es384::Es384.verify_signature(
                        &crate::jose::es384::Es384Signature(signature),
                        key,
                        message,
                    )
                })
            }
            (Algorithm::EdDsa, PublicKey::Ed25519(key)) => <[u8; 64]>::try_from(signature)
                .is_ok_and(|bytes| {
                    Ed25519.verify_signature(&ed25519_compact::Signature::new(bytes), key, message)
                }),
            // `check` made sure the key fits the algorithm.
            _ => false,
        }
    }
}

fn check_rsa(key: &RsaKey, signature: &[u8]) -> Result<(), SignatureError> {
    // RFC 7518 §3.3/§3.5: the signature is exactly as long as the modulus; a shorter one
    // (leading zeros stripped) or a longer one (zeros prepended) is not canonical.
    if signature.len() != key.verifier.modulus_len() {
        return Err(SignatureError::WrongLength);
    }
    // RFC 8017 §5.2.2: the signature representative must be below the modulus. Not every
    // implementation checks this (the `rsa` crate does not for PSS), and `s + n`, when it
    // still fits in the modulus length, would otherwise verify too: a second spelling.
    if !key.verifier.is_below_modulus(signature) {
        return Err(SignatureError::Invalid);
    }
    Ok(())
}

/// An RSA signature scheme of JWA with its hash.
#[derive(Debug, Clone, Copy)]
enum RsaScheme {
    /// `RS*`: RSASSA-PKCS1-v1_5.
    Pkcs1(RsaHash),
    /// `PS*`: RSASSA-PSS with MGF1 and a salt as long as the hash.
    Pss(RsaHash),
}

#[cfg(not(feature = "reference-rsa"))]
fn verify_rsa(key: &RsaKey, scheme: RsaScheme, message: &[u8], signature: &[u8]) -> bool {
    match scheme {
        RsaScheme::Pkcs1(hash) => key.verifier.verify_pkcs1_v15(hash, message, signature),
        RsaScheme::Pss(hash) => key.verifier.verify_pss(hash, message, signature),
    }
}

/// The straightforward implementation (jwt-compact over the `rsa` crate), for benchmarks.
#[cfg(feature = "reference-rsa")]
fn verify_rsa(key: &RsaKey, scheme: RsaScheme, message: &[u8], signature: &[u8]) -> bool {
    use jwt_compact::alg::{Rsa, RsaSignature};
    use jwt_compact::AlgorithmSignature as _;
    let algorithm = match scheme {
        RsaScheme::Pkcs1(RsaHash::Sha256) => Rsa::rs256(),
        RsaScheme::Pkcs1(RsaHash::Sha384) => Rsa::rs384(),
        RsaScheme::Pkcs1(RsaHash::Sha512) => Rsa::rs512(),
        RsaScheme::Pss(RsaHash::Sha256) => Rsa::ps256(),
        RsaScheme::Pss(RsaHash::Sha384) => Rsa::ps384(),
        RsaScheme::Pss(RsaHash::Sha512) => Rsa::ps512(),
    };
    RsaSignature::try_from_slice(signature)
        .is_ok_and(|signature| algorithm.verify_signature(&signature, &key.reference, message))
}

fn p256_signature(bytes: &[u8]) -> Result<p256::ecdsa::Signature, SignatureError> {
    if bytes.len() != 64 {
        return Err(SignatureError::WrongLength);
    }
    // Rejects r or s equal to zero or not below the group order.
    p256::ecdsa::Signature::from_slice(bytes).map_err(|_| SignatureError::Invalid)
}

fn p384_signature(bytes: &[u8]) -> Result<p384::ecdsa::Signature, SignatureError> {
    if bytes.len() != 96 {
        return Err(SignatureError::WrongLength);
    }
    p384::ecdsa::Signature::from_slice(bytes).map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::jose::jwks::parse_key;
    use crate::support::TestKey;

    fn public_key(key: TestKey) -> Key {
        parse_key(&key.jwk()).unwrap()
    }

    #[test]
    fn names_round_trip_exactly() {
        for algorithm in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(algorithm.name()), Some(algorithm));
        }
        for name in ["none", "HS256", "rs256", "EDDSA", "ES512", ""] {
            assert_eq!(Algorithm::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn every_algorithm_verifies_its_own_signature_and_nothing_else() {
        let message = b"header.payload";
        for algorithm in Algorithm::ALL {
            let key = TestKey::for_algorithm(algorithm.name());
            let signature = key.sign(algorithm.name(), message);
            let public = public_key(key);
            assert_eq!(
                verify_signature(&Portable, algorithm, &public, message, &signature),
                Ok(())
            );
            assert_eq!(
                verify_signature(&Portable, algorithm, &public, b"header.payloaD", &signature),
                Err(SignatureError::Invalid),
                "{algorithm}"
            );
        }
    }

    #[test]
    fn wrong_lengths_are_refused_without_panicking() {
        let message = b"m";
        for algorithm in Algorithm::ALL {
            let key = TestKey::for_algorithm(algorithm.name());
            let public = public_key(key);
            let signature = key.sign(algorithm.name(), message);
            let mut longer = signature.clone();
            longer.push(0);
            let mut prefixed = vec![0];
            prefixed.extend_from_slice(&signature);
            for bad in [&[][..], &signature[1..], &longer[..], &prefixed[..]] {
                assert_eq!(
                    verify_signature(&Portable, algorithm, &public, message, bad),
                    Err(SignatureError::WrongLength),
                    "{algorithm} with {} bytes",
                    bad.len()
                );
            }
        }
    }

    #[test]
    fn a_key_of_another_type_never_verifies() {
        let signature = TestKey::P256.sign("ES256", b"m");
        assert_eq!(
            verify_signature(
                &Portable,
                Algorithm::Es384,
                &public_key(TestKey::P256),
                b"m",
                &signature
            ),
            Err(SignatureError::KeyMismatch)
        );
        assert_eq!(
            verify_signature(
                &Portable,
                Algorithm::Rs256,
                &public_key(TestKey::Ed25519),
                b"m",
                &signature
            ),
            Err(SignatureError::KeyMismatch)
        );
    }

    #[test]
    fn rsa_signatures_at_or_above_the_modulus_are_refused() {
        let message = b"m";
        let jwk = TestKey::Rsa2048.jwk();
        let modulus =
            rsa::BigUint::from_bytes_be(&crate::support::b64url_decode(jwk["n"].as_str().unwrap()));
        let size = 256;
        let mut found_one = false;
        // A PSS signature is random: retry until `s + n` still fits in the modulus length.
        for _ in 0..64 {
            let signature = TestKey::Rsa2048.sign("PS256", message);
            let shifted = (rsa::BigUint::from_bytes_be(&signature) + &modulus).to_bytes_be();
            if shifted.len() != size {
                continue;
            }
            found_one = true;
            assert_eq!(
                verify_signature(
                    &Portable,
                    Algorithm::Ps256,
                    &public_key(TestKey::Rsa2048),
                    message,
                    &signature
                ),
                Ok(())
            );
            assert_eq!(
                verify_signature(
                    &Portable,
                    Algorithm::Ps256,
                    &public_key(TestKey::Rsa2048),
                    message,
                    &shifted
                ),
                Err(SignatureError::Invalid)
            );
            break;
        }
        assert!(
            found_one,
            "no PSS signature with s + n below 2^2048 in 64 tries"
        );
    }

    #[test]
    fn ecdsa_rejects_zero_and_out_of_range_scalars() {
        let public = public_key(TestKey::P256);
        assert_eq!(
            verify_signature(&Portable, Algorithm::Es256, &public, b"m", &[0; 64]),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_signature(&Portable, Algorithm::Es256, &public, b"m", &[0xff; 64]),
            Err(SignatureError::Invalid)
        );
    }
}
