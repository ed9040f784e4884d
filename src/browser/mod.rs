//! What a browser may do: which pages may call with the user's cookie (the one `Origin` decision,
//! [`origin`]), CORS and the headers every answer carries ([`cors`]), and the CSRF defence of the
//! cookie-carrying POSTs and the rule for the read-only GETs ([`csrf`]); the `[browser]` settings
//! ([`config`]).

mod config;
pub mod cors;
pub mod csrf;
pub mod origin;

pub use config::{BrowserConfig, BrowserSettings};
pub use csrf::{CallerRefused, check_caller, check_reader};
pub use origin::{AllowedOrigins, CallerOrigin};
