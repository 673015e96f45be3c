//! `coco-host register` against the Coco stand-in: it makes sure Coco has the connector
//! (`GET /connector/:id`, `POST /connector/` on a 404), so a set-up server, which ships
//! `dropbox`, is left as it is instead of answering the create with a 500.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dropbox_emulator::coco::{router, CocoModel, SharedCoco};

async fn coco(model: CocoModel) -> (SharedCoco, String) {
    let model: SharedCoco = Arc::new(Mutex::new(model));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(model.clone(), Duration::from_millis(10));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (model, base)
}

async fn register(base: &str, token: &str) -> std::process::Output {
    register_with(base, &["--coco-server-token", token], &[]).await
}

async fn register_with(base: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let base = base.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_coco-host"))
            .args(["register", "--coco-url", &base])
            .args(&args)
            .env_remove("COCO_API_TOKEN")
            .env_remove("COCO_SERVER_TOKEN")
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_creates_the_seed_connector_once_and_leaves_a_set_up_servers_alone() {
    // A server without connectors: created, with the seed document's fields.
    let (model, base) = coco(CocoModel::empty("tok-123")).await;
    let out = register(&base, "tok-123").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "created");
    {
        let m = model.lock().unwrap();
        let body = &m.connectors["dropbox"];
        assert_eq!(body["name"], "Dropbox Connector");
        assert_eq!(body["category"], "cloud_storage");
        assert_eq!(body["path_hierarchy"], false);
        assert_eq!(body["tags"], serde_json::json!(["dropbox", "cloud_storage", "file_sharing"]));
        assert_eq!(body["processor"], serde_json::json!({ "enabled": true, "name": "dropbox" }));
        // Every icon a file document can carry (the published list) resolves to an asset.
        for key in &coco_host::info::connector_info().file_icon_keys {
            assert!(
                body["assets"]["icons"][key.as_str()]
                    .as_str()
                    .is_some_and(|u| u.starts_with("/assets/icons/connector/dropbox/")),
                "{key}"
            );
        }
    }
    // Again: Coco has it, nothing is posted (a second create would be a 500 conflict).
    let out = register(&base, "tok-123").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "existed");
    assert_eq!(model.lock().unwrap().counters.get("POST /connector/"), 1);

    // A set-up server ships `dropbox`: left as it is.
    let (model, base) = coco(CocoModel::set_up("tok-123")).await;
    let out = register(&base, "tok-123").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "existed");
    assert_eq!(model.lock().unwrap().counters.get("POST /connector/"), 0);
    assert_eq!(model.lock().unwrap().connectors["dropbox"]["builtin"], true, "not overwritten");

    // A refused token: one clear line with the route and Coco's reason, no secret.
    let out = register(&base, "wrong-token").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GET /connector/dropbox") && err.contains("invalid login"), "{err}");
    assert!(!err.contains("wrong-token"), "{err}");
}

/// `register` takes Coco Server's token as the sinks do (`COCO_SERVER_TOKEN`); the host's own
/// `COCO_API_TOKEN` is still read for one release, with a warning, and one value for both is
/// warned about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_reads_coco_server_token_and_warns_about_the_old_variable() {
    let (_, base) = coco(CocoModel::set_up("tok-123")).await;
    let out = register_with(&base, &[], &[("COCO_SERVER_TOKEN", "tok-123")]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
    let out = register_with(&base, &[], &[("COCO_API_TOKEN", "tok-123")]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("COCO_API_TOKEN") && err.contains("COCO_SERVER_TOKEN"), "{err}");
    let out = register_with(&base, &[], &[("COCO_API_TOKEN", "tok-123"), ("COCO_SERVER_TOKEN", "tok-123")]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("are the same"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn connector_json_prints_the_same_document() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coco-host")).arg("connector-json").output().unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, coco_host::registration::connector_json("dropbox"));
}
