//! `coco-host register` posts the connector JSON to a Coco Server; a loopback receiver checks it.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};

type Seen = Arc<Mutex<Vec<(String, Option<String>, serde_json::Value)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_posts_the_seed_connector_json() {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/connector/",
            post(|State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<serde_json::Value>| async move {
                let token = headers.get("x-api-token").and_then(|v| v.to_str().ok()).map(str::to_string);
                seen.lock().unwrap().push(("/connector/".into(), token, body));
                Json(serde_json::json!({ "_id": "dropbox", "result": "created" }))
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_coco-host"))
            .args(["register", "--coco-url", &base, "--api-token", "tok-123"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created"));

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (_, token, body) = &seen[0];
    assert_eq!(token.as_deref(), Some("tok-123"));
    assert_eq!(body["id"], "dropbox");
    assert_eq!(body["name"], "Dropbox Connector");
    assert_eq!(body["category"], "cloud_storage");
    assert_eq!(body["path_hierarchy"], false);
    assert_eq!(body["tags"], serde_json::json!(["dropbox", "cloud_storage", "file_sharing"]));
    assert_eq!(body["processor"], serde_json::json!({ "enabled": true, "name": "dropbox" }));
    for key in ["default", "docx", "xlsx", "pptx", "pdf", "paper", "gdoc", "gexcel", "gppt"] {
        assert!(
            body["assets"]["icons"][key].as_str().is_some_and(|u| u.starts_with("/assets/icons/connector/dropbox/")),
            "{key}"
        );
    }
    // Every icon a file document can carry (the published list) resolves to an asset.
    for key in &coco_host::info::connector_info().file_icon_keys {
        assert!(body["assets"]["icons"].get(key.as_str()).is_some(), "{key}");
    }
}

#[test]
fn connector_json_prints_the_same_document() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coco-host")).arg("connector-json").output().unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, coco_host::registration::connector_json("dropbox"));
}
