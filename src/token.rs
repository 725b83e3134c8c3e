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

use crate::algorithm::Algorithm;
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
    /// The client's address as the proxy determined it, when the host told it (only read
    /// when a rule looks at it).
    pub source_address: Option<std::net::IpAddr>,
}

/// A request as the adapter keeps it while it waits (for keys, an address list, an
/// introspection answer): its headers and the client's address, owned.
#[derive(Debug, Clone)]
pub struct OwnedRequest {
    headers: Vec<(String, String)>,
    source_address: Option<std::net::IpAddr>,
}

impl OwnedRequest {
    pub fn new(
        headers: Vec<(String, String)>,
        source_address: Option<std::net::IpAddr>,
    ) -> OwnedRequest {
        OwnedRequest {
            headers,
            source_address,
        }
    }

    /// The request as the core reads it; a missing `:method` or `:path` reads as empty (and
    /// an empty path matches no rule but the default, which requires a token).
    pub fn view(&self) -> Request<'_> {
        let pseudo = |name: &str| {
            self.headers
                .iter()
                .find(|(header, _)| header == name)
                .map_or("", |(_, value)| value.as_str())
        };
        Request {
            method: pseudo(":method"),
            path: pseudo(":path"),
            headers: &self.headers,
            source_address: self.source_address,
        }
    }
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
        // Proxies join repeated headers with commas (Envoy hands two `Authorization`
        // headers over as `Bearer a,Bearer b`); a token never contains one, so each
        // comma-separated part is a credential of its own.
        TokenSource::Header { name, prefix } => request
            .header_values(name)
            .flat_map(|value| value.split(','))
            .map(|credential| credential.trim_start_matches([' ', '\t']))
            .filter_map(|credential| strip_prefix_ignore_case(credential, prefix))
            .map(|token| token.trim_matches([' ', '\t']))
            .collect(),
        TokenSource::Query { parameter } => request
            .query()
            .into_iter()
            .flat_map(|query| query.split('&'))
            .filter_map(|pair| query_token(pair, parameter))
            .collect(),
        TokenSource::Cookie { name } => request
            .header_values("cookie")
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| cookie_token(pair, name))
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

/// The token in one `name=value` pair of a query string, if the pair is the parameter.
/// Finding and stripping a token both use this, so they always agree on what the token is.
pub fn query_token<'a>(pair: &'a str, parameter: &str) -> Option<&'a str> {
    pair.split_once('=')
        .filter(|(name, _)| query_name_is(name, parameter))
        .map(|(_, value)| value)
}

/// The token in one `name=value` pair of a `Cookie` header, if the pair is the cookie.
pub fn cookie_token<'a>(pair: &'a str, cookie: &str) -> Option<&'a str> {
    pair.trim()
        .split_once('=')
        .filter(|(name, _)| *name == cookie)
        .map(|(_, value)| value.trim_matches('"'))
}

/// Compares a raw query-string name with an expected name, decoding `%XX` escapes.
fn query_name_is(raw: &str, expected: &str) -> bool {
    if !raw.contains('%') {
        return raw == expected;
    }
    let mut decoded = Vec::with_capacity(raw.len());
    let mut rest = raw.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let escaped = (byte == b'%')
            .then(|| tail.get(..2))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, tail.get(2..)) {
            (Some(value), Some(after)) => {
                decoded.push(value);
                rest = after;
            }
            _ => {
                decoded.push(byte);
                rest = tail;
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

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn sources() -> Vec<TokenSource> {
        vec![
            TokenSource::bearer_header(),
            TokenSource::Query {
                parameter: "access_token".to_owned(),
            },
            TokenSource::Cookie {
                name: "session".to_owned(),
            },
        ]
    }

    fn found(path: &str, pairs: &[(&str, &str)]) -> Result<Option<String>, ExtractError> {
        let headers = headers(pairs);
        let sources = sources();
        let request = Request {
            method: "GET",
            path,
            headers: &headers,
            source_address: None,
        };
        extract(&request, &sources).map(|found| found.map(|token| token.value.to_owned()))
    }

    #[test]
    fn tokens_are_found_in_each_kind_of_source() {
        assert_eq!(
            found("/", &[("authorization", "Bearer a.b.c")]),
            Ok(Some("a.b.c".to_owned()))
        );
        assert_eq!(
            found("/", &[("authorization", "bearer   a.b.c ")]),
            Ok(Some("a.b.c".to_owned()))
        );
        assert_eq!(
            found("/x?y=1&access_token=a.b.c", &[]),
            Ok(Some("a.b.c".to_owned()))
        );
        assert_eq!(
            found("/x?access%5Ftoken=a.b.c", &[]),
            Ok(Some("a.b.c".to_owned()))
        );
        assert_eq!(
            found("/", &[("cookie", "a=1; session=a.b.c")]),
            Ok(Some("a.b.c".to_owned()))
        );
        assert_eq!(found("/", &[("authorization", "Basic dXNlcg==")]), Ok(None));
        assert_eq!(found("/", &[("authorization", "Bearera.b.c")]), Ok(None));
        assert_eq!(
            found("/x?token=a.b.c", &[("cookie", "sessionx=a")]),
            Ok(None)
        );
    }

    #[test]
    fn more_than_one_token_is_an_error_even_when_equal() {
        let merged = [("authorization", "Bearer a.b.c,Bearer a.b.c")];
        assert_eq!(found("/", &merged), Err(ExtractError::MultipleTokens));
        let split = [
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer d.e.f"),
        ];
        assert_eq!(found("/", &split), Err(ExtractError::MultipleTokens));
        let both = [("authorization", "Bearer a.b.c")];
        assert_eq!(
            found("/?access_token=a.b.c", &both),
            Err(ExtractError::MultipleTokens)
        );
        assert_eq!(
            found("/?access_token=1&access_token=2", &[]),
            Err(ExtractError::MultipleTokens)
        );
        // A Basic credential next to a bearer token is not a second token.
        let mixed = [("authorization", "Basic dXNlcg==, Bearer a.b.c")];
        assert_eq!(found("/", &mixed), Ok(Some("a.b.c".to_owned())));
    }

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
