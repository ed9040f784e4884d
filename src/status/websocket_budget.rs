//! How many WebSockets to Proof the watchers hold open at once (`status.max_watchers`), for the
//! whole instance: one per watched transaction, however many browsers watch it. A watcher that
//! finds every place taken polls instead, as when Proof refuses the WebSocket, and asks again on
//! its next poll. A WebSocket holds its place for as long as it is open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Debug)]
pub struct WebSocketBudget {
    max: usize,
    open: AtomicUsize,
    /// WebSockets open, and watchers sent to polling at the bound, when metrics are served.
    gauges: Option<(Gauge, Counter)>,
}

/// One open WebSocket's place.
#[derive(Debug)]
pub struct WebSocketPlace {
    budget: Arc<WebSocketBudget>,
}

impl WebSocketBudget {
    /// `max` zero: watchers never open a WebSocket, they only poll.
    pub fn new(max: usize, gauges: Option<(Gauge, Counter)>) -> Self {
        Self {
            max,
            open: AtomicUsize::new(0),
            gauges,
        }
    }

    /// A place for one more WebSocket, or `None` when `max` are open.
    pub fn try_open(self: &Arc<Self>) -> Option<WebSocketPlace> {
        if self.max == 0 {
            return None;
        }
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            });
        match (&self.gauges, taken.is_ok()) {
            (Some((open, _)), true) => {
                open.inc();
            }
            (Some((_, refused)), false) => {
                refused.inc();
            }
            (None, _) => {}
        }
        taken.ok().map(|_| WebSocketPlace {
            budget: self.clone(),
        })
    }

    /// WebSockets open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for WebSocketPlace {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::AcqRel);
        if let Some((open, _)) = &self.budget.gauges {
            open.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_counted_and_come_back() {
        let (open, refused) = (Gauge::default(), Counter::default());
        let budget = Arc::new(WebSocketBudget::new(
            2,
            Some((open.clone(), refused.clone())),
        ));
        let first = budget.try_open().unwrap();
        let _second = budget.try_open().unwrap();
        assert!(budget.try_open().is_none());
        assert_eq!((budget.open(), open.get(), refused.get()), (2, 2, 1));
        drop(first);
        assert_eq!((budget.open(), open.get()), (1, 1));
        assert!(budget.try_open().is_some());
    }

    #[test]
    fn zero_places_means_polling_only_and_counts_no_refusal() {
        let refused = Counter::default();
        let budget = Arc::new(WebSocketBudget::new(
            0,
            Some((Gauge::default(), refused.clone())),
        ));
        assert!(budget.try_open().is_none());
        assert_eq!(refused.get(), 0);
    }
}
