//! "Never panics" property tests of the builder's parsers of untrusted input: the
//! Dockerfile lexer and instruction parser ([`crate::syntax`], [`crate::instructions`]), the
//! stage planner that reads what they produce ([`crate::plan`]), and `.dockerignore`
//! ([`crate::ignore`]). The `dockerfile` fuzz target in `fuzz/` drives the same entry points.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use shared::manifest::Platform;

use crate::ignore::Ignore;
use crate::instructions::parse_file;
use crate::plan::{platform_args, Plan};

/// Dockerfile-shaped text: keywords, flags, quotes, escapes, variables, heredocs, JSON.
fn dockerfile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("FROM ".to_string()),
        Just("RUN ".to_string()),
        Just("COPY ".to_string()),
        Just("ADD ".to_string()),
        Just("ARG ".to_string()),
        Just("ENV ".to_string()),
        Just("ONBUILD ".to_string()),
        Just("HEALTHCHECK ".to_string()),
        Just("SHELL ".to_string()),
        Just("--mount=type=".to_string()),
        Just("--from=".to_string()),
        Just("--interval=".to_string()),
        Just(" AS ".to_string()),
        Just("<<EOF".to_string()),
        Just("<<-'EOF'".to_string()),
        Just("EOF".to_string()),
        Just("# escape=`\n".to_string()),
        Just("# syntax=x\n".to_string()),
        Just("\\\n".to_string()),
        Just("\n".to_string()),
        Just("${A:-b}".to_string()),
        Just("$A".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        "[ a-z0-9=,:/.\"'`\\\\${}\\[\\]-]{1,6}",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn dockerfiles_never_panic(text in dockerfile()) {
        if let Ok(parsed) = parse_file(&text, Path::new("Dockerfile")) {
            let host = Platform::host();
            if let Ok(plan) = Plan::new(&parsed, BTreeMap::new(), platform_args(&host, &host)) {
                if let Ok(target) = plan.target(None) {
                    if let Ok(needed) = plan.needed(target) {
                        let _ = plan.waves(&needed);
                    }
                }
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = parse_file(&text, Path::new("Dockerfile"));
    }

    #[test]
    fn ignore_files_never_panic(text in "[a-z*?!#/\\[\\]\\\\^. \n-]{0,64}", path in "[a-z/.]{0,24}") {
        if let Ok(ignore) = Ignore::parse(&text, Path::new(".dockerignore")) {
            let _ = ignore.excluded(&path);
            let _ = ignore.may_include_below(&path);
        }
    }
}
