//! ISO 8601 UTC timestamps and the fiat amount, written by hand to keep the stand-in small.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 for a clock set before it).
pub(super) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, whole seconds, UTC.
pub(super) fn iso8601_utc(time: SystemTime) -> String {
    let seconds = unix_seconds(time);
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The fixed crypto-to-fiat rate of the stand-in, in hundredths: 1 unit of crypto = 0.92 fiat.
const RATE_HUNDREDTHS: u128 = 92;
const MAX_FRACTION_DIGITS: usize = 18;

/// `amount` × 0.92, rounded half up to 2 decimals, in integer arithmetic. `amount` is a validated
/// decimal string (at most 18 digits on each side of the dot); anything else gives `"0.00"`.
pub(super) fn fiat_amount(amount: &str) -> String {
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    let digits_ok =
        |part: &str| part.len() <= MAX_FRACTION_DIGITS && part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_ok(whole) || !digits_ok(fraction) {
        return "0.00".to_owned();
    }
    let scale = 10u128.pow(MAX_FRACTION_DIGITS as u32);
    let whole: u128 = whole.parse().unwrap_or(0);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        let padded = format!("{fraction:0<width$}", width = MAX_FRACTION_DIGITS);
        padded.parse().unwrap_or(0)
    };
    // In units of 10^-20: (whole·10^18 + fraction) · 92.
    let scaled = whole
        .saturating_mul(scale)
        .saturating_add(fraction)
        .saturating_mul(RATE_HUNDREDTHS);
    let cents = scaled.saturating_add(scale / 2) / scale;
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn timestamps_are_iso_8601_utc() {
        assert_eq!(iso8601_utc(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(at(1_795_608_000)), "2026-11-25T12:00:00Z");
        assert_eq!(iso8601_utc(at(1_709_251_199)), "2024-02-29T23:59:59Z");
        assert_eq!(iso8601_utc(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(at(4_102_444_800)), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn fiat_amounts_are_the_crypto_amount_at_0_92_rounded_to_cents() {
        assert_eq!(fiat_amount("100"), "92.00");
        assert_eq!(fiat_amount("99.50"), "91.54");
        assert_eq!(fiat_amount("1.02"), "0.94");
        assert_eq!(fiat_amount("0.000001"), "0.00");
        assert_eq!(fiat_amount("0.01"), "0.01");
        assert_eq!(
            fiat_amount("999999999999999999.999999999999999999"),
            "920000000000000000.00"
        );
        assert_eq!(fiat_amount("garbage"), "0.00");
    }
}
