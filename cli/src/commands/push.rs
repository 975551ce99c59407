//! `berth push [--plain-http] IMAGE`: pushes an image of the local store to the registry its
//! name says, through `runtime::Store::push`, printing one line per blob as `docker push`
//! does (and the bytes sent so far, on a terminal).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use runtime::progress::{human_size, short};
use runtime::{PushError, PushEvent, StoreError};
use shared::client::{Client, ClientConfig, ClientError};

/// Flags of `berth push`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Allow plain HTTP for the registry (HTTPS is tried first); registries on
    /// localhost, 127.0.0.0/8 and [::1] are always allowed it.
    #[arg(long)]
    pub plain_http: bool,
    /// Print only the manifest digest when done, no progress.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// The image, by the name to push it as: [HOST[:PORT]/]NAME[:TAG] (`berth tag` gives an
    /// image of the store such a name).
    pub image: String,
}

/// One line per event; on a terminal, the bytes sent are redrawn in place.
fn render(event: &PushEvent, tty: bool) -> String {
    let line = match event {
        PushEvent::Exists { digest } => format!("{}: Layer already exists", short(digest)),
        PushEvent::Mounted { digest, from } => format!("{}: Mounted from {from}", short(digest)),
        PushEvent::Pushing { digest, done, total } if tty => {
            return format!("\r\x1b[K{}: Pushing {}/{}", short(digest), human_size(*done), human_size(*total));
        }
        PushEvent::Pushing { .. } => return String::new(),
        PushEvent::Pushed { digest } => format!("{}: Pushed", short(digest)),
        PushEvent::Finished { tag, digest, size } => format!("{tag}: digest: {digest} size: {size}"),
    };
    if tty {
        format!("\r\x1b[K{line}\n")
    } else {
        format!("{line}\n")
    }
}

/// Runs `berth push` from the store at `root`.
pub fn run(root: &Path, args: Args) -> Result<()> {
    let store = super::open_store(root)?;
    super::init_logging();
    let config = ClientConfig { plain_http: args.plain_http, ..ClientConfig::default() };
    let credentials = Arc::new(super::login::docker_config()?);
    let client = Client::new(config, credentials).context("cannot set up the registry client")?;
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let tty = std::io::stdout().is_terminal();
    let quiet = args.quiet;
    let progress = move |event: &PushEvent| {
        if !quiet {
            let mut out = std::io::stdout().lock();
            // Progress is best effort: a closed stdout must not fail the push.
            let _ = out.write_all(render(event, tty).as_bytes()).and_then(|()| out.flush());
        }
    };
    let digest = tokio
        .block_on(store.push(&client, &args.image, &progress))
        .map_err(|e| explain(e, &args))
        .with_context(|| format!("cannot push {}", args.image))?;
    if args.quiet {
        println!("{digest}");
    }
    Ok(())
}

/// Adds what to do to the errors a user can act on.
fn explain(e: PushError, args: &Args) -> anyhow::Error {
    let hint = match &e {
        PushError::Store(StoreError::NotFound(name)) => {
            Some(format!("no such image: {name}; give a stored image that name first with `berth tag IMAGE {name}`"))
        }
        PushError::Client(ClientError::Transport { source, .. }) if source.is_connect() && !args.plain_http => {
            Some("cannot connect to the registry: check the name and the network; if it serves plain HTTP, pass --plain-http".into())
        }
        PushError::Client(ClientError::Unauthorized { registry, .. } | ClientError::Token { registry, .. }) => {
            Some(format!("the registry refused the push: log in with `berth login {registry}`, or check your access to the repository"))
        }
        _ => None,
    };
    match hint {
        Some(hint) => anyhow!(e).context(hint),
        None => anyhow!(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_images_say_how_to_name_one() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args { plain_http: false, quiet: true, image: "127.0.0.1:1/app:v1".into() };
        let err = run(dir.path(), args).unwrap_err();
        assert!(format!("{err:#}").contains("berth tag IMAGE 127.0.0.1:1/app:v1"), "{err:#}");
    }

    #[test]
    fn events_render_as_docker_push_prints_them() {
        let digest = shared::Digest::sha256_of(b"x");
        let from: shared::RepoName = "team/base".parse().unwrap();
        let mounted = render(&PushEvent::Mounted { digest: digest.clone(), from }, false);
        assert_eq!(mounted, format!("{}: Mounted from team/base\n", &digest.hex()[..12]));
        assert_eq!(render(&PushEvent::Pushing { digest: digest.clone(), done: 1, total: 2 }, false), "");
        let done = render(&PushEvent::Finished { tag: "v1".into(), digest: digest.clone(), size: 527 }, false);
        assert_eq!(done, format!("v1: digest: {digest} size: 527\n"));
    }
}
