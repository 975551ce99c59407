//! Dates as image configs, image history and tokens carry them: RFC 3339 (`created`,
//! `issued_at`), read and written here with the `time` crate, so that no crate parses or
//! formats dates by hand. The builder stamps configs with [`rfc3339`], the registry its
//! tokens, `berth robot` its listing; `berth images` reads `created` with
//! [`parse_rfc3339`], which never panics, whatever an image's config says.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The first second RFC 3339 can write, `0000-01-01T00:00:00Z`, in Unix seconds.
const FIRST: i64 = -62_167_219_200;
/// The last one, `9999-12-31T23:59:59Z`.
const LAST: i64 = 253_402_300_799;

/// Formats Unix seconds as RFC 3339 in UTC (`1970-01-01T00:00:00Z`). Seconds before year 0
/// or after year 9999, which RFC 3339 cannot write, are taken as its first or last second.
pub fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs.clamp(FIRST, LAST))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:00.123Z`, `…+02:00`) to Unix seconds
/// (fractions dropped); `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_257_894_000), "2009-11-10T23:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 86_399), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MIN), "0000-01-01T00:00:00Z");
    }

    #[test]
    fn parses() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-01-02T03:04:05Z"), Some(1_704_164_645));
        assert_eq!(parse_rfc3339("2024-01-02T03:04:05.123456789Z"), Some(1_704_164_645));
        assert_eq!(parse_rfc3339("2024-01-02T05:04:05+02:00"), Some(1_704_164_645));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "2024-01-02",
            "2024-13-02T03:04:05Z",
            "2023-02-29T00:00:00Z",
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05+0200",
            // A multi-byte character where the seconds end (issue 11.7).
            "2024-01-02T03:04:0é+02:00",
            "2024-01-02T03:04:05é",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(secs in FIRST..=LAST) {
            prop_assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs));
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}", near in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:.{0,12}") {
            let _ = parse_rfc3339(&s);
            let _ = parse_rfc3339(&near);
        }
    }
}
