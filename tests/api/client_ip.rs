//! The real-client-IP rules end to end: what Proof receives as `client_ip` for what the socket
//! peer and the forwarding headers say.
//!
//! The test client always connects from 127.0.0.1 (or ::1 where noted), so "behind a proxy" is
//! simulated by trusting that loopback address.

use std::net::TcpListener;

use proof_bff::config::Settings;
use wiremock::MockServer;

use crate::helpers::*;

const NO_CLIENT_IP: &str = "no trustworthy client address from a trusted proxy: client_ip left out";

fn configure(settings: &mut Settings, trusted_proxies: &[&str], source: &str) {
    settings.client_ip.trusted_proxies = trusted_proxies.iter().map(|s| s.to_string()).collect();
    settings.client_ip.source = source.into();
}

/// The service with `trusted_proxies` and `source`, Proof answering 200.
async fn spawn_behind(trusted_proxies: &[&str], source: &str) -> TestApp {
    let app = spawn_app_with(|s| configure(s, trusted_proxies, source)).await;
    widget_session_ok().mount(&app.proof).await;
    app
}

/// Sends one checkout carrying `headers` (a name may repeat: each is its own header line) and
/// returns the `client_ip` Proof received: `None` when the key was left out.
async fn client_ip_sent(app: &TestApp, headers: &[(&str, &str)]) -> Option<String> {
    client_ip_sent_with_id(app, headers, None).await
}

async fn client_ip_sent_with_id(
    app: &TestApp,
    headers: &[(&str, &str)],
    request_id: Option<&str>,
) -> Option<String> {
    let before = app.proof_requests().await.len();
    let mut request = app.checkout().json(&checkout_body());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(id) = request_id {
        request = request.header("X-Request-Id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "{headers:?}: {:?}",
        response.text().await
    );
    let requests = app.proof_requests().await;
    assert_eq!(requests.len(), before + 1, "{headers:?}");
    let sent: serde_json::Value = serde_json::from_slice(&requests[before].body).unwrap();
    let sent = sent.as_object().expect("a JSON object").clone();
    match sent.get("client_ip") {
        None => None,
        Some(serde_json::Value::String(ip)) => Some(ip.clone()),
        Some(other) => panic!("client_ip must be a string or absent, was {other}"),
    }
}

/// Header lines to send, and the `client_ip` Proof must then receive (`None`: left out).
type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);

/// Asserts each case's headers yield its `client_ip`.
async fn assert_cases(app: &TestApp, cases: &[Case<'_>]) {
    for (headers, want) in cases {
        assert_eq!(
            client_ip_sent(app, headers).await.as_deref(),
            *want,
            "headers {headers:?}"
        );
    }
}

const SPOOFING_HEADERS: &[(&str, &str)] = &[
    ("X-Forwarded-For", "203.0.113.9"),
    ("Forwarded", "for=203.0.113.9"),
    ("X-Real-IP", "203.0.113.9"),
    ("CF-Connecting-IP", "203.0.113.9"),
];

#[tokio::test]
async fn without_trusted_proxies_forwarding_headers_are_ignored() {
    for source in [
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "cf-connecting-ip",
    ] {
        let app = spawn_behind(&[], source).await;
        assert_eq!(
            client_ip_sent(&app, SPOOFING_HEADERS).await.as_deref(),
            Some("127.0.0.1"),
            "source {source}"
        );
    }
}

#[tokio::test]
async fn a_peer_outside_trusted_proxies_is_the_client_whatever_the_headers_say() {
    let app = spawn_behind(&["10.0.0.0/8", "2001:db8::/32"], "x-forwarded-for").await;
    assert_eq!(
        client_ip_sent(&app, SPOOFING_HEADERS).await.as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        client_ip_sent(&app, &[("X-Forwarded-For", "10.0.0.1")])
            .await
            .as_deref(),
        Some("127.0.0.1")
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_x_forwarded_for_gives_the_rightmost_untrusted_entry() {
    let app = spawn_behind(&["127.0.0.1"], "x-forwarded-for").await;
    let xff = |value| [("X-Forwarded-For", value)];
    assert_cases(
        &app,
        &[
            (&xff("203.0.113.9"), Some("203.0.113.9")),
            // The leftmost entry is whatever the client wrote.
            (&xff("198.51.100.1, 203.0.113.9"), Some("203.0.113.9")),
            (&xff("198.51.100.1,203.0.113.9"), Some("203.0.113.9")),
            // Trusted hops on the right are skipped.
            (&xff("203.0.113.9, 127.0.0.1"), Some("203.0.113.9")),
            (
                &xff("198.51.100.1, 203.0.113.9, 127.0.0.1, 127.0.0.1"),
                Some("203.0.113.9"),
            ),
            // A port, surrounding spaces.
            (&xff(" 203.0.113.9:8443 "), Some("203.0.113.9")),
        ],
    )
    .await;
}

#[tokio::test]
async fn x_forwarded_for_header_lines_are_joined_in_order() {
    let app = spawn_behind(&["127.0.0.1"], "x-forwarded-for").await;
    assert_cases(
        &app,
        &[
            (
                &[
                    ("X-Forwarded-For", "198.51.100.1"),
                    ("X-Forwarded-For", "203.0.113.9"),
                ],
                Some("203.0.113.9"),
            ),
            (
                &[
                    ("X-Forwarded-For", "203.0.113.9"),
                    ("X-Forwarded-For", "198.51.100.1"),
                ],
                Some("198.51.100.1"),
            ),
            // The last line holds only trusted hops: the walk continues into the line before.
            (
                &[
                    ("X-Forwarded-For", "198.51.100.1, 203.0.113.9"),
                    ("X-Forwarded-For", "127.0.0.1"),
                ],
                Some("203.0.113.9"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_untrustworthy_x_forwarded_for_leaves_client_ip_out() {
    let app = spawn_behind(&["127.0.0.1"], "x-forwarded-for").await;
    let xff = |value| [("X-Forwarded-For", value)];
    assert_cases(
        &app,
        &[
            // Every hop trusted: the proxy's own address is not the client.
            (&xff("127.0.0.1"), None),
            (&xff("127.0.0.1, 127.0.0.1"), None),
            // The rightmost untrusted entry is not an address: nothing to its left is believed.
            (&xff("203.0.113.9, unknown"), None),
            (&xff("203.0.113.9, garbage"), None),
            (&xff("203.0.113.9, _hidden"), None),
            (&xff("203.0.113.9, 0.0.0.0"), None),
            (&xff("203.0.113.9, ::"), None),
            (&xff("203.0.113.9, 203.0.113.10:99999"), None),
            (&xff("203.0.113.9, 203.0.113"), None),
            (&xff("203.0.113.9, "), None),
            (&xff("unknown, 127.0.0.1"), None),
            // The header is missing; other headers are not a substitute.
            (&[], None),
            (
                &[
                    ("X-Real-IP", "203.0.113.9"),
                    ("Forwarded", "for=203.0.113.9"),
                ],
                None,
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn forwarded_addresses_are_canonical() {
    let app = spawn_behind(&["127.0.0.1"], "x-forwarded-for").await;
    let xff = |value| [("X-Forwarded-For", value)];
    assert_cases(
        &app,
        &[
            (&xff("[2001:DB8::1]:443"), Some("2001:db8::1")),
            (&xff("2001:DB8:0:0:0:0:0:1"), Some("2001:db8::1")),
            (&xff("[2001:db8::1]"), Some("2001:db8::1")),
            (&xff("fe80::1%eth0"), Some("fe80::1")),
            (&xff("::ffff:203.0.113.9"), Some("203.0.113.9")),
            (&xff("[::FFFF:203.0.113.9]:80"), Some("203.0.113.9")),
            // A mapped form of a trusted address is trusted too.
            (&xff("203.0.113.9, ::ffff:127.0.0.1"), Some("203.0.113.9")),
        ],
    )
    .await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_forwarded_for_is_read() {
    let app = spawn_behind(&["127.0.0.0/8"], "forwarded").await;
    let fwd = |value| [("Forwarded", value)];
    assert_cases(
        &app,
        &[
            (&fwd(r#"for="[2001:db8::7]:4711""#), Some("2001:db8::7")),
            (&fwd("for=203.0.113.9"), Some("203.0.113.9")),
            (
                &fwd(r#"for=198.51.100.1, for="[2001:db8::7]:4711";proto=https;by=127.0.0.2"#),
                Some("2001:db8::7"),
            ),
            (
                &fwd("for=203.0.113.9;proto=https, for=127.0.0.5"),
                Some("203.0.113.9"),
            ),
            (
                &[
                    ("Forwarded", "for=198.51.100.1"),
                    ("Forwarded", "for=203.0.113.9"),
                ],
                Some("203.0.113.9"),
            ),
            // Not addresses, or nothing untrusted.
            (&fwd("for=_hidden"), None),
            (&fwd("for=unknown"), None),
            (&fwd("for=203.0.113.9, for=unknown"), None),
            (&fwd("for=127.0.0.1"), None),
            (&fwd("proto=https"), None),
            // X-Forwarded-For is not the configured source.
            (&[("X-Forwarded-For", "203.0.113.9")], None),
        ],
    )
    .await;
}

/// The client writes a `Forwarded` value with a quote it never closes, and the proxy appends its
/// own element to the same line, as nginx's `$proxy_add_forwarded`-style configurations do. The
/// elements are split on commas before quotes are read, so the client cannot swallow the proxy's
/// element and leave Proof without its address.
#[tokio::test]
async fn a_quote_the_client_leaves_open_does_not_hide_the_forwarded_element_of_the_proxy() {
    let app = spawn_behind(&["127.0.0.0/8"], "forwarded").await;
    let fwd = |value| [("Forwarded", value)];
    assert_cases(
        &app,
        &[
            (
                &fwd(r#"for="198.51.100.1, for=203.0.113.9"#),
                Some("203.0.113.9"),
            ),
            (
                &fwd(r#"for="198.51.100.1, for="[2001:db8::7]:4711";proto=https"#),
                Some("2001:db8::7"),
            ),
            (
                &fwd(r#"for="198.51.100.1, for=203.0.113.9, for=127.0.0.2"#),
                Some("203.0.113.9"),
            ),
            // The element the proxy appended is itself malformed: still nothing is believed.
            (&fwd(r#"for=203.0.113.9, for="198.51.100.1"#), None),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_single_ip_header_is_used_as_is_when_the_peer_is_trusted() {
    let app = spawn_behind(&["127.0.0.1"], "cf-connecting-ip").await;
    assert_cases(
        &app,
        &[
            (&[("CF-Connecting-IP", "203.0.113.9")], Some("203.0.113.9")),
            (&[("CF-Connecting-IP", "2001:DB8::9")], Some("2001:db8::9")),
            (&[], None),
            (&[("X-Forwarded-For", "203.0.113.9")], None),
            (&[("CF-Connecting-IP", "unknown")], None),
            (&[("CF-Connecting-IP", "203.0.113.9, 198.51.100.1")], None),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_ipv4_mapped_trusted_range_covers_the_plain_ipv4_peer() {
    for trusted in ["::ffff:127.0.0.0/104", "::ffff:127.0.0.1"] {
        let app = spawn_behind(&[trusted], "x-forwarded-for").await;
        assert_eq!(
            client_ip_sent(&app, &[("X-Forwarded-For", "203.0.113.9")])
                .await
                .as_deref(),
            Some("203.0.113.9"),
            "trusted {trusted}"
        );
        assert_eq!(
            client_ip_sent(&app, &[("X-Forwarded-For", "127.0.0.1")]).await,
            None,
            "trusted {trusted}"
        );
    }
}

#[tokio::test]
async fn a_missing_client_address_is_logged_with_the_request_id() {
    let app = spawn_behind(&["127.0.0.1"], "x-forwarded-for").await;

    let omitted = "cip-omitted-warning";
    let sent =
        client_ip_sent_with_id(&app, &[("X-Forwarded-For", "127.0.0.1")], Some(omitted)).await;
    assert_eq!(sent, None);
    let warnings = log_events_with_message(omitted, NO_CLIENT_IP);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["level"], "WARN");

    let resolved = "cip-resolved-no-warning";
    let sent =
        client_ip_sent_with_id(&app, &[("X-Forwarded-For", "203.0.113.9")], Some(resolved)).await;
    assert_eq!(sent.as_deref(), Some("203.0.113.9"));
    assert!(log_events_with_message(resolved, NO_CLIENT_IP).is_empty());
}

/// The service listening on `bind` (a loopback address of another family or form than the
/// helpers use) and reached at `host`, or `None` where the host cannot bind it.
async fn spawn_listening_on(bind: &str, host: &str, trusted_proxies: &[&str]) -> Option<TestApp> {
    let listener = match TcpListener::bind(bind) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {bind} here ({e}): test not run");
            return None;
        }
    };
    let proof = MockServer::start().await;
    widget_session_ok().mount(&proof).await;
    let mut settings = base_settings(&proof);
    configure(&mut settings, trusted_proxies, "x-forwarded-for");
    let config = settings.validate().expect("test settings are valid");
    Some(spawn_on(listener, host, config, proof).await)
}

#[tokio::test]
async fn an_ipv6_peer_is_matched_against_ipv6_trusted_proxies() {
    let Some(app) = spawn_listening_on("[::1]:0", "[::1]", &["127.0.0.1"]).await else {
        return;
    };
    assert_eq!(
        client_ip_sent(&app, &[("X-Forwarded-For", "203.0.113.9")])
            .await
            .as_deref(),
        Some("::1"),
        "::1 is not inside 127.0.0.1"
    );

    let Some(app) = spawn_listening_on("[::1]:0", "[::1]", &["::1/128"]).await else {
        return;
    };
    assert_eq!(
        client_ip_sent(&app, &[("X-Forwarded-For", "203.0.113.9, ::1")])
            .await
            .as_deref(),
        Some("203.0.113.9")
    );
}

#[tokio::test]
async fn a_peer_seen_as_ipv4_mapped_ipv6_is_treated_as_ipv4() {
    // An IPv6 socket bound to a mapped address sees IPv4 clients as ::ffff:a.b.c.d.
    let bind = "[::ffff:127.0.0.1]:0";
    let Some(app) = spawn_listening_on(bind, "127.0.0.1", &[]).await else {
        return;
    };
    assert_eq!(
        client_ip_sent(&app, SPOOFING_HEADERS).await.as_deref(),
        Some("127.0.0.1")
    );

    let Some(app) = spawn_listening_on(bind, "127.0.0.1", &["127.0.0.1"]).await else {
        return;
    };
    assert_eq!(
        client_ip_sent(&app, &[("X-Forwarded-For", "203.0.113.9")])
            .await
            .as_deref(),
        Some("203.0.113.9")
    );
}
