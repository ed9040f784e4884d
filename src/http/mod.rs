//! The HTTP pieces every route shares: the error envelope, the health probes, answers for unknown
//! routes, and the bounds on what one client connection may hold back; the `[server]` settings
//! ([`config`]); and what an upstream URL may be (`http(s)://`, no credentials, plain `http://`
//! only to this machine when a secret travels there), one check for every upstream the service
//! calls.

mod config;
pub mod connection;
mod envelope;
mod fallback;
mod health;
mod loopback;

pub use config::{ServerConfig, ServerSettings};
pub use envelope::envelope_response;
pub use fallback::{method_not_allowed, not_found};
pub use health::{DrainHold, Readiness, healthz, readyz};
pub use loopback::{HTTPS_UNLESS_LOOPBACK, UrlRules, is_loopback_host, outbound_url};
