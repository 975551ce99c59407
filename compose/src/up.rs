//! Running a planned project ([`crate::plan`]) through a small [`Engine`] trait: `up`
//! starts the services in dependency order (waiting for a dependency's successful exit where
//! the file asks), `down` stops and removes exactly the containers named after the
//! project's services, `stop` and `rm` do one of those steps. The CLI implements the trait
//! over berth's image store and runtime; the tests here use a recording fake, so the
//! ordering and naming rules are checked without root.

use std::time::Duration;

use runtime::container::RunOptions;

use crate::plan::{Condition, Member, NetworkPlan, Plan, ServicePlan, VolumePlan};

/// A container the engine knows, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    /// Its name.
    pub name: String,
    /// Whether it runs.
    pub running: bool,
    /// Its exit status, once it has exited.
    pub exit_code: Option<i32>,
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
    /// Stops container `name` (SIGTERM, then SIGKILL after `timeout`).
    fn stop(&self, name: &str, timeout: Duration) -> Result<(), EngineError>;
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
}

fn engine<'a>(what: &'static str, name: &'a str) -> impl FnOnce(EngineError) -> UpError + 'a {
    move |source| UpError::Engine { what, name: name.to_string(), source }
}

/// Starts the plan's services in order; `say` receives one line per step (as
/// `docker compose up -d` prints them). A container that already runs with the planned image
/// and options is left as it is; one whose configuration changed, or that has exited, is
/// removed and started again.
pub fn up(engine_: &dyn Engine, plan: &Plan, rebuild: bool, say: &mut dyn FnMut(String)) -> Result<(), UpError> {
    for service in &plan.services {
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
    for service in &plan.services {
        for (dep, condition) in &service.depends_on {
            if *condition != Condition::CompletedSuccessfully {
                continue;
            }
            let Some(first) =
                by_name.get(dep.as_str()).and_then(|d| d.container_names(&plan.project).into_iter().next())
            else {
                continue;
            };
            say(format!("Container {first}  Waiting"));
            let code = engine_.wait(&first).map_err(engine("cannot wait for container", &first))?;
            if code != 0 {
                return Err(UpError::DependencyFailed {
                    service: service.service.clone(),
                    dependency: dep.clone(),
                    code,
                });
            }
            say(format!("Container {first}  Exited"));
        }
        let existing = engine_.list().map_err(engine("cannot list the containers for service", &service.service))?;
        for name in service.container_names(&plan.project) {
            let mut options = service.options.clone();
            options.name = Some(name.clone());
            let wanted = (service.image.clone(), options.clone());
            match existing.iter().find(|e| e.name == name) {
                Some(e) if e.running && e.config.as_ref().is_none_or(|c| same_config(c, &wanted)) => {
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
            engine_.start(&name, &service.image, &options).map_err(engine("cannot start container", &name))?;
            say(format!("Container {name}  Started"));
        }
    }
    Ok(())
}

/// Whether a container made with `made` is what `wanted` asks for. The runtime fills in
/// what it makes: a volume's folder, an anonymous volume's name; those are not compared.
fn same_config(made: &(String, RunOptions), wanted: &(String, RunOptions)) -> bool {
    let plain = |(image, options): &(String, RunOptions)| {
        let mut options = options.clone();
        for v in options.volumes.iter_mut().filter(|v| v.is_volume()) {
            v.host = Default::default();
            if v.anonymous {
                v.name = None;
            }
        }
        (image.clone(), options)
    };
    plain(made) == plain(wanted)
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

/// Stops the project's running containers, dependents first.
pub fn stop(
    engine_: &dyn Engine,
    project: &str,
    members: &[Member],
    say: &mut dyn FnMut(String),
) -> Result<(), UpError> {
    let existing = engine_.list().map_err(engine("cannot list the containers of project", project))?;
    for (c, timeout) in project_containers(project, members, &existing) {
        if c.running {
            engine_.stop(&c.name, Duration::from_secs(timeout)).map_err(engine("cannot stop container", &c.name))?;
            say(format!("Container {}  Stopped", c.name));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    use serde_json::json;

    use crate::plan::plan;
    use crate::Project;

    #[derive(Default)]
    struct Fake {
        networks: RefCell<Vec<String>>,
        volumes: RefCell<Vec<String>>,
        containers: RefCell<Vec<Existing>>,
        calls: RefCell<Vec<String>>,
        exit_codes: Vec<(String, i32)>,
    }

    impl Engine for Fake {
        fn list(&self) -> Result<Vec<Existing>, EngineError> {
            Ok(self.containers.borrow().clone())
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
            let config = Some((image.to_string(), options));
            self.containers.borrow_mut().push(Existing { name: name.into(), running: true, exit_code: None, config });
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
            config: None,
        });
        fake.containers.borrow_mut().push(Existing {
            name: "demo-webby".into(),
            running: true,
            exit_code: None,
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
            (json!({"a": {"image": "x", "network_mode": "host", "restart": "always"}}), "services.a.restart"),
            (
                json!({"a": {"image": "x", "network_mode": "host"}, "b": {"image": "y", "network_mode": "host",
                "depends_on": {"a": {"condition": "service_healthy", "required": true}}}}),
                "services.b.depends_on.a.condition: service_healthy needs health checks",
            ),
        ];
        for (services, want) in cases {
            let err = plan(&project(services), &[]).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        }
        let p =
            plan(&project(json!({"a": {"image": "x", "network_mode": "host", "labels": {"k": "v"}}})), &[]).unwrap();
        assert_eq!(p.warnings, ["services.a.labels is not applied: containers have no labels yet"]);
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
}
