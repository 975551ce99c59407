//! Request bodies: reading a small one whole within a limit ([`read_limited`]), and what is
//! left of one the server answered early.
//!
//! Early answers to requests whose body is still coming: a 401 challenge, a 404 for an
//! unknown upload, any error found before the body was read. Over HTTP/1.1, a server that
//! answers and then closes the connection with unread bytes in its receive buffer makes the
//! kernel reset the connection, and a client that sends its whole body before reading (Python
//! `requests`, so the ORAS SDK) then sees a broken connection instead of the answer. So, as
//! Go's server does, [`early_answers`] (the outermost middleware of
//! [`crate::api::router`], on the plain and the TLS servers alike) marks such an answer
//! `Connection: close` and keeps reading what is left of the body in the background, up to
//! [`DRAIN_BYTES`] and [`DRAIN_TIME`]: the connection then ends with an orderly close once
//! the body is in. A body larger than that is cut off, as before.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode, Version};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::error::{ApiError, ApiResult, Code};

/// Bytes of an unread body read and dropped after an early answer, at most (Go reads
/// 256 KiB; more here, so a client sending a blob chunk of a few MiB before reading still
/// gets its answer).
pub(crate) const DRAIN_BYTES: usize = 8 << 20;

/// How long an unread body is read after an early answer, at most.
pub(crate) const DRAIN_TIME: Duration = Duration::from_secs(30);

/// A request body that notes whether it was read to its end, and that, dropped before it,
/// hands what is left to a task that reads it (within the bounds above).
struct Watched {
    inner: Option<Body>,
    ended: Arc<AtomicBool>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let poll = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(None) = poll {
            self.ended.store(true, Ordering::Release);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        if self.ended.load(Ordering::Acquire) || http_body::Body::is_end_stream(&inner) {
            self.ended.store(true, Ordering::Release);
            return;
        }
        // Outside a runtime (never in the server) the body is simply dropped.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(inner));
        }
    }
}

/// Reads and drops the rest of a body, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let read = async {
        let mut left = DRAIN_BYTES;
        while let Some(Ok(chunk)) = stream.next().await {
            match left.checked_sub(chunk.len()) {
                Some(l) => left = l,
                None => return,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// The middleware: an answer given while the request's body was not read to its end closes
/// the connection, and the rest of the body is read meanwhile (see the module's doc).
/// HTTP/2 needs none of this: a stream answered early is reset on its own, and the
/// connection goes on.
pub(crate) async fn early_answers(req: Request, next: Next) -> Response {
    if req.version() >= Version::HTTP_2 {
        return next.run(req).await;
    }
    let ended = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| Body::new(Watched { inner: Some(body), ended: ended.clone() }));
    let mut resp = next.run(req).await;
    if !ended.load(Ordering::Acquire) {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Reads a whole body, refusing more than `limit` bytes with 413 `SIZE_INVALID`.
pub(crate) async fn read_limited(body: Body, limit: usize) -> ApiResult<Bytes> {
    let too_big = || {
        ApiError::new(Code::SizeInvalid)
            .status(StatusCode::PAYLOAD_TOO_LARGE)
            .detail(format!("body larger than the limit of {limit} bytes"))
    };
    let mut body = body.into_data_stream();
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(Code::BlobUploadInvalid).detail(format!("reading the body failed: {e}")))?;
        if out.len() + chunk.len() > limit {
            drain_refused(body, limit).await;
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// Reads and drops what is left of a body refused for its size before answering, up to a
/// bound, so the client gets to read the error instead of a reset connection; a body larger
/// than that is cut off.
pub(crate) async fn drain_refused(mut body: axum::body::BodyDataStream, refused_limit: usize) {
    let mut left = refused_limit.saturating_mul(4).max(16 << 20);
    while let Some(Ok(chunk)) = body.next().await {
        match left.checked_sub(chunk.len()) {
            Some(l) => left = l,
            None => break,
        }
    }
}
