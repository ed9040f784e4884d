//! Bounds on what one client can hold back: a request that never finishes arriving, or an answer
//! never read, must not keep a connection, a worker or a graceful drain waiting. And the drain's
//! end of every connection: idle ones close at once, busy ones after their answer.
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
//! The server knows nothing of the service's drain either: a graceful stop waits until every
//! connection has closed, and an idle keep-alive connection (a browser keeps one open after each
//! page) closes only when its keep-alive timer fires, so every drain would last `keep_alive_s` or
//! the whole shutdown timeout. [`ConnectionDrain`] ends them instead. Once the drain starts,
//! every answer is marked `Connection: close`, and the server closes its connection once it is
//! written. Once the server stops accepting, a connection that is idle (no request being received
//! or served, its last answer handed over whole and flushed to the socket, no byte of a next
//! request received) reads the end of the stream, so the server closes it; an idle connection
//! waiting for its next request is woken for that. Bytes that are already there when an idle
//! connection is looked at are read, and that request is answered (and closed) like any other: a
//! request is either read and answered, or not read at all. An answer is never cut: the server
//! writes an answer's body after the handler returns, sometimes without polling it (an empty
//! one), so "handed over whole" is known from the body being dropped ([`HeldBody`]), not from the
//! handler's return; and only once the server's write buffer has been flushed is the socket's
//! write side idle.
//!
//! And one thing the server answers by itself, outside the app: a request it cannot parse (400)
//! or whose head is too large (431) gets a bare answer with an empty body, no request id, and
//! nothing to hook into (the HTTP/1 dispatcher writes it straight to the socket, and ends the
//! connection after it). [`ClientStream`] recognises that answer as it is written, always the
//! last on its connection, and writes the service's own envelope with a request id in its place.

use std::cell::{Cell, RefCell};
use std::future::{Future, Ready, ready};
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker, ready};
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
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep, sleep_until};

use super::Readiness;

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

/// How a drain ends a server's connections. From [`Readiness::start_draining`] on, every answer
/// is its connection's last; from [`ConnectionDrain::close_idle`] on (the server stops accepting),
/// idle connections close at once. In between, while the drain waits for calls whose client has
/// gone, a kept-alive or new connection is still answered (503 `shutting_down`), then closed.
#[derive(Clone, Default)]
pub struct ConnectionDrain(Option<Arc<DrainState>>);

struct DrainState {
    readiness: Arc<Readiness>,
    close_idle: AtomicBool,
    /// Wakes the idle connections, which wait on their sockets, when `close_idle` is set.
    closing_idle: Notify,
}

impl ConnectionDrain {
    /// Connections drained with the service.
    pub fn following(readiness: Arc<Readiness>) -> Self {
        Self(Some(Arc::new(DrainState {
            readiness,
            close_idle: AtomicBool::new(false),
            closing_idle: Notify::new(),
        })))
    }

    /// Connections never drained: the metrics port serves scrapes until the process stops.
    pub fn never() -> Self {
        Self(None)
    }

    /// Closes every connection that is idle now, and each one as it becomes idle.
    pub fn close_idle(&self) {
        if let Some(state) = &self.0 {
            state.close_idle.store(true, Ordering::SeqCst);
            state.closing_idle.notify_waiters();
        }
    }

    /// Whether an answer given now is its connection's last.
    fn answers_close(&self) -> bool {
        self.0.as_ref().is_some_and(|state| {
            state.readiness.is_draining() || state.close_idle.load(Ordering::SeqCst)
        })
    }

    fn closes_idle(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|state| state.close_idle.load(Ordering::SeqCst))
    }

    /// Resolves once idle connections are to close (at once if they are); `None` when they never
    /// are.
    fn idle_closing(&self) -> Option<Pin<Box<dyn Future<Output = ()>>>> {
        let state = self.0.clone()?;
        Some(Box::pin(async move {
            let closing = state.closing_idle.notified();
            let mut closing = std::pin::pin!(closing);
            // Registered before the flag is read, so a close starting in between is not missed.
            closing.as_mut().enable();
            if !state.close_idle.load(Ordering::SeqCst) {
                closing.await;
            }
        }))
    }
}

/// The HTTP/1 service for one worker: `app` behind the bounded socket and the server's own
/// timeouts, its connections ended by `drain`. It replaces what `HttpServer` assembles, which
/// offers no way to wrap the socket.
pub fn http1<T, B>(
    app: App<T>,
    limits: ConnectionLimits,
    local_addr: SocketAddr,
    drain: ConnectionDrain,
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
        ready(Ok((ClientStream::new(io, timeout, drain.clone()), peer)))
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
    drain: ConnectionDrain,
    /// Answers returned by the app whose body the server still holds ([`HeldBody`]): not yet
    /// handed over whole.
    answers_unwritten: Cell<usize>,
    /// An answer marked `Connection: close` went out: the server ends the connection after it by
    /// itself (lingering first, when the request's body was not read), so it is never idle again.
    closing: Cell<bool>,
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
    fn new(timeout: Duration, drain: ConnectionDrain) -> Self {
        Self {
            timeout,
            phase: Cell::new(Phase::Idle),
            timer: RefCell::default(),
            client_left: Cell::new(false),
            drain,
            answers_unwritten: Cell::new(0),
            closing: Cell::new(false),
        }
    }

    /// Nothing of a request is being received or served, and every answer has been handed to the
    /// server whole (it may still be in the server's write buffer: the socket knows that).
    fn between_requests(&self) -> bool {
        matches!(self.phase.get(), Phase::Idle)
            && self.answers_unwritten.get() == 0
            && !self.closing.get()
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

/// An idle connection's wake-up when idle connections are to close: the server waits on its
/// socket, which says nothing of the drain.
#[derive(Default)]
struct DrainWatch {
    closing: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// The task last registered. One wake-up is shared by every connection of every worker,
    /// behind one lock: a connection registers again only when its task changes.
    registered: Option<Waker>,
}

impl DrainWatch {
    /// Whether idle connections are to close; if not, the task is woken when they are.
    fn closing(&mut self, drain: &ConnectionDrain, cx: &mut Context<'_>) -> bool {
        if self
            .registered
            .as_ref()
            .is_some_and(|task| task.will_wake(cx.waker()))
        {
            return false;
        }
        if self.closing.is_none() {
            self.closing = drain.idle_closing();
        }
        let Some(closing) = &mut self.closing else {
            return false;
        };
        if closing.as_mut().poll(cx).is_ready() {
            self.closing = None;
            return true;
        }
        self.registered = Some(cx.waker().clone());
        false
    }
}

/// A client's socket as the HTTP server reads and writes it. Once a request's headers are late,
/// reads see the end of the stream, so the server closes the connection; once the client has
/// read nothing for the request timeout while an answer waits, writes fail. The server's own bare
/// answer to a request it could not read goes out in the envelope instead. Once the drain closes
/// idle connections, an idle connection's reads see the end of the stream too.
pub struct ClientStream {
    io: TcpStream,
    clock: Rc<RequestClock>,
    /// Set while a write is blocked: when it must have made progress.
    write_deadline: Option<Instant>,
    write_timer: Timer,
    /// Bytes were written (or offered) since the last completed flush.
    unflushed: bool,
    drain_watch: DrainWatch,
    /// The envelope being written in place of the server's bare refusal.
    refusal: Option<EnvelopedRefusal>,
}

impl ClientStream {
    fn new(io: TcpStream, timeout: Duration, drain: ConnectionDrain) -> Self {
        Self {
            io,
            clock: Rc::new(RequestClock::new(timeout, drain)),
            write_deadline: None,
            write_timer: Timer::default(),
            unflushed: false,
            drain_watch: DrainWatch::default(),
            refusal: None,
        }
    }

    /// Idle: between requests, and everything written has been flushed.
    fn idle(&self) -> bool {
        !self.unflushed && self.clock.between_requests()
    }

    /// The socket has nothing to read. An idle connection ends here once the drain closes idle
    /// connections: the end of the stream, nothing of a next request read, and the server closes
    /// the connection. Until then an idle one waits for its next request, or for that close.
    fn nothing_to_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.idle() {
            return Poll::Pending;
        }
        let closing =
            self.clock.drain.closes_idle() || self.drain_watch.closing(&self.clock.drain, cx);
        if closing && !self.bytes_waiting() {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }

    /// Whether the client has sent bytes that the runtime has not seen yet. The runtime reads a
    /// socket only once it has seen it readable, and the close can wake a connection before it
    /// has looked: a request already sent is then read (the runtime wakes the connection when it
    /// sees it), not cut off unread.
    fn bytes_waiting(&self) -> bool {
        let mut byte = [MaybeUninit::uninit()];
        matches!(SockRef::from(&self.io).peek(&mut byte), Ok(n) if n > 0)
    }

    /// Writes `buf`, or, when it ends with the server's bare refusal, what comes before it and
    /// then the envelope in its place (reported as the refusal's bytes, written).
    fn poll_write_enveloped(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.unflushed |= !buf.is_empty();
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
        // Read before the drain is looked at: a request already here is answered, not cut off.
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => return this.nothing_to_read(cx),
            Poll::Ready(Err(error)) => {
                this.clock.client_left.set(true);
                return Poll::Ready(Err(error));
            }
            Poll::Ready(Ok(())) => {}
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
        this.unflushed |= bufs.iter().any(|buf| !buf.is_empty());
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        let flushed = ready!(this.watch_write(cx, polled));
        if flushed.is_ok() {
            this.unflushed = false;
            // The last answer is out while idle connections are to close: the server reads again
            // only when woken, and that read ends the connection.
            if this.idle() && this.clock.drain.closes_idle() {
                cx.waker().wake_by_ref();
            }
        }
        Poll::Ready(flushed)
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

/// The middleware: wrap it outermost, so it sees every answer, errors included, and its body is
/// the one the server writes.
pub struct RequestBodyBound {
    timeout: Duration,
    drain: ConnectionDrain,
}

impl RequestBodyBound {
    /// `drain` as given to [`http1`]: once the drain has started, every answer closes its
    /// connection.
    pub fn new(client_request_timeout: Duration, drain: ConnectionDrain) -> Self {
        Self {
            timeout: client_request_timeout,
            drain,
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
            drain: self.drain.clone(),
        }))
    }
}

pub struct RequestBodyBoundService<S> {
    service: S,
    timeout: Duration,
    drain: ConnectionDrain,
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
            None => Rc::new(RequestClock::new(self.timeout, self.drain.clone())),
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
    /// The inner service's answer, marked `Connection: close` and holding the payload when the
    /// body was not read, marked when the service drains, and counted until it is handed over.
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
        let unread = this.body.take().filter(|body| !body.complete.get());
        // While the service drains, every answer is its connection's last: the client's next
        // request opens a fresh connection, which a load balancer sends to another instance.
        let close = unread.is_some() || this.clock.drain.answers_close();
        if close {
            this.clock.closing.set(true);
        }
        let clock = this.clock;
        Poll::Ready(match answer {
            Ok(mut answer) => {
                if close {
                    close_after(answer.response_mut().head_mut());
                }
                Ok(answer.map_body(|_, body| HeldBody::new(body, unread, clock)))
            }
            // The error's answer is built here, holding the payload, rather than further out
            // where the payload would already be gone (and the head no longer ours to mark).
            Err(error) if close => {
                let mut answer = error.error_response();
                close_after(answer.head_mut());
                let answer = answer.map_body(|_, body| HeldBody::new(body, unread, clock).boxed());
                Err(InternalError::from_response(error, answer).into())
            }
            Err(error) => Err(error),
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
    /// An answer, holding the request's unread payload (if any) until it has been written out,
    /// and counted on its connection as not yet handed over until the server drops it: after its
    /// last byte, or at once for an empty body, which the server never polls.
    pub struct HeldBody<B> {
        #[pin]
        body: B,
        held: Option<Rc<RequestBody>>,
        unwritten: UnwrittenAnswer,
    }
}

impl<B> HeldBody<B> {
    fn new(body: B, held: Option<Rc<RequestBody>>, clock: &Rc<RequestClock>) -> Self {
        Self {
            body,
            held,
            unwritten: UnwrittenAnswer::new(clock),
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
        // An answer stays a body until it is written: as bytes it would hold no payload, and
        // its connection would take it as handed over before the server had it.
        Err(self)
    }
}

/// One answer on its connection's count of answers not yet handed over whole.
struct UnwrittenAnswer(Rc<RequestClock>);

impl UnwrittenAnswer {
    fn new(clock: &Rc<RequestClock>) -> Self {
        clock
            .answers_unwritten
            .set(clock.answers_unwritten.get() + 1);
        Self(clock.clone())
    }
}

impl Drop for UnwrittenAnswer {
    fn drop(&mut self) {
        let unwritten = &self.0.answers_unwritten;
        unwritten.set(unwritten.get().saturating_sub(1));
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

    /// A limit far above what a busy machine needs, for what must happen.
    const EVENTUALLY: Duration = Duration::from_secs(30);

    /// Everything until `needle` has arrived; `None` if the connection closes first.
    async fn read_until(stream: &mut tokio::net::TcpStream, needle: &[u8]) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        let read = async {
            while !received
                .windows(needle.len())
                .any(|window| window == needle)
            {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => received.extend_from_slice(&buffer[..n]),
                }
            }
            true
        };
        let arrived = tokio::time::timeout(EVENTUALLY, read)
            .await
            .expect("the server sent it, or closed");
        arrived.then_some(received)
    }

    /// Everything until the server closes the connection.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut received = Vec::new();
        let read = stream.read_to_end(&mut received);
        tokio::time::timeout(EVENTUALLY, read)
            .await
            .expect("the connection closed")
            .expect("a clean close");
        received
    }

    async fn request(port: u16, path: &str) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
    }

    /// An answer whose body is still streaming has been returned by the app, its write buffer
    /// flushed, and its socket has nothing to read: it is still not idle, and closing idle
    /// connections must not cut it.
    #[tokio::test]
    async fn closing_idle_connections_leaves_an_answer_that_is_still_streaming_whole() {
        use actix_web::{HttpResponse, web};
        use futures_util::StreamExt;

        let drain = ConnectionDrain::following(Arc::new(Readiness::default()));
        let (release, released) = tokio::sync::watch::channel(false);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local_addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            client_request_timeout: Duration::from_secs(3600),
            keep_alive: Duration::from_secs(3600),
        };
        let server_drain = drain.clone();
        let server = actix_web::dev::Server::build()
            .workers(1)
            .disable_signals()
            .listen("test", listener, move || {
                let released = released.clone();
                let stream = move || {
                    let mut released = released.clone();
                    async move {
                        let rest = async move {
                            let _ = released.wait_for(|released| *released).await;
                            Ok::<_, Error>(Bytes::from_static(b"second"))
                        };
                        let first = ready(Ok::<_, Error>(Bytes::from_static(b"first")));
                        HttpResponse::Ok().streaming(
                            futures_util::stream::once(first)
                                .chain(futures_util::stream::once(rest)),
                        )
                    }
                };
                let app = App::new()
                    .wrap(RequestBodyBound::new(
                        limits.client_request_timeout,
                        server_drain.clone(),
                    ))
                    .route("/stream", web::get().to(stream));
                http1(app, limits, local_addr, server_drain.clone())
            })
            .unwrap()
            .run();
        let server_handle = server.handle();
        tokio::spawn(server);
        let port = local_addr.port();

        let mut streaming = request(port, "/stream").await;
        let first = read_until(&mut streaming, b"first")
            .await
            .expect("the stream's first part");
        // Answered (404, no body) and idle.
        let mut idle = request(port, "/elsewhere").await;
        read_until(&mut idle, b"\r\n\r\n").await.expect("an answer");

        drain.close_idle();
        // The idle connection is closed, woken by the same call that would wake the streaming
        // one, had it been taken for idle: by now it has had its chance to be closed.
        assert_eq!(read_to_close(&mut idle).await, b"");
        release.send_replace(true);
        let rest = read_to_close(&mut streaming).await;
        let answer = [first, rest].concat();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.contains("second") && answer.ends_with("\r\n0\r\n\r\n"),
            "the stream was cut: {answer:?}"
        );
        server_handle.stop(false).await;
    }
}
