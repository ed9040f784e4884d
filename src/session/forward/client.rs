//! The calls to the partner's app, made on a thread of their own.
//!
//! The thread, `forward-session`, is a [`SideThread`]: it owns the one awc client (so one
//! connection pool to the app) and makes every call: a checkout hands it an [`AppCall`] through a
//! channel and waits for the call's flight to land. The call belongs to no worker and to no
//! checkout, so single flight holds across workers, and a browser that leaves cancels nothing the
//! others wait on. One thread is plenty: most checkouts are answered from the cache, and a
//! call spends its time waiting for the app.
//!
//! At most `session.forward.max_connections` calls are in flight at once (a [`CallBudget`]; awc's
//! own connection limit, with its hidden queue, is off). A call first takes a place, waiting for
//! one until its deadline at the latest; refused there ([`Failure::Busy`]), it sends nothing and
//! its checkouts get 503 `session_backend`. The calls in flight, waiting and refused are counted
//! in the metrics (`client="forward"`) when those are served.
//!
//! Each call is bounded as a whole (waiting for a place, connecting, the answer's head and its
//! body) by `session.forward.timeout_ms`, counted from when the checkout asked for it, and the body
//! by [`MAX_ANSWER_BYTES`]. A call whose pooled connection turns out closed by the app (idle
//! keep-alive connections are closed by app servers at their own pace) is made once more on a new
//! one, within the same bound and the same place: it is a `GET`.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use actix_web::http::Uri;
use actix_web::http::header::{self, HeaderValue};
use awc::error::{ConnectError, PayloadError, SendRequestError};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::answer::{Failure, MAX_ANSWER_BYTES, UserFields, user_from_answer};
use super::credentials::Credentials;
use super::flights::Flight;
use crate::call_budget::{BudgetGauges, Busy, CallBudget};
use crate::session::SessionUser;
use crate::side_thread::SideThread;
use crate::telemetry::REQUEST_ID_HEADER;
use crate::tls_roots::TlsRoots;

const USER_AGENT: &str = concat!("proof-bff/", env!("CARGO_PKG_VERSION"));
/// Idle connections to the app are kept this long for the next call.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Where and how the app is asked.
#[derive(Debug)]
pub(super) struct AppEndpoint {
    pub url: Uri,
    pub timeout: Duration,
    /// Calls in flight at once (at least one).
    pub max_connections: usize,
    pub tls_roots: TlsRoots,
    pub fields: UserFields,
}

/// One call: the credentials to forward, the checkout's request id (for the app's logs), the
/// checkout's span (so the call's log lines carry its request id) and the flight it lands.
pub(super) struct AppCall {
    pub credentials: Credentials,
    pub request_id: Option<HeaderValue>,
    pub span: tracing::Span,
    pub flight: Flight,
}

/// A call on its way to the client thread, with when the checkout asked for it: its bound counts
/// from then.
struct Queued {
    asked_at: Instant,
    call: AppCall,
}

/// The handle of the client thread. The thread ends when the handle is dropped.
#[derive(Debug)]
pub(super) struct AppClient {
    calls: mpsc::UnboundedSender<Queued>,
    _thread: SideThread,
}

impl AppClient {
    /// Starts the thread and its runtime; fails only when the system refuses a thread or a runtime.
    /// `gauges`: the budget's series, when metrics are served.
    pub fn start(endpoint: AppEndpoint, gauges: Option<BudgetGauges>) -> io::Result<Self> {
        let (calls, queue) = mpsc::unbounded_channel();
        let thread = SideThread::start("forward-session", move || serve(endpoint, gauges, queue))?;
        Ok(Self {
            calls,
            _thread: thread,
        })
    }

    /// Hands the call to the client thread. Should the thread be gone, the call is dropped with
    /// its flight, which tells the checkouts waiting on it.
    pub fn send(&self, call: AppCall) {
        let _ = self.calls.send(Queued {
            asked_at: Instant::now(),
            call,
        });
    }
}

/// Makes the calls as they come, each on its own task; ends when every handle is dropped.
async fn serve(
    endpoint: AppEndpoint,
    gauges: Option<BudgetGauges>,
    mut queue: mpsc::UnboundedReceiver<Queued>,
) {
    // No limit of awc's own (0): its queue would be hidden and unbounded by any deadline. The
    // budget bounds the calls instead.
    let mut connector = awc::Connector::new()
        .timeout(endpoint.timeout)
        .conn_keep_alive(KEEP_ALIVE)
        .limit(0);
    if let Some(tls) = endpoint.tls_roots.client_config() {
        connector = connector.rustls_0_23(tls);
    }
    // The call's bound is applied around the whole exchange below, the body included.
    let client = Rc::new(
        awc::Client::builder()
            .connector(connector)
            .disable_timeout()
            .disable_redirects()
            .no_default_headers()
            .finish(),
    );
    let budget = Rc::new(CallBudget::new(endpoint.max_connections, gauges));
    let endpoint = Rc::new(endpoint);
    while let Some(Queued { asked_at, call }) = queue.recv().await {
        let AppCall {
            credentials,
            request_id,
            span,
            flight,
        } = call;
        let (client, budget, endpoint) = (client.clone(), budget.clone(), endpoint.clone());
        actix_rt::spawn(
            async move {
                let deadline = asked_at + endpoint.timeout;
                let outcome = call_within(
                    deadline,
                    &budget,
                    ask(&client, &endpoint, &credentials, request_id.as_ref()),
                )
                .await;
                report(&outcome, asked_at);
                flight.land(outcome.map_err(Failure::session_error));
            }
            .instrument(span),
        );
    }
}

/// Takes a place in `budget`, waiting for one until `deadline` at the latest, and makes the call
/// in what is left until `deadline`. Refused a place, the call is never made: nothing is sent.
async fn call_within(
    deadline: Instant,
    budget: &CallBudget,
    call: impl Future<Output = Result<SessionUser, Failure>>,
) -> Result<SessionUser, Failure> {
    // Held until the call ends, its answer read (or given up on).
    let _place = budget.enter(deadline).await.map_err(|Busy| Failure::Busy)?;
    // A place handed over just as the deadline passed (or taken by a call that waited that long
    // on this thread) is of no use: the call would be started only to be dropped at once.
    if Instant::now() >= deadline {
        return Err(Failure::Timeout);
    }
    tokio::time::timeout_at(deadline, call)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

async fn ask(
    client: &awc::Client,
    endpoint: &AppEndpoint,
    credentials: &Credentials,
    request_id: Option<&HeaderValue>,
) -> Result<SessionUser, Failure> {
    let request = || build_request(client, endpoint, credentials, request_id);
    let mut response = match request().send().await {
        Ok(response) => response,
        Err(error) if is_closed_connection(&error) => {
            request().send().await.map_err(send_failure)?
        }
        Err(error) => return Err(send_failure(error)),
    };
    match response.status().as_u16() {
        200 => {}
        status @ (401 | 403) => return Err(Failure::NoSession { status }),
        status => return Err(Failure::Status { status }),
    }
    let body = response
        .body()
        .limit(MAX_ANSWER_BYTES)
        .await
        .map_err(|error| match error {
            PayloadError::Overflow => Failure::TooLarge,
            _ => Failure::Broken,
        })?;
    user_from_answer(&body, &endpoint.fields)
}

/// Built from scratch: of the browser's request only the forwarded credentials go, and the
/// request id, so the app's logs can be matched with ours.
fn build_request(
    client: &awc::Client,
    endpoint: &AppEndpoint,
    credentials: &Credentials,
    request_id: Option<&HeaderValue>,
) -> awc::ClientRequest {
    let mut request = client
        .get(endpoint.url.clone())
        .insert_header((header::ACCEPT, HeaderValue::from_static("application/json")))
        .insert_header((header::USER_AGENT, HeaderValue::from_static(USER_AGENT)));
    if let Some(request_id) = request_id {
        request = request.insert_header((REQUEST_ID_HEADER, request_id.clone()));
    }
    if let Some(cookie) = &credentials.cookie {
        request = request.insert_header((header::COOKIE, cookie.clone()));
    }
    if let Some(authorization) = &credentials.authorization {
        request = request.insert_header((header::AUTHORIZATION, authorization.clone()));
    }
    request
}

/// A connection that broke before any answer: most often a pooled one the app had just closed.
fn is_closed_connection(error: &SendRequestError) -> bool {
    matches!(
        error,
        SendRequestError::Connect(ConnectError::Disconnected)
            | SendRequestError::Send(_)
            | SendRequestError::Response(_)
    )
}

fn send_failure(error: SendRequestError) -> Failure {
    match error {
        SendRequestError::Connect(ConnectError::Disconnected) => Failure::Broken,
        SendRequestError::Connect(ConnectError::Timeout) | SendRequestError::Timeout => {
            Failure::Timeout
        }
        SendRequestError::Connect(_) => Failure::Unreachable,
        _ => Failure::Broken,
    }
}

/// One line per call; what the app refuses for a user is routine, what makes checkouts fail is a
/// warning. Never a credential or a value from the answer.
fn report(outcome: &Result<SessionUser, Failure>, started: Instant) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(_) => tracing::debug!(elapsed_ms, "session checked with the app"),
        Err(failure @ Failure::NoSession { .. }) => {
            tracing::debug!(elapsed_ms, reason = %failure, "session checked with the app: none");
        }
        Err(failure) => tracing::warn!(
            elapsed_ms,
            reason = %failure,
            "session check with the app failed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::session::{SessionError, UserEmail};

    fn user() -> SessionUser {
        SessionUser {
            user_id: "u1".into(),
            email: UserEmail::parse("u1@example.org").unwrap(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_refused_a_place_at_its_deadline_is_never_made() {
        let budget = CallBudget::new(1, None);
        let start = Instant::now();
        let _held = budget.enter(start).await.unwrap();
        let made = Cell::new(false);

        let outcome = call_within(start + Duration::from_secs(1), &budget, async {
            made.set(true);
            Ok(user())
        })
        .await;
        assert_eq!(outcome, Err(Failure::Busy));
        assert_eq!(outcome.unwrap_err().session_error(), SessionError::Backend);
        assert!(!made.get(), "nothing was sent");
        assert_eq!(Instant::now(), start + Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_a_place_counts_against_the_calls_bound() {
        let budget = CallBudget::new(1, None);
        let start = Instant::now();
        let held = budget.enter(start).await.unwrap();
        let release = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            drop(held);
        };
        // 700 ms waited and 500 ms of call do not fit in a bound of 1 s.
        let call = call_within(start + Duration::from_secs(1), &budget, async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(user())
        });
        let ((), outcome) = tokio::join!(release, call);
        assert_eq!(outcome, Err(Failure::Timeout));
        assert_eq!(Instant::now(), start + Duration::from_secs(1));
        assert_eq!(budget.available(), 1, "the place is given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_place_given_back_at_a_timeout_goes_to_the_next_call_with_what_is_left_of_its_bound()
    {
        // Every call has the same bound and waiters are served in order, so the place of a call
        // the app never answers comes back at its deadline, before the next call's.
        let budget = CallBudget::new(1, None);
        let start = Instant::now();
        let bound = Duration::from_secs(1);
        let stalled = call_within(start + bound, &budget, std::future::pending());
        let made_at = Cell::new(None);
        let next = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            call_within(start + Duration::from_millis(100) + bound, &budget, async {
                made_at.set(Some(Instant::now()));
                std::future::pending().await
            })
            .await
        };
        let (first, second) = tokio::join!(stalled, next);
        assert_eq!(first, Err(Failure::Timeout));
        assert_eq!(second, Err(Failure::Timeout));
        assert_eq!(made_at.get(), Some(start + bound));
        assert_eq!(Instant::now(), start + Duration::from_millis(1100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_whose_deadline_passed_before_it_had_a_place_is_never_made() {
        let budget = CallBudget::new(1, None);
        let deadline = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let made = Cell::new(false);
        let outcome = call_within(deadline, &budget, async {
            made.set(true);
            Ok(user())
        })
        .await;
        assert_eq!(outcome, Err(Failure::Timeout));
        assert!(!made.get(), "nothing was sent");
        assert_eq!(budget.available(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_with_a_free_place_is_made_within_its_bound() {
        let budget = CallBudget::new(1, None);
        let start = Instant::now();
        let outcome = call_within(start + Duration::from_secs(1), &budget, async {
            assert_eq!(budget.available(), 0, "the call holds the place");
            tokio::time::sleep(Duration::from_millis(900)).await;
            Ok(user())
        })
        .await;
        assert_eq!(outcome, Ok(user()));
        assert_eq!(budget.available(), 1);
    }
}
