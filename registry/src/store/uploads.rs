//! Blob upload sessions (spec.md, "Pushing blobs"): start, append chunks, report status,
//! finish with digest verification, cancel, and purge abandoned sessions.
//!
//! A session's state (repository, bytes received, the hasher's saved state, and what the
//! storage driver needs to continue its multipart upload) is one object in storage, rewritten
//! once after every accepted chunk, so the session survives a restart and can be continued by
//! another process without re-reading its bytes. Bytes are hashed as they stream
//! to the driver (those of a long body a batch at a time on blocking threads, beside the
//! driver's writing, and no thread held between batches); a chunk that fails half-way
//! changes nothing. A blob becomes readable only
//! after its digest has been checked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use shared::{Algorithm, Digest, Hasher, RepoName};

use super::locks::UploadLock;
use super::{Store, StoreError, StoreResult};
use crate::paths;
use crate::storage::{ByteStream, StorageError, Written};

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    /// The session id.
    pub id: String,
    /// Bytes received so far.
    pub offset: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    repo: String,
    offset: u64,
    /// `Hasher::save` output, hex-encoded.
    hash: String,
    /// Seconds since the epoch when the session started.
    started: u64,
    /// The driver's [`Written::resume`] of the last recorded write (empty before the first).
    #[serde(default)]
    resume: String,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What finishing an upload did with its bytes.
enum Committed {
    /// The driver made them the blob; the upload's data is gone.
    Completed,
    /// The blob was already stored; the upload's data is still to be discarded.
    AlreadyStored,
}

/// A commit that failed, and whether the driver had completed the session's upload by then
/// (its bytes moved to the blob or the staged copy): a completed upload is not aborted.
struct Failed {
    error: StoreError,
    completed: bool,
}

impl Failed {
    /// A failure before the driver completed the upload.
    fn before(e: impl Into<StoreError>) -> Failed {
        Failed { error: e.into(), completed: false }
    }

    /// A failure after the driver completed the upload.
    fn after(e: impl Into<StoreError>) -> Failed {
        Failed { error: e.into(), completed: true }
    }
}

/// Session ids are 32 lowercase hex characters; anything else is unknown (and never a path).
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Bytes of a body hashed as they pass, on the task that receives it; past them the rest is
/// hashed a batch at a time on blocking threads, beside the driver's writing. sha256 is the
/// slowest step of a push, and on the receiving task it held up the receiving; a short body
/// (a config, a manifest-sized blob) costs no thread hand-off. Bodies of unannounced length
/// (docker and skopeo stream a layer in one chunked `PATCH`) switch over just the same.
const HASH_HERE_UP_TO: u64 = 1 << 20;
/// Bytes handed to a hashing thread at once: one wake-up per batch, not per network chunk.
const HASH_BATCH: usize = 1 << 20;
/// Batches waiting to be hashed at most; the body waits while that many do.
const HASH_AHEAD: usize = 8;

/// Where a body's hash is computed, with the bytes hashed so far.
enum Hashed {
    Here(Box<Hasher>, u64),
    Apart(tokio::task::JoinHandle<std::io::Result<(Hasher, u64)>>),
}

/// Hashes the batches `rx` brings as they come, each batch (or the batches waiting together)
/// on a blocking thread that is given back as soon as they are hashed: a client that stalls
/// mid-body holds no thread. Returns the hasher and the bytes it saw.
async fn hash_apart(
    mut hasher: Hasher,
    mut seen: u64,
    mut rx: tokio::sync::mpsc::Receiver<Vec<Bytes>>,
) -> std::io::Result<(Hasher, u64)> {
    while let Some(mut batch) = rx.recv().await {
        while let Ok(more) = rx.try_recv() {
            batch.extend(more);
        }
        (hasher, seen) = tokio::task::spawn_blocking(move || {
            for bytes in &batch {
                hasher.update(bytes);
                seen += bytes.len() as u64;
            }
            (hasher, seen)
        })
        .await
        .map_err(std::io::Error::other)?;
    }
    Ok((hasher, seen))
}

/// The hash of a body streaming to the driver (see [`hashing`]).
struct HashTask(Arc<Mutex<Option<Hashed>>>);

impl HashTask {
    /// The hasher, once the driver is done with the stream (which has then been dropped), and
    /// only if it saw exactly the `written` bytes the driver stored: a hash state that missed
    /// bytes would later be checked against a digest and fail, or worse.
    async fn finish(self, written: u64) -> std::io::Result<Hasher> {
        let hashed = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (hasher, seen) = match hashed {
            Some(Hashed::Here(hasher, seen)) => (*hasher, seen),
            Some(Hashed::Apart(handle)) => handle.await.map_err(std::io::Error::other)??,
            None => return Err(std::io::Error::other("the hash was already taken")),
        };
        if seen != written {
            return Err(std::io::Error::other(format!("{seen} bytes hashed, {written} written")));
        }
        Ok(hasher)
    }
}

/// The body on its way to the driver, hashing what passes.
struct Feed {
    body: ByteStream,
    hashed: Arc<Mutex<Option<Hashed>>>,
    /// To the hashing task, once there is one.
    apart: Option<tokio::sync::mpsc::Sender<Vec<Bytes>>>,
    batch: Vec<Bytes>,
    batched: usize,
}

impl Feed {
    /// Hashes `bytes` here; past [`HASH_HERE_UP_TO`] bytes, moves the hasher to a task of
    /// its own ([`hash_apart`]).
    fn hash_here(&mut self, bytes: &Bytes) {
        let mut hashed = self.hashed.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Hashed::Here(hasher, seen)) = hashed.as_mut() else { return };
        hasher.update(bytes);
        *seen += bytes.len() as u64;
        if *seen < HASH_HERE_UP_TO {
            return;
        }
        let Some(Hashed::Here(hasher, seen)) = hashed.take() else { return };
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(HASH_AHEAD);
        *hashed = Some(Hashed::Apart(tokio::spawn(hash_apart(*hasher, seen, rx))));
        self.apart = Some(tx);
    }
}

/// Wraps a body so every chunk is hashed as it passes to the driver: the first
/// [`HASH_HERE_UP_TO`] bytes inline, the rest on blocking threads in batches of
/// [`HASH_BATCH`] (the chunks are shared, not copied).
fn hashing(body: ByteStream, hasher: Hasher) -> (ByteStream, HashTask) {
    let hashed = Arc::new(Mutex::new(Some(Hashed::Here(Box::new(hasher), 0))));
    let feed = Feed { body, hashed: hashed.clone(), apart: None, batch: Vec::new(), batched: 0 };
    let body = futures_util::stream::unfold(feed, |mut feed| async move {
        let item = feed.body.next().await;
        if let Some(Ok(bytes)) = &item {
            if feed.apart.is_none() {
                feed.hash_here(bytes);
            } else {
                feed.batched += bytes.len();
                feed.batch.push(bytes.clone());
            }
        }
        // A full batch, or the end of the body: the hashing task takes what has passed.
        if let Some(tx) = &feed.apart {
            if (feed.batched >= HASH_BATCH || item.is_none()) && !feed.batch.is_empty() {
                feed.batched = 0;
                let _ = tx.send(std::mem::take(&mut feed.batch)).await;
            }
        }
        Some((item?, feed))
    })
    .boxed();
    (body, HashTask(hashed))
}

impl Store {
    /// A share of the lock of session `id`, once `id` is known to be well-formed (an id
    /// that cannot be a session makes no entry).
    fn upload_lock(&self, id: &str) -> StoreResult<UploadLock<'_>> {
        if !valid_id(id) {
            return Err(StoreError::UploadUnknown(id.to_string()));
        }
        Ok(self.upload_locks.get(id))
    }

    async fn load(&self, repo: &RepoName, id: &str) -> StoreResult<State> {
        let unknown = || StoreError::UploadUnknown(id.to_string());
        if !valid_id(id) {
            return Err(unknown());
        }
        let raw = match self.storage.read(&paths::upload_state(id)).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        let state: State = serde_json::from_slice(&raw).map_err(|e| {
            StoreError::Storage(StorageError::Io { path: paths::upload_state(id), source: std::io::Error::other(e) })
        })?;
        if state.repo != repo.as_str() {
            return Err(unknown());
        }
        Ok(state)
    }

    async fn save(&self, id: &str, state: &State) -> StoreResult<()> {
        let body = serde_json::to_vec(state).map_err(|e| StorageError::Io { path: id.into(), source: e.into() })?;
        Ok(self.storage.put(&paths::upload_state(id), Bytes::from(body)).await?)
    }

    /// Starts an upload session in `repo`, hashing with `algorithm`.
    pub async fn start_upload(&self, repo: &RepoName, algorithm: Algorithm) -> StoreResult<UploadStatus> {
        let id = format!("{:032x}", rand::random::<u128>());
        let state = State {
            repo: repo.to_string(),
            offset: 0,
            hash: hex::encode(Hasher::new(algorithm).save()),
            started: now_secs(),
            resume: String::new(),
        };
        self.save(&id, &state).await?;
        Ok(UploadStatus { id, offset: 0 })
    }

    /// Where the session stands.
    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> StoreResult<UploadStatus> {
        let state = self.load(repo, id).await?;
        Ok(UploadStatus { id: id.to_string(), offset: state.offset })
    }

    /// Appends `body` to the session. `start`, when the client gave a `Content-Range`, must
    /// equal the bytes received so far; `len` is the body's length when the client announced
    /// it (a body of another length fails).
    pub async fn append(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> StoreResult<UploadStatus> {
        let lock = self.upload_lock(id)?;
        let _guard = lock.lock().await;
        let mut state = self.load(repo, id).await?;
        self.append_locked(id, &mut state, start, len, body).await?;
        Ok(UploadStatus { id: id.to_string(), offset: state.offset })
    }

    async fn append_locked(
        &self,
        id: &str,
        state: &mut State,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> StoreResult<()> {
        if let Some(start) = start {
            if start != state.offset {
                return Err(StoreError::RangeMismatch { start, current: state.offset });
            }
        }
        let saved = hex::decode(&state.hash).ok().and_then(|b| Hasher::restore(&b));
        let hasher = saved.ok_or_else(|| StorageError::Io {
            path: paths::upload_state(id),
            source: std::io::Error::other("corrupt hash state"),
        })?;
        let (body, hash) = hashing(body, hasher);
        let written = self
            .storage
            .write_part_sized(&paths::upload_data(id), &state.resume, state.offset, len, body)
            .await
            .map_err(|e| match e {
                StorageError::Body(msg) => StoreError::BodyFailed(msg),
                other => other.into(),
            })?;
        let hasher = hash
            .finish(written.len)
            .await
            .map_err(|source| StorageError::Io { path: paths::upload_data(id), source })?;
        state.offset += written.len;
        state.hash = hex::encode(hasher.save());
        state.resume = written.resume;
        self.save(id, state).await
    }

    /// Appends the final `body` (possibly empty; `len` bytes when announced), checks the
    /// whole upload against `digest`, and makes the blob readable in `repo`. On a digest
    /// mismatch the session is discarded and nothing becomes readable.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        start: Option<u64>,
        len: Option<u64>,
        body: ByteStream,
    ) -> StoreResult<()> {
        let lock = self.upload_lock(id)?;
        let _guard = lock.lock().await;
        let mut state = self.load(repo, id).await?;
        // Most clients finish with an empty body: then there is nothing to append or record
        // (unless nothing was ever written, when the driver's upload must still be created).
        let mut body = body.peekable();
        if state.offset == 0 || std::pin::Pin::new(&mut body).peek().await.is_some() {
            self.append_locked(id, &mut state, start, len, body.boxed()).await?;
        } else if let Some(start) = start {
            if start != state.offset {
                return Err(StoreError::RangeMismatch { start, current: state.offset });
            }
        }
        let hasher = hex::decode(&state.hash).ok().and_then(|b| Hasher::restore(&b)).ok_or_else(|| {
            StorageError::Io { path: paths::upload_state(id), source: std::io::Error::other("corrupt hash state") }
        })?;
        let result = if hasher.algorithm() == digest.algorithm() {
            self.commit(repo, id, &state.resume, digest, hasher.finish()).await
        } else {
            self.commit_rehashed(repo, id, &state.resume, digest).await
        };
        self.settle(id, &state.resume, result).await
    }

    /// Clears a finished session away after its commit. What the driver completed is never
    /// aborted (only the session's own objects are left, the staged copy among them), and a
    /// failed clean-up is logged, never answered: the client gets the commit's own result,
    /// and the purge removes what is left.
    async fn settle(&self, id: &str, resume: &str, result: Result<Committed, Failed>) -> StoreResult<()> {
        let cleanup = match &result {
            Ok(Committed::Completed) | Err(Failed { completed: true, .. }) => {
                self.storage.delete_all(&paths::upload(id)).await.map_err(StoreError::from)
            }
            Ok(Committed::AlreadyStored) | Err(Failed { completed: false, .. }) => self.discard(id, resume).await,
        };
        if let Err(e) = cleanup {
            tracing::warn!(upload = id, error = %shared::error_chain(&e), "clearing a finished upload session failed");
        }
        result.map(|_| ()).map_err(|f| f.error)
    }

    async fn commit(
        &self,
        repo: &RepoName,
        id: &str,
        resume: &str,
        expected: &Digest,
        actual: Digest,
    ) -> Result<Committed, Failed> {
        if &actual != expected {
            return Err(Failed::before(StoreError::DigestMismatch { expected: expected.clone(), actual }));
        }
        crate::gc::fence(self.storage.as_ref(), &[expected]).await.map_err(Failed::before)?;
        let dest = paths::blob_data(expected);
        let outcome = match self.storage.stat(&dest).await {
            Ok(_) => Committed::AlreadyStored,
            Err(e) if e.is_not_found() => {
                self.storage.complete(&paths::upload_data(id), resume, &dest).await.map_err(Failed::before)?;
                Committed::Completed
            }
            Err(e) => return Err(Failed::before(e)),
        };
        let completed = matches!(outcome, Committed::Completed);
        let linked = self.storage.put(&paths::layer_link(repo, expected), Bytes::new()).await;
        linked.map_err(|e| Failed { error: e.into(), completed })?;
        Ok(outcome)
    }

    /// The client finished with a digest of another algorithm than the session hashed with:
    /// stage the bytes, hash them again, and only then store them under that digest.
    async fn commit_rehashed(
        &self,
        repo: &RepoName,
        id: &str,
        resume: &str,
        expected: &Digest,
    ) -> Result<Committed, Failed> {
        let staged = format!("{}/staged", paths::upload(id));
        self.storage.complete(&paths::upload_data(id), resume, &staged).await.map_err(Failed::before)?;
        // From here on the driver's upload is completed (into `staged`): nothing to abort.
        self.rehash_staged(repo, id, &staged, expected).await.map_err(Failed::after)
    }

    /// Hashes the staged bytes of a session, and stores them as the blob if they match.
    async fn rehash_staged(
        &self,
        repo: &RepoName,
        id: &str,
        staged: &str,
        expected: &Digest,
    ) -> StoreResult<Committed> {
        let mut hasher = Hasher::new(expected.algorithm());
        let mut bytes = self.storage.get(staged, None).await?;
        while let Some(chunk) = bytes.next().await {
            hasher.update(&chunk?);
        }
        let actual = hasher.finish();
        if &actual != expected {
            return Err(StoreError::DigestMismatch { expected: expected.clone(), actual });
        }
        crate::gc::fence(self.storage.as_ref(), &[expected]).await?;
        let copy = format!("{}/copy", paths::upload(id));
        let body = self.storage.get(staged, None).await?;
        let Written { resume, .. } = self.storage.write_part(&copy, "", 0, body).await?;
        let dest = paths::blob_data(expected);
        self.storage.complete(&copy, &resume, &dest).await?;
        self.storage.put(&paths::layer_link(repo, expected), Bytes::new()).await?;
        Ok(Committed::Completed)
    }

    /// Drops a session: its driver upload (as of `resume`) and its objects.
    async fn discard(&self, id: &str, resume: &str) -> StoreResult<()> {
        self.storage.abort(&paths::upload_data(id), resume).await?;
        self.storage.delete_all(&paths::upload(id)).await?;
        Ok(())
    }

    /// Cancels a session and drops its bytes.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> StoreResult<()> {
        let lock = self.upload_lock(id)?;
        let _guard = lock.lock().await;
        let state = self.load(repo, id).await?;
        self.discard(id, &state.resume).await
    }

    /// The driver's resume text of every upload session's last recorded write (for the
    /// collector: what they name is in use).
    pub(crate) async fn upload_resumes(&self) -> StoreResult<Vec<String>> {
        let mut out = Vec::new();
        for id in self.storage.list(paths::UPLOADS).await? {
            if !valid_id(&id) {
                continue;
            }
            let Some(raw) = self.storage.read_opt(paths::upload_state(&id)).await? else { continue };
            // A session whose state cannot be read cannot be continued either: what it named
            // is no longer in use.
            match serde_json::from_slice::<State>(&raw) {
                Ok(state) if !state.resume.is_empty() => out.push(state.resume),
                Ok(_) => {}
                Err(_) => tracing::warn!(id, "unreadable upload session state skipped"),
            }
        }
        Ok(out)
    }

    /// Removes sessions that have not received anything for `max_age`; returns how many.
    pub async fn purge_uploads(&self, max_age: Duration) -> StoreResult<usize> {
        let mut purged = 0;
        let now = SystemTime::now();
        for id in self.storage.list(paths::UPLOADS).await? {
            if !valid_id(&id) {
                continue;
            }
            let stale = match self.storage.stat(&paths::upload_state(&id)).await {
                Ok(meta) => now.duration_since(meta.modified).unwrap_or_default() > max_age,
                Err(e) if e.is_not_found() => true, // a folder without state is debris
                Err(e) => return Err(e.into()),
            };
            if stale {
                let lock = self.upload_locks.get(&id);
                let _guard = lock.lock().await;
                // The driver's upload is known from the state; a folder without one is debris.
                let resume = match self.storage.read(&paths::upload_state(&id)).await {
                    Ok(raw) => serde_json::from_slice::<State>(&raw).map(|s| s.resume).unwrap_or_default(),
                    Err(e) if e.is_not_found() => String::new(),
                    Err(e) => return Err(e.into()),
                };
                self.discard(&id, &resume).await?;
                purged += 1;
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fs::FsStorage;

    fn body(data: &'static [u8]) -> ByteStream {
        futures_util::stream::iter(vec![Ok(Bytes::from_static(data))]).boxed()
    }

    #[tokio::test]
    async fn chunks_survive_a_new_store_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let repo: RepoName = "r".parse().unwrap();
        let s1 = Store::new(Arc::new(FsStorage::new(dir.path(), false).unwrap()));
        let up = s1.start_upload(&repo, Algorithm::Sha256).await.unwrap();
        s1.append(&repo, &up.id, Some(0), Some(6), body(b"hello ")).await.unwrap();
        // A second store on the same storage (a restart) continues the session.
        let s2 = Store::new(Arc::new(FsStorage::new(dir.path(), false).unwrap()));
        assert_eq!(s2.upload_status(&repo, &up.id).await.unwrap().offset, 6);
        let err = s2.append(&repo, &up.id, Some(3), None, body(b"x")).await.unwrap_err();
        assert!(matches!(err, StoreError::RangeMismatch { start: 3, current: 6 }));
        let digest = Digest::sha256_of(b"hello world");
        s2.finish_upload(&repo, &up.id, &digest, None, None, body(b"world")).await.unwrap();
        assert_eq!(s2.blob_size(&repo, &digest).await.unwrap(), 11);
        assert!(s2.upload_status(&repo, &up.id).await.is_err());
    }

    /// `data` cut into network-sized pieces, as a body arrives.
    fn pieces(data: &[u8]) -> ByteStream {
        let chunks: Vec<_> = data.chunks(64 * 1024 + 7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        futures_util::stream::iter(chunks).boxed()
    }

    /// Whether the hash of a body has moved to a thread of its own.
    fn apart(task: &HashTask) -> bool {
        matches!(*task.0.lock().unwrap(), Some(Hashed::Apart(_)))
    }

    #[tokio::test]
    async fn long_bodies_move_their_hash_to_a_thread() {
        let data: Vec<u8> = (0..3 * HASH_HERE_UP_TO as usize + 12345).map(|i| (i * 31 % 251) as u8).collect();
        let short = &data[..HASH_HERE_UP_TO as usize - 1];
        let (stream, task) = hashing(pieces(short), Hasher::new(Algorithm::Sha256));
        assert_eq!(stream.map(|c| c.unwrap().len()).collect::<Vec<_>>().await.iter().sum::<usize>(), short.len());
        assert!(!apart(&task));
        assert_eq!(task.finish(short.len() as u64).await.unwrap().finish(), Digest::sha256_of(short));
        // Long: the hash moves part-way through, and still covers every byte in order.
        let (stream, task) = hashing(pieces(&data), Hasher::new(Algorithm::Sha256));
        assert_eq!(stream.map(|c| c.unwrap().len()).collect::<Vec<_>>().await.iter().sum::<usize>(), data.len());
        assert!(apart(&task));
        assert_eq!(task.finish(data.len() as u64).await.unwrap().finish(), Digest::sha256_of(&data));
    }

    /// A long body that stops coming holds no thread for its hash: with a pool of one
    /// blocking thread, other blocking work still runs while the body waits.
    #[test]
    fn a_stalled_body_holds_no_hashing_thread() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let data = vec![3u8; 3 * HASH_BATCH + 100];
            let body = pieces(&data).chain(futures_util::stream::pending()).boxed();
            let (mut stream, task) = hashing(body, Hasher::new(Algorithm::Sha256));
            let mut taken = 0;
            while taken < data.len() {
                taken += stream.next().await.unwrap().unwrap().len();
            }
            assert!(apart(&task));
            let other = tokio::time::timeout(Duration::from_secs(10), tokio::task::spawn_blocking(|| 7)).await;
            assert_eq!(other.expect("the hash held the only blocking thread").unwrap(), 7);
        });
    }

    #[tokio::test]
    async fn long_and_short_chunks_make_one_upload() {
        let dir = tempfile::tempdir().unwrap();
        let repo: RepoName = "r".parse().unwrap();
        let s = Store::new(Arc::new(FsStorage::new(dir.path(), false).unwrap()));
        let data: Vec<u8> = (0..3 * HASH_HERE_UP_TO as usize + 12345).map(|i| (i * 7 % 253) as u8).collect();
        let (long, rest) = data.split_at(2 * HASH_HERE_UP_TO as usize + 999);
        let (short, last) = rest.split_at(1000);
        let up = s.start_upload(&repo, Algorithm::Sha256).await.unwrap();
        s.append(&repo, &up.id, Some(0), Some(long.len() as u64), pieces(long)).await.unwrap();
        s.append(&repo, &up.id, None, Some(short.len() as u64), pieces(short)).await.unwrap();
        s.append(&repo, &up.id, None, None, pieces(last)).await.unwrap();
        let digest = Digest::sha256_of(&data);
        s.finish_upload(&repo, &up.id, &digest, None, None, body(b"")).await.unwrap();
        assert_eq!(s.blob_size(&repo, &digest).await.unwrap(), data.len() as u64);
        // A long monolithic body with the wrong digest stores nothing.
        let up = s.start_upload(&repo, Algorithm::Sha256).await.unwrap();
        let wrong = Digest::sha256_of(b"not it");
        let err = s.finish_upload(&repo, &up.id, &wrong, None, None, pieces(long)).await.unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }));
        assert!(s.blob_size(&repo, &Digest::sha256_of(long)).await.is_err());
    }

    #[tokio::test]
    async fn a_hash_that_missed_bytes_is_refused() {
        let data = vec![7u8; 3 << 20];
        let (mut stream, task) = hashing(pieces(&data), Hasher::new(Algorithm::Sha256));
        // A driver that stored the first pieces and dropped the body: what it took past the
        // switch never reached the hashing thread (its batch was not full), so the hash
        // state must not be used.
        let mut taken = 0;
        while taken < HASH_HERE_UP_TO as usize {
            taken += stream.next().await.unwrap().unwrap().len();
        }
        assert!(apart(&task));
        taken += stream.next().await.unwrap().unwrap().len();
        drop(stream);
        assert!(task.finish(taken as u64).await.is_err());
    }

    #[tokio::test]
    async fn wrong_digest_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let repo: RepoName = "r".parse().unwrap();
        let s = Store::new(Arc::new(FsStorage::new(dir.path(), false).unwrap()));
        let up = s.start_upload(&repo, Algorithm::Sha256).await.unwrap();
        let claimed = Digest::sha256_of(b"something else");
        let err = s.finish_upload(&repo, &up.id, &claimed, None, Some(4), body(b"data")).await.unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }));
        assert!(s.blob_size(&repo, &claimed).await.is_err());
        assert!(s.blob_size(&repo, &Digest::sha256_of(b"data")).await.is_err());
        assert!(s.storage.list(paths::UPLOADS).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn sha512_finish_of_a_sha256_session() {
        let dir = tempfile::tempdir().unwrap();
        let repo: RepoName = "r".parse().unwrap();
        let s = Store::new(Arc::new(FsStorage::new(dir.path(), false).unwrap()));
        let up = s.start_upload(&repo, Algorithm::Sha256).await.unwrap();
        let digest = Digest::of(Algorithm::Sha512, b"data");
        s.finish_upload(&repo, &up.id, &digest, None, None, body(b"data")).await.unwrap();
        assert_eq!(s.blob_size(&repo, &digest).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn purges_stale_sessions_and_rejects_foreign_ids() {
        let dir = tempfile::tempdir().unwrap();
        let repo: RepoName = "r".parse().unwrap();
        let s = Store::new(Arc::new(FsStorage::new(dir.path(), false).unwrap()));
        let up = s.start_upload(&repo, Algorithm::Sha256).await.unwrap();
        assert_eq!(s.purge_uploads(Duration::from_secs(3600)).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(s.purge_uploads(Duration::from_millis(1)).await.unwrap(), 1);
        assert!(matches!(s.upload_status(&repo, &up.id).await, Err(StoreError::UploadUnknown(_))));
        assert!(matches!(s.upload_status(&repo, "../../etc").await, Err(StoreError::UploadUnknown(_))));
        let other: RepoName = "other".parse().unwrap();
        let up = s.start_upload(&repo, Algorithm::Sha256).await.unwrap();
        assert!(matches!(s.upload_status(&other, &up.id).await, Err(StoreError::UploadUnknown(_))));
    }
}
