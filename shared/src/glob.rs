//! Glob patterns, compiled once into a `regex` automaton.
//!
//! Two dialects, one matcher:
//!
//! - [`Glob::path`]: the patterns of `.dockerignore`, COPY sources and `COPY --exclude`, as
//!   Docker reads them: moby's `patternmatcher`, which is Go's `filepath.Match` plus `**`,
//!   compiled to a regular expression. Paths and patterns are `/`-separated. `*` matches any
//!   run of characters within one path component, `?` one character other than `/`,
//!   `[a-z]` a class (`[^a-z]` or `[!a-z]` its complement; a `]` first in a class is a
//!   member), and `\` makes the next character literal. `**` matches any run of components:
//!   `**/x` matches `x` at any depth (the top included), `x/**` everything below `x`,
//!   `a/**/b` both `a/b` and `a/x/y/b`, `**` alone everything. As in moby, a `**` inside a
//!   component stands for "any directories" (`a**b` is `a(.*/)?b`), and a pattern that is
//!   `**` followed by plain characters matches every path that ends with them (`**.txt`).
//!   Braces are plain characters.
//! - [`Glob::star`]: the repository patterns of the registry's access rules, where `*` is
//!   any run of characters, slashes included, and every other character is literal.
//!
//! Why not `globset`: it reads `?` as one byte (so `?` misses `ü`), treats braces as
//! alternation (0.4.22 cannot turn that off) and a `**` inside a component as `*`; each
//! differs from Docker. Both it and this module rest on the same `regex` engine, which runs
//! in time linear in the path whatever the pattern: matching never backtracks, so
//! `**/**/**/**/**/**/x` against a long path costs what `**/x` does.
//!
//! Callers: the builder's ignore file and context walker, and the registry's access rules.

use regex::Regex;

/// A pattern that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {reason}")]
pub struct GlobError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Which syntax a pattern was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Path,
    Star,
}

/// A compiled glob pattern.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    dialect: Dialect,
    regex: Regex,
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.pattern == other.pattern && self.dialect == other.dialect
    }
}

impl Eq for Glob {}

impl Glob {
    /// Compiles a Docker path pattern (see the module documentation).
    pub fn path(pattern: &str) -> Result<Glob, GlobError> {
        let error = |reason: &str| GlobError { pattern: pattern.to_string(), reason: reason.to_string() };
        let source = path_regex(pattern).map_err(error)?;
        Glob::finish(pattern, Dialect::Path, &source)
    }

    /// Compiles a pattern where `*` is any run of characters (slashes included) and every
    /// other character stands for itself.
    pub fn star(pattern: &str) -> Result<Glob, GlobError> {
        let parts: Vec<String> = pattern.split('*').map(regex::escape).collect();
        Glob::finish(pattern, Dialect::Star, &format!("(?s)^{}$", parts.join(".*")))
    }

    fn finish(pattern: &str, dialect: Dialect, source: &str) -> Result<Glob, GlobError> {
        let regex = Regex::new(source).map_err(|e| GlobError {
            pattern: pattern.to_string(),
            reason: match e {
                regex::Error::CompiledTooBig(_) => "too long".to_string(),
                other => other.to_string(),
            },
        })?;
        Ok(Glob { pattern: pattern.to_string(), dialect, regex })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// Whether `path` or one of its parent directories matches (`/`-separated), as an
    /// ignore pattern that names a directory excludes everything below it.
    pub fn matches_or_parent(&self, path: &str) -> bool {
        if self.is_match(path) {
            return true;
        }
        path.match_indices('/').any(|(i, _)| self.is_match(&path[..i]))
    }
}

/// The regular expression of a path pattern, moby's translation.
fn path_regex(pattern: &str) -> Result<String, &'static str> {
    // moby: `**` then only plain characters is a suffix test, whatever those characters are.
    if let Some(suffix) = pattern.strip_prefix("**").filter(|s| !s.contains(['*', '?', '[', ']', '\\'])) {
        return Ok(match suffix.strip_prefix('/') {
            Some(name) => format!("(?s)^(?:.*/)?{}$", regex::escape(name)),
            None => format!("(?s)^.*{}$", regex::escape(suffix)),
        });
    }
    let mut re = String::from("(?s)^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                chars.next_if_eq(&'/');
                re.push_str(if chars.peek().is_none() { ".*" } else { "(?:.*/)?" });
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' => {
                let escaped = chars.next().ok_or("a trailing \\ escapes nothing")?;
                re.push_str(&regex::escape(escaped.encode_utf8(&mut [0; 4])));
            }
            '[' => class(&mut chars, &mut re)?,
            c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push('$');
    Ok(re)
}

/// Translates a character class, after its `[`, writing every member as `\x{..}`.
fn class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, re: &mut String) -> Result<(), &'static str> {
    const UNTERMINATED: &str = "unterminated character class";
    re.push('[');
    if chars.next_if(|c| *c == '^' || *c == '!').is_some() {
        re.push('^');
    }
    let mut first = true;
    loop {
        let mut lo = chars.next().ok_or(UNTERMINATED)?;
        if lo == ']' && !first {
            break;
        }
        first = false;
        if lo == '\\' {
            lo = chars.next().ok_or(UNTERMINATED)?;
        }
        let mut hi = lo;
        if chars.peek() == Some(&'-') {
            let mut ahead = chars.clone();
            ahead.next();
            if ahead.peek().is_some_and(|c| *c != ']') {
                chars.next();
                hi = chars.next().ok_or(UNTERMINATED)?;
                if hi == '\\' {
                    hi = chars.next().ok_or(UNTERMINATED)?;
                }
                if hi < lo {
                    return Err("character range out of order");
                }
            }
        }
        re.push_str(&format!("\\x{{{:x}}}-\\x{{{:x}}}", u32::from(lo), u32::from(hi)));
    }
    re.push(']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_match(pattern: &str, text: &str) -> bool {
        Glob::path(pattern).unwrap().is_match(text)
    }

    #[test]
    fn path_patterns_match_like_docker() {
        for (pattern, text) in [
            ("*.md", "README.md"),
            ("**/*.md", "docs/a/README.md"),
            ("**/*.md", "README.md"),
            ("docs/**", "docs/a/b"),
            ("a/**/b", "a/b"),
            ("a/**/b", "a/x/y/b"),
            ("**", "a/b/c"),
            ("file?.txt", "file1.txt"),
            ("[a-c]*", "bee"),
            ("[!x]*", "bee"),
            ("\\*", "*"),
            ("\\[x]", "[x]"),
            ("[]a]", "]"),
            ("[a-]", "-"),
            ("[\\]]", "]"),
            ("[é-ü]", "ö"),
            ("a**b", "ab"),
            ("a**b", "ax/y/b"),
            ("**.txt", "a/b.txt"),
            ("**.txt", "b.txt"),
            ("**/x", "a/b/x"),
            ("docs**", "docs/a"),
            ("{a,b}", "{a,b}"),
            ("x}", "x}"),
            ("[{]", "{"),
            ("[]{]", "{"),
            ("[]{]", "]"),
            ("\\{", "{"),
            (".*", ".env"),
            ("*", ".hidden"),
            ("dir/*/x", "dir/sub/x"),
            ("é?", "éü"),
        ] {
            assert!(path_match(pattern, text), "{pattern} should match {text}");
        }
        for (pattern, text) in [
            ("*.md", "docs/README.md"),
            ("file?.txt", "file10.txt"),
            ("file?.txt", "file/.txt"),
            ("[^a-c]*", "bee"),
            ("\\*", "x"),
            ("{a,b}", "a"),
            ("docs/**", "docs"),
            ("dir/*/x", "dir/a/b/x"),
            ("a/**/b", "a/xb"),
            ("*", "a/b"),
            ("a", "ab"),
            ("a**b", "axb"),
            ("**/x", "ax"),
            ("[a-c]", "d"),
            ("a.b", "axb"),
            ("a+", "aa"),
            ("(a)", "a"),
        ] {
            assert!(!path_match(pattern, text), "{pattern} should not match {text}");
        }
    }

    #[test]
    fn malformed_path_patterns_are_errors() {
        for pattern in ["[abc", "a\\", "[z-a]", "[", "[]", "[a\\"] {
            let e = Glob::path(pattern).unwrap_err();
            assert_eq!(e.pattern, pattern);
        }
    }

    #[test]
    fn parents_match_for_directories() {
        let g = Glob::path("build").unwrap();
        assert!(g.matches_or_parent("build"));
        assert!(g.matches_or_parent("build/out/x.o"));
        assert!(!g.matches_or_parent("src/build.rs"));
        assert!(Glob::path("*/tmp").unwrap().matches_or_parent("a/tmp/b/c"));
    }

    #[test]
    fn star_patterns_cross_slashes_and_nothing_else_is_special() {
        let m = |p: &str, t: &str| Glob::star(p).unwrap().is_match(t);
        assert!(m("*", "a/b/c"));
        assert!(m("*", ""));
        assert!(m("team-a/*", "team-a/app"));
        assert!(m("team-a/*", "team-a/x/y"));
        assert!(!m("team-a/*", "team-b/app"));
        assert!(!m("team-a/*", "team-a"));
        assert!(m("*/base", "x/y/base"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(!m("a*b*c", "aXbY"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "a/b"), "** is two *s: a/ and /b are both still needed");
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
        assert!(m("a?[b]{c}\\", "a?[b]{c}\\"));
        assert!(!m("a?", "ab"));
    }

    /// The pattern from the issue: a backtracking matcher took 0.8 s on it. The regex
    /// automaton is linear in the path; checked here for the answers, not the time.
    #[test]
    fn nested_double_stars_answer_without_backtracking() {
        let g = Glob::path("**/**/**/**/**/**/x").unwrap();
        let long_miss = "a/".repeat(50) + "y";
        assert_eq!(long_miss.len(), 101);
        assert!(!g.is_match(&long_miss));
        let long_hit = "a/".repeat(50) + "x";
        assert!(g.is_match(&long_hit));
        assert!(g.is_match("x"));
        assert!(!Glob::path("**/**/**/**/**/**/x").unwrap().matches_or_parent(&"b".repeat(101)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics(pattern in "[a-c*?/\\[\\]\\\\!^{},.-]{0,16}", text in "[a-c/.*]{0,24}") {
            if let Ok(g) = Glob::path(&pattern) {
                let _ = g.matches_or_parent(&text);
            }
            let g = Glob::star(&pattern).unwrap();
            let _ = g.is_match(&text);
        }

        #[test]
        fn star_patterns_match_their_own_text(text in "[a-z0-9/._-]{0,24}") {
            proptest::prop_assert!(Glob::star(&text).unwrap().is_match(&text));
        }
    }
}
