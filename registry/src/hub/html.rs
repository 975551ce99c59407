//! HTML for the web UI: escaping, the page frame, and how sizes and times are written.
//!
//! Pages are written with `format!`, so the compiler checks every placeholder; every value
//! that is not a literal of this crate goes through [`esc`] (text and attribute values) or
//! [`attr_url`] (a link built from names). Responses carry a Content-Security-Policy that
//! allows only this server's own script and stylesheet, so even a missed escape could not run
//! a script.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path for an `href`: each `/`-separated part percent-encoded, then HTML-escaped.
pub fn attr_url(path: &str) -> String {
    let parts: Vec<String> =
        path.split('/').map(|p| shared::query::escape(p).replace("%40", "@").replace("%3A", ":")).collect();
    esc(&parts.join("/"))
}

/// A byte count as people read it (`1.5 MB`, decimal units as registries show them).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A time as UTC RFC 3339 (`2026-01-02T03:04:05Z`); `-` when unknown.
pub fn time(t: Option<SystemTime>) -> String {
    match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        Some(d) => shared::date::rfc3339(d.as_secs() as i64),
        None => "-".into(),
    }
}

/// A `<time>` element that the script shows as "5 minutes ago", with the exact time as its
/// title.
pub fn time_el(t: Option<SystemTime>) -> String {
    let at = time(t);
    format!("<time datetime=\"{at}\" title=\"{at}\">{at}</time>")
}

/// A digest shortened for tables (`sha256:0123456789ab`), the whole one in the title.
pub fn short_digest(d: &str) -> String {
    let short: String = d.chars().take(19).collect();
    format!("<code title=\"{}\">{}</code>", esc(d), esc(&short))
}

/// What the page frame shows of the viewer.
pub struct Frame<'a> {
    /// The signed-in name.
    pub user: Option<&'a str>,
    /// Access control is on (so there is a sign-in link).
    pub auth: bool,
    /// The viewer may see the system page.
    pub admin: bool,
    /// The CSRF token for the sign-out form.
    pub csrf: &'a str,
}

/// A whole page: the frame around `body`.
pub fn page(title: &str, frame: &Frame, body: &str) -> String {
    let mut nav = String::new();
    if frame.admin {
        nav.push_str("<a href=\"/system\">System</a>");
    }
    match frame.user {
        Some(user) => {
            let _ = write!(
                nav,
                "<span class=\"who\">{}</span><form method=\"post\" action=\"/logout\" class=\"inline\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form>",
                esc(user),
                esc(frame.csrf)
            );
        }
        None if frame.auth => nav.push_str("<a href=\"/login\">Sign in</a>"),
        None => {}
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · berth</title><link rel=\"stylesheet\" href=\"/assets/style.css\">\
         <script src=\"/assets/app.js\" defer></script></head><body>\
         <header><a class=\"brand\" href=\"/\">berth</a><nav>{nav}</nav></header>\
         <main>{body}</main></body></html>",
        esc(title)
    )
}

/// An HTML response with the UI's security headers.
pub fn respond(status: StatusCode, html: String) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        assert_eq!(esc("<a href='x'>\"&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;");
        assert_eq!(attr_url("/r/a/b/@sha256:00"), "/r/a/b/@sha256:00");
        assert_eq!(attr_url("/r/x\"><script>"), "/r/x%22%3E%3Cscript%3E");
    }

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1_500_000), "1.5 MB");
        assert_eq!(time(None), "-");
        assert_eq!(time(Some(UNIX_EPOCH)), "1970-01-01T00:00:00Z");
    }
}
