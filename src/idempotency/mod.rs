//! Double-submit protection on `POST /start-checkout`: one Proof session per intent, however often
//! the browser sends it.
//!
//! - **`Idempotency-Key`** ([`key`]): a retry with the same key, from the same session user, with
//!   the same checked checkout gets the first answer from Proof again (status, `Content-Type`,
//!   bytes, with `Idempotent-Replayed: true`) for `checkout.idempotency_ttl_s`, and Proof is not
//!   called again. The same key with another checkout is 422; a retry while the first is still
//!   being served is 409 with `Retry-After: 1`.
//! - **The dedupe window** (`checkout.dedupe_window_ms`, off by default): without the header, the
//!   same user's identical checkout within the window gets the first successful answer; one that
//!   arrives while the first is still at Proof waits for it.
//! - **A client that goes away** (a phone changing networks) changes neither: a checkout sent to
//!   Proof runs to its end in a task of its own and its answer is kept as if it had been
//!   delivered, so the retry gets 409 (or waits) while Proof works, then the replay; Proof creates
//!   one session.
//!
//! What is kept: Proof's successes and Proof's own 4xx (not its 429, which asks for a retry later);
//! never an answer the service produced itself, nor a 5xx: a retry after those goes to Proof again.
//! The fingerprint is the checked checkout ([`Fingerprint`]), not the raw bytes, so the same
//! checkout sent with other spacing or field order is the same request.
//!
//! Where it lives follows `rate_limit.backend`: in this process ([`memory`], bounded) or in the
//! shared Redis ([`shared`]), where an in-flight lock (`SET NX PX`) and the stored answer let a
//! retry on another replica see the first. Keys are keyed hashes of the user and the key (or the
//! fingerprint), never the raw values. A Redis that fails is `rate_limit.on_backend_error`'s
//! business, as for the limits: 503 with `deny`, served unprotected with `allow`.

mod key;
mod memory;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use bytes::Bytes;
use sha2::{Digest, Sha256};

pub use key::{IDEMPOTENCY_KEY, IdempotencyKey, KeyError, idempotency_key};
pub use memory::{DEFAULT_MAX_BYTES, MemoryStore};
pub use shared::RedisStore;

use crate::shared_redis::{BackendErrorPolicy, KeyHasher, RedisLink, WarningThrottle};

/// Set on an answer that is a replay of an earlier one.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Larger answers are served but not kept (Proof's are a few hundred bytes).
pub const MAX_STORED_BODY_BYTES: usize = 64 * 1024;

/// At most one warning a second about a failing shared store, whatever the request rate.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// A hash of the checked checkout: what makes two requests the same intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The hash of `parts`, each length-prefixed so that no two lists of parts share one.
    pub fn of(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Self(hasher.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// An answer from Proof, as it is kept and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// Whose requests are compared, and by what.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// The user's `Idempotency-Key`.
    Key {
        user_id: &'a str,
        key: &'a IdempotencyKey,
    },
    /// The user's identical checkouts within the dedupe window.
    Dedupe { user_id: &'a str },
}

/// What a request found.
#[derive(Debug)]
pub enum Claim {
    /// The first: call Proof, then [`Ticket::finish`] with its answer.
    Proceed(Ticket),
    /// Answered before: replay it.
    Replay(StoredAnswer),
    /// The first is still being served.
    InProgress,
    /// The same key was used for another checkout.
    Reused,
    /// The shared store failed and `on_backend_error` is `allow`: serve without protection.
    Unprotected,
}

/// The shared store failed and `on_backend_error` is `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the idempotency store is unreachable")]
pub struct StoreUnavailable;

/// How long things are kept.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyConfig {
    /// `checkout.idempotency_ttl_s`: how long an answer to an `Idempotency-Key` is replayed.
    pub key_ttl: Duration,
    /// `checkout.dedupe_window_ms`; zero is off.
    pub dedupe_window: Duration,
    /// How long a request may hold its key while it is served: longer than Proof's whole deadline,
    /// so a slow first request is not joined by a second; a crashed replica's lock still expires.
    pub lock_ttl: Duration,
    /// `checkout.idempotency_max_bytes`: what the in-memory store may take.
    pub memory_max_bytes: usize,
}

/// The store for one process: in memory, or a client of the shared Redis.
#[derive(Debug)]
pub struct IdempotencyStore {
    config: IdempotencyConfig,
    keys: KeyHasher,
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Memory(Arc<MemoryStore>),
    Redis {
        store: Arc<RedisStore>,
        on_error: BackendErrorPolicy,
        warnings: Arc<WarningThrottle>,
    },
}

/// One entry, in memory or (encoded) in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A request holds the key while it is served; `token` tells its own lock from another's.
    InFlight {
        fingerprint: Fingerprint,
        token: u128,
    },
    Done {
        fingerprint: Fingerprint,
        answer: StoredAnswer,
    },
}

impl Entry {
    /// What a request with `fingerprint` makes of the entry it found.
    fn claim_for(self, fingerprint: Fingerprint) -> Claim {
        match self {
            Self::InFlight {
                fingerprint: held, ..
            } if held == fingerprint => Claim::InProgress,
            Self::Done {
                fingerprint: held,
                answer,
            } if held == fingerprint => Claim::Replay(answer),
            _ => Claim::Reused,
        }
    }
}

impl IdempotencyStore {
    /// In this process: one instance.
    pub fn memory(config: IdempotencyConfig) -> Self {
        // Keys never leave the process, so a secret of its own is enough; it only keeps raw user
        // ids and client keys out of memory dumps.
        let secret: [u8; 32] = rand::random();
        Self {
            config,
            keys: KeyHasher::new("local", &secret).expect("32 bytes is a valid key secret"),
            backend: Backend::Memory(Arc::new(MemoryStore::new(config.memory_max_bytes))),
        }
    }

    /// In the Redis every replica shares; `keys` must be the same on every replica.
    pub fn redis(
        config: IdempotencyConfig,
        link: Arc<RedisLink>,
        keys: KeyHasher,
        on_error: BackendErrorPolicy,
    ) -> Self {
        Self {
            config,
            keys,
            backend: Backend::Redis {
                store: Arc::new(RedisStore::new(link)),
                on_error,
                warnings: Arc::new(WarningThrottle::new(WARNING_INTERVAL)),
            },
        }
    }

    /// The in-memory store, for its size in the metrics; `None` with the Redis backend.
    pub fn in_memory(&self) -> Option<&MemoryStore> {
        match &self.backend {
            Backend::Memory(store) => Some(store),
            Backend::Redis { .. } => None,
        }
    }

    /// The dedupe window, when it is on.
    pub fn dedupe_window(&self) -> Option<Duration> {
        (!self.config.dedupe_window.is_zero()).then_some(self.config.dedupe_window)
    }

    /// How long a request may hold a key: also how long a duplicate waits for the first at most.
    pub fn lock_ttl(&self) -> Duration {
        self.config.lock_ttl
    }

    /// Takes the scope's key for this request, or tells what holds it.
    pub async fn claim(
        &self,
        scope: Scope<'_>,
        fingerprint: Fingerprint,
    ) -> Result<Claim, StoreUnavailable> {
        let (purpose, key) = match scope {
            Scope::Key { user_id, key } => (
                Purpose::Key,
                self.keys
                    .key("idempotency", &[user_id.as_bytes(), key.as_bytes()]),
            ),
            Scope::Dedupe { user_id } => (
                Purpose::Dedupe,
                self.keys
                    .key("dedupe", &[user_id.as_bytes(), fingerprint.as_bytes()]),
            ),
        };
        let token: u128 = rand::random();
        let lock = Entry::InFlight { fingerprint, token };
        let found = match &self.backend {
            Backend::Memory(store) => Ok(store.claim(&key, &lock, self.config.lock_ttl)),
            Backend::Redis { store, .. } => store.claim(&key, &lock, self.config.lock_ttl).await,
        };
        match found {
            Ok(Some(entry)) => Ok(entry.claim_for(fingerprint)),
            Ok(None) => Ok(Claim::Proceed(Ticket {
                backend: self.backend.clone(),
                key,
                lock,
                fingerprint,
                keep_for: match purpose {
                    Purpose::Key => self.config.key_ttl,
                    Purpose::Dedupe => self.config.dedupe_window,
                },
                purpose,
                held: true,
            })),
            Err(error) => self.backend.failed(&error.to_string()),
        }
    }
}

impl Backend {
    fn failed(&self, error: &str) -> Result<Claim, StoreUnavailable> {
        let Self::Redis {
            on_error, warnings, ..
        } = self
        else {
            return Err(StoreUnavailable);
        };
        if let Some(suppressed) = warnings.permit() {
            tracing::warn!(
                %error,
                suppressed,
                on_backend_error = match on_error {
                    BackendErrorPolicy::Deny => "deny",
                    BackendErrorPolicy::Allow => "allow",
                },
                "idempotency store unreachable"
            );
        }
        match on_error {
            BackendErrorPolicy::Deny => Err(StoreUnavailable),
            BackendErrorPolicy::Allow => Ok(Claim::Unprotected),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Key,
    Dedupe,
}

impl Purpose {
    /// Proof's successes are kept for both; its 4xx only for a key (a duplicate without one goes
    /// to Proof again); never its 429, which asks for a later retry.
    fn keeps(self, answer: &StoredAnswer) -> bool {
        let status = answer.status;
        let kept_status = status.is_success()
            || (self == Self::Key
                && status.is_client_error()
                && status != StatusCode::TOO_MANY_REQUESTS);
        kept_status && answer.body.len() <= MAX_STORED_BODY_BYTES
    }
}

/// A request's hold on its key. Finished with Proof's answer, or released when dropped (the
/// service's own error, a 5xx) so that a retry may try again at once. The checkout holds it in the
/// task that calls Proof, so a client that goes away neither releases it nor loses the answer.
#[derive(Debug)]
pub struct Ticket {
    backend: Backend,
    key: String,
    lock: Entry,
    fingerprint: Fingerprint,
    keep_for: Duration,
    purpose: Purpose,
    held: bool,
}

impl Ticket {
    /// Keeps `answer` for a retry when it is one to keep (true when it was kept); otherwise
    /// releases the key.
    pub async fn finish(mut self, answer: &StoredAnswer) -> bool {
        if !self.purpose.keeps(answer) {
            return false;
        }
        let done = Entry::Done {
            fingerprint: self.fingerprint,
            answer: answer.clone(),
        };
        let kept = match &self.backend {
            Backend::Memory(store) => Ok(store.finish(&self.key, &self.lock, done, self.keep_for)),
            Backend::Redis { store, .. } => {
                store
                    .finish(&self.key, &self.lock, &done, self.keep_for)
                    .await
            }
        };
        match kept {
            Ok(true) => {
                self.held = false;
                true
            }
            // The lock expired under a very slow request and someone else holds the key now.
            Ok(false) => {
                self.held = false;
                tracing::warn!("idempotency key expired while served: its answer is not kept");
                false
            }
            Err(error) => {
                tracing::warn!(%error, "idempotency store: the answer could not be kept");
                false
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        match &self.backend {
            Backend::Memory(store) => store.release(&self.key, &self.lock),
            Backend::Redis { store, .. } => store.release_detached(&self.key, &self.lock),
        }
    }
}
