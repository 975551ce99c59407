//! Pushing: blob existence checks, cross-repository mounts, monolithic and chunked blob
//! uploads, and manifest `PUT` (distribution spec.md, "Pushing blobs", "Mounting a blob
//! from another repository", "Pushing manifests").

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::auth::Scope;
use super::{shown, status_error, Client, ClientError, Payload, Target};
use crate::digest::Digest;
use crate::image_ref::ImageRef;
use crate::name::{Reference, RepoName};

/// How [`Client::push_blob`] got a blob into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository had it already (nothing was sent).
    Existed,
    /// It was mounted from the other repository.
    Mounted,
    /// It was uploaded.
    Uploaded,
}

/// What a mount attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// The blob is now in the repository.
    Mounted,
    /// The registry did not mount it and opened an upload session instead, at this URL.
    Upload(Url),
}

impl Client {
    /// True when `image`'s repository has the blob `digest` (a `HEAD`).
    pub async fn blob_exists(&self, image: &ImageRef, digest: &Digest) -> Result<bool, ClientError> {
        let path = format!("/v2/{}/blobs/{digest}", image.repository());
        let response =
            self.push_request(image, Method::HEAD, Target::Path(path), None, HeaderMap::new(), Payload::Empty).await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => {
                let url = response.url().clone();
                Err(status_error(Method::HEAD, &url, response).await)
            }
        }
    }

    /// Asks the registry to mount blob `digest` from repository `from` (on the same
    /// registry) into `image`'s repository.
    pub async fn mount_blob(&self, image: &ImageRef, from: &RepoName, digest: &Digest) -> Result<Mount, ClientError> {
        let path = format!("/v2/{}/blobs/uploads/?mount={digest}&from={from}", image.repository());
        let response = self
            .push_request(image, Method::POST, Target::Path(path), Some(from), HeaderMap::new(), Payload::Empty)
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Upload(location(&response)?)),
            _ => {
                let url = response.url().clone();
                Err(status_error(Method::POST, &url, response).await)
            }
        }
    }

    /// Pushes the blob `digest` of `size` bytes read from `data`, unless the repository has
    /// it already. With `mount_from`, tries a cross-repository mount first. Blobs up to
    /// [`super::ClientConfig::chunk_size`] go in one `PUT`, larger ones in `PATCH` chunks.
    /// Says which of these happened.
    pub async fn push_blob<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        image: &ImageRef,
        digest: &Digest,
        size: u64,
        mut data: R,
        mount_from: Option<&RepoName>,
    ) -> Result<BlobPush, ClientError> {
        if self.blob_exists(image, digest).await? {
            return Ok(BlobPush::Existed);
        }
        let session = match mount_from {
            Some(from) => match self.mount_blob(image, from, digest).await? {
                Mount::Mounted => return Ok(BlobPush::Mounted),
                Mount::Upload(url) => url,
            },
            None => self.start_upload(image).await?,
        };
        let chunk = self.config.chunk_size.max(1);
        if size <= chunk as u64 {
            let stream = tokio_util::io::ReaderStream::new(data.take(size));
            let body = reqwest::Body::wrap_stream(stream);
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            self.finish_upload(image, session, digest, headers, Payload::Stream(Some(body))).await?;
            return Ok(BlobPush::Uploaded);
        }
        let mut session = session;
        let mut offset = 0u64;
        let mut buf = vec![0u8; chunk];
        while offset < size {
            let want = chunk.min((size - offset) as usize);
            data.read_exact(&mut buf[..want])
                .await
                .map_err(|source| ClientError::Read { digest: digest.clone(), source })?;
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_LENGTH, HeaderValue::from(want));
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            let range = format!("{offset}-{}", offset + want as u64 - 1);
            headers.insert(CONTENT_RANGE, HeaderValue::from_str(&range).unwrap_or(HeaderValue::from_static("0-0")));
            let body = Payload::Bytes(Bytes::copy_from_slice(&buf[..want]));
            let response =
                self.push_request(image, Method::PATCH, Target::Url(session.clone()), None, headers, body).await?;
            if response.status() != StatusCode::ACCEPTED {
                let url = response.url().clone();
                return Err(status_error(Method::PATCH, &url, response).await);
            }
            session = location(&response)?;
            offset += want as u64;
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
        self.finish_upload(image, session, digest, headers, Payload::Empty).await?;
        Ok(BlobPush::Uploaded)
    }

    /// Pushes `data` as a blob and returns its SHA-256 digest.
    pub async fn push_blob_bytes(&self, image: &ImageRef, data: Bytes) -> Result<Digest, ClientError> {
        let digest = Digest::sha256_of(&data);
        let size = data.len() as u64;
        self.push_blob(image, &digest, size, std::io::Cursor::new(data), None).await?;
        Ok(digest)
    }

    /// Puts a manifest under `reference` (a tag, or its own digest) and returns its digest.
    pub async fn push_manifest(
        &self,
        image: &ImageRef,
        reference: &Reference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, ClientError> {
        let digest = Digest::sha256_of(&bytes);
        let path = format!("/v2/{}/manifests/{reference}", image.repository());
        let mut headers = HeaderMap::new();
        let content_type = HeaderValue::from_str(media_type)
            .map_err(|e| ClientError::Protocol { url: path.clone(), message: format!("bad media type: {e}") })?;
        headers.insert(CONTENT_TYPE, content_type);
        let response =
            self.push_request(image, Method::PUT, Target::Path(path), None, headers, Payload::Bytes(bytes)).await?;
        if response.status() != StatusCode::CREATED {
            let url = response.url().clone();
            return Err(status_error(Method::PUT, &url, response).await);
        }
        Ok(digest)
    }

    async fn start_upload(&self, image: &ImageRef) -> Result<Url, ClientError> {
        let path = format!("/v2/{}/blobs/uploads/", image.repository());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
        let response =
            self.push_request(image, Method::POST, Target::Path(path), None, headers, Payload::Empty).await?;
        if response.status() != StatusCode::ACCEPTED {
            let url = response.url().clone();
            return Err(status_error(Method::POST, &url, response).await);
        }
        location(&response)
    }

    async fn finish_upload(
        &self,
        image: &ImageRef,
        mut session: Url,
        digest: &Digest,
        headers: HeaderMap,
        body: Payload,
    ) -> Result<(), ClientError> {
        session.query_pairs_mut().append_pair("digest", &digest.to_string());
        let response = self.push_request(image, Method::PUT, Target::Url(session), None, headers, body).await?;
        if response.status() != StatusCode::CREATED {
            let url = response.url().clone();
            return Err(status_error(Method::PUT, &url, response).await);
        }
        Ok(())
    }

    async fn push_request(
        &self,
        image: &ImageRef,
        method: Method,
        target: Target,
        mount_from: Option<&RepoName>,
        headers: HeaderMap,
        body: Payload,
    ) -> Result<reqwest::Response, ClientError> {
        let mut scope = Scope::push(image.repository().as_str());
        if let Some(from) = mount_from {
            scope = scope.and_pull(from.as_str());
        }
        self.send(image, method, target, &scope, headers, body).await
    }
}

/// The absolute URL of a response's `Location` (upload sessions may give a relative one).
fn location(response: &reqwest::Response) -> Result<Url, ClientError> {
    let url = response.url();
    let value = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
        ClientError::Protocol { url: shown(url), message: format!("{} without a Location header", response.status()) }
    })?;
    url.join(value)
        .map_err(|e| ClientError::Protocol { url: shown(url), message: format!("bad Location {value:?}: {e}") })
}
