//! Proof's `GET /ws?tx_id=…`: one transaction's live status over a WebSocket, opened with the
//! `client_token` on the upgrade request (so from the backend only). Each `tx.update` event names
//! the new status; what a browser sees is confirmed with `GET /widget/transactions/{id}`.

use std::time::Duration;

use actix_codec::Framed;
use actix_web::http::header::{self, HeaderValue};
use awc::BoxedSocket;
use awc::ws::{Codec, Frame, Message};
use futures_util::{SinkExt, StreamExt};

use super::client::ProofClient;

/// Proof's events are a few hundred bytes.
const MAX_FRAME_BYTES: usize = 64 * 1024;

/// An open WebSocket of one transaction.
pub struct TransactionUpdates {
    frames: Framed<BoxedSocket, Codec>,
}

/// Why the WebSocket could not be opened; the watcher falls back to polling either way.
#[derive(Debug, thiserror::Error)]
#[error("Proof's WebSocket is unavailable: {0}")]
pub struct WebSocketUnavailable(String);

#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    event: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<std::borrow::Cow<'a, str>>,
}

impl ProofClient {
    /// Opens the WebSocket of `merchant_transaction_id`, within `timeout`.
    pub async fn transaction_updates(
        &self,
        merchant_transaction_id: &str,
        timeout: Duration,
    ) -> Result<TransactionUpdates, WebSocketUnavailable> {
        let endpoint = self.endpoint();
        let url = endpoint
            .url_with_query(&["ws"], "tx_id", merchant_transaction_id)
            .map_err(|_| WebSocketUnavailable("the URL could not be built".to_owned()))?;
        let request = self
            .http()
            .ws(url)
            .max_frame_size(MAX_FRAME_BYTES)
            .header(
                header::USER_AGENT,
                HeaderValue::from_static(super::client::USER_AGENT),
            )
            .header(header::ORIGIN, endpoint.origin().clone())
            .header(
                header::AUTHORIZATION,
                (*endpoint.token().authorization()).clone(),
            );
        let connected = tokio::time::timeout(timeout, request.connect())
            .await
            .map_err(|_| WebSocketUnavailable("no answer in time".to_owned()))?;
        let (_response, frames) = connected.map_err(|e| WebSocketUnavailable(e.to_string()))?;
        Ok(TransactionUpdates { frames })
    }
}

impl TransactionUpdates {
    /// The status of the next `tx.update` event; `None` once the connection has ended (closed,
    /// broken, or speaking something else), after which it is not used again.
    pub async fn next_status(&mut self) -> Option<String> {
        while let Some(frame) = self.frames.next().await {
            match frame.ok()? {
                Frame::Text(text) => {
                    let Ok(event) = serde_json::from_slice::<Event>(&text) else {
                        continue;
                    };
                    if event.event.as_deref() == Some("tx.update")
                        && let Some(status) = event.status
                    {
                        return Some(status.into_owned());
                    }
                }
                Frame::Ping(payload) => {
                    self.frames.send(Message::Pong(payload)).await.ok()?;
                }
                Frame::Close(_) => return None,
                Frame::Pong(_) | Frame::Binary(_) | Frame::Continuation(_) => {}
            }
        }
        None
    }
}
