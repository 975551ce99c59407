//! The Dockerfile lexer and instruction parser, then the stage planner on what parses.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use builder::plan::{platform_args, Plan};
use libfuzzer_sys::fuzz_target;
use shared::manifest::Platform;

fuzz_target!(|text: &str| {
    let Ok(parsed) = builder::instructions::parse_file(text, Path::new("Dockerfile")) else { return };
    let host = Platform::host();
    let Ok(plan) = Plan::new(&parsed, BTreeMap::new(), platform_args(&host, &host)) else { return };
    if let Ok(target) = plan.target(None) {
        if let Ok(needed) = plan.needed(target) {
            let _ = plan.waves(&needed);
        }
    }
});
