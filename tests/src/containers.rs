//! A temporary berth store holding the busybox image (pushed by skopeo to a berth registry
//! started in process, then pulled), for the end-to-end tests of containers' lifecycle:
//! `berth` runs against it, records are read, and every container left is killed and
//! removed when it is dropped, however the test ends.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::{describe_failure, require_tools, run, skopeo, BusyboxImage, Registry, IMAGE_REF};

/// Debian's runc, which the tests compare the embedded runtime with.
pub const RUNC: &str = "/usr/sbin/runc";

/// The `berth` binary next to the running test's executable (`target/<profile>/berth`).
pub fn berth_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("test executable has no parent directory")?;
    let bin = dir.join("berth");
    ensure!(bin.is_file(), "{} is missing; build it with `cargo build -p berth-cli`", bin.display());
    Ok(bin)
}

/// The runtimes to test: the embedded one (`None`), and runc when it is installed.
pub fn runtimes() -> Vec<Option<&'static str>> {
    let mut all = vec![None];
    if Path::new(RUNC).is_file() {
        all.push(Some(RUNC));
    } else {
        println!("runc is not installed: only the embedded runtime is tested");
    }
    all
}

/// A store with the busybox image pulled.
pub struct Store {
    dir: tempfile::TempDir,
    /// The image's reference.
    pub image: String,
    _registry: Registry,
    _work: tempfile::TempDir,
}

impl Store {
    /// A store with the busybox image whose root `change` changed first, pulled.
    pub async fn with_image(change: impl FnOnce(&Path) -> Result<()>) -> Result<Store> {
        require_tools(&["skopeo"])?;
        let work = tempfile::tempdir()?;
        let image = BusyboxImage::build_with(work.path(), change)?;
        let registry = Registry::start().await?;
        let reference = format!("{}/e2e/busybox:{IMAGE_REF}", registry.host());
        let src = format!("oci:{}:{IMAGE_REF}", image.layout.root().display());
        skopeo(&["copy", "--dest-tls-verify=false", &src, &format!("docker://{reference}")]).await?;
        let store = Store { dir: tempfile::tempdir()?, image: reference, _registry: registry, _work: work };
        store.berth_ok(&["pull", &store.image]).await?;
        Ok(store)
    }

    /// The store's folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `berth --root STORE ARGS...`.
    pub async fn berth(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["--root", self.path().to_str().context("store path is not UTF-8")?];
        all.extend_from_slice(args);
        run(berth_binary()?.to_str().context("binary path is not UTF-8")?, &all).await
    }

    /// Like [`Store::berth`], failing unless it exits 0; returns standard output.
    pub async fn berth_ok(&self, args: &[&str]) -> Result<String> {
        let output = self.berth(args).await?;
        if !output.status.success() {
            bail!("{}", describe_failure("berth", args, &output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `berth run -d [--runtime R] FLAGS... IMAGE COMMAND...`; returns the container's ID.
    pub async fn run_detached(&self, runtime: Option<&str>, flags: &[&str], command: &[&str]) -> Result<String> {
        let mut args = vec!["run", "-d"];
        if let Some(r) = runtime {
            args.extend(["--runtime", r]);
        }
        args.extend_from_slice(flags);
        args.push(&self.image);
        args.extend_from_slice(command);
        Ok(self.berth_ok(&args).await?.trim().to_string())
    }

    /// `berth inspect NAME` as JSON (the first element).
    pub async fn inspect(&self, name: &str) -> Result<Value> {
        let text = self.berth_ok(&["inspect", name]).await?;
        let value: Value = serde_json::from_str(&text).with_context(|| format!("inspect printed {text}"))?;
        Ok(value.get(0).cloned().unwrap_or(value))
    }

    /// Polls `berth inspect NAME` until `done` holds for it (at most two minutes, a guard
    /// against a hang, not a timing assertion); returns the last one.
    pub async fn wait_for(&self, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
        let start = Instant::now();
        loop {
            let value = self.inspect(name).await?;
            if done(&value) {
                return Ok(value);
            }
            if start.elapsed() > Duration::from_secs(120) {
                bail!("{name} never got {what}: {value:#}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let containers = runtime::container::Containers::at(self.path());
        for record in containers.list().unwrap_or_default() {
            if let Err(e) = containers.remove(&record.id, true) {
                eprintln!("cleaning up container {}: {e}", record.id);
            }
        }
    }
}
