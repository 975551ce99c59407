//! `berth run [OPTIONS] IMAGE [COMMAND [ARG...]]`: Docker's flags turned into
//! `runtime::container::RunOptions`; pulls the image when the store lacks it, records the
//! container, then supervises it in this process (foreground) or hands it to a detached
//! supervisor (`-d`), through `runtime::container::shim`. Also the hidden
//! `container-shim` subcommand that supervisor runs as.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use runtime::container::health::HealthConfig;
use runtime::container::lifecycle::parse_signal;
use runtime::container::restart::RestartPolicy;
use runtime::container::shim::{self, ShimArgs, EXIT_START_FAILED};
use runtime::container::spec::device_at;
use runtime::container::{Containers, Device, Network, RunOptions, SeccompProfile, Tmpfs, Volume};
use runtime::{ImageRecord, PullOptions, Store, TerminalProgress};
use shared::client::Client;
use shared::ImageRef;

/// Flags of `berth run`, as `docker run` has them.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container's ID; output goes to its log.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Name of the container [default: generated].
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(long = "env", short = 'e', value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (one KEY=VALUE or KEY a line; # comments).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container (absolute).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<String>,
    /// User: name or uid, optionally with :group or :gid (from the image's /etc/passwd and /etc/group).
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Replace the image's entrypoint ("" for none); the image's command is not used then.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Bind-mount a host directory or file: HOST:CONTAINER[:ro|rw] (HOST absolute).
    #[arg(long = "volume", short = 'v', value_name = "HOST:CONTAINER[:ro]")]
    pub volumes: Vec<String>,
    /// Mount the container's root file system read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Mount a tmpfs: PATH[:OPTIONS] such as /run:size=64m.
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Host name inside the container [default: the first 12 digits of its ID].
    #[arg(long)]
    pub hostname: Option<String>,
    /// Network: bridge (the default network: an address of its own, outbound NAT), the name
    /// of a network made with `berth network create` (containers on it resolve each other's
    /// names), none (own namespace, loopback only) or host.
    #[arg(long, visible_alias = "net", default_value = "bridge", value_name = "bridge|NAME|none|host")]
    pub network: String,
    /// Another name the container has on a user network.
    #[arg(long = "network-alias", visible_alias = "net-alias", value_name = "ALIAS")]
    pub network_aliases: Vec<String>,
    /// Publish a container's port on the host: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]
    /// (ranges as 8000-8009; no host port: a free one).
    #[arg(long = "publish", short = 'p', value_name = "[IP:][HOST:]PORT[/PROTO]")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on free host ports.
    #[arg(long = "publish-all", short = 'P')]
    pub publish_all: bool,
    /// Memory limit, such as 64m or 1g (swap is not allowed beyond it).
    #[arg(long, short = 'm', value_name = "BYTES")]
    pub memory: Option<String>,
    /// CPUs' worth of time, such as 0.5 or 2.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Most processes at once (-1 or 0: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Keep standard input open.
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Give the container a terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Add a Linux capability (NET_ADMIN or CAP_NET_ADMIN; ALL for every one). Docker's default
    /// set: CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP
    /// NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability from the default set (ALL for every one).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Security options. By default Docker's seccomp profile applies and no_new_privs is set:
    /// seccomp=unconfined (no filter), seccomp=FILE (a profile in Docker's format),
    /// no-new-privileges[=true|false].
    #[arg(long = "security-opt", value_name = "OPTION")]
    pub security_opt: Vec<String>,
    /// Give the container a host device: HOST[:CONTAINER][:PERMISSIONS] (some of r, w, m; default rwm).
    #[arg(long = "device", value_name = "HOST[:CONTAINER][:rwm]")]
    pub devices: Vec<String>,
    /// Give the container every capability and host device, no seccomp filter or masked paths,
    /// and writable /sys and cgroups.
    #[arg(long)]
    pub privileged: bool,
    /// OCI runtime: runc, crun, or a path [default: the embedded one].
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Option<String>,
    /// Restart policy: no, on-failure[:MAX-RETRIES], always or unless-stopped (berth has no
    /// daemon: the last two differ only in Docker, across daemon restarts).
    #[arg(long, default_value = "no", value_name = "POLICY")]
    pub restart: String,
    /// Signal `berth stop` sends first [default: the image's StopSignal, else SIGTERM].
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `berth stop` waits after the stop signal before SIGKILL [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Health check command, run in the container by its supervisor with `/bin/sh -c`
    /// (replaces the image's HEALTHCHECK command).
    #[arg(long, value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between health checks, such as 30s or 1m [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Time a health check may take before it counts as failed [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Failures in a row before the container is unhealthy [default: 3].
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Time after the start during which failed checks do not count [default: 0s].
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Run no health check, not even the image's.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Allow plain HTTP when the image has to be pulled.
    #[arg(long)]
    pub plain_http: bool,
    /// The image: a reference, or a manifest digest as `berth images` shows it.
    pub image: String,
    /// The command and its arguments [default: the image's].
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Flags of the hidden `berth container-shim`.
#[derive(clap::Args, Debug)]
pub struct ShimFlags {
    /// Leave the caller's session first.
    #[arg(long)]
    pub detach: bool,
    /// Report the start on this file descriptor.
    #[arg(long)]
    pub ready_fd: Option<i32>,
    /// The container's ID.
    pub id: String,
}

/// Parses `64m`, `1g`, `512k`, `100b` or plain bytes (powers of 1024, as Docker), through
/// [`shared::size::parse_size`]; the kernel takes at most `i64::MAX`.
pub fn parse_bytes(text: &str) -> Result<i64> {
    let bytes = shared::size::parse_size(text)?;
    i64::try_from(bytes).map_err(|_| anyhow!("size {text:?} is too large"))
}

/// `KEY=VALUE` stays; a bare `KEY` takes the value `lookup` gives, or is dropped.
pub(crate) fn env_entry(entry: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if entry.contains('=') {
        return Some(entry.to_string());
    }
    lookup(entry).map(|v| format!("{entry}={v}"))
}

/// The entries of an env file.
fn env_file_entries(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

fn parse_volume(spec: &str) -> Result<Volume> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, read_only) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => bail!("invalid volume {spec:?}: use HOST:CONTAINER[:ro]"),
    };
    if !host.starts_with('/') {
        bail!("invalid volume {spec:?}: the host path must be absolute (named volumes are not supported)");
    }
    if !container.starts_with('/') {
        bail!("invalid volume {spec:?}: the container path must be absolute");
    }
    Ok(Volume { host: PathBuf::from(host), container: container.to_string(), read_only })
}

fn parse_tmpfs(spec: &str) -> Result<Tmpfs> {
    let (path, options) = spec.split_once(':').unwrap_or((spec, ""));
    if !path.starts_with('/') {
        bail!("invalid tmpfs {spec:?}: the path must be absolute");
    }
    Ok(Tmpfs { path: path.into(), options: options.split(',').filter(|o| !o.is_empty()).map(String::from).collect() })
}

/// The security options (`--security-opt`): the seccomp profile and whether set-user-ID
/// programs may gain privileges.
fn parse_security_opts(opts: &[String]) -> Result<(SeccompProfile, bool)> {
    let (mut seccomp, mut new_privileges) = (SeccompProfile::Default, false);
    for opt in opts {
        let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt, ""));
        match (key, value) {
            ("seccomp", "unconfined") => seccomp = SeccompProfile::Unconfined,
            ("seccomp", "" | "builtin") => seccomp = SeccompProfile::Default,
            ("seccomp", file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the seccomp profile {file} (--security-opt seccomp=FILE)"))?;
                seccomp = SeccompProfile::Custom(text);
            }
            ("no-new-privileges", "" | "true") => new_privileges = false,
            ("no-new-privileges", "false") => new_privileges = true,
            _ => bail!(
                "invalid --security-opt {opt:?}: use seccomp=unconfined, seccomp=FILE or no-new-privileges[=true|false]"
            ),
        }
    }
    Ok((seccomp, new_privileges))
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`, read from the host's device node.
fn parse_device(spec: &str) -> Result<Device> {
    let is_perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if is_perms(p) => (*h, *c, *p),
        _ => bail!("invalid device {spec:?}: use HOST[:CONTAINER][:PERMISSIONS], permissions some of r, w and m"),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        bail!("invalid device {spec:?}: both paths must be absolute");
    }
    device_at(Path::new(host), container, permissions)
        .with_context(|| format!("cannot use device {host}"))?
        .ok_or_else(|| anyhow!("{host} is not a device node (--device takes a block or character device)"))
}

/// The program for `--runtime`: none, `berth` or `embedded` mean the embedded runtime; a
/// name is looked up in `PATH`.
fn resolve_runtime(name: Option<&str>, path_var: Option<&str>) -> Result<Option<String>> {
    match name {
        None | Some("berth" | "embedded" | "") => Ok(None),
        Some(name) if name.contains('/') => {
            let path = std::path::absolute(name).with_context(|| format!("runtime {name}"))?;
            if !path.is_file() {
                bail!("OCI runtime {} does not exist", path.display());
            }
            Ok(Some(path.to_string_lossy().into_owned()))
        }
        Some(name) => path_var
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .split(':')
            .map(|dir| Path::new(dir).join(name))
            .find(|p| p.is_file())
            .map(|p| Some(p.to_string_lossy().into_owned()))
            .ok_or_else(|| anyhow!("OCI runtime {name:?} is not installed (not found in PATH)")),
    }
}

/// Turns the flags into options, reading env files and the environment as Docker does.
pub fn options(args: &Args) -> Result<RunOptions> {
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read env file {}", file.display()))?;
        env.extend(env_file_entries(&text).iter().filter_map(|e| env_entry(e, &lookup)));
    }
    env.extend(args.env.iter().filter_map(|e| env_entry(e, &lookup)));
    let network = match args.network.as_str() {
        "none" => Network::None,
        "host" => Network::Host,
        "default" => Network::Bridge(runtime::network::DEFAULT_NETWORK.into()),
        name if name.starts_with("container:") => {
            bail!("--network container:NAME is not supported: use bridge, a network's name, none or host")
        }
        name => Network::Bridge(name.to_string()),
    };
    let mut publish = Vec::new();
    for spec in &args.publish {
        publish.extend(runtime::network::ports::parse_publish(spec)?);
    }
    if !matches!(network, Network::Bridge(_)) && (!publish.is_empty() || args.publish_all) {
        bail!("-p and -P need a bridge network: drop them, or run without --network {}", args.network);
    }
    for alias in &args.network_aliases {
        if !runtime::container::valid_name(alias) {
            bail!("invalid --network-alias {alias:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
        }
    }
    let volumes = args.volumes.iter().map(|v| parse_volume(v)).collect::<Result<Vec<_>>>()?;
    for v in &volumes {
        // Docker creates a missing host directory for a bind mount.
        if !v.host.exists() {
            std::fs::create_dir_all(&v.host).with_context(|| format!("cannot create {}", v.host.display()))?;
        }
    }
    let (seccomp, new_privileges) = parse_security_opts(&args.security_opt)?;
    let restart: RestartPolicy = args.restart.parse()?;
    if args.rm && restart != RestartPolicy::No {
        bail!("conflicting options: --restart and --rm (a removed container cannot be restarted)");
    }
    if let Some(signal) = &args.stop_signal {
        parse_signal(signal).with_context(|| "invalid --stop-signal")?;
    }
    Ok(RunOptions {
        healthcheck: healthcheck(args)?,
        restart,
        stop_signal: args.stop_signal.clone(),
        stop_timeout: args.stop_timeout,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        seccomp,
        new_privileges,
        devices: args.devices.iter().map(|d| parse_device(d)).collect::<Result<Vec<_>>>()?,
        privileged: args.privileged,
        name: args.name.clone(),
        command: args.command.clone(),
        entrypoint: args.entrypoint.clone(),
        env,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        volumes,
        read_only: args.read_only,
        tmpfs: args.tmpfs.iter().map(|t| parse_tmpfs(t)).collect::<Result<Vec<_>>>()?,
        hostname: args.hostname.clone(),
        network,
        network_aliases: args.network_aliases.clone(),
        publish,
        publish_all: args.publish_all,
        memory: args.memory.as_deref().map(parse_bytes).transpose()?,
        cpus: args.cpus,
        pids_limit: args.pids_limit,
        interactive: args.interactive,
        tty: args.tty,
        detach: args.detach,
        remove: args.rm,
        runtime: resolve_runtime(args.runtime.as_deref(), std::env::var("PATH").ok().as_deref())?,
    })
}

/// The `--health-*` flags as a health check over the image's; `--no-healthcheck` as `NONE`.
fn healthcheck(args: &Args) -> Result<Option<HealthConfig>> {
    let nanos = |flag: &str, text: &Option<String>| -> Result<i64> {
        let Some(text) = text else { return Ok(0) };
        let d = shared::duration::parse_duration(text).with_context(|| format!("invalid --{flag}"))?;
        if d.is_zero() {
            bail!("invalid --{flag} {text:?}: it must be longer than zero");
        }
        i64::try_from(d.as_nanos()).map_err(|_| anyhow!("--{flag} {text:?} is too long"))
    };
    let config = HealthConfig {
        test: args.health_cmd.iter().flat_map(|c| ["CMD-SHELL".to_string(), c.clone()]).collect(),
        interval: nanos("health-interval", &args.health_interval)?,
        timeout: nanos("health-timeout", &args.health_timeout)?,
        start_period: nanos("health-start-period", &args.health_start_period)?,
        retries: args.health_retries.unwrap_or(0),
    };
    if args.no_healthcheck {
        if config != HealthConfig::default() {
            bail!("--no-healthcheck conflicts with the --health-* options");
        }
        return Ok(Some(HealthConfig { test: vec!["NONE".into()], ..HealthConfig::default() }));
    }
    Ok((config != HealthConfig::default()).then_some(config))
}

/// The image in the store, pulled first when missing.
pub(crate) fn find_or_pull(store: &Store, image: &str, plain_http: bool) -> Result<ImageRecord> {
    if let Some(found) = store.find(image).context("cannot read the image index")?.into_iter().next() {
        return Ok(found);
    }
    let reference: ImageRef = image.parse()?;
    eprintln!("Unable to find image '{}' locally", reference.familiar());
    let config = super::client_config(plain_http)?;
    let credentials = Arc::new(super::login::docker_config()?);
    let client = Client::new(config, credentials).context("cannot set up the registry client")?;
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let stderr = std::io::stderr();
    let tty = stderr.is_terminal();
    let progress = TerminalProgress::new(stderr, tty);
    let record = tokio
        .block_on(store.pull(&client, &reference, &PullOptions::default(), &progress))
        .with_context(|| format!("cannot pull {}", reference.familiar()))?;
    tokio.shutdown_background();
    Ok(record)
}

/// Whether this process has one thread (so it may create containers itself).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Threads:", "1"]))
}

/// Fails early, with what to do, when the container's network does not exist, or has
/// aliases though it resolves no names.
fn check_network(root: &Path, options: &RunOptions) -> Result<()> {
    let Network::Bridge(name) = &options.network else { return Ok(()) };
    let def = runtime::network::Networks::at(root).get(name)?;
    if !def.dns && !options.network_aliases.is_empty() {
        bail!("--network-alias needs a user-defined network (berth network create NAME): {name} resolves no names");
    }
    Ok(())
}

/// Runs `berth run` against the store at `root`; the exit code is the container's.
pub fn run(root: &Path, args: Args) -> ExitCode {
    match start(root, args) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::from(EXIT_START_FAILED as u8)
        }
    }
}

fn start(root: &Path, args: Args) -> Result<i32> {
    super::init_logging();
    tracing::debug!("berth run");
    let options = options(&args)?;
    check_network(root, &options)?;
    let store = super::open_store(root)?;
    let image = find_or_pull(&store, &args.image, args.plain_http)?;
    tracing::debug!("image found");
    let containers = Containers::at(root);
    // In the foreground and without threads (nothing was pulled), this process supervises.
    let in_process = !options.detach && single_threaded();
    let shim_pid = in_process.then(|| std::process::id() as i32);
    let record = containers
        .create(&args.image, &image.reference, &image.manifest, &options, shim_pid)
        .context("cannot create the container")?;
    tracing::debug!(id = %record.id, "container recorded");
    // This process runs from a read-only copy of the binary (`super::reexec_sealed`), which
    // only this name reaches; a supervisor started from it needs no copy of its own.
    let exe = Path::new("/proc/self/exe");
    if options.detach {
        super::start::spawn_supervisor(root, &record.id)
            .with_context(|| format!("cannot start container {}", record.short_id()))?;
        println!("{}", record.id);
        return Ok(0);
    }
    if in_process {
        let image = Some((store, image));
        return Ok(shim::run(ShimArgs { root: root.to_path_buf(), id: record.id, ready: None, image }));
    }
    drop(store);
    // Threads were started (to pull): the embedded runtime needs a fresh process.
    let err = std::process::Command::new(exe).arg("--root").arg(root).arg("container-shim").arg(&record.id).exec();
    Err(anyhow!(err).context("cannot run the container supervisor"))
}

/// Runs the hidden `berth container-shim`.
pub fn shim_main(root: &Path, flags: ShimFlags) -> ExitCode {
    super::init_logging();
    if flags.detach {
        if let Err(e) = shim::detach() {
            eprintln!("berth: {e}");
            return ExitCode::from(EXIT_START_FAILED as u8);
        }
    }
    // SAFETY: the CLI passes the descriptor number of the pipe it left open for us.
    let ready = flags.ready_fd.map(|fd| unsafe { shim::take_fd(fd) });
    let code = shim::run(ShimArgs { root: root.to_path_buf(), id: flags.id, ready, image: None });
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("8388608t").is_err(), "2^63 bytes does not fit the kernel's i64");
        assert_eq!(parse_bytes("8388607t").unwrap(), 8_388_607 << 40);
    }

    #[test]
    fn volumes_tmpfs_and_env() {
        let v = parse_volume("/data:/mnt:ro").unwrap();
        assert_eq!((v.host.as_path(), v.container.as_str(), v.read_only), (Path::new("/data"), "/mnt", true));
        assert!(!parse_volume("/data:/mnt").unwrap().read_only);
        assert!(parse_volume("data:/mnt").is_err());
        assert!(parse_volume("/data").is_err());
        assert!(parse_volume("/a:/b:zz").is_err());
        let t = parse_tmpfs("/run:size=1m,mode=700").unwrap();
        assert_eq!(t.options, ["size=1m", "mode=700"]);
        assert!(parse_tmpfs("run").is_err());
        let lookup = |k: &str| (k == "HOME").then(|| "/home/me".to_string());
        assert_eq!(env_entry("A=1", &lookup).as_deref(), Some("A=1"));
        assert_eq!(env_entry("HOME", &lookup).as_deref(), Some("HOME=/home/me"));
        assert_eq!(env_entry("UNSET", &lookup), None);
        assert_eq!(env_file_entries("# c\nA=1\n\n  B=2 \nC\n"), ["A=1", "B=2", "C"]);
    }

    #[test]
    fn security_options_and_devices() {
        assert_eq!(parse_security_opts(&[]).unwrap(), (SeccompProfile::Default, false));
        let opts = |o: &[&str]| parse_security_opts(&o.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(opts(&["seccomp=unconfined"]).unwrap(), (SeccompProfile::Unconfined, false));
        assert_eq!(opts(&["no-new-privileges=false"]).unwrap(), (SeccompProfile::Default, true));
        assert_eq!(opts(&["no-new-privileges"]).unwrap(), (SeccompProfile::Default, false));
        assert!(opts(&["seccomp=/no/such/profile.json"]).is_err());
        assert!(opts(&["apparmor=x"]).is_err());
        let null = parse_device("/dev/null:/dev/nothing:r").unwrap();
        assert_eq!((null.container.as_str(), null.major, null.minor, null.block), ("/dev/nothing", 1, 3, false));
        assert_eq!(null.permissions, "r");
        assert_eq!(parse_device("/dev/null").unwrap().permissions, "rwm");
        assert_eq!(parse_device("/dev/null:rw").unwrap().container, "/dev/null");
        assert!(parse_device("/etc/passwd").is_err());
        assert!(parse_device("/dev/null:/x:rwz").is_err());
    }

    #[test]
    fn runtimes_resolve() {
        assert_eq!(resolve_runtime(None, None).unwrap(), None);
        assert_eq!(resolve_runtime(Some("berth"), None).unwrap(), None);
        assert_eq!(resolve_runtime(Some("sh"), Some("/nonexistent:/bin")).unwrap().as_deref(), Some("/bin/sh"));
        assert!(resolve_runtime(Some("no-such-runtime"), Some("/bin")).is_err());
        assert!(resolve_runtime(Some("/no/such/runc"), None).is_err());
    }
}
