//! Loading a compose project, step by step as Docker Compose does: find the files, read the
//! project's environment (`.env` or `--env-file`, under the process environment), then for
//! each file parse, interpolate, validate against the schema, rewrite short syntax, resolve
//! `extends` and `include`, merge the files in order, choose the project name, and
//! normalize ([`crate::normalize`]). Called through [`crate::load`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{dotted, Error};
use crate::interpolate::{interpolate_value, parse_env_file, Env};
use crate::yaml::{Lines, MergeTag};
use crate::{canonical, merge, normalize, schema, yaml, Options, Project};

/// The names Compose looks for, in its order of preference.
pub const FILE_NAMES: &[&str] = &["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];
const OVERRIDE_NAMES: &[&str] =
    &["compose.override.yaml", "compose.override.yml", "docker-compose.override.yaml", "docker-compose.override.yml"];

/// One file after parsing, interpolation, validation, short syntax, extends and include.
pub struct FileModel {
    /// The file.
    pub path: PathBuf,
    /// Its model in long syntax.
    pub value: Value,
    /// Its `!reset` and `!override` tags.
    pub tags: BTreeMap<String, MergeTag>,
}

/// Loads the project `options` describe.
pub fn load(options: &Options) -> Result<Project, Error> {
    let files = config_files(options)?;
    let directory = match &options.project_directory {
        Some(d) => absolute(&options.working_dir, d),
        None => files[0].parent().map(Path::to_path_buf).unwrap_or_else(|| options.working_dir.clone()),
    };
    let env_files: Vec<PathBuf> = options.env_files.iter().map(|f| absolute(&options.working_dir, f)).collect();
    let env = project_env(&options.environment, &directory, &env_files)?;
    let mut model = Value::Object(Map::new());
    for file in &files {
        let f = load_file(file, &env, &options.environment)?;
        merge::merge(&mut model, &f.value, &f.tags);
    }
    let name = project_name(options, &env, &model, &directory)?;
    let profiles: Vec<String> = if options.profiles.is_empty() {
        env.get("COMPOSE_PROFILES")
            .map(|p| p.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default()
    } else {
        options.profiles.clone()
    };
    normalize::normalize(&mut model, &name, &directory, &env, &profiles)?;
    Ok(Project { name, directory, files, env, model })
}

/// `path` made absolute against `base`, with `.` and `..` folded.
pub fn absolute(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The `-f` files, or `COMPOSE_FILE`'s, or the first of [`FILE_NAMES`] found in the working
/// folder or its parents, with its override file beside it.
fn config_files(options: &Options) -> Result<Vec<PathBuf>, Error> {
    let mut named: Vec<PathBuf> = options.files.clone();
    if named.is_empty() {
        if let Some(list) = options.environment.get("COMPOSE_FILE") {
            let sep = options.environment.get("COMPOSE_PATH_SEPARATOR").map(String::as_str).unwrap_or(":");
            named = list.split(sep).filter(|s| !s.is_empty()).map(PathBuf::from).collect();
        }
    }
    if !named.is_empty() {
        return Ok(named.iter().map(|f| absolute(&options.working_dir, f)).collect());
    }
    let mut dir = Some(options.working_dir.as_path());
    while let Some(d) = dir {
        if let Some(found) = FILE_NAMES.iter().map(|n| d.join(n)).find(|p| p.is_file()) {
            let mut files = vec![found];
            if let Some(over) = OVERRIDE_NAMES.iter().map(|n| d.join(n)).find(|p| p.is_file()) {
                files.push(over);
            }
            return Ok(files);
        }
        dir = d.parent();
    }
    Err(Error::NotFound { dir: options.working_dir.clone() })
}

/// The environment interpolation sees: the process environment over the env files (the
/// `--env-file` ones, else the project folder's `.env` if there is one).
pub fn project_env(process: &Env, directory: &Path, env_files: &[PathBuf]) -> Result<Env, Error> {
    let default = directory.join(".env");
    let files: Vec<PathBuf> = if env_files.is_empty() {
        if default.is_file() {
            vec![default]
        } else {
            vec![]
        }
    } else {
        env_files.to_vec()
    };
    let mut env = Env::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| Error::Read { path: file.clone(), source })?;
        let mut lookup = process.clone();
        for (k, v) in &env {
            lookup.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let entries = parse_env_file(&text, &lookup).map_err(|e| Error::EnvFile {
            path: file.clone(),
            line: e.line,
            message: e.message,
        })?;
        env.extend(entries);
    }
    env.extend(process.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(env)
}

/// Reads, interpolates, validates and rewrites one file, then resolves its `extends` and
/// `include`.
pub fn load_file(path: &Path, env: &Env, process: &Env) -> Result<FileModel, Error> {
    let (mut value, lines, tags) = read_file(path, env)?;
    crate::files::apply_includes(path, &mut value, &lines, process)?;
    crate::files::apply_extends(path, &mut value, &lines, env)?;
    Ok(FileModel { path: path.to_path_buf(), value, tags })
}

/// Reads one file up to its long-syntax model, without `extends` and `include`.
pub fn read_file(path: &Path, env: &Env) -> Result<(Value, Lines, BTreeMap<String, MergeTag>), Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let parsed = yaml::parse(&text).map_err(|e| Error::Syntax {
        file: path.to_path_buf(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    let lines = parsed.lines;
    let invalid = |pointer: &str, message: String| Error::Invalid {
        file: path.to_path_buf(),
        line: lines.line_of(pointer).unwrap_or(0),
        key: dotted(pointer),
        message,
    };
    let mut value = parsed.value;
    match &value {
        Value::Object(_) => {}
        Value::Null => return Err(invalid("", "empty compose file".into())),
        _ => return Err(invalid("", "a compose file is a mapping (services: ...)".into())),
    }
    interpolate_value(&mut value, env, "").map_err(|(pointer, source)| Error::Interpolation {
        file: path.to_path_buf(),
        line: lines.line_of(&pointer).unwrap_or(0),
        key: dotted(&pointer),
        source,
    })?;
    // Repeated entries of lists with unique entries are dropped before validation, as
    // Compose drops them (`cap_add: [X, X]` is not an error).
    merge::dedupe(&mut value, &mut Vec::new());
    if let Some(v) = schema::validate(&value).into_iter().next() {
        return Err(invalid(&v.pointer, v.message));
    }
    canonical::canonical(&mut value).map_err(|e| invalid(&e.pointer, e.message))?;
    merge::dedupe(&mut value, &mut Vec::new());
    Ok((value, lines, parsed.tags))
}

/// `-p`, else `COMPOSE_PROJECT_NAME` (both must be valid names), else the model's `name`,
/// else the project folder's name, both normalized (lowercase, only letters, digits, `-`
/// and `_`).
fn project_name(options: &Options, env: &Env, model: &Value, directory: &Path) -> Result<String, Error> {
    let check = |name: &str, from: &'static str| {
        if is_valid_name(name) {
            Ok(name.to_string())
        } else {
            Err(Error::ProjectName { name: name.to_string(), from })
        }
    };
    if let Some(name) = &options.project_name {
        return check(name, "-p");
    }
    if let Some(name) = env.get("COMPOSE_PROJECT_NAME").filter(|n| !n.is_empty()) {
        return check(name, "COMPOSE_PROJECT_NAME");
    }
    // The file's name, like the folder's, is normalized rather than refused.
    if let Some(name) = model.get("name").and_then(Value::as_str).map(normalize_name).filter(|n| !n.is_empty()) {
        return Ok(name);
    }
    let folder = directory.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let normalized = normalize_name(&folder);
    if normalized.is_empty() {
        return Err(Error::ProjectName { name: folder, from: "the project folder" });
    }
    Ok(normalized)
}

/// Compose's rule for project names.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A folder name as a project name: lowercased, other characters dropped, and what does
/// not start with a letter or digit trimmed.
pub fn normalize_name(folder: &str) -> String {
    let kept: String = folder
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect();
    kept.trim_start_matches(['-', '_']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_normalize_as_compose() {
        assert_eq!(normalize_name("My App.v2"), "myappv2");
        assert_eq!(normalize_name("_x-Y"), "x-y");
        assert!(is_valid_name("a_b-1"));
        assert!(!is_valid_name("-a") && !is_valid_name("A") && !is_valid_name(""));
    }

    #[test]
    fn discovery_walks_up_and_takes_the_override() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("docker-compose.yml"), "services: {}\n").unwrap();
        std::fs::write(dir.path().join("compose.yaml"), "services: {}\n").unwrap();
        std::fs::write(dir.path().join("compose.override.yml"), "services: {}\n").unwrap();
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let options = Options { working_dir: sub, ..Options::default() };
        assert_eq!(
            config_files(&options).unwrap(),
            vec![dir.path().join("compose.yaml"), dir.path().join("compose.override.yml")]
        );
        let empty = tempfile::tempdir().unwrap();
        let options = Options { working_dir: empty.path().to_path_buf(), ..Options::default() };
        // Unless a folder above the temporary one has a compose file of its own.
        let stray = empty.path().ancestors().any(|d| FILE_NAMES.iter().any(|n| d.join(n).is_file()));
        assert!(stray || matches!(config_files(&options), Err(Error::NotFound { .. })));
    }
}
