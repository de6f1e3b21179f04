//! The client's address, as the rate limit and the request log see it.
//!
//! It is the TCP peer's address, unless that peer is a trusted proxy (`--trusted-proxies`): then
//! it is the right-most address of `X-Forwarded-For` that is not itself a trusted proxy. Each
//! proxy appends the address it got the request from, so the entries right of the first untrusted
//! one were written by proxies we trust, and everything left of it may have been written by the
//! client: taking the left-most entry would let any client pick its own rate-limit bucket. From a
//! peer that is not trusted the header is ignored, whatever it says.

use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The networks whose `X-Forwarded-For` is believed. Empty (the default): nobody's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// A comma-separated list of CIDR blocks (`10.0.0.0/8`, `fd00::/8`) or single addresses.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an IP address or a CIDR block"))?;
            nets.push(net.trunc());
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, given the `X-Forwarded-For` headers of its request in order.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        // Several headers are one list, in order (RFC 9110, 5.3).
        let hops = forwarded
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
        for hop in hops {
            // An entry that is not an address ends the chain: what is left of it cannot be
            // traced to a proxy we trust, so the last hop that vouched for the request stands.
            let Some(ip) = parse_hop(hop.trim()) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, with a port as some proxies write it.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

impl TrustedProxies {
    /// The client of a request that came over a socket (`None` for one that did not, as in
    /// router tests). Worked out where it is needed, by the rate limit and the log line, rather
    /// than by a middleware of its own: one more layer costs every request a boxed future.
    pub(crate) fn client_of<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let ConnectInfo(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>()?;
        Some(self.client(peer.ip(), req.headers().get_all("x-forwarded-for").iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(trusted: &str, peer: &str, headers: &[&str]) -> String {
        let trusted = TrustedProxies::parse(trusted).unwrap();
        let values: Vec<HeaderValue> = headers
            .iter()
            .map(|h| HeaderValue::from_str(h).unwrap())
            .collect();
        trusted
            .client(peer.parse().unwrap(), values.iter())
            .to_string()
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        assert_eq!(client("", "10.0.0.1", &["203.0.113.5"]), "10.0.0.1");
        assert_eq!(
            client("192.168.0.0/16", "10.0.0.1", &["1.2.3.4"]),
            "10.0.0.1"
        );
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.1", &["203.0.113.5"]),
            "203.0.113.5"
        );
        // No header: the proxy itself.
        assert_eq!(client("10.0.0.0/8", "10.0.0.1", &[]), "10.0.0.1");
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        // The client claims 1.1.1.1; the proxy it reached appended its real address.
        let chain = ["1.1.1.1, 203.0.113.5, 10.0.0.7"];
        assert_eq!(client("10.0.0.0/8", "10.0.0.1", &chain), "203.0.113.5");
        // The same list in two headers.
        let split = ["1.1.1.1", "203.0.113.5, 10.0.0.7"];
        assert_eq!(client("10.0.0.0/8", "10.0.0.1", &split), "203.0.113.5");
        // Every hop trusted: the left-most.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.1", &["10.1.1.1, 10.2.2.2"]),
            "10.1.1.1"
        );
        // Garbage ends the chain at the last hop that vouched for the request.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.1", &["1.1.1.1, unknown, 10.0.0.9"]),
            "10.0.0.9"
        );
        assert_eq!(client("10.0.0.0/8", "10.0.0.1", &["nonsense"]), "10.0.0.1");
    }

    #[test]
    fn addresses_with_ports_and_v6_are_read() {
        assert_eq!(
            client("127.0.0.1", "127.0.0.1", &["203.0.113.5:4711"]),
            "203.0.113.5"
        );
        assert_eq!(client("::1", "::1", &["[2001:db8::7]:443"]), "2001:db8::7");
        // An IPv4 peer on a dual-stack socket.
        assert_eq!(
            client("127.0.0.0/8", "::ffff:127.0.0.1", &["2001:db8::7"]),
            "2001:db8::7"
        );
    }

    #[test]
    fn the_list_is_checked() {
        let p = TrustedProxies::parse(" 10.0.0.0/8 ,192.168.1.1, fd00::/8,").unwrap();
        assert_eq!(p.0.len(), 3);
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        let e = TrustedProxies::parse("10.0.0.0/8,10.0.0.300").unwrap_err();
        assert!(e.contains("10.0.0.300"), "{e}");
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    }
}
