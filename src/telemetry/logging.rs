//! The subscriber: JSON lines or human-readable, `RUST_LOG` winning over `log.level`, installed once
//! per process.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{EnvFilter, Registry};

/// `[log]`, checked.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A level or an `EnvFilter` directive; `RUST_LOG`, when set and valid, wins.
    pub level: String,
}

/// `log.format`: JSON lines for log pipelines, or compact text for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            _ => Err(format!("{name:?} is not one of json, pretty")),
        }
    }
}

/// Builds the subscriber: JSON lines or human-readable, `RUST_LOG` winning over `log.level`.
/// Never writes colour codes: `writer` may be a file or a pipe.
pub fn subscriber<W>(log: &LogConfig, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    build_subscriber(log, &filter_from_env(log), writer, false)
}

/// `RUST_LOG` when it is set and valid, else `log.level`.
fn filter_from_env(log: &LogConfig) -> String {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|value| EnvFilter::try_new(value).is_ok())
        .unwrap_or_else(|| log.level.clone())
}

/// Like [`subscriber`] with an explicit filter, ignoring `RUST_LOG`.
pub fn subscriber_with_filter<W>(
    log: &LogConfig,
    filter: &str,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    build_subscriber(log, filter, writer, false)
}

/// `ansi` colours the pretty format; escape codes in a file or a log pipeline are only noise.
fn build_subscriber<W>(
    log: &LogConfig,
    filter: &str,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = Registry::default().with(filter);
    match log.format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            ),
        ),
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_ansi(ansi)
                    .with_writer(writer),
            ),
        ),
    }
}

/// Installs the subscriber for the process, writing to standard output.
pub fn init(log: &LogConfig) -> Result<(), TryInitError> {
    install(stdout_subscriber(log))
}

/// The process's subscriber: pretty logs are coloured only on a terminal, and not when
/// `NO_COLOR` is set (no-color.org).
fn stdout_subscriber(log: &LogConfig) -> Box<dyn tracing::Subscriber + Send + Sync> {
    use std::io::IsTerminal;
    let ansi = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    build_subscriber(log, &filter_from_env(log), std::io::stdout, ansi)
}

/// Makes `subscriber` the process's global default, once per process, and routes the `log`
/// records of dependencies (actix-web, awc, rustls) into it, so they pass the same filter and
/// reach the same writer as our own events instead of being dropped.
pub fn install(subscriber: Box<dyn tracing::Subscriber + Send + Sync>) -> Result<(), TryInitError> {
    subscriber.try_init()
}
