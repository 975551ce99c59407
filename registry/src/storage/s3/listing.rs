//! Listings of the S3 driver: children of a folder (from a start key), every key below a
//! prefix, and the bytes of everything.

use super::{sdk_err, S3Storage};
use crate::storage::StorageError;

impl S3Storage {
    /// Every key below `prefix` (a full key prefix), recursively.
    pub(super) async fn list_keys(&self, path: &str, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix);
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let out = req.send().await.map_err(|e| sdk_err(path, e))?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            match (out.is_truncated(), out.next_continuation_token()) {
                (Some(true), Some(t)) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(keys)
    }

    /// The bytes of every object below the driver's prefix: one request per 1000 objects.
    pub(super) async fn sum_sizes(&self) -> Result<u64, StorageError> {
        let mut total = 0u64;
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_objects_v2().bucket(&self.bucket).prefix(&self.prefix);
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let out = req.send().await.map_err(|e| sdk_err("", e))?;
            total += out.contents().iter().map(|o| o.size().unwrap_or(0).max(0) as u64).sum::<u64>();
            match (out.is_truncated(), out.next_continuation_token()) {
                (Some(true), Some(t)) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(total)
    }

    /// The children of the folder `prefix`, of keys after `prefix/after` when given.
    pub(super) async fn list_from(&self, prefix: &str, after: Option<&str>) -> Result<Vec<String>, StorageError> {
        let folder = prefix.trim_end_matches('/');
        let full = if folder.is_empty() { self.prefix.clone() } else { format!("{}/", self.key(folder)?) };
        let mut names = std::collections::BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_objects_v2().bucket(&self.bucket).prefix(&full).delimiter("/");
            if let Some(after) = after {
                req = req.start_after(format!("{full}{after}"));
            }
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let out = req.send().await.map_err(|e| sdk_err(prefix, e))?;
            let keys = out.contents().iter().filter_map(|o| o.key());
            let folders = out.common_prefixes().iter().filter_map(|p| p.prefix());
            for k in keys.chain(folders) {
                // A server that ignores the delimiter returns deeper keys: keep the first part.
                if let Some(rest) = k.strip_prefix(full.as_str()) {
                    if let Some(first) = rest.split('/').next().filter(|f| !f.is_empty()) {
                        names.insert(first.to_string());
                    }
                }
            }
            match (out.is_truncated(), out.next_continuation_token()) {
                (Some(true), Some(t)) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(names.into_iter().collect())
    }
}
