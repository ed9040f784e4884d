//! The command line: `proof-bff --config FILE`, `proof-bff --sandbox`,
//! `proof-bff check-config --config FILE`, and the `proof-bff healthcheck` probe
//! ([`healthcheck`]).

pub mod healthcheck;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "proof-bff",
    version = crate::build_info::VERSION_LINE,
    about = "Creates Proof widget sessions for your web app, server-side"
)]
pub struct Cli {
    /// TOML config file; environment variables PROOF_BFF__SECTION__KEY override it.
    #[arg(long, env = "PROOF_BFF_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Run against an embedded stand-in for Proof, with a dev session key and a demo page.
    #[arg(long)]
    pub sandbox: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and exit 0, or print what is wrong and exit non-zero.
    CheckConfig,
    /// Probe a running instance's /healthz and exit 0 when it answers 200 (for container health checks).
    Healthcheck {
        /// The URL to probe; by default /healthz on the configured server.listen.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}
