//! Opaque app sessions (`session.source = "forward"`): the partner's app is asked who the session
//! belongs to, as nginx's `auth_request` does. Rails, Django, Laravel or express-session keep
//! sessions only the app can read (server-side behind a random id, or encrypted in the cookie), so
//! the app answers.
//!
//! A checkout runs through these, in order:
//! - [`credentials`]: the named cookies (and `Authorization`, when configured) are taken from the
//!   browser's request, and nothing else of it; with none of them there is no session and the app
//!   is not asked;
//! - [`flights`] and [`cache`]: a positive answer for the same credentials is reused for
//!   `cache_ttl_s`; a call already under way for them is waited on rather than made again;
//! - [`client`]: otherwise one `GET` to the app, on the client thread, within `timeout_ms`, once
//!   one of the `max_connections` places for a call is free (waiting for one counts against
//!   `timeout_ms`; none free by then is our 503 `session_backend`, with nothing sent);
//! - [`answer`]: 200 + JSON names the user, 401/403 is our 401, anything else our 503
//!   `session_backend`.
//!
//! A signed-out user's session stays usable here for up to `cache_ttl_s` after the app forgot it:
//! that is the price of not asking the app on every checkout, and why the TTL is short.

mod answer;
mod cache;
mod client;
mod config;
mod credentials;
mod flights;

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::Uri;
use actix_web::http::header::HeaderMap;
use actix_web::{HttpMessage, HttpRequest};

pub use answer::is_json_pointer;
pub use config::ForwardSettings;

use answer::UserFields;
use cache::SessionCache;
use client::{AppCall, AppClient, AppEndpoint};
use credentials::{CredentialHasher, CredentialRules};
use flights::{Flights, Found};

use super::{SessionError, SessionUser};
use crate::telemetry::{Metrics, RequestId};
use crate::tls_roots::TlsRoots;

/// The `client` label of this source's call budget in the metrics.
const METRICS_CLIENT: &str = "forward";

/// How long a checkout waits for a call beyond the call's own bound before it gives up on the
/// client thread: a safety net, the call itself ends within `timeout_ms`.
const WAIT_MARGIN: Duration = Duration::from_secs(1);

/// The checked `[session.forward]` values.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// `https://`, or `http://` to a loopback host (checked by the configuration).
    pub url: Uri,
    /// Cookie names, each a valid RFC 6265 token.
    pub cookies: Vec<String>,
    pub forward_authorization: bool,
    /// RFC 6901 pointers (see [`is_json_pointer`]).
    pub user_id_field: String,
    pub email_field: String,
    pub timeout: Duration,
    /// Zero turns the cache off; calls under way are still shared.
    pub cache_ttl: Duration,
    pub cache_max_entries: usize,
    /// Calls to the app in flight at once, for the whole instance (at least one).
    pub max_connections: usize,
    /// What the calls trust: the public roots, and the app's CA from `ca_file`.
    pub tls_roots: TlsRoots,
}

/// `session.source = "forward"`. `Send + Sync`: one for every worker.
pub struct ForwardSession {
    rules: CredentialRules,
    hasher: CredentialHasher,
    flights: Arc<Flights>,
    /// Where the app is, until [`Self::start`] hands it to the client thread.
    endpoint: Option<AppEndpoint>,
    /// The client thread, once started; a configuration check never starts it.
    client: Option<AppClient>,
    wait: Duration,
}

impl fmt::Debug for ForwardSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardSession")
            .field("cookies", &self.rules.cookies)
            .field("forward_authorization", &self.rules.authorization)
            .finish_non_exhaustive()
    }
}

impl ForwardSession {
    /// The source, with no thread yet: [`Self::start`] starts its client.
    pub fn new(config: ForwardConfig) -> Self {
        let endpoint = AppEndpoint {
            url: config.url,
            timeout: config.timeout,
            max_connections: config.max_connections,
            tls_roots: config.tls_roots,
            fields: UserFields {
                user_id: config.user_id_field,
                email: config.email_field,
            },
        };
        Self {
            rules: CredentialRules {
                cookies: config.cookies,
                authorization: config.forward_authorization,
            },
            hasher: CredentialHasher::new(),
            flights: Flights::new(SessionCache::new(
                config.cache_ttl,
                config.cache_max_entries,
            )),
            endpoint: Some(endpoint),
            client: None,
            wait: config.timeout + WAIT_MARGIN,
        }
    }

    /// Starts the client thread; the app is not called until a checkout needs it. `metrics`, when
    /// they are served, count the calls in flight, waiting and refused (`client="forward"`).
    pub fn start(&mut self, metrics: Option<&Metrics>) -> io::Result<()> {
        if let Some(endpoint) = self.endpoint.take() {
            let gauges = metrics.map(|metrics| metrics.outbound_budget(METRICS_CLIENT));
            self.client = Some(AppClient::start(endpoint, gauges)?);
        }
        Ok(())
    }

    /// Whether the request carries any credential that would be forwarded to the app.
    pub fn presents_credentials(&self, headers: &HeaderMap) -> bool {
        self.rules.presented(headers)
    }

    pub async fn authenticate(&self, req: &HttpRequest) -> Result<SessionUser, SessionError> {
        let credentials = self.rules.credentials(req.headers())?;
        let key = self.hasher.key(&credentials);
        let mut landing = match self.flights.find(key, Instant::now()) {
            Found::Cached(user) => {
                tracing::debug!("session from the cache of the app's answers");
                return Ok(user);
            }
            Found::Joined(landing) => {
                tracing::debug!("session check joins the same session's call to the app");
                landing
            }
            Found::Started(flight, landing) => {
                // Never started (only a configuration check builds the source without starting
                // it): the flight is dropped, and the checkout gets `Backend` below.
                let Some(client) = &self.client else {
                    return Err(SessionError::Backend);
                };
                client.send(AppCall {
                    credentials,
                    request_id: req
                        .extensions()
                        .get::<RequestId>()
                        .map(|id| id.header_value().clone()),
                    span: tracing::Span::current(),
                    flight,
                });
                landing
            }
        };
        // A closed channel (the flight dropped without landing) or no landing in time: nobody
        // can be checked right now.
        match tokio::time::timeout(self.wait, landing.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => outcome.clone().unwrap_or(Err(SessionError::Backend)),
            Ok(Err(_)) | Err(_) => Err(SessionError::Backend),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ForwardConfig {
        ForwardConfig {
            url: Uri::from_static("http://127.0.0.1:9/session/whoami"),
            cookies: vec!["_app_session".into()],
            forward_authorization: false,
            user_id_field: "/id".into(),
            email_field: "/email".into(),
            timeout: Duration::from_millis(100),
            cache_ttl: Duration::from_secs(30),
            cache_max_entries: 10,
            max_connections: 4,
            tls_roots: TlsRoots::default(),
        }
    }

    #[test]
    fn the_client_thread_starts_with_start_not_with_the_configuration_and_only_once() {
        let mut session = ForwardSession::new(config());
        assert!(
            session.client.is_none(),
            "a configuration check starts no thread"
        );
        session.start(None).unwrap();
        assert!(session.client.is_some() && session.endpoint.is_none());
        session.start(Some(&Metrics::new())).unwrap();
        assert!(
            session.client.is_some(),
            "a second start keeps the running client"
        );
    }
}
