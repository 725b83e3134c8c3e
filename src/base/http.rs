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

    #[test]
    fn a_header_is_found_in_any_case_and_the_first_one_counts() {
        let answer = headers(&[
            ("Cache-Control", "max-age=60"),
            ("cache-control", "no-store"),
        ]);
        assert_eq!(header_of(&answer, "cache-control"), Some("max-age=60"));
        assert_eq!(header_of(&answer, "CACHE-CONTROL"), Some("max-age=60"));
        assert_eq!(header_of(&answer, "etag"), None);
    }

    #[test]
    fn a_status_is_a_three_digit_number_or_none() {
        let status = |value: &str| status_of(&headers(&[(":status", value)]));
        assert_eq!(status("200"), Some(200));
        assert_eq!(status("503"), Some(503));
        assert_eq!(status("20x"), None);
        assert_eq!(status(" 200"), None);
        assert_eq!(status("70000"), None, "not a u16");
        assert_eq!(status_of(&headers(&[(":STATUS", "401")])), Some(401));
        assert_eq!(status_of(&[]), None, "a call that never completed");
    }
}
