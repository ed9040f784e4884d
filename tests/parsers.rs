//! Property tests for the parsers on the request path: the client IP resolver, the checkout body
//! parser, the session token extraction and the JWT verifier. Each is fed arbitrary bytes and
//! structured but hostile inputs, and must never panic and always land in one of its documented
//! outcomes.
//!
//! The number of cases follows `PROPTEST_CASES` (proptest's default is 256); CI sets it higher.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use proof_bff::checkout::{CheckoutPolicy, CheckoutType, parse_checkout_request};
use proof_bff::client_ip::{ClientIp, ClientIpResolver, ClientIpSource, TrustedProxies};
use proof_bff::session::{
    JwtAlgorithm, JwtVerifier, JwtVerifierSettings, SessionError, SessionUser, is_valid_user_id,
    token_from_authorization, token_from_cookie_header,
};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use sha2::Sha256;

// ---------- client IP ----------

const TRUSTED: &[&str] = &[
    "10.0.0.0/8",
    "2001:db8::/32",
    "::ffff:192.168.0.0/112",
    "127.0.0.1",
];

fn trusted() -> TrustedProxies {
    TrustedProxies::parse(TRUSTED).unwrap()
}

fn chain_sources() -> [ClientIpSource; 2] {
    [ClientIpSource::XForwardedFor, ClientIpSource::Forwarded]
}

fn all_sources() -> [ClientIpSource; 3] {
    [
        ClientIpSource::XForwardedFor,
        ClientIpSource::Forwarded,
        ClientIpSource::parse("x-real-ip").unwrap(),
    ]
}

fn trusted_peer() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::V4(Ipv4Addr::new(10, a, b, c))),
        any::<[u8; 3]>()
            .prop_map(|[a, b, c]| IpAddr::V6(Ipv4Addr::new(10, a, b, c).to_ipv6_mapped())),
        any::<[u8; 2]>().prop_map(|[a, b]| IpAddr::V4(Ipv4Addr::new(192, 168, a, b))),
        any::<u64>()
            .prop_map(|x| IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(x)))),
        Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ]
}

/// Any address that is none of the trusted proxies and not unspecified: a possible client.
fn untrusted_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<IpAddr>(),
        any::<Ipv4Addr>().prop_map(|v4| IpAddr::V6(v4.to_ipv6_mapped())),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        any::<u8>().prop_map(|x| IpAddr::V4(Ipv4Addr::new(203, 0, 113, x))),
    ]
    .prop_filter("a client is neither trusted nor unspecified", |ip| {
        !trusted().contains(*ip) && !ip.to_canonical().is_unspecified()
    })
}

/// Bytes a client may put in a forwarding header: anything at all, or pieces of what the
/// parsers look for (quotes, separators, `for=`, brackets, zones, ports, addresses, trusted
/// addresses, bytes that are not UTF-8) in any order.
fn hostile_line() -> impl Strategy<Value = Vec<u8>> {
    #[rustfmt::skip]
    const PIECES: &[&[u8]] = &[
        b"\"", b",", b";", b"=", b"for=", b"For = ", b"by=10.0.0.1", b"proto=https", b"[", b"]",
        b"\"[", b"]:", b"%", b":", b" ", b"\t", b"\\", b"_hidden", b"unknown", b"xyz", b"80",
        b"0.0.0.0", b"::", b"1.2.3.4", b"[1.2.3.4]", b"203.0.113.7", b"10.0.0.1", b"127.0.0.1",
        b"2001:db8::1", b"fe80::1%eth0", b"::ffff:1.2.3.4", b"\xff", b"\xc3",
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48),
        prop::collection::vec(prop::sample::select(PIECES), 0..16)
            .prop_map(|pieces| pieces.concat()),
    ]
}

/// `ip` as a proxy writes it in the chain of `source`, in one of the forms real proxies use.
fn written(ip: IpAddr, source: &ClientIpSource, form: u8, port: u16) -> String {
    let plain = match ip {
        IpAddr::V4(v4) => match form % 3 {
            0 => v4.to_string(),
            1 => format!("{v4}:{port}"),
            _ => format!("[{v4}]:{port}"),
        },
        IpAddr::V6(v6) => match form % 3 {
            0 => v6.to_string(),
            1 => format!("[{v6}]:{port}"),
            _ => format!("[{}]", v6.to_string().to_uppercase()),
        },
    };
    match source {
        ClientIpSource::Forwarded => match form % 4 {
            0 => format!("for=\"{plain}\""),
            1 => format!("For=\"{plain}\";proto=https;by=10.0.0.1"),
            2 => format!("proto=https; for=\"{plain}\""),
            _ => format!("host=\"example.com\";for = \"{plain}\""),
        },
        _ => plain,
    }
}

/// Every address spelt anywhere in `lines`. An address the resolver reads is a run of the
/// characters of IPv4 (`0-9 .`) or IPv6 (`0-9 a-f A-F . :`) text bounded by other characters,
/// so this over-approximates what the header names: an answer outside it was made up.
fn addresses_in(lines: &[Vec<u8>]) -> HashSet<IpAddr> {
    let v4 = |b: &u8| b.is_ascii_digit() || *b == b'.';
    let v6 = |b: &u8| b.is_ascii_hexdigit() || *b == b'.' || *b == b':';
    let mut found = HashSet::new();
    for line in lines {
        for run in line
            .split(|b| !v4(b))
            .chain(line.split(|b| !v6(b)))
            .filter_map(|run| std::str::from_utf8(run).ok())
        {
            if let Ok(ip) = run.parse::<IpAddr>() {
                found.insert(ip.to_canonical());
            }
        }
    }
    found
}

proptest! {
    #[test]
    fn an_untrusted_peer_is_the_client_whatever_the_headers_say(
        peer in untrusted_addr(),
        lines in prop::collection::vec(hostile_line(), 0..4),
    ) {
        for source in all_sources() {
            let resolver = ClientIpResolver::new(trusted(), source);
            let got = resolver.resolve(peer, lines.iter().map(Vec::as_slice));
            prop_assert_eq!(got, ClientIp::Trusted(peer.to_canonical()));
        }
    }

    #[test]
    fn a_trusted_peer_gets_an_address_written_in_the_header_or_unknown(
        peer in trusted_peer(),
        lines in prop::collection::vec(hostile_line(), 0..4),
    ) {
        let named = addresses_in(&lines);
        for source in all_sources() {
            let is_chain = source != ClientIpSource::parse("x-real-ip").unwrap();
            let resolver = ClientIpResolver::new(trusted(), source);
            match resolver.resolve(peer, lines.iter().map(Vec::as_slice)) {
                ClientIp::Unknown { peer: key } => prop_assert_eq!(key, peer.to_canonical()),
                ClientIp::Trusted(ip) => {
                    prop_assert_eq!(ip, ip.to_canonical());
                    prop_assert!(!ip.is_unspecified());
                    prop_assert!(named.contains(&ip), "{} is not in {:?}", ip, lines);
                    if is_chain {
                        // Trusted hops are skipped, never reported as the client.
                        prop_assert!(!trusted().contains(ip), "{} is a proxy", ip);
                    } else {
                        // A single-address header: one line holding one value.
                        prop_assert_eq!(lines.len(), 1);
                        prop_assert!(!lines[0].contains(&b','));
                    }
                }
            }
        }
    }

    /// Whatever the client wrote, in lines of its own or at the start of the line the proxy
    /// appends to, the address the first trusted proxy appended is the answer.
    #[test]
    fn what_the_trusted_proxy_appends_wins_over_anything_the_client_wrote(
        client_lines in prop::collection::vec(hostile_line(), 0..3),
        client_prefix in prop::option::of(hostile_line()),
        client in untrusted_addr(),
        hops in prop::collection::vec((trusted_peer(), any::<bool>()), 0..3),
        form in any::<u8>(),
        port in any::<u16>(),
        peer in trusted_peer(),
    ) {
        for source in chain_sources() {
            let mut lines = client_lines.clone();
            let mut line = match &client_prefix {
                Some(prefix) => {
                    let mut line = prefix.clone();
                    line.extend_from_slice(b", ");
                    line
                }
                None => Vec::new(),
            };
            line.extend_from_slice(written(client, &source, form, port).as_bytes());
            for (i, (hop, new_line)) in hops.iter().enumerate() {
                let hop = written(*hop, &source, form.wrapping_add(i as u8), port).into_bytes();
                if *new_line {
                    lines.push(std::mem::replace(&mut line, hop));
                } else {
                    line.extend_from_slice(b",");
                    line.extend_from_slice(&hop);
                }
            }
            lines.push(line);
            let resolver = ClientIpResolver::new(trusted(), source);
            let got = resolver.resolve(peer, lines.iter().map(Vec::as_slice));
            prop_assert_eq!(
                got,
                ClientIp::Trusted(client.to_canonical()),
                "lines {:?}",
                lines.iter().map(|l| l.escape_ascii().to_string()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_single_ip_header_set_by_the_trusted_proxy_is_the_client(
        client in any::<IpAddr>().prop_filter("not unspecified", |ip| !ip.to_canonical().is_unspecified()),
        form in any::<u8>(),
        port in any::<u16>(),
        peer in trusted_peer(),
        extra in prop::option::of(hostile_line()),
    ) {
        let source = ClientIpSource::parse("cf-connecting-ip").unwrap();
        let value = written(client, &source, form, port).into_bytes();
        let resolver = ClientIpResolver::new(trusted(), source);
        prop_assert_eq!(
            resolver.resolve(peer, [value.as_slice()]),
            ClientIp::Trusted(client.to_canonical())
        );
        // A second line means something other than the proxy wrote one of them.
        if let Some(extra) = extra {
            prop_assert_eq!(
                resolver.resolve(peer, [extra.as_slice(), value.as_slice()]),
                ClientIp::Unknown { peer: peer.to_canonical() }
            );
        }
    }
}

// ---------- checkout body ----------

const KNOWN_FIELDS: [&str; 5] = ["network", "currency", "amount", "type", "redirect_url"];
/// Values the generators mark so that a test can tell they were echoed: no policy setting or
/// fixed message contains it.
const MARK: &str = "~~";

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// The policies the body is judged against: everything open, or allow-lists and a maximum.
fn policies() -> [CheckoutPolicy; 2] {
    [
        CheckoutPolicy::from_config(
            &[],
            &[],
            &strings(&["buy", "sell"]),
            &strings(&["https://app.example.com"]),
            "",
        )
        .unwrap(),
        CheckoutPolicy::from_config(
            &strings(&["ethereum", "TRC20"]),
            &strings(&["usdc", "USDT"]),
            &strings(&["buy"]),
            &strings(&["https://app.example.com", "http://localhost:3000"]),
            "1000.50",
        )
        .unwrap(),
    ]
}

/// A JSON value as written into a generated body.
#[derive(Debug, Clone)]
enum Json {
    Str(String),
    /// Raw JSON text of something that is not a string.
    Other(&'static str),
}

impl Json {
    fn text(&self) -> String {
        match self {
            Self::Str(s) => serde_json::to_string(s).unwrap(),
            Self::Other(raw) => (*raw).to_owned(),
        }
    }
}

fn not_a_string() -> impl Strategy<Value = Json> {
    prop::sample::select(vec![
        "null",
        "true",
        "0",
        "100",
        "-1.5",
        "1e3",
        "[]",
        "[\"x\"]",
        "{}",
        "{\"a\":1}",
    ])
    .prop_map(Json::Other)
}

fn name_value(listed: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(listed).prop_map(str::to_owned),
        2 => "[A-Za-z0-9_-]{0,34}",
        1 => prop::sample::select(vec!["ETHEREUM", "usdc ", " TRC20", "eth.", "a/b", "ü", "\u{0}"])
            .prop_map(str::to_owned),
        1 => any::<String>().prop_map(|s| format!("{s}{MARK}")),
    ]
}

fn amount_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[1-9][0-9]{0,3}(\\.[0-9]{1,2})?",
        2 => "[0-9]{1,19}(\\.[0-9]{0,19})?",
        1 => prop::sample::select(vec![
            "1000.50", "1000.5", "1000.500000", "1000.51", "01000.50", "0", "0.0", "00.000",
            ".5", "5.", "+1", "-1", "1e3", "1,5", " 1", "1 ", "1..2", "١",
        ])
        .prop_map(str::to_owned),
        1 => "[0-9.+eE -]{0,8}".prop_map(|s| format!("{s}{MARK}")),
    ]
}

fn type_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["buy", "sell"]).prop_map(str::to_owned),
        2 => prop::sample::select(vec!["Buy", "SELL", "", "rent", "buy "]).prop_map(str::to_owned),
        1 => any::<String>().prop_map(|s| format!("{s}{MARK}")),
    ]
}

/// Redirect URLs with the origin they are accepted for (`None`: never accepted) and the form
/// they are forwarded in.
#[rustfmt::skip]
const REDIRECTS: &[(&str, Option<&str>, &str)] = &[
    ("https://app.example.com/done", Some("https://app.example.com"), "https://app.example.com/done"),
    ("https://APP.example.com:443/x?y=1#z", Some("https://app.example.com"), "https://app.example.com/x?y=1#z"),
    ("https://app.example.com", Some("https://app.example.com"), "https://app.example.com/"),
    ("http://localhost:3000/cb", Some("http://localhost:3000"), "http://localhost:3000/cb"),
    ("http://app.example.com/", Some("http://app.example.com"), ""),
    ("https://app.example.com:8443/", Some("https://app.example.com:8443"), ""),
    ("https://app.example.com.evil.example/", Some("https://app.example.com.evil.example"), ""),
    ("https://user@app.example.com/", None, ""),
    ("https://app.example.com@evil.example/", None, ""),
    ("https://app.example.com\\@evil.example/", None, ""),
    ("javascript:alert(1)", None, ""),
    ("/relative/path", None, ""),
    ("//app.example.com/", None, ""),
    ("https://app.example.com/a b", None, ""),
    ("ftp://app.example.com/", None, ""),
    ("", None, ""),
];

fn redirect_value() -> impl Strategy<Value = String> {
    prop_oneof![
        // The first four are accepted by at least one policy.
        4 => prop::sample::select(&REDIRECTS[..4]).prop_map(|(url, _, _)| url.to_owned()),
        4 => prop::sample::select(REDIRECTS).prop_map(|(url, _, _)| url.to_owned()),
        1 => any::<String>().prop_map(|s| format!("{MARK}{s}")),
    ]
}

fn unknown_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "partner_user_id",
            "user_email",
            "client_ip",
            "address",
            "Network",
            "AMOUNT",
            "redirectUrl",
            "",
            "net\u{200b}work",
            "\u{202e}evil",
            "a\nb",
            "__proto__",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,12}".prop_filter("unknown", |k| !KNOWN_FIELDS.contains(&k.as_str())),
        any::<String>().prop_filter("unknown, unmarked", |k| {
            !KNOWN_FIELDS.contains(&k.as_str()) && !k.contains(MARK)
        }),
        "[a-z]{70,90}",
    ]
}

/// One field: absent, a string drawn from `value`, or something that is not a string.
fn field(value: impl Strategy<Value = String>) -> impl Strategy<Value = Option<Json>> {
    prop_oneof![
        1 => Just(None),
        20 => value.prop_map(|s| Some(Json::Str(s))),
        1 => not_a_string().prop_map(Some),
    ]
}

/// The body's members in document order; keys may repeat.
fn body_members() -> impl Strategy<Value = Vec<(String, Json)>> {
    let known = (
        field(name_value(&["ethereum", "TRC20", "polygon"])),
        field(name_value(&["usdc", "USDT", "eth"])),
        field(amount_value()),
        prop_oneof![Just(None), field(type_value())],
        prop_oneof![Just(None), field(redirect_value())],
    );
    let extra = prop_oneof![
        (
            unknown_key(),
            prop_oneof![
                any::<String>().prop_map(|s| Json::Str(format!("{s}{MARK}"))),
                not_a_string(),
            ]
        ),
        (
            prop::sample::select(KNOWN_FIELDS.to_vec()).prop_map(str::to_owned),
            "[a-z0-9]{0,8}".prop_map(|s| Json::Str(format!("{s}{MARK}")))
        ),
    ];
    let extras = prop_oneof![5 => Just(Vec::new()), 1 => prop::collection::vec(extra, 1..3)];
    (known, extras)
        .prop_map(|((network, currency, amount, ty, redirect), extras)| {
            let mut members: Vec<(String, Json)> = [network, currency, amount, ty, redirect]
                .into_iter()
                .zip(KNOWN_FIELDS)
                .filter_map(|(value, key)| Some((key.to_owned(), value?)))
                .collect();
            members.extend(extras);
            members
        })
        .prop_shuffle()
}

fn body_text(members: &[(String, Json)], spaced: bool) -> String {
    let sep = if spaced { " , " } else { "," };
    let members: Vec<String> = members
        .iter()
        .map(|(key, value)| format!("{}:{}", serde_json::to_string(key).unwrap(), value.text()))
        .collect();
    if spaced {
        format!("\n {{ {} }} \n", members.join(sep))
    } else {
        format!("{{{}}}", members.join(sep))
    }
}

fn is_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The amount times 10^18 if it is a positive decimal string as the interface defines it.
fn amount_scaled(s: &str) -> Option<u128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !(1..=18).contains(&int.len()) || !digits(int) || frac.len() > 18 || !digits(frac) {
        return None;
    }
    if s.contains('.') && frac.is_empty() {
        return None;
    }
    let value =
        int.parse::<u128>().ok()? * 10u128.pow(18) + format!("{frac:0<18}").parse::<u128>().ok()?;
    (value > 0).then_some(value)
}

/// A checked request as the interface defines it: network, currency, amount, type and the
/// redirect URL in the form it is forwarded in.
type Checked = (String, String, String, Option<CheckoutType>, Option<String>);

/// What the interface says about a body made of `members`: the checked request, or the field a
/// refusal names (`None` for an unknown key, whose name is sanitised before it is reported).
fn expected(
    members: &[(String, Json)],
    policy: &CheckoutPolicy,
) -> Result<Checked, Option<&'static str>> {
    let mut fields: [Option<&str>; 5] = [None; 5];
    for (key, value) in members {
        let index = KNOWN_FIELDS.iter().position(|k| k == key).ok_or(None)?;
        let name = Some(KNOWN_FIELDS[index]);
        match value {
            Json::Str(s) if fields[index].is_none() => fields[index] = Some(s),
            _ => return Err(name),
        }
    }
    let [network, currency, amount, ty, redirect] = fields;
    let network = network.ok_or(Some("network"))?;
    let currency = currency.ok_or(Some("currency"))?;
    let amount = amount.ok_or(Some("amount"))?;
    let allowed = |list: &[String], v: &str| list.is_empty() || list.iter().any(|a| a == v);
    if !is_name(network) || !allowed(&policy.networks, network) {
        return Err(Some("network"));
    }
    if !is_name(currency) || !allowed(&policy.currencies, currency) {
        return Err(Some("currency"));
    }
    let value = amount_scaled(amount).ok_or(Some("amount"))?;
    if let Some(max) = &policy.max_amount
        && value > amount_scaled(max.as_str()).unwrap()
    {
        return Err(Some("amount"));
    }
    let ty = match ty {
        None => None,
        Some(t) => Some(
            CheckoutType::parse(t)
                .filter(|t| policy.types.contains(t))
                .ok_or(Some("type"))?,
        ),
    };
    let redirect = match redirect {
        None => None,
        Some(url) => {
            let (_, origin, forwarded) = REDIRECTS
                .iter()
                .find(|(u, _, _)| *u == url)
                .ok_or(Some("redirect_url"))?;
            let accepted =
                origin.is_some_and(|o| policy.redirect_url_origins.iter().any(|a| a == o));
            if !accepted {
                return Err(Some("redirect_url"));
            }
            Some((*forwarded).to_owned())
        }
    };
    Ok((
        network.to_owned(),
        currency.to_owned(),
        amount.to_owned(),
        ty,
        redirect,
    ))
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_every_refusal_names_a_field(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            "[{}\\[\\]\":,a-z0-9._\\\\ -]{0,80}".prop_map(String::into_bytes),
        ],
    ) {
        for policy in policies() {
            match parse_checkout_request(&body, &policy) {
                Ok(request) => {
                    // Only a JSON object that passes every rule gets through.
                    let object: Map<String, Value> = serde_json::from_slice(&body).unwrap();
                    prop_assert!(is_name(&request.network) && is_name(&request.currency));
                    prop_assert!(amount_scaled(request.amount.as_str()).is_some());
                    prop_assert!(object.keys().all(|k| KNOWN_FIELDS.contains(&k.as_str())));
                }
                Err(err) => {
                    prop_assert!(
                        err.message.contains(&err.field)
                            || err.message.contains(&format!("{:?}", err.field)),
                        "{:?}", err
                    );
                    prop_assert!(!err.message.chars().any(char::is_control), "{:?}", err);
                }
            }
        }
    }

    #[test]
    fn a_body_is_accepted_exactly_when_the_interface_rules_hold(
        members in body_members(),
        spaced in any::<bool>(),
    ) {
        let body = body_text(&members, spaced);
        for policy in policies() {
            let got = parse_checkout_request(body.as_bytes(), &policy);
            match (expected(&members, &policy), got) {
                (Ok((network, currency, amount, ty, redirect)), Ok(request)) => {
                    prop_assert_eq!(request.network, network);
                    prop_assert_eq!(request.currency, currency);
                    prop_assert_eq!(request.amount.as_str(), amount);
                    prop_assert_eq!(request.checkout_type, ty);
                    prop_assert_eq!(request.redirect_url, redirect);
                }
                (Err(field), Err(err)) => {
                    match field {
                        Some(field) => prop_assert_eq!(err.field.as_str(), field, "{}", body),
                        None => {
                            prop_assert!(err.message.starts_with("unknown field "), "{:?}", err);
                            prop_assert!(err.field.chars().count() <= 64);
                        }
                    }
                    prop_assert!(
                        err.message.contains(&format!("{:?}", err.field))
                            || err.message.starts_with(&err.field),
                        "{:?}", err
                    );
                    // A value the browser sent is never repeated back.
                    prop_assert!(!err.message.contains(MARK), "{:?}", err);
                    prop_assert!(!err.message.chars().any(char::is_control), "{:?}", err);
                }
                (want, got) => prop_assert!(false, "body {} : want {:?}, got {:?}", body, want, got),
            }
        }
    }
}

// ---------- session token extraction ----------

const COOKIE: &str = "session";

/// The value of a cookie pair as a browser or a client might send it.
fn cookie_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._~-]{0,24}",
        1 => "[A-Za-z0-9._-]{0,12}".prop_map(|v| format!("\"{v}\"")),
        1 => prop::sample::select(vec!["", "\"\"", "a=b", "x\"y", "=", "é"]).prop_map(str::to_owned),
    ]
}

fn cookie_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        COOKIE,
        COOKIE,
        "session2",
        "xsession",
        "Session",
        "SESSION",
        "sess",
        "other",
        "__Host-id",
        "",
    ])
    .prop_map(str::to_owned)
}

/// The value the documented rules give for a cookie value: surrounding quotes removed, and an
/// empty value means no session.
fn unquoted(value: &str) -> Option<&str> {
    let value = value.trim_ascii();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    (!value.is_empty()).then_some(value)
}

/// Whether `part` is a slice of `whole`, i.e. borrowed from the input rather than made up.
fn is_within(part: &str, whole: &[u8]) -> bool {
    let start = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    p >= start && p + part.len() <= start + whole.len()
}

proptest! {
    #[test]
    fn a_cookie_token_is_a_non_empty_piece_of_one_line(
        lines in prop::collection::vec(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            "[a-z =;\"\t2]{0,40}".prop_map(String::into_bytes),
        ], 0..4),
    ) {
        if let Some(token) = token_from_cookie_header(lines.iter().map(Vec::as_slice), COOKIE) {
            prop_assert!(!token.is_empty());
            prop_assert!(!token.contains(';'));
            prop_assert!(lines.iter().any(|line| is_within(token, line) && std::str::from_utf8(line).is_ok()));
        }
        prop_assert_eq!(token_from_cookie_header(lines.iter().map(Vec::as_slice), ""), None);
    }

    #[test]
    fn the_first_cookie_with_the_configured_name_is_the_token(
        lines in prop::collection::vec(
            (
                prop::collection::vec((cookie_name(), cookie_value()), 0..5),
                prop::sample::select(vec![";", "; ", " ; ", ";\t"]),
                any::<bool>(),
            ),
            0..4,
        ),
    ) {
        let mut raw: Vec<Vec<u8>> = Vec::new();
        let mut want: Option<Option<String>> = None;
        for (pairs, sep, not_utf8) in &lines {
            let text: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
            let mut line = text.join(sep).into_bytes();
            if *not_utf8 {
                // A line that is not UTF-8 is skipped whole, its cookies with it.
                line.extend_from_slice(b"; junk=\xff");
            } else if want.is_none()
                && let Some((_, value)) = pairs.iter().find(|(n, _)| n == COOKIE)
            {
                want = Some(unquoted(value).map(str::to_owned));
            }
            raw.push(line);
        }
        let got = token_from_cookie_header(raw.iter().map(Vec::as_slice), COOKIE);
        prop_assert_eq!(got.map(str::to_owned), want.flatten(), "{:?}", lines);
    }

    #[test]
    fn a_bearer_token_is_what_follows_the_scheme_and_nothing_else(
        value in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            "[ \tBbEeAaRr]{0,10}[ \t]{0,3}[A-Za-z0-9._~+/=\t -]{0,20}".prop_map(String::into_bytes),
        ],
    ) {
        if let Some(token) = token_from_authorization(&value) {
            prop_assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()));
            let text = std::str::from_utf8(&value).unwrap();
            prop_assert!(is_within(token, &value));
            let before = text.trim_ascii().strip_suffix(token).unwrap();
            prop_assert!(before.ends_with(' '));
            prop_assert!(before.trim_end_matches(' ').eq_ignore_ascii_case("bearer"), "{:?}", text);
        }
    }

    #[test]
    fn a_well_formed_bearer_header_gives_its_token(
        scheme in prop::sample::select(vec!["Bearer", "bearer", "BEARER", "bEaReR", "Basic", "Bearer:", "Token", ""]),
        spaces in prop::sample::select(vec![" ", "  ", "\t", " \t"]),
        token in prop_oneof![
            "[A-Za-z0-9._~+/-]{1,40}=*",
            prop::sample::select(vec!["", "a b", "a\tb", "é", "a\u{7f}"]).prop_map(str::to_owned),
        ],
        outer in prop::sample::select(vec!["", " ", "\t"]),
    ) {
        let value = format!("{outer}{scheme}{spaces}{token}{outer}");
        let want = (scheme.eq_ignore_ascii_case("bearer")
            && spaces.starts_with(' ')
            && spaces.trim_start_matches(' ').is_empty()
            && !token.is_empty()
            && token.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(token.as_str());
        prop_assert_eq!(token_from_authorization(value.as_bytes()), want, "{:?}", value);
    }
}

// ---------- JWT ----------

const SECRET: &str = "hs256-property-secret-0123456789abcdef";
const OTHER_SECRET: &str = "hs256-another-secret-0123456789abcdef";
const LEEWAY_S: u64 = 30;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One verifier per algorithm, built once: keys are parsed at start-up in the service too.
fn verifier(algorithm: JwtAlgorithm) -> &'static JwtVerifier {
    static VERIFIERS: LazyLock<[JwtVerifier; 3]> = LazyLock::new(|| {
        [
            JwtAlgorithm::HS256,
            JwtAlgorithm::RS256,
            JwtAlgorithm::ES256,
        ]
        .map(build_verifier)
    });
    &VERIFIERS[match algorithm {
        JwtAlgorithm::HS256 => 0,
        JwtAlgorithm::RS256 => 1,
        JwtAlgorithm::ES256 => 2,
    }]
}

fn build_verifier(algorithm: JwtAlgorithm) -> JwtVerifier {
    let pem = |file: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/jwt/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    JwtVerifier::new(JwtVerifierSettings {
        algorithm,
        hs256_secret: Some(SecretString::from(SECRET)),
        public_key_pem: match algorithm {
            JwtAlgorithm::HS256 => None,
            JwtAlgorithm::RS256 => Some(pem("rsa_public.pem")),
            JwtAlgorithm::ES256 => Some(pem("ec_public.pem")),
        },
        issuer: None,
        audience: None,
        user_id_claim: "sub".into(),
        email_claim: "email".into(),
        leeway_s: LEEWAY_S,
    })
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.claims.signature` with an HMAC-SHA256 signature under `secret`.
fn signed(header: &[u8], claims: &[u8], secret: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

const HS256_HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(HS256_HEADER.to_vec()),
        prop::sample::select(vec![
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS384"}"#,
            r#"{"alg":"RS256"}"#,
            r#"{"alg":"ES256"}"#,
            r#"{"alg":"hs256"}"#,
            r#"{"alg":"HS256","crit":["x"]}"#,
            r#"{"typ":"JWT"}"#,
            "[]",
            "null",
            r#"{"alg":"HS256","alg":"none"}"#,
            r#"{"alg":"HS256","kid":"../../etc/passwd"}"#,
        ])
        .prop_map(|h| h.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

/// A claim value of any JSON type, including the edge cases of the numeric claims.
fn claim_value() -> impl Strategy<Value = Value> {
    let now = now() as i64;
    prop_oneof![
        (-1_000_000i64..1_000_000).prop_map(move |d| json!(now + d)),
        prop::sample::select(vec![
            json!(null),
            json!(true),
            json!(0),
            json!(-1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e300),
            json!(-0.5),
            json!(now as f64 + 3600.5),
            json!("4102444800"),
            json!([]),
            json!({}),
            json!(""),
            json!("user-1"),
            json!("alice@example.com"),
            json!("a@b@c"),
            json!("x\ny@example.com"),
            json!(42),
        ]),
        any::<String>().prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
    ]
}

fn claims_object() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        4 => prop::sample::select(vec!["sub", "email", "exp", "nbf", "iat", "iss", "aud"])
            .prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    prop::collection::vec((key, claim_value()), 0..8).prop_map(|pairs| pairs.into_iter().collect())
}

/// Claims a valid session has, with one of them possibly replaced.
fn nearly_valid_claims() -> impl Strategy<Value = Map<String, Value>> {
    let now = now();
    (
        prop::option::of((
            prop::sample::select(vec!["sub", "email", "exp", "nbf"]),
            claim_value(),
        )),
        prop::option::of(prop::sample::select(vec!["sub", "email", "exp"])),
    )
        .prop_map(move |(replace, remove)| {
            let mut claims = Map::new();
            claims.insert("sub".into(), json!("user-1"));
            claims.insert("email".into(), json!("alice@example.com"));
            claims.insert("exp".into(), json!(now + 600));
            claims.insert("iat".into(), json!(now));
            if let Some((key, value)) = replace {
                claims.insert(key.to_owned(), value);
            }
            if let Some(key) = remove {
                claims.remove(key);
            }
            claims
        })
}

/// The numeric value of a time claim (`exp`, `nbf`) as a number of seconds, when it has one: a
/// non-negative integer, or a non-negative float below 2^64.
fn seconds(value: &Value) -> Option<f64> {
    match value.as_u64() {
        Some(n) => Some(n as f64),
        None => value
            .as_f64()
            .filter(|v| v.is_finite() && *v >= 0.0 && *v < u64::MAX as f64),
    }
}

/// A user id claim as the interface accepts it: an integer, or a string that is a valid user id
/// (the rule every session source shares, tested on its own with the sources).
fn user_id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => is_valid_user_id(s).then(|| s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn is_email_shaped(s: &str) -> bool {
    !s.is_empty()
        && s.chars().count() <= 320
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
}

/// Checks the verdict on a correctly signed token carrying `claims`: a session only when every
/// claim is as documented; Expired only past `exp`, and always when that is the only fault.
fn check_signed_claims(
    claims: &Map<String, Value>,
    got: Result<SessionUser, SessionError>,
) -> Result<(), TestCaseError> {
    // Seconds of slack for the clock moving between signing and checking.
    const SLACK: f64 = 5.0;
    let now = now() as f64;
    let leeway = LEEWAY_S as f64;
    let exp = claims.get("exp").and_then(seconds);
    let nbf = claims.get("nbf");
    let sub = claims.get("sub").and_then(user_id);
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .filter(|e| is_email_shaped(e));
    // RFC 7519 makes `iss` one string: any other value is a malformed token, whether or not an
    // issuer is configured.
    let iss_ok = claims.get("iss").is_none_or(Value::is_string);
    match &got {
        Ok(user) => {
            let exp = exp.ok_or_else(|| TestCaseError::fail("a session without a numeric exp"))?;
            prop_assert!(
                exp.round() >= now - leeway - SLACK,
                "a session past exp: {:?}",
                claims
            );
            if let Some(nbf) = nbf {
                let nbf = seconds(nbf)
                    .ok_or_else(|| TestCaseError::fail("a session with a malformed nbf"))?;
                prop_assert!(
                    nbf.round() <= now + leeway + SLACK,
                    "a session before nbf: {:?}",
                    claims
                );
            }
            prop_assert!(iss_ok, "a session with a non-string iss: {:?}", claims);
            prop_assert_eq!(Some(&user.user_id), sub.as_ref(), "{:?}", claims);
            prop_assert_eq!(Some(user.email.expose()), email, "{:?}", claims);
        }
        Err(SessionError::Expired) => {
            let exp = exp.ok_or_else(|| TestCaseError::fail("Expired without a numeric exp"))?;
            prop_assert!(
                exp.round() <= now - leeway + SLACK,
                "Expired before exp: {:?}",
                claims
            );
        }
        Err(SessionError::Invalid) => {}
        Err(SessionError::Missing) => prop_assert!(false, "a token is never Missing"),
        Err(SessionError::Backend) => prop_assert!(false, "a fixed key never needs a backend"),
    }
    let nbf_ok = nbf.is_none_or(|nbf| seconds(nbf).is_some_and(|nbf| nbf <= now - SLACK));
    let only_fault_is_exp = sub.is_some()
        && email.is_some()
        && nbf_ok
        && exp.is_some_and(|exp| exp < now - leeway - SLACK);
    if only_fault_is_exp {
        prop_assert_eq!(&got, &Err(SessionError::Expired), "{:?}", claims);
    }
    let all_good = sub.is_some()
        && email.is_some()
        && iss_ok
        && nbf_ok
        && exp.is_some_and(|exp| exp > now + SLACK);
    if all_good {
        prop_assert!(got.is_ok(), "{:?}: {:?}", claims, got);
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_text_is_never_a_session(token in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.=+/ -]{0,120}",
    ]) {
        for algorithm in [JwtAlgorithm::HS256, JwtAlgorithm::RS256, JwtAlgorithm::ES256] {
            let want = if token.is_empty() { SessionError::Missing } else { SessionError::Invalid };
            prop_assert_eq!(verifier(algorithm).verify(&token), Err(want));
        }
    }

    #[test]
    fn arbitrary_three_part_tokens_are_invalid(
        parts in prop::collection::vec("[A-Za-z0-9_-]{0,60}", 3),
        extra in prop::option::of("[.=A-Za-z0-9+/]{1,4}"),
    ) {
        let mut token = parts.join(".");
        if let Some(extra) = extra {
            token.push_str(&extra);
        }
        for algorithm in [JwtAlgorithm::HS256, JwtAlgorithm::RS256, JwtAlgorithm::ES256] {
            prop_assert_eq!(verifier(algorithm).verify(&token), Err(SessionError::Invalid));
        }
    }

    #[test]
    fn arbitrary_base64url_segments_without_the_key_are_invalid(
        header in header_bytes(),
        claims in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80),
            claims_object().prop_map(|c| serde_json::to_vec(&c).unwrap()),
            nearly_valid_claims().prop_map(|c| serde_json::to_vec(&c).unwrap()),
        ],
        signature in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..72),
            Just(Vec::new()),
        ],
    ) {
        let token = format!("{}.{}.{}", b64(&header), b64(&claims), b64(&signature));
        for algorithm in [JwtAlgorithm::HS256, JwtAlgorithm::RS256, JwtAlgorithm::ES256] {
            prop_assert_eq!(verifier(algorithm).verify(&token), Err(SessionError::Invalid));
        }
        // Signed, but with another key.
        let forged = signed(&header, &claims, OTHER_SECRET);
        prop_assert_eq!(verifier(JwtAlgorithm::HS256).verify(&forged), Err(SessionError::Invalid));
    }

    #[test]
    fn a_signed_token_is_a_session_only_when_its_claims_are(
        claims in prop_oneof![claims_object(), nearly_valid_claims()],
    ) {
        let bytes = serde_json::to_vec(&claims).unwrap();
        let got = verifier(JwtAlgorithm::HS256).verify(&signed(HS256_HEADER, &bytes, SECRET));
        check_signed_claims(&claims, got)?;
        // The same claims under another key or another algorithm never pass.
        let forged = signed(HS256_HEADER, &bytes, OTHER_SECRET);
        prop_assert_eq!(verifier(JwtAlgorithm::HS256).verify(&forged), Err(SessionError::Invalid));
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(&bytes));
        prop_assert_eq!(verifier(JwtAlgorithm::HS256).verify(&none), Err(SessionError::Invalid));
    }

    #[test]
    fn signed_claims_that_are_not_an_object_are_invalid(
        claims in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            claim_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ],
    ) {
        prop_assume!(serde_json::from_slice::<Map<String, Value>>(&claims).is_err());
        let got = verifier(JwtAlgorithm::HS256).verify(&signed(HS256_HEADER, &claims, SECRET));
        prop_assert_eq!(got, Err(SessionError::Invalid));
    }
}

/// A positive control for the properties above: tokens signed by `signed` can be a session,
/// expired or invalid, so an Invalid verdict there is the verifier's and not a broken signature.
#[test]
fn hand_signed_tokens_reach_every_outcome() {
    let now = now();
    let verify = |claims: Value| {
        let bytes = serde_json::to_vec(&claims).unwrap();
        verifier(JwtAlgorithm::HS256).verify(&signed(HS256_HEADER, &bytes, SECRET))
    };
    let user = verify(json!({"sub": "user-1", "email": "alice@example.com", "exp": now + 600}));
    assert_eq!(user.unwrap().user_id, "user-1");
    let expired = verify(json!({"sub": "user-1", "email": "alice@example.com", "exp": now - 600}));
    assert_eq!(expired, Err(SessionError::Expired));
    let no_email = verify(json!({"sub": "user-1", "exp": now + 600}));
    assert_eq!(no_email, Err(SessionError::Invalid));
}
