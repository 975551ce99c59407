//! The errors of loading a compose project. Each names the file, and where the problem is in
//! it, the line and the key (as Compose's dotted path, `services.web.ports.0`); a cause is a
//! `#[source]`, which `{:#}` prints after the message.

use std::path::PathBuf;

use crate::interpolate::InterpolateError;

/// Why a compose project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No compose file in the folder or its parents.
    #[error(
        "no configuration file provided: none of compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml in {} or its parents (name one with -f FILE)",
        dir.display()
    )]
    NotFound {
        /// Where the search started.
        dir: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid YAML.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A file's content breaks a rule (schema, interpolation, short syntax, extends,
    /// include); `line` is 0 when the key has no line (it came from elsewhere).
    #[error("{}:{line}: {key}: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the key.
        line: usize,
        /// The key, dotted (`services.web.image`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A variable could not be interpolated.
    #[error("{}:{line}: {key}", file.display())]
    Interpolation {
        /// The file.
        file: PathBuf,
        /// 1-based line of the key.
        line: usize,
        /// The key, dotted.
        key: String,
        /// The cause.
        #[source]
        source: InterpolateError,
    },
    /// An env file (`.env`, `--env-file`, a service's `env_file`) could not be read.
    #[error("{}:{line}: {message}", path.display())]
    EnvFile {
        /// The env file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A project name given with `-p`, `COMPOSE_PROJECT_NAME` or `name:` is not allowed.
    #[error("invalid project name {name:?} (from {from}): it must contain only lowercase letters, digits, dashes and underscores, and begin with a letter or digit")]
    ProjectName {
        /// The name.
        name: String,
        /// Where it came from.
        from: &'static str,
    },
    /// The project as a whole is inconsistent (a dependency on an undefined service, ...).
    #[error("{0}")]
    Project(String),
}

/// `/services/web/ports/0` as `services.web.ports.0`.
pub fn dotted(pointer: &str) -> String {
    let key: Vec<String> = pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
    if key.is_empty() {
        "(root)".into()
    } else {
        key.join(".")
    }
}
