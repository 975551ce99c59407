//! Checking credentials against a registry, for `berth login`.

use reqwest::header::HeaderMap;
use reqwest::Method;

use super::auth::Scope;
use super::{status_error, Client, ClientError, Payload, Target};
use crate::image_ref::ImageRef;

impl Client {
    /// Checks that `registry` (as written in references: `docker.io`, `127.0.0.1:5000`)
    /// accepts the credentials the client's provider gives for it: `GET /v2/`, answering the
    /// registry's challenge (for a token registry, a token with no scope is fetched with the
    /// credentials). A registry that asks for no authentication passes too, as with
    /// `docker login`.
    pub async fn check_login(&self, registry: &str) -> Result<(), ClientError> {
        let repository = "berth/login".parse().map_err(|e: crate::NameError| ClientError::Protocol {
            url: registry.to_string(),
            message: e.to_string(),
        })?;
        let image = ImageRef::new(registry, repository, None, None)
            .map_err(|e| ClientError::Protocol { url: registry.to_string(), message: e.to_string() })?;
        let target = Target::Path("/v2/".into());
        let response =
            self.send(&image, Method::GET, target, &Scope::default(), HeaderMap::new(), Payload::Empty).await?;
        if response.status().is_success() {
            return Ok(());
        }
        let url = response.url().clone();
        Err(status_error(Method::GET, &url, response).await)
    }
}
