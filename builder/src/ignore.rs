//! `.dockerignore` files and path patterns, as moby's `patternmatcher` reads them.
//!
//! One pattern a line; `#` starts a comment line; blanks around a pattern are dropped; a
//! leading `/` is ignored (patterns are relative to the context root); `!` makes an exception
//! that re-includes what earlier patterns excluded. The last pattern that matches decides. A
//! pattern that matches a directory excludes everything below it. In patterns, `*` matches
//! within one path component, `?` one character, `[a-z]`/`[^a-z]` a class, `**` any number
//! of components (zero included), and `\` escapes the next character.
//!
//! The context loader ([`crate::context`]) calls [`Ignore::excluded`] for every path it walks;
//! COPY's sources and `--exclude` use [`glob_match`] too.

use std::path::Path;

/// Why an ignore file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// The file exists but could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The ignore file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A pattern is malformed.
    #[error("{path}: invalid pattern {pattern:?}: {reason}")]
    Pattern {
        /// The ignore file.
        path: std::path::PathBuf,
        /// The pattern.
        pattern: String,
        /// Why.
        reason: &'static str,
    },
}

/// One pattern of an ignore file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    exception: bool,
}

/// The patterns of a `.dockerignore` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parses the text of an ignore file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Ignore, IgnoreError> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err(IgnoreError::Pattern {
                        path: path.to_path_buf(),
                        pattern: line.to_string(),
                        reason: "an exception (!) needs a pattern",
                    });
                }
            }
            let cleaned = clean(p);
            if cleaned.is_empty() {
                continue;
            }
            if let Err(reason) = check(&cleaned) {
                return Err(IgnoreError::Pattern { path: path.to_path_buf(), pattern: line.to_string(), reason });
            }
            patterns.push(Pattern { text: cleaned, exception });
        }
        Ok(Ignore { patterns })
    }

    /// Reads `<dockerfile>.dockerignore` beside the Dockerfile when it exists, else the
    /// context's `.dockerignore`, else nothing is ignored.
    pub fn load(context: &Path, dockerfile: &Path) -> Result<Ignore, IgnoreError> {
        let mut candidates = Vec::new();
        if let Some(name) = dockerfile.file_name() {
            let mut specific = name.to_os_string();
            specific.push(".dockerignore");
            candidates.push(dockerfile.with_file_name(specific));
        }
        candidates.push(context.join(".dockerignore"));
        for path in candidates {
            match std::fs::read_to_string(&path) {
                Ok(text) => return Ignore::parse(&text, &path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(IgnoreError::Read { path, source }),
            }
        }
        Ok(Ignore::default())
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel` (a `/`-separated path relative to the context root) is excluded: the
    /// last pattern matching it or one of its parent directories decides.
    pub fn excluded(&self, rel: &str) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            if p.exception != excluded {
                // Only a pattern that could change the answer needs testing.
                continue;
            }
            if matches_or_parent(&p.text, rel) {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether some exception pattern could re-include something below directory `rel`, so
    /// an excluded directory must still be walked.
    pub fn may_include_below(&self, rel: &str) -> bool {
        let prefix = format!("{rel}/");
        self.patterns.iter().any(|p| p.exception && (p.text.starts_with(&prefix) || p.text.contains("**")))
    }
}

/// Matches `rel` or one of its parent directories against `pattern`.
fn matches_or_parent(pattern: &str, rel: &str) -> bool {
    if glob_match(pattern, rel) {
        return true;
    }
    let mut end = rel.len();
    while let Some(i) = rel[..end].rfind('/') {
        if glob_match(pattern, &rel[..i]) {
            return true;
        }
        end = i;
    }
    false
}

/// Cleans a pattern like Go's `filepath.Clean`, without the leading `/`.
pub fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn check(pattern: &str) -> Result<(), &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' => {
                let close = chars[i + 1..].iter().position(|c| *c == ']');
                if close.is_none() {
                    return Err("unterminated character class");
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Whether `path` matches `pattern` (`*`, `?`, `[...]`, `**`, `\`), both `/`-separated.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = path.chars().collect();
    match_from(&p, &s)
}

fn match_from(p: &[char], s: &[char]) -> bool {
    if p.is_empty() {
        return s.is_empty();
    }
    match p[0] {
        '*' if p.get(1) == Some(&'*') => {
            // `**`: any run of characters, slashes included. `**/` may also match nothing.
            let rest = &p[2..];
            if let Some(after_slash) = rest.strip_prefix(&['/']) {
                if match_from(after_slash, s) {
                    return true;
                }
            }
            (0..=s.len()).any(|k| match_from(rest, &s[k..]))
        }
        '*' => {
            let rest = &p[1..];
            let mut k = 0;
            loop {
                if match_from(rest, &s[k..]) {
                    return true;
                }
                if k >= s.len() || s[k] == '/' {
                    return false;
                }
                k += 1;
            }
        }
        '?' => !s.is_empty() && s[0] != '/' && match_from(&p[1..], &s[1..]),
        '[' => {
            let Some(close) = p[1..].iter().position(|c| *c == ']').map(|i| i + 1) else {
                return false;
            };
            if s.is_empty() || s[0] == '/' {
                return false;
            }
            let class = &p[1..close];
            let (negate, class) = match class.first() {
                Some('^') | Some('!') => (true, &class[1..]),
                _ => (false, class),
            };
            let c = s[0];
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                let lo = if class[i] == '\\' && i + 1 < class.len() {
                    i += 1;
                    class[i]
                } else {
                    class[i]
                };
                if i + 2 < class.len() && class[i + 1] == '-' {
                    let hi = class[i + 2];
                    if lo <= c && c <= hi {
                        hit = true;
                    }
                    i += 3;
                } else {
                    if lo == c {
                        hit = true;
                    }
                    i += 1;
                }
            }
            hit != negate && match_from(&p[close + 1..], &s[1..])
        }
        '\\' if p.len() > 1 => !s.is_empty() && s[0] == p[1] && match_from(&p[2..], &s[1..]),
        c => !s.is_empty() && s[0] == c && match_from(&p[1..], &s[1..]),
    }
}

/// True when `pattern` has glob characters.
pub fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.md", "README.md"));
        assert!(!glob_match("*.md", "docs/README.md"));
        assert!(glob_match("**/*.md", "docs/a/README.md"));
        assert!(glob_match("**/*.md", "README.md"));
        assert!(glob_match("docs/**", "docs/a/b"));
        assert!(glob_match("a/**/b", "a/b"));
        assert!(glob_match("a/**/b", "a/x/y/b"));
        assert!(glob_match("file?.txt", "file1.txt"));
        assert!(!glob_match("file?.txt", "file10.txt"));
        assert!(glob_match("[a-c]*", "bee"));
        assert!(!glob_match("[^a-c]*", "bee"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("\\*", "x"));
    }

    #[test]
    fn last_match_wins_with_exceptions() {
        let ig = ignore("# comment\n*.md\n!README.md\n/build\n  node_modules  \n**/*.tmp\n\n");
        assert!(ig.excluded("CHANGES.md"));
        assert!(!ig.excluded("README.md"));
        assert!(ig.excluded("build"));
        assert!(ig.excluded("build/out/x.o"), "a parent directory's match excludes its contents");
        assert!(ig.excluded("node_modules/x/y.js"));
        assert!(ig.excluded("a/b/c.tmp"));
        assert!(!ig.excluded("src/main.rs"));
        assert!(!ig.excluded("docs/README.md"), "*.md matches the top level only");
    }

    #[test]
    fn exceptions_below_excluded_directories() {
        let ig = ignore("docs\n!docs/keep.txt\n");
        assert!(ig.excluded("docs/other.txt"));
        assert!(!ig.excluded("docs/keep.txt"));
        assert!(ig.may_include_below("docs"));
        assert!(!ig.may_include_below("src"));
    }

    #[test]
    fn cleans_patterns() {
        assert_eq!(clean("/a/./b//c/"), "a/b/c");
        assert_eq!(clean("a/../b"), "b");
        let ig = ignore("./foo/../bar\n");
        assert!(ig.excluded("bar"));
        assert!(Ignore::parse("!\n", Path::new("x")).is_err());
        assert!(Ignore::parse("[abc\n", Path::new("x")).is_err());
    }

    #[test]
    fn loads_the_dockerfile_specific_file_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "a\n").unwrap();
        std::fs::write(dir.path().join("Build.Dockerfile.dockerignore"), "b\n").unwrap();
        let ig = Ignore::load(dir.path(), &dir.path().join("Build.Dockerfile")).unwrap();
        assert!(ig.excluded("b") && !ig.excluded("a"));
        let ig = Ignore::load(dir.path(), &dir.path().join("Dockerfile")).unwrap();
        assert!(ig.excluded("a") && !ig.excluded("b"));
        let empty = tempfile::tempdir().unwrap();
        assert!(Ignore::load(empty.path(), &empty.path().join("Dockerfile")).unwrap().is_empty());
    }
}
