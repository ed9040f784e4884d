//! OpenTelemetry traces against a local OTLP receiver (a wiremock server taking
//! `POST /v1/traces`, whose protobuf bodies are decoded here): one checkout is one trace, the call
//! to Proof its child, and Proof receives the same trace id in `traceparent`; an incoming
//! `traceparent` is continued only from a trusted proxy; `sample_ratio` decides for new traces.
//!
//! Spans leave the service in batches on its own schedule (every few seconds, and when it stops),
//! so the tests poll the receiver with a generous limit, and prove an absence only beside a
//! positive control that went through the same queue after it.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

/// A trace id an upstream proxy chose, and its span.
const PARENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

fn incoming_traceparent(flags: &str) -> String {
    format!("00-{PARENT_TRACE_ID}-{PARENT_SPAN_ID}-{flags}")
}

/// The OTLP/HTTP receiver.
struct Receiver {
    server: MockServer,
}

impl Receiver {
    async fn start() -> Self {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/traces"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(
                ExportTraceServiceResponse::default().encode_to_vec(),
                "application/x-protobuf",
            ))
            .mount(&server)
            .await;
        Self { server }
    }

    /// The collector's base URL, as an operator writes `telemetry.otlp_endpoint`.
    fn endpoint(&self) -> String {
        self.server.uri()
    }

    /// The bodies of every export so far.
    async fn bodies(&self) -> Vec<Vec<u8>> {
        let requests = self.server.received_requests().await.unwrap_or_default();
        for request in &requests {
            assert_eq!(request.url.path(), "/v1/traces");
            assert_eq!(
                request.headers["content-type"].to_str().unwrap(),
                "application/x-protobuf"
            );
        }
        requests.into_iter().map(|request| request.body).collect()
    }

    /// Every span received so far, with its resource's `service.name`.
    async fn spans(&self) -> Vec<(String, Span)> {
        let mut spans = Vec::new();
        for body in self.bodies().await {
            let export = ExportTraceServiceRequest::decode(body.as_slice())
                .expect("an OTLP protobuf export");
            for resource_spans in export.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|resource| string_attribute(&resource.attributes, "service.name"))
                    .unwrap_or_default();
                for scope_spans in resource_spans.scope_spans {
                    for span in scope_spans.spans {
                        spans.push((service.clone(), span));
                    }
                }
            }
        }
        spans
    }

    /// The spans of `trace_id` (hex), once both the server span and the client span have arrived.
    async fn trace(&self, trace_id: &str) -> Vec<Span> {
        let arrived = async || {
            let spans: Vec<Span> = self
                .spans()
                .await
                .into_iter()
                .map(|(service, span)| {
                    assert_eq!(service, "proof-bff");
                    span
                })
                .filter(|span| hex(&span.trace_id) == trace_id)
                .collect();
            let both = kind(&spans, SpanKind::Server).is_some()
                && kind(&spans, SpanKind::Client).is_some();
            both.then_some(spans)
        };
        let what = format!("the spans of trace {trace_id} reached the receiver");
        eventually_async(&what, arrived).await
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn kind(spans: &[Span], kind: SpanKind) -> Option<&Span> {
    spans.iter().find(|span| span.kind == kind as i32)
}

fn attribute<'a>(
    attributes: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn string_attribute(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    match attribute(attributes, key)? {
        Value::StringValue(value) => Some(value.clone()),
        _ => None,
    }
}

fn int_attribute(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<i64> {
    match attribute(attributes, key)? {
        Value::IntValue(value) => Some(*value),
        _ => None,
    }
}

/// `traceparent` as Proof received it: trace id, parent span id, flags.
struct ProofTraceparent {
    trace_id: String,
    span_id: String,
    flags: String,
}

/// The `traceparent` (and `tracestate`) of each call Proof received, in order.
async fn proof_trace_headers(app: &TestApp) -> Vec<(Option<ProofTraceparent>, Option<String>)> {
    app.proof_requests()
        .await
        .iter()
        .map(|request| {
            let header = |name: &str| {
                request
                    .headers
                    .get(name)
                    .map(|value| value.to_str().unwrap().to_owned())
            };
            let traceparent = header("traceparent").map(|value| {
                let parts: Vec<&str> = value.split('-').collect();
                assert_eq!(parts.len(), 4, "{value}");
                assert_eq!(parts[0], "00", "{value}");
                assert_eq!(parts[1].len(), 32, "{value}");
                assert_eq!(parts[2].len(), 16, "{value}");
                ProofTraceparent {
                    trace_id: parts[1].to_owned(),
                    span_id: parts[2].to_owned(),
                    flags: parts[3].to_owned(),
                }
            });
            (traceparent, header("tracestate"))
        })
        .collect()
}

/// The only call Proof received: its `traceparent`, which must be there.
async fn the_proof_traceparent(app: &TestApp) -> ProofTraceparent {
    let mut calls = proof_trace_headers(app).await;
    assert_eq!(calls.len(), 1, "one call to Proof");
    calls.remove(0).0.expect("Proof received a traceparent")
}

async fn traced_app(
    customise: impl FnOnce(&mut proof_bff::config::Settings),
) -> (TestApp, Receiver) {
    let receiver = Receiver::start().await;
    let endpoint = receiver.endpoint();
    let app = spawn_app_with(|s| {
        s.telemetry.otlp_endpoint = endpoint;
        customise(s);
    })
    .await;
    widget_session_ok().mount(&app.proof).await;
    (app, receiver)
}

#[tokio::test]
async fn one_checkout_is_one_trace_with_the_proof_call_as_a_child_and_proof_gets_its_trace_id() {
    let (app, receiver) = traced_app(|_| {}).await;
    let request_id = "trace-one-checkout";
    let token = session_token();
    let response = app
        .checkout_as(&token)
        .header("X-Request-Id", request_id)
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);

    let sent = the_proof_traceparent(&app).await;
    assert_eq!(sent.flags, "01", "sampled (sample_ratio = 1.0)");
    let spans = receiver.trace(&sent.trace_id).await;
    assert_eq!(spans.len(), 2, "one server span and one client span");
    let server = kind(&spans, SpanKind::Server).unwrap();
    let client = kind(&spans, SpanKind::Client).unwrap();

    // One trace: the request's span is its root, the call to Proof its child, and Proof's
    // traceparent names the client span.
    assert_eq!(hex(&server.trace_id), sent.trace_id);
    assert_eq!(hex(&client.trace_id), sent.trace_id);
    assert!(server.parent_span_id.is_empty(), "a new trace's root");
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(hex(&client.span_id), sent.span_id);

    assert_eq!(server.name, "POST /start-checkout");
    assert_eq!(
        string_attribute(&server.attributes, "http.route").as_deref(),
        Some("/start-checkout")
    );
    assert_eq!(
        string_attribute(&server.attributes, "proof_bff.request_id").as_deref(),
        Some(request_id)
    );
    assert_eq!(
        int_attribute(&server.attributes, "http.response.status_code"),
        Some(200)
    );
    assert_eq!(client.name, "POST /widget/session");
    assert_eq!(
        string_attribute(&client.attributes, "proof.endpoint").as_deref(),
        Some("/widget/session")
    );
    assert_eq!(
        int_attribute(&client.attributes, "http.response.status_code"),
        Some(200)
    );
    assert_eq!(int_attribute(&client.attributes, "proof.attempts"), Some(1));
    assert_eq!(
        string_attribute(&client.attributes, "proof.request_id").as_deref(),
        Some("proof-req-1")
    );

    // The log line names the same trace.
    let completed = log_events_with_message(request_id, "request completed");
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["span"]["trace_id"], sent.trace_id.as_str());

    // Nothing secret or personal is exported; the request id shows the bytes are readable.
    let exported: Vec<u8> = receiver.bodies().await.concat();
    let contains = |needle: &str| {
        exported
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    assert!(
        contains(request_id),
        "the export is searched as it was sent"
    );
    for (what, secret) in [
        ("client_token", CLIENT_TOKEN),
        ("the user id", USER_ID),
        ("the email", USER_EMAIL),
        ("the session token", token.as_str()),
        ("the body", "TRC20"),
    ] {
        assert!(!contains(secret), "{what} is in an exported span");
    }
}

#[tokio::test]
async fn an_export_carries_exactly_one_user_agent_the_services_own() {
    let (app, receiver) = traced_app(|_| {}).await;
    let response = app.checkout().send_with_valid_body().await;
    assert_eq!(response.status(), 200);
    let sent = the_proof_traceparent(&app).await;
    // Waits for the export that carries the checkout's spans.
    receiver.trace(&sent.trace_id).await;

    let exports = receiver
        .server
        .received_requests()
        .await
        .unwrap_or_default();
    assert!(!exports.is_empty());
    for export in exports {
        let user_agents: Vec<_> = export
            .headers
            .get_all("user-agent")
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect();
        // A strict collector refuses a request with the header twice (400).
        assert_eq!(
            user_agents,
            [concat!("proof-bff/", env!("CARGO_PKG_VERSION"))],
            "the export's User-Agent headers"
        );
    }
}

#[tokio::test]
async fn a_retried_call_to_proof_is_one_span_carrying_its_attempts() {
    let (app, receiver) = traced_app(|_| {}).await;
    app.proof.reset().await;
    app.proof_answers_first(
        1,
        proof_error_answer(502, "upstream_error", "provider_error"),
    )
    .await;
    app.proof_answers(widget_session_answer()).await;
    let response = app.checkout().send_with_valid_body().await;
    assert_eq!(response.status(), 200);

    let calls = proof_trace_headers(&app).await;
    assert_eq!(calls.len(), 2, "the 502 was retried");
    let first = calls[0].0.as_ref().expect("a traceparent on each attempt");
    let second = calls[1].0.as_ref().expect("a traceparent on each attempt");
    assert_eq!(first.trace_id, second.trace_id);
    assert_eq!(first.span_id, second.span_id, "one span for the whole call");
    let spans = receiver.trace(&first.trace_id).await;
    let client = kind(&spans, SpanKind::Client).unwrap();
    assert_eq!(int_attribute(&client.attributes, "proof.attempts"), Some(2));
    assert_eq!(
        int_attribute(&client.attributes, "http.request.resend_count"),
        Some(1)
    );
    assert_eq!(
        int_attribute(&client.attributes, "http.response.status_code"),
        Some(200)
    );
}

#[tokio::test]
async fn a_traceparent_from_a_peer_that_is_not_a_trusted_proxy_starts_a_new_trace() {
    // The test client's address, 127.0.0.1, is not in the (empty) trusted_proxies.
    let (app, receiver) = traced_app(|_| {}).await;
    let response = app
        .checkout()
        .header("traceparent", incoming_traceparent("01"))
        .header("tracestate", "vendor=chosen-by-the-client")
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);

    let calls = proof_trace_headers(&app).await;
    assert_eq!(calls.len(), 1);
    let (sent, tracestate) = &calls[0];
    let sent = sent.as_ref().expect("Proof received a traceparent");
    assert_ne!(
        sent.trace_id, PARENT_TRACE_ID,
        "the client's trace id is ignored"
    );
    assert_eq!(tracestate, &None, "the client's tracestate is ignored");
    // Stopping the service sends the queued spans at once.
    app.handle.drain().await;
    let spans = receiver.trace(&sent.trace_id).await;
    let server = kind(&spans, SpanKind::Server).unwrap();
    assert!(
        server.parent_span_id.is_empty(),
        "a root, not the client's child"
    );
}

#[tokio::test]
async fn a_traceparent_from_a_trusted_proxy_is_continued_up_to_proof() {
    let (app, receiver) = traced_app(|s| {
        s.client_ip.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let response = app
        .checkout()
        .header("X-Forwarded-For", "203.0.113.9")
        .header("traceparent", incoming_traceparent("01"))
        .header("tracestate", "vendor=from-the-proxy")
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);

    let calls = proof_trace_headers(&app).await;
    assert_eq!(calls.len(), 1);
    let (sent, tracestate) = &calls[0];
    let sent = sent.as_ref().expect("Proof received a traceparent");
    assert_eq!(
        sent.trace_id, PARENT_TRACE_ID,
        "the proxy's trace continues"
    );
    assert_ne!(
        sent.span_id, PARENT_SPAN_ID,
        "Proof's parent is our client span"
    );
    assert_eq!(tracestate.as_deref(), Some("vendor=from-the-proxy"));
    app.handle.drain().await;
    let spans = receiver.trace(PARENT_TRACE_ID).await;
    let server = kind(&spans, SpanKind::Server).unwrap();
    let client = kind(&spans, SpanKind::Client).unwrap();
    assert_eq!(hex(&server.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(hex(&client.span_id), sent.span_id);
}

#[tokio::test]
async fn with_sample_ratio_0_a_new_trace_is_not_exported_but_still_reaches_proof_unsampled() {
    let (app, receiver) = traced_app(|s| {
        s.telemetry.sample_ratio = 0.0;
        s.client_ip.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    // A new trace: not sampled.
    let response = app
        .checkout()
        .header("X-Forwarded-For", "203.0.113.9")
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    // A trusted proxy's sampled trace: sampled whatever the ratio (parent-based). It goes through
    // the same queue after the first, so once it has arrived the first would have too.
    let response = app
        .checkout()
        .header("X-Forwarded-For", "203.0.113.9")
        .header("traceparent", incoming_traceparent("01"))
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);

    let calls = proof_trace_headers(&app).await;
    assert_eq!(calls.len(), 2);
    let unsampled = calls[0]
        .0
        .as_ref()
        .expect("a traceparent even when not sampled");
    assert_eq!(
        unsampled.flags, "00",
        "Proof is told the trace is not sampled"
    );
    assert_ne!(unsampled.trace_id, PARENT_TRACE_ID);
    let sampled = calls[1].0.as_ref().expect("Proof received a traceparent");
    assert_eq!(sampled.trace_id, PARENT_TRACE_ID);
    assert_eq!(sampled.flags, "01");

    app.handle.drain().await;
    receiver.trace(PARENT_TRACE_ID).await;
    let exported_traces: Vec<String> = receiver
        .spans()
        .await
        .iter()
        .map(|(_, span)| hex(&span.trace_id))
        .collect();
    assert!(
        exported_traces.iter().all(|trace| trace == PARENT_TRACE_ID),
        "only the sampled trace is exported: {exported_traces:?}"
    );
}

#[tokio::test]
async fn with_traces_off_proof_receives_no_traceparent() {
    let app = spawn_app().await;
    widget_session_ok().mount(&app.proof).await;
    let response = app
        .checkout()
        .header("traceparent", incoming_traceparent("01"))
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    let calls = proof_trace_headers(&app).await;
    assert_eq!(calls.len(), 1);
    assert!(calls[0].0.is_none(), "no traceparent without traces");
    assert!(calls[0].1.is_none(), "no tracestate without traces");
}

#[tokio::test]
async fn a_collector_with_a_certificate_from_a_private_ca_is_trusted_only_through_otlp_ca_file() {
    use crate::tls_front::{CA_FILE, TlsFront};

    let receiver = Receiver::start().await;
    let front = TlsFront::start(*receiver.server.address()).await;
    let endpoint = front.url("");

    // Without the CA: the collector's certificate is refused, and no span reaches it.
    let untrusting = spawn_app_with(|s| s.telemetry.otlp_endpoint = endpoint.clone()).await;
    widget_session_ok().mount(&untrusting.proof).await;
    let response = untrusting
        .checkout_as(&session_token())
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    front.wait_until_only_refused().await;
    assert!(receiver.bodies().await.is_empty());

    // With it, the checkout's trace arrives over TLS.
    let trusting = spawn_app_with(|s| {
        s.telemetry.otlp_endpoint = endpoint.clone();
        s.telemetry.otlp_ca_file = CA_FILE.into();
    })
    .await;
    widget_session_ok().mount(&trusting.proof).await;
    let response = trusting
        .checkout_as(&session_token())
        .send_with_valid_body()
        .await;
    assert_eq!(response.status(), 200);
    let sent = the_proof_traceparent(&trusting).await;
    let spans = receiver.trace(&sent.trace_id).await;
    assert_eq!(spans.len(), 2);
    assert!(front.handshakes_done() >= 1);
}
