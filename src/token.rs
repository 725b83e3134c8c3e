//! Finding the token in a request, and strict compact-JWS parsing into an [`UntrustedToken`].
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

use crate::alg::Algorithm;
use crate::json::{self, StrictJsonError};

/// Where a token may be carried in a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// A request header (name in lower case) whose value starts with `prefix`, compared
    /// ASCII-case-insensitively because HTTP auth schemes are case-insensitive (RFC 9110 §11.1).
    Header { name: String, prefix: String },
    /// A query parameter, matched by its exact (percent-decoded) name.
    Query { parameter: String },
    /// A cookie, matched by its exact name.
    Cookie { name: String },
}

impl TokenSource {
    /// `Authorization: Bearer <token>`.
    pub fn bearer_header() -> TokenSource {
        TokenSource::Header {
            name: "authorization".to_owned(),
            prefix: "Bearer ".to_owned(),
        }
    }
}

/// The parts of a request authentication looks at. Header names are lower case, as proxies
/// hand them over; a header that occurs twice occurs twice here.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The `:path` pseudo-header: path and query string.
    pub path: &'a str,
    pub headers: &'a [(String, String)],
}

impl<'a> Request<'a> {
    /// Every value of the header `name` (lower case).
    pub fn header_values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The path without its query string, as path rules match it.
    pub fn path_only(&self) -> &'a str {
        self.path
            .split_once('?')
            .map_or(self.path, |(path, _query)| path)
    }

    /// The raw query string, if any.
    pub fn query(&self) -> Option<&'a str> {
        self.path.split_once('?').map(|(_path, query)| query)
    }
}

/// A token found in a request, with the source it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken<'a> {
    pub value: &'a str,
    pub source: &'a TokenSource,
}

/// Why the request's token could not be picked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractError {
    /// More than one token: RFC 6750 §2 allows one method per request, and two tokens leave it
    /// open which one the upstream acts on.
    MultipleTokens,
}

/// Finds the one token the request carries in any of `sources`.
///
/// `Ok(None)` means no source holds a token (a header with another auth scheme, such as
/// `Basic`, holds none).
pub fn extract<'a>(
    request: &Request<'a>,
    sources: &'a [TokenSource],
) -> Result<Option<FoundToken<'a>>, ExtractError> {
    let mut found: Option<FoundToken<'a>> = None;
    for source in sources {
        for value in occurrences(request, source) {
            if found.is_some() {
                return Err(ExtractError::MultipleTokens);
            }
            found = Some(FoundToken { value, source });
        }
    }
    Ok(found)
}

/// Every token the request carries in `source`.
fn occurrences<'a>(request: &Request<'a>, source: &'a TokenSource) -> Vec<&'a str> {
    match source {
        TokenSource::Header { name, prefix } => request
            .header_values(name)
            .filter_map(|value| strip_prefix_ignore_case(value, prefix))
            .map(|token| token.trim_matches([' ', '\t']))
            .collect(),
        TokenSource::Query { parameter } => request
            .query()
            .into_iter()
            .flat_map(|query| query.split('&'))
            .filter_map(|pair| pair.split_once('='))
            .filter(|(name, _)| query_name_is(name, parameter))
            .map(|(_, value)| value)
            .collect(),
        TokenSource::Cookie { name } => request
            .header_values("cookie")
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(cookie, _)| cookie == name)
            .map(|(_, value)| value.trim_matches('"'))
            .collect(),
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        value.get(prefix.len()..)
    } else {
        None
    }
}

/// Compares a raw query-string name with an expected name, decoding `%XX` escapes.
pub fn query_name_is(raw: &str, expected: &str) -> bool {
    if !raw.contains('%') {
        return raw == expected;
    }
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while let Some(&byte) = bytes.get(position) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(position + 1..position + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(value) => {
                decoded.push(value);
                position += 3;
            }
            None => {
                decoded.push(byte);
                position += 1;
            }
        }
    }
    decoded == expected.as_bytes()
}

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
    pub signing_input: &'a str,
    /// The payload segment as it came (base64url), for `payload_header`.
    pub encoded_payload: &'a str,
    pub header: JoseHeader,
    pub claims: Map<String, Value>,
    pub signature: Vec<u8>,
}

/// Parses a compact JWS, strictly (see the module docs).
pub fn parse(token: &str, max_token_bytes: usize) -> Result<UntrustedToken<'_>, MalformedToken> {
    if token.len() > max_token_bytes {
        return Err(MalformedToken::TooLarge);
    }
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(MalformedToken::SegmentCount);
    };
    let signing_input = token
        .get(..header.len() + 1 + payload.len())
        .ok_or(MalformedToken::SegmentCount)?;
    let header_object = json_segment(header)?;
    let claims = json_segment(payload)?;
    let signature = decode_segment(signature)?;
    Ok(UntrustedToken {
        signing_input,
        encoded_payload: payload,
        header: jose_header(&header_object)?,
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
