//! The few DER encodings a host's crypto library wants from us: a public key as
//! SubjectPublicKeyInfo (RFC 5280 §4.1.2.7) and an ECDSA signature as `Ecdsa-Sig-Value`
//! (RFC 3279 §2.2.3).
//!
//! Written by hand rather than pulled from an ASN.1 crate: the shapes are fixed, tiny, and
//! only ever encoded, never parsed, so there is no attacker-controlled structure here. Key
//! encodings are made once per key at load time; the signature encoding once per request.

/// `rsaEncryption` (1.2.840.113549.1.1.1).
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// `id-ecPublicKey` (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `prime256v1` / P-256 (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// `secp384r1` / P-384 (1.3.132.0.34).
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// `id-Ed25519` (1.3.101.112, RFC 8410).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// The named curves a SubjectPublicKeyInfo can carry here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

/// SubjectPublicKeyInfo of an RSA key from its big-endian modulus and exponent.
pub fn rsa_public_key(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let rsa_public_key = tlv(
        TAG_SEQUENCE,
        &[integer(modulus).as_slice(), integer(exponent).as_slice()].concat(),
    );
    let algorithm = tlv(
        TAG_SEQUENCE,
        &[tlv(TAG_OID, OID_RSA_ENCRYPTION), tlv(TAG_NULL, &[])].concat(),
    );
    subject_public_key_info(&algorithm, &rsa_public_key)
}

/// SubjectPublicKeyInfo of an EC key from its SEC 1 uncompressed point (`04 || x || y`).
pub fn ec_public_key(curve: Curve, uncompressed_point: &[u8]) -> Vec<u8> {
    let curve_oid = match curve {
        Curve::P256 => OID_P256,
        Curve::P384 => OID_P384,
    };
    let algorithm = tlv(
        TAG_SEQUENCE,
        &[tlv(TAG_OID, OID_EC_PUBLIC_KEY), tlv(TAG_OID, curve_oid)].concat(),
    );
    subject_public_key_info(&algorithm, uncompressed_point)
}

/// SubjectPublicKeyInfo of an Ed25519 key (RFC 8410: no parameters).
pub fn ed25519_public_key(public_key: &[u8]) -> Vec<u8> {
    let algorithm = tlv(TAG_SEQUENCE, &tlv(TAG_OID, OID_ED25519));
    subject_public_key_info(&algorithm, public_key)
}

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` from the fixed-size JWS form
/// `r || s` (RFC 7518 §3.4), split in the middle.
pub fn ecdsa_signature(fixed: &[u8]) -> Vec<u8> {
    let (r, s) = fixed.split_at(fixed.len().checked_div(2).unwrap_or(0));
    tlv(
        TAG_SEQUENCE,
        &[integer(r).as_slice(), integer(s).as_slice()].concat(),
    )
}

fn subject_public_key_info(algorithm: &[u8], key_bits: &[u8]) -> Vec<u8> {
    // A BIT STRING starts with the number of unused bits in its last byte: none here.
    let bit_string = tlv(TAG_BIT_STRING, &[&[0x00], key_bits].concat());
    tlv(TAG_SEQUENCE, &[algorithm, bit_string.as_slice()].concat())
}

/// A non-negative INTEGER from big-endian magnitude bytes: minimal length (leading zeros
/// dropped), with one zero byte put back when the top bit is set so it does not read negative.
fn integer(magnitude: &[u8]) -> Vec<u8> {
    let first_nonzero = magnitude
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(magnitude.len());
    let trimmed = magnitude.get(first_nonzero..).unwrap_or_default();
    let mut content = Vec::with_capacity(trimmed.len().saturating_add(1));
    match trimmed.first() {
        None => content.push(0),
        Some(&top) if top & 0x80 != 0 => content.push(0),
        Some(_) => {}
    }
    content.extend_from_slice(trimmed);
    tlv(TAG_INTEGER, &content)
}

/// Tag, definite length (short form below 128, long form above), content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let length = content.len();
    let length_bytes = length.to_be_bytes();
    let significant = length_bytes
        .iter()
        .position(|&byte| byte != 0)
        .and_then(|start| length_bytes.get(start..))
        .unwrap_or_default();
    // Tag, length octets, content: at most 2 + size_of::<usize>() bytes before the content.
    let mut encoded = Vec::with_capacity(
        content
            .len()
            .saturating_add(length_bytes.len())
            .saturating_add(2),
    );
    encoded.push(tag);
    match u8::try_from(length) {
        Ok(short) if short < 0x80 => encoded.push(short),
        // Long form: 0x80 | number of length bytes, then the length, big-endian.
        _ => {
            let count = u8::try_from(significant.len()).unwrap_or(0);
            encoded.push(0x80 | count);
            encoded.extend_from_slice(significant);
        }
    }
    encoded.extend_from_slice(content);
    encoded
}

#[cfg(test)]
mod tests {

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn integers_are_minimal_and_non_negative() {
        assert_eq!(integer(&[]), [0x02, 0x01, 0x00]);
        assert_eq!(integer(&[0, 0]), [0x02, 0x01, 0x00]);
        assert_eq!(integer(&[0x00, 0x7f]), [0x02, 0x01, 0x7f]);
        assert_eq!(integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(&[0x01, 0x00, 0x01]), [0x02, 0x03, 0x01, 0x00, 0x01]);
    }

    #[test]
    fn lengths_use_the_long_form_from_128_bytes() {
        assert_eq!(tlv(0x04, &[0; 127]).get(..2), Some(&[0x04, 0x7f][..]));
        assert_eq!(tlv(0x04, &[0; 128]).get(..3), Some(&[0x04, 0x81, 0x80][..]));
        assert_eq!(
            tlv(0x04, &[0; 300]).get(..4),
            Some(&[0x04, 0x82, 0x01, 0x2c][..])
        );
    }

    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    #[test]
    fn key_encodings_match_the_reference_implementations() {
        use p256::pkcs8::EncodePublicKey as _;

        use crate::jose::jwks::{parse_key, PublicKey};
        use crate::support::{b64url_decode, TestKey};

        for key in [TestKey::Rsa2048, TestKey::Rsa3072] {
            let jwk = key.jwk();
            let modulus = b64url_decode(jwk["n"].as_str().unwrap());
            let exponent = b64url_decode(jwk["e"].as_str().unwrap());
            let public = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&modulus),
                rsa::BigUint::from_bytes_be(&exponent),
            )
            .unwrap();
            let reference = rsa::pkcs8::EncodePublicKey::to_public_key_der(&public).unwrap();
            assert_eq!(rsa_public_key(&modulus, &exponent), reference.as_bytes());
            assert_eq!(parse_key(&jwk).unwrap().spki_der, reference.as_bytes());
        }
        let PublicKey::P256(public) = parse_key(&TestKey::P256.jwk()).unwrap().public_key else {
            panic!("not P-256")
        };
        let point = public.to_encoded_point(false);
        assert_eq!(
            ec_public_key(Curve::P256, point.as_bytes()),
            public.to_public_key_der().unwrap().as_bytes()
        );
        let PublicKey::P384(public) = parse_key(&TestKey::P384.jwk()).unwrap().public_key else {
            panic!("not P-384")
        };
        let point = public.to_encoded_point(false);
        assert_eq!(
            ec_public_key(Curve::P384, point.as_bytes()),
            p384::pkcs8::EncodePublicKey::to_public_key_der(&public)
                .unwrap()
                .as_bytes()
        );
    }

    #[test]
    fn ecdsa_signatures_match_the_reference_implementation() {
        // Deterministic signatures (RFC 6979): vary the message to vary `r` and `s`, so some
        // need the zero byte that keeps a high top bit non-negative and some do not.
        for index in 0..32 {
            let message = format!("message {index}");
            let fixed = crate::support::TestKey::P256.sign("ES256", message.as_bytes());
            let reference = p256::ecdsa::Signature::from_slice(&fixed).unwrap().to_der();
            assert_eq!(ecdsa_signature(&fixed), reference.as_bytes());
        }
        let fixed = crate::support::TestKey::P384.sign("ES384", b"message");
        let reference = p384::ecdsa::Signature::from_slice(&fixed).unwrap().to_der();
        assert_eq!(ecdsa_signature(&fixed), reference.as_bytes());
    }
}
