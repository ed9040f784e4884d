//! What every worker shares to admit a request on any browser-facing route, built once at start-up.

use std::sync::Arc;

use crate::client_ip::ClientIpResolver;
use crate::http::Readiness;
use crate::rate_limit::RateLimits;
use crate::session::SessionSource;

#[derive(Debug)]
pub struct AdmissionContext {
    pub session: SessionSource,
    pub client_ip: ClientIpResolver,
    pub max_body_bytes: usize,
    pub readiness: Arc<Readiness>,
    pub rate_limits: Arc<RateLimits>,
}
