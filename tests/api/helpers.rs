//! Starts the real `Application` on a random loopback port in front of a wiremock stand-in for
//! Proof, and captures every log line it writes (at TRACE) so tests can check what never appears.
//!
//! One way each: [`TestApp::checkout_request`] builds every checkout request (the shortcuts below
//! start from it), [`widget_session`] is the one mock of Proof's `POST /widget/session`, and
//! [`log_events_for`] reads what was logged for one request.

#![allow(dead_code)]

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proof_bff::config::{AppConfig, Settings};
use proof_bff::session::sign_hs256;
use proof_bff::startup::{Application, ApplicationHandle};
use proof_bff::telemetry::{LogConfig, LogFormat};
use reqwest::RequestBuilder;
use secrecy::SecretString;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

pub use crate::support::eventually::{EVENTUALLY, eventually_async, within_async};
pub use crate::support::free_port;
pub use crate::support::output::CapturedOutput;
pub use crate::support::raw_http::{RawConnection, RawRequest, RawResponse, read_until_closed};

pub const CLIENT_TOKEN: &str = "pk_test_7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4";
pub const JWT_SECRET: &str = "hs256-test-secret-that-is-long-enough-0123456789";
pub const APP_ORIGIN: &str = "https://app.example.com";
pub const PROOF_ORIGIN: &str = "https://partner.example.com";
pub const USER_ID: &str = "user-42";
pub const USER_EMAIL: &str = "alice.secret@example.org";

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

/// Every log line written by any app in this test process.
pub fn logs() -> &'static CapturedOutput {
    static LOGS: OnceLock<CapturedOutput> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedOutput::default();
        let writer = logs.clone();
        let config = LogConfig {
            format: LogFormat::Json,
            level: "trace".into(),
        };
        let subscriber =
            proof_bff::telemetry::subscriber_with_filter(&config, "trace", move || writer.clone());
        proof_bff::telemetry::install(subscriber).expect("one subscriber per process");
        logs
    })
}

/// The JSON log events written so far, by every app in the test process.
pub fn log_events() -> Vec<serde_json::Value> {
    logs().json_events()
}

/// The JSON log events written while serving the request with this `X-Request-Id`.
///
/// Every app in the test process writes to the same capture, so events are told apart by the
/// request id the root span carries.
pub fn log_events_for(request_id: &str) -> Vec<serde_json::Value> {
    log_events_mentioning(request_id)
        .into_iter()
        .filter(|event| event["span"]["request_id"] == request_id)
        .collect()
}

/// At least the JSON log events that hold `text` in one of their strings (callers check the field
/// they mean). Text of printable ASCII without quotes or backslashes is written into a line as it
/// is, so only the lines holding it are parsed: late in a run the capture holds every test's lines
/// at trace level, and parsing all of it takes seconds.
pub fn log_events_mentioning(text: &str) -> Vec<serde_json::Value> {
    let written_as_is = text
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
    if written_as_is {
        logs().json_events_containing(text)
    } else {
        log_events()
    }
}

/// The log events for one request whose message is exactly `message`.
pub fn log_events_with_message(request_id: &str, message: &str) -> Vec<serde_json::Value> {
    log_events_for(request_id)
        .into_iter()
        .filter(|event| event["fields"]["message"] == message)
        .collect()
}

/// The warning written before each retry of a call to Proof.
pub const RETRYING: &str = "retrying Proof /widget/session";

// ---------------------------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------------------------

pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// `GET /metrics`'s port, when `metrics.listen` was set.
    pub metrics_port: Option<u16>,
    pub proof: MockServer,
    pub client: reqwest::Client,
    pub handle: ApplicationHandle,
}

/// Settings every test starts from: a complete, valid configuration pointing at `proof`.
pub fn base_settings(proof: &MockServer) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.workers = 1;
    settings.server.shutdown_timeout_s = 5;
    settings.proof.base_url = proof.uri();
    settings.proof.client_token = SecretString::from(CLIENT_TOKEN);
    settings.proof.origin = PROOF_ORIGIN.into();
    settings.proof.connect_timeout_ms = 500;
    settings.proof.request_timeout_ms = 2000;
    settings.proof.deadline_ms = 5000;
    settings.browser.allowed_origins = vec![APP_ORIGIN.into()];
    settings.session.jwt.secret = SecretString::from(JWT_SECRET);
    settings.checkout.types = vec!["buy".into(), "sell".into()];
    settings.checkout.redirect_url_origins = vec![APP_ORIGIN.into()];
    // Generous limits so tests that send many requests are not refused; the rate-limit tests set
    // their own.
    settings.rate_limit.per_user_burst = 1000;
    settings.rate_limit.per_user_per_minute = 1000;
    settings.rate_limit.per_ip_burst = 1000;
    settings.rate_limit.per_ip_per_minute = 1000;
    settings.rate_limit.status_per_user_per_minute = 1000;
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let proof = MockServer::start().await;
    let mut settings = base_settings(&proof);
    customise(&mut settings);
    let config = settings.validate().expect("test settings are valid");
    spawn_with_config(config, proof).await
}

pub async fn spawn_with_config(config: AppConfig, proof: MockServer) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    spawn_on(listener, "127.0.0.1", config, proof).await
}

/// The app serving `listener`, which the test client reaches at `host`.
pub async fn spawn_on(
    listener: TcpListener,
    host: &str,
    config: AppConfig,
    proof: MockServer,
) -> TestApp {
    logs();
    let application =
        Application::build_with_listener(config, listener).expect("application builds");
    let port = application.port();
    let metrics_port = application.metrics_port();
    let handle = application.handle();
    tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    TestApp {
        address: format!("http://{host}:{port}"),
        port,
        metrics_port,
        proof,
        client,
        handle,
    }
}

/// A base URL on loopback where nothing listens: every connection is refused.
pub fn refused_base_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

pub fn session_token() -> String {
    session_token_for(USER_ID, USER_EMAIL)
}

pub fn session_token_for(user_id: &str, email: &str) -> String {
    sign_hs256(JWT_SECRET.as_bytes(), user_id, email, 600).unwrap()
}

/// A token with exactly `claims`, HS256-signed with `secret`: for the tokens the service's own
/// signer would never make.
pub fn hs256_token(secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// A valid checkout body.
pub fn checkout_body() -> serde_json::Value {
    serde_json::json!({"network": "TRC20", "currency": "USDT", "amount": "100"})
}

/// The ending most checkout requests share: the valid body, sent.
pub trait SendWithValidBody {
    fn send_with_valid_body(self) -> impl Future<Output = reqwest::Response>;
}

impl SendWithValidBody for RequestBuilder {
    async fn send_with_valid_body(self) -> reqwest::Response {
        self.json(&checkout_body())
            .send()
            .await
            .expect("the service answers")
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `POST /start-checkout` as the page at `origin` sends it (none: no `Origin` header), with
    /// `session` as the session cookie (none: signed out). Every checkout request is built here.
    pub fn checkout_request(&self, origin: Option<&str>, session: Option<&str>) -> RequestBuilder {
        self.checkout_request_on(&self.client, origin, session)
    }

    fn checkout_request_on(
        &self,
        client: &reqwest::Client,
        origin: Option<&str>,
        session: Option<&str>,
    ) -> RequestBuilder {
        let mut request = client.post(self.url("/start-checkout"));
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        if let Some(token) = session {
            request = request.header("Cookie", format!("session={token}"));
        }
        request
    }

    /// A browser-like POST from the partner's page with a valid session.
    pub fn checkout(&self) -> RequestBuilder {
        self.checkout_as(&session_token())
    }

    pub fn checkout_as(&self, token: &str) -> RequestBuilder {
        self.checkout_request(Some(APP_ORIGIN), Some(token))
    }

    /// A POST from the partner's page without any session cookie.
    pub fn anonymous_checkout(&self) -> RequestBuilder {
        self.checkout_request(Some(APP_ORIGIN), None)
    }

    /// [`Self::checkout`] on a client of its own, so its connection goes away with the request
    /// instead of idling in the shared client's pool, where it would hold a drain open.
    pub fn checkout_on_own_connection(&self) -> RequestBuilder {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        self.checkout_request_on(&client, Some(APP_ORIGIN), Some(&session_token()))
    }

    /// A CORS preflight for `POST /start-checkout` from the page at `origin`, asking for `method`
    /// and, when given, the request `headers`.
    pub fn preflight(&self, origin: &str, method: &str, headers: Option<&str>) -> RequestBuilder {
        let mut request = self
            .client
            .request(reqwest::Method::OPTIONS, self.url("/start-checkout"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method);
        if let Some(headers) = headers {
            request = request.header("Access-Control-Request-Headers", headers);
        }
        request
    }

    /// Polls `/readyz` until it answers 200 (a shared backend connected, a key set fetched).
    /// Generous: the machine may be busy; nothing here measures speed.
    pub async fn wait_until_ready(&self) {
        let ready = async || {
            let response = self.client.get(self.url("/readyz")).send().await.unwrap();
            response.status() == 200
        };
        if within_async(std::time::Duration::from_secs(60), ready)
            .await
            .is_none()
        {
            panic!("/readyz did not turn 200 within 60 s");
        }
    }

    /// Starts a graceful drain, as SIGTERM would.
    pub fn start_drain(&self) -> tokio::task::JoinHandle<()> {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.drain().await })
    }

    pub async fn proof_requests(&self) -> Vec<wiremock::Request> {
        self.proof.received_requests().await.unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Proof
// ---------------------------------------------------------------------------------------------

/// A realistic widget-session answer with odd spacing, key order, a unicode escape and a float,
/// so any re-serialisation would show.
pub const WIDGET_SESSION_BODY: &str = "{ \"widget_id\":\"fb359d09-fff6-4b1f-906c-b9062b135065\",  \"merchant_transaction_id\" : \"550e8400-e29b-41d4-a716-446655440000\",\n \"address\":\"TRx1a2b3c4d5e6f\", \"signature\":\"v2:a1b2\", \"init_token\":\"eyJhbGciOi.x.y\",\"init_token_type\":\"sdk_partner_authorization\", \"currency\":\"USDT\",\"network\":\"TRC20\",\"amount\":\"100\", \"fix_amount\":true, \"lang\":\"\\u00e9n\", \"rate\": 1.10, \"big\": 1e400 }";

/// Proof's `POST /widget/session`: the one mock of it, given its answer by each test.
pub fn widget_session() -> MockBuilder {
    Mock::given(method("POST")).and(path("/widget/session"))
}

/// Proof's answer with a raw body, so nothing is re-serialised on the way.
pub fn proof_answer(status: u16, body: impl Into<Vec<u8>>, content_type: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.into(), content_type)
}

pub fn proof_json(status: u16, body: &str) -> ResponseTemplate {
    proof_answer(status, body, "application/json")
}

/// Proof's error envelope.
pub fn proof_error(error: &str, code: &str) -> serde_json::Value {
    serde_json::json!({"error": error, "code": code, "message": "from the stand-in"})
}

/// Proof answering with its error envelope.
pub fn proof_error_answer(status: u16, error: &str, code: &str) -> ResponseTemplate {
    proof_json(status, &proof_error(error, code).to_string())
}

/// Proof's 200 with [`WIDGET_SESSION_BODY`], under a request id of its own.
pub fn widget_session_answer() -> ResponseTemplate {
    proof_json(200, WIDGET_SESSION_BODY).insert_header("x-request-id", "proof-req-1")
}

/// Proof answering `POST /widget/session` with [`widget_session_answer`].
pub fn widget_session_ok() -> Mock {
    widget_session().respond_with(widget_session_answer())
}

impl TestApp {
    /// Proof answers every call with `answer`, after any answers mounted with
    /// [`Self::proof_answers_first`].
    pub async fn proof_answers(&self, answer: ResponseTemplate) {
        widget_session()
            .respond_with(answer)
            .with_priority(10)
            .mount(&self.proof)
            .await;
    }

    /// Proof answers the first `n` calls with `answer`, ahead of [`Self::proof_answers`].
    pub async fn proof_answers_first(&self, n: u64, answer: ResponseTemplate) {
        widget_session()
            .respond_with(answer)
            .up_to_n_times(n)
            .with_priority(1)
            .mount(&self.proof)
            .await;
    }

    /// Mounts a successful Proof that must never be reached.
    pub async fn proof_must_not_be_called(&self) {
        widget_session_ok()
            .expect(0)
            .named("Proof must not be called")
            .mount(&self.proof)
            .await;
    }

    pub async fn assert_proof_not_called(&self) {
        let calls = self.proof_requests().await.len();
        assert_eq!(calls, 0, "Proof was called {calls} time(s)");
    }
}

/// What a hand-written upstream does with one request (or, for `CloseOnAccept`, one connection).
#[derive(Clone, Copy, Debug)]
pub enum RawBehaviour {
    /// Answers with this status and JSON body and keeps the connection open for the next request.
    Answer(u16, &'static str),
    /// Reads the whole request, then closes the connection without answering.
    CloseAfterRequest,
    /// Reads the whole request, answers 200 with a `Content-Length` larger than the body it
    /// sends, then closes the connection.
    TruncatedAnswer,
    /// Reads the whole request, then resets the connection (an RST, not a FIN).
    ResetAfterRequest,
    /// Accepts the connection and closes it at once, before reading anything.
    CloseOnAccept,
    /// Reads the whole request, then answers like `Answer` only once [`RawUpstream::release`] is
    /// called: a request stays in flight for as long as a test needs, however slow the machine.
    AnswerWhenReleased(u16, &'static str),
}

/// Proof at `proof` (which holds its answers until released), with a deadline no machine reaches.
pub fn proof_holding_answers(s: &mut Settings, proof: &RawUpstream) {
    s.proof.base_url = proof.base_url.clone();
    s.proof.request_timeout_ms = 60_000;
    s.proof.deadline_ms = 60_000;
}

/// Rate limits and idempotency keys in `redis`, with a timeout no busy test machine runs into.
pub fn use_redis(s: &mut Settings, redis: &crate::redis_support::RedisServer) {
    s.rate_limit.backend = proof_bff::config::RateLimitBackend::Redis;
    s.rate_limit.redis_url = SecretString::from(redis.url());
    s.rate_limit.redis_timeout_ms = 5000;
}

/// An upstream on a loopback port, written on raw sockets for the failures an HTTP server
/// library will not produce. It follows a script, one entry per request in arrival order (the
/// last entry repeats), and counts the connections it accepted and the complete requests it read.
pub struct RawUpstream {
    pub base_url: String,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    released: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    pub async fn start(script: impl IntoIterator<Item = RawBehaviour>) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};

        let script: Arc<Vec<RawBehaviour>> = Arc::new(script.into_iter().collect());
        assert!(!script.is_empty());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (counted_connections, counted_requests) = (connections.clone(), requests.clone());
        let (released, release_seen) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            // Requests are numbered across connections, so a retry on a new connection takes
            // the next entry of the script.
            let next = Arc::new(AtomicUsize::new(0));
            while let Ok((stream, _)) = listener.accept().await {
                counted_connections.fetch_add(1, Ordering::SeqCst);
                let (script, next, requests) =
                    (script.clone(), next.clone(), counted_requests.clone());
                let release = release_seen.clone();
                tokio::spawn(async move {
                    serve_raw_connection(stream, &script, &next, &requests, release).await;
                });
            }
        });
        Self {
            base_url,
            connections,
            requests,
            released,
            task,
        }
    }

    /// Sends the answers held by `AnswerWhenReleased`, and every later one at once.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Complete requests (head and body) read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Sends `request` in the background and returns once `proof` has read one request more, so a
/// test knows the request is in flight there (held, with `AnswerWhenReleased`).
pub async fn send_until_proof_has_it(
    request: RequestBuilder,
    proof: &RawUpstream,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let before = proof.requests();
    let in_flight = tokio::spawn(request.send());
    let _ = within_async(EVENTUALLY, async || proof.requests() > before).await;
    assert_eq!(proof.requests(), before + 1, "the request reached Proof");
    in_flight
}

async fn serve_raw_connection(
    mut stream: tokio::net::TcpStream,
    script: &[RawBehaviour],
    next: &std::sync::atomic::AtomicUsize,
    requests: &std::sync::atomic::AtomicUsize,
    mut release: tokio::sync::watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncWriteExt;

    let behaviour_at = |n: usize| script[n.min(script.len() - 1)];
    // A connection closed on accept takes its script entry without reading a request.
    if matches!(
        behaviour_at(next.load(Ordering::SeqCst)),
        RawBehaviour::CloseOnAccept
    ) {
        next.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let mut unread = Vec::new();
    loop {
        if !read_raw_request(&mut stream, &mut unread).await {
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let behaviour = behaviour_at(next.fetch_add(1, Ordering::SeqCst));
        if let RawBehaviour::AnswerWhenReleased(..) = behaviour
            && release.wait_for(|released| *released).await.is_err()
        {
            return;
        }
        match behaviour {
            RawBehaviour::Answer(status, body) | RawBehaviour::AnswerWhenReleased(status, body) => {
                let answer = format!(
                    "HTTP/1.1 {status} Status\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            RawBehaviour::CloseAfterRequest | RawBehaviour::CloseOnAccept => return,
            RawBehaviour::TruncatedAnswer => {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{\"widget_id\":\"fb35",
                    )
                    .await;
                let _ = stream.flush().await;
                return;
            }
            RawBehaviour::ResetAfterRequest => {
                let _ = stream.set_zero_linger();
                return;
            }
        }
    }
}

/// Reads one request with a sized body into nothing; `false` when the peer closed first.
async fn read_raw_request(stream: &mut tokio::net::TcpStream, unread: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;

    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = unread.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => unread.extend_from_slice(&buffer[..n]),
        }
    };
    let head = String::from_utf8_lossy(&unread[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("a numeric Content-Length"))
        .expect("the request has a sized body");
    while unread.len() < head_end + length {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => unread.extend_from_slice(&buffer[..n]),
        }
    }
    unread.drain(..head_end + length);
    true
}
