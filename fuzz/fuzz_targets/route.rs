//! The registry's `/v2/` route parser, on any path.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    if let Some(name) = registry::fuzzing::route(path) {
        assert!(path.starts_with(&name), "{path:?} gave the name {name:?}");
    }
});
