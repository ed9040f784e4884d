//! The HTTP pieces every route shares: the error envelope, the health probes, answers for unknown
//! routes, and the bounds on what one client connection may hold back; and the `[server]`
//! settings ([`config`]).

mod config;
pub mod connection;
mod envelope;
mod fallback;
mod health;

pub use config::{ServerConfig, ServerSettings};
pub use envelope::envelope_response;
pub use fallback::{method_not_allowed, not_found};
pub use health::{DrainHold, Readiness, healthz, readyz};
