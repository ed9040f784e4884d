mod browser;
mod browser_rules;
mod checkout;
mod client_ip;
mod connections;
mod errors;
mod events;
mod forward_session;
mod header_session;
mod helpers;
mod idempotency;
mod jwks;
mod live_status;
mod metrics;
mod probes;
mod rate_limit;
mod redis_backend;
#[path = "../support/redis.rs"]
mod redis_support;
mod request_log;
mod retries;
mod sandbox_values;
mod sessions;
mod status;
#[path = "../support/mod.rs"]
mod support;
mod tls_front;
mod tracing;
