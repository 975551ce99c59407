//! HTTPS: a registry with `[tls]` serves the API over TLS with the configured certificate,
//! picks up a replaced certificate and key without a restart, and gives the web UI's cookies
//! the `Secure` attribute. Certificates are made with the openssl command-line tool.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Writes a self-signed P-256 certificate for 127.0.0.1 and localhost, named `cn`.
fn self_signed(dir: &Path, cn: &str) -> (Vec<u8>, Vec<u8>) {
    let (cert, key) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={cn}")])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
    (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
}

/// The DER of the first certificate of a PEM file.
fn der(pem: &[u8]) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

/// A client that trusts only `cert`, and the certificate the server presented.
async fn fetch(url: &str, cert: &[u8]) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert)?])
        .tls_info(true)
        .no_proxy()
        .build()?;
    let resp = client.get(url).send().await?;
    let presented = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    Ok((resp.status().as_u16(), presented))
}

fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_and_reloads_a_replaced_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, key_a) = self_signed(dir.path(), "first");
    let (cert_b, key_b) = self_signed(dir.path(), "second");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &cert_a).unwrap();
    std::fs::write(&key, &key_a).unwrap();

    let mut config = registry::Config::default();
    config.storage.filesystem.root = dir.path().join("data");
    config.tls =
        Some(registry::config::TlsConfig { certificate: cert.clone(), key: key.clone(), reload_interval_secs: 1 });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(registry::serve_on(listener, config, async {
        let _ = stopped.await;
    }));
    let url = format!("https://127.0.0.1:{}/v2/", addr.port());

    let (status, presented) = fetch(&url, &cert_a).await.expect("HTTPS with the first certificate");
    assert_eq!(status, 200);
    assert_eq!(presented, der(&cert_a));
    assert!(fetch(&url, &cert_b).await.is_err(), "a client trusting only the second certificate connected");
    // Plain HTTP is not served on that port.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/v2/", addr.port())).send().await;
    assert!(plain.map(|r| r.status().as_u16() != 200).unwrap_or(true));

    // A half-replaced pair (new key, old certificate) keeps the old pair in use.
    replace(&key, &key_b);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(fetch(&url, &cert_a).await.expect("the old pair stays").1, der(&cert_a));
    // The whole new pair is picked up without a restart.
    replace(&cert, &cert_b);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match fetch(&url, &cert_b).await {
            Ok((200, presented)) if presented == der(&cert_b) => break,
            other if Instant::now() > deadline => panic!("the new certificate was not served: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(fetch(&url, &cert_a).await.is_err(), "the first certificate is still served");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("the server stops").unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_or_mismatched_certificate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _) = self_signed(dir.path(), "a");
    let (_, key_b) = self_signed(dir.path(), "b");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let mut config = registry::Config::default();
    config.storage.filesystem.root = dir.path().join("data");
    config.tls =
        Some(registry::config::TlsConfig { certificate: cert.clone(), key: key.clone(), reload_interval_secs: 0 });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = registry::serve_on(listener, config.clone(), std::future::pending()).await.unwrap_err();
    let err = shared::error_chain(&err);
    assert!(err.contains("tls.crt"), "{err}");
    std::fs::write(&cert, cert_a).unwrap();
    std::fs::write(&key, key_b).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = registry::serve_on(listener, config, std::future::pending()).await.unwrap_err();
    let err = shared::error_chain(&err);
    assert!(err.contains("tls.key"), "{err}");
}

/// Over `[tls]`, the web UI's cookies (the CSRF nonce and the session) are `Secure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_cookies_are_secure_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = self_signed(dir.path(), "ui");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, &key_pem).unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let line = format!("alice:{}\n", registry::auth::accounts::hash_password("alice-pw", 4).unwrap());
    std::fs::write(&htpasswd, line).unwrap();
    let text = format!(
        "[storage.filesystem]\nroot = {:?}\n[tls]\ncertificate = {:?}\nkey = {:?}\n[auth]\nhtpasswd = {:?}\n",
        dir.path().join("data").display().to_string(),
        cert.display().to_string(),
        key.display().to_string(),
        htpasswd.display().to_string()
    );
    let config: registry::Config = toml::from_str(&text).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(registry::serve_on(listener, config, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&cert_pem).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let cookies = |resp: &reqwest::Response| -> Vec<String> {
        resp.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect()
    };
    let login = client.get(format!("{base}/login")).send().await.unwrap();
    let csrf_cookie = cookies(&login).into_iter().find(|c| c.starts_with("berth_csrf=")).expect("a CSRF cookie");
    assert!(csrf_cookie.contains("; Secure"), "{csrf_cookie}");
    let nonce = csrf_cookie.split(';').next().unwrap().to_string();
    let page = login.text().await.unwrap();
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    let token = page[at..].split('"').next().unwrap();
    let resp = client
        .post(format!("{base}/login"))
        .header("cookie", nonce)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}&user=alice&password=alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let session = cookies(&resp).into_iter().find(|c| c.starts_with("berth_session=")).expect("a session cookie");
    for attribute in ["; Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(attribute), "{session}");
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("the server stops").unwrap().unwrap();
}
