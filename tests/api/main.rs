mod browser;
mod browser_rules;
#[path = "../support/browser.rs"]
mod browser_support;
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
