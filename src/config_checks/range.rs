//! The one shape of a numeric key's check: within its bounds, or an error that names the key and
//! says the bounds the way an operator reads them ("at least", "at most", "between").

use std::fmt::Display;
use std::ops::RangeInclusive;

use super::ConfigError;

/// A number a key can hold, with the ends of its type: a bound at one of them is no bound at all,
/// and is left out of the message.
pub(crate) trait KeyNumber: Copy + PartialOrd + Display {
    const LEAST: Self;
    const MOST: Self;
}

macro_rules! key_number {
    ($($t:ty),*) => {$(
        impl KeyNumber for $t {
            const LEAST: Self = <$t>::MIN;
            const MOST: Self = <$t>::MAX;
        }
    )*};
}
key_number!(u32, u64, usize);

/// `value` when it is within `bounds`; otherwise the error for `key`, with `why` (what the bounds
/// protect, or what 0 means) written after the bounds as given, e.g. `" (0 turns it off)"` or
/// `": shorter, no call could succeed"`.
pub(crate) fn range<T: KeyNumber>(
    key: &str,
    value: T,
    bounds: RangeInclusive<T>,
    why: &str,
) -> Result<T, ConfigError> {
    if bounds.contains(&value) {
        return Ok(value);
    }
    let (least, most) = bounds.into_inner();
    let bounds = if most == T::MOST {
        format!("must be at least {least}")
    } else if least == T::LEAST {
        format!("must be at most {most}")
    } else {
        format!("must be between {least} and {most}")
    };
    Err(ConfigError::key(key, format!("{bounds}{why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem<T: KeyNumber + std::fmt::Debug>(
        value: T,
        bounds: RangeInclusive<T>,
        why: &str,
    ) -> String {
        range("section.key", value, bounds, why).unwrap_err().0
    }

    #[test]
    fn a_value_within_its_bounds_passes_as_it_is() {
        assert_eq!(range("k", 5u64, 1..=10, "").unwrap(), 5);
        assert_eq!(range("k", 1u64, 1..=10, "").unwrap(), 1);
        assert_eq!(range("k", 10u64, 1..=10, "").unwrap(), 10);
        assert_eq!(range("k", 0u32, 0..=u32::MAX, "").unwrap(), 0);
    }

    #[test]
    fn the_message_names_the_key_and_only_the_bounds_that_bind() {
        let cases = [
            (problem(0u64, 1..=10, ""), "must be between 1 and 10"),
            (problem(0usize, 1..=usize::MAX, ""), "must be at least 1"),
            (
                problem(11u32, 0..=10, " (0 turns it off)"),
                "must be at most 10 (0 turns it off)",
            ),
            (
                problem(5u64, 10..=u64::MAX, ": shorter, nothing works"),
                "must be at least 10: shorter, nothing works",
            ),
        ];
        for (said, expected) in cases {
            assert_eq!(said, format!("section.key: {expected}"));
        }
    }
}
