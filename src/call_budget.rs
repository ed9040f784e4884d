//! How many calls one outbound client may have in flight at once, and what a call does at that
//! bound: it waits for a place, within its own deadline, and is refused when the deadline comes
//! first, before anything is sent. Every outbound client whose load a browser drives has one:
//! Proof's (`proof.max_connections`, checkouts and status reads) and the partner's app
//! (`session.forward.max_connections`).
//!
//! The bound is ours rather than the HTTP client's: awc's connector has a limit of its own (100 by
//! default) with a queue that nothing shows, that no caller's deadline bounds, and that counts
//! connections rather than calls (over HTTP/2 many calls share one). The clients set awc's limit
//! off and take a place here instead, which is counted in the metrics: calls in flight and
//! waiting (gauges), the time waited (a histogram, every call), and refusals (a counter).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The places of one client (for Proof's, of one worker's client).
#[derive(Debug)]
pub struct CallBudget {
    places: Semaphore,
    gauges: Option<BudgetGauges>,
}

/// One client's series in the metrics; clones share them.
#[derive(Debug, Clone)]
pub struct BudgetGauges {
    pub in_flight: Gauge,
    pub waiting: Gauge,
    pub wait: Histogram,
    pub refused: Counter,
}

/// No place came free before the caller's deadline: nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every place for a call was taken until the deadline")]
pub struct Busy;

/// A call's place, given back when it is dropped.
#[derive(Debug)]
pub struct CallPlace<'a> {
    _permit: SemaphorePermit<'a>,
    in_flight: Option<&'a Gauge>,
}

impl CallBudget {
    /// `places` calls at once (at least one); `gauges`, when metrics are served.
    pub fn new(places: usize, gauges: Option<BudgetGauges>) -> Self {
        Self {
            places: Semaphore::new(places.clamp(1, Semaphore::MAX_PERMITS)),
            gauges,
        }
    }

    /// A place for one call, waiting for one until `deadline` at the latest. A place that is free
    /// is taken without waiting; waiters are served in order of arrival.
    pub async fn enter(&self, deadline: Instant) -> Result<CallPlace<'_>, Busy> {
        let permit = match self.places.try_acquire() {
            Ok(permit) => {
                self.observe_wait(Duration::ZERO);
                permit
            }
            Err(_) => self.wait_for_place(deadline).await?,
        };
        let in_flight = self.gauges.as_ref().map(|gauges| {
            gauges.in_flight.inc();
            &gauges.in_flight
        });
        Ok(CallPlace {
            _permit: permit,
            in_flight,
        })
    }

    async fn wait_for_place(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, Busy> {
        let started = Instant::now();
        if let Some(gauges) = &self.gauges {
            gauges.waiting.inc();
        }
        // The semaphore is never closed, so the only failure is the deadline.
        let acquired = tokio::time::timeout_at(deadline, self.places.acquire()).await;
        if let Some(gauges) = &self.gauges {
            gauges.waiting.dec();
        }
        self.observe_wait(started.elapsed());
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => {
                if let Some(gauges) = &self.gauges {
                    gauges.refused.inc();
                }
                Err(Busy)
            }
        }
    }

    fn observe_wait(&self, waited: Duration) {
        if let Some(gauges) = &self.gauges {
            gauges.wait.observe(waited.as_secs_f64());
        }
    }

    /// Places free now.
    pub fn available(&self) -> usize {
        self.places.available_permits()
    }
}

impl Drop for CallPlace<'_> {
    fn drop(&mut self) {
        if let Some(in_flight) = self.in_flight {
            in_flight.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> BudgetGauges {
        BudgetGauges {
            in_flight: Gauge::default(),
            waiting: Gauge::default(),
            wait: Histogram::new([0.001, 0.01, 0.1, 1.0]),
            refused: Counter::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_for_a_place_until_its_deadline_then_is_refused() {
        let gauges = gauges();
        let budget = CallBudget::new(1, Some(gauges.clone()));
        let first = budget.enter(Instant::now()).await.expect("a free place");
        assert_eq!(gauges.in_flight.get(), 1);

        let deadline = Instant::now() + Duration::from_secs(2);
        let refused = budget.enter(deadline).await;
        assert_eq!(refused.unwrap_err(), Busy);
        assert_eq!(Instant::now(), deadline, "it waited until its deadline");
        assert_eq!(gauges.refused.get(), 1);
        assert_eq!(gauges.waiting.get(), 0);
        assert_eq!(gauges.in_flight.get(), 1);

        drop(first);
        assert_eq!(gauges.in_flight.get(), 0);
        assert_eq!(budget.available(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_place_given_back_goes_to_the_first_waiter() {
        let gauges = gauges();
        let budget = std::sync::Arc::new(CallBudget::new(1, Some(gauges.clone())));
        let held = budget.enter(Instant::now()).await.unwrap();
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                budget.enter(deadline).await.map(|_| Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(gauges.waiting.get(), 1);
        let released_at = Instant::now();
        drop(held);
        let entered_at = waiter.await.unwrap().expect("the waiter got the place");
        assert_eq!(entered_at, released_at);
        assert_eq!(gauges.waiting.get(), 0);
        assert_eq!(gauges.refused.get(), 0);
    }

    #[tokio::test]
    async fn no_place_is_ever_zero_places() {
        let budget = CallBudget::new(0, None);
        assert!(budget.enter(Instant::now()).await.is_ok());
    }
}
