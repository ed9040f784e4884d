//! `POST /start-checkout`: the route's phases in the order they run ([`route`]), what the browser
//! may ask for ([`request`]), the partner's limits on it ([`policy`]), the amounts it names
//! ([`amount`]), what every worker shares to serve it ([`context`]), and why the service itself
//! refuses or fails one ([`error`]).

mod amount;
pub mod caller;
mod context;
mod error;
mod policy;
mod request;
mod route;

pub use amount::Amount;
pub use context::CheckoutContext;
pub use error::CheckoutError;
pub use policy::{CheckoutPolicy, CheckoutType};
pub use request::{CheckoutRequest, ValidationError, parse_checkout_request};
pub use route::{read_body, start_checkout};

#[cfg(test)]
mod tests;
