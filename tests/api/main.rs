mod checkout;
mod helpers;
