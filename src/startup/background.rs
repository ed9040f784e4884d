//! The tasks that run beside the server for as long as it does: keeping the rate limits' state
//! (and `/readyz`) in step, and re-reading the secrets given as files.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;

use crate::admission::AdmissionContext;
use crate::http::Readiness;
use crate::proof::ProofEndpoint;
use crate::rate_limit::{BACKEND_CHECK_INTERVAL, CLEANUP_INTERVAL, RateLimits};

/// In memory: drops keys that are fresh again, so idle users and addresses cost nothing. With
/// Redis (keys expire there by themselves) when checkouts need it: pings it every second and keeps
/// `/readyz` in step, so an instance leaves the load balancer while Redis is unreachable and comes
/// back by itself when it answers again.
pub(super) async fn maintain_rate_limits(rate_limits: Arc<RateLimits>, readiness: Arc<Readiness>) {
    if let Some(limiter) = rate_limits.in_memory() {
        let mut interval = tokio::time::interval(CLEANUP_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            limiter.retain_recent();
        }
    }
    let Some(redis) = rate_limits.required_backend() else {
        return;
    };
    let mut interval = tokio::time::interval(BACKEND_CHECK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_reachable = None;
    loop {
        interval.tick().await;
        let outcome = redis.ping().await;
        let reachable = outcome.is_ok();
        readiness.set_rate_limit_backend_reachable(reachable);
        if was_reachable != Some(reachable) {
            match outcome {
                Ok(()) => tracing::info!("rate limit backend reachable: ready"),
                Err(error) => {
                    tracing::warn!(%error, "rate limit backend unreachable: not ready");
                }
            }
        }
        was_reachable = Some(reachable);
    }
}

/// Re-reads the secrets given as files (`proof.client_token_file`, the session's key file) every
/// `every` (unless zero) and on each SIGHUP, swapping in what changed.
///
/// Runs on the runtime that also serves SIGTERM, so it never reads a file itself: each read runs on
/// a thread of its own and is awaited with a timeout ([`crate::secret_file`]). A read stuck on a
/// hung mount is given up on (the last good secret stays) and later reloads of that file are
/// skipped until it returns, so ticks never pile threads up.
pub(super) async fn reload_secret_files(
    endpoint: Arc<ProofEndpoint>,
    context: web::Data<AdmissionContext>,
    every: Duration,
) {
    // Both at once: a stuck token file does not delay the key's reload, nor the other way round.
    let reload = || async {
        tokio::join!(endpoint.token().reload(), context.session.reload_keys());
    };
    // No read here: start-up has just read each file with the same rules, and a change since is
    // seen at the first tick or SIGHUP (a SIGHUP before this point ends the process, the handler
    // not being installed yet). Reads then happen only on a tick or a SIGHUP, never unprompted
    // beside one.

    // Installed whatever the configuration: SIGHUP's default would end the process.
    #[cfg(unix)]
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut interval = (!every.is_zero()).then(|| {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hangups.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let tick = async {
            match interval.as_mut() {
                Some(interval) => {
                    interval.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = hangup => tracing::info!("SIGHUP: re-reading the secrets given as files"),
            () = tick => {}
        }
        reload().await;
    }
}
