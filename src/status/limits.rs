//! How many event streams may be open: per user (`max_streams_per_user`) and per instance
//! (`max_streams`). A stream holds a [`StreamPermit`] for its whole life; dropping it (the stream
//! ended, the browser went away) frees its place.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug)]
pub struct StreamLimits {
    max_per_user: usize,
    max_total: usize,
    total: AtomicUsize,
    /// Open streams per user, keyed by a hash of the user id (never the id itself).
    per_user: Mutex<HashMap<u64, usize>>,
    hasher: RandomState,
}

/// One open stream's place.
#[derive(Debug)]
pub struct StreamPermit {
    limits: Arc<StreamLimits>,
    user: u64,
}

impl StreamLimits {
    pub fn new(max_per_user: usize, max_total: usize) -> Self {
        Self {
            max_per_user,
            max_total,
            total: AtomicUsize::new(0),
            per_user: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        }
    }

    /// A place for one more stream of `user_id`, or `None` when the user or the instance is at
    /// its limit.
    pub fn try_open(self: &Arc<Self>, user_id: &str) -> Option<StreamPermit> {
        let user = self.hasher.hash_one(user_id);
        // The count is written under the lock only after both limits agreed.
        let mut per_user = self.per_user.lock().unwrap_or_else(PoisonError::into_inner);
        let open = per_user.get(&user).copied().unwrap_or(0);
        if open >= self.max_per_user || self.total.load(Ordering::Relaxed) >= self.max_total {
            return None;
        }
        per_user.insert(user, open + 1);
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(StreamPermit {
            limits: self.clone(),
            user,
        })
    }

    /// Streams open on this instance.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut per_user = self
            .limits
            .per_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = per_user.get_mut(&self.user) {
            *open -= 1;
            if *open == 0 {
                per_user.remove(&self.user);
            }
        }
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_the_instance_are_limited_and_places_come_back() {
        let limits = Arc::new(StreamLimits::new(2, 3));
        let a1 = limits.try_open("alice").unwrap();
        let _a2 = limits.try_open("alice").unwrap();
        assert!(limits.try_open("alice").is_none(), "per user");
        let _b1 = limits.try_open("bob").unwrap();
        assert!(limits.try_open("carol").is_none(), "per instance");
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _c1 = limits.try_open("carol").unwrap();
        assert!(
            limits.try_open("alice").is_none(),
            "the instance is full again"
        );
        assert_eq!(limits.open(), 3);
    }
}
