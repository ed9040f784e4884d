//! One upstream watcher per transaction per instance, shared by every stream of that transaction
//! (two tabs, one WebSocket to Proof).
//!
//! A watcher follows Proof's WebSocket while it is open and polls `GET /widget/transactions/{id}`
//! every `poll_interval_s` while it is not. Whatever woke it (a `tx.update` event, a poll, a
//! webhook's hint), what it publishes is Proof's own `GET` answer, so a browser only ever sees a
//! status Proof confirmed. It publishes only news (a later status), and ends with the terminal
//! status or with its last stream.
//!
//! A WebSocket is not trusted to stay true ([`schedule`] has the timings):
//! - one that has said nothing for a while is pinged, and closed when no answer comes; one that
//!   sends what is not an event is closed at once. The watcher then polls;
//! - it is reopened with a backoff (1 s doubling to 60 s) that starts over only after a socket was
//!   heard from and stayed up, so one that accepts and closes at once is not reopened every second;
//! - while it is open, the transaction is still read every `confirm_interval_s`, so a silent
//!   socket cannot hide a final status for longer than that;
//! - hints (webhooks, events) are folded together: one read in flight and at most one a second
//!   per transaction, whatever arrives.
//!
//! WebSockets hold a place in `status.max_watchers` ([`WebSocketBudget`]); without one the watcher
//! polls. Its reads take no place in `proof.max_connections` (each watcher makes one at a time),
//! so watchers never hold up a checkout.
//!
//! It runs on the worker whose stream started it, with that worker's Proof client; streams on
//! other workers follow it through a `watch` channel. The registry is shared by all workers.

mod schedule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use self::schedule::{Reads, Reconnect, WEBSOCKET_HEALTHY_AFTER};
use super::event::{Snapshot, is_news};
use super::websocket_budget::{WebSocketBudget, WebSocketPlace};
use crate::proof::{Heard, ProofClient, SocketEnded, TransactionUpdates};
use crate::telemetry::Caller;

/// A WebSocket silent this long (at most; the confirm interval when shorter) is pinged.
const PING_AFTER_MAX: Duration = Duration::from_secs(30);
/// A ping unanswered this long (at most; the ping's own wait when shorter) closes the socket.
const PONG_WAIT_MAX: Duration = Duration::from_secs(10);

/// A transaction's latest snapshot, as its streams see it.
pub type Updates = watch::Receiver<Arc<Snapshot>>;

/// The watchers' timings, from `[status]`.
#[derive(Debug, Clone, Copy)]
pub struct WatchTimings {
    pub poll_interval: Duration,
    pub confirm_interval: Duration,
    /// How long opening Proof's WebSocket may take.
    pub connect_timeout: Duration,
}

impl WatchTimings {
    /// How long a WebSocket may stay silent before it is pinged.
    fn ping_after(&self) -> Duration {
        self.confirm_interval.min(PING_AFTER_MAX)
    }

    /// How long a ping may stay unanswered.
    fn pong_wait(&self) -> Duration {
        self.ping_after().min(PONG_WAIT_MAX)
    }
}

/// Every transaction watched on this instance.
#[derive(Debug)]
pub struct Watchers {
    watching: Mutex<HashMap<Box<str>, Arc<Watch>>>,
    timings: WatchTimings,
    websockets: Arc<WebSocketBudget>,
}

#[derive(Debug)]
struct Watch {
    latest: watch::Sender<Arc<Snapshot>>,
    /// A webhook said this transaction changed: ask Proof soon.
    hint: Notify,
}

impl Watchers {
    pub fn new(timings: WatchTimings, websockets: WebSocketBudget) -> Self {
        Self {
            watching: Mutex::new(HashMap::new()),
            timings,
            websockets: Arc::new(websockets),
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
        actix_web::rt::spawn(run(self.clone(), tx_id, watch, proof.for_watcher()));
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

    /// WebSockets to Proof open now.
    pub fn websockets_open(&self) -> usize {
        self.websockets.open()
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

/// An open WebSocket and what the watcher knows of its health.
struct OpenSocket {
    updates: TransactionUpdates,
    opened_at: Instant,
    /// When it last said anything (an event, a ping, a pong); its opening counts.
    last_heard: Instant,
    /// Whether it ever said anything.
    heard: bool,
    /// When the unanswered ping was sent, if one was.
    ping_sent: Option<Instant>,
    /// Its place in `status.max_watchers`, given back when it closes.
    _place: WebSocketPlace,
}

impl OpenSocket {
    /// When it is next pinged, or given up for not answering the ping.
    fn check_at(&self, timings: &WatchTimings) -> Instant {
        match self.ping_sent {
            Some(sent) => sent + timings.pong_wait(),
            None => self.last_heard + timings.ping_after(),
        }
    }

    fn was_healthy(&self, now: Instant) -> bool {
        self.heard && now.duration_since(self.opened_at) >= WEBSOCKET_HEALTHY_AFTER
    }
}

/// What woke a watcher.
enum Wake {
    NoStreams,
    Heard(Result<Heard, SocketEnded>),
    ReadDue,
    ReconnectDue,
    CheckSocket,
    Hint,
}

async fn run(watchers: Arc<Watchers>, tx_id: Box<str>, watch: Arc<Watch>, proof: ProofClient) {
    let timings = watchers.timings;
    let mut socket: Option<OpenSocket> = None;
    let mut reconnect = Reconnect::now(Instant::now());
    let mut reads = Reads::starting(Instant::now() + timings.poll_interval);
    loop {
        if socket.is_none() && Instant::now() >= reconnect.at {
            socket = open_socket(&watchers, &proof, &tx_id, &mut reconnect).await;
            if socket.is_some() {
                // A change may have come before the socket opened.
                reads.soon(Instant::now());
            }
        }
        let check_at = socket.as_ref().map(|socket| socket.check_at(&timings));
        let wake = tokio::select! {
            () = watch.latest.closed() => Wake::NoStreams,
            heard = next_heard(&mut socket) => Wake::Heard(heard),
            () = tokio::time::sleep_until(reads.next_at) => Wake::ReadDue,
            () = tokio::time::sleep_until(reconnect.at), if socket.is_none() => Wake::ReconnectDue,
            () = sleep_until_some(check_at) => Wake::CheckSocket,
            () = watch.hint.notified() => Wake::Hint,
        };
        let now = Instant::now();
        match wake {
            Wake::NoStreams | Wake::ReconnectDue => {}
            Wake::Heard(Ok(heard)) => {
                if let Some(socket) = socket.as_mut() {
                    socket.last_heard = now;
                    socket.heard = true;
                    socket.ping_sent = None;
                }
                if let Heard::Status(status) = heard
                    && is_news(Some(&watch.latest.borrow().status), &status)
                {
                    reads.soon(now);
                }
            }
            Wake::Heard(Err(ended)) => {
                close_socket(&mut socket, &mut reconnect, now, &ended);
                reads.soon(now);
            }
            Wake::CheckSocket => {
                if let Err(ended) = check_socket(&mut socket, now).await {
                    close_socket(&mut socket, &mut reconnect, now, &ended);
                    reads.soon(now);
                }
            }
            Wake::ReadDue => {
                Box::pin(refresh(&proof, &tx_id, &watch)).await;
                let cadence = match socket {
                    Some(_) => timings.confirm_interval,
                    None => timings.poll_interval,
                };
                reads.done(Instant::now(), cadence);
            }
            Wake::Hint => reads.soon(now),
        }
        if watchers.retire(&tx_id, &watch) {
            return;
        }
    }
}

/// Opens the WebSocket if a place is free; `None` (and the next try scheduled) otherwise.
async fn open_socket(
    watchers: &Arc<Watchers>,
    proof: &ProofClient,
    tx_id: &str,
    reconnect: &mut Reconnect,
) -> Option<OpenSocket> {
    let timings = &watchers.timings;
    let Some(place) = watchers.websockets.try_open() else {
        tracing::debug!("status: every WebSocket place is taken (status.max_watchers): polling");
        reconnect.no_place(Instant::now(), timings.poll_interval);
        return None;
    };
    // Boxed: the opening's state is large and lives only while it runs, not for the watcher's
    // whole life.
    let opened = Box::pin(proof.transaction_updates(tx_id, timings.connect_timeout)).await;
    let now = Instant::now();
    match opened {
        Ok(updates) => Some(OpenSocket {
            updates,
            opened_at: now,
            last_heard: now,
            heard: false,
            ping_sent: None,
            _place: place,
        }),
        Err(error) => {
            reconnect.failed(now);
            tracing::debug!(
                %error,
                retry_in_ms = reconnect.at.duration_since(now).as_millis() as u64,
                "status: polling instead"
            );
            None
        }
    }
}

/// The silent socket's ping, sent now; or the end of one that left its ping unanswered.
async fn check_socket(socket: &mut Option<OpenSocket>, now: Instant) -> Result<(), SocketEnded> {
    let Some(open) = socket.as_mut() else {
        return Ok(());
    };
    if open.ping_sent.is_some() {
        return Err(SocketEnded::Unanswered);
    }
    open.ping_sent = Some(now);
    open.updates.ping().await
}

/// Drops the socket, giving its place back, and schedules the next try.
fn close_socket(
    socket: &mut Option<OpenSocket>,
    reconnect: &mut Reconnect,
    now: Instant,
    why: &SocketEnded,
) {
    let Some(closed) = socket.take() else {
        return;
    };
    reconnect.ended(now, closed.was_healthy(now));
    let retry_in_ms = reconnect.at.duration_since(now).as_millis() as u64;
    match why {
        SocketEnded::Closed | SocketEnded::Broken(_) => {
            tracing::debug!(reason = %why, retry_in_ms, "status: WebSocket ended: polling");
        }
        SocketEnded::NotAnEvent | SocketEnded::Unanswered => {
            tracing::warn!(reason = %why, retry_in_ms, "status: WebSocket closed: polling");
        }
    }
}

/// The socket's next word; never, without a socket.
async fn next_heard(socket: &mut Option<OpenSocket>) -> Result<Heard, SocketEnded> {
    match socket {
        Some(socket) => socket.updates.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
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
