//! Everything that speaks Proof's partner API: the `[proof]` settings ([`config`]), where Proof is
//! and the bounds of each call ([`endpoint`]), the per-worker client that sends the calls within their budget and deadline
//! ([`client`]), what one attempt came to ([`attempt`]), when a failed attempt is tried again
//! ([`retry`]), why a call failed ([`error`]), the client token and its rotation ([`token`]), the
//! transaction WebSocket ([`websocket`]) and Proof's wire types ([`wire`]). Nothing outside this
//! folder builds a request to Proof or reads one of its answers.

mod attempt;
mod client;
mod config;
mod endpoint;
mod error;
mod retry;
mod token;
mod websocket;
mod wire;

pub use attempt::UpstreamAnswer;
pub use client::ProofClient;
pub use config::{ProofConfig, ProofSettings};
pub use endpoint::{ProofEndpoint, ProofEndpointSettings};
pub use error::{UpstreamError, UpstreamFailure};
pub use token::{ClientToken, MAX_CLIENT_TOKEN_BYTES, Reload, check_client_token};
pub use websocket::{Heard, SocketEnded, TransactionUpdates, WebSocketUnavailable};
pub use wire::{WidgetSessionRequest, transaction_owner, transaction_status};
