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
