//! Byte sizes as people type them: `512`, `64m`, `1.5g`, `100b`, `512MB`, `2GiB`, `3 MB`.
//!
//! Docker reads these with go-units' `RAMInBytes`: a decimal number, an optional space, an
//! optional unit `k`, `m`, `g`, `t` or `p` (any case), then an optional `i` and an optional
//! `b`. Every unit is a power of 1024, `MB` included, as in Docker. The value is computed in
//! integers (a fraction is truncated to whole bytes) and refused when it does not fit a
//! `u64`, never wrapped or saturated.
//!
//! Callers: `berth run --memory`, `berth build prune --keep-storage`, and the builder's
//! `RUN --mount=type=tmpfs,size=...`.

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number with an optional unit.
    #[error("invalid size {0:?}: use bytes, or a number with a unit k, m, g, t or p (64m, 1.5g, 512MiB)")]
    Invalid(String),
    /// A valid size larger than 2^64 - 1 bytes.
    #[error("size {0:?} is too large")]
    TooLarge(String),
}

/// Parses a size in bytes (see the module documentation for the forms taken).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let invalid = || SizeError::Invalid(text.to_string());
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(invalid());
    }
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(invalid()),
    };
    let multiplier = 1u128 << (10 * power);
    let too_large = || SizeError::TooLarge(text.to_string());
    let mut bytes: u128 = 0;
    for digit in whole.bytes() {
        bytes = bytes.checked_mul(10).and_then(|b| b.checked_add(u128::from(digit - b'0'))).ok_or_else(too_large)?;
    }
    bytes = bytes.checked_mul(multiplier).ok_or_else(too_large)?;
    // Digits past the 19th change the result by less than a byte (multiplier < 10^16).
    let (mut numerator, mut denominator) = (0u128, 1u128);
    for digit in fraction.bytes().take(19) {
        numerator = numerator * 10 + u128::from(digit - b'0');
        denominator *= 10;
    }
    bytes = bytes.checked_add(numerator * multiplier / denominator).ok_or_else(too_large)?;
    u64::try_from(bytes).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_docker_units() {
        for (text, want) in [
            ("0", 0),
            ("100", 100),
            ("100b", 100),
            ("512k", 512 << 10),
            ("512kb", 512 << 10),
            ("64m", 64 << 20),
            ("64M", 64 << 20),
            ("1G", 1 << 30),
            ("2t", 2 << 40),
            ("1p", 1 << 50),
            ("10GB", 10 << 30),
            ("2GiB", 2 << 30),
            ("512mb", 512 << 20),
            ("3 MB", 3 << 20),
            (" 7k ", 7 << 10),
            ("1.5g", 3 << 29),
            ("1.5k", 1536),
            ("0.5", 0),
            (".5k", 512),
            ("1.k", 1024),
            ("1ib", 1),
            ("18446744073709551615", u64::MAX),
            ("16777215.999999999999999999999999t", u64::MAX),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn malformed_sizes_are_refused() {
        for text in ["", "k", "lots", "1x", "1kk", "-1", "1.2.3", ".", "1e3", "nan", "inf", "1 k b", "1bi"] {
            assert_eq!(parse_size(text), Err(SizeError::Invalid(text.into())), "{text}");
        }
    }

    #[test]
    fn sizes_past_u64_are_refused_not_wrapped() {
        for text in [
            "18446744073709551616",
            "16777216t",
            "99999999999999999g",
            "99999999999999999999999999999999999999999999999999",
            "16384p",
        ] {
            assert_eq!(parse_size(text), Err(SizeError::TooLarge(text.into())), "{text}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics(text in "\\PC{0,24}") {
            let _ = parse_size(&text);
        }

        #[test]
        fn whole_numbers_scale_exactly(n in 0u64..1 << 40, unit in 0usize..4) {
            let suffix = ["", "k", "m", "g"][unit];
            let want = u128::from(n) << (10 * unit);
            let got = parse_size(&format!("{n}{suffix}"));
            match u64::try_from(want) {
                Ok(w) => proptest::prop_assert_eq!(got, Ok(w)),
                Err(_) => proptest::prop_assert!(matches!(got, Err(SizeError::TooLarge(_)))),
            }
        }
    }
}
