//! What holds for any chain: it yields its rightmost untrusted entry, whatever form each entry is
//! written in. That the resolver never panics and an untrusted peer is always the client, for any
//! header bytes, is a property of the public resolver checked in `tests/parsers.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::ip;
use crate::client_ip::{ClientIp, ClientIpResolver, ClientIpSource, TrustedProxies};

fn fixed_trusted() -> TrustedProxies {
    TrustedProxies::parse(&["10.0.0.0/8", "::ffff:192.168.0.0/112", "2001:db8::/32"]).unwrap()
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
