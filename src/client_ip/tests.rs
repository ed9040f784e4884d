//! The resolver as a whole: a table of peers, sources and header lines with the client each must
//! give, the config values it is built from, and the outcome's accessors. The header syntax, the
//! trusted ranges and the properties that hold for any input are in the files under `tests/`.

mod headers;
mod properties;
mod trusted;

use super::*;

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
