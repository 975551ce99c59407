//! From the normalized model to what the runtime is asked to run: each service's containers
//! (`<project>-<service>-<n>`), their `runtime::container::RunOptions`, and the order
//! dependencies impose. Called by [`crate::up`] before anything starts.
//!
//! Every key of a service is either used, reported as not applied (a warning the caller
//! prints, as `docker compose` does for keys it ignores), or refused with a message that says
//! what berth's runtime lacks: nothing is silently dropped. A service joins one network of
//! the project (`<project>_default` unless it names another) under its service name and
//! aliases, and publishes ports there. Named volumes are the runtime's volumes
//! `<project>_<key>` (or their `name:`). Health checks, restart policies, stop signals and
//! labels are the runtime's; `secrets` and `configs` with `file:` sources are read-only bind
//! mounts. Every container carries Docker Compose's labels, among them a digest of its
//! service's model (`com.docker.compose.config-hash`) by which `up` tells what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use runtime::container::health::HealthConfig;
use runtime::container::restart::RestartPolicy;
use runtime::container::{Network, RunOptions, Tmpfs, Volume};
use serde_json::Value;
use sha2::Digest;

use crate::Project;

/// How a service waits for one it depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Its containers have started.
    Started,
    /// Its first container has exited with status 0.
    CompletedSuccessfully,
    /// Its containers' health checks have passed.
    Healthy,
}

/// One service, ready to run.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    /// The service's name.
    pub service: String,
    /// The image to run (`image:`, or `<project>-<service>` for a built one).
    pub image: String,
    /// Whether compose named the image (`<project>-<service>`: the service has no
    /// `image:`), which `down --rmi local` removes.
    pub local_image: bool,
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
    /// Whether its containers run a health check (the service's `healthcheck`, or one the
    /// image may bring: then `None`, as the plan cannot tell).
    pub healthcheck: Option<bool>,
    /// The digest of its configuration (`com.docker.compose.config-hash`): `up` makes a
    /// running container again when its label differs.
    pub config_hash: String,
    /// Secrets from `environment:` and configs from `content:`: files with no source on
    /// disk, which [`write_inline_files`] writes and mounts.
    pub inline_files: Vec<InlineFile>,
}

/// A file a secret or config gives a container from the model itself (`environment:` or
/// `content:` sources), not from a file on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// Where it appears in the container.
    pub target: String,
    /// What it holds.
    pub content: Vec<u8>,
}

/// Writes every service's [`InlineFile`]s under `dir`, each named by the digest of its
/// content (so a running container's file never changes under it), and adds a read-only
/// bind mount of each to the service's options, as Docker Compose copies them into its
/// containers. `dir` is made when missing.
pub fn write_inline_files(plan: &mut Plan, dir: &std::path::Path) -> std::io::Result<()> {
    for service in &mut plan.services {
        for file in &service.inline_files {
            std::fs::create_dir_all(dir)?;
            let host = dir.join(hex::encode(sha2::Sha256::digest(&file.content)));
            if !host.exists() {
                let temp = dir.join(format!(".tmp-{}", std::process::id()));
                std::fs::write(&temp, &file.content)?;
                std::fs::set_permissions(&temp, std::os::unix::fs::PermissionsExt::from_mode(0o444))?;
                std::fs::rename(&temp, &host)?;
            }
            service.options.volumes.push(Volume::bind(host, file.target.clone(), true));
        }
    }
    Ok(())
}

/// A network of the project that a service joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    /// Its name for the runtime (`<project>_default`, or `name:`).
    pub name: String,
    /// Made elsewhere: it must exist, and `down` leaves it.
    pub external: bool,
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
    /// The networks they join.
    pub networks: Vec<NetworkPlan>,
    /// The named volumes they mount.
    pub volumes: Vec<VolumePlan>,
    /// Keys that are not applied, for the caller to print.
    pub warnings: Vec<String>,
}

/// A named volume of the project that a service mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    /// Its key under the top-level `volumes:`.
    pub key: String,
    /// Its name for the runtime (`<project>_<key>`, or `name:`).
    pub name: String,
    /// Made elsewhere: it must exist, and `down -v` leaves it.
    pub external: bool,
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
    "ports",
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
    "healthcheck",
    "labels",
    "init",
    "secrets",
    "configs",
];

/// Keys that do not change how the container runs here, said once in the output.
const NOT_APPLIED: &[(&str, &str)] = &[
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
    let declared = project.model.get("networks").and_then(Value::as_object).cloned().unwrap_or_default();
    let declared_volumes = project_volumes(project);
    let mut warnings = Vec::new();
    let mut services = Vec::new();
    let mut networks: Vec<NetworkPlan> = Vec::new();
    let mut volumes: Vec<VolumePlan> = Vec::new();
    for name in order {
        let (service, network) =
            service_plan(&project.name, &name, &all[&name], &declared, &project.model, &project.env, &mut warnings)?;
        if let Some(n) = network.filter(|n| !networks.contains(n)) {
            networks.push(n);
        }
        for v in all[&name].get("volumes").and_then(Value::as_array).into_iter().flatten() {
            let Some(source) = named_source(v) else { continue };
            let Some(plan) = declared_volumes.iter().find(|d| d.key == source) else {
                return Err(PlanError::Invalid {
                    service: name.clone(),
                    key: "volumes".into(),
                    message: format!("volume {source:?} is not declared under the top-level volumes:"),
                });
            };
            if !volumes.contains(plan) {
                check_volume(project, &name, source, &mut warnings)?;
                volumes.push(plan.clone());
            }
        }
        services.push(service);
    }
    for service in &mut services {
        for v in service.options.volumes.iter_mut() {
            if let Some(key) = v.name.clone() {
                v.name = volumes.iter().find(|p| p.key == key).map(|p| p.name.clone());
            }
        }
    }
    Ok(Plan { project: project.name.clone(), services, networks, volumes, warnings })
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

/// The network a service joins: `network_mode`, or the one network of its `networks`.
fn service_network(
    name: &str,
    map: &serde_json::Map<String, Value>,
    declared: &serde_json::Map<String, Value>,
) -> Result<(Network, Vec<String>, Option<NetworkPlan>), PlanError> {
    match map.get("network_mode").and_then(Value::as_str) {
        Some("host") => return Ok((Network::Host, vec![], None)),
        Some("none") => return Ok((Network::None, vec![], None)),
        Some(other) => {
            return Err(unsupported(
                name,
                "network_mode",
                &format!("{other:?} is not supported yet: use host, none, or networks"),
            ))
        }
        None => {}
    }
    let joined = map.get("networks").and_then(Value::as_object).cloned().unwrap_or_default();
    let [(key, settings)] = joined.iter().collect::<Vec<_>>()[..] else {
        return Err(unsupported(name, "networks", "a container joins one network in berth's runtime for now"));
    };
    let def = declared.get(key).cloned().unwrap_or(Value::Null);
    for k in def.as_object().into_iter().flat_map(|d| d.keys()) {
        if !matches!(k.as_str(), "name" | "external" | "driver") && !k.starts_with("x-") {
            return Err(unsupported(
                name,
                &format!("networks.{key}"),
                &format!("network option {k} is not supported yet"),
            ));
        }
    }
    if def.get("driver").and_then(Value::as_str).is_some_and(|d| d != "bridge") {
        return Err(unsupported(name, &format!("networks.{key}"), "only bridge networks are supported"));
    }
    let network_name = def.get("name").and_then(Value::as_str).unwrap_or(key).to_string();
    let external = def.get("external").is_some_and(|e| e == &Value::Bool(true) || e.is_object());
    let mut aliases = vec![name.to_string()];
    for k in settings.as_object().into_iter().flat_map(|m| m.keys()) {
        if k != "aliases" {
            return Err(unsupported(name, &format!("networks.{key}.{k}"), "not supported yet"));
        }
    }
    aliases.extend(strings(settings.get("aliases")));
    let plan = NetworkPlan { name: network_name.clone(), external };
    Ok((Network::Bridge(network_name), aliases, Some(plan)))
}

/// `ports` in long syntax as the runtime's port mappings.
fn publish(name: &str, map: &serde_json::Map<String, Value>) -> Result<Vec<runtime::network::PortMapping>, PlanError> {
    let mut out = Vec::new();
    for (i, p) in map.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let key = format!("ports.{i}");
        let target = p.get("target").and_then(Value::as_u64).and_then(|t| u16::try_from(t).ok());
        let Some(container_port) = target else {
            return Err(unsupported(name, &key, "the container port must be a number from 1 to 65535"));
        };
        let host_port = match p.get("published").and_then(Value::as_str) {
            None => 0,
            Some(text) => text.parse::<u16>().map_err(|_| {
                unsupported(name, &key, &format!("published {text:?}: host port ranges are not supported yet"))
            })?,
        };
        let host_ip =
            match p.get("host_ip").and_then(Value::as_str) {
                None | Some("") | Some("0.0.0.0") => None,
                Some(ip) => Some(ip.parse().map_err(|_| {
                    unsupported(name, &key, &format!("host_ip {ip}: only IPv4 addresses are supported"))
                })?),
            };
        let protocol = match p.get("protocol").and_then(Value::as_str) {
            Some("udp") => runtime::network::ports::Protocol::Udp,
            Some("tcp") | None => runtime::network::ports::Protocol::Tcp,
            Some(other) => return Err(unsupported(name, &key, &format!("protocol {other} is not supported"))),
        };
        out.push(runtime::network::PortMapping { host_ip, host_port, container_port, protocol });
    }
    Ok(out)
}

fn service_plan(
    project: &str,
    name: &str,
    s: &Value,
    declared: &serde_json::Map<String, Value>,
    declared_files: &Value,
    env: &crate::Env,
    warnings: &mut Vec<String>,
) -> Result<(ServicePlan, Option<NetworkPlan>), PlanError> {
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
    let (network, network_aliases, network_plan) = service_network(name, &map, declared)?;
    let publish = publish(name, &map)?;
    if !publish.is_empty() && !matches!(network, Network::Bridge(_)) {
        return Err(unsupported(name, "ports", "published ports need a network (not network_mode host or none)"));
    }
    let (mut volumes, mut tmpfs) = mounts(name, &map)?;
    let (files, inline_files) = file_mounts(name, &map, declared_files, env)?;
    volumes.extend(files);
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
        network_aliases,
        publish,
        memory,
        cpus,
        pids_limit,
        interactive: map.get("stdin_open") == Some(&Value::Bool(true)),
        tty: map.get("tty") == Some(&Value::Bool(true)),
        detach: true,
        cap_add: strings(map.get("cap_add")),
        cap_drop: strings(map.get("cap_drop")),
        privileged: map.get("privileged") == Some(&Value::Bool(true)),
        restart: restart_policy(name, &map)?,
        stop_signal: map.get("stop_signal").and_then(Value::as_str).map(String::from),
        healthcheck: healthcheck(name, map.get("healthcheck"))?,
        labels: labels(project, name, &map, &config_hash(s)),
        init: (map.get("init") == Some(&Value::Bool(true))).then(|| PathBuf::from(INIT_MARK)),
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
            "service_healthy" => Ok((dep.clone(), Condition::Healthy)),
            other => {
                Err(unsupported(name, &format!("depends_on.{dep}.condition"), &format!("unknown condition {other}")))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (image, local_image) = match map.get("image").and_then(Value::as_str) {
        Some(i) => (i.to_string(), false),
        None => (format!("{project}-{name}"), true),
    };
    let healthcheck = match &options.healthcheck {
        Some(h) if h.test.first().is_some_and(|t| t == "NONE") => Some(false),
        Some(h) if !h.test.is_empty() => Some(true),
        _ => None,
    };
    let plan = ServicePlan {
        service: name.into(),
        image,
        local_image,
        build: map.get("build").cloned(),
        replicas,
        container_name,
        options,
        stop_timeout,
        depends_on,
        healthcheck,
        config_hash: config_hash(s),
        inline_files,
    };
    Ok((plan, network_plan))
}

/// What `init: true` sets as the init binary: the engine replaces it with the host's tini
/// (finding it is the binary's job; the plan reads no host paths).
pub const INIT_MARK: &str = "docker-init";

/// The label that carries a container's [`ServicePlan::config_hash`].
pub const CONFIG_HASH_LABEL: &str = "com.docker.compose.config-hash";

/// `restart:` as the runtime's policy.
fn restart_policy(name: &str, map: &serde_json::Map<String, Value>) -> Result<RestartPolicy, PlanError> {
    let Some(text) = map.get("restart").and_then(Value::as_str) else { return Ok(RestartPolicy::No) };
    text.parse().map_err(|e: runtime::container::restart::InvalidPolicy| PlanError::Invalid {
        service: name.into(),
        key: "restart".into(),
        message: e.to_string(),
    })
}

/// `healthcheck:` as the runtime's check (durations in nanoseconds, 0 for the default);
/// `disable: true` is the test `["NONE"]`, which turns off the image's check too.
fn healthcheck(name: &str, check: Option<&Value>) -> Result<Option<HealthConfig>, PlanError> {
    let Some(check) = check.filter(|c| c.is_object()) else { return Ok(None) };
    if check.get("disable") == Some(&Value::Bool(true)) {
        return Ok(Some(HealthConfig { test: vec!["NONE".into()], ..HealthConfig::default() }));
    }
    let nanos = |key: &str| -> Result<i64, PlanError> {
        let Some(text) = check.get(key).and_then(Value::as_str) else { return Ok(0) };
        let d = shared::duration::parse_duration(text).map_err(|e| PlanError::Invalid {
            service: name.into(),
            key: format!("healthcheck.{key}"),
            message: e.to_string(),
        })?;
        Ok(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    };
    Ok(Some(HealthConfig {
        test: strings(check.get("test")),
        interval: nanos("interval")?,
        timeout: nanos("timeout")?,
        start_period: nanos("start_period")?,
        retries: check.get("retries").and_then(Value::as_u64).and_then(|r| u32::try_from(r).ok()).unwrap_or(0),
    }))
}

/// The service's `labels` and those Docker Compose sets on every container it makes (the
/// container number is set per container by [`crate::up`]).
fn labels(project: &str, name: &str, map: &serde_json::Map<String, Value>, hash: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = map
        .get("labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        .collect();
    for (k, v) in [
        ("com.docker.compose.project", project),
        ("com.docker.compose.service", name),
        ("com.docker.compose.oneoff", "False"),
        (CONFIG_HASH_LABEL, hash),
    ] {
        labels.insert(k.into(), v.into());
    }
    labels
}

/// The digest of a service's normalized model, without what does not need a new container
/// (`deploy.replicas`, which `up` meets by adding or removing containers).
fn config_hash(service: &Value) -> String {
    let mut service = service.clone();
    if let Some(map) = service.as_object_mut() {
        if let Some(deploy) = map.get_mut("deploy").and_then(Value::as_object_mut) {
            deploy.remove("replicas");
            if deploy.is_empty() {
                map.remove("deploy");
            }
        }
    }
    hex::encode(sha2::Sha256::digest(service.to_string().as_bytes()))
}

/// `secrets` and `configs`, as Docker Compose gives them to containers without a swarm: a
/// secret at `/run/secrets/<name>` (or its `target`), a config at `/<name>` (or its
/// `target`). `file:` sources become read-only bind mounts; `environment:` (a secret's value
/// from the project's environment) and `content:` (a config's text) become
/// [`InlineFile`]s; `external` ones, which only a swarm holds, are refused.
fn file_mounts(
    name: &str,
    map: &serde_json::Map<String, Value>,
    model: &Value,
    env: &crate::Env,
) -> Result<(Vec<Volume>, Vec<InlineFile>), PlanError> {
    let mut mounts = Vec::new();
    let mut inline = Vec::new();
    for (kind, prefix) in [("secrets", "/run/secrets/"), ("configs", "/")] {
        for (i, item) in map.get(kind).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let key = format!("{kind}.{i}");
            let source = item.get("source").and_then(Value::as_str).unwrap_or_default();
            let target = item.get("target").and_then(Value::as_str).unwrap_or(source);
            let target = if target.starts_with('/') { target.to_string() } else { format!("{prefix}{target}") };
            let Some(def) = model.get(kind).and_then(|d| d.get(source)) else {
                return Err(unsupported(
                    name,
                    &key,
                    &format!("{source:?} is not declared under the top-level {kind}:"),
                ));
            };
            let text = |k: &str| def.get(k).and_then(Value::as_str);
            if def.get("external").is_some_and(|e| e.as_bool() == Some(true) || e.is_object()) {
                let why = format!(
                    "{source} is external: external {kind} live in a swarm, which berth compose does not use; \
                     give it a file:, environment: or content: source"
                );
                return Err(unsupported(name, &key, &why));
            }
            if let Some(file) = text("file") {
                mounts.push(Volume::bind(PathBuf::from(file), target, true));
            } else if let (Some(var), "secrets") = (text("environment"), kind) {
                let Some(value) = env.get(var) else {
                    return Err(PlanError::Invalid {
                        service: name.into(),
                        key: key.clone(),
                        message: format!("secret {source} comes from environment variable {var}, which is not set"),
                    });
                };
                inline.push(InlineFile { target, content: value.clone().into_bytes() });
            } else if let (Some(content), "configs") = (text("content"), kind) {
                inline.push(InlineFile { target, content: content.as_bytes().to_vec() });
            } else {
                let sources = if kind == "secrets" { "file: or environment:" } else { "file: or content:" };
                return Err(unsupported(name, &key, &format!("{source}: berth compose supports {sources} sources")));
            }
        }
    }
    Ok((mounts, inline))
}

/// Refuses what a berth volume cannot be: another driver, driver options.
fn check_volume(project: &Project, service: &str, key: &str, warnings: &mut Vec<String>) -> Result<(), PlanError> {
    let def = project.model.get("volumes").and_then(|v| v.get(key)).cloned().unwrap_or(Value::Null);
    for k in def.as_object().into_iter().flat_map(|d| d.keys()) {
        match k.as_str() {
            "name" | "external" => {}
            "driver" if def[k] == "local" => {}
            "labels" => warnings
                .push(format!("volumes.{key}.labels is not applied: berth's volume keeps compose's labels only")),
            _ if k.starts_with("x-") => {}
            _ => {
                return Err(unsupported(
                    service,
                    &format!("volumes ({key})"),
                    &format!("volume option {k} is not supported: berth's volumes are local folders"),
                ))
            }
        }
    }
    Ok(())
}

/// The key of the named volume a service's `volumes` entry mounts, if it mounts one.
fn named_source(v: &Value) -> Option<&str> {
    if v.get("type").and_then(Value::as_str) != Some("volume") {
        return None;
    }
    v.get("source").and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Bind mounts, tmpfs mounts and volumes. A named volume's `name` is its key here;
/// [`plan`] replaces it with the runtime's name (`<project>_<key>`).
fn mounts(name: &str, map: &serde_json::Map<String, Value>) -> Result<(Vec<Volume>, Vec<Tmpfs>), PlanError> {
    let (mut volumes, mut tmpfs) = (Vec::new(), Vec::new());
    for (i, v) in map.get("volumes").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let target = v.get("target").and_then(Value::as_str).unwrap_or_default().to_string();
        let read_only = v.get("read_only") == Some(&Value::Bool(true));
        match v.get("type").and_then(Value::as_str) {
            Some("bind") => volumes.push(Volume::bind(
                PathBuf::from(v.get("source").and_then(Value::as_str).unwrap_or_default()),
                target,
                read_only,
            )),
            Some("tmpfs") => tmpfs.push(Tmpfs { path: target, options: Vec::new() }),
            Some("volume") => volumes.push(Volume {
                container: target,
                read_only,
                name: named_source(v).map(String::from),
                anonymous: named_source(v).is_none(),
                no_copy: v.get("volume").and_then(|o| o.get("nocopy")) == Some(&Value::Bool(true)),
                long_syntax: true,
                ..Volume::default()
            }),
            other => {
                return Err(unsupported(
                    name,
                    &format!("volumes.{i}"),
                    &format!("{} mounts are not supported by berth's runtime", other.unwrap_or("untyped")),
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
    /// The services it depends on (`down` stops it before them).
    pub depends_on: Vec<String>,
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
                depends_on: deps(s),
                service: name,
            }
        })
        .collect())
}

/// The project's networks (those its services use, as the normalizer left them).
pub fn project_networks(project: &Project) -> Vec<NetworkPlan> {
    let declared = project.model.get("networks").and_then(Value::as_object).cloned().unwrap_or_default();
    declared
        .iter()
        .map(|(key, def)| NetworkPlan {
            name: def.get("name").and_then(Value::as_str).unwrap_or(key).to_string(),
            external: def.get("external").is_some_and(|e| e == &Value::Bool(true) || e.is_object()),
        })
        .collect()
}

/// The project's named volumes (as the normalizer left them: `name` set).
pub fn project_volumes(project: &Project) -> Vec<VolumePlan> {
    let declared = project.model.get("volumes").and_then(Value::as_object).cloned().unwrap_or_default();
    declared
        .iter()
        .map(|(key, def)| VolumePlan {
            key: key.clone(),
            name: def
                .get("name")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| format!("{}_{key}", project.name)),
            external: def.get("external").is_some_and(|e| e == &Value::Bool(true) || e.is_object()),
        })
        .collect()
}

/// The services of `plan` by name.
pub fn by_name(plan: &Plan) -> BTreeMap<&str, &ServicePlan> {
    plan.services.iter().map(|s| (s.service.as_str(), s)).collect()
}
