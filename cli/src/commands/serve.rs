//! `berth serve`: loads the registry configuration (defaults, then the TOML file, then
//! `BERTH_*` environment variables, then flags) and runs the server until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// Flags of `berth serve`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// TOML configuration file (see the README's configuration reference).
    #[arg(long, short = 'c', env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// Folder for the filesystem storage [default: ./berth-data].
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Log level or filter (error, warn, info, debug, trace) [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// The top-level configuration keys; `BERTH_*` variables not naming one of them are ignored
/// (they belong to other commands, such as `BERTH_ROOT` for the local image store).
const SECTIONS: &[&str] = &["addr", "log_level", "storage", "limits", "uploads", "gc", "auth", "tls"];

/// Fills the credentials of each `[[mirror]]` from `BERTH_MIRROR_<HOST>_USERNAME`,
/// `_PASSWORD` and `_IDENTITY_TOKEN` (host `docker.io` is `DOCKER_IO`), over the file's.
fn mirror_credentials(config: &mut registry::Config, vars: &[(String, String)]) {
    for mirror in &mut config.mirror {
        let prefix = format!("BERTH_MIRROR_{}_", mirror.env_key());
        for (key, value) in vars {
            match key.strip_prefix(&prefix) {
                Some("USERNAME") => mirror.username = Some(value.clone()),
                Some("PASSWORD") => {
                    mirror.password = Some(value.clone());
                    mirror.password_file = None;
                }
                Some("IDENTITY_TOKEN") => mirror.identity_token = Some(value.clone()),
                _ => {}
            }
        }
    }
}

/// Sets `path` (already split) in a TOML table, creating tables on the way.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<()> {
    let (last, parents) = path.split_last().context("empty setting name")?;
    let mut t = table;
    for p in parents {
        let entry = t.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("setting {p} is not a section"),
        };
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// A variable's text as a TOML value: numbers and booleans as such, anything else a string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Builds the configuration from the file, the given environment, then the flags.
pub fn load(args: &Args, env: impl IntoIterator<Item = (String, String)>) -> Result<registry::Config> {
    let mut table = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str::<toml::Table>(&text)
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?
        }
        None => toml::Table::new(),
    };
    let mut vars: Vec<(String, String)> = env.into_iter().collect();
    vars.sort();
    for (key, value) in &vars {
        let Some(rest) = key.strip_prefix("BERTH_") else { continue };
        let path: Vec<String> = rest.to_ascii_lowercase().split("__").map(str::to_string).collect();
        if !SECTIONS.contains(&path[0].as_str()) {
            continue;
        }
        set_path(&mut table, &path, env_value(value)).with_context(|| format!("environment variable {key}"))?;
    }
    let mut config: registry::Config = toml::Value::Table(table)
        .try_into()
        .context("invalid configuration (check the setting names against the README's configuration reference)")?;
    mirror_credentials(&mut config, &vars);
    if let Some(addr) = args.addr {
        config.addr = addr;
    }
    if let Some(root) = &args.root {
        config.storage.filesystem.root = root.clone();
    }
    if let Some(level) = &args.log_level {
        config.log_level = level.clone();
    }
    config.validate()?;
    Ok(config)
}

/// Runs `berth serve`.
pub fn run(args: Args) -> Result<()> {
    let config = load(&args, std::env::vars())?;
    if args.print_config {
        print!("{}", toml::to_string(&config).context("cannot print the configuration")?);
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid log level {:?}", config.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async move {
        match &config.storage.s3 {
            Some(s3) => tracing::info!(bucket = %s3.bucket, prefix = %s3.prefix, "S3 storage"),
            None => tracing::info!(root = %config.storage.filesystem.root.display(), "filesystem storage"),
        }
        registry::serve(config, shutdown_signal()).await.context("registry server")
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_with_nothing_given() {
        let c = load(&Args::default(), vars(&[])).unwrap();
        assert_eq!(c, registry::Config::default());
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            "addr = \"127.0.0.1:6000\"\nlog_level = \"warn\"\n[storage.filesystem]\nroot = \"/from/file\"\n[limits]\nmax_manifest_bytes = 2048\n",
        )
        .unwrap();
        let args = Args { config: Some(file.clone()), ..Args::default() };
        let env = vars(&[
            ("BERTH_ADDR", "127.0.0.1:7000"),
            ("BERTH_STORAGE__FILESYSTEM__FSYNC", "false"),
            ("BERTH_LIMITS__MAX_MANIFEST_BYTES", "4096"),
            ("BERTH_ROOT", "/var/lib/berth-is-for-the-runtime"),
            ("PATH", "/bin"),
        ]);
        let c = load(&args, env.clone()).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:7000");
        assert_eq!(c.log_level, "warn");
        assert_eq!(c.storage.filesystem.root, PathBuf::from("/from/file"));
        assert!(!c.storage.filesystem.fsync);
        assert_eq!(c.limits.max_manifest_bytes, 4096);

        let args = Args {
            config: Some(file),
            addr: Some("127.0.0.1:8000".parse().unwrap()),
            root: Some("/from/flag".into()),
            log_level: Some("debug".into()),
            print_config: false,
        };
        let c = load(&args, env).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8000");
        assert_eq!(c.storage.filesystem.root, PathBuf::from("/from/flag"));
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn auth_and_tls_come_from_the_environment_too() {
        let env = vars(&[
            ("BERTH_AUTH__HTPASSWD", "/etc/berth/htpasswd"),
            ("BERTH_AUTH__TOKEN_TTL_SECS", "120"),
            ("BERTH_TLS__CERTIFICATE", "/etc/berth/tls.crt"),
            ("BERTH_TLS__KEY", "/etc/berth/tls.key"),
        ]);
        let c = load(&Args::default(), env).unwrap();
        let auth = c.auth.unwrap();
        assert_eq!(auth.htpasswd, Some(PathBuf::from("/etc/berth/htpasswd")));
        assert_eq!(auth.token_ttl_secs, 120);
        assert_eq!(c.tls.unwrap().key, PathBuf::from("/etc/berth/tls.key"));
    }

    #[test]
    fn mirror_credentials_come_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            "[[mirror]]\nurl = \"https://registry-1.docker.io\"\nhost = \"docker.io\"\n\
             [[mirror]]\nurl = \"https://ghcr.io\"\nhost = \"ghcr.io\"\npassword_file = \"/nope\"\nusername = \"f\"\n",
        )
        .unwrap();
        let args = Args { config: Some(file), ..Args::default() };
        let env = vars(&[
            ("BERTH_MIRROR_DOCKER_IO_USERNAME", "alice"),
            ("BERTH_MIRROR_DOCKER_IO_PASSWORD", "hush"),
            ("BERTH_MIRROR_GHCR_IO_PASSWORD", "other"),
        ]);
        let c = load(&args, env).unwrap();
        assert_eq!((c.mirror[0].username.as_deref(), c.mirror[0].password.as_deref()), (Some("alice"), Some("hush")));
        assert_eq!((c.mirror[1].password.as_deref(), c.mirror[1].password_file.as_ref()), (Some("other"), None));
        assert!(!format!("{c:?}").contains("hush"));
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let err = load(&Args::default(), vars(&[("BERTH_LIMITS__MAX_MANIFST_BYTES", "1")])).unwrap_err();
        assert!(format!("{err:#}").contains("max_manifst_bytes"), "{err:#}");
        let err = load(&Args::default(), vars(&[("BERTH_ADDR", "nowhere")])).unwrap_err();
        assert!(format!("{err:#}").contains("invalid configuration"), "{err:#}");
        let err = load(&Args::default(), vars(&[("BERTH_LIMITS__MAX_MANIFEST_BYTES", "10")])).unwrap_err();
        assert!(format!("{err:#}").contains("max_manifest_bytes"), "{err:#}");
    }
}
