//! proof-bff: a backend-for-frontend that creates Proof widget sessions server-side.

pub mod checkout_request;
pub mod cli;
pub mod client_ip;
pub mod configuration;
pub mod connection;
pub mod cors;
pub mod csrf;
pub mod error;
pub mod healthcheck;
pub mod origin;
pub mod proof_client;
pub mod rate_limit;
pub mod readiness;
pub mod routes;
pub mod sandbox;
pub mod session;
pub mod stand_in;
pub mod startup;
pub mod telemetry;
