//! The id of each request, and the middleware that assigns it before the root span is built and
//! returns it on every response.

use std::future::{Ready, ready};

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage};
use futures_util::future::LocalBoxFuture;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of one request: the caller's `X-Request-Id` when it is sane, else a fresh UUID. It is
/// returned on every response and forwarded to Proof, so one id follows the request end to end.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    fn from_request(req: &ServiceRequest) -> Self {
        let mut incoming = req.headers().get_all(REQUEST_ID_HEADER);
        if let (Some(value), None) = (incoming.next(), incoming.next())
            && is_sane_request_id(value.as_bytes())
        {
            return Self(value.clone());
        }
        Self::generate()
    }

    /// A fresh id, for the calls the service makes on its own (a status watcher's polls).
    pub fn generate() -> Self {
        let mut buffer = uuid::Uuid::encode_buffer();
        // From rand's thread generator (uuid's `fast-rng`), not a system call per request.
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
        Self(HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("unknown")))
    }

    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII ids are ever stored (checked or generated above).
        self.0.to_str().unwrap_or("")
    }
}

/// Another party's request id (Proof's `X-Request-Id`), kept only when it is as plain as one of
/// ours may be: whoever answered chose it, and logs and spans carry it as it is.
pub fn plain_request_id(value: Option<&HeaderValue>) -> Option<HeaderValue> {
    value
        .filter(|value| is_sane_request_id(value.as_bytes()))
        .cloned()
}

/// A request id a caller may choose: short, and only characters that are safe in logs and headers.
fn is_sane_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Handlers take the id as an extractor; outside the middleware (never in the running service)
/// a fresh one is made rather than failing the request.
impl actix_web::FromRequest for RequestId {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(Ok(req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::generate)))
    }
}

/// Assigns the request id before the root span is built, and returns it on every response,
/// errors included.
pub struct RequestIdMiddleware;

impl<S, B> Transform<S, ServiceRequest> for RequestIdMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestIdService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestIdService { service }))
    }
}

pub struct RequestIdService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for RequestIdService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let request_id = RequestId::from_request(&req);
        let header = request_id.0.clone();
        req.extensions_mut().insert(request_id);
        let response = self.service.call(req);
        Box::pin(async move {
            match response.await {
                Ok(mut response) => {
                    response.headers_mut().insert(REQUEST_ID_HEADER, header);
                    Ok(response)
                }
                Err(error) => {
                    // Turn the error into its response here so the id is still attached.
                    let mut response = error.error_response();
                    response.headers_mut().insert(REQUEST_ID_HEADER, header);
                    Err(actix_web::error::InternalError::from_response(error, response).into())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_checked() {
        assert!(is_sane_request_id(b"3f0c2a7e-1b9d-4c55-9f57-5f2b8f0b3a11"));
        assert!(is_sane_request_id(b"req_123.abc:7"));
        assert!(!is_sane_request_id(b""));
        assert!(!is_sane_request_id(b"has space"));
        assert!(!is_sane_request_id(b"line\nbreak"));
        assert!(!is_sane_request_id(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
    }

    #[test]
    fn generated_ids_are_distinct_version_4_uuids() {
        let ids: Vec<String> = (0..1000)
            .map(|_| RequestId::generate().as_str().to_owned())
            .collect();
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(uuid.hyphenated().to_string(), *id, "lower case, hyphenated");
            assert!(is_sane_request_id(id.as_bytes()));
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn only_a_plain_request_id_from_proof_is_kept() {
        let kept = |value: &'static str| plain_request_id(Some(&HeaderValue::from_static(value)));
        assert_eq!(kept("req_123.abc:7").unwrap(), "req_123.abc:7");
        assert_eq!(kept("has space"), None);
        assert_eq!(kept("{\"json\":1}"), None);
        assert_eq!(plain_request_id(None), None);
    }
}
