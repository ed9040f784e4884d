//! An embedded stand-in for Proof's partner API, for `proof-bff --sandbox`, tests and benchmarks.
//!
//! It speaks HTTP only and follows Proof's documented contract (`POST /widget/session`,
//! `GET /widget/transactions/{merchant_transaction_id}`,
//! `GET /widget/users/{partner_user_id}/kyc-status`, the `GET /ws` WebSocket, the partner webhook,
//! the `{"error","code","message"}` envelope and `X-Request-Id` on every answer). Every route
//! checks `Authorization: Bearer <client_token>` (in constant time) and then that `Origin` is one
//! of the registered origins.
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
//!
//! Statuses can also be followed live, on the same clock and `status_step` as the poll route:
//!
//! - `GET /ws?tx_id={merchant_transaction_id}`, a WebSocket upgrade behind the same token and
//!   Origin checks. Before upgrading it answers 503 `service_unavailable`/`websocket_unavailable`
//!   while switched off ([`StandInConfig::websocket_enabled`],
//!   [`StandInControls::set_websocket_enabled`]) or when [`StandInConfig::max_websockets`]
//!   connections are open, 400 `invalid_request`/`missing_param` without a `tx_id`, 404
//!   `not_found` for an unknown transaction, and 400 `invalid_request`/`validation_error` for a
//!   request that is not an upgrade. Once upgraded it sends text frames
//!   `{"event":"tx.update","merchant_transaction_id","type","status","currency","fiat_currency",
//!   "fiat_amount","crypto_amount","occurred_at"}` (the documented optional `payment_method` is
//!   never sent; `occurred_at` is when the transaction entered the status, the poll answer's
//!   `updated_at`): one with the status at once, then one per status entered after it, in order
//!   and once each, even when the clock jumps over `processing`; after the terminal status it
//!   sends a normal close (1000). Pings get pongs, a client's close is echoed, anything else from
//!   the client is ignored. [`StandInControls::set_websocket_fault`] makes the connections
//!   upgraded after it misbehave instead, for tests of a client's defences: silent, sending
//!   garbage, or closing at once ([`WebSocketFault`]).
//! - [`StandInConfig::webhook_url`] (`http://` only): each status change after the initial
//!   `pending` (to `processing`, then to the terminal status) is POSTed there with
//!   `Content-Type: application/json` and the poll answer without `partner_user_id` as its body:
//!   best effort, with no retry and a 2 s timeout, as Proof documents;
//!   [`StandInControls::set_duplicate_webhooks`] sends each twice.
//!
//! Changes are noticed by a ticker on the stand-in's worker, every 100 ms, so they reach
//! connections and the webhook up to a tick after the poll route shows them. With a manual
//! [`StandInClock`], nothing changes until the clock is advanced.

mod access;
mod announce;
mod clock;
mod crypto;
mod envelope;
mod session;
mod status;
mod store;
mod time;
mod ws;

use std::net::TcpListener;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use secrecy::SecretString;

pub use clock::StandInClock;
pub use crypto::{SignedFields, session_signature};
pub use ws::{OVERSIZED_FRAME_BYTES, WebSocketFault};

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
    /// Whether `GET /ws` accepts upgrades; when false it answers 503 `websocket_unavailable`, as if
    /// Proof's WebSocket were down. [`StandInControls::set_websocket_enabled`] changes it later.
    pub websocket_enabled: bool,
    /// WebSocket connections open at once; beyond, `GET /ws` answers 503 `websocket_unavailable`.
    pub max_websockets: usize,
    /// The partner webhook (`http://` only): each status change after `pending` is POSTed there.
    pub webhook_url: Option<String>,
}

/// The default of [`StandInConfig::max_websockets`].
pub const MAX_WEBSOCKETS: usize = 10_000;

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
    /// the real clock; the WebSocket enabled for up to [`MAX_WEBSOCKETS`] connections; no webhook.
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
            websocket_enabled: true,
            max_websockets: MAX_WEBSOCKETS,
            webhook_url: None,
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
            .field("websocket_enabled", &self.websocket_enabled)
            .field("max_websockets", &self.max_websockets)
            // A webhook URL's path is usually the partner's only secret for it.
            .field(
                "webhook_url",
                &self.webhook_url.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// State shared by every request.
struct Shared {
    config: StandInConfig,
    first_attempts: Mutex<BoundedSet>,
    ledger: Mutex<Ledger>,
    websockets: ws::WebSockets,
    /// Sends every webhook twice, as Proof may.
    duplicate_webhooks: AtomicBool,
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
    controls: StandInControls,
}

/// What tests observe and switch on a running stand-in; cheap to clone, usable from any thread,
/// and still valid after [`ProofStandIn::into_server`].
#[derive(Clone)]
pub struct StandInControls {
    shared: web::Data<Shared>,
}

impl StandInControls {
    /// WebSocket connections accepted (upgraded) since the start; refused ones do not count.
    pub fn websocket_connections(&self) -> u64 {
        self.shared.websockets.accepted()
    }

    /// When the latest WebSocket upgrades (up to 1,000) were accepted, oldest first: how often a
    /// client reconnects.
    pub fn websocket_accept_times(&self) -> Vec<std::time::Instant> {
        self.shared.websockets.accept_times()
    }

    /// WebSocket connections open now.
    pub fn open_websockets(&self) -> usize {
        self.shared.websockets.open()
    }

    /// Ping frames received from WebSocket clients since the start, over every connection and
    /// whatever its fault, counting the ones a [`WebSocketFault::Silent`] connection leaves
    /// unanswered. A connection that closes at once ([`WebSocketFault::CloseAtOnce`], or a
    /// transaction already terminal) reads no frame, so none of its pings count.
    pub fn websocket_pings(&self) -> u64 {
        self.shared.websockets.pings()
    }

    /// Accepts (`true`) or refuses with 503 `websocket_unavailable` (`false`) the next WebSocket
    /// upgrades; connections already open carry on.
    pub fn set_websocket_enabled(&self, enabled: bool) {
        self.shared.websockets.set_enabled(enabled);
    }

    /// Makes the next WebSocket connections misbehave as `fault` says, from their upgrade on;
    /// connections already open keep the fault they started with.
    pub fn set_websocket_fault(&self, fault: WebSocketFault) {
        self.shared.websockets.set_fault(fault);
    }

    /// For each [`WebSocketFault::OversizedFrame`] connection that has ended, how many bytes of
    /// its [`OVERSIZED_FRAME_BYTES`] of payload it sent, in the order the connections ended.
    pub fn oversized_frame_sends(&self) -> Vec<u64> {
        self.shared.websockets.oversized_sends()
    }

    /// Sends each webhook twice (`true`), as Proof's "duplicates possible" allows, or once.
    pub fn set_duplicate_webhooks(&self, duplicate: bool) {
        self.shared
            .duplicate_webhooks
            .store(duplicate, Ordering::Release);
    }
}

impl std::fmt::Debug for StandInControls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandInControls")
            .field("websocket_connections", &self.websocket_connections())
            .field("open_websockets", &self.open_websockets())
            .field("websocket_pings", &self.websocket_pings())
            .finish_non_exhaustive()
    }
}

/// How long a stopping stand-in waits for requests in flight.
const SHUTDOWN_TIMEOUT_S: u64 = 1;

impl ProofStandIn {
    /// Starts serving on `listener` with one worker and no signal handling. Call it inside a tokio
    /// runtime or an actix `System`; the server runs once [`ProofStandIn::into_server`]'s future
    /// is spawned or awaited.
    ///
    /// Fails with `InvalidInput` when `webhook_url` is not an absolute `http://` URL.
    pub fn start(config: StandInConfig, listener: TcpListener) -> std::io::Result<Self> {
        if let Some(url) = &config.webhook_url {
            check_webhook_url(url)?;
        }
        let port = listener.local_addr()?.port();
        let shared = web::Data::new(Shared {
            websockets: ws::WebSockets::new(config.websocket_enabled, config.max_websockets),
            duplicate_webhooks: AtomicBool::new(false),
            config,
            first_attempts: Mutex::new(BoundedSet::new(MAX_FIRST_ATTEMPTS)),
            ledger: Mutex::new(Ledger::new(MAX_TRANSACTIONS, MAX_USERS)),
        });
        let controls = StandInControls {
            shared: shared.clone(),
        };
        let server = HttpServer::new(move || {
            // Called on the (single) worker's thread as it starts: the announcer runs there, beside
            // the connections it feeds, and stops with the worker when the server stops.
            actix_web::rt::spawn(announce::run(shared.clone()));
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
                .route("/ws", web::get().to(ws::connect))
                .default_service(web::to(status::unknown_route))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            controls,
        })
    }

    /// The test controls; keep a clone before handing the server over.
    pub fn controls(&self) -> StandInControls {
        self.controls.clone()
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

/// The webhook client has no TLS, so only `http://` URLs can be delivered to.
fn check_webhook_url(url: &str) -> std::io::Result<()> {
    let invalid = |reason: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("webhook_url must be {reason}"),
        )
    };
    let parsed = url::Url::parse(url).map_err(|_| invalid("an absolute URL"))?;
    if parsed.scheme() != "http" {
        return Err(invalid("an http:// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("a URL with a host"));
    }
    Ok(())
}
