//! Who the user is. Identity comes only from the partner's session, never from the request body:
//! each session source (a JWT signed by the partner's app, [`jwt`], or by an identity provider,
//! [`jwks`]; the partner's app asked about an opaque session, [`forward`]; an auth proxy's
//! headers, [`headers`]) turns a request into a [`SessionUser`] or a [`SessionError`], and the
//! routes ask nothing else. The token sources share where a token travels (`token`) and what its
//! claims must say (`claims`). `[session]` names the source (`config`); each source owns its own
//! table and builds itself from it, starting nothing until [`SessionSource::start`].
//!
//! The user's email is personal data. It is carried in [`UserEmail`], which cannot be printed by
//! accident, so that request logging and error reporting stay free of it.

mod claims;
mod config;
pub mod forward;
pub mod headers;
pub mod jwks;
pub mod jwt;
mod token;
mod user;

use std::fmt;

use actix_web::HttpRequest;

use crate::telemetry::Metrics;

pub use config::{SessionSettings, SessionSourceName};
pub use forward::{ForwardConfig, ForwardSession, ForwardSettings};
pub use headers::{HeaderSession, HeaderSessionSettings};
pub use jwks::{JwksConfigError, JwksSession, JwksSettings};
pub use jwt::{
    DevSession, JwtAlgorithm, JwtConfigError, JwtSession, JwtSettings, JwtVerifier,
    JwtVerifierSettings, KeyFile, MAX_KEY_FILE_BYTES, sign_hs256,
};
pub use token::{token_from_authorization, token_from_cookie_header};
pub use user::is_valid_user_id;

/// Where the routes learn who the user is: one variant per `session.source`, each reading only
/// what its source can vouch for.
#[derive(Debug)]
pub enum SessionSource {
    /// `session.source = "jwt"`: a JWT signed by the partner's app, in a cookie or bearer header.
    Jwt(JwtSession),
    /// `session.source = "jwks"`: a JWT signed by an identity provider, checked against the key
    /// set it publishes.
    Jwks(JwksSession),
    /// `session.source = "forward"`: the partner's app, asked who an opaque session belongs to.
    Forward(ForwardSession),
    /// `session.source = "headers"`: an auth proxy in front, trusted by its address.
    Headers(HeaderSession),
}

impl SessionSource {
    /// The signed-in user, or why there is none. Never reads identity from the request body.
    /// Sources that ask a backend (an identity provider's keys, the partner's app) may wait on it.
    pub async fn authenticate(&self, req: &HttpRequest) -> Result<SessionUser, SessionError> {
        match self {
            Self::Jwt(jwt) => jwt.authenticate(req.headers()),
            Self::Jwks(jwks) => jwks.authenticate(req.headers()).await,
            Self::Forward(forward) => forward.authenticate(req).await,
            Self::Headers(headers) => {
                headers.authenticate(req.peer_addr().map(|peer| peer.ip()), req.headers())
            }
        }
    }

    /// Whether the request carries anything this source reads a session from (a token, a
    /// forwarded cookie, an identity header), found without checking it. A request that carries
    /// nothing has no session, whatever the rest of it says: it is refused before any limit is
    /// spent on it.
    pub fn presents_credentials(&self, req: &HttpRequest) -> bool {
        match self {
            Self::Jwt(jwt) => jwt.presents_token(req.headers()),
            Self::Jwks(jwks) => jwks.presents_token(req.headers()),
            Self::Forward(forward) => forward.presents_credentials(req.headers()),
            Self::Headers(headers) => headers.presents_identity(req.headers()),
        }
    }

    /// Re-reads the source's key file, when it has one, and swaps in a new valid key (see
    /// [`JwtSession::reload`]). True when the key changed.
    pub async fn reload_keys(&self) -> bool {
        match self {
            Self::Jwt(jwt) => jwt.reload().await,
            Self::Jwks(_) | Self::Forward(_) | Self::Headers(_) => false,
        }
    }

    /// Starts what the source runs in the background (the identity provider's key set is fetched
    /// and kept fresh; the thread that calls the partner's app), never during a configuration
    /// check. `on_ready` follows whether sessions can be checked at all; sources with nothing to
    /// wait for never call it. `metrics`, given when they are served, count the calls to the
    /// partner's app (`forward`).
    pub fn start(
        &mut self,
        on_ready: impl Fn(bool) + Send + Sync + 'static,
        metrics: Option<&Metrics>,
    ) -> std::io::Result<()> {
        match self {
            Self::Jwks(jwks) => jwks.start(Box::new(on_ready)),
            Self::Forward(forward) => forward.start(metrics),
            Self::Jwt(_) | Self::Headers(_) => Ok(()),
        }
    }
}

/// The authenticated user, as asserted by a verified session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub user_id: String,
    pub email: UserEmail,
}

/// An email address that has passed the session checks.
///
/// Deliberately has no `Display`, `Serialize` or revealing `Debug`: reading the address takes an
/// explicit [`UserEmail::expose`], which keeps it out of logs and error messages by default.
#[derive(Clone, PartialEq, Eq)]
pub struct UserEmail(String);

impl UserEmail {
    /// The address itself, for the places that legitimately need it (e.g. the upstream API).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        user::is_valid_email(value).then(|| Self(value.to_owned()))
    }
}

impl fmt::Debug for UserEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserEmail(<redacted>)")
    }
}

/// Why a request has no usable session. Carries no detail on purpose: the reason a token was
/// rejected is of use to an attacker probing forgeries, not to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no session")]
    Missing,
    #[error("invalid session")]
    Invalid,
    #[error("session expired")]
    Expired,
    /// The source's backend (the identity provider's key set, the partner's app) could not answer:
    /// nobody can be authenticated right now, which is not the user's fault.
    #[error("session backend unavailable")]
    Backend,
}

impl SessionError {
    /// Stable machine-readable code for API error bodies: `"no_session"`, `"invalid_session"`,
    /// `"session_expired"` (401) or `"session_backend"` (503).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "no_session",
            Self::Invalid => "invalid_session",
            Self::Expired => "session_expired",
            Self::Backend => "session_backend",
        }
    }
}
