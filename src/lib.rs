//! proof-bff: a backend-for-frontend that creates Proof widget sessions server-side.

pub mod admission;
pub mod browser;
pub mod build_info;
pub mod call_budget;
pub mod checkout;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod config_checks;
pub mod http;
pub mod idempotency;
pub mod proof;
pub mod rate_limit;
pub mod sandbox;
pub mod secret_file;
pub mod session;
pub mod shared_redis;
pub mod side_thread;
pub mod startup;
pub mod status;
pub mod telemetry;
pub mod tls_roots;
