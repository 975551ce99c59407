//! Running a planned project ([`crate::plan`]) through a small [`Engine`] trait: `up`
//! starts the services in dependency order (waiting for a dependency's successful exit where
//! the file asks), `down` stops and removes exactly the containers named after the
//! project's services, `stop` and `rm` do one of those steps. The CLI implements the trait
//! over berth's image store and runtime; the tests here use a recording fake, so the
//! ordering and naming rules are checked without root.

use std::time::Duration;

use runtime::container::RunOptions;

use crate::plan::{Condition, Member, Plan, ServicePlan};

/// A container the engine knows, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    /// Its name.
    pub name: String,
    /// Whether it runs.
    pub running: bool,
    /// Its exit status, once it has exited.
    pub exit_code: Option<i32>,
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
/// `docker compose up -d` prints them). A container that already runs is left as it is; one
/// that has exited is removed and started again.
pub fn up(engine_: &dyn Engine, plan: &Plan, rebuild: bool, say: &mut dyn FnMut(String)) -> Result<(), UpError> {
    for service in &plan.services {
        engine_.ensure_image(service, rebuild).map_err(engine("cannot get the image of service", &service.service))?;
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
            match existing.iter().find(|e| e.name == name) {
                Some(e) if e.running => {
                    say(format!("Container {name}  Running"));
                    continue;
                }
                Some(_) => {
                    engine_.remove(&name).map_err(engine("cannot remove the exited container", &name))?;
                    say(format!("Container {name}  Recreated"));
                }
                None => say(format!("Container {name}  Created")),
            }
            let mut options = service.options.clone();
            options.name = Some(name.clone());
            engine_.start(&name, &service.image, &options).map_err(engine("cannot start container", &name))?;
            say(format!("Container {name}  Started"));
        }
    }
    Ok(())
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

/// Stops and removes the project's containers: exactly those `up` made.
pub fn down(
    engine_: &dyn Engine,
    project: &str,
    members: &[Member],
    say: &mut dyn FnMut(String),
) -> Result<(), UpError> {
    stop(engine_, project, members, say)?;
    rm(engine_, project, members, say)
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
            self.containers.borrow_mut().push(Existing { name: name.into(), running: true, exit_code: None });
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
        fake.containers.borrow_mut().push(Existing { name: "other-web-1".into(), running: true, exit_code: None });
        fake.containers.borrow_mut().push(Existing { name: "demo-webby".into(), running: true, exit_code: None });
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

        fake.calls.borrow_mut().clear();
        let members = crate::plan::members(&three_tier()).unwrap();
        down(&fake, "demo", &members, &mut |_| {}).unwrap();
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
    fn what_the_runtime_lacks_is_refused_by_name() {
        let cases = [
            (
                json!({"a": {"image": "x", "networks": {"default": null}}}),
                "services.a.networks: the service joins the project network demo_default",
            ),
            (
                json!({"a": {"image": "x", "network_mode": "host", "ports": [{"target": 80}]}}),
                "services.a.ports: not supported",
            ),
            (
                json!({"a": {"image": "x", "network_mode": "host", "volumes": [{"type": "volume", "source": "v", "target": "/v"}]}}),
                "services.a.volumes.0: volume volumes",
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
