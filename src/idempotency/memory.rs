//! The in-process store (`rate_limit.backend = "memory"`): bounded in bytes
//! (`checkout.idempotency_max_bytes`), every entry expiring. When full, the oldest entries go
//! first, so a flood of keys costs memory up to the bound and then only replays of the oldest
//! answers.
//!
//! The bound is what the store takes from the allocator, not what its answers hold: each key and
//! answer is counted as the heap block it occupies, and the map and queue as the tables they
//! have allocated, at the size their growth can reach before it happens. An answer is copied into
//! a block of its own size when kept, so it never pins a larger buffer (the connection's read
//! buffer) it was cut from.

use std::collections::{HashMap, VecDeque};
use std::mem::size_of;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::header::HeaderValue;
use bytes::Bytes;
use tokio::time::Instant;

use super::{Entry, StoredAnswer};

/// The default bound: `checkout.idempotency_max_bytes`.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The content type almost every answer has: kept as a static value rather than a copy.
const JSON: &str = "application/json";

#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    /// The key is shared with the key's places in `order`. The slot is boxed: a table grows to
    /// several times its entries under churn (see [`table_bytes`]), and that multiplies what a
    /// bucket holds, so buckets hold a pointer.
    slots: HashMap<Arc<str>, Box<Slot>>,
    /// Keys in the order their slots were written, with the write's generation: a slot written
    /// again (finished) is queued again, and its older place is skipped.
    order: VecDeque<(Arc<str>, u64)>,
    /// The heap blocks the slots hold: keys, slots, answers.
    slot_bytes: usize,
    generation: u64,
}

#[derive(Debug)]
struct Slot {
    entry: Entry,
    expires: Instant,
    generation: u64,
    /// The heap blocks this slot holds (its key, itself, its answer), as counted in `slot_bytes`.
    size: usize,
}

impl MemoryStore {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_bytes,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change below leaves the state whole before anything that could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Entries held now, and the bytes they take as counted against the bound.
    pub fn usage(&self) -> (usize, usize) {
        let state = self.state();
        (state.slots.len(), state.bytes())
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
        // Copied before the lock is taken: the copy is the only work here that grows with the
        // answer.
        let done = compact(done);
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
        // The key's block is reused when the key is written again (a lock finished).
        let key: Arc<str> = match state.slots.get_key_value(key) {
            Some((held, _)) => held.clone(),
            None => Arc::from(key),
        };
        state.remove(&key);
        let size = heap_block(size_of::<usize>() * 2 + key.len())
            + heap_block(size_of::<Slot>())
            + entry_bytes(&entry);
        state.make_room(size, self.max_bytes, now);
        state.generation += 1;
        let generation = state.generation;
        state.order.push_back((key.clone(), generation));
        state.slot_bytes += size;
        state.slots.insert(
            key,
            Box::new(Slot {
                entry,
                expires,
                generation,
                size,
            }),
        );
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
            self.slot_bytes -= slot.size;
        }
    }

    /// What the store takes now: its slots' blocks and its two tables.
    fn bytes(&self) -> usize {
        self.slot_bytes
            + table_bytes(self.slots.capacity(), self.slots.len())
            + queue_bytes(self.order.capacity())
    }

    /// What the store would take with one more slot of `size`: the map and the queue at the size
    /// their next growth would give them, should that slot set it off.
    fn bytes_with(&self, size: usize) -> usize {
        let queue_capacity = if self.order.len() < self.order.capacity() {
            self.order.capacity()
        } else {
            (self.order.capacity() * 2).max(4)
        };
        self.slot_bytes
            + size
            + table_bytes(self.slots.capacity(), self.slots.len() + 1)
            + queue_bytes(queue_capacity)
    }

    /// Drops expired slots from the front of the queue, and the oldest live ones while a slot of
    /// `size` would not fit.
    fn make_room(&mut self, size: usize, max_bytes: usize, now: Instant) {
        // Places left behind by rewritten or released slots wait behind the oldest live one; they
        // are swept out before they can outnumber the slots.
        if self.order.len() > self.slots.len().max(1024).saturating_mul(2) {
            let slots = &self.slots;
            self.order.retain(|(key, generation)| {
                slots.get(key).is_some_and(|s| s.generation == *generation)
            });
        }
        while let Some((key, generation)) = self.order.front() {
            let full = self.bytes_with(size) > max_bytes;
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

/// An answer in blocks of its own size: the body copied out of whatever buffer it was read into,
/// the usual content type not copied at all.
fn compact(entry: Entry) -> Entry {
    match entry {
        Entry::Done {
            fingerprint,
            answer,
        } => Entry::Done {
            fingerprint,
            answer: StoredAnswer {
                status: answer.status,
                content_type: answer.content_type.map(|value| {
                    if value == JSON {
                        HeaderValue::from_static(JSON)
                    } else {
                        HeaderValue::from_bytes(value.as_bytes()).unwrap_or(value)
                    }
                }),
                body: Bytes::copy_from_slice(&answer.body),
            },
        },
        lock @ Entry::InFlight { .. } => lock,
    }
}

/// The heap blocks an entry's answer holds besides the slot: the body, and the shared header a
/// body gets once it is first handed out (a replay); likewise a copied content type.
fn entry_bytes(entry: &Entry) -> usize {
    const SHARED_HEADER: usize = 3 * size_of::<usize>();
    let copied = |len: usize| {
        if len == 0 {
            0
        } else {
            heap_block(len) + heap_block(SHARED_HEADER)
        }
    };
    match entry {
        Entry::InFlight { .. } => 0,
        Entry::Done { answer, .. } => {
            copied(answer.body.len())
                + answer
                    .content_type
                    .as_ref()
                    .filter(|value| *value != JSON)
                    .map_or(0, |value| copied(value.len()))
        }
    }
}

/// What the allocator takes for a request of `len` bytes: glibc's malloc adds a word of its own
/// and rounds to 16 bytes, at least 32. (musl's and jemalloc's classes are within a few percent
/// of this for blocks of this size.)
fn heap_block(len: usize) -> usize {
    (len + size_of::<usize>()).next_multiple_of(16).max(32)
}

/// The map's table (hashbrown) holding `items`: a bucket per key and pointer, a control byte per
/// bucket. Buckets come in powers of two, at most 7/8 full; a table whose free buckets are used up
/// by removals rehashes in place only while at most half full, and doubles otherwise, so under
/// churn it settles at up to four buckets and a half per entry. Counted at that size (or at what it
/// holds already, which is never given back), so the bound holds before the growth happens.
fn table_bytes(capacity: usize, items: usize) -> usize {
    const BUCKET: usize = size_of::<(Arc<str>, Box<Slot>)>() + 1;
    let buckets = buckets_for(capacity).max(buckets_for(items.saturating_mul(2)));
    if buckets == 0 {
        0
    } else {
        buckets * BUCKET + 16
    }
}

/// Buckets of a hashbrown table that can hold `items` without growing.
fn buckets_for(items: usize) -> usize {
    match items {
        0 => 0,
        1..=3 => 4,
        4..=7 => 8,
        _ => (items.saturating_mul(8) / 7).next_power_of_two(),
    }
}

fn queue_bytes(capacity: usize) -> usize {
    capacity * size_of::<(Arc<str>, u64)>()
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;

    use super::*;
    use crate::idempotency::Fingerprint;

    const LOCK_TTL: Duration = Duration::from_secs(30);
    const KEEP: Duration = Duration::from_secs(600);
    const ROOMY: usize = 1 << 30;

    fn lock(token: u128) -> Entry {
        Entry::InFlight {
            fingerprint: Fingerprint::of(&[b"checkout"]),
            token,
        }
    }

    fn answer(body: Bytes, content_type: Option<HeaderValue>) -> Entry {
        Entry::Done {
            fingerprint: Fingerprint::of(&[b"checkout"]),
            answer: StoredAnswer {
                status: StatusCode::OK,
                content_type,
                body,
            },
        }
    }

    fn done(body: &'static str) -> Entry {
        answer(Bytes::from_static(body.as_bytes()), None)
    }

    /// Claims and answers `key` with a body of `len` bytes.
    fn keep(store: &MemoryStore, key: &str, len: usize) {
        assert_eq!(store.claim(key, &lock(1), LOCK_TTL), None, "{key} was free");
        assert!(store.finish(
            key,
            &lock(1),
            answer(Bytes::from(vec![b'x'; len]), None),
            KEEP
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_is_held_then_answered_then_forgotten() {
        let store = MemoryStore::new(ROOMY);
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
        let store = MemoryStore::new(ROOMY);
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
    async fn the_store_never_takes_more_than_its_bound_and_the_oldest_go_first() {
        let bound = 256 * 1024;
        let store = MemoryStore::new(bound);
        for i in 0..5_000 {
            keep(&store, &format!("key-{i}"), 300 + i % 200);
            let (_, bytes) = store.usage();
            assert!(bytes <= bound, "{bytes} bytes held after key {i}");
        }
        let (entries, bytes) = store.usage();
        // Full, not emptied: what was let go was only what the next answer needed.
        assert!(
            bytes > bound * 3 / 4,
            "{bytes} of {bound} bytes, {entries} entries"
        );
        assert!(entries > 100, "{entries} entries");
        // The newest are there, the oldest are gone.
        assert!(store.claim("key-4999", &lock(2), LOCK_TTL).is_some());
        assert_eq!(store.claim("key-0", &lock(2), LOCK_TTL), None);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_let_go_by_the_next_write() {
        let store = MemoryStore::new(ROOMY);
        assert_eq!(store.claim("old", &lock(1), Duration::from_secs(1)), None);
        keep(&store, "kept", 10);
        tokio::time::advance(Duration::from_secs(2)).await;
        keep(&store, "new", 10);
        let (entries, _) = store.usage();
        // The expired lock went; the live answer stayed, though there was room for all three.
        assert_eq!(entries, 2);
        assert!(store.claim("kept", &lock(2), LOCK_TTL).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn churn_at_the_bound_never_takes_the_store_past_it() {
        let bound = 512 * 1024;
        let store = MemoryStore::new(bound);
        for round in 0..40 {
            for i in 0..1_000 {
                let key = format!("{round}-{i}");
                assert_eq!(store.claim(&key, &lock(1), LOCK_TTL), None);
                // Half the locks are released (a 5xx), the rest answered: removals leave the
                // table's free buckets used up, the case that makes it double.
                if i % 2 == 0 {
                    store.release(&key, &lock(1));
                } else {
                    assert!(store.finish(&key, &lock(1), done("{}"), KEEP));
                }
                // Counted with the tables as they are: had one grown past what was foreseen,
                // this would exceed the bound.
                let (_, bytes) = store.usage();
                assert!(bytes <= bound, "{bytes} bytes in round {round}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_kept_in_a_block_of_its_own() {
        let store = MemoryStore::new(ROOMY);
        // An answer cut from a larger buffer, as a body read from a connection is.
        let buffer = Bytes::from(vec![b'x'; 64 * 1024]);
        let body = buffer.slice(100..600);
        let content_type = HeaderValue::from_maybe_shared(buffer.slice(0..10)).unwrap();
        assert_eq!(store.claim("k", &lock(1), LOCK_TTL), None);
        assert!(store.finish(
            "k",
            &lock(1),
            answer(body.clone(), Some(content_type.clone())),
            KEEP
        ));
        let Some(Entry::Done { answer: kept, .. }) = store.claim("k", &lock(2), LOCK_TTL) else {
            panic!("the answer was not kept");
        };
        assert_eq!(kept.body, body);
        assert_eq!(kept.content_type.as_ref(), Some(&content_type));
        assert!(!std::ptr::eq(kept.body.as_ptr(), body.as_ptr()));
        assert!(!std::ptr::eq(
            kept.content_type.unwrap().as_bytes().as_ptr(),
            content_type.as_bytes().as_ptr()
        ));
        drop(buffer);
    }
}
