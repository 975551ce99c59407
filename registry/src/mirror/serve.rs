//! Reads of mirrored repositories that the cache cannot answer alone: manifests (by digest
//! when not cached, by tag when not cached or older than the TTL) and blobs not cached.
//! Called by the handlers of [`crate::api`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use shared::client::{ClientError, ManifestHead};
use shared::{Digest, Reference, RepoName, Tag};

use super::claim::{self, Turn};
use super::flight::{Flight, Phase};
use super::{Counters, Mirrors, Upstream};
use crate::error::{ApiError, ApiResult, Code};
use crate::storage::StorageError;
use crate::store::{Store, StoreError, StoredManifest};
use crate::AppState;

fn local_name(up: &Upstream) -> ApiResult<RepoName> {
    up.local.parse().map_err(|e| ApiError::new(Code::NameInvalid).detail(e))
}

/// The manifest `reference` of mirrored repository `up`: from the cache when it has it (and,
/// for a tag, checked it within the TTL), else from the upstream, stored on the way. With
/// `evict_after`, the pull is recorded (at most every tenth of the age, and hourly).
pub(crate) async fn manifest(state: &AppState, up: &Upstream, reference: &Reference) -> ApiResult<Arc<StoredManifest>> {
    let found = lookup(state, up, reference).await?;
    let m = state.mirrors.get(up);
    if let Ok(Some(age)) = m.config.eviction_age() {
        let within = (age / 10).min(Duration::from_secs(3600));
        if let Err(e) = state.store.record_pull(&local_name(up)?, &found, within).await {
            tracing::warn!(upstream = %m.config.host, repository = %up.local, error = %shared::error_chain(&e),
                "cannot record a pull for eviction");
        }
    }
    Ok(found)
}

/// [`manifest`], but for recording the pull.
async fn lookup(state: &AppState, up: &Upstream, reference: &Reference) -> ApiResult<Arc<StoredManifest>> {
    let (mirrors, store) = (&state.mirrors, &state.store);
    let counters = &mirrors.get(up).counters;
    let local = local_name(up)?;
    let tag = match reference {
        Reference::Digest(_) => {
            return match store.get_manifest(&local, reference).await {
                Ok(m) => {
                    Counters::add(&counters.hits, 1);
                    Ok(m)
                }
                Err(StoreError::ManifestUnknown) => fetch_manifest(mirrors, store, up, &local, reference, None).await,
                Err(e) => Err(e.into()),
            };
        }
        Reference::Tag(tag) => tag,
    };
    let Some((cached, checked)) = store.tag_link(&local, tag).await? else {
        return fetch_manifest(mirrors, store, up, &local, reference, Some(tag)).await;
    };
    let ttl = Duration::from_secs(mirrors.get(up).config.tag_ttl_secs);
    if SystemTime::now().duration_since(checked).unwrap_or_default() < ttl {
        if let Ok(m) = store.get_manifest(&local, &Reference::Digest(cached.clone())).await {
            Counters::add(&counters.hits, 1);
            return Ok(m);
        }
    }
    revalidate(state, up, &local, tag, cached).await
}

/// Checks a cached tag with the upstream: unchanged, it counts as checked now; changed, the
/// new manifest is fetched (unless cached); when the upstream fails, the cached one is
/// served.
async fn revalidate(
    state: &AppState,
    up: &Upstream,
    local: &RepoName,
    tag: &Tag,
    cached: Digest,
) -> ApiResult<Arc<StoredManifest>> {
    let (mirrors, store) = (&state.mirrors, &state.store);
    let m = mirrors.get(up);
    Counters::add(&m.counters.revalidations, 1);
    let image = mirrors.image(up, Reference::Tag(tag.clone()))?;
    let current = match m.client.manifest_head(&image, &image.reference()).await {
        Ok(ManifestHead { digest: Some(d) }) => d,
        Ok(ManifestHead { digest: None }) => {
            return fetch_manifest(mirrors, store, up, local, &Reference::Tag(tag.clone()), Some(tag)).await
        }
        Err(e) => {
            if !matches!(e, ClientError::NotFound { .. }) {
                Counters::add(&m.counters.errors, 1);
            }
            tracing::warn!(
                upstream = %m.config.host, repository = %local, %tag, error = %shared::error_chain(&e),
                "cannot check a cached tag with the upstream; serving the cached manifest"
            );
            return Ok(store.get_manifest(local, &Reference::Digest(cached)).await?);
        }
    };
    let by_digest = Reference::Digest(current.clone());
    match store.get_manifest(local, &by_digest).await {
        Ok(found) => {
            store.touch_tag(local, tag, &current).await?;
            Counters::add(&m.counters.hits, 1);
            Ok(found)
        }
        Err(StoreError::ManifestUnknown) => fetch_manifest(mirrors, store, up, local, &by_digest, Some(tag)).await,
        Err(e) => Err(e.into()),
    }
}

/// Fetches a manifest from the upstream and stores it (with `tag` pointing at it).
async fn fetch_manifest(
    mirrors: &Mirrors,
    store: &Store,
    up: &Upstream,
    local: &RepoName,
    reference: &Reference,
    tag: Option<&Tag>,
) -> ApiResult<Arc<StoredManifest>> {
    let m = mirrors.get(up);
    Counters::add(&m.counters.misses, 1);
    let image = mirrors.image(up, reference.clone())?;
    let pulled =
        m.client.manifest(&image, reference).await.map_err(|e| mirrors.failure(up, &e, Code::ManifestUnknown))?;
    Counters::add(&m.counters.bytes, pulled.bytes.len() as u64);
    let media_type = pulled.manifest.media_type.clone();
    Ok(store.put_fetched_manifest(local, &pulled.digest, &media_type, Bytes::from(pulled.bytes), tag).await?)
}

/// A `GET` or `HEAD` of a blob that mirrored repository `up` does not hold yet. `None`: it is
/// stored now, serve it from storage.
pub(crate) async fn blob(
    state: &AppState,
    method: &Method,
    up: &Upstream,
    digest: &Digest,
) -> ApiResult<Option<Response>> {
    let mirrors = &state.mirrors;
    let m = mirrors.get(up);
    if *method == Method::HEAD {
        let image = mirrors.image(up, Reference::Digest(digest.clone()))?;
        let size = m.client.blob_head(&image, digest).await.map_err(|e| mirrors.failure(up, &e, Code::BlobUnknown))?;
        return blob_response(digest, size, Body::empty()).map(Some);
    }
    let flight = join_or_start(state, up, digest)?;
    match flight.started().await {
        Phase::Streaming(size) => blob_response(digest, size, Body::from_stream(flight.reader())).map(Some),
        Phase::Stored(_) | Phase::Present => Ok(None),
        Phase::Missing(message) | Phase::Failed(message) => Err(ApiError::new(Code::BlobUnknown).message(message)),
        Phase::Connecting => Err(ApiError::new(Code::BlobUnknown).message("the upstream fetch was abandoned")),
    }
}

fn blob_response(digest: &Digest, size: Option<u64>, body: Body) -> ApiResult<Response> {
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ETAG, format!("\"{digest}\""))
        .header("docker-content-digest", digest.to_string());
    if let Some(size) = size {
        resp = resp.header(header::CONTENT_LENGTH, size);
    }
    resp.body(body).map_err(|e| ApiError::internal(&e))
}

/// The fetch of `digest` into `up`'s repository in progress, or a new one.
fn join_or_start(state: &AppState, up: &Upstream, digest: &Digest) -> ApiResult<Arc<Flight>> {
    let key = (up.local.clone(), digest.clone());
    let mut flights = state.mirrors.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(f) = flights.get(&key) {
        return Ok(f.clone());
    }
    let flight = Flight::new();
    flights.insert(key.clone(), flight.clone());
    drop(flights);
    let image = state.mirrors.image(up, Reference::Digest(digest.clone()))?;
    let (state, up, f) = (state.clone(), up.clone(), flight.clone());
    tokio::spawn(async move {
        let phase = fly(&state, &up, &image, &f).await;
        f.set(phase);
        let mut flights = state.mirrors.flights.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if flights.get(&key).is_some_and(|g| Arc::ptr_eq(g, &f)) {
            flights.remove(&key);
        }
    });
    Ok(flight)
}

/// The fetch itself: nothing when the blob turned up meanwhile; a link (once the upstream
/// confirmed it has the blob) when another repository, or another replica, stored it; else,
/// holding the replicas' claim on it ([`claim`]), the download.
async fn fly(state: &AppState, up: &Upstream, image: &shared::ImageRef, flight: &Arc<Flight>) -> Phase {
    let (mirrors, store) = (&state.mirrors, &state.store);
    let m = mirrors.get(up);
    let Some(digest) = image.digest() else { return Phase::Failed("no digest".into()) };
    let failed = |e: ClientError| upstream_failed(mirrors, up, digest, e);
    let stored = |e: StoreError| store_failed(&m.config.host, digest, e);
    let Ok(local) = up.local.parse::<RepoName>() else { return Phase::Failed("invalid name".into()) };
    if store.blob_size(&local, digest).await.is_ok() {
        return Phase::Present;
    }
    // Stored for another repository (or by another replica meanwhile): linked here once the
    // upstream says this repository has it.
    let link = || async {
        if let Err(e) = m.client.blob_head(image, digest).await {
            return failed(e);
        }
        match store.mount_blob(&local, digest, None).await {
            Ok(_) => Phase::Present,
            Err(e) => stored(e),
        }
    };
    match store.blob_stored(digest).await {
        Ok(true) => return link().await,
        Ok(false) => {}
        Err(e) => return stored(e),
    }
    // One fetch across the replicas sharing this storage.
    let me = format!("berth pid {}", std::process::id());
    let turn = claim::wait_turn(store, digest, &me).await;
    if turn == Turn::Stored {
        return link().await;
    }
    let renew = (turn == Turn::Mine).then(|| tokio::spawn(claim::refresh(store.storage().clone(), digest.clone(), me)));
    let phase = download(state, up, image, flight, &local).await;
    if let Some(renew) = renew {
        renew.abort();
        claim::release(store.storage().as_ref(), digest).await;
    }
    phase
}

/// Downloads blob `image` (by digest) into `local`, stored through the upload path while
/// the flight's readers are sent its bytes.
async fn download(
    state: &AppState,
    up: &Upstream,
    image: &shared::ImageRef,
    flight: &Arc<Flight>,
    local: &RepoName,
) -> Phase {
    let (mirrors, store) = (&state.mirrors, &state.store);
    let m = mirrors.get(up);
    let Some(digest) = image.digest() else { return Phase::Failed("no digest".into()) };
    Counters::add(&m.counters.misses, 1);
    let download = match m.client.blob_download(image, digest).await {
        Ok(d) => d,
        Err(e) => return upstream_failed(mirrors, up, digest, e),
    };
    flight.set(Phase::Streaming(download.size));
    let (all, index, to_readers) = (mirrors.clone(), up.mirror, flight.clone());
    let tee = download
        .stream
        .map(move |chunk| {
            let m = &all.mirrors[index];
            match chunk {
                Ok(bytes) => {
                    Counters::add(&m.counters.bytes, bytes.len() as u64);
                    to_readers.push(bytes.clone());
                    Ok(bytes)
                }
                Err(e) => {
                    Counters::add(&m.counters.errors, 1);
                    Err(StorageError::Body(format!("upstream {}: {}", m.config.host, shared::error_chain(&e))))
                }
            }
        })
        .boxed();
    match store.ingest_blob(local, digest, download.size, tee).await {
        Ok(()) => Phase::Stored(download.size),
        Err(e) => store_failed(&m.config.host, digest, e),
    }
}

/// The phase of a fetch the upstream failed (counted and logged, unless "not found").
fn upstream_failed(mirrors: &Mirrors, up: &Upstream, digest: &Digest, e: ClientError) -> Phase {
    let m = mirrors.get(up);
    let (host, url) = (&m.config.host, &m.config.url);
    if matches!(e, ClientError::NotFound { .. }) {
        return Phase::Missing(format!("blob {digest} not found in upstream {host} ({url})"));
    }
    let _ = mirrors.failure(up, &e, Code::BlobUnknown);
    Phase::Failed(super::failed_message(host, url, &shared::error_chain(&e)))
}

/// The phase of a fetch storage failed (logged).
fn store_failed(host: &str, digest: &Digest, e: StoreError) -> Phase {
    tracing::warn!(upstream = %host, %digest, error = %shared::error_chain(&e), "caching a blob failed");
    Phase::Failed(format!("caching blob {digest} from upstream {host} failed"))
}
