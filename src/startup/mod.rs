//! Assembles the service: binds the socket, builds the shared state once and the per-worker
//! upstream client, and runs until a signal or a handle asks it to drain. Beside it run the
//! metrics port ([`metrics_port`]) and the maintenance tasks ([`background`]).

mod background;
mod metrics_port;
mod routes;
mod signals;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, web};
use tracing_actix_web::TracingLogger;

use self::background::{maintain_rate_limits, reload_secret_files};
use self::metrics_port::{MetricsScrape, build_metrics_server};
pub use self::routes::{ROUTES, Route, Served, WEBHOOK_PATH};
use self::signals::ShutdownSignals;

use crate::admission::AdmissionContext;
use crate::browser::cors;
use crate::call_budget::CallBudget;
use crate::checkout::CheckoutContext;
use crate::config::AppConfig;
use crate::http::connection::{self, ConnectionDrain, ConnectionLimits, RequestBodyBound};
use crate::http::{self, Readiness};
use crate::proof::{ProofClient, ProofEndpoint};
use crate::rate_limit::RateLimits;
use crate::status;
use crate::telemetry::{self, BffRootSpan, HiddenRoute, Metrics, RequestIdMiddleware, Traces};

pub struct Application {
    port: u16,
    /// Where `GET /metrics` is served, when it is.
    metrics_port: Option<u16>,
    server: Server,
    /// The metrics port's own server, when `metrics.listen` is set: started and stopped with
    /// `server`, never counted against its connections.
    metrics_server: Option<Server>,
    handle: ApplicationHandle,
    readiness: Arc<Readiness>,
    rate_limits: Arc<RateLimits>,
    endpoint: Arc<ProofEndpoint>,
    /// For the session's key file, reloaded with the token.
    context: web::Data<AdmissionContext>,
    token_reload: Duration,
    /// When traces are on: flushed once the server has stopped.
    traces: Option<Arc<Traces>>,
}

/// Starts a graceful drain from outside the server: a signal in production, the test itself in tests.
#[derive(Clone)]
pub struct ApplicationHandle {
    readiness: Arc<Readiness>,
    connections: ConnectionDrain,
    server: ServerHandle,
    drain_delay: Duration,
    shutdown_timeout: Duration,
}

impl ApplicationHandle {
    /// Marks the instance not ready and keeps serving for `server.drain_delay_s`, so a load
    /// balancer sees `/readyz` fail and moves traffic away before anything is refused; then
    /// answers each request with the end of its connection; then stops accepting, closes idle
    /// connections and waits for requests in flight (up to the configured shutdown timeout).
    pub async fn drain(&self) {
        self.readiness.start_leaving();
        if !self.drain_delay.is_zero() {
            tracing::info!(
                drain_delay_s = self.drain_delay.as_secs(),
                "not ready: serving on until the drain delay is over"
            );
            tokio::time::sleep(self.drain_delay).await;
        }
        // From here on every answer closes its connection (`http::connection`).
        self.readiness.start_draining();
        // Checkouts whose client has gone may still be at Proof, in tasks no connection holds
        // open: stopping the server would end them with their workers, before their answers are
        // kept for the retry. The server keeps serving (new requests get 503) while they finish.
        if tokio::time::timeout(self.shutdown_timeout, self.readiness.holds_released())
            .await
            .is_err()
        {
            tracing::warn!(
                "calls to Proof whose clients had gone still running after shutdown_timeout_s: stopping anyway"
            );
        }
        // The stop waits until every connection has closed: an idle one would hold it until its
        // keep-alive ran out, so idle ones close now, and busy ones once they are answered.
        self.connections.close_idle();
        self.server.stop(true).await;
    }
}

impl Application {
    pub fn build(config: AppConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.server.listen.bind_target())?;
        Self::build_with_listener(config, listener)
    }

    pub fn build_with_listener(config: AppConfig, listener: TcpListener) -> std::io::Result<Self> {
        let port = listener.local_addr()?.port();
        // Incoming trace context is believed from the same peers as the forwarding headers.
        let traces = config
            .traces
            .as_ref()
            .map(|traces| Traces::start(traces, config.client_ip.trusted_proxies().clone()))
            .transpose()?
            .map(Arc::new);
        let endpoint = Arc::new(config.proof.endpoint);
        let readiness = Arc::new(Readiness::default());
        let rate_limits = Arc::new(config.rate_limit);
        // The configuration only described the link (a check starts nothing); it runs from here.
        if let Some(link) = rate_limits.shared_link() {
            link.start().map_err(std::io::Error::other)?;
        }
        // Not ready until the first check has reached a backend that checkouts need.
        readiness.set_rate_limit_backend_reachable(rate_limits.required_backend().is_none());
        let metrics = web::Data::new(Metrics::new());
        let metrics_listener = config
            .metrics_listen
            .as_ref()
            .map(|listen| TcpListener::bind(listen.bind_target()))
            .transpose()?;
        let metrics_port = metrics_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?
            .map(|addr| addr.port());
        // Counted only where they can be read: without `metrics.listen` a request (or a call to
        // the partner's app) pays nothing for them.
        let served_metrics = metrics_listener.is_some().then_some(&**metrics);
        let mut session = config.session;
        // Not ready until the session source can check someone (the identity provider's key set
        // is in); sources that need nothing never say otherwise.
        let session_readiness = readiness.clone();
        session.start(
            move |ready| session_readiness.set_session_backend_ready(ready),
            served_metrics,
        )?;
        let browser = web::Data::new(config.browser);
        let context = web::Data::new(AdmissionContext {
            session,
            client_ip: config.client_ip,
            max_body_bytes: config.server.max_body_bytes,
            readiness: readiness.clone(),
            rate_limits: rate_limits.clone(),
        });
        let checkout_context = web::Data::new(CheckoutContext {
            checkout: config.checkout,
            address: config.proof.address,
            idempotency: config.idempotency,
        });
        let readiness_data = web::Data::from(readiness.clone());
        let status_context = web::Data::new(status::StatusContext::new(
            &config.status,
            endpoint.request_timeout(),
            served_metrics,
        ));
        let webhook_path = config.status.webhook_path.clone();
        let sandbox = config.sandbox.map(web::Data::new);
        let limits = ConnectionLimits {
            client_request_timeout: config.server.client_request_timeout,
            keep_alive: config.server.keep_alive,
        };
        let local_addr = listener.local_addr()?;
        // The addresses as bound: with port 0 in the config this is the only place that says
        // which port the service took.
        tracing::info!(
            listen = %local_addr,
            metrics = metrics_listener
                .as_ref()
                .map(TcpListener::local_addr)
                .transpose()?
                .map(tracing::field::display),
            "sockets bound"
        );
        let workers = effective_workers(config.server.workers);
        // One HTTP service per worker, each with its own upstream client.
        let reload_context = context.clone();
        let scrape = MetricsScrape {
            metrics: metrics.clone(),
            rate_limits: rate_limits.clone(),
            status: status_context.clone(),
            checkout: checkout_context.clone(),
        };
        let worker_endpoint = endpoint.clone();
        let worker_metrics = served_metrics.is_some().then(|| metrics.clone());
        let proof_places_per_worker =
            connection::max_connections_per_worker(endpoint.max_connections(), workers);
        let proof_budget_gauges = served_metrics.map(|metrics| metrics.outbound_budget("proof"));
        let worker_traces = traces.clone();
        // How the drain ends connections: see `ApplicationHandle::drain`.
        let drain = ConnectionDrain::following(readiness.clone());
        let connections = drain.clone();
        let worker_service = move || {
            // Built on the worker's own thread: its calls to the shared Redis stay on it.
            if let Some(link) = context.rate_limits.shared_link() {
                link.connect_this_thread();
            }
            let budget = CallBudget::new(proof_places_per_worker, proof_budget_gauges.clone());
            let proof = web::Data::new(ProofClient::new(
                worker_endpoint.clone(),
                Arc::new(budget),
                worker_metrics.clone().map(web::Data::into_inner),
                worker_traces.clone(),
            ));
            let metrics = worker_metrics.clone();
            let traces = worker_traces.clone();
            let sandbox = sandbox.clone();
            let app = App::new()
                .wrap(from_fn(cors::browser_headers))
                .wrap(TracingLogger::<BffRootSpan>::new())
                .wrap(RequestIdMiddleware)
                .wrap(RequestBodyBound::new(
                    limits.client_request_timeout,
                    drain.clone(),
                ))
                .app_data(browser.clone())
                .app_data(context.clone())
                .app_data(checkout_context.clone())
                .app_data(readiness_data.clone())
                .app_data(status_context.clone())
                .app_data(proof)
                .configure(|app| {
                    if let Some(metrics) = metrics {
                        app.app_data(metrics);
                    }
                })
                .configure(|app| {
                    // Absent when traces are off: the root span then makes no trace at all.
                    if let Some(traces) = traces {
                        app.app_data(web::Data::from(traces));
                    }
                })
                .configure(|app| {
                    // Proof's webhook only where the operator put it: its path is a secret, so
                    // the route is named by a label wherever it is reported.
                    if let Some(path) = &webhook_path {
                        app.app_data(web::Data::new(HiddenRoute {
                            path: path.clone(),
                            label: "{status.webhook_path}",
                        }));
                    }
                    // The demo page and dev login exist only in sandbox mode.
                    let in_sandbox = sandbox.is_some();
                    if let Some(session) = sandbox {
                        app.app_data(session);
                    }
                    routes::register(app, |route| match route.served {
                        Served::Always => Some(route.path.to_owned()),
                        Served::Webhook => webhook_path.clone(),
                        Served::Sandbox => in_sandbox.then(|| route.path.to_owned()),
                        Served::MetricsPort => None,
                    });
                })
                .default_service(web::to(http::not_found));
            connection::http1(app, limits, local_addr, drain.clone())
        };
        let server = Server::build()
            .workers(workers)
            .max_concurrent_connections(connection::max_connections_per_worker(
                config.server.max_connections,
                workers,
            ))
            .shutdown_timeout(config.server.shutdown_timeout.as_secs())
            .disable_signals()
            .listen("proof-bff", listener, worker_service)?
            .run();
        let metrics_server = metrics_listener
            .map(|listener| build_metrics_server(listener, scrape))
            .transpose()?;
        let handle = ApplicationHandle {
            readiness: readiness.clone(),
            connections,
            server: server.handle(),
            drain_delay: config.server.drain_delay,
            shutdown_timeout: config.server.shutdown_timeout,
        };
        Ok(Self {
            port,
            metrics_port,
            server,
            metrics_server,
            handle,
            readiness,
            rate_limits,
            endpoint,
            context: reload_context,
            token_reload: config.proof.token_reload,
            traces,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `GET /metrics`, when `metrics.listen` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    pub fn handle(&self) -> ApplicationHandle {
        self.handle.clone()
    }

    /// Serves until SIGTERM or SIGINT, then drains. A second SIGTERM or SIGINT during the drain
    /// stops at once, dropping the requests still in flight: an operator who signals twice wants
    /// the process gone, not another wait of up to `shutdown_timeout_s`. Either way the spans still
    /// queued for export are then sent, waiting a few seconds at most.
    pub async fn run_until_stopped(self) -> std::io::Result<Stopped> {
        let Self {
            server,
            metrics_server,
            handle,
            readiness,
            rate_limits,
            endpoint,
            context,
            token_reload,
            traces,
            ..
        } = self;
        let maintenance = tokio::spawn(maintain_rate_limits(rate_limits, readiness));
        let token = tokio::spawn(reload_secret_files(endpoint, context, token_reload));
        let dropped_lines = tokio::spawn(telemetry::report_dropped_lines());
        // Scrapes are served through the drain, and stop once the main server has.
        let metrics = metrics_server.map(|server| (server.handle(), tokio::spawn(server)));
        let stopped = serve_until_signalled(server, handle).await;
        if let Some((metrics_handle, metrics_server)) = metrics {
            metrics_handle.stop(false).await;
            if let Ok(Err(error)) = metrics_server.await {
                tracing::error!(%error, "the metrics port failed");
            }
        }
        maintenance.abort();
        token.abort();
        dropped_lines.abort();
        if let Some(traces) = traces {
            traces.shutdown().await;
        }
        stopped
    }
}

/// The number of workers the server runs: as configured, or one per core as actix would choose
/// (it runs at most 512).
fn effective_workers(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism()
            .map_or(2, std::num::NonZeroUsize::get)
            .min(512)
    }
}

/// How the service came to a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight was answered, or the shutdown timeout ran out.
    Drained,
    /// A second signal arrived during the drain; requests still in flight were dropped.
    DrainCutShort,
}

async fn serve_until_signalled(
    mut server: Server,
    handle: ApplicationHandle,
) -> std::io::Result<Stopped> {
    // One listener for both signals, kept across the drain, so a second signal sent right after
    // the first is not lost between two registrations.
    let mut signals = ShutdownSignals::listen();
    tokio::select! {
        served = &mut server => return served.map(|()| Stopped::Drained),
        () = signals.next() => {}
    }
    tracing::info!("shutdown signal received: draining");
    // The drain completes through the server future, which is polled below.
    let drain = tokio::spawn(async move { handle.drain().await });
    let stopped = tokio::select! {
        served = &mut server => served.map(|()| Stopped::Drained),
        () = signals.next() => {
            tracing::warn!("second shutdown signal received: drain cut short, stopping now");
            Ok(Stopped::DrainCutShort)
        }
    };
    drain.abort();
    // Dropping a server that is still draining stops its workers without waiting for them.
    drop(server);
    stopped
}
