//! Trusted proxy entries: CIDRs and single addresses, mapped and plain alike, and the errors that
//! name a bad entry.

use super::ip;
use crate::client_ip::TrustedProxies;

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
