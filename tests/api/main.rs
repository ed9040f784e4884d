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
mod redis_backend;
#[path = "../support/redis.rs"]
mod redis_support;
mod retries;
mod sandbox_values;
mod sessions;
