//! `ES384` (ECDSA on P-384 with SHA-384) as a `jwt_compact` algorithm, which ships only `ES256`.

use std::borrow::Cow;
use std::num::NonZeroUsize;

use jwt_compact::{Algorithm, AlgorithmSignature};
use p384::ecdsa::signature::{DigestSigner as _, DigestVerifier as _};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha384};

/// ECDSA over P-384 with SHA-384, signatures in the fixed-size `r || s` form of RFC 7518 §3.4.
#[derive(Debug, Default, Clone, Copy)]
pub struct Es384;

/// A P-384 signature in `r || s` form. A newtype because the trait and the type are both foreign.
#[derive(Debug, Clone)]
pub struct Es384Signature(pub Signature);

impl AlgorithmSignature for Es384Signature {
    const LENGTH: Option<NonZeroUsize> = NonZeroUsize::new(96);

    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        Signature::from_slice(slice)
            .map(Es384Signature)
            .map_err(|err| anyhow::anyhow!(err))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.0.to_bytes().to_vec())
    }
}

impl Algorithm for Es384 {
    type SigningKey = SigningKey;
    type VerifyingKey = VerifyingKey;
    type Signature = Es384Signature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("ES384")
    }

    fn sign(&self, signing_key: &SigningKey, message: &[u8]) -> Es384Signature {
        Es384Signature(signing_key.sign_digest(Sha384::new_with_prefix(message)))
    }

    fn verify_signature(
        &self,
        signature: &Es384Signature,
        verifying_key: &VerifyingKey,
        message: &[u8],
    ) -> bool {
        verifying_key
            .verify_digest(Sha384::new_with_prefix(message), &signature.0)
            .is_ok()
    }
}
