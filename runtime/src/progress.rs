//! Pull progress: the events a pull reports, and a renderer for terminals and logs.
//!
//! The image store reports [`PullEvent`]s to a [`Progress`]; `berth pull` renders them with
//! [`TerminalProgress`]: on a terminal, one line per layer redrawn in place (as
//! `docker pull` does); otherwise, one plain line each time a layer's state changes.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use shared::Digest;

/// Something that happened during a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The reference is being resolved to a manifest.
    Resolving {
        /// The image, as the user named it.
        image: String,
    },
    /// The manifest is known; these layers (digest and size) follow.
    Resolved {
        /// The image manifest's digest.
        digest: Digest,
        /// The layers, bottom first.
        layers: Vec<(Digest, u64)>,
    },
    /// The layer blob was already in the store.
    Exists {
        /// The layer blob.
        digest: Digest,
    },
    /// Bytes of the layer blob have arrived.
    Downloading {
        /// The layer blob.
        digest: Digest,
        /// Bytes so far.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// The layer blob is in the store, verified.
    Downloaded {
        /// The layer blob.
        digest: Digest,
    },
    /// The layer is being unpacked.
    Extracting {
        /// The layer blob.
        digest: Digest,
    },
    /// The layer is unpacked (now or before).
    Done {
        /// The layer blob.
        digest: Digest,
    },
    /// The image is in the store.
    Finished {
        /// The image, canonical.
        image: String,
        /// The image manifest's digest.
        digest: Digest,
    },
}

/// Receives pull events, from any thread.
pub trait Progress: Send + Sync {
    /// Called for each event.
    fn event(&self, event: &PullEvent);
}

/// Ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: &PullEvent) {}
}

/// Renders events as text, redrawing layer lines in place on a terminal.
#[derive(Debug)]
pub struct TerminalProgress<W: Write + Send> {
    state: Mutex<Render<W>>,
}

#[derive(Debug)]
struct Render<W> {
    out: W,
    tty: bool,
    order: Vec<Digest>,
    status: HashMap<Digest, String>,
    drawn: usize,
    last_draw: Option<Instant>,
    downloaded: bool,
}

/// The short form of a digest shown per layer: the first 12 hex digits.
pub fn short(digest: &Digest) -> &str {
    &digest.hex()[..12]
}

/// Bytes in the units `docker` uses for layers and images: `532B`, `4.26MB` (three
/// significant digits, powers of 1000).
pub fn human_size(bytes: u64) -> String {
    human_size_digits(bytes, 3)
}

/// Bytes in powers of 1000 with `digits` significant digits, trailing zeros dropped, as Go's
/// `units.HumanSizeWithPrecision` that Docker uses (`docker builder prune` prints four:
/// `12.35MB`).
pub fn human_size_digits(bytes: u64, digits: usize) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    let whole_digits = if value >= 100.0 {
        3
    } else if value >= 10.0 {
        2
    } else {
        1
    };
    let decimals = digits.saturating_sub(whole_digits);
    let text = format!("{value:.decimals$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text}{}", UNITS[unit])
}

impl<W: Write + Send> TerminalProgress<W> {
    /// Writes to `out`; with `tty`, redraws lines in place with ANSI escapes.
    pub fn new(out: W, tty: bool) -> TerminalProgress<W> {
        TerminalProgress {
            state: Mutex::new(Render {
                out,
                tty,
                order: Vec::new(),
                status: HashMap::new(),
                drawn: 0,
                last_draw: None,
                downloaded: false,
            }),
        }
    }

    /// The writer back (for tests).
    pub fn into_inner(self) -> W {
        self.state.into_inner().unwrap_or_else(PoisonError::into_inner).out
    }
}

impl<W: Write> Render<W> {
    fn set(&mut self, digest: &Digest, status: String) -> bool {
        let changed = self.status.get(digest) != Some(&status);
        if changed {
            self.status.insert(digest.clone(), status);
        }
        changed
    }

    fn draw(&mut self) {
        let mut text = String::new();
        if self.drawn > 0 {
            text.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for d in &self.order {
            text.push_str(&format!("\x1b[2K{}: {}\n", short(d), self.status.get(d).map_or("", String::as_str)));
        }
        self.drawn = self.order.len();
        self.last_draw = Some(Instant::now());
        // Progress is best effort: a closed terminal must not fail the pull.
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    fn line(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }

    fn layer(&mut self, digest: &Digest, status: String, is_progress: bool) {
        if !self.set(digest, status.clone()) {
            return;
        }
        if self.tty {
            let due = self.last_draw.is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
            if !is_progress || due {
                self.draw();
            }
        } else if !is_progress {
            let line = format!("{}: {status}", short(digest));
            self.line(&line);
        }
    }
}

impl<W: Write + Send> Progress for TerminalProgress<W> {
    fn event(&self, event: &PullEvent) {
        let mut r = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            PullEvent::Resolving { image } => r.line(&format!("Pulling {image}")),
            PullEvent::Resolved { layers, .. } => {
                r.order = layers.iter().map(|(d, _)| d.clone()).collect();
                r.order.dedup();
                for (d, _) in layers {
                    r.status.insert(d.clone(), "Waiting".into());
                }
                if r.tty {
                    r.draw();
                }
            }
            PullEvent::Exists { digest } => r.layer(digest, "Already exists".into(), false),
            PullEvent::Downloading { digest, done, total } => {
                let progress = r.tty;
                let status = if progress {
                    format!("Downloading {}/{}", human_size(*done), human_size(*total))
                } else {
                    "Downloading".into()
                };
                r.layer(digest, status, progress);
            }
            PullEvent::Downloaded { digest } => {
                r.downloaded = true;
                r.layer(digest, "Download complete".into(), false);
            }
            PullEvent::Extracting { digest } => r.layer(digest, "Extracting".into(), false),
            PullEvent::Done { digest } => {
                let status = if r.status.get(digest).is_some_and(|s| s == "Already exists") {
                    "Already exists".to_string()
                } else {
                    "Pull complete".to_string()
                };
                r.layer(digest, status, false);
            }
            PullEvent::Finished { image, digest } => {
                if r.tty {
                    r.draw();
                }
                r.line(&format!("Digest: {digest}"));
                let status = if r.downloaded { "Downloaded newer image for" } else { "Image is up to date for" };
                r.line(&format!("Status: {status} {image}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn run(tty: bool) -> String {
        let p = TerminalProgress::new(Vec::new(), tty);
        p.event(&PullEvent::Resolving { image: "busybox".into() });
        p.event(&PullEvent::Resolved { digest: d(0), layers: vec![(d(1), 2000), (d(2), 10)] });
        p.event(&PullEvent::Exists { digest: d(2) });
        p.event(&PullEvent::Downloading { digest: d(1), done: 1000, total: 2000 });
        p.event(&PullEvent::Downloading { digest: d(1), done: 2000, total: 2000 });
        p.event(&PullEvent::Downloaded { digest: d(1) });
        p.event(&PullEvent::Extracting { digest: d(1) });
        p.event(&PullEvent::Done { digest: d(1) });
        p.event(&PullEvent::Done { digest: d(2) });
        p.event(&PullEvent::Finished { image: "docker.io/library/busybox:latest".into(), digest: d(0) });
        String::from_utf8(p.into_inner()).unwrap()
    }

    #[test]
    fn plain_lines_without_a_terminal() {
        let out = run(false);
        let s1 = short(&d(1)).to_string();
        let s2 = short(&d(2)).to_string();
        let want = format!(
            "Pulling busybox\n{s2}: Already exists\n{s1}: Downloading\n{s1}: Download complete\n{s1}: Extracting\n\
             {s1}: Pull complete\nDigest: {}\nStatus: Downloaded newer image for docker.io/library/busybox:latest\n",
            d(0)
        );
        assert_eq!(out, want);
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn redraws_in_place_on_a_terminal() {
        let out = run(true);
        assert!(out.contains("\x1b[2A"), "{out:?}");
        assert!(out.contains(&format!("{}: Pull complete", short(&d(1)))));
        assert!(out.contains(&format!("{}: Already exists", short(&d(2)))));
    }

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(532), "532B");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(1_000), "1kB");
    }
}
