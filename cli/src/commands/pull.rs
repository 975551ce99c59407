//! `berth pull [--plain-http] [--platform OS/ARCH[/VARIANT]] IMAGE`: pulls an image into the
//! local store through `runtime::Store::pull`, showing progress per layer.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use runtime::{PullError, PullOptions, TerminalProgress};
use shared::client::{is_loopback, Client, ClientError};
use shared::manifest::Platform;
use shared::ImageRef;

/// Flags of `berth pull`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Allow plain HTTP for the registry (HTTPS is tried first); registries on
    /// localhost, 127.0.0.0/8 and [::1] are always allowed it.
    #[arg(long)]
    pub plain_http: bool,
    /// The platform to pull from a multi-platform image [default: the host's].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// Print only the image's reference when done, no progress.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// The image: [HOST[:PORT]/]NAME[:TAG][@DIGEST], such as busybox or ghcr.io/org/app:v1.
    pub image: String,
}

/// Runs `berth pull` against the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let image: ImageRef = args.image.parse()?;
    let store = super::open_store(root)?;
    super::init_logging();
    let config = super::client_config(args.plain_http)?;
    let credentials = Arc::new(super::login::docker_config()?);
    let client = Client::new(config, credentials).context("cannot set up the registry client")?;
    let options = PullOptions { platform: args.platform.unwrap_or_else(Platform::host), ..PullOptions::default() };
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let record = if args.quiet {
        tokio.block_on(store.pull(&client, &image, &options, &runtime::NoProgress))
    } else {
        let stdout = std::io::stdout();
        let tty = stdout.is_terminal();
        let progress = TerminalProgress::new(stdout, tty);
        tokio.block_on(store.pull(&client, &image, &options, &progress))
    }
    .map_err(|e| explain(e, &image, args.plain_http))
    .with_context(|| format!("cannot pull {}", image.familiar()))?;
    if args.quiet {
        println!("{}", record.reference);
    }
    Ok(())
}

/// Adds what to do to the errors a user can act on.
fn explain(e: PullError, image: &ImageRef, plain_http: bool) -> anyhow::Error {
    let hint = match &e {
        PullError::Client(ClientError::Transport { source, .. }) if source.is_connect() && !plain_http && !is_loopback(image.api_host()) => Some(format!(
            "cannot connect to {}: check the name and the network; if the registry serves plain HTTP, pass --plain-http",
            image.api_host()
        )),
        PullError::Client(ClientError::Transport { source, .. }) if source.is_connect() => {
            Some(format!("cannot connect to {}; check the address and that the registry is running", image.api_host()))
        }
        PullError::Client(ClientError::NotFound { .. }) => {
            Some("check the image name and tag (for Docker Hub, `busybox` means docker.io/library/busybox)".into())
        }
        PullError::Client(ClientError::Unauthorized { .. } | ClientError::Token { .. }) => Some(
            format!("the image may be private (log in with `berth login {}`) or its name may be wrong", image.registry()),
        ),
        PullError::Client(ClientError::NoPlatform { .. }) => Some("choose one of the available platforms with --platform".into()),
        _ => None,
    };
    match hint {
        Some(hint) => anyhow!(e).context(hint),
        None => anyhow!(e),
    }
}
