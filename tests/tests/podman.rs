//! Differential checks against podman (Debian's 4.3): the same image, pulled by both from
//! one berth registry, run the same way by `berth` and by `podman`, must behave alike where
//! both claim Docker's behaviour: a published port answers `curl`, a container finds
//! another by name on a user network, `exec` passes the exit code back and sees the
//! container's processes (and only them), and `inspect` reports the same values for the
//! same flags.
//!
//! podman runs with a configuration of its own ([`Podman`]): a private `CONTAINERS_CONF`,
//! storage root, run root and CNI configuration folder under a temporary directory, so
//! nothing global changes. On this kind of host it needs three settings, found by trying:
//! - `runtime = "runc"`: crun refuses a host with hybrid cgroups;
//! - `network_backend = "cni"`: with netavark 1.4 its containers could not be reached (see
//!   the README's networks section); the CNI backend uses the same Debian plugins berth
//!   does, with the `dnsname` plugin (dnsmasq) for names on user networks;
//! - `default_ulimits`: without them podman asks runc for `RLIMIT_NOFILE` and
//!   `RLIMIT_NPROC` of 1048576, which only a process with `CAP_SYS_RESOURCE` may set above
//!   its own hard limits; in a sandbox without that capability runc fails with "error
//!   setting rlimits for ready process: ... operation not permitted". podman 4.3 also
//!   lowers its own hard `RLIMIT_NPROC` to 32768 as it starts (strace shows the
//!   `setrlimit`), so the process limit given must not exceed that either.
//!
//! The user network of the podman side is a CNI configuration list written here (podman
//! 4.3's `network create` cannot name the bridge), so its bridge, subnet and address
//! leases are this test's own and go with it.
//!
//! Needs root, podman, the CNI plugins with `dnsname`, aardvark-dns, skopeo, curl and
//! busybox-static; the test command installs them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::containers::Store;
use e2e::describe_failure;
use serde_json::Value;

/// How long a server in a container may take to answer.
const PATIENCE: Duration = Duration::from_secs(20);

/// podman 4.3's own hard `RLIMIT_NPROC` once it runs (see the module docs).
const PODMAN_NPROC: u64 = 32768;

fn permitted(test: &str) -> bool {
    if !shared::testing::require_root(test) {
        return false;
    }
    for (path, package) in [
        ("/usr/bin/podman", "podman"),
        ("/usr/lib/cni/bridge", "containernetworking-plugins"),
        ("/usr/lib/cni/dnsname", "golang-github-containernetworking-plugin-dnsname"),
        ("/usr/bin/curl", "curl"),
    ] {
        if !Path::new(path).is_file() {
            shared::testing::skip(test, &format!("{path} is missing (apt-get install {package})"));
            return false;
        }
    }
    true
}

/// podman with a configuration, storage and networks of its own (see the module docs).
struct Podman {
    dir: tempfile::TempDir,
    /// Bridges of the networks made, removed at the end.
    bridges: Vec<String>,
}

impl Podman {
    fn new() -> Result<Podman> {
        let dir = tempfile::tempdir()?;
        let hard = |resource| rustix::process::getrlimit(resource).maximum.unwrap_or(u64::MAX);
        let nofile = hard(rustix::process::Resource::Nofile).min(1 << 20);
        let nproc = hard(rustix::process::Resource::Nproc).min(PODMAN_NPROC);
        let networks = dir.path().join("networks");
        std::fs::create_dir_all(&networks)?;
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
             [engine]\n\
             runtime = \"runc\"\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"none\"\n\
             [network]\n\
             network_backend = \"cni\"\n\
             network_config_dir = \"{}\"\n",
            networks.display()
        );
        std::fs::write(dir.path().join("containers.conf"), conf)?;
        Ok(Podman { dir, bridges: Vec::new() })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("podman");
        command
            .env("CONTAINERS_CONF", self.path("containers.conf"))
            .arg("--root")
            .arg(self.path("storage"))
            .arg("--runroot")
            .arg(self.path("run"))
            .args(args)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null());
        command
    }

    async fn run(&self, args: &[&str]) -> Result<Output> {
        let output = tokio::time::timeout(Duration::from_secs(300), self.command(args).output())
            .await
            .context("podman took longer than 5 minutes")?
            .context("cannot run podman")?;
        Ok(output)
    }

    async fn ok(&self, args: &[&str]) -> Result<String> {
        let output = self.run(args).await?;
        if !output.status.success() {
            bail!("{}", describe_failure("podman", args, &output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A bridge network `name` on `subnet` (a /24) with name resolution (`dnsname`).
    fn network(&mut self, name: &str, subnet: &str) -> Result<()> {
        let prefix = subnet.rsplit_once(".0/").context("subnet is not a x.y.z.0/N")?.0;
        let bridge = format!("bp{}", &name[name.len().saturating_sub(12)..]);
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": name,
            "plugins": [
                {
                    "type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "ranges": [[{"subnet": subnet, "gateway": format!("{prefix}.1")}]],
                        "dataDir": self.path("ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "firewall", "backend": "iptables"},
                {"type": "dnsname", "domainName": "dns.podman", "capabilities": {"aliases": true}},
            ],
        });
        std::fs::write(self.path("networks").join(format!("{name}.conflist")), serde_json::to_vec_pretty(&conflist)?)?;
        self.bridges.push(bridge);
        Ok(())
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let podman = |args: &[&str]| {
            let _ = self.command(args).as_std_mut().stdout(std::process::Stdio::null()).status();
        };
        podman(&["rm", "--all", "--force", "--time", "0"]);
        for bridge in &self.bridges {
            let _ = std::process::Command::new("ip").args(["link", "delete", bridge]).output();
        }
        // The storage driver mounts its folder privately: unmounted before it is removed.
        let root = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut under: Vec<&str> =
            mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&root)).collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in under {
            let _ = std::process::Command::new("umount").args(["-l", mount]).output();
        }
    }
}

/// A /24 in 10.240.0.0/12 that no route of the host touches (not proof against a network
/// made a moment later, but the third octet is random).
fn free_subnet() -> Result<String> {
    let routes = std::process::Command::new("ip").args(["-4", "route", "show", "table", "all"]).output()?;
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    for attempt in 0u32..50 {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
        let bytes = (nanos ^ std::process::id().rotate_left(7) ^ attempt.wrapping_mul(2_654_435_761)).to_le_bytes();
        let prefix = format!("10.{}.{}", 240 + bytes[0] % 15, bytes[1]);
        if !routes.contains(&format!("{prefix}.")) && !routes.contains(&format!("10.{}.0.0/", 240 + bytes[0] % 15)) {
            return Ok(format!("{prefix}.0/24"));
        }
    }
    bail!("no free /24 found in 10.240.0.0/12")
}

/// A host port free now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `curl http://ADDR/` until it answers (at most [`PATIENCE`]): the body.
async fn curl(addr: &str) -> Result<String> {
    let start = Instant::now();
    loop {
        let out = e2e::run("curl", &["-sf", "--max-time", "5", &format!("http://{addr}/")]).await?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if start.elapsed() > PATIENCE {
            bail!("{}", describe_failure("curl", &[addr], &out));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One engine under test: `berth` on a store, or `podman` as configured above.
enum Engine<'a> {
    Berth(&'a Store),
    Podman(&'a Podman),
}

impl Engine<'_> {
    fn name(&self) -> &'static str {
        match self {
            Engine::Berth(_) => "berth",
            Engine::Podman(_) => "podman",
        }
    }

    async fn run(&self, args: &[&str]) -> Result<Output> {
        match self {
            Engine::Berth(store) => store.berth(args).await,
            Engine::Podman(podman) => podman.run(args).await,
        }
    }

    async fn ok(&self, args: &[&str]) -> Result<String> {
        match self {
            Engine::Berth(store) => store.berth_ok(args).await,
            Engine::Podman(podman) => podman.ok(args).await,
        }
    }

    async fn inspect(&self, name: &str) -> Result<Value> {
        let out = self.ok(&["inspect", "--type", "container", name]).await?;
        let all: Value = serde_json::from_str(&out).with_context(|| format!("inspect printed {out}"))?;
        all.get(0).cloned().with_context(|| format!("{} inspect printed no object", self.name()))
    }
}

/// What one engine showed, for the comparison.
#[derive(Debug)]
struct Seen {
    engine: &'static str,
    /// `curl` of the published port.
    body: String,
    /// The web container as `inspect` shows it.
    web: Value,
    /// What a second container on the network resolved the web container's name to.
    resolved: String,
    /// The body it fetched from the web container by name.
    fetched: String,
    /// `exec web sh -c 'exit 7'`.
    exec_code: Option<i32>,
    /// `exec` with `-e`, `-w`, `-u`: what the process saw.
    exec_view: String,
    /// `exec web busybox ps -o pid,args`, without the line of `ps` itself.
    processes: Vec<String>,
    /// A container that exited 3, as `inspect` shows it.
    exited: Value,
}

/// Runs the same scenario under `engine` on its user network `network`.
async fn scenario(engine: &Engine<'_>, image: &str, network: &str) -> Result<Seen> {
    let port = free_port()?;
    let publish = format!("127.0.0.1:{port}:80");
    let net = ["--network", network];
    let flags = ["-d", "--name", "web", "-p", &publish, "-e", "GREETING=hi", "--label", "tier=web", "-w", "/www"];
    let serve = ["busybox", "httpd", "-f", "-p", "80", "-h", "/www"];
    let args: Vec<&str> = ["run"].into_iter().chain(net).chain(flags).chain([image]).chain(serve).collect();
    engine.ok(&args).await?;
    let body = curl(&format!("127.0.0.1:{port}")).await.with_context(|| format!("{}: -p {publish}", engine.name()))?;
    let web = engine.inspect("web").await?;

    // Another container of the network: the web container by name.
    let lookup = "for i in $(seq 1 100); do nslookup web > /tmp/ns 2>&1 && break; sleep 0.1; done; \
                  grep -A9 '^Name:' /tmp/ns | grep '^Address' | head -1 | sed 's/^Address[ 0-9]*: *//'; \
                  echo ---; echo -e 'GET / HTTP/1.0\\r\\n\\r\\n' | nc web 80 | tail -1";
    let args: Vec<&str> = ["run", "--rm"].into_iter().chain(net).chain([image, "sh", "-c", lookup]).collect::<Vec<_>>();
    let out = engine.ok(&args).await?;
    let (resolved, fetched) = out.split_once("---").with_context(|| format!("{}: {out}", engine.name()))?;

    let code = engine.run(&["exec", "web", "sh", "-c", "exit 7"]).await?.status.code();
    let view = "echo \"$GREETING $X $(pwd) $(id -u) $(id -g)\"";
    let exec_view = engine.ok(&["exec", "-e", "X=1", "-w", "/tmp", "-u", "1000", "web", "sh", "-c", view]).await?;
    let ps = engine.ok(&["exec", "web", "busybox", "ps", "-o", "pid,args"]).await?;
    let processes: Vec<String> = ps
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.contains("ps -o pid,args"))
        .collect();

    let args: Vec<&str> =
        ["run", "--name", "three"].into_iter().chain(net).chain([image, "sh", "-c", "exit 3"]).collect();
    let _ = engine.run(&args).await?;
    let exited = engine.inspect("three").await?;
    engine.ok(&["rm", "-f", "web", "three"]).await?;
    Ok(Seen {
        engine: engine.name(),
        body,
        web,
        resolved: resolved.trim().to_string(),
        fetched: fetched.trim().to_string(),
        exec_code: code,
        exec_view: exec_view.trim().to_string(),
        processes,
        exited,
    })
}

/// The address `seen`'s web container has on `network`, checked to be in `subnet` (a /24).
fn address_on(seen: &Seen, network: &str, subnet: &str) -> Result<String> {
    let n = &seen.web["NetworkSettings"]["Networks"][network];
    let ip = n["IPAddress"].as_str().with_context(|| format!("{}: no address on {network}: {n}", seen.engine))?;
    let prefix = subnet.trim_end_matches(".0/24");
    ensure!(ip.starts_with(&format!("{prefix}.")), "{}: address {ip} is not in {subnet}", seen.engine);
    ensure!(n["IPPrefixLen"] == 24, "{}: IPPrefixLen {}", seen.engine, n["IPPrefixLen"]);
    ensure!(n["Gateway"] == format!("{prefix}.1").as_str(), "{}: Gateway {}", seen.engine, n["Gateway"]);
    let mac = n["MacAddress"].as_str().unwrap_or_default();
    ensure!(mac.len() == 17 && mac.split(':').count() == 6, "{}: MacAddress {mac:?}", seen.engine);
    Ok(ip.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_and_podman_agree_on_ports_names_exec_and_inspect() -> Result<()> {
    let test = "berth_and_podman_agree_on_ports_names_exec_and_inspect";
    if !permitted(test) {
        return Ok(());
    }
    let store = Store::with_image(|root| {
        std::fs::create_dir_all(root.join("www"))?;
        std::fs::write(root.join("www/index.html"), "hello from the same image\n")?;
        Ok(())
    })
    .await?;
    let mut podman = Podman::new()?;
    podman.ok(&["pull", "-q", "--tls-verify=false", &store.image]).await?;

    let tag = format!("{:x}", std::process::id());
    let (berth_net, podman_net) = (format!("bdiff{tag}"), format!("pdiff{tag}"));
    let berth_subnet = create_berth_network(&store, &berth_net).await?;
    let _cleanup = BerthNetwork { root: store.path().to_path_buf(), name: berth_net.clone() };
    let podman_subnet = free_subnet()?;
    ensure!(podman_subnet != berth_subnet, "the two networks drew one subnet");
    podman.network(&podman_net, &podman_subnet)?;

    let ours = scenario(&Engine::Berth(&store), &store.image, &berth_net).await?;
    let theirs = scenario(&Engine::Podman(&podman), &store.image, &podman_net).await?;

    // -p answers curl with the image's page.
    for seen in [&ours, &theirs] {
        ensure!(seen.body.contains("hello from the same image"), "{}: curl got {:?}", seen.engine, seen.body);
    }
    // Names: the web container's own address, and its page through the name.
    for (seen, network, subnet) in [(&ours, &berth_net, &berth_subnet), (&theirs, &podman_net, &podman_subnet)] {
        let ip = address_on(seen, network, subnet)?;
        ensure!(seen.resolved == ip, "{}: `web` resolved to {:?}, its address is {ip}", seen.engine, seen.resolved);
        ensure!(seen.fetched.contains("hello from the same image"), "{}: by name: {:?}", seen.engine, seen.fetched);
    }
    // exec: the exit code, what -e/-w/-u give, and the container's processes only.
    ensure!(ours.exec_code == Some(7) && theirs.exec_code == Some(7), "exec exit codes: {ours:?} / {theirs:?}");
    ensure!(ours.exec_view == "hi 1 /tmp 1000 1000", "berth exec saw {:?}", ours.exec_view);
    ensure!(ours.exec_view == theirs.exec_view, "exec: berth saw {:?}, podman {:?}", ours.exec_view, theirs.exec_view);
    ensure!(ours.processes == ["1 busybox httpd -f -p 80 -h /www"], "berth exec sees {:?}", ours.processes);
    ensure!(ours.processes == theirs.processes, "ps: berth {:?}, podman {:?}", ours.processes, theirs.processes);

    // inspect: the same values for the same flags (IDs, times, PIDs and names of networks differ).
    let fields = [
        "/Path",
        "/Args",
        "/State/Status",
        "/State/Running",
        "/State/ExitCode",
        "/RestartCount",
        "/Config/Cmd",
        "/Config/Labels/tier",
        "/Config/WorkingDir",
        "/Config/User",
        "/Config/Tty",
        "/Config/OpenStdin",
        "/HostConfig/AutoRemove",
        "/HostConfig/Privileged",
        "/HostConfig/ReadonlyRootfs",
        "/NetworkSettings/Ports/80~1tcp/0/HostIp",
    ];
    let mut differ = Vec::new();
    for field in fields {
        let (a, b) = (ours.web.pointer(field), theirs.web.pointer(field));
        if a != b || a.is_none() {
            differ.push(format!("{field}: berth {a:?}, podman {b:?}"));
        }
    }
    for field in ["/State/Status", "/State/Running", "/State/ExitCode", "/Path", "/Args"] {
        let (a, b) = (ours.exited.pointer(field), theirs.exited.pointer(field));
        if a != b || a.is_none() {
            differ.push(format!("exited container {field}: berth {a:?}, podman {b:?}"));
        }
    }
    ensure!(differ.is_empty(), "inspect differs from podman's:\n{}", differ.join("\n"));
    ensure!(ours.exited["State"]["ExitCode"] == 3, "{}", ours.exited["State"]);
    for seen in [&ours, &theirs] {
        let env = seen.web["Config"]["Env"].as_array().context("no Config.Env")?;
        ensure!(env.iter().any(|e| e == "GREETING=hi"), "{}: Config.Env {env:?}", seen.engine);
        let port = seen.web["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"].as_str().unwrap_or_default();
        ensure!(port.parse::<u16>().is_ok_and(|p| p > 0), "{}: HostPort {port:?}", seen.engine);
    }
    Ok(())
}

/// Removes berth's user network (and its containers first, and the root's DNS server)
/// however the test ends; dropped before the [`Store`].
struct BerthNetwork {
    root: PathBuf,
    name: String,
}

impl Drop for BerthNetwork {
    fn drop(&mut self) {
        let containers = runtime::container::Containers::at(&self.root);
        for record in containers.list().unwrap_or_default() {
            let _ = containers.remove(&record.id, true);
        }
        let _ = runtime::network::Networks::at(&self.root).remove(&self.name, &containers);
        let _ = runtime::network::dns::stop(&self.root.join("networks/dns"));
    }
}

/// `berth network create --subnet` on a free /24; the subnet.
async fn create_berth_network(store: &Store, name: &str) -> Result<String> {
    for _ in 0..20 {
        let subnet = free_subnet()?;
        let out = store.berth(&["network", "create", "--subnet", &subnet, name]).await?;
        if out.status.success() {
            return Ok(subnet);
        }
        ensure!(
            String::from_utf8_lossy(&out.stderr).contains("overlaps"),
            "{}",
            describe_failure("berth", &["network", "create", name], &out)
        );
    }
    bail!("no free subnet for network {name}")
}
