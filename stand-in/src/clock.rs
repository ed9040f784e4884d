//! The stand-in's "now" for transaction and KYC progress: the real clock, or one a test moves on by
//! hand so that statuses can be checked without sleeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shared by every clone: a test keeps one and advances the stand-in's time with it.
#[derive(Clone, Debug, Default)]
pub struct StandInClock {
    manual: Option<Arc<Mutex<Instant>>>,
}

impl StandInClock {
    /// The real monotonic clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that starts now and moves only when [`StandInClock::advance`] is called.
    pub fn manual() -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(Instant::now()))),
        }
    }

    /// Moves a manual clock on; the real clock cannot be moved, so this does nothing to it.
    pub fn advance(&self, by: Duration) {
        if let Some(manual) = &self.manual {
            let mut now = manual
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *now += by;
        }
    }

    pub(crate) fn now(&self) -> Instant {
        match &self.manual {
            Some(manual) => *manual
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            None => Instant::now(),
        }
    }
}
