//! Prometheus metrics, one registry per running service (no global state: two services in one
//! process count apart), served as `GET /metrics` on `metrics.listen` only.
//!
//! Every request is counted once, when it ends, from its record ([`super::BffRootSpan`] reads it):
//! its route pattern, status and code (the service's own error code, `ok`, or `proof_answer` for
//! one of Proof's own answers relayed as it came), and the limit that refused it. Calls to Proof are counted by the client that makes
//! them. Labels are bounded sets: route patterns, statuses, codes the service defines, endpoint
//! names; never a user id, an email, an address, a token or a transaction id.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::record::RateLimitDecision;
use crate::call_budget::BudgetGauges;

/// The error code of an answer the service produced itself, attached to the response so the end
/// of the request can count it without reading the body.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    endpoint: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    store: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabel {
    client: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
    commit: &'static str,
}

fn duration_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn wait_histogram() -> Histogram {
    // Most calls wait not at all (the first bucket); 0.1 ms to about 13 s for those that do.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabel, Histogram, fn() -> Histogram>,
    requests_in_flight: Gauge,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_duration: Family<EndpointLabel, Histogram, fn() -> Histogram>,
    upstream_retries: Family<EndpointLabel, Counter>,
    upstream_misconfigured: Counter,
    rate_limited: Family<KindLabel, Counter>,
    sessions_refused: Family<ReasonLabel, Counter>,
    rate_limit_keys: Family<KindLabel, Gauge>,
    idempotency_entries: Family<StoreLabel, Gauge>,
    idempotency_bytes: Family<StoreLabel, Gauge>,
    event_streams: Gauge,
    watched_transactions: Gauge,
    outbound_in_flight: Family<ClientLabel, Gauge>,
    outbound_waiting: Family<ClientLabel, Gauge>,
    outbound_wait: Family<ClientLabel, Histogram, fn() -> Histogram>,
    outbound_refused: Family<ClientLabel, Counter>,
    status_websockets: Gauge,
    status_websockets_refused: Counter,
    /// Brought up to the writer's own count when read; the lock keeps two reads from adding the
    /// same lines twice.
    log_lines_dropped: Mutex<Counter>,
}

/// What is only known when `/metrics` is read: the sizes of the service's live state.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveState {
    /// In-memory rate limit keys (users, addresses); `None` with the Redis backend.
    pub rate_limit_keys: Option<(usize, usize)>,
    /// The in-memory idempotency store's entries and bytes; `None` with the Redis backend.
    pub idempotency_store: Option<(usize, usize)>,
    pub event_streams: usize,
    pub watched_transactions: usize,
    /// Log lines dropped so far because standard output did not keep up.
    pub log_lines_dropped: u64,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("proof_bff");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route pattern, status and code",
            requests.clone(),
        );
        let request_duration =
            Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "request_duration_seconds",
            "Time from the request's arrival to its answer, by route pattern",
            request_duration.clone(),
        );
        let requests_in_flight = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "requests_in_flight",
            "Requests being served now",
            requests_in_flight.clone(),
        );
        let upstream_requests = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Calls to Proof (all their attempts together), by endpoint and outcome",
            upstream_requests.clone(),
        );
        let upstream_duration =
            Family::<EndpointLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "upstream_duration_seconds",
            "Time of a call to Proof, retries included, by endpoint",
            upstream_duration.clone(),
        );
        let upstream_retries = Family::<EndpointLabel, Counter>::default();
        registry.register(
            "upstream_retries",
            "Attempts at Proof beyond each call's first, by endpoint",
            upstream_retries.clone(),
        );
        let upstream_misconfigured = Counter::<u64, AtomicU64>::default();
        registry.register(
            "upstream_misconfigured",
            "Proof refused the client token or Origin (401/403): alert on any",
            upstream_misconfigured.clone(),
        );
        let rate_limited = Family::<KindLabel, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused by a rate or stream limit, by limit",
            rate_limited.clone(),
        );
        let sessions_refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "sessions_refused",
            "Requests without a usable session, by reason",
            sessions_refused.clone(),
        );
        let rate_limit_keys = Family::<KindLabel, Gauge>::default();
        registry.register(
            "rate_limit_keys",
            "Users and addresses the in-memory rate limiter holds now",
            rate_limit_keys.clone(),
        );
        let idempotency_entries = Family::<StoreLabel, Gauge>::default();
        registry.register(
            "idempotency_entries",
            "Idempotency-Key and dedupe entries the in-memory store holds now",
            idempotency_entries.clone(),
        );
        let idempotency_bytes = Family::<StoreLabel, Gauge>::default();
        registry.register(
            "idempotency_bytes",
            "Memory the in-memory idempotency store takes now, as counted against checkout.idempotency_max_bytes",
            idempotency_bytes.clone(),
        );
        let event_streams = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "event_streams",
            "Open transaction event streams",
            event_streams.clone(),
        );
        let watched_transactions = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "watched_transactions",
            "Transactions followed at Proof for open streams",
            watched_transactions.clone(),
        );
        let outbound_in_flight = Family::<ClientLabel, Gauge>::default();
        registry.register(
            "outbound_in_flight",
            "Calls in flight through an outbound client's budget (proof: checkouts and status reads; forward: the partner's app)",
            outbound_in_flight.clone(),
        );
        let outbound_waiting = Family::<ClientLabel, Gauge>::default();
        registry.register(
            "outbound_waiting",
            "Calls waiting for a place in an outbound client's budget",
            outbound_waiting.clone(),
        );
        let outbound_wait =
            Family::<ClientLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                wait_histogram,
            );
        registry.register(
            "outbound_wait_seconds",
            "Time a call waited for a place in an outbound client's budget (zero for most)",
            outbound_wait.clone(),
        );
        let outbound_refused = Family::<ClientLabel, Counter>::default();
        registry.register(
            "outbound_refused",
            "Calls refused because no place came free before their deadline (nothing was sent)",
            outbound_refused.clone(),
        );
        let status_websockets = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "status_websockets",
            "WebSockets to Proof open now, one per watched transaction (status.max_watchers)",
            status_websockets.clone(),
        );
        let status_websockets_refused = Counter::<u64, AtomicU64>::default();
        registry.register(
            "status_websockets_refused",
            "Times a watcher polled instead of opening a WebSocket because status.max_watchers were open",
            status_websockets_refused.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because standard output did not keep up",
            log_lines_dropped.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        registry.register(
            "build_info",
            "The running version and the commit it was built from",
            build_info.clone(),
        );
        build_info
            .get_or_create(&VersionLabel {
                version: crate::build_info::VERSION,
                commit: crate::build_info::COMMIT,
            })
            .set(1);
        Self {
            registry,
            requests,
            request_duration,
            requests_in_flight,
            upstream_requests,
            upstream_duration,
            upstream_retries,
            upstream_misconfigured,
            rate_limited,
            sessions_refused,
            rate_limit_keys,
            idempotency_entries,
            idempotency_bytes,
            event_streams,
            watched_transactions,
            outbound_in_flight,
            outbound_waiting,
            outbound_wait,
            outbound_refused,
            status_websockets,
            status_websockets_refused,
            log_lines_dropped: Mutex::new(log_lines_dropped),
        }
    }

    /// The series of one outbound client's call budget, labelled `client`.
    pub fn outbound_budget(&self, client: &'static str) -> BudgetGauges {
        let label = ClientLabel { client };
        BudgetGauges {
            in_flight: self.outbound_in_flight.get_or_create(&label).clone(),
            waiting: self.outbound_waiting.get_or_create(&label).clone(),
            wait: self.outbound_wait.get_or_create(&label).clone(),
            refused: self.outbound_refused.get_or_create(&label).clone(),
        }
    }

    /// The watchers' WebSocket count and refusals at `status.max_watchers`.
    pub fn status_websockets(&self) -> (Gauge, Counter) {
        (
            self.status_websockets.clone(),
            self.status_websockets_refused.clone(),
        )
    }

    pub fn request_started(&self) {
        self.requests_in_flight.inc();
    }

    /// One request's outcome: `code` is the service's own error code, if it answered with one;
    /// `rate_limit`, what the limits made of it, if it reached them.
    pub fn request_ended(
        &self,
        route: String,
        status: u16,
        code: Option<&'static str>,
        duration: Duration,
        rate_limit: Option<RateLimitDecision>,
    ) {
        self.requests_in_flight.dec();
        let code = match code {
            Some(code) => code,
            None if (200..300).contains(&status) => "ok",
            // Not the service's own envelope: one of Proof's answers relayed as it came (or a
            // bare answer of the HTTP layer, told apart by its status).
            None => "proof_answer",
        };
        let labels = RequestLabels {
            route,
            status,
            code,
        };
        self.requests.get_or_create(&labels).inc();
        self.request_duration
            .get_or_create(&RouteLabel {
                route: labels.route,
            })
            .observe(duration.as_secs_f64());
        if let Some(RateLimitDecision::Refused(kind)) = rate_limit {
            self.rate_limited.get_or_create(&KindLabel { kind }).inc();
        }
        if let "no_session" | "invalid_session" | "session_expired" | "session_backend" = code {
            self.sessions_refused
                .get_or_create(&ReasonLabel { reason: code })
                .inc();
        }
    }

    /// One call to Proof, all its attempts together.
    pub fn upstream_call(
        &self,
        endpoint: &'static str,
        outcome: &'static str,
        attempts: u32,
        duration: Duration,
    ) {
        self.upstream_requests
            .get_or_create(&UpstreamLabels { endpoint, outcome })
            .inc();
        self.upstream_duration
            .get_or_create(&EndpointLabel { endpoint })
            .observe(duration.as_secs_f64());
        if attempts > 1 {
            self.upstream_retries
                .get_or_create(&EndpointLabel { endpoint })
                .inc_by(u64::from(attempts - 1));
        }
        if outcome == "misconfigured" {
            self.upstream_misconfigured.inc();
        }
    }

    /// The text exposition, with the live state's gauges as of now.
    pub fn render(&self, live: LiveState) -> String {
        if let Some((users, addresses)) = live.rate_limit_keys {
            let set = |kind, value: usize| {
                self.rate_limit_keys
                    .get_or_create(&KindLabel { kind })
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            set("per_user", users);
            set("per_ip", addresses);
        }
        if let Some((entries, bytes)) = live.idempotency_store {
            let label = StoreLabel { store: "memory" };
            let set = |family: &Family<StoreLabel, Gauge>, value: usize| {
                family
                    .get_or_create(&label)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            set(&self.idempotency_entries, entries);
            set(&self.idempotency_bytes, bytes);
        }
        self.event_streams
            .set(i64::try_from(live.event_streams).unwrap_or(i64::MAX));
        self.watched_transactions
            .set(i64::try_from(live.watched_transactions).unwrap_or(i64::MAX));
        let dropped = self
            .log_lines_dropped
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        dropped.inc_by(live.log_lines_dropped.saturating_sub(dropped.get()));
        drop(dropped);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_status_and_code() {
        let metrics = Metrics::new();
        metrics.request_started();
        metrics.request_ended(
            "/start-checkout".to_owned(),
            200,
            None,
            Duration::from_millis(3),
            Some(RateLimitDecision::Allowed),
        );
        metrics.request_started();
        metrics.request_ended(
            "/start-checkout".to_owned(),
            429,
            Some("per_user"),
            Duration::from_millis(1),
            Some(RateLimitDecision::Refused("per_user")),
        );
        metrics.upstream_call("/widget/session", "ok", 2, Duration::from_millis(5));
        let text = metrics.render(LiveState::default());
        assert!(text.contains(
            "proof_bff_requests_total{route=\"/start-checkout\",status=\"200\",code=\"ok\"} 1"
        ));
        assert!(text.contains("proof_bff_rate_limited_total{kind=\"per_user\"} 1"));
        assert!(text.contains("proof_bff_upstream_retries_total{endpoint=\"/widget/session\"} 1"));
        assert!(text.contains("proof_bff_requests_in_flight 0"));
        assert!(text.contains(&format!(
            "proof_bff_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            crate::build_info::VERSION,
            crate::build_info::COMMIT
        )));
    }
}
