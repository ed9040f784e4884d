mod browser;
mod browser_rules;
mod checkout;
mod client_ip;
mod connections;
mod errors;
mod helpers;
mod probes;
mod rate_limit;
mod retries;
mod sandbox_values;
mod sessions;
#[path = "../support/mod.rs"]
mod support;
