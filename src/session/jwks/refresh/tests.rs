//! The refresh loop against a scripted source, on a paused clock: every wait below is virtual, so
//! the timings are exact however busy the machine is.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::*;

const RSA: &str = include_str!("../../../../tests/fixtures/jwks/rsa.jwk.json");
const MIN_INTERVAL: Duration = Duration::from_secs(30);
const WAIT_LIMIT: Duration = Duration::from_secs(11);

/// What the scripted provider answers, fetch after fetch; the last entry repeats.
#[derive(Clone)]
enum Answer {
    Keys(&'static [&'static str], Duration),
    Down,
}

struct ScriptedSource {
    script: Vec<Answer>,
    fetches: Arc<AtomicUsize>,
    /// How long each fetch takes.
    takes: Duration,
}

impl KeySource for ScriptedSource {
    async fn fetch(&mut self) -> Result<Fetched, FetchError> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.takes).await;
        match self.script[n.min(self.script.len() - 1)].clone() {
            Answer::Keys(kids, fresh_for) => Ok(Fetched {
                keys: key_set(kids),
                fresh_for,
            }),
            Answer::Down => Err(FetchError("connection refused".into())),
        }
    }
}

fn key_set(kids: &[&str]) -> KeySet {
    let keys: Vec<Value> = kids
        .iter()
        .map(|kid| {
            let mut key: Value = serde_json::from_str(RSA).unwrap();
            key["kid"] = json!(kid);
            key
        })
        .collect();
    KeySet::parse(
        json!({ "keys": keys }).to_string().as_bytes(),
        &[Algorithm::RS256],
    )
    .unwrap()
}

struct Harness {
    cache: Arc<KeyCache>,
    fetches: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
}

impl Harness {
    fn start(script: Vec<Answer>, takes: Duration) -> Self {
        let cache = Arc::new(KeyCache::new(MIN_INTERVAL, WAIT_LIMIT));
        let fetches = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let mut source = ScriptedSource {
            script,
            fetches: fetches.clone(),
            takes,
        };
        let (loop_cache, loop_ready) = (cache.clone(), ready.clone());
        tokio::spawn(async move {
            let on_ready = move |ready: bool| loop_ready.store(ready, Ordering::SeqCst);
            run(&loop_cache, &mut source, &on_ready).await;
        });
        Self {
            cache,
            fetches,
            ready,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn kids(&self) -> Vec<String> {
        self.cache
            .current()
            .map(|keys| keys.kids().into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// `n` workers meeting an unknown kid at once.
    async fn unknown_kids(&self, n: usize) -> Vec<Result<Arc<KeySet>, SessionError>> {
        let waiters: Vec<_> = (0..n)
            .map(|_| {
                let cache = self.cache.clone();
                tokio::spawn(async move { cache.after_unknown_kid().await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for waiter in waiters {
            outcomes.push(waiter.await.unwrap());
        }
        outcomes
    }
}

/// Lets the spawned tasks run up to their next wait, the virtual clock moving `by`.
async fn advance(by: Duration) {
    tokio::time::sleep(by).await;
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn the_first_set_is_fetched_at_once_and_again_when_its_freshness_ends() {
    let idp = Harness::start(vec![Answer::Keys(&["a"], secs(120))], ms(10));
    advance(ms(20)).await;
    assert_eq!(idp.fetches(), 1);
    assert!(idp.ready());
    assert_eq!(idp.kids(), ["a"]);

    advance(secs(119)).await;
    assert_eq!(idp.fetches(), 1, "still fresh");
    advance(secs(2)).await;
    assert_eq!(idp.fetches(), 2, "fetched again when stale");
}

#[tokio::test(start_paused = true)]
async fn failures_before_the_first_set_are_retried_with_backoff_then_it_is_ready() {
    let start = tokio::time::Instant::now();
    let idp = Harness::start(
        vec![
            Answer::Down,
            Answer::Down,
            Answer::Down,
            Answer::Keys(&["a"], secs(600)),
        ],
        ms(0),
    );
    // Attempts at 0 s, 1 s, 3 s and 7 s.
    for (at, fetches, ready) in [
        (500, 1, false),
        (1500, 2, false),
        (3500, 3, false),
        (7500, 4, true),
    ] {
        tokio::time::sleep_until(start + ms(at)).await;
        assert_eq!(idp.fetches(), fetches, "at {at} ms");
        assert_eq!(idp.ready(), ready, "at {at} ms");
    }
    assert_eq!(idp.kids(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_stays_down_is_asked_every_ten_seconds() {
    let idp = Harness::start(vec![Answer::Down], ms(0));
    // 0, 1, 3, 7, 15, 25, 35, 45 s.
    advance(secs(46)).await;
    assert_eq!(idp.fetches(), 8);
    assert!(!idp.ready());
    assert!(idp.cache.current().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_last_good_set() {
    let idp = Harness::start(vec![Answer::Keys(&["a"], secs(60)), Answer::Down], ms(0));
    advance(secs(61)).await;
    assert_eq!(idp.fetches(), 2);
    assert_eq!(idp.kids(), ["a"]);
    assert!(idp.ready());
    // And it keeps trying: one second later, then two.
    advance(secs(3)).await;
    assert_eq!(idp.fetches(), 4);
    assert_eq!(idp.kids(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_unknown_kids_costs_the_provider_one_fetch() {
    let idp = Harness::start(
        vec![
            Answer::Keys(&["a"], secs(3600)),
            Answer::Keys(&["a", "b"], secs(3600)),
        ],
        ms(100),
    );
    advance(secs(1)).await;
    assert_eq!(idp.fetches(), 1);

    let outcomes = idp.unknown_kids(100).await;
    assert_eq!(idp.fetches(), 2, "one refetch for the whole burst");
    for outcome in outcomes {
        assert!(
            outcome.unwrap().has_kid("b"),
            "every waiter sees the new set"
        );
    }

    // Within min_refresh_interval: no fetch at all, the set as it is.
    advance(secs(29)).await;
    let outcomes = idp.unknown_kids(100).await;
    assert_eq!(idp.fetches(), 2);
    assert!(
        outcomes
            .iter()
            .all(|outcome| outcome.as_ref().is_ok_and(|keys| keys.has_kid("a")))
    );

    // Once the interval has passed, one more.
    advance(secs(1)).await;
    idp.unknown_kids(100).await;
    assert_eq!(idp.fetches(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_kid_joins_a_scheduled_fetch_in_flight() {
    let idp = Harness::start(
        vec![
            Answer::Keys(&["a"], secs(60)),
            Answer::Keys(&["a", "b"], secs(3600)),
        ],
        secs(2),
    );
    // The first fetch ends at 2 s; the scheduled one starts at 62 s and ends at 64 s.
    advance(secs(63)).await;
    assert_eq!(idp.fetches(), 2);
    let outcomes = idp.unknown_kids(10).await;
    assert_eq!(idp.fetches(), 2, "joined, not repeated");
    assert!(
        outcomes
            .iter()
            .all(|outcome| outcome.as_ref().is_ok_and(|keys| keys.has_kid("b")))
    );
}

#[tokio::test(start_paused = true)]
async fn when_the_refetch_fails_the_unknown_kid_is_the_providers_fault() {
    let idp = Harness::start(vec![Answer::Keys(&["a"], secs(3600)), Answer::Down], ms(0));
    advance(ms(10)).await;
    let outcomes = idp.unknown_kids(5).await;
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, Err(SessionError::Backend)))
    );
    assert_eq!(idp.fetches(), 2);
    // Within the interval no fetch is asked for, and the last one failed: still the provider.
    let outcomes = idp.unknown_kids(1).await;
    assert!(matches!(outcomes[0], Err(SessionError::Backend)));
    // The set itself is kept for the tokens it can check.
    assert_eq!(idp.kids(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_gives_up_after_the_wait_limit() {
    let idp = Harness::start(
        vec![
            Answer::Keys(&["a"], secs(3600)),
            Answer::Keys(&["a", "b"], secs(3600)),
        ],
        secs(20),
    );
    advance(secs(21)).await;
    assert!(idp.ready());
    let started = tokio::time::Instant::now();
    let outcomes = idp.unknown_kids(1).await;
    assert!(matches!(outcomes[0], Err(SessionError::Backend)));
    assert_eq!(started.elapsed(), WAIT_LIMIT);
    // The fetch itself goes on and lands.
    advance(secs(10)).await;
    assert_eq!(idp.kids(), ["a", "b"]);
}

#[test]
fn asking_is_refused_within_the_interval_and_joined_while_in_flight() {
    let now = tokio::time::Instant::now();
    let mut state = RefreshState::default();
    assert_eq!(state.ask(now, MIN_INTERVAL), Ask::Start);
    assert_eq!(state.ask(now, MIN_INTERVAL), Ask::Join);
    state.in_flight = false;
    assert_eq!(state.ask(now + secs(29), MIN_INTERVAL), Ask::Refuse);
    assert_eq!(state.ask(now + secs(30), MIN_INTERVAL), Ask::Start);
}
