//! The Content Discovery workflow (spec.md, "Workflow Categories" → "Content Discovery",
//! endpoints end-8a, end-8b, end-12a, end-12b): listing tags, with `n`/`last` pagination and
//! `Link` headers, and the referrers API, with `artifactType` filtering. Also the repository
//! catalog (`/v2/_catalog`), which the OCI spec does not define but Docker's registry API does
//! and berth serves.

use serde_json::{json, Value};

use crate::fixtures::{self, Blob, Manifest};
use crate::http::{next_link, with_query, CheckError, Exchange, Registry, Request};
use crate::steps::{self, repo_url};

/// The artifact type of the SBOM-like referrer.
const SBOM_TYPE: &str = "application/vnd.berth.conformance.sbom";
/// The config media type of the referrer without an `artifactType` (with a `+`, which a query
/// string must escape).
const SIGNATURE_CONFIG_TYPE: &str = "application/vnd.berth.conformance.signature.config.v1+json";
/// The artifact type of the index referrer.
const BUNDLE_TYPE: &str = "application/vnd.berth.conformance.bundle";

/// A referrer pushed by [`push_referrers`] and the descriptor the referrers API must list
/// for it.
pub(crate) struct Referrer {
    /// The manifest pushed.
    pub manifest: Manifest,
    /// The descriptor expected in a referrers listing.
    pub expected: Value,
}

/// A subject and its referrers, as [`push_referrers`] leaves them.
pub(crate) struct Referrers {
    /// The subject image manifest.
    pub subject: Manifest,
    /// Its referrers: an artifact with `artifactType`, an image manifest without one (listed
    /// under its config's media type), an index with `artifactType`, an index without.
    pub referrers: Vec<Referrer>,
}

/// The descriptor a referrers listing must hold for `manifest` (spec.md, "Listing
/// Referrers": `artifactType` from the manifest, else the config's media type for an image
/// manifest, else absent; the annotations copied).
fn expected_descriptor(manifest: &Manifest, artifact_type: Option<&str>, annotations: &Value) -> Value {
    let mut d = manifest.descriptor();
    if let Some(t) = artifact_type {
        d["artifactType"] = t.into();
    }
    d["annotations"] = annotations.clone();
    d
}

/// Pushes a subject image and four referrers of it into `repo`, plus content that must not
/// be listed: a manifest without a subject, and a referrer of the same subject in another
/// repository. The first referrer is pushed before its subject (spec.md: a registry "MUST
/// initially accept ... a `subject` field that references a manifest that does not exist").
/// Every image-manifest referrer's push must answer with `OCI-Subject`.
pub(crate) async fn push_referrers(registry: &Registry, repo: &str) -> Result<Referrers, CheckError> {
    let (empty, payload) = (Blob::empty_json(), Blob::random(128));
    let signature_config = Blob::new(fixtures::to_bytes(&json!({ "nonce": fixtures::random_hex(16) })));
    let (subject_config, subject_layer) = (Blob::config(), Blob::random(256));
    for blob in [&empty, &payload, &signature_config, &subject_config, &subject_layer] {
        steps::push_blob(registry, repo, blob).await?;
    }
    let subject = Manifest::from_json(
        fixtures::OCI_MANIFEST,
        &fixtures::image_manifest(
            &subject_config.descriptor(fixtures::OCI_CONFIG),
            &[subject_layer.descriptor(fixtures::OCI_LAYER)],
        ),
    );
    let id = fixtures::random_hex(12);
    let annotations = |kind: &str| json!({ "org.opencontainers.image.created": "2024-01-01T00:00:00Z", "org.berth.conformance.id": format!("{id}-{kind}") });
    let subject_digest = subject.digest.to_string();
    let mut referrers = Vec::new();

    // 1: an artifact with an artifactType, before its subject exists.
    let mut v = fixtures::image_manifest(
        &empty.descriptor(fixtures::OCI_EMPTY),
        &[payload.descriptor("application/spdx+json")],
    );
    v["artifactType"] = SBOM_TYPE.into();
    v["subject"] = subject.descriptor();
    v["annotations"] = annotations("sbom");
    let sbom = Manifest::from_json(fixtures::OCI_MANIFEST, &v);
    let ex = steps::push_manifest(registry, repo, &sbom.digest.to_string(), &sbom).await?;
    ex.expect_header("oci-subject", &subject_digest)?;
    referrers
        .push(Referrer { expected: expected_descriptor(&sbom, Some(SBOM_TYPE), &v["annotations"]), manifest: sbom });

    steps::push_manifest(registry, repo, "subject", &subject).await?;

    // 2: an image manifest without artifactType: listed under its config's media type.
    let mut v = fixtures::image_manifest(
        &signature_config.descriptor(SIGNATURE_CONFIG_TYPE),
        &[payload.descriptor("application/octet-stream")],
    );
    v["subject"] = subject.descriptor();
    v["annotations"] = annotations("signature");
    let signature = Manifest::from_json(fixtures::OCI_MANIFEST, &v);
    let ex = steps::push_manifest(registry, repo, &signature.digest.to_string(), &signature).await?;
    ex.expect_header("oci-subject", &subject_digest)?;
    referrers.push(Referrer {
        expected: expected_descriptor(&signature, Some(SIGNATURE_CONFIG_TYPE), &v["annotations"]),
        manifest: signature,
    });

    // Not a referrer: a manifest without a subject, which the bundle below lists.
    let child = steps::push_image(registry, repo, None).await?.manifest;

    // 3: an index with an artifactType.
    let mut v = fixtures::image_index(&[child.platform_descriptor()]);
    v["artifactType"] = BUNDLE_TYPE.into();
    v["subject"] = subject.descriptor();
    v["annotations"] = annotations("bundle");
    let bundle = Manifest::from_json(fixtures::OCI_INDEX, &v);
    steps::push_manifest(registry, repo, &bundle.digest.to_string(), &bundle).await?;
    referrers.push(Referrer {
        expected: expected_descriptor(&bundle, Some(BUNDLE_TYPE), &v["annotations"]),
        manifest: bundle,
    });

    // 4: an index without artifactType: listed without one.
    let mut v = fixtures::image_index(&[]);
    v["subject"] = subject.descriptor();
    v["annotations"] = annotations("plain-index");
    let plain = Manifest::from_json(fixtures::OCI_INDEX, &v);
    steps::push_manifest(registry, repo, &plain.digest.to_string(), &plain).await?;
    referrers.push(Referrer { expected: expected_descriptor(&plain, None, &v["annotations"]), manifest: plain });

    // Not listed here: a referrer of the same subject in another repository.
    let elsewhere = format!("{repo}-elsewhere");
    steps::push_blob(registry, &elsewhere, &empty).await?;
    let mut v = fixtures::image_manifest(&empty.descriptor(fixtures::OCI_EMPTY), &[]);
    v["artifactType"] = SBOM_TYPE.into();
    v["subject"] = subject.descriptor();
    steps::push_json_manifest(registry, &elsewhere, fixtures::OCI_MANIFEST, &v).await?;

    Ok(Referrers { subject, referrers })
}

/// `GET /v2/<repo>/referrers/<digest>`, with an `artifactType` filter if given.
pub(crate) async fn get_referrers(
    registry: &Registry,
    repo: &str,
    digest: &str,
    artifact_type: Option<&str>,
) -> Result<Exchange, CheckError> {
    let mut url = repo_url(registry, repo, &format!("referrers/{digest}"));
    if let Some(t) = artifact_type {
        url = with_query(&url, "artifactType", t);
    }
    registry.send(Request::get(url)).await
}

/// Requires a referrers response: 200, `Content-Type` of an OCI index, an image index body
/// (`schemaVersion` 2, and the `mediaType` field, which image-spec makes a SHOULD and berth
/// sets) whose `manifests` are exactly `expected` (compared on `mediaType`, `digest`, `size`,
/// `artifactType` and `annotations`; extra fields are allowed).
pub(crate) fn expect_referrers(ex: &Exchange, expected: &[&Value]) -> Result<(), CheckError> {
    ex.expect_status(200)?.expect_header("content-type", fixtures::OCI_INDEX)?;
    let body = ex.json()?;
    let wanted = || format!("an image index listing exactly these descriptors: {}", json!(expected));
    ex.ensure(body["schemaVersion"] == 2, || format!("{} (schemaVersion 2)", wanted()))?;
    ex.ensure(body["mediaType"] == fixtures::OCI_INDEX, || {
        format!("{} (mediaType {})", wanted(), fixtures::OCI_INDEX)
    })?;
    let Some(listed) = body["manifests"].as_array() else {
        return Err(ex.fail(format!("{} (a \"manifests\" array)", wanted())));
    };
    ex.ensure(listed.len() == expected.len(), wanted)?;
    for want in expected {
        let found = listed.iter().find(|d| d["digest"] == want["digest"]);
        let matches = found.is_some_and(|d| {
            ["mediaType", "digest", "size", "artifactType", "annotations"].iter().all(|k| d.get(k) == want.get(k))
        });
        ex.ensure(matches, || format!("{} (mismatch on {})", wanted(), want["digest"]))?;
    }
    Ok(())
}

/// A tags listing's `tags`, after checking the body is `{"name": <repo>, "tags": [...]}`.
fn tags_of(ex: &Exchange, repo: &str) -> Result<Vec<String>, CheckError> {
    ex.expect_status(200)?;
    let body = ex.json()?;
    let shape = || format!(r#"a body {{"name": "{repo}", "tags": [<strings>]}}"#);
    ex.ensure(body["name"] == repo, shape)?;
    let tags = body["tags"].as_array().ok_or_else(|| ex.fail(shape()))?;
    tags.iter().map(|t| t.as_str().map(str::to_string).ok_or_else(|| ex.fail(shape()))).collect()
}

/// Requires the tags of a listing to be exactly `expected`.
fn expect_tags(ex: &Exchange, repo: &str, expected: &[&str]) -> Result<(), CheckError> {
    let tags = tags_of(ex, repo)?;
    ex.ensure(tags == expected, || format!("tags {expected:?}"))?;
    Ok(())
}

/// Pushes one image under every tag in `tags`, in the order given.
async fn push_tags(registry: &Registry, repo: &str, tags: &[&str]) -> Result<(), CheckError> {
    let image = steps::push_image(registry, repo, Some(tags[0])).await?;
    for tag in &tags[1..] {
        steps::push_manifest(registry, repo, tag, &image.manifest).await?;
    }
    Ok(())
}

/// `GET /v2/<name>/tags/list` answers 200 with `{"name": <name>, "tags": [...]}` holding every
/// tag in lexical order (spec.md, "Listing Tags"); tags are pushed out of order.
pub async fn tags_list(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    push_tags(&registry, repo, &["v2", "alpha", "v10", "beta", "v1.0"]).await?;
    let ex = registry.send(Request::get(repo_url(&registry, repo, "tags/list"))).await?;
    expect_tags(&ex, repo, &["alpha", "beta", "v1.0", "v10", "v2"])
}

/// Tag pagination (spec.md, "Listing Tags"): `n` returns exactly `n` tags and a `Link` header
/// with `rel="next"` while more remain; following the links walks the rest in order; `last`
/// starts after the named tag (present or not), with or without `n`; `n=0` returns an empty
/// list and no
/// `Link`. berth sends no `Link` on the last page (the spec only says when it MAY send one).
pub async fn tags_pagination(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    push_tags(&registry, repo, &["c3", "a1", "e5", "b2", "d4"]).await?;
    let list = repo_url(&registry, repo, "tags/list");

    let mut url = with_query(&list, "n", "2");
    let pages: [&[&str]; 3] = [&["a1", "b2"], &["c3", "d4"], &["e5"]];
    for page in pages {
        let ex = registry.send(Request::get(url.clone())).await?;
        expect_tags(&ex, repo, page)?;
        match next_link(&ex) {
            Some(next) if page.len() == 2 => url = registry.resolve(&next),
            None if page.len() == 1 => {}
            _ => {
                let want =
                    if page.len() == 2 { "a Link header with rel=\"next\"" } else { "no Link header on the last page" };
                return Err(ex.fail(want));
            }
        }
    }

    let ex = registry.send(Request::get(with_query(&with_query(&list, "n", "2"), "last", "b2"))).await?;
    expect_tags(&ex, repo, &["c3", "d4"])?;
    let ex = registry.send(Request::get(with_query(&list, "last", "c3"))).await?;
    expect_tags(&ex, repo, &["d4", "e5"])?;
    let ex = registry.send(Request::get(with_query(&list, "last", "b"))).await?;
    expect_tags(&ex, repo, &["b2", "c3", "d4", "e5"])?;
    let ex = registry.send(Request::get(with_query(&list, "n", "10"))).await?;
    expect_tags(&ex, repo, &["a1", "b2", "c3", "d4", "e5"])?;
    ex.expect_no_header("link")?;
    let ex = registry.send(Request::get(with_query(&list, "n", "0"))).await?;
    expect_tags(&ex, repo, &[])?;
    ex.expect_no_header("link")?;
    Ok(())
}

/// A page size that is not a number is refused with 400 and a spec error body (the spec
/// defines `n` as an integer and names no failure for it; berth answers 400).
pub async fn tags_invalid_n(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    push_tags(&registry, repo, &["only"]).await?;
    for n in ["abc", "-1"] {
        let ex = registry.send(Request::get(with_query(&repo_url(&registry, repo, "tags/list"), "n", n))).await?;
        ex.expect_status(400)?.expect_error_body(&[])?;
    }
    Ok(())
}

/// Listing the tags of a repository that does not exist answers 404 `NAME_UNKNOWN` (spec.md,
/// end-8a's failure status; the code is the spec's "repository name not known to registry").
pub async fn tags_unknown_repository(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let ex = registry.send(Request::get(repo_url(&registry, &format!("{repo}-never-pushed"), "tags/list"))).await?;
    ex.expect_error(404, "NAME_UNKNOWN")?;
    Ok(())
}

/// The repository catalog, `GET /v2/_catalog` (Docker Registry HTTP API V2; not in the OCI
/// spec): `{"repositories": [...]}` in lexical order, paginated like tags with `n`, `last` and
/// a `Link` header, and the full listing holds every repository pushed.
pub async fn catalog(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let names: Vec<String> = ["a", "b", "c"].iter().map(|n| format!("{repo}/{n}")).collect();
    for name in &names {
        steps::push_image(&registry, name, Some("latest")).await?;
    }
    let repositories = |ex: &Exchange| -> Result<Vec<String>, CheckError> {
        ex.expect_status(200)?;
        let body = ex.json()?;
        let shape = || r#"a body {"repositories": [<strings>]}"#.to_string();
        let list = body["repositories"].as_array().ok_or_else(|| ex.fail(shape()))?;
        list.iter().map(|r| r.as_str().map(str::to_string).ok_or_else(|| ex.fail(shape()))).collect()
    };

    // Nothing sorts between `<repo>` and `<repo>/a` but our own repositories.
    let url = with_query(&with_query(&registry.url("/v2/_catalog"), "n", "2"), "last", repo);
    let ex = registry.send(Request::get(url)).await?;
    let page = repositories(&ex)?;
    ex.ensure(page == names[..2], || format!("repositories {:?}", &names[..2]))?;
    let Some(next) = next_link(&ex) else {
        return Err(ex.fail("a Link header with rel=\"next\""));
    };
    let ex = registry.send(Request::get(registry.resolve(&next))).await?;
    let page = repositories(&ex)?;
    ex.ensure(page.first() == Some(&names[2]), || format!("a page starting with {:?}", names[2]))?;

    let mut all = Vec::new();
    let mut url = registry.url("/v2/_catalog");
    for _ in 0..1000 {
        let ex = registry.send(Request::get(url.clone())).await?;
        all.extend(repositories(&ex)?);
        ex.ensure(all.windows(2).all(|w| w[0] < w[1]), || "repositories in lexical order, each once".to_string())?;
        match next_link(&ex) {
            Some(next) => url = registry.resolve(&next),
            None => {
                let missing: Vec<&String> = names.iter().filter(|n| !all.contains(n)).collect();
                ex.ensure(missing.is_empty(), || format!("a full catalog holding {missing:?}"))?;
                return Ok(());
            }
        }
    }
    Err(CheckError::Setup("the catalog did not end within 1000 pages".into()))
}

/// The referrers API (spec.md, "Listing Referrers"): 200, `Content-Type` of an OCI index, and
/// an index listing every manifest and index of the repository whose `subject` is the digest,
/// with `artifactType` (or the config's media type, or nothing for an index without one) and
/// annotations; manifests without that subject, and referrers in other repositories, are not
/// listed.
pub async fn referrers_list(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let pushed = push_referrers(&registry, repo).await?;
    let ex = get_referrers(&registry, repo, &pushed.subject.digest.to_string(), None).await?;
    let expected: Vec<&Value> = pushed.referrers.iter().map(|r| &r.expected).collect();
    expect_referrers(&ex, &expected)
}

/// Filtering referrers by `artifactType` (spec.md: "The registry SHOULD support filtering on
/// `artifactType`"; berth does): only matching descriptors, and `OCI-Filters-Applied:
/// artifactType` ("If filtering is requested and applied, the response MUST include" it).
/// Matches on an explicit `artifactType`, on a config media type standing in for one, and on
/// nothing at all.
pub async fn referrers_filter(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let pushed = push_referrers(&registry, repo).await?;
    let subject = pushed.subject.digest.to_string();
    let cases: [(&str, Vec<&Value>); 4] = [
        (SBOM_TYPE, vec![&pushed.referrers[0].expected]),
        (SIGNATURE_CONFIG_TYPE, vec![&pushed.referrers[1].expected]),
        (BUNDLE_TYPE, vec![&pushed.referrers[2].expected]),
        ("application/vnd.berth.conformance.nothing", vec![]),
    ];
    for (artifact_type, expected) in cases {
        let ex = get_referrers(&registry, repo, &subject, Some(artifact_type)).await?;
        ex.expect_header("oci-filters-applied", "artifactType")?;
        expect_referrers(&ex, &expected)?;
    }
    Ok(())
}

/// A digest nothing refers to answers 200 with an empty index, not 404 (spec.md: "If a query
/// results in no matching referrers, an empty manifest list MUST be returned"; "the registry
/// MUST NOT return a `404 Not Found` to a referrers API request"), also for a manifest that
/// exists but has no referrers; a malformed digest answers 400 ("If the request is invalid,
/// such as a `<digest>` with an invalid syntax, a `400 Bad Request` MUST be returned").
pub async fn referrers_empty_and_invalid(base: &str, repo: &str) -> Result<(), CheckError> {
    let registry = Registry::new(base)?;
    let image = steps::push_image(&registry, repo, Some("lonely")).await?;
    for digest in [fixtures::random_digest().to_string(), image.manifest.digest.to_string()] {
        expect_referrers(&get_referrers(&registry, repo, &digest, None).await?, &[])?;
    }
    let ex = get_referrers(&registry, repo, "sha256:not-a-digest", None).await?;
    ex.expect_status(400)?.expect_error_body(&[])?;
    Ok(())
}
