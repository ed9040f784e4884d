//! How long a fetched key set is trusted, and how soon a failed fetch is tried again.
//!
//! The provider says how long its answer stays fresh (`Cache-Control: max-age`, less the `Age` a
//! cache in front of it has already spent). That is honoured within bounds: at least a minute, so
//! a provider that says `no-cache` (or `max-age=15`, as Auth0 does) is not asked on every few
//! requests by every replica; at most a day, so a key the provider withdrew stops working the
//! same day. Without a usable `max-age` the set is kept for ten minutes. A token whose `kid` is
//! not in the set triggers a refetch sooner (see `refresh`), so a short freshness is not what
//! picks up a new key.

use std::time::Duration;

/// The shortest time a key set is kept.
pub(super) const MIN_FRESHNESS: Duration = Duration::from_secs(60);
/// The longest time a key set is kept without asking the provider again.
pub(super) const MAX_FRESHNESS: Duration = Duration::from_secs(24 * 3600);
/// How long a key set is kept when its answer has no usable `max-age`.
pub(super) const DEFAULT_FRESHNESS: Duration = Duration::from_secs(10 * 60);

/// The first retry after a failed fetch; each further failure doubles it, up to
/// [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// A provider that stays down is asked this often: soon enough that an instance recovers within
/// seconds of it coming back, rarely enough to cost it nothing.
pub(super) const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// How long a key set fetched with these `Cache-Control` and `Age` headers is kept.
pub(super) fn freshness(cache_control: Option<&str>, age: Option<&str>) -> Duration {
    let Some(max_age) = cache_control.and_then(max_age) else {
        return DEFAULT_FRESHNESS;
    };
    // RFC 9111 §4.2.3: a cache in front of the provider may have held the answer for `Age`
    // seconds already. An unreadable `Age` is taken as none.
    let age = age
        .and_then(|age| age.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_secs(max_age.saturating_sub(age)).clamp(MIN_FRESHNESS, MAX_FRESHNESS)
}

/// `max-age` in seconds, or 0 for `no-cache` and `no-store` (kept for the minimum). `None` when
/// there is no usable `max-age`, including when two of them disagree.
fn max_age(cache_control: &str) -> Option<u64> {
    let mut found: Option<u64> = None;
    let mut uncacheable = false;
    for directive in cache_control.split(',') {
        let (name, value) = match directive.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            uncacheable = true;
        } else if name.eq_ignore_ascii_case("max-age") {
            // RFC 9111 §1.2.2: delta-seconds; a quoted value is tolerated, as senders write it.
            let seconds = value?.trim_matches('"');
            if seconds.is_empty() || !seconds.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Beyond u64 it is "a very long time": the clamp brings it to a day anyway.
            let seconds = seconds.parse::<u64>().unwrap_or(u64::MAX);
            if found.is_some_and(|earlier| earlier != seconds) {
                return None;
            }
            found = Some(seconds);
        }
    }
    if uncacheable { Some(0) } else { found }
}

/// The wait before the next attempt after `failures` failed fetches in a row (1 or more): 1 s,
/// 2 s, 4 s, 8 s, then every 10 s.
pub(super) fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY_DELAY
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn max_age_is_honoured_within_a_minute_and_a_day() {
        assert_eq!(freshness(Some("max-age=3600"), None), secs(3600));
        assert_eq!(
            freshness(Some("public, max-age=600, must-revalidate"), None),
            secs(600)
        );
        assert_eq!(freshness(Some("Max-Age = 120"), None), secs(120));
        assert_eq!(freshness(Some("max-age=\"900\""), None), secs(900));
        // Auth0 says 15 s; Azure says a day and more.
        assert_eq!(
            freshness(Some("public, max-age=15, stale-while-revalidate=15"), None),
            MIN_FRESHNESS
        );
        assert_eq!(freshness(Some("max-age=0"), None), MIN_FRESHNESS);
        assert_eq!(freshness(Some("max-age=604800"), None), MAX_FRESHNESS);
        assert_eq!(
            freshness(Some("max-age=99999999999999999999999"), None),
            MAX_FRESHNESS
        );
    }

    #[test]
    fn no_cache_and_no_store_keep_the_set_for_the_minimum() {
        assert_eq!(freshness(Some("no-cache"), None), MIN_FRESHNESS);
        assert_eq!(
            freshness(Some("no-store, max-age=3600"), None),
            MIN_FRESHNESS
        );
        assert_eq!(freshness(Some("private, NO-CACHE"), None), MIN_FRESHNESS);
    }

    #[test]
    fn a_missing_or_unusable_max_age_keeps_the_set_ten_minutes() {
        for header in [
            None,
            Some(""),
            Some("public"),
            Some("max-age"),
            Some("max-age="),
            Some("max-age=-5"),
            Some("max-age=1e3"),
            Some("max-age=ten"),
            Some("max-age=60, max-age=3600"),
        ] {
            assert_eq!(freshness(header, None), DEFAULT_FRESHNESS, "{header:?}");
        }
        assert_eq!(freshness(Some("max-age=600, max-age=600"), None), secs(600));
    }

    #[test]
    fn the_age_a_cache_has_spent_is_taken_off() {
        assert_eq!(freshness(Some("max-age=3600"), Some("600")), secs(3000));
        assert_eq!(freshness(Some("max-age=3600"), Some("3599")), MIN_FRESHNESS);
        assert_eq!(
            freshness(Some("max-age=3600"), Some("99999")),
            MIN_FRESHNESS
        );
        assert_eq!(freshness(Some("max-age=3600"), Some("soon")), secs(3600));
        assert_eq!(freshness(None, Some("600")), DEFAULT_FRESHNESS);
    }

    #[test]
    fn retries_back_off_from_one_second_to_ten() {
        let delays: Vec<u64> = (1..=7).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(0), secs(1));
    }
}
