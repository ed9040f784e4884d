//! What the forwarding headers say, read strictly: one `X-Forwarded-For` entry, one RFC 7239
//! `Forwarded` element's `for=`, one single-address header, each down to a canonical address or
//! nothing. Which entry of a chain to believe is the resolver's decision, not made here.

use std::net::{IpAddr, Ipv6Addr};

/// The address in a `Forwarded` element's `for=` parameter.
///
/// A malformed element, one with no `for=`, or one with two `for=` (which
/// RFC 7239 forbids) is not an address: guessing which part to believe is
/// exactly what an attacker would exploit.
pub(super) fn forwarded_element_for(element: &str) -> Option<IpAddr> {
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
pub(super) fn single_ip<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Option<IpAddr> {
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
pub(super) fn is_token(s: &str) -> bool {
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
