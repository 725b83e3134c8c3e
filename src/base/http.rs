//! HTTP vocabulary every layer shares: where a remote document or endpoint lives.

/// An `http(s)://authority/path` URI, split the way a proxy dispatches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUri {
    pub secure: bool,
    /// `host[:port]`, sent as `:authority`.
    pub authority: String,
    /// Path and query, sent as `:path`.
    pub path: String,
}

impl HttpUri {
    /// Parses an absolute `http` or `https` URI without user info or fragment.
    pub fn parse(uri: &str) -> Option<HttpUri> {
        let (secure, rest) = if let Some(rest) = uri.strip_prefix("https://") {
            (true, rest)
        } else {
            (false, uri.strip_prefix("http://")?)
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(position) => (rest.get(..position)?, rest.get(position..)?),
            None => (rest, "/"),
        };
        let valid_authority = !authority.is_empty()
            && authority
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c));
        let valid_path = path.starts_with('/')
            && !path.contains('#')
            && path.chars().all(|c| c.is_ascii_graphic());
        (valid_authority && valid_path).then(|| HttpUri {
            secure,
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    pub fn scheme(&self) -> &'static str {
        if self.secure {
            "https"
        } else {
            "http"
        }
    }
}

/// The first value of the header `name` (any case) in a header map.
pub fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// The `:status` of a response's headers; `None` when missing or not a number (a call the
/// proxy could not complete may answer without one).
pub fn status_of(headers: &[(String, String)]) -> Option<u16> {
    header_of(headers, ":status").and_then(|status| status.parse().ok())
}
