//! Connecting in a real browser: headless Chromium opens a connect link of `serve` (https,
//! `coco.test`), follows the redirect to the emulator's consent (https, `dropbox.test`, another
//! site) and back; the `__Host-` session cookie crosses the sites as it does for a person, and
//! the datasource exists. Chromium trusts NSS, not SSL_CERT_FILE: the test CA goes into an NSS
//! database under a temporary HOME. Skipped with a notice where Chromium is not installed.

use std::process::Command;
use std::time::Duration;

use dropbox_emulator::{Config, Emulator};

use crate::pki::{https, Pki};
use crate::serve::{datasource_id, open_store, token_header};
use crate::tls::{serve_https, terminate, APP};

fn installed(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_connects_across_sites_over_https() {
    if !installed("chromium") || !installed("certutil") {
        eprintln!("notice: chromium or certutil (libnss3-tools) is not installed: the browser test is skipped (./dev test installs them)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path(), "browser");
    let emu =
        Emulator::start_tls(Config::single(51, 40, APP.0, APP.1), "127.0.0.1:0".parse().unwrap(), pki.server_config())
            .await
            .unwrap();
    emu.log_in(0);
    // The host reaches Dropbox by address; the browser reaches the consent page and serve by
    // name, two sites.
    let state = tmp.path().join("state");
    let authorize = emu.base_url_as("dropbox.test");
    let served = serve_https(
        &emu.base_url(),
        &state,
        &pki,
        &[("COCO_CA_FILE", pki.ca.to_str().unwrap())],
        &["--authorize-url", &authorize, "--public-url", "https://coco.test:{port}"],
    )
    .await;
    let public = served.base.replace("127.0.0.1", "coco.test");
    let link = https(
        "POST",
        &format!("{}/api/connect-links", served.base),
        &pki,
        &[token_header(), ("content-type", "application/json")],
        Some(r#"{"connector_id":"dropbox"}"#.into()),
    )
    .await;
    assert_eq!(link.status, 200, "{}", link.body);
    let url: serde_json::Value = serde_json::from_str(&link.body).unwrap();
    let url = url["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&public), "{url} is under {public}");

    // The browser's own trust: an NSS database under a HOME of its own.
    let home = tmp.path().join("home");
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    for args in [
        vec!["-d", &db, "-N", "--empty-password"],
        vec!["-d", &db, "-A", "-t", "C,,", "-n", "coco-test-ca", "-i", pki.ca.to_str().unwrap()],
    ] {
        let out = Command::new("certutil").args(&args).output().unwrap();
        assert!(out.status.success(), "certutil {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let profile = tmp.path().join("chromium-profile");
    let browse = tokio::task::spawn_blocking(move || {
        Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--host-resolver-rules=MAP coco.test 127.0.0.1, MAP dropbox.test 127.0.0.1")
            .args(["--timeout=30000", "--dump-dom", &url])
            .env("HOME", &home)
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(120), browse).await.expect("chromium finished").unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("<h1>Connected</h1>"),
        "the browser ended on the connected page: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr).lines().filter(|l| !l.contains("dbus")).collect::<Vec<_>>().join("\n")
    );
    let ds = datasource_id(&emu, 0);
    assert!(open_store(&state).datasource(&ds).is_ok(), "the datasource {ds} exists");
    assert!(terminate(served).success());
}
