//! The in-process store (`rate_limit.backend = "memory"`): bounded in entries and bytes, every
//! entry expiring. When full, the oldest entries go first, so a flood of keys costs memory up to
//! the bound and then only replays of the oldest answers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Entry;

/// At most this many keys are held at once.
pub const MAX_ENTRIES: usize = 100_000;
/// At most this many bytes of keys and answers are held at once.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// A rough count of what a slot costs besides its key and answer.
const SLOT_OVERHEAD: usize = 96;

#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<String, Slot>,
    /// Keys in the order their slots were written, with the write's generation: a slot written
    /// again (finished) is queued again, and its older place is skipped.
    order: VecDeque<(String, u64)>,
    bytes: usize,
    generation: u64,
}

#[derive(Debug)]
struct Slot {
    entry: Entry,
    expires: Instant,
    generation: u64,
    size: usize,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_bounds(MAX_ENTRIES, MAX_BYTES)
    }

    fn with_bounds(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_entries,
            max_bytes,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change below leaves the state whole before anything that could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `key` with `lock` (`None`), or gives back the live entry that holds it.
    pub(super) fn claim(&self, key: &str, lock: &Entry, lock_ttl: Duration) -> Option<Entry> {
        let now = Instant::now();
        let mut state = self.state();
        if let Some(slot) = state.slots.get(key)
            && slot.expires > now
        {
            return Some(slot.entry.clone());
        }
        self.write(&mut state, key, lock.clone(), now + lock_ttl, now);
        None
    }

    /// Replaces `lock` with `done` if `lock` still holds the key; false if it does not.
    pub(super) fn finish(&self, key: &str, lock: &Entry, done: Entry, keep_for: Duration) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        if !state.holds(key, lock, now) {
            return false;
        }
        self.write(&mut state, key, done, now + keep_for, now);
        true
    }

    /// Frees the key if `lock` still holds it.
    pub(super) fn release(&self, key: &str, lock: &Entry) {
        let now = Instant::now();
        let mut state = self.state();
        if state.holds(key, lock, now) {
            state.remove(key);
        }
    }

    fn write(&self, state: &mut State, key: &str, entry: Entry, expires: Instant, now: Instant) {
        state.remove(key);
        let size = key.len() + SLOT_OVERHEAD + entry_bytes(&entry);
        state.make_room(size, self.max_entries, self.max_bytes, now);
        state.generation += 1;
        let generation = state.generation;
        state.order.push_back((key.to_owned(), generation));
        state.bytes += size;
        state.slots.insert(
            key.to_owned(),
            Slot {
                entry,
                expires,
                generation,
                size,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().slots.len()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    fn holds(&self, key: &str, lock: &Entry, now: Instant) -> bool {
        self.slots
            .get(key)
            .is_some_and(|slot| slot.expires > now && slot.entry == *lock)
    }

    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.slots.remove(key) {
            self.bytes -= slot.size;
        }
    }

    /// Drops expired slots from the front of the queue, and the oldest live ones while a slot of
    /// `size` would not fit.
    fn make_room(&mut self, size: usize, max_entries: usize, max_bytes: usize, now: Instant) {
        // Places left behind by rewritten or released slots wait behind the oldest live one; they
        // are swept out before they can outnumber the slots.
        if self.order.len() > max_entries.max(1024).saturating_mul(2) {
            let slots = &self.slots;
            self.order.retain(|(key, generation)| {
                slots.get(key).is_some_and(|s| s.generation == *generation)
            });
        }
        while let Some((key, generation)) = self.order.front() {
            let full = self.slots.len() >= max_entries || self.bytes + size > max_bytes;
            match self.slots.get(key) {
                // Written again since: its newer place in the queue counts.
                Some(slot) if slot.generation != *generation => {}
                Some(slot) if slot.expires > now && !full => break,
                Some(_) => {
                    let key = key.clone();
                    self.remove(&key);
                }
                None => {}
            }
            self.order.pop_front();
        }
    }
}

fn entry_bytes(entry: &Entry) -> usize {
    match entry {
        Entry::InFlight { .. } => 0,
        Entry::Done { answer, .. } => {
            answer.body.len() + answer.content_type.as_ref().map_or(0, |v| v.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use bytes::Bytes;

    use super::*;
    use crate::idempotency::{Fingerprint, StoredAnswer};

    const LOCK_TTL: Duration = Duration::from_secs(30);
    const KEEP: Duration = Duration::from_secs(600);

    fn lock(token: u128) -> Entry {
        Entry::InFlight {
            fingerprint: Fingerprint::of(&[b"checkout"]),
            token,
        }
    }

    fn done(body: &'static str) -> Entry {
        Entry::Done {
            fingerprint: Fingerprint::of(&[b"checkout"]),
            answer: StoredAnswer {
                status: StatusCode::OK,
                content_type: None,
                body: Bytes::from_static(body.as_bytes()),
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_is_held_then_answered_then_forgotten() {
        let store = MemoryStore::new();
        assert_eq!(store.claim("k", &lock(1), LOCK_TTL), None);
        assert_eq!(store.claim("k", &lock(2), LOCK_TTL), Some(lock(1)));
        assert!(!store.finish("k", &lock(2), done("no"), KEEP));
        assert!(store.finish("k", &lock(1), done("yes"), KEEP));
        tokio::time::advance(KEEP - Duration::from_millis(1)).await;
        assert_eq!(store.claim("k", &lock(3), LOCK_TTL), Some(done("yes")));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(store.claim("k", &lock(3), LOCK_TTL), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_or_expired_lock_frees_the_key() {
        let store = MemoryStore::new();
        assert_eq!(store.claim("k", &lock(1), LOCK_TTL), None);
        store.release("k", &lock(2));
        assert_eq!(store.claim("k", &lock(2), LOCK_TTL), Some(lock(1)));
        store.release("k", &lock(1));
        assert_eq!(store.claim("k", &lock(2), LOCK_TTL), None);
        tokio::time::advance(LOCK_TTL).await;
        // The lock ran out: its late answer is not kept, and the key is free.
        assert!(!store.finish("k", &lock(2), done("late"), KEEP));
        assert_eq!(store.claim("k", &lock(3), LOCK_TTL), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_store_never_holds_more_than_its_bounds() {
        let store = MemoryStore::with_bounds(3, usize::MAX);
        for key in ["a", "b", "c", "d"] {
            assert_eq!(store.claim(key, &lock(1), LOCK_TTL), None);
        }
        assert_eq!(store.len(), 3);
        // The oldest went first.
        assert_eq!(store.claim("a", &lock(2), LOCK_TTL), None);
        assert_eq!(store.claim("d", &lock(2), LOCK_TTL), Some(lock(1)));

        let small = MemoryStore::with_bounds(usize::MAX, 2 * (SLOT_OVERHEAD + 1 + 5));
        for key in ["a", "b", "c"] {
            assert_eq!(small.claim(key, &lock(1), LOCK_TTL), None);
            assert!(small.finish(key, &lock(1), done("12345"), KEEP));
        }
        assert_eq!(small.len(), 2);
        assert_eq!(small.claim("a", &lock(2), LOCK_TTL), None);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_make_room_before_live_ones() {
        let store = MemoryStore::with_bounds(2, usize::MAX);
        assert_eq!(store.claim("old", &lock(1), Duration::from_secs(1)), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(store.claim("a", &lock(1), LOCK_TTL), None);
        assert_eq!(store.claim("b", &lock(1), LOCK_TTL), None);
        assert_eq!(store.len(), 2);
        assert_eq!(store.claim("a", &lock(2), LOCK_TTL), Some(lock(1)));
    }
}
