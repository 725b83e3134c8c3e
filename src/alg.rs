//! Signature algorithms and the one place where signature math happens.
//!
//! The algorithm names are the JWA (RFC 7518) names, matched exactly and case-sensitively:
//! `rs256` is not `RS256`. `none` and the HMAC family are not algorithms here at all, so no
//! configuration, header or key can make the filter accept an unsigned or symmetrically signed
//! token.

use std::fmt;

use jwt_compact::alg::{Ed25519, Es256, Rsa, RsaSignature};
use jwt_compact::{Algorithm as _, AlgorithmSignature as _};

use crate::jwks::PublicKey;

/// An asymmetric JWS algorithm this filter can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Algorithm {
    /// Every algorithm, in the order of the default allow-list.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
    ];

    /// Parses a JWA name exactly (case-sensitive, as RFC 7515 §4.1.1 requires).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// Whether a key of this kind can verify this algorithm (`kty`/`crv` compatibility).
    pub fn fits(self, key: &PublicKey) -> bool {
        matches!(
            (self, key),
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

impl fmt::Display for Algorithm {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

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

/// Verifies `signature` over `message` with `key` under `algorithm`.
///
/// Lengths are checked here, before any parsing: JWA fixes the exact signature size for every
/// algorithm (the modulus size for RSA, `2 * field size` for ECDSA, 64 bytes for Ed25519), and
/// some primitives below would otherwise panic or accept padded input.
pub fn verify_signature(
    algorithm: Algorithm,
    key: &PublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let verified = match (algorithm, key) {
        (Algorithm::Rs256, PublicKey::Rsa(key)) => {
            verify_rsa(Rsa::rs256(), key, message, signature)?
        }
        (Algorithm::Rs384, PublicKey::Rsa(key)) => {
            verify_rsa(Rsa::rs384(), key, message, signature)?
        }
        (Algorithm::Rs512, PublicKey::Rsa(key)) => {
            verify_rsa(Rsa::rs512(), key, message, signature)?
        }
        (Algorithm::Ps256, PublicKey::Rsa(key)) => {
            verify_rsa(Rsa::ps256(), key, message, signature)?
        }
        (Algorithm::Ps384, PublicKey::Rsa(key)) => {
            verify_rsa(Rsa::ps384(), key, message, signature)?
        }
        (Algorithm::Ps512, PublicKey::Rsa(key)) => {
            verify_rsa(Rsa::ps512(), key, message, signature)?
        }
        (Algorithm::Es256, PublicKey::P256(key)) => {
            let signature = p256_signature(signature)?;
            Es256.verify_signature(&signature, key, message)
        }
        (Algorithm::Es384, PublicKey::P384(key)) => {
            let signature = p384_signature(signature)?;
            crate::es384::Es384.verify_signature(
                &crate::es384::Es384Signature(signature),
                key,
                message,
            )
        }
        (Algorithm::EdDsa, PublicKey::Ed25519(key)) => {
            // `ed25519_compact`'s `try_from_slice` copies into a fixed array and would panic
            // on any other length: the length check must come first.
            let bytes: [u8; 64] = signature
                .try_into()
                .map_err(|_| SignatureError::WrongLength)?;
            let signature = ed25519_compact::Signature::new(bytes);
            Ed25519.verify_signature(&signature, key, message)
        }
        _ => return Err(SignatureError::KeyMismatch),
    };
    if verified {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

fn verify_rsa(
    algorithm: Rsa,
    key: &rsa::RsaPublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, SignatureError> {
    use rsa::traits::PublicKeyParts as _;
    // RFC 7518 §3.3/§3.5: the signature is exactly as long as the modulus; a shorter one
    // (leading zeros stripped) or a longer one (zeros prepended) is not canonical.
    if signature.len() != key.size() {
        return Err(SignatureError::WrongLength);
    }
    // RFC 8017 §5.2.2: the signature representative must be below the modulus. The `rsa` crate
    // checks this for PKCS#1 v1.5 but not for PSS, where `s + n` (when it still fits in the
    // modulus length) would verify too: a second spelling of the same token.
    if rsa::BigUint::from_bytes_be(signature) >= *key.n() {
        return Err(SignatureError::Invalid);
    }
    let signature =
        RsaSignature::try_from_slice(signature).map_err(|_| SignatureError::WrongLength)?;
    Ok(algorithm.verify_signature(&signature, key, message))
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
    use crate::jwks::parse_key;
    use crate::support::TestKey;

    fn public_key(key: TestKey) -> PublicKey {
        parse_key(&key.jwk()).unwrap().public_key
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
                verify_signature(algorithm, &public, message, &signature),
                Ok(())
            );
            assert_eq!(
                verify_signature(algorithm, &public, b"header.payloaD", &signature),
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
                    verify_signature(algorithm, &public, message, bad),
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
                Algorithm::Es384,
                &public_key(TestKey::P256),
                b"m",
                &signature
            ),
            Err(SignatureError::KeyMismatch)
        );
        assert_eq!(
            verify_signature(
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
        use rsa::traits::PublicKeyParts as _;
        let message = b"m";
        let PublicKey::Rsa(key) = public_key(TestKey::Rsa2048) else {
            panic!("not an RSA key");
        };
        let size = key.size();
        let mut found_one = false;
        // A PSS signature is random: retry until `s + n` still fits in the modulus length.
        for _ in 0..64 {
            let signature = TestKey::Rsa2048.sign("PS256", message);
            let shifted = (rsa::BigUint::from_bytes_be(&signature) + key.n()).to_bytes_be();
            if shifted.len() != size {
                continue;
            }
            found_one = true;
            assert_eq!(
                verify_signature(
                    Algorithm::Ps256,
                    &public_key(TestKey::Rsa2048),
                    message,
                    &signature
                ),
                Ok(())
            );
            assert_eq!(
                verify_signature(
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
            verify_signature(Algorithm::Es256, &public, b"m", &[0; 64]),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_signature(Algorithm::Es256, &public, b"m", &[0xff; 64]),
            Err(SignatureError::Invalid)
        );
    }
}
