//! The endpoint a request is for, parsed once from its path, and the query-string helpers.
//!
//! Repository names may hold slashes, so the path after `/v2/` is parsed from the right by
//! [`Route::parse`]. [`layer`], in front of everything else in [`crate::api::router`],
//! parses it once and attaches the [`Route`] to the request's extensions, where access
//! control ([`crate::auth`]), the handlers ([`crate::api`]), the audit log and the
//! per-request span and metrics all read it.

use axum::extract::Request;
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

/// The route label of a request, `"other"` outside the API.
pub(crate) fn label_of(req: &Request) -> &'static str {
    req.extensions().get::<Route>().map_or("other", Route::label)
}

/// The middleware that parses the route once and attaches it to the request.
pub(crate) async fn layer(mut req: Request, next: Next) -> Response {
    if let Some(route) = Route::of(req.uri().path()) {
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
    fn decodes_queries() {
        let uri: Uri = "/x?tag=a&n=1&tag=b%2Bc&tag".parse().unwrap();
        assert_eq!(query_all(&uri, "tag"), ["a", "b+c", ""]);
        assert_eq!(query(&uri, "n").as_deref(), Some("1"));
        assert_eq!(query(&uri, "last"), None);
    }
}
