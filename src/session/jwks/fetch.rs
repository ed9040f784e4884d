//! Fetching the key set over HTTP, on a thread of its own.
//!
//! The thread, `session-jwks`, is a [`SideThread`]: it owns the only awc client and runs the
//! refresh loop (`refresh::run`), rather than each worker having a client and one of them being
//! elected per fetch. The loop runs whether or not requests arrive (the first load, retries while
//! the provider is down, refreshes when the set goes stale), one fetch at a time; workers only
//! read the shared set and, for an unknown `kid`, ask the loop and wait. The thread stops when the
//! session source is dropped.
//!
//! Every request is bounded: [`FETCH_TIMEOUT`] from sending to the last byte, [`MAX_BODY_BYTES`]
//! of answer, no redirects (a redirect could lead to plain http), TLS with the webpki roots and the
//! provider's CA from `ca_file`, if any.

use std::sync::Arc;
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use jsonwebtoken::Algorithm;
use url::Url;

use super::freshness::freshness;
use super::keys::KeySet;
use super::location::{KeySetLocation, Shown, fetch_url};
use super::refresh::{self, FetchError, Fetched, KeyCache, KeySource};
use crate::side_thread::SideThread;
use crate::tls_roots::TlsRoots;

/// One request to the provider, from sending it to reading the last byte of its answer.
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read: real key sets and discovery documents are a few KiB.
pub(super) const MAX_BODY_BYTES: usize = 1024 * 1024;

const USER_AGENT: &str = concat!("proof-bff/", env!("CARGO_PKG_VERSION"));

/// The fetcher thread; it stops when this is dropped.
pub(super) struct Fetcher {
    _thread: SideThread,
}

/// Starts the thread and its refresh loop, which fetches at once.
pub(super) fn start(
    cache: Arc<KeyCache>,
    location: KeySetLocation,
    algorithms: Vec<Algorithm>,
    tls_roots: TlsRoots,
    on_ready: Box<dyn Fn(bool) + Send + Sync>,
) -> std::io::Result<Fetcher> {
    // Start-up fails loudly if the thread cannot start, rather than serving without ever loading
    // keys.
    let thread = SideThread::start("session-jwks", move || async move {
        // Made here: the client belongs to this thread's runtime.
        let mut source = HttpKeySource::new(location, algorithms, &tls_roots);
        refresh::run(&cache, &mut source, &*on_ready).await;
    })?;
    Ok(Fetcher { _thread: thread })
}

/// The provider over HTTP: the discovery document when the key set's URL is not configured, then
/// the key set.
struct HttpKeySource {
    client: awc::Client,
    location: KeySetLocation,
    /// `jwks_uri` from discovery, until a fetch from it fails.
    discovered: Option<Url>,
    algorithms: Vec<Algorithm>,
}

/// A successful answer's body and the headers that say how long it stays fresh.
struct Answer {
    body: bytes::Bytes,
    cache_control: Option<HeaderValue>,
    age: Option<HeaderValue>,
}

impl KeySource for HttpKeySource {
    async fn fetch(&mut self) -> Result<Fetched, FetchError> {
        let url = match (&self.location, &self.discovered) {
            (KeySetLocation::Direct(url), _) => url.clone(),
            (KeySetLocation::Discovery { .. }, Some(url)) => url.clone(),
            (KeySetLocation::Discovery { issuer, url }, None) => {
                let found = self.discover(issuer, url).await?;
                self.discovered = Some(found.clone());
                found
            }
        };
        let fetched = self.key_set(&url).await;
        if fetched.is_err() {
            // The provider may have moved its keys: ask discovery again next time.
            self.discovered = None;
        }
        fetched
    }
}

impl HttpKeySource {
    fn new(location: KeySetLocation, algorithms: Vec<Algorithm>, tls_roots: &TlsRoots) -> Self {
        let mut connector = awc::Connector::new().timeout(FETCH_TIMEOUT);
        if let Some(tls) = tls_roots.client_config() {
            connector = connector.rustls_0_23(tls);
        }
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(FETCH_TIMEOUT)
            .disable_redirects()
            .no_default_headers()
            .finish();
        Self {
            client,
            location,
            discovered: None,
            algorithms,
        }
    }

    async fn key_set(&self, url: &Url) -> Result<Fetched, FetchError> {
        let answer = self.get(url).await?;
        let keys = KeySet::parse(&answer.body, &self.algorithms)
            .map_err(|problem| FetchError(format!("{}: {problem}", Shown(url))))?;
        let text = |value: &Option<HeaderValue>| {
            value
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let fresh_for = freshness(
            text(&answer.cache_control).as_deref(),
            text(&answer.age).as_deref(),
        );
        Ok(Fetched { keys, fresh_for })
    }

    /// `jwks_uri` from the discovery document, which must be the configured issuer's.
    async fn discover(&self, issuer: &str, url: &Url) -> Result<Url, FetchError> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let answer = self.get(url).await?;
        let fault = |problem: &str| FetchError(format!("{}: {problem}", Shown(url)));
        let document: Discovery = serde_json::from_slice(&answer.body).map_err(|_| {
            fault(
                "not an OpenID Connect discovery document (a JSON object with issuer and jwks_uri)",
            )
        })?;
        // OpenID Connect Discovery §4.3: a document for another issuer is not this one's.
        if document.issuer != issuer {
            return Err(fault(
                "its issuer is not session.jwks.issuer (set jwks_url to skip discovery)",
            ));
        }
        fetch_url(&document.jwks_uri).map_err(|problem| fault(&format!("its jwks_uri {problem}")))
    }

    /// One bounded GET whose answer must be a 200.
    async fn get(&self, url: &Url) -> Result<Answer, FetchError> {
        let shown = Shown(url);
        let request = self
            .client
            .get(url.as_str())
            .insert_header((header::ACCEPT, HeaderValue::from_static("application/json")))
            .insert_header((header::USER_AGENT, HeaderValue::from_static(USER_AGENT)));
        let exchange = async {
            let mut response = request
                .send()
                .await
                .map_err(|e| FetchError(format!("{shown}: no answer ({e})")))?;
            let status = response.status();
            if status != StatusCode::OK {
                return Err(FetchError(format!("{shown}: answered {status}")));
            }
            let too_large = || {
                FetchError(format!(
                    "{shown}: the answer is over {} KiB",
                    MAX_BODY_BYTES / 1024
                ))
            };
            let declared = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
                return Err(too_large());
            }
            let cache_control = response.headers().get(header::CACHE_CONTROL).cloned();
            let age = response.headers().get(header::AGE).cloned();
            let body = response
                .body()
                .limit(MAX_BODY_BYTES)
                .await
                .map_err(|e| match e {
                    PayloadError::Overflow => too_large(),
                    other => FetchError(format!("{shown}: the answer broke off ({other})")),
                })?;
            Ok(Answer {
                body,
                cache_control,
                age,
            })
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(FetchError(format!(
                    "{shown}: no whole answer within {} s",
                    FETCH_TIMEOUT.as_secs()
                )))
            })
    }
}
