//! Streaming a write's bytes into S3 parts: each part's size is fixed before its bytes
//! arrive, its `UploadPart` starts with its first bytes and runs on a task of its own (at most
//! [`PARTS_IN_FLIGHT`](super::PARTS_IN_FLIGHT) at once), and a retry re-reads the part from
//! the chunks it keeps. Used by [`super::S3Storage`]'s `write`.

use super::*;

/// Where a write's parts go: the upload's path (for errors), its data object's full key and
/// its S3 upload id.
pub(super) struct PartTarget {
    pub(super) path: String,
    pub(super) key: String,
    pub(super) upload_id: String,
}

/// The bytes of one part as they arrive. The write receiving them appends through a
/// [`PartFeed`]; the part's `UploadPart` request reads them through a [`PartBody`] (a retry
/// reads them again from the first). They are held until the request is done, so a part's
/// memory is its size, whatever the size of the request body it comes from.
#[derive(Default)]
pub(super) struct PartBytes(pub(super) Mutex<PartState>);

#[derive(Default)]
pub(super) struct PartState {
    pub(super) chunks: Vec<Bytes>,
    /// `None` while bytes may still come; `Some(true)` once all have, `Some(false)` when the
    /// write gave up on the part (its readers then fail rather than wait).
    pub(super) end: Option<bool>,
    pub(super) wakers: Vec<Waker>,
}

impl PartBytes {
    /// A part whose bytes are all there.
    pub(super) fn whole(chunks: Vec<Bytes>) -> Arc<PartBytes> {
        Arc::new(PartBytes(Mutex::new(PartState { chunks, end: Some(true), wakers: Vec::new() })))
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut PartState)) {
        let wakers = {
            let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut state);
            std::mem::take(&mut state.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// The receiving end's handle on a part being streamed; dropping it before
/// [`PartFeed::finish`] fails the part's request.
pub(super) struct PartFeed(pub(super) Arc<PartBytes>);

impl PartFeed {
    pub(super) fn push(&self, chunk: Bytes) {
        self.0.update(|s| s.chunks.push(chunk));
    }

    pub(super) fn finish(self) {
        self.0.update(|s| s.end = Some(true));
    }
}

impl Drop for PartFeed {
    fn drop(&mut self) {
        self.0.update(|s| {
            s.end.get_or_insert(false);
        });
    }
}

/// An `UploadPart` request body: the part's bytes from the first, waiting for those not yet
/// received. Its exact length is known, so it goes out with a `Content-Length`.
pub(super) struct PartBody {
    pub(super) bytes: Arc<PartBytes>,
    /// The chunk to send next.
    pub(super) next: usize,
    /// Bytes not yet sent.
    pub(super) left: u64,
}

impl http_body::Body for PartBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let mut state = this.bytes.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(chunk) = state.chunks.get(this.next) {
            this.next += 1;
            this.left = this.left.saturating_sub(chunk.len() as u64);
            return Poll::Ready(Some(Ok(http_body::Frame::data(chunk.clone()))));
        }
        match state.end {
            Some(true) => Poll::Ready(None),
            Some(false) => Poll::Ready(Some(Err(std::io::Error::other("the part's request body failed")))),
            None => {
                if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    state.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// The result of a part's request task.
pub(super) fn joined(
    result: Option<Result<Result<Part, StorageError>, tokio::task::JoinError>>,
    path: &str,
) -> Result<Part, StorageError> {
    match result {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(backend(path, format!("part upload task: {e}"))),
        None => Err(backend(path, "no part upload task")),
    }
}

/// The part a write is filling.
pub(super) enum Open {
    /// Streamed as it fills: its request is already out, with its size declared.
    Streaming { feed: PartFeed, size: u64, filled: u64 },
    /// Held until its size is known: a part of a body of unknown length (sent once it holds
    /// a part's worth, or at the end), or the tail.
    Held { chunks: Vec<Bytes>, filled: u64 },
}

/// Cuts one write's bytes (the carried tail, then the body) into parts and sends them: each
/// part of a body of known length as it arrives, others once complete; at most
/// [`PARTS_IN_FLIGHT`] at once. What is left under [`MIN_PART`] at the end is the new tail.
pub(super) struct PartWriter<'a> {
    pub(super) s3: &'a S3Storage,
    pub(super) to: &'a PartTarget,
    pub(super) next_n: i32,
    /// Bytes of this write not yet pushed into a part, when the body's length is known.
    pub(super) ahead: Option<u64>,
    pub(super) open: Option<Open>,
    pub(super) tasks: JoinSet<Result<Part, StorageError>>,
    pub(super) done: Vec<Part>,
}

impl PartWriter<'_> {
    /// Waits until fewer than [`PARTS_IN_FLIGHT`] parts are being sent.
    pub(super) async fn slot(&mut self) -> Result<(), StorageError> {
        while self.tasks.len() >= PARTS_IN_FLIGHT {
            let part = joined(self.tasks.join_next().await, &self.to.path)?;
            self.done.push(part);
        }
        Ok(())
    }

    pub(super) async fn send_held(&mut self, chunks: Vec<Bytes>, size: u64) -> Result<(), StorageError> {
        self.slot().await?;
        self.s3.spawn_part(&mut self.tasks, self.to, self.next_n, size, PartBytes::whole(chunks));
        self.next_n += 1;
        Ok(())
    }

    pub(super) async fn push(&mut self, mut chunk: Bytes) -> Result<(), StorageError> {
        // A part that failed already fails the write now, not once the body is in.
        while let Some(result) = self.tasks.try_join_next() {
            let part = joined(Some(result), &self.to.path)?;
            self.done.push(part);
        }
        let part_size = self.s3.part_size as u64;
        while !chunk.is_empty() {
            let open = match self.open.take() {
                Some(open) => open,
                None => match self.ahead {
                    // The bytes left are a part: up to one part and a bit, so that no tail
                    // smaller than S3's minimum part is left behind.
                    Some(ahead) if ahead >= MIN_PART as u64 => {
                        let size = if ahead < part_size + MIN_PART as u64 { ahead } else { part_size };
                        self.slot().await?;
                        let bytes = Arc::new(PartBytes::default());
                        self.s3.spawn_part(&mut self.tasks, self.to, self.next_n, size, bytes.clone());
                        self.next_n += 1;
                        Open::Streaming { feed: PartFeed(bytes), size, filled: 0 }
                    }
                    _ => Open::Held { chunks: Vec::new(), filled: 0 },
                },
            };
            // Held bytes of a known-length body are the tail: they all go in.
            let room = match &open {
                Open::Streaming { size, filled, .. } => size - filled,
                Open::Held { filled, .. } if self.ahead.is_none() => part_size - filled,
                Open::Held { .. } => u64::MAX,
            };
            let piece = chunk.split_to(room.min(chunk.len() as u64) as usize);
            let n = piece.len() as u64;
            if let Some(ahead) = self.ahead.as_mut() {
                *ahead = ahead.saturating_sub(n);
            }
            match open {
                Open::Streaming { feed, size, filled } => {
                    feed.push(piece);
                    if filled + n == size {
                        feed.finish();
                    } else {
                        self.open = Some(Open::Streaming { feed, size, filled: filled + n });
                    }
                }
                Open::Held { mut chunks, filled } => {
                    chunks.push(piece);
                    if self.ahead.is_none() && filled + n == part_size {
                        self.send_held(chunks, part_size).await?;
                    } else {
                        self.open = Some(Open::Held { chunks, filled: filled + n });
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends what is held if it is a part, waits for every part, and returns them in order
    /// with the bytes left for the tail.
    pub(super) async fn finish(mut self) -> Result<(Vec<Part>, Bytes), StorageError> {
        let mut tail = Bytes::new();
        match self.open.take() {
            None => {}
            Some(Open::Streaming { size, filled, .. }) => {
                return Err(StorageError::Body(format!("the body ended {} bytes into a part of {size}", filled)));
            }
            Some(Open::Held { chunks, filled }) if filled >= MIN_PART as u64 => self.send_held(chunks, filled).await?,
            Some(Open::Held { chunks, filled }) => {
                let mut buf = BytesMut::with_capacity(filled as usize);
                chunks.iter().for_each(|c| buf.extend_from_slice(c));
                tail = buf.freeze();
            }
        }
        while !self.tasks.is_empty() {
            let part = joined(self.tasks.join_next().await, &self.to.path)?;
            self.done.push(part);
        }
        self.done.sort_by_key(|p| p.n);
        Ok((std::mem::take(&mut self.done), tail))
    }
}
