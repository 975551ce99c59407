//! The endpoint a request is for, parsed once from its path, and the query-string helpers.
//!
//! Repository names may hold slashes, so the path after `/v2/` is parsed from the right by
//! [`Route::parse`]. [`layer`], in front of everything else in [`crate::api::router`],
//! parses it once and attaches the [`Route`] to the request's extensions, where access
//! control ([`crate::auth`]), the handlers ([`crate::api`]), the audit log and the
//! per-request span and metrics all read it. When the repository is a mirrored one
//! ([`crate::mirror`]), the same middleware attaches the [`Upstream`] it is for, worked out
//! once from the `ns` query parameter, the name's first component or the default mirror.

use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::Response;

/// An endpoint of the distribution API (spec.md, "Endpoints"), with the parts of its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(String),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(String, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(String, String),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(String),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(String, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(String, String),
}

impl Route {
    /// The route of a request path; `None` outside the API (or for no endpoint of it).
    pub fn of(path: &str) -> Option<Route> {
        if path == "/v2" || path == "/v2/" {
            return Some(Route::Base);
        }
        Route::parse(path.strip_prefix("/v2/")?)
    }

    /// Parses the part of the path after `/v2/`, matching the endpoint from the right so a
    /// repository name may itself contain `blobs` or `manifests` components.
    pub fn parse(path: &str) -> Option<Route> {
        if path == "_catalog" {
            return Some(Route::Catalog);
        }
        let (rest, last) = path.rsplit_once('/')?;
        if last == "list" {
            if let Some(name) = rest.strip_suffix("/tags") {
                return Some(Route::Tags(name.into()));
            }
        }
        if let Some(name) = rest.strip_suffix("/blobs/uploads") {
            let name = name.into();
            return Some(if last.is_empty() { Route::UploadStart(name) } else { Route::Upload(name, last.into()) });
        }
        let (name, kind) = rest.rsplit_once('/')?;
        let (name, last) = (name.to_string(), last.to_string());
        match kind {
            "manifests" => Some(Route::Manifest(name, last)),
            "referrers" => Some(Route::Referrers(name, last)),
            "blobs" if last == "uploads" => Some(Route::UploadStart(name)),
            "blobs" => Some(Route::Blob(name, last)),
            _ => None,
        }
    }

    /// The repository the endpoint is about, if any.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n) | Route::UploadStart(n) => Some(n),
            Route::Manifest(n, _) | Route::Blob(n, _) | Route::Upload(n, _) | Route::Referrers(n, _) => Some(n),
        }
    }

    /// A short name of the endpoint, for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags(_) => "tags",
            Route::Manifest(..) => "manifest",
            Route::Blob(..) => "blob",
            Route::UploadStart(_) | Route::Upload(..) => "upload",
            Route::Referrers(..) => "referrers",
        }
    }
}

/// The upstream registry a request's repository is mirrored from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The mirror's index in [`crate::Config::mirror`].
    pub mirror: usize,
    /// The repository on the upstream (`library/nginx`).
    pub remote: String,
    /// The repository its content is cached in here (`docker.io/library/nginx`).
    pub local: String,
}

impl Upstream {
    /// The upstream of repository `name`, asked with containerd's `ns` parameter (or not),
    /// among `mirrors`: the mirror whose host `ns` names; else the one whose host is the
    /// name's first component (`docker.io/library/nginx`, as Harbor proxy projects and zot
    /// are asked); else, without `ns`, the default mirror (Docker's `registry-mirrors`
    /// ask `/v2/library/nginx/...` for `docker.io` images). `None`: a repository of this
    /// registry's own.
    pub fn of(name: &str, ns: Option<&str>, mirrors: &[crate::config::MirrorConfig]) -> Option<Upstream> {
        let found = |host: &str| mirrors.iter().position(|m| m.host == host);
        if let Some(mirror) = ns.and_then(found) {
            let local = format!("{}/{name}", mirrors[mirror].host);
            return Some(Upstream { mirror, remote: name.to_string(), local });
        }
        if let Some((first, rest)) = name.split_once('/') {
            if let Some(mirror) = found(first) {
                return Some(Upstream { mirror, remote: rest.to_string(), local: name.to_string() });
            }
        }
        if ns.is_some() {
            return None;
        }
        let mirror = mirrors.iter().position(|m| m.default)?;
        let local = format!("{}/{name}", mirrors[mirror].host);
        Some(Upstream { mirror, remote: name.to_string(), local })
    }
}

/// The route label of a request, `"other"` outside the API.
pub(crate) fn label_of(req: &Request) -> &'static str {
    req.extensions().get::<Route>().map_or("other", Route::label)
}

/// The middleware that parses the route once and attaches it to the request, with the
/// [`Upstream`] of a mirrored repository.
pub(crate) async fn layer(State(state): State<crate::AppState>, mut req: Request, next: Next) -> Response {
    if let Some(route) = Route::of(req.uri().path()) {
        let mirrors = &state.config.mirror;
        if let Some(name) = route.repository().filter(|_| !mirrors.is_empty()) {
            let ns = query(req.uri(), "ns");
            if let Some(upstream) = Upstream::of(name, ns.as_deref(), mirrors) {
                req.extensions_mut().insert(upstream);
            }
        }
        req.extensions_mut().insert(route);
    }
    next.run(req).await
}

/// A query parameter's first value, decoded ([`shared::query::value`]).
pub(crate) fn query(uri: &Uri, key: &str) -> Option<String> {
    shared::query::value(uri.query()?, key)
}

/// Every value of a query parameter, decoded, in order ([`shared::query::pairs`]).
pub(crate) fn query_all(uri: &Uri, key: &str) -> Vec<String> {
    let Some(q) = uri.query() else { return Vec::new() };
    shared::query::pairs(q).into_iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_from_the_right() {
        let r = |s: &str| Route::parse(s);
        let s = |s: &str| s.to_string();
        assert_eq!(r("_catalog"), Some(Route::Catalog));
        assert_eq!(r("a/b/tags/list"), Some(Route::Tags(s("a/b"))));
        assert_eq!(r("a/manifests/latest"), Some(Route::Manifest(s("a"), s("latest"))));
        assert_eq!(r("a/blobs/manifests/x"), Some(Route::Manifest(s("a/blobs"), s("x"))));
        assert_eq!(r("a/blobs/sha256:00"), Some(Route::Blob(s("a"), s("sha256:00"))));
        assert_eq!(r("a/blobs/uploads/"), Some(Route::UploadStart(s("a"))));
        assert_eq!(r("a/blobs/uploads"), Some(Route::UploadStart(s("a"))));
        assert_eq!(r("a/b/blobs/uploads/123"), Some(Route::Upload(s("a/b"), s("123"))));
        assert_eq!(r("a/referrers/sha256:00"), Some(Route::Referrers(s("a"), s("sha256:00"))));
        assert_eq!(r("a/manifests/list"), Some(Route::Manifest(s("a"), s("list"))));
        assert_eq!(r("a/tags/list/tags/list"), Some(Route::Tags(s("a/tags/list"))));
        assert_eq!(r("a"), None);
        assert_eq!(r("a/other/x"), None);
        assert_eq!(Route::of("/v2"), Some(Route::Base));
        assert_eq!(Route::of("/v2/"), Some(Route::Base));
        assert_eq!(Route::of("/v2/a/tags/list"), Some(Route::Tags(s("a"))));
        assert_eq!(Route::of("/healthz"), None);
    }

    #[test]
    fn upstreams_by_ns_prefix_or_default() {
        let mirror = |host: &str, default: bool| crate::config::MirrorConfig {
            url: "http://x".into(),
            host: host.into(),
            default,
            ..Default::default()
        };
        let mirrors = [mirror("docker.io", true), mirror("ghcr.io", false)];
        let up = |name: &str, ns: Option<&str>| Upstream::of(name, ns, &mirrors).map(|u| (u.mirror, u.remote, u.local));
        let s = |s: &str| s.to_string();
        assert_eq!(up("library/nginx", Some("ghcr.io")), Some((1, s("library/nginx"), s("ghcr.io/library/nginx"))));
        assert_eq!(up("docker.io/library/nginx", None), Some((0, s("library/nginx"), s("docker.io/library/nginx"))));
        assert_eq!(up("ghcr.io/org/app", None), Some((1, s("org/app"), s("ghcr.io/org/app"))));
        assert_eq!(up("library/nginx", None), Some((0, s("library/nginx"), s("docker.io/library/nginx"))));
        // A host this registry does not mirror: its own repository (a prefix still counts).
        assert_eq!(up("library/nginx", Some("quay.io")), None);
        assert_eq!(up("ghcr.io/org/app", Some("quay.io")), Some((1, s("org/app"), s("ghcr.io/org/app"))));
        let no_default = [mirror("ghcr.io", false)];
        assert_eq!(Upstream::of("library/nginx", None, &no_default), None);
    }

    #[test]
    fn decodes_queries() {
        let uri: Uri = "/x?tag=a&n=1&tag=b%2Bc&tag".parse().unwrap();
        assert_eq!(query_all(&uri, "tag"), ["a", "b+c", ""]);
        assert_eq!(query(&uri, "n").as_deref(), Some("1"));
        assert_eq!(query(&uri, "last"), None);
    }
}
