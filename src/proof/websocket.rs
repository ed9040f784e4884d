//! Proof's `GET /ws?tx_id=…`: one transaction's live status over a WebSocket, opened with the
//! `client_token` on the upgrade request (so from the backend only). Each `tx.update` event names
//! the new status; what a browser sees is confirmed with `GET /widget/transactions/{id}`. Whether
//! a socket is still alive (pings) and how often it is reopened is the watcher's business
//! (`crate::status`); this module only reads and writes frames.

use std::time::Duration;

use actix_codec::{Decoder, Encoder, Framed};
use actix_web::http::header::{self, HeaderValue};
use awc::BoxedSocket;
use awc::error::WsProtocolError;
use awc::ws::{Codec, Frame, Message};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};

use super::client::ProofClient;

/// Proof's events are a few hundred bytes.
const MAX_FRAME_BYTES: usize = 64 * 1024;

/// An open WebSocket of one transaction.
pub struct TransactionUpdates {
    frames: Framed<BoxedSocket, BoundedCodec>,
}

/// awc's WebSocket codec, refusing a frame as soon as its header announces a payload over
/// [`MAX_FRAME_BYTES`]. The codec itself checks its limit only once the whole frame has arrived,
/// so a peer announcing 50 MiB would first have all of it read into memory (which the allocator
/// then keeps); here nothing past the header is waited for.
struct BoundedCodec(Codec);

impl Decoder for BoundedCodec {
    type Item = Frame;
    type Error = WsProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WsProtocolError> {
        if announced_payload(src).is_some_and(|length| length > MAX_FRAME_BYTES as u64) {
            return Err(WsProtocolError::Overflow);
        }
        self.0.decode(src)
    }
}

impl Encoder<Message> for BoundedCodec {
    type Error = WsProtocolError;

    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), WsProtocolError> {
        self.0.encode(message, dst)
    }
}

/// The payload length that the frame at the start of `bytes` announces, once its header has
/// arrived that far (RFC 6455 §5.2: 7 bits, or 126 and 16 bits, or 127 and 64 bits).
fn announced_payload(bytes: &[u8]) -> Option<u64> {
    let length = bytes.get(1)? & 0x7f;
    match length {
        126 => Some(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?).into()),
        127 => Some(u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)),
        short => Some(short.into()),
    }
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
            .transaction_updates_url(merchant_transaction_id)
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
        Ok(TransactionUpdates {
            frames: frames.into_map_codec(BoundedCodec),
        })
    }
}

/// What the WebSocket said, when it said something usable.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// A `tx.update` event: the transaction's new status, as Proof announced it.
    Status(String),
    /// A sign of life that announces nothing: a pong, a ping (answered), another event.
    Alive,
}

/// Why the WebSocket is of no further use; the watcher closes it and polls.
#[derive(Debug, thiserror::Error)]
pub enum SocketEnded {
    #[error("Proof closed the WebSocket")]
    Closed,
    #[error("the WebSocket broke: {0}")]
    Broken(String),
    /// A frame that is not one of Proof's events: whatever speaks there is not to be trusted with
    /// a transaction's status.
    #[error("the WebSocket sent a frame that is not an event")]
    NotAnEvent,
    /// Pinged after a silence, it did not answer: whatever is at the other end is not listening.
    #[error("the WebSocket left a ping unanswered")]
    Unanswered,
}

impl TransactionUpdates {
    /// The next thing the WebSocket says. Pings are answered here. A text frame must be a JSON
    /// object with an `event` name (a `tx.update` with a `status`); anything else ends the socket.
    pub async fn next(&mut self) -> Result<Heard, SocketEnded> {
        let Some(frame) = self.frames.next().await else {
            return Err(SocketEnded::Closed);
        };
        match frame.map_err(|e| SocketEnded::Broken(e.to_string()))? {
            Frame::Text(text) => {
                let event =
                    serde_json::from_slice::<Event>(&text).map_err(|_| SocketEnded::NotAnEvent)?;
                match (event.event.as_deref(), event.status) {
                    (Some("tx.update"), Some(status)) => Ok(Heard::Status(status.into_owned())),
                    (Some("tx.update"), None) | (None, _) => Err(SocketEnded::NotAnEvent),
                    // An event Proof may add later: nothing to act on, but the socket lives.
                    (Some(_), _) => Ok(Heard::Alive),
                }
            }
            Frame::Ping(payload) => {
                self.frames
                    .send(Message::Pong(payload))
                    .await
                    .map_err(|e| SocketEnded::Broken(e.to_string()))?;
                Ok(Heard::Alive)
            }
            Frame::Pong(_) => Ok(Heard::Alive),
            Frame::Close(_) => Err(SocketEnded::Closed),
            Frame::Binary(_) | Frame::Continuation(_) => Err(SocketEnded::NotAnEvent),
        }
    }

    /// Asks the other end for a sign of life; the answer comes as [`Heard::Alive`].
    pub async fn ping(&mut self) -> Result<(), SocketEnded> {
        self.frames
            .send(Message::Ping(bytes::Bytes::from_static(b"proof-bff")))
            .await
            .map_err(|e| SocketEnded::Broken(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_length_is_read_from_each_form_of_the_header() {
        assert_eq!(announced_payload(b""), None);
        assert_eq!(announced_payload(b"\x81"), None);
        assert_eq!(announced_payload(b"\x81\x05hello"), Some(5));
        assert_eq!(announced_payload(b"\x82\x7e\x01"), None);
        assert_eq!(announced_payload(b"\x82\x7e\x01\x00"), Some(256));
        assert_eq!(announced_payload(b"\x82\x7f\x00\x00\x00\x00\x03\x20"), None);
        assert_eq!(
            announced_payload(b"\x82\x7f\x00\x00\x00\x00\x03\x20\x00\x00"),
            Some(50 * 1024 * 1024)
        );
    }

    #[test]
    fn a_frame_announced_over_the_limit_is_refused_from_its_header_alone() {
        let mut codec = BoundedCodec(Codec::new().client_mode().max_size(MAX_FRAME_BYTES));
        let mut header = BytesMut::from(&b"\x82\x7f"[..]);
        header.extend_from_slice(&(MAX_FRAME_BYTES as u64 + 1).to_be_bytes());
        assert!(matches!(
            codec.decode(&mut header),
            Err(WsProtocolError::Overflow)
        ));
        // At the limit, the frame is waited for and decoded as usual.
        let mut frame = BytesMut::from(&b"\x82\x7f"[..]);
        frame.extend_from_slice(&(MAX_FRAME_BYTES as u64).to_be_bytes());
        assert!(matches!(codec.decode(&mut frame), Ok(None)));
        frame.extend_from_slice(&vec![0; MAX_FRAME_BYTES]);
        assert!(
            matches!(codec.decode(&mut frame), Ok(Some(Frame::Binary(payload))) if payload.len() == MAX_FRAME_BYTES)
        );
    }
}
