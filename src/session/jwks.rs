//! Session tokens from an identity provider (`session.source = "jwks"`): Auth0, Okta, Cognito,
//! Keycloak, Entra ID. The provider signs with keys it publishes as a JWK Set and rotates them;
//! this source keeps that set and checks each token against it.
//!
//! A token is judged in this order, cheapest and least trusting first: where it travels and its
//! size (as for `jwt`); its header's `alg`, which must be in the allow-list (asymmetric only, so
//! a token MACed with a public key is refused before any key is looked at); its `kid`, which must
//! name a published key that may serve that `alg`; the signature; then the claims, by the same
//! rules as `jwt` (`claims`), with `iss` always checked.
//!
//! The parts: `keys` turns a fetched set into checked keys; `refresh` holds the set every worker
//! reads and the single loop that refreshes it (one fetch at a time for the process, an unknown
//! `kid` asking for at most one refetch per `min_refresh_interval_s`); `fetch` runs that loop with
//! its own HTTP client on a thread of its own (why is explained there); `freshness` says how long
//! a set is kept and how soon a failed fetch is retried; `location` and `algorithms` are the
//! checked forms of the settings.
//!
//! Until the first set is in, nobody can be verified: checkouts get 503 `session_backend` and the
//! readiness callback given to [`JwksSession::start`] says not ready; the loop keeps trying and
//! the instance becomes ready by itself when the provider answers. After that a failed refresh
//! keeps the last good set.

mod algorithms;
mod config;
mod fetch;
mod freshness;
mod keys;
mod location;
mod refresh;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderMap;

use self::algorithms::AllowedAlgorithms;
use self::fetch::{FETCH_TIMEOUT, Fetcher};
use self::location::{KeySetLocation, fetch_url};
use self::refresh::KeyCache;
use super::claims::{self, ClaimRules, ClaimRulesError};
use super::token::session_token;
use super::{SessionError, SessionUser};
use crate::tls_roots::TlsRoots;

pub use self::config::JwksSettings;

/// The longest `min_refresh_interval_s`: beyond a day a rotated key would go unnoticed too long.
const MAX_MIN_REFRESH_INTERVAL_S: u64 = 24 * 3600;

/// A setting of `[session.jwks]` that cannot work: the setting's name and the problem.
#[derive(Debug, thiserror::Error)]
#[error("session.jwks.{setting}: {problem}")]
pub struct JwksConfigError {
    pub setting: &'static str,
    pub problem: String,
}

/// `session.source = "jwks"`.
pub struct JwksSession {
    cookie: String,
    bearer: bool,
    algorithms: AllowedAlgorithms,
    rules: ClaimRules,
    location: KeySetLocation,
    tls_roots: TlsRoots,
    cache: Arc<KeyCache>,
    /// Set by [`Self::start`]; a configuration check never starts it, so it fetches nothing.
    fetcher: Option<Fetcher>,
}

impl std::fmt::Debug for JwksSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSession")
            .field("cookie", &self.cookie)
            .field("bearer", &self.bearer)
            .field("algorithms", &self.algorithms.list())
            .field("rules", &self.rules)
            .field("location", &self.location)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl JwksSession {
    /// Checks the settings and prepares the source, without fetching anything. No problem quotes a
    /// URL: the parser's messages name the fault without the input.
    /// `tls_roots`: what the fetches trust (the public roots, and the provider's CA from
    /// `ca_file`).
    pub fn new(settings: JwksSettings, tls_roots: TlsRoots) -> Result<Self, JwksConfigError> {
        let JwksSettings {
            issuer,
            jwks_url,
            algorithms,
            audience,
            cookie,
            bearer,
            user_id_claim,
            email_claim,
            leeway_s,
            min_refresh_interval_s,
            ca_file: _,
        } = settings;
        let fault = |setting, problem| JwksConfigError { setting, problem };
        let issuer = issuer.trim();
        if issuer.is_empty() {
            return Err(fault(
                "issuer",
                "is required: the iss of your identity provider's tokens".into(),
            ));
        }
        if issuer.chars().any(char::is_control) {
            return Err(fault(
                "issuer",
                "must not contain control characters".into(),
            ));
        }
        let location = match jwks_url.trim() {
            "" => KeySetLocation::discovery(issuer).map_err(|problem| {
                fault(
                    "issuer",
                    format!(
                        "{problem} (the key set is discovered under it while jwks_url is empty)"
                    ),
                )
            })?,
            url => KeySetLocation::Direct(fetch_url(url).map_err(|p| fault("jwks_url", p))?),
        };
        let rules = ClaimRules::new(
            Some(issuer.to_owned()),
            Some(audience.trim().to_owned()),
            user_id_claim.trim().to_owned(),
            email_claim.trim().to_owned(),
            leeway_s,
        )
        .map_err(|ClaimRulesError { setting, problem }| fault(setting, problem))?;
        let algorithms = AllowedAlgorithms::parse(&algorithms, &rules)
            .map_err(|problem| fault("algorithms", problem))?;
        if !(1..=MAX_MIN_REFRESH_INTERVAL_S).contains(&min_refresh_interval_s) {
            return Err(fault(
                "min_refresh_interval_s",
                format!("must be between 1 and {MAX_MIN_REFRESH_INTERVAL_S}"),
            ));
        }
        // A worker waits for a fetch at most as long as the fetch itself may take (discovery and
        // the key set), and a margin.
        let wait_limit = FETCH_TIMEOUT * 2 + Duration::from_secs(1);
        Ok(Self {
            cookie,
            bearer,
            algorithms,
            rules,
            location,
            tls_roots,
            cache: Arc::new(KeyCache::new(
                Duration::from_secs(min_refresh_interval_s),
                wait_limit,
            )),
            fetcher: None,
        })
    }

    /// Starts fetching the key set in the background. `on_ready(false)` is called at once and
    /// `on_ready(true)` when the first set is in.
    pub fn start(&mut self, on_ready: Box<dyn Fn(bool) + Send + Sync>) -> std::io::Result<()> {
        if self.fetcher.is_some() {
            return Ok(());
        }
        on_ready(false);
        self.fetcher = Some(fetch::start(
            self.cache.clone(),
            self.location.clone(),
            self.algorithms.list(),
            self.tls_roots.clone(),
            on_ready,
        )?);
        Ok(())
    }

    /// Whether the request carries a token where this source reads one.
    pub fn presents_token(&self, headers: &HeaderMap) -> bool {
        session_token(headers, &self.cookie, self.bearer).is_some()
    }

    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<SessionUser, SessionError> {
        let token =
            session_token(headers, &self.cookie, self.bearer).ok_or(SessionError::Missing)?;
        claims::check_size(token)?;
        // The header only chooses the key: nothing in it is trusted until the signature holds.
        let header = jsonwebtoken::decode_header(token).map_err(|_| SessionError::Invalid)?;
        let algorithm = header.alg;
        let validation = self
            .algorithms
            .validation(algorithm)
            .ok_or(SessionError::Invalid)?;
        let kid = header.kid.ok_or(SessionError::Invalid)?;
        let verify = |key| claims::verify_signed(token, key, algorithm, validation, &self.rules);
        let keys = self.cache.current().ok_or(SessionError::Backend)?;
        if let Some(key) = keys.key(&kid, algorithm) {
            return verify(key);
        }
        if keys.has_kid(&kid) {
            // A known key that may not serve this algorithm: nothing a refetch would change.
            return Err(SessionError::Invalid);
        }
        // Perhaps a key the provider has just started signing with.
        let keys = self.cache.after_unknown_kid().await?;
        verify(keys.key(&kid, algorithm).ok_or(SessionError::Invalid)?)
    }
}
