//! Entry points for fuzzing the registry's parsers of untrusted input that are not public
//! API: the `/v2/` route, `Range` and `Content-Range` headers, bearer tokens and the keys
//! that verify them.
//!
//! The `cargo fuzz` targets in `fuzz/` call these functions; the property tests below run
//! them on arbitrary input in the normal test command ("never panics", and the answers stay
//! within their input). Not part of the registry's API: hidden from its documentation.

use std::ops::Range;
use std::sync::OnceLock;

use crate::api::blobs::{parse_range, RangeRequest};
use crate::api::uploads::parse_content_range;
use crate::auth::jwt::{decode_verified, Claims, SigningKey, VerifyKey};
use crate::route::Route;

/// Parses the part of a path after `/v2/`; returns the repository name part, empty for
/// `_catalog`, `None` when no route matches.
pub fn route(path: &str) -> Option<String> {
    Some(match Route::parse(path)? {
        Route::Base | Route::Catalog => String::new(),
        Route::Tags(name) | Route::UploadStart(name) => name,
        Route::Manifest(name, _) | Route::Blob(name, _) | Route::Upload(name, _) | Route::Referrers(name, _) => name,
    })
}

/// Reads a `Range` header against an object of `size` bytes: the part to send, or `None`
/// for the whole object or a 416.
pub fn range(value: &str, size: u64) -> Option<Range<u64>> {
    match parse_range(Some(value), size) {
        RangeRequest::Part(start, end) => Some(start..end),
        RangeRequest::Full | RangeRequest::Unsatisfiable => None,
    }
}

/// Reads a `Content-Range` header of a chunk upload: the chunk's start offset.
pub fn content_range(value: &str, content_length: Option<&str>) -> Option<u64> {
    parse_content_range(value, content_length)
}

/// A key made once per process, for [`token`].
fn keys() -> &'static [VerifyKey] {
    static KEYS: OnceLock<Vec<VerifyKey>> = OnceLock::new();
    KEYS.get_or_init(|| SigningKey::generate().map(|(k, _)| vec![k.verify_key()]).unwrap_or_default())
}

/// Decodes and verifies a bearer token against a key of this process; true when it verifies
/// (which arbitrary input never should).
pub fn token(token: &str) -> bool {
    decode_verified(token, keys()).is_ok()
}

/// Reads a token's claim set, as [`decode_verified`] does once the signature checks out.
pub fn claims(json: &[u8]) -> Option<Claims> {
    serde_json::from_slice(json).ok()
}

/// Reads verification keys as `[auth.token]` configuration gives them: a PEM file, a JWKS
/// document, a DER `SubjectPublicKeyInfo`. Returns how many keys were read.
pub fn verify_keys(data: &[u8]) -> usize {
    let pem = VerifyKey::from_pem(data).map_or(0, |k| k.len());
    let jwks = VerifyKey::from_jwks(data).map_or(0, |k| k.len());
    pem + jwks + usize::from(VerifyKey::from_spki(data).is_ok())
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn routes_never_panic(path in "([a-z_]{0,3}|/|blobs|uploads|manifests|tags|list|referrers|_catalog){0,10}") {
            if let Some(name) = route(&path) {
                prop_assert!(path.starts_with(&name));
            }
        }

        #[test]
        fn ranges_stay_inside_the_object(value in "(bytes=)?[0-9 ,=-]{0,24}", size in any::<u64>()) {
            if let Some(r) = range(&value, size) {
                prop_assert!(r.start < r.end && r.end <= size, "{:?} of {}", r, size);
            }
        }

        #[test]
        fn content_ranges_never_panic(
            a in any::<u64>(),
            b in any::<u64>(),
            len in proptest::option::of(any::<u64>()),
            junk in "(bytes)? ?",
        ) {
            let len_text = len.map(|l| l.to_string());
            let start = content_range(&format!("{junk}{a}-{b}"), len_text.as_deref());
            if let Some(start) = start {
                prop_assert_eq!(start, a);
                prop_assert!(b >= a);
                if let Some(l) = len {
                    prop_assert_eq!(u128::from(l), u128::from(b) - u128::from(a) + 1);
                }
            }
        }

        #[test]
        fn arbitrary_tokens_never_verify(
            header in proptest::collection::vec(any::<u8>(), 0..64),
            claims in proptest::collection::vec(any::<u8>(), 0..64),
            sig in proptest::collection::vec(any::<u8>(), 0..80),
            raw in "\\PC{0,40}",
        ) {
            let token_text = [&header, &claims, &sig].map(|p| URL_SAFE_NO_PAD.encode(p)).join(".");
            prop_assert!(!token(&token_text));
            prop_assert!(!token(&raw));
            let es256 = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256"}"#);
            let token_text = format!("{es256}.{}.{}", URL_SAFE_NO_PAD.encode(&claims), URL_SAFE_NO_PAD.encode(&sig));
            prop_assert!(!token(&token_text));
            let _ = super::claims(&claims);
        }

        #[test]
        fn keys_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256), text in "\\PC{0,64}") {
            let _ = verify_keys(&data);
            let _ = verify_keys(format!("-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----\n").as_bytes());
            let _ = verify_keys(format!("{{\"keys\":[{{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"{text}\",\"y\":\"\"}}]}}").as_bytes());
        }
    }

    #[test]
    fn a_generated_key_is_ready() {
        assert_eq!(keys().len(), 1);
    }
}
