//! The shared helpers that read what people type: sizes, durations, glob patterns, query
//! strings. The first byte splits the input into a pattern and a path for the globs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::glob::Glob;

fuzz_target!(|text: &str| {
    let _ = shared::size::parse_size(text);
    let _ = shared::duration::parse_duration(text);
    let _ = shared::duration::parse_duration_days(text);
    let _ = shared::query::pairs(text);
    let _ = shared::query::unescape(text);
    let (pattern, path) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(g) = Glob::path(pattern) {
        let _ = g.matches_or_parent(path);
    }
    if let Ok(g) = Glob::star(pattern) {
        // Every `*` may match nothing.
        assert!(g.is_match(&pattern.replace('*', "")), "{pattern:?}");
    }
});
