//! Drives the compiled `proof-bff` binary: `check-config`, environment overrides, secrets read from
//! files, and the running service (logs, graceful shutdown) in front of a small stand-in for Proof.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proof_bff::session::sign_hs256;
use support::eventually::{EVENTUALLY, eventually};
use support::free_port;
use support::process::{Process, bff};
use support::raw_http::{self, RawRequest, RawResponse};

const CLIENT_TOKEN: &str = "pk_test_cli_5e1b7d3a9f2c4e6081a3c5e7f9b1d3a5";
const JWT_SECRET: &str = "cli-hs256-secret-that-is-long-enough-0123456789";
const APP_ORIGIN: &str = "https://app.example.com";
const PROOF_ORIGIN: &str = "https://partner.example.com";
const USER_ID: &str = "user-cli-7";
const USER_EMAIL: &str = "carol.private@example.org";
const CHECKOUT_BODY: &str = r#"{"network":"TRC20","currency":"USDT","amount":"100"}"#;
/// A widget answer with deliberate formatting (spacing, key order, a number with a trailing zero) so
/// that only a byte-for-byte relay matches it.
const WIDGET_BODY: &str = r#"{"merchant_transaction_id": "mtx_cli_1", "widget_id":"w_1","signature":"v2:00","amount":"100","fee":1.50}"#;

// ---------------------------------------------------------------------------------------------
// Scaffolding: temp dirs, config files, the binary.
// ---------------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "proof-bff-cli-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TOML config as ordered sections of `key = raw TOML value` lines, so a test can change one
/// key and keep everything else valid.
#[derive(Clone)]
struct Config {
    sections: Vec<(&'static str, Vec<(String, String)>)>,
}

fn quoted(value: &str) -> String {
    format!("{value:?}")
}

fn path_value(path: &Path) -> String {
    quoted(path.to_str().expect("UTF-8 temp path"))
}

impl Config {
    /// Every key INTERFACE.md documents, with values that pass validation.
    fn valid() -> Self {
        let s = |v: &str| quoted(v);
        let raw = |v: &str| v.to_owned();
        let sections: Vec<(&'static str, Vec<(&str, String)>)> = vec![
            (
                "server",
                vec![
                    ("listen", s("127.0.0.1:8080")),
                    ("workers", raw("1")),
                    ("shutdown_timeout_s", raw("5")),
                    ("drain_delay_s", raw("0")),
                    ("client_request_timeout_ms", raw("10000")),
                    ("keep_alive_s", raw("15")),
                    ("max_connections", raw("10000")),
                    ("max_body_bytes", raw("16384")),
                ],
            ),
            (
                "proof",
                vec![
                    ("base_url", s("http://127.0.0.1:9")),
                    ("client_token", s(CLIENT_TOKEN)),
                    ("client_token_file", s("")),
                    ("token_reload_s", raw("10")),
                    ("origin", s(PROOF_ORIGIN)),
                    ("connect_timeout_ms", raw("1000")),
                    ("request_timeout_ms", raw("5000")),
                    ("deadline_ms", raw("8000")),
                    ("max_attempts", raw("3")),
                    ("address", s("")),
                ],
            ),
            (
                "browser",
                vec![
                    ("allowed_origins", format!("[{}]", s(APP_ORIGIN))),
                    ("require_csrf_header", raw("false")),
                    ("allow_missing_origin", raw("false")),
                ],
            ),
            ("session", vec![("source", s("jwt"))]),
            (
                "session.jwt",
                vec![
                    ("cookie", s("session")),
                    ("bearer", raw("false")),
                    ("algorithm", s("HS256")),
                    ("secret", s(JWT_SECRET)),
                    ("secret_file", s("")),
                    ("public_key_pem_file", s("")),
                    ("issuer", s("")),
                    ("audience", s("")),
                    ("user_id_claim", s("sub")),
                    ("email_claim", s("email")),
                    ("leeway_s", raw("30")),
                ],
            ),
            (
                "client_ip",
                vec![
                    ("trusted_proxies", raw("[]")),
                    ("source", s("x-forwarded-for")),
                ],
            ),
            (
                "checkout",
                vec![
                    ("networks", raw("[]")),
                    ("currencies", raw("[]")),
                    ("types", format!("[{}]", s("buy"))),
                    ("redirect_url_origins", raw("[]")),
                    ("max_amount", s("")),
                    ("idempotency_ttl_s", raw("600")),
                    ("idempotency_max_bytes", raw("67108864")),
                    ("dedupe_window_ms", raw("0")),
                ],
            ),
            (
                "rate_limit",
                vec![
                    ("backend", s("memory")),
                    ("redis_url", s("")),
                    ("redis_cluster", raw("false")),
                    ("redis_key_prefix", s("proof-bff")),
                    ("redis_timeout_ms", raw("50")),
                    ("per_user_burst", raw("5")),
                    ("per_user_per_minute", raw("10")),
                    ("per_ip_burst", raw("20")),
                    ("per_ip_per_minute", raw("60")),
                    ("on_backend_error", s("deny")),
                    ("status_per_user_per_minute", raw("60")),
                ],
            ),
            (
                "status",
                vec![
                    ("poll_interval_s", raw("5")),
                    ("max_streams_per_user", raw("3")),
                    ("max_streams", raw("10000")),
                    ("max_stream_duration_s", raw("3600")),
                    ("webhook_path", s("")),
                ],
            ),
            ("metrics", vec![("listen", s(""))]),
            (
                "telemetry",
                vec![("otlp_endpoint", s("")), ("sample_ratio", raw("1.0"))],
            ),
            ("log", vec![("format", s("json")), ("level", s("info"))]),
        ];
        Self {
            sections: sections
                .into_iter()
                .map(|(name, keys)| {
                    let keys = keys.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                    (name, keys)
                })
                .collect(),
        }
    }

    fn section(&mut self, section: &str) -> &mut Vec<(String, String)> {
        self.sections
            .iter_mut()
            .find(|(name, _)| *name == section)
            .map(|(_, keys)| keys)
            .unwrap_or_else(|| panic!("no section [{section}]"))
    }

    /// Sets `key` to a raw TOML value (quote strings with [`quoted`]), adding it when absent.
    fn set(mut self, section: &str, key: &str, raw_value: impl Into<String>) -> Self {
        let raw_value = raw_value.into();
        let keys = self.section(section);
        match keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, value)) => *value = raw_value,
            None => keys.push((key.to_owned(), raw_value)),
        }
        self
    }

    fn set_str(self, section: &str, key: &str, value: &str) -> Self {
        self.set(section, key, quoted(value))
    }

    /// Adds a table the valid file leaves out, such as `[session.forward]`.
    fn with_section(mut self, section: &'static str) -> Self {
        self.sections.push((section, Vec::new()));
        self
    }

    fn remove(mut self, section: &str, key: &str) -> Self {
        let keys = self.section(section);
        let before = keys.len();
        keys.retain(|(k, _)| k != key);
        assert_ne!(before, keys.len(), "[{section}] has no key {key}");
        self
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (name, keys) in &self.sections {
            out.push_str(&format!("[{name}]\n"));
            for (key, value) in keys {
                out.push_str(&format!("{key} = {value}\n"));
            }
            out.push('\n');
        }
        out
    }

    fn write_to(&self, dir: &TempDir) -> PathBuf {
        dir.write("proof-bff.toml", &self.render())
    }
}

fn check_config(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = bff();
    command.arg("check-config").arg("--config").arg(config);
    command.envs(env.iter().copied());
    command.output().expect("run proof-bff check-config")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_passes(output: &Output) {
    assert!(
        output.status.success(),
        "expected exit 0, got {:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Non-zero exit and exactly one non-empty line on stderr that contains every one of `needles`.
#[track_caller]
fn assert_fails_naming(output: &Output, needles: &[&str]) {
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success() && output.status.code().is_some(),
        "expected a non-zero exit, got {:?}\nstderr: {stderr}",
        output.status
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 1 && !lines[0].trim().is_empty(),
        "expected exactly one line on stderr, got {}:\n{stderr}",
        lines.len()
    );
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "stderr does not name {needle:?}: {stderr}"
        );
    }
}

fn check_config_with(config: &Config, env: &[(&str, &str)]) -> Output {
    let dir = TempDir::new();
    let path = config.write_to(&dir);
    check_config(&path, env)
}

// ---------------------------------------------------------------------------------------------
// check-config
// ---------------------------------------------------------------------------------------------

#[test]
fn check_config_accepts_a_complete_valid_file() {
    let output = check_config_with(&Config::valid(), &[]);
    assert_passes(&output);
    assert!(output.stderr.is_empty(), "stderr: {}", text(&output.stderr));
}

#[test]
fn check_config_names_the_key_for_each_invalid_setting() {
    let dir = TempDir::new();
    let token_file = dir.write("token", "from-a-file\n");
    let missing_file = dir.path("does-not-exist");
    let cases: Vec<(&str, Config, Vec<&str>)> = vec![
        (
            "missing base_url",
            Config::valid().remove("proof", "base_url"),
            vec!["proof.base_url"],
        ),
        (
            "bad base_url",
            Config::valid().set_str("proof", "base_url", "not a url"),
            vec!["proof.base_url"],
        ),
        (
            "missing client_token",
            Config::valid().remove("proof", "client_token"),
            vec!["proof.client_token"],
        ),
        (
            "client_token and client_token_file both set",
            Config::valid().set("proof", "client_token_file", path_value(&token_file)),
            vec!["proof.client_token", "proof.client_token_file"],
        ),
        (
            "unreadable client_token_file",
            Config::valid().remove("proof", "client_token").set(
                "proof",
                "client_token_file",
                path_value(&missing_file),
            ),
            vec!["proof.client_token_file"],
        ),
        (
            "short jwt secret",
            Config::valid().set_str("session.jwt", "secret", "too-short"),
            vec!["session.jwt.secret"],
        ),
        (
            "algorithm none",
            Config::valid().set_str("session.jwt", "algorithm", "none"),
            vec!["session.jwt.algorithm"],
        ),
        (
            "RS256 without a public key",
            Config::valid()
                .set_str("session.jwt", "algorithm", "RS256")
                .remove("session.jwt", "secret"),
            vec!["session.jwt.public_key_pem_file"],
        ),
        (
            "wildcard allowed origin",
            Config::valid().set("browser", "allowed_origins", r#"["*"]"#),
            vec!["browser.allowed_origins"],
        ),
        (
            "bad trusted proxy",
            Config::valid().set(
                "client_ip",
                "trusted_proxies",
                r#"["10.0.0.0/8", "proxy-1"]"#,
            ),
            vec!["client_ip.trusted_proxies"],
        ),
        (
            "unknown key (typo) in a section",
            Config::valid().set_str("proof", "client_tokn", "x"),
            vec!["client_tokn"],
        ),
        (
            "wrong type",
            Config::valid().set_str("server", "workers", "many"),
            vec!["workers"],
        ),
        (
            "redis backend without a URL",
            Config::valid().set_str("rate_limit", "backend", "redis"),
            vec!["rate_limit.redis_url", "is required"],
        ),
        (
            "redis key prefix with a brace",
            redis_backend().set_str("rate_limit", "redis_key_prefix", "bff{x}"),
            vec!["rate_limit.redis_key_prefix"],
        ),
        (
            "empty redis key prefix",
            redis_backend().set_str("rate_limit", "redis_key_prefix", ""),
            vec!["rate_limit.redis_key_prefix"],
        ),
        (
            "redis timeout zero",
            redis_backend().set("rate_limit", "redis_timeout_ms", "0"),
            vec!["rate_limit.redis_timeout_ms"],
        ),
        (
            "status poll interval zero",
            Config::valid().set("status", "poll_interval_s", "0"),
            vec!["status.poll_interval_s"],
        ),
        (
            "short webhook path",
            Config::valid().set_str("status", "webhook_path", "/hook-123"),
            vec!["status.webhook_path", "only secret"],
        ),
        (
            "webhook path under a route of the service",
            Config::valid().set_str("status", "webhook_path", "/checkout/0123456789abcdef0123"),
            vec!["status.webhook_path", "own routes"],
        ),
        (
            "idempotency ttl zero",
            Config::valid().set("checkout", "idempotency_ttl_s", "0"),
            vec!["checkout.idempotency_ttl_s"],
        ),
        (
            "idempotency store under a megabyte",
            Config::valid().set("checkout", "idempotency_max_bytes", "1048575"),
            vec!["checkout.idempotency_max_bytes", "1 MiB"],
        ),
        (
            "idempotency store over 16 GiB",
            Config::valid().set("checkout", "idempotency_max_bytes", "17179869185"),
            vec!["checkout.idempotency_max_bytes", "16 GiB"],
        ),
        (
            "dedupe window over an hour",
            Config::valid().set("checkout", "dedupe_window_ms", "3600001"),
            vec!["checkout.dedupe_window_ms"],
        ),
        (
            "unknown on_backend_error",
            redis_backend().set_str("rate_limit", "on_backend_error", "retry"),
            vec!["on_backend_error"],
        ),
        (
            "unknown log format",
            Config::valid().set_str("log", "format", "xml"),
            vec!["log.format"],
        ),
        (
            "max_attempts zero",
            Config::valid().set("proof", "max_attempts", "0"),
            vec!["proof.max_attempts"],
        ),
        (
            "no connection to Proof allowed",
            Config::valid().set("proof", "max_connections", "0"),
            vec!["proof.max_connections"],
        ),
        (
            "status confirm interval zero",
            Config::valid().set("status", "confirm_interval_s", "0"),
            vec!["status.confirm_interval_s"],
        ),
        (
            "client_request_timeout_ms zero",
            Config::valid().set("server", "client_request_timeout_ms", "0"),
            vec!["server.client_request_timeout_ms"],
        ),
        (
            "client_request_timeout_ms beyond an hour",
            Config::valid().set("server", "client_request_timeout_ms", "3600001"),
            vec!["server.client_request_timeout_ms"],
        ),
        (
            "keep_alive_s beyond an hour",
            Config::valid().set("server", "keep_alive_s", "3601"),
            vec!["server.keep_alive_s"],
        ),
        (
            "max_connections zero",
            Config::valid().set("server", "max_connections", "0"),
            vec!["server.max_connections"],
        ),
        (
            "forward without a url",
            forward_source().remove("session.forward", "url"),
            vec!["session.forward.url", "is required"],
        ),
        (
            "forward url that is not a URL",
            forward_source().set_str("session.forward", "url", "whoami"),
            vec!["session.forward.url"],
        ),
        (
            "forward url in plain http to another machine",
            forward_source().set_str("session.forward", "url", "http://app.example.com/whoami"),
            vec!["session.forward.url", "https://"],
        ),
        (
            "forward url with a fragment",
            forward_source().set_str("session.forward", "url", "https://app.example.com/a#b"),
            vec!["session.forward.url"],
        ),
        (
            "forward without cookies or authorization",
            forward_source().set("session.forward", "cookies", "[]"),
            vec!["session.forward.cookies"],
        ),
        (
            "forward cookie name with a space",
            forward_source().set("session.forward", "cookies", r#"["my session"]"#),
            vec!["session.forward.cookies"],
        ),
        (
            "forward empty cookie name",
            forward_source().set("session.forward", "cookies", r#"["_app_session", ""]"#),
            vec!["session.forward.cookies"],
        ),
        (
            "forward cookie listed twice",
            forward_source().set("session.forward", "cookies", r#"["sid", "sid"]"#),
            vec!["session.forward.cookies"],
        ),
        (
            "forward user id field without a leading slash",
            forward_source().set_str("session.forward", "user_id_field", "user.id"),
            vec!["session.forward.user_id_field"],
        ),
        (
            "forward empty email field",
            forward_source().set_str("session.forward", "email_field", ""),
            vec!["session.forward.email_field"],
        ),
        (
            "forward email field with a bad escape",
            forward_source().set_str("session.forward", "email_field", "/a~2b"),
            vec!["session.forward.email_field"],
        ),
        (
            "forward timeout zero",
            forward_source().set("session.forward", "timeout_ms", "0"),
            vec!["session.forward.timeout_ms"],
        ),
        (
            "forward cache ttl over an hour",
            forward_source().set("session.forward", "cache_ttl_s", "3601"),
            vec!["session.forward.cache_ttl_s"],
        ),
        (
            "forward cache without room",
            forward_source().set("session.forward", "cache_max_entries", "0"),
            vec!["session.forward.cache_max_entries"],
        ),
        (
            "forward without a single call to the app",
            forward_source().set("session.forward", "max_connections", "0"),
            vec!["session.forward.max_connections"],
        ),
        (
            "forward unknown key",
            forward_source().set("session.forward", "cookie", r#"["sid"]"#),
            vec!["cookie"],
        ),
        (
            "headers without trusted proxies",
            headers_source().set("client_ip", "trusted_proxies", "[]"),
            vec!["client_ip.trusted_proxies", "headers"],
        ),
        (
            "headers user id header that is not a header name",
            headers_source().set_str("session.headers", "user_id_header", "x user"),
            vec!["session.headers.user_id_header"],
        ),
        (
            "headers email header empty",
            headers_source().set_str("session.headers", "email_header", ""),
            vec!["session.headers.email_header"],
        ),
        (
            "headers email header that carries cookies",
            headers_source().set_str("session.headers", "email_header", "Cookie"),
            vec!["session.headers.email_header"],
        ),
        (
            "headers user id header that is the client address header",
            headers_source().set_str("session.headers", "user_id_header", "X-Forwarded-For"),
            vec!["session.headers.user_id_header"],
        ),
        (
            "headers the same header twice",
            headers_source()
                .set_str("session.headers", "user_id_header", "x-user")
                .set_str("session.headers", "email_header", "X-User"),
            vec!["session.headers.email_header"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, config, needles) in cases {
        let output = check_config_with(&config, &[]);
        let outcome = std::panic::catch_unwind(|| assert_fails_naming(&output, &needles));
        if outcome.is_err() {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "cases that failed: {failures:?}");
}

/// `session.source = "forward"` with the keys it needs; `check-config` never calls the app.
fn forward_source() -> Config {
    Config::valid()
        .set_str("session", "source", "forward")
        .with_section("session.forward")
        .set_str(
            "session.forward",
            "url",
            "http://127.0.0.1:9/session/whoami",
        )
        .set("session.forward", "cookies", r#"["_app_session"]"#)
}

/// `session.source = "headers"` behind an auth proxy on the private network.
fn headers_source() -> Config {
    Config::valid()
        .set_str("session", "source", "headers")
        .with_section("session.headers")
        .set("client_ip", "trusted_proxies", r#"["10.0.0.0/8"]"#)
}

#[test]
fn check_config_accepts_the_forward_and_headers_sources() {
    assert_passes(&check_config_with(&forward_source(), &[]));
    let tuned = forward_source()
        .set_str(
            "session.forward",
            "url",
            "https://app.example.com/session/whoami?fmt=json",
        )
        .set(
            "session.forward",
            "cookies",
            r#"["_app_session", "remember_user_token"]"#,
        )
        .set("session.forward", "forward_authorization", "true")
        .set_str("session.forward", "user_id_field", "/user/id")
        .set_str("session.forward", "email_field", "/user/emails/0")
        .set("session.forward", "timeout_ms", "500")
        .set("session.forward", "cache_ttl_s", "0")
        .set("session.forward", "cache_max_entries", "1000")
        .set("session.forward", "max_connections", "1");
    assert_passes(&check_config_with(&tuned, &[]));
    let authorization_only = forward_source()
        .set("session.forward", "cookies", "[]")
        .set("session.forward", "forward_authorization", "true");
    assert_passes(&check_config_with(&authorization_only, &[]));
    // The cookie list from the environment, comma-separated like every other list.
    let from_env = forward_source().remove("session.forward", "cookies");
    assert_passes(&check_config_with(
        &from_env,
        &[(
            "PROOF_BFF__SESSION__FORWARD__COOKIES",
            "sessionid, csrftoken",
        )],
    ));
    assert_fails_naming(
        &check_config_with(
            &from_env,
            &[("PROOF_BFF__SESSION__FORWARD__COOKIES", "a b")],
        ),
        &["session.forward.cookies"],
    );

    assert_passes(&check_config_with(&headers_source(), &[]));
    let renamed = headers_source()
        .set_str("session.headers", "user_id_header", "X-Forwarded-User")
        .set_str("session.headers", "email_header", "X-Forwarded-Email");
    assert_passes(&check_config_with(&renamed, &[]));
}

/// `session.source = "headers"` believes the user named by any peer in `trusted_proxies`: a list
/// that covers every address (of either family) would let any client name any user.
#[test]
fn check_config_refuses_headers_sessions_trusted_from_every_address_with_exit_2() {
    for trusted in [
        r#"["0.0.0.0/0"]"#,
        r#"["::/0"]"#,
        r#"["10.0.0.0/8", "0.0.0.0/0"]"#,
        // Together, every address.
        r#"["0.0.0.0/1", "128.0.0.0/1"]"#,
        r#"["::/1", "8000::/1"]"#,
        r#"["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/3", "224.0.0.0/3"]"#,
        // The IPv4-mapped form of every IPv4 address.
        r#"["::ffff:0.0.0.0/96"]"#,
    ] {
        let output = check_config_with(
            &headers_source().set("client_ip", "trusted_proxies", trusted),
            &[],
        );
        assert_eq!(output.status.code(), Some(2), "{trusted}: {output:?}");
        assert_fails_naming(&output, &["client_ip.trusted_proxies", "every"]);
    }
    let from_env = check_config_with(
        &headers_source(),
        &[(
            "PROOF_BFF__CLIENT_IP__TRUSTED_PROXIES",
            "0.0.0.0/1,128.0.0.0/1",
        )],
    );
    assert_eq!(from_env.status.code(), Some(2), "{from_env:?}");
    assert_fails_naming(&from_env, &["client_ip.trusted_proxies", "every"]);

    // Wide, but not everything: the operator's call.
    for trusted in [
        r#"["0.0.0.0/1"]"#,
        r#"["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]"#,
        r#"["0.0.0.0/1", "128.0.0.0/2", "::/1"]"#,
    ] {
        let output = check_config_with(
            &headers_source().set("client_ip", "trusted_proxies", trusted),
            &[],
        );
        assert_passes(&output);
    }
    // Only the headers source names users from trusted peers: elsewhere trusting every address
    // only means there is no trustworthy client address.
    assert_passes(&check_config_with(
        &Config::valid().set("client_ip", "trusted_proxies", r#"["0.0.0.0/0"]"#),
        &[],
    ));
}

#[test]
fn check_config_refuses_a_forward_max_connections_of_zero_with_exit_2() {
    let from_file = forward_source().set("session.forward", "max_connections", "0");
    let from_env = [("PROOF_BFF__SESSION__FORWARD__MAX_CONNECTIONS", "0")];
    for (name, output) in [
        ("in the file", check_config_with(&from_file, &[])),
        (
            "from the environment",
            check_config_with(&forward_source(), &from_env),
        ),
    ] {
        assert_eq!(output.status.code(), Some(2), "{name}: {output:?}");
        assert_fails_naming(
            &output,
            &["session.forward.max_connections", "must be at least 1"],
        );
    }
}

#[test]
fn check_config_never_prints_the_forward_url() {
    for url in [
        "https://bff:S3CRET@app.example.com/whoami",
        "http://app.example.com/whoami?token=S3CRET",
        "https://app.example.com:S3CRET/whoami",
    ] {
        let output = check_config_with(
            &forward_source().set_str("session.forward", "url", url),
            &[],
        );
        assert_secret_not_printed(&output, url);
        assert_fails_naming(&output, &["session.forward.url"]);
    }
}

/// The shared backend, with a Redis that need not be running: `check-config` does not connect.
fn redis_backend() -> Config {
    Config::valid()
        .set_str("rate_limit", "backend", "redis")
        .set_str("rate_limit", "redis_url", "redis://:S3CRET@127.0.0.1:9/0")
}

#[test]
fn check_config_accepts_the_redis_backend() {
    assert_passes(&check_config_with(&redis_backend(), &[]));
    let tuned = redis_backend()
        .set_str(
            "rate_limit",
            "redis_url",
            "rediss://bff:S3CRET@redis.internal:6380",
        )
        .set("rate_limit", "redis_cluster", "true")
        .set_str("rate_limit", "redis_key_prefix", "shop-eu")
        .set("rate_limit", "redis_timeout_ms", "200")
        .set_str("rate_limit", "on_backend_error", "allow");
    let output = check_config_with(&tuned, &[]);
    assert_secret_not_printed(&output, "a valid redis backend");
    assert_passes(&output);
    let dir = TempDir::new();
    let url_file = dir.write("redis_url", "redis://:S3CRET@127.0.0.1:9\n");
    let from_file = redis_backend().remove("rate_limit", "redis_url").set(
        "rate_limit",
        "redis_url_file",
        path_value(&url_file),
    );
    assert_passes(&check_config(&from_file.write_to(&dir), &[]));
}

/// Each timeout key's documented lower bound: the value just below it is refused with exit 2 and
/// one line naming the key (from the file and from the environment), the bound itself passes.
#[test]
fn check_config_refuses_each_timeout_below_its_lower_bound_with_exit_2() {
    // (how the key is set up, its section, its name, the lower bound)
    let cases: Vec<(Config, &str, &str, u64)> = vec![
        (Config::valid(), "server", "client_request_timeout_ms", 1000),
        (Config::valid(), "server", "shutdown_timeout_s", 1),
        (Config::valid(), "proof", "connect_timeout_ms", 100),
        (Config::valid(), "proof", "request_timeout_ms", 200),
        (Config::valid(), "proof", "deadline_ms", 200),
        (forward_source(), "session.forward", "timeout_ms", 100),
        // Checked whatever the backend, as the Redis URL is.
        (Config::valid(), "rate_limit", "redis_timeout_ms", 10),
        (redis_backend(), "rate_limit", "redis_timeout_ms", 10),
    ];
    let mut failures = Vec::new();
    for (config, section, key, bound) in cases {
        let named = format!("{section}.{key}");
        let env_name = format!(
            "PROOF_BFF__{}__{}",
            section.replace('.', "__").to_uppercase(),
            key.to_uppercase()
        );
        let below = (bound - 1).to_string();
        let refused = [
            (
                "in the file",
                check_config_with(&config.clone().set(section, key, below.as_str()), &[]),
            ),
            (
                "from the environment",
                check_config_with(&config, &[(env_name.as_str(), below.as_str())]),
            ),
        ];
        for (how, output) in refused {
            let outcome = std::panic::catch_unwind(|| {
                assert_eq!(output.status.code(), Some(2), "{output:?}");
                assert_fails_naming(&output, &[&named, &bound.to_string()]);
            });
            if outcome.is_err() {
                failures.push(format!(
                    "{named} = {below} {how}: not refused naming the key"
                ));
            }
        }
        let at_bound = check_config_with(&config.set(section, key, bound.to_string()), &[]);
        if !at_bound.status.success() {
            failures.push(format!(
                "{named} = {bound} refused: {}",
                text(&at_bound.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn check_config_accepts_keep_alive_s_zero_as_keep_alive_off() {
    let output = check_config_with(&Config::valid().set("server", "keep_alive_s", "0"), &[]);
    assert_passes(&output);
}

/// `session.source = "jwks"` with every key of `[session.jwks]`, its key set at `jwks_url`.
fn jwks_source(jwks_url: &str) -> Config {
    let s = |v: &str| quoted(v);
    let mut config = Config::valid().set_str("session", "source", "jwks");
    config.sections.push((
        "session.jwks",
        vec![
            ("issuer".into(), s("https://tenant.eu.auth0.com/")),
            ("jwks_url".into(), s(jwks_url)),
            ("algorithms".into(), r#"["RS256", "ES256"]"#.into()),
            ("audience".into(), s("https://api.shop.example")),
            ("cookie".into(), s("session")),
            ("bearer".into(), "true".into()),
            ("user_id_claim".into(), s("sub")),
            ("email_claim".into(), s("email")),
            ("leeway_s".into(), "30".into()),
            ("min_refresh_interval_s".into(), "30".into()),
        ],
    ));
    config
}

/// A loopback port that records whether anything connected to it.
fn watched_port() -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

#[track_caller]
fn assert_never_connected(listener: &TcpListener) {
    match listener.accept() {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!(
            "check-config connected to {}: {other:?}",
            listener.local_addr().unwrap()
        ),
    }
}

#[test]
fn check_config_accepts_a_jwks_source_without_fetching_anything() {
    let provider = watched_port();
    let url = format!("http://{}/jwks.json", provider.local_addr().unwrap());
    assert_passes(&check_config_with(&jwks_source(&url), &[]));
    // Discovery under the issuer: not fetched either.
    let issuer = format!("http://{}/realms/shop", provider.local_addr().unwrap());
    let discovery = jwks_source("")
        .set_str("session.jwks", "issuer", &issuer)
        .set_str("session.jwks", "jwks_url", "");
    assert_passes(&check_config_with(&discovery, &[]));
    assert_passes(&check_config_with(
        &jwks_source("https://tenant.eu.auth0.com/.well-known/jwks.json"),
        &[("PROOF_BFF__SESSION__JWKS__ALGORITHMS", "RS256,EdDSA")],
    ));
    assert_never_connected(&provider);
}

/// Every backend a deployment may name, each on a watched loopback port: the shared Redis, the
/// partner's app (`session.source = "forward"`) and the trace collector.
fn every_backend_watched(
    redis: &TcpListener,
    app: &TcpListener,
    collector: &TcpListener,
) -> Config {
    let at = |listener: &TcpListener| listener.local_addr().unwrap();
    forward_source()
        .set_str(
            "session.forward",
            "url",
            &format!("http://{}/whoami", at(app)),
        )
        .set_str("rate_limit", "backend", "redis")
        .set_str(
            "rate_limit",
            "redis_url",
            &format!("redis://{}/0", at(redis)),
        )
        .set_str(
            "telemetry",
            "otlp_endpoint",
            &format!("http://{}", at(collector)),
        )
}

#[test]
fn check_config_connects_to_no_backend() {
    let (redis, app, collector) = (watched_port(), watched_port(), watched_port());
    let config = every_backend_watched(&redis, &app, &collector);
    // `output()` returns once the process has exited: anything it connected is queued by now.
    assert_passes(&check_config_with(&config, &[]));
    for listener in [&redis, &app, &collector] {
        assert_never_connected(listener);
    }
}

/// How many threads of this process are named `name` (Linux names them in `/proc`, cut to 15
/// bytes). No other test of this binary runs the service in its own process, so a thread of the
/// service's here can only come from the test that counts it.
#[cfg(target_os = "linux")]
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .count()
}

/// What `check-config` runs, in this process where its threads can be counted: validating the
/// settings describes the Redis link and the session source's client, and starts neither; the
/// application starts them.
#[cfg(target_os = "linux")]
#[test]
fn validating_the_settings_starts_no_thread() {
    use proof_bff::config::{Settings, SettingsSources};

    let (redis, app, collector) = (watched_port(), watched_port(), watched_port());
    let dir = TempDir::new();
    let sources = SettingsSources {
        file: Some(every_backend_watched(&redis, &app, &collector).write_to(&dir)),
        ..SettingsSources::default()
    };
    let settings = Settings::load_with_env(&sources, []).expect("the settings load");
    let config = settings.validate().expect("the settings are valid");
    for thread in ["shared-redis", "forward-session", "otlp-export"] {
        assert_eq!(threads_named(thread), 0, "{thread} started by validation");
    }
    // The count sees the thread once something starts it.
    let link = config.rate_limit.shared_link().expect("the Redis backend");
    link.start().expect("the link's thread starts");
    assert_eq!(threads_named("shared-redis"), 1);
    for listener in [&redis, &app, &collector] {
        assert_never_connected(listener);
    }
}

#[test]
fn check_config_names_the_jwks_key_at_fault() {
    let valid = || jwks_source("https://tenant.eu.auth0.com/.well-known/jwks.json");
    /// What is wrong, the settings, what the one line must name, the environment.
    type Case = (
        &'static str,
        Config,
        Vec<&'static str>,
        &'static [(&'static str, &'static str)],
    );
    let cases: Vec<Case> = vec![
        (
            "no issuer",
            valid().set_str("session.jwks", "issuer", ""),
            vec!["session.jwks.issuer: is required"],
            &[],
        ),
        (
            "plain http to a remote key set",
            valid().set_str("session.jwks", "jwks_url", "http://idp.example/jwks.json"),
            vec!["session.jwks.jwks_url", "https://"],
            &[],
        ),
        (
            "a key set URL that is not one",
            valid().set_str("session.jwks", "jwks_url", "idp.example/jwks"),
            vec!["session.jwks.jwks_url", "not a valid URL"],
            &[],
        ),
        (
            "discovery under a plain http issuer",
            valid().set_str("session.jwks", "jwks_url", "").set_str(
                "session.jwks",
                "issuer",
                "http://sso.example/realms/shop",
            ),
            vec!["session.jwks.issuer", "https://"],
            &[],
        ),
        (
            "no algorithm",
            valid().set("session.jwks", "algorithms", "[]"),
            vec!["session.jwks.algorithms", "at least one"],
            &[],
        ),
        (
            "a symmetric algorithm",
            valid().set("session.jwks", "algorithms", r#"["RS256", "HS256"]"#),
            vec!["session.jwks.algorithms", "symmetric"],
            &[],
        ),
        (
            "a symmetric algorithm from the environment",
            valid(),
            vec!["session.jwks.algorithms", "HS512"],
            &[("PROOF_BFF__SESSION__JWKS__ALGORITHMS", "RS256,HS512")],
        ),
        (
            "alg none",
            valid().set("session.jwks", "algorithms", r#"["none"]"#),
            vec!["session.jwks.algorithms", "never"],
            &[],
        ),
        (
            "an unknown algorithm",
            valid().set("session.jwks", "algorithms", r#"["ES512"]"#),
            vec!["session.jwks.algorithms", "is not one of"],
            &[],
        ),
        (
            "a cookie name that is not one",
            valid().set_str("session.jwks", "cookie", "my session"),
            vec!["session.jwks.cookie"],
            &[],
        ),
        (
            "min_refresh_interval_s zero",
            valid().set("session.jwks", "min_refresh_interval_s", "0"),
            vec!["session.jwks.min_refresh_interval_s"],
            &[],
        ),
        (
            "leeway over an hour",
            valid().set("session.jwks", "leeway_s", "3601"),
            vec!["session.jwks.leeway_s"],
            &[],
        ),
        (
            "an empty user id claim",
            valid().set_str("session.jwks", "user_id_claim", ""),
            vec!["session.jwks.user_id_claim"],
            &[],
        ),
        (
            "a typo in the table",
            valid().set_str("session.jwks", "jwks_uri", "https://idp.example/jwks"),
            vec!["jwks_uri"],
            &[],
        ),
    ];
    let mut failures = Vec::new();
    for (name, config, needles, env) in cases {
        let output = check_config_with(&config, env);
        let outcome = std::panic::catch_unwind(|| assert_fails_naming(&output, &needles));
        if outcome.is_err() {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "cases that failed: {failures:?}");
}

#[test]
fn check_config_never_prints_a_key_set_urls_password() {
    let config = jwks_source("https://user:S3CRET@idp.example/jwks.json");
    let output = check_config_with(&config, &[]);
    assert_fails_naming(&output, &["session.jwks.jwks_url"]);
    assert!(!text(&output.stderr).contains("S3CRET"));
}

#[test]
fn check_config_names_a_missing_config_file() {
    let dir = TempDir::new();
    let missing = dir.path("nowhere.toml");
    let output = check_config(&missing, &[]);
    assert_fails_naming(&output, &[missing.to_str().unwrap()]);
}

#[test]
fn check_config_reports_malformed_toml_on_one_line() {
    let dir = TempDir::new();
    let broken = format!("{}[server\nworkers = 1\n", Config::valid().render());
    let path = dir.write("broken.toml", &broken);
    assert_fails_naming(&check_config(&path, &[]), &["broken.toml"]);
}

#[test]
fn proof_bff_config_env_var_stands_in_for_the_flag() {
    let dir = TempDir::new();
    let good = Config::valid().write_to(&dir);
    let output = bff()
        .arg("check-config")
        .env("PROOF_BFF_CONFIG", &good)
        .output()
        .unwrap();
    assert_passes(&output);

    let bad = dir.write(
        "bad.toml",
        &Config::valid().set_str("log", "format", "xml").render(),
    );
    let output = bff()
        .arg("check-config")
        .env("PROOF_BFF_CONFIG", &bad)
        .output()
        .unwrap();
    assert_fails_naming(&output, &["log.format"]);
}

#[test]
fn help_exits_zero_and_lists_check_config() {
    let output = bff().arg("--help").output().unwrap();
    assert_passes(&output);
    let stdout = text(&output.stdout);
    assert!(stdout.contains("check-config"), "{stdout}");
    assert!(stdout.contains("--config"), "{stdout}");
}

/// `proof-bff --version`: `proof-bff <version> (commit <id>)`, with `, built from a modified tree`
/// after the id when tracked files differed from the commit, or `(commit unknown)` without git.
#[test]
fn version_names_the_package_version_and_the_commit_built_from() {
    let output = bff().arg("--version").output().unwrap();
    assert_passes(&output);
    let stdout = text(&output.stdout);
    let line = stdout.trim_end();
    let rest = line
        .strip_prefix(&format!("proof-bff {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version output: {stdout:?}"));
    let commit = rest
        .strip_suffix(", built from a modified tree")
        .unwrap_or(rest);
    assert!(
        commit == "unknown"
            || ((7..=64).contains(&commit.len()) && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{stdout:?}"
    );

    // Built from this checkout (not from a commit given at build time), it names the commit
    // checked out: the one the binary under test was just built from.
    if option_env!("PROOF_BFF_COMMIT").is_some_and(|given| !given.trim().is_empty()) {
        return;
    }
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(manifest_dir)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| text(&output.stdout).trim().to_owned())
    };
    // As build.rs: only a checkout of this repository itself, not sources inside another one.
    let own_checkout = git(&["rev-parse", "--show-toplevel"])
        .is_some_and(|top| Path::new(&top).canonicalize().ok() == manifest_dir.canonicalize().ok());
    if !own_checkout {
        eprintln!("SKIPPED: not a git checkout, the commit cannot be compared");
        return;
    }
    let head = git(&["rev-parse", "HEAD"]).expect("git rev-parse HEAD");
    assert_eq!(commit, head, "{stdout:?}");
}

/// Stands in for any secret an operator could mistype into a config.
const PLANTED_SECRET: &str = "S3CRET";

/// Neither stream mentions [`PLANTED_SECRET`].
#[track_caller]
fn assert_secret_not_printed(output: &Output, case: &str) {
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let printed = text(bytes);
        assert!(
            !printed.contains(PLANTED_SECRET),
            "{case}: the secret is in {stream}: {printed}"
        );
    }
}

#[test]
fn check_config_refuses_plain_http_to_a_remote_proof() {
    for remote in [
        "http://proof.example.com",
        "http://proof.example.com:80/api",
        "http://10.0.0.7:8080",
        "http://[2001:db8::1]",
        "http://localhost.proof.example.com",
    ] {
        let config = Config::valid().set_str("proof", "base_url", remote);
        assert_fails_naming(
            &check_config_with(&config, &[]),
            &["proof.base_url", "https://"],
        );
    }
    for local in [
        "http://127.0.0.1:9",
        "http://127.42.0.1:9",
        "http://[::1]:9",
        "http://localhost:9",
        "https://proof.example.com",
    ] {
        let config = Config::valid().set_str("proof", "base_url", local);
        assert_passes(&check_config_with(&config, &[]));
    }
}

#[test]
fn check_config_never_prints_a_password_from_a_url() {
    let mut cases: Vec<(String, Config, bool)> = Vec::new();
    for base_url in [
        "https://user:S3CRET@proof.example",
        "https://:S3CRET@proof.example",
        "http://user:S3CRET@127.0.0.1:9",
        // Unparseable: a space in the host, a port out of range, no scheme at all.
        "https://user:S3CRET@proof example",
        "https://user:S3CRET@proof.example:99999",
        "user:S3CRET@proof.example",
    ] {
        let config = Config::valid().set_str("proof", "base_url", base_url);
        cases.push((format!("base_url {base_url}"), config, false));
    }
    for (redis_url, valid) in [
        ("redis://:S3CRET@redis.internal:6379/0", true),
        ("rediss://bff:S3CRET@redis.internal", true),
        ("redis://:S3CRET@redis internal:6379", false),
        ("redis://:S3CRET@redis.internal:99999", false),
        ("redis://:S3C#RET@redis.internal", false),
        ("http://:S3CRET@redis.internal", false),
        ("redis://:S3CRET@redis.internal/db", false),
    ] {
        let config = Config::valid().set_str("rate_limit", "redis_url", redis_url);
        cases.push((format!("redis_url {redis_url}"), config, valid));
        let config = redis_backend().set_str("rate_limit", "redis_url", redis_url);
        cases.push((format!("redis backend at {redis_url}"), config, valid));
    }
    for (name, config, valid) in &cases {
        let output = check_config_with(config, &[]);
        assert_secret_not_printed(&output, name);
        if *valid {
            assert_passes(&output);
        } else {
            assert_eq!(output.status.code(), Some(2), "{name}: {output:?}");
        }
    }
    // From the environment and from a file alike.
    let output = check_config_with(
        &Config::valid(),
        &[(
            "PROOF_BFF__PROOF__BASE_URL",
            "https://u:S3CRET@proof example",
        )],
    );
    assert_secret_not_printed(&output, "base_url from the environment");
    assert_fails_naming(&output, &["proof.base_url"]);
    let dir = TempDir::new();
    let redis_file = dir.write("redis_url", "redis://:S3CRET@redis internal:6379\n");
    let config = Config::valid().remove("rate_limit", "redis_url").set(
        "rate_limit",
        "redis_url_file",
        path_value(&redis_file),
    );
    let output = check_config(&config.write_to(&dir), &[]);
    assert_secret_not_printed(&output, "redis_url_file");
    assert_fails_naming(&output, &["rate_limit.redis_url_file"]);
}

#[test]
fn check_config_checks_the_telemetry_settings() {
    for endpoint in [
        "http://127.0.0.1:4318",
        "http://otel-collector:4318/",
        "https://otlp.vendor.example/otlp",
        "https://otlp.vendor.example/v1/traces",
    ] {
        let config = Config::valid().set_str("telemetry", "otlp_endpoint", endpoint);
        assert_passes(&check_config_with(&config, &[]));
    }
    for ratio in ["0.0", "0.25", "1", "0"] {
        let config = Config::valid()
            .set_str("telemetry", "otlp_endpoint", "http://127.0.0.1:4318")
            .set("telemetry", "sample_ratio", ratio);
        assert_passes(&check_config_with(&config, &[]));
    }
    let mut failures = Vec::new();
    for (name, key, value) in [
        ("no scheme", "otlp_endpoint", quoted("127.0.0.1:4318")),
        ("gRPC", "otlp_endpoint", quoted("grpc://127.0.0.1:4317")),
        (
            "not a URL",
            "otlp_endpoint",
            quoted("http://collector example:4318"),
        ),
        (
            "a query",
            "otlp_endpoint",
            quoted("http://127.0.0.1:4318/?x=1"),
        ),
        (
            "a password",
            "otlp_endpoint",
            quoted("http://u:S3CRET@collector:4318"),
        ),
        ("above 1", "sample_ratio", "1.5".to_owned()),
        ("negative", "sample_ratio", "-0.1".to_owned()),
        ("not a number", "sample_ratio", "nan".to_owned()),
        ("a string", "sample_ratio", quoted("half")),
    ] {
        let config = Config::valid().set("telemetry", key, value);
        let output = check_config_with(&config, &[]);
        assert_secret_not_printed(&output, name);
        let needle = format!("telemetry.{key}");
        if std::panic::catch_unwind(|| assert_fails_naming(&output, &[&needle])).is_err() {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "cases that failed: {failures:?}");
    // From the environment too.
    assert_passes(&check_config_with(
        &Config::valid(),
        &[
            (
                "PROOF_BFF__TELEMETRY__OTLP_ENDPOINT",
                "http://127.0.0.1:4318",
            ),
            ("PROOF_BFF__TELEMETRY__SAMPLE_RATIO", "0.5"),
        ],
    ));
    assert_fails_naming(
        &check_config_with(
            &Config::valid(),
            &[("PROOF_BFF__TELEMETRY__SAMPLE_RATIO", "2")],
        ),
        &["telemetry.sample_ratio"],
    );
    assert_fails_naming(
        &check_config_with(
            &Config::valid(),
            &[("PROOF_BFF__TELEMETRY__OTLP_ENDPOINT", "ftp://127.0.0.1")],
        ),
        &["telemetry.otlp_endpoint"],
    );
}

#[test]
fn check_config_does_not_quote_a_broken_toml_line_that_holds_a_secret() {
    for broken in [
        r#"client_token = "S3CRET"#,
        r#"client_token = "S3CRET" trailing"#,
        r#"client_token = S3CRET"#,
        r#"client_token = "S3CRET\q""#,
        r#"client_token = 'S3CRET"#,
        r#"client_token "S3CRET""#,
        r#"client_token = """S3CRET"#,
    ] {
        let rendered = Config::valid().render().replacen(
            &format!("client_token = {}\n", quoted(CLIENT_TOKEN)),
            &format!("{broken}\n"),
            1,
        );
        assert!(rendered.contains(broken), "the case was not planted");
        let dir = TempDir::new();
        let output = check_config(&dir.write("broken.toml", &rendered), &[]);
        assert_secret_not_printed(&output, broken);
        assert_fails_naming(&output, &["broken.toml", "line"]);
    }
}

#[test]
fn check_config_refuses_each_secret_given_both_inline_and_as_a_file() {
    let dir = TempDir::new();
    let file = dir.write("secret", "from-a-file-0123456789abcdef0123456789abcdef\n");
    for (section, key, inline) in [
        ("proof", "client_token", CLIENT_TOKEN),
        ("session.jwt", "secret", JWT_SECRET),
        ("rate_limit", "redis_url", "redis://redis.internal:6379"),
    ] {
        let config = Config::valid().set_str(section, key, inline).set(
            section,
            &format!("{key}_file"),
            path_value(&file),
        );
        let (inline_key, file_key) = (format!("{section}.{key}"), format!("{section}.{key}_file"));
        let output = check_config_with(&config, &[]);
        assert_eq!(output.status.code(), Some(2), "{inline_key}: {output:?}");
        assert_fails_naming(&output, &[&inline_key, &file_key]);
        // The inline value may come from the environment instead of the file.
        let config = Config::valid().remove(section, key).set(
            section,
            &format!("{key}_file"),
            path_value(&file),
        );
        let variable = format!(
            "PROOF_BFF__{}__{}",
            section.replace('.', "__").to_ascii_uppercase(),
            key.to_ascii_uppercase()
        );
        let output = check_config_with(&config, &[(&variable, inline)]);
        assert_eq!(output.status.code(), Some(2), "{variable}: {output:?}");
        assert_fails_naming(&output, &[&inline_key]);
    }
}

// ---------------------------------------------------------------------------------------------
// Environment overrides
// ---------------------------------------------------------------------------------------------

#[test]
fn env_supplies_a_missing_client_token() {
    let config = Config::valid().remove("proof", "client_token");
    assert_fails_naming(&check_config_with(&config, &[]), &["proof.client_token"]);
    assert_passes(&check_config_with(
        &config,
        &[("PROOF_BFF__PROOF__CLIENT_TOKEN", CLIENT_TOKEN)],
    ));
}

#[test]
fn env_supplies_a_missing_jwt_secret() {
    let config = Config::valid().remove("session.jwt", "secret");
    assert_fails_naming(&check_config_with(&config, &[]), &["session.jwt.secret"]);
    assert_passes(&check_config_with(
        &config,
        &[("PROOF_BFF__SESSION__JWT__SECRET", JWT_SECRET)],
    ));
}

#[test]
fn env_overrides_a_value_from_the_file() {
    let config = Config::valid().set_str("log", "format", "xml");
    assert_passes(&check_config_with(
        &config,
        &[("PROOF_BFF__LOG__FORMAT", "pretty")],
    ));
    assert_fails_naming(
        &check_config_with(&Config::valid(), &[("PROOF_BFF__PROOF__MAX_ATTEMPTS", "0")]),
        &["proof.max_attempts"],
    );
}

#[test]
fn env_allowed_origins_is_a_comma_separated_list() {
    let config = Config::valid().remove("browser", "allowed_origins");
    assert_passes(&check_config_with(
        &config,
        &[(
            "PROOF_BFF__BROWSER__ALLOWED_ORIGINS",
            "https://a.example,https://b.example",
        )],
    ));
    assert_fails_naming(
        &check_config_with(
            &config,
            &[("PROOF_BFF__BROWSER__ALLOWED_ORIGINS", "https://a.example,*")],
        ),
        &["browser.allowed_origins"],
    );
    // The file's valid list is replaced, not merged.
    assert_fails_naming(
        &check_config_with(
            &Config::valid(),
            &[("PROOF_BFF__BROWSER__ALLOWED_ORIGINS", "*")],
        ),
        &["browser.allowed_origins"],
    );
}

#[test]
fn env_workers_that_is_not_a_number_is_refused() {
    assert_fails_naming(
        &check_config_with(
            &Config::valid(),
            &[("PROOF_BFF__SERVER__WORKERS", "notanumber")],
        ),
        &["workers"],
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets from files
// ---------------------------------------------------------------------------------------------

#[test]
fn secrets_are_read_from_files() {
    let dir = TempDir::new();
    let token_file = dir.write("client_token", &format!("{CLIENT_TOKEN}\n"));
    let secret_file = dir.write("jwt_secret", &format!("{JWT_SECRET}\n"));
    let config = Config::valid()
        .remove("proof", "client_token")
        .set("proof", "client_token_file", path_value(&token_file))
        .remove("session.jwt", "secret")
        .set("session.jwt", "secret_file", path_value(&secret_file));
    assert_passes(&check_config(&config.write_to(&dir), &[]));
}

// ---------------------------------------------------------------------------------------------
// The running service
// ---------------------------------------------------------------------------------------------

/// One request as the stand-in for Proof received it.
#[derive(Debug)]
struct UpstreamRequest {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl UpstreamRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Holds the stand-in's answers until a test lets them go, so a request stays in flight for as
/// long as the test needs, however slow the machine is.
#[derive(Default)]
struct AnswerGate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl AnswerGate {
    fn opened() -> Self {
        Self {
            open: Mutex::new(true),
            opened: Condvar::new(),
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }
}

/// A stand-in for Proof on a loopback port: answers every request with `WIDGET_BODY` (at once, or
/// once [`Upstream::release`] is called), and reports each request it read. Stops on drop.
struct Upstream {
    port: u16,
    requests: Receiver<UpstreamRequest>,
    gate: Arc<AnswerGate>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Answers every request at once.
    fn start() -> Self {
        Self::with_gate(AnswerGate::opened())
    }

    /// Reads requests but answers none until [`Upstream::release`].
    fn held() -> Self {
        Self::with_gate(AnswerGate::default())
    }

    /// Sends the answers held so far, and every later one at once.
    fn release(&self) {
        self.gate.open();
    }

    fn with_gate(gate: AnswerGate) -> Self {
        let gate = Arc::new(gate);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, requests) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let serving_gate = gate.clone();
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let sender = sender.clone();
                let gate = serving_gate.clone();
                thread::spawn(move || serve_upstream(stream, &gate, sender));
            }
        });
        Self {
            port,
            requests,
            gate,
            stop,
            thread: Some(thread),
        }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn next_request(&self, timeout: Duration) -> UpstreamRequest {
        self.requests
            .recv_timeout(timeout)
            .expect("the stand-in for Proof received no request")
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.gate.open();
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_upstream(stream: TcpStream, gate: &AnswerGate, sender: Sender<UpstreamRequest>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let _ = sender.send(UpstreamRequest {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body: text(&body),
    });
    gate.wait();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{WIDGET_BODY}",
        WIDGET_BODY.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

fn session_jwt(secret: &str) -> String {
    sign_hs256(secret.as_bytes(), USER_ID, USER_EMAIL, 600).expect("sign a session token")
}

fn start_checkout(port: u16, origin: &str, jwt: &str) -> std::io::Result<RawResponse> {
    let request = RawRequest::checkout(port, origin, Some(jwt))
        .header("Connection", "close")
        .with_body(CHECKOUT_BODY.as_bytes());
    raw_http::send(port, &request)
}

/// The service as a child process; killed on drop whatever happened in the test.
struct Service {
    process: Process,
    port: u16,
    /// The metrics port, when the config sets `metrics.listen`.
    metrics_port: Option<u16>,
    _dir: TempDir,
}

impl Service {
    /// Starts the binary with `config` (its listen address set to port 0, and the port it took
    /// read from its log) and waits for `GET /healthz` to answer 200.
    fn start(config: Config, dir: TempDir, env: &[(&str, &str)]) -> Self {
        Self::start_reading_stdout_after(config, dir, env, None)
    }

    /// As [`Service::start`], its stdout left unread (after the start-up lines) until `start`
    /// receives.
    fn start_reading_stdout_after(
        config: Config,
        dir: TempDir,
        env: &[(&str, &str)],
        start: Option<mpsc::Receiver<()>>,
    ) -> Self {
        let config = config.set_str("server", "listen", "127.0.0.1:0");
        let path = config.write_to(&dir);
        let mut command = bff();
        command.arg("--config").arg(&path).envs(env.iter().copied());
        let mut process = Process::spawn_reading_stdout_after(command, start);
        let bound = process.bound_addresses();
        let mut service = Self {
            process,
            port: bound.listen.port(),
            metrics_port: bound.metrics.map(|address| address.port()),
            _dir: dir,
        };
        service.wait_until_healthy();
        service
    }

    fn metrics_port(&self) -> u16 {
        self.metrics_port.expect("a metrics port")
    }

    fn wait_until_healthy(&mut self) {
        let probe = RawRequest::new(self.port, "GET", "/healthz")
            .header("Connection", "close")
            .with_body(b"");
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.exited() {
                panic!(
                    "proof-bff exited during start-up with {status:?}\nstderr: {}",
                    self.stderr()
                );
            }
            if raw_http::send(self.port, &probe).is_ok_and(|r| r.status == 200) {
                return;
            }
            assert!(
                started.elapsed() < EVENTUALLY,
                "GET /healthz did not answer 200 within {EVENTUALLY:?}\nstderr: {}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: &str) {
        self.process.signal(signal);
    }

    /// Waits for the process to exit on its own; `None` when it is still running after `timeout`.
    fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_for_exit(timeout)
    }

    /// What the service wrote to stdout so far: its logs.
    fn stdout(&self) -> String {
        self.process.stdout.text()
    }

    fn stderr(&self) -> String {
        self.process.stderr.text()
    }

    /// Stops the service with SIGTERM and returns what it wrote (stdout, stderr), all of it.
    fn stop(mut self) -> (String, String) {
        self.signal("-TERM");
        let status = self.wait_for_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "proof-bff did not exit 0 after SIGTERM: {status:?}"
        );
        (self.stdout(), self.stderr())
    }
}

fn service_config(upstream: &Upstream) -> Config {
    Config::valid()
        .set_str("proof", "base_url", &upstream.base_url())
        .set("proof", "max_attempts", "1")
}

#[test]
fn env_token_and_origin_list_reach_the_running_service() {
    let upstream = Upstream::start();
    let config = service_config(&upstream)
        .remove("proof", "client_token")
        .remove("browser", "allowed_origins");
    let env = [
        ("PROOF_BFF__PROOF__CLIENT_TOKEN", "0042"),
        (
            "PROOF_BFF__BROWSER__ALLOWED_ORIGINS",
            "https://a.example,https://b.example",
        ),
    ];
    assert_passes(&check_config_with(&config, &env));
    let service = Service::start(config, TempDir::new(), &env);

    let response = start_checkout(service.port, "https://b.example", &session_jwt(JWT_SECRET))
        .expect("POST /start-checkout");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), WIDGET_BODY);

    let request = upstream.next_request(Duration::from_secs(5));
    assert_eq!(request.request_line, "POST /widget/session HTTP/1.1");
    assert_eq!(request.header("authorization"), Some("Bearer 0042"));
    assert_eq!(request.header("origin"), Some(PROOF_ORIGIN));
    let body: serde_json::Value = serde_json::from_str(&request.body).expect("JSON body");
    assert_eq!(body["partner_user_id"], USER_ID);
    assert_eq!(body["user_email"], USER_EMAIL);
    assert_eq!(body["network"], "TRC20");
    assert_eq!(body["amount"], "100");

    // The first entry of the list is allowed too; an origin outside it is not.
    let response = start_checkout(service.port, "https://a.example", &session_jwt(JWT_SECRET))
        .expect("POST /start-checkout");
    assert_eq!(response.status, 200, "{response:?}");
    let response = start_checkout(service.port, APP_ORIGIN, &session_jwt(JWT_SECRET))
        .expect("POST /start-checkout");
    assert_eq!(response.status, 403, "{response:?}");
}

#[test]
fn secrets_from_files_reach_the_running_service_without_the_newline() {
    let upstream = Upstream::start();
    let dir = TempDir::new();
    let token_file = dir.write("client_token", "pk_from_file_9d8c7b6a\n");
    let secret_file = dir.write("jwt_secret", &format!("{JWT_SECRET}\n"));
    let config = service_config(&upstream)
        .remove("proof", "client_token")
        .set("proof", "client_token_file", path_value(&token_file))
        .remove("session.jwt", "secret")
        .set("session.jwt", "secret_file", path_value(&secret_file));
    let service = Service::start(config, dir, &[]);

    // Signed with the secret without its newline: the file's trailing newline is not key material.
    let response = start_checkout(service.port, APP_ORIGIN, &session_jwt(JWT_SECRET))
        .expect("POST /start-checkout");
    assert_eq!(response.status, 200, "{response:?}");
    let request = upstream.next_request(Duration::from_secs(5));
    assert_eq!(
        request.header("authorization"),
        Some("Bearer pk_from_file_9d8c7b6a")
    );
}

#[test]
fn logs_are_json_lines_and_never_carry_secrets_even_at_trace() {
    let upstream = Upstream::start();
    let config = service_config(&upstream).set_str("log", "format", "json");
    let service = Service::start(config, TempDir::new(), &[("RUST_LOG", "trace")]);
    let jwt = session_jwt(JWT_SECRET);

    let response = start_checkout(service.port, APP_ORIGIN, &jwt).expect("POST /start-checkout");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response.head.to_ascii_lowercase().contains("x-request-id:"),
        "{}",
        response.head
    );
    let request = upstream.next_request(Duration::from_secs(5));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {CLIENT_TOKEN}").as_str())
    );
    // A refused session and a refused origin are logged too.
    let forged = session_jwt("another-secret-that-is-long-enough-for-hs256!!");
    let response = start_checkout(service.port, APP_ORIGIN, &forged).unwrap();
    assert_eq!(response.status, 401, "{response:?}");
    let response = start_checkout(service.port, "https://evil.example", &jwt).unwrap();
    assert_eq!(response.status, 403, "{response:?}");

    let (stdout, stderr) = service.stop();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() >= 3,
        "expected log lines at trace, got:\n{stdout}"
    );
    for line in &lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v.is_object()),
            "not a JSON log line: {line}"
        );
    }
    assert!(
        stdout.contains(r#""level":"TRACE""#),
        "RUST_LOG=trace did not win over log.level:\n{stdout}"
    );
    assert!(
        stdout.contains("request completed"),
        "no request log:\n{stdout}"
    );
    // Records the service's libraries write through the `log` facade are in the same stream, so
    // the checks below cover them too.
    assert!(
        stdout.contains(r#""log.target":"#),
        "no library `log` record at trace:\n{stdout}"
    );
    for (what, secret) in [
        ("client token", CLIENT_TOKEN),
        ("jwt secret", JWT_SECRET),
        ("user email", USER_EMAIL),
        ("session cookie", jwt.as_str()),
    ] {
        for (stream, output) in [("stdout", &stdout), ("stderr", &stderr)] {
            let leaked: Vec<&str> = output.lines().filter(|l| l.contains(secret)).collect();
            assert!(leaked.is_empty(), "the {what} is in {stream}: {leaked:?}");
        }
    }
}

/// `proof_bff_log_lines_dropped_total` from the metrics port.
fn dropped_log_lines(metrics_port: u16) -> u64 {
    let scrape = RawRequest::new(metrics_port, "GET", "/metrics")
        .header("Connection", "close")
        .with_body(b"");
    let response = raw_http::send(metrics_port, &scrape).expect("GET /metrics");
    assert_eq!(response.status, 200, "{response:?}");
    let body = String::from_utf8_lossy(&response.body).into_owned();
    body.lines()
        .find_map(|line| line.strip_prefix("proof_bff_log_lines_dropped_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no log_lines_dropped counter in:\n{body}"))
}

#[test]
fn a_stdout_nobody_reads_never_stalls_a_request_and_dropped_lines_are_counted() {
    let upstream = Upstream::start();
    let config = service_config(&upstream)
        .set_str("log", "format", "json")
        .set_str("metrics", "listen", "127.0.0.1:0")
        .set("rate_limit", "per_user_burst", "1000000")
        .set("rate_limit", "per_user_per_minute", "1000000")
        .set("rate_limit", "per_ip_burst", "1000000")
        .set("rate_limit", "per_ip_per_minute", "1000000");
    let (read_stdout, start_reading) = mpsc::channel();
    // At trace, every checkout writes dozens of lines: the pipe and the writer's buffer fill
    // within a few hundred checkouts while nobody reads.
    let service = Service::start_reading_stdout_after(
        config,
        TempDir::new(),
        &[("RUST_LOG", "trace")],
        Some(start_reading),
    );
    let metrics_port = service.metrics_port();
    let jwt = session_jwt(JWT_SECRET);
    let checkout = |step: usize| {
        let response = start_checkout(service.port, APP_ORIGIN, &jwt)
            .unwrap_or_else(|error| panic!("checkout {step} while stdout is not read: {error}"));
        assert_eq!(response.status, 200, "checkout {step}: {response:?}");
    };
    let mut served = 0;
    while dropped_log_lines(metrics_port) == 0 {
        checkout(served);
        served += 1;
        assert!(
            served < 20_000,
            "{served} checkouts while stdout was not read, and no line dropped"
        );
    }
    // Served with the buffer full, too.
    for step in served..served + 50 {
        checkout(step);
    }
    let dropped = dropped_log_lines(metrics_port);
    assert!(dropped > 0);

    // Once stdout is read again, the buffered lines come out, then the warning (within ten
    // seconds of the first drop), and new requests are logged again.
    read_stdout.send(()).unwrap();
    let warning = eventually("the dropped-lines warning", || {
        service.stdout().lines().find_map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).ok()?;
            (line["fields"]["message"] == "log lines dropped: standard output did not keep up")
                .then_some(line)
        })
    });
    let reported = warning["fields"]["dropped_total"]
        .as_u64()
        .expect("a count");
    assert!(reported > 0, "{warning}");
    assert_eq!(warning["level"], "WARN", "{warning}");
    checkout(served + 50);
    let (stdout, _) = service.stop();
    assert!(
        stdout
            .lines()
            .rev()
            .take(200)
            .any(|line| line.contains("request completed")),
        "requests are logged again once stdout is read"
    );
}

/// `proof-bff healthcheck` as the image's `HEALTHCHECK` runs it: no `--url`, the config file named
/// by `PROOF_BFF_CONFIG`, overrides from the environment.
fn healthcheck(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = bff();
    command
        .arg("healthcheck")
        .env("PROOF_BFF_CONFIG", config)
        .envs(env.iter().copied());
    command.output().expect("run proof-bff healthcheck")
}

#[test]
fn healthcheck_without_a_url_probes_the_configured_listen_address() {
    let upstream = Upstream::start();
    let service = Service::start(service_config(&upstream), TempDir::new(), &[]);
    let dir = TempDir::new();
    // Listening on every interface, as in the image: the probe goes through loopback.
    let config = service_config(&upstream)
        .set_str("server", "listen", &format!("0.0.0.0:{}", service.port))
        .write_to(&dir);

    assert_passes(&healthcheck(&config, &[]));

    // The environment overrides the file for the probe as it does for the service: nothing
    // listens on this port, so the probe fails.
    let elsewhere = format!("127.0.0.1:{}", free_port());
    let output = healthcheck(&config, &[("PROOF_BFF__SERVER__LISTEN", &elsewhere)]);
    assert_fails_naming(&output, &["healthcheck", &elsewhere]);

    let output = healthcheck(&dir.path("missing.toml"), &[]);
    assert_fails_naming(&output, &["missing.toml"]);
}

#[test]
fn sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_zero() {
    // Proof holds its answer until the test has seen new connections refused.
    let upstream = Upstream::held();
    let config = service_config(&upstream).set("server", "shutdown_timeout_s", "60");
    let mut service = Service::start(config, TempDir::new(), &[]);
    let port = service.port;
    let jwt = session_jwt(JWT_SECRET);

    let in_flight = thread::spawn(move || start_checkout(port, APP_ORIGIN, &jwt));
    // Proof has the request: it is in flight inside the service.
    upstream.next_request(Duration::from_secs(10));
    service.signal("-TERM");

    // While the answer is still pending, new connections stop being accepted.
    let signalled = Instant::now();
    let refused = loop {
        match TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_millis(200),
        ) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break true,
            _ if signalled.elapsed() > Duration::from_secs(20) => break false,
            _ => thread::sleep(Duration::from_millis(20)),
        }
    };
    assert!(
        refused,
        "a new connection was still accepted 20 s after SIGTERM"
    );
    assert!(
        !in_flight.is_finished(),
        "the checkout in flight ended before Proof answered"
    );

    upstream.release();
    let response = in_flight
        .join()
        .expect("client thread")
        .expect("in-flight POST /start-checkout");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), WIDGET_BODY);

    // Nothing is left in flight, so the process exits without waiting out the 60 s timeout.
    let status = service.wait_for_exit(Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGTERM: {status:?}\nstderr: {}",
        service.stderr()
    );
}

#[test]
fn sigterm_is_not_held_by_connections_that_never_finish_their_request() {
    let config = Config::valid()
        .set("server", "shutdown_timeout_s", "60")
        .set("server", "client_request_timeout_ms", "2000");
    let mut service = Service::start(config, TempDir::new(), &[]);
    let port = service.port;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let connect = || {
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };
    // A probe that announces a chunked body and never sends it: answered at once.
    let mut probe = connect();
    probe
        .write_all(
            RawRequest::new(port, "GET", "/healthz")
                .header("Transfer-Encoding", "chunked")
                .head()
                .as_bytes(),
        )
        .unwrap();
    let mut status_line = [0u8; 12];
    probe.read_exact(&mut status_line).unwrap();
    assert_eq!(&status_line, b"HTTP/1.1 200");
    // A checkout whose body stops half way.
    let mut stalled = connect();
    stalled
        .write_all(
            &RawRequest::checkout(port, APP_ORIGIN, Some(&session_jwt(JWT_SECRET)))
                .with_body_cut_short(CHECKOUT_BODY.as_bytes(), CHECKOUT_BODY.len() / 2),
        )
        .unwrap();

    service.signal("-TERM");
    // Far below shutdown_timeout_s: nothing the clients hold back keeps the process.
    let status = service.wait_for_exit(Duration::from_secs(15));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGTERM with held connections: {status:?}\nstderr: {}",
        service.stderr()
    );
}

#[test]
fn sigint_exits_zero() {
    let mut service = Service::start(Config::valid(), TempDir::new(), &[]);
    service.signal("-INT");
    let status = service.wait_for_exit(Duration::from_secs(5 + 3));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit after SIGINT: {status:?}\nstderr: {}",
        service.stderr()
    );
}

/// A drain that would last up to a minute (a checkout Proof never answers, a 60 s shutdown
/// timeout) is cut short by a second signal: the process exits 1 well before the minute is up.
fn second_signal_cuts_a_drain_short(first: &str, second: &str) {
    // Proof reads the request and never answers within the test.
    let upstream = Upstream::held();
    let config = service_config(&upstream)
        .set("server", "shutdown_timeout_s", "60")
        .set("proof", "request_timeout_ms", "600000")
        .set("proof", "deadline_ms", "600000");
    let mut service = Service::start(config, TempDir::new(), &[]);
    let port = service.port;
    let jwt = session_jwt(JWT_SECRET);
    let _in_flight = thread::spawn(move || start_checkout(port, APP_ORIGIN, &jwt));
    upstream.next_request(Duration::from_secs(10));

    service.signal(first);
    // Only once the drain is under way is the next signal a second one, not a duplicate the
    // kernel merges with the first.
    service.process.stdout.wait_for_line(
        |line| line.contains("shutdown signal received: draining"),
        EVENTUALLY,
    );
    let signalled = Instant::now();
    service.signal(second);

    let status = service.wait_for_exit(Duration::from_secs(20));
    let stdout = service.stdout();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "exit after {first} then {second}: {status:?}\nstdout: {stdout}\nstderr: {}",
        service.stderr()
    );
    // Far below the 60 s the drain could have taken: the second signal did it, not a timeout.
    assert!(
        signalled.elapsed() < Duration::from_secs(20),
        "took {:?} to exit",
        signalled.elapsed()
    );
    assert_eq!(
        stdout.matches("drain cut short").count(),
        1,
        "one log line says the drain was cut short:\n{stdout}"
    );
}

#[test]
fn a_second_sigterm_during_a_drain_exits_1_at_once() {
    second_signal_cuts_a_drain_short("-TERM", "-TERM");
}

#[test]
fn a_second_sigint_during_a_drain_exits_1_at_once() {
    second_signal_cuts_a_drain_short("-INT", "-INT");
}

#[test]
fn sigint_during_a_sigterm_drain_exits_1_at_once() {
    second_signal_cuts_a_drain_short("-TERM", "-INT");
}

#[test]
fn pretty_logs_written_to_a_pipe_carry_no_colour_codes() {
    let upstream = Upstream::start();
    let config = service_config(&upstream).set_str("log", "format", "pretty");
    let service = Service::start(config, TempDir::new(), &[]);
    let response = start_checkout(service.port, APP_ORIGIN, &session_jwt(JWT_SECRET))
        .expect("POST /start-checkout");
    assert_eq!(response.status, 200, "{response:?}");

    let (stdout, stderr) = service.stop();
    assert!(
        stdout.contains("request completed"),
        "no pretty request log:\n{stdout}"
    );
    for (stream, output) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !output.contains("\x1b["),
            "{stream} carries ANSI escape codes: {output:?}"
        );
    }
}

#[test]
fn with_a_drain_delay_sigterm_makes_readyz_503_while_checkouts_are_still_served_then_closes() {
    let upstream = Upstream::start();
    // Far longer than the checks below need, however slow the machine.
    let config = service_config(&upstream).set("server", "drain_delay_s", "12");
    let mut service = Service::start(config, TempDir::new(), &[]);
    let port = service.port;
    let readyz = RawRequest::new(port, "GET", "/readyz")
        .header("Connection", "close")
        .with_body(b"");
    assert_eq!(raw_http::send(port, &readyz).unwrap().status, 200);

    service.signal("-TERM");

    // A load balancer's fresh probe is told "not ready"...
    let signalled = Instant::now();
    loop {
        let status = raw_http::send(port, &readyz).map(|r| r.status);
        if status.as_ref().is_ok_and(|s| *s == 503) {
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(12),
            "/readyz still {status:?} after SIGTERM"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // ...while a checkout on a fresh connection is still served.
    let checkout = start_checkout(port, APP_ORIGIN, &session_jwt(JWT_SECRET))
        .expect("a checkout during the drain delay");
    assert_eq!(checkout.status, 200, "{checkout:?}");

    // Once the delay is over the listener closes, and the process exits cleanly.
    let refused = loop {
        match TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_millis(200),
        ) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break true,
            _ if signalled.elapsed() > Duration::from_secs(60) => break false,
            _ => thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(refused, "still accepting 60 s after SIGTERM");
    assert!(
        signalled.elapsed() >= Duration::from_secs(11),
        "the listener closed before the drain delay was over"
    );
    let status = service.wait_for_exit(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit: {status:?}");
}

/// Replaces a file's contents in one step, as secret managers do (a rename over the old file).
fn replace_file(dir: &TempDir, name: &str, contents: &str) {
    let staged = dir.write(&format!("{name}.new"), contents);
    std::fs::rename(staged, dir.path(name)).expect("rename over the token file");
}

/// The service with its token in a file holding `pk_old`; `reload_s` is `proof.token_reload_s`.
fn service_with_token_file(upstream: &Upstream, reload_s: &str) -> (Service, TempDir) {
    let files = TempDir::new();
    let token_file = files.write("client_token", "pk_old\n");
    let config = service_config(upstream)
        .remove("proof", "client_token")
        .set("proof", "client_token_file", path_value(&token_file))
        .set("proof", "token_reload_s", reload_s)
        .set("rate_limit", "per_user_burst", "100000")
        .set("rate_limit", "per_user_per_minute", "100000")
        .set("rate_limit", "per_ip_burst", "100000")
        .set("rate_limit", "per_ip_per_minute", "100000");
    (Service::start(config, TempDir::new(), &[]), files)
}

/// The service with its HS256 session key in a file holding `key`, read on SIGHUP only; the file.
fn service_with_session_key_file(upstream: &Upstream, key: &str) -> (Service, TempDir, PathBuf) {
    let files = TempDir::new();
    let secret_file = files.write("session_secret", &format!("{key}\n"));
    let config = service_config(upstream)
        .remove("session.jwt", "secret")
        .set("session.jwt", "secret_file", path_value(&secret_file))
        .set("proof", "token_reload_s", "0");
    (
        Service::start(config, TempDir::new(), &[]),
        files,
        secret_file,
    )
}

/// The status of a checkout whose session is signed with `secret`.
fn status_with_session_key(service: &Service, secret: &str) -> u16 {
    start_checkout(service.port, APP_ORIGIN, &session_jwt(secret))
        .unwrap()
        .status
}

/// The `Authorization` Proof receives with the next checkout.
fn token_sent_to_proof(service: &Service, upstream: &Upstream) -> String {
    let response = start_checkout(service.port, APP_ORIGIN, &session_jwt(JWT_SECRET))
        .expect("POST /start-checkout");
    assert_eq!(response.status, 200, "{response:?}");
    upstream
        .next_request(Duration::from_secs(30))
        .header("authorization")
        .unwrap_or_default()
        .to_owned()
}

/// Sends checkouts one after another until `stop`, each on a fresh connection; their statuses.
fn steady_load(port: u16, stop: Arc<AtomicBool>) -> JoinHandle<Vec<u16>> {
    thread::spawn(move || {
        let jwt = session_jwt(JWT_SECRET);
        let mut statuses = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let status = start_checkout(port, APP_ORIGIN, &jwt).map_or(0, |r| r.status);
            statuses.push(status);
            thread::sleep(Duration::from_millis(10));
        }
        statuses
    })
}

#[test]
fn a_rotated_token_file_is_used_without_a_restart_and_without_a_failed_request() {
    let upstream = Upstream::start();
    let (service, files) = service_with_token_file(&upstream, "1");
    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(service.port, stop.clone());
    let token_of = |upstream: &Upstream| {
        upstream
            .next_request(Duration::from_secs(30))
            .header("authorization")
            .unwrap_or_default()
            .to_owned()
    };
    for _ in 0..3 {
        assert_eq!(token_of(&upstream), "Bearer pk_old");
    }

    replace_file(&files, "client_token", "pk_new\n");

    // Old tokens until the file is noticed, then only the new one.
    let mut seen_new = 0;
    while seen_new < 10 {
        match token_of(&upstream).as_str() {
            "Bearer pk_new" => seen_new += 1,
            "Bearer pk_old" => assert_eq!(seen_new, 0, "the old token came back after the new one"),
            other => panic!("Proof saw {other:?}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    let statuses = load.join().unwrap();
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} checkouts failed: {:?}",
        failed.len(),
        statuses.len(),
        &failed[..failed.len().min(10)]
    );
    let (stdout, _) = service.stop();
    assert!(stdout.contains("the new token is in use"));
    assert!(
        !stdout.contains("pk_new") && !stdout.contains("pk_old"),
        "a token was logged"
    );
}

#[test]
fn sighup_reloads_the_token_and_a_corrupt_file_keeps_the_last_good_one() {
    let upstream = Upstream::start();
    // Checked on SIGHUP only.
    let (service, files) = service_with_token_file(&upstream, "0");
    let token_seen = || token_sent_to_proof(&service, &upstream);
    replace_file(&files, "client_token", "pk_new\n");
    assert_eq!(token_seen(), "Bearer pk_old", "no SIGHUP yet");

    service.signal("-HUP");
    eventually("SIGHUP loaded the new token", || {
        token_seen() == "Bearer pk_new"
    });

    // A broken file: the last good token stays, and the operator is told.
    replace_file(&files, "client_token", "not a token\n");
    service.signal("-HUP");
    service.process.stdout.wait_for_line(
        |line| line.contains("holds no valid token"),
        Duration::from_secs(30),
    );
    assert_eq!(token_seen(), "Bearer pk_new");
    assert!(
        !service.stdout().contains("not a token"),
        "the file's contents were logged"
    );
}

#[test]
fn sighup_reloads_the_session_key_file_and_a_bad_one_keeps_the_last_good_key() {
    const OLD: &str = "old-session-secret-0123456789abcdef0123456789";
    const NEW: &str = "new-session-secret-0123456789abcdef0123456789";
    let upstream = Upstream::start();
    let (service, files, _) = service_with_session_key_file(&upstream, OLD);
    let status_with = |secret: &str| status_with_session_key(&service, secret);
    assert_eq!(status_with(OLD), 200);
    assert_eq!(status_with(NEW), 401);

    replace_file(&files, "session_secret", &format!("{NEW}\n"));
    service.signal("-HUP");
    eventually("SIGHUP loaded the new session key", || {
        status_with(NEW) == 200
    });
    assert_eq!(status_with(OLD), 401, "the old key is gone");

    // Too short to be an HS256 key: the last good key stays.
    replace_file(&files, "session_secret", "short\n");
    service.signal("-HUP");
    service.process.stdout.wait_for_line(
        |line| line.contains("session key file holds no valid key"),
        Duration::from_secs(30),
    );
    assert_eq!(status_with(NEW), 200);
    assert!(!service.stdout().contains(NEW), "the key was logged");
}

// ---------------------------------------------------------------------------------------------
// Secret files read safely
// ---------------------------------------------------------------------------------------------

/// What the service logs when a SIGHUP arrives, before it reads anything.
const SIGHUP_LINE: &str = "SIGHUP: re-reading the secrets given as files";

/// Waits until `needle` has been logged `count` times. Polled often: a test that stands for a
/// writer stalled half way finishes the write as soon as the service has started reading.
fn wait_for_lines(service: &Service, needle: &str, count: usize) {
    let started = Instant::now();
    while service
        .stdout()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
        < count
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{needle:?} was not logged {count} time(s) within 60 s\nstdout: {}",
            service.stdout()
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// A writer that rewrites `path` in place and stalls after `first_part`, as a copy onto a mounted
/// secret can: the rest is written through the file handed back.
fn start_writing_in_place(path: &Path, first_part: &str) -> std::fs::File {
    let mut file = std::fs::File::create(path).expect("open the secret file for writing");
    file.write_all(first_part.as_bytes())
        .expect("write the first part");
    file
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed: {status:?}");
}

/// Stands for a writer caught half way through a secret file: writes `first` to `path`, has the
/// service re-read it (its `reload`-th SIGHUP), and as soon as the service has started reading,
/// writes `rest`. True when the whole write ended within the reader's settling gap of the signal,
/// so that no read made by the rules could have taken `first` alone; false when this machine
/// stalled the writer longer, and the service may rightly have taken what a writer that stopped
/// there leaves behind.
fn write_in_two_parts_across_a_reload(
    service: &Service,
    path: &Path,
    (first, rest): (&str, &str),
    reload: usize,
) -> bool {
    let mut writer = start_writing_in_place(path, first);
    let signalled = Instant::now();
    service.signal("-HUP");
    wait_for_lines(service, SIGHUP_LINE, reload);
    writer
        .write_all(format!("{rest}\n").as_bytes())
        .expect("finish the write");
    drop(writer);
    signalled.elapsed() < proof_bff::secret_file::SETTLE_GAP
}

/// How many times a half-written file is tried: an attempt whose writer this machine stalled past
/// the reader's gap proves nothing either way, and is tried again.
const HALF_WRITTEN_ATTEMPTS: usize = 5;

#[test]
fn a_token_file_caught_half_written_is_never_sent_to_proof() {
    let upstream = Upstream::start();
    // Read on SIGHUP only: nothing but the SIGHUPs below reads the file.
    let (service, files) = service_with_token_file(&upstream, "0");
    for attempt in 1..=HALF_WRITTEN_ATTEMPTS {
        let token = format!("tok_NEW{attempt}_full_7c2e9a");
        let in_time = write_in_two_parts_across_a_reload(
            &service,
            &files.path("client_token"),
            token.split_at(10),
            attempt,
        );
        wait_for_lines(&service, "the new token is in use", attempt);
        let sent = token_sent_to_proof(&service, &upstream);
        if in_time {
            assert_eq!(
                sent,
                format!("Bearer {token}"),
                "Proof was sent the token the file held half way through its write"
            );
            let (stdout, _) = service.stop();
            assert!(!stdout.contains("tok_NEW"), "a token was logged");
            return;
        }
    }
    panic!("the writer was stalled past the reader's gap in all {HALF_WRITTEN_ATTEMPTS} attempts");
}

#[test]
fn a_session_key_file_caught_half_written_is_never_used() {
    const OLD: &str = "old-session-secret-0123456789abcdef0123456789";
    let upstream = Upstream::start();
    let (service, _files, secret_file) = service_with_session_key_file(&upstream, OLD);
    let status_with = |secret: &str| status_with_session_key(&service, secret);
    assert_eq!(status_with(OLD), 200);

    for attempt in 1..=HALF_WRITTEN_ATTEMPTS {
        let new = format!("new-session-secret-{attempt}-0123456789abcdef0123456789-and-more-of-it");
        // Cut short, the new key is still long enough to be an HS256 key, and a wrong one.
        let (first_part, rest) = new.split_at(40);
        let in_time =
            write_in_two_parts_across_a_reload(&service, &secret_file, (first_part, rest), attempt);
        wait_for_lines(&service, "session key file changed", attempt);
        if in_time {
            assert_eq!(
                status_with(&new),
                200,
                "a session signed with the whole new key is refused: the key was taken half written"
            );
            assert_eq!(status_with(OLD), 401, "the old key is gone");
            let (stdout, _) = service.stop();
            assert!(!stdout.contains(first_part), "the key was logged");
            return;
        }
    }
    panic!("the writer was stalled past the reader's gap in all {HALF_WRITTEN_ATTEMPTS} attempts");
}

#[test]
fn check_config_refuses_secrets_over_their_bound_without_quoting_them() {
    let huge_token = format!("pk_huge_{}", "A".repeat(1 << 20));
    let dir = TempDir::new();
    let token_file = dir.write("client_token", &huge_token);
    let from_file = Config::valid().remove("proof", "client_token").set(
        "proof",
        "client_token_file",
        path_value(&token_file),
    );
    let output = check_config_with(&from_file, &[]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_fails_naming(&output, &["proof.client_token_file", "4096 bytes"]);
    assert!(!text(&output.stderr).contains("pk_huge_"));

    // The same bound for a token given inline (here by the environment).
    let long_token = format!("pk_long_{}", "B".repeat(5000));
    let output = check_config_with(
        &Config::valid().remove("proof", "client_token"),
        &[("PROOF_BFF__PROOF__CLIENT_TOKEN", &long_token)],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_fails_naming(&output, &["proof.client_token", "4096 bytes"]);
    assert!(!text(&output.stderr).contains("pk_long_"));

    let key_file = dir.write("session_secret", &"k".repeat(64 * 1024 + 1));
    let output = check_config_with(
        &Config::valid().remove("session.jwt", "secret").set(
            "session.jwt",
            "secret_file",
            path_value(&key_file),
        ),
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_fails_naming(&output, &["session.jwt.secret_file", "65536 bytes"]);
}

#[test]
fn a_token_file_over_its_bound_on_reload_keeps_the_last_good_token_and_is_never_logged() {
    let huge_token = format!("pk_huge_{}", "A".repeat(1 << 20));
    let upstream = Upstream::start();
    let (service, files) = service_with_token_file(&upstream, "0");
    replace_file(&files, "client_token", &huge_token);
    service.signal("-HUP");
    let line = service.process.stdout.wait_for_line(
        |line| {
            line.contains("proof.client_token_file")
                && (line.contains("larger than") || line.contains("the new token is in use"))
        },
        Duration::from_secs(60),
    );
    assert!(line.contains("larger than 4096 bytes"), "{line:.300}");
    assert_eq!(token_sent_to_proof(&service, &upstream), "Bearer pk_old");
    let (stdout, _) = service.stop();
    assert!(
        !stdout.contains("pk_huge_"),
        "the file's contents were logged"
    );
}

#[cfg(unix)]
#[test]
fn check_config_refuses_a_fifo_as_a_secret_file_instead_of_waiting_on_it() {
    let dir = TempDir::new();
    // Nothing ever writes to it: opening it for reading would wait for ever.
    let fifo = dir.path("fifo");
    mkfifo(&fifo);
    let cases = [
        (
            Config::valid().remove("proof", "client_token").set(
                "proof",
                "client_token_file",
                path_value(&fifo),
            ),
            "proof.client_token_file",
        ),
        (
            Config::valid().remove("session.jwt", "secret").set(
                "session.jwt",
                "secret_file",
                path_value(&fifo),
            ),
            "session.jwt.secret_file",
        ),
        (
            Config::valid()
                .set_str("session.jwt", "algorithm", "RS256")
                .set("session.jwt", "public_key_pem_file", path_value(&fifo)),
            "session.jwt.public_key_pem_file",
        ),
    ];
    for (config, key) in cases {
        let mut command = bff();
        command
            .arg("check-config")
            .arg("--config")
            .arg(config.write_to(&dir));
        let mut process = Process::spawn(command);
        let status = process.wait_for_exit(Duration::from_secs(60));
        let stderr = process.stderr.text();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(2),
            "{key} as a FIFO: {status:?} (None: still waiting on it)\nstderr: {stderr}"
        );
        assert!(
            stderr.contains(key) && stderr.contains("not a regular file"),
            "{stderr}"
        );
    }
}

#[cfg(unix)]
#[test]
fn sigterm_is_served_while_the_token_file_is_a_fifo() {
    let upstream = Upstream::start();
    let (mut service, files) = service_with_token_file(&upstream, "0");
    // Put in place by rename, as a secret manager would a file; nothing ever writes to it.
    let staged = files.path("client_token.fifo");
    mkfifo(&staged);
    std::fs::rename(&staged, files.path("client_token")).expect("rename the FIFO into place");
    service.signal("-HUP");
    wait_for_lines(&service, SIGHUP_LINE, 1);

    service.signal("-TERM");
    let status = service.wait_for_exit(Duration::from_secs(60));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "after SIGTERM: {status:?} (None: still running)\nstderr: {}",
        service.stderr()
    );
    assert!(
        service.stdout().contains("is not a regular file"),
        "the FIFO was not reported\nstdout: {}",
        service.stdout()
    );
}

/// The test CA of `tests/fixtures/tls`, and its server's private key (a PEM file, no certificate).
const TEST_CA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
const TEST_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/tls/server_key.pem"
);

#[test]
fn check_config_reads_the_ca_files_of_the_jwks_and_forward_sources_and_the_collector() {
    let dir = TempDir::new();
    let jwks =
        || jwks_source("https://sso.shop.internal/realms/shop/protocol/openid-connect/certs");
    let forward = || {
        forward_source().set_str(
            "session.forward",
            "url",
            "https://app.shop.internal/session/whoami",
        )
    };
    assert_passes(&check_config_with(
        &jwks().set_str("session.jwks", "ca_file", TEST_CA_FILE),
        &[],
    ));
    assert_passes(&check_config_with(
        &forward().set_str("session.forward", "ca_file", TEST_CA_FILE),
        &[],
    ));
    assert_passes(&check_config_with(
        &Config::valid()
            .set_str(
                "telemetry",
                "otlp_endpoint",
                "https://otel.shop.internal:4318",
            )
            .set_str("telemetry", "otlp_ca_file", TEST_CA_FILE),
        &[],
    ));

    let missing = dir.path("missing-ca.pem");
    let text = dir.write("not-a-certificate.pem", "a note, not a certificate\n");
    let broken = dir.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    let cases = [
        ("a file that does not exist", missing.to_str().unwrap()),
        ("a file with no PEM in it", text.to_str().unwrap()),
        ("a private key", TEST_KEY_FILE),
        ("a certificate that is not one", broken.to_str().unwrap()),
    ];
    for (case, path) in cases {
        for (config, key) in [
            (
                jwks().set_str("session.jwks", "ca_file", path),
                "session.jwks.ca_file",
            ),
            (
                forward().set_str("session.forward", "ca_file", path),
                "session.forward.ca_file",
            ),
            // Checked with traces off too, like sample_ratio.
            (
                Config::valid().set_str("telemetry", "otlp_ca_file", path),
                "telemetry.otlp_ca_file",
            ),
        ] {
            let output = check_config_with(&config, &[]);
            let outcome = std::panic::catch_unwind(|| assert_fails_naming(&output, &[key]));
            assert!(outcome.is_ok(), "{case} as {key}");
        }
    }
}

/// A gauge's value from the metrics port, `None` while it has no series.
fn gauge(metrics_port: u16, series: &str) -> Option<u64> {
    let scrape = RawRequest::new(metrics_port, "GET", "/metrics")
        .header("Connection", "close")
        .with_body(b"");
    let response = raw_http::send(metrics_port, &scrape).expect("GET /metrics");
    assert_eq!(response.status, 200, "{response:?}");
    String::from_utf8_lossy(&response.body)
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// What the process holds in memory now (VmRSS), in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// `count` checkouts over `connections` kept-alive connections at once, the `n`-th with the
/// Idempotency-Key `key(n)` (none when it gives `None`); each must be a 200 from Proof.
fn checkouts(
    runtime: &tokio::runtime::Runtime,
    port: u16,
    jwt: &str,
    range: std::ops::Range<usize>,
    key: fn(usize) -> Option<String>,
) {
    const CONNECTIONS: usize = 4;
    runtime.block_on(async {
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|lane| {
                let jwt = jwt.to_owned();
                let range = range.clone();
                tokio::spawn(async move {
                    let mut connection = raw_http::RawConnection::open(port).await;
                    for n in range.skip(lane).step_by(CONNECTIONS) {
                        let mut request = RawRequest::checkout(port, APP_ORIGIN, Some(&jwt));
                        if let Some(key) = key(n) {
                            request = request.header("Idempotency-Key", &key);
                        }
                        let response = connection
                            .exchange(&request.with_body(CHECKOUT_BODY.as_bytes()))
                            .await;
                        assert_eq!(response.status, 200, "checkout {n}: {response:?}");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("a lane of checkouts");
        }
    });
}

/// `checkout.idempotency_max_bytes` is what the kept answers cost the process. Filled past its
/// bound with Proof's small answers (where the store's own bookkeeping, not the bodies, is most of
/// the cost), the process grows by what the store counts, within a quarter, and the count stays
/// within the bound.
#[test]
fn the_idempotency_store_costs_the_process_what_it_counts_and_no_more_than_its_bound() {
    const BOUND: u64 = 6 << 20;
    const SERIES: &str = "proof_bff_idempotency_bytes{store=\"memory\"} ";
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let proof = runtime.block_on(async {
        let proof = wiremock::MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path("/widget/session"))
            .respond_with(
                wiremock::ResponseTemplate::new(200).set_body_raw(WIDGET_BODY, "application/json"),
            )
            .mount(&proof)
            .await;
        proof
    });
    let config = Config::valid()
        .set_str("proof", "base_url", &proof.uri())
        .set("proof", "max_attempts", "1")
        .set_str("log", "level", "warn")
        .set_str("metrics", "listen", "127.0.0.1:0")
        .set("checkout", "idempotency_max_bytes", BOUND.to_string())
        .set("rate_limit", "per_user_burst", "1000000")
        .set("rate_limit", "per_user_per_minute", "1000000")
        .set("rate_limit", "per_ip_burst", "1000000")
        .set("rate_limit", "per_ip_per_minute", "1000000");
    // Quiet but for the start-up lines that say which ports it took.
    let service = Service::start(
        config,
        TempDir::new(),
        &[("RUST_LOG", "warn,proof_bff::startup=info")],
    );
    let metrics_port = service.metrics_port();
    let pid = service.process.id();
    let jwt = session_jwt(JWT_SECRET);

    // Every buffer a checkout uses, made once before the baseline.
    checkouts(&runtime, service.port, &jwt, 0..2_000, |_| None);
    assert_eq!(gauge(metrics_port, SERIES), Some(0));
    let baseline = resident_bytes(pid);

    let key = |n: usize| Some(format!("\"order-{n}\""));
    let mut sent = 0;
    while gauge(metrics_port, SERIES).expect("the store's size") < BOUND * 9 / 10 {
        checkouts(&runtime, service.port, &jwt, sent..sent + 1_000, key);
        sent += 1_000;
        assert!(
            sent < 200_000,
            "{sent} answers kept and the store is not full"
        );
    }
    // As many again: the oldest give way, and the store's tables reach the size churn gives them.
    checkouts(&runtime, service.port, &jwt, sent..2 * sent, key);
    let counted = gauge(metrics_port, SERIES).expect("the store's size");
    let grown = resident_bytes(pid).saturating_sub(baseline);
    let (_, stderr) = service.stop();
    eprintln!(
        "grew {grown} bytes for {counted} counted after {} keys",
        2 * sent
    );

    assert!(counted <= BOUND, "{counted} bytes counted, over {BOUND}");
    let ratio = grown as f64 / counted as f64;
    assert!(
        (0.75..=1.25).contains(&ratio),
        "the process grew by {grown} bytes for {counted} counted ({ratio:.2}), after {} keys\n{stderr}",
        2 * sent
    );
}
