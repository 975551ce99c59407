//! From the normalized model to what the runtime is asked to run: each service's containers
//! (`<project>-<service>-<n>`), their `runtime::container::RunOptions`, and the order
//! dependencies impose. Called by [`crate::up`] before anything starts.
//!
//! Every key of a service is either used, reported as not applied (a warning the caller
//! prints, as `docker compose` does for keys it ignores), or refused with a message that says
//! what berth's runtime lacks: nothing is silently dropped. Networks, published ports, named
//! volumes, health checks and restart policies come with the runtime's networking and
//! supervision work; until then a service must say `network_mode: host` or `none`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use runtime::container::{Network, RunOptions, Tmpfs, Volume};
use serde_json::Value;

use crate::Project;

/// How a service waits for one it depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Its containers have started.
    Started,
    /// Its first container has exited with status 0.
    CompletedSuccessfully,
}

/// One service, ready to run.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// The service's name.
    pub service: String,
    /// The image to run (`image:`, or `<project>-<service>` for a built one).
    pub image: String,
    /// The build context and Dockerfile, when the service is built.
    pub build: Option<Value>,
    /// How many containers.
    pub replicas: u32,
    /// `container_name`, when set (then `replicas` is 1).
    pub container_name: Option<String>,
    /// Its containers' options (the name is set per container).
    pub options: RunOptions,
    /// Seconds to wait after SIGTERM before SIGKILL.
    pub stop_timeout: u64,
    /// The services it waits for.
    pub depends_on: Vec<(String, Condition)>,
}

impl ServicePlan {
    /// The names of its containers.
    pub fn container_names(&self, project: &str) -> Vec<String> {
        match &self.container_name {
            Some(name) => vec![name.clone()],
            None => (1..=self.replicas).map(|n| format!("{project}-{}-{n}", self.service)).collect(),
        }
    }
}

/// The services to run, in an order where each comes after those it depends on.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The project name.
    pub project: String,
    /// The services in start order.
    pub services: Vec<ServicePlan>,
    /// Keys that are not applied, for the caller to print.
    pub warnings: Vec<String>,
}

/// Why a project cannot be run (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A key berth's runtime cannot honour yet.
    #[error("services.{service}.{key}: {why}")]
    Unsupported {
        /// The service.
        service: String,
        /// The key.
        key: String,
        /// What is missing, and what to do.
        why: String,
    },
    /// A service named on the command line is not in the project.
    #[error("no such service: {0}")]
    NoSuchService(String),
    /// Services depend on each other in a circle.
    #[error("dependency cycle between services: {0}")]
    Cycle(String),
    /// A value the runtime cannot take.
    #[error("services.{service}.{key}: {message}")]
    Invalid {
        /// The service.
        service: String,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Keys whose value is used.
const USED: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "working_dir",
    "user",
    "volumes",
    "read_only",
    "tmpfs",
    "hostname",
    "network_mode",
    "mem_limit",
    "cpus",
    "pids_limit",
    "deploy",
    "cap_add",
    "cap_drop",
    "privileged",
    "devices",
    "security_opt",
    "stdin_open",
    "tty",
    "depends_on",
    "profiles",
    "container_name",
    "stop_grace_period",
    "restart",
    "stop_signal",
    "networks",
];

/// Keys that do not change how the container runs here, said once in the output.
const NOT_APPLIED: &[(&str, &str)] = &[
    ("labels", "containers have no labels yet"),
    ("expose", "documentation only without networks"),
    ("logging", "output goes to berth's log file"),
    ("pull_policy", "images are pulled when missing"),
];

/// Plans `services` (all when empty) of `project` and those they depend on.
pub fn plan(project: &Project, selected: &[String]) -> Result<Plan, PlanError> {
    let all = project.model.get("services").and_then(Value::as_object).cloned().unwrap_or_default();
    for name in selected {
        if !all.contains_key(name) {
            return Err(PlanError::NoSuchService(name.clone()));
        }
    }
    let roots: Vec<String> = if selected.is_empty() { all.keys().cloned().collect() } else { selected.to_vec() };
    let order = start_order(&all, &roots)?;
    let mut warnings = Vec::new();
    let mut services = Vec::new();
    for name in order {
        services.push(service_plan(&project.name, &name, &all[&name], &mut warnings)?);
    }
    Ok(Plan { project: project.name.clone(), services, warnings })
}

fn deps(service: &Value) -> Vec<String> {
    service.get("depends_on").and_then(Value::as_object).map(|d| d.keys().cloned().collect()).unwrap_or_default()
}

/// Depth-first order from `roots`, dependencies first.
fn start_order(all: &serde_json::Map<String, Value>, roots: &[String]) -> Result<Vec<String>, PlanError> {
    fn visit(
        name: &str,
        all: &serde_json::Map<String, Value>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) -> Result<(), PlanError> {
        if done.contains(name) {
            return Ok(());
        }
        if path.iter().any(|p| p == name) {
            return Err(PlanError::Cycle(format!("{} -> {name}", path.join(" -> "))));
        }
        let Some(service) = all.get(name) else { return Ok(()) };
        path.push(name.to_string());
        for dep in deps(service) {
            visit(&dep, all, path, done, out)?;
        }
        path.pop();
        done.insert(name.to_string());
        out.push(name.to_string());
        Ok(())
    }
    let (mut done, mut out) = (BTreeSet::new(), Vec::new());
    for root in roots {
        visit(root, all, &mut Vec::new(), &mut done, &mut out)?;
    }
    Ok(out)
}

fn unsupported(service: &str, key: &str, why: &str) -> PlanError {
    PlanError::Unsupported { service: service.into(), key: key.into(), why: why.into() }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

fn service_plan(project: &str, name: &str, s: &Value, warnings: &mut Vec<String>) -> Result<ServicePlan, PlanError> {
    let map = s.as_object().cloned().unwrap_or_default();
    for key in map.keys() {
        if USED.contains(&key.as_str()) || key.starts_with("x-") {
            continue;
        }
        match NOT_APPLIED.iter().find(|(k, _)| k == key) {
            Some((_, why)) => warnings.push(format!("services.{name}.{key} is not applied: {why}")),
            None => return Err(unsupported(name, key, "not supported by berth compose yet")),
        }
    }
    let invalid = |key: &str, message: String| PlanError::Invalid { service: name.into(), key: key.into(), message };
    let network = match map.get("network_mode").and_then(Value::as_str) {
        Some("host") => Network::Host,
        Some("none") => Network::None,
        Some(other) => {
            return Err(unsupported(name, "network_mode", &format!("{other:?} needs networks, which berth's runtime does not offer yet: use host or none")))
        }
        None => {
            return Err(unsupported(
                name,
                "networks",
                &format!("the service joins the project network {project}_default, which berth's runtime cannot make yet: set network_mode: host (or none) to run it now"),
            ))
        }
    };
    if let Some(r) = map.get("restart").and_then(Value::as_str).filter(|r| *r != "no") {
        return Err(unsupported(
            name,
            "restart",
            &format!("restart policy {r:?} is not supported by berth's runtime yet"),
        ));
    }
    if let Some(sig) =
        map.get("stop_signal").and_then(Value::as_str).filter(|s| !matches!(*s, "SIGTERM" | "TERM" | "15"))
    {
        return Err(unsupported(
            name,
            "stop_signal",
            &format!("{sig} is not supported yet: containers are stopped with SIGTERM"),
        ));
    }
    let (volumes, mut tmpfs) = mounts(name, &map)?;
    tmpfs.extend(strings(map.get("tmpfs")).iter().map(|t| {
        let (path, opts) = t.split_once(':').unwrap_or((t, ""));
        Tmpfs { path: path.into(), options: opts.split(',').filter(|o| !o.is_empty()).map(String::from).collect() }
    }));
    let deploy = map.get("deploy").cloned().unwrap_or(Value::Null);
    for key in deploy.as_object().into_iter().flat_map(|d| d.keys()) {
        if !matches!(key.as_str(), "replicas" | "resources") {
            return Err(unsupported(name, &format!("deploy.{key}"), "not supported by berth compose yet"));
        }
    }
    let limits = deploy.get("resources").and_then(|r| r.get("limits")).cloned().unwrap_or(Value::Null);
    let bytes = |v: Option<&Value>, key: &str| -> Result<Option<i64>, PlanError> {
        v.and_then(Value::as_str)
            .map(|t| t.parse::<i64>().map_err(|_| invalid(key, format!("{t:?} is not a size in bytes"))))
            .transpose()
    };
    let memory =
        bytes(map.get("mem_limit"), "mem_limit")?.or(bytes(limits.get("memory"), "deploy.resources.limits.memory")?);
    let cpus = map.get("cpus").and_then(Value::as_f64).or(limits.get("cpus").and_then(Value::as_f64));
    let pids_limit = map.get("pids_limit").and_then(Value::as_i64).or(limits.get("pids").and_then(Value::as_i64));
    let mut command = strings(map.get("command"));
    let entrypoint = map.get("entrypoint").and_then(Value::as_array).map(|words| {
        let words: Vec<String> = words.iter().filter_map(Value::as_str).map(String::from).collect();
        // The runtime takes one program; the other words go before the command.
        let mut rest = words.get(1..).map(<[String]>::to_vec).unwrap_or_default();
        rest.append(&mut command);
        command = rest;
        words.first().cloned().unwrap_or_default()
    });
    let env: Vec<String> = map
        .get("environment")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
        .collect();
    let container_name = map.get("container_name").and_then(Value::as_str).map(String::from);
    let replicas = deploy.get("replicas").and_then(Value::as_u64).unwrap_or(1) as u32;
    if container_name.is_some() && replicas > 1 {
        return Err(invalid("container_name", "a fixed name allows one container only (deploy.replicas > 1)".into()));
    }
    if !strings(map.get("security_opt")).is_empty()
        || map.get("devices").is_some_and(|d| d.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Err(unsupported(name, "security_opt/devices", "not passed to the runtime by berth compose yet"));
    }
    let options = RunOptions {
        command,
        entrypoint,
        env,
        workdir: map.get("working_dir").and_then(Value::as_str).map(String::from),
        user: map.get("user").and_then(Value::as_str).map(String::from),
        volumes,
        read_only: map.get("read_only") == Some(&Value::Bool(true)),
        tmpfs,
        hostname: map.get("hostname").and_then(Value::as_str).map(String::from),
        network,
        memory,
        cpus,
        pids_limit,
        interactive: map.get("stdin_open") == Some(&Value::Bool(true)),
        tty: map.get("tty") == Some(&Value::Bool(true)),
        detach: true,
        cap_add: strings(map.get("cap_add")),
        cap_drop: strings(map.get("cap_drop")),
        privileged: map.get("privileged") == Some(&Value::Bool(true)),
        ..RunOptions::default()
    };
    let stop_timeout = map
        .get("stop_grace_period")
        .and_then(Value::as_str)
        .and_then(|d| shared::duration::parse_duration(d).ok())
        .map(|d| d.as_secs())
        .unwrap_or(10);
    let depends_on = map
        .get("depends_on")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(dep, d)| match d.get("condition").and_then(Value::as_str).unwrap_or("service_started") {
            "service_started" => Ok((dep.clone(), Condition::Started)),
            "service_completed_successfully" => Ok((dep.clone(), Condition::CompletedSuccessfully)),
            other => Err(unsupported(
                name,
                &format!("depends_on.{dep}.condition"),
                &format!("{other} needs health checks, which berth's runtime does not run yet"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let image = match map.get("image").and_then(Value::as_str) {
        Some(i) => i.to_string(),
        None => format!("{project}-{name}"),
    };
    Ok(ServicePlan {
        service: name.into(),
        image,
        build: map.get("build").cloned(),
        replicas,
        container_name,
        options,
        stop_timeout,
        depends_on,
    })
}

/// Bind mounts and tmpfs mounts; named and anonymous volumes need the runtime's volumes.
fn mounts(name: &str, map: &serde_json::Map<String, Value>) -> Result<(Vec<Volume>, Vec<Tmpfs>), PlanError> {
    let (mut volumes, mut tmpfs) = (Vec::new(), Vec::new());
    for (i, v) in map.get("volumes").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let target = v.get("target").and_then(Value::as_str).unwrap_or_default().to_string();
        match v.get("type").and_then(Value::as_str) {
            Some("bind") => volumes.push(Volume {
                host: PathBuf::from(v.get("source").and_then(Value::as_str).unwrap_or_default()),
                container: target,
                read_only: v.get("read_only") == Some(&Value::Bool(true)),
            }),
            Some("tmpfs") => tmpfs.push(Tmpfs { path: target, options: Vec::new() }),
            other => {
                return Err(unsupported(
                    name,
                    &format!("volumes.{i}"),
                    &format!(
                        "{} volumes are not supported by berth's runtime yet: use a bind mount (./dir:{target})",
                        other.unwrap_or("named")
                    ),
                ))
            }
        }
    }
    Ok((volumes, tmpfs))
}

/// What `down`, `stop`, `ps` and `rm` need of a service: how its containers are named and
/// how long it may take to stop. Read without the checks of [`plan`], so that a project
/// whose keys berth cannot run yet can still be taken down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The service.
    pub service: String,
    /// Its `container_name`, if set.
    pub container_name: Option<String>,
    /// Seconds between SIGTERM and SIGKILL.
    pub stop_timeout: u64,
}

/// The project's services in start order (dependencies first).
pub fn members(project: &Project) -> Result<Vec<Member>, PlanError> {
    let all = project.model.get("services").and_then(Value::as_object).cloned().unwrap_or_default();
    let names: Vec<String> = all.keys().cloned().collect();
    Ok(start_order(&all, &names)?
        .into_iter()
        .map(|name| {
            let s = &all[&name];
            Member {
                container_name: s.get("container_name").and_then(Value::as_str).map(String::from),
                stop_timeout: s
                    .get("stop_grace_period")
                    .and_then(Value::as_str)
                    .and_then(|d| shared::duration::parse_duration(d).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(10),
                service: name,
            }
        })
        .collect())
}

/// The services of `plan` by name.
pub fn by_name(plan: &Plan) -> BTreeMap<&str, &ServicePlan> {
    plan.services.iter().map(|s| (s.service.as_str(), s)).collect()
}
