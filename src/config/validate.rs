//! Every setting checked and turned into the typed value the service runs on, before anything is
//! bound or called, so `check-config` catches every problem start-up could hit. Each problem is one
//! line naming the key; a secret or a URL's password is never quoted.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;
use super::listen::ListenAddress;
use super::range::range;
use super::secrets::read_secret;
use super::session::validate_session;
use super::settings::*;
use crate::browser::BrowserConfig;
use crate::browser::origin::{AllowedOrigins, normalise_origin};
use crate::checkout::CheckoutPolicy;
use crate::client_ip::{ClientIpResolver, ClientIpSource, TrustedProxies};
use crate::http::{HTTPS_UNLESS_LOOPBACK, UrlRules, outbound_url};
use crate::idempotency::{IdempotencyConfig, IdempotencyStore};
use crate::proof::{
    MAX_CLIENT_TOKEN_BYTES, ProofConfig, ProofEndpoint, ProofEndpointSettings, check_client_token,
};
use crate::rate_limit::redis::RedisLimiter;
use crate::rate_limit::{
    BackendErrorPolicy, RateLimitConfig, RateLimits, key_secret_from_client_token,
};
use crate::session::{DevSession, SessionSource};
use crate::shared_redis::{KeyHasher, RedisLink, RedisSettings, RedisSetupError};
use crate::status::StatusConfig;
use crate::telemetry::{LogConfig, TracesConfig};
use crate::tls_roots::TlsRoots;

/// Everything the service runs on, checked.
#[derive(Debug)]
pub struct AppConfig {
    pub server: ServerConfig,
    pub proof: ProofConfig,
    pub browser: BrowserConfig,
    pub session: SessionSource,
    pub client_ip: ClientIpResolver,
    pub checkout: CheckoutPolicy,
    /// The limits with their backend, built (not yet connected, for Redis).
    pub rate_limit: RateLimits,
    /// Where `Idempotency-Key` answers and dedupe locks are kept: the rate limits' backend.
    pub idempotency: IdempotencyStore,
    pub status: StatusConfig,
    /// Where `GET /metrics` is served; `None`: nowhere.
    pub metrics_listen: Option<ListenAddress>,
    /// Where traces are exported, and how many; `None`: traces off.
    pub traces: Option<TracesConfig>,
    pub log: LogConfig,
    /// Set only by `--sandbox`, never from the file or the environment: it adds the dev login and
    /// the demo page.
    pub sandbox: Option<DevSession>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: ListenAddress,
    pub workers: usize,
    pub shutdown_timeout: Duration,
    /// After SIGTERM: `/readyz` answers 503 while everything is still served, for this long.
    pub drain_delay: Duration,
    /// A request's headers and body must both arrive within this.
    pub client_request_timeout: Duration,
    /// Zero turns keep-alive off: every connection closes after its response.
    pub keep_alive: Duration,
    /// For the whole instance; split across the workers when the server starts.
    pub max_connections: usize,
    pub max_body_bytes: usize,
}

const MAX_ATTEMPTS_LIMIT: u32 = 10;
/// The HTTP server checks header deadlines against a clock it refreshes every 500 ms, so a
/// shorter timeout can end before the client had any time at all: every request would get 408.
const MIN_CLIENT_REQUEST_TIMEOUT_MS: u64 = 1000;
const MAX_CLIENT_REQUEST_TIMEOUT_MS: u64 = 3_600_000;
/// A drain must have time to finish a request in flight.
const MIN_SHUTDOWN_TIMEOUT_S: u64 = 1;
/// Below these no connection to Proof (a TCP and TLS handshake across the internet), and no
/// answer from it, could arrive in time: every checkout would fail.
const MIN_PROOF_CONNECT_TIMEOUT_MS: u64 = 100;
const MIN_PROOF_REQUEST_TIMEOUT_MS: u64 = 200;
const MIN_PROOF_DEADLINE_MS: u64 = 200;
const MAX_KEEP_ALIVE_S: u64 = 3600;
const MAX_DRAIN_DELAY_S: u64 = 600;
const MAX_TOKEN_RELOAD_S: u64 = 86_400;
/// Far above what one instance's file descriptors allow; a larger number is a typo.
const MAX_PROOF_CONNECTIONS: usize = 1_000_000;

impl Settings {
    /// Checks every key and builds the values the service runs on.
    pub fn validate(self) -> Result<AppConfig, ConfigError> {
        let metrics_listen = validate_metrics(&self.metrics, &self.server.listen)?;
        let traces = validate_telemetry(&self.telemetry)?;
        let (proof, rate_limit_key_secret) = validate_proof(self.proof)?;
        // Before the session: a session source may depend on which peers are trusted.
        let client_ip = validate_client_ip(self.client_ip)?;
        let (rate_limit, shared_backend) =
            validate_rate_limit(self.rate_limit, &rate_limit_key_secret)?;
        let idempotency =
            validate_idempotency(&self.checkout, shared_backend, proof.endpoint.deadline())?;
        Ok(AppConfig {
            server: validate_server(self.server)?,
            proof,
            browser: validate_browser(self.browser)?,
            session: validate_session(self.session, &client_ip)?,
            client_ip,
            checkout: CheckoutPolicy::from_config(
                &self.checkout.networks,
                &self.checkout.currencies,
                &self.checkout.types,
                &self.checkout.redirect_url_origins,
                self.checkout.max_amount.trim(),
            )
            .map_err(ConfigError)?,
            rate_limit,
            idempotency,
            status: validate_status(self.status)?,
            metrics_listen,
            traces,
            log: validate_log(self.log)?,
            sandbox: None,
        })
    }
}

fn validate_server(s: ServerSettings) -> Result<ServerConfig, ConfigError> {
    let listen =
        ListenAddress::parse(&s.listen).map_err(|e| ConfigError::key("server.listen", e))?;
    range(
        "server.max_body_bytes",
        s.max_body_bytes,
        1..=usize::MAX,
        "",
    )?;
    // Below the lower bound honest requests time out (even /healthz); the upper bounds keep
    // deadlines far from the clock's range.
    range(
        "server.client_request_timeout_ms",
        s.client_request_timeout_ms,
        MIN_CLIENT_REQUEST_TIMEOUT_MS..=MAX_CLIENT_REQUEST_TIMEOUT_MS,
        " (the server's clock has 500 ms granularity: a shorter timeout refuses honest requests with 408)",
    )?;
    range(
        "server.shutdown_timeout_s",
        s.shutdown_timeout_s,
        MIN_SHUTDOWN_TIMEOUT_S..=u64::MAX,
        ": a drain needs time to finish the requests in flight",
    )?;
    range(
        "server.keep_alive_s",
        s.keep_alive_s,
        0..=MAX_KEEP_ALIVE_S,
        " (0 turns keep-alive off)",
    )?;
    range(
        "server.drain_delay_s",
        s.drain_delay_s,
        0..=MAX_DRAIN_DELAY_S,
        "",
    )?;
    range(
        "server.max_connections",
        s.max_connections,
        1..=usize::MAX,
        "",
    )?;
    Ok(ServerConfig {
        listen,
        workers: s.workers,
        shutdown_timeout: Duration::from_secs(s.shutdown_timeout_s),
        drain_delay: Duration::from_secs(s.drain_delay_s),
        client_request_timeout: Duration::from_millis(s.client_request_timeout_ms),
        keep_alive: Duration::from_secs(s.keep_alive_s),
        max_connections: s.max_connections,
        max_body_bytes: s.max_body_bytes,
    })
}

/// Proof's settings, and the rate limit backend's key secret derived from the client token.
fn validate_proof(s: ProofSettings) -> Result<(ProofConfig, [u8; 32]), ConfigError> {
    let (base_url, widget_session_url) = widget_session_url(&s.base_url)?;
    let token_key = if s.client_token_file.trim().is_empty() {
        "proof.client_token"
    } else {
        "proof.client_token_file"
    };
    let client_token = read_secret(
        "proof.client_token",
        s.client_token,
        "proof.client_token_file",
        &s.client_token_file,
        MAX_CLIENT_TOKEN_BYTES,
    )?
    .ok_or_else(|| {
        ConfigError::key(
            "proof.client_token",
            "is required (or proof.client_token_file, or PROOF_BFF__PROOF__CLIENT_TOKEN)",
        )
    })?;
    // The checks every reload of the file makes too.
    check_client_token(client_token.expose_secret())
        .map_err(|problem| ConfigError::key(token_key, problem))?;
    let rate_limit_key_secret = key_secret_from_client_token(client_token.expose_secret());
    let origin = normalise_origin(&s.origin).map_err(|e| ConfigError::key("proof.origin", e))?;
    let at_least = |key: &str, ms: u64, min: u64| {
        range(
            key,
            ms,
            min..=u64::MAX,
            ": shorter, no call to Proof could succeed",
        )
        .map(Duration::from_millis)
    };
    let connect_timeout = at_least(
        "proof.connect_timeout_ms",
        s.connect_timeout_ms,
        MIN_PROOF_CONNECT_TIMEOUT_MS,
    )?;
    let request_timeout = at_least(
        "proof.request_timeout_ms",
        s.request_timeout_ms,
        MIN_PROOF_REQUEST_TIMEOUT_MS,
    )?;
    let deadline = at_least("proof.deadline_ms", s.deadline_ms, MIN_PROOF_DEADLINE_MS)?;
    range(
        "proof.max_attempts",
        s.max_attempts,
        1..=MAX_ATTEMPTS_LIMIT,
        "",
    )?;
    range(
        "proof.max_connections",
        s.max_connections,
        1..=MAX_PROOF_CONNECTIONS,
        "",
    )?;
    range(
        "proof.token_reload_s",
        s.token_reload_s,
        0..=MAX_TOKEN_RELOAD_S,
        " (0: only on SIGHUP)",
    )?;
    let address = s.address.trim();
    if address.len() > 256 || address.chars().any(char::is_control) {
        return Err(ConfigError::key(
            "proof.address",
            "must be at most 256 printable characters",
        ));
    }
    let endpoint = ProofEndpoint::new(&ProofEndpointSettings {
        widget_session_url,
        base_url,
        client_token,
        client_token_file: (!s.client_token_file.trim().is_empty())
            .then(|| std::path::PathBuf::from(s.client_token_file.trim())),
        origin,
        connect_timeout,
        request_timeout,
        deadline,
        max_attempts: s.max_attempts,
        max_connections: s.max_connections,
    })
    .map_err(ConfigError)?;
    Ok((
        ProofConfig {
            endpoint,
            address: (!address.is_empty()).then(|| address.to_owned()),
            token_reload: Duration::from_secs(s.token_reload_s),
        },
        rate_limit_key_secret,
    ))
}

/// The base URL, checked, and `POST /widget/session`'s URL under it.
fn widget_session_url(base_url: &str) -> Result<(url::Url, String), ConfigError> {
    const KEY: &str = "proof.base_url";
    if base_url.trim().is_empty() {
        return Err(ConfigError::key(
            KEY,
            "is required: the base URL Proof gave you at onboarding",
        ));
    }
    let url = outbound_url(
        base_url,
        &UrlRules {
            not_http: "must be an https:// URL",
            credentials: "must not carry a user name or password: the client token is the credential",
            query_allowed: false,
            // The client token travels in every request: in clear text only to this very machine.
            https_unless_loopback: Some(HTTPS_UNLESS_LOOPBACK),
        },
    )
    .map_err(|problem| ConfigError::key(KEY, problem))?;
    let base = url.as_str().trim_end_matches('/');
    let widget_session = format!("{base}/widget/session");
    Ok((url, widget_session))
}

fn validate_browser(s: BrowserSettings) -> Result<BrowserConfig, ConfigError> {
    let allowed_origins = AllowedOrigins::parse(&s.allowed_origins)
        .map_err(|e| ConfigError::key("browser.allowed_origins", e))?;
    Ok(BrowserConfig {
        allowed_origins,
        require_csrf_header: s.require_csrf_header,
        allow_missing_origin: s.allow_missing_origin,
    })
}

fn validate_client_ip(s: ClientIpSettings) -> Result<ClientIpResolver, ConfigError> {
    let trusted = TrustedProxies::parse(&s.trusted_proxies)
        .map_err(|e| ConfigError::key("client_ip.trusted_proxies", e))?;
    let source =
        ClientIpSource::parse(&s.source).map_err(|e| ConfigError::key("client_ip.source", e))?;
    Ok(ClientIpResolver::new(trusted, source))
}

/// A Redis URL is a line; a file far larger than any is a wrong file.
const MAX_REDIS_URL_FILE_BYTES: u64 = 64 * 1024;
/// Below this even a Redis beside the service (a round trip of well under a millisecond, a
/// connection's handshake of a few) would often count as unreachable.
const MIN_REDIS_TIMEOUT_MS: u64 = 10;
const MAX_REDIS_TIMEOUT_MS: u64 = 60_000;

/// The shared Redis, for the other state that lives beside the limits.
struct SharedBackend {
    link: Arc<RedisLink>,
    keys: KeyHasher,
    on_error: BackendErrorPolicy,
}

fn validate_rate_limit(
    s: RateLimitSettings,
    key_secret: &[u8],
) -> Result<(RateLimits, Option<SharedBackend>), ConfigError> {
    // Checked whatever the backend, so a URL prepared for the shared backend is known good (and
    // a secret set twice is caught) before the deployment depends on it.
    let file_given = !s.redis_url_file.trim().is_empty();
    let url_key = if file_given {
        "rate_limit.redis_url_file"
    } else {
        "rate_limit.redis_url"
    };
    let redis_url = read_secret(
        "rate_limit.redis_url",
        s.redis_url,
        "rate_limit.redis_url_file",
        &s.redis_url_file,
        MAX_REDIS_URL_FILE_BYTES,
    )?;
    if let Some(redis_url) = &redis_url {
        validate_redis_url(redis_url).map_err(|problem| ConfigError::key(url_key, problem))?;
    }
    range(
        "rate_limit.redis_timeout_ms",
        s.redis_timeout_ms,
        MIN_REDIS_TIMEOUT_MS..=MAX_REDIS_TIMEOUT_MS,
        " (shorter, a healthy Redis would count as unreachable)",
    )?;
    for (key, value) in [
        ("rate_limit.per_user_burst", s.per_user_burst),
        ("rate_limit.per_user_per_minute", s.per_user_per_minute),
        ("rate_limit.per_ip_burst", s.per_ip_burst),
        ("rate_limit.per_ip_per_minute", s.per_ip_per_minute),
        (
            "rate_limit.status_per_user_per_minute",
            s.status_per_user_per_minute,
        ),
    ] {
        range(key, value, 1..=u32::MAX, "")?;
    }
    let quotas = RateLimitConfig {
        per_user_burst: s.per_user_burst,
        per_user_per_minute: s.per_user_per_minute,
        per_ip_burst: s.per_ip_burst,
        per_ip_per_minute: s.per_ip_per_minute,
        status_per_user_per_minute: s.status_per_user_per_minute,
    };
    if s.backend == RateLimitBackend::Memory {
        return Ok((RateLimits::memory(&quotas), None));
    }
    let url = redis_url.ok_or_else(|| {
        ConfigError::key(
            "rate_limit.redis_url",
            "is required when rate_limit.backend is \"redis\" (or rate_limit.redis_url_file)",
        )
    })?;
    let settings = RedisSettings {
        url: SecretString::from(url.expose_secret().trim()),
        cluster: s.redis_cluster,
        key_prefix: s.redis_key_prefix,
        timeout: Duration::from_millis(s.redis_timeout_ms),
    };
    // Built here, without connecting, so check-config sees every fault start-up would.
    let redis_error = |error| match error {
        RedisSetupError::InvalidUrl => {
            ConfigError::key(url_key, "must be redis://host[:port][/db] or rediss://…")
        }
        RedisSetupError::InvalidKeyPrefix => ConfigError::key(
            "rate_limit.redis_key_prefix",
            "must not be empty nor contain braces, spaces or control characters",
        ),
        RedisSetupError::ZeroTimeout => {
            ConfigError::key("rate_limit.redis_timeout_ms", "must be at least 1")
        }
        // The cause names the fault, never the URL or its password.
        RedisSetupError::Client { cause, .. } => {
            ConfigError::key(url_key, format!("is not usable: {cause}"))
        }
        error @ (RedisSetupError::ShortKeySecret | RedisSetupError::Thread(_)) => {
            ConfigError::key("rate_limit.backend", error)
        }
    };
    let keys = KeyHasher::new(&settings.key_prefix, key_secret).map_err(redis_error)?;
    let link = Arc::new(RedisLink::new(&settings).map_err(redis_error)?);
    let limiter = RedisLimiter::with_link(link.clone(), keys.clone(), &quotas);
    let on_error = match s.on_backend_error {
        OnBackendError::Deny => BackendErrorPolicy::Deny,
        OnBackendError::Allow => BackendErrorPolicy::Allow,
    };
    Ok((
        RateLimits::redis(limiter, on_error),
        Some(SharedBackend {
            link,
            keys,
            on_error,
        }),
    ))
}

const MAX_IDEMPOTENCY_TTL_S: u64 = 7 * 24 * 3600;
const MAX_DEDUPE_WINDOW_MS: u64 = 3_600_000;
/// Less than a megabyte keeps too few answers to be worth having; over 16 GiB is a typo.
const IDEMPOTENCY_MAX_BYTES: std::ops::RangeInclusive<u64> = (1 << 20)..=(16 << 30);
/// A request holds its key for Proof's whole deadline and this much more: time to store the answer.
const LOCK_MARGIN: Duration = Duration::from_secs(2);

fn validate_idempotency(
    s: &CheckoutSettings,
    shared: Option<SharedBackend>,
    proof_deadline: Duration,
) -> Result<IdempotencyStore, ConfigError> {
    range(
        "checkout.idempotency_ttl_s",
        s.idempotency_ttl_s,
        1..=MAX_IDEMPOTENCY_TTL_S,
        "",
    )?;
    range(
        "checkout.dedupe_window_ms",
        s.dedupe_window_ms,
        0..=MAX_DEDUPE_WINDOW_MS,
        " (0 turns it off)",
    )?;
    range(
        "checkout.idempotency_max_bytes",
        s.idempotency_max_bytes,
        IDEMPOTENCY_MAX_BYTES,
        " (1 MiB to 16 GiB)",
    )?;
    let config = IdempotencyConfig {
        key_ttl: Duration::from_secs(s.idempotency_ttl_s),
        // In range, so it fits any 64-bit usize; a 32-bit one saturates, and the bound is then
        // what the address space allows.
        memory_max_bytes: usize::try_from(s.idempotency_max_bytes).unwrap_or(usize::MAX),
        dedupe_window: Duration::from_millis(s.dedupe_window_ms),
        lock_ttl: proof_deadline.saturating_add(LOCK_MARGIN),
    };
    Ok(match shared {
        None => IdempotencyStore::memory(config),
        Some(shared) => IdempotencyStore::redis(config, shared.link, shared.keys, shared.on_error),
    })
}

/// `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS. The problem never quotes
/// the URL: it is a secret as a whole, since it usually carries the password.
fn validate_redis_url(redis_url: &SecretString) -> Result<(), String> {
    let url = url::Url::parse(redis_url.expose_secret().trim())
        .map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err("must be a redis:// or rediss:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host (redis://host:6379)".into());
    }
    let path = url.path().trim_start_matches('/');
    if !path.is_empty() && path.parse::<u32>().is_err() {
        return Err("the path must be a database number (redis://host:6379/0)".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "must not carry a query or fragment (percent-encode / ? # @ in the password)".into(),
        );
    }
    Ok(())
}

/// A listen address of its own, so `/metrics` is never on the browser-facing port.
fn validate_metrics(
    s: &MetricsSettings,
    server_listen: &str,
) -> Result<Option<ListenAddress>, ConfigError> {
    let listen = s.listen.trim();
    if listen.is_empty() {
        return Ok(None);
    }
    let address =
        ListenAddress::parse(listen).map_err(|e| ConfigError::key("metrics.listen", e))?;
    // Port 0 (a free port chosen at start) is never the same as another.
    if address.port() != 0 && listen == server_listen.trim() {
        return Err(ConfigError::key(
            "metrics.listen",
            "must differ from server.listen: metrics are never served to browsers",
        ));
    }
    Ok(Some(address))
}

/// `[telemetry]`: the collector's traces URL when `otlp_endpoint` is set, and the sample ratio and
/// CA file (checked either way, so settings prepared before the endpoint are known good).
fn validate_telemetry(s: &TelemetrySettings) -> Result<Option<TracesConfig>, ConfigError> {
    if !(0.0..=1.0).contains(&s.sample_ratio) {
        return Err(ConfigError::key(
            "telemetry.sample_ratio",
            "must be between 0.0 (no new trace sampled) and 1.0 (every one)",
        ));
    }
    let tls_roots = TlsRoots::with_ca_file(&s.otlp_ca_file)
        .map_err(|problem| ConfigError::key("telemetry.otlp_ca_file", problem))?;
    let endpoint = s.otlp_endpoint.trim();
    if endpoint.is_empty() {
        return Ok(None);
    }
    let traces_url =
        otlp_traces_url(endpoint).map_err(|e| ConfigError::key("telemetry.otlp_endpoint", e))?;
    Ok(Some(TracesConfig {
        traces_url,
        sample_ratio: s.sample_ratio,
        tls_roots,
    }))
}

/// The collector's base URL (`http://127.0.0.1:4318`, or with a path, as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// takes it) with `/v1/traces` added; a URL that already ends in `/v1/traces` is taken as it is.
/// The value is never echoed: a typo next to a token would otherwise reach the logs.
fn otlp_traces_url(endpoint: &str) -> Result<url::Url, String> {
    let mut url = outbound_url(
        endpoint,
        &UrlRules {
            not_http: "must be an http:// or https:// URL (e.g. \"http://127.0.0.1:4318\")",
            credentials: "must not carry a user name or password: give the collector's credentials \
                          as OTEL_EXPORTER_OTLP_HEADERS",
            query_allowed: false,
            // Spans carry no secret, and a collector in the same pod or network is usual.
            https_unless_loopback: None,
        },
    )?;
    if !url.path().ends_with("/v1/traces") {
        let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url)
}

const MAX_POLL_INTERVAL_S: u64 = 3600;
const MAX_CONFIRM_INTERVAL_S: u64 = 3600;
const MAX_STREAM_DURATION_S: u64 = 24 * 3600;
/// The webhook's path is its only secret: at least this many characters after the `/`.
const MIN_WEBHOOK_PATH_SECRET: usize = 16;

fn validate_status(s: StatusSettings) -> Result<StatusConfig, ConfigError> {
    range(
        "status.poll_interval_s",
        s.poll_interval_s,
        1..=MAX_POLL_INTERVAL_S,
        "",
    )?;
    for (key, value) in [
        ("status.max_streams_per_user", s.max_streams_per_user),
        ("status.max_streams", s.max_streams),
    ] {
        range(key, value, 1..=usize::MAX, "")?;
    }
    range(
        "status.max_stream_duration_s",
        s.max_stream_duration_s,
        1..=MAX_STREAM_DURATION_S,
        "",
    )?;
    range(
        "status.confirm_interval_s",
        s.confirm_interval_s,
        1..=MAX_CONFIRM_INTERVAL_S,
        "",
    )?;
    let webhook_path = match s.webhook_path.trim() {
        "" => None,
        path => Some(validate_webhook_path(path)?),
    };
    Ok(StatusConfig {
        poll_interval: Duration::from_secs(s.poll_interval_s),
        max_streams_per_user: s.max_streams_per_user,
        max_streams: s.max_streams,
        max_stream_duration: Duration::from_secs(s.max_stream_duration_s),
        webhook_path,
        max_watchers: s.max_watchers,
        confirm_interval: Duration::from_secs(s.confirm_interval_s),
    })
}

/// A path of its own, long and plain; never quoted back, since it is a secret.
fn validate_webhook_path(path: &str) -> Result<String, ConfigError> {
    const KEY: &str = "status.webhook_path";
    let Some(rest) = path.strip_prefix('/') else {
        return Err(ConfigError::key(KEY, "must start with /"));
    };
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'))
        || rest
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(ConfigError::key(
            KEY,
            "must be a plain path: letters, digits, - _ . ~ between single slashes",
        ));
    }
    if rest.len() < MIN_WEBHOOK_PATH_SECRET {
        return Err(ConfigError::key(
            KEY,
            format!(
                "must be long and random: it is the webhook's only secret (at least {MIN_WEBHOOK_PATH_SECRET} characters after the first /)"
            ),
        ));
    }
    let first = rest.split('/').next().unwrap_or("");
    if matches!(
        first,
        "start-checkout" | "checkout" | "kyc-status" | "healthz" | "readyz" | "sandbox" | "metrics"
    ) {
        return Err(ConfigError::key(
            KEY,
            "must not lie under one of the service's own routes",
        ));
    }
    Ok(path.to_owned())
}

fn validate_log(s: LogSettings) -> Result<LogConfig, ConfigError> {
    let format = s.format;
    if tracing_subscriber::EnvFilter::try_new(&s.level).is_err() {
        return Err(ConfigError::key(
            "log.level",
            format!("{:?} is not a level or filter (e.g. \"info\")", s.level),
        ));
    }
    Ok(LogConfig {
        format,
        level: s.level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_is_the_endpoint_with_v1_traces() {
        for (endpoint, traces_url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            (
                "https://otlp.vendor.example/otlp/",
                "https://otlp.vendor.example/otlp/v1/traces",
            ),
            (
                "https://otlp.vendor.example/v1/traces",
                "https://otlp.vendor.example/v1/traces",
            ),
        ] {
            assert_eq!(
                otlp_traces_url(endpoint).unwrap().as_str(),
                traces_url,
                "{endpoint}"
            );
        }
    }

    #[test]
    fn a_sample_ratio_outside_0_to_1_is_refused_even_with_traces_off() {
        for ratio in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
            let settings = TelemetrySettings {
                otlp_endpoint: String::new(),
                sample_ratio: ratio,
                otlp_ca_file: String::new(),
            };
            assert!(validate_telemetry(&settings).is_err(), "{ratio}");
        }
        let off = TelemetrySettings::default();
        assert!(validate_telemetry(&off).unwrap().is_none());
    }
}
