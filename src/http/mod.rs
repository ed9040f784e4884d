//! The HTTP pieces every route shares: the error envelope, the health probes, answers for unknown
//! routes, and the bounds on what one client connection may hold back; and which upstream hosts
//! may be called over plain `http://`.

pub mod connection;
mod envelope;
mod fallback;
mod health;
mod loopback;

pub use envelope::envelope_response;
pub use fallback::{method_not_allowed, not_found};
pub use health::{DrainHold, Readiness, healthz, readyz};
pub use loopback::is_loopback_host;
