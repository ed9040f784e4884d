//! What this binary is: its version and the commit it was built from (recorded by build.rs), for
//! `proof-bff --version`, the start-up log line and the `proof_bff_build_info` metric.

/// The package version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The full id of the commit the binary was built from, or `unknown`.
pub const COMMIT: &str = env!("PROOF_BFF_BUILD_COMMIT");

/// What `proof-bff --version` prints after the name, e.g. `0.1.0 (commit 0123…)`, `0.1.0 (commit
/// 0123…, built from a modified tree)` or `0.1.0 (commit unknown)`.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PROOF_BFF_BUILD_DESCRIPTION"),
    ")"
);
