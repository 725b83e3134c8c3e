//! Strict compact-JWS parsing into an [`UntrustedToken`].
//!
//! Nothing here trusts the token: an [`UntrustedToken`] only says the bytes have the shape of a
//! signed JWT. [`crate::verify`] is the only way to turn it into a
//! [`crate::verify::VerifiedToken`].
//!
//! Parsing is deliberately stricter than RFC 7515 requires, because every leniency is a way for
//! two parsers to disagree about what a token says:
//! - exactly three segments, each canonical base64url: no padding, no characters outside the
//!   alphabet, no length that leaves a stray character, no non-zero unused bits (so a token has
//!   exactly one spelling and a signature cannot be "extended" by a character);
//! - header and payload are UTF-8 JSON objects with no member name twice;
//! - `crit` is rejected outright (we implement no extensions, RFC 7515 §4.1.11), and so is `b64`
//!   (RFC 7797 unencoded payloads change what is signed);
//! - `alg` must be a string naming an algorithm we implement, case-sensitively.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::jose::algorithm::Algorithm;
use crate::jose::json::{self, StrictJsonError};

/// Why a token is not a well-formed signed JWT. Each is its own deny reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedToken {
    /// Longer than `max_token_bytes`.
    TooLarge,
    /// Not exactly three dot-separated segments.
    SegmentCount,
    /// A segment is not canonical unpadded base64url.
    NonCanonicalBase64,
    /// Header or payload is not a UTF-8 JSON object.
    NotJsonObject,
    /// Header or payload names a member twice.
    DuplicateMember,
    /// The header has `crit`: no extension is understood here.
    CriticalHeader,
    /// The header has `b64` (RFC 7797 unencoded payload).
    UnencodedPayload,
    /// `alg` missing or not a string, or `kid`/`typ` not strings.
    BadHeaderMember,
    /// `alg` names no algorithm this filter verifies (`none`, `HS256`, `rs256`, …).
    UnsupportedAlgorithm,
}

/// The protected header members verification uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub algorithm: Algorithm,
    pub key_id: Option<String>,
    pub token_type: Option<String>,
}

/// A token with the shape of a signed JWT whose signature and claims are not yet checked.
#[derive(Debug, Clone)]
pub struct UntrustedToken<'a> {
    /// `header.payload`: the bytes the signature covers.
    signing_input: &'a str,
    /// The payload segment as it came (base64url), for `payload_header`.
    encoded_payload: &'a str,
    header: JoseHeader,
    claims: Map<String, Value>,
    signature: Vec<u8>,
}

impl<'a> UntrustedToken<'a> {
    /// `header.payload`: the bytes the signature covers.
    pub fn signing_input(&self) -> &'a str {
        self.signing_input
    }

    /// The payload segment as it came (base64url).
    pub fn encoded_payload(&self) -> &'a str {
        self.encoded_payload
    }

    pub fn header(&self) -> &JoseHeader {
        &self.header
    }

    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The claims, for the verification that consumes the token.
    pub fn into_claims(self) -> Map<String, Value> {
        self.claims
    }
}

/// Has the shape of a JWS compact serialization: three dot-separated segments, the first a
/// JSON object (the JOSE header). Such a token is parsed as a JWT, never taken for an opaque
/// token; other tokens with dots (RFC 6750's own example, `mF_9.B5f-4.1JqM`) may be opaque.
pub fn has_jws_shape(token: &str) -> bool {
    if token.bytes().filter(|byte| *byte == b'.').count() != 2 {
        return false;
    }
    let header = token.split('.').next().unwrap_or_default();
    // Leniently decoded: a JWT with a damaged header is still a JWT, refused as malformed.
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .unwrap_or_default();
    decoded
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{')
}

/// RFC 6750 §2.1 `b64token`: what a bearer token may be, e.g. an opaque access token.
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte))
}

/// Parses a compact JWS, strictly (see the module docs).
pub fn parse(token: &str, max_token_bytes: usize) -> Result<UntrustedToken<'_>, MalformedToken> {
    if token.len() > max_token_bytes {
        return Err(MalformedToken::TooLarge);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(MalformedToken::SegmentCount)?;
    let (header, payload) = signing_input
        .split_once('.')
        .filter(|(_, payload)| !payload.contains('.'))
        .ok_or(MalformedToken::SegmentCount)?;
    // The header first: an unusable `alg` or `crit` is the more useful reason to report.
    let header = jose_header(&json_segment(header)?)?;
    let claims = json_segment(payload)?;
    let signature = decode_segment(signature)?;
    Ok(UntrustedToken {
        signing_input,
        encoded_payload: payload,
        header,
        claims,
        signature,
    })
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, MalformedToken> {
    // The engine rejects padding, characters outside the URL-safe alphabet, a length of
    // 1 mod 4, and non-zero trailing bits: exactly the canonical encoding is accepted.
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| MalformedToken::NonCanonicalBase64)
}

fn json_segment(segment: &str) -> Result<Map<String, Value>, MalformedToken> {
    json::parse_object(&decode_segment(segment)?).map_err(|error| match error {
        StrictJsonError::NotAnObject => MalformedToken::NotJsonObject,
        StrictJsonError::DuplicateMember => MalformedToken::DuplicateMember,
    })
}

fn jose_header(header: &Map<String, Value>) -> Result<JoseHeader, MalformedToken> {
    if header.contains_key("crit") {
        return Err(MalformedToken::CriticalHeader);
    }
    if header.contains_key("b64") {
        return Err(MalformedToken::UnencodedPayload);
    }
    let algorithm = match header.get("alg") {
        Some(Value::String(name)) => {
            Algorithm::from_name(name).ok_or(MalformedToken::UnsupportedAlgorithm)?
        }
        _ => return Err(MalformedToken::BadHeaderMember),
    };
    Ok(JoseHeader {
        algorithm,
        key_id: optional_string(header, "kid")?,
        token_type: optional_string(header, "typ")?,
    })
}

fn optional_string(
    object: &Map<String, Value>,
    member: &str,
) -> Result<Option<String>, MalformedToken> {
    match object.get(member) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(MalformedToken::BadHeaderMember),
    }
}

#[cfg(test)]
mod tests {

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn parse_reads_the_header_members_verification_uses() {
        let header = URL_SAFE_NO_PAD
            .encode(br#"{"alg":"EdDSA","kid":"k1","typ":"at+jwt","jku":"https://evil"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"i"}"#);
        let token = format!("{header}.{payload}.AAAA");
        let parsed = parse(&token, 1024).unwrap();
        assert_eq!(parsed.header.algorithm, Algorithm::EdDsa);
        assert_eq!(parsed.header.key_id.as_deref(), Some("k1"));
        assert_eq!(parsed.header.token_type.as_deref(), Some("at+jwt"));
        assert_eq!(parsed.signing_input, format!("{header}.{payload}"));
        assert_eq!(parsed.signature, vec![0, 0, 0]);
        assert_eq!(
            parse(&token, token.len() - 1).unwrap_err(),
            MalformedToken::TooLarge
        );
    }

    #[test]
    fn empty_segments_and_whitespace_are_malformed() {
        assert_eq!(parse("", 100).unwrap_err(), MalformedToken::SegmentCount);
        assert_eq!(parse("..", 100).unwrap_err(), MalformedToken::NotJsonObject);
        assert_eq!(
            parse("eyJhbGciOiJFUzI1NiJ9.e30 .", 100).unwrap_err(),
            MalformedToken::NonCanonicalBase64
        );
        assert_eq!(
            parse("e30.e30.", 100).unwrap_err(),
            MalformedToken::BadHeaderMember
        );
    }
}
