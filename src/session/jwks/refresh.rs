//! The key set every worker reads, and the one loop that refreshes it.
//!
//! Workers only read the current set, under a read lock held just long enough to clone its
//! `Arc`. Only the refresh loop fetches, one fetch at a time for the whole process, so
//! single flight holds by construction; the state below only decides *whether* a worker may ask
//! for a fetch and lets it wait for the answer:
//!
//! - a fetch already in flight (scheduled or asked for) is joined, never duplicated: every waiter
//!   gets its outcome;
//! - otherwise a token with an unknown `kid` may ask for one fetch per `min_refresh_interval`,
//!   counted across every worker: a burst of unknown kids costs the provider one request, and a
//!   stream of forged ones one request per interval;
//! - a failed fetch keeps the last good set, and the loop tries again soon (see `freshness`).
//!
//! The loop is written against [`KeySource`] and tokio's clock, so its timing is tested with a
//! paused clock and a scripted source; the real source is `fetch`'s HTTP client.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::freshness::retry_delay;
use super::keys::KeySet;
use crate::session::SessionError;

/// A fetched key set and how long to keep it.
pub(super) struct Fetched {
    pub keys: KeySet,
    pub fresh_for: Duration,
}

/// Why a fetch failed, in words that name no secret (see `fetch`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct FetchError(pub String);

/// Where key sets come from.
pub(super) trait KeySource {
    fn fetch(&mut self) -> impl Future<Output = Result<Fetched, FetchError>>;
}

/// The key set and its refresh state, shared by every worker and the refresh loop.
pub(super) struct KeyCache {
    keys: RwLock<Option<Arc<KeySet>>>,
    state: Mutex<RefreshState>,
    /// Whether the last fetch succeeded. Every fetch's end is a change, so waiters learn it.
    fetched: watch::Sender<bool>,
    /// Wakes the refresh loop for a fetch a worker asked for.
    wake: Notify,
    min_refresh_interval: Duration,
    /// The longest a worker waits for a fetch it joined: the fetch's own bounds and a margin.
    wait_limit: Duration,
}

#[derive(Debug, Default)]
struct RefreshState {
    in_flight: bool,
    /// When a worker last asked for a fetch (not counting those it joined).
    last_asked: Option<Instant>,
}

/// What a worker that met an unknown `kid` does.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    /// Wait for the fetch in flight.
    Join,
    /// Ask for a fetch and wait for it.
    Start,
    /// A fetch was asked for less than `min_refresh_interval` ago: make do with the set as it is.
    Refuse,
}

impl RefreshState {
    fn ask(&mut self, now: Instant, min_interval: Duration) -> Ask {
        if self.in_flight {
            return Ask::Join;
        }
        if self
            .last_asked
            .is_some_and(|asked| now.duration_since(asked) < min_interval)
        {
            return Ask::Refuse;
        }
        self.in_flight = true;
        self.last_asked = Some(now);
        Ask::Start
    }
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("keys", &self.current())
            .field("min_refresh_interval", &self.min_refresh_interval)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    pub(super) fn new(min_refresh_interval: Duration, wait_limit: Duration) -> Self {
        Self {
            keys: RwLock::new(None),
            state: Mutex::new(RefreshState::default()),
            fetched: watch::Sender::new(false),
            wake: Notify::new(),
            min_refresh_interval,
            wait_limit,
        }
    }

    /// The current set; `None` until one has been fetched.
    pub(super) fn current(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// For a token whose `kid` is not in the current set: the set after a refetch, when one may
    /// run (or is running), otherwise the set as it is. `Backend` when the fetch that would have
    /// told failed: the provider, not the token, is then at fault.
    pub(super) async fn after_unknown_kid(&self) -> Result<Arc<KeySet>, SessionError> {
        let mut fetched = {
            let mut state = self.state();
            let ask = state.ask(Instant::now(), self.min_refresh_interval);
            if ask == Ask::Refuse {
                return match (*self.fetched.borrow(), self.current()) {
                    (true, Some(keys)) => Ok(keys),
                    _ => Err(SessionError::Backend),
                };
            }
            if ask == Ask::Start {
                self.wake.notify_one();
            }
            // Subscribed under the lock: the fetch in flight ends (and says so) only after taking
            // the same lock, so its end cannot be missed.
            self.fetched.subscribe()
        };
        let ended = tokio::time::timeout(self.wait_limit, fetched.changed()).await;
        let succeeded = matches!(ended, Ok(Ok(()))) && *fetched.borrow_and_update();
        match self.current() {
            Some(keys) if succeeded => Ok(keys),
            _ => Err(SessionError::Backend),
        }
    }

    fn state(&self) -> MutexGuard<'_, RefreshState> {
        // Every field is written in one assignment: the state stays sound whatever panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// For the refresh loop: returns when a fetch is due (`next`) or a worker asked for one, and
    /// marks it in flight.
    async fn fetch_wanted(&self, next: Instant) {
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(next) => {}
            }
            let mut state = self.state();
            if state.in_flight {
                // A worker asked for this fetch, and marked it.
                return;
            }
            if Instant::now() >= next {
                state.in_flight = true;
                return;
            }
            // A wake-up left over from a request that a scheduled fetch, ending meanwhile, has
            // answered already.
        }
    }

    /// For the refresh loop: the fetch in flight ended; waiters learn how.
    fn fetch_ended(&self, keys: Option<KeySet>) {
        let succeeded = keys.is_some();
        if let Some(keys) = keys {
            *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keys));
        }
        let mut state = self.state();
        state.in_flight = false;
        // Notifies every waiter, whether or not the outcome differs from the last one.
        self.fetched.send_replace(succeeded);
    }
}

/// Keeps the key set fresh for as long as the process runs: fetches at once, then when the set's
/// freshness runs out, when a worker asks, and after a failure with a growing delay. `on_ready`
/// is told once, when the first set is in.
pub(super) async fn run(
    cache: &KeyCache,
    source: &mut impl KeySource,
    on_ready: &(dyn Fn(bool) + Sync),
) {
    let mut next = Instant::now();
    let mut failures: u32 = 0;
    loop {
        cache.fetch_wanted(next).await;
        match source.fetch().await {
            Ok(Fetched { keys, fresh_for }) => {
                let before = cache.current();
                let first = before.is_none();
                log_loaded(before.as_deref(), &keys, fresh_for, failures);
                failures = 0;
                next = Instant::now() + fresh_for;
                cache.fetch_ended(Some(keys));
                if first {
                    on_ready(true);
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = retry_delay(failures);
                next = Instant::now() + delay;
                let loaded = cache.current().is_some();
                cache.fetch_ended(None);
                tracing::warn!(
                    %error,
                    failures,
                    retry_in_s = delay.as_secs(),
                    keeping_last_good_set = loaded,
                    "session.jwks: fetching the identity provider's key set failed"
                );
            }
        }
    }
}

fn log_loaded(before: Option<&KeySet>, after: &KeySet, fresh_for: Duration, failures: u32) {
    let kids = after.kids().join(",");
    let fresh_for_s = fresh_for.as_secs();
    match before {
        None => tracing::info!(kids, fresh_for_s, "session.jwks: key set loaded: ready"),
        Some(before) if before.kids() != after.kids() => {
            tracing::info!(kids, fresh_for_s, "session.jwks: key set changed");
        }
        Some(_) if failures > 0 => {
            tracing::info!(
                kids,
                fresh_for_s,
                "session.jwks: key set fetched again after failures"
            );
        }
        Some(_) => tracing::debug!(kids, fresh_for_s, "session.jwks: key set refreshed"),
    }
}

#[cfg(test)]
mod tests;
