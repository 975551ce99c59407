//! Pushing an image of the store to the registry its name says: `berth push` (in `cli`)
//! calls [`Store::push`].
//!
//! The config and each layer blob go first, one at a time: a blob the repository has is
//! skipped (a `HEAD`), a blob another image of the store came from on the same registry is
//! mounted from that repository (`POST ?mount=&from=`, falling back to an upload when the
//! registry will not), and the rest are uploaded from the content store (one `PUT`, or
//! `PATCH` chunks for big layers). The manifest goes last, under the name's tag, exactly as
//! stored, so its digest does not change. The registry client answers auth challenges with
//! push scope (and pull scope on the repository mounted from).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use shared::client::{BlobPush, Client, ClientError};
use shared::{Digest, ImageRef, Reference, RepoName};
use tokio::io::{AsyncRead, ReadBuf};

use crate::content::ContentError;
use crate::images::{FileLock, ImageRecord};
use crate::store::StoreError;
use crate::Store;

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The image is not in the store, or the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blob of the image could not be read from the store.
    #[error("reading {what}")]
    Content {
        /// Which blob.
        what: String,
        /// The cause.
        #[source]
        source: ContentError,
    },
    /// The registry refused or failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The name holds a digest, which a push cannot put a manifest under.
    #[error("{0} names a digest; push a tag (NAME:TAG)")]
    DigestName(String),
}

/// Something that happened during a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// The repository had the blob already.
    Exists {
        /// The blob.
        digest: Digest,
    },
    /// The blob was mounted from another repository of the registry.
    Mounted {
        /// The blob.
        digest: Digest,
        /// The repository it came from.
        from: RepoName,
    },
    /// Bytes of the blob have been sent.
    Pushing {
        /// The blob.
        digest: Digest,
        /// Bytes so far.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// The blob was uploaded.
    Pushed {
        /// The blob.
        digest: Digest,
    },
    /// The manifest is in: the image is pushed.
    Finished {
        /// The tag it was put under.
        tag: String,
        /// The manifest's digest.
        digest: Digest,
        /// The manifest's size.
        size: u64,
    },
}

/// Receives push events.
pub trait PushProgress: Send + Sync {
    /// Called for each event.
    fn event(&self, event: &PushEvent);
}

impl<F: Fn(&PushEvent) + Send + Sync> PushProgress for F {
    fn event(&self, event: &PushEvent) {
        self(event)
    }
}

impl Store {
    /// Pushes the image `name` (a reference of the store, see [`Store::find_one`]) to the
    /// registry and repository it names, under its tag. Returns the manifest's digest.
    pub async fn push(&self, client: &Client, name: &str, progress: &dyn PushProgress) -> Result<Digest, PushError> {
        let lock_path = self.paths.lock();
        let _lock =
            FileLock::shared(&lock_path).map_err(|source| StoreError::Io { path: lock_path.clone(), source })?;
        let record = self.find_one(name)?;
        let target: ImageRef = match name.parse::<ImageRef>() {
            Ok(r) if r.to_string() == record.reference => r,
            _ => record.image_ref().map_err(|_| StoreError::NotFound(name.to_string()))?,
        };
        let tag = match target.reference() {
            Reference::Digest(_) => return Err(PushError::DigestName(name.to_string())),
            tag => tag,
        };
        let others = self.images()?;
        let blobs =
            std::iter::once((&record.config, None)).chain(record.layers.iter().map(|l| (&l.digest, Some(l.size))));
        for (digest, size) in blobs {
            let from = mount_source(&others, &target, digest);
            self.push_one(client, &target, digest, size, from.as_ref(), progress).await?;
        }
        let manifest = self
            .content
            .read(&record.manifest)
            .map_err(|source| PushError::Content { what: format!("the manifest {}", record.manifest), source })?;
        let size = manifest.len() as u64;
        let digest = client.push_manifest(&target, &tag, &record.media_type, manifest.into()).await?;
        progress.event(&PushEvent::Finished { tag: tag.to_string(), digest: digest.clone(), size });
        Ok(digest)
    }

    async fn push_one(
        &self,
        client: &Client,
        target: &ImageRef,
        digest: &Digest,
        size: Option<u64>,
        from: Option<&RepoName>,
        progress: &dyn PushProgress,
    ) -> Result<(), PushError> {
        let content_err = |source| PushError::Content { what: format!("blob {digest}"), source };
        let path = self.content.path(digest);
        let total = match size.or_else(|| self.content.size(digest)) {
            Some(total) => total,
            None => return Err(content_err(ContentError::Io { path, source: io::ErrorKind::NotFound.into() })),
        };
        let file =
            tokio::fs::File::open(&path).await.map_err(|source| content_err(ContentError::Io { path, source }))?;
        let sent = Arc::new(AtomicU64::new(0));
        let reader = Counting { inner: file, sent: sent.clone() };
        let push = client.push_blob(target, digest, total, reader, from);
        tokio::pin!(push);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let outcome = loop {
            tokio::select! {
                outcome = &mut push => break outcome?,
                _ = tick.tick() => {
                    let done = sent.load(Ordering::Relaxed);
                    if done > 0 {
                        progress.event(&PushEvent::Pushing { digest: digest.clone(), done, total });
                    }
                }
            }
        };
        let digest = digest.clone();
        progress.event(&match (outcome, from) {
            (BlobPush::Existed, _) => PushEvent::Exists { digest },
            (BlobPush::Mounted, Some(from)) => PushEvent::Mounted { digest, from: from.clone() },
            _ => PushEvent::Pushed { digest },
        });
        Ok(())
    }
}

/// Another repository of `target`'s registry that an image of the store (`images`) came
/// from and that has blob `digest`, to mount it from.
fn mount_source(images: &[ImageRecord], target: &ImageRef, digest: &Digest) -> Option<RepoName> {
    images.iter().find_map(|image| {
        let source = image.image_ref().ok()?;
        let same_registry = source.registry() == target.registry() && source.repository() != target.repository();
        (same_registry && image.blobs().any(|d| d == digest)).then(|| source.repository().clone())
    })
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    sent: Arc<AtomicU64>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.sent.fetch_add(read as u64, Ordering::Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::manifest::Platform;

    fn image(reference: &str, blobs: &[&Digest]) -> ImageRecord {
        ImageRecord {
            reference: reference.into(),
            manifest: Digest::sha256_of(reference.as_bytes()),
            media_type: shared::media_type::OCI_MANIFEST.into(),
            manifest_size: 1,
            index: None,
            platform: Platform::host(),
            config: blobs[0].clone(),
            layers: Vec::new(),
            created: None,
            unpacked_size: 0,
            pulled_at: 0,
        }
    }

    #[test]
    fn mounts_only_from_another_repository_of_the_same_registry() {
        let blob = Digest::sha256_of(b"config");
        let other = Digest::sha256_of(b"other");
        let target: ImageRef = "registry.lan:5000/team/app:v2".parse().unwrap();
        let images = [
            image("registry.lan:5000/team/app:v1", &[&blob]),
            image("elsewhere.lan/team/base:v1", &[&blob]),
            image("registry.lan:5000/team/base:v1", &[&other]),
        ];
        assert_eq!(mount_source(&images, &target, &blob), None, "same repository, or another registry");
        let images = [image("registry.lan:5000/team/base:v1", &[&blob]), images[1].clone()];
        assert_eq!(mount_source(&images, &target, &blob).map(|r| r.to_string()), Some("team/base".into()));
        assert_eq!(mount_source(&images, &target, &other), None);
    }
}
