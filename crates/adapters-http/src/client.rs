//! The client address of a request: the TCP peer, or, when the peer is a trusted proxy
//! (`TRUSTED_PROXIES`), the right-most `X-Forwarded-For` entry that is not trusted.
//!
//! Right-most, because each proxy appends the address it received the request from: entries
//! to the right were written by our own proxies and can be believed, entries to the left were
//! written by whoever connected and can be forged. When every entry is trusted the left-most
//! is the client (a request that came from inside); when the header is absent or any entry
//! cannot be parsed, the peer is the client (a garbled header is no better than a forged one).

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// The networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `TRUSTED_PROXIES` entry that is not a CIDR or an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a CIDR (10.0.0.0/8, fd00::/8) or an IP address")]
pub struct InvalidProxy(pub String);

impl TrustedProxies {
    /// Trusts these networks.
    #[must_use]
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self(nets.into_iter().map(|n| n.trunc()).collect())
    }

    /// Parses `TRUSTED_PROXIES`: comma-separated CIDRs or plain addresses (a single host);
    /// blanks are ignored.
    ///
    /// # Errors
    /// [`InvalidProxy`] naming the first entry that is neither.
    pub fn parse_list(list: &str) -> Result<Vec<IpNet>, InvalidProxy> {
        list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Self::parse_one).collect()
    }

    /// Parses one `TRUSTED_PROXIES` entry: a CIDR, or a bare address, which is a /32 (or /128):
    /// what an operator means by "this proxy".
    ///
    /// # Errors
    /// [`InvalidProxy`] when it is neither.
    pub fn parse_one(entry: &str) -> Result<IpNet, InvalidProxy> {
        let s = entry.trim();
        s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map_err(|_| InvalidProxy(s.to_owned()))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request from `peer` with these headers.
    #[must_use]
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let Some(chain) = forwarded_for(headers) else {
            return peer;
        };
        chain.iter().rev().copied().find(|ip| !self.trusts(*ip)).or_else(|| chain.first().copied()).unwrap_or(peer)
    }
}

/// Every `X-Forwarded-For` entry, left to right over all the header's lines; `None` when there
/// is none or any entry is not an address.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let value = value.to_str().ok()?;
        for entry in value.split(',') {
            chain.push(parse_entry(entry.trim())?);
        }
    }
    (!chain.is_empty()).then_some(chain)
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:5678`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = s.parse::<std::net::SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).and_then(|r| r.parse::<IpAddr>().ok()).map(canonical)
}

/// An IPv4 address carried in IPv6 (`::ffff:1.2.3.4`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(HeaderName::from_static("x-forwarded-for"), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let proxies = TrustedProxies::new(TrustedProxies::parse_list("10.0.0.0/8").unwrap());
        assert_eq!(proxies.client(ip("203.0.113.9"), &headers(&["1.1.1.1"])), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.1"), &headers(&["1.1.1.1"])), ip("10.0.0.1"));
    }

    #[test]
    fn a_trusted_peer_names_the_right_most_untrusted_entry() {
        let proxies = TrustedProxies::new(TrustedProxies::parse_list("10.0.0.0/8, 192.168.1.1").unwrap());
        let peer = ip("10.1.2.3");
        assert_eq!(proxies.client(peer, &headers(&["6.6.6.6, 198.51.100.7, 192.168.1.1"])), ip("198.51.100.7"));
        assert_eq!(proxies.client(peer, &headers(&["6.6.6.6", "198.51.100.7:4711, 10.9.9.9"])), ip("198.51.100.7"));
        assert_eq!(proxies.client(peer, &headers(&["10.0.0.5, 192.168.1.1"])), ip("10.0.0.5"), "all trusted");
        assert_eq!(proxies.client(peer, &headers(&[])), peer, "no header");
        assert_eq!(proxies.client(peer, &headers(&["6.6.6.6, garbage"])), peer, "unparsable");
        assert_eq!(proxies.client(peer, &headers(&["[2001:db8::1]:80"])), ip("2001:db8::1"));
        assert_eq!(proxies.client(ip("::ffff:10.0.0.1"), &headers(&["::ffff:8.8.8.8"])), ip("8.8.8.8"));
    }

    #[test]
    fn the_list_accepts_cidrs_and_addresses_and_names_a_bad_entry() {
        assert_eq!(TrustedProxies::parse_list("").unwrap(), vec![]);
        assert_eq!(TrustedProxies::parse_list(" 10.0.0.0/8 ,::1").unwrap().len(), 2);
        assert_eq!(TrustedProxies::parse_list("10.0.0.0/8,nope"), Err(InvalidProxy("nope".into())));
    }
}
