//! The berth registry: an OCI distribution API server (spec v1.1) over pluggable storage.
//!
//! `berth serve` (in `cli`) builds a [`Config`] and calls [`serve`]. Tests start a server
//! in-process with [`serve_on`] on a listener bound to port 0, or drive [`router`] directly
//! with `tower::ServiceExt::oneshot`. The layers, top to bottom: [`api`] (HTTP handlers),
//! [`store`] (content logic), [`storage`] (drivers), with [`paths`] drawing the layout.
//! [`auth`] (accounts, tokens, permissions, audit log) sits in front of the handlers when
//! `[auth]` is configured, and [`tls`] serves HTTPS when `[tls]` is. Both read the request's
//! [`route`], parsed once; handlers tell what they changed with [`events`]; [`body`] reads
//! request bodies and answers early ones. The handlers and access control share the
//! [`AppState`]; neither module reaches into the other's. [`hub`] adds the admin API under
//! `/api/v1/` and the web UI at `/`.
#![deny(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub mod api;
pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod gc;
pub mod hub;
pub mod metrics;
pub mod mirror;
pub mod paths;
pub mod policy;
pub mod route;
pub mod storage;
pub mod store;
pub mod tls;
pub mod webhooks;

pub use config::Config;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The storage root could not be opened.
    #[error("cannot open storage at {path}")]
    Storage {
        /// The root folder.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The S3 bucket could not be reached.
    #[error("cannot use the S3 bucket")]
    S3(#[source] storage::StorageError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Access control could not start.
    #[error("access control")]
    Auth(#[from] auth::AuthSetupError),
    /// The TLS certificate could not be used.
    #[error("TLS")]
    Tls(#[from] tls::TlsError),
    /// The server failed while running.
    #[error("server failed")]
    Io(#[from] std::io::Error),
}

/// Opens the storage the configuration names: S3 when `[storage.s3]` is set, else the
/// filesystem.
pub async fn open_storage(config: &Config) -> Result<Arc<dyn storage::Storage>, ServeError> {
    if let Some(s3) = &config.storage.s3 {
        let driver = storage::s3::S3Storage::new(s3).await.map_err(ServeError::S3)?;
        driver.check_bucket().await.map_err(ServeError::S3)?;
        return Ok(Arc::new(driver));
    }
    let fs = &config.storage.filesystem;
    let driver = storage::fs::FsStorage::new(&fs.root, fs.fsync)
        .map_err(|source| ServeError::Storage { path: fs.root.clone(), source })?
        .with_max_threads(fs.max_threads);
    Ok(Arc::new(driver))
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The content store.
    pub store: Arc<store::Store>,
    /// The configuration the server started with.
    pub config: Arc<Config>,
    /// The metrics registry.
    pub metrics: Arc<metrics::Metrics>,
    /// Access control, when `[auth]` is configured.
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// Immutable tags and quotas.
    pub policies: Arc<policy::Policies>,
    /// The webhook receivers, their queues and recent deliveries.
    pub webhooks: Arc<webhooks::Webhooks>,
    /// The admin API's and web UI's keys and state.
    pub hub: Arc<hub::Hub>,
    /// The upstreams this registry mirrors (`[[mirror]]`).
    pub mirrors: Arc<mirror::Mirrors>,
}

/// Opens the storage the configuration names and builds the application state.
pub async fn state(config: Config) -> Result<AppState, ServeError> {
    config.validate()?;
    let driver = open_storage(&config).await?;
    let auth = match &config.auth {
        Some(_) => Some(Arc::new(auth::Auth::new(&config, driver.clone()).await?)),
        None => None,
    };
    let policies = policy::Policies::new(&config)
        .map_err(|e| config::ConfigError { setting: "immutable/quota", reason: e.to_string() })?;
    let webhooks = webhooks::Webhooks::start(&config.webhooks, config.addr.to_string())
        .map_err(|e| config::ConfigError { setting: "webhooks", reason: e.to_string() })?;
    let keys = hub::session::Keys::load(driver.as_ref()).await?;
    let mirrors = mirror::Mirrors::new(&config.mirror)?;
    Ok(AppState {
        hub: Arc::new(hub::Hub::new(keys, config.ui.summary_budget)),
        mirrors: Arc::new(mirrors),
        policies: Arc::new(policies),
        webhooks: Arc::new(webhooks),
        store: Arc::new(store::Store::new(driver)),
        config: Arc::new(config),
        metrics: Arc::new(metrics::Metrics::default()),
        auth,
    })
}

/// The HTTP application for `config`, for in-process use.
pub async fn router(config: Config) -> Result<axum::Router, ServeError> {
    Ok(api::router(state(config).await?))
}

/// Binds `config.addr` and serves until `shutdown` completes.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
    let addr = config.addr;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    serve_on(listener, config, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0 and read the address back) until
/// `shutdown` completes; in-flight requests are finished first.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = config.tls.clone();
    let state = state(config).await?;
    let purge = spawn_upload_purge(&state);
    let collect = gc::schedule::spawn(state.store.storage().clone(), &state.config, state.metrics.clone());
    let addr = listener.local_addr()?;
    let app = api::router(state);
    let result = match &tls {
        Some(tls) => {
            tracing::info!(%addr, "berth registry listening (HTTPS)");
            tls::serve(listener, app, tls, shutdown).await.map_err(ServeError::from)
        }
        None => {
            tracing::info!(%addr, "berth registry listening");
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(ServeError::from)
        }
    };
    for task in [purge, collect].into_iter().flatten() {
        task.abort();
    }
    result
}

/// Deletes abandoned upload sessions periodically, as configured.
fn spawn_upload_purge(state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    let uploads = &state.config.uploads;
    if uploads.purge_interval_secs == 0 {
        return None;
    }
    let (every, max_age) =
        (Duration::from_secs(uploads.purge_interval_secs), Duration::from_secs(uploads.purge_after_secs));
    let store = state.store.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match store.purge_uploads(max_age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "abandoned upload sessions removed"),
                Err(e) => tracing::warn!(error = %shared::error_chain(&e), "purging upload sessions failed"),
            }
        }
    }))
}
