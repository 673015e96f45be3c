//! The CLI as a script drives it, against the emulator on loopback: connect → finish → sync →
//! status → failures → disconnect. Every output, every log line (at trace level) and every file
//! the host wrote is scanned for the client secret and every token Dropbox issued.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dropbox_emulator::{Config, Emulator};

use crate::wasm;

const CLIENT_ID: &str = "cli-app";
const CLIENT_SECRET: &str = "CANARY-client-secret-7f3a9c";
const WRONG_SECRET: &str = "CANARY-wrong-secret-1b2c3d";
const MASTER_KEY: &str = "cli-test-master-key-0123456789abcdef";

struct Cli {
    state: PathBuf,
    transcript: String,
}

impl Cli {
    /// Run `coco-host ARGS`, keeping everything it printed.
    fn run(&mut self, args: &[&str], log: &str, with_key: bool) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coco-host"));
        cmd.args(args)
            .env("COCO_STATE_DIR", &self.state)
            .env("COCO_DROPBOX_WASM", wasm())
            .env("RUST_LOG", log)
            .env_remove("COCO_DROPBOX_CLIENT_SECRET");
        if with_key {
            cmd.env("COCO_MASTER_KEY", MASTER_KEY);
        } else {
            cmd.env_remove("COCO_MASTER_KEY");
        }
        let out = cmd.output().expect("run coco-host");
        self.transcript.push_str(&String::from_utf8_lossy(&out.stdout));
        self.transcript.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    fn ok(&mut self, args: &[&str]) -> String {
        let out = self.run(args, "trace", true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "coco-host {args:?} failed: {}", stderr.lines().last().unwrap_or(""));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A failure: non-zero exit and exactly one line on stderr, `error: …`.
    fn fails(&mut self, args: &[&str], with_key: bool) -> String {
        let out = self.run(args, "warn", with_key);
        assert!(!out.status.success(), "coco-host {args:?} should fail");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        // The same failure at trace level, for the leak scan.
        self.run(args, "trace", with_key);
        lines[0].to_string()
    }
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("").trim()
}

fn scan_files(dir: &Path, needles: &[String]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(scan_files(&path, needles));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for n in needles {
            if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                hits.push(format!("{} contains {n}", path.display()));
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_cli_round_trip_leaks_no_secret() {
    let emu = Emulator::start(Config::single(11, 1_500, CLIENT_ID, CLIENT_SECRET), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = emu.base_url();
    let tmp = tempfile::tempdir().unwrap();
    let mut cli = Cli { state: tmp.path().join("state"), transcript: String::new() };
    let out_file = tmp.path().join("docs.jsonl");

    let script = tokio::task::spawn_blocking({
        let base = base.clone();
        let out_file = out_file.clone();
        move || {
            // Outside demo mode the host refuses to run without its key.
            let e = cli.fails(&["status"], false);
            assert!(e.contains("COCO_MASTER_KEY"), "{e}");

            let stdout =
                cli.ok(&["connect", "--dropbox", &base, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]);
            let url = last_line(&stdout).to_string();
            assert!(url.starts_with(&format!("{base}/oauth2/authorize?")), "{url}");
            let redirected = ureq_location(&url);
            let id = last_line(&cli.ok(&["finish", &redirected])).to_string();
            assert_eq!(id.len(), 32, "datasource id on the last line: {id}");

            cli.ok(&["sync", &id, "--out", out_file.to_str().unwrap(), "--page-limit", "400"]);
            let status = cli.ok(&["status", "--json"]);
            let rows: serde_json::Value = serde_json::from_str(&status).unwrap();
            assert_eq!(rows[0]["id"], id.as_str());
            assert_eq!(rows[0]["status"], "ok");
            assert_eq!(rows[0]["phase"], "incremental");
            let docs = std::fs::read_to_string(&out_file).unwrap();
            assert_eq!(docs.lines().count() as u64, rows[0]["documents"].as_u64().unwrap());
            // Documents are written owner-only, and never through a symbolic link.
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777, 0o600);
            let link = out_file.with_file_name("link.jsonl");
            let elsewhere = out_file.with_file_name("elsewhere");
            std::fs::write(&elsewhere, "keep").unwrap();
            std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
            let e = cli.fails(&["sync", &id, "--out", link.to_str().unwrap()], true);
            assert!(e.contains("symbolic link"), "{e}");
            let e = cli.fails(&["sync", &id, "--sink", "jsonl", "--sink-file", link.to_str().unwrap()], true);
            assert!(e.contains("symbolic link") && !e.contains("attempts"), "refused at once: {e}");
            assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep");
            for line in docs.lines() {
                let _: serde_json::Value = serde_json::from_str(line).expect("one JSON document per line");
            }
            // Content was fetched by `sync`: counts in status, text in the documents.
            let content = &rows[0]["content"];
            assert!(content["done"].as_u64().unwrap() > 0 && content["pending"] == 0, "{content}");
            assert!(docs.contains("\"content\":\"token-"), "extracted text in the JSONL");
            assert!(cli.ok(&["status"]).contains("files with text"));
            // JSONL to stdout, too; and the same with the pooling allocator.
            let stdout = cli.ok(&["sync", &id, "--out", "-"]);
            let pooled = cli.ok(&["--pooling", "sync", &id, "--out", "-"]);
            assert_eq!(pooled.lines().count(), stdout.lines().count());
            assert_eq!(stdout.lines().count(), docs.lines().count());
            // Content settings: a bad format is refused; off forgets the text.
            let e = cli.fails(&["content", &id, "--formats", "pdf,exe"], true);
            assert!(e.contains("unknown format"), "{e}");
            let shown: serde_json::Value = serde_json::from_str(&cli.ok(&["content", &id, "--off"])).unwrap();
            assert_eq!(
                (shown["settings"]["enabled"].as_bool(), shown["counts"]["done"].as_u64()),
                (Some(false), Some(0))
            );
            let stdout = cli.ok(&["sync", &id, "--out", "-"]);
            assert!(!stdout.contains("\"content\":"), "no content once it is off");

            // Failures, each one line: replayed redirect, unknown datasource, wrong secret.
            let e = cli.fails(&["finish", &redirected], true);
            assert!(e.contains("denied") && e.contains("already used"), "{e}");
            let e = cli.fails(&["sync", "0123456789abcdef0123456789abcdef"], true);
            assert!(e.contains("no datasource"), "{e}");
            let redirected = ureq_location(last_line(&cli.ok(&[
                "connect",
                "--dropbox",
                &base,
                "--client-id",
                CLIENT_ID,
                "--client-secret",
                WRONG_SECRET,
            ])));
            let e = cli.fails(&["finish", &redirected], true);
            assert!(e.contains("invalid-client") && !e.contains(WRONG_SECRET), "{e}");
            (cli, id)
        }
    });
    let (mut cli, id) = script.await.unwrap();

    // The user revokes the app: sync fails as reauth-required, status shows it.
    emu.revoke_all();
    let cli = tokio::task::spawn_blocking(move || {
        let e = cli.fails(&["sync", &id], true);
        assert!(e.contains("connected again"), "{e}");
        let status = cli.ok(&["status"]);
        assert!(status.contains("reauth-required"), "{status}");
        let disconnected = cli.ok(&["disconnect", &id]);
        assert_eq!(last_line(&disconnected), id);
        assert!(cli.ok(&["status"]).contains("no datasources"));
        cli
    })
    .await
    .unwrap();

    // Scan: every byte printed (at trace level too), the JSONL and every state file.
    let mut needles = vec![CLIENT_SECRET.to_string(), WRONG_SECRET.to_string()];
    needles.extend(emu.issued_tokens());
    assert!(needles.len() >= 4, "tokens were issued: {needles:?}");
    let mut hits: Vec<String> = needles
        .iter()
        .filter(|n| cli.transcript.contains(n.as_str()))
        .map(|n| format!("output contains {n}"))
        .collect();
    hits.extend(scan_files(&cli.state, &needles));
    hits.extend(scan_files(tmp.path(), &needles));
    assert!(hits.is_empty(), "secrets leaked: {hits:#?}");
    assert!(cli.transcript.len() > 10_000, "trace logs were captured ({} bytes)", cli.transcript.len());
}

/// Play the browser: GET the authorize URL, return the Location it redirects to.
fn ureq_location(url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into();
    let resp = agent.get(url).call().unwrap();
    resp.headers().get("location").unwrap().to_str().unwrap().to_string()
}

/// Every secret variable can come from a file (`NAME_FILE`); `--help` says to prefer that, or
/// the environment, over flags; a variable set both ways is refused.
#[test]
fn secrets_come_from_files_and_help_prefers_them_over_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("master-key");
    std::fs::write(&key_file, format!("{}\n", "k".repeat(40))).unwrap();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_coco-host"))
            .args(args)
            .env("COCO_STATE_DIR", tmp.path().join("state"))
            .env_remove("COCO_MASTER_KEY")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let file = key_file.to_str().unwrap();
    let out = run(&[("COCO_MASTER_KEY_FILE", file)], &["status"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&[("COCO_MASTER_KEY_FILE", file), ("COCO_MASTER_KEY", "x")], &["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("both set"));
    let help = String::from_utf8(run(&[], &["--help"]).stdout).unwrap();
    assert!(help.contains("NAME_FILE") && help.contains("ps"), "{help}");
}
