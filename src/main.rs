use std::process::ExitCode;

use clap::Parser;
use proof_bff::cli::{Cli, Command};
use proof_bff::configuration::{Settings, SettingsSources};
use proof_bff::startup::Application;
use proof_bff::{healthcheck, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { url }) = &cli.command {
        return match healthcheck::probe(url) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("proof-bff: healthcheck: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if cli.sandbox {
        eprintln!("proof-bff: --sandbox is not available in this build");
        return ExitCode::from(2);
    }
    let sources = SettingsSources {
        preset: Vec::new(),
        file: cli.config,
    };
    let config = match Settings::load(&sources).and_then(Settings::validate) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("proof-bff: config error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::CheckConfig) = cli.command {
        println!("proof-bff: config OK");
        return ExitCode::SUCCESS;
    }
    if let Err(error) = telemetry::init(&config.log) {
        eprintln!("proof-bff: cannot start logging: {error}");
        return ExitCode::FAILURE;
    }
    let listen = config.server.listen.clone();
    let served = actix_web::rt::System::new().block_on(async move {
        let application = Application::build(config)?;
        tracing::info!(listen = %listen, port = application.port(), "proof-bff listening");
        application.run_until_stopped().await
    });
    match served {
        Ok(()) => {
            tracing::info!("proof-bff stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "proof-bff failed");
            eprintln!("proof-bff: {error}");
            ExitCode::FAILURE
        }
    }
}
