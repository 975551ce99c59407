//! `berth compose [-f FILE]... [-p NAME] [--env-file FILE]... [--profile NAME]... COMMAND`:
//! the project options as Docker Compose has them, handed to `compose::load`; `config`
//! prints the normalized model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

/// Runs `berth compose`.
pub fn run(_root: &Path, args: Args) -> Result<()> {
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
    match args.command {
        Command::Config(c) => config(&project, &c),
    }
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
