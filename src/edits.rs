//! What the upstream sees of an allowed request: identity headers from verified claims, the
//! token stripped where a provider says so, and never a client-supplied identity header.

use std::sync::Arc;

use serde_json::Value;

use crate::base::claims::claim_at;
use crate::config::{Config, Provider};
use crate::request::token::{cookie_token, query_token, FoundToken, TokenSource};
use crate::request::Request;
use crate::verify::VerifiedToken;

/// Changes to make to the request before it goes upstream, in order: remove, then set.
///
/// Names and values are shared (`Arc<str>`) with the configuration and the token cache, so an
/// allowed request copies no text it did not make itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestEdits {
    /// Header names (lower case) to remove, every occurrence.
    pub remove_headers: Vec<Arc<str>>,
    /// Headers to set, after the removals.
    pub set_headers: Vec<(Arc<str>, Arc<str>)>,
    /// A new `:path` (the token's query parameter removed).
    pub path: Option<String>,
}

impl RequestEdits {
    /// Removes every header claims could set, whatever the request's fate: a client must
    /// never be able to pass its own `x-jwt-sub` to the upstream, even on anonymous routes.
    pub fn removing_identity_headers(config: &Config) -> RequestEdits {
        RequestEdits {
            remove_headers: config.identity_headers().to_vec(),
            ..RequestEdits::default()
        }
    }

    /// Removes the token from where it was found (`forward_token: false`).
    pub fn strip_token(&mut self, request: &Request<'_>, token: &FoundToken<'_>) {
        match token.source {
            TokenSource::Header { name, .. } => self.remove_headers.push(Arc::from(name.as_str())),
            TokenSource::Query { parameter } => {
                self.path = Some(path_without_parameter(request, parameter));
            }
            TokenSource::Cookie { name } => {
                let remaining: Vec<&str> = request
                    .header_values("cookie")
                    .flat_map(|header| header.split(';'))
                    .map(str::trim)
                    .filter(|pair| !pair.is_empty() && cookie_token(pair, name).is_none())
                    .collect();
                self.remove_headers.push(Arc::from("cookie"));
                if !remaining.is_empty() {
                    self.set_headers
                        .push((Arc::from("cookie"), Arc::from(remaining.join("; "))));
                }
            }
        }
    }
}

/// The provider's claim headers and payload header for a verified token. Claims that are
/// absent, `null`, or would render with control characters are left out.
pub fn identity_headers(
    provider: &Provider,
    token: &VerifiedToken<'_>,
) -> Vec<(Arc<str>, Arc<str>)> {
    let mut headers = claim_headers(provider, token.claims());
    if let Some(header) = &provider.payload_header {
        headers.push((Arc::clone(header), Arc::from(token.encoded_payload())));
    }
    headers
}

/// The provider's `claims_to_headers` of `claims` (a verified token's, or an active
/// introspection answer's).
pub fn claim_headers(
    provider: &Provider,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Vec<(Arc<str>, Arc<str>)> {
    let mut headers = Vec::new();
    for mapping in &provider.claims_to_headers {
        if let Some(value) = claim_at(claims, &mapping.claim).and_then(header_value) {
            headers.push((Arc::clone(&mapping.header), Arc::from(value)));
        }
    }
    headers
}

fn path_without_parameter(request: &Request<'_>, parameter: &str) -> String {
    let path = request.path_only();
    let kept: Vec<&str> = request
        .query()
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter(|pair| query_token(pair, parameter).is_none())
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// Renders a claim as a header value: strings as they are, numbers and booleans as JSON text,
/// arrays as their elements rendered the same way joined by `,`, objects as compact JSON.
/// `None` for `null`, for anything containing a control character other than tab (CR, LF
/// and NUL above all: such a value could split or truncate the header), and for anything longer
/// than [`MAX_CLAIM_HEADER_BYTES`]: such values are not forwarded.
pub fn header_value(value: &Value) -> Option<String> {
    let rendered = match value {
        Value::Null => return None,
        Value::Array(items) => items
            .iter()
            .filter(|item| !item.is_null())
            .map(scalar_text)
            .collect::<Vec<_>>()
            .join(","),
        other => scalar_text(other),
    };
    is_safe_text(&rendered).then_some(rendered)
}

/// Whether claim text may leave the filter as a header value or a log field: at most
/// [`MAX_CLAIM_HEADER_BYTES`], and no control character but tab (CR and LF would start a new
/// header or a new access-log line).
pub fn is_safe_text(text: &str) -> bool {
    text.len() <= MAX_CLAIM_HEADER_BYTES && text.chars().all(|c| c == '\t' || !c.is_control())
}

/// The longest claim header forwarded: proxies and servers commonly refuse request headers
/// past 8 KiB, and a claim that large is not an identity attribute.
pub const MAX_CLAIM_HEADER_BYTES: usize = 8 * 1024;

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    #[test]
    fn claims_render_as_documented() {
        assert_eq!(header_value(&json!("alice")), Some("alice".to_owned()));
        assert_eq!(header_value(&json!(42)), Some("42".to_owned()));
        assert_eq!(header_value(&json!(1.5)), Some("1.5".to_owned()));
        assert_eq!(header_value(&json!(true)), Some("true".to_owned()));
        assert_eq!(
            header_value(&json!(["a", 1, false, null])),
            Some("a,1,false".to_owned())
        );
        assert_eq!(
            header_value(&json!([{"a": 1}])),
            Some(r#"{"a":1}"#.to_owned())
        );
        assert_eq!(
            header_value(&json!({"b": [1, 2]})),
            Some(r#"{"b":[1,2]}"#.to_owned())
        );
        assert_eq!(header_value(&json!(null)), None);
    }

    #[test]
    fn values_that_could_split_a_header_are_never_forwarded() {
        for bad in ["a\r\nx-admin: 1", "a\nb", "a\rb", "a\0b", "a\u{7f}"] {
            assert_eq!(header_value(&json!(bad)), None, "{bad:?}");
            assert_eq!(header_value(&json!([bad])), None, "{bad:?}");
        }
        assert_eq!(header_value(&json!("a\tb")), Some("a\tb".to_owned()));
        let longest = "x".repeat(MAX_CLAIM_HEADER_BYTES);
        assert_eq!(header_value(&json!(longest)), Some(longest.clone()));
        assert_eq!(header_value(&json!(format!("{longest}x"))), None);
    }

    #[test]
    fn claim_paths_walk_objects_and_allow_dots_in_names() {
        let claims =
            json!({"realm_access": {"roles": ["r"]}, "https://example.com/tenant": "t1", "a": "s"});
        let claims = claims.as_object().unwrap();
        let path = |segments: &[&str]| segments.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            claim_at(claims, &path(&["realm_access", "roles"])),
            Some(&json!(["r"]))
        );
        assert_eq!(
            claim_at(claims, &path(&["https://example.com/tenant"])),
            Some(&json!("t1"))
        );
        assert_eq!(claim_at(claims, &path(&["a", "b"])), None);
        assert_eq!(claim_at(claims, &path(&["missing"])), None);
        assert_eq!(claim_at(claims, &[]), None);
    }

    #[test]
    fn stripping_a_query_token_keeps_the_other_parameters() {
        let headers = Vec::new();
        let request = Request {
            method: "GET",
            path: "/a?x=1&access_token=t&y=2",
            headers: &headers,
            source_address: None,
        };
        assert_eq!(
            path_without_parameter(&request, "access_token"),
            "/a?x=1&y=2"
        );
        let request = Request {
            method: "GET",
            path: "/a?access_token=t",
            headers: &headers,
            source_address: None,
        };
        assert_eq!(path_without_parameter(&request, "access_token"), "/a");
    }
}
