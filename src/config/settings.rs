//! The file's top level: one section per capability, each the capability's own serde type with its
//! documented defaults (`config.toml.example` is their reference). Unknown sections and keys are
//! refused, here and in every section.

use serde::Deserialize;

use crate::browser::BrowserSettings;
use crate::checkout::CheckoutSettings;
use crate::client_ip::ClientIpSettings;
use crate::http::ServerSettings;
use crate::proof::ProofSettings;
use crate::rate_limit::RateLimitSettings;
use crate::session::{ForwardSettings, JwksSettings, SessionSettings};
use crate::status::StatusSettings;
use crate::telemetry::{LogSettings, MetricsSettings, TelemetrySettings};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct Settings {
    pub server: ServerSettings,
    pub proof: ProofSettings,
    pub browser: BrowserSettings,
    pub session: SessionSettings,
    pub client_ip: ClientIpSettings,
    pub checkout: CheckoutSettings,
    pub rate_limit: RateLimitSettings,
    pub status: StatusSettings,
    pub metrics: MetricsSettings,
    pub telemetry: TelemetrySettings,
    pub log: LogSettings,
}

impl Settings {
    /// Keys whose environment value is a comma-separated list, as each section names them.
    pub(super) const LIST_KEYS: &[&[&str]] = &[
        BrowserSettings::LIST_KEYS,
        ClientIpSettings::LIST_KEYS,
        ForwardSettings::LIST_KEYS,
        CheckoutSettings::LIST_KEYS,
        JwksSettings::LIST_KEYS,
    ];
}
