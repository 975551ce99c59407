//! One upstream fetch of a blob, shared by every request that wants it while it runs
//! ("single flight"), and read by them as it arrives.
//!
//! The fetching task writes the upstream's bytes into storage through the upload path
//! ([`crate::store::Store::ingest_blob`]) and keeps each chunk in the [`Flight`] as it passes,
//! so clients are sent bytes as soon as the storage writer has them: a cold pull goes at the
//! upstream's pace. A reader is held back from its last chunk until the blob is stored and its
//! digest checked, so a client never completes a download of bytes that did not verify (it
//! sees the transfer fail instead). Chunks stay in memory while any reader of the flight is
//! still reading.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::storage::{ByteStream, StorageError};

/// Where a flight stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the upstream's answer.
    Connecting,
    /// The upstream is sending; the blob has this many bytes when it said so.
    Streaming(Option<u64>),
    /// Every byte arrived, was stored and verified.
    Stored(Option<u64>),
    /// The blob was already stored (nothing fetched): serve it from storage.
    Present,
    /// The upstream has no such blob (the message says so, naming it).
    Missing(String),
    /// The fetch failed, with a message for logs and errors (never credentials).
    Failed(String),
}

/// One fetch in progress.
pub(crate) struct Flight {
    state: Mutex<(Vec<Bytes>, Phase)>,
    changed: tokio::sync::watch::Sender<()>,
}

impl Flight {
    /// A flight that has not reached the upstream yet.
    pub fn new() -> Arc<Flight> {
        Arc::new(Flight {
            state: Mutex::new((Vec::new(), Phase::Connecting)),
            changed: tokio::sync::watch::Sender::new(()),
        })
    }

    fn update(&self, f: impl FnOnce(&mut (Vec<Bytes>, Phase))) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.send_replace(());
    }

    /// Moves to `phase`.
    pub fn set(&self, phase: Phase) {
        self.update(|s| s.1 = phase);
    }

    /// Adds a chunk that arrived.
    pub fn push(&self, chunk: Bytes) {
        self.update(|s| s.0.push(chunk));
    }

    /// Waits until the upstream answered (or the flight ended), and says how.
    pub async fn started(&self) -> Phase {
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            let phase = self.state.lock().unwrap_or_else(PoisonError::into_inner).1.clone();
            if phase != Phase::Connecting {
                return phase;
            }
            if rx.changed().await.is_err() {
                return Phase::Failed("the fetch was abandoned".into());
            }
        }
    }

    /// The blob's bytes as they arrive, from the first; ends once they are stored and
    /// verified, fails when the fetch fails.
    pub fn reader(self: Arc<Flight>) -> ByteStream {
        let rx = self.changed.subscribe();
        futures_util::stream::unfold((self, rx, 0usize, false), |(flight, mut rx, next, done)| async move {
            if done {
                return None;
            }
            loop {
                rx.borrow_and_update();
                let item = {
                    let state = flight.state.lock().unwrap_or_else(PoisonError::into_inner);
                    let (chunks, phase) = (&state.0, &state.1);
                    let stored = matches!(phase, Phase::Stored(_));
                    // The last chunk waits for the digest check.
                    if next + 1 < chunks.len() || (next < chunks.len() && stored) {
                        Some(Ok(chunks[next].clone()))
                    } else if stored {
                        return None;
                    } else if let Phase::Failed(why) | Phase::Missing(why) = phase {
                        Some(Err(StorageError::Body(why.clone())))
                    } else {
                        None
                    }
                };
                match item {
                    Some(Ok(chunk)) => return Some((Ok(chunk), (flight, rx, next + 1, false))),
                    Some(Err(e)) => return Some((Err(e), (flight, rx, next, true))),
                    None => {
                        if rx.changed().await.is_err() {
                            let e = StorageError::Body("the fetch was abandoned".into());
                            return Some((Err(e), (flight, rx, next, true)));
                        }
                    }
                }
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(s: ByteStream) -> Result<Vec<u8>, StorageError> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn readers_get_every_chunk_and_end_only_once_stored() {
        let f = Flight::new();
        let early = tokio::spawn(collect(f.clone().reader()));
        f.set(Phase::Streaming(Some(6)));
        f.push(Bytes::from_static(b"abc"));
        let late = tokio::spawn(collect(f.clone().reader()));
        f.push(Bytes::from_static(b"def"));
        // The last chunk is held until the blob is stored.
        let mut held = f.clone().reader();
        assert_eq!(held.next().await.unwrap().unwrap(), Bytes::from_static(b"abc"));
        use futures_util::FutureExt;
        assert!(held.next().now_or_never().is_none(), "the last chunk came before the blob was stored");
        f.set(Phase::Stored(Some(6)));
        assert_eq!(early.await.unwrap().unwrap(), b"abcdef");
        assert_eq!(late.await.unwrap().unwrap(), b"abcdef");
        assert_eq!(held.next().await.unwrap().unwrap(), Bytes::from_static(b"def"));
        assert!(held.next().await.is_none());
    }

    #[tokio::test]
    async fn a_failed_fetch_fails_its_readers() {
        let f = Flight::new();
        let reader = tokio::spawn(collect(f.clone().reader()));
        f.set(Phase::Streaming(None));
        f.push(Bytes::from_static(b"abc"));
        f.push(Bytes::from_static(b"def"));
        f.set(Phase::Failed("digest mismatch".into()));
        let err = reader.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert_eq!(f.started().await, Phase::Failed("digest mismatch".into()));
    }
}
