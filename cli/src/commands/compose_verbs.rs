//! The verbs of `berth compose` that take over the terminal or one container: the
//! foreground `up` (the containers' output, prefixed by container, until they end or Ctrl-C
//! stops them), `exec` (a command in a service's running container), `run` (a one-off
//! container of a service, in the foreground) and `push` (the services' built images).
//! Called by [`super::compose`]; the container work is `berth exec`'s, `berth run`'s
//! supervisor's and `berth push`'s.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use compose::plan::Member;
use compose::up::Engine;
use runtime::container::{shim, Containers};

use super::compose_engine::BerthEngine;

/// Set by the SIGINT handler of a foreground `up`.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on, SIGINT (Ctrl-C) only marks this process [`interrupted`]: a foreground `up`
/// then starts nothing more and stops what it started.
pub fn catch_sigint() -> Result<()> {
    let handler = nix::sys::signal::SigHandler::Handler(on_sigint);
    // SAFETY: the handler only stores to an atomic.
    unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, handler) }.context("cannot handle SIGINT")?;
    Ok(())
}

/// Whether SIGINT came since [`catch_sigint`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The prefixes of log lines, as Docker Compose prints them: each container's name padded
/// to the longest one's, then `  | `; on a terminal, each container in a colour of its own.
pub struct Prefixes {
    width: usize,
    colour: bool,
    names: Vec<String>,
}

/// Docker Compose's colours, in its order: cyan, yellow, green, magenta, blue, then the
/// same intense.
const COLOURS: [&str; 10] = ["36", "33", "32", "35", "34", "36;1", "33;1", "32;1", "35;1", "34;1"];

impl Prefixes {
    /// Prefixes for `names` (their order picks the colours); `colour`: with colours.
    pub fn new(names: Vec<String>, colour: bool) -> Prefixes {
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        Prefixes { width, colour, names }
    }

    /// Prefixes in colour when standard output is a terminal.
    pub fn for_stdout(names: Vec<String>) -> Prefixes {
        Prefixes::new(names, std::io::IsTerminal::is_terminal(&std::io::stdout()))
    }

    /// The prefix of a line of container `name`.
    pub fn of(&self, name: &str) -> String {
        let padded = format!("{name:<width$}  | ", width = self.width);
        match self.names.iter().position(|n| n == name).filter(|_| self.colour) {
            Some(i) => format!("\x1b[{}m{padded}\x1b[0m", COLOURS[i % COLOURS.len()]),
            None => padded,
        }
    }
}

/// One container's log, read from where the last read ended; a line is printed once whole.
struct Tail {
    file: File,
    partial: Vec<u8>,
}

impl Tail {
    /// Prints the whole lines written since the last call; `flush`: the rest too.
    fn print(&mut self, prefix: &str, out: &mut impl Write, flush: bool) -> Result<()> {
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf).context("cannot read a container's log")?;
        self.partial.extend_from_slice(&buf);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            write!(out, "{prefix}{}", String::from_utf8_lossy(&line)).context("cannot write the log")?;
        }
        if flush && !self.partial.is_empty() {
            writeln!(out, "{prefix}{}", String::from_utf8_lossy(&self.partial)).context("cannot write the log")?;
            self.partial.clear();
        }
        out.flush().context("cannot write the log")
    }
}

/// The foreground part of `up`: follows the project's containers' output until none runs,
/// or until SIGINT, which stops them (as `docker compose up` does on Ctrl-C).
pub fn attach(root: &Path, engine: &BerthEngine, project: &str, members: &[Member]) -> Result<()> {
    catch_sigint()?;
    eprintln!("Attaching to {}", project);
    follow(root, engine, project, members, true)
}

/// Prints the output of the containers of `members` as it comes (the earlier output
/// first), until none runs; or until SIGINT, when `stop_on_sigint` stops them first (else
/// SIGINT ends berth, as it does `docker compose logs -f`).
pub fn follow(
    root: &Path,
    engine: &BerthEngine,
    project: &str,
    members: &[Member],
    stop_on_sigint: bool,
) -> Result<()> {
    let containers = Containers::at(root);
    let mut tails: BTreeMap<String, Tail> = BTreeMap::new();
    let mut out = std::io::stdout().lock();
    let mut prefixes = Prefixes::for_stdout(Vec::new());
    loop {
        if stop_on_sigint && INTERRUPTED.load(Ordering::SeqCst) {
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            // A second Ctrl-C ends berth at once, as the default disposition does.
            // SAFETY: restoring the default disposition.
            unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, nix::sys::signal::SigHandler::SigDfl) }
                .context("cannot handle SIGINT")?;
            compose::up::stop(engine, project, members, &mut |line| eprintln!(" {line}"))?;
            for (name, tail) in tails.iter_mut() {
                tail.print(&prefixes.of(name), &mut out, true)?;
            }
            return Ok(());
        }
        let existing = engine.list()?;
        let mine = compose::up::project_containers(project, members, &existing);
        let names: Vec<String> = mine.iter().map(|(c, _)| c.name.clone()).collect();
        if names.iter().any(|n| !prefixes.names.contains(n)) {
            prefixes = Prefixes::for_stdout(names);
        }
        for (c, _) in &mine {
            if tails.contains_key(&c.name) {
                continue;
            }
            let record = containers.find(&c.name)?;
            let path = shim::log_path(&containers, &record);
            if let Ok(file) = File::open(&path) {
                tails.insert(c.name.clone(), Tail { file, partial: Vec::new() });
            }
        }
        let running = mine.iter().any(|(c, _)| c.running);
        for (name, tail) in tails.iter_mut() {
            tail.print(&prefixes.of(name), &mut out, !running)?;
        }
        if !running {
            if stop_on_sigint {
                for (c, _) in &mine {
                    eprintln!("{} exited with code {}", c.name, c.exit_code.unwrap_or(-1));
                }
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Flags of `berth compose exec`.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Run the command in the background.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(long = "env", short = 'e', value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// User: name or uid, optionally with :group or :gid.
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<String>,
    /// Give the command no terminal (the default gives it one when this is a terminal).
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Which of the service's containers.
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    /// The service.
    pub service: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The name of container `index` of `service`.
fn container_name(project: &str, members: &[Member], service: &str, index: u32) -> Result<String> {
    let member = members.iter().find(|m| m.service == service).ok_or_else(|| anyhow!("no such service: {service}"))?;
    Ok(match &member.container_name {
        Some(name) => name.clone(),
        None => format!("{project}-{service}-{index}"),
    })
}

/// `berth compose exec`: `berth exec` in the service's container.
pub fn exec(root: &Path, project: &str, members: &[Member], args: ExecArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let container = container_name(project, members, &args.service, args.index)?;
    let tty = !args.no_tty && !args.detach && std::io::stdin().is_terminal();
    let exec = super::exec::Args {
        interactive: !args.detach,
        tty,
        detach: args.detach,
        env: args.env,
        user: args.user,
        workdir: args.workdir,
        container,
        command: args.command,
    };
    Ok(super::exec::main(root, exec))
}

/// Flags of `berth compose run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Set an environment variable (KEY=VALUE).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The container's name [default: <project>-<service>-run-<random>].
    #[arg(long)]
    pub name: Option<String>,
    /// Start none of the services it depends on.
    #[arg(long)]
    pub no_deps: bool,
    /// Give the container no terminal.
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Run as this user (`name`, `uid`, with `:group` or `:gid`).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// The working directory in the container.
    #[arg(long, short = 'w')]
    pub workdir: Option<String>,
    /// Publish the service's ports (not published by default).
    #[arg(long)]
    pub service_ports: bool,
    /// Replace the service's entrypoint (words split as a shell would).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// The service.
    pub service: String,
    /// The command [default: the service's].
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `berth compose run`: starts the service's dependencies (as `up` does), then one more
/// container of the service, in the foreground, without its published ports; this process
/// becomes the container's supervisor, so the exit status is the container's.
pub fn run(root: &Path, engine: &BerthEngine, project: &compose::Project, args: RunArgs) -> Result<ExitCode> {
    let plan = super::compose::plan_to_run(root, project, std::slice::from_ref(&args.service))?;
    let Some(service) = plan.services.iter().find(|s| s.service == args.service).cloned() else {
        bail!("no such service: {}", args.service);
    };
    let say = &mut |line: String| eprintln!(" {line}");
    engine.ensure_image(&service, false).map_err(|e| anyhow!("service {}: {e}", service.service))?;
    let mut deps = plan.clone();
    deps.services.retain(|s| s.service != args.service);
    if !args.no_deps {
        // The networks and volumes the service needs are made here too.
        let mut needs = plan.clone();
        needs.services = deps.services;
        compose::up::up(engine, &needs, false, say)?;
    }
    let mut options = service.options.clone();
    let suffix = uuid_like();
    let name = args.name.unwrap_or_else(|| format!("{}-{}-run-{suffix}", plan.project, service.service));
    options.name = Some(name.clone());
    if !args.service_ports {
        options.publish.clear();
    }
    if let Some(user) = args.user {
        options.user = Some(user);
    }
    if let Some(workdir) = args.workdir {
        options.workdir = Some(workdir);
    }
    options.detach = false;
    options.remove = args.rm;
    options.tty = !args.no_tty && std::io::IsTerminal::is_terminal(&std::io::stdin());
    options.interactive = true;
    options.env.extend(args.env);
    options.labels.insert("com.docker.compose.oneoff".into(), "True".into());
    let model = &project.model["services"][&service.service];
    options.command = run_command(model, args.entrypoint.as_deref(), args.command)?;
    if let Some(words) = &args.entrypoint {
        // An empty --entrypoint clears the image's, as `docker compose run --entrypoint ''`.
        let words = compose::normalize::split_words(words).map_err(|e| anyhow!("--entrypoint {words:?}: {e}"))?;
        options.entrypoint = Some(words.into_iter().next().unwrap_or_default());
    }
    if options.init.is_some() {
        options.init = Some(super::run::find_init(std::env::var("PATH").ok().as_deref())?);
    }
    let store = super::open_store(root)?;
    let record = store
        .find(&service.image)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("image {} is not in the store", service.image))?;
    let created = Containers::at(root)
        .create(&service.image, &record.reference, &record.manifest, &options, None)
        .context("cannot create the container")?;
    drop(store);
    let err = std::process::Command::new("/proc/self/exe")
        .arg("--root")
        .arg(root)
        .arg("container-shim")
        .arg(&created.id)
        .exec();
    Err(anyhow!(err).context("cannot run the container supervisor"))
}

/// The command of a `compose run` container, for the runtime's one-program entrypoint: the
/// entrypoint's words after its program (`--entrypoint`'s, else the service's), then the
/// command given (else the service's `command`).
fn run_command(service: &serde_json::Value, entrypoint: Option<&str>, command: Vec<String>) -> Result<Vec<String>> {
    let words = |v: Option<&serde_json::Value>| -> Vec<String> {
        v.and_then(|e| e.as_array()).into_iter().flatten().filter_map(|w| w.as_str()).map(String::from).collect()
    };
    let entrypoint = match entrypoint {
        Some(e) => compose::normalize::split_words(e).map_err(|why| anyhow!("--entrypoint {e:?}: {why}"))?,
        None => words(service.get("entrypoint")),
    };
    let mut out: Vec<String> = entrypoint.into_iter().skip(1).collect();
    if command.is_empty() {
        out.extend(words(service.get("command")));
    } else {
        out.extend(command);
    }
    Ok(out)
}

/// Twelve hexadecimal digits that differ from run to run (the one-off container's suffix).
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mixed = nanos ^ (u128::from(std::process::id()) << 48);
    format!("{:012x}", mixed & 0xffff_ffff_ffff)
}

/// `berth compose push`: pushes the image of each service (of `services`, or all) that has
/// `build` and an `image` name.
pub fn push(root: &Path, project: &compose::Project, services: &[String]) -> Result<()> {
    let plan = compose::plan::plan(project, services)?;
    for service in plan.services.iter().filter(|s| s.build.is_some()) {
        if !(services.is_empty() || services.contains(&service.service)) {
            continue;
        }
        let named = project.model["services"][&service.service].get("image").is_some();
        if !named {
            eprintln!(" Skipped service {}: it has no image name to push to", service.service);
            continue;
        }
        eprintln!(" Pushing {}", service.image);
        let args = super::push::Args { plain_http: false, quiet: true, image: service.image.clone() };
        super::push::run(root, args)
            .with_context(|| format!("cannot push the image of service {}", service.service))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Prefixes;

    #[test]
    fn prefixes_are_padded_to_the_longest_name_and_coloured_on_a_terminal() {
        let names = vec!["app-web-1".to_string(), "app-db-1".to_string()];
        let plain = Prefixes::new(names.clone(), false);
        assert_eq!(plain.of("app-web-1"), "app-web-1  | ");
        assert_eq!(plain.of("app-db-1"), "app-db-1   | ");
        let coloured = Prefixes::new(names, true);
        assert_eq!(coloured.of("app-web-1"), "\x1b[36mapp-web-1  | \x1b[0m");
        assert_eq!(coloured.of("app-db-1"), "\x1b[33mapp-db-1   | \x1b[0m");
    }
}
