//! The Redis backend (`rate_limit.backend = "redis"`): the same two GCRA limits as the in-memory
//! backend, with their state in one Redis, or one Redis Cluster, shared by every replica.
//!
//! It owns the connection, the script, the keys and how a failing Redis is reported. What a failure
//! means for the request (`on_backend_error`: deny or allow) is the caller's decision.
//!
//! - **One script per check** (`redis_gcra.lua`): it reads the state, decides and writes the new
//!   state with its expiry, atomically inside Redis, so any number of concurrent checks from any
//!   number of replicas let exactly the quota through. It is called by its SHA1 (`EVALSHA`); when
//!   Redis does not know it (a restart, a failover, `SCRIPT FLUSH`) the same call is sent once with
//!   the script's text (`EVAL`), routed like the key, which also caches it on that node.
//! - **Redis's clock** (`TIME`, inside the script): the replicas' clocks never enter a decision, so a
//!   replica whose clock is behind cannot let extra requests through. A key lives on one node and so
//!   only ever sees that node's clock.
//! - **Keys**: `{prefix}:per_user:{<hash>}` and `{prefix}:per_ip:{<hash>}`, where the hash is the
//!   first 128 bits, in hex, of HMAC-SHA256 under the key secret of the limit's name and the subject:
//!   the user id, or the address (IPv4 as is, IPv6 by its /64, as in memory). The raw id, email or
//!   address is never sent. The braces are a Redis Cluster hash tag, so all that one check touches
//!   is in one slot; keys are the same without a cluster, so moving to one changes nothing.
//! - **Expiry**: every write makes the key expire when its state is fresh again, so idle keys vanish
//!   by themselves and Redis holds only recently active users and addresses.
//! - **Failures**: each call, connecting included, is bounded by the timeout. A slow, unreachable or
//!   erroring Redis is a [`BackendError`] whose text names only `host:port`. The connection is
//!   multiplexed (one per limiter, whatever the concurrency) and reconnects after an I/O error;
//!   after a second with nothing but failures it is also replaced outright, which covers what
//!   reconnecting on I/O errors does not: a connection that went silent, or a server that refused
//!   our password for a while. Recovery needs no restart.
//! - **Its own thread**: the connection's tasks run on a single-threaded runtime that the limiter
//!   owns, and every call is handed to it. actix-web's workers are single-threaded runtimes of
//!   their own: a connection driven by one of them would stall while that worker is busy, and die
//!   with it when it stops, failing the other workers' checks.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderValue;
use hmac::{Hmac, Mac};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, RedisError, RedisFuture, RedisResult, Script, ServerErrorKind, Value};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::{Allowance, LimitKind, RateLimitConfig, Refusal, ceil_seconds, rate_limit_header};

const GCRA_SCRIPT: &str = include_str!("redis_gcra.lua");

/// A shorter key secret is refused: the keys would be as guessable as the secret.
pub const MIN_KEY_SECRET_BYTES: usize = 16;

/// 128 bits of the HMAC: no two live subjects share a key in practice, and keys stay short.
const HASH_BYTES: usize = 16;

/// How long nothing but failures must last before the connection is replaced; also the least time
/// between two replacements, so a Redis that stays down costs one new connection a second.
const REPLACE_AFTER: Duration = Duration::from_secs(1);

/// A connection attempt may outlive the call that started it (later calls wait on the same
/// attempt), so a TLS handshake over a slow link can still finish when the timeout is tight.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the shared state lives and how long a call may take: the `[rate_limit]` `redis_*` keys.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[user:pass@]host:port[/db]`, or `rediss://` for TLS (rustls, with the system's
    /// trusted roots, or those of the file named by `SSL_CERT_FILE`). Secret: it may carry the
    /// password.
    pub url: SecretString,
    /// `url` names one node of a Redis Cluster; the others are discovered from it.
    pub cluster: bool,
    /// Every key starts with `{key_prefix}:`. Not empty; no braces, spaces or control characters.
    pub key_prefix: String,
    /// The bound on each call, connecting included; a slower Redis counts as unreachable.
    pub timeout: Duration,
}

/// Why a [`RedisLimiter`] could not be built. Never includes the URL or the password.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("the Redis URL must be redis://host[:port][/db] or rediss://…, with a host")]
    InvalidUrl,
    #[error(
        "the Redis key prefix must not be empty nor contain braces, spaces or control characters"
    )]
    InvalidKeyPrefix,
    #[error("the Redis timeout must be more than 0")]
    ZeroTimeout,
    #[error("the rate limit key secret must be at least {MIN_KEY_SECRET_BYTES} bytes")]
    ShortKeySecret,
    #[error("Redis at {addr}: {cause}")]
    Client { addr: String, cause: String },
    #[error("the Redis connection's thread could not start: {0}")]
    Thread(std::io::Error),
}

/// A Redis call that failed or did not answer in time. Its text names the configured `host:port`
/// and what went wrong, never the password or the full URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Redis at {addr}: {failure}")]
pub struct BackendError {
    addr: Arc<str>,
    failure: Failure,
}

impl BackendError {
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    /// `host:port` of the configured Redis (for a cluster: the node named in the URL).
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// What went wrong with a Redis call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No answer within the per-call timeout (connecting included).
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The connection could not be made or was lost.
    #[error("connection failed: {0}")]
    Connection(String),
    /// Redis answered with an error; the error code, e.g. `NOAUTH`, `WRONGPASS`, `CLUSTERDOWN`.
    #[error("Redis answered {0}")]
    Server(String),
    /// Anything else: an unexpected answer, a client-side error.
    #[error("{0}")]
    Other(String),
}

/// The per-user and per-address limits, their state in Redis. One per process, shared by every
/// worker (it is `Send + Sync`); the checks may be awaited on any tokio runtime with time enabled.
///
/// ```text
/// let limiter = RedisLimiter::new(settings, &quotas, &key_secret)?;
/// match limiter.check_ip(ip).await {
///     Ok(Ok(())) => {}                     // allowed
///     Ok(Err(refusal)) => {}               // 429 per_ip, Retry-After and RateLimit from `refusal`
///     Err(backend_error) => {}             // on_backend_error: deny (503) or allow
/// }
/// ```
pub struct RedisLimiter {
    link: Link,
    per_user: Limit,
    per_ip: Limit,
    hasher: Hmac<Sha256>,
    key_prefix: String,
    timeout: Duration,
    addr: Arc<str>,
    cluster: bool,
    /// The script's SHA1, for EVALSHA.
    sha: Arc<str>,
    policy: HeaderValue,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("addr", &self.addr)
            .field("cluster", &self.cluster)
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Checks the settings, starts the connection's thread and prepares the connection, without
    /// waiting for Redis: a replica may start while Redis is down, its checks fail with
    /// [`BackendError`] until Redis is reachable, and [`ping`](Self::ping) tells readiness. Needs no
    /// runtime, so a configuration check can build one too.
    ///
    /// `key_secret` keys the hash in every Redis key: every replica must use the same one, or they
    /// count separately. At least [`MIN_KEY_SECRET_BYTES`] bytes.
    pub fn new(
        settings: RedisSettings,
        quotas: &RateLimitConfig,
        key_secret: &[u8],
    ) -> Result<Self, RedisSetupError> {
        let RedisSettings {
            url,
            cluster,
            key_prefix,
            timeout,
        } = settings;
        if timeout.is_zero() {
            return Err(RedisSetupError::ZeroTimeout);
        }
        if !valid_key_prefix(&key_prefix) {
            return Err(RedisSetupError::InvalidKeyPrefix);
        }
        if key_secret.len() < MIN_KEY_SECRET_BYTES {
            return Err(RedisSetupError::ShortKeySecret);
        }
        let hasher = Hmac::<Sha256>::new_from_slice(key_secret)
            .map_err(|_| RedisSetupError::ShortKeySecret)?;
        let addr: Arc<str> = host_and_port(url.expose_secret())?.into();
        let connect_timeout = timeout.max(MIN_CONNECT_TIMEOUT);
        let target = if cluster {
            let client = ClusterClient::builder([url.expose_secret()])
                .connection_timeout(connect_timeout)
                .build()
                .map_err(|err| setup_error(&addr, &url, &err))?;
            Target::Cluster(
                client,
                ClusterConfig::new().set_connection_timeout(connect_timeout),
            )
        } else {
            let client = redis::Client::open(url.expose_secret())
                .map_err(|err| setup_error(&addr, &url, &err))?;
            // One attempt per connection: while Redis is down, the next call (or the replacement
            // below) tries again, instead of callers waiting out a backoff after Redis is back.
            // No response timeout of its own: every call is bounded by ours.
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(0)
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(None);
            Target::Single(client, config)
        };
        let runtime = Runtime::start().map_err(RedisSetupError::Thread)?;
        let connection = target
            .connect(&runtime.handle)
            .map_err(|err| setup_error(&addr, &url, &err))?;
        Ok(Self {
            link: Link {
                target,
                state: Mutex::new(LinkState {
                    connection,
                    created: Instant::now(),
                    failing_since: None,
                }),
                addr: addr.clone(),
                runtime,
                url,
            },
            per_user: Limit::new(
                LimitKind::PerUser,
                quotas.per_user_per_minute,
                quotas.per_user_burst,
            ),
            per_ip: Limit::new(
                LimitKind::PerIp,
                quotas.per_ip_per_minute,
                quotas.per_ip_burst,
            ),
            hasher,
            key_prefix,
            timeout,
            addr,
            cluster,
            sha: Script::new(GCRA_SCRIPT).get_hash().into(),
            policy: quotas.policy_header(),
        })
    }

    /// The `RateLimit-Policy` header value: the same on every answer, and the same as the
    /// in-memory backend's for the same quotas.
    pub fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    /// The per-address limit. `Ok(Ok(()))`: allowed; `Ok(Err(refusal))`: over the limit;
    /// `Err(_)`: Redis failed or did not answer in time (nothing was counted, or it is unknown).
    pub async fn check_ip(&self, ip: IpAddr) -> Result<Result<(), Refusal>, BackendError> {
        let key = self.key(LimitKind::PerIp, &ip_subject(ip));
        Ok(match self.run(&self.per_ip, key).await? {
            Outcome::Allowed { .. } => Ok(()),
            Outcome::Refused { wait } => Err(self.per_ip.refusal(wait)),
        })
    }

    /// The per-user limit. `Ok(Ok(allowance))`: allowed, with the per-user `RateLimit` header;
    /// `Ok(Err(refusal))`: over the limit; `Err(_)`: Redis failed or did not answer in time.
    pub async fn check_user(
        &self,
        user_id: &str,
    ) -> Result<Result<Allowance, Refusal>, BackendError> {
        let key = self.key(LimitKind::PerUser, user_id.as_bytes());
        Ok(match self.run(&self.per_user, key).await? {
            Outcome::Allowed { remaining } => Ok(Allowance {
                rate_limit: self.per_user.allowance_header(remaining),
            }),
            Outcome::Refused { wait } => Err(self.per_user.refusal(wait)),
        })
    }

    /// One `PING`, bounded by the timeout (for a cluster: every node): for `/readyz`.
    pub async fn ping(&self) -> Result<(), BackendError> {
        self.call(|mut connection| async move {
            redis::cmd("PING").query_async::<()>(&mut connection).await
        })
        .await
    }

    /// The Redis key of a subject: `{prefix}:{kind}:{hex of the keyed hash}`, the hash part a
    /// cluster hash tag.
    fn key(&self, kind: LimitKind, subject: &[u8]) -> String {
        let mut mac = self.hasher.clone();
        // The limit's name is hashed too, so a user id and an address never share a hash.
        mac.update(kind.code().as_bytes());
        mac.update(&[0]);
        mac.update(subject);
        let digest = mac.finalize().into_bytes();
        let mut key = String::with_capacity(self.key_prefix.len() + 12 + 2 * HASH_BYTES);
        key.push_str(&self.key_prefix);
        key.push(':');
        key.push_str(kind.code());
        key.push_str(":{");
        for byte in &digest[..HASH_BYTES] {
            // Writing to a String cannot fail.
            let _ = write!(key, "{byte:02x}");
        }
        key.push('}');
        key
    }

    async fn run(&self, limit: &Limit, key: String) -> Result<Outcome, BackendError> {
        let (t, tau) = (limit.t_us, limit.tau_us);
        let sha = self.sha.clone();
        let (allowed, value): (i64, i64) = self
            .call(|mut connection| async move {
                let mut evalsha = redis::cmd("EVALSHA");
                evalsha.arg(&*sha).arg(1).arg(&key).arg(t).arg(tau);
                match evalsha.query_async(&mut connection).await {
                    Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        let mut eval = redis::cmd("EVAL");
                        eval.arg(GCRA_SCRIPT).arg(1).arg(&key).arg(t).arg(tau);
                        eval.query_async(&mut connection).await
                    }
                    answer => answer,
                }
            })
            .await?;
        // The script never answers a negative value; a wrong one is not trusted beyond the quota.
        let value = u64::try_from(value).unwrap_or(0);
        Ok(if allowed == 1 {
            Outcome::Allowed {
                remaining: u32::try_from(value).unwrap_or(0).min(limit.burst),
            }
        } else {
            Outcome::Refused {
                wait: Duration::from_micros(value),
            }
        })
    }

    /// One call on the current connection, run on the connection's thread and bounded by the
    /// timeout; the connection is replaced after a second of failures.
    async fn call<T, F, Fut>(&self, operation: F) -> Result<T, BackendError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let task = self
            .link
            .runtime
            .handle
            .spawn(operation(self.link.current()));
        let abort = task.abort_handle();
        let failure = match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(Ok(value))) => {
                self.link.succeeded();
                return Ok(value);
            }
            Ok(Ok(Err(err))) => describe(&err).redacted(&self.link.url),
            // The call panicked, or the connection's thread is gone (which a live limiter never
            // lets happen).
            Ok(Err(_)) => Failure::Other("the Redis call ended without an answer".to_owned()),
            Err(_) => {
                // A call that took too long is abandoned, not left queued behind newer ones.
                abort.abort();
                Failure::Timeout(self.timeout)
            }
        };
        self.link.failed();
        Err(BackendError {
            addr: self.addr.clone(),
            failure,
        })
    }
}

/// One limit's GCRA parameters, in microseconds (the unit of Redis's `TIME`).
#[derive(Debug, Clone, Copy)]
struct Limit {
    kind: LimitKind,
    /// One cell: a minute over the per-minute quota, as governor's `Quota::per_minute`.
    t_us: u64,
    /// The burst tolerance: `t * (burst - 1)`.
    tau_us: u64,
    burst: u32,
}

impl Limit {
    fn new(kind: LimitKind, per_minute: u32, burst: u32) -> Self {
        // As the in-memory backend: a zero quota or burst counts as 1.
        let per_minute = u64::from(per_minute.max(1));
        let burst = burst.max(1);
        let t_us = (60_000_000 / per_minute).max(1);
        Self {
            kind,
            t_us,
            tau_us: t_us.saturating_mul(u64::from(burst - 1)),
            burst,
        }
    }

    /// As the in-memory backend: the time until the burst is whole again is one cell per used one.
    fn allowance_header(&self, remaining: u32) -> HeaderValue {
        let used = u64::from(self.burst.saturating_sub(remaining));
        let reset = Duration::from_micros(self.t_us.saturating_mul(used));
        rate_limit_header(self.kind, remaining, ceil_seconds(reset))
    }

    fn refusal(&self, wait: Duration) -> Refusal {
        let retry_after_s = ceil_seconds(wait).max(1);
        Refusal {
            kind: self.kind,
            retry_after_s,
            rate_limit: rate_limit_header(self.kind, 0, retry_after_s),
        }
    }
}

enum Outcome {
    Allowed { remaining: u32 },
    Refused { wait: Duration },
}

/// What is hashed for an address: IPv4 as is, IPv6 by its /64 prefix (one host usually holds a
/// whole /64), an IPv4-mapped IPv6 address as its IPv4 address; as in the in-memory backend.
fn ip_subject(ip: IpAddr) -> Vec<u8> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            Ipv6Addr::from(prefix).octets().to_vec()
        }
    }
}

fn valid_key_prefix(prefix: &str) -> bool {
    // A brace would change which part of the key Redis Cluster hashes.
    !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '{' && c != '}')
}

/// `host:port` of the URL, for error texts; the URL itself (and its password) stays secret.
fn host_and_port(url: &str) -> Result<String, RedisSetupError> {
    let parsed = url::Url::parse(url).map_err(|_| RedisSetupError::InvalidUrl)?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err(RedisSetupError::InvalidUrl);
    }
    let host = parsed
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or(RedisSetupError::InvalidUrl)?;
    Ok(format!("{host}:{}", parsed.port().unwrap_or(6379)))
}

fn setup_error(addr: &str, url: &SecretString, err: &RedisError) -> RedisSetupError {
    RedisSetupError::Client {
        addr: addr.to_owned(),
        cause: describe(err).redacted(url).to_string(),
    }
}

impl Failure {
    fn redacted(self, url: &SecretString) -> Self {
        match self {
            Self::Connection(text) => Self::Connection(redact(text, url)),
            Self::Server(text) => Self::Server(redact(text, url)),
            Self::Other(text) => Self::Other(redact(text, url)),
            timeout @ Self::Timeout(_) => timeout,
        }
    }
}

/// A failure in words that carry no secret: the server's error code, or the kind of I/O failure.
fn describe(err: &RedisError) -> Failure {
    if let ErrorKind::Server(_) = err.kind()
        && let Some(code) = err.code()
    {
        return Failure::Server(code.to_owned());
    }
    match err.kind() {
        ErrorKind::AuthenticationFailed => Failure::Server("an authentication error".to_owned()),
        ErrorKind::Io if err.is_connection_refusal() => {
            Failure::Connection("connection refused".to_owned())
        }
        ErrorKind::Io if err.is_timeout() => Failure::Connection("timed out".to_owned()),
        ErrorKind::Io if err.is_connection_dropped() => {
            Failure::Connection("connection lost".to_owned())
        }
        // TLS failures are I/O errors too; their text (a certificate problem) helps operators.
        ErrorKind::Io => Failure::Connection(err.to_string()),
        kind => Failure::Other(format!("{kind:?}")),
    }
}

/// Belt and braces: whatever a dependency's error text says, the URL and its password never pass.
fn redact(text: String, url: &SecretString) -> String {
    let url = url.expose_secret();
    let mut text = text.replace(url, "<redis url>");
    if let Ok(parsed) = url::Url::parse(url)
        && let Some(password) = parsed.password()
        && !password.is_empty()
    {
        text = text.replace(password, "<password>");
        if let Ok(decoded) = percent_decode(password) {
            text = text.replace(&decoded, "<password>");
        }
    }
    text
}

fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
}

/// How to make a new connection.
enum Target {
    Single(redis::Client, ConnectionManagerConfig),
    Cluster(ClusterClient, ClusterConfig),
}

impl Target {
    /// A connection that connects on first use (and reconnects by itself after I/O errors), its
    /// tasks on the limiter's runtime.
    fn connect(&self, runtime: &Handle) -> RedisResult<Connection> {
        let _inside = runtime.enter();
        match self {
            Self::Single(client, config) => {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map(Connection::Single)
            }
            Self::Cluster(client, config) => Ok(Connection::Cluster(
                client.get_pending_async_connection_with_config(config.clone()),
            )),
        }
    }
}

/// The current connection, and when to replace it.
struct Link {
    target: Target,
    state: Mutex<LinkState>,
    addr: Arc<str>,
    runtime: Runtime,
    /// Only to redact it from error texts.
    url: SecretString,
}

/// A single-threaded runtime on a thread of its own, for the connection's tasks and calls; it
/// stops when the limiter is dropped.
struct Runtime {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl Runtime {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("redis-rate-limit".to_owned())
            .spawn(move || {
                // Returns when the sender is dropped with the limiter; the runtime and its tasks
                // are dropped here, on their own thread.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }
}

struct LinkState {
    connection: Connection,
    created: Instant,
    failing_since: Option<Instant>,
}

impl Link {
    fn state(&self) -> MutexGuard<'_, LinkState> {
        // The state stays consistent whatever panicked while holding it: every field is written
        // in one assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Connection {
        self.state().connection.clone()
    }

    fn succeeded(&self) {
        self.state().failing_since = None;
    }

    fn failed(&self) {
        let now = Instant::now();
        let mut state = self.state();
        let failing_since = *state.failing_since.get_or_insert(now);
        if now.duration_since(failing_since) < REPLACE_AFTER
            || now.duration_since(state.created) < REPLACE_AFTER
        {
            return;
        }
        match self.target.connect(&self.runtime.handle) {
            Ok(connection) => {
                state.connection = connection;
                state.created = now;
                tracing::info!(
                    redis = %self.addr,
                    "rate limit backend: replacing the Redis connection after a second of failures"
                );
            }
            Err(err) => {
                tracing::warn!(
                    redis = %self.addr,
                    error = %describe(&err).redacted(&self.url),
                    "rate limit backend: could not prepare a new Redis connection"
                );
            }
        }
    }
}

/// A handle to the one multiplexed connection (or the cluster connection); clones share it.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_use_governors_cell_and_tolerance() {
        let limit = Limit::new(LimitKind::PerUser, 6, 3);
        assert_eq!(
            (limit.t_us, limit.tau_us, limit.burst),
            (10_000_000, 20_000_000, 3)
        );
        let zero = Limit::new(LimitKind::PerIp, 0, 0);
        assert_eq!((zero.t_us, zero.tau_us, zero.burst), (60_000_000, 0, 1));
    }

    #[test]
    fn headers_follow_the_in_memory_backend() {
        let limit = Limit::new(LimitKind::PerUser, 6, 3);
        assert_eq!(limit.allowance_header(2), "\"per_user\";r=2;t=10");
        assert_eq!(limit.allowance_header(0), "\"per_user\";r=0;t=30");
        let refusal = limit.refusal(Duration::from_millis(9_001));
        assert_eq!(refusal.retry_after_s, 10);
        assert_eq!(refusal.rate_limit, "\"per_user\";r=0;t=10");
        assert_eq!(limit.refusal(Duration::ZERO).retry_after_s, 1);
    }

    #[test]
    fn addresses_are_hashed_by_their_ipv4_or_ipv6_64() {
        let subject = |ip: &str| ip_subject(ip.parse().unwrap());
        assert_eq!(subject("2001:db8:1:2::1"), subject("2001:db8:1:2:ffff::9"));
        assert_ne!(subject("2001:db8:1:2::1"), subject("2001:db8:1:3::1"));
        assert_eq!(subject("::ffff:198.51.100.4"), subject("198.51.100.4"));
        assert_eq!(subject("198.51.100.4"), vec![198, 51, 100, 4]);
    }

    #[test]
    fn only_host_and_port_are_kept_from_the_url() {
        assert_eq!(
            host_and_port("redis://user:s3cret@cache.internal:6380/2").unwrap(),
            "cache.internal:6380"
        );
        assert_eq!(host_and_port("rediss://[::1]").unwrap(), "[::1]:6379");
        assert!(host_and_port("http://cache:6379").is_err());
        assert!(host_and_port("redis+unix:///tmp/redis.sock").is_err());
        assert!(host_and_port("not a url").is_err());
    }

    #[test]
    fn key_prefixes_cannot_move_the_hash_tag() {
        assert!(valid_key_prefix("proof-bff"));
        assert!(valid_key_prefix("app:prod"));
        for bad in ["", "a{b", "a}b", "a b", "a\nb"] {
            assert!(!valid_key_prefix(bad), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_redacted_from_dependency_texts() {
        let url = SecretString::from("redis://app:p%40ss@cache:6379");
        let text = redact(
            "failed redis://app:p%40ss@cache:6379 with p@ss and p%40ss".to_owned(),
            &url,
        );
        assert_eq!(text, "failed <redis url> with <password> and <password>");
    }
}
