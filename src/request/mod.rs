//! The request as authentication sees it, and what is read from it before any rule applies:
//! the token it carries ([`token`]) and the client's address ([`client_address`]).

pub mod client_address;
pub mod token;

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

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn a_parked_request_reads_as_it_came() {
        let pairs = [
            (":method", "POST"),
            (":path", "/orders?page=2"),
            ("authorization", "Bearer a.b.c"),
            ("Authorization", "Basic dXNlcg=="),
        ];
        let headers: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let client = "192.0.2.7".parse().ok();
        let parked = OwnedRequest::new(headers.clone(), client);
        let request = parked.view();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/orders?page=2");
        assert_eq!(request.query(), Some("page=2"));
        assert_eq!(request.headers, headers.as_slice());
        assert_eq!(request.source_address, client);
        let values: Vec<&str> = request.header_values("authorization").collect();
        assert_eq!(values, vec!["Bearer a.b.c", "Basic dXNlcg=="]);

        let bare = OwnedRequest::new(Vec::new(), None);
        let request = bare.view();
        assert_eq!((request.method, request.path), ("", ""));
        assert_eq!(request.query(), None);
    }
}
