//! Pulling: manifests (resolving an index to one platform) and blobs, each verified
//! against its digest (distribution spec.md, "Pulling manifests" and "Pulling blobs").

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::auth::Scope;
use super::{read_limited, shown, status_error, Client, ClientError, Payload, Target};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::image_ref::ImageRef;
use crate::manifest::{Descriptor, Manifest, Platform};
use crate::name::Reference;
use crate::{media_type, platform};

/// The manifest types berth can pull, in the order it prefers them.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// A manifest as the registry sent it, with its digest.
#[derive(Debug, Clone)]
pub struct PulledManifest {
    /// The bytes, exactly as received (the digest is of these).
    pub bytes: Vec<u8>,
    /// The digest: the one asked for when pulled by digest (and verified), else the SHA-256
    /// of the bytes.
    pub digest: Digest,
    /// What the manifest says.
    pub manifest: Manifest,
}

impl PulledManifest {
    /// A descriptor for this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.manifest.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            artifact_type: None,
            annotations: None,
            platform: None,
            urls: None,
        }
    }
}

/// An image manifest for one platform, and the index it was chosen from, if any.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The index or manifest list the reference named, when it named one.
    pub index: Option<PulledManifest>,
    /// The image manifest.
    pub manifest: PulledManifest,
    /// The platform of the chosen entry (from the index), when there was an index.
    pub platform: Option<Platform>,
}

/// What a `HEAD` of a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// Its digest (`Docker-Content-Digest`), when the registry sends it.
    pub digest: Option<Digest>,
}

/// A blob being downloaded, unverified: the caller hashes it (the registry's mirror stores it
/// through its upload path, which checks the digest before anything becomes visible).
pub struct BlobDownload {
    /// The length the registry announced.
    pub size: Option<u64>,
    /// The bytes.
    pub stream: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, ClientError>>,
}

impl Client {
    /// Asks for the digest of the manifest `reference` of `image`'s repository with a `HEAD`
    /// (nothing is downloaded).
    pub async fn manifest_head(&self, image: &ImageRef, reference: &Reference) -> Result<ManifestHead, ClientError> {
        let what = image.with_reference(reference.clone()).familiar();
        let path = format!("/v2/{}/manifests/{reference}", image.repository());
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_MANIFESTS));
        let scope = Scope::pull(image.repository().as_str());
        let response = self.send(image, Method::HEAD, Target::Path(path), &scope, headers, Payload::Empty).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(ClientError::NotFound { registry: image.registry().into(), what }),
            _ => {
                let url = response.url().clone();
                return Err(status_error(Method::HEAD, &url, response).await);
            }
        }
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<Digest>().ok());
        Ok(ManifestHead { digest })
    }

    /// The size of blob `digest` of `image`'s repository, asked with a `HEAD`.
    pub async fn blob_head(&self, image: &ImageRef, digest: &Digest) -> Result<Option<u64>, ClientError> {
        let path = format!("/v2/{}/blobs/{digest}", image.repository());
        let scope = Scope::pull(image.repository().as_str());
        let response =
            self.send(image, Method::HEAD, Target::Path(path), &scope, HeaderMap::new(), Payload::Empty).await?;
        match response.status() {
            StatusCode::OK => Ok(response.content_length()),
            StatusCode::NOT_FOUND => Err(ClientError::NotFound {
                registry: image.registry().into(),
                what: format!("blob {digest} of {}", image.name()),
            }),
            _ => {
                let url = response.url().clone();
                Err(status_error(Method::HEAD, &url, response).await)
            }
        }
    }

    /// Starts downloading blob `digest` of `image`'s repository, unverified (see
    /// [`BlobDownload`]; [`Client::blob_to`] verifies).
    pub async fn blob_download(&self, image: &ImageRef, digest: &Digest) -> Result<BlobDownload, ClientError> {
        let response = self.blob_response(image, digest).await?;
        let url = response.url().clone();
        let size = response.content_length();
        let stream = response
            .bytes_stream()
            .map(move |r| {
                r.map_err(|e| ClientError::Transport { method: Method::GET, url: shown(&url), source: e.without_url() })
            })
            .boxed();
        Ok(BlobDownload { size, stream })
    }

    /// Fetches the manifest `reference` of `image`'s repository. A manifest fetched by
    /// digest must hash to that digest.
    pub async fn manifest(&self, image: &ImageRef, reference: &Reference) -> Result<PulledManifest, ClientError> {
        let what = image.with_reference(reference.clone()).familiar();
        let path = format!("/v2/{}/manifests/{reference}", image.repository());
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_MANIFESTS));
        let response = self
            .send(
                image,
                Method::GET,
                Target::Path(path),
                &Scope::pull(image.repository().as_str()),
                headers,
                Payload::Empty,
            )
            .await?;
        let url = response.url().clone();
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(ClientError::NotFound { registry: image.registry().into(), what }),
            _ => return Err(status_error(Method::GET, &url, response).await),
        }
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = read_limited(response, self.config.max_manifest_bytes, &url).await?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if actual != *expected {
                    return Err(ClientError::DigestMismatch { what, expected: expected.clone(), actual });
                }
                actual
            }
            Reference::Tag(_) => Digest::of(Algorithm::Sha256, &bytes),
        };
        // Only a manifest type is a useful hint; some registries send `application/json`.
        let hint = content_type
            .as_deref()
            .map(|t| t.split(';').next().unwrap_or("").trim())
            .filter(|t| media_type::is_index(t) || media_type::is_image_manifest(t));
        let manifest = Manifest::parse(&bytes, hint).map_err(|source| ClientError::Manifest { what, source })?;
        Ok(PulledManifest { bytes, digest, manifest })
    }

    /// Fetches the image manifest `image` names, for `platform` when it names an index or
    /// manifest list. The chosen entry is fetched by digest (and so verified), and must be
    /// an image manifest of the size the index gave.
    pub async fn resolve(&self, image: &ImageRef, platform: &Platform) -> Result<ResolvedImage, ClientError> {
        let top = self.manifest(image, &image.reference()).await?;
        if !top.manifest.is_index() {
            return Ok(ResolvedImage { index: None, manifest: top, platform: None });
        }
        let what = image.familiar();
        let entry =
            platform::select(&top.manifest.manifests, platform).cloned().ok_or_else(|| ClientError::NoPlatform {
                what: what.clone(),
                want: platform.to_string(),
                available: platform::describe(&top.manifest.manifests),
            })?;
        let child = self.manifest(image, &Reference::Digest(entry.digest.clone())).await?;
        if child.bytes.len() as u64 != entry.size {
            return Err(ClientError::SizeMismatch {
                digest: entry.digest,
                expected: entry.size,
                actual: child.bytes.len() as u64,
                too_long: false,
            });
        }
        if child.manifest.is_index() {
            return Err(ClientError::Manifest {
                what,
                source: crate::manifest::ManifestError::Invalid(format!(
                    "the entry for {platform} is another index ({}); nested indexes are not supported",
                    entry.digest
                )),
            });
        }
        Ok(ResolvedImage { index: Some(top), manifest: child, platform: entry.platform })
    }

    /// Streams the blob `descriptor` names from `image`'s repository into `out`, hashing
    /// and counting as it goes, and calls `progress` with the bytes received so far. Fails
    /// as soon as more bytes arrive than the descriptor's size, and at the end unless size
    /// and digest match. `out` has then received unverified bytes: write somewhere private
    /// and publish only after `Ok`.
    pub async fn blob_to<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        image: &ImageRef,
        descriptor: &Descriptor,
        out: &mut W,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), ClientError> {
        let digest = &descriptor.digest;
        let response = self.blob_response(image, digest).await?;
        let url = response.url().clone();
        let mut hasher = Hasher::new(digest.algorithm());
        let mut received = 0u64;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ClientError::Transport {
                method: Method::GET,
                url: shown(&url),
                source: e.without_url(),
            })?;
            received += chunk.len() as u64;
            if received > descriptor.size {
                return Err(ClientError::SizeMismatch {
                    digest: digest.clone(),
                    expected: descriptor.size,
                    actual: received,
                    too_long: true,
                });
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(|source| ClientError::Write { digest: digest.clone(), source })?;
            progress(received);
        }
        out.flush().await.map_err(|source| ClientError::Write { digest: digest.clone(), source })?;
        if received != descriptor.size {
            return Err(ClientError::SizeMismatch {
                digest: digest.clone(),
                expected: descriptor.size,
                actual: received,
                too_long: false,
            });
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(ClientError::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Fetches a small blob (an image config) whole, verified, refusing more than `limit`
    /// bytes.
    pub async fn blob_bytes(
        &self,
        image: &ImageRef,
        descriptor: &Descriptor,
        limit: usize,
    ) -> Result<Vec<u8>, ClientError> {
        if descriptor.size > limit as u64 {
            return Err(ClientError::TooLarge { what: format!("blob {}", descriptor.digest), limit });
        }
        let mut out = Vec::with_capacity(descriptor.size as usize);
        self.blob_to(image, descriptor, &mut out, &mut |_| {}).await?;
        Ok(out)
    }

    async fn blob_response(&self, image: &ImageRef, digest: &Digest) -> Result<reqwest::Response, ClientError> {
        let path = format!("/v2/{}/blobs/{digest}", image.repository());
        let response = self
            .send(
                image,
                Method::GET,
                Target::Path(path),
                &Scope::pull(image.repository().as_str()),
                HeaderMap::new(),
                Payload::Empty,
            )
            .await?;
        match response.status() {
            StatusCode::OK => Ok(response),
            StatusCode::NOT_FOUND => Err(ClientError::NotFound {
                registry: image.registry().into(),
                what: format!("blob {digest} of {}", image.name()),
            }),
            _ => {
                let url = response.url().clone();
                Err(status_error(Method::GET, &url, response).await)
            }
        }
    }
}
