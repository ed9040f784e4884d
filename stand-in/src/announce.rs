//! The announcer: statuses are computed from the clock whenever a route asks, so a light ticker on
//! the stand-in's worker looks at the clock for the changes nobody asked about, hands them to the
//! WebSocket connections watching each transaction, and POSTs them to the partner webhook.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Bytes};
use tokio::time::MissedTickBehavior;

use super::Shared;
use super::status::{Audience, transaction_json};
use super::store::{Status, lock};

/// How often the clock is looked at: a status change reaches watchers and the webhook at most
/// this much after it happens.
const TICK: Duration = Duration::from_millis(100);
/// How long the partner has to answer a webhook; Proof asks partners to answer at once.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(2);
/// Webhook deliveries under way at once; beyond, a change's webhook is dropped, which Proof's
/// best-effort delivery allows, rather than let a stuck partner pile up tasks.
const MAX_WEBHOOKS_IN_FLIGHT: usize = 1_000;

/// Runs until the worker it was spawned on stops.
pub(super) async fn run(shared: web::Data<Shared>) {
    let webhook = shared.config.webhook_url.as_deref().map(Webhook::new);
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let config = &shared.config;
        let mut deliveries = Vec::new();
        lock(&shared.ledger).announce_due(
            config.clock.now(),
            config.status_step,
            |transaction, entered| {
                if webhook.is_none() {
                    return;
                }
                let bodies = entered
                    .iter()
                    .filter_map(|status| {
                        transaction_json(transaction, *status, config, Audience::Webhook)
                            .ok()
                            .map(|body| (*status, Bytes::from(body)))
                    })
                    .collect();
                deliveries.push(Delivery {
                    transaction_id: transaction.id.clone(),
                    bodies,
                });
            },
        );
        if let Some(webhook) = &webhook {
            let copies = if shared.duplicate_webhooks.load(Ordering::Acquire) {
                2
            } else {
                1
            };
            for delivery in deliveries {
                webhook.send(delivery, copies);
            }
        }
    }
}

/// One transaction's changes from one tick.
struct Delivery {
    transaction_id: String,
    bodies: Vec<(Status, Bytes)>,
}

/// The partner's webhook endpoint. It lives on the worker's thread (awc's client is not `Send`).
struct Webhook {
    client: awc::Client,
    url: Rc<str>,
    in_flight: Rc<Cell<usize>>,
}

impl Webhook {
    fn new(url: &str) -> Self {
        Self {
            client: awc::Client::builder()
                .timeout(WEBHOOK_TIMEOUT)
                .disable_redirects()
                .finish(),
            url: url.into(),
            in_flight: Rc::default(),
        }
    }

    /// POSTs each body `copies` times, best effort and without retry, in its own task so that a
    /// slow partner delays nothing else. A transaction's bodies go one after the other, so that
    /// they arrive in the order of its statuses.
    fn send(&self, delivery: Delivery, copies: usize) {
        if self.in_flight.get() >= MAX_WEBHOOKS_IN_FLIGHT {
            tracing::debug!(
                merchant_transaction_id = %delivery.transaction_id,
                "proof stand-in dropped a webhook: too many in flight"
            );
            return;
        }
        let in_flight = InFlight::start(&self.in_flight);
        let client = self.client.clone();
        let url = self.url.clone();
        actix_web::rt::spawn(async move {
            let _in_flight = in_flight;
            for (status, body) in delivery.bodies {
                for _ in 0..copies {
                    post(
                        &client,
                        &url,
                        &delivery.transaction_id,
                        status,
                        body.clone(),
                    )
                    .await;
                }
            }
        });
    }
}

/// Counts a delivery as under way until it is dropped, finished or not.
struct InFlight(Rc<Cell<usize>>);

impl InFlight {
    fn start(count: &Rc<Cell<usize>>) -> Self {
        count.set(count.get() + 1);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// The URL is never logged: a partner's webhook path is often its only secret.
async fn post(client: &awc::Client, url: &str, transaction_id: &str, status: Status, body: Bytes) {
    let answer = client
        .post(url)
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .send_body(body)
        .await;
    match answer {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => tracing::debug!(
            merchant_transaction_id = transaction_id,
            status = status.as_str(),
            http_status = response.status().as_u16(),
            "the partner webhook refused a status change"
        ),
        Err(error) => tracing::debug!(
            merchant_transaction_id = transaction_id,
            status = status.as_str(),
            %error,
            "a status change could not be delivered to the partner webhook"
        ),
    }
}
