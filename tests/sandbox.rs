//! `proof-bff --sandbox` as a newcomer runs it: the compiled binary, its printed curl line, the demo
//! page in a real browser, the dev login, and the sandbox routes' absence in normal mode.

mod support;

use std::time::Duration;

use fantoccini::Locator;
use support::eventually::{EVENTUALLY, eventually_async};
use support::process::{Process, bff};

/// A running binary, killed on drop, with what it prints captured.
struct Service {
    process: Process,
    port: u16,
}

impl Service {
    /// Starts the binary on port 0 and reads the port it bound from its log (in sandbox mode too:
    /// the demo page's origins name the port it bound).
    fn start(args: &[&str], env: &[(&str, String)]) -> Self {
        let mut command = bff();
        command
            .args(args)
            .env("PROOF_BFF__SERVER__LISTEN", "127.0.0.1:0")
            .env("PROOF_BFF__LOG__FORMAT", "json");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = Process::spawn(command);
        let port = process.bound_addresses().listen.port();
        assert_ne!(port, 0, "the port bound, not the one asked for");
        Self { process, port }
    }

    /// Waits for a printed line that satisfies `wanted`.
    fn wait_for_line(&self, wanted: impl Fn(&str) -> bool) -> String {
        self.process.stdout.wait_for_line(wanted, EVENTUALLY)
    }

    fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_until_healthy(&self) {
        let client = reqwest::Client::new();
        eventually_async("the service is healthy", async || {
            let answer = client.get(format!("{}/healthz", self.address())).send();
            answer.await.is_ok_and(|response| response.status() == 200)
        })
        .await;
    }

    /// Listening TCP sockets this process owns, from /proc.
    fn listening_sockets(&self) -> usize {
        let pid = self.process.id();
        let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("the process's fds")
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter_map(|target| {
                let target = target.to_string_lossy().into_owned();
                Some(
                    target
                        .strip_prefix("socket:[")?
                        .trim_end_matches(']')
                        .to_owned(),
                )
            })
            .collect();
        ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|table| std::fs::read_to_string(table).ok())
            .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
            .filter(|row| {
                let columns: Vec<&str> = row.split_whitespace().collect();
                // State 0A is LISTEN; column 9 is the socket's inode.
                columns.get(3) == Some(&"0A")
                    && columns
                        .get(9)
                        .is_some_and(|inode| inodes.iter().any(|i| i == inode))
            })
            .count()
    }
}

/// Splits the printed curl line into its URL, headers and body.
struct CurlLine {
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn parse_curl_line(line: &str) -> CurlLine {
    let mut url = None;
    let mut headers = Vec::new();
    let mut body = None;
    let mut rest = line.trim().strip_prefix("curl -s ").expect("a curl line");
    while !rest.is_empty() {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("-H '") {
            let (header, tail) = after.split_once('\'').expect("a closed header quote");
            let (name, value) = header.split_once(": ").expect("name: value");
            headers.push((name.to_owned(), value.to_owned()));
            rest = tail;
        } else if let Some(after) = rest.strip_prefix("-d '") {
            let (data, tail) = after.split_once('\'').expect("a closed body quote");
            body = Some(data.to_owned());
            rest = tail;
        } else {
            let (word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            url = Some(word.to_owned());
            rest = tail;
        }
    }
    CurlLine {
        url: url.expect("a URL"),
        headers,
        body: body.expect("a body"),
    }
}

#[tokio::test]
async fn the_printed_curl_line_returns_widget_parameters_from_the_stand_in() {
    let service = Service::start(&["--sandbox"], &[]);
    let page_line = service.wait_for_line(|line| line.contains("demo page:"));
    assert!(page_line.contains(&format!("http://127.0.0.1:{}/", service.port)));
    let curl =
        parse_curl_line(&service.wait_for_line(|line| line.trim_start().starts_with("curl -s")));
    service.wait_until_healthy().await;

    let client = reqwest::Client::new();
    let mut request = client.post(&curl.url).body(curl.body.clone());
    for (name, value) in &curl.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let params: serde_json::Value = response.json().await.unwrap();
    let signature = params["signature"].as_str().unwrap();
    assert!(
        signature.starts_with("v2:") && signature.len() == 3 + 128,
        "{params}"
    );
    assert_eq!(params["fix_network"], serde_json::json!(["TRC20"]));
    assert_eq!(params["amount"], "100");
    assert_eq!(params["init_token_type"], "sdk_partner_authorization");

    // The demo page is locked down: only its own script and style, never framed.
    let page = client
        .get(format!("{}/", service.address()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert!(
        !page.text().await.unwrap().contains("<script>"),
        "no inline script"
    );

    // The BFF and the stand-in: two listening sockets.
    assert_eq!(service.listening_sockets(), 2);
}

#[tokio::test]
async fn the_sandbox_routes_and_the_stand_in_do_not_exist_without_the_flag() {
    let dir = std::env::temp_dir().join(format!("proof-bff-sandbox-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        r#"
[proof]
base_url = "http://127.0.0.1:9"
client_token = "pk_live_not_used_0123456789"
origin = "https://app.example.com"
[browser]
allowed_origins = ["https://app.example.com"]
[session.jwt]
secret = "a-production-secret-that-is-long-enough-0123"
"#,
    )
    .unwrap();
    let service = Service::start(&["--config", config.to_str().unwrap()], &[]);
    service.wait_until_healthy().await;

    let client = reqwest::Client::new();
    for (method, route) in [
        (reqwest::Method::GET, "/"),
        (reqwest::Method::GET, "/sandbox/demo.js"),
        (reqwest::Method::GET, "/sandbox/client.js"),
        (reqwest::Method::GET, "/sandbox/demo.css"),
        (reqwest::Method::POST, "/sandbox/login"),
    ] {
        let response = client
            .request(method.clone(), format!("{}{route}", service.address()))
            .header("Origin", "https://app.example.com")
            .header("Content-Type", "application/json")
            .body(r#"{"user_id":"mallory","email":"mallory@example.com"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {route}");
        assert!(response.headers().get("set-cookie").is_none());
    }
    assert_eq!(
        service.listening_sockets(),
        1,
        "only the service itself listens"
    );
    let printed = service.process.stdout.lines();
    assert!(
        !printed.iter().any(|line| line.contains("stand-in")),
        "{printed:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_dev_login_sets_a_session_cookie_that_starts_a_checkout() {
    let service = Service::start(&["--sandbox"], &[]);
    service.wait_for_line(|line| line.contains("demo page:"));
    service.wait_until_healthy().await;
    let origin = service.address();
    let client = reqwest::Client::new();
    let login = |origin: String, body: &'static str| {
        client
            .post(format!("{}/sandbox/login", service.address()))
            .header("Origin", origin)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };

    let response = login(
        origin.clone(),
        r#"{"user_id":"user-9","email":"nine@example.com"}"#,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(cookie.starts_with("session="));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"user_id": "user-9"}));

    let session = cookie.split(';').next().unwrap().to_owned();
    let checkout = client
        .post(format!("{}/start-checkout", service.address()))
        .header("Origin", origin.clone())
        .header("Content-Type", "application/json")
        .header("Cookie", session)
        .body(r#"{"network":"ERC20","currency":"USDC","amount":"25.5","type":"sell"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(checkout.status(), 200);
    let params: serde_json::Value = checkout.json().await.unwrap();
    assert_eq!(params["type"], "sell");
    assert!(params["address"].as_str().unwrap().starts_with("0x"));

    let foreign = login(
        "https://evil.example".to_owned(),
        r#"{"user_id":"user-9","email":"nine@example.com"}"#,
    )
    .await
    .unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(foreign.headers().get("set-cookie").is_none());
    for bad in [
        r#"{"user_id":"","email":"nine@example.com"}"#,
        r#"{"user_id":"user-9","email":"not-an-email"}"#,
        r#"{"user_id":"user-9"}"#,
        r#"{"user_id":"user-9","email":"nine@example.com","admin":true}"#,
    ] {
        let response = login(origin.clone(), bad).await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let envelope: serde_json::Value = response.json().await.unwrap();
        assert_eq!(envelope["code"], "validation_error");
    }
}

/// Signs the page in as `user`.
async fn sign_in(browser: &support::browser::Browser, user: &str) {
    let page = &browser.client;
    let user_id = page.find(Locator::Id("user-id")).await.unwrap();
    user_id.clear().await.unwrap();
    user_id.send_keys(user).await.unwrap();
    page.find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_text("#login-status", |text| {
            text.contains(&format!("Signed in as {user}"))
        })
        .await;
}

/// A sandbox started with `env`, its demo page open in the browser and signed in as `user`.
async fn demo_page_signed_in(
    browser: &support::browser::Browser,
    env: &[(&str, String)],
    user: &str,
) -> Service {
    let service = Service::start(&["--sandbox"], env);
    service.wait_for_line(|line| line.contains("demo page:"));
    service.wait_until_healthy().await;
    browser
        .client
        .goto(&format!("{}/", service.address()))
        .await
        .unwrap();
    sign_in(browser, user).await;
    service
}

/// Enters `amount` on the page and clicks "Start checkout" `clicks` times.
async fn start_checkout_on_page(browser: &support::browser::Browser, amount: &str, clicks: usize) {
    let page = &browser.client;
    let field = page.find(Locator::Id("amount")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(amount).await.unwrap();
    let button = page.find(Locator::Id("start-checkout")).await.unwrap();
    for _ in 0..clicks {
        button.click().await.unwrap();
    }
}

/// The number written right after `marker` in `text`, as the page writes counts and waits.
fn number_after(text: &str, marker: &str) -> Option<u64> {
    text.split(marker).nth(1)?.split(' ').next()?.parse().ok()
}

/// The page's list of settled calls, one line each.
async fn settled_calls(browser: &support::browser::Browser, at_least: usize) -> Vec<String> {
    browser
        .wait_for_text_within("#calls", Duration::from_secs(120), |text| {
            text.lines().count() >= at_least
        })
        .await
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_demo_page_signs_in_and_shows_the_widget_parameters_in_a_real_browser() {
    let Some(browser) = support::browser::launch().await else {
        return;
    };
    // Two checkouts at once per user, one more a minute: the page runs into the per-user limit.
    let _service = demo_page_signed_in(
        &browser,
        &[
            ("PROOF_BFF__RATE_LIMIT__PER_USER_BURST", "2".to_owned()),
            ("PROOF_BFF__RATE_LIMIT__PER_USER_PER_MINUTE", "1".to_owned()),
        ],
        "browser-user",
    )
    .await;
    start_checkout_on_page(&browser, "42.50", 1).await;
    let status = browser
        .wait_for_text("#result-status", |text| text.starts_with("200"))
        .await;
    assert!(status.contains("request id"), "{status}");
    let result = browser
        .wait_for_text("#result", |text| !text.is_empty())
        .await;
    let params: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(params["amount"], "42.50");
    let call = browser
        .wait_for_text("#widget-call", |text| !text.is_empty())
        .await;
    assert!(call.starts_with("proofWidget.run({"), "{call}");
    let transaction = params["merchant_transaction_id"].as_str().unwrap();
    assert!(
        call.contains(&format!("merchantTransactionId: \"{transaction}\"")),
        "{call}"
    );

    // After the widget, the page follows the transaction live through its EventSource, as the
    // stand-in moves it along.
    let events = browser
        .wait_for_text("#tx-events", |text| text.contains("completed"))
        .await;
    let statuses: Vec<&str> = events.split_whitespace().collect();
    assert_eq!(statuses, ["pending", "processing", "completed"], "{events}");
    let status = browser
        .wait_for_text("#tx-status", |text| !text.is_empty())
        .await;
    assert_eq!(status, "Status: completed");

    // A test value: the stand-in fails every attempt and the page shows the envelope.
    start_checkout_on_page(&browser, "2.02", 1).await;
    browser
        .wait_for_text("#result-status", |text| text.starts_with("502"))
        .await;
    let error = browser
        .wait_for_text("#error", |text| !text.is_empty())
        .await;
    assert!(error.contains("provider_error"), "{error}");

    // Over the per-user limit: the client's typed error, with the wait the service asked for.
    // Submitted until refused, so a slow run that earned another checkout still gets there.
    let mut refused = None;
    for submitted in 3..=6 {
        start_checkout_on_page(&browser, "7", 1).await;
        let calls = settled_calls(&browser, submitted).await;
        if let Some(line) = calls.iter().find(|line| line.contains(": 429 ")) {
            refused = Some(line.clone());
            break;
        }
    }
    let refused = refused.expect("a checkout over the per-user limit is refused");
    assert!(refused.contains("rate_limited / per_user"), "{refused}");
    let status = browser
        .wait_for_text("#result-status", |text| text.starts_with("429"))
        .await;
    let retry_after = number_after(&status, "retry after ")
        .unwrap_or_else(|| panic!("a retry-after in {status:?}"));
    assert!((1..=60).contains(&retry_after), "{status}");
    let error = browser
        .wait_for_text("#error", |text| !text.is_empty())
        .await;
    assert!(error.contains("\"per_user\""), "{error}");
    browser.close().await;
}

/// A double submit of one checkout while the first is still at Proof: the page sends both with
/// the same Idempotency-Key, the client waits out the service's 409s and resolves with the first
/// answer, replayed. The slow test value answers after 30 s, so the service is told to wait for it.
#[tokio::test]
async fn a_double_submit_waits_out_409_and_gets_the_first_answer_replayed_in_a_real_browser() {
    let Some(browser) = support::browser::launch().await else {
        return;
    };
    let lots = "1000".to_owned();
    let _service = demo_page_signed_in(
        &browser,
        &[
            ("PROOF_BFF__PROOF__REQUEST_TIMEOUT_MS", "60000".to_owned()),
            ("PROOF_BFF__PROOF__DEADLINE_MS", "60000".to_owned()),
            // Each wait is one more request: the limits do not stand in the way here.
            ("PROOF_BFF__RATE_LIMIT__PER_USER_BURST", lots.clone()),
            ("PROOF_BFF__RATE_LIMIT__PER_USER_PER_MINUTE", lots.clone()),
            ("PROOF_BFF__RATE_LIMIT__PER_IP_BURST", lots.clone()),
            ("PROOF_BFF__RATE_LIMIT__PER_IP_PER_MINUTE", lots),
        ],
        "double-clicker",
    )
    .await;
    start_checkout_on_page(&browser, "5.04", 2).await;

    let calls = settled_calls(&browser, 2).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    let first = calls
        .iter()
        .find(|line| line.contains(": 200 first answer"))
        .unwrap_or_else(|| panic!("one first answer: {calls:?}"));
    let replay = calls
        .iter()
        .find(|line| line.contains(": 200 replayed after waiting out "))
        .unwrap_or_else(|| panic!("one replay: {calls:?}"));
    let waits = number_after(replay, "waiting out ")
        .unwrap_or_else(|| panic!("a count of waits in {replay:?}"));
    assert!(waits >= 1, "{replay}");
    let transaction = |line: &str| line.rsplit(", ").next().unwrap_or_default().to_owned();
    assert_eq!(transaction(first), transaction(replay), "{calls:?}");
    assert!(!transaction(first).is_empty(), "{calls:?}");

    // The page shows the replay as it shows any answer, and follows its transaction.
    let result = browser
        .wait_for_text("#result", |text| !text.is_empty())
        .await;
    let params: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(params["amount"], "5.04");
    assert_eq!(
        params["merchant_transaction_id"],
        transaction(first).as_str()
    );
    browser
        .wait_for_text("#tx-status", |text| text == "Status: completed")
        .await;
    browser.close().await;
}

#[tokio::test]
async fn sigterm_ends_open_event_streams_and_the_process_exits_without_waiting_them_out() {
    let mut service = Service::start(
        &["--sandbox"],
        &[("PROOF_BFF__SERVER__SHUTDOWN_TIMEOUT_S", "60".to_owned())],
    );
    service.wait_for_line(|line| line.contains("demo page:"));
    service.wait_until_healthy().await;
    let origin = service.address();
    let client = reqwest::Client::new();
    let login = client
        .post(format!("{origin}/sandbox/login"))
        .header("Origin", origin.clone())
        .header("Content-Type", "application/json")
        .body(r#"{"user_id":"user-7","email":"seven@example.com"}"#)
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    let session = cookie.split(';').next().unwrap().to_owned();
    let params: serde_json::Value = client
        .post(format!("{origin}/start-checkout"))
        .header("Origin", origin.clone())
        .header("Content-Type", "application/json")
        .header("Cookie", session.clone())
        .body(r#"{"network":"TRC20","currency":"USDT","amount":"100"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let transaction = params["merchant_transaction_id"].as_str().unwrap();
    let mut stream = client
        .get(format!("{origin}/checkout/{transaction}/events"))
        .header("Cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("id: pending"));

    service.process.signal("-TERM");

    // The stream ends cleanly (a complete chunked body, no error), long before the 60 s timeout.
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut rest = Vec::new();
        while let Some(chunk) = stream.chunk().await.expect("the stream ends cleanly") {
            rest.extend_from_slice(&chunk);
        }
        rest
    })
    .await
    .expect("the stream ended after SIGTERM");
    assert!(!String::from_utf8_lossy(&rest).contains("id: completed"));
    let status = service.process.wait_for_exit(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit: {status:?}");
}

/// The sandbox reads the secret files it is given as the service does: a FIFO given as the token
/// file (a mount that never answers would do the same) is refused at once, naming the key, rather
/// than waited on forever before anything starts.
#[test]
fn a_fifo_as_the_sandbox_token_file_is_refused_not_waited_on() {
    let dir = std::env::temp_dir().join(format!("proof-bff-sandbox-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let fifo = dir.join("client_token");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed: {made:?}");

    let mut command = bff();
    command
        .arg("--sandbox")
        .env("PROOF_BFF__SERVER__LISTEN", "127.0.0.1:0")
        .env("PROOF_BFF__PROOF__CLIENT_TOKEN_FILE", &fifo);
    let mut process = Process::spawn(command);
    let status = process.wait_for_exit(EVENTUALLY);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(2),
        "--sandbox with a FIFO as the token file: {status:?}"
    );
    let stderr = process.stderr.text();
    assert!(stderr.contains("proof.client_token_file"), "{stderr}");
}
