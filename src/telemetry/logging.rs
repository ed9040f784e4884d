//! The subscriber: JSON lines or human-readable, `RUST_LOG` winning over `log.level`, installed once
//! per process, writing to standard output through a thread of its own.
//!
//! A worker formats its line and hands it over ([`super::stdout_writer`]); it never waits for
//! standard output. When stdout does not keep up (a blocked pipe, a slow log shipper) the lines
//! beyond a bounded buffer are dropped and counted: `proof_bff_log_lines_dropped_total`, and a
//! warning once stdout moves again ([`report_dropped_lines`]). Requests are never slowed down by
//! their log lines.

use crate::config_checks::named_setting;
use std::sync::OnceLock;
use std::time::Duration;

use super::json_line::JsonLine;
use super::span_fields::AppendedJsonFields;
use super::stdout_writer::{StdoutWriter, StdoutWriterGuard};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
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

named_setting! {
    /// `log.format`: JSON lines for log pipelines, or compact text for people.
    LogFormat { Json = "json", Pretty = "pretty" }
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
    let registry = Registry::default().with(filter_layer(filter));
    match log.format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(AppendedJsonFields)
                    .event_format(JsonLine)
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

/// The filter: a `LevelFilter` when it is one level (`info`, the default), else an `EnvFilter`.
/// Both let the same events and spans through; `EnvFilter` also keeps a table of spans, for
/// directives on span names and fields, that it consults at every enter, exit, record and close of
/// every span (several times a request) even when no directive needs it.
fn filter_layer(filter: &str) -> Box<dyn Layer<Registry> + Send + Sync> {
    let filter = filter.trim();
    match filter.parse::<LevelFilter>() {
        // "" parses as ERROR; left to EnvFilter, like any other case it reads its own way.
        Ok(level) if !filter.is_empty() => Box::new(level),
        _ => Box::new(EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"))),
    }
}

/// How often dropped lines are reported, at most.
const DROPPED_LINES_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The process's writer, once [`init`] has installed it: for its count of dropped lines.
static STDOUT: OnceLock<StdoutWriter> = OnceLock::new();

/// The writer's thread. Dropping it writes out the lines still buffered (for up to a second), so
/// it is held until the process ends.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: StdoutWriterGuard,
}

/// Installs the subscriber for the process, writing to standard output through its own thread.
pub fn init(log: &LogConfig) -> Result<LogGuard, InitError> {
    use std::io::IsTerminal;
    // Pretty logs are coloured only on a terminal, and not when `NO_COLOR` is set (no-color.org).
    let ansi = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let (writer, guard) = StdoutWriter::start().map_err(InitError::Thread)?;
    install(build_subscriber(
        log,
        &filter_from_env(log),
        writer.clone(),
        ansi,
    ))
    .map_err(InitError::Subscriber)?;
    let _ = STDOUT.set(writer);
    Ok(LogGuard { _writer: guard })
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("cannot start the log writer thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Subscriber(TryInitError),
}

/// Log lines dropped so far because standard output did not keep up; 0 when the process's writer
/// is not installed (as in tests, which install their own).
pub fn dropped_log_lines() -> u64 {
    STDOUT.get().map_or(0, StdoutWriter::dropped_lines)
}

/// Warns, at most every ten seconds, when log lines were dropped since the last warning. The
/// warning goes to the same stdout, so it is written once stdout moves again.
pub async fn report_dropped_lines() {
    let mut reported = dropped_log_lines();
    let mut interval = tokio::time::interval(DROPPED_LINES_REPORT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let total = dropped_log_lines();
        if total > reported {
            tracing::warn!(
                dropped = total - reported,
                dropped_total = total,
                "log lines dropped: standard output did not keep up"
            );
            reported = total;
        }
    }
}

/// Makes `subscriber` the process's global default, once per process, and routes the `log`
/// records of dependencies (actix-web, awc, rustls) into it, so they pass the same filter and
/// reach the same writer as our own events instead of being dropped.
pub fn install(subscriber: Box<dyn tracing::Subscriber + Send + Sync>) -> Result<(), TryInitError> {
    subscriber.try_init()
}

#[cfg(test)]
mod tests {
    use super::super::captured_lines::CapturedLines;
    use super::*;

    /// The messages that pass the subscriber `build` makes around a writer, of one event per
    /// level from this module and one `info` and one `debug` from another target.
    fn messages_through(
        build: impl FnOnce(CapturedLines) -> Box<dyn tracing::Subscriber + Send + Sync>,
    ) -> Vec<String> {
        let out = CapturedLines::default();
        let subscriber = build(out.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!("trace");
            tracing::debug!("debug");
            tracing::info!("info");
            tracing::warn!("warn");
            tracing::error!("error");
            tracing::info!(target: "other", "other info");
            tracing::debug!(target: "other", "other debug");
        });
        out.text()
            .lines()
            .map(|line| {
                let line: serde_json::Value = serde_json::from_str(line).unwrap();
                line["fields"]["message"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// What passes the service's subscriber with `filter`.
    fn passed(filter: &str) -> Vec<String> {
        let log = LogConfig {
            format: LogFormat::Json,
            level: "unused".to_owned(),
        };
        messages_through(|out| subscriber_with_filter(&log, filter, move || out.clone()))
    }

    /// What passes an `EnvFilter` made of `filter` (or of `info`, when it is no filter).
    fn passed_env_filter(filter: &str) -> Vec<String> {
        let filter = EnvFilter::try_new(filter.trim()).unwrap_or_else(|_| EnvFilter::new("info"));
        messages_through(|out| {
            Box::new(
                Registry::default().with(filter).with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(move || out.clone()),
                ),
            )
        })
    }

    #[test]
    fn a_level_alone_and_directives_filter_as_env_filter_does() {
        assert_eq!(passed("info"), ["info", "warn", "error", "other info"]);
        assert_eq!(passed(" WARN "), ["warn", "error"]);
        assert_eq!(passed("off"), Vec::<String>::new());
        assert_eq!(
            passed("info,other=debug"),
            ["info", "warn", "error", "other info", "other debug"]
        );
        assert_eq!(passed("error,proof_bff=trace").len(), 5);
        // Not a filter at all: `info`.
        assert_eq!(passed("=?"), ["info", "warn", "error", "other info"]);
        for filter in [
            "info",
            " WARN ",
            "off",
            "3",
            "info,other=debug",
            "error,proof_bff=trace",
            "=?",
        ] {
            assert_eq!(passed(filter), passed_env_filter(filter), "{filter:?}");
        }
    }
}
