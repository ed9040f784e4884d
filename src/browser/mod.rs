//! What a browser may do: which pages may call with the user's cookie (the one `Origin` decision,
//! [`origin`]), CORS and the headers every answer carries ([`cors`]), and the CSRF defence of the
//! cookie-carrying POSTs and the rule for the read-only GETs ([`csrf`]).

pub mod cors;
pub mod csrf;
pub mod origin;

pub use csrf::{CallerRefused, check_caller, check_reader};
pub use origin::{AllowedOrigins, CallerOrigin};

/// The `[browser]` rules, checked.
#[derive(Debug, Clone)]
pub struct BrowserConfig {
    pub allowed_origins: AllowedOrigins,
    pub require_csrf_header: bool,
    pub allow_missing_origin: bool,
}
