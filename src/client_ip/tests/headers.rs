//! The header syntax, through the resolver behind a trusted proxy and entry by entry.

use std::net::IpAddr;

use super::{PROXIES, ip};
use crate::client_ip::{ClientIpResolver, ClientIpSource, TrustedProxies, parse_ip_entry};

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
