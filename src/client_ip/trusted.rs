//! The trusted proxies: the peers whose forwarding headers are believed.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

/// Trusted proxy ranges.
///
/// Ranges are stored canonically (IPv4-mapped IPv6 ranges as plain IPv4) so
/// that a dual-stack listener reporting `::ffff:10.0.0.1` and an IPv4
/// listener reporting `10.0.0.1` are trusted alike, whichever way the
/// operator wrote the range.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Each entry a CIDR (`10.0.0.0/8`, `2001:db8::/32`, `::ffff:10.0.0.0/104`)
    /// or a single address (`10.0.0.1`, `::1`).
    ///
    /// A typo here would widen or narrow who may speak for clients, so a bad
    /// entry fails the whole configuration and the error names it.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let nets = entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref();
                parse_net(entry.trim())
                    .ok_or_else(|| format!("{entry:?} is not an IP address or CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { nets })
    }

    /// Whether `ip` (in any form, mapped or not) belongs to a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// With no trusted proxies every peer is its own client and headers are
    /// never read.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The address family whose every address the list trusts, alone or
    /// together (`0.0.0.0/0`; `0.0.0.0/1` with `128.0.0.0/1`; `::/0`), if
    /// any: then any client of that family is trusted. Peers are compared in
    /// canonical form, so IPv4-mapped ranges count as the IPv4 ones they map.
    pub fn trusts_every_address(&self) -> Option<&'static str> {
        let (v4, v6): (Vec<IpNet>, Vec<IpNet>) = self
            .nets
            .iter()
            .partition(|net| matches!(net, IpNet::V4(_)));
        let everything = |nets: &Vec<IpNet>| {
            IpNet::aggregate(nets)
                .iter()
                .any(|net| net.prefix_len() == 0)
        };
        if everything(&v4) {
            Some("IPv4")
        } else if everything(&v6) {
            Some("IPv6")
        } else {
            None
        }
    }
}

/// Parses one trusted-proxy entry with std's strict address parser (which,
/// unlike some CIDR parsers, refuses ambiguous forms such as leading zeros).
fn parse_net(entry: &str) -> Option<IpNet> {
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => {
            if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            (
                addr.parse::<IpAddr>().ok()?,
                Some(prefix.parse::<u8>().ok()?),
            )
        }
        None => (entry.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let net = IpNet::new(addr, prefix.unwrap_or(max)).ok()?.trunc();
    Some(canonical_net(net))
}

/// Rewrites an IPv4-mapped IPv6 range as the IPv4 range it maps, because
/// addresses are compared in canonical form. Wider IPv6 ranges (prefix under
/// 96, e.g. `::/0`) are left alone: they are IPv6 ranges, and letting them
/// silently trust the whole IPv4 internet would be a surprise.
fn canonical_net(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else {
        return net;
    };
    v6.network()
        .to_ipv4_mapped()
        .zip(v6.prefix_len().checked_sub(96))
        .and_then(|(v4, prefix)| Ipv4Net::new(v4, prefix).ok())
        .map_or(net, IpNet::V4)
}
