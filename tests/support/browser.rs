//! Headless Chromium driven through ChromeDriver (Debian's `chromium` and `chromium-driver`).
//!
//! When they are not installed the browser tests say so and stop early, unless the run requires
//! them (`CI` or `PROOF_BFF_REQUIRE_BROWSER` set), where a missing browser is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};

use super::free_port;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn browser_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("PROOF_BFF_REQUIRE_BROWSER").is_some()
}

/// Starts ChromeDriver and a fresh headless Chromium, or returns None (with a message) when they
/// are not installed and not required.
pub async fn launch() -> Option<Browser> {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        if browser_required() {
            panic!(
                "browser tests need {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver"
            );
        }
        eprintln!(
            "SKIPPED: browser test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let port = free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile =
        std::env::temp_dir().join(format!("proof-bff-chromium-{}-{port}", std::process::id()));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let client = loop {
        let attempt = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await;
        match attempt {
            Ok(client) => break client,
            Err(error) if started.elapsed() > Duration::from_secs(20) => {
                panic!("could not start a browser session: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    Some(Browser {
        client,
        driver,
        profile,
    })
}

impl Browser {
    /// Runs `body` (an async function body that ends by calling `done(value)`) in the current page.
    pub async fn run_async(&self, body: &str) -> serde_json::Value {
        let script = format!(
            "const done = arguments[arguments.length - 1]; (async () => {{ {body} }})().catch(e => done({{thrown: String(e)}}));"
        );
        self.client
            .execute_async(&script, vec![])
            .await
            .expect("script runs")
    }

    /// Waits until the element's text satisfies `ready`, and returns it.
    pub async fn wait_for_text(&self, css: &str, ready: impl Fn(&str) -> bool) -> String {
        self.wait_for_text_within(css, Duration::from_secs(30), ready)
            .await
    }

    /// As `wait_for_text`, for what the page only shows after a slow answer.
    pub async fn wait_for_text_within(
        &self,
        css: &str,
        limit: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> String {
        let started = Instant::now();
        loop {
            let text = match self.client.find(fantoccini::Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if ready(&text) {
                return text;
            }
            if started.elapsed() > limit {
                panic!("{css} never became ready; last text: {text:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}
