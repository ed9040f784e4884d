//! Everything that speaks Proof's partner API: where Proof is and the bounds of each call
//! ([`endpoint`]), the per-worker client that sends the calls within their budget and deadline
//! ([`client`]), what one attempt came to ([`attempt`]), when a failed attempt is tried again
//! ([`retry`]), why a call failed ([`error`]), the client token and its rotation ([`token`]), the
//! transaction WebSocket ([`websocket`]) and Proof's wire types ([`wire`]). Nothing outside this
//! folder builds a request to Proof or reads one of its answers.

mod attempt;
mod client;
mod endpoint;
mod error;
mod retry;
mod token;
mod websocket;
mod wire;

pub use attempt::UpstreamAnswer;
pub use client::ProofClient;
pub use endpoint::{ProofEndpoint, ProofEndpointSettings};
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
