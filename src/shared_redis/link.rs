//! The connection to the shared Redis: one multiplexed connection (or cluster connection) on a
//! thread of its own, every call bounded by the timeout, replaced after a second of failures; and
//! one more on each HTTP worker's thread, so a request's call never leaves its worker.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use percent_encoding::percent_decode_str;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, FromRedisValue, RedisError, RedisFuture, RedisResult, Script, ServerErrorKind,
    ToRedisArgs, Value,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use super::{BackendError, Failure, RedisSettings, RedisSetupError};
use crate::side_thread::SideThread;

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

/// Tells links apart in the threads' tables of their own connections.
static NEXT_LINK_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The connections this thread made for itself with [`RedisLink::connect_this_thread`], by link.
    /// Their tasks run on this thread's runtime, which lives as long as the thread.
    static OWN_CONNECTIONS: RefCell<Vec<(u64, LinkState)>> = const { RefCell::new(Vec::new()) };
}

/// The shared Redis: one per process, shared by every worker and every capability that keeps
/// state there (it is `Send + Sync`); calls may be awaited on any tokio runtime with time enabled.
///
/// A call runs on the link's own thread unless the calling thread has a connection of its own
/// ([`connect_this_thread`](Self::connect_this_thread)): an HTTP worker does, so a checkout's call
/// is written and its answer read by the worker's own event loop, without waking another thread
/// twice per call. Concurrent calls on one connection are pipelined on it either way.
pub struct RedisLink {
    id: u64,
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
    /// Checks the URL and timeout and prepares how to connect, without starting anything: no
    /// thread, no connection, so a configuration check can build one and leave nothing behind.
    /// [`start`](Self::start) starts the connection's thread; a link never started starts it on
    /// its first call.
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
        Ok(Self {
            id: NEXT_LINK_ID.fetch_add(1, Ordering::Relaxed),
            link: Link {
                target,
                running: OnceLock::new(),
                starting: Mutex::new(()),
                addr: addr.clone(),
                url,
            },
            timeout,
            addr,
            cluster,
        })
    }

    /// Starts the connection's thread and prepares its connection, without waiting for Redis: a
    /// replica may start while Redis is down, its calls fail with [`BackendError`] until Redis is
    /// reachable, and [`ping`](Self::ping) tells readiness. Does nothing once started. Fails when
    /// the system refuses the thread, so a start-up fails loudly rather than serving without it.
    pub fn start(&self) -> Result<(), RedisSetupError> {
        self.link.running().map(drop)
    }

    /// Gives the calling thread a connection of its own, used by every later call made on this
    /// thread. Only for a thread whose tokio runtime lives as long as the thread, as an HTTP
    /// worker's does: the connection's tasks run on that runtime. Does nothing outside a runtime
    /// or when the thread has one already; connects on first use, as the link's own does.
    pub fn connect_this_thread(&self) {
        let Ok(runtime) = Handle::try_current() else {
            return;
        };
        let _ = OWN_CONNECTIONS.try_with(|own| {
            let mut own = own.borrow_mut();
            if own.iter().any(|(id, _)| *id == self.id) {
                return;
            }
            match self.link.target.connect(&runtime) {
                Ok(connection) => own.push((self.id, LinkState::new(connection))),
                Err(err) => tracing::warn!(
                    redis = %self.addr,
                    error = %describe(&err).redacted(&self.link.url),
                    "shared Redis: could not prepare this worker's connection; its calls go through the shared one"
                ),
            }
        });
    }

    /// One `PING`, bounded by the timeout (for a cluster: every node): for `/readyz`.
    pub async fn ping(&self) -> Result<(), BackendError> {
        self.call(
            |mut connection| async move {
                redis::cmd("PING").query_async::<()>(&mut connection).await
            },
            None,
        )
        .await
    }

    /// One command, bounded by the timeout.
    pub async fn query<T>(&self, command: Cmd) -> Result<T, BackendError>
    where
        T: FromRedisValue + Send + 'static,
    {
        self.query_with(command, None).await
    }

    /// One command, bounded by the timeout, whose effect must not outlive a caller that did not
    /// hear its answer: unless it answered, `undo` follows it on the same connection, in the
    /// background, for at most `undo_within`. That covers a call that timed out on our side, one
    /// whose connection broke, and one whose caller was dropped while waiting (a client that left).
    ///
    /// The same connection matters: a command that timed out may still be sitting in a stalled
    /// Redis's socket buffer, and only a command written after it on that connection is sure to run
    /// after it; one sent on another connection could run first and undo nothing. `undo` must be
    /// harmless when `command` never ran (a compare-and-delete of a value unique to the caller).
    /// After `undo_within` it is abandoned: by then what it undoes has expired by itself.
    pub async fn query_or_undo<T>(
        &self,
        command: Cmd,
        undo: Cmd,
        undo_within: Duration,
    ) -> Result<T, BackendError>
    where
        T: FromRedisValue + Send + 'static,
    {
        self.query_with(command, Some((undo, undo_within))).await
    }

    async fn query_with<T>(
        &self,
        command: Cmd,
        undo: Option<(Cmd, Duration)>,
    ) -> Result<T, BackendError>
    where
        T: FromRedisValue + Send + 'static,
    {
        self.call(
            move |mut connection| {
                let command = command.clone();
                async move { command.query_async(&mut connection).await }
            },
            undo,
        )
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
        A: ToRedisArgs + Send + Sync + 'static,
    {
        self.eval_keys(script, [key], args).await
    }

    /// A script on `N` keys (on a cluster: in one slot), as [`eval`](Self::eval).
    pub async fn eval_keys<T, A, const N: usize>(
        &self,
        script: &LuaScript,
        keys: [String; N],
        args: A,
    ) -> Result<T, BackendError>
    where
        T: FromRedisValue + Send + 'static,
        A: ToRedisArgs + Send + Sync + 'static,
    {
        let (sha, text) = (script.sha.clone(), script.text);
        // Shared by both tries of the call (see `call`).
        let parts = Arc::new((keys, args));
        self.call(
            move |mut connection| {
                let (sha, parts) = (sha.clone(), parts.clone());
                async move {
                    let (keys, args) = &*parts;
                    let mut evalsha = redis::cmd("EVALSHA");
                    evalsha.arg(&*sha).arg(N).arg(keys).arg(args);
                    match evalsha.query_async(&mut connection).await {
                        Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                            let mut eval = redis::cmd("EVAL");
                            eval.arg(text).arg(N).arg(keys).arg(args);
                            eval.query_async(&mut connection).await
                        }
                        answer => answer,
                    }
                }
            },
            None,
        )
        .await
    }

    /// Whether this is a Redis Cluster, where one script's keys must share a slot.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Runs `command` in the background, unbounded by any request: for clean-up that must not
    /// wait for, nor fail, the request that needs it (a dropped request releasing its lock).
    pub fn spawn_detached(&self, command: Cmd) {
        match self.link.running() {
            Ok(running) => run_detached(
                running.thread.handle(),
                running.current(),
                command,
                self.timeout,
            ),
            Err(error) => tracing::warn!(
                redis = %self.addr,
                %error,
                "shared Redis: a clean-up was not sent"
            ),
        }
    }

    /// One call bounded by the timeout: on this thread's own connection if it has one, otherwise
    /// on the link's, from the link's thread. A connection is replaced after a second of failures.
    ///
    /// A call that finds its connection lost (Redis restarted, or closed an idle connection) is
    /// made once more, within the same timeout, on the connection that replaces it: a worker's
    /// connection hears of a restart only when it is next used, and that request must not pay for
    /// it. The lost call may have run before the connection went (rarely: it had to be in flight at
    /// that moment), so every call must bear running twice: pings and reads do, a claim knows its
    /// own lock, a finish its own answer, and a limit counts one request twice at worst.
    async fn call<T, F, Fut>(
        &self,
        operation: F,
        undo: Option<(Cmd, Duration)>,
    ) -> Result<T, BackendError>
    where
        F: Fn(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (route, connection) = match self.own_connection() {
            Some(connection) => (Route::ThisThread, connection),
            None => match self.link.running() {
                Ok(running) => (Route::LinkThread, running.current()),
                Err(error) => return Err(self.error(Failure::Other(error.to_string()))),
            },
        };
        // Armed until the call is answered: dropped with this future, it sends the undo. Declared
        // before the call is awaited, so dropped after it (see `on_link_thread`).
        let pending = undo.and_then(|(command, within)| {
            let runtime = self.runtime(route)?;
            Some(PendingUndo::new(
                runtime,
                connection.clone(),
                command,
                within,
            ))
        });
        let answer = match route {
            Route::ThisThread => {
                tokio::time::timeout(self.timeout, once_more_if_lost(connection, operation))
                    .await
                    .map_err(|_| Failure::Timeout(self.timeout))
            }
            Route::LinkThread => self.on_link_thread(connection, operation).await,
        };
        let outcome =
            answer.and_then(|answer| answer.map_err(|err| describe(&err).redacted(&self.link.url)));
        match &outcome {
            Ok(_) => {
                if let Some(pending) = pending {
                    pending.answered();
                }
                self.with_state(route, LinkState::succeeded);
            }
            // The runtime is looked up only when a replacement may be needed.
            Err(_) => {
                if let Some(runtime) = self.runtime(route) {
                    self.with_state(route, |state| state.failed(&self.link, &runtime));
                }
            }
        }
        outcome.map_err(|failure| self.error(failure))
    }

    /// Runs the call as a task on the link's thread, and waits for it within the timeout.
    async fn on_link_thread<T, F, Fut>(
        &self,
        connection: Connection,
        operation: F,
    ) -> Result<RedisResult<T>, Failure>
    where
        F: Fn(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        // The link runs: the connection came from it.
        let Some(running) = self.link.running.get() else {
            return Err(Failure::Other(
                "the shared Redis connection's thread is not running".to_owned(),
            ));
        };
        let task = running
            .thread
            .handle()
            .spawn(once_more_if_lost(connection, operation));
        // Dropped before the caller's undo: an abandoned call's task is aborted first, and the
        // undo is queued behind whatever the task wrote (both run on the link's one thread).
        let _abort = AbortOnDrop(task.abort_handle());
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(answer)) => Ok(answer),
            // The call panicked, or the connection's thread is gone (which a live link never lets
            // happen).
            Ok(Err(_)) => Err(Failure::Other(
                "the Redis call ended without an answer".to_owned(),
            )),
            // Abandoned (see `AbortOnDrop`).
            Err(_) => Err(Failure::Timeout(self.timeout)),
        }
    }

    /// The runtime a call's undo and a replacement connection go to: the calling thread's for its
    /// own connection (none outside a runtime), the link's for the link's.
    fn runtime(&self, route: Route) -> Option<Handle> {
        match route {
            Route::ThisThread => Handle::try_current().ok(),
            Route::LinkThread => Some(self.link.running.get()?.thread.handle().clone()),
        }
    }

    /// Updates the state of the connection a call went out on.
    fn with_state(&self, route: Route, update: impl FnOnce(&mut LinkState)) {
        match route {
            Route::ThisThread => {
                let _ = OWN_CONNECTIONS.try_with(|own| {
                    if let Some((_, state)) =
                        own.borrow_mut().iter_mut().find(|(id, _)| *id == self.id)
                    {
                        update(state);
                    }
                });
            }
            Route::LinkThread => {
                if let Some(running) = self.link.running.get() {
                    update(&mut running.state());
                }
            }
        }
    }

    fn own_connection(&self) -> Option<Connection> {
        OWN_CONNECTIONS
            .try_with(|own| {
                own.borrow()
                    .iter()
                    .find(|(id, _)| *id == self.id)
                    .map(|(_, state)| state.connection.clone())
            })
            .ok()
            .flatten()
    }

    fn error(&self, failure: Failure) -> BackendError {
        BackendError {
            addr: self.addr.clone(),
            failure,
        }
    }
}

/// Which connection a call goes out on.
#[derive(Clone, Copy)]
enum Route {
    /// The calling thread's own ([`RedisLink::connect_this_thread`]), from the calling task.
    ThisThread,
    /// The link's, from a task on the link's thread.
    LinkThread,
}

/// `operation`, and once more if it found its connection lost: the connection then reconnects
/// (or already has, in the background), so the second try goes out on a fresh one. Not when
/// Redis refused the connection: it is down, and trying again at once would only be refused again.
async fn once_more_if_lost<T, F, Fut>(connection: Connection, operation: F) -> RedisResult<T>
where
    F: Fn(Connection) -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    match operation(connection.clone()).await {
        Err(err) if err.is_connection_dropped() && !err.is_connection_refusal() => {
            tracing::debug!("shared Redis: the connection was lost; trying once more");
            operation(connection).await
        }
        answer => answer,
    }
}

/// Sends `command` on `connection` from a task on `runtime`, waiting at most `within` for it.
/// Waiting matters: a command whose caller stopped waiting before it was written is never sent.
fn run_detached(runtime: &Handle, mut connection: Connection, command: Cmd, within: Duration) {
    runtime.spawn(async move {
        let _ = tokio::time::timeout(within, command.query_async::<Value>(&mut connection)).await;
    });
}

/// Aborts a call's task on the link's thread when the call is over: one abandoned (its timeout,
/// or its caller dropped, say a client that left) is not left queued behind newer calls, nor sent
/// after its undo, nor tried again.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The undo of a call still waiting for its answer: sent when dropped, unless
/// [`answered`](Self::answered) first.
struct PendingUndo {
    runtime: Handle,
    connection: Connection,
    undo: Option<(Cmd, Duration)>,
}

impl PendingUndo {
    fn new(runtime: Handle, connection: Connection, command: Cmd, within: Duration) -> Self {
        Self {
            runtime,
            connection,
            undo: Some((command, within)),
        }
    }

    fn answered(mut self) {
        self.undo = None;
    }
}

impl Drop for PendingUndo {
    fn drop(&mut self) {
        if let Some((command, within)) = self.undo.take() {
            run_detached(&self.runtime, self.connection.clone(), command, within);
        }
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
        if let Ok(decoded) = percent_decode_str(password).decode_utf8() {
            text = text.replace(&*decoded, "<password>");
        }
    }
    text
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

/// How to connect, and the connection's thread once started.
struct Link {
    target: Target,
    /// `shared-redis` and its connection, from [`RedisLink::start`] (or the first call) on.
    running: OnceLock<Running>,
    /// Held while the thread starts, so two first calls start one thread.
    starting: Mutex<()>,
    addr: Arc<str>,
    /// Only to redact it from error texts.
    url: SecretString,
}

/// The link's own thread and its current connection.
struct Running {
    /// `shared-redis`: its runtime drives the link's connection and runs the calls made on it. It
    /// stops when the link is dropped.
    thread: SideThread,
    state: Mutex<LinkState>,
}

struct LinkState {
    connection: Connection,
    created: Instant,
    failing_since: Option<Instant>,
}

impl Link {
    /// The running thread, started now if it was not yet. The application starts it before it
    /// serves, so a call never waits here for a thread to start.
    fn running(&self) -> Result<&Running, RedisSetupError> {
        if let Some(running) = self.running.get() {
            return Ok(running);
        }
        let _one_start = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = self.running.get() {
            return Ok(running);
        }
        // Nothing of its own to run: the connection's tasks and the calls are handed to it.
        let thread = SideThread::start("shared-redis", std::future::pending)
            .map_err(RedisSetupError::Thread)?;
        let connection = self
            .target
            .connect(thread.handle())
            .map_err(|err| setup_error(&self.addr, &self.url, &err))?;
        Ok(self.running.get_or_init(|| Running {
            thread,
            state: Mutex::new(LinkState::new(connection)),
        }))
    }
}

impl Running {
    fn state(&self) -> MutexGuard<'_, LinkState> {
        // The state stays consistent whatever panicked while holding it: every field is written
        // in one assignment.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn current(&self) -> Connection {
        self.state().connection.clone()
    }
}

impl LinkState {
    fn new(connection: Connection) -> Self {
        Self {
            connection,
            created: Instant::now(),
            failing_since: None,
        }
    }

    fn succeeded(&mut self) {
        self.failing_since = None;
    }

    /// After a second of nothing but failures, a new connection with its tasks on `runtime`.
    fn failed(&mut self, link: &Link, runtime: &Handle) {
        let now = Instant::now();
        let failing_since = *self.failing_since.get_or_insert(now);
        if now.duration_since(failing_since) < REPLACE_AFTER
            || now.duration_since(self.created) < REPLACE_AFTER
        {
            return;
        }
        match link.target.connect(runtime) {
            Ok(connection) => {
                self.connection = connection;
                self.created = now;
                tracing::info!(
                    redis = %link.addr,
                    "shared Redis: replacing the connection after a second of failures"
                );
            }
            Err(err) => {
                tracing::warn!(
                    redis = %link.addr,
                    error = %describe(&err).redacted(&link.url),
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
