//! Admission: what every browser-facing route runs before its own work, and how any route's refusal
//! or failure becomes our envelope. `checkout/` and `status/` (and the sandbox's routes) are
//! siblings built on it; neither imports the other.
//!
//! - [`caller`]: who is calling and from where, in a fixed order: the client's real address,
//!   whether a session is presented at all, the address's limit, the session, the user's limit,
//!   each route spending its own budget.
//! - [`body`]: a request body read within its size and time bounds, or read and dropped for a
//!   request refused before it was needed.
//! - [`context`]: what every worker shares to do the above.
//! - [`error`]: [`ApiError`], every reason the service itself refuses or fails a request, with the
//!   status, error and code it answers with.
//!
//! The browser's own rules (Origin, CSRF header, CORS) are `browser/`'s; the route calls them first.

mod body;
mod caller;
mod context;
mod error;

pub use body::{discard_body, read_body};
pub use caller::{identify, resolve_client_ip};
pub use context::AdmissionContext;
pub use error::{ApiError, ValidationError};
