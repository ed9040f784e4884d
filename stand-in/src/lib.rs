//! An embedded stand-in for Proof's partner API, for `proof-bff --sandbox`, tests and benchmarks.
//!
//! It speaks HTTP only and follows Proof's documented contract (`POST /widget/session`,
//! `GET /widget/transactions/{merchant_transaction_id}`,
//! `GET /widget/users/{partner_user_id}/kyc-status`, the `{"error","code","message"}` envelope and
//! `X-Request-Id` on every answer). Every route checks `Authorization: Bearer <client_token>` (in
//! constant time) and then that `Origin` is one of the registered origins.
//!
//! Some session `amount`s are test values that make it misbehave the way Proof can, checked after
//! authentication and every validation (currency, wallet, off-ramp):
//!
//! | amount | answer |
//! |---|---|
//! | `1.02` | 502 `upstream_error`/`provider_error` on a request's first attempt, 200 on its retries |
//! | `2.02` | 502 `upstream_error`/`provider_error` every time |
//! | `1.05` | 500 `internal_error`/`db_error` on a request's first attempt, 200 on its retries |
//! | `2.05` | 500 `internal_error`/`db_error` every time |
//! | `5.04` | 200 after `slow_answer` |
//! | `4.01` | 401 `unauthorised`/`invalid_token` |
//! | `4.03` | 403 `forbidden`/`forbidden_origin` |
//! | `4.29` | 429 `rate_limit_exceeded`/`rate_limit_exceeded` with `Retry-After: 30` |
//! | `3.00` | 200; the transaction ends `failed` |
//! | `3.01` | 200; the transaction ends `cancelled` |
//!
//! A request's attempts are recognised by their `X-Request-Id` header, or by the exact body bytes
//! when there is none; the last 10,000 first attempts are remembered. Other amounts answer 200 and
//! the transaction ends `completed`. A transaction is `pending` for `status_step`, `processing` for
//! the next `status_step`, then terminal. A user's KYC status is `not_started` before their first
//! session, `pending` after it, `verified` once one of their transactions has completed, and always
//! `failed` for user ids starting with `kyc-failed`.

mod access;
mod clock;
mod crypto;
mod envelope;
mod session;
mod status;
mod store;
mod time;

use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use secrecy::SecretString;

pub use clock::StandInClock;
pub use crypto::{SignedFields, session_signature};

use store::{BoundedSet, Ledger, MAX_FIRST_ATTEMPTS, MAX_TRANSACTIONS, MAX_USERS, lock};

/// The session `amount`s that make the stand-in misbehave; see the module documentation.
pub mod test_amounts {
    /// 502 `provider_error` on a request's first attempt, 200 on its retries.
    pub const PROVIDER_ERROR_ONCE: &str = "1.02";
    /// 502 `provider_error` every time.
    pub const PROVIDER_ERROR: &str = "2.02";
    /// 500 `db_error` on a request's first attempt, 200 on its retries.
    pub const DB_ERROR_ONCE: &str = "1.05";
    /// 500 `db_error` every time.
    pub const DB_ERROR: &str = "2.05";
    /// 200 after `StandInConfig::slow_answer`.
    pub const SLOW: &str = "5.04";
    /// 401 `invalid_token`, as if the token had been revoked.
    pub const UNAUTHORISED: &str = "4.01";
    /// 403 `forbidden_origin`.
    pub const FORBIDDEN: &str = "4.03";
    /// 429 `rate_limit_exceeded` with `Retry-After: 30`.
    pub const RATE_LIMITED: &str = "4.29";
    /// 200; the transaction ends `failed`.
    pub const ENDS_FAILED: &str = "3.00";
    /// 200; the transaction ends `cancelled`.
    pub const ENDS_CANCELLED: &str = "3.01";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TestValue {
    ProviderErrorOnce,
    ProviderError,
    DbErrorOnce,
    DbError,
    Slow,
    Unauthorised,
    Forbidden,
    RateLimited,
    EndsFailed,
    EndsCancelled,
}

impl TestValue {
    fn of(amount: &str) -> Option<Self> {
        use test_amounts::*;
        Some(match amount {
            PROVIDER_ERROR_ONCE => Self::ProviderErrorOnce,
            PROVIDER_ERROR => Self::ProviderError,
            DB_ERROR_ONCE => Self::DbErrorOnce,
            DB_ERROR => Self::DbError,
            SLOW => Self::Slow,
            UNAUTHORISED => Self::Unauthorised,
            FORBIDDEN => Self::Forbidden,
            RATE_LIMITED => Self::RateLimited,
            ENDS_FAILED => Self::EndsFailed,
            ENDS_CANCELLED => Self::EndsCancelled,
            _ => return None,
        })
    }
}

/// What the stand-in is configured with, as Proof would set it up at onboarding.
#[derive(Clone)]
pub struct StandInConfig {
    /// The Bearer token it accepts.
    pub client_token: SecretString,
    /// `Origin` values it accepts, exact match.
    pub registered_origins: Vec<String>,
    /// Enabled currencies.
    pub currencies: Vec<String>,
    /// (currency, network) pairs with a wallet.
    pub wallets: Vec<(String, String)>,
    pub sell_enabled: bool,
    pub widget_config: WidgetConfig,
    /// HMAC key for signatures, init tokens and derived addresses.
    pub signing_key: Vec<u8>,
    /// Time a transaction spends in each non-terminal status.
    pub status_step: Duration,
    /// Delay of the slow test value.
    pub slow_answer: Duration,
    /// What transaction and KYC progress is measured against.
    pub clock: StandInClock,
}

/// The partner's widget defaults, echoed into every session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WidgetConfig {
    pub widget_id: String,
    pub currencies: Vec<String>,
    pub networks: Vec<String>,
    pub fiat_currency: String,
    pub fiat_currencies: Vec<String>,
    /// `buy` or `sell`, used when a request has no `type`.
    pub default_type: String,
    pub lang: String,
    pub theme: String,
    pub redirect_url: String,
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

impl StandInConfig {
    /// The sandbox's defaults: currencies USDT, USDC, ETH; wallets USDT on TRC20/ERC20/BEP20, USDC
    /// on ERC20/BEP20, ETH on ERC20; sell enabled; widget currencies = the enabled currencies,
    /// networks TRC20/ERC20/BEP20, fiat EUR with [EUR, USD], type buy, lang en, theme light,
    /// redirect_url = the first registered origin + "/done" (`http://localhost/done` without
    /// one); a random widget id and a random 32-byte signing key; status_step 2 s; slow_answer 30 s;
    /// the real clock.
    pub fn sandbox(client_token: SecretString, registered_origins: Vec<String>) -> Self {
        let currencies = strings(&["USDT", "USDC", "ETH"]);
        let wallets = [
            ("USDT", "TRC20"),
            ("USDT", "ERC20"),
            ("USDT", "BEP20"),
            ("USDC", "ERC20"),
            ("USDC", "BEP20"),
            ("ETH", "ERC20"),
        ]
        .iter()
        .map(|(currency, network)| ((*currency).to_owned(), (*network).to_owned()))
        .collect();
        let redirect_url = format!(
            "{}/done",
            registered_origins
                .first()
                .map_or("http://localhost", |origin| origin.trim_end_matches('/'))
        );
        let signing_key: [u8; 32] = rand::random();
        Self {
            client_token,
            widget_config: WidgetConfig {
                widget_id: uuid::Uuid::new_v4().to_string(),
                currencies: currencies.clone(),
                networks: strings(&["TRC20", "ERC20", "BEP20"]),
                fiat_currency: "EUR".to_owned(),
                fiat_currencies: strings(&["EUR", "USD"]),
                default_type: "buy".to_owned(),
                lang: "en".to_owned(),
                theme: "light".to_owned(),
                redirect_url,
            },
            registered_origins,
            currencies,
            wallets,
            sell_enabled: true,
            signing_key: signing_key.to_vec(),
            status_step: Duration::from_secs(2),
            slow_answer: Duration::from_secs(30),
            clock: StandInClock::system(),
        }
    }
}

impl std::fmt::Debug for StandInConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandInConfig")
            .field("client_token", &"[REDACTED]")
            .field("registered_origins", &self.registered_origins)
            .field("currencies", &self.currencies)
            .field("wallets", &self.wallets)
            .field("sell_enabled", &self.sell_enabled)
            .field("widget_config", &self.widget_config)
            .field("signing_key", &"[REDACTED]")
            .field("status_step", &self.status_step)
            .field("slow_answer", &self.slow_answer)
            .field("clock", &self.clock)
            .finish()
    }
}

/// State shared by every request.
struct Shared {
    config: StandInConfig,
    first_attempts: Mutex<BoundedSet>,
    ledger: Mutex<Ledger>,
}

impl Shared {
    /// Records an attempt; true when it is the first one seen for `key`.
    fn first_attempt(&self, key: String) -> bool {
        lock(&self.first_attempts).insert(key)
    }
}

/// A running stand-in: its port and the actix server, which serves once polled or spawned.
pub struct ProofStandIn {
    port: u16,
    server: Server,
}

/// How long a stopping stand-in waits for requests in flight.
const SHUTDOWN_TIMEOUT_S: u64 = 1;

impl ProofStandIn {
    /// Starts serving on `listener` with one worker and no signal handling. Call it inside a tokio
    /// runtime or an actix `System`; the server runs once [`ProofStandIn::into_server`]'s future
    /// is spawned or awaited.
    pub fn start(config: StandInConfig, listener: TcpListener) -> std::io::Result<Self> {
        let port = listener.local_addr()?.port();
        let shared = web::Data::new(Shared {
            config,
            first_attempts: Mutex::new(BoundedSet::new(MAX_FIRST_ATTEMPTS)),
            ledger: Mutex::new(Ledger::new(MAX_TRANSACTIONS, MAX_USERS)),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .wrap(from_fn(access::gate))
                .route("/widget/session", web::post().to(session::create))
                .route(
                    "/widget/transactions/{merchant_transaction_id}",
                    web::get().to(status::transaction),
                )
                .route(
                    "/widget/users/{partner_user_id}/kyc-status",
                    web::get().to(status::kyc_status),
                )
                .default_service(web::to(status::unknown_route))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:{port}`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server from outside.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The server future; the caller spawns or awaits it.
    pub fn into_server(self) -> Server {
        self.server
    }
}
