//! `[telemetry]`, `[metrics]` and `[log]`: where traces go and how many, where `GET /metrics` is
//! served, and what is logged, checked and built into the values the application starts them with.

use serde::Deserialize;

use super::logging::{LogConfig, LogFormat};
use super::traces::TracesConfig;
use crate::config_checks::{ConfigError, ListenAddress, UrlRules, outbound_url};
use crate::tls_roots::TlsRoots;

/// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct TelemetrySettings {
    /// The collector's base URL (`/v1/traces` is added); empty: traces off.
    pub otlp_endpoint: String,
    pub sample_ratio: f64,
    /// A PEM file of the CA that signed the collector's certificate, besides the public roots.
    pub otlp_ca_file: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            sample_ratio: 1.0,
            otlp_ca_file: String::new(),
        }
    }
}

/// `[metrics]`: Prometheus `GET /metrics` on a port of its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct MetricsSettings {
    pub listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

impl TelemetrySettings {
    /// The collector's traces URL when `otlp_endpoint` is set, and the sample ratio and CA file
    /// (checked either way, so settings prepared before the endpoint are known good).
    pub fn build(&self) -> Result<Option<TracesConfig>, ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::key(
                "telemetry.sample_ratio",
                "must be between 0.0 (no new trace sampled) and 1.0 (every one)",
            ));
        }
        let tls_roots = TlsRoots::with_ca_file(&self.otlp_ca_file)
            .map_err(|problem| ConfigError::key("telemetry.otlp_ca_file", problem))?;
        let endpoint = self.otlp_endpoint.trim();
        if endpoint.is_empty() {
            return Ok(None);
        }
        let traces_url = otlp_traces_url(endpoint)
            .map_err(|e| ConfigError::key("telemetry.otlp_endpoint", e))?;
        Ok(Some(TracesConfig {
            traces_url,
            sample_ratio: self.sample_ratio,
            tls_roots,
        }))
    }
}

impl MetricsSettings {
    /// A listen address of its own, so `/metrics` is never on the browser-facing port: never
    /// `server_listen`, the value of the key `server_key`.
    pub fn build(
        &self,
        server_listen: &str,
        server_key: &str,
    ) -> Result<Option<ListenAddress>, ConfigError> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        let address =
            ListenAddress::parse(listen).map_err(|e| ConfigError::key("metrics.listen", e))?;
        // Port 0 (a free port chosen at start) is never the same as another.
        if address.port() != 0 && listen == server_listen.trim() {
            return Err(ConfigError::key(
                "metrics.listen",
                format!("must differ from {server_key}: metrics are never served to browsers"),
            ));
        }
        Ok(Some(address))
    }
}

impl LogSettings {
    pub fn build(self) -> Result<LogConfig, ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            return Err(ConfigError::key(
                "log.level",
                format!("{:?} is not a level or filter (e.g. \"info\")", self.level),
            ));
        }
        Ok(LogConfig {
            format: self.format,
            level: self.level,
        })
    }
}

/// The collector's base URL (`http://127.0.0.1:4318`, or with a path, as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// takes it) with `/v1/traces` added; a URL that already ends in `/v1/traces` is taken as it is.
/// The value is never echoed: a typo next to a token would otherwise reach the logs.
fn otlp_traces_url(endpoint: &str) -> Result<url::Url, String> {
    let mut url = outbound_url(
        endpoint,
        &UrlRules {
            not_http: "must be an http:// or https:// URL (e.g. \"http://127.0.0.1:4318\")",
            credentials: "must not carry a user name or password: give the collector's credentials \
                          as OTEL_EXPORTER_OTLP_HEADERS",
            query_allowed: false,
            // Spans carry no secret, and a collector in the same pod or network is usual.
            https_unless_loopback: None,
        },
    )?;
    if !url.path().ends_with("/v1/traces") {
        let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_is_the_endpoint_with_v1_traces() {
        for (endpoint, traces_url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            (
                "https://otlp.vendor.example/otlp/",
                "https://otlp.vendor.example/otlp/v1/traces",
            ),
            (
                "https://otlp.vendor.example/v1/traces",
                "https://otlp.vendor.example/v1/traces",
            ),
        ] {
            assert_eq!(
                otlp_traces_url(endpoint).unwrap().as_str(),
                traces_url,
                "{endpoint}"
            );
        }
    }

    #[test]
    fn a_sample_ratio_outside_0_to_1_is_refused_even_with_traces_off() {
        for ratio in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
            let settings = TelemetrySettings {
                otlp_endpoint: String::new(),
                sample_ratio: ratio,
                otlp_ca_file: String::new(),
            };
            assert!(settings.build().is_err(), "{ratio}");
        }
        let off = TelemetrySettings::default();
        assert!(off.build().unwrap().is_none());
    }
}
