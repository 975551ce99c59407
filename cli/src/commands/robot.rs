//! `berth robot create NAME [--expires 30d]`, `berth robot list`, `berth robot revoke NAME`:
//! robot accounts for CI, kept in the registry's storage (see `registry::auth::accounts`), so
//! the command opens the storage the registry configuration names (`--config`, `BERTH_*`
//! variables, `--root`), as `berth serve` would. Running servers see a new or revoked robot
//! within `auth.robot_cache_secs`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use registry::auth::accounts::{self, now_secs};
use shared::date::rfc3339;

/// Flags of `berth robot`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The registry's TOML configuration file (also `BERTH_CONFIG`).
    #[arg(long, short = 'c', env = "BERTH_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Folder of the registry's filesystem storage [default: ./berth-data].
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: RobotCommand,
}

/// What to do.
#[derive(clap::Subcommand, Debug)]
pub enum RobotCommand {
    /// Create a robot and print its secret (shown only this once).
    Create {
        /// Its name: 1 to 64 of a-z, 0-9, '.', '_', '-'. It logs in as robot$NAME.
        name: String,
        /// Stop working after this long: numbers with s, m, h, d or w (30d, 12h, 1d12h).
        #[arg(long, value_parser = shared::duration::parse_duration_days)]
        expires: Option<Duration>,
    },
    /// List the robots.
    List,
    /// Revoke a robot: its secret stops working.
    Revoke {
        /// Its name (without robot$).
        name: String,
    },
}

/// Runs `berth robot`.
pub fn run(args: Args) -> Result<()> {
    let serve_args = super::serve::Args { config: args.config, root: args.root, ..super::serve::Args::default() };
    let config = super::serve::load(&serve_args, std::env::vars())?;
    let tokio =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    tokio.block_on(async move {
        let storage = registry::open_storage(&config).await.context("cannot open the registry's storage")?;
        match args.command {
            RobotCommand::Create { name, expires } => {
                let (robot, secret) = accounts::create_robot(storage.as_ref(), &name, expires).await?;
                match robot.expires {
                    Some(at) => eprintln!("Robot {} created; it expires at {}.", robot.login(), rfc3339(at)),
                    None => eprintln!("Robot {} created; it does not expire.", robot.login()),
                }
                eprintln!("Its secret is shown only now: keep it in your CI's secret store.");
                println!("username: {}", robot.login());
                println!("password: {secret}");
            }
            RobotCommand::List => {
                let robots = accounts::list_robots(storage.as_ref()).await?;
                println!("{:<24} {:<30} {:<21} EXPIRES", "NAME", "LOGIN", "CREATED");
                let now = now_secs();
                for r in robots {
                    let expires = match r.expires {
                        Some(at) if at <= now => format!("{} (expired)", rfc3339(at)),
                        Some(at) => rfc3339(at),
                        None => "never".into(),
                    };
                    println!("{:<24} {:<30} {:<21} {expires}", r.name, r.login(), rfc3339(r.created));
                }
            }
            RobotCommand::Revoke { name } => {
                let name = name.strip_prefix(accounts::ROBOT_PREFIX).unwrap_or(&name).to_string();
                accounts::revoke_robot(storage.as_ref(), &name).await?;
                let within = config.auth.as_ref().map_or(10, |a| a.robot_cache_secs);
                println!("Robot robot${name} revoked; running registries refuse it within {within} seconds.");
            }
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use shared::duration::parse_duration_days as parse_duration;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(parse_duration("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_duration("45s").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999999999w").is_err());
        assert!(parse_duration("9999999999999999w").is_err());
    }
}
