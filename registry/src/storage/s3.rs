//! The S3 driver: objects are S3 objects below an optional key prefix in one bucket.
//!
//! Small objects (links, tags, manifests, upload state) are single `PutObject`s, which S3
//! makes visible atomically; create-only writes use `If-None-Match: *`.
//!
//! Multipart uploads map to S3 multipart uploads. The driver keeps nothing of them between
//! writes: each write returns its state as the resume text ([`Written::resume`], JSON) that
//! the caller records with the upload's length, in storage, and hands to the next write, so
//! any replica can continue an upload another started, and a chunk costs one state write
//! (the caller's). The resume text holds the S3 upload id, the key its object will have, the
//! parts uploaded so far and the "tail":
//! - The tail is what is left of the bytes after the last part: fewer than S3's 5 MiB minimum
//!   part, kept as its own small object `<upload>.tail.<n>` (never in a process's memory
//!   between requests), and sent ahead of the next write's bytes, or as the last part on
//!   completion.
//! - A write the caller never recorded is rolled back by writing again from the recorded
//!   point: its parts are uploaded again under the same numbers (or left out of the
//!   completion), and its tail is never read. A tail a write replaced is deleted by the next
//!   write (which knows the caller recorded the replacing one); completing or aborting the
//!   upload deletes every tail left, those of unrecorded writes included (listed by prefix).
//!
//! A write cuts the tail and its body into parts of the configured part size; the bytes left
//! at the end form one last part when they are at least 5 MiB (a write of one part and a bit
//! sends them with it, as one larger part), else the new tail. When the body's length is
//! announced ([`Storage::write_part_sized`]) every part's size is known before its bytes
//! arrive, so each `UploadPart` goes out as soon as its first bytes do and carries them on as
//! they come: a write ends shortly after its last byte arrives, instead of a part's upload
//! time later. A body of unknown length is held a part at a time and each part sent once
//! complete. Either way each part's request runs on its own task, at most
//! `PARTS_IN_FLIGHT` (3) at once, and a part's bytes are held until its request is done (a
//! retry sends them again), so a write holds at most that many parts in memory (and, for a
//! body of unknown length, the one it is filling). Parts go out as `UNSIGNED-PAYLOAD` (the
//! SDK hashes only bodies it holds whole, which cost a second SHA-256 of every byte): on an
//! `https` endpoint TLS protects them on the way, as for the AWS CLI's uploads; on plain
//! `http` only TCP's checksums do.
//!
//! Completing an upload costs a constant number of requests whatever the blob's size: the
//! tail as the last part, `CompleteMultipartUpload`, and a small *link object* at the
//! destination path naming the data object (`berth-link` metadata) and its size
//! (`berth-size`). There is no server-side copy. Reads and stats follow links; links never
//! change once written, so the driver remembers the ones it has seen.
//!
//! Small objects (at most `SMALL_OBJECT` bytes: upload state, links, tags) that this process
//! wrote or read are remembered with their ETag. Reading one again costs a `HeadObject`, and
//! the remembered bytes are used while the ETag still matches; only a changed object (written
//! meanwhile by another replica) is fetched again. A read thus never sees older bytes than a
//! plain `GetObject` would, and the upload state each chunk of a push rewrites and reads back
//! is checked without its body coming back (a response without a body also avoids a 40 ms
//! stall some servers cause by sending a response's headers and body in two TCP segments).

use std::collections::HashMap;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::task::JoinSet;

use super::{check_path, ByteStream, Meta, Storage, StorageError, Written};
use crate::config::S3Config;

mod own;
mod parts;
mod resume;
mod small;
use parts::{joined, PartBody, PartBytes, PartTarget, PartWriter};
use resume::{Multipart, Part, Tail};
use small::SmallObjects;

/// S3's smallest part but the last.
const MIN_PART: usize = 5 * 1024 * 1024;
/// Parts uploaded at once per write.
const PARTS_IN_FLIGHT: usize = 3;
/// Metadata naming the data object a link points to.
const LINK_META: &str = "berth-link";
/// Metadata holding the linked object's size.
const SIZE_META: &str = "berth-size";

/// Counts the HTTP requests the SDK sends, by S3 operation (retries included), for
/// `/metrics` and for proving how many requests a push costs.
#[derive(Debug, Default)]
struct RequestCounter(Mutex<std::collections::BTreeMap<String, u64>>);

#[derive(Debug, Clone)]
struct CountRequests(std::sync::Arc<RequestCounter>);

impl aws_smithy_runtime_api::client::interceptors::Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "berth-request-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(meta) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>() {
            let mut counts = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
            *counts.entry(meta.name().to_string()).or_default() += 1;
        }
        Ok(())
    }
}

/// A driver storing objects in an S3 bucket.
pub struct S3Storage {
    client: Client,
    requests: std::sync::Arc<RequestCounter>,
    bucket: String,
    /// Key prefix with a trailing `/`, or empty.
    prefix: String,
    part_size: usize,
    /// Expiry of presigned blob URLs, when blob GETs are redirected.
    redirect: Option<Duration>,
    /// Link key → (data key, size); links are immutable.
    links: Mutex<HashMap<String, (String, u64)>>,
    /// Small objects this process wrote or read, by key, with their ETags.
    small: Mutex<SmallObjects>,
}

fn backend(path: &str, msg: impl std::fmt::Display) -> StorageError {
    StorageError::Io { path: path.to_string(), source: std::io::Error::other(msg.to_string()) }
}

/// Maps an SDK error: 404s and "no such key" become `NotFound`.
fn sdk_err<E, R>(path: &str, e: SdkError<E, R>) -> StorageError
where
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: HttpStatus + std::fmt::Debug,
    SdkError<E, R>: std::error::Error,
{
    let status = e.raw_response().map(|r| r.status_code());
    let code = e.code().map(str::to_string);
    if status == Some(404) || matches!(code.as_deref(), Some("NoSuchKey" | "NotFound" | "NoSuchUpload")) {
        return StorageError::NotFound(path.to_string());
    }
    let detail = match (&code, e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        _ => aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
    };
    backend(path, detail)
}

/// The HTTP status of a raw response, whatever its type.
pub trait HttpStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn is_precondition_failed<E: ProvideErrorMetadata, R: HttpStatus>(e: &SdkError<E, R>) -> bool {
    e.raw_response().is_some_and(|r| r.status_code() == 412) || e.code() == Some("PreconditionFailed")
}

impl S3Storage {
    /// Connects to the bucket `config` names. Static keys are used when given; otherwise the
    /// SDK's usual credential chain (environment, profile, instance metadata) applies.
    pub async fn new(config: &S3Config) -> Result<Self, StorageError> {
        use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).region(Region::new(config.region.clone()));
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "berth-config",
            ));
        }
        let shared = loader.load().await;
        let requests = std::sync::Arc::new(RequestCounter::default());
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .interceptor(CountRequests(requests.clone()))
            .force_path_style(config.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let prefix = config.prefix.trim_matches('/');
        Ok(S3Storage {
            client: Client::from_conf(s3),
            requests,
            bucket: config.bucket.clone(),
            prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
            part_size: config.part_size_mib.max(5) * 1024 * 1024,
            redirect: config.redirect.then(|| Duration::from_secs(config.redirect_expiry_secs)),
            links: Mutex::new(HashMap::new()),
            small: Mutex::new(SmallObjects::default()),
        })
    }

    /// Checks that the bucket exists and the credentials can reach it.
    pub async fn check_bucket(&self) -> Result<(), StorageError> {
        let path = format!("bucket {}", self.bucket);
        self.client.head_bucket().bucket(&self.bucket).send().await.map_err(|e| sdk_err(&path, e))?;
        Ok(())
    }

    /// The SDK client, for tests and set-up (creating the bucket).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn key(&self, path: &str) -> Result<String, StorageError> {
        check_path(path)?;
        Ok(format!("{}{path}", self.prefix))
    }

    fn cached_link(&self, key: &str) -> Option<(String, u64)> {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn remember_link(&self, key: &str, target: &str, size: u64) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if links.len() > 100_000 {
            links.clear();
        }
        links.insert(key.to_string(), (target.to_string(), size));
    }

    fn small_objects(&self) -> std::sync::MutexGuard<'_, SmallObjects> {
        self.small.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The remembered bytes of the object at `key` when its ETag, asked with a `HeadObject`,
    /// is still the remembered one; `Ok(None)` when nothing is remembered or the object
    /// changed.
    async fn read_remembered(&self, path: &str, key: &str) -> Result<Option<Bytes>, StorageError> {
        let Some((etag, data)) = self.small_objects().entries.get(key).cloned() else { return Ok(None) };
        let out = match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) => {
                let e = sdk_err(path, e);
                if e.is_not_found() {
                    self.small_objects().remove(key);
                }
                return Err(e);
            }
        };
        if out.e_tag() == Some(etag.as_str()) && Self::link_of(out.metadata()).is_none() {
            return Ok(Some(data));
        }
        self.small_objects().remove(key);
        Ok(None)
    }

    fn link_of(meta: Option<&HashMap<String, String>>) -> Option<(String, u64)> {
        let meta = meta?;
        let target = meta.get(LINK_META)?;
        let size = meta.get(SIZE_META)?.parse().ok()?;
        Some((target.clone(), size))
    }

    async fn get_object(
        &self,
        path: &str,
        key: &str,
        range: Option<&Range<u64>>,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StorageError> {
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(r) = range {
            req = req.range(format!("bytes={}-{}", r.start, r.end.saturating_sub(1)));
        }
        req.send().await.map_err(|e| sdk_err(path, e))
    }

    fn stream(body: SdkBody, path: String) -> ByteStream {
        futures_util::stream::unfold((body, path), |(mut body, path)| async move {
            match body.next().await {
                None => None,
                Some(Ok(bytes)) => Some((Ok(bytes), (body, path))),
                Some(Err(e)) => Some((Err(backend(&path, e)), (body, path))),
            }
        })
        .boxed()
    }

    /// Sends the part `n` of `size` bytes, read from `bytes` as they arrive, and returns its
    /// record. The request runs on its own task, so it makes progress while the caller goes on
    /// receiving; its body is streamed (and so signed as `UNSIGNED-PAYLOAD`: the SDK hashes
    /// only bodies it holds whole), and a retry reads the part again from its first byte.
    fn spawn_part(
        &self,
        tasks: &mut JoinSet<Result<Part, StorageError>>,
        to: &PartTarget,
        n: i32,
        size: u64,
        bytes: Arc<PartBytes>,
    ) {
        let body = aws_smithy_types::body::SdkBody::retryable(move || {
            aws_smithy_types::body::SdkBody::from_body_1_x(PartBody { bytes: bytes.clone(), next: 0, left: size })
        });
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&to.key)
            .upload_id(&to.upload_id)
            .part_number(n)
            .content_length(size as i64)
            .body(SdkBody::new(body));
        let path = to.path.clone();
        tasks.spawn(async move {
            let out = request.send().await.map_err(|e| sdk_err(&path, e))?;
            let etag = out.e_tag().ok_or_else(|| backend(&path, "UploadPart returned no ETag"))?;
            Ok(Part { n, etag: etag.to_string(), size })
        });
    }

    /// Writes `body` (`len` bytes, when known) into the multipart upload `upload` from
    /// `offset`, continuing from `resume`; see [`Storage::write_part`] and the module's doc.
    async fn write(
        &self,
        upload: &str,
        resume: &str,
        offset: u64,
        len: Option<u64>,
        mut body: ByteStream,
    ) -> Result<Written, StorageError> {
        self.key(upload)?;
        let base = if resume.is_empty() && offset == 0 {
            let key = format!("_data/{:032x}", rand::random::<u128>());
            let out = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(format!("{}{key}", self.prefix))
                .send()
                .await
                .map_err(|e| sdk_err(upload, e))?;
            let upload_id = out.upload_id().ok_or_else(|| backend(upload, "no upload id"))?.to_string();
            Multipart { key, upload_id, parts: Vec::new(), tail: None, total: 0, replaced: None }
        } else {
            Multipart::parse(upload, resume)?
        };
        if base.total != offset {
            return Err(backend(upload, format!("upload holds {} bytes, expected {offset}", base.total)));
        }
        let mut parts = base.parts.clone();
        let carried = match &base.tail {
            Some(tail) => self.read(&tail.key).await?,
            None => Bytes::new(),
        };
        let to = PartTarget {
            path: upload.to_string(),
            key: format!("{}{}", self.prefix, base.key),
            upload_id: base.upload_id.clone(),
        };
        let mut writer = PartWriter {
            s3: self,
            to: &to,
            next_n: parts.len() as i32 + 1,
            ahead: len.map(|l| l + carried.len() as u64),
            open: None,
            tasks: JoinSet::new(),
            done: Vec::new(),
        };
        writer.push(carried).await?;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            written += chunk.len() as u64;
            if len.is_some_and(|l| written > l) {
                return Err(StorageError::Body(format!("more than the {} bytes announced", len.unwrap_or(0))));
            }
            writer.push(chunk).await?;
        }
        if let Some(l) = len.filter(|&l| l != written) {
            return Err(StorageError::Body(format!("{written} bytes of the {l} announced")));
        }
        let (new_parts, held) = writer.finish().await?;
        parts.extend(new_parts);
        let tail = if held.is_empty() {
            None
        } else if written == 0 && base.tail.is_some() {
            // Nothing new: the tail is the one carried.
            base.tail.clone()
        } else {
            let key = format!("{upload}.tail.{:016x}", rand::random::<u64>());
            let size = held.len() as u64;
            self.put(&key, held).await?;
            Some(Tail { key, size })
        };
        // The caller recorded `base`, so the tail `base` replaced is needed no more.
        if let Some(old) = base.replaced.as_ref().filter(|&t| Some(t) != tail.as_ref()) {
            if let Ok(full) = self.key(&old.key) {
                let _ = self.delete_key(&old.key, &full).await;
            }
        }
        let replaced = base.tail.clone().filter(|t| Some(t) != tail.as_ref());
        let mp = Multipart { key: base.key, upload_id: base.upload_id, parts, tail, total: offset + written, replaced };
        let resume = serde_json::to_string(&mp).map_err(|e| backend(upload, e))?;
        Ok(Written { len: written, resume })
    }

    /// Deletes the upload's small objects: every tail, those of writes the caller never
    /// recorded included (so they are listed, not taken from the resume text).
    async fn delete_tails(&self, upload: &str) -> Result<(), StorageError> {
        let keys = self.list_keys(upload, &format!("{}.tail.", self.key(upload)?)).await?;
        self.delete_keys(upload, &keys).await
    }

    /// Deletes the objects at `keys` (full keys), a thousand per request.
    async fn delete_keys(&self, path: &str, keys: &[String]) -> Result<(), StorageError> {
        for batch in keys.chunks(1000) {
            self.small_objects().remove_all(batch);
            let ids: Result<Vec<_>, _> = batch.iter().map(|k| ObjectIdentifier::builder().key(k).build()).collect();
            let delete = Delete::builder().set_objects(Some(ids.map_err(|e| backend(path, e))?)).quiet(true).build();
            self.client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete.map_err(|e| backend(path, e))?)
                .send()
                .await
                .map_err(|e| sdk_err(path, e))?;
        }
        Ok(())
    }

    async fn delete_key(&self, path: &str, key: &str) -> Result<(), StorageError> {
        self.small_objects().remove(key);
        self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(|e| sdk_err(path, e))?;
        Ok(())
    }

    /// Every key below `prefix` (a full key prefix), recursively.
    async fn list_keys(&self, path: &str, prefix: &str) -> Result<Vec<String>, StorageError> {
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
    async fn sum_sizes(&self) -> Result<u64, StorageError> {
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
    async fn list_from(&self, prefix: &str, after: Option<&str>) -> Result<Vec<String>, StorageError> {
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

    /// The presigned URL a client can fetch the object at `path` from directly, valid for
    /// `expires`.
    pub async fn presigned_get(&self, path: &str, expires: Duration) -> Result<String, StorageError> {
        let key = self.key(path)?;
        let target = match self.cached_link(&key) {
            Some((target, _)) => format!("{}{target}", self.prefix),
            None => {
                self.stat(path).await?;
                match self.cached_link(&key) {
                    Some((target, _)) => format!("{}{target}", self.prefix),
                    None => key,
                }
            }
        };
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires).map_err(|e| backend(path, e))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(target)
            .presigned(config)
            .await
            .map_err(|e| sdk_err(path, e))?;
        Ok(req.uri().to_string())
    }
}

#[async_trait]
impl Storage for S3Storage {
    async fn get(&self, path: &str, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        let key = self.key(path)?;
        if let Some((target, _)) = self.cached_link(&key) {
            let out = self.get_object(path, &format!("{}{target}", self.prefix), range.as_ref()).await?;
            return Ok(Self::stream(out.body, path.to_string()));
        }
        let out = self.get_object(path, &key, range.as_ref()).await?;
        if let Some((target, size)) = Self::link_of(out.metadata()) {
            self.remember_link(&key, &target, size);
            let out = self.get_object(path, &format!("{}{target}", self.prefix), range.as_ref()).await?;
            return Ok(Self::stream(out.body, path.to_string()));
        }
        Ok(Self::stream(out.body, path.to_string()))
    }

    async fn read(&self, path: &str) -> Result<Bytes, StorageError> {
        let key = self.key(path)?;
        let link = self.cached_link(&key);
        if link.is_none() {
            if let Some(data) = self.read_remembered(path, &key).await? {
                return Ok(data);
            }
        }
        // The ETag of a plain object (not a link), whose bytes may then be remembered.
        let mut etag = None;
        let mut s = match link {
            Some(_) => self.get(path, None).await?,
            None => {
                let out = self.get_object(path, &key, None).await?;
                if let Some((target, size)) = Self::link_of(out.metadata()) {
                    self.remember_link(&key, &target, size);
                    let out = self.get_object(path, &format!("{}{target}", self.prefix), None).await?;
                    Self::stream(out.body, path.to_string())
                } else {
                    etag = out.e_tag().map(str::to_string);
                    Self::stream(out.body, path.to_string())
                }
            }
        };
        let mut out = BytesMut::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        let data = out.freeze();
        if let Some(etag) = etag {
            self.small_objects().insert(&key, Some(&etag), &data);
        }
        Ok(data)
    }

    async fn stat(&self, path: &str) -> Result<Meta, StorageError> {
        let key = self.key(path)?;
        let out =
            self.client.head_object().bucket(&self.bucket).key(&key).send().await.map_err(|e| sdk_err(path, e))?;
        let modified =
            out.last_modified().and_then(|t| SystemTime::try_from(*t).ok()).unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some((target, size)) = Self::link_of(out.metadata()) {
            self.remember_link(&key, &target, size);
            return Ok(Meta { size, modified });
        }
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        Ok(Meta { size, modified })
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<(), StorageError> {
        let key = self.key(path)?;
        // Forgotten first: should the write fail, the object may or may not have changed.
        self.small_objects().remove(&key);
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(SdkBody::from(data.clone()))
            .send()
            .await
            .map_err(|e| sdk_err(path, e))?;
        self.small_objects().insert(&key, out.e_tag(), &data);
        Ok(())
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool, StorageError> {
        let key = self.key(path)?;
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            .body(SdkBody::from(data.clone()))
            .send()
            .await;
        match result {
            Ok(out) => {
                self.small_objects().insert(&key, out.e_tag(), &data);
                Ok(true)
            }
            Err(e) if is_precondition_failed(&e) => Ok(false),
            Err(e) => Err(sdk_err(path, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.list_from(prefix, None).await
    }

    async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<String>, StorageError> {
        // Servers differ on a folder (common prefix) that sorts before the start key while
        // keys below it follow it (`a/` for `a/b`: s3s-fs leaves it out, AWS lists it), so
        // the listing starts after the first component of `after` less its last character:
        // every child that may hold something after `after` sorts after that.
        let first = after.split('/').next().unwrap_or_default();
        let start = first.char_indices().last().map(|(i, _)| &first[..i]).filter(|s| !s.is_empty());
        let names = self.list_from(prefix, start).await?;
        Ok(names.into_iter().filter(|c| super::may_follow(c, after)).collect())
    }

    async fn delete(&self, path: &str) -> Result<bool, StorageError> {
        match self.stat(path).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        }
        let key = self.key(path)?;
        self.delete_key(path, &key).await?;
        self.links.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        Ok(true)
    }

    async fn delete_all(&self, prefix: &str) -> Result<(), StorageError> {
        let folder = format!("{}/", self.key(prefix.trim_end_matches('/'))?);
        let keys = self.list_keys(prefix, &folder).await?;
        self.delete_keys(prefix, &keys).await?;
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.retain(|k, _| !k.starts_with(&folder));
        Ok(())
    }

    async fn write_part(
        &self,
        upload: &str,
        resume: &str,
        offset: u64,
        body: ByteStream,
    ) -> Result<Written, StorageError> {
        self.write(upload, resume, offset, None, body).await
    }

    async fn write_part_sized(
        &self,
        upload: &str,
        resume: &str,
        offset: u64,
        len: Option<u64>,
        body: ByteStream,
    ) -> Result<Written, StorageError> {
        self.write(upload, resume, offset, len, body).await
    }

    async fn complete(&self, upload: &str, resume: &str, dest: &str) -> Result<(), StorageError> {
        let dest_key = self.key(dest)?;
        let mut mp = Multipart::parse(upload, resume)?;
        let data_key = format!("{}{}", self.prefix, mp.key);
        if let Some(tail) = &mp.tail {
            let data = self.read(&tail.key).await?;
            let to = PartTarget { path: upload.to_string(), key: data_key.clone(), upload_id: mp.upload_id.clone() };
            let mut tasks = JoinSet::new();
            let size = data.len() as u64;
            self.spawn_part(&mut tasks, &to, mp.parts.len() as i32 + 1, size, PartBytes::whole(vec![data]));
            mp.parts.push(joined(tasks.join_next().await, upload)?);
        }
        if mp.parts.is_empty() {
            // S3 needs at least one part: an empty blob is a plain empty object.
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&data_key)
                .upload_id(&mp.upload_id)
                .send()
                .await
                .map_err(|e| sdk_err(upload, e))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&data_key)
                .body(SdkBody::from(Bytes::new()))
                .send()
                .await
                .map_err(|e| sdk_err(upload, e))?;
        } else {
            let parts: Vec<CompletedPart> =
                mp.parts.iter().map(|p| CompletedPart::builder().part_number(p.n).e_tag(&p.etag).build()).collect();
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&data_key)
                .upload_id(&mp.upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| sdk_err(upload, e))?;
        }
        let size: u64 = mp.parts.iter().map(|p| p.size).sum();
        self.small_objects().remove(&dest_key);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&dest_key)
            .metadata(LINK_META, &mp.key)
            .metadata(SIZE_META, size.to_string())
            .body(SdkBody::from(Bytes::new()))
            .send()
            .await
            .map_err(|e| sdk_err(dest, e))?;
        self.remember_link(&dest_key, &mp.key, size);
        self.delete_tails(upload).await
    }

    async fn sweep_own(
        &self,
        sessions: &[String],
        before: SystemTime,
        dry_run: bool,
    ) -> Result<super::OwnSwept, StorageError> {
        self.sweep_data(sessions, before, dry_run).await
    }

    async fn bytes_stored(&self) -> Result<Option<u64>, StorageError> {
        self.sum_sizes().await.map(Some)
    }

    fn request_counts(&self) -> Vec<(String, u64)> {
        let counts = self.requests.0.lock().unwrap_or_else(|p| p.into_inner());
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>, StorageError> {
        match self.redirect {
            Some(expires) => self.presigned_get(path, expires).await.map(Some),
            None => Ok(None),
        }
    }

    async fn abort(&self, upload: &str, resume: &str) -> Result<(), StorageError> {
        // Without a recorded write there is no S3 upload known to abort, but an unrecorded
        // write may have left a tail.
        if !resume.is_empty() {
            let mp = Multipart::parse(upload, resume)?;
            let data_key = format!("{}{}", self.prefix, mp.key);
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&data_key)
                .upload_id(&mp.upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                let e = sdk_err(upload, e);
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
        self.delete_tails(upload).await
    }
}
