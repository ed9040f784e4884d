//! OpenTelemetry traces, on only when `telemetry.otlp_endpoint` is set: each request is a server
//! span, each call to Proof made for it a client span beneath it, exported over OTLP/HTTP
//! (protobuf) in batches.
//!
//! The tracer provider belongs to the [`Traces`] of one running service, not to the process: the
//! spans are made with the OpenTelemetry API directly, where a `tracing` layer would tie them to
//! the one process-wide subscriber. With traces off there is no `Traces` at all: no exporter, no
//! thread, and nothing per request beyond one failed lookup.
//!
//! Context propagation is W3C Trace Context. An incoming `traceparent` (and `tracestate`) is
//! believed only from a peer inside `client_ip.trusted_proxies`, the same rule as the forwarding
//! headers: anyone else starts a fresh trace, so a client cannot choose our trace ids or force
//! sampling. Proof receives `traceparent` (and `tracestate`, when there is one) on every attempt
//! of a call, naming the call's client span; its sampled flag carries our decision, so a trace
//! that is not sampled here (`sample_ratio` < 1) still has one id end to end.
//!
//! Sampling is parent-based: a request that continues a trusted parent follows the parent's
//! decision; a new trace is sampled with probability `sample_ratio` (by trace id). Nothing that is
//! a secret or personal data is ever a span attribute: no token, user id, email, address or body.

mod export;

use std::collections::HashMap;
use std::time::Duration;

use actix_web::dev::ServiceRequest;
use actix_web::http::Method;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span as SdkSpan,
};

use crate::client_ip::TrustedProxies;
use crate::tls_roots::TlsRoots;

/// How long one export to the collector may take, from connecting to the last byte of its answer.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// On a graceful stop, the spans still queued are sent; the stop waits for them at most this long.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `[telemetry]`, checked, when traces are on.
#[derive(Debug, Clone)]
pub struct TracesConfig {
    /// The collector's traces URL (`…/v1/traces`).
    pub traces_url: url::Url,
    /// The share of new traces sampled, 0.0 to 1.0.
    pub sample_ratio: f64,
    /// What the collector's certificate is checked against: the public roots, and the CA of
    /// `otlp_ca_file`.
    pub tls_roots: TlsRoots,
}

/// One running service's traces: its tracer provider and exporter, and whom it believes a parent
/// from.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    trusted: TrustedProxies,
}

impl Traces {
    /// Starts the exporter's threads (its HTTP client, the batch processor); fails only when the
    /// system refuses a thread or a runtime.
    pub fn start(config: &TracesConfig, trusted: TrustedProxies) -> std::io::Result<Self> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(export::AwcExport::start(
                EXPORT_TIMEOUT,
                config.tls_roots.clone(),
            )?)
            // In place of the exporter's own (`OTel-OTLP-Exporter-Rust/…`): one User-Agent on
            // every export (a strict collector refuses a request carrying two), which
            // OTEL_EXPORTER_OTLP_HEADERS may still replace.
            .with_headers(HashMap::from([(
                "User-Agent".to_owned(),
                export::USER_AGENT_VALUE.to_owned(),
            )]))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.traces_url.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(std::io::Error::other)?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).build())
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(resource())
            .build();
        let tracer = provider.tracer_with_scope(
            InstrumentationScope::builder("proof-bff")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        Ok(Self {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
            trusted,
        })
    }

    /// The request's span: the child of the trusted proxy's `traceparent`, or a new trace's root.
    pub(super) fn server_span(
        &self,
        request: &ServiceRequest,
        route: &str,
        request_id: &str,
    ) -> ServerSpan {
        let trusted = request
            .peer_addr()
            .is_some_and(|peer| self.trusted.contains(peer.ip()));
        let parent = if trusted {
            self.propagator.extract(&IncomingHeaders(request.headers()))
        } else {
            Context::new()
        };
        let method = method_name(request.method());
        let span = self
            .tracer
            .span_builder(format!("{method} {route}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.route", route.to_owned()),
                KeyValue::new("proof_bff.request_id", request_id.to_owned()),
            ])
            .start_with_context(&self.tracer, &parent);
        ServerSpan(span)
    }

    /// A call to Proof made for the request whose span is `parent`.
    pub fn client_span(
        &self,
        name: &'static str,
        method: &'static str,
        endpoint: &'static str,
        parent: SpanContext,
    ) -> ClientSpan {
        let parent = Context::new().with_remote_span_context(parent);
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", method),
                KeyValue::new("proof.endpoint", endpoint),
            ])
            .start_with_context(&self.tracer, &parent);
        let mut headers = OutgoingHeaders::default();
        self.propagator.inject_context(
            &Context::new().with_remote_span_context(span.span_context().clone()),
            &mut headers,
        );
        ClientSpan { span, headers }
    }

    /// Sends the spans still queued and stops the exporter, waiting at most [`FLUSH_TIMEOUT`].
    /// Blocks: call it where blocking is harmless (see [`Traces::shutdown`]). A last export that
    /// failed is reported by the exporter itself, as every failed export is.
    fn shutdown_blocking(&self) {
        match self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            Ok(()) => tracing::info!("trace exporter stopped"),
            Err(error) => tracing::warn!(%error, "trace exporter did not stop in time"),
        }
    }

    /// Flushes and stops the exporter on a thread where waiting blocks no runtime.
    pub async fn shutdown(self: std::sync::Arc<Self>) {
        let _ = tokio::task::spawn_blocking(move || self.shutdown_blocking()).await;
    }
}

/// The resource every span is reported under: `service.name` from `OTEL_SERVICE_NAME` (or
/// `OTEL_RESOURCE_ATTRIBUTES`) when the operator set one, else `proof-bff`; the version.
fn resource() -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named {
        builder.build()
    } else {
        builder.with_service_name("proof-bff").build()
    }
}

/// The method as the semantic conventions name it: the standard ones, or `_OTHER`.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The request's span, ended when the request ends (or, should the request end without an answer,
/// when it is dropped).
#[derive(Debug)]
pub(super) struct ServerSpan(SdkSpan);

impl ServerSpan {
    pub(super) fn span_context(&self) -> SpanContext {
        self.0.span_context().clone()
    }

    /// The trace id, for the log line (32 hex digits).
    pub(super) fn trace_id(&self) -> opentelemetry::trace::TraceId {
        self.0.span_context().trace_id()
    }

    /// Ends the span with the answer's status and, when the service answered with one of its own
    /// errors, its code. Only a 5xx is an error of the server span.
    pub(super) fn end(mut self, status: u16, code: Option<&'static str>) {
        let span = &mut self.0;
        if span.is_recording() {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if let Some(code) = code {
                span.set_attribute(KeyValue::new("proof_bff.error_code", code));
            }
            if status >= 500 {
                span.set_status(Status::error(code.unwrap_or("server_error")));
            }
        }
        span.end();
    }
}

/// A call to Proof's span, and the headers that carry it to Proof.
#[derive(Debug)]
pub struct ClientSpan {
    span: SdkSpan,
    headers: OutgoingHeaders,
}

impl ClientSpan {
    /// `traceparent`, and `tracestate` when there is one: sent with every attempt.
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, &HeaderValue)> {
        [
            (TRACEPARENT, self.headers.traceparent.as_ref()),
            (TRACESTATE, self.headers.tracestate.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
    }

    /// Ends the span with what the call came to: bounded values only.
    pub fn end(
        mut self,
        outcome: &'static str,
        failed: bool,
        attempts: u32,
        status: Option<u16>,
        proof_request_id: Option<&HeaderValue>,
    ) {
        let span = &mut self.span;
        if span.is_recording() {
            span.set_attribute(KeyValue::new("proof.outcome", outcome));
            span.set_attribute(KeyValue::new("proof.attempts", i64::from(attempts)));
            if attempts > 1 {
                span.set_attribute(KeyValue::new(
                    "http.request.resend_count",
                    i64::from(attempts - 1),
                ));
            }
            if let Some(status) = status {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            if let Some(id) = proof_request_id.and_then(|id| id.to_str().ok()) {
                span.set_attribute(KeyValue::new("proof.request_id", id.to_owned()));
            }
            if failed {
                span.set_status(Status::error(outcome));
            }
        }
        span.end();
    }
}

/// The incoming request's headers as the propagator reads them. A header given more than once is
/// not believed: a proxy sends one `traceparent`, and a second `tracestate` line is dropped rather
/// than merged (the trace is kept; only the vendors' state is lost).
struct IncomingHeaders<'a>(&'a HeaderMap);

impl Extractor for IncomingHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let mut values = self.0.get_all(key);
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        value.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// What the propagator writes for Proof.
#[derive(Debug, Default)]
struct OutgoingHeaders {
    traceparent: Option<HeaderValue>,
    tracestate: Option<HeaderValue>,
}

impl Injector for OutgoingHeaders {
    fn set(&mut self, key: &str, value: String) {
        // The propagator writes `tracestate` even when there is none; an empty one says nothing.
        if value.is_empty() {
            return;
        }
        let slot = match key {
            "traceparent" => &mut self.traceparent,
            "tracestate" => &mut self.tracestate,
            _ => return,
        };
        *slot = HeaderValue::try_from(value).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_traceparent_is_not_believed() {
        let mut headers = HeaderMap::new();
        let one = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        headers.append(TRACEPARENT, HeaderValue::from_static(one));
        assert_eq!(IncomingHeaders(&headers).get("traceparent"), Some(one));
        headers.append(
            TRACEPARENT,
            HeaderValue::from_static("00-11111111111111111111111111111111-2222222222222222-01"),
        );
        assert_eq!(IncomingHeaders(&headers).get("traceparent"), None);
    }

    #[test]
    fn only_standard_methods_are_named() {
        assert_eq!(method_name(&Method::POST), "POST");
        assert_eq!(
            method_name(&Method::from_bytes(b"PROPFIND").unwrap()),
            "_OTHER"
        );
    }
}
