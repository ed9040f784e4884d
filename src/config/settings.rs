//! The settings as an operator writes them, key for key (`config.toml.example` is their reference):
//! serde types with the documented defaults. Nothing here is checked beyond its type; the checks
//! are in `validate.rs`.

use secrecy::SecretString;
use serde::Deserialize;

pub use crate::session::JwksSettings;
use crate::session::JwtAlgorithm;
use crate::telemetry::LogFormat;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub proof: ProofSettings,
    pub browser: BrowserSettings,
    pub session: SessionSettings,
    pub client_ip: ClientIpSettings,
    pub checkout: CheckoutSettings,
    pub rate_limit: RateLimitSettings,
    pub status: StatusSettings,
    pub metrics: MetricsSettings,
    pub telemetry: TelemetrySettings,
    pub log: LogSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: String,
    pub workers: usize,
    pub shutdown_timeout_s: u64,
    pub drain_delay_s: u64,
    pub client_request_timeout_ms: u64,
    pub keep_alive_s: u64,
    pub max_connections: usize,
    pub max_body_bytes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            workers: 0,
            shutdown_timeout_s: 30,
            drain_delay_s: 0,
            client_request_timeout_ms: 10000,
            keep_alive_s: 15,
            max_connections: 10000,
            max_body_bytes: 16384,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProofSettings {
    pub base_url: String,
    pub client_token: SecretString,
    pub client_token_file: String,
    pub token_reload_s: u64,
    pub origin: String,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub deadline_ms: u64,
    pub max_attempts: u32,
    pub address: String,
    pub max_connections: usize,
}

impl Default for ProofSettings {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            client_token: SecretString::from(""),
            client_token_file: String::new(),
            token_reload_s: 10,
            origin: String::new(),
            connect_timeout_ms: 1000,
            request_timeout_ms: 10000,
            deadline_ms: 15000,
            max_attempts: 3,
            address: String::new(),
            max_connections: 1024,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserSettings {
    pub allowed_origins: Vec<String>,
    pub require_csrf_header: bool,
    pub allow_missing_origin: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    pub source: SessionSourceName,
    pub jwt: JwtSettings,
    pub jwks: JwksSettings,
    pub forward: ForwardSettings,
    pub headers: HeaderSessionSettings,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            source: SessionSourceName::Jwt,
            jwt: JwtSettings::default(),
            jwks: JwksSettings::default(),
            forward: ForwardSettings::default(),
            headers: HeaderSessionSettings::default(),
        }
    }
}

/// `[session.forward]`: opaque app sessions, resolved by asking the partner's app.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardSettings {
    pub url: String,
    pub cookies: Vec<String>,
    pub forward_authorization: bool,
    pub user_id_field: String,
    pub email_field: String,
    pub timeout_ms: u64,
    pub cache_ttl_s: u64,
    pub cache_max_entries: usize,
    pub max_connections: usize,
    pub ca_file: String,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            cookies: Vec::new(),
            forward_authorization: false,
            user_id_field: "/id".into(),
            email_field: "/email".into(),
            timeout_ms: 1000,
            cache_ttl_s: 30,
            cache_max_entries: 100_000,
            max_connections: 1024,
            ca_file: String::new(),
        }
    }
}

/// `[session.headers]`: an auth proxy in front already resolved the user into headers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderSessionSettings {
    pub user_id_header: String,
    pub email_header: String,
}

impl Default for HeaderSessionSettings {
    fn default() -> Self {
        Self {
            user_id_header: "x-auth-request-user".into(),
            email_header: "x-auth-request-email".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtSettings {
    pub cookie: String,
    pub bearer: bool,
    pub algorithm: JwtAlgorithm,
    pub secret: SecretString,
    pub secret_file: String,
    pub public_key_pem_file: String,
    pub issuer: String,
    pub audience: String,
    pub user_id_claim: String,
    pub email_claim: String,
    pub leeway_s: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            cookie: "session".into(),
            bearer: false,
            algorithm: JwtAlgorithm::HS256,
            secret: SecretString::from(""),
            secret_file: String::new(),
            public_key_pem_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            user_id_claim: "sub".into(),
            email_claim: "email".into(),
            leeway_s: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientIpSettings {
    pub trusted_proxies: Vec<String>,
    pub source: String,
}

impl Default for ClientIpSettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            source: "x-forwarded-for".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckoutSettings {
    pub networks: Vec<String>,
    pub currencies: Vec<String>,
    pub types: Vec<String>,
    pub redirect_url_origins: Vec<String>,
    pub max_amount: String,
    pub idempotency_ttl_s: u64,
    pub idempotency_max_bytes: u64,
    pub dedupe_window_ms: u64,
}

impl Default for CheckoutSettings {
    fn default() -> Self {
        Self {
            networks: Vec::new(),
            currencies: Vec::new(),
            types: vec!["buy".into()],
            redirect_url_origins: Vec::new(),
            max_amount: String::new(),
            idempotency_ttl_s: 600,
            idempotency_max_bytes: crate::idempotency::DEFAULT_MAX_BYTES as u64,
            dedupe_window_ms: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub backend: RateLimitBackend,
    pub redis_url: SecretString,
    pub redis_url_file: String,
    pub redis_cluster: bool,
    pub redis_key_prefix: String,
    pub redis_timeout_ms: u64,
    pub per_user_burst: u32,
    pub per_user_per_minute: u32,
    pub per_ip_burst: u32,
    pub per_ip_per_minute: u32,
    pub on_backend_error: OnBackendError,
    pub status_per_user_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            backend: RateLimitBackend::Memory,
            redis_url: SecretString::from(""),
            redis_url_file: String::new(),
            redis_cluster: false,
            redis_key_prefix: "proof-bff".into(),
            redis_timeout_ms: 50,
            per_user_burst: 5,
            per_user_per_minute: 10,
            per_ip_burst: 20,
            per_ip_per_minute: 60,
            on_backend_error: OnBackendError::Deny,
            status_per_user_per_minute: 60,
        }
    }
}

/// `[metrics]`: Prometheus `GET /metrics` on a port of its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    pub listen: String,
}

/// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// The collector's base URL (`/v1/traces` is added); empty: traces off.
    pub otlp_endpoint: String,
    pub sample_ratio: f64,
    /// A PEM file of the CA that signed the collector's certificate, besides the public roots.
    pub otlp_ca_file: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            sample_ratio: 1.0,
            otlp_ca_file: String::new(),
        }
    }
}

/// `[status]`: the transaction event streams and the webhook receiver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSettings {
    pub poll_interval_s: u64,
    pub max_streams_per_user: usize,
    pub max_streams: usize,
    pub max_stream_duration_s: u64,
    pub webhook_path: String,
    pub max_watchers: usize,
    pub confirm_interval_s: u64,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            poll_interval_s: 5,
            max_streams_per_user: 3,
            max_streams: 10_000,
            max_stream_duration_s: 3600,
            webhook_path: String::new(),
            max_watchers: 10_000,
            confirm_interval_s: 60,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

/// A setting that takes one of a few names: parsed from the name, and refused with the names it
/// takes (`"xml" is not one of json, pretty`), which serde's own enum message does not say.
macro_rules! named_setting {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        #[serde(try_from = "String")]
        pub enum $name {
            $($variant),+
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(value: String) -> Result<Self, String> {
                match value.as_str() {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(format!("{value:?} is not one of {}", [$($text),+].join(", "))),
                }
            }
        }
    };
}

named_setting! {
    /// `session.source`: where the user's identity comes from.
    SessionSourceName { Jwt = "jwt", Jwks = "jwks", Forward = "forward", Headers = "headers" }
}

named_setting! {
    /// `rate_limit.backend`: where the limits' state lives.
    RateLimitBackend { Memory = "memory", Redis = "redis" }
}

named_setting! {
    /// `rate_limit.on_backend_error`: what a request gets while the shared backend is unreachable.
    OnBackendError { Deny = "deny", Allow = "allow" }
}
