//! The exporter's HTTP client: awc, on a thread of its own.
//!
//! The batch processor exports from its own thread, blocking on each export; the OTLP exporter
//! hands the request to an `opentelemetry_http::HttpClient`. The clients it ships with are
//! reqwest (a second HTTP and TLS stack) or hyper on a tokio multi-thread runtime, which this
//! service has nowhere: its workers run current-thread runtimes. So, as for the partner app's
//! session endpoint, a [`SideThread`], `otlp-export`, owns one awc client (rustls, the webpki roots
//! and the CA of `telemetry.otlp_ca_file`), and the exporter's requests reach it through a channel.
//! Nothing here ever runs on a worker, and a slow or absent collector only delays the batch thread.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use actix_web::http::{Method, Uri};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use tokio::sync::{mpsc, oneshot};

use crate::side_thread::SideThread;
use crate::tls_roots::TlsRoots;

/// The collector's answer is a small protobuf message; anything larger is not one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The exports' `User-Agent`, given to the exporter as one of its headers: the request it hands
/// over is sent with its headers as they are, so it carries the header once.
pub(super) const USER_AGENT_VALUE: &str = concat!("proof-bff/", env!("CARGO_PKG_VERSION"));

type Answer = Result<Response<Bytes>, HttpError>;

/// One export: the request, and where its answer goes.
struct Export {
    request: Request<Bytes>,
    answer: oneshot::Sender<Answer>,
}

/// The handle of the client thread, given to the exporter. The thread ends when the exporter
/// drops it (on shutdown).
#[derive(Debug)]
pub(super) struct AwcExport {
    exports: mpsc::UnboundedSender<Export>,
    _thread: SideThread,
}

impl AwcExport {
    /// Starts the thread; `timeout` bounds each request, from connecting to its answer's last byte.
    /// The collector's certificate is checked against `tls_roots`.
    pub(super) fn start(timeout: Duration, tls_roots: TlsRoots) -> io::Result<Self> {
        let (exports, queue) = mpsc::unbounded_channel();
        let thread = SideThread::start("otlp-export", move || serve(queue, timeout, tls_roots))?;
        Ok(Self {
            exports,
            _thread: thread,
        })
    }
}

impl HttpClient for AwcExport {
    // The trait is declared through `async_trait`; this is the signature it expands to.
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Answer> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let (answer, answered) = oneshot::channel();
        let queued = self.exports.send(Export { request, answer });
        Box::pin(async move {
            queued.map_err(|_| HttpError::from("the OTLP export thread has stopped"))?;
            answered
                .await
                .map_err(|_| HttpError::from("the OTLP export thread dropped the export"))?
        })
    }
}

/// Sends the exports as they come, each on its own task; ends when the handle is dropped.
async fn serve(mut queue: mpsc::UnboundedReceiver<Export>, timeout: Duration, tls_roots: TlsRoots) {
    let mut connector = awc::Connector::new().timeout(timeout);
    if let Some(tls) = tls_roots.client_config() {
        connector = connector.rustls_0_23(tls);
    }
    // The whole exchange is bounded below, the answer's body included.
    let client = awc::Client::builder()
        .connector(connector)
        .disable_timeout()
        .disable_redirects()
        .no_default_headers()
        .finish();
    while let Some(Export { request, answer }) = queue.recv().await {
        let client = client.clone();
        actix_rt::spawn(async move {
            let sent = tokio::time::timeout(timeout, send(&client, request))
                .await
                .unwrap_or_else(|_| Err(HttpError::from("the collector did not answer in time")));
            let _ = answer.send(sent);
        });
    }
}

async fn send(client: &awc::Client, request: Request<Bytes>) -> Answer {
    let (head, body) = request.into_parts();
    let method = Method::from_bytes(head.method.as_str().as_bytes())?;
    let uri: Uri = head.uri.to_string().parse()?;
    let mut outgoing = client.request(method, uri);
    for (name, value) in &head.headers {
        outgoing = outgoing.append_header((name.as_str(), value.as_bytes()));
    }
    let mut response = outgoing
        .send_body(body)
        .await
        .map_err(|error| HttpError::from(error.to_string()))?;
    let mut answer = Response::builder().status(response.status().as_u16());
    for (name, value) in response.headers() {
        answer = answer.header(name.as_str(), value.as_bytes());
    }
    let body = response.body().limit(MAX_ANSWER_BYTES).await?;
    Ok(answer.body(body)?)
}
