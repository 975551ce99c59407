//! Bearer-token decoding: the token itself (against a key of this process, which no input
//! should satisfy), its claim set, and the verification keys configuration gives.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(!registry::fuzzing::token(text), "an arbitrary token verified: {text:?}");
    }
    let _ = registry::fuzzing::claims(data);
    let _ = registry::fuzzing::verify_keys(data);
});
