//! Which address is the client's: the one the proxy determined, or the entry in
//! `X-Forwarded-For` that the trusted proxies in front wrote.

use std::net::IpAddr;

use serde::Deserialize;

use super::Request;
use crate::base::FieldError;

/// Which address is the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAddress {
    /// The client address as the proxy determined it (Envoy: the `source.address` property,
    /// the downstream remote address: the connection's peer with the HTTP connection manager's
    /// `use_remote_address: true`, otherwise taken from `X-Forwarded-For` as its
    /// `xff_num_trusted_hops` says — with Envoy's defaults, from whatever the client sent).
    #[default]
    Proxy,
    /// Behind `trusted_hops` proxies that each append the address they saw to
    /// `X-Forwarded-For`: the entry that many from the right, which the nearest untrusted party
    /// could not have written.
    ForwardedFor { trusted_hops: u32 },
}

impl ClientAddress {
    /// The client's address, `None` when it cannot be known (the host gave none; fewer
    /// `X-Forwarded-For` entries than trusted hops; an entry that is not an address).
    pub fn of(self, request: &Request<'_>) -> Option<IpAddr> {
        match self {
            ClientAddress::Proxy => request.source_address,
            ClientAddress::ForwardedFor { trusted_hops } => {
                // Several headers read as one list, in order (RFC 9110 §5.3).
                let entries: Vec<&str> = request
                    .header_values("x-forwarded-for")
                    .flat_map(|value| value.split(','))
                    .map(str::trim)
                    .collect();
                let hops = usize::try_from(trusted_hops).ok()?;
                let index = entries.len().checked_sub(hops)?;
                parse_forwarded_address(entries.get(index)?)
            }
        }
    }
}

/// The host's description of the client's address (Envoy's `source.address`: `192.0.2.1:5000`,
/// `[2001:db8::1]:5000`) as an address; `None` for anything else (a Unix socket path).
pub fn parse_source_address(text: &str) -> Option<IpAddr> {
    text.parse::<std::net::SocketAddr>()
        .map(|socket| socket.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()
}

/// `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`, with an optional `:port` after IPv4 or `]`.
fn parse_forwarded_address(entry: &str) -> Option<IpAddr> {
    if let Ok(address) = entry.parse() {
        return Some(address);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (address, _port) = rest.split_once(']')?;
        return address.parse().ok();
    }
    let (address, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientAddress {
    from: String,
    trusted_hops: Option<u32>,
}

pub(crate) fn validate_client_address(
    field: &str,
    raw: RawClientAddress,
) -> Result<ClientAddress, FieldError> {
    match (raw.from.as_str(), raw.trusted_hops) {
        ("proxy", None) => Ok(ClientAddress::Proxy),
        ("proxy", Some(_)) => Err((
            format!("{field}.trusted_hops"),
            "only with `\"from\": \"x_forwarded_for\"`".to_owned(),
        )),
        ("x_forwarded_for", Some(hops)) if (1..=32).contains(&hops) => {
            Ok(ClientAddress::ForwardedFor { trusted_hops: hops })
        }
        ("x_forwarded_for", _) => Err((
            format!("{field}.trusted_hops"),
            "how many proxies in front append to X-Forwarded-For: 1 to 32".to_owned(),
        )),
        (other, _) => Err((
            format!("{field}.from"),
            format!("{other:?}: use \"proxy\" or \"x_forwarded_for\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn request<'a>(headers: &'a [(String, String)], source: Option<IpAddr>) -> Request<'a> {
        Request {
            method: "GET",
            path: "/",
            headers,
            source_address: source,
        }
    }

    #[test]
    fn the_proxy_names_the_client_with_or_without_a_port() {
        assert_eq!(
            parse_source_address("192.0.2.1:5000"),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(
            parse_source_address("[2001:db8::1]:5000"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(parse_source_address("192.0.2.1"), Some(ip("192.0.2.1")));
        assert_eq!(parse_source_address("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_source_address("/var/run/envoy.sock"), None);
        assert_eq!(parse_source_address(""), None);
    }

    #[test]
    fn the_client_is_the_entry_the_trusted_proxies_wrote() {
        let headers = vec![
            (
                "x-forwarded-for".to_owned(),
                "198.51.100.7, 203.0.113.1".to_owned(),
            ),
            ("x-forwarded-for".to_owned(), "192.0.2.10".to_owned()),
        ];
        let one = ClientAddress::ForwardedFor { trusted_hops: 1 };
        let two = ClientAddress::ForwardedFor { trusted_hops: 2 };
        let four = ClientAddress::ForwardedFor { trusted_hops: 4 };
        let peer = Some(ip("127.0.0.1"));
        assert_eq!(one.of(&request(&headers, peer)), Some(ip("192.0.2.10")));
        assert_eq!(two.of(&request(&headers, peer)), Some(ip("203.0.113.1")));
        assert_eq!(
            four.of(&request(&headers, peer)),
            None,
            "fewer entries than hops"
        );
        assert_eq!(ClientAddress::Proxy.of(&request(&headers, peer)), peer);
        let odd = vec![(
            "x-forwarded-for".to_owned(),
            "unknown, [2001:db8::1]:443, 192.0.2.1:80".to_owned(),
        )];
        assert_eq!(one.of(&request(&odd, None)), Some(ip("192.0.2.1")));
        assert_eq!(two.of(&request(&odd, None)), Some(ip("2001:db8::1")));
        let three = ClientAddress::ForwardedFor { trusted_hops: 3 };
        assert_eq!(three.of(&request(&odd, None)), None, "not an address");
        assert_eq!(one.of(&request(&[], None)), None);
    }

    #[test]
    fn bad_client_addresses_name_the_field() {
        let hops = |from: &str, hops: Option<u32>| {
            validate_client_address(
                "c",
                RawClientAddress {
                    from: from.to_owned(),
                    trusted_hops: hops,
                },
            )
            .map_err(|error| error.0)
        };
        assert_eq!(hops("proxy", None), Ok(ClientAddress::Proxy));
        assert_eq!(
            hops("x_forwarded_for", Some(2)),
            Ok(ClientAddress::ForwardedFor { trusted_hops: 2 })
        );
        assert_eq!(
            hops("x_forwarded_for", None),
            Err("c.trusted_hops".to_owned())
        );
        assert_eq!(
            hops("x_forwarded_for", Some(0)),
            Err("c.trusted_hops".to_owned())
        );
        assert_eq!(hops("proxy", Some(1)), Err("c.trusted_hops".to_owned()));
        assert_eq!(hops("header", None), Err("c.from".to_owned()));
    }
}
