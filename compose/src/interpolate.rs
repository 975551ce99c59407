//! Variable substitution in compose files (the spec's interpolation chapter) and the `.env`
//! files that feed it. Called by the loader on every string value of a file (never on keys),
//! before validation, with the project's environment: the process environment over `.env`.

use std::collections::BTreeMap;

use serde_json::Value;

/// A variable lookup: the project's environment.
pub type Env = BTreeMap<String, String>;

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// `${` without a closing brace, a bad name, or a `$` that starts nothing.
    #[error(
        "invalid interpolation format for {text:?}: use ${{VAR}}, ${{VAR:-default}}, ... and write $$ for a literal $"
    )]
    Invalid {
        /// The string as written.
        text: String,
    },
    /// A value that must be a boolean or a number is neither.
    #[error("failed to cast to expected type: {message}")]
    Cast {
        /// What the value is not.
        message: String,
    },
    /// `${VAR:?message}` or `${VAR?message}` and the variable is missing (or empty).
    #[error("required variable {name} is missing a value: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The file's message.
        message: String,
    },
}

/// Replaces the variables of every string in `value` (not mapping keys) and converts the
/// strings of boolean and number keys, reporting the JSON pointer of the first that fails.
pub fn interpolate_value(value: &mut Value, env: &Env, pointer: &str) -> Result<(), (String, InterpolateError)> {
    match value {
        Value::String(s) => {
            let text =
                if s.contains('$') { interpolate(s, env).map_err(|e| (pointer.to_string(), e))? } else { s.clone() };
            *value = cast(pointer, text).map_err(|e| (pointer.to_string(), e))?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, env, &format!("{pointer}/{i}"))?;
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                interpolate_value(v, env, &format!("{pointer}/{}", crate::yaml::pointer_token(k)))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The keys whose value is a boolean or a number in the model, as Compose lists them (`*`
/// matches any one key or index); a string there (`read_only: ${RO}`, `init: "yes"`) is
/// converted, so that the schema accepts what interpolation made.
const CASTS: &[(&str, Cast)] = &[
    ("services.*.configs.*.mode", Cast::Int),
    ("services.*.secrets.*.mode", Cast::Int),
    ("services.*.cpu_count", Cast::Int),
    ("services.*.cpu_percent", Cast::Float),
    ("services.*.cpu_period", Cast::Int),
    ("services.*.cpu_quota", Cast::Int),
    ("services.*.cpu_rt_period", Cast::Int),
    ("services.*.cpu_rt_runtime", Cast::Int),
    ("services.*.cpus", Cast::Float),
    ("services.*.cpu_shares", Cast::Int),
    ("services.*.init", Cast::Bool),
    ("services.*.depends_on.*.required", Cast::Bool),
    ("services.*.depends_on.*.restart", Cast::Bool),
    ("services.*.deploy.replicas", Cast::Int),
    ("services.*.deploy.restart_policy.max_attempts", Cast::Int),
    ("services.*.healthcheck.retries", Cast::Int),
    ("services.*.healthcheck.disable", Cast::Bool),
    ("services.*.oom_kill_disable", Cast::Bool),
    ("services.*.oom_score_adj", Cast::Int),
    ("services.*.pids_limit", Cast::Int),
    ("services.*.ports.*.target", Cast::Int),
    ("services.*.privileged", Cast::Bool),
    ("services.*.read_only", Cast::Bool),
    ("services.*.scale", Cast::Int),
    ("services.*.stdin_open", Cast::Bool),
    ("services.*.tty", Cast::Bool),
    ("services.*.ulimits.*", Cast::Int),
    ("services.*.ulimits.*.hard", Cast::Int),
    ("services.*.ulimits.*.soft", Cast::Int),
    ("services.*.volumes.*.read_only", Cast::Bool),
    ("services.*.volumes.*.volume.nocopy", Cast::Bool),
    ("networks.*.external", Cast::Bool),
    ("networks.*.internal", Cast::Bool),
    ("networks.*.attachable", Cast::Bool),
    ("networks.*.enable_ipv4", Cast::Bool),
    ("networks.*.enable_ipv6", Cast::Bool),
    ("volumes.*.external", Cast::Bool),
    ("secrets.*.external", Cast::Bool),
    ("configs.*.external", Cast::Bool),
];

#[derive(Clone, Copy)]
enum Cast {
    Bool,
    Int,
    Float,
}

fn cast(pointer: &str, text: String) -> Result<Value, InterpolateError> {
    let keys: Vec<&str> = pointer.split('/').skip(1).collect();
    let rule = CASTS.iter().find(|(pattern, _)| {
        let parts: Vec<&str> = pattern.split('.').collect();
        parts.len() == keys.len() && parts.iter().zip(&keys).all(|(p, k)| *p == "*" || p == k)
    });
    let Some((_, kind)) = rule else { return Ok(Value::String(text)) };
    let fail = |what: &str| InterpolateError::Cast { message: format!("invalid {what}: {text}") };
    match kind {
        Cast::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" => Ok(Value::Bool(true)),
            "false" | "no" | "n" | "off" => Ok(Value::Bool(false)),
            _ => Err(fail("boolean")),
        },
        Cast::Int => text.parse::<i64>().map(|n| Value::Number(n.into())).map_err(|_| fail("integer")),
        Cast::Float => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| fail("number")),
    }
}

/// Substitutes `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`,
/// `${VAR?message}`, `${VAR:+replacement}` and `${VAR+replacement}` in `text`; `$$` is a `$`.
/// Defaults, messages and replacements are themselves interpolated.
pub fn interpolate(text: &str, env: &Env) -> Result<String, InterpolateError> {
    let invalid = || InterpolateError::Invalid { text: text.to_string() };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix('{') {
            let end = closing_brace(inner).ok_or_else(invalid)?;
            out.push_str(&braced(&inner[..end], env).map_err(|e| match e {
                InterpolateError::Invalid { .. } => invalid(),
                other => other,
            })?);
            rest = &inner[end + 1..];
        } else {
            let len = name_len(rest);
            if len == 0 {
                return Err(invalid());
            }
            out.push_str(env.get(&rest[..len]).map(String::as_str).unwrap_or(""));
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` that closes a `${`, counting nested `${...}`.
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Length of the variable name at the start of `s` (`[A-Za-z_][A-Za-z0-9_]*`).
fn name_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return 0,
    }
    chars.find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_')).map(|(i, _)| i).unwrap_or(s.len())
}

/// The value of the inside of `${...}`.
fn braced(inner: &str, env: &Env) -> Result<String, InterpolateError> {
    let len = name_len(inner);
    if len == 0 {
        return Err(InterpolateError::Invalid { text: inner.to_string() });
    }
    let (name, op) = inner.split_at(len);
    let value = env.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let arg = |skip: usize| interpolate(&op[skip..], env);
    let own = || value.cloned().unwrap_or_default();
    let required = |message: String| InterpolateError::Required { name: name.to_string(), message };
    match op {
        "" => Ok(own()),
        _ if op.starts_with(":-") => {
            if non_empty {
                Ok(own())
            } else {
                arg(2)
            }
        }
        _ if op.starts_with('-') => {
            if set {
                Ok(own())
            } else {
                arg(1)
            }
        }
        _ if op.starts_with(":?") => {
            if non_empty {
                Ok(own())
            } else {
                Err(required(arg(2)?))
            }
        }
        _ if op.starts_with('?') => {
            if set {
                Ok(own())
            } else {
                Err(required(arg(1)?))
            }
        }
        _ if op.starts_with(":+") => {
            if non_empty {
                arg(2)
            } else {
                Ok(String::new())
            }
        }
        _ if op.starts_with('+') => {
            if set {
                arg(1)
            } else {
                Ok(String::new())
            }
        }
        _ => Err(InterpolateError::Invalid { text: inner.to_string() }),
    }
}

/// Why an env file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct EnvFileError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses an env file (`KEY=VALUE` lines, `export KEY=VALUE`, `#` comments, single quotes
/// literal, double quotes with escapes and variables, unquoted values with variables and
/// ` #` comments), as Compose's dotenv reader does. Variables resolve in `lookup` first, then
/// in the file's own earlier entries. A bare `KEY` takes its value from `lookup`, or is left out.
pub fn parse_env_file(text: &str, lookup: &Env) -> Result<Vec<(String, String)>, EnvFileError> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let raw = lines[i].trim_start_matches('\u{feff}').trim();
        i += 1;
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let raw = raw.strip_prefix("export ").map(str::trim_start).unwrap_or(raw);
        let error = |message: String| EnvFileError { line: number, message };
        let Some(eq) = raw.find('=') else {
            if name_len(raw) != raw.len() && !raw.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
                return Err(error(format!("unexpected character in variable name {raw:?}")));
            }
            if let Some(v) = lookup.get(raw) {
                entries.push((raw.to_string(), v.clone()));
            }
            continue;
        };
        let key = raw[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(error(format!("invalid variable name {key:?}")));
        }
        let mut value = raw[eq + 1..].trim_start().to_string();
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'');
        let mut env = lookup.clone();
        for (k, v) in &entries {
            env.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let value = match quote {
            Some(q) => {
                // A quoted value may go on over several lines.
                while closing_quote(&value[1..], q).is_none() && i < lines.len() {
                    value.push('\n');
                    value.push_str(lines[i]);
                    i += 1;
                }
                let end = closing_quote(&value[1..], q)
                    .ok_or_else(|| error(format!("unterminated quoted value for {key}")))?;
                let inner = &value[1..1 + end];
                if q == '\'' {
                    inner.to_string()
                } else {
                    let unescaped = unescape(inner);
                    interpolate(&unescaped, &env).map_err(|e| error(e.to_string()))?
                }
            }
            None => {
                let cut = value.find(" #").map(|i| &value[..i]).unwrap_or(&value).trim_end();
                interpolate(cut, &env).map_err(|e| error(e.to_string()))?
            }
        };
        entries.retain(|(k, _)| k != key);
        entries.push((key.to_string(), value));
    }
    Ok(entries)
}

fn closing_quote(s: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if q == '"' && !escaped => escaped = true,
            c if c == q && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        [("A", "a"), ("EMPTY", ""), ("N", "7")].into_iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn every_form_substitutes() {
        let e = env();
        let cases = [
            ("$A ${A}", "a a"),
            ("${B:-x} ${EMPTY:-x} ${EMPTY-x} ${B-x}", "x x  x"),
            ("${A:+r} ${EMPTY:+r} ${EMPTY+r} ${B+r}", "r  r "),
            ("$$A $${A}", "$A ${A}"),
            ("${B:-${A}-${N}}", "a-7"),
            ("pre${A}post", "preapost"),
            ("${A?no}", "a"),
            ("x$A.y", "xa.y"),
        ];
        for (text, want) in cases {
            assert_eq!(interpolate(text, &e).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn required_and_invalid_forms_fail() {
        let e = env();
        assert_eq!(
            interpolate("${B:?set B}", &e),
            Err(InterpolateError::Required { name: "B".into(), message: "set B".into() })
        );
        assert!(matches!(interpolate("${EMPTY:?m}", &e), Err(InterpolateError::Required { .. })));
        assert_eq!(interpolate("${EMPTY?m}", &e).unwrap(), "");
        for bad in ["${A", "${}", "${1A}", "$ x", "${A!x}", "end$"] {
            assert!(matches!(interpolate(bad, &e), Err(InterpolateError::Invalid { .. })), "{bad}");
        }
    }

    #[test]
    fn env_files_parse_as_compose_reads_them() {
        let text = "# c\nA=1\nexport B = two words # note\nC='lit $A'\nD=\"x\\ny ${A}\"\nE=${A}${HOST}\nF\nG=\"multi\nline\"\nH=\n";
        let lookup: Env = [("HOST".to_string(), "h".to_string()), ("F".to_string(), "f".to_string())].into();
        let got = parse_env_file(text, &lookup).unwrap();
        let want = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "lit $A"),
            ("D", "x\ny 1"),
            ("E", "1h"),
            ("F", "f"),
            ("G", "multi\nline"),
            ("H", ""),
        ];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.to_string())).to_vec());
        assert_eq!(parse_env_file("A=1\nB=\"open\n", &Env::new()).unwrap_err().line, 2);
    }

    proptest::proptest! {
        #[test]
        fn interpolation_never_panics(text in "[$a-zA-Z{}:?+_ -]{0,40}") {
            let _ = interpolate(&text, &env());
        }
    }
}
