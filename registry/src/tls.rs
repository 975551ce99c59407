//! HTTPS: rustls (on aws-lc-rs) with the certificate chain and key of `[tls]`, served with
//! hyper-util's HTTP/1.1 + HTTP/2 connection builder.
//!
//! [`crate::serve_on`] calls [`serve`] when `[tls]` is set. The certificate is looked up
//! per handshake through a resolver whose key pair a background task replaces when either
//! file's size or modification time changes (checked every `tls.reload_interval_secs`), so a
//! renewed certificate is served without a restart. A pair that does not load (a key that
//! does not match the certificate, a file half written) is logged and the previous pair stays
//! in use until a later check loads the new one.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::ConnectInfo;
use axum::Router;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// Why the certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("certificate {cert} with key {key}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate and key in use, replaced when the files change.
#[derive(Debug)]
pub struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// Loads a certificate chain and its key from PEM files.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let file_err = |path: &Path, reason: String| TlsError::File { path: path.to_path_buf(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no CERTIFICATE in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, private, &provider).map_err(|source| TlsError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    })
}

/// The size and modification time of a file, to notice a change.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The rustls configuration for `tls`, and the resolver (kept up to date by a task when
/// `reload_interval_secs` is not 0; the task ends when the returned handle is aborted).
pub fn server_config(tls: &TlsConfig) -> Result<(rustls::ServerConfig, Option<tokio::task::JoinHandle<()>>), TlsError> {
    let stamps = (stamp(&tls.certificate), stamp(&tls.key));
    let resolver = Arc::new(Resolver { current: RwLock::new(Arc::new(load(&tls.certificate, &tls.key)?)) });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Pair { cert: tls.certificate.clone(), key: tls.key.clone(), source })?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let reload = (tls.reload_interval_secs > 0).then(|| {
        let (cert, key) = (tls.certificate.clone(), tls.key.clone());
        let every = Duration::from_secs(tls.reload_interval_secs);
        tokio::spawn(async move {
            let mut seen = stamps;
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let now = (stamp(&cert), stamp(&key));
                if now == seen {
                    continue;
                }
                match load(&cert, &key) {
                    Ok(pair) => {
                        *resolver.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
                        seen = now;
                        tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %shared::error_chain(&e), "changed TLS certificate not loaded; the previous one stays in use")
                    }
                }
            }
        })
    });
    Ok((config, reload))
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then waits for open
/// connections to finish their requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: &TlsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TlsError> {
    let (config, reload) = server_config(tls)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %shared::error_chain(&e), "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %shared::error_chain(&e), "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
                app,
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    req
                },
            ));
            let conn = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %shared::error_chain(&*e), "connection ended with an error");
            }
        });
    }
    drop(listener);
    if let Some(task) = reload {
        task.abort();
    }
    graceful.shutdown().await;
    Ok(())
}
