//! When a failed call to Proof is tried again: Proof's guidance (502 `upstream_error` /
//! `upstream_unavailable` with backoff, 500 `internal_error` once, a connection never made), the
//! attempt limit and the deadline, as a value the client's loop asks.

use std::time::Duration;

use tokio::time::Instant;

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// A failure that Proof's guidance allows to retry, as the retry rules tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Retryable {
    /// The connection was never made.
    NotSent,
    /// 502 `upstream_error` / `upstream_unavailable`: a provider behind Proof failed.
    ProviderFailed,
    /// 500 `internal_error`: retried once per checkout.
    InternalError,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    Retry { after: Duration },
    Stop,
}

/// The retries of one call to Proof: how many attempts were made, the once-only `internal_error`
/// retry, and the deadline. Owned by the loop in
/// [`ProofClient::call_with_retries`](super::client::ProofClient::call_with_retries), which the
/// widget session and the reads alike go through, so the attempt count every error reports comes
/// from one place; [`RetryState::decide`] takes the clock and the jitter as arguments, so the
/// rules are tested without a network or a real clock.
#[derive(Debug)]
pub(super) struct RetryState {
    attempts: u32,
    max_attempts: u32,
    deadline: Instant,
    /// The least time a retry must still have once its backoff is over: a retry cut off by the
    /// deadline before it could even connect would turn Proof's last answer into a timeout.
    min_attempt_time: Duration,
    internal_error_retried: bool,
}

impl RetryState {
    pub(super) fn new(max_attempts: u32, deadline: Instant, min_attempt_time: Duration) -> Self {
        Self {
            attempts: 0,
            max_attempts,
            deadline,
            min_attempt_time,
            internal_error_retried: false,
        }
    }

    /// Attempts started so far.
    pub(super) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Counts a new attempt and returns the time left for it, or `None` when the deadline has
    /// passed and no attempt is made.
    pub(super) fn start_attempt(&mut self, now: Instant) -> Option<Duration> {
        let time_left = self.deadline.saturating_duration_since(now);
        if time_left.is_zero() {
            return None;
        }
        self.attempts += 1;
        Some(time_left)
    }

    /// Whether the attempt that just failed with `why` is retried, and after how long. `jitter`
    /// in `[0, 1]` picks the backoff within its range.
    pub(super) fn decide(&self, why: Retryable, now: Instant, jitter: f64) -> Decision {
        if self.attempts >= self.max_attempts
            || (why == Retryable::InternalError && self.internal_error_retried)
        {
            return Decision::Stop;
        }
        let after = backoff(self.attempts, jitter);
        if after.saturating_add(self.min_attempt_time)
            >= self.deadline.saturating_duration_since(now)
        {
            return Decision::Stop;
        }
        Decision::Retry { after }
    }

    /// Records that the loop acts on a [`Decision::Retry`] for `why`.
    pub(super) fn retrying(&mut self, why: Retryable) {
        if why == Retryable::InternalError {
            self.internal_error_retried = true;
        }
    }
}

/// Exponential backoff with jitter before retry `retry` (1-based): half fixed, half chosen by
/// `jitter` in `[0, 1]`, so retries from many requests spread.
fn backoff(retry: u32, jitter: f64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << retry.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    let half = ceiling / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_grows_and_is_capped() {
        for retry in 1..20 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1 << (retry - 1).min(16))
                .min(BACKOFF_CAP);
            assert_eq!(backoff(retry, 0.0), ceiling / 2, "retry {retry}");
            assert_eq!(backoff(retry, 1.0), ceiling, "retry {retry}");
            let d = backoff(retry, 0.37);
            assert!(d > ceiling / 2 && d < ceiling, "retry {retry}: {d:?}");
        }
    }

    fn started(max_attempts: u32, deadline: Duration) -> (RetryState, Instant) {
        let start = Instant::now();
        let mut state = RetryState::new(max_attempts, start + deadline, Duration::ZERO);
        assert_eq!(state.start_attempt(start), Some(deadline));
        (state, start)
    }

    /// Acts on a retry decision the way the loop does: waits, then starts the next attempt.
    fn retry(state: &mut RetryState, why: Retryable, now: Instant) -> Instant {
        let Decision::Retry { after } = state.decide(why, now, 0.5) else {
            panic!("attempt {} with {why:?} was not retried", state.attempts());
        };
        state.retrying(why);
        let now = now + after;
        assert!(state.start_attempt(now).is_some());
        now
    }

    #[test]
    fn every_retryable_failure_is_retried_up_to_max_attempts_with_a_growing_backoff() {
        for why in [Retryable::NotSent, Retryable::ProviderFailed] {
            let (mut state, mut now) = started(4, Duration::from_secs(60));
            for attempt in 1..4 {
                assert_eq!(state.attempts(), attempt);
                assert_eq!(
                    state.decide(why, now, 0.0),
                    Decision::Retry {
                        after: 50 * MS * (1 << (attempt - 1))
                    }
                );
                assert_eq!(
                    state.decide(why, now, 1.0),
                    Decision::Retry {
                        after: 100 * MS * (1 << (attempt - 1))
                    }
                );
                now = retry(&mut state, why, now);
            }
            assert_eq!(state.attempts(), 4);
            assert_eq!(state.decide(why, now, 0.0), Decision::Stop, "{why:?}");
        }
    }

    #[test]
    fn with_max_attempts_1_nothing_is_retried() {
        let (state, now) = started(1, Duration::from_secs(60));
        for why in [
            Retryable::NotSent,
            Retryable::ProviderFailed,
            Retryable::InternalError,
        ] {
            assert_eq!(state.decide(why, now, 0.0), Decision::Stop, "{why:?}");
        }
    }

    #[test]
    fn internal_error_is_retried_once_per_checkout_even_between_other_retries() {
        let (mut state, now) = started(10, Duration::from_secs(60));
        let now = retry(&mut state, Retryable::InternalError, now);
        let now = retry(&mut state, Retryable::ProviderFailed, now);
        assert_eq!(
            state.decide(Retryable::InternalError, now, 0.0),
            Decision::Stop
        );
        // The other rules are not spent by it.
        let now = retry(&mut state, Retryable::NotSent, now);
        assert_eq!(state.attempts(), 4);
        assert!(matches!(
            state.decide(Retryable::ProviderFailed, now, 0.0),
            Decision::Retry { .. }
        ));
    }

    #[test]
    fn no_retry_whose_backoff_reaches_the_deadline() {
        let (state, start) = started(5, Duration::from_millis(1000));
        // First backoff: 50 ms at jitter 0, 100 ms at jitter 1.
        let now = start + 940 * MS;
        assert_eq!(
            state.decide(Retryable::ProviderFailed, now, 0.0),
            Decision::Retry { after: 50 * MS }
        );
        assert_eq!(
            state.decide(Retryable::ProviderFailed, now, 1.0),
            Decision::Stop
        );
        assert_eq!(
            state.decide(Retryable::NotSent, start + 950 * MS, 0.0),
            Decision::Stop,
            "a backoff that ends exactly at the deadline"
        );
        assert_eq!(
            state.decide(Retryable::NotSent, start + 5 * Duration::from_secs(1), 0.0),
            Decision::Stop
        );
    }

    #[test]
    fn no_retry_without_time_left_to_connect_after_its_backoff() {
        let start = Instant::now();
        let mut state = RetryState::new(5, start + 1000 * MS, 300 * MS);
        state.start_attempt(start);
        // 50 ms of backoff and 300 ms to connect fit in the 400 ms left, but not in 350 ms.
        assert_eq!(
            state.decide(Retryable::NotSent, start + 600 * MS, 0.0),
            Decision::Retry { after: 50 * MS }
        );
        assert_eq!(
            state.decide(Retryable::NotSent, start + 650 * MS, 0.0),
            Decision::Stop
        );
    }

    #[test]
    fn no_attempt_starts_after_the_deadline_and_none_is_counted() {
        let (mut state, start) = started(5, Duration::from_millis(100));
        assert_eq!(state.start_attempt(start + 100 * MS), None);
        assert_eq!(state.start_attempt(start + 101 * MS), None);
        assert_eq!(state.attempts(), 1);
        assert_eq!(state.start_attempt(start + 40 * MS), Some(60 * MS));
        assert_eq!(state.attempts(), 2);
    }
}
