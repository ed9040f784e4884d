//! What one attempt at a call to Proof came to. It owns reading Proof's answer off the wire
//! (bounded in size, checked against the length its head declares), sorting awc's failures by
//! whether any of the request can have left this process, and the verdict the client's retry loop
//! acts on: an answer for the browser (a 2xx, or one of Proof's own 4xx), a failure Proof's
//! guidance allows to retry, or a final one (`misconfigured`, `provider_error`, `unavailable`,
//! `invalid_response`, `timeout`). The log lines that tell an operator who really answered (Proof,
//! a CDN, a wrong `proof.base_url`) are written here, where the answer is judged.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use awc::error::{ConnectError, PayloadError, SendRequestError};
use bytes::Bytes;

use super::error::UpstreamFailure;
use super::retry::Retryable;
use super::token::ClientToken;
use super::wire::{error_slug, is_json_media_type, is_json_object};
use crate::telemetry::REQUEST_ID_HEADER;

/// Proof's widget parameters are a few kilobytes; anything far larger is not a session answer.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Proof's answer that goes back to the browser unchanged: a 2xx with a JSON object body, or one of
/// Proof's own 4xx answers (a JSON object too), labelled with Proof's JSON content type or
/// `application/json`. `content_type: None` is relayed as `application/json`.
#[derive(Debug)]
pub struct UpstreamAnswer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub retry_after: Option<HeaderValue>,
    pub body: Bytes,
}

/// Proof's answer as it came, before it is judged.
pub(super) struct RawAnswer {
    pub(super) status: StatusCode,
    content_type: Option<HeaderValue>,
    retry_after: Option<HeaderValue>,
    pub(super) proof_request_id: Option<HeaderValue>,
    body: Bytes,
}

impl RawAnswer {
    /// Reads the answer whose head `response` holds: its body whole, or why not.
    pub(super) async fn read(mut response: awc::ClientResponse) -> Result<Self, AttemptError> {
        let status = response.status();
        let headers = response.headers();
        let content_type = headers.get(header::CONTENT_TYPE).cloned();
        let retry_after = headers.get(header::RETRY_AFTER).cloned();
        let proof_request_id = headers.get(REQUEST_ID_HEADER).cloned();
        let declared_length = declared_length(headers);
        let body = response
            .body()
            .limit(MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                PayloadError::Overflow => AttemptError::BodyTooLarge(status),
                // Proof has the request: a body cut short is as final as no answer at all.
                other => AttemptError::Broken(other.to_string()),
            })?;
        // awc ends a body quietly when the connection closes before `Content-Length` bytes
        // arrived, so the count is checked here. (A chunked body cut short cannot be told from
        // a whole one; it fails the JSON checks instead.)
        if declared_length.is_some_and(|declared| declared != body.len()) {
            return Err(AttemptError::Broken(
                "the connection closed before the whole answer arrived".to_owned(),
            ));
        }
        Ok(Self {
            status,
            content_type,
            retry_after,
            proof_request_id,
            body,
        })
    }

    /// Proof's own request id, which its support asks for.
    fn proof_request_id(&self) -> &str {
        self.proof_request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Why an attempt brought no answer to judge.
#[derive(Debug)]
pub(super) enum AttemptError {
    /// No connection was made, so not a byte of the request left this process: safe to retry.
    NotSent(String),
    /// The attempt's time ran out after the request may have been sent.
    TimedOut,
    /// The connection failed once the request had been written, or in a way a retry cannot mend.
    Broken(String),
    BodyTooLarge(StatusCode),
}

impl AttemptError {
    /// Whether any of the request reached the connection, read from where in awc the error arose
    /// rather than from its text.
    ///
    /// awc 3 makes a connection (DNS, TCP connect, TLS and HTTP/2 handshakes, each bounded by the
    /// connect timeout) before it writes a single byte of the request, and every failure of that
    /// phase is a `SendRequestError::Connect`. Once the request is written, a failed write is
    /// `Send`, a reset or garbage while reading the answer's head is `Response`, and a connection
    /// closed before the head arrives is `Connect(ConnectError::Disconnected)`: the same wrapper
    /// as a failed connect, which is why that one variant is singled out. (awc's only other source
    /// of `Disconnected`, an `Expect` header on an empty body, is never sent here.)
    ///
    /// A pooled keep-alive connection that Proof closed while idle is checked by awc before reuse
    /// and dropped if the close has already arrived; if it arrives just after, the request has
    /// been written and the failure looks exactly like Proof reading the request and dropping the
    /// connection (`Disconnected`, or a reset). Nothing on this side can tell the two apart, and a
    /// connection accepted by a load balancer or CDN in front of Proof says nothing about whether
    /// the request went further, so the line is drawn at the first byte written: that is sent, and
    /// never retried (as Go's net/http does for requests that are not replayable). A wrapper
    /// around the socket counting written bytes would differ only when the very first write fails
    /// outright (a pooled connection already reset): that is `Send` and counted as sent here,
    /// erring towards not creating a second session. Variants awc may add count as sent too.
    pub(super) fn from_send(error: SendRequestError) -> Self {
        match error {
            SendRequestError::Connect(ConnectError::Disconnected) => {
                Self::Broken("the connection closed before Proof answered".to_owned())
            }
            SendRequestError::Connect(
                e @ (ConnectError::Io(_)
                | ConnectError::Timeout
                | ConnectError::Resolver(_)
                | ConnectError::NoRecords
                | ConnectError::Unresolved
                | ConnectError::H2(_)
                | ConnectError::SslIsNotSupported),
            ) => Self::NotSent(e.to_string()),
            SendRequestError::Timeout => Self::TimedOut,
            other => Self::Broken(other.to_string()),
        }
    }
}

/// What one attempt came to.
pub(super) enum Verdict {
    /// An answer for the browser.
    Answer(UpstreamAnswer),
    /// A failure Proof's guidance allows to retry, if the retry rules agree; the failure is
    /// reported when they do not.
    Retryable(Retryable, UpstreamFailure),
    Final(UpstreamFailure),
}

/// What an attempt came to; `idempotent`: the call may be repeated whatever Proof did with it.
pub(super) fn classify(
    outcome: Result<RawAnswer, AttemptError>,
    idempotent: bool,
    token: &ClientToken,
) -> Verdict {
    let answer = match outcome {
        Ok(answer) => answer,
        Err(AttemptError::NotSent(cause)) => {
            return Verdict::Retryable(Retryable::NotSent, UpstreamFailure::Unavailable { cause });
        }
        Err(AttemptError::TimedOut) if idempotent => {
            let failure = UpstreamFailure::Timeout { cause: "attempt" };
            return Verdict::Retryable(Retryable::NotSent, failure);
        }
        Err(AttemptError::TimedOut) => {
            return Verdict::Final(UpstreamFailure::Timeout { cause: "attempt" });
        }
        Err(AttemptError::Broken(cause)) if idempotent => {
            let failure = UpstreamFailure::Unavailable { cause };
            return Verdict::Retryable(Retryable::NotSent, failure);
        }
        Err(AttemptError::Broken(cause)) => {
            return Verdict::Final(UpstreamFailure::Unavailable { cause });
        }
        Err(AttemptError::BodyTooLarge(status)) => {
            return Verdict::Final(UpstreamFailure::InvalidResponse {
                status: status.as_u16(),
                cause: "body too large",
            });
        }
    };
    let status = answer.status;
    if status.is_success() {
        return if is_json_object(&answer.body) {
            Verdict::Answer(UpstreamAnswer {
                status,
                content_type: None,
                retry_after: None,
                body: answer.body,
            })
        } else {
            invalid(&answer, "not a JSON object")
        };
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let proof_error = error_slug(&answer.body);
        let proof_error = proof_error.as_deref().unwrap_or("");
        match token.rotated_recently() {
            Some(ago) => tracing::error!(
                status = status.as_u16(),
                proof_request_id = answer.proof_request_id(),
                proof_error,
                token_rotated_s_ago = ago.as_secs(),
                "Proof refused the client_token or Origin soon after the token was rotated: is the new token active at Proof?"
            ),
            None => tracing::error!(
                status = status.as_u16(),
                proof_request_id = answer.proof_request_id(),
                proof_error,
                "Proof refused the client_token or Origin: check proof.client_token and proof.origin"
            ),
        }
        return Verdict::Final(UpstreamFailure::Misconfigured {
            status: status.as_u16(),
        });
    }
    if status.is_client_error() {
        // Only Proof's own envelope reaches the browser: a CDN's or firewall's HTML page, an
        // empty answer or a wrong path's 404 page would otherwise pass as Proof's verdict.
        if !is_json_object(&answer.body) {
            return invalid(&answer, "a 4xx that is not a JSON object");
        }
        let content_type = match answer.content_type {
            Some(value) if is_json_media_type(&value) => value,
            // The body was checked: it is JSON, whatever it was labelled.
            _ => HeaderValue::from_static("application/json"),
        };
        return Verdict::Answer(UpstreamAnswer {
            status,
            content_type: Some(content_type),
            retry_after: answer.retry_after,
            body: answer.body,
        });
    }
    if status.is_server_error() {
        let slug = error_slug(&answer.body);
        let retryable = match (status, slug.as_deref()) {
            (StatusCode::BAD_GATEWAY, Some("upstream_error" | "upstream_unavailable")) => {
                Some(Retryable::ProviderFailed)
            }
            (StatusCode::INTERNAL_SERVER_ERROR, Some("internal_error")) if !idempotent => {
                Some(Retryable::InternalError)
            }
            _ if idempotent => Some(Retryable::ProviderFailed),
            _ => None,
        };
        tracing::warn!(
            status = status.as_u16(),
            proof_request_id = answer.proof_request_id(),
            proof_error = slug.as_deref().unwrap_or(""),
            "Proof answered with a server error"
        );
        let failure = UpstreamFailure::ProviderError {
            status: status.as_u16(),
        };
        return match retryable {
            Some(why) => Verdict::Retryable(why, failure),
            None => Verdict::Final(failure),
        };
    }
    invalid(&answer, "unexpected status")
}

/// An answer that is not for the browser, logged with what the operator needs to find who sent
/// it: a CDN, a firewall or a wrong `proof.base_url` rather than Proof.
fn invalid(answer: &RawAnswer, cause: &'static str) -> Verdict {
    tracing::warn!(
        status = answer.status.as_u16(),
        content_type = %LoggableContentType(answer.content_type.as_ref()),
        body_bytes = answer.body.len(),
        proof_request_id = answer.proof_request_id(),
        cause,
        "Proof's answer is unusable"
    );
    Verdict::Final(UpstreamFailure::InvalidResponse {
        status: answer.status.as_u16(),
        cause,
    })
}

/// An upstream Content-Type as it may appear in a log line: whoever answered chose it, so it is
/// cut to 64 bytes and anything but printable ASCII is replaced.
struct LoggableContentType<'a>(Option<&'a HeaderValue>);

impl fmt::Display for LoggableContentType<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 64;
        let Some(value) = self.0 else {
            return f.write_str("(none)");
        };
        let bytes = value.as_bytes();
        for &b in bytes.iter().take(MAX) {
            let c = if b == b' ' || b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            };
            fmt::Write::write_char(f, c)?;
        }
        if bytes.len() > MAX {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// The body length the answer's head promises, when its bytes arrive as they are on the wire.
fn declared_length(headers: &header::HeaderMap) -> Option<usize> {
    if headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return None;
    }
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn the_declared_length_is_checked_only_for_bodies_as_sent() {
        let declared = |pairs: &[(&'static str, &'static str)]| {
            let mut map = header::HeaderMap::new();
            for &(name, value) in pairs {
                map.insert(
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            declared_length(&map)
        };
        let length = ("content-length", "400");
        assert_eq!(declared(&[length]), Some(400));
        assert_eq!(
            declared(&[length, ("content-encoding", "identity")]),
            Some(400)
        );
        assert_eq!(declared(&[length, ("content-encoding", "gzip")]), None);
        assert_eq!(declared(&[length, ("transfer-encoding", "chunked")]), None);
        assert_eq!(declared(&[]), None);
        assert_eq!(declared(&[("content-length", "x")]), None);
    }

    #[test]
    fn a_content_type_in_the_logs_is_bounded_and_printable() {
        let shown = |value: &[u8]| {
            LoggableContentType(Some(&HeaderValue::from_bytes(value).unwrap())).to_string()
        };
        assert_eq!(LoggableContentType(None).to_string(), "(none)");
        assert_eq!(
            shown(b"text/html; charset=utf-8"),
            "text/html; charset=utf-8"
        );
        assert_eq!(shown(b"text/\xe9\xff\thtml"), "text/???html");
        let long = shown(&[b'a'; 500]);
        assert_eq!(long, format!("{}...", "a".repeat(64)));
    }

    /// Which awc failures happen before a byte of the request is written.
    #[test]
    fn only_a_failure_to_connect_counts_as_not_sent() {
        let io = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let not_sent = [
            SendRequestError::Connect(ConnectError::Io(io())),
            SendRequestError::Connect(ConnectError::Timeout),
            SendRequestError::Connect(ConnectError::Resolver("no such host".into())),
            SendRequestError::Connect(ConnectError::NoRecords),
            SendRequestError::Connect(ConnectError::Unresolved),
            SendRequestError::Connect(ConnectError::SslIsNotSupported),
        ];
        for error in not_sent {
            let shown = error.to_string();
            assert!(
                matches!(AttemptError::from_send(error), AttemptError::NotSent(_)),
                "{shown}"
            );
        }
        let sent = [
            // The connection closed while the answer's head was awaited.
            SendRequestError::Connect(ConnectError::Disconnected),
            // Writing the request failed part-way.
            SendRequestError::Send(io::Error::from(io::ErrorKind::BrokenPipe)),
            // The connection was reset while the answer's head was read.
            SendRequestError::Response(actix_web::error::ParseError::Io(io::Error::from(
                io::ErrorKind::ConnectionReset,
            ))),
            SendRequestError::Response(actix_web::error::ParseError::Incomplete),
        ];
        for error in sent {
            let shown = error.to_string();
            assert!(
                matches!(AttemptError::from_send(error), AttemptError::Broken(_)),
                "{shown}"
            );
        }
        assert!(matches!(
            AttemptError::from_send(SendRequestError::Timeout),
            AttemptError::TimedOut
        ));
    }
}
