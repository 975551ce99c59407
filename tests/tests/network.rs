//! Container networks end to end, as root: published ports answer from the host, containers
//! of a user network find each other by name and alias (aardvark-dns), `--network none`
//! has only loopback, a container reaches the host side of its bridge, and nothing of a
//! container's network (namespace file, attachment, lease, interface, iptables rules) is
//! left after `rm` or after its supervisor died; with the embedded runtime and with runc.
//!
//! Each test has its own store root, image registry and user networks on a subnet no other
//! network of the host uses; [`Root`]'s `Drop` removes containers and networks however the
//! test ends. Needs the CNI plugins (`containernetworking-plugins`), `aardvark-dns`,
//! `busybox-static`, `skopeo` and `runc`; the test command installs them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::{describe_failure, require_tools, run, BusyboxImage, Registry};
use runtime::container::Containers;
use runtime::network::Networks;
use serde_json::Value;
use shared::client::Client;
use shared::ImageRef;

const RUNC: &str = "/usr/sbin/runc";

/// How long a server in a container may take to answer.
const PATIENCE: Duration = Duration::from_secs(20);

fn permitted(test: &str) -> bool {
    if !shared::testing::require_root(test) {
        return false;
    }
    if !Path::new("/usr/lib/cni/bridge").is_file() {
        shared::testing::skip(test, "the CNI plugins are not installed (apt-get install containernetworking-plugins)");
        return false;
    }
    true
}

/// A store root with a busybox image (a web root in `/www`, port 80 exposed) in a registry.
struct Root {
    dir: tempfile::TempDir,
    image: String,
    _registry: Registry,
}

impl Root {
    async fn new() -> Result<Root> {
        require_tools(&["skopeo"])?;
        let registry = Registry::start().await?;
        let work = tempfile::tempdir()?;
        let image = BusyboxImage::build_with(work.path(), |root| {
            std::fs::create_dir_all(root.join("www"))?;
            std::fs::write(root.join("www/index.html"), "hello from berth\n")?;
            Ok(())
        })?;
        let reference = push_with_exposed_port(&registry, &image.rootfs).await?;
        Ok(Root { dir: tempfile::tempdir()?, image: reference, _registry: registry })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    async fn berth(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["--root", self.path().to_str().context("root path is not UTF-8")?];
        all.extend_from_slice(args);
        run(e2e::berth_binary()?.to_str().context("binary path")?, &all).await
    }

    async fn berth_ok(&self, args: &[&str]) -> Result<String> {
        let output = self.berth(args).await?;
        if !output.status.success() {
            bail!("{}", describe_failure("berth", args, &output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `berth run [--runtime R] FLAGS... IMAGE COMMAND...`, which must succeed: its output.
    async fn run(&self, runtime: Option<&str>, flags: &[&str], command: &[&str]) -> Result<String> {
        let mut args = vec!["run"];
        if let Some(r) = runtime {
            args.extend(["--runtime", r]);
        }
        args.extend_from_slice(flags);
        args.push(&self.image);
        args.extend_from_slice(command);
        self.berth_ok(&args).await
    }

    /// `berth inspect` of one container.
    async fn inspect(&self, name: &str) -> Result<Value> {
        let out = self.berth_ok(&["inspect", "--type", "container", name]).await?;
        let all: Value = serde_json::from_str(&out)?;
        Ok(all[0].clone())
    }

    /// Creates a user network `name` on a /24 no network of the host uses; its subnet.
    async fn network(&self, name: &str) -> Result<String> {
        for _ in 0..20 {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
            let byte = (nanos ^ std::process::id()).to_le_bytes();
            let subnet = format!("10.{}.{}.0/24", 200 + byte[0] % 50, byte[1]);
            let out = self.berth(&["network", "create", "--subnet", &subnet, name]).await?;
            if out.status.success() {
                return Ok(subnet);
            }
            ensure!(
                String::from_utf8_lossy(&out.stderr).contains("overlaps"),
                "{}",
                describe_failure("berth", &["network", "create"], &out)
            );
        }
        bail!("no free subnet found for network {name}")
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let containers = Containers::at(self.path());
        for record in containers.list().unwrap_or_default() {
            if let Err(e) = containers.remove(&record.id, true) {
                eprintln!("cleaning up container {}: {e}", record.id);
            }
        }
        let networks = Networks::at(self.path());
        for def in networks.list().unwrap_or_default() {
            if def.name != runtime::network::DEFAULT_NETWORK {
                if let Err(e) = networks.remove(&def.name, &containers) {
                    eprintln!("cleaning up network {}: {e}", def.name);
                }
            }
        }
        let _ = runtime::network::dns::stop(&self.path().join("networks/dns"));
    }
}

/// Pushes a one-layer image of `rootfs` whose config exposes port 80, as `e2e/web:v1`.
async fn push_with_exposed_port(registry: &Registry, rootfs: &Path) -> Result<String> {
    let work = tempfile::tempdir()?;
    let options = shared::layer::LayerOptions { uid: Some(0), gid: Some(0), ..Default::default() };
    let layer_file = work.path().join("layer.tar.gz");
    let layer = shared::layer::write_layer_to_file(rootfs, &options, &layer_file)?;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
            "ExposedPorts": {"80/tcp": {}},
        },
        "rootfs": { "type": "layers", "diff_ids": [layer.diff_id] },
    }))?;
    let reference = format!("{}/e2e/web:v1", registry.host());
    let target: ImageRef = reference.parse()?;
    let client = Client::anonymous()?;
    let config_digest = client.push_blob_bytes(&target, config.clone().into()).await?;
    let file = tokio::fs::File::open(&layer_file).await?;
    client.push_blob(&target, &layer.digest, layer.size, file, None).await?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": shared::media_type::OCI_MANIFEST,
        "config": { "mediaType": shared::media_type::OCI_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": [layer.descriptor()],
    }))?;
    client.push_manifest(&target, &target.reference(), shared::media_type::OCI_MANIFEST, manifest.into()).await?;
    Ok(reference)
}

/// The body of `GET /` from `addr`, retried until the server answers or [`PATIENCE`] ends.
fn http_get(addr: &str) -> Result<String> {
    let start = Instant::now();
    loop {
        let attempt = || -> std::io::Result<String> {
            let mut stream = TcpStream::connect(addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        };
        match attempt() {
            Ok(text) if text.contains("200 OK") => return Ok(text),
            other if start.elapsed() > PATIENCE => bail!("GET http://{addr}/ never answered: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A host port free now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What a container leaves of its network on the host, looked up before it goes.
struct Traces {
    id: String,
    address: String,
    veth: String,
    netns: PathBuf,
    attachment: PathBuf,
    ipam: PathBuf,
}

impl Traces {
    fn of(root: &Root, id: &str) -> Result<Traces> {
        let a = Networks::at(root.path()).attachment(id)?.with_context(|| format!("{id} is not attached"))?;
        let veth = a.result["interfaces"]
            .as_array()
            .and_then(|i| i.iter().find(|i| i["name"].as_str().is_some_and(|n| n.starts_with("veth"))))
            .and_then(|i| i["name"].as_str())
            .context("no veth in the CNI result")?
            .to_string();
        let ipam_dir = a.config["ipam"]["dataDir"].as_str().context("no dataDir")?;
        let ipam = Path::new(ipam_dir).join(a.config["name"].as_str().context("no name")?).join(a.address.to_string());
        ensure!(ipam.is_file(), "no lease file {}", ipam.display());
        Ok(Traces {
            id: id.to_string(),
            address: a.address.to_string(),
            veth,
            netns: a.netns,
            attachment: root.path().join("networks/attachments").join(format!("{id}.json")),
            ipam,
        })
    }

    /// Fails if anything is left.
    async fn assert_gone(&self) -> Result<()> {
        ensure!(!self.netns.exists(), "netns file {} left", self.netns.display());
        ensure!(!self.attachment.exists(), "attachment {} left", self.attachment.display());
        ensure!(!self.ipam.exists(), "address lease {} left", self.ipam.display());
        // The veth pair goes with the namespace, which the kernel dismantles in the
        // background once it is unmounted: given a while.
        let deadline = Instant::now() + PATIENCE;
        loop {
            let links = run("ip", &["-o", "link"]).await?;
            let links = String::from_utf8_lossy(&links.stdout);
            if !links.contains(&format!("{}@", self.veth)) {
                break;
            }
            ensure!(Instant::now() < deadline, "interface {} left:\n{links}", self.veth);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rules = run("iptables-save", &[]).await?;
        let rules = String::from_utf8_lossy(&rules.stdout);
        for line in rules.lines() {
            ensure!(!line.contains(&self.id), "iptables rule naming the container left: {line}");
            ensure!(!line.contains(&format!("{}/32", self.address)), "iptables rule for its address left: {line}");
            ensure!(!line.contains(&format!("{}:", self.address)), "iptables DNAT to its address left: {line}");
        }
        Ok(())
    }
}

/// `-p 127.0.0.1:PORT:80` and `-P` answer from the host; `inspect` shows the ports and the
/// address; `rm` leaves nothing.
async fn check_publish(root: &Root, runtime: Option<&str>) -> Result<()> {
    let port = free_port()?;
    let publish = format!("127.0.0.1:{port}:80");
    let serve = ["busybox", "httpd", "-f", "-p", "80", "-h", "/www"];
    let id = root.run(runtime, &["-d", "--name", "web", "-p", &publish], &serve).await?.trim().to_string();
    let body = http_get(&format!("127.0.0.1:{port}"))?;
    ensure!(body.contains("hello from berth"), "{body}");
    let shown = root.inspect("web").await?;
    let settings = &shown["NetworkSettings"];
    ensure!(settings["Ports"]["80/tcp"][0]["HostPort"].as_str() == Some(port.to_string().as_str()), "{settings}");
    let address = settings["IPAddress"].as_str().context("no IPAddress")?.to_string();
    ensure!(settings["Networks"]["bridge"]["IPAddress"] == address.as_str(), "{settings}");
    // The container's own address answers too.
    ensure!(http_get(&format!("{address}:80"))?.contains("hello from berth"));
    let traces = Traces::of(root, &id)?;

    // -P: the image's port 80 on a free port of every host address (the bridge's gateway is one).
    root.run(runtime, &["-d", "--name", "all", "-P"], &serve).await?;
    let shown = root.inspect("all").await?;
    let host_port = shown["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
        .as_str()
        .context("-P published nothing")?
        .to_string();
    let gateway = shown["NetworkSettings"]["Gateway"].as_str().context("no gateway")?.to_string();
    ensure!(http_get(&format!("127.0.0.1:{host_port}"))?.contains("hello from berth"));
    ensure!(http_get(&format!("{gateway}:{host_port}"))?.contains("hello from berth"));

    root.berth_ok(&["rm", "-f", "web", "all"]).await?;
    traces.assert_gone().await?;
    ensure!(TcpStream::connect(format!("127.0.0.1:{port}")).is_err(), "port {port} still answers after rm");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_ports_answer_from_the_host() -> Result<()> {
    if !permitted("published_ports_answer_from_the_host") {
        return Ok(());
    }
    check_publish(&Root::new().await?, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_ports_answer_from_the_host_with_runc() -> Result<()> {
    if !permitted("published_ports_answer_from_the_host_with_runc") {
        return Ok(());
    }
    check_publish(&Root::new().await?, Some(RUNC)).await
}

/// On a user network: a container finds one started later by name and by alias, and a
/// third reaches the first by name; `network rm` is refused while containers are attached.
async fn check_names(root: &Root, runtime: Option<&str>) -> Result<()> {
    let network = format!("names{}", std::process::id());
    let subnet = root.network(&network).await?;
    let shown: Value = serde_json::from_str(&root.berth_ok(&["network", "inspect", &network]).await?)?;
    let bridge = shown[0]["Options"]["com.docker.network.bridge.name"].as_str().context("no bridge")?.to_string();
    let net = ["--network", network.as_str()];
    // The first waits until it resolves `later` (its alias), then serves what it found.
    let wait = "until nslookup later >/dev/null 2>&1; do sleep 0.1; done; \
                nslookup -type=a later > /www/index.html; exec busybox httpd -f -p 80 -h /www";
    let first = root.run(runtime, &[&net[..], &["-d", "--name", "first"]].concat(), &["sh", "-c", wait]).await?;
    // The network's rules are in place with its first container, and name no container: a
    // second one starts without adding any.
    let rules = network_rules(&bridge, &subnet).await?;
    ensure!(
        rules.iter().any(|r| r.contains("MASQUERADE")) && rules.iter().any(|r| r.contains("FORWARD")),
        "{rules:#?}"
    );
    let late_flags = [&net[..], &["-d", "--name", "second", "--network-alias", "later"]].concat();
    root.run(runtime, &late_flags, &["sleep", "600"]).await?;
    let now = network_rules(&bridge, &subnet).await?;
    ensure!(now == rules, "starting a container changed its network's rules: {rules:#?} -> {now:#?}");
    let second = root.inspect("second").await?;
    let second_ip = second["NetworkSettings"]["IPAddress"].as_str().context("no address")?.to_string();
    ensure!(second["NetworkSettings"]["Networks"][&network]["Aliases"][0] == "later", "{second}");

    // A third asks `first` by name, over HTTP, until it serves (it resolved `later`).
    let fetch = "for i in $(seq 1 200); do \
                 out=$(echo -e 'GET / HTTP/1.0\\r\\n\\r\\n' | nc first 80 2>/dev/null) && \
                 case \"$out\" in *200*) echo \"$out\"; exit 0;; esac; sleep 0.1; done; exit 1";
    let out = root.run(runtime, &[&net[..], &["--rm"]].concat(), &["sh", "-c", fetch]).await?;
    ensure!(out.contains(&second_ip), "first did not resolve `later` to {second_ip}: {out}");
    let resolv = root.run(runtime, &[&net[..], &["--rm"]].concat(), &["cat", "/etc/resolv.conf"]).await?;
    let shown: Value = serde_json::from_str(&root.berth_ok(&["network", "inspect", &network]).await?)?;
    let gateway = shown[0]["IPAM"]["Config"][0]["Gateway"].as_str().context("no gateway")?;
    ensure!(resolv.contains(&format!("nameserver {gateway}")), "{resolv}");
    ensure!(shown[0]["Containers"].as_object().is_some_and(|c| c.len() == 2), "{shown}");

    let refused = root.berth(&["network", "rm", &network]).await?;
    ensure!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("active endpoints"));
    let traces = Traces::of(root, first.trim())?;
    root.berth_ok(&["rm", "-f", "first", "second"]).await?;
    traces.assert_gone().await?;
    root.berth_ok(&["network", "rm", &network]).await?;
    let links = run("ip", &["link", "show", &bridge]).await?;
    ensure!(!links.status.success(), "bridge {bridge} left after network rm");
    let left = network_rules(&bridge, &subnet).await?;
    ensure!(left.is_empty(), "rules of the removed network left: {left:#?}");
    Ok(())
}

/// The netfilter rules that name `bridge` or an address of `subnet` (a /24), as
/// `iptables-save` prints them; other tests' networks have other bridges and subnets.
async fn network_rules(bridge: &str, subnet: &str) -> Result<Vec<String>> {
    let prefix = subnet.rsplit_once('.').map(|(p, _)| format!("{p}.")).context("not a /24")?;
    let out = run("iptables-save", &[]).await?;
    ensure!(out.status.success(), "{}", describe_failure("iptables-save", &[], &out));
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A") && (l.contains(bridge) || l.contains(&prefix)))
        .map(String::from)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_find_each_other_by_name_and_alias() -> Result<()> {
    if !permitted("containers_find_each_other_by_name_and_alias") {
        return Ok(());
    }
    check_names(&Root::new().await?, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_find_each_other_by_name_and_alias_with_runc() -> Result<()> {
    if !permitted("containers_find_each_other_by_name_and_alias_with_runc") {
        return Ok(());
    }
    check_names(&Root::new().await?, Some(RUNC)).await
}

/// `--network none` shows only `lo`; the default bridge reaches a server on the host side of
/// the bridge (its gateway address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_has_only_loopback_and_the_bridge_reaches_the_host() -> Result<()> {
    if !permitted("none_has_only_loopback_and_the_bridge_reaches_the_host") {
        return Ok(());
    }
    let root = Root::new().await?;
    for runtime in [None, Some(RUNC)] {
        let out = root.run(runtime, &["--rm", "--network", "none"], &["ls", "/sys/class/net"]).await?;
        ensure!(out.split_whitespace().collect::<Vec<_>>() == ["lo"], "{runtime:?}: --network none shows {out:?}");

        let listener = TcpListener::bind("0.0.0.0:0")?;
        let port = listener.local_addr()?.port().to_string();
        let gateway = runtime::network::DEFAULT_SUBNET.first_host().to_string();
        let accept = std::thread::spawn(move || -> Result<String> {
            let (mut stream, _) = listener.accept()?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        });
        let script = format!("echo from-the-container | nc {gateway} {port}");
        root.run(runtime, &["--rm"], &["sh", "-c", &script]).await?;
        let got = accept.join().map_err(|_| anyhow::anyhow!("the listener panicked"))??;
        ensure!(got.trim() == "from-the-container", "{runtime:?}: the host got {got:?}");
    }
    Ok(())
}

/// A container whose supervisor was killed is detached by the next `berth network` command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_supervisor_leaks_nothing() -> Result<()> {
    if !permitted("a_dead_supervisor_leaks_nothing") {
        return Ok(());
    }
    let root = Root::new().await?;
    let id = root.run(None, &["-d"], &["sleep", "600"]).await?.trim().to_string();
    let traces = Traces::of(&root, &id)?;
    let record = Containers::at(root.path()).load(&id)?;
    for pid in [record.shim_pid, record.pid].into_iter().flatten() {
        run("kill", &["-KILL", &pid.to_string()]).await?;
    }
    let start = Instant::now();
    while record.shim_pid.is_some_and(runtime::container::process_alive) {
        ensure!(start.elapsed() < PATIENCE, "the supervisor did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    root.berth_ok(&["network", "ls"]).await?;
    traces.assert_gone().await
}

/// RUN steps of `berth build` run on the default bridge network (an interface of their own,
/// the host's loopback out of reach, outbound traffic through NAT to the host's addresses);
/// `RUN --network=host` needs `--allow network.host` (issue 12, item 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_steps_use_the_bridge_and_host_needs_the_entitlement() -> Result<()> {
    if !permitted("run_steps_use_the_bridge_and_host_needs_the_entitlement") {
        return Ok(());
    }
    let base = e2e::build::BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let root = work.path().join("root");
    // A service on the host's loopback, and one on every address (reached via the gateway).
    let loopback = TcpListener::bind("127.0.0.1:0")?;
    let everywhere = TcpListener::bind("0.0.0.0:0")?;
    let (lo_port, any_port) = (loopback.local_addr()?.port(), everywhere.local_addr()?.port());
    // Each accepts and closes at once, so that a probe that reached it ends.
    for listener in [loopback.try_clone()?, everywhere.try_clone()?] {
        std::thread::spawn(move || listener.incoming().for_each(drop));
    }
    let gateway = runtime::network::DEFAULT_SUBNET.first_host();
    let probe = |what: &str, target: String| {
        format!("RUN if echo x | busybox nc -w 3 {target}; then echo reached; else echo refused; fi > /{what}\n")
    };
    let mut dockerfile = format!("FROM {}\n", base.base);
    dockerfile.push_str("RUN busybox ls /sys/class/net | busybox sort | busybox tr '\\n' ' ' > /interfaces\n");
    dockerfile.push_str(&probe("loopback", format!("127.0.0.1 {lo_port}")));
    dockerfile.push_str(&probe("gateway", format!("{gateway} {any_port}")));
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx)?;
    std::fs::write(ctx.join("Dockerfile"), &dockerfile)?;
    let out = work.path().join("out");
    let dest = format!("type=oci,dest={}", out.display());
    let ctx_arg = ctx.to_str().context("utf-8")?;
    e2e::berth(&root, &["build", "--progress", "plain", "--output", &dest, ctx_arg]).await?;
    let image = e2e::build::read_layout(&out, "latest")?;
    let flat = work.path().join("flat");
    e2e::build::flatten(&image, &flat)?;
    let read = |p: &str| std::fs::read_to_string(flat.join(p)).unwrap_or_else(|e| format!("<{e}>"));
    ensure!(read("interfaces").trim() == "eth0 lo", "RUN's interfaces: {}", read("interfaces"));
    ensure!(read("loopback").trim() == "refused", "RUN reached the host's loopback: {}", read("loopback"));
    ensure!(read("gateway").trim() == "reached", "RUN did not reach the host by its gateway: {}", read("gateway"));
    ensure!(Networks::at(&root).attachments()?.is_empty(), "a RUN step's attachment was left");

    // RUN --network=host: refused without the entitlement, host's loopback with it.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}\n{}",
            base.base,
            probe("host", format!("127.0.0.1 {lo_port}")).replacen("RUN ", "RUN --network=host ", 1)
        ),
    )?;
    let args = ["--root", root.to_str().context("utf-8")?, "build", "--progress", "plain", "--output", &dest, ctx_arg];
    let refused = run(e2e::berth_binary()?.to_str().context("utf-8")?, &args).await?;
    let err = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && err.contains("--allow network.host"),
        "RUN --network=host without --allow: {err}"
    );
    e2e::berth(&root, &["build", "--progress", "plain", "--allow", "network.host", "--output", &dest, ctx_arg]).await?;
    let image = e2e::build::read_layout(&out, "latest")?;
    let flat = work.path().join("flat-host");
    e2e::build::flatten(&image, &flat)?;
    let host = std::fs::read_to_string(flat.join("host"))?;
    ensure!(host.trim() == "reached", "RUN --network=host did not reach the host's loopback: {host}");
    drop((loopback, everywhere));
    Ok(())
}
