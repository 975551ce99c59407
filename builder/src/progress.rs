//! Build progress as people read it.
//!
//! `plain` prints BuildKit's plain-progress shape: a line when a step starts
//! (`#3 [build 2/4] COPY src /app`), its output lines prefixed with the step number, and a
//! closing line with `CACHED` or `DONE 0.4s` and the size of the layer it made. `tty` shows
//! the same closing lines, and while a step runs, a spinner line with the step and how long
//! it has taken (redrawn in place by a ticker thread). `quiet` prints nothing.
//!
//! The executor ([`crate::build`]) calls [`Progress`] from several stages at once; a mutex
//! keeps lines whole.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Line by line (`--progress plain`, and `auto` when not on a terminal).
    Plain,
    /// A spinner on a terminal (`--progress auto` on a terminal, `tty`).
    Tty,
    /// Nothing (`--progress quiet`).
    Quiet,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served from the cache.
    Cached,
    /// Ran.
    Done,
    /// Failed.
    Error,
}

struct Running {
    id: usize,
    title: String,
    since: Instant,
}

struct Inner {
    out: Box<dyn Write + Send>,
    running: Vec<Running>,
    spinner_drawn: bool,
}

/// The progress display of one build.
pub struct Progress {
    mode: Mode,
    next: AtomicUsize,
    inner: Arc<Mutex<Inner>>,
    stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
    started: Instant,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("mode", &self.mode).finish()
    }
}

const SPINNER: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

impl Progress {
    /// Progress written to `out` in `mode`.
    pub fn new(mode: Mode, out: Box<dyn Write + Send>) -> Progress {
        let inner = Arc::new(Mutex::new(Inner { out, running: Vec::new(), spinner_drawn: false }));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = (mode == Mode::Tty).then(|| {
            let (inner, stop) = (Arc::clone(&inner), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut frame = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    frame += 1;
                    if let Ok(mut i) = inner.lock() {
                        draw_spinner(&mut i, frame);
                    }
                }
            })
        });
        Progress { mode, next: AtomicUsize::new(1), inner, stop, ticker, started: Instant::now() }
    }

    /// Progress that prints nothing.
    pub fn quiet() -> Progress {
        Progress::new(Mode::Quiet, Box::new(std::io::sink()))
    }

    fn with<F: FnOnce(&mut Inner)>(&self, f: F) {
        if self.mode == Mode::Quiet {
            return;
        }
        if let Ok(mut inner) = self.inner.lock() {
            clear_spinner(&mut inner);
            f(&mut inner);
            let _ = inner.out.flush();
        }
    }

    /// A step starts; returns its number.
    pub fn start(&self, title: &str) -> usize {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mode = self.mode;
        self.with(|i| {
            if mode == Mode::Plain {
                let _ = writeln!(i.out, "#{id} {title}");
            }
            i.running.push(Running { id, title: title.to_string(), since: Instant::now() });
        });
        id
    }

    /// A line of a running step's output.
    pub fn output(&self, id: usize, line: &str) {
        let mode = self.mode;
        self.with(|i| {
            if mode == Mode::Plain {
                let _ = writeln!(i.out, "#{id} {line}");
            }
        });
    }

    /// A note that belongs to no step (warnings, what was written where).
    pub fn note(&self, line: &str) {
        self.with(|i| {
            let _ = writeln!(i.out, "{line}");
        });
    }

    /// A step ended; `layer` is the size of the layer it made, if any.
    pub fn finish(&self, id: usize, outcome: Outcome, layer: Option<u64>) {
        let mode = self.mode;
        self.with(|i| {
            let Some(pos) = i.running.iter().position(|r| r.id == id) else { return };
            let r = i.running.remove(pos);
            let size = layer.map(|s| format!(" {}", human_size(s))).unwrap_or_default();
            let status = match outcome {
                Outcome::Cached => format!("CACHED{size}"),
                Outcome::Done => format!("DONE {:.1}s{size}", r.since.elapsed().as_secs_f64()),
                Outcome::Error => format!("ERROR {:.1}s", r.since.elapsed().as_secs_f64()),
            };
            if mode == Mode::Tty {
                let _ = writeln!(i.out, "#{id} {} {status}", r.title);
            } else {
                let _ = writeln!(i.out, "#{id} {status}");
            }
        });
    }

    /// Time since the build started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Ok(mut inner) = self.inner.lock() {
            clear_spinner(&mut inner);
        }
    }
}

fn clear_spinner(i: &mut Inner) {
    if i.spinner_drawn {
        let _ = write!(i.out, "\r\x1b[2K");
        i.spinner_drawn = false;
    }
}

fn draw_spinner(i: &mut Inner, frame: usize) {
    clear_spinner(i);
    let Some(r) = i.running.last() else { return };
    let line =
        format!("{} #{} {} {:.1}s", SPINNER[frame % SPINNER.len()], r.id, r.title, r.since.elapsed().as_secs_f64());
    let short: String = line.chars().take(120).collect();
    let _ = write!(i.out, "{short}");
    let _ = i.out.flush();
    i.spinner_drawn = true;
}

/// Sizes as BuildKit and Docker print them: `532B`, `4.26kB`, `12.3MB`.
pub use runtime::progress::human_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_lines_like_buildkit() {
        let buf = Buf::default();
        let p = Progress::new(Mode::Plain, Box::new(buf.clone()));
        let a = p.start("[1/2] FROM busybox");
        p.finish(a, Outcome::Cached, None);
        let b = p.start("[2/2] RUN echo hi");
        p.output(b, "hi");
        p.finish(b, Outcome::Done, Some(1536));
        drop(p);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#1 [1/2] FROM busybox");
        assert_eq!(lines[1], "#1 CACHED");
        assert_eq!(lines[2], "#2 [2/2] RUN echo hi");
        assert_eq!(lines[3], "#2 hi");
        assert!(lines[4].starts_with("#2 DONE ") && lines[4].ends_with("s 1.54kB"), "{}", lines[4]);
    }
}
