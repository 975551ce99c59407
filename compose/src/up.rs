//! Running a planned project ([`crate::plan`]) through a small [`Engine`] trait: `up`
//! starts the services in dependency order (waiting for a dependency's successful exit, or
//! for its health check to pass, where the file asks), `wait_ready` is `up --wait`, `down`
//! stops and removes exactly the containers named after the project's services, `stop`,
//! `start`, `restart` and `rm` do one of those steps. The CLI implements the trait
//! over berth's image store and runtime; the tests here use a recording fake, so the
//! ordering and naming rules are checked without root.

use std::time::Duration;

use runtime::container::health::HealthStatus;
use runtime::container::RunOptions;

use crate::plan::{Condition, Member, NetworkPlan, Plan, ServicePlan, VolumePlan, CONFIG_HASH_LABEL};

/// A container the engine knows, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    /// Its name.
    pub name: String,
    /// Whether it runs.
    pub running: bool,
    /// Its exit status, once it has exited.
    pub exit_code: Option<i32>,
    /// Its health, while it runs with a health check.
    pub health: Option<HealthStatus>,
    /// The image and options it was made with, when the engine keeps them: a running
    /// container whose configuration differs from the plan's is made again.
    pub config: Option<(String, RunOptions)>,
}

/// What a runtime does for compose: the calls `up` and `down` are made of.
pub trait Engine {
    /// Every container (the caller picks the project's by name).
    fn list(&self) -> Result<Vec<Existing>, EngineError>;
    /// Makes the service's image present: pulls it, or builds it when the service has
    /// `build` and the image is missing (or `rebuild`).
    fn ensure_image(&self, service: &ServicePlan, rebuild: bool) -> Result<(), EngineError>;
    /// Creates and starts container `name` of `image`, detached.
    fn start(&self, name: &str, image: &str, options: &RunOptions) -> Result<(), EngineError>;
    /// Waits until container `name` has exited; its status.
    fn wait(&self, name: &str) -> Result<i32, EngineError>;
    /// Starts the stopped container `name` again, as it was made.
    fn restart(&self, name: &str) -> Result<(), EngineError>;
    /// Waits a little before the state of the containers is read again (while a health
    /// check is under way).
    fn pause(&self) {
        std::thread::sleep(Duration::from_millis(200));
    }
    /// Whether the user asked to stop (Ctrl-C on a foreground `up`): `up` then starts
    /// nothing more and returns [`UpError::Cancelled`], and the caller stops what was started.
    fn cancelled(&self) -> bool {
        false
    }
    /// Stops container `name` (SIGTERM, then SIGKILL after `timeout`).
    fn stop(&self, name: &str, timeout: Duration) -> Result<(), EngineError>;
    /// Creates and starts the containers of `batch` (name, image, options) at once; one
    /// result per container, in order. The default starts them one after another.
    fn start_many(&self, batch: &[(String, String, RunOptions)]) -> Vec<Result<(), EngineError>> {
        batch.iter().map(|(name, image, options)| self.start(name, image, options)).collect()
    }
    /// Stops the containers of `batch` (name, timeout) at once, as Docker Compose stops
    /// the services that no running service depends on; one result per container, in
    /// order. The default stops them one after another.
    fn stop_many(&self, batch: &[(String, Duration)]) -> Vec<Result<(), EngineError>> {
        batch.iter().map(|(name, timeout)| self.stop(name, *timeout)).collect()
    }
    /// Removes the stopped container `name`.
    fn remove(&self, name: &str) -> Result<(), EngineError>;
    /// Makes network `name` unless it exists; true when it was made.
    fn ensure_network(&self, name: &str) -> Result<bool, EngineError>;
    /// Whether network `name` exists.
    fn network_exists(&self, name: &str) -> Result<bool, EngineError>;
    /// Removes network `name`.
    fn remove_network(&self, name: &str) -> Result<(), EngineError>;
    /// Makes volume `name` with `labels` unless it exists; true when it was made.
    fn ensure_volume(&self, name: &str, labels: &[(&str, &str)]) -> Result<bool, EngineError>;
    /// Whether volume `name` exists.
    fn volume_exists(&self, name: &str) -> Result<bool, EngineError>;
    /// Removes volume `name`.
    fn remove_volume(&self, name: &str) -> Result<(), EngineError>;
    /// Removes image `name`; false when there is none of that name.
    fn remove_image(&self, name: &str) -> Result<bool, EngineError>;
}

/// A failure of the engine, in its words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// Why `up` or `down` stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The engine failed on a container.
    #[error("{what} {name}")]
    Engine {
        /// What was being done.
        what: &'static str,
        /// The container or service.
        name: String,
        /// The engine's error.
        #[source]
        source: EngineError,
    },
    /// An external network does not exist.
    #[error("network {0} is declared external but does not exist: create it first (berth network create {0})")]
    MissingExternal(String),
    /// An external volume does not exist.
    #[error("volume {0} is declared external but does not exist: create it first (berth volume create {0})")]
    MissingExternalVolume(String),
    /// A dependency that had to complete successfully did not.
    #[error(
        "service {service} depends on {dependency} completing successfully, but {dependency} exited with status {code}"
    )]
    DependencyFailed {
        /// The waiting service.
        service: String,
        /// The dependency.
        dependency: String,
        /// Its exit status.
        code: i32,
    },
    /// A container that had to become healthy did not.
    #[error("container {container} is {state}")]
    NotHealthy {
        /// The container.
        container: String,
        /// What it became instead: unhealthy, exited, gone.
        state: String,
    },
    /// The user asked to stop ([`Engine::cancelled`]) before every service had started.
    #[error("cancelled")]
    Cancelled,
    /// A container that had to become healthy has no health check.
    #[error("container {0} has no healthcheck configured")]
    NoHealthcheck(String),
}

fn engine<'a>(what: &'static str, name: &'a str) -> impl FnOnce(EngineError) -> UpError + 'a {
    move |source| UpError::Engine { what, name: name.to_string(), source }
}

/// Starts the plan's services in order; `say` receives one line per step (as
/// `docker compose up -d` prints them). A container that already runs with the planned image
/// and options is left as it is; one whose configuration changed, or that has exited, is
/// removed and started again.
pub fn up(engine_: &dyn Engine, plan: &Plan, rebuild: bool, say: &mut dyn FnMut(String)) -> Result<(), UpError> {
    let go_on = || if engine_.cancelled() { Err(UpError::Cancelled) } else { Ok(()) };
    for service in &plan.services {
        go_on()?;
        engine_.ensure_image(service, rebuild).map_err(engine("cannot get the image of service", &service.service))?;
    }
    for network in &plan.networks {
        if network.external {
            if !engine_.network_exists(&network.name).map_err(engine("cannot read network", &network.name))? {
                return Err(UpError::MissingExternal(network.name.clone()));
            }
        } else if engine_.ensure_network(&network.name).map_err(engine("cannot create network", &network.name))? {
            say(format!("Network {}  Created", network.name));
        }
    }
    for volume in plan.volumes.iter().filter(|v| v.external) {
        if !engine_.volume_exists(&volume.name).map_err(engine("cannot read volume", &volume.name))? {
            return Err(UpError::MissingExternalVolume(volume.name.clone()));
        }
    }
    for volume in &plan.volumes {
        if !volume.external {
            let labels =
                [("com.docker.compose.project", plan.project.as_str()), ("com.docker.compose.volume", &volume.key)];
            if engine_.ensure_volume(&volume.name, &labels).map_err(engine("cannot create volume", &volume.name))? {
                say(format!("Volume {}  Created", volume.name));
            }
        }
    }
    let by_name = crate::plan::by_name(plan);
    let mut started: Vec<&str> = Vec::new();
    let mut left: Vec<&ServicePlan> = plan.services.iter().collect();
    while !left.is_empty() {
        // A wave: the services whose planned dependencies have all started; their
        // containers start together (Engine::start_many), as Docker Compose starts them.
        let ready = |s: &ServicePlan| {
            s.depends_on.iter().all(|(d, _)| !by_name.contains_key(d.as_str()) || started.contains(&d.as_str()))
        };
        let (wave, rest): (Vec<&ServicePlan>, Vec<&ServicePlan>) = left.iter().partition(|s| ready(s));
        let (wave, rest) = if wave.is_empty() { (rest, Vec::new()) } else { (wave, rest) };
        let mut batch = Vec::new();
        for service in &wave {
            for (dep, condition) in &service.depends_on {
                let Some(dep_plan) = by_name.get(dep.as_str()) else { continue };
                wait_for_dependency(engine_, plan, service, dep_plan, *condition, say)?;
            }
            go_on()?;
            batch.extend(prepare_service(engine_, plan, service, say)?);
        }
        for ((name, _, _), result) in batch.iter().zip(engine_.start_many(&batch)) {
            result.map_err(engine("cannot start container", name))?;
            say(format!("Container {name}  Started"));
        }
        started.extend(wave.iter().map(|s| s.service.as_str()));
        left = rest;
    }
    Ok(())
}

/// Waits until `dep` meets `condition`, as `service` asks.
fn wait_for_dependency(
    engine_: &dyn Engine,
    plan: &Plan,
    service: &ServicePlan,
    dep: &ServicePlan,
    condition: Condition,
    say: &mut dyn FnMut(String),
) -> Result<(), UpError> {
    match condition {
        Condition::Started => Ok(()),
        Condition::CompletedSuccessfully => {
            let Some(first) = dep.container_names(&plan.project).into_iter().next() else { return Ok(()) };
            say(format!("Container {first}  Waiting"));
            let code = engine_.wait(&first).map_err(engine("cannot wait for container", &first))?;
            if code != 0 {
                return Err(UpError::DependencyFailed {
                    service: service.service.clone(),
                    dependency: dep.service.clone(),
                    code,
                });
            }
            say(format!("Container {first}  Exited"));
            Ok(())
        }
        Condition::Healthy => {
            for name in dep.container_names(&plan.project) {
                say(format!("Container {name}  Waiting"));
                wait_healthy(engine_, &name)?;
                say(format!("Container {name}  Healthy"));
            }
            Ok(())
        }
    }
}

/// Polls until container `name` is healthy; fails when it becomes unhealthy, stops, or runs
/// no health check (as Docker Compose does). The health check's retries bound the wait.
pub fn wait_healthy(engine_: &dyn Engine, name: &str) -> Result<(), UpError> {
    loop {
        if engine_.cancelled() {
            return Err(UpError::Cancelled);
        }
        let existing = engine_.list().map_err(engine("cannot read container", name))?;
        let not = |state: &str| UpError::NotHealthy { container: name.to_string(), state: state.into() };
        let Some(c) = existing.into_iter().find(|e| e.name == name) else { return Err(not("gone")) };
        if !c.running {
            return Err(not(&format!("exited ({})", c.exit_code.unwrap_or(-1))));
        }
        match c.health {
            Some(HealthStatus::Healthy) => return Ok(()),
            Some(HealthStatus::Unhealthy) => return Err(not("unhealthy")),
            Some(HealthStatus::Starting) => engine_.pause(),
            None => return Err(UpError::NoHealthcheck(name.to_string())),
        }
    }
}

/// `up --wait`: waits until every container of the plan runs, and is healthy when it has a
/// health check; a container that others wait to complete may have exited with status 0.
pub fn wait_ready(engine_: &dyn Engine, plan: &Plan, say: &mut dyn FnMut(String)) -> Result<(), UpError> {
    let one_shot = |s: &ServicePlan| {
        plan.services
            .iter()
            .any(|o| o.depends_on.iter().any(|(d, c)| d == &s.service && *c == Condition::CompletedSuccessfully))
    };
    for service in &plan.services {
        for name in service.container_names(&plan.project) {
            say(format!("Container {name}  Waiting"));
            let existing = engine_.list().map_err(engine("cannot read container", &name))?;
            let c = existing.iter().find(|e| e.name == name);
            match c {
                Some(c) if !c.running && c.exit_code == Some(0) && one_shot(service) => {
                    say(format!("Container {name}  Exited"));
                    continue;
                }
                Some(c) if c.running && c.health.is_none() => {
                    say(format!("Container {name}  Running"));
                    continue;
                }
                _ => {}
            }
            wait_healthy(engine_, &name)?;
            say(format!("Container {name}  Healthy"));
        }
    }
    Ok(())
}

/// The containers of one service that do not run with its configuration yet, as (name,
/// image, options) to start: those whose configuration changed are stopped and removed here.
fn prepare_service(
    engine_: &dyn Engine,
    plan: &Plan,
    service: &ServicePlan,
    say: &mut dyn FnMut(String),
) -> Result<Vec<(String, String, RunOptions)>, UpError> {
    let existing = engine_.list().map_err(engine("cannot list the containers for service", &service.service))?;
    let mut out = Vec::new();
    for (n, name) in service.container_names(&plan.project).into_iter().enumerate() {
        let mut options = service.options.clone();
        options.name = Some(name.clone());
        options.labels.insert("com.docker.compose.container-number".into(), (n + 1).to_string());
        match existing.iter().find(|e| e.name == name) {
            Some(e) if e.running && e.config.as_ref().is_none_or(|c| same_config(c, service)) => {
                say(format!("Container {name}  Running"));
                continue;
            }
            Some(e) => {
                if e.running {
                    engine_
                        .stop(&name, Duration::from_secs(service.stop_timeout))
                        .map_err(engine("cannot stop container", &name))?;
                }
                engine_.remove(&name).map_err(engine("cannot remove container", &name))?;
                say(format!("Container {name}  Recreated"));
            }
            None => say(format!("Container {name}  Created")),
        }
        out.push((name, service.image.clone(), options));
    }
    Ok(out)
}

/// Whether a container made with `made` is what `service` asks for: the same image, and the
/// same configuration by its `com.docker.compose.config-hash` label.
fn same_config((image, options): &(String, RunOptions), service: &ServicePlan) -> bool {
    *image == service.image && options.labels.get(CONFIG_HASH_LABEL) == Some(&service.config_hash)
}

/// The project's containers that exist, service by service in reverse start order (those
/// that depend on others first), with their stop timeouts; a service's extra replicas
/// (`-4` when 3 are planned) too. Other containers, whatever their names, are not included.
pub fn project_containers(project: &str, members: &[Member], existing: &[Existing]) -> Vec<(Existing, u64)> {
    let mut out = Vec::new();
    for member in members.iter().rev() {
        let prefix = format!("{project}-{}-", member.service);
        for e in existing {
            let numbered =
                e.name.strip_prefix(&prefix).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if numbered || member.container_name.as_deref() == Some(e.name.as_str()) {
                out.push((e.clone(), member.stop_timeout));
            }
        }
    }
    out
}

/// Stops the project's running containers, dependents first: in waves, each wave the
/// services that no service still running depends on, stopped together
/// ([`Engine::stop_many`]).
pub fn stop(
    engine_: &dyn Engine,
    project: &str,
    members: &[Member],
    say: &mut dyn FnMut(String),
) -> Result<(), UpError> {
    let existing = engine_.list().map_err(engine("cannot list the containers of project", project))?;
    let mut left: Vec<&Member> = members.iter().collect();
    while !left.is_empty() {
        let needed = |m: &Member| left.iter().any(|o| o.depends_on.contains(&m.service));
        let (wave, rest): (Vec<&Member>, Vec<&Member>) = left.iter().partition(|m| !needed(m));
        // A cycle (the planner refuses them, members() may not): stop what is left at once.
        let (wave, rest) = if wave.is_empty() { (rest, Vec::new()) } else { (wave, rest) };
        let wave: Vec<Member> = wave.into_iter().cloned().collect();
        let batch: Vec<(String, Duration)> = project_containers(project, &wave, &existing)
            .into_iter()
            .filter(|(c, _)| c.running)
            .map(|(c, timeout)| (c.name, Duration::from_secs(timeout)))
            .collect();
        for ((name, _), result) in batch.iter().zip(engine_.stop_many(&batch)) {
            result.map_err(engine("cannot stop container", name))?;
            say(format!("Container {name}  Stopped"));
        }
        left = rest;
    }
    Ok(())
}

/// Removes the project's stopped containers.
pub fn rm(engine_: &dyn Engine, project: &str, members: &[Member], say: &mut dyn FnMut(String)) -> Result<(), UpError> {
    let existing = engine_.list().map_err(engine("cannot list the containers of project", project))?;
    for (c, _) in project_containers(project, members, &existing) {
        if !c.running {
            engine_.remove(&c.name).map_err(engine("cannot remove container", &c.name))?;
            say(format!("Container {}  Removed", c.name));
        }
    }
    Ok(())
}

/// Starts the project's stopped containers again, dependencies first (`compose start`).
pub fn start(
    engine_: &dyn Engine,
    project: &str,
    members: &[Member],
    say: &mut dyn FnMut(String),
) -> Result<(), UpError> {
    let existing = engine_.list().map_err(engine("cannot list the containers of project", project))?;
    for (c, _) in project_containers(project, members, &existing).into_iter().rev() {
        if !c.running {
            engine_.restart(&c.name).map_err(engine("cannot start container", &c.name))?;
            say(format!("Container {}  Started", c.name));
        }
    }
    Ok(())
}

/// Stops the project's containers, dependents first, and starts them again, dependencies
/// first (`compose restart`).
pub fn restart(
    engine_: &dyn Engine,
    project: &str,
    members: &[Member],
    say: &mut dyn FnMut(String),
) -> Result<(), UpError> {
    stop(engine_, project, members, say)?;
    start(engine_, project, members, say)
}

/// Stops and removes the project's containers, then its networks that are not external:
/// exactly what `up` made; with `volumes` (`down -v`), its named volumes that are not
/// external too.
pub fn down(
    engine_: &dyn Engine,
    project: &str,
    members: &[Member],
    networks: &[NetworkPlan],
    volumes: &[VolumePlan],
    say: &mut dyn FnMut(String),
) -> Result<(), UpError> {
    stop(engine_, project, members, say)?;
    rm(engine_, project, members, say)?;
    for network in networks.iter().filter(|n| !n.external) {
        if engine_.network_exists(&network.name).map_err(engine("cannot read network", &network.name))? {
            engine_.remove_network(&network.name).map_err(engine("cannot remove network", &network.name))?;
            say(format!("Network {}  Removed", network.name));
        }
    }
    for volume in volumes.iter().filter(|v| !v.external) {
        if engine_.volume_exists(&volume.name).map_err(engine("cannot read volume", &volume.name))? {
            engine_.remove_volume(&volume.name).map_err(engine("cannot remove volume", &volume.name))?;
            say(format!("Volume {}  Removed", volume.name));
        }
    }
    Ok(())
}

/// Which images `down --rmi` removes, as Docker Compose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rmi {
    /// The images compose named, built for services without `image:`.
    Local,
    /// Every service's image.
    All,
}

/// Removes the images of `plan`'s services that `which` names, each once; an image that
/// is already gone is passed over. Called after [`down`] removed the containers.
pub fn remove_images(
    engine_: &dyn Engine,
    plan: &Plan,
    which: Rmi,
    say: &mut dyn FnMut(String),
) -> Result<(), UpError> {
    let mut seen = std::collections::BTreeSet::new();
    for service in &plan.services {
        let wanted = (which == Rmi::All || service.local_image) && seen.insert(service.image.as_str());
        if wanted && engine_.remove_image(&service.image).map_err(engine("cannot remove image", &service.image))? {
            say(format!("Image {}  Removed", service.image));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    use serde_json::json;

    use crate::plan::plan;
    use crate::Project;
    use runtime::container::restart::RestartPolicy;

    #[derive(Default)]
    struct Fake {
        networks: RefCell<Vec<String>>,
        volumes: RefCell<Vec<String>>,
        containers: RefCell<Vec<Existing>>,
        calls: RefCell<Vec<String>>,
        /// The batches of `stop_many`, names joined by spaces.
        batches: RefCell<Vec<String>>,
        /// The batches of `start_many`, names sorted and joined by spaces.
        start_batches: RefCell<Vec<String>>,
        /// `cancelled` holds once this many containers have started.
        cancel_after: Option<usize>,
        exit_codes: Vec<(String, i32)>,
        /// Containers started with a health check report `starting` on this many reads,
        /// then this health.
        health_after: Option<(u32, HealthStatus)>,
        reads: RefCell<u32>,
    }

    impl Engine for Fake {
        fn list(&self) -> Result<Vec<Existing>, EngineError> {
            let mut reads = self.reads.borrow_mut();
            *reads += 1;
            let mut all = self.containers.borrow().clone();
            for c in all.iter_mut().filter(|c| c.health.is_some()) {
                match self.health_after {
                    Some((n, h)) if *reads > n => c.health = Some(h),
                    _ => {}
                }
            }
            Ok(all)
        }
        fn restart(&self, name: &str) -> Result<(), EngineError> {
            self.calls.borrow_mut().push(format!("restart {name}"));
            for c in self.containers.borrow_mut().iter_mut().filter(|c| c.name == name) {
                c.running = true;
            }
            Ok(())
        }
        fn pause(&self) {
            self.calls.borrow_mut().push("pause".into());
        }
        fn cancelled(&self) -> bool {
            self.cancel_after.is_some_and(|n| self.containers.borrow().len() >= n)
        }
        fn ensure_image(&self, s: &ServicePlan, _: bool) -> Result<(), EngineError> {
            self.calls.borrow_mut().push(format!("image {}", s.image));
            Ok(())
        }
        fn start(&self, name: &str, image: &str, options: &RunOptions) -> Result<(), EngineError> {
            assert_eq!(options.name.as_deref(), Some(name));
            self.calls.borrow_mut().push(format!("start {name} {image}"));
            // As the runtime does, record the volumes' folders and anonymous names.
            let mut options = options.clone();
            for v in options.volumes.iter_mut().filter(|v| v.is_volume()) {
                let volume = v.name.get_or_insert_with(|| "0123abcd".into());
                v.host = format!("/volumes/{volume}/_data").into();
            }
            let health = options.healthcheck.as_ref().map(|_| HealthStatus::Starting);
            let config = Some((image.to_string(), options));
            self.containers.borrow_mut().push(Existing {
                name: name.into(),
                running: true,
                exit_code: None,
                health,
                config,
            });
            Ok(())
        }
        fn wait(&self, name: &str) -> Result<i32, EngineError> {
            self.calls.borrow_mut().push(format!("wait {name}"));
            Ok(self.exit_codes.iter().find(|(n, _)| n == name).map(|(_, c)| *c).unwrap_or(0))
        }
        fn stop(&self, name: &str, _: Duration) -> Result<(), EngineError> {
            self.calls.borrow_mut().push(format!("stop {name}"));
            for c in self.containers.borrow_mut().iter_mut().filter(|c| c.name == name) {
                c.running = false;
            }
            Ok(())
        }
        fn start_many(&self, batch: &[(String, String, RunOptions)]) -> Vec<Result<(), EngineError>> {
            let mut names: Vec<&str> = batch.iter().map(|(n, _, _)| n.as_str()).collect();
            names.sort();
            self.start_batches.borrow_mut().push(names.join(" "));
            batch.iter().map(|(name, image, options)| self.start(name, image, options)).collect()
        }
        fn stop_many(&self, batch: &[(String, Duration)]) -> Vec<Result<(), EngineError>> {
            let names: Vec<&str> = batch.iter().map(|(n, _)| n.as_str()).collect();
            self.batches.borrow_mut().push(names.join(" "));
            batch.iter().map(|(name, timeout)| self.stop(name, *timeout)).collect()
        }
        fn remove(&self, name: &str) -> Result<(), EngineError> {
            self.calls.borrow_mut().push(format!("remove {name}"));
            self.containers.borrow_mut().retain(|c| c.name != name);
            Ok(())
        }
        fn ensure_network(&self, name: &str) -> Result<bool, EngineError> {
            if self.networks.borrow().iter().any(|n| n == name) {
                return Ok(false);
            }
            self.calls.borrow_mut().push(format!("network {name}"));
            self.networks.borrow_mut().push(name.into());
            Ok(true)
        }
        fn network_exists(&self, name: &str) -> Result<bool, EngineError> {
            Ok(self.networks.borrow().iter().any(|n| n == name))
        }
        fn remove_network(&self, name: &str) -> Result<(), EngineError> {
            self.calls.borrow_mut().push(format!("remove network {name}"));
            self.networks.borrow_mut().retain(|n| n != name);
            Ok(())
        }
        fn ensure_volume(&self, name: &str, labels: &[(&str, &str)]) -> Result<bool, EngineError> {
            if self.volumes.borrow().iter().any(|n| n == name) {
                return Ok(false);
            }
            self.calls.borrow_mut().push(format!("volume {name} {labels:?}"));
            self.volumes.borrow_mut().push(name.into());
            Ok(true)
        }
        fn volume_exists(&self, name: &str) -> Result<bool, EngineError> {
            Ok(self.volumes.borrow().iter().any(|n| n == name))
        }
        fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
            self.calls.borrow_mut().push(format!("remove volume {name}"));
            self.volumes.borrow_mut().retain(|n| n != name);
            Ok(())
        }
        fn remove_image(&self, name: &str) -> Result<bool, EngineError> {
            self.calls.borrow_mut().push(format!("remove image {name}"));
            Ok(name != "gone")
        }
    }

    fn project(services: serde_json::Value) -> Project {
        Project {
            name: "demo".into(),
            directory: "/p".into(),
            files: vec![],
            env: Default::default(),
            model: json!({ "services": services }),
        }
    }

    fn three_tier() -> Project {
        project(json!({
            "web": {"image": "web", "network_mode": "host", "depends_on": {"api": {"condition": "service_started", "required": true}}},
            "api": {"image": "api", "network_mode": "host", "deploy": {"replicas": 2},
                    "depends_on": {"migrate": {"condition": "service_completed_successfully", "required": true}}},
            "migrate": {"image": "tool", "network_mode": "none", "command": ["migrate"]},
        }))
    }

    #[test]
    fn up_starts_dependencies_first_and_down_removes_exactly_them() {
        let fake = Fake::default();
        fake.containers.borrow_mut().push(Existing {
            name: "other-web-1".into(),
            running: true,
            exit_code: None,
            health: None,
            config: None,
        });
        fake.containers.borrow_mut().push(Existing {
            name: "demo-webby".into(),
            running: true,
            exit_code: None,
            health: None,
            config: None,
        });
        let p = plan(&three_tier(), &[]).unwrap();
        let mut lines = Vec::new();
        up(&fake, &p, false, &mut |l| lines.push(l)).unwrap();
        let starts: Vec<String> = fake.calls.borrow().iter().filter(|c| !c.starts_with("image")).cloned().collect();
        assert_eq!(
            starts,
            [
                "start demo-migrate-1 tool",
                "wait demo-migrate-1",
                "start demo-api-1 api",
                "start demo-api-2 api",
                "start demo-web-1 web"
            ]
        );
        // Up again: everything runs, nothing starts.
        fake.calls.borrow_mut().clear();
        fake.containers.borrow_mut().iter_mut().filter(|c| c.name == "demo-migrate-1").for_each(|c| c.running = true);
        up(&fake, &p, false, &mut |_| {}).unwrap();
        assert!(fake.calls.borrow().iter().all(|c| !c.starts_with("start")), "{:?}", fake.calls.borrow());
        // A changed service is made again, and only it.
        let mut changed = three_tier();
        changed.model["services"]["web"]["environment"] = json!({"NEW": "1"});
        fake.calls.borrow_mut().clear();
        up(&fake, &plan(&changed, &[]).unwrap(), false, &mut |_| {}).unwrap();
        let calls: Vec<String> =
            fake.calls.borrow().iter().filter(|c| !c.starts_with("image") && !c.starts_with("wait")).cloned().collect();
        assert_eq!(calls, ["stop demo-web-1", "remove demo-web-1", "start demo-web-1 web"]);

        fake.calls.borrow_mut().clear();
        let members = crate::plan::members(&three_tier()).unwrap();
        down(&fake, "demo", &members, &crate::plan::project_networks(&three_tier()), &[], &mut |_| {}).unwrap();
        let left: Vec<String> = fake.containers.borrow().iter().map(|c| c.name.clone()).collect();
        assert_eq!(left, ["other-web-1", "demo-webby"], "down touched only the project's containers");
        let calls = fake.calls.borrow();
        assert_eq!(calls[0], "stop demo-web-1", "dependents stop first: {calls:?}");
    }

    #[test]
    fn up_starts_and_down_stops_independent_services_together_in_dependency_order() {
        let p = project(json!({
            "db": {"image": "db", "network_mode": "none"},
            "api": {"image": "api", "network_mode": "none", "depends_on": {"db": {"condition": "service_started"}}},
            "worker": {"image": "w", "network_mode": "none", "deploy": {"replicas": 2},
                       "depends_on": {"db": {"condition": "service_started"}}},
            "web": {"image": "web", "network_mode": "none", "depends_on": {"api": {"condition": "service_started"}}},
        }));
        let fake = Fake::default();
        up(&fake, &plan(&p, &[]).unwrap(), false, &mut |_| {}).unwrap();
        assert_eq!(
            *fake.start_batches.borrow(),
            ["demo-db-1", "demo-api-1 demo-worker-1 demo-worker-2", "demo-web-1"],
            "up starts the services whose dependencies run together"
        );
        fake.calls.borrow_mut().clear();
        let members = crate::plan::members(&p).unwrap();
        let mut lines = Vec::new();
        stop(&fake, "demo", &members, &mut |l| lines.push(l)).unwrap();
        assert_eq!(*fake.batches.borrow(), ["demo-worker-1 demo-worker-2 demo-web-1", "demo-api-1", "demo-db-1"]);
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(fake.containers.borrow().iter().all(|c| !c.running));
    }

    #[test]
    fn a_failed_dependency_stops_up() {
        let fake = Fake { exit_codes: vec![("demo-migrate-1".into(), 3)], ..Fake::default() };
        let p = plan(&three_tier(), &["api".into()]).unwrap();
        assert_eq!(p.services.iter().map(|s| s.service.as_str()).collect::<Vec<_>>(), ["migrate", "api"]);
        let err = up(&fake, &p, false, &mut |_| {}).unwrap_err();
        assert!(matches!(err, UpError::DependencyFailed { code: 3, .. }), "{err}");
        assert!(!fake.calls.borrow().iter().any(|c| c.starts_with("start demo-api")));
    }

    #[test]
    fn services_join_the_project_network_under_their_names() {
        let model = json!({
            "name": "demo",
            "services": {
                "web": {"image": "web", "networks": {"default": null}, "ports": [{"target": 80, "published": "8080", "protocol": "tcp"}],
                        "depends_on": {"api": {"condition": "service_started", "required": true}}},
                "api": {"image": "api", "networks": {"back": {"aliases": ["backend"]}}},
            },
            "networks": {"default": {"name": "demo_default"}, "back": {"name": "shared", "external": true}},
        });
        let p = Project { name: "demo".into(), directory: "/p".into(), files: vec![], env: Default::default(), model };
        let plan = plan(&p, &[]).unwrap();
        let web = &plan.services[1];
        assert_eq!(web.options.network, runtime::container::Network::Bridge("demo_default".into()));
        assert_eq!(web.options.network_aliases, ["web"]);
        assert_eq!((web.options.publish[0].host_port, web.options.publish[0].container_port), (8080, 80));
        assert_eq!(plan.services[0].options.network_aliases, ["api", "backend"]);

        let fake = Fake::default();
        let err = up(&fake, &plan, false, &mut |_| {}).unwrap_err();
        assert!(matches!(err, UpError::MissingExternal(ref n) if n == "shared"), "{err}");
        fake.networks.borrow_mut().push("shared".into());
        up(&fake, &plan, false, &mut |_| {}).unwrap();
        assert!(
            fake.calls.borrow().iter().position(|c| c == "network demo_default")
                < fake.calls.borrow().iter().position(|c| c.starts_with("start"))
        );
        down(&fake, "demo", &crate::plan::members(&p).unwrap(), &crate::plan::project_networks(&p), &[], &mut |_| {})
            .unwrap();
        assert_eq!(*fake.networks.borrow(), ["shared"], "down removes the project's network, not the external one");
    }

    #[test]
    fn named_volumes_are_made_by_up_and_removed_by_down_v_only() {
        let model = json!({
            "name": "demo",
            "services": {
                "a": {"image": "x", "network_mode": "none", "volumes": [
                    {"type": "volume", "source": "data", "target": "/data", "volume": {}},
                    {"type": "volume", "source": "cache", "target": "/cache", "read_only": true, "volume": {}},
                    {"type": "volume", "target": "/anon", "volume": {}}]},
                "b": {"image": "x", "network_mode": "none", "volumes": [{"type": "volume", "source": "data", "target": "/d"}]},
            },
            "volumes": {"data": {"name": "demo_data"}, "cache": {"name": "cache", "external": true}},
        });
        let p = Project { name: "demo".into(), directory: "/p".into(), files: vec![], env: Default::default(), model };
        let plan = plan(&p, &[]).unwrap();
        let a = &plan.services[0].options.volumes;
        assert_eq!((a[0].name.as_deref(), a[0].container.as_str()), (Some("demo_data"), "/data"));
        assert_eq!((a[1].name.as_deref(), a[1].read_only), (Some("cache"), true));
        assert!(a[2].anonymous && a[2].name.is_none());
        assert_eq!(plan.services[1].options.volumes[0].name.as_deref(), Some("demo_data"));

        let fake = Fake::default();
        let err = up(&fake, &plan, false, &mut |_| {}).unwrap_err();
        assert!(matches!(err, UpError::MissingExternalVolume(ref n) if n == "cache"), "{err}");
        assert!(fake.volumes.borrow().is_empty(), "nothing is made when an external volume is missing");
        fake.volumes.borrow_mut().push("cache".into());
        up(&fake, &plan, false, &mut |_| {}).unwrap();
        let made =
            r#"volume demo_data [("com.docker.compose.project", "demo"), ("com.docker.compose.volume", "data")]"#;
        assert!(fake.calls.borrow().iter().any(|c| c == made), "{:?}", fake.calls.borrow());
        fake.calls.borrow_mut().clear();
        up(&fake, &plan, false, &mut |_| {}).unwrap();
        assert!(fake.calls.borrow().iter().all(|c| !c.starts_with("start")), "{:?}", fake.calls.borrow());

        let (members, networks) = (crate::plan::members(&p).unwrap(), crate::plan::project_networks(&p));
        down(&fake, "demo", &members, &networks, &[], &mut |_| {}).unwrap();
        assert_eq!(*fake.volumes.borrow(), ["cache", "demo_data"], "down keeps the volumes");
        down(&fake, "demo", &members, &networks, &crate::plan::project_volumes(&p), &mut |_| {}).unwrap();
        assert_eq!(*fake.volumes.borrow(), ["cache"], "down -v removes the project's volumes, not the external one");

        let mut nfs = p.clone();
        nfs.model["volumes"]["data"]["driver"] = json!("nfs");
        let err = crate::plan::plan(&nfs, &[]).unwrap_err().to_string();
        assert!(err.contains("services.a.volumes (data): volume option driver"), "{err}");
    }

    #[test]
    fn what_the_runtime_lacks_is_refused_by_name() {
        let cases = [
            (
                json!({"a": {"image": "x", "networks": {"n1": null, "n2": null}}}),
                "services.a.networks: a container joins one network",
            ),
            (
                json!({"a": {"image": "x", "network_mode": "host", "ports": [{"target": 80}]}}),
                "services.a.ports: published ports need a network",
            ),
            (
                json!({"a": {"image": "x", "networks": {"default": null}, "ports": [{"target": 80, "published": "80-81"}]}}),
                "services.a.ports.0: published \"80-81\": host port ranges",
            ),
            (json!({"a": {"image": "x", "network_mode": "bridge"}}), "services.a.network_mode"),
            (
                json!({"a": {"image": "x", "networks": {"default": {"ipv4_address": "10.0.0.2"}}}}),
                "services.a.networks.default.ipv4_address",
            ),
            (
                json!({"a": {"image": "x", "network_mode": "host", "volumes": [{"type": "volume", "source": "v", "target": "/v"}]}}),
                "services.a.volumes: volume \"v\" is not declared",
            ),
            (
                json!({"a": {"image": "x", "network_mode": "host", "restart": "sometimes"}}),
                "services.a.restart: invalid restart policy",
            ),
            (
                json!({"a": {"image": "x", "network_mode": "host", "secrets": [{"source": "s"}]}}),
                "services.a.secrets.0: \"s\" is not declared",
            ),
        ];
        for (services, want) in cases {
            let err = plan(&project(services), &[]).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        }
        let p = plan(&project(json!({"a": {"image": "x", "network_mode": "host", "expose": ["80"]}})), &[]).unwrap();
        assert_eq!(p.warnings, ["services.a.expose is not applied: documentation only without networks"]);
    }

    #[test]
    fn options_follow_the_service() {
        let p = plan(
            &project(
                json!({"a": {"image": "x", "network_mode": "host", "entrypoint": ["sh", "-c"], "command": ["echo hi"],
                "environment": {"A": "1", "UNSET": null}, "mem_limit": "1048576", "user": "1000",
                "volumes": [{"type": "bind", "source": "/srv", "target": "/srv", "read_only": true}]}}),
            ),
            &[],
        )
        .unwrap();
        let o = &p.services[0].options;
        assert_eq!(
            (o.entrypoint.as_deref(), o.command.clone()),
            (Some("sh"), vec!["-c".to_string(), "echo hi".to_string()])
        );
        assert_eq!(o.env, ["A=1"]);
        assert_eq!(o.memory, Some(1 << 20));
        assert!(o.volumes[0].read_only && o.detach);
    }

    fn health_gated() -> Project {
        project(json!({
            "api": {"image": "api", "network_mode": "host",
                    "depends_on": {"store": {"condition": "service_healthy", "required": true}}},
            "store": {"image": "store", "network_mode": "host",
                      "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "retries": 2}},
        }))
    }

    #[test]
    fn a_service_waits_until_its_dependency_is_healthy() {
        let fake = Fake { health_after: Some((3, HealthStatus::Healthy)), ..Fake::default() };
        let mut lines = Vec::new();
        up(&fake, &plan(&health_gated(), &[]).unwrap(), false, &mut |l| lines.push(l)).unwrap();
        let calls = fake.calls.borrow().clone();
        let starts: Vec<&String> = calls.iter().filter(|c| c.starts_with("start")).collect();
        assert_eq!(starts, ["start demo-store-1 store", "start demo-api-1 api"]);
        let paused = calls.iter().position(|c| c == "pause").unwrap();
        assert!(paused < calls.iter().position(|c| c == "start demo-api-1 api").unwrap(), "{calls:?}");
        let healthy = lines.iter().position(|l| l == "Container demo-store-1  Healthy").unwrap();
        let started = lines.iter().position(|l| l == "Container demo-api-1  Started").unwrap();
        assert!(healthy < started, "{lines:?}");
        // up --wait: the store is healthy, the api runs without a check.
        let mut lines = Vec::new();
        wait_ready(&fake, &plan(&health_gated(), &[]).unwrap(), &mut |l| lines.push(l)).unwrap();
        assert!(lines.contains(&"Container demo-api-1  Running".to_string()), "{lines:?}");
    }

    #[test]
    fn an_unhealthy_or_unchecked_dependency_stops_up() {
        let fake = Fake { health_after: Some((1, HealthStatus::Unhealthy)), ..Fake::default() };
        let err = up(&fake, &plan(&health_gated(), &[]).unwrap(), false, &mut |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "container demo-store-1 is unhealthy");
        assert!(!fake.calls.borrow().iter().any(|c| c.starts_with("start demo-api")));

        let mut unchecked = health_gated();
        unchecked.model["services"]["store"].as_object_mut().unwrap().remove("healthcheck");
        let fake = Fake::default();
        let err = up(&fake, &plan(&unchecked, &[]).unwrap(), false, &mut |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "container demo-store-1 has no healthcheck configured");
        // up --wait fails on an unhealthy container.
        let fake = Fake { health_after: Some((0, HealthStatus::Unhealthy)), ..Fake::default() };
        let store = plan(&health_gated(), &["store".to_string()]).unwrap();
        up(&fake, &store, false, &mut |_| {}).unwrap();
        let err = wait_ready(&fake, &store, &mut |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "container demo-store-1 is unhealthy");
    }

    #[test]
    fn containers_carry_compose_labels_and_up_again_keeps_an_unchanged_service() {
        let fake = Fake::default();
        let p = plan(&health_gated(), &["store".to_string()]).unwrap();
        up(&fake, &p, false, &mut |_| {}).unwrap();
        let made = fake.containers.borrow()[0].config.clone().unwrap().1;
        for (k, v) in [
            ("com.docker.compose.project", "demo"),
            ("com.docker.compose.service", "store"),
            ("com.docker.compose.container-number", "1"),
            (CONFIG_HASH_LABEL, p.services[0].config_hash.as_str()),
        ] {
            assert_eq!(made.labels.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(p.services[0].config_hash.len(), 64);
        // Another replica count is no new configuration; another health check is.
        let mut scaled = health_gated();
        scaled.model["services"]["store"]["deploy"] = json!({"replicas": 2});
        fake.calls.borrow_mut().clear();
        up(&fake, &plan(&scaled, &["store".to_string()]).unwrap(), false, &mut |_| {}).unwrap();
        assert_eq!(*fake.calls.borrow(), ["image store", "start demo-store-2 store"]);
        let mut changed = health_gated();
        changed.model["services"]["store"]["healthcheck"]["retries"] = json!(5);
        fake.calls.borrow_mut().clear();
        up(&fake, &plan(&changed, &["store".to_string()]).unwrap(), false, &mut |_| {}).unwrap();
        assert!(fake.calls.borrow().contains(&"remove demo-store-1".to_string()), "{:?}", fake.calls.borrow());
    }

    /// `--rmi local` removes the images compose named for built services; `--rmi all` every
    /// service's image, each once.
    #[test]
    fn rmi_local_removes_the_built_images_compose_named_and_all_removes_every_image() {
        let project = project(json!({
            "web": {"build": {"context": "."}, "network_mode": "none"},
            "api": {"build": {"context": "."}, "image": "team/api:1", "network_mode": "none"},
            "db": {"image": "store:1", "network_mode": "none"},
            "cache": {"image": "store:1", "network_mode": "none"},
        }));
        let p = plan(&project, &[]).unwrap();
        let fake = Fake::default();
        let mut said = Vec::new();
        remove_images(&fake, &p, Rmi::Local, &mut |l| said.push(l)).unwrap();
        assert_eq!(*fake.calls.borrow(), ["remove image demo-web"]);
        assert_eq!(said, ["Image demo-web  Removed"]);
        fake.calls.borrow_mut().clear();
        remove_images(&fake, &p, Rmi::All, &mut |_| {}).unwrap();
        let mut calls = fake.calls.borrow().clone();
        calls.sort();
        assert_eq!(calls, ["remove image demo-web", "remove image store:1", "remove image team/api:1"]);
    }

    #[test]
    fn restart_stops_dependents_first_and_starts_dependencies_first() {
        let fake = Fake::default();
        let p = plan(&three_tier(), &[]).unwrap();
        up(&fake, &p, false, &mut |_| {}).unwrap();
        fake.calls.borrow_mut().clear();
        let members = crate::plan::members(&three_tier()).unwrap();
        restart(&fake, "demo", &members, &mut |_| {}).unwrap();
        assert_eq!(
            *fake.calls.borrow(),
            [
                "stop demo-web-1",
                "stop demo-api-1",
                "stop demo-api-2",
                "stop demo-migrate-1",
                "restart demo-migrate-1",
                "restart demo-api-2",
                "restart demo-api-1",
                "restart demo-web-1"
            ]
        );
        fake.calls.borrow_mut().clear();
        start(&fake, "demo", &members, &mut |_| {}).unwrap();
        assert!(fake.calls.borrow().is_empty(), "all run: start does nothing");
    }

    #[test]
    fn health_restart_stop_signal_secrets_and_configs_reach_the_runtime() {
        let mut p = project(json!({"a": {"image": "x", "network_mode": "host", "restart": "on-failure:3",
            "stop_signal": "SIGINT", "init": true,
            "healthcheck": {"test": ["CMD-SHELL", "true"], "interval": "2s", "timeout": "1s", "start_period": "500ms", "retries": 4},
            "secrets": [{"source": "token", "target": "/run/secrets/token"}],
            "configs": [{"source": "site"}, {"source": "site", "target": "/etc/site.conf"}]},
            "b": {"image": "x", "network_mode": "host", "healthcheck": {"disable": true}}}));
        p.model["secrets"] = json!({"token": {"file": "/p/token.txt"}});
        p.model["configs"] = json!({"site": {"file": "/p/site.conf"}});
        let planned = plan(&p, &[]).unwrap();
        let a = &planned.services.iter().find(|s| s.service == "a").unwrap().options;
        assert_eq!(a.restart, RestartPolicy::OnFailure { max: 3 });
        assert_eq!(a.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(a.init.as_deref(), Some(std::path::Path::new(crate::plan::INIT_MARK)));
        let h = a.healthcheck.clone().unwrap();
        assert_eq!(
            (h.test, h.interval, h.timeout, h.start_period, h.retries),
            (vec!["CMD-SHELL".to_string(), "true".into()], 2_000_000_000, 1_000_000_000, 500_000_000, 4)
        );
        let binds: Vec<(String, String, bool)> =
            a.volumes.iter().map(|v| (v.host.display().to_string(), v.container.clone(), v.read_only)).collect();
        assert_eq!(
            binds,
            [
                ("/p/token.txt".to_string(), "/run/secrets/token".to_string(), true),
                ("/p/site.conf".into(), "/site".into(), true),
                ("/p/site.conf".into(), "/etc/site.conf".into(), true),
            ]
        );
        let b = planned.services.iter().find(|s| s.service == "b").unwrap();
        assert_eq!(
            (b.healthcheck, b.options.healthcheck.clone().unwrap().test),
            (Some(false), vec!["NONE".to_string()])
        );
    }

    #[test]
    fn environment_secrets_and_content_configs_are_written_and_mounted_external_ones_refused() {
        let mut p = project(json!({"a": {"image": "x", "network_mode": "host",
            "secrets": [{"source": "token"}, {"source": "token", "target": "/etc/token"}],
            "configs": [{"source": "site", "target": "/etc/site.conf"}]}}));
        p.model["secrets"] = json!({"token": {"name": "demo_token", "environment": "TOKEN_VALUE"}});
        p.model["configs"] = json!({"site": {"name": "demo_site", "content": "listen 80\n"}});
        let unset = plan(&p, &[]).unwrap_err().to_string();
        assert!(unset.contains("services.a.secrets.0") && unset.contains("TOKEN_VALUE"), "{unset}");
        p.env.insert("TOKEN_VALUE".into(), "s3cret".into());
        let mut planned = plan(&p, &[]).unwrap();
        let files: Vec<(String, String)> = planned.services[0]
            .inline_files
            .iter()
            .map(|f| (f.target.clone(), String::from_utf8(f.content.clone()).unwrap()))
            .collect();
        assert_eq!(
            files,
            [
                ("/run/secrets/token".to_string(), "s3cret".to_string()),
                ("/etc/token".into(), "s3cret".into()),
                ("/etc/site.conf".into(), "listen 80\n".into())
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        crate::plan::write_inline_files(&mut planned, dir.path()).unwrap();
        let mounts: Vec<(String, String, bool)> = planned.services[0]
            .options
            .volumes
            .iter()
            .map(|v| (std::fs::read_to_string(&v.host).unwrap(), v.container.clone(), v.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                ("s3cret".to_string(), "/run/secrets/token".to_string(), true),
                ("s3cret".into(), "/etc/token".into(), true),
                ("listen 80\n".into(), "/etc/site.conf".into(), true)
            ]
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "one file per content");

        for (kind, def) in [("secrets", json!({"external": true})), ("configs", json!({"external": true}))] {
            let mut p = project(json!({"a": {"image": "x", "network_mode": "host", kind: [{"source": "ext"}]}}));
            p.model[kind] = json!({"ext": def});
            let err = plan(&p, &[]).unwrap_err().to_string();
            assert!(err.contains(&format!("services.a.{kind}.0")) && err.contains("ext is external"), "{err}");
        }
        let mut p = project(json!({"a": {"image": "x", "network_mode": "host", "configs": [{"source": "c"}]}}));
        p.model["configs"] = json!({"c": {"environment": "X"}});
        let err = plan(&p, &[]).unwrap_err().to_string();
        assert!(err.contains("file: or content:"), "{err}");
    }

    #[test]
    fn a_cancelled_up_starts_nothing_more() {
        let p = project(json!({
            "a": {"image": "a", "network_mode": "none"},
            "b": {"image": "b", "network_mode": "none", "depends_on": {"a": {"condition": "service_started"}}},
            "c": {"image": "c", "network_mode": "none", "depends_on": {"b": {"condition": "service_started"}}},
        }));
        let fake = Fake { cancel_after: Some(1), ..Fake::default() };
        let err = up(&fake, &plan(&p, &[]).unwrap(), false, &mut |_| {}).unwrap_err();
        assert!(matches!(err, UpError::Cancelled), "{err}");
        let names: Vec<String> = fake.containers.borrow().iter().map(|c| c.name.clone()).collect();
        assert_eq!(names, ["demo-a-1"]);
        // Cancelled while waiting for a health check: the wait ends.
        let fake = Fake { cancel_after: Some(0), ..Fake::default() };
        fake.containers.borrow_mut().push(Existing {
            name: "demo-a-1".into(),
            running: true,
            exit_code: None,
            health: Some(HealthStatus::Starting),
            config: None,
        });
        assert!(matches!(wait_healthy(&fake, "demo-a-1"), Err(UpError::Cancelled)));
    }
}
