//! Waiting for what should happen: polled with a limit far above what it takes on a busy machine,
//! so that only something that never happens fails a test, and nothing passes by being fast.
//!
//! Also compiled into the stand-in's tests, so it needs nothing but `std` and `tokio`.

use std::time::{Duration, Instant};

/// How long a test waits for something that should happen.
pub const EVENTUALLY: Duration = Duration::from_secs(30);

/// Between two looks: short next to [`EVENTUALLY`], long enough not to busy a shared machine.
const POLL: Duration = Duration::from_millis(20);

/// What a probe answers: `true` or `Some` once what it waits for has happened.
pub trait Outcome {
    type Value;
    fn happened(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn happened(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn happened(self) -> Option<T> {
        self
    }
}

/// Polls `probe` until it answers, for at most `limit`; `None` when it never did.
pub fn within<O: Outcome>(limit: Duration, mut probe: impl FnMut() -> O) -> Option<O::Value> {
    let started = Instant::now();
    loop {
        match probe().happened() {
            Some(value) => return Some(value),
            None if started.elapsed() > limit => return None,
            None => std::thread::sleep(POLL),
        }
    }
}

/// Polls `probe` until it answers; fails the test, naming `what`, after [`EVENTUALLY`].
pub fn eventually<O: Outcome>(what: &str, probe: impl FnMut() -> O) -> O::Value {
    within(EVENTUALLY, probe).unwrap_or_else(|| panic!("{what}: not within {EVENTUALLY:?}"))
}

/// As [`within`], in an async test, with a probe that may await (a request, a scrape, a read of
/// what a stand-in received): waits without holding up the runtime's thread.
pub async fn within_async<O: Outcome>(
    limit: Duration,
    mut probe: impl AsyncFnMut() -> O,
) -> Option<O::Value> {
    let started = Instant::now();
    loop {
        match probe().await.happened() {
            Some(value) => return Some(value),
            None if started.elapsed() > limit => return None,
            None => tokio::time::sleep(POLL).await,
        }
    }
}

/// As [`eventually`], in an async test: `probe` is an async closure.
pub async fn eventually_async<O: Outcome>(what: &str, probe: impl AsyncFnMut() -> O) -> O::Value {
    within_async(EVENTUALLY, probe)
        .await
        .unwrap_or_else(|| panic!("{what}: not within {EVENTUALLY:?}"))
}
