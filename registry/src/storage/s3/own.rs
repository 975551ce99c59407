//! The S3 driver's objects of its own, for the collector ([`Storage::sweep_own`]): the data
//! objects behind blob links (`_data/<id>`) that no link names any more (the link was deleted,
//! or a completion raced another and lost), and multipart uploads no upload session knows
//! (a process died between creating one and recording it).
//!
//! The sessions are listed by the caller before this looks at links, and a session is deleted
//! only after its blob's link is written, so a data object being completed is named by a
//! session or by a link; one created since then is younger than `before`.

use std::collections::HashSet;
use std::time::SystemTime;

use aws_sdk_s3::error::ProvideErrorMetadata;

use super::resume::Multipart;
use super::{sdk_err, S3Storage};
use crate::paths;
use crate::storage::{OwnSwept, Storage, StorageError};

/// An object as listed: key, size, modification time.
type Listed = (String, u64, SystemTime);

impl S3Storage {
    /// Every object below the full key prefix `prefix`, with size and time.
    async fn list_objects(&self, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix);
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let page = req.send().await.map_err(|e| sdk_err(prefix, e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                let modified =
                    o.last_modified().and_then(|t| SystemTime::try_from(*t).ok()).unwrap_or(SystemTime::UNIX_EPOCH);
                out.push((key.to_string(), o.size().unwrap_or(0).max(0) as u64, modified));
            }
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(t)) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The data objects (keys without the prefix) that blob links name.
    async fn linked(&self) -> Result<HashSet<String>, StorageError> {
        let mut linked = HashSet::new();
        for (key, size, _) in self.list_objects(&format!("{}{}/", self.prefix, paths::BLOBS)).await? {
            // Links are empty objects; so are markers (which are not links).
            let Some(path) = key.strip_prefix(&self.prefix).filter(|_| size == 0 && key.ends_with("/data")) else {
                continue;
            };
            if self.cached_link(&key).is_none() {
                match self.stat(path).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                }
            }
            if let Some((target, _)) = self.cached_link(&key) {
                linked.insert(target);
            }
        }
        Ok(linked)
    }

    /// See [`Storage::sweep_own`].
    pub(super) async fn sweep_data(
        &self,
        sessions: &[String],
        before: SystemTime,
        dry_run: bool,
    ) -> Result<OwnSwept, StorageError> {
        let recorded: Vec<Multipart> =
            sessions.iter().filter_map(|s| Multipart::parse(paths::UPLOADS, s).ok()).collect();
        let mut in_use: HashSet<String> = recorded.iter().map(|m| m.key.clone()).collect();
        in_use.extend(self.linked().await?);
        let mut swept = OwnSwept::default();
        let mut doomed = Vec::new();
        for (key, size, modified) in self.list_objects(&format!("{}_data/", self.prefix)).await? {
            let own = key.strip_prefix(&self.prefix).unwrap_or(&key);
            if !in_use.contains(own) && modified < before {
                swept.objects += 1;
                swept.bytes += size;
                doomed.push(key);
            }
        }
        if !dry_run {
            self.delete_keys("_data", &doomed).await?;
        }
        let uploads: HashSet<&str> = recorded.iter().map(|m| m.upload_id.as_str()).collect();
        swept.uploads = self.abort_unknown_uploads(&uploads, before, dry_run).await?;
        Ok(swept)
    }

    /// Aborts the multipart uploads of data objects that no session recorded, begun before
    /// `before`; returns how many. A server without `ListMultipartUploads` has none to find.
    async fn abort_unknown_uploads(
        &self,
        recorded: &HashSet<&str>,
        before: SystemTime,
        dry_run: bool,
    ) -> Result<u64, StorageError> {
        let prefix = format!("{}_data/", self.prefix);
        let mut found = 0;
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let mut req = self.client.list_multipart_uploads().bucket(&self.bucket).prefix(&prefix);
            if let (Some(k), Some(u)) = (&key_marker, &id_marker) {
                req = req.key_marker(k).upload_id_marker(u);
            }
            let page = match req.send().await {
                Ok(page) => page,
                Err(e) if e.code() == Some("NotImplemented") => {
                    tracing::warn!("the S3 server cannot list multipart uploads; abandoned ones stay");
                    return Ok(0);
                }
                Err(e) => return Err(sdk_err(&prefix, e)),
            };
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else { continue };
                let started =
                    u.initiated().and_then(|t| SystemTime::try_from(*t).ok()).unwrap_or(SystemTime::UNIX_EPOCH);
                if recorded.contains(id) || started >= before {
                    continue;
                }
                found += 1;
                if !dry_run {
                    let aborted =
                        self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(id).send().await;
                    if let Err(e) = aborted.map_err(|e| sdk_err(key, e)) {
                        if !e.is_not_found() {
                            return Err(e);
                        }
                    }
                }
            }
            match (page.is_truncated(), page.next_key_marker(), page.next_upload_id_marker()) {
                (Some(true), Some(k), Some(u)) => (key_marker, id_marker) = (Some(k.to_string()), Some(u.to_string())),
                _ => break,
            }
        }
        Ok(found)
    }
}
