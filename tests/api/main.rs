mod checkout;
mod helpers;
mod rate_limit;
