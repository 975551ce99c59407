//! The OCI runtime configuration (`config.json`) of a container, built with `oci-spec` from
//! the image's config and the `berth run` options, with Docker's defaults: mount, pid, uts,
//! ipc, network and (where the kernel has them) cgroup namespaces; `/proc`, `/dev`,
//! `/dev/pts`, `/dev/shm`, `/dev/mqueue`, `/sys` and `/sys/fs/cgroup` mounted as Docker mounts
//! them (every cgroup hierarchy read-only); Docker's masked and read-only paths and default
//! capability set; `no_new_privs`; an open-files limit; the device cgroup's allow list and the
//! memory, CPU and pids limits.
//!
//! [`build`] is pure (everything it needs is passed in), so every rule is unit-tested
//! without root; the supervisor ([`super::shim`]) calls it once the container's root is
//! mounted and the user has been resolved from it.

use std::collections::HashSet;
use std::path::PathBuf;

use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use serde::{Deserialize, Serialize};

use super::user::ResolvedUser;

/// The default `PATH`, Docker's.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Docker's masked paths: hidden behind `/dev/null` or an empty read-only tmpfs.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/interrupts",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: [&str; 6] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", "/proc/sys/kernel/random"];

/// The cgroup file systems a container sees, made read-only as runc makes them: the
/// `/sys/fs/cgroup` tmpfs (v1, hybrid) or cgroup2 mount (v2), then every v1 hierarchy the
/// runtime may mount in it, by the names hosts give them (comounted ones included; `systemd`
/// is the named `name=systemd` hierarchy). Without them the embedded runtime (libcontainer
/// 0.7 ignores the mount's `ro` on v1) leaves the hierarchies writable, and a container could
/// lift its own `--memory`, `--cpus` and `--pids-limit` or write the host's `name=systemd`
/// hierarchy. A path the container lacks is skipped by the runtime; each is bound over
/// itself and remounted read-only, which a container without `CAP_SYS_ADMIN` cannot undo.
pub const CGROUP_READONLY_PATHS: [&str; 20] = [
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/blkio",
    "/sys/fs/cgroup/cpu",
    "/sys/fs/cgroup/cpuacct",
    "/sys/fs/cgroup/cpu,cpuacct",
    "/sys/fs/cgroup/cpuacct,cpu",
    "/sys/fs/cgroup/cpuset",
    "/sys/fs/cgroup/devices",
    "/sys/fs/cgroup/freezer",
    "/sys/fs/cgroup/hugetlb",
    "/sys/fs/cgroup/memory",
    "/sys/fs/cgroup/misc",
    "/sys/fs/cgroup/net_cls",
    "/sys/fs/cgroup/net_prio",
    "/sys/fs/cgroup/net_cls,net_prio",
    "/sys/fs/cgroup/net_prio,net_cls",
    "/sys/fs/cgroup/perf_event",
    "/sys/fs/cgroup/pids",
    "/sys/fs/cgroup/rdma",
    "/sys/fs/cgroup/systemd",
];

/// The network a container gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Its own network namespace with only a loopback interface.
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// A bind mount from the host (`-v HOST:CONTAINER[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The host path (absolute).
    pub host: PathBuf,
    /// Where it appears in the container (absolute).
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// A tmpfs mount (`--tmpfs PATH[:OPTIONS]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tmpfs {
    /// Where it is mounted (absolute).
    pub path: String,
    /// Mount options such as `size=64m,mode=1777`, comma-separated.
    pub options: Vec<String>,
}

/// What `berth run` was asked for, as Docker's flags have it. Stored in the container's
/// record; the defaults are Docker's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunOptions {
    /// `--name`: the container's name (default: generated).
    pub name: Option<String>,
    /// The command after the image (replaces the image's `Cmd`).
    pub command: Vec<String>,
    /// `--entrypoint`: replaces the image's `Entrypoint` (empty: none) and resets its `Cmd`.
    pub entrypoint: Option<String>,
    /// `-e`/`--env-file`: `KEY=VALUE` entries, later ones win (the CLI resolves bare `KEY`s).
    pub env: Vec<String>,
    /// `-w`: the working directory (absolute).
    pub workdir: Option<String>,
    /// `-u`: `name`, `uid`, with `:group` or `:gid` optionally.
    pub user: Option<String>,
    /// `-v`: bind mounts.
    pub volumes: Vec<Volume>,
    /// `--read-only`: mount the root read-only.
    pub read_only: bool,
    /// `--tmpfs`: tmpfs mounts.
    pub tmpfs: Vec<Tmpfs>,
    /// `--hostname` (default: the first 12 digits of the ID).
    pub hostname: Option<String>,
    /// `--network`.
    pub network: Network,
    /// `--memory`: bytes of memory (swap is not allowed beyond it).
    pub memory: Option<i64>,
    /// `--cpus`: CPUs' worth of time per period.
    pub cpus: Option<f64>,
    /// `--pids-limit`: most processes at once.
    pub pids_limit: Option<i64>,
    /// `-i`: keep standard input open.
    pub interactive: bool,
    /// `-t`: give the container a terminal.
    pub tty: bool,
    /// `-d`: run in the background, output to the log.
    pub detach: bool,
    /// `--rm`: remove the container when it exits.
    pub remove: bool,
    /// `--runtime`: an OCI runtime (`runc`, `crun` or a path) instead of the embedded one.
    pub runtime: Option<String>,
}

/// Facts about the host the configuration depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Whether swap can be limited (cgroup v2, or v1 with `memory.memsw.*`).
    pub swap_limit: bool,
    /// The caller's hard limit of open files (0: unknown). Containers get at most this,
    /// since raising it needs `CAP_SYS_RESOURCE`.
    pub nofile_max: u64,
    /// Whether the kernel offers cgroup namespaces (Linux 4.6+; [`host_has_cgroup_namespaces`]):
    /// containers then get one of their own, rooted at their cgroup.
    pub cgroup_namespace: bool,
}

/// Whether this kernel offers cgroup namespaces.
pub fn host_has_cgroup_namespaces() -> bool {
    std::path::Path::new("/proc/self/ns/cgroup").exists()
}

/// The open-files limit containers get where the host allows it (Docker's).
pub const NOFILE: u64 = 1_048_576;

/// Everything [`build`] needs.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    /// The container's ID.
    pub id: &'a str,
    /// The image config's `config` part (`None` when it has none).
    pub image: Option<&'a ImageConfig>,
    /// The options.
    pub options: &'a RunOptions,
    /// The user, resolved from the image.
    pub user: &'a ResolvedUser,
    /// The cgroup path (`/berth/<id>`).
    pub cgroups_path: PathBuf,
    /// Files berth writes for the container, bind-mounted over the image's: (container
    /// path, host file), such as `/etc/hostname` and `/etc/hosts`.
    pub etc_files: Vec<(String, PathBuf)>,
    /// Host facts.
    pub host: HostFacts,
}

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the options nor the image name a command.
    #[error("no command specified: the image has no Entrypoint or Cmd, and none was given")]
    NoCommand,
    /// A path that must be absolute is not.
    #[error("{what} {path:?} is not an absolute path")]
    NotAbsolute {
        /// Which option.
        what: &'static str,
        /// The path.
        path: String,
    },
    /// An option is out of range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which option.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `oci-spec` refused a part of the configuration.
    #[error("building the OCI runtime configuration")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// The process's arguments: Docker's rules for `--entrypoint`, the command, and the
/// image's `Entrypoint` and `Cmd`.
pub fn process_args(image: Option<&ImageConfig>, options: &RunOptions) -> Result<Vec<String>, SpecError> {
    let image_entrypoint = image.and_then(|c| c.entrypoint().clone()).unwrap_or_default();
    let image_cmd = image.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let (entrypoint, default_cmd) = match &options.entrypoint {
        // An explicit entrypoint resets the image's Cmd, as in Docker.
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (image_entrypoint, image_cmd),
    };
    let cmd = if options.command.is_empty() { default_cmd } else { options.command.clone() };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

/// The environment: the image's, then the options' (a later `KEY=` replaces an earlier
/// one), plus `PATH`, `HOSTNAME`, `HOME` and, with a terminal, `TERM` unless set.
pub fn environment(image: Option<&ImageConfig>, options: &RunOptions, hostname: &str, home: &str) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: &str| {
        let key = entry.split_once('=').map_or(entry, |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(entry.to_string());
    };
    let image_env = image.and_then(|c| c.env().clone()).unwrap_or_default();
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        set(&format!("PATH={DEFAULT_PATH}"));
    }
    set(&format!("HOSTNAME={hostname}"));
    for entry in image_env.iter().chain(&options.env) {
        set(entry);
    }
    let has = |env: &[String], key: &str| env.iter().any(|e| e.starts_with(&format!("{key}=")));
    if !has(&env, "HOME") {
        env.push(format!("HOME={home}"));
    }
    if options.tty && !has(&env, "TERM") {
        env.push("TERM=xterm".to_string());
    }
    env
}

/// The working directory: `-w`, else the image's `WorkingDir`, else `/`.
pub fn working_dir(image: Option<&ImageConfig>, options: &RunOptions) -> Result<String, SpecError> {
    let dir = options
        .workdir
        .clone()
        .or_else(|| image.and_then(|c| c.working_dir().clone()))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !dir.starts_with('/') {
        return Err(SpecError::NotAbsolute { what: "working directory", path: dir });
    }
    Ok(dir)
}

/// The hostname: `--hostname`, else the first 12 digits of the ID.
pub fn hostname(options: &RunOptions, id: &str) -> String {
    options.hostname.clone().unwrap_or_else(|| id.chars().take(12).collect())
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// The mounts: Docker's standard ones, then berth's `/etc` files, tmpfs mounts and volumes.
fn mounts(input: &SpecInput<'_>) -> Result<Vec<Mount>, SpecError> {
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?,
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
    ];
    for (path, file) in &input.etc_files {
        mounts.push(mount(path, "bind", &file.to_string_lossy(), &["rbind", "rprivate"])?);
    }
    for t in &input.options.tmpfs {
        if !t.path.starts_with('/') {
            return Err(SpecError::NotAbsolute { what: "tmpfs mount point", path: t.path.clone() });
        }
        let mut options = vec!["nosuid", "nodev", "noexec"];
        options.extend(t.options.iter().map(String::as_str));
        mounts.push(mount(&t.path, "tmpfs", "tmpfs", &options)?);
    }
    for v in &input.options.volumes {
        if !v.container.starts_with('/') {
            return Err(SpecError::NotAbsolute { what: "volume mount point", path: v.container.clone() });
        }
        if !v.host.is_absolute() {
            return Err(SpecError::NotAbsolute { what: "volume source", path: v.host.to_string_lossy().into_owned() });
        }
        let mut options = vec!["rbind", "rprivate"];
        if v.read_only {
            options.push("ro");
        }
        mounts.push(mount(&v.container, "bind", &v.host.to_string_lossy(), &options)?);
    }
    Ok(mounts)
}

fn device_rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<oci_spec::runtime::LinuxDeviceCgroup, SpecError> {
    let mut b = LinuxDeviceCgroupBuilder::default().allow(true).typ(typ).access(access);
    if let Some(major) = major {
        b = b.major(major);
    }
    if let Some(minor) = minor {
        b = b.minor(minor);
    }
    Ok(b.build()?)
}

/// Builds the configuration.
pub fn build(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
    let options = input.options;
    let hostname = hostname(options, input.id);
    let user = input.user;
    let args = process_args(input.image, options)?;
    let env = environment(input.image, options, &hostname, &user.home);
    let cwd = working_dir(input.image, options)?;

    let caps: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    // A non-root user gets no effective capabilities (newer Docker does the same).
    let (effective, permitted) =
        if user.uid == 0 { (caps.clone(), caps.clone()) } else { (HashSet::new(), HashSet::new()) };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(effective)
        .permitted(permitted)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let limit = if input.host.nofile_max == 0 { NOFILE } else { input.host.nofile_max.min(NOFILE) };
    let nofile = PosixRlimitBuilder::default().typ(PosixRlimitType::RlimitNofile).hard(limit).soft(limit).build()?;
    let process = ProcessBuilder::default()
        .terminal(options.tty)
        .user(UserBuilder::default().uid(user.uid).gid(user.gid).additional_gids(user.additional_gids.clone()).build()?)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(vec![nofile])
        .no_new_privileges(true)
        .build()?;

    let mut namespaces =
        vec![LinuxNamespaceType::Pid, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts, LinuxNamespaceType::Mount];
    if options.network == Network::None {
        namespaces.push(LinuxNamespaceType::Network);
    }
    if input.host.cgroup_namespace {
        namespaces.push(LinuxNamespaceType::Cgroup);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;

    // Deny every device, then allow the ones a container gets (the runtime creates them).
    let mut devices = vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build()?];
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)] {
        devices.push(device_rule(LinuxDeviceType::C, Some(major), Some(minor), "rwm")?);
    }
    devices.push(device_rule(LinuxDeviceType::C, Some(136), None, "rwm")?);
    let mut resources = LinuxResourcesBuilder::default().devices(devices);
    if let Some(memory) = options.memory {
        if memory < 6 * 1024 * 1024 {
            return Err(SpecError::Invalid { what: "--memory", reason: "the minimum is 6 MiB".into() });
        }
        let mut m = LinuxMemoryBuilder::default().limit(memory);
        if input.host.swap_limit {
            m = m.swap(memory);
        }
        resources = resources.memory(m.build()?);
    }
    if let Some(cpus) = options.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            return Err(SpecError::Invalid { what: "--cpus", reason: format!("{cpus} is not a positive number") });
        }
        let period = 100_000u64;
        let quota = (cpus * period as f64).round() as i64;
        resources = resources.cpu(LinuxCpuBuilder::default().period(period).quota(quota.max(1000)).build()?);
    }
    if let Some(limit) = options.pids_limit {
        if limit > 0 {
            resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
        }
    }
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(input.cgroups_path.clone())
        .resources(resources.build()?)
        .masked_paths(MASKED_PATHS.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .readonly_paths(READONLY_PATHS.iter().chain(&CGROUP_READONLY_PATHS).map(|p| p.to_string()).collect::<Vec<_>>())
        .build()?;

    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path("rootfs").readonly(options.read_only).build()?)
        .hostname(hostname)
        .mounts(mounts(input)?)
        .process(process)
        .linux(linux)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        let mut b = ConfigBuilder::default()
            .env(vec!["PATH=/bin".to_string(), "A=image".to_string()])
            .working_dir("/srv".to_string());
        if let Some(e) = entrypoint {
            b = b.entrypoint(e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        if let Some(c) = cmd {
            b = b.cmd(c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        b.build().unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_follow_dockers_rules() {
        let img = image(Some(&["/entry"]), Some(&["default"]));
        let opts = |entrypoint: Option<&str>, command: &[&str]| RunOptions {
            entrypoint: entrypoint.map(String::from),
            command: strings(command),
            ..RunOptions::default()
        };
        assert_eq!(process_args(Some(&img), &opts(None, &[])).unwrap(), ["/entry", "default"]);
        assert_eq!(process_args(Some(&img), &opts(None, &["x", "y"])).unwrap(), ["/entry", "x", "y"]);
        assert_eq!(process_args(Some(&img), &opts(Some("sh"), &[])).unwrap(), ["sh"]);
        assert_eq!(process_args(Some(&img), &opts(Some("sh"), &["-c", "true"])).unwrap(), ["sh", "-c", "true"]);
        assert_eq!(process_args(Some(&img), &opts(Some(""), &["ls"])).unwrap(), ["ls"]);
        assert!(matches!(process_args(Some(&img), &opts(Some(""), &[])), Err(SpecError::NoCommand)));
        assert!(matches!(process_args(None, &opts(None, &[])), Err(SpecError::NoCommand)));
        let cmd_only = image(None, Some(&["sh"]));
        assert_eq!(process_args(Some(&cmd_only), &opts(None, &["echo", "hi"])).unwrap(), ["echo", "hi"]);
    }

    #[test]
    fn environment_merges_in_order() {
        let img = image(None, Some(&["sh"]));
        let opts = RunOptions { env: strings(&["A=option", "B=1", "B=2"]), tty: true, ..RunOptions::default() };
        let env = environment(Some(&img), &opts, "box", "/root");
        assert_eq!(env, strings(&["HOSTNAME=box", "PATH=/bin", "A=option", "B=2", "HOME=/root", "TERM=xterm"]));
        let env = environment(None, &RunOptions::default(), "h", "/");
        assert_eq!(env, strings(&[&format!("PATH={DEFAULT_PATH}"), "HOSTNAME=h", "HOME=/"]));
    }

    #[test]
    fn working_dir_and_hostname() {
        let img = image(None, Some(&["sh"]));
        assert_eq!(working_dir(Some(&img), &RunOptions::default()).unwrap(), "/srv");
        let opts = RunOptions { workdir: Some("/tmp".into()), ..RunOptions::default() };
        assert_eq!(working_dir(Some(&img), &opts).unwrap(), "/tmp");
        assert_eq!(working_dir(None, &RunOptions::default()).unwrap(), "/");
        let rel = RunOptions { workdir: Some("tmp".into()), ..RunOptions::default() };
        assert!(matches!(working_dir(None, &rel), Err(SpecError::NotAbsolute { .. })));
        assert_eq!(hostname(&RunOptions::default(), "0123456789abcdef"), "0123456789ab");
    }

    fn build_with(options: &RunOptions, uid: u32) -> Spec {
        let img = image(None, Some(&["sh"]));
        let user = ResolvedUser { uid, gid: uid, additional_gids: vec![], home: "/".into() };
        build(&SpecInput {
            id: "abcdefabcdef0123",
            image: Some(&img),
            options,
            user: &user,
            cgroups_path: "/berth/abcdefabcdef0123".into(),
            etc_files: vec![("/etc/hostname".into(), "/x/hostname".into())],
            host: HostFacts { swap_limit: true, nofile_max: 20_000, cgroup_namespace: true },
        })
        .unwrap()
    }

    #[test]
    fn builds_a_docker_like_configuration() {
        let options = RunOptions {
            volumes: vec![Volume { host: "/data".into(), container: "/mnt".into(), read_only: true }],
            tmpfs: vec![Tmpfs { path: "/run".into(), options: strings(&["size=1m"]) }],
            read_only: true,
            memory: Some(64 << 20),
            cpus: Some(1.5),
            pids_limit: Some(20),
            ..RunOptions::default()
        };
        let spec = build_with(&options, 0);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["root"], serde_json::json!({"path": "rootfs", "readonly": true}));
        assert_eq!(json["hostname"], "abcdefabcdef");
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(
            json["process"]["rlimits"][0],
            serde_json::json!({"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000})
        );
        assert_eq!(json["process"]["capabilities"]["effective"].as_array().unwrap().len(), 14);
        let ns: Vec<&str> =
            json["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network", "cgroup"]);
        assert_eq!(json["linux"]["resources"]["memory"], serde_json::json!({"limit": 64 << 20, "swap": 64 << 20}));
        assert_eq!(json["linux"]["resources"]["cpu"], serde_json::json!({"quota": 150000, "period": 100000}));
        assert_eq!(json["linux"]["resources"]["pids"]["limit"], 20);
        assert_eq!(json["linux"]["cgroupsPath"], "/berth/abcdefabcdef0123");
        let dests: Vec<&str> =
            json["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/hostname",
                "/run",
                "/mnt"
            ]
        );
        assert_eq!(json["mounts"][9]["options"], serde_json::json!(["rbind", "rprivate", "ro"]));
        assert!(json["linux"]["maskedPaths"].as_array().unwrap().iter().any(|p| p == "/proc/kcore"));
        let readonly = json["linux"]["readonlyPaths"].as_array().unwrap();
        for path in ["/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/systemd"] {
            assert!(readonly.iter().any(|p| p == path), "{path} is not read-only");
        }

        let host = RunOptions { network: Network::Host, ..RunOptions::default() };
        let spec = build_with(&host, 1000);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["linux"]["namespaces"].as_array().unwrap().len(), 5);
        assert!(json["process"]["capabilities"]["effective"].as_array().is_none_or(|a| a.is_empty()));
        assert!(json["linux"]["resources"]["memory"].is_null());
    }

    #[test]
    fn refuses_bad_options() {
        let img = image(None, Some(&["sh"]));
        let user = ResolvedUser { uid: 0, gid: 0, additional_gids: vec![], home: "/".into() };
        let try_build = |options: RunOptions| {
            build(&SpecInput {
                id: "x",
                image: Some(&img),
                options: &options,
                user: &user,
                cgroups_path: "/berth/x".into(),
                etc_files: vec![],
                host: HostFacts::default(),
            })
        };
        let volume = Volume { host: "rel".into(), container: "/mnt".into(), read_only: false };
        assert!(matches!(
            try_build(RunOptions { volumes: vec![volume], ..RunOptions::default() }),
            Err(SpecError::NotAbsolute { .. })
        ));
        assert!(matches!(
            try_build(RunOptions { memory: Some(1024), ..RunOptions::default() }),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            try_build(RunOptions { cpus: Some(-1.0), ..RunOptions::default() }),
            Err(SpecError::Invalid { .. })
        ));
    }
}
