//! Variable expansion in Dockerfile words, as BuildKit's shell lexer (`frontend/dockerfile/
//! shell/lex.go`) does it for the instructions that expand (`FROM`, `COPY`, `ADD`, `ENV`,
//! `ARG`, `LABEL`, `EXPOSE`, `WORKDIR`, `USER`, `VOLUME`, `STOPSIGNAL`, the heredoc bodies of
//! `COPY`): `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
//! `${VAR:?message}`, `${VAR?message}`, single quotes taken literally, double quotes with
//! expansion, and the escape character. Quotes are removed from the result.
//!
//! **Patterns.** `${VAR#pattern}` and `${VAR##pattern}` remove the shortest and longest
//! prefix matching `pattern`, `${VAR%pattern}` and `${VAR%%pattern}` the shortest and
//! longest suffix, `${VAR/pattern/replacement}` replaces the first match and
//! `${VAR//pattern/replacement}` every match. As in BuildKit, a pattern is a shell glob
//! without bracket expressions: `*` is any run of characters, `?` one character (neither
//! matches a newline), `\*`, `\?` and `\\` are literal, `\}` and `\/` let the word
//! hold `}` and `/`; any other escape in a pattern is an error. Inside these words escapes
//! are kept as written (BuildKit's "raw escapes"), so a replacement keeps its backslashes. A
//! match is the one a backtracking matcher finds first (Go's leftmost-first regexp
//! semantics, which BuildKit relies on), so `${V#*x*y}` of `xxyy` is `y`.
//!
//! The planner ([`crate::plan`]) calls [`expand`] with the variables in scope for each step.

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// A quote or `${` was not closed.
    #[error("unexpected end of text in {word:?}: missing {missing}")]
    Unterminated {
        /// The word.
        word: String,
        /// What closes it.
        missing: &'static str,
    },
    /// `${VAR…}` with a modifier BuildKit does not have.
    #[error("unsupported modifier ({modifier}) in substitution {word:?}")]
    Modifier {
        /// The modifier.
        modifier: char,
        /// The word.
        word: String,
    },
    /// A `${VAR#pattern}`, `%` or `/` pattern has an escape BuildKit refuses (`\\x`).
    #[error("invalid pattern ({pattern}) in substitution {word:?}: invalid escape '\\{escaped}'")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// The character after the backslash (empty at the end of the pattern).
        escaped: String,
        /// The word.
        word: String,
    },
    /// `${VAR:?message}` with VAR unset (or empty, with the colon).
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The message given.
        message: String,
    },
}

/// Expands one word: variables from `lookup`, quotes removed, escapes applied.
pub fn expand(word: &str, escape: char, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let chars: Vec<char> = word.chars().collect();
    let mut lexer = Lexer { chars: &chars, i: 0, escape, lookup, word };
    lexer.process(None, true, false)
}

/// Expands without removing quotes (heredoc bodies keep their quotes).
pub fn expand_keep_quotes(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let chars: Vec<char> = text.chars().collect();
    let mut lexer = Lexer { chars: &chars, i: 0, escape, lookup, word: text };
    lexer.process(None, false, false)
}

/// Splits `text` into words on unquoted blanks, then expands each.
pub fn expand_words(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ExpandError> {
    split_words(text, escape).iter().map(|w| expand(w, escape, lookup)).collect()
}

/// Splits on blanks outside quotes, keeping quotes and escapes for [`expand`].
pub fn split_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            word.push(c);
            if c == q {
                quote = None;
            } else if c == escape && q == '"' {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            continue;
        }
        if c.is_whitespace() {
            if in_word {
                words.push(std::mem::take(&mut word));
                in_word = false;
            }
            continue;
        }
        in_word = true;
        word.push(c);
        if c == '"' || c == '\'' {
            quote = Some(c);
        } else if c == escape {
            if let Some(n) = chars.next() {
                word.push(n);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

struct Lexer<'a> {
    chars: &'a [char],
    i: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    word: &'a str,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn unterminated(&self, missing: &'static str) -> ExpandError {
        ExpandError::Unterminated { word: self.word.to_string(), missing }
    }

    /// Processes until `stop` (consumed) or the end. `unquote` removes quotes and applies
    /// escapes; `raw` (with `unquote`) keeps each escape character before what it escapes,
    /// as BuildKit does in the words of `#`, `%` and `/` substitutions.
    fn process(&mut self, stop: Option<char>, unquote: bool, raw: bool) -> Result<String, ExpandError> {
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return match stop {
                    Some('/') => Err(self.unterminated("/")),
                    Some(_) => Err(self.unterminated("}")),
                    None => Ok(out),
                };
            };
            if Some(c) == stop {
                self.i += 1;
                return Ok(out);
            }
            self.i += 1;
            match c {
                '\'' if unquote => out.push_str(&self.single_quote()?),
                '"' if unquote => out.push_str(&self.double_quote(raw)?),
                '$' => out.push_str(&self.dollar()?),
                c if c == self.escape && unquote => {
                    if let Some(n) = self.next() {
                        if raw {
                            out.push(c);
                        }
                        out.push(n);
                    }
                }
                c if c == self.escape => {
                    // Keep the escape, but let it protect a `$`.
                    match self.next() {
                        Some('$') => out.push('$'),
                        Some(n) => {
                            out.push(c);
                            out.push(n);
                        }
                        None => out.push(c),
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn single_quote(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(self.unterminated("'")),
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self, raw: bool) -> Result<String, ExpandError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(self.unterminated("\"")),
                Some('"') => return Ok(out),
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) if c == self.escape => {
                    if raw {
                        out.push(c);
                    }
                    match self.peek() {
                        None => {}
                        Some(n) if n == '"' || n == '$' || n == self.escape => {
                            self.i += 1;
                            out.push(n);
                        }
                        Some(_) => out.push(c),
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.i += 1;
            } else {
                break;
            }
        }
        name
    }

    /// After a `$`.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok((self.lookup)(&name).unwrap_or_default());
        }
        self.i += 1;
        let name = self.name();
        if name.is_empty() {
            return Err(self.unterminated("a variable name after ${"));
        }
        let value = (self.lookup)(&name);
        let Some(c) = self.next() else { return Err(self.unterminated("}")) };
        let (colon, op) = match c {
            '}' => return Ok(value.unwrap_or_default()),
            '/' => return self.replace(value.unwrap_or_default()),
            ':' => match self.next() {
                Some(op @ ('-' | '+' | '?' | '#' | '%')) => (true, op),
                Some(other) => return Err(ExpandError::Modifier { modifier: other, word: self.word.to_string() }),
                None => return Err(self.unterminated("}")),
            },
            '-' | '+' | '?' | '#' | '%' => (false, c),
            other => return Err(ExpandError::Modifier { modifier: other, word: self.word.to_string() }),
        };
        let word = self.process(Some('}'), true, op == '#' || op == '%')?;
        let set = match &value {
            Some(v) => !colon || !v.is_empty(),
            None => false,
        };
        match op {
            '-' if set => Ok(value.unwrap_or_default()),
            '-' => Ok(word),
            '+' if set => Ok(word),
            '+' => Ok(String::new()),
            '?' if set => Ok(value.unwrap_or_default()),
            '?' => {
                let message = match (word.is_empty(), value.is_some()) {
                    (false, _) => word,
                    (true, true) => "is not allowed to be empty".into(),
                    (true, false) => "is not allowed to be unset".into(),
                };
                Err(ExpandError::Required { name, message })
            }
            _ => self.trim(&value.unwrap_or_default(), &word, op),
        }
    }

    /// `${VAR#word}` (`op` `#`) or `${VAR%word}` (`op` `%`); a doubled `op` is greedy.
    fn trim(&self, value: &str, word: &str, op: char) -> Result<String, ExpandError> {
        let (greedy, pattern) = match word.strip_prefix(op) {
            Some(rest) => (true, rest),
            None => (false, word),
        };
        let mut tokens = self.pattern(pattern)?;
        let mut chars: Vec<char> = value.chars().collect();
        if op == '%' {
            // The shortest or longest suffix is the prefix of the reversed value.
            tokens.reverse();
            chars.reverse();
        }
        let end = glob::first_matches(&tokens, &chars, greedy)[0].unwrap_or(0);
        Ok(if op == '%' { chars[end..].iter().rev().collect() } else { chars[end..].iter().collect() })
    }

    /// `${VAR/pattern/replacement}` and `${VAR//pattern/replacement}`, after the first `/`.
    fn replace(&mut self, value: String) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.i += 1;
        }
        let pattern = self.process(Some('/'), true, true)?;
        let replacement = self.process(Some('}'), true, true)?;
        let tokens = self.pattern(&pattern)?;
        let chars: Vec<char> = value.chars().collect();
        Ok(glob::replace(&tokens, &chars, &replacement, all))
    }

    fn pattern(&self, pattern: &str) -> Result<Vec<glob::Token>, ExpandError> {
        glob::parse(pattern).map_err(|escaped| ExpandError::Pattern {
            pattern: pattern.to_string(),
            escaped: escaped.map(String::from).unwrap_or_default(),
            word: self.word.to_string(),
        })
    }
}

/// The shell patterns of `#`, `%` and `/` substitutions, matched as BuildKit's regular
/// expressions match them (see the module docs).
mod glob {
    /// One element of a pattern.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Token {
        /// This character.
        Literal(char),
        /// `?`: one character but a newline.
        One,
        /// `*`: any run of characters without a newline.
        Any,
    }

    /// The tokens of `pattern`; `Err` carries the character after a refused escape.
    pub(super) fn parse(pattern: &str) -> Result<Vec<Token>, Option<char>> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::Any,
                '?' => Token::One,
                '\\' => match chars.next() {
                    Some(n @ ('*' | '?' | '\\' | '}' | '/')) => Token::Literal(n),
                    other => return Err(other),
                },
                c => Token::Literal(c),
            });
        }
        Ok(tokens)
    }

    /// For each start in `value` (`0..=len`), where the first match of `tokens` from there
    /// ends: `*` tries the fewest characters first, or the most when `greedy` (a
    /// backtracking matcher's order, which is the order of leftmost-first regular
    /// expressions). Worked out token by token from the last, so it takes tokens ×
    /// characters steps and no recursion, whatever the pattern.
    pub(super) fn first_matches(tokens: &[Token], value: &[char], greedy: bool) -> Vec<Option<usize>> {
        let n = value.len();
        // What the tokens after the current one match from each position: nothing matches
        // the empty rest of the pattern where it starts.
        let mut next: Vec<Option<usize>> = (0..=n).map(Some).collect();
        for token in tokens.iter().rev() {
            let mut row = vec![None; n + 1];
            // For `*`, scanning from the end: the nearest (lazy) or farthest (greedy) place
            // the rest matches from, among those the run can reach (up to a newline).
            let mut reach: Option<usize> = None;
            for v in (0..=n).rev() {
                row[v] = match token {
                    Token::Literal(c) => (value.get(v) == Some(c)).then(|| next[v + 1]).flatten(),
                    Token::One => value.get(v).filter(|c| **c != '\n').and_then(|_| next[v + 1]),
                    Token::Any => {
                        let here = next[v].is_some().then_some(v);
                        reach = match value.get(v) {
                            // A run from v may not cross the newline at v.
                            None | Some('\n') => here,
                            Some(_) if greedy => reach.or(here),
                            Some(_) => here.or(reach),
                        };
                        reach.and_then(|k| next[k])
                    }
                };
            }
            next = row;
        }
        next
    }

    /// Replaces the leftmost match (or, with `all`, every match, as Go's `ReplaceAllString`
    /// does: an empty match right after a match is skipped) with `replacement`. `*` is
    /// greedy here, as in BuildKit.
    pub(super) fn replace(tokens: &[Token], value: &[char], replacement: &str, all: bool) -> String {
        let mut out = String::new();
        let mut copied = 0;
        let mut last_end: Option<usize> = None;
        let mut search = 0;
        let ends = first_matches(tokens, value, true);
        while search <= value.len() {
            let Some((a, b)) = (search..=value.len()).find_map(|s| ends[s].map(|e| (s, e))) else {
                break;
            };
            out.extend(&value[copied..a]);
            if last_end.is_none_or(|end| b > end) || a == 0 {
                out.push_str(replacement);
            }
            copied = b;
            last_end = Some(b);
            if !all {
                break;
            }
            search = if b > search { b } else { search + 1 };
        }
        out.extend(&value[copied.min(value.len())..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("apple".into()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("a b".into()),
            _ => None,
        }
    }

    fn x(word: &str) -> String {
        expand(word, '\\', &env).unwrap()
    }

    #[test]
    fn expands_variables() {
        assert_eq!(x("$A"), "apple");
        assert_eq!(x("${A}s"), "apples");
        assert_eq!(x("$As"), "");
        assert_eq!(x("x$NOPE-y"), "x-y");
        assert_eq!(x("$"), "$");
        assert_eq!(x("a$ b"), "a$ b");
        assert_eq!(x("$SP"), "a b");
    }

    #[test]
    fn applies_modifiers() {
        assert_eq!(x("${NOPE:-dflt}"), "dflt");
        assert_eq!(x("${EMPTY:-dflt}"), "dflt");
        assert_eq!(x("${EMPTY-dflt}"), "");
        assert_eq!(x("${NOPE-dflt}"), "dflt");
        assert_eq!(x("${A:-dflt}"), "apple");
        assert_eq!(x("${A:+alt}"), "alt");
        assert_eq!(x("${EMPTY:+alt}"), "");
        assert_eq!(x("${EMPTY+alt}"), "alt");
        assert_eq!(x("${NOPE+alt}"), "");
        assert_eq!(x("${NOPE:-$A/x}"), "apple/x");
        assert_eq!(x("${NOPE:-${A:+nested}}"), "nested");
        assert_eq!(x("${A?must}"), "apple");
        let e = expand("${NOPE:?must be set}", '\\', &env).unwrap_err();
        assert_eq!(e.to_string(), "NOPE: must be set");
        let e = expand("${A:x}", '\\', &env).unwrap_err();
        assert!(matches!(e, ExpandError::Modifier { modifier: 'x', .. }), "{e}");
        assert!(expand("${A", '\\', &env).is_err());
    }

    fn with(vars: &[(&str, &str)], word: &str) -> Result<String, ExpandError> {
        let map: std::collections::HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        expand(word, '\\', &|n| map.get(n).cloned())
    }

    /// BuildKit's own cases (`shell/lex_test.go`, `TestProcessWithMatches`).
    #[test]
    fn trims_and_replaces_patterns_as_buildkit_does() {
        type Case = (&'static str, &'static [(&'static str, &'static str)], &'static str);
        let cases: &[Case] = &[
            (r"${FOO#()[]{\}^$.\*\?|\\}", &[("FOO", r"()[]{}^$.*?|\x")], "x"),
            (r"${FOO%%\**}", &[("FOO", "xx**")], "xx"),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], "y"),
            ("${FOO#*}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy"),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
            ("${FOO#}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO##*x}", &[("FOO", "xxyy")], "yy"),
            ("${FOO##}", &[("FOO", "xxyy")], "xxyy"),
            (r"${FOO#?\?}", &[("FOO", "???y")], "?y"),
            ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy."),
            (r"${FOO%%\**\*}", &[("FOO", "a***yy*")], "a"),
            ("${FOO%}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO%%$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
                "/foo.*/*.txt - /foo..*.txt",
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                "/tmp/bar.txt - /bar.txt",
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("REPLACEMENT", "/")],
                "/foo/b/c.txt - /foo/c.txt",
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[("FOO", "http://google.de"), ("NEEDLE", "http://"), ("REPLACEMENT", "https://")],
                "https://google.de",
            ),
            (r"${FOO//\//\/}", &[("FOO", "/tmp/foo.txt")], r"\/tmp\/foo.txt"),
            ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy"),
            ("${FOO///}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO///}", &[], ""),
        ];
        for (word, vars, want) in cases {
            assert_eq!(with(vars, word).as_deref(), Ok(*want), "{word} with {vars:?}");
        }
        for word in ["${FOO//ww}", "${FOO//}", r"${FOO#\x}", "${FOO=aaa}", "${FOO#x"] {
            assert!(with(&[("FOO", "xxyy")], word).is_err(), "{word} should fail");
        }
    }

    #[test]
    fn patterns_follow_shell_globs() {
        let v = &[("F", "archive.tar.gz"), ("P", "/usr/local/bin/tool"), ("N", "a\nb")];
        assert_eq!(with(v, "${F%.*}").unwrap(), "archive.tar");
        assert_eq!(with(v, "${F%%.*}").unwrap(), "archive");
        assert_eq!(with(v, "${F#*.}").unwrap(), "tar.gz");
        assert_eq!(with(v, "${F##*.}").unwrap(), "gz");
        assert_eq!(with(v, "${P##*/}").unwrap(), "tool");
        assert_eq!(with(v, "${P%/*}").unwrap(), "/usr/local/bin");
        assert_eq!(with(v, "${F/tar/zip}").unwrap(), "archive.zip.gz");
        assert_eq!(with(v, "${F//a/_}").unwrap(), "_rchive.t_r.gz");
        assert_eq!(with(v, "${F/#arch/x}").unwrap(), "archive.tar.gz", "no anchors: '#' is literal");
        assert_eq!(with(v, "${F:#archive}").unwrap(), ".tar.gz");
        assert_eq!(with(v, "${NOPE#x}").unwrap(), "");
        // Neither `*` nor `?` matches a newline (Go's `.`).
        assert_eq!(with(v, "${N#*b}").unwrap(), "a\nb");
        assert_eq!(with(v, "${N#a?}").unwrap(), "a\nb");
        // Quotes in the word are removed; `$` inside is expanded.
        assert_eq!(with(v, "${F%'.gz'}").unwrap(), "archive.tar");
        // Every empty match of `//` is replaced, as Go's ReplaceAllString does.
        assert_eq!(with(&[("X", "ab")], "${X//*/-}").unwrap(), "-");
        assert_eq!(with(&[("X", "ab")], "${X//$E/-}").unwrap(), "-a-b-");
    }

    #[test]
    fn long_patterns_and_values_take_no_deep_recursion() {
        let value = "ab".repeat(50);
        let pattern = "?*".repeat(25_000);
        let word = format!("${{V#{pattern}}}|${{V%%*b}}|${{V//a*b/x}}|${{V#{}}}", "?*".repeat(50));
        assert_eq!(with(&[("V", &value)], &word).unwrap(), format!("{value}||x|{}", "ab".repeat(25)));
    }

    proptest::proptest! {
        /// Any word, with any variables, expands or fails with an error: never a panic.
        #[test]
        fn never_panics(word in "[$\\{}#%/*?:+\\-'\"ab\n ]{0,40}", value in "[ab*?/\\\n]{0,12}") {
            let map = std::collections::HashMap::from([("a".to_string(), value)]);
            let _ = expand(&word, '\\', &|n| map.get(n).cloned());
            let _ = expand_keep_quotes(&word, '`', &|n| map.get(n).cloned());
        }
    }

    #[test]
    fn required_variables_say_why() {
        assert_eq!(with(&[("E", "")], "${E:?}").unwrap_err().to_string(), "E: is not allowed to be empty");
        assert_eq!(with(&[], "${E:?}").unwrap_err().to_string(), "E: is not allowed to be unset");
        assert_eq!(with(&[("E", "")], "${E?}").unwrap(), "");
    }

    #[test]
    fn handles_quotes_and_escapes() {
        assert_eq!(x("'$A'"), "$A");
        assert_eq!(x("\"$A b\""), "apple b");
        assert_eq!(x("\\$A"), "$A");
        assert_eq!(x("\"\\$A\""), "$A");
        assert_eq!(x("\"a\\\"b\""), "a\"b");
        assert_eq!(x("\"a\\nb\""), "a\\nb");
        assert_eq!(x("a\\ b"), "a b");
        assert_eq!(expand("`$A", '`', &env).unwrap(), "$A");
        assert!(expand("'open", '\\', &env).is_err());
        assert!(expand("\"open", '\\', &env).is_err());
    }

    #[test]
    fn splits_words_outside_quotes() {
        assert_eq!(split_words(r#"a "b c" 'd e'  f\ g"#, '\\'), ["a", "\"b c\"", "'d e'", "f\\ g"]);
        assert_eq!(expand_words(r#"$A "$SP" $SP"#, '\\', &env).unwrap(), ["apple", "a b", "a b"]);
    }

    #[test]
    fn keeps_quotes_in_heredoc_bodies() {
        assert_eq!(expand_keep_quotes("echo \"$A\" '$A' \\$A\n", '\\', &env).unwrap(), "echo \"apple\" 'apple' $A\n");
    }
}
