//! Liveness and readiness probes, and the readiness they report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use tokio::sync::Notify;

use super::envelope_response;

/// Liveness: the process is serving.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(r#"{"status":"ok"}"#)
}

/// Readiness: stops answering 200 as soon as draining starts, so a load balancer takes the
/// instance out before it goes away, and while a backend that checkouts need is unreachable.
pub async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    if readiness.is_leaving() {
        return envelope_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting_down",
            "the service is draining",
        );
    }
    if !readiness.rate_limit_backend_reachable() {
        return envelope_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "rate_limit_backend",
            "the rate limit backend is unreachable",
        );
    }
    if !readiness.session_backend_ready() {
        return envelope_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "session_backend",
            "sessions cannot be checked yet",
        );
    }
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .body(r#"{"status":"ready"}"#)
}

/// Whether the instance should still receive traffic.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Set at SIGTERM: the load balancer is told to stop sending traffic (`/readyz` 503), while
    /// what still arrives is served, for `drain_delay_s`.
    leaving: AtomicBool,
    /// Set when the drain delay is over: what is still in flight finishes; requests that still
    /// arrive get 503 `shutting_down`, and their connections close after it.
    draining: AtomicBool,
    /// Wakes what must end when a drain starts (event streams), so they do not hold it open.
    drain_started: Notify,
    /// Set while the shared rate limit backend, when checkouts need it, did not answer its last
    /// check.
    rate_limit_backend_down: AtomicBool,
    /// Set while the session source cannot verify anyone yet (e.g. no identity provider key set
    /// loaded so far).
    session_backend_not_ready: AtomicBool,
    /// Work under way that no connection holds open ([`DrainHold`]), and the wake-up when one ends.
    holds: AtomicUsize,
    hold_released: Notify,
}

/// Work that outlives its request and that the drain waits for, as it waits for requests in flight:
/// a checkout's call to Proof whose client has gone. Stopping the server ends its workers once
/// their connections are closed, and with them every task they run; a call cut there may have
/// created a session at Proof whose answer is then never kept for the client's retry.
#[derive(Debug)]
pub struct DrainHold(Arc<Readiness>);

impl Drop for DrainHold {
    fn drop(&mut self) {
        self.0.holds.fetch_sub(1, Ordering::SeqCst);
        self.0.hold_released.notify_waiters();
    }
}

impl Readiness {
    pub fn set_rate_limit_backend_reachable(&self, reachable: bool) {
        self.rate_limit_backend_down
            .store(!reachable, Ordering::Relaxed);
    }

    pub fn rate_limit_backend_reachable(&self) -> bool {
        !self.rate_limit_backend_down.load(Ordering::Relaxed)
    }

    pub fn set_session_backend_ready(&self, ready: bool) {
        self.session_backend_not_ready
            .store(!ready, Ordering::Relaxed);
    }

    pub fn session_backend_ready(&self) -> bool {
        !self.session_backend_not_ready.load(Ordering::Relaxed)
    }

    /// The instance is going away: not ready any more, still serving.
    pub fn start_leaving(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    /// Not ready: leaving, or draining.
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst) || self.is_draining()
    }

    pub fn start_draining(&self) {
        self.leaving.store(true, Ordering::SeqCst);
        self.draining.store(true, Ordering::SeqCst);
        self.drain_started.notify_waiters();
    }

    /// Returns once a drain has started (at once if one has).
    pub async fn drain_started(&self) {
        let started = self.drain_started.notified();
        let mut started = std::pin::pin!(started);
        // Registered before the flag is read, so a drain starting in between is not missed.
        started.as_mut().enable();
        if self.is_draining() {
            return;
        }
        started.await;
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Holds the drain until the returned value is dropped.
    pub fn hold_drain(self: &Arc<Self>) -> DrainHold {
        self.holds.fetch_add(1, Ordering::SeqCst);
        DrainHold(self.clone())
    }

    /// Returns once no [`DrainHold`] is held (at once if none is).
    pub async fn holds_released(&self) {
        loop {
            let released = self.hold_released.notified();
            let mut released = std::pin::pin!(released);
            // Registered before the count is read, so a hold released in between is not missed.
            released.as_mut().enable();
            if self.holds.load(Ordering::SeqCst) == 0 {
                return;
            }
            released.await;
        }
    }
}
