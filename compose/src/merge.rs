//! Merging compose files (the spec's merge chapter) and de-duplicating lists, on models in
//! long syntax ([`crate::canonical`]). Called by the loader for each `-f` file after the
//! first, and for `extends`.
//!
//! Mappings merge key by key; sequences append, except `command`, `entrypoint` and
//! `healthcheck.test`, which the later file replaces, and the lists whose entries have a
//! unique key (ports by address, volumes, secrets and configs by target, plain string lists
//! by value), where a later entry replaces the earlier one with the same key. A node tagged
//! `!override` replaces, one tagged `!reset` removes.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::yaml::{pointer_token, MergeTag};

/// Merges `over` into `base`; `tags` are the `!reset`/`!override` tags of `over`'s file, by
/// JSON pointer.
pub fn merge(base: &mut Value, over: &Value, tags: &BTreeMap<String, MergeTag>) {
    merge_at(base, over, tags, &mut Vec::new());
    dedupe(base, &mut Vec::new());
}

fn pointer(path: &[String]) -> String {
    path.iter().map(|p| format!("/{}", pointer_token(p))).collect()
}

/// The path with service names and other user-chosen keys replaced by `*`, to match the
/// rules against (`services.*.ports`).
fn shape(path: &[String]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (i, p) in path.iter().enumerate() {
        let named = i > 0
            && matches!(path[i - 1].as_str(), "services" | "networks" | "volumes" | "secrets" | "configs")
            && (i == 1 || (i == 3 && path[0] == "services"));
        out.push(if named { "*" } else { p });
    }
    out.join(".")
}

fn merge_at(base: &mut Value, over: &Value, tags: &BTreeMap<String, MergeTag>, path: &mut Vec<String>) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (key, value) in o {
                path.push(key.clone());
                match tags.get(&pointer(path)) {
                    Some(MergeTag::Reset) => {
                        b.remove(key);
                    }
                    Some(MergeTag::Override) => {
                        b.insert(key.clone(), value.clone());
                    }
                    None => match b.get_mut(key) {
                        Some(existing) => merge_at(existing, value, tags, path),
                        None => {
                            b.insert(key.clone(), value.clone());
                        }
                    },
                }
                path.pop();
            }
        }
        (Value::Array(b), Value::Array(o)) => {
            let s = shape(path);
            if matches!(s.as_str(), "services.*.command" | "services.*.entrypoint" | "services.*.healthcheck.test") {
                *b = o.clone();
            } else {
                b.extend(o.iter().cloned());
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The unique key of a list entry at `shape`, for the lists whose entries have one.
fn unique_key(shape: &str, entry: &Value) -> Option<String> {
    match shape {
        "services.*.ports" if entry.is_object() => {
            let f = |k: &str| entry.get(k).map(Value::to_string).unwrap_or_default();
            Some(format!("{}|{}|{}|{}", f("host_ip"), f("target"), f("published"), f("protocol")))
        }
        "services.*.ports" => None,
        "services.*.volumes" | "services.*.secrets" | "services.*.configs" | "services.*.devices" => {
            entry.get("target").or_else(|| entry.get("source")).map(Value::to_string)
        }
        "services.*.env_file" => entry.get("path").map(Value::to_string),
        "services.*.cap_add"
        | "services.*.cap_drop"
        | "services.*.dns"
        | "services.*.dns_opt"
        | "services.*.dns_search"
        | "services.*.expose"
        | "services.*.links"
        | "services.*.profiles"
        | "services.*.tmpfs"
        | "services.*.build.tags"
        | "services.*.build.platforms"
        | "services.*.networks.*.aliases"
        | "services.*.security_opt" => match entry {
            Value::String(s) => Some(s.split_once('=').map(|(k, _)| k).unwrap_or(s).to_string()),
            other => Some(other.to_string()),
        },
        _ => None,
    }
}

/// Keeps one entry per unique key in the lists that have one: the later entry takes the
/// earlier one's place.
pub fn dedupe(value: &mut Value, path: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                path.push(k.clone());
                dedupe(v, path);
                path.pop();
            }
        }
        Value::Array(items) => {
            let s = shape(path);
            let mut seen: Map<String, Value> = Map::new();
            let mut order: Vec<String> = Vec::new();
            let mut keyless: Vec<(usize, Value)> = Vec::new();
            for item in items.iter() {
                match unique_key(&s, item) {
                    Some(key) => {
                        if !seen.contains_key(&key) {
                            order.push(key.clone());
                        }
                        seen.insert(key, item.clone());
                    }
                    None => keyless.push((order.len(), item.clone())),
                }
            }
            if keyless.len() == items.len() {
                return;
            }
            let mut out: Vec<Value> = order.iter().filter_map(|k| seen.remove(k)).collect();
            for (i, item) in keyless.into_iter().rev() {
                out.insert(i.min(out.len()), item);
            }
            *items = out;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mappings_merge_and_sequences_append() {
        let mut base =
            json!({"services": {"a": {"image": "x", "dns": ["1.1.1.1"], "command": ["a"], "environment": {"A": "1"}}}});
        let over = json!({"services": {"a": {"image": "y", "dns": ["8.8.8.8", "1.1.1.1"], "command": ["b"], "environment": {"B": "2"}}, "b": {}}});
        merge(&mut base, &over, &BTreeMap::new());
        assert_eq!(
            base,
            json!({"services": {"a": {"image": "y", "dns": ["1.1.1.1", "8.8.8.8"], "command": ["b"], "environment": {"A": "1", "B": "2"}}, "b": {}}})
        );
    }

    #[test]
    fn unique_entries_replace() {
        let mut base = json!({"services": {"a": {"volumes": [{"type": "volume", "source": "foo", "target": "/work"}],
            "ports": [{"target": 80, "published": "8080", "protocol": "tcp"}]}}});
        let over = json!({"services": {"a": {"volumes": [{"type": "volume", "source": "bar", "target": "/work"}],
            "ports": [{"target": 80, "published": "8080", "protocol": "tcp", "mode": "host"}, {"target": 81, "protocol": "tcp"}]}}});
        merge(&mut base, &over, &BTreeMap::new());
        assert_eq!(base["services"]["a"]["volumes"], json!([{"type": "volume", "source": "bar", "target": "/work"}]));
        assert_eq!(base["services"]["a"]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(base["services"]["a"]["ports"][0]["mode"], json!("host"));
    }

    #[test]
    fn reset_and_override_tags_apply() {
        let mut base = json!({"services": {"a": {"ports": [{"target": 80}], "environment": {"FOO": "BAR", "K": "v"}, "dns": ["a"]}}});
        let over = json!({"services": {"a": {"ports": [], "environment": {"FOO": null}, "dns": ["b"]}}});
        let tags = [
            ("/services/a/ports".to_string(), MergeTag::Reset),
            ("/services/a/environment/FOO".to_string(), MergeTag::Reset),
            ("/services/a/dns".to_string(), MergeTag::Override),
        ]
        .into();
        merge(&mut base, &over, &tags);
        assert_eq!(base, json!({"services": {"a": {"environment": {"K": "v"}, "dns": ["b"]}}}));
    }
}
