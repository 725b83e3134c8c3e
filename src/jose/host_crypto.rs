//! The wire format of the host's signature verification, and the self-test that decides
//! whether to trust it.
//!
//! Envoy exposes BoringSSL to Wasm modules as the foreign function `verify_signature`. Its
//! argument is the protobuf message
//! `VerifySignatureArguments { string hash_function = 1; bytes public_key = 2 (DER
//! SubjectPublicKeyInfo); bytes signature = 3; bytes text = 4; }` and its answer
//! `VerifySignatureResult { bool result = 1; string error = 2; }`. The host hashes `text` and
//! verifies with `EVP_DigestVerify`, i.e. RSASSA-PKCS1-v1_5 for RSA keys and DER-encoded ECDSA
//! for EC keys — so `RS*` and `ES*` only; `PS*` (which needs PSS padding parameters) and EdDSA
//! (which takes no separate hash) stay portable.
//!
//! Only the encoding lives here, host-free and tested; the adapter makes the call. The
//! protobuf subset is written by hand: four length-delimited fields out, two fields in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::jose::algorithm::Algorithm;
use crate::jose::der;

/// The name of Envoy's foreign function.
pub const FUNCTION_NAME: &str = "verify_signature";

/// The hash function name the host expects for `algorithm`, or `None` if the host cannot
/// verify that algorithm.
pub fn hash_function(algorithm: Algorithm) -> Option<&'static str> {
    match algorithm {
        Algorithm::Rs256 | Algorithm::Es256 => Some("sha256"),
        Algorithm::Rs384 | Algorithm::Es384 => Some("sha384"),
        Algorithm::Rs512 => Some("sha512"),
        Algorithm::Ps256 | Algorithm::Ps384 | Algorithm::Ps512 | Algorithm::EdDsa => None,
    }
}

/// Encodes `VerifySignatureArguments`.
pub fn encode_arguments(
    hash_function: &str,
    public_key_der: &[u8],
    signature: &[u8],
    text: &[u8],
) -> Vec<u8> {
    let fields: [(u8, &[u8]); 4] = [
        (1, hash_function.as_bytes()),
        (2, public_key_der),
        (3, signature),
        (4, text),
    ];
    let capacity = fields.iter().fold(0_usize, |sum, (_, value)| {
        sum.saturating_add(value.len()).saturating_add(11)
    });
    let mut encoded = Vec::with_capacity(capacity);
    for (number, value) in fields {
        // Wire type 2 (length-delimited): tag = number << 3 | 2. Numbers 1–4 fit one byte.
        encoded.push(number.wrapping_shl(3) | 2);
        push_varint(&mut encoded, u64::try_from(value.len()).unwrap_or(u64::MAX));
        encoded.extend_from_slice(value);
    }
    encoded
}

/// Why the host's answer could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedAnswer {
    /// A varint or a length runs past the end, or a wire type this message cannot have.
    Truncated,
}

/// Decodes `VerifySignatureResult` into its `result`. An absent `result` is `false`
/// (proto3 leaves default values out); unknown fields are skipped.
pub fn decode_result(mut answer: &[u8]) -> Result<bool, MalformedAnswer> {
    let mut verified = false;
    while !answer.is_empty() {
        let tag = read_varint(&mut answer)?;
        let field = tag.checked_shr(3).unwrap_or(0);
        match tag & 0x7 {
            // Varint.
            0 => {
                let value = read_varint(&mut answer)?;
                if field == 1 {
                    verified = value != 0;
                }
            }
            // Length-delimited.
            2 => {
                let length = usize::try_from(read_varint(&mut answer)?)
                    .map_err(|_| MalformedAnswer::Truncated)?;
                answer = answer.get(length..).ok_or(MalformedAnswer::Truncated)?;
            }
            // Fixed 64 and fixed 32 bits.
            1 => answer = answer.get(8..).ok_or(MalformedAnswer::Truncated)?,
            5 => answer = answer.get(4..).ok_or(MalformedAnswer::Truncated)?,
            _ => return Err(MalformedAnswer::Truncated),
        }
    }
    Ok(verified)
}

fn push_varint(encoded: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        encoded.push(u8::try_from(value & 0x7f).unwrap_or(0) | 0x80);
        value = value.wrapping_shr(7);
    }
    encoded.push(u8::try_from(value).unwrap_or(0));
}

fn read_varint(input: &mut &[u8]) -> Result<u64, MalformedAnswer> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first().ok_or(MalformedAnswer::Truncated)?;
        *input = rest;
        value |= u64::from(byte & 0x7f).wrapping_shl(shift);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(MalformedAnswer::Truncated)
}

/// One known answer for the host's self-test: a key, a message and a good signature in JWS
/// form (made with OpenSSL for this purpose; no other use).
struct KnownAnswer {
    algorithm: Algorithm,
    public_key_der: fn() -> Option<Vec<u8>>,
    signature: &'static str,
}

const SELF_TEST_MESSAGE: &[u8] = b"wasm-jwt-authn host crypto self-test";

const SELF_TEST_RSA_MODULUS: &str = "va5R5vXirnTZv6QCueh4ixGnXEXl5RtEYRx5MGq-VlU_5CPh2GYYwME4dfM-39sXuIiKH_wnw50n7JPNWZC_9ivLPO_-dVZ5mKyT2NRnl8lDuOoheW-tkzXcYTj21jpGzdLfJL0ZVxIcyw75swIvOegkE1RDqMZ3dwSyF6GXIQ2N6pGMi40W1qeSieibc0UGJFTD1noZwXW_TjT3qT7v2qMpN0SAbB0OjJRJLI4YafYS7-3y7hx1o5YgsoJf_ENetpIQcFWWVX9jPsmEB-qq_RgpreqQ4Zjf6eB_p1PwhbyxKbdH2Jvm3JuDCvXL5NPXNoH6zDJCLR2iamGpTvsqXQ";
const SELF_TEST_EC_POINT: &str =
    "BMad6RkDOQNwCSXmK-aCp90Zl-7YB7801aWmYKDhn2egqm2YG2RpabAWCm6lVBL2yptUgG6KNNaI6Tpz6bqhWO8";

const KNOWN_ANSWERS: [KnownAnswer; 2] = [
    KnownAnswer {
        algorithm: Algorithm::Rs256,
        public_key_der: || {
            let modulus = URL_SAFE_NO_PAD.decode(SELF_TEST_RSA_MODULUS).ok()?;
            Some(der::rsa_public_key(&modulus, &[0x01, 0x00, 0x01]))
        },
        signature: "C4T79Azvg2YFZu9ehZgmqDu2Kg4N-kSaP6ky0kEg8H5SudQ00q5AsaePwgjXsZUzztxBfnTuXzcsaH9bhAWv6Qd8bH89v6ZPgjHHGqgzvEzaBwOaxI5LNR5Efb5oF0onId-IP2YRCzhonV2VC85WjIpdyO9rcZ2PXwwXdL1eOLxOxi6zlS1gN50M_sgFB3aq9eBnOKOsTCG2pCb76p3n58ukb6v_L43styA__Y7Us5HZTPJ9g6mPncmQM38Vfqruoy_wKdJXyyrgdB21g3Gnd7TunihpwGtqstzTmnMxn53D0XDzoGap-OZVaHaNqtoiqZhYXE0LM2oNH8ntIl_X2A",
    },
    KnownAnswer {
        algorithm: Algorithm::Es256,
        public_key_der: || {
            let point = URL_SAFE_NO_PAD.decode(SELF_TEST_EC_POINT).ok()?;
            Some(der::ec_public_key(der::Curve::P256, &point))
        },
        signature: "J1md3ugBV4c-LXdg3q5MbZi0NyT6b7hAZarybJkU65MWzfjI-0j8OHNhQkfl8IWUBtIxX05MxXjDWf4jmOAFLQ",
    },
];

/// One call the self-test makes, and the answer a working host gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTestCase {
    pub algorithm: Algorithm,
    /// The encoded `VerifySignatureArguments`.
    pub arguments: Vec<u8>,
    pub expected: bool,
}

/// The calls that tell a host whose `verify_signature` can be trusted from one that is absent
/// or wrong: for each mechanism the filter hands over (RSA PKCS#1 v1.5, ECDSA), a good
/// signature that must verify and the same with one bit flipped that must not.
pub fn self_test_cases() -> Vec<SelfTestCase> {
    let mut cases = Vec::with_capacity(KNOWN_ANSWERS.len().saturating_mul(2));
    for known in &KNOWN_ANSWERS {
        let (Some(hash), Some(key), Ok(signature)) = (
            hash_function(known.algorithm),
            (known.public_key_der)(),
            URL_SAFE_NO_PAD.decode(known.signature),
        ) else {
            continue;
        };
        let wire_signature = host_signature(known.algorithm, &signature);
        let mut tampered = signature.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 0x01;
        }
        let wire_tampered = host_signature(known.algorithm, &tampered);
        for (wire, expected) in [(wire_signature, true), (wire_tampered, false)] {
            cases.push(SelfTestCase {
                algorithm: known.algorithm,
                arguments: encode_arguments(hash, &key, &wire, SELF_TEST_MESSAGE),
                expected,
            });
        }
    }
    cases
}

/// The signature as the host wants it: RSA as is, ECDSA in DER rather than JWS's `r || s`.
pub fn host_signature(algorithm: Algorithm, jws_signature: &[u8]) -> Vec<u8> {
    match algorithm {
        Algorithm::Es256 | Algorithm::Es384 => der::ecdsa_signature(jws_signature),
        _ => jws_signature.to_vec(),
    }
}

#[cfg(test)]
mod tests {

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn arguments_are_four_length_delimited_fields() {
        let encoded = encode_arguments("sha256", &[0xaa; 200], b"sig", b"text");
        let mut expected = vec![0x0a, 6];
        expected.extend_from_slice(b"sha256");
        // 200 = 0b1_1001000: varint 0xc8 0x01.
        expected.extend_from_slice(&[0x12, 0xc8, 0x01]);
        expected.extend_from_slice(&[0xaa; 200]);
        expected.extend_from_slice(&[0x1a, 3]);
        expected.extend_from_slice(b"sig");
        expected.extend_from_slice(&[0x22, 4]);
        expected.extend_from_slice(b"text");
        assert_eq!(encoded, expected);
    }

    #[test]
    fn results_decode_with_defaults_and_unknown_fields() {
        assert_eq!(decode_result(&[]), Ok(false));
        assert_eq!(decode_result(&[0x08, 0x01]), Ok(true));
        assert_eq!(decode_result(&[0x08, 0x00]), Ok(false));
        // `error = "bad"` only: not verified.
        assert_eq!(decode_result(&[0x12, 3, b'b', b'a', b'd']), Ok(false));
        // Unknown fixed32 field 3, then result.
        assert_eq!(decode_result(&[0x1d, 1, 2, 3, 4, 0x08, 0x01]), Ok(true));
        assert_eq!(decode_result(&[0x08]), Err(MalformedAnswer::Truncated));
        assert_eq!(
            decode_result(&[0x12, 5, b'x']),
            Err(MalformedAnswer::Truncated)
        );
        assert_eq!(decode_result(&[0x0b]), Err(MalformedAnswer::Truncated));
        assert_eq!(decode_result(&[0xff; 11]), Err(MalformedAnswer::Truncated));
    }

    #[test]
    fn only_pkcs1_and_ecdsa_go_to_the_host() {
        let hosted: Vec<Algorithm> = Algorithm::ALL
            .into_iter()
            .filter(|algorithm| hash_function(*algorithm).is_some())
            .collect();
        assert_eq!(
            hosted,
            [
                Algorithm::Rs256,
                Algorithm::Rs384,
                Algorithm::Rs512,
                Algorithm::Es256,
                Algorithm::Es384
            ]
        );
    }

    /// The self-test's known answers are right: the portable path agrees with them.
    #[test]
    fn self_test_vectors_verify_portably() {
        use crate::jose::jwks::parse_key;
        use crate::jose::signature::{verify_signature, Portable};
        use serde_json::json;

        let rsa =
            parse_key(&json!({"kty": "RSA", "n": SELF_TEST_RSA_MODULUS, "e": "AQAB"})).unwrap();
        let point = URL_SAFE_NO_PAD.decode(SELF_TEST_EC_POINT).unwrap();
        let ec = parse_key(&json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }))
        .unwrap();
        for (known, key) in KNOWN_ANSWERS.iter().zip([&rsa, &ec]) {
            let signature = URL_SAFE_NO_PAD.decode(known.signature).unwrap();
            assert_eq!(
                verify_signature(
                    &Portable,
                    known.algorithm,
                    key,
                    SELF_TEST_MESSAGE,
                    &signature
                ),
                Ok(()),
                "{}",
                known.algorithm
            );
            assert_eq!((known.public_key_der)().unwrap(), key.spki_der);
        }
        let cases = self_test_cases();
        assert_eq!(cases.len(), 4);
        assert_eq!(
            cases.iter().map(|case| case.expected).collect::<Vec<_>>(),
            [true, false, true, false]
        );
    }
}
