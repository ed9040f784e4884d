//! Real-client-IP resolution.
//!
//! Proof uses the client address for risk decisions and this service keys
//! per-IP rate limits on it, so a client must never be able to choose it.
//! The only address nobody can forge is the socket peer; forwarding headers
//! are believed only when that peer is a configured trusted proxy, and even
//! then only the part of the header written by trusted hops is believed: the
//! chain is walked from the right (the end appended by the proxy nearest to
//! us) and the first hop that is not itself a trusted proxy is the client.
//! Anything to its left was supplied by that client and is ignored.
//!
//! When the chain cannot be read with confidence the answer is "unknown"
//! rather than a guess: Proof then gets no address at all, which is safer
//! than a wrong one.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

/// Where the client address is read from when the peer is a trusted proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIpSource {
    /// A comma-separated chain that every proxy appends its peer to.
    XForwardedFor,
    /// RFC 7239: the same chain, with the address in each element's `for=`.
    Forwarded,
    /// A header that the proxy in front overwrites with exactly one address
    /// (e.g. `cf-connecting-ip`); it carries no chain, so there is nothing to
    /// walk. The name is stored lower-case.
    SingleIpHeader(String),
}

impl ClientIpSource {
    /// Parses the config value (case-insensitive): `x-forwarded-for`,
    /// `forwarded`, or any other valid HTTP header token name.
    ///
    /// Rejecting a malformed name at startup matters because a name the HTTP
    /// stack can never produce would silently make every request "unknown".
    pub fn parse(value: &str) -> Result<Self, String> {
        let name = value.trim();
        if name.is_empty() {
            return Err("the client IP header name is empty".to_owned());
        }
        if !is_token(name) {
            return Err(format!("{value:?} is not a valid HTTP header name"));
        }
        let name = name.to_ascii_lowercase();
        Ok(match name.as_str() {
            "x-forwarded-for" => Self::XForwardedFor,
            "forwarded" => Self::Forwarded,
            _ => Self::SingleIpHeader(name),
        })
    }

    /// The lower-case header name to read.
    pub fn header_name(&self) -> &str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
            Self::SingleIpHeader(name) => name,
        }
    }
}

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

/// The outcome of resolving one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIp {
    /// A trustworthy client address, canonical. Sent to Proof as client_ip.
    Trusted(IpAddr),
    /// No trustworthy address (the peer is a trusted proxy but the header is
    /// missing, invalid or names only trusted hops). `peer` is the canonical
    /// socket peer, used only as a rate-limit key.
    Unknown { peer: IpAddr },
}

impl ClientIp {
    /// The address to send to Proof, if any: an unknown client is reported as
    /// absent rather than as the proxy, which would be a wrong answer.
    pub fn for_upstream(&self) -> Option<IpAddr> {
        match *self {
            Self::Trusted(ip) => Some(ip),
            Self::Unknown { .. } => None,
        }
    }

    /// The address to key per-IP rate limits on: the client when trusted,
    /// else the peer, so unresolvable requests still share a bounded bucket
    /// instead of escaping rate limiting altogether.
    pub fn rate_limit_key(&self) -> IpAddr {
        match *self {
            Self::Trusted(ip) => ip,
            Self::Unknown { peer } => peer,
        }
    }
}

/// Resolves the client address of each request from its socket peer and, if
/// that peer is a trusted proxy, from the configured header.
#[derive(Debug, Clone)]
pub struct ClientIpResolver {
    trusted: TrustedProxies,
    source: ClientIpSource,
}

impl ClientIpResolver {
    pub fn new(trusted: TrustedProxies, source: ClientIpSource) -> Self {
        Self { trusted, source }
    }

    /// The lower-case header name the caller must collect lines of.
    pub fn header_name(&self) -> &str {
        self.source.header_name()
    }

    /// `header_lines`: every line of the configured header, in order, as raw
    /// bytes (the caller passes
    /// `req.headers().get_all(name).map(|v| v.as_bytes())`).
    ///
    /// The lines are read only when the peer is trusted, so a client talking
    /// to us directly cannot influence the result in any way.
    pub fn resolve<'a>(
        &self,
        peer: IpAddr,
        header_lines: impl IntoIterator<Item = &'a [u8]>,
    ) -> ClientIp {
        let peer = peer.to_canonical();
        if !self.trusted.contains(peer) {
            return ClientIp::Trusted(peer);
        }
        let client = match &self.source {
            ClientIpSource::XForwardedFor => self.rightmost_untrusted(header_lines, parse_ip_entry),
            ClientIpSource::Forwarded => {
                self.rightmost_untrusted(header_lines, forwarded_element_for)
            }
            ClientIpSource::SingleIpHeader(_) => single_ip(header_lines),
        };
        match client {
            Some(ip) => ClientIp::Trusted(ip),
            None => ClientIp::Unknown { peer },
        }
    }

    /// Finds the first untrusted entry from the right of the chain formed by
    /// joining all lines with commas, and returns it if it is an address.
    /// `parse_entry` reads one comma-separated entry: an `X-Forwarded-For`
    /// address or a `Forwarded` element.
    ///
    /// Joining lines with `,` never merges or splits entries, so the chain's
    /// rightmost untrusted entry is simply the one in the last line that has
    /// any. Walking the lines forward and keeping the latest line's answer
    /// finds it without buffering the lines, which arrive as a one-way
    /// iterator.
    fn rightmost_untrusted<'a>(
        &self,
        lines: impl IntoIterator<Item = &'a [u8]>,
        parse_entry: fn(&str) -> Entry,
    ) -> Option<IpAddr> {
        let mut rightmost = None;
        for line in lines {
            if let Some(entry) = line_rightmost(&self.trusted, line, parse_entry) {
                rightmost = Some(entry);
            }
        }
        rightmost.flatten()
    }
}

/// One chain entry: the canonical address, or `None` when the entry is not
/// an address (and therefore cannot be trusted or believed).
type Entry = Option<IpAddr>;

fn is_trusted_entry(trusted: &TrustedProxies, entry: &Entry) -> bool {
    entry.is_some_and(|ip| trusted.contains(ip))
}

/// The rightmost untrusted entry of one `X-Forwarded-For` or `Forwarded`
/// line, or `None` if every entry in it is a trusted proxy. Walking from the
/// right stops at that entry, so the client-supplied left part is never even
/// parsed.
///
/// Entries are split on the raw bytes, before anything else is read, so a
/// malformed entry spoils only itself: bytes that are not UTF-8, or a quote
/// the client opened in its `Forwarded` element and never closed, cannot
/// reach into the entry a trusted proxy appended to the same line. RFC 7239
/// lets a quoted-string contain `,`, but no proxy writes one in the elements
/// that matter here, and honouring it would hand the client that reach.
fn line_rightmost(
    trusted: &TrustedProxies,
    line: &[u8],
    parse_entry: fn(&str) -> Entry,
) -> Option<Entry> {
    line.rsplit(|&b| b == b',')
        .map(|entry| std::str::from_utf8(entry).ok().and_then(parse_entry))
        .find(|entry| !is_trusted_entry(trusted, entry))
}

/// The address in a `Forwarded` element's `for=` parameter.
///
/// A malformed element, one with no `for=`, or one with two `for=` (which
/// RFC 7239 forbids) is not an address: guessing which part to believe is
/// exactly what an attacker would exploit.
fn forwarded_element_for(element: &str) -> Entry {
    let mut found = None;
    for pair in SplitUnquoted::new(element, b';') {
        let pair = trim_ows(pair);
        if pair.is_empty() {
            // RFC 7239 allows empty pairs (`for=x;;proto=http`).
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        // RFC 7239 has no whitespace around `=`, but proxies write
        // `for= 1.2.3.4`; it cannot change which address is meant.
        let (name, value) = (trim_ows(name), trim_ows(value));
        if !is_token(name) {
            return None;
        }
        let value = forwarded_value(value)?;
        if name.eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            found = Some(value);
        }
    }
    parse_ip_entry(found?)
}

/// The content of a `Forwarded` parameter value: the inside of a well-formed
/// quoted-string, or a bare value.
///
/// Bare values may contain `:` and `[]` even though RFC 7239 requires them to
/// be quoted, because common proxies emit `for=2001:db8::1` unquoted and
/// refusing those would only turn real clients into "unknown". Escapes are
/// left in place: no address contains a backslash, so an escaped `for=` value
/// is rejected later instead of being unescaped into an allocation.
fn forwarded_value(value: &str) -> Option<&str> {
    let bytes = value.as_bytes();
    if bytes.first() != Some(&b'"') {
        let bare = bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        return bare.then_some(value);
    }
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        if b.is_ascii_control() && b != b'\t' {
            return None;
        }
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            // The closing quote must end the value.
            return if i + 1 == bytes.len() {
                value.get(1..i)
            } else {
                None
            };
        }
    }
    None
}

/// The client from a single-address header. Such a header is overwritten by
/// the proxy in front, so more than one line or a list means something other
/// than that proxy wrote it, and none of it can be believed.
fn single_ip<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Option<IpAddr> {
    let mut lines = lines.into_iter();
    let line = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let line = std::str::from_utf8(line).ok()?;
    if line.contains(',') {
        return None;
    }
    parse_ip_entry(line)
}

/// Strictly parses one address entry (port, brackets and IPv6 zone stripped,
/// surrounding spaces and tabs trimmed), returning its canonical form; `None`
/// for `0.0.0.0`, `::`, `unknown`, obfuscated identifiers and garbage.
///
/// Canonical form (IPv4-mapped IPv6 as IPv4, IPv6 compressed lower-case via
/// `Display`) keeps one client from appearing as several rate-limit keys.
/// The unspecified addresses are refused because they identify no one.
pub fn parse_ip_entry(entry: &str) -> Option<IpAddr> {
    let entry = trim_ows(entry);
    let host = if let Some(rest) = entry.strip_prefix('[') {
        // Brackets are for IPv6 (RFC 3986, RFC 7239), but proxies bracket
        // IPv4 too; either way they only delimit the address from the port.
        let (inner, after) = rest.split_once(']')?;
        if !after.is_empty() && !is_port(after.strip_prefix(':')?) {
            return None;
        }
        inner
    } else if entry.bytes().filter(|&b| b == b':').count() == 1 {
        // Only IPv4 can carry an unbracketed port: with IPv6 the port would
        // be indistinguishable from the last group.
        let (host, port) = entry.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        host
    } else {
        entry
    };
    let ip = parse_host(host)?.to_canonical();
    (!ip.is_unspecified()).then_some(ip)
}

/// Parses an address, dropping a `%zone`: the zone only says which local
/// interface the address was seen on, which says nothing about who the
/// client is.
///
/// An empty zone (a bare trailing `%`, which some stacks print) names no
/// interface and is dropped from either family; a named zone is IPv6 only.
fn parse_host(text: &str) -> Option<IpAddr> {
    match text.split_once('%') {
        None => text.parse().ok(),
        Some((addr, "")) => addr.parse().ok(),
        Some((addr, zone)) => {
            let zone_ok = zone
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'[' | b']' | b'"' | b'\\'));
            if !zone_ok {
                return None;
            }
            addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        }
    }
}

/// A port: decimal and in range, or a non-numeric label such as a service
/// name (`https`) or an RFC 7239 obfuscated port (`_abc`), made of
/// `ALPHA / DIGIT / "." / "_" / "-"`. The port is discarded either way and a
/// label says nothing about the address, but a number out of range or any
/// other character means the entry is not `address:port` at all.
fn is_port(port: &str) -> bool {
    if port.bytes().all(|b| b.is_ascii_digit()) {
        return (1..=5).contains(&port.len()) && port.parse::<u16>().is_ok();
    }
    port.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Trims HTTP optional whitespace (space and tab) only: other characters,
/// including Unicode spaces, make an entry garbage rather than being
/// silently dropped.
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// An RFC 9110 token (header names, `Forwarded` parameter names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Splits on an ASCII separator that is outside quoted-strings, so a quoted
/// `Forwarded` value cannot be cut into pieces that look like parameters of
/// their own. An unterminated quote runs to the end of the input (one
/// element, as elements are split first) and leaves a malformed last piece.
struct SplitUnquoted<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> SplitUnquoted<'a> {
    fn new(s: &'a str, sep: u8) -> Self {
        Self { rest: Some(s), sep }
    }
}

impl<'a> Iterator for SplitUnquoted<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, &b) in s.as_bytes().iter().enumerate() {
            if in_quotes {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_quotes = false;
                }
            } else if b == b'"' {
                in_quotes = true;
            } else if b == self.sep {
                // `sep` is ASCII, so `i` and `i + 1` are char boundaries.
                self.rest = s.get(i + 1..);
                return s.get(..i);
            }
        }
        self.rest = None;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    struct Case {
        name: &'static str,
        trusted: &'static [&'static str],
        source: &'static str,
        peer: &'static str,
        lines: &'static [&'static [u8]],
        /// `Some(ip)` for `Trusted(ip)`, `None` for `Unknown { peer }`.
        expected: Option<&'static str>,
    }

    const PROXIES: &[&str] = &["10.0.0.0/8", "2001:db8:ffff::/48"];

    #[rustfmt::skip]
    const CASES: &[Case] = &[
        // The peer decides whether headers are read at all.
        Case { name: "untrusted peer ignores XFF", trusted: PROXIES, source: "x-forwarded-for", peer: "203.0.113.9", lines: &[b"1.2.3.4"], expected: Some("203.0.113.9") },
        Case { name: "untrusted peer ignores single header", trusted: PROXIES, source: "cf-connecting-ip", peer: "203.0.113.9", lines: &[b"1.2.3.4"], expected: Some("203.0.113.9") },
        Case { name: "no trusted proxies ignores XFF", trusted: &[], source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4"], expected: Some("10.0.0.1") },
        Case { name: "untrusted mapped peer is canonical", trusted: PROXIES, source: "x-forwarded-for", peer: "::ffff:203.0.113.9", lines: &[b"1.2.3.4"], expected: Some("203.0.113.9") },
        // X-Forwarded-For chains.
        Case { name: "XFF single value", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4"], expected: Some("1.2.3.4") },
        Case { name: "XFF walks from the right skipping trusted", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"6.6.6.6, 1.2.3.4, 10.1.1.1, 10.2.2.2"], expected: Some("1.2.3.4") },
        Case { name: "XFF leftmost spoof ignored", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"9.9.9.9,5.6.7.8"], expected: Some("5.6.7.8") },
        Case { name: "XFF lines joined in order", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"6.6.6.6, 1.2.3.4", b"10.1.1.1", b"10.2.2.2, 10.3.3.3"], expected: Some("1.2.3.4") },
        Case { name: "XFF later line wins", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4", b"5.6.7.8, 10.0.0.2"], expected: Some("5.6.7.8") },
        Case { name: "XFF all trusted", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"10.1.1.1, 10.2.2.2", b"2001:db8:ffff::1"], expected: None },
        Case { name: "XFF missing", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[], expected: None },
        Case { name: "XFF empty line", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b""], expected: None },
        Case { name: "XFF rightmost garbage does not skip left", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4, garbage, 10.0.0.2"], expected: None },
        Case { name: "XFF rightmost unknown", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4, unknown"], expected: None },
        Case { name: "XFF rightmost obfuscated", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4, _hidden"], expected: None },
        Case { name: "XFF rightmost empty (trailing comma)", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4,"], expected: None },
        Case { name: "XFF rightmost empty line after valid", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4", b" "], expected: None },
        Case { name: "XFF garbage left of client is irrelevant", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"garbage, ,unknown, 1.2.3.4"], expected: Some("1.2.3.4") },
        Case { name: "XFF IPv4 with port", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4:5678"], expected: Some("1.2.3.4") },
        Case { name: "XFF trusted entry with port is skipped", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4, 10.0.0.9:443"], expected: Some("1.2.3.4") },
        Case { name: "XFF bad port", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4:99999"], expected: None },
        Case { name: "XFF bracketed IPv6 with port", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"[2001:db8::1]:443"], expected: Some("2001:db8::1") },
        Case { name: "XFF bracketed IPv6 without port", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"[2001:db8::1]"], expected: Some("2001:db8::1") },
        Case { name: "XFF zone", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"fe80::1%eth0"], expected: Some("fe80::1") },
        Case { name: "XFF bracketed zone", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"[fe80::1%eth0]:80"], expected: Some("fe80::1") },
        Case { name: "XFF mapped IPv6 becomes IPv4", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"::ffff:1.2.3.4"], expected: Some("1.2.3.4") },
        Case { name: "XFF uppercase IPv6 compressed", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"2001:0DB8:0000:0000:0000:0000:0000:00AB"], expected: Some("2001:db8::ab") },
        Case { name: "XFF 0.0.0.0 refused", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4, 0.0.0.0"], expected: None },
        Case { name: "XFF :: refused", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4, ::"], expected: None },
        Case { name: "XFF mapped 0.0.0.0 refused", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"::ffff:0.0.0.0"], expected: None },
        Case { name: "XFF leading zero octet refused", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"01.2.3.4"], expected: None },
        Case { name: "XFF bracketed IPv4 with port", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"[1.2.3.4]:80"], expected: Some("1.2.3.4") },
        Case { name: "XFF quoted refused", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"\"1.2.3.4\""], expected: None },
        Case { name: "XFF whitespace trimmed", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b" \t1.2.3.4 \t,\t10.0.0.2 "], expected: Some("1.2.3.4") },
        Case { name: "XFF inner whitespace refused", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4 :80"], expected: None },
        Case { name: "XFF non-UTF-8 rightmost line", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4", b"\xff\xfe"], expected: None },
        Case { name: "XFF non-UTF-8 left line irrelevant", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"\xff\xfe", b"1.2.3.4"], expected: Some("1.2.3.4") },
        Case { name: "XFF non-UTF-8 spoils only its own entry", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"\xff, 1.2.3.4"], expected: Some("1.2.3.4") },
        Case { name: "XFF non-UTF-8 rightmost entry is invalid", trusted: PROXIES, source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4, 5.6.7.\xff"], expected: None },
        Case { name: "XFF header name case-insensitive in config", trusted: PROXIES, source: "X-Forwarded-For", peer: "10.0.0.1", lines: &[b"1.2.3.4"], expected: Some("1.2.3.4") },
        // Mapped/plain equivalence of ranges and peers.
        Case { name: "mapped range covers plain IPv4 peer", trusted: &["::ffff:10.0.0.0/104"], source: "x-forwarded-for", peer: "10.1.2.3", lines: &[b"1.2.3.4"], expected: Some("1.2.3.4") },
        Case { name: "plain range covers mapped peer", trusted: &["10.0.0.0/8"], source: "x-forwarded-for", peer: "::ffff:10.0.0.1", lines: &[b"1.2.3.4"], expected: Some("1.2.3.4") },
        Case { name: "mapped range covers plain IPv4 entry", trusted: &["::ffff:10.0.0.0/104"], source: "x-forwarded-for", peer: "10.1.2.3", lines: &[b"1.2.3.4, 10.9.9.9"], expected: Some("1.2.3.4") },
        Case { name: "plain range covers mapped entry", trusted: &["10.0.0.0/8"], source: "x-forwarded-for", peer: "10.0.0.1", lines: &[b"1.2.3.4, ::ffff:10.9.9.9"], expected: Some("1.2.3.4") },
        Case { name: "unknown peer is canonical", trusted: &["10.0.0.0/8"], source: "x-forwarded-for", peer: "::ffff:10.0.0.1", lines: &[], expected: None },
        Case { name: "IPv6 proxy", trusted: PROXIES, source: "x-forwarded-for", peer: "2001:db8:ffff::7", lines: &[b"2001:db8::1, 2001:db8:ffff::1"], expected: Some("2001:db8::1") },
        // Forwarded (RFC 7239).
        Case { name: "Forwarded simple", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=1.2.3.4"], expected: Some("1.2.3.4") },
        Case { name: "Forwarded quoted bracketed with port", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=\"[2001:db8::1]:4711\""], expected: Some("2001:db8::1") },
        Case { name: "Forwarded For= case", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"For=1.2.3.4"], expected: Some("1.2.3.4") },
        Case { name: "Forwarded FOR= with other params", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"by=10.0.0.1;FOR=1.2.3.4;proto=https;host=\"example.com:8443\""], expected: Some("1.2.3.4") },
        Case { name: "Forwarded spaces around pairs and elements", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b" for=1.2.3.4 ; proto=http , for=10.0.0.2 "], expected: Some("1.2.3.4") },
        Case { name: "Forwarded multiple elements skip trusted", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=6.6.6.6, for=1.2.3.4;proto=http, for=10.0.0.5;by=10.0.0.1"], expected: Some("1.2.3.4") },
        Case { name: "Forwarded multiple lines", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=6.6.6.6", b"for=1.2.3.4", b"for=\"10.0.0.5:80\""], expected: Some("1.2.3.4") },
        Case { name: "Forwarded element without for=", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=1.2.3.4, proto=https;by=10.0.0.1"], expected: None },
        Case { name: "Forwarded empty element", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=1.2.3.4,"], expected: None },
        Case { name: "Forwarded empty pair allowed", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=1.2.3.4;;proto=http"], expected: Some("1.2.3.4") },
        Case { name: "Forwarded unknown", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=1.2.3.4, for=unknown"], expected: None },
        Case { name: "Forwarded obfuscated", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=1.2.3.4, for=_hidden"], expected: None },
        Case { name: "Forwarded obfuscated port", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=\"1.2.3.4:_abc\""], expected: Some("1.2.3.4") },
        Case { name: "Forwarded empty for", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=\"\""], expected: None },
        Case { name: "Forwarded duplicate for in one element", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=1.2.3.4;for=5.6.7.8"], expected: None },
        Case { name: "Forwarded unterminated quote", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=\"1.2.3.4"], expected: None },
        Case { name: "Forwarded junk after quote", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=\"1.2.3.4\"x"], expected: None },
        Case { name: "Forwarded escaped for refused", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=\"1.2.3.\\4\""], expected: None },
        Case { name: "Forwarded commas split elements before quotes are read", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=1.2.3.4;ext=\"a, for=5.6.7.8\""], expected: None },
        Case { name: "Forwarded quoted semicolon stays in its pair", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=1.2.3.4;ext=\"a;for=5.6.7.8\""], expected: Some("1.2.3.4") },
        Case { name: "Forwarded bare IPv6 tolerated", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=2001:DB8::1"], expected: Some("2001:db8::1") },
        Case { name: "Forwarded zone", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=\"[fe80::1%eth0]\""], expected: Some("fe80::1") },
        Case { name: "Forwarded mapped", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=\"[::ffff:1.2.3.4]:80\""], expected: Some("1.2.3.4") },
        Case { name: "Forwarded bad param name", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=1.2.3.4;pro to=http"], expected: None },
        Case { name: "Forwarded space around equals", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for = 1.2.3.4"], expected: Some("1.2.3.4") },
        Case { name: "Forwarded space inside the name refused", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"f or=1.2.3.4"], expected: None },
        Case { name: "Forwarded all trusted", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=10.0.0.3, for=\"[2001:db8:ffff::9]\""], expected: None },
        Case { name: "Forwarded missing", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[], expected: None },
        Case { name: "Forwarded non-UTF-8", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"for=1.2.3.4", b"for=\"\xc3\x28\""], expected: None },
        Case { name: "Forwarded XFF syntax is not an element", trusted: PROXIES, source: "forwarded", peer: "10.0.0.1", lines: &[b"1.2.3.4"], expected: None },
        // Single-address headers.
        Case { name: "single header valid", trusted: PROXIES, source: "cf-connecting-ip", peer: "10.0.0.1", lines: &[b"1.2.3.4"], expected: Some("1.2.3.4") },
        Case { name: "single header IPv6 canonical", trusted: PROXIES, source: "CF-Connecting-IP", peer: "10.0.0.1", lines: &[b" 2001:DB8::0:1 "], expected: Some("2001:db8::1") },
        Case { name: "single header trusted address is still the client", trusted: PROXIES, source: "x-real-ip", peer: "10.0.0.1", lines: &[b"10.0.0.7"], expected: Some("10.0.0.7") },
        Case { name: "single header invalid", trusted: PROXIES, source: "cf-connecting-ip", peer: "10.0.0.1", lines: &[b"not-an-ip"], expected: None },
        Case { name: "single header missing", trusted: PROXIES, source: "true-client-ip", peer: "10.0.0.1", lines: &[], expected: None },
        Case { name: "single header duplicated", trusted: PROXIES, source: "cf-connecting-ip", peer: "10.0.0.1", lines: &[b"1.2.3.4", b"1.2.3.4"], expected: None },
        Case { name: "single header comma list", trusted: PROXIES, source: "cf-connecting-ip", peer: "10.0.0.1", lines: &[b"1.2.3.4, 5.6.7.8"], expected: None },
        Case { name: "single header trailing comma", trusted: PROXIES, source: "cf-connecting-ip", peer: "10.0.0.1", lines: &[b"1.2.3.4,"], expected: None },
        Case { name: "single header non-UTF-8", trusted: PROXIES, source: "cf-connecting-ip", peer: "10.0.0.1", lines: &[b"1.2.3.4\xff"], expected: None },
        Case { name: "single header with port", trusted: PROXIES, source: "x-real-ip", peer: "10.0.0.1", lines: &[b"1.2.3.4:80"], expected: Some("1.2.3.4") },
        Case { name: "single header 0.0.0.0", trusted: PROXIES, source: "x-real-ip", peer: "10.0.0.1", lines: &[b"0.0.0.0"], expected: None },
    ];

    #[test]
    fn resolve_table() {
        let mut failures = Vec::new();
        for case in CASES {
            let trusted = TrustedProxies::parse(case.trusted).unwrap();
            let source = ClientIpSource::parse(case.source).unwrap();
            let resolver = ClientIpResolver::new(trusted, source);
            let peer = ip(case.peer);
            let got = resolver.resolve(peer, case.lines.iter().copied());
            let want = match case.expected {
                Some(client) => ClientIp::Trusted(ip(client)),
                None => ClientIp::Unknown {
                    peer: peer.to_canonical(),
                },
            };
            if got != want {
                failures.push(format!("{}: got {got:?}, want {want:?}", case.name));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The client a resolver behind `PROXIES` reads from `lines` when the peer is one of them;
    /// `None` when it finds no trustworthy address.
    fn client_behind_proxy(source: &str, lines: &[&[u8]]) -> Option<IpAddr> {
        let resolver = ClientIpResolver::new(
            TrustedProxies::parse(PROXIES).unwrap(),
            ClientIpSource::parse(source).unwrap(),
        );
        resolver
            .resolve(ip("10.0.0.1"), lines.iter().copied())
            .for_upstream()
    }

    #[test]
    fn forwarded_for_may_have_whitespace_around_the_equals_sign() {
        for line in [
            "for= 1.1.1.1",
            "For =1.1.1.1",
            "FOR \t=\t 1.1.1.1;proto=https",
            "for= \"1.1.1.1:80\"",
        ] {
            assert_eq!(
                client_behind_proxy("forwarded", &[line.as_bytes()]),
                Some(ip("1.1.1.1")),
                "{line:?}"
            );
        }
    }

    #[test]
    fn a_bracketed_ipv4_is_accepted() {
        for (source, line) in [
            ("forwarded", "For=\"[1.1.1.1]\""),
            ("forwarded", "for=\"[1.1.1.1]:4711\""),
            ("x-forwarded-for", "[1.1.1.1]"),
            ("x-forwarded-for", "[1.1.1.1]:80"),
            ("x-real-ip", "[1.1.1.1]"),
        ] {
            assert_eq!(
                client_behind_proxy(source, &[line.as_bytes()]),
                Some(ip("1.1.1.1")),
                "{source}: {line:?}"
            );
        }
    }

    #[test]
    fn an_empty_zone_is_stripped() {
        for (source, line, want) in [
            ("x-forwarded-for", "1.1.1.1%", "1.1.1.1"),
            ("x-forwarded-for", "[fe80::1%]", "fe80::1"),
            ("x-forwarded-for", "fe80::1%", "fe80::1"),
            ("x-forwarded-for", "[fe80::1%]:443", "fe80::1"),
            ("forwarded", "for=\"[fe80::1%]:4711\"", "fe80::1"),
            ("cf-connecting-ip", "1.1.1.1%", "1.1.1.1"),
        ] {
            assert_eq!(
                client_behind_proxy(source, &[line.as_bytes()]),
                Some(ip(want)),
                "{source}: {line:?}"
            );
        }
    }

    #[test]
    fn a_non_numeric_port_is_discarded() {
        for (source, line, want) in [
            ("x-forwarded-for", "[fe80::abcd%eth0]:xyz", "fe80::abcd"),
            ("x-forwarded-for", "1.1.1.1:xyz", "1.1.1.1"),
            ("forwarded", "for=\"[2001:db8::1]:https\"", "2001:db8::1"),
            ("forwarded", "for=\"1.1.1.1:_\"", "1.1.1.1"),
        ] {
            assert_eq!(
                client_behind_proxy(source, &[line.as_bytes()]),
                Some(ip(want)),
                "{source}: {line:?}"
            );
        }
    }

    /// A client sends `Forwarded` with a quote it never closes and the trusted proxy appends its
    /// own element to the same line: the proxy's element is still read.
    #[test]
    fn a_client_element_left_open_does_not_hide_the_proxys_element() {
        let lines: [&[u8]; 5] = [
            b"For=\"1.1.1.1, For=2.2.2.2",
            b"for=\"6.6.6.6, for=\"2.2.2.2:1234\"",
            b"for=\"6.6.6.6, for=2.2.2.2, for=10.0.0.9",
            b"For=\"6.6.6.6, For=5.5.5.5, For=3.3.3.3\", For=\"2.2.2.2\"",
            b"for=\xff\"6.6.6.6, for=2.2.2.2",
        ];
        for line in lines {
            assert_eq!(
                client_behind_proxy("forwarded", &[line]),
                Some(ip("2.2.2.2")),
                "{}",
                line.escape_ascii()
            );
        }
        // The element a proxy appended is itself malformed: nothing to its left is believed.
        assert_eq!(
            client_behind_proxy("forwarded", &[b"for=2.2.2.2, for=\"1.1.1.1"]),
            None
        );
    }

    #[test]
    fn parse_ip_entry_forms() {
        let cases: &[(&str, Option<&str>)] = &[
            ("1.2.3.4", Some("1.2.3.4")),
            (" 1.2.3.4\t", Some("1.2.3.4")),
            ("1.2.3.4:0", Some("1.2.3.4")),
            ("1.2.3.4:65535", Some("1.2.3.4")),
            ("1.2.3.4:65536", None),
            ("1.2.3.4:", None),
            ("1.2.3.4:+80", None),
            ("1.2.3.4:_", Some("1.2.3.4")),
            ("1.2.3.4:xyz", Some("1.2.3.4")),
            ("1.2.3.4:_abc.d-e", Some("1.2.3.4")),
            ("1.2.3.4: 80", None),
            ("1.2.3.4:8 0", None),
            ("1.2.3.4:x/y", None),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("[2001:db8::1]:", None),
            ("[2001:db8::1]x", None),
            ("[2001:db8::1", None),
            ("[2001:db8::1]:a:b", None),
            ("[fe80::abcd%eth0]:xyz", Some("fe80::abcd")),
            ("[1.2.3.4]", Some("1.2.3.4")),
            ("[1.2.3.4]:80", Some("1.2.3.4")),
            ("[1.2.3.4", None),
            ("[[1.2.3.4]]", None),
            ("[]", None),
            ("[0.0.0.0]:80", None),
            ("fe80::1%eth0", Some("fe80::1")),
            ("fe80::1%", Some("fe80::1")),
            ("[fe80::1%]", Some("fe80::1")),
            ("1.2.3.4%", Some("1.2.3.4")),
            ("1.2.3.4%:80", Some("1.2.3.4")),
            ("%", None),
            ("1.2.3.4%%", None),
            ("fe80::1%%", None),
            ("fe80::1%eth 0", None),
            ("1.2.3.4%eth0", None),
            ("[1.2.3.4%eth0]", None),
            ("[fe80::1%eth0]", Some("fe80::1")),
            ("::ffff:1.2.3.4", Some("1.2.3.4")),
            ("::FFFF:1.2.3.4", Some("1.2.3.4")),
            ("2001:DB8::A", Some("2001:db8::a")),
            ("0.0.0.0", None),
            ("0.0.0.0:80", None),
            ("::", None),
            ("[::]:80", None),
            ("unknown", None),
            ("UNKNOWN", None),
            ("_hidden", None),
            ("_abc", None),
            ("", None),
            ("   ", None),
            ("1.2.3", None),
            ("1.2.3.4.5", None),
            ("1.2.3.256", None),
            ("1.2.3.04", None),
            ("\u{a0}1.2.3.4", None),
            ("::ffff:1.2.3.4:80", None),
        ];
        for &(entry, want) in cases {
            assert_eq!(parse_ip_entry(entry), want.map(ip), "entry {entry:?}");
        }
        assert_eq!(
            parse_ip_entry("2001:0db8:0000:0000:0000:0000:0000:0001")
                .unwrap()
                .to_string(),
            "2001:db8::1"
        );
    }

    #[test]
    fn trusted_proxies_parse() {
        let t = TrustedProxies::parse(&[
            "10.0.0.0/8",
            " 2001:db8::/32 ",
            "::ffff:192.168.0.0/112",
            "172.16.0.1",
            "::1",
            "10.20.30.40/16",
        ])
        .unwrap();
        assert!(!t.is_empty());
        assert!(t.contains(ip("10.255.0.1")));
        assert!(t.contains(ip("::ffff:10.255.0.1")));
        assert!(t.contains(ip("2001:db8:1::1")));
        assert!(t.contains(ip("192.168.3.4")));
        assert!(t.contains(ip("::ffff:192.168.3.4")));
        assert!(!t.contains(ip("192.169.0.1")));
        assert!(t.contains(ip("172.16.0.1")));
        assert!(!t.contains(ip("172.16.0.2")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("10.20.99.1")), "host bits are truncated");
        assert!(!t.contains(ip("11.0.0.1")));

        let empty = TrustedProxies::parse::<&str>(&[]).unwrap();
        assert!(empty.is_empty());
        assert!(!empty.contains(ip("10.0.0.1")));
        assert!(TrustedProxies::default().is_empty());

        // A wide IPv6 range is an IPv6 range only.
        let wide = TrustedProxies::parse(&["::/0"]).unwrap();
        assert!(wide.contains(ip("2001:db8::1")));
        assert!(!wide.contains(ip("::ffff:10.0.0.1")));
        assert!(!wide.contains(ip("10.0.0.1")));
        let all_v4 = TrustedProxies::parse(&["::ffff:0.0.0.0/96"]).unwrap();
        assert!(all_v4.contains(ip("203.0.113.1")));
        assert!(!all_v4.contains(ip("2001:db8::1")));

        for bad in [
            "10.0.0.300",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "010.0.0.0/8",
            "",
            "localhost",
            "[::1]",
            "fe80::1%eth0",
            "10.0.0.0 /8",
        ] {
            let err = TrustedProxies::parse(&["10.0.0.0/8", bad]).unwrap_err();
            assert_eq!(
                err,
                format!("{bad:?} is not an IP address or CIDR range"),
                "entry {bad:?}"
            );
        }
        assert_eq!(
            TrustedProxies::parse(&["10.0.0.300"]).unwrap_err(),
            r#""10.0.0.300" is not an IP address or CIDR range"#
        );
    }

    #[test]
    fn client_ip_source_parse() {
        assert_eq!(
            ClientIpSource::parse("x-forwarded-for"),
            Ok(ClientIpSource::XForwardedFor)
        );
        assert_eq!(
            ClientIpSource::parse("X-Forwarded-For"),
            Ok(ClientIpSource::XForwardedFor)
        );
        assert_eq!(
            ClientIpSource::parse("Forwarded"),
            Ok(ClientIpSource::Forwarded)
        );
        assert_eq!(
            ClientIpSource::parse(" CF-Connecting-IP "),
            Ok(ClientIpSource::SingleIpHeader("cf-connecting-ip".into()))
        );
        assert_eq!(
            ClientIpSource::parse("x-real-ip").map(|s| s.header_name().to_owned()),
            Ok("x-real-ip".to_owned())
        );
        assert_eq!(
            ClientIpSource::XForwardedFor.header_name(),
            "x-forwarded-for"
        );
        assert_eq!(ClientIpSource::Forwarded.header_name(), "forwarded");
        for bad in [
            "",
            "  ",
            "x real ip",
            "x-real-ip:",
            "x,y",
            "caf\u{e9}",
            "a\"b",
            "(x)",
        ] {
            assert!(ClientIpSource::parse(bad).is_err(), "name {bad:?}");
        }
    }

    #[test]
    fn client_ip_accessors() {
        let client = ClientIp::Trusted(ip("1.2.3.4"));
        assert_eq!(client.for_upstream(), Some(ip("1.2.3.4")));
        assert_eq!(client.rate_limit_key(), ip("1.2.3.4"));
        let unknown = ClientIp::Unknown {
            peer: ip("10.0.0.1"),
        };
        assert_eq!(unknown.for_upstream(), None);
        assert_eq!(unknown.rate_limit_key(), ip("10.0.0.1"));

        let resolver = ClientIpResolver::new(
            TrustedProxies::default(),
            ClientIpSource::parse("True-Client-IP").unwrap(),
        );
        assert_eq!(resolver.header_name(), "true-client-ip");
    }

    fn sources() -> [ClientIpSource; 3] {
        [
            ClientIpSource::XForwardedFor,
            ClientIpSource::Forwarded,
            ClientIpSource::SingleIpHeader("x-real-ip".into()),
        ]
    }

    fn fixed_trusted() -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.0/8", "::ffff:192.168.0.0/112", "2001:db8::/32"]).unwrap()
    }

    /// Header bytes that are either fully random or drawn from the
    /// characters the parsers care about, so both paths get exercised.
    fn header_line() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..48),
            prop::collection::vec(
                prop::sample::select(
                    b"0123456789abcdefABCDEF.:[]%,; \t\"\\=_forFORunknown\xff".to_vec()
                ),
                0..64
            ),
        ]
    }

    fn peer_strategy() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<IpAddr>(),
            any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::V4(Ipv4Addr::new(10, a, b, c))),
            any::<[u8; 3]>()
                .prop_map(|[a, b, c]| IpAddr::V6(Ipv4Addr::new(10, a, b, c).to_ipv6_mapped())),
            any::<u64>()
                .prop_map(|x| IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(x)))),
        ]
    }

    proptest! {
        #[test]
        fn resolve_never_panics_and_untrusted_peer_wins(
            peer in peer_strategy(),
            lines in prop::collection::vec(header_line(), 0..5),
        ) {
            let trusted = fixed_trusted();
            let peer_is_trusted = trusted.contains(peer);
            let canonical_peer = peer.to_canonical();
            for source in sources() {
                let resolver = ClientIpResolver::new(trusted.clone(), source);
                let got = resolver.resolve(peer, lines.iter().map(Vec::as_slice));
                if peer_is_trusted {
                    match got {
                        ClientIp::Trusted(ip) => {
                            prop_assert_eq!(ip, ip.to_canonical());
                            prop_assert!(!ip.is_unspecified());
                        }
                        ClientIp::Unknown { peer } => prop_assert_eq!(peer, canonical_peer),
                    }
                } else {
                    prop_assert_eq!(got, ClientIp::Trusted(canonical_peer));
                }
            }
        }
    }

    /// A generated chain entry: its text and the address it must parse to.
    #[derive(Debug, Clone)]
    struct GenEntry {
        text: String,
        want: Option<IpAddr>,
    }

    fn v4_entry(v4: Ipv4Addr) -> impl Strategy<Value = GenEntry> {
        let want = Some(IpAddr::V4(v4)).filter(|ip| !ip.is_unspecified());
        (0..9u8, any::<u16>()).prop_map(move |(form, port)| GenEntry {
            text: match form {
                0 => v4.to_string(),
                1 => format!("{v4}:{port}"),
                2 => format!(" {v4}\t"),
                3 => v4.to_ipv6_mapped().to_string(),
                4 => format!("[{}]:{port}", v4.to_ipv6_mapped()),
                5 => format!("[{v4}]"),
                6 => format!("[{v4}]:{port}"),
                7 => format!("{v4}%"),
                _ => format!("{v4}:http"),
            },
            want,
        })
    }

    fn v6_entry(v6: Ipv6Addr) -> impl Strategy<Value = GenEntry> {
        let want = Some(IpAddr::V6(v6).to_canonical()).filter(|ip| !ip.is_unspecified());
        (0..7u8, any::<u16>()).prop_map(move |(form, port)| GenEntry {
            text: match form {
                0 => v6.to_string(),
                1 => v6.to_string().to_uppercase(),
                2 => format!("[{v6}]:{port}"),
                3 => format!("{v6}%eth0"),
                4 => format!("[{v6}%en0]"),
                5 => format!("[{v6}%]"),
                _ => format!("[{v6}%eth0]:xyz"),
            },
            want,
        })
    }

    fn gen_entry() -> impl Strategy<Value = GenEntry> {
        let garbage = prop::sample::select(vec![
            "",
            " ",
            "unknown",
            "_hidden",
            "_abc",
            "garbage",
            "1.2.3",
            "1.2.3.4.5",
            "0.0.0.0",
            "::",
            "[1.2.3.4",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "1.2.3.4%eth0",
            "fe80::1%%",
            "01.2.3.4",
            "[::1",
        ])
        .prop_map(|text| GenEntry {
            text: text.to_owned(),
            want: None,
        });
        prop_oneof![
            3 => any::<[u8; 3]>().prop_flat_map(|[a, b, c]| v4_entry(Ipv4Addr::new(10, a, b, c))),
            1 => any::<u64>().prop_flat_map(|x| v6_entry(Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(x)))),
            2 => any::<Ipv4Addr>().prop_flat_map(v4_entry),
            1 => any::<Ipv6Addr>().prop_flat_map(v6_entry),
            1 => garbage,
        ]
    }

    proptest! {
        #[test]
        fn chain_yields_rightmost_untrusted(
            entries in prop::collection::vec((gen_entry(), any::<bool>(), any::<bool>()), 0..8),
        ) {
            let trusted = fixed_trusted();
            // Reference model: walk from the right over the known parses.
            let want = entries
                .iter()
                .rev()
                .map(|(e, _, _)| e.want)
                .find(|w| !w.is_some_and(|ip| trusted.contains(ip)))
                .flatten();
            let peer = ip("10.0.0.1");
            let want = match want {
                Some(ip) => ClientIp::Trusted(ip),
                None => ClientIp::Unknown { peer },
            };

            for source in [ClientIpSource::XForwardedFor, ClientIpSource::Forwarded] {
                // Entries are spread over lines at random points.
                let mut lines: Vec<String> = Vec::new();
                for (i, (entry, new_line, spaced)) in entries.iter().enumerate() {
                    let text = match source {
                        ClientIpSource::Forwarded => format!("for=\"{}\"", entry.text),
                        _ => entry.text.clone(),
                    };
                    match lines.last_mut() {
                        Some(line) if i > 0 && !new_line => {
                            line.push_str(if *spaced { ", " } else { "," });
                            line.push_str(&text);
                        }
                        _ => lines.push(text),
                    }
                }
                let resolver = ClientIpResolver::new(trusted.clone(), source);
                let got = resolver.resolve(peer, lines.iter().map(|l| l.as_bytes()));
                prop_assert_eq!(got, want, "lines {:?}", lines);
            }
        }
    }
}
