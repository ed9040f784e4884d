//! Amounts: positive decimal strings kept exactly as the user sent them, compared by value.

use std::cmp::Ordering;
use std::fmt;

/// Digits allowed on each side of the decimal point of an amount: enough for
/// any realistic purchase (and for 18-decimal tokens), small enough that the
/// value fits exactly in any upstream decimal type.
const MAX_AMOUNT_DIGITS: usize = 18;

pub(super) const AMOUNT_FORMAT: &str = r#"must be a positive decimal string like "100" or "99.50""#;
pub(super) const AMOUNT_DIGITS: &str =
    "must have at most 18 digits before and 18 digits after the decimal point";
pub(super) const AMOUNT_ZERO: &str = "must be greater than zero";

/// A positive decimal amount kept as the exact string the user sent.
///
/// The string is forwarded verbatim, so nothing is lost to rounding or
/// reformatting; comparisons are done on the decimal value (see
/// [`Amount::exceeds`]). Equality (`==`) compares the strings, so `"1.0"` and
/// `"1"` are different `Amount`s with the same value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount(pub(super) String);

impl Amount {
    /// Accepts ASCII digits with at most one dot: at least one and at most 18
    /// digits before the dot and, when there is a dot, at least one and at
    /// most 18 after it; no sign, exponent or whitespace; value above zero.
    /// Leading zeros (`"007"`) and trailing zeros (`"1.50"`) are accepted and
    /// count towards the 18 digits.
    ///
    /// The error is a message without the field name (e.g. `must be a
    /// positive decimal string ...`) so callers can prefix the name of the
    /// field or setting the value came from.
    pub fn parse(s: &str) -> Result<Self, String> {
        check_amount(s).map_err(str::to_owned)?;
        Ok(Self(s.to_owned()))
    }

    /// The amount exactly as the user sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this amount is greater than `max`, compared exactly as
    /// decimals: floating point would let values just above the limit
    /// through (or refuse values at it).
    pub fn exceeds(&self, max: &Amount) -> bool {
        self.cmp_value(max) == Ordering::Greater
    }

    /// Integer part without leading zeros and fraction without trailing
    /// zeros: two amounts are equal in value exactly when these are equal.
    fn normalised(&self) -> (&str, &str) {
        let (int, frac) = self.0.split_once('.').unwrap_or((&self.0, ""));
        (int.trim_start_matches('0'), frac.trim_end_matches('0'))
    }

    /// Compares by value. With normalised parts, a longer integer part is a
    /// larger number, equal lengths compare digit by digit, and fractions
    /// compare digit by digit (a shorter fraction that is a prefix of a
    /// longer one is smaller, as the longer one ends in a non-zero digit).
    fn cmp_value(&self, other: &Amount) -> Ordering {
        let (a_int, a_frac) = self.normalised();
        let (b_int, b_frac) = other.normalised();
        a_int
            .len()
            .cmp(&b_int.len())
            .then_with(|| a_int.cmp(b_int))
            .then_with(|| a_frac.cmp(b_frac))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The amount grammar, shared by requests and configuration. Returns a
/// static message so the request path allocates nothing for it.
pub(super) fn check_amount(s: &str) -> Result<(), &'static str> {
    let (int, frac) = match s.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (s, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    // A second dot lands in `frac` and fails the digit check.
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(AMOUNT_FORMAT);
    }
    if int.len() > MAX_AMOUNT_DIGITS || frac.map_or(0, str::len) > MAX_AMOUNT_DIGITS {
        return Err(AMOUNT_DIGITS);
    }
    if !s.bytes().any(|b| matches!(b, b'1'..=b'9')) {
        return Err(AMOUNT_ZERO);
    }
    Ok(())
}
