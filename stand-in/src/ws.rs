//! `GET /ws?tx_id={merchant_transaction_id}`: one transaction's status over a WebSocket, as Proof
//! documents it. A connection gets the status the transaction has now, then each status it enters
//! (handed over by the announcer), and is closed normally after the terminal one.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use serde::Serialize;

use super::envelope::{self, invalid_request};
use super::store::{Status, Transaction, Updates, Watch, lock};
use super::time::{fiat_amount, iso8601_utc};
use super::{Shared, StandInConfig};

/// The WebSocket switch and counters, shared with [`super::StandInControls`].
#[derive(Debug)]
pub(super) struct WebSockets {
    enabled: AtomicBool,
    max_open: usize,
    open: AtomicUsize,
    accepted: AtomicU64,
}

impl WebSockets {
    pub(super) fn new(enabled: bool, max_open: usize) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            max_open,
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
        }
    }

    pub(super) fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Release);
    }

    /// Connections open now.
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections accepted since the start.
    pub(super) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Acquire)
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
/// is not a WebSocket upgrade.
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
    let config = &shared.config;
    let watch = lock(&shared.ledger).watch(&transaction_id, config.clock.now(), config.status_step);
    let Some(watch) = watch else {
        return envelope::not_found("transaction not found");
    };
    let watching = Watching {
        shared: shared.clone(),
        transaction_id,
        watcher: watch.watcher,
    };
    let Ok((response, session, messages)) = actix_ws::handle(&req, payload) else {
        return invalid_request(
            "validation_error",
            "a WebSocket upgrade request is required",
        );
    };
    shared.websockets.accepted.fetch_add(1, Ordering::AcqRel);
    actix_web::rt::spawn(serve(session, messages, watch, slot, watching));
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

/// One connection's life; the slot and the watch are released when it returns.
async fn serve(
    mut session: Session,
    mut messages: MessageStream,
    watch: Watch,
    slot: Slot,
    _watching: Watching,
) {
    let Watch {
        transaction,
        status,
        mut updates,
        ..
    } = watch;
    let config = &slot.0.config;
    let end = match send(&mut session, &transaction, status, config).await {
        Err(end) => end,
        Ok(()) if status.is_terminal() => End::Close(Some(CloseCode::Normal.into())),
        Ok(()) => {
            follow(
                &mut session,
                &mut messages,
                &mut updates,
                &transaction,
                config,
                status,
            )
            .await
        }
    };
    if let End::Close(reason) = end {
        // The client may already have gone; there is nothing left to do either way.
        let _ = session.close(reason).await;
    }
}

/// Sends each status after `sent` as it comes until the terminal one, answering pings. One task
/// per connection, woken only by a status change or a frame from the client.
async fn follow(
    session: &mut Session,
    messages: &mut MessageStream,
    updates: &mut Updates,
    transaction: &Transaction,
    config: &StandInConfig,
    mut sent: Status,
) -> End {
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(status) if status.rank() > sent.rank() => {
                    if let Err(end) = send(session, transaction, status, config).await {
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
            message = messages.recv() => match message {
                Some(Ok(Message::Ping(payload))) => {
                    if session.pong(&payload).await.is_err() {
                        return End::Gone;
                    }
                }
                Some(Ok(Message::Close(reason))) => return End::Close(reason),
                // Proof documents nothing a client sends, so anything else is ignored.
                Some(Ok(_)) => {}
                Some(Err(_)) => return End::Close(Some(CloseCode::Protocol.into())),
                None => return End::Gone,
            },
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
