//! Bounds on what one client can hold back: a request body that never arrives must not keep a
//! connection, a worker or a graceful shutdown waiting.
//!
//! The HTTP/1 server (actix-http) bounds the headers of a connection's first request and idle
//! keep-alive time itself, but not a request body. When a handler answers without reading the
//! body (a probe, a 404, a 401 before the body is needed), it reads and discards the rest of a
//! chunked body for as long as the client takes to send it, with no deadline at all. It only
//! closes the connection when the request's payload is still alive as the answer goes out; it then
//! lingers for the disconnect timeout, discarding what arrives so the answer is not lost to a
//! reset, and closes.
//!
//! [`RequestBodyBound`] therefore gives every request body a deadline measured from the request's
//! arrival and, when the body was not read to its end, marks the answer `Connection: close` and
//! keeps the payload alive until the answer is written, so the connection closes after it.

use std::cell::{Cell, RefCell};
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{
    Payload, ResponseHead, Service, ServiceRequest, ServiceResponse, Transform, forward_ready,
};
use actix_web::error::{InternalError, PayloadError};
use actix_web::http::ConnectionType;
use actix_web::{Error, HttpMessage};
use bytes::Bytes;
use futures_util::future::{Either, LocalBoxFuture, MapOk, TryFutureExt};
use futures_util::stream::Stream;
use tokio::time::{Instant, Sleep, sleep_until};

/// Longest time an early answer waits for the client to stop sending the body it announced.
const MAX_LINGER: Duration = Duration::from_secs(1);

/// How long the server keeps reading (and discarding) a request body after answering early,
/// before it closes the connection: long enough that the client sees the answer rather than a
/// reset, never longer than the request itself was allowed.
pub fn linger(client_request_timeout: Duration) -> Duration {
    client_request_timeout.min(MAX_LINGER)
}

/// Actix's limit is per worker: the instance's limit is split evenly, rounded up so that a
/// worker always accepts at least one connection.
pub fn max_connections_per_worker(max_connections: usize, workers: usize) -> usize {
    max_connections.div_ceil(workers.max(1)).max(1)
}

/// Whether a body read failed because the request ran out of time, rather than because the body
/// was malformed or cut short.
pub fn is_request_timeout(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

/// The middleware: wrap it outermost, so it sees every answer, errors included.
pub struct RequestBodyBound {
    timeout: Duration,
}

impl RequestBodyBound {
    pub fn new(client_request_timeout: Duration) -> Self {
        Self {
            timeout: client_request_timeout,
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestBodyBound
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + Unpin + 'static,
{
    type Response = ServiceResponse<HeldBody<B>>;
    type Error = Error;
    type Transform = RequestBodyBoundService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestBodyBoundService {
            service,
            timeout: self.timeout,
        }))
    }
}

pub struct RequestBodyBoundService<S> {
    service: S,
    timeout: Duration,
}

type Unheld<B> = fn(ServiceResponse<B>) -> ServiceResponse<HeldBody<B>>;

impl<S, B> Service<ServiceRequest> for RequestBodyBoundService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + Unpin + 'static,
{
    type Response = ServiceResponse<HeldBody<B>>;
    type Error = Error;
    type Future = Either<
        MapOk<S::Future, Unheld<B>>,
        LocalBoxFuture<'static, Result<Self::Response, Self::Error>>,
    >;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let payload = req.take_payload();
        if matches!(payload, Payload::None) {
            // No body announced: nothing to bound, nothing allocated.
            let unheld: Unheld<B> = |response| response.map_body(|_, body| HeldBody::new(body));
            return Either::Left(self.service.call(req).map_ok(unheld));
        }
        let body = Rc::new(RequestBody {
            payload: RefCell::new(payload),
            complete: Cell::new(false),
        });
        req.set_payload(Payload::Stream {
            payload: Box::pin(BoundedPayload {
                body: body.clone(),
                deadline: Instant::now() + self.timeout,
                timer: None,
                timed_out: false,
            }),
        });
        let response = self.service.call(req);
        Either::Right(Box::pin(async move {
            let response = response.await;
            if body.complete.get() {
                return response
                    .map(|response| response.map_body(|_, answer| HeldBody::new(answer)));
            }
            match response {
                Ok(mut response) => {
                    close_after(response.response_mut().head_mut());
                    Ok(response.map_body(|_, answer| HeldBody::holding(answer, body)))
                }
                // The error's answer is built here, holding the payload, rather than further out
                // where the payload would already be gone.
                Err(error) => {
                    let mut answer = error.error_response();
                    close_after(answer.head_mut());
                    let answer =
                        answer.map_body(|_, answer| HeldBody::holding(answer, body).boxed());
                    Err(InternalError::from_response(error, answer).into())
                }
            }
        }))
    }
}

fn close_after(head: &mut ResponseHead) {
    head.set_connection_type(ConnectionType::Close);
}

/// The request's payload, shared by the handler's stream and the answer that may outlive it.
struct RequestBody {
    payload: RefCell<Payload>,
    /// Set once the body was read to its end.
    complete: Cell<bool>,
}

/// The request body as handlers see it: the client's bytes until the deadline, then an error
/// that [`is_request_timeout`] recognises.
struct BoundedPayload {
    body: Rc<RequestBody>,
    deadline: Instant,
    /// Made only when the body does not arrive at once.
    timer: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
}

impl BoundedPayload {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        timer.as_mut().poll(cx).is_ready()
    }
}

impl Stream for BoundedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        // A body that keeps trickling in is cut off as surely as one that stops.
        if this.timer.is_some() && this.expired(cx) {
            this.timed_out = true;
            return Poll::Ready(Some(Err(timed_out())));
        }
        let polled = Pin::new(&mut *this.body.payload.borrow_mut()).poll_next(cx);
        match polled {
            Poll::Ready(None) => {
                this.body.complete.set(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(item)) => Poll::Ready(Some(item)),
            Poll::Pending if this.expired(cx) => {
                this.timed_out = true;
                Poll::Ready(Some(Err(timed_out())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn timed_out() -> PayloadError {
    PayloadError::Io(std::io::ErrorKind::TimedOut.into())
}

/// An answer, holding the request's unread payload (if any) until it has been written out.
pub struct HeldBody<B> {
    body: B,
    held: Option<Rc<RequestBody>>,
}

impl<B> HeldBody<B> {
    fn new(body: B) -> Self {
        Self { body, held: None }
    }

    fn holding(body: B, payload: Rc<RequestBody>) -> Self {
        Self {
            body,
            held: Some(payload),
        }
    }
}

impl<B: MessageBody + Unpin> MessageBody for HeldBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        // An answer that holds a payload must stay a body until it is written.
        match self.held {
            None => self.body.try_into_bytes().map_err(HeldBody::new),
            Some(_) => Err(self),
        }
    }
}
