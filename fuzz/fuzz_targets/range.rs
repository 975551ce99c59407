//! The registry's `Range` and `Content-Range` header parsers. The first 8 bytes are the
//! object size (or a Content-Length), the rest the header value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((size, value)) = data.split_first_chunk::<8>() else { return };
    let size = u64::from_le_bytes(*size);
    let Ok(value) = std::str::from_utf8(value) else { return };
    if let Some(r) = registry::fuzzing::range(value, size) {
        assert!(r.start < r.end && r.end <= size, "{value:?} of {size}: {r:?}");
    }
    let length = size.to_string();
    for content_length in [None, Some(length.as_str()), Some(value)] {
        let _ = registry::fuzzing::content_range(value, content_length);
    }
});
