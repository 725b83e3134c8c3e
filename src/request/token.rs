//! Finding the token in a request: the sources a provider's tokens may be carried in
//! (`Authorization: Bearer`, a query parameter, a cookie), and exactly one token among them.

use super::Request;

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
}
