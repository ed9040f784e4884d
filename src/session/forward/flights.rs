//! One call to the app per set of credentials at a time, whatever the number of workers and
//! checkouts waiting on it (single flight), and the cache its positive answers go to.
//!
//! The first checkout of uncached credentials starts a [`Flight`]; those that arrive while it is
//! in the air wait on the same answer through a `watch` channel, which wakes tasks on any runtime,
//! so checkouts on every worker share it. The flight belongs to the client thread that makes the
//! call, not to the checkout that started it: a browser that goes away does not cancel the call
//! the others wait on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::watch;

use super::cache::SessionCache;
use super::credentials::CredentialsKey;
use crate::session::{SessionError, SessionUser};

/// What a call to the app made of the credentials, as every checkout that waited on it gets it.
pub(super) type Outcome = Result<SessionUser, SessionError>;

/// Receives the outcome of a flight; `None` until it lands.
pub(super) type Landing = watch::Receiver<Option<Outcome>>;

/// The cache and the flights in the air, shared by every worker.
pub(super) struct Flights {
    state: Mutex<State>,
}

struct State {
    cache: SessionCache,
    in_the_air: HashMap<CredentialsKey, Landing>,
}

/// Where a checkout finds its answer.
pub(super) enum Found {
    Cached(SessionUser),
    /// A call for the same credentials is under way: wait for it.
    Joined(Landing),
    /// This checkout starts the call: hand the flight to the client, then wait like the others.
    Started(Flight, Landing),
}

impl Flights {
    pub fn new(cache: SessionCache) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                cache,
                in_the_air: HashMap::new(),
            }),
        })
    }

    /// The cached answer, the flight under way, or a new flight, decided under one lock so two
    /// checkouts never both start one.
    pub fn find(self: &Arc<Self>, key: CredentialsKey, now: Instant) -> Found {
        let mut state = self.lock();
        if let Some(user) = state.cache.get(&key, now) {
            return Found::Cached(user);
        }
        if let Some(landing) = state.in_the_air.get(&key) {
            return Found::Joined(landing.clone());
        }
        let (sender, landing) = watch::channel(None);
        state.in_the_air.insert(key, landing.clone());
        let flight = Flight {
            key,
            flights: self.clone(),
            sender: Some(sender),
        };
        Found::Started(flight, landing)
    }

    #[cfg(test)]
    fn in_the_air(&self) -> usize {
        self.lock().in_the_air.len()
    }

    // Nothing panics while the lock is held; were it poisoned, the map is still consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A call to the app under way for one set of credentials.
pub(super) struct Flight {
    key: CredentialsKey,
    flights: Arc<Flights>,
    sender: Option<watch::Sender<Option<Outcome>>>,
}

impl Flight {
    /// Caches a positive outcome and ends the flight, in one step so that a checkout arriving
    /// meanwhile finds one or the other; then wakes every checkout waiting on it.
    pub fn land(mut self, outcome: Outcome) {
        {
            let mut state = self.flights.lock();
            state.in_the_air.remove(&self.key);
            if let Ok(user) = &outcome {
                state.cache.insert(self.key, user.clone(), Instant::now());
            }
        }
        if let Some(sender) = self.sender.take() {
            sender.send_replace(Some(outcome));
        }
    }
}

/// A flight dropped before it landed (its call could not be sent, or the client stopped): it is
/// taken out of the air, and its waiters see the channel close.
impl Drop for Flight {
    fn drop(&mut self) {
        if self.sender.is_some() {
            self.flights.lock().in_the_air.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::session::UserEmail;

    fn user() -> SessionUser {
        SessionUser {
            user_id: "u".into(),
            email: UserEmail::parse("u@example.org").unwrap(),
        }
    }

    fn flights() -> Arc<Flights> {
        Flights::new(SessionCache::new(Duration::from_secs(30), 10))
    }

    #[test]
    fn checkouts_of_the_same_credentials_join_the_flight_and_share_its_outcome() {
        let flights = flights();
        let now = Instant::now();
        let Found::Started(flight, first) = flights.find([1; 32], now) else {
            panic!("the first checkout starts a flight");
        };
        let Found::Joined(second) = flights.find([1; 32], now) else {
            panic!("the second joins it");
        };
        assert!(matches!(flights.find([2; 32], now), Found::Started(..)));
        flight.land(Ok(user()));
        assert_eq!(*first.borrow(), Some(Ok(user())));
        assert_eq!(*second.borrow(), Some(Ok(user())));
        assert!(matches!(flights.find([1; 32], now), Found::Cached(_)));
    }

    #[test]
    fn refusals_are_shared_but_not_cached() {
        let flights = flights();
        let now = Instant::now();
        let Found::Started(flight, waiting) = flights.find([1; 32], now) else {
            panic!("a flight starts");
        };
        flight.land(Err(SessionError::Backend));
        assert_eq!(*waiting.borrow(), Some(Err(SessionError::Backend)));
        assert!(matches!(flights.find([1; 32], now), Found::Started(..)));
    }

    #[test]
    fn a_dropped_flight_leaves_the_air_and_closes_its_channel() {
        let flights = flights();
        let Found::Started(flight, waiting) = flights.find([1; 32], Instant::now()) else {
            panic!("a flight starts");
        };
        drop(flight);
        assert_eq!(flights.in_the_air(), 0);
        assert!(waiting.has_changed().is_err(), "the waiters are told");
    }
}
