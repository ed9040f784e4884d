//! `proof-stand-in`: the stand-in for Proof's partner API as a process of its own, for setups where
//! several proof-bff replicas must call one Proof (the compose file in deploy/compose, soak and
//! load runs). `proof-bff --sandbox` embeds the same stand-in and needs none of this.
//!
//! The client token is read from a file or the environment, never from the command line, where
//! any user of the machine could read it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use proof_stand_in::{MAX_WEBSOCKETS, ProofStandIn, StandInConfig};
use secrecy::SecretString;

/// A stand-in for Proof's partner API (`POST /widget/session`, transaction and KYC status, the
/// `/ws` WebSocket, the partner webhook), with Proof's test amounts.
#[derive(Debug, Parser)]
#[command(name = "proof-stand-in", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "PROOF_STAND_IN_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    /// File holding the client token it accepts (surrounding whitespace ignored). Without it,
    /// the token is read from PROOF_STAND_IN_CLIENT_TOKEN.
    #[arg(long, env = "PROOF_STAND_IN_CLIENT_TOKEN_FILE")]
    client_token_file: Option<PathBuf>,
    /// An `Origin` it accepts, as registered at onboarding (proof-bff's `proof.origin`);
    /// repeatable, or comma-separated in the environment.
    #[arg(
        long = "origin",
        env = "PROOF_STAND_IN_ORIGINS",
        value_delimiter = ',',
        required = true
    )]
    origins: Vec<String>,
    /// Seconds a transaction spends in each status before the next (pending, processing).
    #[arg(long, env = "PROOF_STAND_IN_STATUS_STEP_S", default_value_t = 2)]
    status_step_s: u64,
    /// Seconds the slow test amount (5.04) waits before answering.
    #[arg(long, env = "PROOF_STAND_IN_SLOW_ANSWER_S", default_value_t = 30)]
    slow_answer_s: u64,
    /// WebSocket connections open at once; beyond, `GET /ws` answers 503.
    #[arg(long, env = "PROOF_STAND_IN_MAX_WEBSOCKETS", default_value_t = MAX_WEBSOCKETS)]
    max_websockets: usize,
    /// The partner webhook (`http://` only), POSTed each status change after `pending`.
    #[arg(long, env = "PROOF_STAND_IN_WEBHOOK_URL")]
    webhook_url: Option<String>,
}

fn client_token(args: &Args) -> Result<SecretString, String> {
    let token = match &args.client_token_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the client token file {}: {e}", path.display()))?,
        None => std::env::var("PROOF_STAND_IN_CLIENT_TOKEN").map_err(|_| {
            "no client token: set PROOF_STAND_IN_CLIENT_TOKEN or --client-token-file".to_owned()
        })?,
    };
    let token = token.trim();
    if token.is_empty() {
        return Err("the client token is empty".to_owned());
    }
    Ok(SecretString::from(token.to_owned()))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("proof-stand-in: {message}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let mut config = StandInConfig::sandbox(client_token(args)?, args.origins.clone());
    config.status_step = Duration::from_secs(args.status_step_s);
    config.slow_answer = Duration::from_secs(args.slow_answer_s);
    config.max_websockets = args.max_websockets;
    config.webhook_url = args.webhook_url.clone();
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    actix_web::rt::System::new().block_on(async move {
        let stand_in = ProofStandIn::start(config, listener).map_err(|e| e.to_string())?;
        let handle = stand_in.handle();
        println!("proof-stand-in listening on http://{address}");
        actix_web::rt::spawn(async move {
            stop_signal().await;
            handle.stop(true).await;
        });
        stand_in.into_server().await.map_err(|e| e.to_string())
    })
}

/// SIGTERM (a container stop) or SIGINT (Ctrl-C).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
