//! TLS and proxies end to end: `serve` over https with the emulator and Coco Server on a CA
//! made at test time (trusted through `SSL_CERT_FILE`, then `--ca-file`); an unrelated CA
//! refused at once with the host and the reason, nothing delivered, and the backlog drained
//! once the CA is fixed; a loopback CONNECT proxy for Dropbox with `NO_PROXY` for the sink,
//! and a refused tunnel named.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dropbox_emulator::{Config, Emulator};

use crate::pki::{https, Pki};
use crate::receivers::{Kind, Receiver, COCO_TOKEN};
use crate::serve::{datasource_id, expected, token_header, Served, MASTER};

pub const APP: (&str, &str) = ("serve-app", "serve-app-secret");
const ADMIN: &str = "serve-test-admin-token-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `serve` over https (`pki`'s certificate) against `dropbox`, with `env` and `flags`.
pub async fn serve_https(dropbox: &str, state: &Path, pki: &Pki, env: &[(&str, &str)], flags: &[&str]) -> Served {
    let tls = ["--tls-cert", pki.cert.to_str().unwrap(), "--tls-key", pki.key.to_str().unwrap()];
    let mut all: Vec<&str> = tls.to_vec();
    all.extend(flags);
    spawn_serve(Path::new(env!("CARGO_BIN_EXE_coco-host")), dropbox, state, Some(pki), env, &all).await
}

/// `bin serve` on a free port against `dropbox` (https when `pki` is given), ready. `{port}`
/// in a flag is that port (e.g. a public URL under another host name).
pub async fn spawn_serve(
    bin: &Path,
    dropbox: &str,
    state: &Path,
    pki: Option<&Pki>,
    env: &[(&str, &str)],
    flags: &[&str],
) -> Served {
    let port = free_port();
    let stderr = state.with_extension(format!("serve-{port}.log"));
    std::fs::create_dir_all(state).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--dropbox", dropbox])
        .args(flags.iter().map(|f| f.replace("{port}", &port.to_string())))
        .env("COCO_STATE_DIR", state)
        .env("COCO_MASTER_KEY", MASTER)
        .env("COCO_API_TOKEN", ADMIN)
        .env("COCO_SERVER_TOKEN", COCO_TOKEN)
        .env("COCO_DROPBOX_CLIENT_ID", APP.0)
        .env("COCO_DROPBOX_CLIENT_SECRET", APP.1)
        .env("RUST_LOG", "warn")
        .env_remove("SSL_CERT_FILE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    if bin == Path::new(env!("CARGO_BIN_EXE_coco-host")) {
        cmd.env("COCO_DROPBOX_WASM", crate::wasm());
    }
    cmd.envs(env.iter().copied());
    let scheme = if pki.is_some() { "https" } else { "http" };
    let served = Served { child: cmd.spawn().unwrap(), base: format!("{scheme}://127.0.0.1:{port}"), stderr };
    let deadline = Instant::now() + Duration::from_secs(60);
    let readyz = format!("{}/readyz", served.base);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            let status = match pki {
                Some(pki) => https("GET", &readyz, pki, &[], None).await.status,
                None => crate::serve::http("GET", &readyz, &[], None).await.status,
            };
            if status == 200 {
                return served;
            }
        }
        assert!(
            Instant::now() < deadline,
            "serve did not get ready: {}",
            std::fs::read_to_string(&served.stderr).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The browser's part of connecting account 0 over https: `/connect`, the consent, the
/// redirect back with the session cookie.
async fn connect(emu: &Emulator, base: &str, pki: &Pki) {
    emu.log_in(0);
    let start = https("GET", &format!("{base}/connector/dropbox/dropbox/connect"), pki, &[token_header()], None).await;
    assert_eq!(start.status, 302, "{}", start.body);
    let cookie = start.set_cookie.expect("a session cookie");
    assert!(cookie.starts_with("__Host-") && cookie.contains("Secure"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_string();
    let consent = https("GET", &start.location.unwrap(), pki, &[], None).await;
    assert_eq!(consent.status, 302, "{}", consent.body);
    let back = https("GET", &consent.location.unwrap(), pki, &[("cookie", &cookie)], None).await;
    assert_eq!(back.status, 200, "{}", back.body);
}

/// SIGTERM, and the exit status.
pub fn terminate(mut served: Served) -> std::process::ExitStatus {
    unsafe { libc::kill(served.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "serve did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `coco-host` on `state` with `env`; (success, stderr).
fn cli(state: &Path, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_coco-host"))
        .args(args)
        .env("COCO_STATE_DIR", state)
        .env("COCO_DROPBOX_WASM", crate::wasm())
        .env("COCO_MASTER_KEY", MASTER)
        .env("COCO_SERVER_TOKEN", COCO_TOKEN)
        .env("RUST_LOG", "warn")
        .env_remove("SSL_CERT_FILE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn until_delivered(coco: &Receiver, want: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while coco.docs().len() < want {
        assert!(Instant::now() < deadline, "{what}: {} of {want} documents delivered", coco.docs().len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_everywhere_and_an_unrelated_ca_is_refused_with_nothing_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path(), "trusted");
    let other = Pki::new(tmp.path(), "unrelated");
    let emu =
        Emulator::start_tls(Config::single(31, 300, APP.0, APP.1), "127.0.0.1:0".parse().unwrap(), pki.server_config())
            .await
            .unwrap();
    let coco = Receiver::start_tls(Kind::Coco, Some(pki.server_config())).await;
    let state = tmp.path().join("state");
    let ca = pki.ca.to_str().unwrap();

    // 1. Connect, sync and deliver over https, trusting the CA through SSL_CERT_FILE.
    let served = serve_https(
        &emu.base_url(),
        &state,
        &pki,
        &[("SSL_CERT_FILE", ca)],
        &["--sink", "coco", "--coco-url", &coco.url()],
    )
    .await;
    connect(&emu, &served.base, &pki).await;
    let ds = datasource_id(&emu, 0);
    let want: std::collections::BTreeSet<String> = expected(&emu, 0, &ds).into_keys().collect();
    until_delivered(&coco, want.len(), "serve over https").await;
    assert_eq!(coco.docs().into_keys().collect::<std::collections::BTreeSet<_>>(), want);
    assert!(terminate(served).success());

    // 2. Dropbox behind an unrelated CA: one clear line naming the host, no retries spent.
    let dropbox = format!("127.0.0.1:{}", emu.addr().port());
    let (ok, err) = cli(&state, &[("SSL_CERT_FILE", other.ca.to_str().unwrap())], &["sync", &ds, "--no-content"]);
    assert!(!ok, "{err}");
    assert!(err.contains(&format!("TLS: the certificate of {dropbox} does not verify")), "{err}");

    // 3. A Coco Server whose certificate comes from another CA: refused at once, nothing
    // delivered; then trusted through --ca-file, and the whole backlog drains.
    let other_coco = Receiver::start_tls(Kind::Coco, Some(other.server_config())).await;
    let sink = ["sync", &ds, "--no-content", "--sink", "coco", "--coco-url", &other_coco.url()];
    let (ok, err) = cli(&state, &[("SSL_CERT_FILE", ca)], &sink);
    assert!(!ok, "{err}");
    let target = format!("127.0.0.1:{}", other_coco.addr.port());
    assert!(err.contains(&format!("TLS: the certificate of {target} does not verify")), "{err}");
    assert!(!err.contains("gave up after"), "a certificate failure is not retried: {err}");
    assert!(other_coco.docs().is_empty(), "nothing delivered past a refused certificate");
    let mut fixed = vec!["--ca-file", other.ca.to_str().unwrap()];
    fixed.extend(sink);
    let (ok, err) = cli(&state, &[("SSL_CERT_FILE", ca)], &fixed);
    assert!(ok, "{err}");
    assert_eq!(other_coco.docs().into_keys().collect::<std::collections::BTreeSet<_>>(), want, "the backlog drained");
}

/// A loopback HTTP proxy that opens CONNECT tunnels (or refuses them), recording each target.
struct ConnectProxy {
    url: String,
    tunnels: Arc<Mutex<Vec<String>>>,
    refuse: Arc<AtomicBool>,
}

impl ConnectProxy {
    async fn start() -> ConnectProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(AtomicBool::new(false));
        let (seen, refusing) = (tunnels.clone(), refuse.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (seen, refusing) = (seen.clone(), refusing.clone());
                tokio::spawn(async move {
                    // The request head, byte by byte: nothing of the tunnel is read ahead.
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                        if client.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let mut words = head.split_whitespace();
                    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
                        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n").await;
                        return;
                    };
                    seen.lock().unwrap().push(target.to_string());
                    if refusing.load(Ordering::SeqCst) {
                        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").await;
                        return;
                    }
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await;
                        return;
                    };
                    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        ConnectProxy { url, tunnels, refuse }
    }

    fn tunnels(&self) -> Vec<String> {
        self.tunnels.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropbox_through_a_connect_proxy_the_sink_by_no_proxy_and_a_refused_tunnel_named() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path(), "proxied");
    let emu =
        Emulator::start_tls(Config::single(32, 200, APP.0, APP.1), "127.0.0.1:0".parse().unwrap(), pki.server_config())
            .await
            .unwrap();
    let coco = Receiver::start_tls(Kind::Coco, Some(pki.server_config())).await;
    let proxy = ConnectProxy::start().await;
    // Dropbox by name (through the proxy), Coco by address (NO_PROXY).
    let dropbox = emu.base_url_as("localhost");
    let state = tmp.path().join("state");
    let ca = pki.ca.to_str().unwrap();
    let env = [("HTTPS_PROXY", proxy.url.as_str()), ("NO_PROXY", "127.0.0.1"), ("COCO_CA_FILE", ca)];
    let served = serve_https(&dropbox, &state, &pki, &env, &["--sink", "coco", "--coco-url", &coco.url()]).await;
    connect(&emu, &served.base, &pki).await;
    let ds = datasource_id(&emu, 0);
    until_delivered(&coco, expected(&emu, 0, &ds).len(), "serve through a proxy").await;
    assert!(terminate(served).success());
    let port = emu.addr().port();
    let tunnels = proxy.tunnels();
    assert!(tunnels.contains(&format!("localhost:{port}")), "Dropbox went through the proxy: {tunnels:?}");
    assert!(tunnels.iter().all(|t| t.starts_with("localhost:")), "NO_PROXY kept Coco direct: {tunnels:?}");

    // A proxy that refuses the tunnel: one line naming the proxy and the target, at once.
    proxy.refuse.store(true, Ordering::SeqCst);
    let (ok, err) = cli(&state, &env, &["sync", &ds, "--no-content"]);
    assert!(!ok, "{err}");
    let line = format!("proxy {} refused to open a tunnel (CONNECT) to localhost:{port}", proxy.url);
    assert!(err.contains(&line), "{err}");
}

/// A PostgreSQL server of its own with `ssl=on` and `pki`'s certificate (Debian's binaries,
/// as `./dev test` installs them); stopped when dropped.
struct TlsPostgres {
    ctl: Vec<String>,
    port: u16,
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = Command::new(&self.ctl[0]).args(&self.ctl[1..]).args(["-m", "immediate", "stop"]).output();
    }
}

impl TlsPostgres {
    fn start(dir: &Path, pki: &Pki) -> Option<TlsPostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").is_file())
            .max()?;
        // initdb refuses root: the cluster belongs to `postgres` then.
        let root = unsafe { libc::geteuid() } == 0;
        let data = dir.join("pg");
        std::fs::create_dir_all(&data).unwrap();
        let as_owner = |program: &Path| -> Vec<String> {
            let mut v: Vec<String> =
                if root { vec!["runuser".into(), "-u".into(), "postgres".into(), "--".into()] } else { vec![] };
            v.push(program.display().to_string());
            v
        };
        let cert = data.join("server.pem");
        let key = data.join("server.key");
        std::fs::write(&cert, &pki.cert_pem).unwrap();
        std::fs::write(&key, &pki.key_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if root {
            let chown = Command::new("chown").args(["-R", "postgres"]).arg(dir).status().unwrap();
            assert!(chown.success());
        }
        let run = |argv: Vec<String>| {
            let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
            assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let mut initdb = as_owner(&bin.join("initdb"));
        initdb.extend([
            "-D".into(),
            data.join("data").display().to_string(),
            "-U".into(),
            "coco".into(),
            "-A".into(),
            "trust".into(),
            "--no-locale".into(),
            "-E".into(),
            "UTF8".into(),
        ]);
        run(initdb);
        let port = free_port();
        let mut ctl = as_owner(&bin.join("pg_ctl"));
        ctl.extend(["-D".into(), data.join("data").display().to_string()]);
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            data.display(),
            cert.display(),
            key.display()
        );
        let mut start = ctl.clone();
        start.extend([
            "-l".into(),
            data.join("server.log").display().to_string(),
            "-w".into(),
            "-o".into(),
            options,
            "start".into(),
        ]);
        run(start);
        Some(TlsPostgres { ctl, port })
    }
}

#[test]
fn postgres_sslmode_verify_full_and_refusals_that_name_the_reason() {
    use coco_host::db::ConnExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path(), "pg");
    let other = Pki::new(tmp.path(), "pg-other");
    let Some(pg) = TlsPostgres::start(&tmp.path().join("cluster"), &pki) else {
        eprintln!("notice: no PostgreSQL binaries under /usr/lib/postgresql: the sslmode test is skipped (./dev test installs them)");
        return;
    };
    let url = |mode: &str, root: &Path| {
        format!("postgres://coco@127.0.0.1:{}/postgres?sslmode={mode}&sslrootcert={}", pg.port, root.display())
    };
    // verify-full against the right root: encrypted, and the server says so.
    let conn = coco_host::db::Postgres::connect(&url("verify-full", &pki.ca)).unwrap();
    let ssl: bool = conn.value("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap();
    assert!(ssl, "the session is encrypted");
    drop(conn);
    // require encrypts without verifying (libpq's meaning) unless a root is named.
    let bare = format!("postgres://coco@127.0.0.1:{}/postgres?sslmode=require", pg.port);
    assert!(coco_host::db::Postgres::connect(&bare).is_ok());
    assert!(coco_host::db::Postgres::connect(&url("require", &other.ca)).is_err(), "require + sslrootcert verifies");
    // verify-ca and verify-full against a wrong root: refused, naming the server and why.
    for mode in ["verify-ca", "verify-full"] {
        let e = coco_host::db::Postgres::connect(&url(mode, &other.ca)).err().expect("refused").to_string();
        assert!(e.contains(&format!("TLS: the certificate of 127.0.0.1:{} does not verify", pg.port)), "{mode}: {e}");
    }
    // verify-ca skips the name, so public roots alone would vouch for anyone: it needs a root.
    let bare_ca = format!("postgres://coco@127.0.0.1:{}/postgres?sslmode=verify-ca", pg.port);
    let e = coco_host::db::Postgres::connect(&bare_ca).err().expect("refused").to_string();
    assert!(e.contains("verify-ca needs sslrootcert (or --ca-file)"), "{e}");
    // verify-full against a server without TLS (the test run's own PostgreSQL).
    if let Some(plain) = std::env::var("COCO_TEST_POSTGRES").ok().filter(|v| !v.is_empty()) {
        let e =
            coco_host::db::Postgres::connect(&format!("{plain}?sslmode=verify-full&sslrootcert={}", pki.ca.display()))
                .err()
                .expect("refused")
                .to_string();
        assert!(e.contains("does not support TLS"), "{e}");
    }
}
