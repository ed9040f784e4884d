//! Why a call to Proof gave no usable answer. Proof's own 4xx answers are not errors: they are
//! passed through.

/// Why the call to Proof gave no usable answer, and after how many attempts. Proof's own 4xx
/// answers are not errors: they are passed through.
#[derive(Debug, thiserror::Error)]
#[error("{kind} after {attempts} attempt(s)")]
pub struct UpstreamError {
    pub kind: UpstreamFailure,
    /// Requests started towards Proof, the last one included.
    pub attempts: u32,
}

/// What went wrong with the last attempt.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamFailure {
    #[error("Proof refused our credentials or origin (HTTP {status})")]
    Misconfigured { status: u16 },
    #[error("Proof answered HTTP {status}")]
    ProviderError { status: u16 },
    #[error("Proof unreachable or the connection broke: {cause}")]
    Unavailable { cause: String },
    #[error("Proof answered HTTP {status} with an unusable body: {cause}")]
    InvalidResponse { status: u16, cause: &'static str },
    #[error("no answer from Proof in time ({cause})")]
    Timeout { cause: &'static str },
    /// Every place of `proof.max_connections` stayed taken until the deadline: nothing was sent.
    #[error("no connection to Proof free before the deadline")]
    Busy,
}

impl UpstreamFailure {
    /// The failure's name in metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Misconfigured { .. } => "misconfigured",
            Self::ProviderError { .. } => "provider_error",
            Self::Unavailable { .. } => "unavailable",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::Timeout { .. } => "timeout",
            Self::Busy => "busy",
        }
    }
}
