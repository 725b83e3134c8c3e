//! JOSE: what a token and a key set say, and whether a signature holds. Strict parsing of the
//! compact JWS ([`token`]), the algorithm names ([`algorithm`]), key sets ([`jwks`], with the
//! X.509 and DER encodings they carry), and the one place signature math happens
//! ([`signature`]: the portable code, this crate's RSA arithmetic, or the proxy's own crypto
//! through [`host_crypto`]'s wire format). Knows nothing of requests, providers or time.

pub mod algorithm;
mod der;
mod es384;
pub mod host_crypto;
mod json;
pub mod jwks;
mod rsa_math;
pub mod signature;
pub mod token;
mod x509;
