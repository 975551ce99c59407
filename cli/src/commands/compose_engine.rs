//! `compose::up::Engine` over berth's image store and embedded runtime: images are pulled
//! (as `berth run` pulls them) or built by `berth build` in a child process, containers are
//! recorded and handed to a detached supervisor as `berth run -d` does, and the project's
//! networks are berth networks (`runtime::network`) and its named volumes berth volumes
//! (`runtime::volumes`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use compose::plan::ServicePlan;
use compose::up::{Engine, EngineError, Existing};
use runtime::container::{shim, Containers, RunOptions, Status};
use runtime::network::Networks;
use runtime::volumes::{VolumeError, Volumes};
use serde_json::Value;

/// The engine of `berth compose` on the store at `root`.
pub struct BerthEngine {
    /// The store's folder.
    pub root: PathBuf,
}

fn fail(e: impl std::fmt::Display) -> EngineError {
    EngineError(format!("{e:#}"))
}

impl BerthEngine {
    fn containers(&self) -> Containers {
        Containers::at(&self.root)
    }

    /// `berth build -t IMAGE [-f DOCKERFILE] [--target T] [--build-arg K=V]... CONTEXT`.
    fn build(&self, service: &ServicePlan, build: &Value) -> Result<(), EngineError> {
        let context = build.get("context").and_then(Value::as_str).unwrap_or(".");
        if build.get("dockerfile_inline").is_some() {
            return Err(EngineError(format!(
                "service {}: build.dockerfile_inline is not supported yet",
                service.service
            )));
        }
        let mut cmd = std::process::Command::new("/proc/self/exe");
        cmd.arg("--root").arg(&self.root).arg("build").arg("-t").arg(&service.image);
        if let Some(f) = build.get("dockerfile").and_then(Value::as_str) {
            cmd.arg("-f").arg(Path::new(context).join(f));
        }
        if let Some(t) = build.get("target").and_then(Value::as_str) {
            cmd.arg("--target").arg(t);
        }
        for (k, v) in build.get("args").and_then(Value::as_object).into_iter().flatten() {
            if let Some(v) = v.as_str() {
                cmd.arg("--build-arg").arg(format!("{k}={v}"));
            }
        }
        cmd.arg(context);
        let status = cmd.status().map_err(fail)?;
        if !status.success() {
            return Err(EngineError(format!("building the image of service {} failed ({status})", service.service)));
        }
        Ok(())
    }
}

impl Engine for BerthEngine {
    fn list(&self) -> Result<Vec<Existing>, EngineError> {
        let records = self.containers().list().map_err(fail)?;
        Ok(records
            .iter()
            .map(|r| Existing {
                name: r.name.clone(),
                running: r.is_running(),
                exit_code: r.exit_code,
                health: r.health.as_ref().filter(|_| r.is_running()).map(|h| h.status),
                config: Some((r.image.clone(), r.options.clone())),
            })
            .collect())
    }

    fn ensure_image(&self, service: &ServicePlan, rebuild: bool) -> Result<(), EngineError> {
        let store = super::open_store(&self.root).map_err(fail)?;
        let present = !store.find(&service.image).map_err(fail)?.is_empty();
        drop(store);
        match &service.build {
            Some(build) if rebuild || !present => self.build(service, build),
            _ if present => Ok(()),
            _ => {
                let store = super::open_store(&self.root).map_err(fail)?;
                super::run::find_or_pull(&store, &service.image, false).map(|_| ()).map_err(fail)
            }
        }
    }

    fn start(&self, name: &str, image: &str, options: &RunOptions) -> Result<(), EngineError> {
        let mut options = options.clone();
        if options.init.is_some() {
            options.init = Some(super::run::find_init(std::env::var("PATH").ok().as_deref()).map_err(fail)?);
        }
        let options = &options;
        let store = super::open_store(&self.root).map_err(fail)?;
        let found = store.find(image).map_err(fail)?.into_iter().next();
        let record = found.ok_or_else(|| EngineError(format!("image {image} is not in the store")))?;
        let created =
            self.containers().create(image, &record.reference, &record.manifest, options, None).map_err(fail)?;
        let root = self.root.clone();
        shim::spawn_detached(|fd| {
            let mut cmd = std::process::Command::new("/proc/self/exe");
            cmd.arg("--root").arg(&root).arg("container-shim").arg("--detach").arg("--ready-fd").arg(fd.to_string());
            cmd.arg(&created.id);
            cmd
        })
        .map_err(|e| EngineError(format!("cannot start container {name}: {e:#}")))?;
        Ok(())
    }

    fn wait(&self, name: &str) -> Result<i32, EngineError> {
        // The supervisor writes the record when the container exits; nothing signals it.
        loop {
            let r = self.containers().find(name).map_err(fail)?;
            if r.status == Status::Exited || !r.is_running() && r.shim_pid.is_some() {
                return Ok(r.exit_code.unwrap_or(-1));
            }
            if self.cancelled() {
                return Err(EngineError("cancelled".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn restart(&self, name: &str) -> Result<(), EngineError> {
        let record = self.containers().prepare_start(name).map_err(fail)?;
        super::start::spawn_supervisor(&self.root, &record.id)
            .map_err(|e| EngineError(format!("cannot start container {name}: {e:#}")))
    }

    fn cancelled(&self) -> bool {
        super::compose_verbs::interrupted()
    }

    fn stop(&self, name: &str, timeout: Duration) -> Result<(), EngineError> {
        self.containers().stop(name, timeout).map(|_| ()).map_err(fail)
    }

    fn start_many(&self, batch: &[(String, String, RunOptions)]) -> Vec<Result<(), EngineError>> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|(name, image, options)| scope.spawn(move || self.start(name, image, options)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(EngineError("a starting thread panicked".into()))))
                .collect()
        })
    }

    fn stop_many(&self, batch: &[(String, Duration)]) -> Vec<Result<(), EngineError>> {
        std::thread::scope(|scope| {
            let handles: Vec<_> =
                batch.iter().map(|(name, timeout)| scope.spawn(move || self.stop(name, *timeout))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(EngineError("a stopping thread panicked".into()))))
                .collect()
        })
    }

    fn remove(&self, name: &str) -> Result<(), EngineError> {
        self.containers().remove(name, false).map(|_| ()).map_err(fail)
    }

    fn ensure_network(&self, name: &str) -> Result<bool, EngineError> {
        if self.network_exists(name)? {
            return Ok(false);
        }
        Networks::at(&self.root).create(name, None, None).map(|_| true).map_err(fail)
    }

    fn network_exists(&self, name: &str) -> Result<bool, EngineError> {
        Ok(Networks::at(&self.root).list().map_err(fail)?.iter().any(|n| n.name == name))
    }

    fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        Networks::at(&self.root).remove(name, &self.containers()).map(|_| ()).map_err(fail)
    }

    fn ensure_volume(&self, name: &str, labels: &[(&str, &str)]) -> Result<bool, EngineError> {
        if self.volume_exists(name)? {
            return Ok(false);
        }
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Volumes::at(&self.root).create(Some(name), labels).map(|_| true).map_err(fail)
    }

    fn volume_exists(&self, name: &str) -> Result<bool, EngineError> {
        match Volumes::at(&self.root).get(name) {
            Ok(_) => Ok(true),
            Err(VolumeError::NotFound(_)) => Ok(false),
            Err(e) => Err(fail(e)),
        }
    }

    fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        Volumes::at(&self.root).remove(name).map(|_| ()).map_err(fail)
    }

    fn remove_image(&self, name: &str) -> Result<bool, EngineError> {
        let store = super::open_store(&self.root).map_err(fail)?;
        if store.find(name).map_err(fail)?.is_empty() {
            return Ok(false);
        }
        store.remove(&[name.to_string()]).map(|_| true).map_err(fail)
    }
}
