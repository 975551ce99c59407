//! `berth compose [-f FILE]... [-p NAME] [--env-file FILE]... [--profile NAME]... COMMAND`:
//! the project options as Docker Compose has them, handed to `compose::load`; `config`
//! prints the normalized model; `up`, `down`, `ps`, `logs`, `start`, `stop`, `restart`,
//! `rm`, `build` and `pull` run it through `compose::up` over
//! [`super::compose_engine::BerthEngine`]; `exec`, `run`, `push` and the foreground part of
//! `up` are in [`super::compose_verbs`].

use std::path::{Path, PathBuf};

use std::io::Write;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use compose::up::Engine;
use runtime::container::Containers;

use super::compose_engine::BerthEngine;

/// Flags of `berth compose`, before its subcommand.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Compose file (several merge in order) [default: compose.yaml, compose.yml,
    /// docker-compose.yaml or docker-compose.yml here or in a parent folder].
    #[arg(long = "file", short = 'f', value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name [default: COMPOSE_PROJECT_NAME, the file's name:, or the folder's name].
    #[arg(long = "project-name", short = 'p', value_name = "NAME")]
    pub project_name: Option<String>,
    /// Project folder, against which relative paths resolve [default: the first file's folder].
    #[arg(long, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Env file for interpolation instead of the project folder's .env.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Enable the services of a profile (COMPOSE_PROFILES when none is given).
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `berth compose`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print the project's model, merged, interpolated, validated and normalized.
    Config(ConfigArgs),
    /// Create and start the services' containers, dependencies first.
    Up(UpArgs),
    /// Stop and remove the project's containers and networks.
    Down(DownArgs),
    /// List the project's containers.
    Ps,
    /// Print the output of the project's containers, each line prefixed by its container.
    Logs(LogsArgs),
    /// Stop the project's running containers.
    Stop,
    /// Start the project's stopped containers again.
    Start,
    /// Stop the project's containers and start them again.
    Restart,
    /// Run a command in a service's running container.
    Exec(super::compose_verbs::ExecArgs),
    /// Run a one-off container of a service (its dependencies started first).
    Run(super::compose_verbs::RunArgs),
    /// Push the images of the services that have `build` and an `image` name.
    Push(ServicesArgs),
    /// Remove the project's stopped containers.
    Rm,
    /// Build the images of the services that have `build`.
    Build(ServicesArgs),
    /// Pull the images of the services that lack them.
    Pull(ServicesArgs),
}

/// Flags of `berth compose up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Run the containers in the background [default: follow their output until they end,
    /// or until Ctrl-C, which stops them].
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Wait until the services run, and are healthy where they have a health check
    /// (implies --detach).
    #[arg(long)]
    pub wait: bool,
    /// Build the images first, even those that exist.
    #[arg(long)]
    pub build: bool,
    /// Only these services (and those they depend on).
    pub services: Vec<String>,
}

/// Flags of `berth compose down`.
#[derive(clap::Args, Debug)]
pub struct DownArgs {
    /// Remove the project's named volumes too (not the external ones).
    #[arg(long, short = 'v')]
    pub volumes: bool,
    /// Remove images too: `local`, the ones built for services without an `image:` name;
    /// `all`, every service's image.
    #[arg(long, value_name = "local|all", value_parser = ["local", "all"])]
    pub rmi: Option<String>,
}

/// The services a command applies to.
#[derive(clap::Args, Debug)]
pub struct ServicesArgs {
    /// Only these services [default: all].
    pub services: Vec<String>,
}

/// Flags of `berth compose logs`.
#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Follow the output until the containers stop.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only these services [default: all].
    pub services: Vec<String>,
}

/// Flags of `berth compose config`.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// Output format.
    #[arg(long, default_value = "yaml", value_parser = ["yaml", "json"])]
    pub format: String,
    /// Only check the files; print nothing.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the services' names, one a line.
    #[arg(long)]
    pub services: bool,
}

/// Runs `berth compose`; the exit status is the command's (`exec`, `run`) or berth's.
pub fn main(root: &Path, args: Args) -> ExitCode {
    match run(root, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(root: &Path, args: Args) -> Result<ExitCode> {
    let working_dir = std::env::current_dir().context("cannot read the current folder")?;
    let options = compose::Options {
        files: args.files,
        working_dir,
        project_directory: args.project_directory,
        project_name: args.project_name,
        env_files: args.env_files,
        profiles: args.profiles,
        environment: std::env::vars().collect(),
    };
    let project = compose::load(&options)?;
    let engine = BerthEngine { root: root.to_path_buf() };
    let say = &mut |line: String| eprintln!(" {line}");
    let members = || compose::plan::members(&project);
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match args.command {
        Command::Config(c) => done(config(&project, &c)),
        Command::Up(up) => done(self::up(root, &engine, &project, &up)),
        Command::Down(down) => {
            let networks = compose::plan::project_networks(&project);
            let volumes = if down.volumes { compose::plan::project_volumes(&project) } else { Vec::new() };
            compose::up::down(&engine, &project.name, &members()?, &networks, &volumes, say)?;
            if let Some(rmi) = down.rmi.as_deref() {
                let which = if rmi == "all" { compose::up::Rmi::All } else { compose::up::Rmi::Local };
                compose::up::remove_images(&engine, &compose::plan::plan(&project, &[])?, which, say)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop => done(Ok(compose::up::stop(&engine, &project.name, &members()?, say)?)),
        Command::Start => done(Ok(compose::up::start(&engine, &project.name, &members()?, say)?)),
        Command::Restart => done(Ok(compose::up::restart(&engine, &project.name, &members()?, say)?)),
        Command::Rm => done(Ok(compose::up::rm(&engine, &project.name, &members()?, say)?)),
        Command::Ps => done(ps(root, &engine, &project.name, &members()?)),
        Command::Logs(a) => {
            let members: Vec<_> =
                members()?.into_iter().filter(|m| a.services.is_empty() || a.services.contains(&m.service)).collect();
            if a.follow {
                done(super::compose_verbs::follow(root, &engine, &project.name, &members, false))
            } else {
                done(logs(root, &engine, &project.name, &members))
            }
        }
        Command::Build(a) => done(images(&engine, &project, &a.services, true)),
        Command::Pull(a) => done(images(&engine, &project, &a.services, false)),
        Command::Push(a) => done(super::compose_verbs::push(root, &project, &a.services)),
        Command::Exec(a) => super::compose_verbs::exec(root, &project.name, &members()?, a),
        Command::Run(a) => super::compose_verbs::run(root, &engine, &project, a),
    }
}

/// `up`: starts the services; with `--wait`, waits until they are ready; without `-d`,
/// follows their output.
fn up(root: &Path, engine: &BerthEngine, project: &compose::Project, up: &UpArgs) -> Result<()> {
    let plan = plan_to_run(root, project, &up.services)?;
    for w in &plan.warnings {
        eprintln!("WARN {w}");
    }
    let say = &mut |line: String| eprintln!(" {line}");
    // In the foreground, Ctrl-C during pulls and start-up stops what was started so far.
    let foreground = !up.detach && !up.wait;
    if foreground {
        super::compose_verbs::catch_sigint()?;
    }
    match compose::up::up(engine, &plan, up.build, say) {
        Err(_) if foreground && super::compose_verbs::interrupted() => {}
        started => started?,
    }
    if up.wait {
        return Ok(compose::up::wait_ready(engine, &plan, say)?);
    }
    if up.detach {
        return Ok(());
    }
    let members = compose::plan::members(project)?;
    let members: Vec<_> =
        members.into_iter().filter(|m| plan.services.iter().any(|s| s.service == m.service)).collect();
    super::compose_verbs::attach(root, engine, &project.name, &members)
}

/// Plans `services` (all when empty) to run them: the secrets and configs that have no file
/// on the host (`environment:`, `content:`) are written under the store's
/// `compose/<project>/files/`, to be mounted.
pub(super) fn plan_to_run(root: &Path, project: &compose::Project, services: &[String]) -> Result<compose::plan::Plan> {
    let mut plan = compose::plan::plan(project, services)?;
    let dir = root.join("compose").join(&project.name).join("files");
    compose::plan::write_inline_files(&mut plan, &dir)
        .with_context(|| format!("cannot write the secrets and configs of the project in {}", dir.display()))?;
    Ok(plan)
}

/// Builds (`build`) the images of the services that have `build`, or pulls the missing
/// images of the others.
fn images(engine: &BerthEngine, project: &compose::Project, services: &[String], build: bool) -> Result<()> {
    let plan = compose::plan::plan(project, services)?;
    for service in plan.services.iter().filter(|s| s.build.is_some() == build) {
        engine.ensure_image(service, build).map_err(|e| anyhow!("service {}: {e}", service.service))?;
    }
    Ok(())
}

/// The project's containers, as `docker compose ps` lists them.
fn ps(root: &Path, engine: &BerthEngine, project: &str, members: &[compose::plan::Member]) -> Result<()> {
    let existing = engine.list()?;
    let records = Containers::at(root).list().context("cannot read the containers")?;
    let now = runtime::container::now() as i64;
    println!("{:<30} {:<30} {:<16} STATUS", "NAME", "IMAGE", "SERVICE");
    for (c, _) in compose::up::project_containers(project, members, &existing) {
        let Some(r) = records.iter().find(|r| r.name == c.name) else { continue };
        let service = members.iter().find(|m| {
            c.name.starts_with(&format!("{project}-{}-", m.service)) || m.container_name.as_deref() == Some(&c.name)
        });
        let service = service.map(|m| m.service.as_str()).unwrap_or("");
        println!("{:<30} {:<30} {:<16} {}", r.name, r.image, service, super::ps::status(r, now));
    }
    Ok(())
}

/// Each container's log, its lines prefixed by the container's name.
fn logs(root: &Path, engine: &BerthEngine, project: &str, members: &[compose::plan::Member]) -> Result<()> {
    let existing = engine.list()?;
    let containers = Containers::at(root);
    let mine = compose::up::project_containers(project, members, &existing);
    let prefixes = super::compose_verbs::Prefixes::for_stdout(mine.iter().map(|(c, _)| c.name.clone()).collect());
    let mut out = std::io::stdout().lock();
    for (c, _) in mine {
        let record = containers.find(&c.name)?;
        let path = runtime::container::shim::log_path(&containers, &record);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        for line in String::from_utf8_lossy(&text).lines() {
            writeln!(out, "{}{line}", prefixes.of(&c.name)).context("cannot write the log")?;
        }
    }
    Ok(())
}

fn config(project: &compose::Project, args: &ConfigArgs) -> Result<()> {
    if args.quiet {
        return Ok(());
    }
    if args.services {
        for name in project.model["services"].as_object().into_iter().flat_map(|s| s.keys()) {
            println!("{name}");
        }
        return Ok(());
    }
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&project.model)?);
    } else {
        print!("{}", project.to_yaml());
    }
    Ok(())
}
