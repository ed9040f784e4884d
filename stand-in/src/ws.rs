//! `GET /ws?tx_id={merchant_transaction_id}`: one transaction's status over a WebSocket, as Proof
//! documents it. A connection gets the status the transaction has now, then each status it enters
//! (handed over by the announcer), and is closed normally after the terminal one, unless a
//! [`WebSocketFault`] makes it misbehave instead.
//!
//! Each connection is one task on the stand-in's worker, woken only by a frame from its client or
//! a status change, so that hundreds held open at once cost little more than their sockets.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, ProtocolError, Session};
use serde::Serialize;

use super::envelope::{self, invalid_request};
use super::store::{Status, Transaction, Updates, Watch, lock};
use super::time::{fiat_amount, iso8601_utc};
use super::{Shared, StandInConfig};

/// How `GET /ws` misbehaves, for tests of a client's defences. Switched with
/// [`StandInControls::set_websocket_fault`](super::StandInControls::set_websocket_fault);
/// connections already open keep the fault they started with.
///
/// A fault changes only what happens after the upgrade: the token, the Origin, the switch, the
/// `max_websockets` bound and the transaction are checked before it as usual, and a faulty
/// connection counts in `websocket_connections`, `open_websockets` and `websocket_pings` like any
/// other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebSocketFault {
    /// Proof's documented behaviour.
    #[default]
    None,
    /// Accepts the upgrade, then sends nothing at all: no status frame, no pong to a ping, no close,
    /// not even in answer to the client's close. The connection stays open until the client ends
    /// the TCP connection (or sends bytes that are not WebSocket frames, which end it too, still
    /// without a frame), as with a Proof that hangs or a network that drops everything.
    Silent,
    /// Accepts the upgrade, then sends three frames that are not events, and never a status: the
    /// text `not json`, the text `"\u{1}garbage"` (a control character, then `garbage`), and a
    /// binary frame whose bytes are not UTF-8. It still answers pings with pongs and a client's
    /// close with a close, and otherwise stays open until the client goes away, as a Proof whose
    /// frames changed shape would.
    Garbage,
    /// Accepts the upgrade, then sends a normal close (1000) before any other frame and ends the
    /// connection, as a Proof restarting behind its load balancer would.
    CloseAtOnce,
    /// Accepts the upgrade, then sends the header of one binary frame announcing
    /// [`OVERSIZED_FRAME_BYTES`] (50 MiB) of payload, and that payload in 64 KiB pieces as fast
    /// as the client takes them, as a broken or hostile Proof might. How much of the payload went
    /// out before the connection ended is recorded for each such connection
    /// ([`StandInControls::oversized_frame_sends`](super::StandInControls::oversized_frame_sends)):
    /// a client that refuses the frame from its header ends the connection long before the end.
    OversizedFrame,
}

/// The payload [`WebSocketFault::OversizedFrame`] announces, and sends if the client reads it all.
pub const OVERSIZED_FRAME_BYTES: u64 = 50 * 1024 * 1024;

impl WebSocketFault {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Silent,
            2 => Self::Garbage,
            3 => Self::CloseAtOnce,
            4 => Self::OversizedFrame,
            _ => Self::None,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Silent => 1,
            Self::Garbage => 2,
            Self::CloseAtOnce => 3,
            Self::OversizedFrame => 4,
        }
    }
}

/// The text frames of [`WebSocketFault::Garbage`], in the order sent: neither is JSON, and the
/// second is not even printable.
const GARBAGE_TEXT: [&str; 2] = ["not json", "\u{1}garbage"];

/// The binary frame of [`WebSocketFault::Garbage`], sent after its text frames: not UTF-8, so that
/// a client decoding it as text cannot take it for an event either.
const GARBAGE_BINARY: &[u8] = b"\x00\xffgarbage\xfe";

/// The WebSocket switches and counters, shared with [`super::StandInControls`].
#[derive(Debug)]
pub(super) struct WebSockets {
    enabled: AtomicBool,
    /// A [`WebSocketFault`], read once per connection as it is upgraded.
    fault: AtomicU8,
    max_open: usize,
    open: AtomicUsize,
    accepted: AtomicU64,
    /// When the last [`MAX_ACCEPT_TIMES`] upgrades were accepted, oldest first.
    accept_times: Mutex<VecDeque<Instant>>,
    pings: AtomicU64,
    /// For each [`WebSocketFault::OversizedFrame`] connection that has ended, the payload bytes it
    /// sent, in the order they ended.
    oversized_sends: Mutex<Vec<u64>>,
}

/// How many acceptance times are kept: enough to see a client's reconnection pattern.
const MAX_ACCEPT_TIMES: usize = 1000;

impl WebSockets {
    pub(super) fn new(enabled: bool, max_open: usize) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            fault: AtomicU8::new(WebSocketFault::None.as_u8()),
            max_open,
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            accept_times: Mutex::new(VecDeque::new()),
            pings: AtomicU64::new(0),
            oversized_sends: Mutex::new(Vec::new()),
        }
    }

    /// The payload bytes each ended [`WebSocketFault::OversizedFrame`] connection sent.
    pub(super) fn oversized_sends(&self) -> Vec<u64> {
        lock(&self.oversized_sends).clone()
    }

    pub(super) fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Release);
    }

    pub(super) fn set_fault(&self, fault: WebSocketFault) {
        self.fault.store(fault.as_u8(), Ordering::Release);
    }

    fn fault(&self) -> WebSocketFault {
        WebSocketFault::from_u8(self.fault.load(Ordering::Acquire))
    }

    /// Ping frames received from clients since the start, answered or not.
    pub(super) fn pings(&self) -> u64 {
        self.pings.load(Ordering::Acquire)
    }

    /// Connections open now.
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections accepted since the start.
    pub(super) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Acquire)
    }

    /// When the latest upgrades were accepted, oldest first.
    pub(super) fn accept_times(&self) -> Vec<Instant> {
        lock(&self.accept_times).iter().copied().collect()
    }

    fn record_accept(&self) {
        self.accepted.fetch_add(1, Ordering::AcqRel);
        let mut times = lock(&self.accept_times);
        if times.len() == MAX_ACCEPT_TIMES {
            times.pop_front();
        }
        times.push_back(Instant::now());
    }
}

/// One of the `max_websockets` places, held from before the transaction is looked up until the
/// connection ends, so that the bound holds under any interleaving.
struct Slot(web::Data<Shared>);

impl Slot {
    fn reserve(shared: &web::Data<Shared>) -> Option<Self> {
        let websockets = &shared.websockets;
        websockets
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < websockets.max_open).then_some(open + 1)
            })
            .ok()?;
        Some(Self(shared.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.websockets.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's watch on its transaction, ended with the connection so that the ledger keeps no
/// sender for a connection that has gone.
struct Watching {
    shared: web::Data<Shared>,
    transaction_id: String,
    watcher: u64,
}

impl Drop for Watching {
    fn drop(&mut self) {
        lock(&self.shared.ledger).unwatch(&self.transaction_id, self.watcher);
    }
}

/// A `tx.update` frame, fields in the documented order. `payment_method` is documented as
/// optional and the stand-in has none to report, so it is never sent.
#[derive(Serialize)]
struct Update<'a> {
    event: &'static str,
    merchant_transaction_id: &'a str,
    #[serde(rename = "type")]
    checkout_type: &'a str,
    status: &'a str,
    currency: &'a str,
    fiat_currency: &'a str,
    fiat_amount: String,
    crypto_amount: &'a str,
    occurred_at: String,
}

fn update_frame(
    transaction: &Transaction,
    status: Status,
    config: &StandInConfig,
) -> serde_json::Result<String> {
    serde_json::to_string(&Update {
        event: "tx.update",
        merchant_transaction_id: &transaction.id,
        checkout_type: &transaction.checkout_type,
        status: status.as_str(),
        currency: &transaction.currency,
        fiat_currency: &config.widget_config.fiat_currency,
        fiat_amount: fiat_amount(&transaction.amount),
        crypto_amount: &transaction.amount,
        occurred_at: iso8601_utc(transaction.entered_at(status, config.status_step)),
    })
}

/// Refusals come before the upgrade, in Proof's envelope: 503 while switched off, 400 without a
/// `tx_id`, 503 when every place is taken, 404 for an unknown transaction, 400 for a request that
/// is not a WebSocket upgrade. A fault only changes what happens after the upgrade.
pub(super) async fn connect(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    if !shared.websockets.enabled.load(Ordering::Acquire) {
        return envelope::websocket_unavailable(
            "live updates are unavailable; poll the transaction instead",
        );
    }
    let Some(transaction_id) = tx_id(req.query_string()) else {
        return invalid_request("missing_param", "missing required parameter: tx_id");
    };
    let Some(slot) = Slot::reserve(&shared) else {
        return envelope::websocket_unavailable(
            "too many WebSocket connections; poll the transaction instead",
        );
    };
    let fault = shared.websockets.fault();
    let following = if fault == WebSocketFault::None {
        let config = &shared.config;
        let watch =
            lock(&shared.ledger).watch(&transaction_id, config.clock.now(), config.status_step);
        let Some(watch) = watch else {
            return envelope::not_found("transaction not found");
        };
        let watching = Watching {
            shared: shared.clone(),
            transaction_id,
            watcher: watch.watcher,
        };
        Some((watch, watching))
    } else {
        // A faulty connection never sends a status, so it looks the transaction up without
        // watching it: the announcer has nothing to hand it.
        if lock(&shared.ledger).transaction(&transaction_id).is_none() {
            return envelope::not_found("transaction not found");
        }
        None
    };
    let Ok((response, session, messages)) = actix_ws::handle(&req, payload) else {
        return invalid_request(
            "validation_error",
            "a WebSocket upgrade request is required",
        );
    };
    shared.websockets.record_accept();
    if fault == WebSocketFault::OversizedFrame {
        // The handshake's answer, with the raw frame in place of the session's frames.
        return response
            .set_body(OversizedFrame::new(slot, messages))
            .map_into_boxed_body();
    }
    let connection = Connection {
        session,
        messages,
        slot,
    };
    match following {
        Some((watch, watching)) => actix_web::rt::spawn(serve(connection, watch, watching)),
        None => actix_web::rt::spawn(misbehave(connection, fault)),
    };
    response
}

/// The query string's first `tx_id`, percent-decoded, unless it is empty.
fn tx_id(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "tx_id")
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
}

/// How a connection ends.
enum End {
    /// With a close frame: normal after the terminal status, or the client's own close echoed.
    Close(Option<CloseReason>),
    /// The connection is already gone; there is nobody to send a close frame to.
    Gone,
}

/// An upgraded connection and its place among the `max_websockets`, released with it.
struct Connection {
    session: Session,
    messages: MessageStream,
    slot: Slot,
}

impl Connection {
    /// The client's next frame; pings are counted here, whatever the connection does with them.
    async fn receive(&mut self) -> Option<Result<Message, ProtocolError>> {
        let message = self.messages.recv().await;
        if let Some(Ok(Message::Ping(_))) = message {
            self.slot.0.websockets.pings.fetch_add(1, Ordering::AcqRel);
        }
        message
    }

    /// Ends the connection, with a close frame when there is still someone to send it to.
    async fn end(self, end: End) {
        if let End::Close(reason) = end {
            // The client may already have gone; there is nothing left to do either way.
            let _ = self.session.close(reason).await;
        }
    }
}

/// One connection's life; the slot and the watch are released when it returns.
async fn serve(mut connection: Connection, watch: Watch, _watching: Watching) {
    let Watch {
        transaction,
        status,
        mut updates,
        ..
    } = watch;
    let shared = connection.slot.0.clone();
    let config = &shared.config;
    let end = match send(&mut connection.session, &transaction, status, config).await {
        Err(end) => end,
        Ok(()) if status.is_terminal() => End::Close(Some(CloseCode::Normal.into())),
        Ok(()) => follow(&mut connection, &mut updates, &transaction, config, status).await,
    };
    connection.end(end).await;
}

/// Sends each status after `sent` as it comes until the terminal one, answering pings. One task
/// per connection, woken only by a status change or a frame from the client.
async fn follow(
    connection: &mut Connection,
    updates: &mut Updates,
    transaction: &Transaction,
    config: &StandInConfig,
    mut sent: Status,
) -> End {
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(status) if status.rank() > sent.rank() => {
                    if let Err(end) = send(&mut connection.session, transaction, status, config).await {
                        return end;
                    }
                    if status.is_terminal() {
                        return End::Close(Some(CloseCode::Normal.into()));
                    }
                    sent = status;
                }
                // Already sent: the first frame read the clock, which can be a tick ahead.
                Some(_) => {}
                // The ledger evicted the transaction: no status will ever come again.
                None => return End::Close(Some(CloseCode::Away.into())),
            },
            message = connection.receive() => {
                if let Some(end) = answer(&mut connection.session, message).await {
                    return end;
                }
            }
        }
    }
}

/// Answers a frame from the client as Proof does: a ping with a pong, a close with a close. `Some`
/// when the connection ends.
async fn answer(
    session: &mut Session,
    message: Option<Result<Message, ProtocolError>>,
) -> Option<End> {
    match message {
        Some(Ok(Message::Ping(payload))) => session.pong(&payload).await.err().map(|_| End::Gone),
        Some(Ok(Message::Close(reason))) => Some(End::Close(reason)),
        // Proof documents nothing a client sends, so anything else is ignored.
        Some(Ok(_)) => None,
        Some(Err(_)) => Some(End::Close(Some(CloseCode::Protocol.into()))),
        None => Some(End::Gone),
    }
}

/// The body of a [`WebSocketFault::OversizedFrame`] connection: the frame's header, then its
/// payload piece by piece as the connection takes it. Records what it sent when the connection
/// ends (the server drops the body when it can write no more, or once all of it is written).
struct OversizedFrame {
    header: Option<Bytes>,
    left: u64,
    sent: u64,
    slot: Slot,
    /// The client's frames, unread: kept so the connection lives as long as its body.
    _messages: MessageStream,
}

/// One piece of the oversized payload.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl OversizedFrame {
    fn new(slot: Slot, messages: MessageStream) -> Self {
        // FIN and the binary opcode; unmasked (server to client); the 64-bit length form.
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&OVERSIZED_FRAME_BYTES.to_be_bytes());
        Self {
            header: Some(Bytes::from(header)),
            left: OVERSIZED_FRAME_BYTES,
            sent: 0,
            slot,
            _messages: messages,
        }
    }
}

impl MessageBody for OversizedFrame {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if let Some(header) = this.header.take() {
            return std::task::Poll::Ready(Some(Ok(header)));
        }
        if this.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let piece = this.left.min(ZEROS.len() as u64);
        this.left -= piece;
        this.sent += piece;
        std::task::Poll::Ready(Some(Ok(Bytes::from_static(&ZEROS[..piece as usize]))))
    }
}

impl Drop for OversizedFrame {
    fn drop(&mut self) {
        lock(&self.slot.0.websockets.oversized_sends).push(self.sent);
    }
}

/// A connection that misbehaves as `fault` says, instead of following its transaction.
async fn misbehave(mut connection: Connection, fault: WebSocketFault) {
    let end = match fault {
        // Such a connection follows its transaction in `serve` instead, or (oversized) never gets
        // here: its frame is its answer's body.
        WebSocketFault::None | WebSocketFault::OversizedFrame => return,
        WebSocketFault::Silent => {
            // The client's frames are still read, only to notice when it goes (and to count its
            // pings): a client's close gets no answer, so the connection lasts until the client
            // drops it. The session is kept meanwhile, as dropping it would end the connection.
            while let Some(Ok(_)) = connection.receive().await {}
            End::Gone
        }
        WebSocketFault::Garbage => talk_garbage(&mut connection).await,
        WebSocketFault::CloseAtOnce => End::Close(Some(CloseCode::Normal.into())),
    };
    connection.end(end).await;
}

/// Sends the garbage frames, then answers the client until either side ends the connection.
async fn talk_garbage(connection: &mut Connection) -> End {
    for text in GARBAGE_TEXT {
        if connection.session.text(text).await.is_err() {
            return End::Gone;
        }
    }
    if connection
        .session
        .binary(Bytes::from_static(GARBAGE_BINARY))
        .await
        .is_err()
    {
        return End::Gone;
    }
    loop {
        let message = connection.receive().await;
        if let Some(end) = answer(&mut connection.session, message).await {
            return end;
        }
    }
}

/// Sends `status`'s frame; `Err` says how the connection ends instead.
async fn send(
    session: &mut Session,
    transaction: &Transaction,
    status: Status,
    config: &StandInConfig,
) -> Result<(), End> {
    let Ok(frame) = update_frame(transaction, status, config) else {
        return Err(End::Close(Some(CloseCode::Error.into())));
    };
    session.text(frame).await.map_err(|_| End::Gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transaction_id_is_the_first_tx_id_of_the_query() {
        assert_eq!(tx_id("tx_id=abc").as_deref(), Some("abc"));
        assert_eq!(tx_id("x=1&tx_id=a%2Db&tx_id=c").as_deref(), Some("a-b"));
        assert_eq!(tx_id(""), None);
        assert_eq!(tx_id("tx_id="), None);
        assert_eq!(tx_id("tx_id=&tx_id=abc"), None);
        assert_eq!(tx_id("txid=abc"), None);
    }
}
