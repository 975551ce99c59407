//! How the filesystem driver streams an object out: one regulated read of [`READ_CHUNK`]
//! bytes at a time, at its offset, each on a blocking thread only while it reads.
//!
//! The stream reads one chunk ahead of its consumer: when a chunk is handed out, the read of
//! the next one starts, so the disk works while the network sends. When the client stops
//! reading, the read ahead finishes, its thread goes back to the pool, and nothing more is
//! read until the stream is polled again; a stalled download holds two chunks of memory (the
//! one the server is sending, the one read ahead) and no thread.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::io_err;
use super::regulator::Regulator;
use crate::storage::{ByteStream, StorageError};

/// Size of each read when streaming an object out.
pub(super) const READ_CHUNK: usize = 512 * 1024;

/// An object being streamed out.
struct Reading {
    file: Arc<File>,
    path: Arc<PathBuf>,
    regulator: Regulator,
    /// Where the next chunk handed out starts.
    at: u64,
    /// Where the stream ends (the end of the range, or of the file when it was opened).
    end: u64,
    /// The read of the chunk at `at`, once started.
    ahead: Option<JoinHandle<io::Result<io::Result<Bytes>>>>,
}

impl Reading {
    /// Starts reading the chunk at `at` (on its own task, so it goes on while the stream is
    /// not polled).
    fn read_ahead(&mut self) {
        let (file, regulator) = (self.file.clone(), self.regulator.clone());
        let (at, len) = (self.at, (self.end - self.at).min(READ_CHUNK as u64) as usize);
        self.ahead = Some(tokio::spawn(async move { regulator.run(move || read_chunk(&file, at, len)).await }));
    }

    /// The next chunk, `None` at the end.
    async fn next(&mut self) -> Option<Result<Bytes, StorageError>> {
        if self.at >= self.end {
            return None;
        }
        if self.ahead.is_none() {
            self.read_ahead();
        }
        let read = self.ahead.take()?.await;
        let chunk = match read.map_err(io::Error::other).and_then(|r| r).and_then(|r| r) {
            Ok(chunk) => chunk,
            Err(e) => {
                self.end = self.at; // nothing more after an error
                return Some(Err(io_err(&self.path, e)));
            }
        };
        if chunk.is_empty() {
            // The file shrank since it was opened (never for blobs, which do not change).
            self.end = self.at;
            return Some(Err(io_err(&self.path, io::Error::from(io::ErrorKind::UnexpectedEof))));
        }
        self.at += chunk.len() as u64;
        if self.at < self.end {
            self.read_ahead();
        }
        Some(Ok(chunk))
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            ahead.abort(); // a read already running still finishes, and frees its permit
        }
    }
}

/// Reads up to `len` bytes at `at`; fewer only at the end of the file.
fn read_chunk(file: &File, at: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(len);
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], at + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}

/// Opens the file at `path` (one regulated operation) and streams `range` of it, or all of it.
pub(super) async fn stream(
    regulator: &Regulator,
    path: PathBuf,
    range: Option<Range<u64>>,
) -> Result<ByteStream, StorageError> {
    let opened = {
        let path = path.clone();
        regulator.run(move || open(&path)).await
    };
    let (file, size) = opened.and_then(|r| r).map_err(|e| io_err(&path, e))?;
    let (at, end) = match range {
        Some(r) => (r.start, r.end.min(size)),
        None => (0, size),
    };
    let reading =
        Reading { file: Arc::new(file), path: Arc::new(path), regulator: regulator.clone(), at, end, ahead: None };
    Ok(futures_util::stream::unfold(reading, |mut r| async move { r.next().await.map(|item| (item, r)) }).boxed())
}

/// Opens a file for reading, with its size.
fn open(path: &Path) -> io::Result<(File, u64)> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::from(io::ErrorKind::NotFound)); // a folder counts as nothing
    }
    Ok((file, meta.len()))
}
