use std::process::ExitCode;

use clap::Parser;
use proof_bff::cli::{Cli, Command, healthcheck};
use proof_bff::config::{AppConfig, ConfigError, Settings, SettingsSources};
use proof_bff::sandbox::{self, SandboxPlan};
use proof_bff::startup::{Application, Stopped};
use proof_bff::telemetry;
use proof_stand_in::ProofStandIn;

/// A request allocates and frees many small buffers (headers, bodies, log lines) on one worker
/// thread; mimalloc's per-thread free lists make that cheaper than the system allocator's (a fifth
/// of a checkout's CPU, measured with benches/compare.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { url }) = &cli.command {
        let url = match url {
            Some(url) => Ok(url.clone()),
            None => configured_healthz_url(&cli),
        };
        return match url.and_then(|url| healthcheck::probe(&url)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("proof-bff: healthcheck: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let (config, sandbox_plan) = match load_config(&cli) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("proof-bff: config error: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::CheckConfig) = cli.command {
        println!("proof-bff: config OK");
        return ExitCode::SUCCESS;
    }
    // Held to the end of `main`: the lines still buffered are written out when it drops.
    let _log_writer = match telemetry::init(&config.log) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("proof-bff: cannot start logging: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listen = config.server.listen.clone();
    let served = actix_web::rt::System::new().block_on(async move {
        // In sandbox mode the stand-in for Proof serves first, so the service's upstream is up.
        let (stand_in, application) = match sandbox_plan {
            Some(plan) => {
                let stand_in = ProofStandIn::start(plan.stand_in, plan.stand_in_listener)?;
                let base_url = stand_in.base_url();
                actix_web::rt::spawn(stand_in.into_server());
                // On the socket the plan bound, whose port the page's origins name.
                let application = Application::build_with_listener(config, plan.listener)?;
                (Some((base_url, plan.session)), application)
            }
            None => (None, Application::build(config)?),
        };
        tracing::info!(
            listen = %listen,
            port = application.port(),
            version = proof_bff::build_info::VERSION,
            commit = proof_bff::build_info::COMMIT,
            "proof-bff listening"
        );
        if let Some((stand_in_url, session)) = stand_in {
            let page = sandbox::page_origin(&listen, application.port());
            println!("{}", sandbox::banner(&page, &stand_in_url, &session));
        }
        application.run_until_stopped().await
    });
    match served {
        Ok(Stopped::Drained) => {
            tracing::info!("proof-bff stopped");
            ExitCode::SUCCESS
        }
        // Already logged when the second signal arrived; the non-zero code tells a supervisor
        // that requests may have been dropped.
        Ok(Stopped::DrainCutShort) => ExitCode::FAILURE,
        Err(error) => {
            tracing::error!(%error, "proof-bff failed");
            eprintln!("proof-bff: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `/healthz` on the listen address the service itself would read from the same file and
/// environment, so a container probe follows a changed port without being told.
fn configured_healthz_url(cli: &Cli) -> Result<String, String> {
    let settings =
        Settings::load(&settings_sources(cli)).map_err(|error| format!("config error: {error}"))?;
    let listen = settings
        .server
        .listen_address()
        .map_err(|error| format!("config error: {error}"))?;
    Ok(healthcheck::healthz_url(&listen))
}

/// The validated configuration, and in sandbox mode what the stand-in needs to start.
fn load_config(cli: &Cli) -> Result<(AppConfig, Option<SandboxPlan>), ConfigError> {
    let settings = Settings::load(&settings_sources(cli))?;
    if !cli.sandbox {
        return Ok((settings.validate()?, None));
    }
    let (settings, plan) = sandbox::plan(settings)?;
    let mut config = settings.validate()?;
    config.sandbox = Some(plan.session.clone());
    Ok((config, Some(plan)))
}

/// The file and, with `--sandbox`, the sandbox's preset under it; the environment is read too.
fn settings_sources(cli: &Cli) -> SettingsSources {
    SettingsSources {
        preset: if cli.sandbox {
            sandbox::preset()
        } else {
            Vec::new()
        },
        file: cli.config.clone(),
    }
}
