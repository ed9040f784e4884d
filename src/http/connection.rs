//! Bounds on what one client can hold back: a request that never finishes arriving, or an answer
//! never read, must not keep a connection, a worker or a graceful drain waiting.
//!
//! The HTTP/1 server (actix-http) bounds the headers of a connection's first request and idle
//! keep-alive time itself, but nothing else a client can withhold:
//!
//! - Once a kept-alive connection receives the first bytes of its next request, the keep-alive
//!   timer is cleared and no other starts: headers that stop half way hold the connection forever.
//!   [`ClientStream`] (the socket as the server sees it) ends such a connection when the headers
//!   are not complete within the request timeout of their first byte.
//! - A request body has no deadline. [`RequestBodyBound`] gives every body one, measured from the
//!   request's first byte; the checkout answers 408 when it passes.
//! - When a handler answers without reading the body (a probe, a 404, a 401 before the body is
//!   needed), the server reads and discards the rest of a chunked body for as long as the client
//!   takes to send it. It closes the connection instead only when the request's payload is still
//!   alive as the answer goes out (it then lingers for the disconnect timeout, discarding what
//!   arrives so the answer is not lost to a reset). [`RequestBodyBound`] therefore marks such an
//!   answer `Connection: close` and holds the payload until the answer is written.
//! - A write that makes no progress waits forever. [`ClientStream`] ends a connection whose
//!   client has read nothing for the request timeout while an answer waits to be written.
//!
//! And one thing the server answers by itself, outside the app: a request it cannot parse (400)
//! or whose head is too large (431) gets a bare answer with an empty body, no request id, and
//! nothing to hook into (the HTTP/1 dispatcher writes it straight to the socket, and ends the
//! connection after it). [`ClientStream`] recognises that answer as it is written, always the
//! last on its connection, and writes the service's own envelope with a request id in its place.

use std::cell::{Cell, RefCell};
use std::future::{Future, Ready, ready};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use actix_http::HttpService;
use actix_service::{ServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{
    AppConfig, Extensions, Payload, ResponseHead, Service, ServiceRequest, ServiceResponse,
    Transform, forward_ready,
};
use actix_web::error::{InternalError, PayloadError};
use actix_web::http::ConnectionType;
use actix_web::rt::net::TcpStream;
use actix_web::{App, Error, HttpMessage, HttpRequest};
use bytes::Bytes;
use futures_util::stream::Stream;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep, sleep_until};

/// What the server allows one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub client_request_timeout: Duration,
    pub keep_alive: Duration,
}

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

/// Whether the client of `req` closed its side of the connection (or the connection broke): a
/// body cut short by that is a client gone, not a malformed body (the server reports both as an
/// incomplete payload).
pub fn client_left(req: &HttpRequest) -> bool {
    req.conn_data::<Rc<RequestClock>>()
        .is_some_and(|clock| clock.client_left.get())
}

/// Whether a body read failed because the request ran out of time, rather than because the body
/// was malformed or cut short.
pub fn is_request_timeout(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

/// The HTTP/1 service for one worker: `app` behind the bounded socket and the server's own
/// timeouts. It replaces what `HttpServer` assembles, which offers no way to wrap the socket.
pub fn http1<T, B>(
    app: App<T>,
    limits: ConnectionLimits,
    local_addr: SocketAddr,
) -> impl ServiceFactory<
    TcpStream,
    Config = (),
    Response = (),
    Error = actix_http::error::DispatchError,
    InitError = (),
>
where
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    let timeout = limits.client_request_timeout;
    fn_service(move |io: TcpStream| {
        let peer = io.peer_addr().ok();
        ready(Ok((ClientStream::new(io, timeout), peer)))
    })
    .and_then(
        HttpService::<ClientStream, _, _>::build()
            .keep_alive(limits.keep_alive)
            // Covers the headers of a connection's first request, with a bare 408.
            .client_request_timeout(timeout)
            .client_disconnect_timeout(linger(timeout))
            // A browser that goes away (a closed tab, a reloaded page) ends its request at once:
            // an event stream frees its place in the stream limits and its watcher, a checkout
            // stops waiting for Proof on its behalf (the call goes on to its end without it). No
            // browser half-closes a connection to wait for an answer.
            .h1_allow_half_closed(false)
            .local_addr(local_addr)
            .on_connect_ext(|io: &ClientStream, data: &mut Extensions| {
                data.insert(io.clock.clone());
            })
            // The app builds no URLs and reads no host from its configuration, so the default
            // one (host and address) is never used.
            .h1(map_config(app, |()| AppConfig::default())),
    )
}

/// Where a connection is between its requests, and its timer, shared by its [`ClientStream`] and
/// [`RequestBodyBound`] through the connection's data.
pub struct RequestClock {
    timeout: Duration,
    phase: Cell<Phase>,
    /// One timer for the headers and then the body of each request, which share their deadline.
    timer: RefCell<Timer>,
    /// The client closed its side of the connection, or the connection broke.
    client_left: Cell<bool>,
}

#[derive(Clone, Copy)]
enum Phase {
    /// No request is being received or served.
    Idle,
    /// The first bytes of a request arrived, not yet the end of its headers; all of the request
    /// must have arrived by `deadline`.
    Headers { deadline: Instant },
    /// The headers are complete; the body (if any) must have arrived by `deadline`.
    Request { deadline: Instant },
}

impl RequestClock {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            phase: Cell::new(Phase::Idle),
            timer: RefCell::default(),
            client_left: Cell::new(false),
        }
    }

    /// Bytes arrived from the client: between requests, they start the next one.
    fn bytes_arrived(&self, bytes: &[u8]) {
        let deadline = match self.phase.get() {
            Phase::Request { .. } => return,
            Phase::Headers { deadline } => deadline,
            Phase::Idle => Instant::now() + self.timeout,
        };
        // Headers usually arrive whole: seeing their end here spares arming the timer for them.
        let phase = if ends_headers(bytes) {
            Phase::Request { deadline }
        } else {
            Phase::Headers { deadline }
        };
        self.phase.set(phase);
    }

    /// The deadline of headers still arriving.
    fn headers_deadline(&self) -> Option<Instant> {
        match self.phase.get() {
            Phase::Headers { deadline } => Some(deadline),
            Phase::Idle | Phase::Request { .. } => None,
        }
    }

    /// The request's headers are complete; returns when its body must have arrived.
    fn request_started(&self) -> Instant {
        let deadline = match self.phase.get() {
            Phase::Headers { deadline } | Phase::Request { deadline } => deadline,
            // Pipelined: its bytes came in while the previous request was served.
            Phase::Idle => Instant::now() + self.timeout,
        };
        self.phase.set(Phase::Request { deadline });
        deadline
    }

    fn request_answered(&self) {
        self.phase.set(Phase::Idle);
    }

    fn expired(&self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        self.timer.borrow_mut().expired(deadline, cx)
    }
}

/// Whether `bytes` hold the blank line that ends a request's headers. One split across two reads
/// is missed, which only costs arming the timer.
fn ends_headers(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|window| window == b"\r\n\r\n")
}

/// A timer made on first use and moved rather than made again.
#[derive(Default)]
struct Timer(Option<Pin<Box<Sleep>>>);

impl Timer {
    /// Whether `deadline` has passed; if not, the task is woken when it does.
    fn expired(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        let timer = self
            .0
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

/// A client's socket as the HTTP server reads and writes it. Once a request's headers are late,
/// reads see the end of the stream, so the server closes the connection; once the client has
/// read nothing for the request timeout while an answer waits, writes fail. The server's own bare
/// answer to a request it could not read goes out in the envelope instead.
pub struct ClientStream {
    io: TcpStream,
    clock: Rc<RequestClock>,
    /// Set while a write is blocked: when it must have made progress.
    write_deadline: Option<Instant>,
    write_timer: Timer,
    /// The envelope being written in place of the server's bare refusal.
    refusal: Option<EnvelopedRefusal>,
}

impl ClientStream {
    fn new(io: TcpStream, timeout: Duration) -> Self {
        Self {
            io,
            clock: Rc::new(RequestClock::new(timeout)),
            write_deadline: None,
            write_timer: Timer::default(),
            refusal: None,
        }
    }

    /// Writes `buf`, or, when it ends with the server's bare refusal, what comes before it and
    /// then the envelope in its place (reported as the refusal's bytes, written).
    fn poll_write_enveloped(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.refusal.is_none() {
            match bare_refusal(buf) {
                None => {
                    let polled = Pin::new(&mut self.io).poll_write(cx, buf);
                    return self.watch_write(cx, polled);
                }
                Some(bare) if bare.at == 0 => self.refusal = Some(bare.enveloped()),
                // The answers before it go out as they are, first.
                Some(bare) => {
                    let polled = Pin::new(&mut self.io).poll_write(cx, &buf[..bare.at]);
                    return self.watch_write(cx, polled);
                }
            }
        }
        loop {
            let Some(refusal) = &self.refusal else {
                unreachable!("set above")
            };
            if refusal.written == refusal.bytes.len() {
                let replaced = refusal.replaces;
                self.refusal = None;
                return Poll::Ready(Ok(replaced));
            }
            let polled = Pin::new(&mut self.io).poll_write(cx, &refusal.bytes[refusal.written..]);
            let written = ready!(self.watch_write(cx, polled))?;
            if written == 0 {
                return Poll::Ready(Ok(0));
            }
            if let Some(refusal) = &mut self.refusal {
                refusal.written += written;
            }
        }
    }

    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.write_deadline = None;
            return polled;
        }
        let deadline = *self
            .write_deadline
            .get_or_insert_with(|| Instant::now() + self.clock.timeout);
        if self.write_timer.expired(deadline, cx) {
            Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
        } else {
            Poll::Pending
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Checked before reading, so headers that trickle in are cut off as surely as headers
        // that stop. The end of the stream makes the server close the connection.
        if let Some(deadline) = this.clock.headers_deadline()
            && this.clock.expired(deadline, cx)
        {
            return Poll::Ready(Ok(()));
        }
        let filled = buf.filled().len();
        let room = buf.remaining() > 0;
        if let Err(error) = ready!(Pin::new(&mut this.io).poll_read(cx, buf)) {
            this.clock.client_left.set(true);
            return Poll::Ready(Err(error));
        }
        let read = &buf.filled()[filled..];
        if !read.is_empty() {
            this.clock.bytes_arrived(read);
        } else if room {
            // The end of the stream: the client closed its side.
            this.clock.client_left.set(true);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_enveloped(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.watch_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The answers the HTTP/1 server writes by itself for a request it could not read, as it writes
/// them: the status line, then one of [`BARE_REFUSAL_HEADERS`], then the date.
const BARE_REFUSALS: [(&[u8], Refusal); 2] = [
    (b"HTTP/1.1 400 Bad Request\r\n", Refusal::Malformed),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        Refusal::HeadersTooLarge,
    ),
];
/// The headers before the date: `Connection` is written only when the connection was not
/// already to be closed (after a kept-alive request, it is left out; the connection is closed
/// after the refusal either way).
const BARE_REFUSAL_HEADERS: [&[u8]; 2] = [
    b"content-length: 0\r\nconnection: close\r\n",
    b"content-length: 0\r\n",
];
/// An HTTP date (IMF-fixdate) is always this long.
const HTTP_DATE_LEN: usize = 29;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Malformed,
    HeadersTooLarge,
}

impl Refusal {
    fn status_line(self) -> &'static str {
        match self {
            Self::Malformed => "HTTP/1.1 400 Bad Request",
            Self::HeadersTooLarge => "HTTP/1.1 431 Request Header Fields Too Large",
        }
    }

    fn status(self) -> u16 {
        match self {
            Self::Malformed => 400,
            Self::HeadersTooLarge => 431,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed_request",
            Self::HeadersTooLarge => "headers_too_large",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Malformed => "the request is not valid HTTP/1.1",
            Self::HeadersTooLarge => {
                "the request's headers are too large (at most 128 KiB and 96 header lines)"
            }
        }
    }
}

/// The envelope written in place of a bare refusal, and how far it has been written.
struct EnvelopedRefusal {
    bytes: Vec<u8>,
    written: usize,
    /// The length of the bare refusal it stands for.
    replaces: usize,
}

/// One of the server's bare refusals at the end of a write.
struct BareRefusal<'a> {
    /// Where it starts.
    at: usize,
    refusal: Refusal,
    date: &'a str,
    len: usize,
}

/// The bare refusal `buf` ends with, if any. The refusal is the last answer on its connection,
/// so it can only be at the end of what is written; one split across two writes (the socket took
/// only part of what came before) is left as it is.
fn bare_refusal(buf: &[u8]) -> Option<BareRefusal<'_>> {
    const DATE: &[u8] = b"date: ";
    let before_end = buf.strip_suffix(b"\r\n\r\n")?;
    let before_date = before_end
        .len()
        .checked_sub(HTTP_DATE_LEN)
        .map(|at| &before_end[..at])?
        .strip_suffix(DATE)?;
    let date = std::str::from_utf8(&before_end[before_date.len() + DATE.len()..]).ok()?;
    BARE_REFUSAL_HEADERS.iter().find_map(|headers| {
        let before_headers = before_date.strip_suffix(*headers)?;
        BARE_REFUSALS.iter().find_map(|&(status_line, refusal)| {
            let at = before_headers.strip_suffix(status_line)?.len();
            Some(BareRefusal {
                at,
                refusal,
                date,
                len: buf.len() - at,
            })
        })
    })
}

impl BareRefusal<'_> {
    /// The service's own answer in its place: the envelope, a new request id, the server's date.
    fn enveloped(&self) -> EnvelopedRefusal {
        let Self {
            refusal,
            date,
            len: replaces,
            ..
        } = *self;
        let mut id = uuid::Uuid::encode_buffer();
        let request_id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
        let body = serde_json::json!({
            "error": "invalid_request",
            "code": refusal.code(),
            "message": refusal.message(),
        })
        .to_string();
        tracing::info!(
            request_id,
            status = refusal.status(),
            code = refusal.code(),
            "request refused before it could be read"
        );
        let bytes = format!(
            "{}\r\ncontent-length: {}\r\ncontent-type: application/json\r\n\
             cache-control: no-store\r\nx-content-type-options: nosniff\r\n\
             referrer-policy: no-referrer\r\nx-request-id: {request_id}\r\n\
             connection: close\r\ndate: {date}\r\n\r\n{body}",
            refusal.status_line(),
            body.len(),
        )
        .into_bytes();
        EnvelopedRefusal {
            bytes,
            written: 0,
            replaces,
        }
    }
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
    B: MessageBody + 'static,
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

impl<S, B> Service<ServiceRequest> for RequestBodyBoundService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<HeldBody<B>>;
    type Error = Error;
    type Future = BoundedAnswer<S::Future>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        // Every connection has its clock; one is made here only for a server assembled
        // without `http1`.
        let clock = match req.conn_data::<Rc<RequestClock>>() {
            Some(clock) => clock.clone(),
            None => Rc::new(RequestClock::new(self.timeout)),
        };
        let deadline = clock.request_started();
        let payload = req.take_payload();
        // No body announced: nothing to bound, nothing allocated.
        let body = (!matches!(payload, Payload::None)).then(|| {
            let body = Rc::new(RequestBody {
                payload: RefCell::new(payload),
                complete: Cell::new(false),
            });
            req.set_payload(Payload::Stream {
                payload: Box::pin(BoundedPayload {
                    body: body.clone(),
                    clock: clock.clone(),
                    deadline,
                    timed_out: false,
                }),
            });
            body
        });
        BoundedAnswer {
            answer: self.service.call(req),
            clock,
            body,
        }
    }
}

pin_project! {
    /// The inner service's answer, marked and holding the payload when the body was not read.
    pub struct BoundedAnswer<F> {
        #[pin]
        answer: F,
        clock: Rc<RequestClock>,
        body: Option<Rc<RequestBody>>,
    }
}

impl<F, B> Future for BoundedAnswer<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody + 'static,
{
    type Output = Result<ServiceResponse<HeldBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = ready!(this.answer.poll(cx));
        this.clock.request_answered();
        let Some(unread) = this.body.take().filter(|body| !body.complete.get()) else {
            return Poll::Ready(
                answer.map(|answer| answer.map_body(|_, body| HeldBody::new(body))),
            );
        };
        Poll::Ready(match answer {
            Ok(mut answer) => {
                close_after(answer.response_mut().head_mut());
                Ok(answer.map_body(|_, body| HeldBody::holding(body, unread)))
            }
            // The error's answer is built here, holding the payload, rather than further out
            // where the payload would already be gone.
            Err(error) => {
                let mut answer = error.error_response();
                close_after(answer.head_mut());
                let answer = answer.map_body(|_, body| HeldBody::holding(body, unread).boxed());
                Err(InternalError::from_response(error, answer).into())
            }
        })
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
    clock: Rc<RequestClock>,
    deadline: Instant,
    timed_out: bool,
}

impl Stream for BoundedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut *this.body.payload.borrow_mut()).poll_next(cx);
        match polled {
            Poll::Ready(None) => {
                this.body.complete.set(true);
                Poll::Ready(None)
            }
            // Checked whenever the body has to be waited for, so one that trickles in past its
            // deadline is cut off as surely as one that stops.
            Poll::Pending if this.clock.expired(this.deadline, cx) => {
                this.timed_out = true;
                Poll::Ready(Some(Err(timed_out())))
            }
            polled => polled,
        }
    }
}

fn timed_out() -> PayloadError {
    PayloadError::Io(io::ErrorKind::TimedOut.into())
}

pin_project! {
    /// An answer, holding the request's unread payload (if any) until it has been written out.
    pub struct HeldBody<B> {
        #[pin]
        body: B,
        held: Option<Rc<RequestBody>>,
    }
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

impl<B: MessageBody> MessageBody for HeldBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.project().body.poll_next(cx)
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        // An answer that holds a payload must stay a body until it is written.
        match self.held {
            None => self.body.try_into_bytes().map_err(HeldBody::new),
            Some(_) => Err(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_headers_is_the_first_blank_line() {
        assert!(ends_headers(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(ends_headers(b"\r\n\r\nbody"));
        assert!(!ends_headers(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!ends_headers(b"\r\n\r"));
        assert!(!ends_headers(b""));
    }

    const DATE: &str = "Mon, 07 Dec 2026 13:44:30 GMT";

    fn text(refusal: &EnvelopedRefusal) -> &str {
        std::str::from_utf8(&refusal.bytes).unwrap()
    }

    #[test]
    fn the_servers_bare_refusals_are_found_at_the_end_of_a_write() {
        let bare_400 = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: {DATE}\r\n\r\n"
        );
        let bare = bare_refusal(bare_400.as_bytes()).unwrap();
        assert_eq!(bare.at, 0);
        let refusal = bare.enveloped();
        assert_eq!(refusal.replaces, bare_400.len());
        let answer = text(&refusal);
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(answer.contains("\r\nx-request-id: "), "{answer}");
        assert!(
            answer.contains(&format!("\r\ndate: {DATE}\r\n")),
            "{answer}"
        );
        let body = answer.split_once("\r\n\r\n").unwrap().1;
        assert!(answer.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        let envelope: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(envelope["error"], "invalid_request");
        assert_eq!(envelope["code"], "malformed_request");

        let before = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let bare_431 = format!(
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\ndate: {DATE}\r\n\r\n"
        );
        let bare_400_kept_alive =
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n");
        let written = format!("{before}{bare_400_kept_alive}");
        let bare = bare_refusal(written.as_bytes()).unwrap();
        assert_eq!(
            (bare.at, bare.len),
            (before.len(), bare_400_kept_alive.len())
        );
        assert!(text(&bare.enveloped()).contains("\r\nconnection: close\r\n"));

        let written = format!("{before}{bare_431}");
        let bare = bare_refusal(written.as_bytes()).unwrap();
        assert_eq!(bare.at, before.len());
        assert!(text(&bare.enveloped()).contains("\"code\":\"headers_too_large\""));
    }

    #[test]
    fn other_answers_are_left_alone() {
        for written in [
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 70\r\ncontent-type: application/json\r\n\r\n",
            "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\ndate: Mon, 07 Dec 2026 13:44:30 GMT\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: Mon, 07 Dec 2026\r\n\r\n",
            "",
        ] {
            assert!(bare_refusal(written.as_bytes()).is_none(), "{written:?}");
        }
    }

    #[test]
    fn max_connections_are_split_across_workers_rounded_up() {
        assert_eq!(max_connections_per_worker(10000, 1), 10000);
        assert_eq!(max_connections_per_worker(10000, 4), 2500);
        assert_eq!(max_connections_per_worker(10000, 3), 3334);
        assert_eq!(max_connections_per_worker(1, 8), 1);
    }

    #[test]
    fn an_early_answer_lingers_at_most_a_second_and_never_past_the_request_timeout() {
        assert_eq!(linger(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(
            linger(Duration::from_millis(300)),
            Duration::from_millis(300)
        );
    }
}
