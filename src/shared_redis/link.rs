//! The connection to the shared Redis: one multiplexed connection (or cluster connection) on a
//! thread of its own, every call bounded by the timeout, replaced after a second of failures.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, FromRedisValue, RedisError, RedisFuture, RedisResult, Script, ServerErrorKind,
    ToRedisArgs, Value,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::{BackendError, Failure, RedisSettings, RedisSetupError};

/// How long nothing but failures must last before the connection is replaced; also the least time
/// between two replacements, so a Redis that stays down costs one new connection a second.
const REPLACE_AFTER: Duration = Duration::from_secs(1);

/// A connection attempt may outlive the call that started it (later calls wait on the same
/// attempt), so a TLS handshake over a slow link can still finish when the timeout is tight.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A Lua script and its SHA1, for `EVALSHA`.
#[derive(Debug, Clone)]
pub struct LuaScript {
    text: &'static str,
    sha: Arc<str>,
}

impl LuaScript {
    pub fn new(text: &'static str) -> Self {
        Self {
            text,
            sha: Script::new(text).get_hash().into(),
        }
    }
}

/// The shared Redis: one per process, shared by every worker and every capability that keeps
/// state there (it is `Send + Sync`); calls may be awaited on any tokio runtime with time enabled.
pub struct RedisLink {
    link: Link,
    timeout: Duration,
    addr: Arc<str>,
    cluster: bool,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("addr", &self.addr)
            .field("cluster", &self.cluster)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Checks the URL and timeout, starts the connection's thread and prepares the connection,
    /// without waiting for Redis: a replica may start while Redis is down, its calls fail with
    /// [`BackendError`] until Redis is reachable, and [`ping`](Self::ping) tells readiness. Needs no
    /// runtime, so a configuration check can build one too.
    pub fn new(settings: &RedisSettings) -> Result<Self, RedisSetupError> {
        let RedisSettings {
            url,
            cluster,
            timeout,
            ..
        } = settings;
        let (url, cluster, timeout) = (url.clone(), *cluster, *timeout);
        if timeout.is_zero() {
            return Err(RedisSetupError::ZeroTimeout);
        }
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
            timeout,
            addr,
            cluster,
        })
    }

    /// One `PING`, bounded by the timeout (for a cluster: every node): for `/readyz`.
    pub async fn ping(&self) -> Result<(), BackendError> {
        self.call(|mut connection| async move {
            redis::cmd("PING").query_async::<()>(&mut connection).await
        })
        .await
    }

    /// One command, bounded by the timeout.
    pub async fn query<T>(&self, command: Cmd) -> Result<T, BackendError>
    where
        T: FromRedisValue + Send + 'static,
    {
        self.call(|mut connection| async move { command.query_async(&mut connection).await })
            .await
    }

    /// A script on one key, by its SHA1, sent again with its text if Redis does not know it.
    pub async fn eval<T, A>(
        &self,
        script: &LuaScript,
        key: String,
        args: A,
    ) -> Result<T, BackendError>
    where
        T: FromRedisValue + Send + 'static,
        A: ToRedisArgs + Send + 'static,
    {
        let (sha, text) = (script.sha.clone(), script.text);
        self.call(|mut connection| async move {
            let mut evalsha = redis::cmd("EVALSHA");
            evalsha.arg(&*sha).arg(1).arg(&key).arg(&args);
            match evalsha.query_async(&mut connection).await {
                Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    let mut eval = redis::cmd("EVAL");
                    eval.arg(text).arg(1).arg(&key).arg(&args);
                    eval.query_async(&mut connection).await
                }
                answer => answer,
            }
        })
        .await
    }

    /// Runs `command` in the background, unbounded by any request: for clean-up that must not
    /// wait for, nor fail, the request that needs it (a dropped request releasing its lock).
    pub fn spawn_detached(&self, command: Cmd) {
        let mut connection = self.link.current();
        let timeout = self.timeout;
        self.link.runtime.handle.spawn(async move {
            let _ =
                tokio::time::timeout(timeout, command.query_async::<Value>(&mut connection)).await;
        });
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
            // The call panicked, or the connection's thread is gone (which a live link never lets
            // happen).
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
    /// tasks on the link's runtime.
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
/// stops when the link is dropped.
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
            .name("shared-redis".to_owned())
            .spawn(move || {
                // Returns when the sender is dropped with the link; the runtime and its tasks
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
                    "shared Redis: replacing the connection after a second of failures"
                );
            }
            Err(err) => {
                tracing::warn!(
                    redis = %self.addr,
                    error = %describe(&err).redacted(&self.url),
                    "shared Redis: could not prepare a new connection"
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
    fn passwords_are_redacted_from_dependency_texts() {
        let url = SecretString::from("redis://app:p%40ss@cache:6379");
        let text = redact(
            "failed redis://app:p%40ss@cache:6379 with p@ss and p%40ss".to_owned(),
            &url,
        );
        assert_eq!(text, "failed <redis url> with <password> and <password>");
    }
}
