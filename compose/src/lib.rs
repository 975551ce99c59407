//! berth's Compose: the model of a compose project as the Compose specification defines it
//! and Docker Compose v2 builds it. [`load`] finds the files, merges them, interpolates,
//! validates against the specification's JSON schema and normalizes; [`Project::to_yaml`]
//! prints the result as `docker compose config` does. Called by the CLI's `berth compose`.
//!
//! The steps live in their own modules, in the order the loader runs them: [`yaml`] (parse,
//! with lines), [`interpolate`] (variables and env files), [`schema`] (validation),
//! [`canonical`] (short syntax to long), [`files`] (include and extends), [`merge`],
//! [`normalize`]. Running a project: [`plan`] (containers, options, order) and [`up`] (over
//! the [`up::Engine`] trait the CLI implements with berth's runtime).

#![deny(missing_docs)]

use std::path::PathBuf;

use serde_json::Value;

pub mod canonical;
pub mod error;
pub mod files;
pub mod interpolate;
pub mod load;
pub mod merge;
pub mod normalize;
pub mod plan;
pub mod schema;
pub mod up;
pub mod yaml;

pub use error::Error;
pub use interpolate::Env;

/// What to load: the command line's `-f`, `-p`, `--env-file`, `--profile` and
/// `--project-directory`, and the process environment and working folder (passed in:
/// libraries read neither).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Compose files in merge order; empty: `COMPOSE_FILE`, else discovery from `working_dir`.
    pub files: Vec<PathBuf>,
    /// The folder relative paths on the command line start from.
    pub working_dir: PathBuf,
    /// The project folder [default: the first file's folder].
    pub project_directory: Option<PathBuf>,
    /// The project name (`-p`).
    pub project_name: Option<String>,
    /// Env files instead of the project folder's `.env`.
    pub env_files: Vec<PathBuf>,
    /// Active profiles; empty: `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
    /// The process environment.
    pub environment: Env,
}

/// A loaded, normalized compose project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project name.
    pub name: String,
    /// The project folder.
    pub directory: PathBuf,
    /// The files it was loaded from.
    pub files: Vec<PathBuf>,
    /// The environment interpolation used.
    pub env: Env,
    /// The normalized model, as `docker compose config --format json` would give it.
    pub model: Value,
}

/// Loads the project `options` describe.
pub fn load(options: &Options) -> Result<Project, Error> {
    load::load(options)
}

impl Project {
    /// The model as YAML, with every `$` written `$$` so that the output is itself a compose
    /// file that interpolates to the same model (as `docker compose config` prints it).
    pub fn to_yaml(&self) -> String {
        let mut model = self.model.clone();
        escape_dollars(&mut model);
        yaml::emit(&model)
    }
}

fn escape_dollars(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        Value::Array(items) => items.iter_mut().for_each(escape_dollars),
        Value::Object(map) => map.values_mut().for_each(escape_dollars),
        _ => {}
    }
}

#[cfg(test)]
mod never_panics {
    use proptest::prelude::*;

    /// Compose-shaped YAML: keys the loader gives meaning to, values of every kind.
    fn document() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "services",
            "web",
            "image",
            "ports",
            "volumes",
            "environment",
            "depends_on",
            "extends",
            "include",
            "build",
            "command",
            "profiles",
            "networks",
            "name",
            "deploy",
            "replicas",
            "healthcheck",
            "test",
            "<<",
            "env_file",
            "secrets",
            "devices",
            "extra_hosts",
            "mem_limit",
            "stop_grace_period",
            "x-a",
        ]);
        let scalar = prop::sample::select(vec![
            "1",
            "\"80:80\"",
            "a:b:c",
            "${X:-y}",
            "$$",
            "${",
            "[a, b]",
            "{a: 1}",
            "&a x",
            "*a",
            "!reset []",
            "!override 1",
            "null",
            "true",
            "./d:/d:ro",
            "1g",
            "90s",
            "-",
            "\"1-3:4-6/udp\"",
            "web",
        ]);
        prop::collection::vec((0usize..4, key, scalar, any::<bool>()), 0..24).prop_map(|lines| {
            lines
                .into_iter()
                .map(|(depth, k, v, dash)| format!("{}{}{k}: {v}\n", "  ".repeat(depth), if dash { "- " } else { "" }))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn loading_any_file_never_panics(text in document()) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("compose.yaml"), &text).unwrap();
            let options = crate::Options { working_dir: dir.path().to_path_buf(), ..crate::Options::default() };
            if let Ok(project) = crate::load(&options) {
                let _ = project.to_yaml();
                let _ = crate::plan::plan(&project, &[]);
            }
        }

        #[test]
        fn parsing_any_text_never_panics(text in "[a-z:\\-\\[\\]{}&*!<>|'\" \n#,.$]{0,80}") {
            let _ = crate::yaml::parse(&text);
        }
    }
}
