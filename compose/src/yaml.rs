//! YAML in and out for compose files.
//!
//! [`parse`] reads one document into a `serde_json::Value` (the model every later step works
//! on) and a [`Lines`] index from each node's JSON pointer to the line it starts on, so that
//! the schema validator and the loader can name the line of a key. Scalars resolve by the
//! YAML 1.2 core schema, as Docker Compose's Go YAML library does; anchors, aliases and merge
//! keys (`<<`) are expanded here. Compose's `!reset` and `!override` tags are reported in
//! [`Parsed::tags`] for the merge step. [`emit`] prints a value back as block-style YAML.

use std::collections::{BTreeMap, HashMap};

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// Where a YAML document could not be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// The line (1-based) each node starts on, keyed by its JSON pointer (`/services/web/image`);
/// for a mapping entry, the line of its key.
#[derive(Debug, Default, Clone)]
pub struct Lines(HashMap<String, usize>);

impl Lines {
    /// The line of `pointer`, or of its nearest ancestor that has one.
    pub fn line_of(&self, pointer: &str) -> Option<usize> {
        let mut p = pointer;
        loop {
            if let Some(line) = self.0.get(p) {
                return Some(*line);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }
}

/// A merge directive of compose (`!reset`, `!override`) on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeTag {
    /// The node's value replaces what earlier files said, unmerged.
    Override,
    /// The node removes what earlier files said.
    Reset,
}

/// One parsed document.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The document (`null` for an empty file).
    pub value: Value,
    /// Lines of the nodes.
    pub lines: Lines,
    /// Nodes tagged `!reset` or `!override`, by JSON pointer.
    pub tags: BTreeMap<String, MergeTag>,
}

/// Escapes a key as a JSON pointer token (RFC 6901).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Parses the first document of `text`.
pub fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let mut builder =
        Builder { events: Vec::new(), pos: 0, anchors: HashMap::new(), expanded: 0, out: Parsed::default() };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        builder.events.push((event, span));
    }
    // StreamStart, DocumentStart, the root node.
    while builder.pos < builder.events.len() {
        match builder.events[builder.pos].0 {
            Event::StreamStart | Event::DocumentStart(_) => builder.pos += 1,
            Event::StreamEnd => return Ok(builder.out),
            _ => break,
        }
    }
    let value = builder.node("")?;
    builder.out.value = value;
    Ok(builder.out)
}

struct Builder<'a> {
    events: Vec<(Event<'a>, Span)>,
    pos: usize,
    anchors: HashMap<usize, Value>,
    /// Nodes copied by aliases so far, against [`MAX_EXPANDED`].
    expanded: usize,
    out: Parsed,
}

/// Most nodes aliases may copy in one document: nested aliases grow exponentially ("billion
/// laughs"), and no real compose file comes near this.
const MAX_EXPANDED: usize = 1_000_000;

fn node_count(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(node_count).sum::<usize>(),
        _ => 1,
    }
}

fn syntax(span: &Span, message: impl Into<String>) -> SyntaxError {
    SyntaxError { line: span.start.line(), column: span.start.col() + 1, message: message.into() }
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        let item = self.events.get(self.pos).cloned().ok_or_else(|| SyntaxError {
            line: 0,
            column: 0,
            message: "unexpected end of the document".into(),
        })?;
        self.pos += 1;
        Ok(item)
    }

    /// Reads one node at `pointer`.
    fn node(&mut self, pointer: &str) -> Result<Value, SyntaxError> {
        let (event, span) = self.next()?;
        self.out.lines.0.entry(pointer.to_string()).or_insert(span.start.line());
        let (anchor, tag, value) = match event {
            Event::Alias(id) => {
                let value = self.anchors.get(&id).ok_or_else(|| syntax(&span, "unknown alias"))?;
                self.expanded += node_count(value);
                if self.expanded > MAX_EXPANDED {
                    return Err(syntax(&span, format!("aliases expand to more than {MAX_EXPANDED} nodes")));
                }
                return Ok(value.clone());
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| t.suffix.clone());
                let value = scalar(&text, style, tag.as_deref());
                (anchor, tag, value)
            }
            Event::SequenceStart(anchor, tag) => {
                let tag = tag.map(|t| t.suffix.clone());
                let mut items = Vec::new();
                loop {
                    if matches!(self.events.get(self.pos), Some((Event::SequenceEnd, _))) {
                        self.pos += 1;
                        break;
                    }
                    let child = format!("{pointer}/{}", items.len());
                    items.push(self.node(&child)?);
                }
                (anchor, tag, Value::Array(items))
            }
            Event::MappingStart(anchor, tag) => {
                let tag = tag.map(|t| t.suffix.clone());
                (anchor, tag, self.mapping(pointer, &span)?)
            }
            _ => return Err(syntax(&span, "unexpected YAML event")),
        };
        match tag.as_deref() {
            Some("reset") => {
                self.out.tags.insert(pointer.to_string(), MergeTag::Reset);
            }
            Some("override") => {
                self.out.tags.insert(pointer.to_string(), MergeTag::Override);
            }
            _ => {}
        }
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        Ok(value)
    }

    /// Reads a mapping's entries (after its start event) up to its end; merge keys fill in
    /// the keys the mapping does not set itself.
    fn mapping(&mut self, pointer: &str, span: &Span) -> Result<Value, SyntaxError> {
        let mut map = Map::new();
        let mut merged: Vec<Value> = Vec::new();
        loop {
            let (event, key_span) = self.next()?;
            let key = match event {
                Event::MappingEnd => break,
                Event::Scalar(text, _, _, _) => text.into_owned(),
                Event::Alias(id) => match self.anchors.get(&id) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                    _ => return Err(syntax(&key_span, "a mapping key must be a scalar")),
                },
                _ => return Err(syntax(&key_span, "a mapping key must be a scalar")),
            };
            let child = format!("{pointer}/{}", pointer_token(&key));
            if key == "<<" {
                let value = self.node(&child)?;
                match value {
                    Value::Object(_) => merged.push(value),
                    Value::Array(items) if items.iter().all(Value::is_object) => merged.extend(items),
                    _ => return Err(syntax(&key_span, "a merge key (<<) takes a mapping or a list of mappings")),
                }
                continue;
            }
            if map.contains_key(&key) {
                return Err(syntax(&key_span, format!("mapping key {key:?} already defined")));
            }
            self.out.lines.0.insert(child.clone(), key_span.start.line());
            let value = self.node(&child)?;
            map.insert(key, value);
        }
        for source in merged {
            if let Value::Object(entries) = source {
                for (k, v) in entries {
                    if !map.contains_key(&k) {
                        self.out.lines.0.entry(format!("{pointer}/{}", pointer_token(&k))).or_insert(span.start.line());
                        map.insert(k, v);
                    }
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// Resolves a scalar by the YAML 1.2 core schema (plain scalars only; quoted ones and block
/// scalars are strings), honouring the core tags `!!str`, `!!int`, `!!float`, `!!bool`.
fn scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Value {
    match tag {
        Some("str") => return Value::String(text.to_string()),
        Some("null") => return Value::Null,
        _ => {}
    }
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return float(f64::INFINITY, text),
        "-.inf" | "-.Inf" | "-.INF" => return float(f64::NEG_INFINITY, text),
        _ => {}
    }
    if let Some(n) = integer(text) {
        return n;
    }
    if is_float(text) {
        if let Ok(f) = text.parse::<f64>() {
            return float(f, text);
        }
    }
    Value::String(text.to_string())
}

/// JSON has no infinities: such values stay the text they were written as.
fn float(f: f64, text: &str) -> Value {
    Number::from_f64(f).map(Value::Number).unwrap_or_else(|| Value::String(text.to_string()))
}

fn integer(text: &str) -> Option<Value> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = digits.strip_prefix("0x") {
        (16, hex)
    } else if let Some(oct) = digits.strip_prefix("0o") {
        (8, oct)
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    let n = if negative { -magnitude } else { magnitude };
    if let Ok(i) = i64::try_from(n) {
        Some(Value::Number(i.into()))
    } else {
        u64::try_from(n).ok().map(|u| Value::Number(u.into()))
    }
}

fn is_float(text: &str) -> bool {
    let t = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && (!int.is_empty() || !frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok && (mantissa.contains('.') || exponent.is_some())
}

/// Prints `value` as block-style YAML (two-space indents, lists indented under their key,
/// as `docker compose config` prints them).
pub fn emit(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => emit_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => emit_seq(items, 0, &mut out),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn emit_map(map: &Map<String, Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(key));
        out.push(':');
        emit_child(value, indent + 2, out);
    }
}

fn emit_seq(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first entry goes on the dash's line.
                let mut nested = String::new();
                emit_map(map, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            _ => emit_child(item, indent + 2, out),
        }
    }
}

fn emit_child(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            emit_map(map, indent, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            emit_seq(items, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string as a plain scalar when it reads back as the same string, else double-quoted
/// (JSON's escapes are valid YAML).
fn string(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && !s.starts_with(|c: char| c.is_whitespace() || "-?:,[]{}#&*!|>'\"%@`".contains(c))
        && !s.ends_with(|c: char| c.is_whitespace() || c == ':')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.chars().any(|c| c.is_control())
        && matches!(scalar(s, ScalarStyle::Plain, None), Value::String(_))
        && !matches!(
            s,
            "y" | "Y"
                | "yes"
                | "Yes"
                | "YES"
                | "n"
                | "N"
                | "no"
                | "No"
                | "NO"
                | "on"
                | "On"
                | "ON"
                | "off"
                | "Off"
                | "OFF"
        );
    if plain_ok {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_resolve_as_yaml_1_2() {
        let p = parse("a: 1\nb: '1'\nc: true\nd: yes\ne: ~\nf: 1.5\ng: 0x10\nh: 1e3\ni:\nj: 0o17\nk: 012\n").unwrap();
        assert_eq!(
            p.value,
            json!({"a": 1, "b": "1", "c": true, "d": "yes", "e": null, "f": 1.5, "g": 16, "h": 1000.0, "i": null, "j": 15, "k": 12})
        );
    }

    #[test]
    fn lines_name_each_key() {
        let p = parse("services:\n  web:\n    image: x\n    ports:\n      - 80\n      - 81\n").unwrap();
        assert_eq!(p.lines.line_of("/services/web/image"), Some(3));
        assert_eq!(p.lines.line_of("/services/web/ports/1"), Some(6));
        assert_eq!(p.lines.line_of("/services/web/ports/1/x"), Some(6));
    }

    #[test]
    fn anchors_aliases_and_merge_keys_expand() {
        let p = parse("x: &base\n  a: 1\n  b: 2\ny:\n  <<: *base\n  b: 3\nz: *base\n").unwrap();
        assert_eq!(p.value, json!({"x": {"a": 1, "b": 2}, "y": {"a": 1, "b": 3}, "z": {"a": 1, "b": 2}}));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = parse(&doc).unwrap_err();
        assert!(e.message.contains("aliases expand"), "{e}");
    }

    #[test]
    fn merge_tags_are_recorded() {
        let p = parse("services:\n  web:\n    ports: !reset []\n    command: !override [a]\n").unwrap();
        assert_eq!(p.tags.get("/services/web/ports"), Some(&MergeTag::Reset));
        assert_eq!(p.tags.get("/services/web/command"), Some(&MergeTag::Override));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse("services:\n  web:\n    image: [a\n").unwrap_err();
        assert!(e.line >= 3, "{e}");
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn emitted_yaml_reads_back_the_same() {
        let v = json!({"name": "p", "s": {"a": ["x", "1", "true", "", "a: b", "-x", {"k": "v", "n": null}], "e": {}, "l": []},
                       "n": 3, "f": 1.5, "yes": "no", "multi": "a\nb", "dollar": "$$HOME"});
        assert_eq!(parse(&emit(&v)).unwrap().value, v);
    }
}
