//! HTTP/1.1 written and read by hand, for what an HTTP client library will not do: framings it
//! never produces, bodies and heads that stop half way, several requests on one known connection,
//! a `HEAD` answer whose stray body would show.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long an answer may take before a test gives up on it.
const READ_LIMIT: Duration = Duration::from_secs(10);

/// A request to the service on a loopback port: the request line, `Host`, then the headers in
/// the order given. Nothing else is added: the framing (`Content-Length`, `Transfer-Encoding`,
/// `Connection`) is the test's to choose.
#[derive(Clone, Debug)]
pub struct RawRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl RawRequest {
    pub fn new(port: u16, method: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: vec![("Host".to_owned(), format!("127.0.0.1:{port}"))],
        }
    }

    /// `POST /start-checkout` from the page at `origin` with a JSON body, carrying `session` as
    /// the session cookie (none: signed out).
    pub fn checkout(port: u16, origin: &str, session: Option<&str>) -> Self {
        let mut request = Self::new(port, "POST", "/start-checkout").header("Origin", origin);
        if let Some(token) = session {
            request = request.header("Cookie", &format!("session={token}"));
        }
        request.header("Content-Type", "application/json")
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The head, up to and including the blank line that ends it.
    pub fn head(&self) -> String {
        format!("{}\r\n", self.unfinished_head())
    }

    /// The head without the blank line that ends it: headers that stop half way.
    pub fn unfinished_head(&self) -> String {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head
    }

    /// The whole request with `body`, announced by its `Content-Length`.
    pub fn with_body(self, body: &[u8]) -> Vec<u8> {
        self.with_body_cut_short(body, body.len())
    }

    /// The request announcing all of `body` in its `Content-Length`, but carrying only the first
    /// `sent` bytes of it.
    pub fn with_body_cut_short(self, body: &[u8], sent: usize) -> Vec<u8> {
        let mut request = self
            .header("Content-Length", &body.len().to_string())
            .head()
            .into_bytes();
        request.extend_from_slice(&body[..sent]);
        request
    }
}

/// One answer as it came off the wire.
pub struct RawResponse {
    pub status: u16,
    /// The status line and the header lines, without the blank line.
    pub head: String,
    /// Names as the service wrote them; [`RawResponse::header`] looks them up in any case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n\n{}", self.head, self.text())
    }
}

/// Where the head at the start of `bytes` ends, after its blank line.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

impl RawResponse {
    /// An answer from its first byte: the head, and everything after it as the body. `None` when
    /// the head is not complete, or is not the start of an HTTP/1.1 answer (bytes left over from
    /// the answer before, say), or a header line has no `:`.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let end = head_end(bytes)?;
        let head = std::str::from_utf8(&bytes[..end - 4]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()?
            .strip_prefix("HTTP/1.1 ")?
            .split(' ')
            .next()?
            .parse()
            .ok()?;
        let headers = lines
            .map(|line| line.split_once(':'))
            .map(|pair| pair.map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())))
            .collect::<Option<_>>()?;
        Some(Self {
            status,
            head: head.to_owned(),
            headers,
            body: bytes[end..].to_vec(),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The headers, as an HTTP client would hand them over.
    pub fn header_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request over a fresh connection, read until the service closes it: send it with
/// `Connection: close`.
pub fn send(port: u16, request: &[u8]) -> std::io::Result<RawResponse> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(READ_LIMIT))?;
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    if raw.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed without a response",
        ));
    }
    RawResponse::parse(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an answer: {:?}", String::from_utf8_lossy(&raw)),
        )
    })
}

/// One connection to the service driven by hand: requests go out as written and answers are read
/// exactly, one at a time, so a test knows for certain which requests shared the connection.
pub struct RawConnection {
    stream: tokio::net::TcpStream,
    unread: Vec<u8>,
}

impl RawConnection {
    pub async fn open(port: u16) -> Self {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the service");
        Self {
            stream,
            unread: Vec::new(),
        }
    }

    /// Sends `request` and reads its answer: the head, then as many body bytes as
    /// `Content-Length` announces, except after `HEAD`, whose answer has no body.
    pub async fn exchange(&mut self, request: &[u8]) -> RawResponse {
        self.try_exchange(request)
            .await
            .expect("the service closed the connection without answering")
    }

    /// Like [`Self::exchange`], or `None` when the service closes the connection instead.
    pub async fn try_exchange(&mut self, request: &[u8]) -> Option<RawResponse> {
        // The service may answer and stop reading before it has everything.
        let _ = self.stream.write_all(request).await;
        let request_line = String::from_utf8_lossy(request)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        tokio::time::timeout(READ_LIMIT, self.read_answer(request.starts_with(b"HEAD ")))
            .await
            .unwrap_or_else(|_| panic!("no answer to {request_line:?} within {READ_LIMIT:?}"))
    }

    /// Writes `bytes` without waiting for anything: the start of a request whose rest follows
    /// when the test chooses (through [`Self::exchange`]).
    pub async fn send_part(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("the service takes the request");
    }

    /// The connection itself, once every answer on it has been read.
    pub fn into_stream(self) -> tokio::net::TcpStream {
        assert!(self.unread.is_empty(), "bytes no answer accounts for");
        self.stream
    }

    /// `false` when the service has closed the connection.
    async fn fill(&mut self) -> bool {
        let mut buffer = [0u8; 8192];
        let n = self.stream.read(&mut buffer).await.unwrap_or(0);
        self.unread.extend_from_slice(&buffer[..n]);
        n > 0
    }

    async fn read_answer(&mut self, to_head: bool) -> Option<RawResponse> {
        let end = loop {
            if let Some(end) = head_end(&self.unread) {
                break end;
            }
            if !self.fill().await {
                return None;
            }
        };
        let mut answer = RawResponse::parse(&self.unread[..end]).unwrap_or_else(|| {
            panic!(
                "not the start of an answer (bytes left over from the one before?): {:?}",
                String::from_utf8_lossy(&self.unread[..end])
            )
        });
        self.unread.drain(..end);
        if to_head {
            return Some(answer);
        }
        let length: usize = answer
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("a sized body");
        while self.unread.len() < length {
            assert!(
                self.fill().await,
                "the service closed the connection mid-answer"
            );
        }
        answer.body = self.unread.drain(..length).collect();
        Some(answer)
    }
}

/// Everything the server sends until it closes the connection (end of stream or reset), or
/// `None` if it is still open after `limit`.
pub async fn read_until_closed(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: Duration,
) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 16384];
    let read_all = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.ok()?;
    Some(received)
}
