//! A headless Chromium driven through WebDriver (W3C, plain HTTP JSON to Debian's
//! `chromedriver`), for the web UI's end-to-end tests: open a page, read its source, type into
//! fields, click, accept a confirmation, take a screenshot.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session in it; both end when this is dropped.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    driver: tokio::process::Child,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session.
    pub async fn start() -> Result<Browser> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run chromedriver (Debian's chromium-driver)")?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
        let root = format!("http://127.0.0.1:{port}");
        // Ready once /status says so; chromedriver starts in well under a second.
        let mut ready = false;
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{root}/status")).send().await {
                let v: Value = serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or_default();
                if v["value"]["ready"] == true {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !ready {
            bail!("chromedriver did not become ready on port {port}");
        }
        let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"],
        } } } });
        let v = send(http.post(format!("{root}/session")), Some(caps)).await?;
        let id = v["value"]["sessionId"].as_str().with_context(|| format!("no session: {v}"))?;
        Ok(Browser { base: format!("{root}/session/{id}"), http, driver })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let v = send(self.http.request(method, format!("{}{path}", self.base)), body).await?;
        if v["value"].get("error").is_some() || v.get("value").is_none() {
            bail!("webdriver {path}: {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    /// Opens `url` and waits for it to load.
    pub async fn open(&self, url: &str) -> Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await.map(drop)
    }

    /// The current page's HTML (as the browser has it, after the script ran).
    pub async fn source(&self) -> Result<String> {
        Ok(self.call(reqwest::Method::GET, "/source", None).await?.as_str().unwrap_or_default().to_string())
    }

    /// The page's source once `done` holds for it: a click that submits a form returns before
    /// the POST and its redirect have loaded the next page. Fails after two minutes with the
    /// last source seen.
    pub async fn source_when(&self, what: &str, done: impl Fn(&str) -> bool) -> Result<String> {
        let mut page = String::new();
        for _ in 0..2400 {
            if let Ok(p) = self.source().await {
                if done(&p) {
                    return Ok(p);
                }
                page = p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{what}: {page}")
    }

    /// The current URL.
    pub async fn url(&self) -> Result<String> {
        Ok(self.call(reqwest::Method::GET, "/url", None).await?.as_str().unwrap_or_default().to_string())
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Result<String> {
        let v = self
            .call(reqwest::Method::POST, "/element", Some(json!({ "using": "css selector", "value": css })))
            .await?;
        v[ELEMENT].as_str().map(str::to_string).with_context(|| format!("no element {css} (webdriver answered {v})"))
    }

    /// How many elements match a CSS selector.
    pub async fn count(&self, css: &str) -> Result<usize> {
        let v = self
            .call(reqwest::Method::POST, "/elements", Some(json!({ "using": "css selector", "value": css })))
            .await?;
        Ok(v.as_array().map_or(0, Vec::len))
    }

    /// Types `text` into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let el = self.find(css).await?;
        self.call(reqwest::Method::POST, &format!("/element/{el}/value"), Some(json!({ "text": text }))).await.map(drop)
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) -> Result<()> {
        let el = self.find(css).await?;
        self.call(reqwest::Method::POST, &format!("/element/{el}/click"), Some(json!({}))).await.map(drop)
    }

    /// The text of the open alert or confirmation, waiting for one to open.
    pub async fn alert_text(&self) -> Result<String> {
        for _ in 0..100 {
            if let Ok(v) = self.call(reqwest::Method::GET, "/alert/text", None).await {
                return Ok(v.as_str().unwrap_or_default().to_string());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("no confirmation opened")
    }

    /// Accepts the open confirmation.
    pub async fn accept_alert(&self) -> Result<()> {
        self.call(reqwest::Method::POST, "/alert/accept", Some(json!({}))).await.map(drop)
    }

    /// Saves a PNG screenshot of the page as `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let png = STANDARD.decode(v.as_str().unwrap_or_default()).context("screenshot is not base64")?;
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the browser session and chromedriver.
    pub async fn quit(mut self) -> Result<()> {
        let _ = self.http.delete(&self.base).send().await;
        let _ = self.driver.kill().await;
        Ok(())
    }
}

/// Sends a request with a JSON body (when given) and reads the JSON answer.
async fn send(req: reqwest::RequestBuilder, body: Option<Value>) -> Result<Value> {
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(serde_json::to_vec(&b)?),
        None => req,
    };
    let bytes = req.send().await?.bytes().await?;
    serde_json::from_slice(&bytes).with_context(|| format!("webdriver answered {:?}", String::from_utf8_lossy(&bytes)))
}

/// Where the UI tests save their screenshots: `target/ui-screenshots`.
pub fn screenshot_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test>
    let target = exe.ancestors().nth(3).context("test executable is not under target/")?;
    Ok(target.join("ui-screenshots"))
}
