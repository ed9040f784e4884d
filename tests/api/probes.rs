//! The health probes as load balancers and orchestrators send them, `HEAD` included, read off a
//! raw connection so that a body sent where none belongs would show.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

const READ_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Answer {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("status line {:?}", self.status_line))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive connection: requests go out one at a time, answers are read exactly.
struct Connection {
    stream: tokio::net::TcpStream,
    unread: Vec<u8>,
}

impl Connection {
    async fn open(port: u16) -> Self {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the service");
        Self {
            stream,
            unread: Vec::new(),
        }
    }

    /// Sends `method path` and reads its answer: the head, then as many body bytes as
    /// `Content-Length` announces, except after `HEAD`, whose answer has no body.
    async fn ask(&mut self, method: &str, path: &str) -> Answer {
        let request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        self.stream.write_all(request.as_bytes()).await.unwrap();
        tokio::time::timeout(READ_LIMIT, self.read_answer(method == "HEAD"))
            .await
            .unwrap_or_else(|_| panic!("no answer to {method} {path} within {READ_LIMIT:?}"))
    }

    async fn fill(&mut self) {
        let mut buffer = [0u8; 4096];
        let n = self.stream.read(&mut buffer).await.unwrap_or(0);
        assert!(n > 0, "the service closed the connection");
        self.unread.extend_from_slice(&buffer[..n]);
    }

    async fn read_answer(&mut self, to_head: bool) -> Answer {
        let end = loop {
            if let Some(at) = self.unread.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            self.fill().await;
        };
        let head = String::from_utf8(self.unread[..end].to_vec()).expect("an ASCII head");
        self.unread.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_owned();
        // Whatever came before this head belonged to the previous answer: a body after a HEAD.
        assert!(
            status_line.starts_with("HTTP/1.1 "),
            "not the start of an answer (bytes left over from the one before?): {head:?}"
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut answer = Answer {
            status_line,
            headers,
            body: Vec::new(),
        };
        if to_head {
            return answer;
        }
        let length: usize = answer
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .expect("a sized body");
        while self.unread.len() < length {
            self.fill().await;
        }
        answer.body = self.unread.drain(..length).collect();
        answer
    }
}

/// `HEAD` answers exactly what `GET` would, without the body; the `GET` that follows on the same
/// connection starts right where the `HEAD` answer ended.
#[track_caller]
fn assert_head_matches_get(head: &Answer, get: &Answer, route: &str) {
    assert_eq!(head.status(), get.status(), "HEAD {route}: {head:?}");
    for name in ["content-type", "content-length", "cache-control"] {
        assert_eq!(
            head.header(name),
            get.header(name),
            "HEAD {route}: {name} differs from GET"
        );
    }
    assert!(
        head.header("x-request-id").is_some(),
        "HEAD {route}: {head:?}"
    );
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn head_on_healthz_and_readyz_answers_200_like_get_without_a_body() {
    let app = spawn_app().await;
    let mut connection = Connection::open(app.port).await;
    for route in ["/healthz", "/readyz"] {
        let get = connection.ask("GET", route).await;
        assert_eq!(get.status(), 200, "GET {route}: {get:?}");
        assert!(!get.body.is_empty(), "GET {route} has a body");

        let head = connection.ask("HEAD", route).await;
        assert_eq!(head.status(), 200, "HEAD {route}: {head:?}");
        assert_head_matches_get(&head, &get, route);

        let after = connection.ask("GET", route).await;
        assert_eq!(after.body, get.body, "GET {route} after HEAD");
    }
}

#[tokio::test]
async fn head_on_readyz_answers_503_without_a_body_while_draining() {
    // A drain that could last a minute: it ends when the test drops its connection, not on a
    // timeout that a slow machine might reach first.
    let app = spawn_app_with(|s| s.server.shutdown_timeout_s = 60).await;
    // Once the drain starts the listener accepts nothing new, so the probe uses a connection
    // opened before it.
    let mut connection = Connection::open(app.port).await;
    assert_eq!(connection.ask("HEAD", "/readyz").await.status(), 200);

    let handle = app.handle.clone();
    let drain = tokio::spawn(async move { handle.drain().await });
    let mut draining = None;
    for _ in 0..200 {
        let head = connection.ask("HEAD", "/readyz").await;
        if head.status() != 200 {
            draining = Some(head);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let head = draining.expect("HEAD /readyz leaves 200 once the drain starts");
    assert_eq!(head.status(), 503, "{head:?}");
    let get = connection.ask("GET", "/readyz").await;
    assert_eq!(get.status(), 503, "{get:?}");
    let envelope: serde_json::Value = serde_json::from_slice(&get.body).unwrap();
    assert_eq!(envelope["code"], "shutting_down");
    assert_head_matches_get(&head, &get, "/readyz");
    // /healthz stays 200 through the drain: the process still serves.
    assert_eq!(connection.ask("HEAD", "/healthz").await.status(), 200);

    drop(connection);
    tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .expect("the drain ends once no connection is left")
        .unwrap();
}
