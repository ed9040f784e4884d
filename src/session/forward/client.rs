//! The calls to the partner's app, made on a thread of their own.
//!
//! awc's client is `!Send` and lives on one thread's runtime, while the session source is shared by
//! every worker. Rather than a client per worker, one thread runs an actix runtime with one client
//! (so one connection pool to the app) and makes every call: a checkout hands it an [`AppCall`]
//! through a channel and waits for the call's flight to land. The call belongs to no worker and to
//! no checkout, so single flight holds across workers, and a browser that leaves cancels nothing
//! the others wait on. One thread is plenty: most checkouts are answered from the cache, and a
//! call spends its time waiting for the app.
//!
//! Each call is bounded as a whole (connecting, the answer's head and its body) by
//! `session.forward.timeout_ms`, and the body by [`MAX_ANSWER_BYTES`]. A call whose pooled
//! connection turns out closed by the app (idle keep-alive connections are closed by app servers at
//! their own pace) is made once more on a new one, within the same bound: it is a `GET`.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::http::Uri;
use actix_web::http::header::{self, HeaderValue};
use awc::error::{ConnectError, PayloadError, SendRequestError};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::answer::{Failure, MAX_ANSWER_BYTES, UserFields, user_from_answer};
use super::credentials::Credentials;
use super::flights::Flight;
use crate::session::SessionUser;
use crate::telemetry::REQUEST_ID_HEADER;
use crate::tls_roots::TlsRoots;

const USER_AGENT: &str = concat!("proof-bff/", env!("CARGO_PKG_VERSION"));
/// Idle connections to the app are kept this long for the next call.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Where and how the app is asked.
#[derive(Debug)]
pub(super) struct AppEndpoint {
    pub url: Uri,
    pub timeout: Duration,
    pub tls_roots: TlsRoots,
    pub fields: UserFields,
}

/// One call: the credentials to forward, the checkout's request id (for the app's logs), the
/// checkout's span (so the call's log lines carry its request id) and the flight it lands.
pub(super) struct AppCall {
    pub credentials: Credentials,
    pub request_id: Option<HeaderValue>,
    pub span: tracing::Span,
    pub flight: Flight,
}

/// The handle of the client thread. The thread ends when the handle is dropped.
#[derive(Debug)]
pub(super) struct AppClient {
    calls: mpsc::UnboundedSender<AppCall>,
}

impl AppClient {
    /// Starts the thread and its runtime; fails only when the system refuses a thread or a runtime.
    pub fn start(endpoint: AppEndpoint) -> io::Result<Self> {
        let (calls, queue) = mpsc::unbounded_channel();
        let (started, starting) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("forward-session".into())
            .spawn(move || match actix_rt::Runtime::new() {
                Ok(runtime) => {
                    let _ = started.send(Ok(()));
                    runtime.block_on(serve(endpoint, queue));
                }
                Err(error) => {
                    let _ = started.send(Err(error));
                }
            })?;
        starting
            .recv()
            .map_err(|_| io::Error::other("the client thread ended while starting"))??;
        Ok(Self { calls })
    }

    /// Hands the call to the client thread. Should the thread be gone, the call is dropped with
    /// its flight, which tells the checkouts waiting on it.
    pub fn send(&self, call: AppCall) {
        let _ = self.calls.send(call);
    }
}

/// Makes the calls as they come, each on its own task; ends when every handle is dropped.
async fn serve(endpoint: AppEndpoint, mut queue: mpsc::UnboundedReceiver<AppCall>) {
    let mut connector = awc::Connector::new()
        .timeout(endpoint.timeout)
        .conn_keep_alive(KEEP_ALIVE);
    if let Some(tls) = endpoint.tls_roots.client_config() {
        connector = connector.rustls_0_23(tls);
    }
    // The call's bound is applied around the whole exchange below, the body included.
    let client = Rc::new(
        awc::Client::builder()
            .connector(connector)
            .disable_timeout()
            .disable_redirects()
            .no_default_headers()
            .finish(),
    );
    let endpoint = Rc::new(endpoint);
    while let Some(call) = queue.recv().await {
        let AppCall {
            credentials,
            request_id,
            span,
            flight,
        } = call;
        let (client, endpoint) = (client.clone(), endpoint.clone());
        actix_rt::spawn(
            async move {
                let started = Instant::now();
                let outcome = tokio::time::timeout(
                    endpoint.timeout,
                    ask(&client, &endpoint, &credentials, request_id.as_ref()),
                )
                .await
                .unwrap_or(Err(Failure::Timeout));
                report(&outcome, started);
                flight.land(outcome.map_err(Failure::session_error));
            }
            .instrument(span),
        );
    }
}

async fn ask(
    client: &awc::Client,
    endpoint: &AppEndpoint,
    credentials: &Credentials,
    request_id: Option<&HeaderValue>,
) -> Result<SessionUser, Failure> {
    let request = || build_request(client, endpoint, credentials, request_id);
    let mut response = match request().send().await {
        Ok(response) => response,
        Err(error) if is_closed_connection(&error) => {
            request().send().await.map_err(send_failure)?
        }
        Err(error) => return Err(send_failure(error)),
    };
    match response.status().as_u16() {
        200 => {}
        status @ (401 | 403) => return Err(Failure::NoSession { status }),
        status => return Err(Failure::Status { status }),
    }
    let body = response
        .body()
        .limit(MAX_ANSWER_BYTES)
        .await
        .map_err(|error| match error {
            PayloadError::Overflow => Failure::TooLarge,
            _ => Failure::Broken,
        })?;
    user_from_answer(&body, &endpoint.fields)
}

/// Built from scratch: of the browser's request only the forwarded credentials go, and the
/// request id, so the app's logs can be matched with ours.
fn build_request(
    client: &awc::Client,
    endpoint: &AppEndpoint,
    credentials: &Credentials,
    request_id: Option<&HeaderValue>,
) -> awc::ClientRequest {
    let mut request = client
        .get(endpoint.url.clone())
        .insert_header((header::ACCEPT, HeaderValue::from_static("application/json")))
        .insert_header((header::USER_AGENT, HeaderValue::from_static(USER_AGENT)));
    if let Some(request_id) = request_id {
        request = request.insert_header((REQUEST_ID_HEADER, request_id.clone()));
    }
    if let Some(cookie) = &credentials.cookie {
        request = request.insert_header((header::COOKIE, cookie.clone()));
    }
    if let Some(authorization) = &credentials.authorization {
        request = request.insert_header((header::AUTHORIZATION, authorization.clone()));
    }
    request
}

/// A connection that broke before any answer: most often a pooled one the app had just closed.
fn is_closed_connection(error: &SendRequestError) -> bool {
    matches!(
        error,
        SendRequestError::Connect(ConnectError::Disconnected)
            | SendRequestError::Send(_)
            | SendRequestError::Response(_)
    )
}

fn send_failure(error: SendRequestError) -> Failure {
    match error {
        SendRequestError::Connect(ConnectError::Disconnected) => Failure::Broken,
        SendRequestError::Connect(ConnectError::Timeout) | SendRequestError::Timeout => {
            Failure::Timeout
        }
        SendRequestError::Connect(_) => Failure::Unreachable,
        _ => Failure::Broken,
    }
}

/// One line per call; what the app refuses for a user is routine, what makes checkouts fail is a
/// warning. Never a credential or a value from the answer.
fn report(outcome: &Result<SessionUser, Failure>, started: Instant) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(_) => tracing::debug!(elapsed_ms, "session checked with the app"),
        Err(failure @ Failure::NoSession { .. }) => {
            tracing::debug!(elapsed_ms, reason = %failure, "session checked with the app: none");
        }
        Err(failure) => tracing::warn!(
            elapsed_ms,
            reason = %failure,
            "session check with the app failed"
        ),
    }
}
