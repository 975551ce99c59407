//! `berth login [-u USER] [--password-stdin] REGISTRY` and `berth logout REGISTRY`: check
//! credentials against a registry and keep them in Docker's configuration file
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, or its credential helper), where
//! `berth pull` and Docker both find them. The file handling is `shared::client::DockerConfig`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use shared::client::docker_config::config_dir;
use shared::client::{Client, ClientConfig, Credentials, DockerConfig, StaticCredentials};
use shared::ImageRef;

/// Flags of `berth login`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The user name (asked for on the terminal when not given).
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Read the password from standard input (its first line).
    #[arg(long)]
    pub password_stdin: bool,
    /// Allow plain HTTP for the registry (HTTPS is tried first); registries on localhost,
    /// 127.0.0.0/8 and [::1] are always allowed it.
    #[arg(long)]
    pub plain_http: bool,
    /// The registry: HOST[:PORT], such as ghcr.io or 127.0.0.1:5000 (default docker.io).
    #[arg(default_value = "docker.io")]
    pub registry: String,
}

/// Flags of `berth logout`.
#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// The registry: HOST[:PORT] (default docker.io).
    #[arg(default_value = "docker.io")]
    pub registry: String,
}

/// The registry as written in references, from what a user may type: `https://host:5000/`,
/// `host:5000`, `index.docker.io`.
pub fn registry_name(input: &str) -> Result<String> {
    let trimmed = input.trim();
    let host = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://")).unwrap_or(trimmed);
    let host = host.split('/').next().unwrap_or(host);
    let image = ImageRef::new(host, "berth/login".parse()?, None, None)
        .with_context(|| format!("{input:?} is not a registry (HOST[:PORT])"))?;
    Ok(image.registry().to_string())
}

/// Docker's configuration, where the environment says it is.
pub fn docker_config() -> Result<DockerConfig> {
    let dir =
        config_dir(std::env::var_os("DOCKER_CONFIG").map(PathBuf::from), std::env::var_os("HOME").map(PathBuf::from))
            .context("cannot find Docker's configuration folder: set DOCKER_CONFIG or HOME")?;
    Ok(DockerConfig::in_dir(&dir))
}

/// Reads a line from the terminal, without echo for a password.
fn prompt(label: &str, secret: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("no terminal to ask for the {label} on: pass -u USER and --password-stdin");
    }
    eprint!("{label}: ");
    std::io::stderr().flush().ok();
    let saved = if secret {
        let attrs = rustix::termios::tcgetattr(&stdin).context("cannot read the terminal's settings")?;
        let mut quiet = attrs.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)
            .context("cannot turn off the terminal's echo")?;
        Some(attrs)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(attrs) = saved {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &attrs);
        eprintln!();
    }
    read.context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Runs `berth login`.
pub fn run(args: Args) -> Result<()> {
    let registry = registry_name(&args.registry)?;
    let username = match args.username {
        Some(u) => u,
        None => prompt("Username", false)?,
    };
    if username.is_empty() {
        bail!("a user name is needed");
    }
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        prompt("Password", true)?
    };
    if password.is_empty() {
        bail!("a password is needed");
    }
    let credentials = Credentials { username, password };
    let config = ClientConfig { plain_http: args.plain_http, ..ClientConfig::default() };
    let provider = Arc::new(StaticCredentials::single(&registry, credentials.clone()));
    let client = Client::new(config, provider).context("cannot set up the registry client")?;
    let tokio =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    tokio.block_on(client.check_login(&registry)).with_context(|| format!("cannot log in to {registry}"))?;
    let file = docker_config()?;
    file.store(&registry, &credentials)
        .with_context(|| format!("cannot save the credentials in {}", file.path().display()))?;
    println!("Login Succeeded");
    Ok(())
}

/// Runs `berth logout`.
pub fn logout(args: LogoutArgs) -> Result<()> {
    let registry = registry_name(&args.registry)?;
    let file = docker_config()?;
    if file.erase(&registry).with_context(|| format!("cannot update {}", file.path().display()))? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_normalised() {
        assert_eq!(registry_name("https://127.0.0.1:5000/").unwrap(), "127.0.0.1:5000");
        assert_eq!(registry_name("index.docker.io").unwrap(), "docker.io");
        assert_eq!(registry_name("ghcr.io").unwrap(), "ghcr.io");
        assert!(registry_name("not a host").is_err());
    }
}
