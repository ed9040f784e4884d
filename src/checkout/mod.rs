//! `POST /start-checkout`: what the browser may ask for (the body, [`request`]), the partner's
//! limits on it ([`policy`]) and the amounts it names ([`amount`]).

mod amount;
mod policy;
mod request;

pub use amount::Amount;
pub use policy::{CheckoutPolicy, CheckoutType};
pub use request::{CheckoutRequest, ValidationError, parse_checkout_request};

#[cfg(test)]
mod tests;
