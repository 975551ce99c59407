//! The merged model made explicit, as `docker compose config` prints it: profiles applied,
//! relative paths made absolute, `env_file` read into `environment`, commands split into
//! arguments, the default network and resource names filled in, and references between
//! services checked. Called by the loader last; [`resolve_paths`] also for included
//! projects and services extended from other files.

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::interpolate::{parse_env_file, Env};
use crate::load::absolute;

/// Makes the model `model` of project `name` (folder `directory`) explicit.
pub fn normalize(model: &mut Value, name: &str, directory: &Path, env: &Env, profiles: &[String]) -> Result<(), Error> {
    let Some(root) = model.as_object_mut() else { return Ok(()) };
    root.remove("version");
    root.insert("name".into(), json!(name));
    root.entry("services").or_insert_with(|| json!({}));
    apply_profiles(root, profiles)?;
    resolve_paths(model, directory, env);
    let Some(Value::Object(services)) = model.get_mut("services") else { return Ok(()) };
    let mut uses_default = false;
    for service in services.values_mut() {
        let Some(s) = service.as_object_mut() else { continue };
        service_defaults(s, env)?;
        if !s.contains_key("network_mode") && !s.contains_key("networks") {
            s.insert("networks".into(), json!({ "default": null }));
        }
        uses_default |= s.get("networks").and_then(|n| n.get("default")).is_some();
    }
    let root = model.as_object_mut().into_iter().next();
    let Some(root) = root else { return Ok(()) };
    drop_unused(root);
    if uses_default {
        let networks = root.entry("networks").or_insert_with(|| json!({}));
        if let Some(n) = networks.as_object_mut() {
            n.entry("default").or_insert_with(|| json!({}));
        }
    }
    for kind in ["networks", "volumes", "secrets", "configs"] {
        if let Some(Value::Object(resources)) = root.get_mut(kind) {
            for (key, resource) in resources.iter_mut() {
                name_resource(kind, key, resource, name);
            }
            if resources.is_empty() {
                root.remove(kind);
            }
        }
    }
    Ok(())
}

/// Drops the services no active profile enables (`*` enables all), then checks that every
/// remaining service's required dependencies remain (an optional one, `required: false`,
/// stays listed, as Compose lists it).
fn apply_profiles(root: &mut Map<String, Value>, profiles: &[String]) -> Result<(), Error> {
    let Some(Value::Object(services)) = root.get_mut("services") else { return Ok(()) };
    let enabled = |s: &Value| match s.get("profiles").and_then(Value::as_array) {
        None => true,
        Some(list) if list.is_empty() => true,
        Some(list) => list.iter().filter_map(Value::as_str).any(|p| profiles.iter().any(|a| a == p || a == "*")),
    };
    services.retain(|_, s| enabled(s));
    let kept: Vec<String> = services.keys().cloned().collect();
    for (name, s) in services.iter() {
        let Some(Value::Object(deps)) = s.get("depends_on") else { continue };
        let required = |d: &Value| d.get("required") != Some(&Value::Bool(false));
        if let Some(dep) = deps.iter().find(|(n, d)| !kept.contains(n) && required(d)).map(|(n, _)| n) {
            return Err(Error::Project(format!(
                "service {name:?} depends on undefined service {dep:?}: invalid compose project"
            )));
        }
    }
    Ok(())
}

/// The service's implicit values made explicit.
fn service_defaults(s: &mut Map<String, Value>, env: &Env) -> Result<(), Error> {
    s.remove("extends");
    if let Some(build) = s.get_mut("build").and_then(Value::as_object_mut) {
        // A build argument without a value takes the environment's, or is left out.
        if let Some(Value::Object(args)) = build.get_mut("args") {
            args.retain(|k, v| {
                if v.is_null() {
                    match env.get(k) {
                        Some(x) => *v = json!(x),
                        None => return false,
                    }
                }
                true
            });
        }
        if !build.contains_key("dockerfile_inline") {
            build.entry("dockerfile").or_insert_with(|| json!("Dockerfile"));
        }
    }
    for key in ["command", "entrypoint"] {
        if let Some(Value::String(line)) = s.get(key).cloned() {
            let words = split_words(&line).map_err(|m| Error::Project(format!("{key} {line:?}: {m}")))?;
            s.insert(key.into(), json!(words));
        }
    }
    if let Some(Value::String(test)) = s.get("healthcheck").and_then(|h| h.get("test")).cloned() {
        s["healthcheck"]["test"] = json!(["CMD-SHELL", test]);
    }
    read_env_files(s, env)?;
    for (key, default_target) in [("secrets", Some("/run/secrets/")), ("configs", None)] {
        for item in s.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten() {
            let source = item.get("source").and_then(Value::as_str).map(String::from);
            if let (Some(prefix), Some(source), Some(m)) = (default_target, source, item.as_object_mut()) {
                m.entry("target").or_insert_with(|| json!(format!("{prefix}{source}")));
            }
        }
    }
    sizes_and_cpus(s)?;
    durations(s);
    // Compose leaves out what is false or empty (its model's zero values).
    s.retain(|_, v| v != &Value::Bool(false) && v != &json!(""));
    Ok(())
}

/// Durations in Go's form (`1m` is printed `1m0s`).
fn durations(s: &mut Map<String, Value>) {
    let fix = |v: &mut Value| {
        if let Some(d) = v.as_str().and_then(|t| shared::duration::parse_duration(t).ok()) {
            *v = json!(shared::duration::format_duration(d));
        }
    };
    if let Some(v) = s.get_mut("stop_grace_period") {
        fix(v);
    }
    if let Some(Value::Object(h)) = s.get_mut("healthcheck") {
        for key in ["interval", "timeout", "start_period", "start_interval"] {
            if let Some(v) = h.get_mut(key) {
                fix(v);
            }
        }
    }
    if let Some(Value::Object(p)) = s.get_mut("deploy").and_then(|d| d.get_mut("restart_policy")) {
        for key in ["delay", "window"] {
            if let Some(v) = p.get_mut(key) {
                fix(v);
            }
        }
    }
}

/// Memory sizes as byte counts (strings), CPU counts as numbers, as Compose prints them.
fn sizes_and_cpus(s: &mut Map<String, Value>) -> Result<(), Error> {
    fn bytes(v: &mut Value, key: &str) -> Result<(), Error> {
        let text = match v {
            Value::String(t) => t.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Ok(()),
        };
        let n = shared::size::parse_size(&text).map_err(|e| Error::Project(format!("{key}: {e}")))?;
        *v = json!(n.to_string());
        Ok(())
    }
    fn cpus(v: &mut Value) {
        if let Some(f) = v.as_str().and_then(|t| t.parse::<f64>().ok()) {
            *v = json!(f);
        }
    }
    for key in ["mem_limit", "mem_reservation", "memswap_limit", "shm_size"] {
        if let Some(v) = s.get_mut(key) {
            bytes(v, key)?;
        }
    }
    if let Some(v) = s.get_mut("cpus") {
        cpus(v);
    }
    if let Some(Value::Object(resources)) = s.get_mut("deploy").and_then(|d| d.get_mut("resources")) {
        for (kind, r) in resources.iter_mut() {
            if let Some(v) = r.get_mut("memory") {
                bytes(v, &format!("deploy.resources.{kind}.memory"))?;
            }
            if let Some(v) = r.get_mut("cpus") {
                cpus(v);
            }
        }
    }
    Ok(())
}

/// Leaves out the networks, volumes, secrets and configs no service uses, as
/// `docker compose config` does.
fn drop_unused(root: &mut Map<String, Value>) {
    let mut used: Vec<(&str, String)> = Vec::new();
    for s in root.get("services").and_then(Value::as_object).into_iter().flat_map(|m| m.values()) {
        for n in s.get("networks").and_then(Value::as_object).into_iter().flat_map(|m| m.keys()) {
            used.push(("networks", n.clone()));
        }
        for v in s.get("volumes").and_then(Value::as_array).into_iter().flatten() {
            if v.get("type").and_then(Value::as_str) == Some("volume") {
                if let Some(src) = v.get("source").and_then(Value::as_str) {
                    used.push(("volumes", src.to_string()));
                }
            }
        }
        for kind in ["secrets", "configs"] {
            for item in s.get(kind).and_then(Value::as_array).into_iter().flatten() {
                if let Some(src) = item.get("source").and_then(Value::as_str) {
                    used.push((kind, src.to_string()));
                }
            }
        }
    }
    for kind in ["networks", "volumes", "secrets", "configs"] {
        if let Some(Value::Object(resources)) = root.get_mut(kind) {
            resources.retain(|name, _| used.iter().any(|(k, n)| *k == kind && n == name));
        }
    }
}

/// `env_file` entries read, under `environment`; keys without a value take the project
/// environment's, or stay `null`.
fn read_env_files(s: &mut Map<String, Value>, env: &Env) -> Result<(), Error> {
    let mut from_files = Map::new();
    if let Some(Value::Array(files)) = s.remove("env_file") {
        for f in files {
            let Some(path) = f.get("path").and_then(Value::as_str) else { continue };
            let required = f.get("required") != Some(&Value::Bool(false));
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(Error::Read { path: path.into(), source }),
            };
            let entries = parse_env_file(&text, env).map_err(|e| Error::EnvFile {
                path: path.into(),
                line: e.line,
                message: e.message,
            })?;
            for (k, v) in entries {
                from_files.insert(k, json!(v));
            }
        }
    }
    let own = s.remove("environment").and_then(|e| e.as_object().cloned()).unwrap_or_default();
    let had = !own.is_empty() || !from_files.is_empty();
    let mut merged = from_files;
    for (k, v) in own {
        let v = match v {
            Value::Null => env.get(&k).map(|x| json!(x)).unwrap_or(Value::Null),
            other => other,
        };
        merged.insert(k, v);
    }
    if had {
        s.insert("environment".into(), Value::Object(merged));
    }
    Ok(())
}

/// A network, volume, secret or config's `name`: as given, the key for an external one, or
/// `<project>_<key>`.
fn name_resource(kind: &str, key: &str, resource: &mut Value, project: &str) {
    let Some(r) = resource.as_object_mut() else { return };
    if r.contains_key("name") {
        return;
    }
    let external = r.get("external").is_some_and(|e| e == &Value::Bool(true) || e.is_object());
    let name = if external { key.to_string() } else { format!("{project}_{key}") };
    if kind == "networks" || kind == "volumes" || !external {
        r.insert("name".into(), json!(name));
    }
}

fn is_remote(context: &str) -> bool {
    context.contains("://") || context.starts_with("git@") || context.starts_with("github.com/")
}

/// Makes the model's relative paths absolute against `directory` (`~` is the environment's
/// HOME): build contexts, env files, bind mount sources, extends files, secret and config files.
pub fn resolve_paths(model: &mut Value, directory: &Path, env: &Env) {
    let home = env.get("HOME").cloned().unwrap_or_default();
    let fix = |p: &str| -> String {
        let expanded = match p.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{home}{rest}"),
            _ => p.to_string(),
        };
        absolute(directory, Path::new(&expanded)).to_string_lossy().into_owned()
    };
    if let Some(Value::Object(services)) = model.get_mut("services") {
        for service in services.values_mut() {
            if let Some(Value::String(c)) = service.get("build").and_then(|b| b.get("context")).cloned() {
                if !is_remote(&c) {
                    service["build"]["context"] = json!(fix(&c));
                }
            }
            if let Some(Value::Object(contexts)) =
                service.get_mut("build").and_then(|b| b.get_mut("additional_contexts"))
            {
                for v in contexts.values_mut() {
                    if let Value::String(c) = v {
                        if !is_remote(c) && !c.contains(':') {
                            *v = json!(fix(c));
                        }
                    }
                }
            }
            for f in service.get_mut("env_file").and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(Value::String(p)) = f.get("path").cloned() {
                    f["path"] = json!(fix(&p));
                }
            }
            if let Some(Value::String(p)) = service.get("extends").and_then(|e| e.get("file")).cloned() {
                service["extends"]["file"] = json!(fix(&p));
            }
            for v in service.get_mut("volumes").and_then(Value::as_array_mut).into_iter().flatten() {
                if v.get("type").and_then(Value::as_str) == Some("bind") {
                    if let Some(Value::String(src)) = v.get("source").cloned() {
                        v["source"] = json!(fix(&src));
                    }
                }
            }
        }
    }
    for kind in ["secrets", "configs"] {
        if let Some(Value::Object(items)) = model.get_mut(kind) {
            for item in items.values_mut() {
                if let Some(Value::String(f)) = item.get("file").cloned() {
                    item["file"] = json!(fix(&f));
                }
            }
        }
    }
}

/// Splits a command line into words as Compose does (POSIX shell quoting, no expansion).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => word.push(x),
                        None => return Err("unclosed single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => word.push(x),
                            Some('\n') => {}
                            Some(x) => {
                                word.push('\\');
                                word.push(x);
                            }
                            None => return Err("unclosed double quote".into()),
                        },
                        Some(x) => word.push(x),
                        None => return Err("unclosed double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    word.push(x);
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_as_a_shell_would() {
        assert_eq!(
            split_words(r#"sh -c 'echo "a b"' x\ y "q\"q""#).unwrap(),
            vec!["sh", "-c", "echo \"a b\"", "x y", "q\"q"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("''").unwrap(), vec![""]);
        assert!(split_words("'open").is_err());
    }
}
