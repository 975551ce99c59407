//! What tests of every crate share about their surroundings (feature `testing`, never in a
//! production build): tests that need root, or a tool the machine may lack, print a `SKIP`
//! line and pass where it is missing, except under `CI=true`, where the missing piece is a
//! failure (CI must run every test). The runtime's, the builder's and the end-to-end tests
//! all call these, so the rule has one implementation.

/// True when the environment says this is a CI run (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Skips `test` because of `why`: prints `SKIP <test>: <why>`, or panics under `CI=true`.
///
/// # Panics
/// Under `CI=true`, always.
pub fn skip(test: &str, why: &str) {
    assert!(!in_ci(), "CI=true, but {test} cannot run here: {why}");
    println!("SKIP {test}: {why}");
}

/// True when this process runs as root (effective user 0); else [`skip`]s `test` (which
/// panics under `CI=true`) and returns false.
///
/// # Panics
/// Under `CI=true` when not running as root.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(test, "it needs root (run the tests as root)");
    false
}

/// Whether the effective user is root, by `/proc/self/status` (no `unsafe`, no libc).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}
