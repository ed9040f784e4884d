//! `POST /start-checkout`: the route's phases in the order they run ([`route`]), what the browser
//! may ask for ([`request`]), the partner's limits on it ([`policy`]), the amounts it names
//! ([`amount`]), and what every worker shares to serve it beyond admission ([`context`]); the
//! `[checkout]` settings, the idempotency store's included ([`config`]). Who is calling, and why a
//! request is refused, are `admission/`'s, shared with the status routes.

mod amount;
mod config;
mod context;
mod policy;
mod request;
mod route;

pub use amount::Amount;
pub use config::CheckoutSettings;
pub use context::CheckoutContext;
pub use policy::{CheckoutPolicy, CheckoutType};
pub use request::{CheckoutRequest, parse_checkout_request};
pub use route::start_checkout;

#[cfg(test)]
mod tests;
