//! When a watcher next asks Proof, and when it next tries the WebSocket: plain values that take
//! the clock as an argument, so the rules are tested without a network or a real clock.

use std::time::Duration;

use tokio::time::Instant;

/// The first wait before reopening a WebSocket that failed, doubled each time up to
/// [`WEBSOCKET_BACKOFF_CAP`].
pub const WEBSOCKET_BACKOFF_START: Duration = Duration::from_secs(1);
pub const WEBSOCKET_BACKOFF_CAP: Duration = Duration::from_secs(60);
/// A WebSocket that was heard from and stayed open this long was healthy: when it ends, the
/// backoff starts over. One that accepts and closes, or says nothing, never earns that.
pub const WEBSOCKET_HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Hints (a webhook, a WebSocket event) ask Proof at most this often per transaction; hints in
/// between are folded into the next read.
pub const MIN_READ_SPACING: Duration = Duration::from_secs(1);

/// When the WebSocket is tried next, and how long the wait after the next failure is.
#[derive(Debug)]
pub struct Reconnect {
    pub at: Instant,
    backoff: Duration,
}

impl Reconnect {
    /// Tried at once.
    pub fn now(now: Instant) -> Self {
        Self {
            at: now,
            backoff: WEBSOCKET_BACKOFF_START,
        }
    }

    /// The WebSocket could not be opened: wait the backoff, which doubles for next time.
    pub fn failed(&mut self, now: Instant) {
        self.at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(WEBSOCKET_BACKOFF_CAP);
    }

    /// An open WebSocket ended; `healthy`: it was heard from and stayed open long enough to reset
    /// the backoff.
    pub fn ended(&mut self, now: Instant, healthy: bool) {
        if healthy {
            self.backoff = WEBSOCKET_BACKOFF_START;
        }
        self.failed(now);
    }

    /// Every WebSocket place was taken: ask again at the next poll, without growing the backoff
    /// (nothing failed at Proof).
    pub fn no_place(&mut self, now: Instant, poll_interval: Duration) {
        self.at = now + poll_interval;
    }
}

/// When the transaction is next read with a `GET`: on the poll or confirm cadence, or sooner for
/// a hint, but never within [`MIN_READ_SPACING`] of the last read.
#[derive(Debug)]
pub struct Reads {
    pub next_at: Instant,
    last_at: Option<Instant>,
}

impl Reads {
    /// The first read after `first_at`.
    pub fn starting(first_at: Instant) -> Self {
        Self {
            next_at: first_at,
            last_at: None,
        }
    }

    /// Something suggests the transaction changed: read as soon as the spacing allows.
    pub fn soon(&mut self, now: Instant) {
        let earliest = self
            .last_at
            .map_or(now, |last| (last + MIN_READ_SPACING).max(now));
        self.next_at = self.next_at.min(earliest);
    }

    /// A read just finished; the next one comes after `cadence` (the poll interval without a
    /// WebSocket, the confirm interval with one), unless a hint brings it forward.
    pub fn done(&mut self, now: Instant, cadence: Duration) {
        self.last_at = Some(now);
        self.next_at = now + cadence;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_websocket_that_keeps_failing_is_tried_with_a_doubling_capped_backoff() {
        let start = Instant::now();
        let mut reconnect = Reconnect::now(start);
        assert_eq!(reconnect.at, start);
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..9 {
            // Opened and at once closed: never healthy.
            reconnect.ended(now, false);
            waits.push((reconnect.at - now).as_secs());
            now = reconnect.at;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_healthy_websocket_that_ends_starts_the_backoff_over() {
        let start = Instant::now();
        let mut reconnect = Reconnect::now(start);
        for _ in 0..4 {
            reconnect.failed(start);
        }
        reconnect.ended(start, true);
        assert_eq!(reconnect.at - start, S);
    }

    #[test]
    fn no_place_waits_for_the_next_poll_without_growing_the_backoff() {
        let start = Instant::now();
        let mut reconnect = Reconnect::now(start);
        reconnect.no_place(start, 5 * S);
        assert_eq!(reconnect.at - start, 5 * S);
        reconnect.failed(start);
        assert_eq!(reconnect.at - start, S);
    }

    #[test]
    fn hints_bring_a_read_forward_but_never_within_a_second_of_the_last() {
        let start = Instant::now();
        let mut reads = Reads::starting(start + 60 * S);
        reads.soon(start);
        assert_eq!(reads.next_at, start, "the first hint is read at once");
        reads.done(start, 60 * S);
        assert_eq!(reads.next_at, start + 60 * S);
        // A burst of hints right after: one read, a second after the last.
        for ms in [1, 10, 500, 999] {
            reads.soon(start + Duration::from_millis(ms));
            assert_eq!(reads.next_at, start + S);
        }
        reads.done(start + S, 60 * S);
        reads.soon(start + 5 * S);
        assert_eq!(
            reads.next_at,
            start + 5 * S,
            "a hint long after is read at once"
        );
    }
}
