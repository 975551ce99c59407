//! The two ways a compose file reaches into other files: `include` (another project's
//! resources, loaded with its own folder and environment) and `extends` (a service built on
//! another service, of this file or another). Called by the loader on each file, before the
//! files are merged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::interpolate::Env;
use crate::load::{absolute, load_file, project_env, read_file};
use crate::yaml::{pointer_token, Lines};
use crate::{merge, normalize};

fn dir_of(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn invalid(file: &Path, lines: &Lines, pointer: &str, message: String) -> Error {
    Error::Invalid {
        file: file.to_path_buf(),
        line: lines.line_of(pointer).unwrap_or(0),
        key: crate::error::dotted(pointer),
        message,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// Loads each `include` entry of `value` (the model of `file`) as a project of its own and
/// adds its services, networks, volumes, secrets and configs; a name both define is an error.
pub fn apply_includes(file: &Path, value: &mut Value, lines: &Lines, process: &Env) -> Result<(), Error> {
    let Some(Value::Array(includes)) = value.as_object_mut().and_then(|m| m.remove("include")) else { return Ok(()) };
    let base = dir_of(file);
    for (i, include) in includes.iter().enumerate() {
        let at = format!("/include/{i}");
        let paths: Vec<PathBuf> = strings(include.get("path")).iter().map(|p| absolute(&base, Path::new(p))).collect();
        let Some(first) = paths.first() else { continue };
        let directory = match include.get("project_directory").and_then(Value::as_str) {
            Some(d) => absolute(&base, Path::new(d)),
            None => dir_of(first),
        };
        let env_files: Vec<PathBuf> =
            strings(include.get("env_file")).iter().map(|p| absolute(&base, Path::new(p))).collect();
        let env = project_env(process, &directory, &env_files)?;
        let mut sub = Value::Object(Map::new());
        for path in &paths {
            if !path.is_file() {
                return Err(invalid(file, lines, &at, format!("included file {} does not exist", path.display())));
            }
            let f = load_file(path, &env, process)?;
            merge::merge(&mut sub, &f.value, &f.tags);
        }
        normalize::resolve_paths(&mut sub, &directory, &env);
        for kind in ["services", "networks", "volumes", "secrets", "configs"] {
            let Some(Value::Object(items)) = sub.get(kind).cloned() else { continue };
            let target = value.as_object_mut().map(|m| m.entry(kind).or_insert_with(|| json!({})));
            let Some(Value::Object(target)) = target else { continue };
            for (name, item) in items {
                if target.get(&name).is_some_and(|existing| existing != &item) {
                    let pointer = format!("/{kind}/{}", pointer_token(&name));
                    return Err(invalid(
                        file,
                        lines,
                        &pointer,
                        format!("{kind}.{name} conflicts with the one {} defines", paths[0].display()),
                    ));
                }
                target.insert(name, item);
            }
        }
    }
    Ok(())
}

/// Resolves every service's `extends` in `value` (the model of `file`): the base service,
/// from this file or another, with the service's own keys merged over it.
pub fn apply_extends(file: &Path, value: &mut Value, lines: &Lines, env: &Env) -> Result<(), Error> {
    let Some(Value::Object(services)) = value.get("services").cloned() else { return Ok(()) };
    let mut resolved = BTreeMap::new();
    for name in services.keys() {
        let mut stack = Vec::new();
        let service = resolve(file, &services, name, lines, env, &mut stack, &mut resolved)?;
        value["services"][name] = service;
    }
    Ok(())
}

/// The service `name` of `services` (from `file`), its `extends` chain resolved.
fn resolve(
    file: &Path,
    services: &Map<String, Value>,
    name: &str,
    lines: &Lines,
    env: &Env,
    stack: &mut Vec<(PathBuf, String)>,
    done: &mut BTreeMap<(PathBuf, String), Value>,
) -> Result<Value, Error> {
    let key = (file.to_path_buf(), name.to_string());
    if let Some(v) = done.get(&key) {
        return Ok(v.clone());
    }
    let at = format!("/services/{}/extends", pointer_token(name));
    if stack.contains(&key) {
        let chain: Vec<String> = stack.iter().map(|(_, s)| s.clone()).collect();
        return Err(invalid(file, lines, &at, format!("extends makes a cycle: {} -> {name}", chain.join(" -> "))));
    }
    let Some(service) = services.get(name) else {
        return Err(invalid(
            file,
            lines,
            &at,
            format!("cannot extend service {name:?}: {} has no such service", file.display()),
        ));
    };
    let Some(extends) = service.get("extends").cloned() else { return Ok(service.clone()) };
    stack.push(key.clone());
    let base_name = extends.get("service").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut base = match extends.get("file").and_then(Value::as_str) {
        Some(other) => {
            let other = absolute(&dir_of(file), Path::new(other));
            if !other.is_file() {
                return Err(invalid(
                    file,
                    lines,
                    &at,
                    format!("the file {} that extends names does not exist", other.display()),
                ));
            }
            let (model, other_lines, _) = read_file(&other, env)?;
            let other_services = model.get("services").and_then(Value::as_object).cloned().unwrap_or_default();
            if !other_services.contains_key(&base_name) {
                return Err(invalid(
                    file,
                    lines,
                    &at,
                    format!("cannot extend service {base_name:?}: {} has no such service", other.display()),
                ));
            }
            let mut base = resolve(&other, &other_services, &base_name, &other_lines, env, stack, done)?;
            // Relative paths of a service from another file are relative to that file.
            let mut wrapper = json!({ "services": { "x": base } });
            normalize::resolve_paths(&mut wrapper, &dir_of(&other), env);
            base = wrapper["services"]["x"].take();
            base
        }
        None => {
            if !services.contains_key(&base_name) {
                return Err(invalid(
                    file,
                    lines,
                    &at,
                    format!("cannot extend service {base_name:?}: no such service in this file"),
                ));
            }
            resolve(file, services, &base_name, lines, env, stack, done)?
        }
    };
    stack.pop();
    let mut own = service.clone();
    if let Some(m) = own.as_object_mut() {
        m.remove("extends");
    }
    let mut merged = json!({ "services": { "x": base.take() } });
    merge::merge(&mut merged, &json!({ "services": { "x": own } }), &BTreeMap::new());
    let result = merged["services"]["x"].take();
    done.insert(key, result.clone());
    Ok(result)
}
