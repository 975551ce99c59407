//! Query strings, form bodies and percent-encoding, on `form_urlencoded` and
//! `percent-encoding` (the crates `url` and reqwest use).
//!
//! [`pairs`] and [`value`] decode `application/x-www-form-urlencoded` text (a URL's query, a
//! token request's body): `&`-separated `key=value` pairs, keys and values both decoded, `+`
//! read as a space, a malformed `%` escape kept as it is, invalid UTF-8 replaced. [`escape`]
//! writes a query value with everything but RFC 3986's unreserved characters escaped (so a
//! `+` in a media type is not read back as a space); [`unescape`] decodes `%XX` alone, for
//! URL parts other than the query (the user and password of `https://user:pw@host`).
//!
//! Callers: the registry's handlers, access control and token endpoint, the conformance
//! client, and the fake registry of `client::testing`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Every `key=value` pair of a query string or form body, decoded, in order.
pub fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The first value of `key` in a query string or form body, decoded.
pub fn value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// Percent-encodes a query value: every byte but `A-Z a-z 0-9 - . _ ~`.
pub fn escape(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, NOT_UNRESERVED).to_string()
}

/// Decodes `%XX` escapes (and nothing else: a `+` stays a `+`).
pub fn unescape(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decode() {
        assert_eq!(value("digest=sha256%3Aab", "digest").as_deref(), Some("sha256:ab"));
        assert_eq!(value("a=%2", "a").as_deref(), Some("%2"));
        assert_eq!(value("a=x+y", "a").as_deref(), Some("x y"));
        assert_eq!(value("a=%é%", "a").as_deref(), Some("%é%"));
        assert_eq!(value("a=%FF", "a").as_deref(), Some("\u{FFFD}"));
        assert_eq!(value("n=1&n=2", "n").as_deref(), Some("1"));
        assert_eq!(value("mount&from=a%2Fb", "mount").as_deref(), Some(""));
        assert_eq!(value("%6Dount=x", "mount").as_deref(), Some("x"), "keys are decoded too");
        assert_eq!(value("&&a=1&", "a").as_deref(), Some("1"));
        assert_eq!(value("a=1", "b"), None);
        assert_eq!(value("", "a"), None);
    }

    #[test]
    fn forms_decode() {
        let f = pairs("grant_type=password&username=alice&password=p%40ss+word&scope=repository%3Aa%3Apull");
        assert_eq!(f[2], ("password".to_string(), "p@ss word".to_string()));
        assert_eq!(f[3].1, "repository:a:pull");
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn escapes_all_but_unreserved() {
        assert_eq!(escape("application/vnd.oci.image.config.v1+json"), "application%2Fvnd.oci.image.config.v1%2Bjson");
        assert_eq!(escape("sha256:ab"), "sha256%3Aab");
        assert_eq!(escape("a b~é"), "a%20b~%C3%A9");
        assert_eq!(unescape("p%40ss+w%2"), "p@ss+w%2");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn escaped_values_read_back(v in "\\PC{0,24}") {
            let q = format!("x=1&v={}", escape(&v));
            proptest::prop_assert_eq!(value(&q, "v"), Some(v.clone()));
            proptest::prop_assert_eq!(unescape(&escape(&v)), v);
        }

        #[test]
        fn never_panics(q in "[a-z%=&+0-9A-F\u{e9}]{0,32}") {
            let _ = pairs(&q);
            let _ = unescape(&q);
        }
    }
}
