//! What the upstream sees of an allowed request: identity headers from verified claims, the
//! token stripped where a provider says so, and never a client-supplied identity header.

use serde_json::Value;

use crate::config::{Config, Provider};
use crate::token::{FoundToken, Request, TokenSource};
use crate::verify::VerifiedToken;

/// Changes to make to the request before it goes upstream, in order: remove, then set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamEdits {
    /// Header names (lower case) to remove, every occurrence.
    pub remove_headers: Vec<String>,
    /// Headers to set, after the removals.
    pub set_headers: Vec<(String, String)>,
    /// A new `:path` (the token's query parameter removed).
    pub path: Option<String>,
}

impl UpstreamEdits {
    /// Removes every header claims could set, whatever the request's fate: a client must
    /// never be able to pass its own `x-jwt-sub` to the upstream, even on anonymous routes.
    pub fn removing_identity_headers(config: &Config) -> UpstreamEdits {
        UpstreamEdits {
            remove_headers: config.identity_headers.clone(),
            ..UpstreamEdits::default()
        }
    }

    /// Sets the provider's claim headers and payload header from a verified token.
    /// Claims that are absent, `null`, or would render with control characters are left out.
    pub fn add_identity(&mut self, provider: &Provider, token: &VerifiedToken<'_>) {
        for mapping in &provider.claims_to_headers {
            if let Some(value) = claim_at(&token.claims, &mapping.claim).and_then(header_value) {
                self.set_headers.push((mapping.header.clone(), value));
            }
        }
        if let Some(header) = &provider.payload_header {
            self.set_headers
                .push((header.clone(), token.encoded_payload.to_owned()));
        }
    }

    /// Removes the token from where it was found (`forward_token: false`).
    pub fn strip_token(&mut self, request: &Request<'_>, token: &FoundToken<'_>) {
        match token.source {
            TokenSource::Header { name, .. } => self.remove_headers.push(name.clone()),
            TokenSource::Query { parameter } => {
                self.path = Some(path_without_parameter(request, parameter));
            }
            TokenSource::Cookie { name } => {
                let remaining: Vec<&str> = request
                    .header_values("cookie")
                    .flat_map(|header| header.split(';'))
                    .map(str::trim)
                    .filter(|pair| {
                        !pair.is_empty()
                            && pair
                                .split_once('=')
                                .is_none_or(|(cookie, _)| cookie != name)
                    })
                    .collect();
                self.remove_headers.push("cookie".to_owned());
                if !remaining.is_empty() {
                    self.set_headers
                        .push(("cookie".to_owned(), remaining.join("; ")));
                }
            }
        }
    }
}

fn path_without_parameter(request: &Request<'_>, parameter: &str) -> String {
    let path = request.path_only();
    let kept: Vec<&str> = request
        .query()
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            !crate::token::query_name_is(name, parameter)
        })
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// The claim at `path`: each segment is a member name of the object before it.
pub fn claim_at<'claims>(
    claims: &'claims serde_json::Map<String, Value>,
    path: &[String],
) -> Option<&'claims Value> {
    let (first, rest) = path.split_first()?;
    let mut value = claims.get(first)?;
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

/// Renders a claim as a header value: strings as they are, numbers and booleans as JSON text,
/// arrays as their elements rendered the same way joined by `,`, objects as compact JSON.
/// `None` for `null` and for anything containing a control character other than tab (CR, LF
/// and NUL above all): such a value could split or truncate the header, so it is not forwarded.
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
    let safe = rendered.chars().all(|c| c == '\t' || !c.is_control());
    safe.then_some(rendered)
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
