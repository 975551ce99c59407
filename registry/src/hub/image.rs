//! The image page (`/r/<name>/@<tag or digest>`): for an index, each platform; for an image,
//! its config (entrypoint, command, environment, user, working directory, exposed ports,
//! labels), its history with each layer's size, its layers; for both, the referrers grouped by
//! artifact type and the raw JSON. Everything shown comes from the pusher and is escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use shared::manifest::{Descriptor, Manifest};
use shared::{media_type, Reference, RepoName};

use super::api;
use super::html::{self, attr_url, esc};
use super::pages::{bad_request, Ctx};
use crate::auth::rules::PULL;
use crate::error::ApiError;

/// Configs bigger than this are not shown.
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// The page of `reference` in the repository `name`.
pub(crate) async fn page(ctx: &Ctx, name: &str, reference: &str) -> Response {
    match body(ctx, name, reference).await {
        Ok((title, body)) => ctx.page(StatusCode::OK, &title, &body),
        Err(e) => ctx.error(&e),
    }
}

async fn body(ctx: &Ctx, name: &str, reference: &str) -> Result<(String, String), ApiError> {
    let store = &ctx.state.store;
    let repo = api::visible(&ctx.state, &ctx.viewer, name, PULL, "pull from").await?;
    let parsed: Reference = reference
        .parse()
        .map_err(|e: shared::NameError| bad_request(&format!("{reference:?} is not a tag or digest: {e}")))?;
    let stored = store.get_manifest(&repo, &parsed).await?;
    let manifest = Manifest::parse(&stored.body, Some(&stored.media_type)).ok();
    let sep = if matches!(parsed, Reference::Digest(_)) { "@" } else { ":" };
    let title = format!("{repo}{sep}{reference}");
    let mut out = format!(
        "<p class=\"crumbs\"><a href=\"/\">Repositories</a> / <a href=\"{}\">{}</a> /</p><h1>{}</h1>\
         <dl class=\"facts\"><dt>Digest</dt><dd><code>{}</code></dd><dt>Media type</dt><dd>{}</dd>\
         <dt>Pull</dt><dd class=\"pull\"><code>docker pull {}/{}</code></dd></dl>",
        attr_url(&format!("/r/{repo}")),
        esc(repo.as_str()),
        esc(&title),
        esc(&stored.digest.to_string()),
        esc(&stored.media_type),
        esc(&ctx.host),
        esc(&title),
    );
    let mut config_json = None;
    match &manifest {
        Some(m) if m.is_index() => platforms(ctx, &repo, m, &mut out).await?,
        Some(m) => config_json = image(ctx, &repo, m, &mut out).await?,
        None => out.push_str("<p class=\"error\">This manifest cannot be read.</p>"),
    }
    referrers(ctx, &repo, &stored.digest, &mut out).await?;
    let _ = write!(
        out,
        "<h2>Raw JSON</h2><details><summary>Manifest</summary><pre>{}</pre></details>",
        esc(&pretty(&stored.body))
    );
    if let Some(config) = config_json {
        let _ = write!(out, "<details><summary>Config</summary><pre>{}</pre></details>", esc(&pretty(&config)));
    }
    Ok((title, out))
}

/// JSON indented, or the text as it is when it is not JSON.
fn pretty(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

async fn platforms(ctx: &Ctx, repo: &RepoName, index: &Manifest, out: &mut String) -> Result<(), ApiError> {
    out.push_str(
        "<h2>Platforms</h2><table class=\"list\"><thead><tr><th>Platform</th><th>Digest</th><th class=\"num\">Size</th>\
         <th>Media type</th></tr></thead><tbody>",
    );
    for child in &index.manifests {
        let platform = child.platform.as_ref().map_or_else(
            || "-".to_string(),
            |p| crate::store::platform_text(&p.os, &p.architecture, p.variant.as_deref()),
        );
        let size: u64 = match ctx.state.store.footprint(repo, &child.digest).await? {
            Some(f) => f.blobs.iter().map(|(_, s)| s).sum(),
            None => 0,
        };
        let _ = write!(
            out,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            attr_url(&format!("/r/{repo}/@{}", child.digest)),
            esc(&platform),
            html::short_digest(&child.digest.to_string()),
            html::size(size),
            esc(&child.media_type),
        );
    }
    out.push_str("</tbody></table>");
    Ok(())
}

/// The image's config, history and layers; returns the config's bytes when read.
async fn image(ctx: &Ctx, repo: &RepoName, m: &Manifest, out: &mut String) -> Result<Option<bytes::Bytes>, ApiError> {
    let Some(config_desc) = &m.config else { return Ok(None) };
    let is_image_config = matches!(config_desc.media_type.as_str(), media_type::OCI_CONFIG | media_type::DOCKER_CONFIG);
    let raw = ctx.state.store.read_small_blob(repo, &config_desc.digest, MAX_CONFIG_BYTES).await?;
    let config: Option<Value> = raw.as_ref().filter(|_| is_image_config).and_then(|b| serde_json::from_slice(b).ok());
    match &config {
        Some(c) => config_section(c, out),
        None => {
            let _ = write!(
                out,
                "<h2>Config</h2><dl class=\"facts\"><dt>Media type</dt><dd>{}</dd><dt>Size</dt><dd>{}</dd></dl>",
                esc(&config_desc.media_type),
                html::size(config_desc.size)
            );
            if let Some(t) = &m.artifact_type {
                let _ = write!(out, "<p>Artifact type: <code>{}</code></p>", esc(t));
            }
        }
    }
    if let Some(c) = &config {
        history(c, &m.layers, out);
    }
    layers(&m.layers, out);
    Ok(raw)
}

/// A JSON string or array of strings as one line.
fn words(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => Some(
            a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect::<Vec<_>>().join(" "),
        ),
        _ => None,
    }
}

fn config_section(c: &Value, out: &mut String) {
    let cfg = c.get("config").unwrap_or(&Value::Null);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let platform = match (text(c.get("os")), text(c.get("architecture"))) {
        (Some(os), Some(arch)) => Some(crate::store::platform_text(&os, &arch, text(c.get("variant")).as_deref())),
        _ => None,
    };
    let mut ports: Vec<String> =
        cfg.get("ExposedPorts").and_then(Value::as_object).map(|o| o.keys().cloned().collect()).unwrap_or_default();
    ports.sort();
    let facts: [(&str, Option<String>); 7] = [
        ("Platform", platform),
        ("Created", text(c.get("created"))),
        ("Entrypoint", words(cfg.get("Entrypoint"))),
        ("Command", words(cfg.get("Cmd"))),
        ("User", text(cfg.get("User"))),
        ("Working directory", text(cfg.get("WorkingDir"))),
        ("Exposed ports", (!ports.is_empty()).then(|| ports.join(", "))),
    ];
    out.push_str("<h2>Config</h2><dl class=\"facts\">");
    for (k, v) in facts {
        let _ = write!(out, "<dt>{k}</dt><dd><code>{}</code></dd>", esc(v.as_deref().unwrap_or("-")));
    }
    out.push_str("</dl>");
    if let Some(env) = cfg.get("Env").and_then(Value::as_array).filter(|e| !e.is_empty()) {
        out.push_str("<h3>Environment</h3><ul class=\"mono\">");
        for e in env {
            let _ = write!(out, "<li>{}</li>", esc(e.as_str().unwrap_or("")));
        }
        out.push_str("</ul>");
    }
    if let Some(labels) = cfg.get("Labels").and_then(Value::as_object).filter(|l| !l.is_empty()) {
        out.push_str("<h3>Labels</h3><table class=\"list\"><tbody>");
        let sorted: BTreeMap<_, _> = labels.iter().collect();
        for (k, v) in sorted {
            let _ = write!(out, "<tr><td><code>{}</code></td><td>{}</td></tr>", esc(k), esc(v.as_str().unwrap_or("")));
        }
        out.push_str("</tbody></table>");
    }
}

/// The history, each entry that made a layer with that layer's size.
fn history(c: &Value, layers: &[Descriptor], out: &mut String) {
    let Some(entries) = c.get("history").and_then(Value::as_array).filter(|h| !h.is_empty()) else { return };
    out.push_str("<h2>History</h2><table class=\"list\"><thead><tr><th>Created by</th><th class=\"num\">Size</th></tr></thead><tbody>");
    let mut layer = layers.iter();
    for h in entries {
        let empty = h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
        let size =
            if empty { "-".to_string() } else { layer.next().map_or_else(|| "?".into(), |d| html::size(d.size)) };
        let text = |k: &str| h.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
        // Imported layers have no command, only a comment ("Imported from -").
        let by = match (text("created_by"), text("comment")) {
            (Some(by), _) => format!("<code class=\"wrap\">{}</code>", esc(by)),
            (None, Some(comment)) => format!("<span class=\"muted\">{}</span>", esc(comment)),
            (None, None) => "<span class=\"muted\">-</span>".to_string(),
        };
        let _ = write!(out, "<tr><td>{by}</td><td class=\"num\">{size}</td></tr>");
    }
    out.push_str("</tbody></table>");
}

fn layers(layers: &[Descriptor], out: &mut String) {
    if layers.is_empty() {
        return;
    }
    let total: u64 = layers.iter().map(|d| d.size).sum();
    let _ = write!(
        out,
        "<h2>Layers</h2><p class=\"muted\">{} layer{}, {} compressed</p><table class=\"list\"><thead><tr><th>#</th><th>Digest</th>\
         <th>Media type</th><th class=\"num\">Size</th></tr></thead><tbody>",
        layers.len(),
        if layers.len() == 1 { "" } else { "s" },
        html::size(total)
    );
    for (i, d) in layers.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\" title=\"{} bytes\">{}</td></tr>",
            i + 1,
            html::short_digest(&d.digest.to_string()),
            esc(&d.media_type),
            d.size,
            html::size(d.size)
        );
    }
    out.push_str("</tbody></table>");
}

async fn referrers(ctx: &Ctx, repo: &RepoName, digest: &shared::Digest, out: &mut String) -> Result<(), ApiError> {
    let found = ctx.state.store.referrers(repo, digest, None).await?;
    if found.is_empty() {
        return Ok(());
    }
    let mut groups: BTreeMap<String, Vec<&Descriptor>> = BTreeMap::new();
    for d in &found {
        groups.entry(d.artifact_type.clone().unwrap_or_else(|| d.media_type.clone())).or_default().push(d);
    }
    out.push_str("<h2>Referrers</h2>");
    for (kind, list) in groups {
        let _ = write!(out, "<h3>{} <span class=\"muted\">({})</span></h3><ul>", esc(kind_label(&kind)), esc(&kind));
        for d in list {
            let _ = write!(
                out,
                "<li><a href=\"{}\">{}</a> · {}</li>",
                attr_url(&format!("/r/{repo}/@{}", d.digest)),
                esc(&d.digest.to_string()),
                html::size(d.size)
            );
        }
        out.push_str("</ul>");
    }
    Ok(())
}

/// What people call an artifact type.
fn kind_label(artifact_type: &str) -> &'static str {
    let t = artifact_type.to_ascii_lowercase();
    if t.contains("signature") || t.contains("cosign") || t.contains("notary") {
        "Signatures"
    } else if t.contains("spdx") || t.contains("cyclonedx") || t.contains("sbom") || t.contains("syft") {
        "SBOMs"
    } else if t.contains("in-toto") || t.contains("attestation") || t.contains("provenance") || t.contains("dsse") {
        "Attestations"
    } else {
        "Other artifacts"
    }
}
