//! Durations as Go writes them: `30s`, `1h30m`, `1.5h`, `500ms`, `0`.
//!
//! [`parse_duration`] takes what Go's `time.ParseDuration` takes (less the sign: every
//! caller wants a length of time), the form Docker and BuildKit read for `HEALTHCHECK
//! --interval` and `docker builder prune --filter until=`: one or more decimal numbers, each
//! with a unit `ns`, `us` (or `µs`), `ms`, `s`, `m` or `h`; a bare `0` is zero.
//! [`parse_duration_days`] also takes `d` (24 hours) and `w` (7 days), for long lifetimes
//! such as a robot account's. The value is computed in whole nanoseconds (a fraction is
//! truncated), and one that does not fit a [`Duration`] is refused, never wrapped.
//!
//! [`format_duration`] prints one as Go does, for `berth compose config`.
//!
//! Callers: the Dockerfile parser (`HEALTHCHECK`), `berth build prune --filter`,
//! `berth robot create --expires`, the compose model's normalizer.

use std::time::Duration;

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a sequence of numbers with units.
    #[error("invalid duration {text:?}: use numbers with units {units} (such as 90s or 1h30m)")]
    Invalid {
        /// What was given.
        text: String,
        /// The units taken.
        units: &'static str,
    },
    /// A valid duration too long to hold.
    #[error("duration {0:?} is too long")]
    TooLong(String),
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a Go duration: `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    parse(text, false)
}

/// Parses a Go duration that may also use `d` (days) and `w` (weeks): `30d`, `2w`, `1d12h`.
pub fn parse_duration_days(text: &str) -> Result<Duration, DurationError> {
    parse(text, true)
}

/// Prints a duration as Go's `Duration.String` does (`1m0s`, `1m30s`, `1.5s`, `500ms`,
/// `0s`): how `docker compose config` prints a compose file's durations.
pub fn format_duration(duration: Duration) -> String {
    let n = duration.as_nanos();
    let fraction = |value: u128, unit: u128| {
        let (whole, rest) = (value / unit, value % unit);
        if rest == 0 {
            whole.to_string()
        } else {
            let digits = unit.to_string().len() - 1;
            format!("{whole}.{}", format!("{rest:0digits$}").trim_end_matches('0'))
        }
    };
    match n {
        0 => "0s".into(),
        1..1_000 => format!("{n}ns"),
        1_000..1_000_000 => format!("{}µs", fraction(n, 1_000)),
        1_000_000..1_000_000_000 => format!("{}ms", fraction(n, 1_000_000)),
        _ => {
            let (hours, minutes) = (n / 3_600_000_000_000, (n / 60_000_000_000) % 60);
            let seconds = fraction(n % 60_000_000_000, 1_000_000_000);
            match (hours, minutes) {
                (0, 0) => format!("{seconds}s"),
                (0, m) => format!("{m}m{seconds}s"),
                (h, m) => format!("{h}h{m}m{seconds}s"),
            }
        }
    }
}

fn unit_nanos(unit: &str, days: bool) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        "d" if days => 86_400 * NANOS_PER_SEC,
        "w" if days => 7 * 86_400 * NANOS_PER_SEC,
        _ => return None,
    })
}

fn parse(text: &str, days: bool) -> Result<Duration, DurationError> {
    let units = if days { "ns, us, ms, s, m, h, d or w" } else { "ns, us, ms, s, m or h" };
    let invalid = || DurationError::Invalid { text: text.to_string(), units };
    let too_long = || DurationError::TooLong(text.to_string());
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(invalid());
        }
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = unit_nanos(unit, days).ok_or_else(invalid)?;
        let mut value: u128 = 0;
        for digit in whole.bytes() {
            value = value.checked_mul(10).and_then(|v| v.checked_add(u128::from(digit - b'0'))).ok_or_else(too_long)?;
        }
        value = value.checked_mul(scale).ok_or_else(too_long)?;
        // Past 19 digits a fraction adds less than a nanosecond (scale < 10^19).
        let (mut numerator, mut denominator) = (0u128, 1u128);
        for digit in fraction.bytes().take(19) {
            numerator = numerator * 10 + u128::from(digit - b'0');
            denominator *= 10;
        }
        value = value.checked_add(numerator * scale / denominator).ok_or_else(too_long)?;
        total = total.checked_add(value).ok_or_else(too_long)?;
        rest = tail;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| too_long())?;
    // The remainder is below 10^9, so it fits.
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (text, want) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("1h30m", Duration::from_secs(5_400)),
            ("1h2m3s", Duration::from_secs(3_723)),
            ("1.5h", Duration::from_secs(5_400)),
            ("1.5s", Duration::from_millis(1_500)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("500ms", Duration::from_millis(500)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("90m", Duration::from_secs(5_400)),
            ("1s1s", Duration::from_secs(2)),
            ("0.3333333333333333333333333s", Duration::from_nanos(333_333_333)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        for (input, want) in [
            ("1m", "1m0s"),
            ("90s", "1m30s"),
            ("10s", "10s"),
            ("1h", "1h0m0s"),
            ("1.5s", "1.5s"),
            ("500ms", "500ms"),
            ("0", "0s"),
            ("2h3m4.25s", "2h3m4.25s"),
            ("1500us", "1.5ms"),
            ("7ns", "7ns"),
        ] {
            assert_eq!(format_duration(parse_duration(input).unwrap()), want, "{input}");
        }
    }

    #[test]
    fn malformed_durations_are_refused() {
        for text in ["", "10", "s", "1x", "-1s", "+1s", "1.2.3s", ".s", "1 s", "1d", "2w", "1hh", "1e3s"] {
            assert!(matches!(parse_duration(text), Err(DurationError::Invalid { .. })), "{text}");
        }
    }

    #[test]
    fn days_and_weeks_only_where_asked() {
        assert_eq!(parse_duration_days("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration_days("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration_days("1d12h"), Ok(Duration::from_secs(36 * 3_600)));
        assert_eq!(parse_duration_days("45s"), Ok(Duration::from_secs(45)));
        assert!(parse_duration_days("5y").is_err());
        assert!(parse_duration_days("30").is_err());
    }

    #[test]
    fn overlong_durations_are_refused_not_wrapped() {
        assert_eq!(parse_duration("18446744073709551615s"), Ok(Duration::from_secs(u64::MAX)));
        for text in [
            "18446744073709551616s",
            "9999999999999999999999999999999h",
            "99999999999999999999999999999999999999999999h",
            "18446744073709551615s1s",
        ] {
            assert_eq!(parse_duration(text), Err(DurationError::TooLong(text.into())), "{text}");
        }
        assert!(matches!(parse_duration_days("99999999999999999999w"), Err(DurationError::TooLong(_))));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics(text in "\\PC{0,24}") {
            let _ = parse_duration(&text);
            let _ = parse_duration_days(&text);
        }

        #[test]
        fn hours_minutes_seconds_add_up(h in 0u64..10_000, m in 0u64..60, s in 0u64..60) {
            let got = parse_duration(&format!("{h}h{m}m{s}s"));
            proptest::prop_assert_eq!(got, Ok(Duration::from_secs(h * 3_600 + m * 60 + s)));
        }
    }
}
