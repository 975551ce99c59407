//! How the filesystem driver writes upload data: request bytes are copied once, into large
//! reusable buffers whose memory is aligned for `O_DIRECT`, and each full buffer is written by
//! one regulated operation (see [`super::regulator`]) while the next one fills. The open file
//! waits between buffers on the async side: a client that stalls mid-body holds its buffer
//! and its file, never a thread.
//!
//! With `fsync` the data file is opened with `O_DIRECT` when the write starts at an aligned
//! offset and the filesystem accepts the flag: each buffer then goes from our memory to the
//! disk with no copy into the page cache, and the flush that makes the blob durable at
//! `complete` has nothing left to write back. A last partial block is written through the page
//! cache (after dropping `O_DIRECT` on the descriptor). Without `fsync`, or where `O_DIRECT`
//! is refused (tmpfs), the same buffers are written through the page cache.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::io_err;
use super::regulator::Regulator;
use crate::storage::{ByteStream, StorageError};

/// Alignment of memory, file offsets and lengths for `O_DIRECT`: a multiple of every logical
/// block size in common use.
const ALIGN: usize = 4096;
/// Size of each buffer handed to the writing thread.
const BUFFER: usize = 4 * 1024 * 1024;
/// Buffers kept for reuse between uploads at most. Memory the process has not touched before
/// is slow to fault in on some virtual machines; reused buffers are not.
const BUFFERS_KEPT: usize = 4;
/// Full buffers waiting to be written at most.
const AHEAD: usize = 2;

/// A buffer of [`BUFFER`] bytes starting at an [`ALIGN`]-aligned address.
#[derive(Debug)]
struct Aligned {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new() -> Self {
        let raw = vec![0u8; BUFFER + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN).min(ALIGN);
        Aligned { raw, start, len: 0 }
    }

    /// Copies as much of `src` as fits; returns how much.
    fn fill(&mut self, src: &[u8]) -> usize {
        let n = (BUFFER - self.len).min(src.len());
        let at = self.start + self.len;
        self.raw[at..at + n].copy_from_slice(&src[..n]);
        self.len += n;
        n
    }

    fn is_full(&self) -> bool {
        self.len == BUFFER
    }

    fn data(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

/// The upload writer's shared state: reusable buffers, and whether `O_DIRECT` is worth trying.
#[derive(Debug)]
pub(super) struct Writer {
    buffers: Mutex<Vec<Aligned>>,
    /// True while the filesystem has not refused `O_DIRECT` (only tried with `fsync`).
    direct: AtomicBool,
    /// With `fsync`, a part's bytes are flushed before the write returns: the caller then
    /// records the upload's new length and hash state, and after a crash a resumed upload
    /// must not build on bytes that never reached the disk.
    fsync: bool,
}

impl Writer {
    pub(super) fn new(fsync: bool) -> Self {
        Writer { buffers: Mutex::new(Vec::new()), direct: AtomicBool::new(fsync), fsync }
    }

    fn take(&self) -> Aligned {
        self.buffers.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_else(Aligned::new)
    }

    fn give_back(&self, mut buf: Aligned) {
        buf.len = 0;
        let mut kept = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < BUFFERS_KEPT {
            kept.push(buf);
        }
    }

    /// Writes `body` into the file at `path` from byte `offset` on (see
    /// [`crate::storage::Storage::write_part`]); returns the bytes written.
    pub(super) async fn write(
        self: &Arc<Self>,
        regulator: &Regulator,
        path: PathBuf,
        offset: u64,
        body: ByteStream,
    ) -> Result<u64, StorageError> {
        let (tx, rx) = mpsc::channel::<Aligned>(AHEAD);
        // Filling and writing go on side by side, in this task: each write of a buffer takes
        // a thread only while it runs.
        let (failure, written) = tokio::join!(self.fill(body, tx), self.drain(regulator, &path, offset, rx));
        match failure {
            Some(e) => Err(e), // the body's failure, not what it caused
            None => written.map_err(|e| io_err(&path, e)),
        }
    }

    /// Copies the body into buffers and sends each full one (and the last) to be written;
    /// returns the body's error, if it failed. Network chunks are small; a write gets a whole
    /// buffer, so the cost of a hand-off to a thread is paid once per buffer.
    async fn fill(&self, mut body: ByteStream, tx: mpsc::Sender<Aligned>) -> Option<StorageError> {
        let mut buf = self.take();
        while let Some(item) = body.next().await {
            let chunk = match item {
                Ok(chunk) => chunk,
                Err(e) => {
                    self.give_back(buf);
                    return Some(e);
                }
            };
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let n = buf.fill(rest);
                rest = &rest[n..];
                if buf.is_full() {
                    let full = std::mem::replace(&mut buf, self.take());
                    if tx.send(full).await.is_err() {
                        self.give_back(buf);
                        return None; // the writing failed; its error is returned
                    }
                }
            }
        }
        if buf.len > 0 {
            let _ = tx.send(buf).await;
        } else {
            self.give_back(buf);
        }
        None
    }

    /// Opens the file and writes each buffer received, one regulated operation per buffer;
    /// with `fsync`, flushes the file's data at the end. Returns the bytes written.
    async fn drain(
        self: &Arc<Self>,
        regulator: &Regulator,
        path: &Path,
        offset: u64,
        mut rx: mpsc::Receiver<Aligned>,
    ) -> io::Result<u64> {
        let (this, target) = (self.clone(), path.to_path_buf());
        let mut out = regulator.run(move || this.open(&target, offset)).await??;
        let mut written = 0u64;
        while let Some(buf) = rx.recv().await {
            let this = self.clone();
            let (back, result) = regulator
                .run(move || {
                    let n = buf.len as u64;
                    let result = out.write(buf.data()).map(|()| n);
                    this.give_back(buf);
                    (out, result)
                })
                .await?;
            out = back;
            written += result?;
        }
        if self.fsync {
            regulator.run(move || out.file.sync_data()).await??;
        }
        Ok(written)
    }

    /// Opens the data file for writing at `offset`, dropping whatever a failed earlier write
    /// left past it.
    fn open(&self, path: &Path, offset: u64) -> io::Result<Output> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        let mut direct = false;
        let mut file = None;
        if self.direct.load(Ordering::Relaxed) && offset.is_multiple_of(ALIGN as u64) {
            use std::os::unix::fs::OpenOptionsExt;
            let flag = rustix::fs::OFlags::DIRECT.bits() as i32;
            match options.clone().custom_flags(flag).open(path) {
                Ok(f) => {
                    file = Some(f);
                    direct = true;
                }
                // The filesystem does not do direct I/O (tmpfs): never ask again.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => self.direct.store(false, Ordering::Relaxed),
                Err(e) => return Err(e),
            }
        }
        let mut file = match file {
            Some(f) => f,
            None => options.open(path)?,
        };
        let len = file.metadata()?.len();
        if len < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("upload data holds {len} bytes, expected at least {offset}"),
            ));
        }
        if len > offset {
            file.set_len(offset)?;
        }
        file.seek(SeekFrom::Start(offset))?;
        Ok(Output { file, direct })
    }
}

/// The data file being written, and whether it is still in `O_DIRECT` mode.
struct Output {
    file: File,
    direct: bool,
}

impl Output {
    /// Writes a buffer at the file's position. In `O_DIRECT` mode a length that is not a
    /// whole number of blocks (the last buffer) ends it: the whole blocks go direct, the rest
    /// through the page cache.
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.direct && !(data.as_ptr() as usize).is_multiple_of(ALIGN) {
            self.leave_direct()?;
        }
        if !self.direct || data.len().is_multiple_of(ALIGN) {
            return self.file.write_all(data);
        }
        let whole = data.len() - data.len() % ALIGN;
        self.file.write_all(&data[..whole])?;
        self.leave_direct()?;
        self.file.write_all(&data[whole..])
    }

    fn leave_direct(&mut self) -> io::Result<()> {
        let flags = rustix::fs::fcntl_getfl(&self.file)?;
        rustix::fs::fcntl_setfl(&self.file, flags - rustix::fs::OFlags::DIRECT)?;
        self.direct = false;
        Ok(())
    }
}
