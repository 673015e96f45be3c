//! Bad input gets a typed, explained error: no panic, no trap, and the host keeps running.

use coco_e2e::*;
use coco_host::clock::now_unix;
use coco_host::host::HostError;
use coco_host::runtime::{
    AppCredentials, ConnectRequest, Endpoints, Limits, PageRequest, RuntimeError, SyncOptions, Tokens, WitError,
};
use dropbox_emulator::{Fault, FaultKind};

fn page_request(
    h: &Harness,
    ds: &coco_host::state::DatasourceRecord,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> PageRequest {
    let base = h.emu.base_url();
    PageRequest {
        datasource_id: ds.id.clone(),
        datasource_name: ds.name.clone(),
        owner_id: None,
        app: AppCredentials { client_id: CLIENT_ID.into(), client_secret: CLIENT_SECRET.into() },
        tokens: Tokens {
            access_token: ds.tokens.access_token.expose().into(),
            expires_at: ds.tokens.expires_at,
            refresh_token: ds.tokens.refresh_token.expose().into(),
        },
        cursor: cursor.map(str::to_string),
        options: SyncOptions {
            path: String::new(),
            page_limit: limit,
            refresh_margin_secs: None,
            root_info: None,
            max_page_bytes: None,
            recursive: true,
        },
        batch_number: "b".into(),
        now: now_unix(),
        endpoints: Endpoints { authorize: base.clone(), api: base },
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_config_is_invalid_input_before_any_request() {
    let h = harness(100, 1).await;
    let ds = h.connect().await;
    let rt = &h.host.runtime;
    let before = h.emu.counters().total();

    let mut req = page_request(&h, &ds, None, Some(5000));
    let err = rt.sync_page(&req).await.unwrap().unwrap_err();
    assert!(matches!(&err.error, WitError::InvalidInput(m) if m.contains("5000")), "{:?}", err.error);

    req.options.page_limit = None;
    req.endpoints.api = "not a url".into();
    let err = rt.sync_page(&req).await.unwrap().unwrap_err();
    assert!(matches!(&err.error, WitError::InvalidInput(m) if m.contains("api endpoint")), "{:?}", err.error);

    let mut req = page_request(&h, &ds, None, None);
    req.app.client_id.clear();
    assert!(
        matches!(rt.sync_page(&req).await.unwrap().unwrap_err().error, WitError::InvalidInput(m) if m.contains("client_id"))
    );

    let mut req = page_request(&h, &ds, None, None);
    req.options.path = "/a//b".into();
    assert!(
        matches!(rt.sync_page(&req).await.unwrap().unwrap_err().error, WitError::InvalidInput(m) if m.contains("empty component"))
    );

    let connect = ConnectRequest {
        connector_id: "dropbox".into(),
        client_id: "".into(),
        redirect_uri: REDIRECT_URI.into(),
        state_secret: vec![7; 32],
        now: now_unix(),
        state_ttl_secs: None,
        scopes: None,
        endpoints: page_request(&h, &ds, None, None).endpoints,
        session_binding: None,
    };
    assert!(matches!(rt.authorize_url(&connect).await.unwrap(), Err(WitError::InvalidInput(_))));
    let short_secret = ConnectRequest { client_id: "x".into(), state_secret: vec![1; 4], ..connect };
    assert!(
        matches!(rt.authorize_url(&short_secret).await.unwrap(), Err(WitError::InvalidInput(m)) if m.contains("16 bytes"))
    );

    assert_eq!(h.emu.counters().total(), before, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_client_secret_is_invalid_client_and_not_echoed() {
    let mut h = harness(10, 1).await;
    h.connector.client_secret = coco_host::secret::Secret::new("WRONG-secret-value-123");
    let url = h.host.authorize_url(&h.connector, None).await.unwrap();
    let redirected = dropbox_emulator::approve(&url).await.unwrap();
    let err = h.host.finish_connect(&h.connector, &redirected, None).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(&err, HostError::Connector(e) if matches!(e, WitError::InvalidClient(_))), "{msg}");
    assert!(msg.contains("client_secret") && msg.contains(CLIENT_ID), "{msg}");
    assert!(!msg.contains("WRONG-secret-value-123"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_cursor_and_non_json_bodies_are_typed_errors() {
    let h = harness(500, 3).await;
    let ds = h.connect().await;
    let rt = &h.host.runtime;

    let err = rt.sync_page(&page_request(&h, &ds, Some("AAEnot-a-real-cursor"), None)).await.unwrap().unwrap_err();
    assert!(matches!(&err.error, WitError::InvalidInput(m) if m.contains("cursor")), "{:?}", err.error);

    h.emu.push_fault(Fault { route: Some("files/list_folder".into()), kind: FaultKind::Garbage });
    let err = rt.sync_page(&page_request(&h, &ds, None, None)).await.unwrap().unwrap_err();
    assert!(matches!(&err.error, WitError::Transient(m) if m.contains("unreadable")), "{:?}", err.error);

    h.emu.push_fault(Fault { route: None, kind: FaultKind::Truncate });
    let err = rt.sync_page(&page_request(&h, &ds, None, None)).await.unwrap().unwrap_err();
    assert!(matches!(&err.error, WitError::Transient(_)), "{:?}", err.error);

    // The host is fine: the next call works.
    let page = rt.sync_page(&page_request(&h, &ds, None, None)).await.unwrap().unwrap();
    assert_eq!(page.documents.len() + page.stats.skipped as usize, 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trapping_guest_is_an_error_for_that_call_only() {
    // 3 MiB of linear memory cannot hold a 2,000-entry page: the guest traps on growth.
    let limits = Limits { memory_bytes: 3 << 20, ..Limits::default() };
    let h = harness_with(dropbox_emulator::Config::single(9, 4_000, CLIENT_ID, CLIENT_SECRET), limits).await;
    let ds = h.connect().await;
    let rt = &h.host.runtime;
    match rt.sync_page(&page_request(&h, &ds, None, Some(2000))).await {
        Err(RuntimeError::Trap(m)) => assert!(m.contains("memory") || m.contains("grow"), "{m}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    // Same runtime, same process: a small page still works.
    let page = rt.sync_page(&page_request(&h, &ds, None, Some(20))).await.expect("runtime survives").expect("page");
    assert!(page.has_more);
}
