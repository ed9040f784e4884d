//! Everything that speaks Proof's partner API: the per-worker client with its retry rules
//! ([`client`]), the transaction WebSocket ([`websocket`]) and Proof's wire types ([`wire`]).
//! Nothing outside this folder builds a request to Proof or reads one of its answers.

mod client;
mod error;
mod retry;
mod token;
mod websocket;
mod wire;

pub use client::{ProofClient, ProofEndpoint, ProofEndpointSettings, UpstreamAnswer};
pub use error::{UpstreamError, UpstreamFailure};
pub use token::{ClientToken, MAX_CLIENT_TOKEN_BYTES, Reload, check_client_token};
pub use websocket::{Heard, SocketEnded, TransactionUpdates, WebSocketUnavailable};
pub use wire::{WidgetSessionRequest, transaction_owner, transaction_status};

/// The `[proof]` settings, checked: how to reach Proof, and what a checkout adds to each session.
#[derive(Debug)]
pub struct ProofConfig {
    pub endpoint: ProofEndpoint,
    /// `proof.address`: sent only when Proof asked the partner to.
    pub address: Option<String>,
    /// How often `client_token_file` is checked for a new token; zero: only on SIGHUP.
    pub token_reload: std::time::Duration,
}
