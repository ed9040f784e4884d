//! CSRF defence for the cookie-carrying POSTs: they must come from one of the partner's own pages.
//!
//! The `Origin` header is the check (browsers set it on every cross-origin and same-origin POST and
//! scripts cannot forge it); `Sec-Fetch-Site` backs it up when `Origin` may be absent; the optional
//! `X-CSRF: 1` header forces a CORS preflight for anything not sent by the partner's script.

use actix_web::HttpRequest;

use super::{BrowserConfig, CallerOrigin};

/// Why a caller was refused before anything else about the request was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallerRefused {
    #[error("origin not allowed")]
    ForbiddenOrigin,
    #[error("X-CSRF header missing")]
    CsrfHeaderMissing,
}

pub fn check_caller(req: &HttpRequest, browser: &BrowserConfig) -> Result<(), CallerRefused> {
    let headers = req.headers();
    match browser.allowed_origins.judge(headers) {
        CallerOrigin::Allowed(_) => {}
        // Server-to-server callers send neither Origin nor Sec-Fetch-Site; a browser that
        // somehow omits Origin still says where the request comes from.
        CallerOrigin::Missing
            if browser.allow_missing_origin && !is_cross_site_browser_request(req) => {}
        _ => return Err(CallerRefused::ForbiddenOrigin),
    }
    if browser.require_csrf_header
        && headers
            .get("x-csrf")
            .is_none_or(|value| value.as_bytes() != b"1")
    {
        return Err(CallerRefused::CsrfHeaderMissing);
    }
    Ok(())
}

/// For the read-only `GET` routes: a same-origin `GET` carries no `Origin`, so none is fine, and
/// no CSRF header is asked for (a read changes nothing, and a foreign page cannot read the answer
/// without a CORS grant); an `Origin` that is present must be allowed.
pub fn check_reader(req: &HttpRequest, browser: &BrowserConfig) -> Result<(), CallerRefused> {
    match browser.allowed_origins.judge(req.headers()) {
        CallerOrigin::Allowed(_) | CallerOrigin::Missing => Ok(()),
        _ => Err(CallerRefused::ForbiddenOrigin),
    }
}

fn is_cross_site_browser_request(req: &HttpRequest) -> bool {
    req.headers()
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() != b"same-origin" && site.as_bytes() != b"none")
}
