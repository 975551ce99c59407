//! Variable expansion in Dockerfile words, as BuildKit's shell lexer (`frontend/dockerfile/
//! shell/lex.go`) does it for the instructions that expand (`FROM`, `COPY`, `ADD`, `ENV`,
//! `ARG`, `LABEL`, `EXPOSE`, `WORKDIR`, `USER`, `VOLUME`, `STOPSIGNAL`, the heredoc bodies of
//! `COPY`): `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
//! `${VAR:?message}`, `${VAR?message}`, single quotes taken literally, double quotes with
//! expansion, and the escape character. Quotes are removed from the result.
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
    /// `${VAR:?message}` with VAR unset.
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
    lexer.process(None, true)
}

/// Expands without removing quotes (heredoc bodies keep their quotes).
pub fn expand_keep_quotes(
    text: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let chars: Vec<char> = text.chars().collect();
    let mut lexer = Lexer { chars: &chars, i: 0, escape, lookup, word: text };
    lexer.process(None, false)
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

    /// Processes until `stop` (consumed) or the end.
    fn process(&mut self, stop: Option<char>, unquote: bool) -> Result<String, ExpandError> {
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                if stop.is_some() {
                    return Err(self.unterminated("}"));
                }
                return Ok(out);
            };
            if Some(c) == stop {
                self.i += 1;
                return Ok(out);
            }
            self.i += 1;
            match c {
                '\'' if unquote => out.push_str(&self.single_quote()?),
                '"' if unquote => out.push_str(&self.double_quote()?),
                '$' => out.push_str(&self.dollar()?),
                c if c == self.escape && unquote => {
                    if let Some(n) = self.next() {
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

    fn double_quote(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(self.unterminated("\"")),
                Some('"') => return Ok(out),
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) if c == self.escape => match self.peek() {
                    None => {}
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.i += 1;
                        out.push(n);
                    }
                    Some(_) => out.push(c),
                },
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
        match c {
            '}' => Ok(value.unwrap_or_default()),
            ':' | '-' | '+' | '?' => {
                let (colon, op) = if c == ':' {
                    match self.next() {
                        Some(op @ ('-' | '+' | '?')) => (true, op),
                        Some(other) => {
                            return Err(ExpandError::Modifier { modifier: other, word: self.word.to_string() })
                        }
                        None => return Err(self.unterminated("}")),
                    }
                } else {
                    (false, c)
                };
                let word = self.process(Some('}'), true)?;
                let set = match &value {
                    Some(v) => !colon || !v.is_empty(),
                    None => false,
                };
                Ok(match op {
                    '-' => {
                        if set {
                            value.unwrap_or_default()
                        } else {
                            word
                        }
                    }
                    '+' => {
                        if set {
                            word
                        } else {
                            String::new()
                        }
                    }
                    _ => {
                        if set {
                            value.unwrap_or_default()
                        } else {
                            let message = if word.is_empty() { "is not allowed to be unset".to_string() } else { word };
                            return Err(ExpandError::Required { name, message });
                        }
                    }
                })
            }
            other => Err(ExpandError::Modifier { modifier: other, word: self.word.to_string() }),
        }
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
