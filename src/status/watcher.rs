//! One upstream watcher per transaction per instance, shared by every stream of that transaction
//! (two tabs, one WebSocket to Proof).
//!
//! A watcher follows Proof's WebSocket while it is open and polls `GET /widget/transactions/{id}`
//! every `poll_interval_s` while it is not, reconnecting with capped exponential backoff. Whatever
//! woke it (a `tx.update` event, a poll, a webhook's hint), what it publishes is Proof's own
//! `GET` answer, so a browser only ever sees a status Proof confirmed. It publishes only news (a
//! later status), and ends with the terminal status or with its last stream.
//!
//! It runs on the worker whose stream started it, with that worker's Proof client; streams on
//! other workers follow it through a `watch` channel. The registry is shared by all workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::event::{Snapshot, is_news};
use crate::proof::{ProofClient, TransactionUpdates};
use crate::telemetry::Caller;

/// The first wait before reconnecting to a WebSocket that failed, doubled each time up to
/// [`WEBSOCKET_BACKOFF_CAP`].
const WEBSOCKET_BACKOFF_START: Duration = Duration::from_secs(1);
const WEBSOCKET_BACKOFF_CAP: Duration = Duration::from_secs(60);

/// A transaction's latest snapshot, as its streams see it.
pub type Updates = watch::Receiver<Arc<Snapshot>>;

/// Every transaction watched on this instance.
#[derive(Debug)]
pub struct Watchers {
    watching: Mutex<HashMap<Box<str>, Arc<Watch>>>,
    poll_interval: Duration,
    /// How long opening Proof's WebSocket may take.
    connect_timeout: Duration,
}

#[derive(Debug)]
struct Watch {
    latest: watch::Sender<Arc<Snapshot>>,
    /// A webhook said this transaction changed: ask Proof now.
    hint: Notify,
}

impl Watchers {
    pub fn new(poll_interval: Duration, connect_timeout: Duration) -> Self {
        Self {
            watching: Mutex::new(HashMap::new()),
            poll_interval,
            connect_timeout,
        }
    }

    fn watching(&self) -> MutexGuard<'_, HashMap<Box<str>, Arc<Watch>>> {
        // Every change is one insert or remove: whole whatever panicked.
        self.watching.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows `tx_id`, starting its watcher (on this worker, with `proof`) unless one runs;
    /// `current` is what the caller just read from Proof.
    pub fn subscribe(
        self: &Arc<Self>,
        tx_id: &str,
        current: Snapshot,
        proof: &ProofClient,
    ) -> Updates {
        let mut watching = self.watching();
        if let Some(watch) = watching.get(tx_id) {
            return watch.latest.subscribe();
        }
        let (latest, updates) = watch::channel(Arc::new(current));
        let watch = Arc::new(Watch {
            latest,
            hint: Notify::new(),
        });
        let tx_id: Box<str> = tx_id.into();
        watching.insert(tx_id.clone(), watch.clone());
        drop(watching);
        actix_web::rt::spawn(run(self.clone(), tx_id, watch, proof.clone()));
        updates
    }

    /// A webhook's hint that `tx_id` changed: its watcher, if streams are open, asks Proof.
    /// False when nothing watches it (the hint is then of no use to anyone).
    pub fn hint(&self, tx_id: &str) -> bool {
        match self.watching().get(tx_id) {
            Some(watch) => {
                watch.hint.notify_one();
                true
            }
            None => false,
        }
    }

    /// Transactions watched now.
    pub fn len(&self) -> usize {
        self.watching().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes `watch` out of the registry if it has no stream left, or its transaction ended.
    /// Decided under the registry's lock, which subscribing also holds, so a stream cannot
    /// subscribe to a watcher that is going away.
    fn retire(&self, tx_id: &str, watch: &Arc<Watch>) -> bool {
        let mut watching = self.watching();
        let done = watch.latest.receiver_count() == 0 || watch.latest.borrow().is_terminal();
        if done && watching.get(tx_id).is_some_and(|w| Arc::ptr_eq(w, watch)) {
            watching.remove(tx_id);
        }
        done
    }
}

/// What woke a watcher.
enum Wake {
    NoStreams,
    Announced(String),
    SocketEnded,
    Poll,
    ReconnectDue,
    Hint,
}

async fn run(watchers: Arc<Watchers>, tx_id: Box<str>, watch: Arc<Watch>, proof: ProofClient) {
    let mut socket: Option<TransactionUpdates> = None;
    let mut backoff = WEBSOCKET_BACKOFF_START;
    let mut reconnect_at = Instant::now();
    let mut poll_at = Instant::now() + watchers.poll_interval;
    loop {
        if socket.is_none() && Instant::now() >= reconnect_at {
            match proof
                .transaction_updates(&tx_id, watchers.connect_timeout)
                .await
            {
                Ok(opened) => {
                    socket = Some(opened);
                    backoff = WEBSOCKET_BACKOFF_START;
                    // A change may have come before the socket opened.
                    refresh(&proof, &tx_id, &watch).await;
                }
                Err(error) => {
                    tracing::debug!(%error, retry_in_s = backoff.as_secs(), "status: polling instead");
                    reconnect_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(WEBSOCKET_BACKOFF_CAP);
                }
            }
        }
        let polling = socket.is_none();
        let wake = tokio::select! {
            () = watch.latest.closed() => Wake::NoStreams,
            status = next_status(&mut socket) => match status {
                Some(status) => Wake::Announced(status),
                None => Wake::SocketEnded,
            },
            () = tokio::time::sleep_until(poll_at), if polling => Wake::Poll,
            () = tokio::time::sleep_until(reconnect_at), if polling => Wake::ReconnectDue,
            () = watch.hint.notified() => Wake::Hint,
        };
        match wake {
            Wake::NoStreams => {}
            Wake::Announced(status) => {
                if is_news(Some(&watch.latest.borrow().status), &status) {
                    refresh(&proof, &tx_id, &watch).await;
                }
            }
            Wake::SocketEnded => {
                socket = None;
                reconnect_at = Instant::now() + backoff;
                poll_at = Instant::now();
            }
            Wake::Poll => {
                poll_at = Instant::now() + watchers.poll_interval;
                refresh(&proof, &tx_id, &watch).await;
            }
            Wake::ReconnectDue => {}
            Wake::Hint => refresh(&proof, &tx_id, &watch).await,
        }
        if watchers.retire(&tx_id, &watch) {
            return;
        }
    }
}

/// The socket's next announced status; never, without a socket.
async fn next_status(socket: &mut Option<TransactionUpdates>) -> Option<String> {
    match socket {
        Some(socket) => socket.next_status().await,
        None => std::future::pending().await,
    }
}

/// Asks Proof where the transaction stands and publishes it if it is news.
async fn refresh(proof: &ProofClient, tx_id: &str, watch: &Watch) {
    let answer = match proof.transaction(tx_id, Caller::Background).await {
        Ok(answer) if answer.status.is_success() => answer,
        Ok(answer) => {
            tracing::warn!(
                status = answer.status.as_u16(),
                "status: Proof did not return the transaction"
            );
            return;
        }
        // Logged by the client with its attempts; the next poll or event tries again.
        Err(_) => return,
    };
    let Some(snapshot) = Snapshot::from_transaction(&answer.body) else {
        tracing::warn!("status: Proof's transaction has no usable status");
        return;
    };
    watch.latest.send_if_modified(|latest| {
        let news = is_news(Some(&latest.status), &snapshot.status);
        if news {
            *latest = Arc::new(snapshot);
        }
        news
    });
}
