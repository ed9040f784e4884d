mod checkout;
mod client_ip;
mod helpers;
mod rate_limit;
mod retries;
