//! `.dockerignore` files and path patterns, as moby's `patternmatcher` reads them.
//!
//! One pattern a line; `#` starts a comment line; blanks around a pattern are dropped; a
//! leading `/` is ignored (patterns are relative to the context root); `!` makes an exception
//! that re-includes what earlier patterns excluded. The last pattern that matches decides. A
//! pattern that matches a directory excludes everything below it. In patterns, `*` matches
//! within one path component, `?` one character, `[a-z]`/`[^a-z]` a class, `**` any number
//! of components (zero included), and `\` escapes the next character: the syntax of
//! [`shared::glob::Glob::path`], which COPY's sources and `--exclude` use too.
//!
//! The context loader ([`crate::context`]) calls [`Ignore::excluded`] for every path it walks.

use std::path::Path;

use shared::glob::Glob;

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
        reason: String,
    },
}

/// One pattern of an ignore file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    glob: Glob,
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
                        reason: "an exception (!) needs a pattern".into(),
                    });
                }
            }
            let cleaned = clean(p);
            if cleaned.is_empty() {
                continue;
            }
            let glob = Glob::path(&cleaned).map_err(|e| IgnoreError::Pattern {
                path: path.to_path_buf(),
                pattern: line.to_string(),
                reason: e.reason,
            })?;
            patterns.push(Pattern { glob, exception });
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
            if p.glob.matches_or_parent(rel) {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether some exception pattern could re-include something below directory `rel`, so
    /// an excluded directory must still be walked.
    pub fn may_include_below(&self, rel: &str) -> bool {
        let prefix = format!("{rel}/");
        self.patterns
            .iter()
            .any(|p| p.exception && (p.glob.as_str().starts_with(&prefix) || p.glob.as_str().contains("**")))
    }
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

    fn glob_match(pattern: &str, path: &str) -> bool {
        Glob::path(pattern).unwrap().is_match(path)
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
        let e = Ignore::parse("ok\nbad\\\n", Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("bad\\"), "{e}");
    }

    #[test]
    fn nested_double_stars_do_not_backtrack() {
        // A backtracking matcher took 0.8 s for one such path; the compiled automaton answers
        // in a pass over the path (see shared::glob).
        let ig = ignore("**/**/**/**/**/**/x\n");
        let path = "a/".repeat(50) + "y";
        assert_eq!(path.len(), 101);
        assert!(!ig.excluded(&path));
        assert!(ig.excluded(&("a/".repeat(50) + "x")));
        assert!(ig.excluded("x/below"));
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
