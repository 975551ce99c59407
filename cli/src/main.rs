//! The `berth` binary: parses the command line and hands each subcommand to its module in
//! [`commands`], which calls the library crates. Nothing here knows OCI.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod commands;

/// Build, serve and run OCI container images.
#[derive(Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
struct Cli {
    /// Folder of the local image store and containers [default: /var/lib/berth].
    #[arg(long, env = "BERTH_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry server (OCI distribution API).
    Serve(commands::serve::Args),
    /// Free the registry storage nothing needs (one garbage collection).
    Gc(commands::gc::Args),
    /// Build an image from a Dockerfile.
    Build(Box<commands::build::Args>),
    /// Pull an image from a registry into the local store.
    Pull(commands::pull::Args),
    /// Push an image of the local store to a registry.
    Push(commands::push::Args),
    /// Log in to a registry (credentials kept in Docker's config.json).
    Login(commands::login::Args),
    /// Log out of a registry.
    Logout(commands::login::LogoutArgs),
    /// Manage the registry's robot accounts (for CI).
    Robot(commands::robot::Args),
    /// List the images in the local store.
    Images(commands::images::Args),
    /// Remove images from the local store, and the content no other image uses.
    Rmi(commands::rmi::Args),
    /// Show images or containers as JSON (shaped like `docker inspect`).
    Inspect(commands::inspect::Args),
    /// Give an image of the local store another name.
    Tag(commands::tag::Args),
    /// Write images of the local store to a tar archive (docker-archive and OCI layout).
    Save(commands::save::SaveArgs),
    /// Load images from a tar archive (docker save, berth save, OCI layout) into the store.
    Load(commands::save::LoadArgs),
    /// Define and run applications of several containers from compose files.
    Compose(commands::compose::Args),
    /// Run a command in a new container.
    Run(Box<commands::run::Args>),
    /// List containers.
    Ps(commands::ps::Args),
    /// Print a detached container's output.
    Logs(commands::logs::Args),
    /// Stop running containers.
    Stop(commands::stop::Args),
    /// Start stopped containers again (in the background).
    Start(commands::start::StartArgs),
    /// Stop and start containers.
    Restart(commands::start::RestartArgs),
    /// Send a signal to containers (default: KILL).
    Kill(commands::kill::Args),
    /// Run a command in a running container.
    Exec(commands::exec::Args),
    /// Remove containers.
    Rm(commands::rm::Args),
    /// Manage volumes.
    Volume(commands::volume::Args),
    /// Manage container networks.
    Network(commands::network::Args),
    /// Supervise one container (started by `berth run`).
    #[command(hide = true)]
    ContainerShim(commands::run::ShimFlags),
    /// Run an OCI bundle with the embedded runtime, as `runc run` would (for RUN steps).
    #[command(hide = true)]
    OciRuntime(commands::oci_runtime::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let root = cli.root.unwrap_or_else(|| PathBuf::from(runtime::DEFAULT_ROOT));
    if matches!(
        cli.command,
        Command::Run(_)
            | Command::Compose(_)
            | Command::ContainerShim(_)
            | Command::OciRuntime(_)
            | Command::Start(_)
            | Command::Restart(_)
    ) {
        // These start containers: never from the host's binary itself (CVE-2019-5736).
        // (`exec` decides for itself: only the embedded runtime runs this binary in a container.)
        if let Err(e) = commands::reexec_sealed() {
            eprintln!("berth: {e:#}");
            return std::process::ExitCode::from(runtime::container::shim::EXIT_START_FAILED as u8);
        }
    }
    let result = match cli.command {
        // Nothing before these arms starts a thread or a tokio runtime: both drive the
        // embedded runtime, which forks and so needs a single-threaded process.
        Command::ContainerShim(flags) => return commands::run::shim_main(&root, flags),
        Command::OciRuntime(args) => return commands::oci_runtime::main(args),
        Command::Exec(args) => return commands::exec::main(&root, args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Gc(args) => commands::gc::run(args),
        Command::Build(args) => return commands::build::main(&root, *args),
        Command::Pull(args) => commands::pull::run(&root, args),
        Command::Push(args) => commands::push::run(&root, args),
        Command::Login(args) => commands::login::run(args),
        Command::Logout(args) => commands::login::logout(args),
        Command::Robot(args) => commands::robot::run(args),
        Command::Images(args) => commands::images::run(&root, args),
        Command::Rmi(args) => commands::rmi::run(&root, args),
        Command::Tag(args) => commands::tag::run(&root, args),
        Command::Inspect(args) => commands::inspect::run(&root, args),
        Command::Save(args) => commands::save::save(&root, args),
        Command::Load(args) => commands::save::load(&root, args),
        Command::Compose(args) => return commands::compose::main(&root, args),
        Command::Run(args) => return commands::run::run(&root, *args),
        Command::Ps(args) => commands::ps::run(&root, args),
        Command::Logs(args) => commands::logs::run(&root, args),
        Command::Stop(args) => commands::stop::run(&root, args),
        Command::Start(args) => commands::start::start(&root, args),
        Command::Restart(args) => commands::start::restart(&root, args),
        Command::Kill(args) => commands::kill::run(&root, args),
        Command::Rm(args) => commands::rm::run(&root, args),
        Command::Volume(args) => commands::volume::run(&root, args),
        Command::Network(args) => commands::network::run(&root, args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
