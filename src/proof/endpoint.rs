//! Where Proof is and the bounds every call to it keeps: the checked `[proof]` settings as one
//! [`ProofEndpoint`], built once per process and shared by every worker's client. It owns the URL
//! of each call under the base URL (an id is always one escaped path segment, never more), the
//! client token and `Origin` sent with each, and the connect, attempt and deadline times and the
//! attempt and connection limits the calls are held to.

use std::time::Duration;

use actix_web::http::Uri;
use actix_web::http::header::HeaderValue;
use secrecy::SecretString;

use super::error::{UpstreamError, UpstreamFailure};
use super::token::ClientToken;

/// What the worker-independent part of the client needs, built once from the configuration.
#[derive(Debug)]
pub struct ProofEndpoint {
    /// `POST /widget/session`, parsed once: it has no part that varies per call.
    widget_session_url: Uri,
    /// The base URL without a trailing slash, for the paths built per call.
    base: String,
    token: ClientToken,
    origin: HeaderValue,
    connect_timeout: Duration,
    request_timeout: Duration,
    deadline: Duration,
    max_attempts: u32,
    /// `proof.max_connections`: calls in flight for the whole instance.
    max_connections: usize,
}

/// The checked `[proof]` values the endpoint is built from.
#[derive(Debug)]
pub struct ProofEndpointSettings {
    /// The full URL of `POST /widget/session` under the configured base URL.
    pub widget_session_url: String,
    /// The configured base URL, checked.
    pub base_url: url::Url,
    pub client_token: SecretString,
    /// Where the token is re-read from on rotation, when it came from a file.
    pub client_token_file: Option<std::path::PathBuf>,
    pub origin: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub deadline: Duration,
    pub max_attempts: u32,
    pub max_connections: usize,
}

impl ProofEndpoint {
    /// Fails only on values no checked configuration holds; the configuration layer calls it, so
    /// `check-config` reports any such problem before the service starts.
    pub fn new(config: &ProofEndpointSettings) -> Result<Self, String> {
        let widget_session_url: Uri = config
            .widget_session_url
            .parse()
            .map_err(|e| format!("proof.base_url: {e}"))?;
        let token = ClientToken::new(&config.client_token, config.client_token_file.clone())
            .map_err(|problem| format!("proof.client_token: {problem}"))?;
        let origin = HeaderValue::try_from(config.origin.as_str())
            .map_err(|_| "proof.origin: not a valid header value".to_owned())?;
        let base = config.base_url.as_str().trim_end_matches('/').to_owned();
        Ok(Self {
            widget_session_url,
            base,
            token,
            origin,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            deadline: config.deadline,
            max_attempts: config.max_attempts,
            max_connections: config.max_connections,
        })
    }

    /// The most one attempt waits for Proof's answer.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The most a checkout waits for Proof, all attempts included.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Checkout and status calls in flight at once for the whole instance.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    pub(super) fn origin(&self) -> &HeaderValue {
        &self.origin
    }

    /// The client token, which a rotation replaces.
    pub fn token(&self) -> &ClientToken {
        &self.token
    }

    /// The most one attempt spends connecting; a retry, or a wait for a place in the budget, that
    /// would leave less than this before the deadline is not worth making.
    pub(super) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// `proof.max_attempts`: the most attempts one call makes, the first included.
    pub(super) fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// `POST /widget/session`.
    pub(super) fn widget_session_url(&self) -> Uri {
        self.widget_session_url.clone()
    }

    /// `GET /widget/transactions/{merchant_transaction_id}`.
    pub(super) fn transaction_url(
        &self,
        merchant_transaction_id: &str,
    ) -> Result<Uri, UpstreamError> {
        self.url_with(&["widget", "transactions", merchant_transaction_id])
    }

    /// `GET /widget/users/{partner_user_id}/kyc-status`.
    pub(super) fn kyc_status_url(&self, partner_user_id: &str) -> Result<Uri, UpstreamError> {
        self.url_with(&["widget", "users", partner_user_id, "kyc-status"])
    }

    /// `GET /ws?tx_id={merchant_transaction_id}`, the transaction's WebSocket.
    pub(super) fn transaction_updates_url(
        &self,
        merchant_transaction_id: &str,
    ) -> Result<Uri, UpstreamError> {
        self.url_with_query(&["ws"], "tx_id", merchant_transaction_id)
    }

    /// The base URL with `segments` appended, each percent-escaped: an id can never climb out of
    /// its place in the path nor add a query.
    fn url_with(&self, segments: &[&str]) -> Result<Uri, UpstreamError> {
        let mut url = self.base.clone();
        for segment in segments {
            url.push('/');
            push_escaped_segment(&mut url, segment);
        }
        Uri::try_from(url).map_err(|_| unbuildable_url())
    }

    /// The base URL with `segments` and one query parameter, every part percent-escaped.
    fn url_with_query(
        &self,
        segments: &[&str],
        name: &str,
        value: &str,
    ) -> Result<Uri, UpstreamError> {
        let mut url = self.base.clone();
        for segment in segments {
            url.push('/');
            push_escaped_segment(&mut url, segment);
        }
        url.push('?');
        push_escaped_segment(&mut url, name);
        url.push('=');
        push_escaped_segment(&mut url, value);
        Uri::try_from(url).map_err(|_| unbuildable_url())
    }
}

fn unbuildable_url() -> UpstreamError {
    UpstreamError {
        kind: UpstreamFailure::InvalidResponse {
            status: 0,
            cause: "the request URL could not be built",
        },
        attempts: 0,
    }
}

/// Appends `segment` with every byte but letters, digits, `-`, `_` and `~` percent-encoded: `/`,
/// `?`, `#` and `%` cannot change the path's shape, and `.` is encoded too, so an id of `..` is not
/// a step up the path.
fn push_escaped_segment(url: &mut String, segment: &str) {
    use std::fmt::Write as _;
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            url.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(url, "%{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_one_path_segment() {
        let escaped = |segment: &str| {
            let mut url = String::new();
            push_escaped_segment(&mut url, segment);
            url
        };
        assert_eq!(escaped("550e8400-e29b_41d4~a"), "550e8400-e29b_41d4~a");
        assert_eq!(escaped("../a/b?c#d%"), "%2E%2E%2Fa%2Fb%3Fc%23d%25");
        assert_eq!(escaped("caf\u{e9} x"), "caf%C3%A9%20x");
    }
}
