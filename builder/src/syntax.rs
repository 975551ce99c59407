//! The Dockerfile lexer: text in, a list of raw instruction nodes out, the way BuildKit's
//! Dockerfile frontend (`frontend/dockerfile/parser`) reads a file.
//!
//! - **Parser directives** (`# syntax=…`, `# escape=…`, `# check=…`) are recognised only at the
//!   top of the file, before the first comment, blank line or instruction; each at most once.
//! - **Comments** are lines whose first non-blank character is `#`; they may also sit between
//!   continued lines, where they are dropped, as are blank lines.
//! - **Line continuations**: a line ending with the escape character (`\`, or `` ` `` with
//!   `# escape=`` ` ``), optionally followed by blanks, continues on the next line.
//! - **Flags** (`--name=value`, `--name`) are the words right after the keyword that start
//!   with `--`.
//! - **Heredocs** (`<<EOF`, `<<-EOF` which strips leading tabs, `<<"EOF"`/`<<'EOF'` whose body
//!   is not expanded) are read for `RUN`, `COPY` and `ADD`: their bodies follow the
//!   instruction's line, in the order the markers appear.
//!
//! Every node remembers where it came from, and [`SyntaxError`] names the file, line and
//! column. What the arguments mean is [`crate::instructions`]' business.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a Dockerfile: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A Dockerfile that cannot be read, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{pos}: {message}", file.display())]
pub struct SyntaxError {
    /// The Dockerfile.
    pub file: PathBuf,
    /// Where the problem is.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

/// The parser directives found at the top of a file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directives {
    /// `# syntax=` (recorded; berth always uses its own frontend).
    pub syntax: Option<String>,
    /// `# escape=`: `\` (the default) or `` ` ``.
    pub escape: Option<char>,
    /// `# check=` (recorded, not acted on).
    pub check: Option<String>,
}

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator word (`EOF`).
    pub name: String,
    /// The body, each line ending in `\n`, leading tabs removed for `<<-`.
    pub content: String,
    /// False when the terminator was quoted: the body is taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs were stripped.
    pub chomp: bool,
}

/// A `--name[=value]` flag as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The name without the dashes.
    pub name: String,
    /// The value with its quotes removed; `None` for a bare `--name`.
    pub value: Option<String>,
    /// Where the flag starts.
    pub pos: Pos,
}

/// One instruction as the lexer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword, upper case (`RUN`).
    pub keyword: String,
    /// The flags after the keyword.
    pub flags: Vec<Flag>,
    /// The rest of the instruction after the flags, continuation lines joined (the escape
    /// character and the line break removed), as written otherwise.
    pub rest: String,
    /// Where `rest` starts.
    pub rest_pos: Pos,
    /// The whole instruction as written on its lines, joined like `rest`.
    pub original: String,
    /// Heredocs, in the order their markers appear in `rest`.
    pub heredocs: Vec<Heredoc>,
    /// Where the keyword is.
    pub pos: Pos,
    /// The last line the instruction (with its heredocs) uses.
    pub end_line: usize,
    /// Positions of the joined text: `(offset in original, position)` at each line start.
    segments: Vec<(usize, Pos)>,
    /// Offset of `rest` inside `original`.
    rest_offset: usize,
}

impl Node {
    /// The position of byte `offset` of [`Node::rest`].
    pub fn pos_in_rest(&self, offset: usize) -> Pos {
        self.pos_at(self.rest_offset + offset)
    }

    fn pos_at(&self, offset: usize) -> Pos {
        let mut found = self.pos;
        for (start, pos) in &self.segments {
            if *start <= offset {
                let column = self.original[*start..offset.min(self.original.len())].chars().count();
                found = Pos { line: pos.line, column: pos.column + column };
            }
        }
        found
    }
}

/// A lexed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The file it was read from (for messages).
    pub file: PathBuf,
    /// Its parser directives.
    pub directives: Directives,
    /// The escape character in force.
    pub escape: char,
    /// Its instructions.
    pub nodes: Vec<Node>,
}

/// The instructions that take heredocs.
const HEREDOC_KEYWORDS: &[&str] = &["RUN", "COPY", "ADD"];

/// Every keyword BuildKit knows.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Lexes `text`, read from `file` (used in messages only).
pub fn parse(text: &str, file: &Path) -> Result<Dockerfile, SyntaxError> {
    let err = |line: usize, column: usize, message: String| SyntaxError {
        file: file.to_path_buf(),
        pos: Pos { line, column },
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut directives = Directives::default();
    let mut i = 0;
    // Directives: only before anything else.
    while i < lines.len() {
        let Some((name, value)) = directive(lines[i]) else { break };
        let lower = name.to_ascii_lowercase();
        let slot_taken = match lower.as_str() {
            "escape" => directives.escape.is_some(),
            "syntax" => directives.syntax.is_some(),
            "check" => directives.check.is_some(),
            // Unknown directives are comments, and end the directive section.
            _ => break,
        };
        if slot_taken {
            return Err(err(i + 1, 1, format!("only one {lower} parser directive can be used")));
        }
        match lower.as_str() {
            "escape" => {
                let c = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => return Err(err(i + 1, 1, format!("invalid escape token {other:?}: must be ` or \\"))),
                };
                directives.escape = Some(c);
            }
            "syntax" => directives.syntax = Some(value),
            _ => directives.check = Some(value),
        }
        i += 1;
    }
    let escape = directives.escape.unwrap_or('\\');

    let mut nodes = Vec::new();
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start_line = i + 1;
        let start_col = line.len() - trimmed.len();
        // Join continuation lines.
        let mut original = String::new();
        let mut segments = vec![(0usize, Pos { line: start_line, column: start_col + 1 })];
        let mut current = &line[start_col..];
        loop {
            match continued(current, escape) {
                Some(head) => {
                    original.push_str(head);
                    i += 1;
                    // Skip comments and blank lines inside a continuation.
                    while i < lines.len() {
                        let t = lines[i].trim_start();
                        if t.starts_with('#') || t.trim().is_empty() {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    if i >= lines.len() {
                        break;
                    }
                    segments.push((original.len(), Pos { line: i + 1, column: 1 }));
                    current = lines[i];
                }
                None => {
                    original.push_str(current);
                    i += 1;
                    break;
                }
            }
        }
        let mut end_line = i.max(start_line);

        // Keyword.
        let keyword_len = original.find(|c: char| c.is_whitespace()).unwrap_or(original.len());
        let keyword = original[..keyword_len].to_ascii_uppercase();
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(err(start_line, start_col + 1, format!("unknown instruction: {}", &original[..keyword_len])));
        }
        let mut node = Node {
            keyword: keyword.clone(),
            flags: Vec::new(),
            rest: String::new(),
            rest_pos: Pos::default(),
            original: original.clone(),
            heredocs: Vec::new(),
            pos: Pos { line: start_line, column: start_col + 1 },
            end_line,
            segments,
            rest_offset: 0,
        };
        // Flags.
        let mut offset = keyword_len;
        loop {
            let skipped = original[offset..].len() - original[offset..].trim_start().len();
            offset += skipped;
            if !original[offset..].starts_with("--") {
                break;
            }
            let (word, len) = flag_word(&original[offset..], escape);
            let pos = node.pos_at(offset);
            let body = &word[2..];
            if body.is_empty() {
                return Err(SyntaxError { file: file.to_path_buf(), pos, message: "empty flag name \"--\"".into() });
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            node.flags.push(Flag { name, value, pos });
            offset += len;
        }
        node.rest_offset = offset;
        node.rest = original[offset..].trim_end().to_string();
        node.rest_pos = node.pos_at(offset);

        // Heredocs.
        if HEREDOC_KEYWORDS.contains(&keyword.as_str()) {
            for (name, expand, chomp) in heredoc_markers(&node.rest) {
                let mut content = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let body_line = lines[i];
                    i += 1;
                    let body_line = if chomp { body_line.trim_start_matches('\t') } else { body_line };
                    if body_line == name {
                        closed = true;
                        break;
                    }
                    content.push_str(body_line);
                    content.push('\n');
                }
                if !closed {
                    return Err(err(start_line, start_col + 1, format!("unterminated heredoc {name}")));
                }
                end_line = i;
                node.heredocs.push(Heredoc { name, content, expand, chomp });
            }
        }
        node.end_line = end_line;
        nodes.push(node);
    }
    Ok(Dockerfile { file: file.to_path_buf(), directives, escape, nodes })
}

/// `# name = value` at the top of a file.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
        || !name.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

/// When `line` ends with the escape character (and optional blanks), the line without them.
fn continued(line: &str, escape: char) -> Option<&str> {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let head = trimmed.strip_suffix(escape)?;
    Some(head)
}

/// The flag word at the start of `text` with its quotes removed, and how many bytes it took.
fn flag_word(text: &str, escape: char) -> (String, usize) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) if c == escape && quote == Some('"') => {
                if let Some((_, next)) = chars.next() {
                    word.push(next);
                }
            }
            Some(_) => word.push(c),
            None if c.is_whitespace() => return (word, i),
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == escape => {
                if let Some((_, next)) = chars.next() {
                    word.push(next);
                }
            }
            None => word.push(c),
        }
    }
    (word, text.len())
}

/// The heredoc markers in an instruction's arguments: `(terminator, expand, chomp)`.
pub fn heredoc_markers(rest: &str) -> Vec<(String, bool, bool)> {
    let mut found = Vec::new();
    for word in split_words_keep_quotes(rest) {
        let Some(marker) = word.strip_prefix("<<") else { continue };
        let (chomp, marker) = match marker.strip_prefix('-') {
            Some(m) => (true, m),
            None => (false, marker),
        };
        // `<<EOF>file` style redirections: the terminator ends at the first non-word char.
        let (quoted, name) = if let Some(inner) = marker.strip_prefix('"').and_then(|m| m.split('"').next()) {
            (true, inner.to_string())
        } else if let Some(inner) = marker.strip_prefix('\'').and_then(|m| m.split('\'').next()) {
            (true, inner.to_string())
        } else {
            (false, marker.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
        };
        if name.is_empty() {
            continue;
        }
        found.push((name, !quoted, chomp));
    }
    found
}

/// Splits on unquoted whitespace, keeping quotes and escapes as written.
pub fn split_words_keep_quotes(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                word.push(c);
                if c == q {
                    quote = None;
                } else if c == '\\' && q == '"' {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                word.push(c);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                } else if c == '\\' {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(text: &str) -> Dockerfile {
        parse(text, Path::new("Dockerfile")).unwrap()
    }

    fn lex_err(text: &str) -> SyntaxError {
        parse(text, Path::new("Dockerfile")).unwrap_err()
    }

    #[test]
    fn reads_directives_only_at_the_top() {
        let df = lex("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\nRUN echo a `\n  b\n");
        assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(df.escape, '`');
        assert_eq!(df.nodes[1].rest, "echo a   b");

        // After a comment, `# escape=` is a comment.
        let df = lex("# hello\n# escape=`\nFROM x\n");
        assert_eq!(df.escape, '\\');
        // After a blank line too.
        let df = lex("\n# escape=`\nFROM x\n");
        assert_eq!(df.escape, '\\');
        // Case-insensitive names, blanks allowed.
        let df = lex("#  ESCAPE = ` \nFROM x\n");
        assert_eq!(df.escape, '`');
    }

    #[test]
    fn refuses_repeated_and_bad_directives() {
        let e = lex_err("# escape=\\\n# escape=`\nFROM x\n");
        assert_eq!((e.pos.line, e.pos.column), (2, 1));
        assert!(e.message.contains("only one escape"), "{e}");
        let e = lex_err("# escape=x\nFROM x\n");
        assert!(e.message.contains("invalid escape"), "{e}");
    }

    #[test]
    fn joins_continuations_and_drops_comments_inside() {
        let df = lex("FROM busybox\nRUN echo one \\\n# a comment\n\n    two \\  \n three\nCMD x\n");
        assert_eq!(df.nodes.len(), 3);
        assert_eq!(df.nodes[1].rest, "echo one     two  three");
        assert_eq!(df.nodes[1].pos, Pos { line: 2, column: 1 });
        assert_eq!(df.nodes[1].end_line, 6);
        assert_eq!(df.nodes[2].pos.line, 7);
        // A continuation at the end of the file ends the instruction.
        let df = lex("FROM x\nRUN a \\");
        assert_eq!(df.nodes[1].rest, "a");
    }

    #[test]
    fn reads_flags_with_quotes() {
        let df = lex("COPY --from=build --chown=\"1 000\" --link a b\n");
        let flags: Vec<_> = df.nodes[0].flags.iter().map(|f| (f.name.as_str(), f.value.as_deref())).collect();
        assert_eq!(flags, [("from", Some("build")), ("chown", Some("1 000")), ("link", None)]);
        assert_eq!(df.nodes[0].rest, "a b");
        assert_eq!(df.nodes[0].flags[1].pos, Pos { line: 1, column: 19 });
        assert_eq!(df.nodes[0].rest_pos, Pos { line: 1, column: 42 });
    }

    #[test]
    fn positions_follow_continuations() {
        let df = lex("FROM x\n  RUN --network=none \\\n  --mount=type=cache,target=/c \\\n echo\n");
        let run = &df.nodes[1];
        assert_eq!(run.pos, Pos { line: 2, column: 3 });
        assert_eq!(run.flags[1].pos, Pos { line: 3, column: 3 });
        assert_eq!(run.rest_pos, Pos { line: 4, column: 2 });
    }

    #[test]
    fn reads_heredocs() {
        let text =
            "FROM x\nRUN <<EOF\necho $A\nEOF\nCOPY <<-\"one\" <<two /dst/\n\t\thello\n\tone\nworld\ntwo\nCMD x\n";
        let df = lex(text);
        assert_eq!(df.nodes.len(), 4);
        let run = &df.nodes[1];
        assert_eq!(
            run.heredocs,
            [Heredoc { name: "EOF".into(), content: "echo $A\n".into(), expand: true, chomp: false }]
        );
        assert_eq!(run.end_line, 4);
        let copy = &df.nodes[2];
        assert_eq!(
            copy.heredocs[0],
            Heredoc { name: "one".into(), content: "hello\n".into(), expand: false, chomp: true }
        );
        assert_eq!(copy.heredocs[1].content, "world\n");
        assert_eq!(df.nodes[3].pos.line, 10);
        // Heredocs are not read for other instructions.
        let df = lex("FROM x\nENV A=<<EOF\nCMD x\n");
        assert_eq!(df.nodes.len(), 3);
    }

    #[test]
    fn refuses_unknown_instructions_and_open_heredocs() {
        let e = lex_err("FROM x\n\n   FOO bar\n");
        assert_eq!(e.to_string(), "Dockerfile:3:4: unknown instruction: FOO");
        let e = lex_err("FROM x\nRUN <<EOF\necho\n");
        assert_eq!((e.pos.line, e.message.as_str()), (2, "unterminated heredoc EOF"));
        let e = lex_err("FROM x\nRUN -- x\n");
        assert_eq!(e.pos, Pos { line: 2, column: 5 });
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let df = lex("from x as y\nrun echo\n");
        assert_eq!(df.nodes[0].keyword, "FROM");
        assert_eq!(df.nodes[0].rest, "x as y");
        assert_eq!(df.nodes[1].keyword, "RUN");
    }
}
