//! Validation of a compose file against the Compose specification's JSON schema
//! (`compose/schema/compose-spec.json`, embedded), as Docker Compose validates each file
//! after interpolation. Called by the loader once per file.
//!
//! The schema uses a small part of JSON Schema draft 7 (`type`, `enum`, `properties`,
//! `patternProperties`, `additionalProperties`, `required`, `items`, `uniqueItems`,
//! `oneOf`, `minimum`, `maximum`, `pattern`, local `$ref`), so this module checks exactly
//! those keywords instead of building a general validator (the `jsonschema` crate brings
//! some forty crates and an HTTP client for remote references); a test fails when the
//! schema starts using a keyword this module does not check.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

const SCHEMA: &str = include_str!("../schema/compose-spec.json");

/// The keywords [`validate`] checks, and those that only annotate.
#[cfg(test)]
const CHECKED: &[&str] = &[
    "type",
    "enum",
    "properties",
    "patternProperties",
    "additionalProperties",
    "required",
    "items",
    "uniqueItems",
    "oneOf",
    "minimum",
    "maximum",
    "pattern",
    "$ref",
];
#[cfg(test)]
const ANNOTATIONS: &[&str] = &["description", "deprecated", "default", "title", "$schema", "$id", "definitions"];

/// One violation: where (as a JSON pointer and as compose's dotted path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the offending value (`/services/web/ports/0`).
    pub pointer: String,
    /// What is wrong, naming the key as `services.web.ports.0`.
    pub message: String,
}

struct Schema {
    root: Value,
    patterns: HashMap<String, Regex>,
}

fn schema() -> &'static Schema {
    static SCHEMA_CELL: OnceLock<Schema> = OnceLock::new();
    SCHEMA_CELL.get_or_init(|| {
        // The embedded schema is part of the source; a test parses it.
        let root: Value = serde_json::from_str(SCHEMA).unwrap_or(Value::Bool(true));
        let mut patterns = HashMap::new();
        collect_patterns(&root, &mut patterns);
        Schema { root, patterns }
    })
}

fn collect_patterns(node: &Value, out: &mut HashMap<String, Regex>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(p)) = map.get("pattern") {
                if let Ok(re) = Regex::new(p) {
                    out.insert(p.clone(), re);
                }
            }
            if let Some(Value::Object(pp)) = map.get("patternProperties") {
                for p in pp.keys() {
                    if let Ok(re) = Regex::new(p) {
                        out.insert(p.clone(), re);
                    }
                }
            }
            map.values().for_each(|v| collect_patterns(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_patterns(v, out)),
        _ => {}
    }
}

/// Checks a whole compose file; returns the violations, the deepest first.
pub fn validate(document: &Value) -> Vec<Violation> {
    let s = schema();
    let mut out = Vec::new();
    check(s, &s.root, document, &mut Vec::new(), &mut out);
    out
}

/// `services.web.ports.0`, or `(root)`.
pub fn dotted(path: &[String]) -> String {
    if path.is_empty() {
        "(root)".to_string()
    } else {
        path.join(".")
    }
}

fn pointer(path: &[String]) -> String {
    path.iter().map(|p| format!("/{}", crate::yaml::pointer_token(p))).collect()
}

fn violation(path: &[String], message: String) -> Violation {
    Violation { pointer: pointer(path), message }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => type_name(v) == other,
    }
}

fn resolve<'s>(s: &'s Schema, node: &'s Value) -> &'s Value {
    let mut node = node;
    // References chain at most a few times in the compose schema.
    for _ in 0..8 {
        match node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(p) => node = s.root.pointer(p).unwrap_or(&Value::Bool(true)),
            None => break,
        }
    }
    node
}

fn check(s: &Schema, node: &Value, v: &Value, path: &mut Vec<String>, out: &mut Vec<Violation>) {
    let node = resolve(s, node);
    let Value::Object(rules) = node else {
        if node == &Value::Bool(false) {
            out.push(violation(path, format!("{} is not allowed", dotted(path))));
        }
        return;
    };
    if let Some(t) = rules.get("type") {
        let types: Vec<&str> = match t {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.iter().any(|t| has_type(v, t)) {
            let want = types.join(" or ");
            out.push(violation(path, format!("{} must be a {want}", dotted(path))));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = rules.get("enum") {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            out.push(violation(path, format!("{} must be one of the following: {}", dotted(path), list.join(", "))));
        }
    }
    match v {
        Value::Object(map) => check_object(s, rules, map, path, out),
        Value::Array(items) => check_array(s, rules, items, path, out),
        Value::String(text) => {
            if let Some(Value::String(p)) = rules.get("pattern") {
                if s.patterns.get(p).is_some_and(|re| !re.is_match(text)) {
                    out.push(violation(path, format!("{} does not match pattern {p:?}", dotted(path))));
                }
            }
        }
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if rules.get("minimum").and_then(Value::as_f64).is_some_and(|m| f < m) {
                out.push(violation(path, format!("{} must be at least {}", dotted(path), rules["minimum"])));
            }
            if rules.get("maximum").and_then(Value::as_f64).is_some_and(|m| f > m) {
                out.push(violation(path, format!("{} must be at most {}", dotted(path), rules["maximum"])));
            }
        }
        _ => {}
    }
    if let Some(Value::Array(branches)) = rules.get("oneOf") {
        check_one_of(s, branches, v, path, out);
    }
}

fn check_object(
    s: &Schema,
    rules: &Map<String, Value>,
    map: &Map<String, Value>,
    path: &mut Vec<String>,
    out: &mut Vec<Violation>,
) {
    if let Some(Value::Array(required)) = rules.get("required") {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                out.push(violation(path, format!("{}: {key} is required", dotted(path))));
            }
        }
    }
    let properties = rules.get("properties").and_then(Value::as_object);
    let pattern_properties = rules.get("patternProperties").and_then(Value::as_object);
    for (key, value) in map {
        path.push(key.clone());
        let mut matched = false;
        if let Some(sub) = properties.and_then(|p| p.get(key)) {
            matched = true;
            check(s, sub, value, path, out);
        }
        for (pattern, sub) in pattern_properties.into_iter().flatten() {
            if s.patterns.get(pattern).is_some_and(|re| re.is_match(key)) {
                matched = true;
                check(s, sub, value, path, out);
            }
        }
        if !matched {
            match rules.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    path.pop();
                    out.push(violation(path, format!("{} additional properties '{key}' not allowed", dotted(path))));
                    path.push(key.clone());
                    // The line is the key's, not its parent's.
                    if let Some(last) = out.last_mut() {
                        last.pointer = pointer(path);
                    }
                }
                Some(sub @ Value::Object(_)) => check(s, sub, value, path, out),
                _ => {}
            }
        }
        path.pop();
    }
}

fn check_array(
    s: &Schema,
    rules: &Map<String, Value>,
    items: &[Value],
    path: &mut Vec<String>,
    out: &mut Vec<Violation>,
) {
    if let Some(sub) = rules.get("items") {
        for (i, item) in items.iter().enumerate() {
            path.push(i.to_string());
            check(s, sub, item, path, out);
            path.pop();
        }
    }
    if rules.get("uniqueItems") == Some(&Value::Bool(true)) {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                path.push(i.to_string());
                out.push(violation(
                    path,
                    format!("{} array items must be unique: {item} is repeated", dotted(&path[..path.len() - 1])),
                ));
                path.pop();
            }
        }
    }
}

/// Exactly one branch must hold. When none does, the errors of the branch whose type the
/// value has are the useful ones (a string where a mapping is expected, or a mapping with a
/// bad key); otherwise the value has none of the allowed shapes.
fn check_one_of(s: &Schema, branches: &[Value], v: &Value, path: &mut Vec<String>, out: &mut Vec<Violation>) {
    let mut results: Vec<Vec<Violation>> = Vec::new();
    for branch in branches {
        let mut errors = Vec::new();
        check(s, branch, v, path, &mut errors);
        results.push(errors);
    }
    let valid = results.iter().filter(|e| e.is_empty()).count();
    if valid == 1 {
        return;
    }
    if valid > 1 {
        out.push(violation(path, format!("{} must match exactly one schema in oneOf", dotted(path))));
        return;
    }
    let shaped: Vec<usize> = (0..branches.len())
        .filter(|&i| {
            let b = resolve(s, &branches[i]);
            match b.get("type") {
                Some(Value::String(t)) => has_type(v, t),
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).any(|t| has_type(v, t)),
                _ => false,
            }
        })
        .collect();
    if let [only] = shaped.as_slice() {
        out.append(&mut results[*only]);
    } else {
        out.push(violation(path, format!("{} must be a {}", dotted(path), shapes(s, branches))));
    }
}

fn shapes(s: &Schema, branches: &[Value]) -> String {
    let mut names: Vec<String> = Vec::new();
    for b in branches {
        match resolve(s, b).get("type") {
            Some(Value::String(t)) => names.push(t.clone()),
            Some(Value::Array(ts)) => names.extend(ts.iter().filter_map(Value::as_str).map(String::from)),
            _ => {}
        }
    }
    names.dedup();
    names.join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_schema_uses_only_checked_keywords() {
        fn walk(node: &Value, under_names: bool, bad: &mut Vec<String>) {
            match node {
                Value::Object(map) => {
                    for (k, v) in map {
                        if under_names {
                            walk(v, false, bad);
                            continue;
                        }
                        if !CHECKED.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()) {
                            bad.push(k.clone());
                        }
                        let names = matches!(k.as_str(), "properties" | "patternProperties" | "definitions");
                        if k != "enum" && k != "default" && k != "required" {
                            walk(v, names, bad);
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, false, bad)),
                _ => {}
            }
        }
        let root: Value = serde_json::from_str(SCHEMA).unwrap();
        let mut bad = Vec::new();
        walk(&root, false, &mut bad);
        assert!(bad.is_empty(), "unchecked keywords in the schema: {bad:?}");
        assert_eq!(schema().patterns.len(), {
            let mut all = HashMap::new();
            collect_patterns(&root, &mut all);
            all.len()
        });
    }

    #[test]
    fn good_files_pass() {
        let doc = json!({"services": {"web": {"image": "x", "ports": ["80:80", {"target": 81}], "environment": {"A": 1, "B": null},
                        "depends_on": ["db"], "build": ".", "x-any": 1}, "db": {"image": "y", "deploy": {"replicas": 2}}},
                        "volumes": {"v": null}, "x-top": {"a": 1}});
        assert_eq!(validate(&doc), vec![]);
    }

    #[test]
    fn bad_files_name_the_key() {
        let v = validate(&json!({"services": {"web": {"image": "x", "imgae": "y"}}}));
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].pointer, "/services/web/imgae");
        assert!(v[0].message.contains("services.web additional properties 'imgae' not allowed"), "{v:?}");

        let v = validate(&json!({"services": {"web": {"image": "x", "ports": [{"target": "a", "protocol": 1}]}}}));
        assert!(v.iter().any(|x| x.pointer == "/services/web/ports/0/protocol"), "{v:?}");

        let v = validate(&json!({"services": {"web": {"image": 3, "read_only": "maybe"}}}));
        assert!(v.iter().any(|x| x.message == "services.web.image must be a string"), "{v:?}");

        let v = validate(&json!({"services": {"web": {"build": {"context": ".", "bogus": 1}}}}));
        assert!(v.iter().any(|x| x.pointer == "/services/web/build/bogus"), "{v:?}");

        let v = validate(&json!({"services": {"web": {"pull_policy": "sometimes"}}}));
        assert!(v.iter().any(|x| x.message.contains("services.web.pull_policy does not match")), "{v:?}");

        let v = validate(&json!({"nope": 1}));
        assert!(v.iter().any(|x| x.message.contains("additional properties 'nope'")), "{v:?}");
    }
}
