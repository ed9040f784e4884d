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
//!
//! This module owns the resolution: where the address is read from ([`ClientIpSource`]), the
//! outcome ([`ClientIp`]) and the walk along the chain ([`ClientIpResolver`]). Which peers are
//! trusted is [`trusted`]; the syntax of what the headers say (`X-Forwarded-For` entries,
//! `Forwarded` elements, single-address values) is [`headers`]; the `[client_ip]` settings are
//! [`config`].

mod config;
mod headers;
mod trusted;

use std::net::IpAddr;

use headers::{forwarded_element_for, is_token, single_ip};

pub use config::ClientIpSettings;
pub use headers::parse_ip_entry;
pub use trusted::TrustedProxies;

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

    /// The peers believed: also the only ones an auth proxy's identity headers are read from.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted
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

#[cfg(test)]
mod tests;
