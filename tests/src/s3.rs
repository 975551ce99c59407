//! A real S3 server for tests: s3s-fs 0.14.1 (which checks request signatures for real) run
//! as a child process on a loopback port over a temporary folder, killed when dropped.
//!
//! The binary comes from `S3S_FS_BIN`, else `s3s-fs` on `PATH`, else `~/.cargo/bin/s3s-fs`;
//! `scripts/test` installs it (`cargo install s3s-fs@0.14.1 --locked --features binary`)
//! when missing.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The access key the test server accepts.
pub const ACCESS_KEY: &str = "berth-test-access";
/// The secret key the test server accepts.
pub const SECRET_KEY: &str = "berth-test-secret-0123456789";

/// A running s3s-fs.
pub struct S3Server {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

fn binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("S3S_FS_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("s3s-fs");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let candidate = PathBuf::from(home).join(".cargo/bin/s3s-fs");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("s3s-fs not found: install it with `cargo install s3s-fs@0.14.1 --locked --features binary` (scripts/test does)")
}

impl S3Server {
    /// Starts a server with an empty data folder on a port the system picks (read back from
    /// its log, so parallel tests never race for a port) and waits until it accepts
    /// connections.
    pub fn start() -> Result<S3Server> {
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(binary()?)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path())
            .env(
                "RUST_LOG",
                if std::env::var_os("BERTH_TEST_LOG").is_some() { "s3s=debug,s3s_fs=debug" } else { "s3s_fs=info" },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting s3s-fs")?;
        let stdout = child.stdout.take().context("s3s-fs stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Report the address, then keep draining the log so the server never blocks on it.
            let mut sent = false;
            let echo = std::env::var_os("BERTH_TEST_LOG").is_some();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("s3s-fs: {line}");
                }
                if !sent {
                    if let Some(addr) = line.split("server is running at http://").nth(1) {
                        sent = tx.send(addr.trim().to_string()).is_ok();
                    }
                }
            }
        });
        let mut server = S3Server { addr: ([127, 0, 0, 1], 0).into(), child, _dir: dir };
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => match server.child.try_wait()? {
                Some(status) => bail!("s3s-fs exited at once ({status})"),
                None => bail!("s3s-fs did not say where it listens"),
            },
        };
        server.addr = addr.parse().with_context(|| format!("s3s-fs address {addr:?}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(server.addr).is_err() {
            if Instant::now() > deadline {
                bail!("s3s-fs did not start listening on {}", server.addr);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registry settings for `bucket` on this server.
    pub fn config(&self, bucket: &str) -> registry::config::S3Config {
        settings(bucket, self.endpoint())
    }

    /// Creates `bucket` and returns a driver for it.
    pub async fn bucket(&self, bucket: &str) -> Result<registry::storage::s3::S3Storage> {
        let driver = registry::storage::s3::S3Storage::new(&self.config(bucket)).await?;
        driver.client().create_bucket().bucket(bucket).send().await.context("creating the bucket")?;
        Ok(driver)
    }

    /// Registry settings for a new bucket on this server, with S3 storage.
    pub async fn registry_config(&self, bucket: &str) -> Result<registry::Config> {
        self.bucket(bucket).await?;
        let mut config = registry::Config::default();
        config.storage.s3 = Some(self.config(bucket));
        config.uploads.purge_interval_secs = 0;
        Ok(config)
    }
}

/// `bench/s3shim.py` in front of an [`S3Server`]: it answers `ListMultipartUploads` (which
/// s3s-fs does not implement) from the multipart uploads it saw created and not yet completed
/// or aborted, makes create-only (`If-None-Match: *`) writes atomic as S3's are (s3s-fs checks,
/// then writes: two at once can both succeed), and passes every other request on unchanged.
/// Tests whose replicas race for one create-only key (the collector's lease, mirror claims)
/// go through it. Stopped when dropped.
pub struct S3Shim {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

impl S3Shim {
    /// Starts the shim in front of `server` on a port the system picks.
    pub fn start(server: &S3Server) -> Result<S3Shim> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/s3shim.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--upstream", &server.addr.port().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("shim stdout")?).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            bail!("the shim said {line:?} instead of where it listens");
        };
        let addr = addr.parse().with_context(|| format!("shim address {addr:?}"))?;
        Ok(S3Shim { addr, child })
    }

    /// The shim's endpoint URL, for a registry configuration.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registry settings for `bucket` (created on the server) through the shim.
    pub fn config(&self, bucket: &str) -> registry::config::S3Config {
        settings(bucket, self.endpoint())
    }
}

impl Drop for S3Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registry settings for `bucket` at `endpoint`, with the test server's keys.
fn settings(bucket: &str, endpoint: String) -> registry::config::S3Config {
    registry::config::S3Config {
        bucket: bucket.to_string(),
        endpoint: Some(endpoint),
        path_style: true,
        access_key_id: Some(ACCESS_KEY.to_string()),
        secret_access_key: Some(SECRET_KEY.to_string()),
        ..Default::default()
    }
}
