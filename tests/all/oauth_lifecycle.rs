//! OAuth and token lifecycle through the component: signed state + PKCE, refusals, refresh
//! ahead of expiry and on 401, re-authorization, disconnect.

use coco_e2e::*;
use coco_host::clock::now_unix;
use coco_host::host::{DisconnectOutcome, HostError};
use coco_host::runtime::{Endpoints, RedirectRequest, WitError};
use coco_host::state::Status;

fn connector_error(e: &HostError) -> &WitError {
    match e {
        HostError::Connector(c) => c,
        other => panic!("expected a connector error, got {other}"),
    }
}

/// A redirect request as the host would build it, with a chosen query and clock.
fn redirect(h: &Harness, query: &str, connector_id: &str, now: u64) -> RedirectRequest {
    let base = h.emu.base_url();
    RedirectRequest {
        connector_id: connector_id.into(),
        app: coco_host::runtime::AppCredentials { client_id: CLIENT_ID.into(), client_secret: CLIENT_SECRET.into() },
        redirect_uri: REDIRECT_URI.into(),
        redirect_query: query.into(),
        state_secret: h.host.store.keys().state_secret().to_vec(),
        now,
        endpoints: Endpoints { authorize: base.clone(), api: base },
        session_binding: None,
    }
}

fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn state_is_required_signed_fresh_and_for_this_connector() {
    let h = harness(10, 1).await;
    let url = h.host.authorize_url(&h.connector, None).await.unwrap();
    assert_eq!(query_param(&url, "code_challenge_method"), "S256");
    assert_eq!(query_param(&url, "token_access_type"), "offline");
    let redirected = dropbox_emulator::approve(&url).await.unwrap();
    let code = query_param(&redirected, "code");
    let state = query_param(&redirected, "state");
    let rt = &h.host.runtime;
    let denied = |r: Result<_, WitError>, why: &str| match r {
        Err(WitError::Denied(m)) => assert!(m.contains(why), "{m}"),
        other => panic!("expected denied({why}), got {other:?}"),
    };

    // Missing, forged, expired, other connector: all denied before the code is spent.
    denied(
        rt.handle_redirect(&redirect(&h, &format!("code={code}"), "dropbox", now_unix())).await.unwrap(),
        "no state",
    );
    // Change the MAC's first character: any 6-bit change there is still canonical base64url,
    // so the state stays well-formed and only the signature is wrong.
    let dot = state.find('.').unwrap();
    let mut forged = state.clone().into_bytes();
    forged[dot + 1] = if forged[dot + 1] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let q = format!("code={code}&state={forged}");
    denied(rt.handle_redirect(&redirect(&h, &q, "dropbox", now_unix())).await.unwrap(), "signature");
    let q = format!("code={code}&state={state}");
    denied(rt.handle_redirect(&redirect(&h, &q, "dropbox", now_unix() + 601)).await.unwrap(), "expired");
    denied(rt.handle_redirect(&redirect(&h, &q, "box", now_unix())).await.unwrap(), "another connector");
    assert_eq!(h.emu.counters().get("oauth2/token"), 0, "no exchange was attempted");

    // The genuine redirect works once; replaying it is denied (the code is single use).
    let ds = h.host.finish_connect(&h.connector, &redirected, None).await.expect("first use");
    let replay = h.host.finish_connect(&h.connector, &redirected, None).await.unwrap_err();
    assert!(matches!(connector_error(&replay), WitError::Denied(m) if m.contains("already used")), "{replay}");
    assert_eq!(h.host.store.datasources().unwrap().len(), 1);
    assert_eq!(h.host.store.datasource(&ds.id).unwrap().status, Status::Ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_is_denied_with_dropbox_description() {
    let h = harness(10, 1).await;
    h.emu.set_consent(false);
    let url = h.host.authorize_url(&h.connector, None).await.unwrap();
    let redirected = dropbox_emulator::approve(&url).await.unwrap();
    let err = h.host.finish_connect(&h.connector, &redirected, None).await.unwrap_err();
    match connector_error(&err) {
        WitError::Denied(m) => {
            assert!(m.contains("access_denied"), "{m}");
            assert!(m.contains("chose not to give your app access"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.emu.counters().get("oauth2/token"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_refreshed_ahead_of_expiry_and_kept() {
    let mut h = harness(3_000, 2).await;
    // Tokens live 200 s; a 300 s margin means the first page refreshes before listing.
    h.emu.set_token_lifetime(std::time::Duration::from_secs(200));
    h.host.default_page_limit = 1000;
    let ds = h.connect().await;
    let refresh_token = ds.tokens.refresh_token.clone();
    h.host.refresh_margin_secs = Some(300);
    let r = h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_eq!(r.refreshes, r.pages, "every page refreshes a token that is always inside the margin");
    let stored = h.host.store.datasource(&ds.id).unwrap();
    assert_eq!(stored.tokens.refresh_token, refresh_token, "refresh responses carry none: keep the old one");
    assert_ne!(stored.tokens.access_token, ds.tokens.access_token);

    // With a 100 s margin the fresh token is good: no more refreshes.
    h.host.refresh_margin_secs = Some(100);
    let before = h.emu.counters().refresh_grants;
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_eq!(h.emu.counters().refresh_grants, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn forced_expiries_mid_listing_cost_exactly_one_refresh_each_and_lose_no_page() {
    let mut h = harness(10_000, 5).await;
    h.host.default_page_limit = 500;
    // Commit every page, so the observer sees each one (a listing otherwise commits several at
    // once, and `Page` events follow commits).
    h.host.listing_commit_docs = 0;
    let ds = h.connect().await;
    let mut expiries = 0u64;
    let report = h
        .host
        .sync(&ds.id, |event| {
            if let coco_host::host::SyncEvent::Page { pages, has_more: true, .. } = event {
                if pages % 4 == 0 {
                    h.emu.expire_access_tokens();
                    expiries += 1;
                }
            }
        })
        .await
        .expect("sync completes across expiries");
    assert!(expiries >= 4, "{expiries}");
    let c = h.emu.counters();
    assert_eq!(c.refresh_grants, expiries, "one refresh per expiry");
    assert_eq!(report.refreshes, expiries);
    assert_eq!(report.entries, 10_000, "every entry listed exactly once: no page lost or repeated");
    let expected = h.emu.tree(0).iter().filter(|e| e.name != ".DS_Store").count();
    assert_eq!(h.host.store.document_count(&ds.id).unwrap() as usize, expected);
    // Each expiry cost one failed call plus its replay.
    assert_eq!(c.get("files/list_folder") + c.get("files/list_folder/continue"), report.pages + expiries);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_refresh_token_parks_the_datasource_until_it_is_connected_again() {
    let mut h = harness(2_000, 3).await;
    h.host.default_page_limit = 500;
    let ds = h.connect().await;
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    let listings = h.emu.counters().get("files/list_folder");

    // The user removes the app in Dropbox; the access token also expires.
    h.emu.revoke_all();
    let mut expired = h.host.store.datasource(&ds.id).unwrap();
    expired.tokens.expires_at = 0;
    h.host.store.save_tokens(&ds.id, &expired.tokens).unwrap();
    let err = h.host.sync(&ds.id, |_| {}).await.unwrap_err();
    assert!(matches!(err, HostError::ReauthRequired { .. }), "{err}");
    let parked = h.host.store.datasource(&ds.id).unwrap();
    assert_eq!(parked.status, Status::ReauthRequired);
    assert!(parked.status_detail.unwrap().contains("revoked"));

    // Not scheduled: no request at all while parked.
    let before = h.emu.counters().total();
    assert!(matches!(h.host.sync(&ds.id, |_| {}).await, Err(HostError::ReauthRequired { .. })));
    assert_eq!(h.emu.counters().total(), before);

    // Reconnecting the same account resumes: same id, cursor kept, no new full listing.
    let cursor = h.host.store.sync_state(&ds.id).unwrap().cursor;
    let again = h.connect().await;
    assert_eq!(again.id, ds.id);
    assert_eq!(again.status, Status::Ok);
    assert_eq!(h.host.store.sync_state(&ds.id).unwrap().cursor, cursor);
    h.host.sync(&ds.id, |_| {}).await.expect("resumes");
    assert_eq!(h.emu.counters().get("files/list_folder"), listings, "continued, not re-listed");
}

#[tokio::test(flavor = "multi_thread")]
async fn disconnect_revokes_at_dropbox_and_removes_the_state() {
    let h = harness(300, 4).await;
    let ds = h.connect().await;
    // Debug output of what the host keeps never shows a secret.
    let debug = format!("{ds:?} {:?} {:?}", h.connector, h.host.store.keys());
    for secret in [ds.tokens.access_token.expose(), ds.tokens.refresh_token.expose(), CLIENT_SECRET] {
        assert!(!debug.contains(secret), "Debug shows a secret: {debug}");
    }
    assert!(debug.contains("[redacted]"));
    h.host.sync(&ds.id, |_| {}).await.unwrap();
    assert_eq!(h.host.disconnect(&ds.id).await.unwrap(), DisconnectOutcome::Revoked);
    assert_eq!(h.emu.counters().get("auth/token/revoke"), 1);
    assert!(h.host.store.datasources().unwrap().is_empty());
    assert_eq!(h.host.store.document_count(&ds.id).unwrap(), 0);
    // The refresh token is dead at Dropbox.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut reply = agent
        .post(&format!("{}/oauth2/token", h.emu.base_url()))
        .send_form([
            ("grant_type", "refresh_token"),
            ("refresh_token", ds.tokens.refresh_token.expose()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .unwrap();
    assert_eq!(reply.status(), 400);
    assert!(reply.body_mut().read_to_string().unwrap().contains("invalid_grant"));

    // Disconnecting a datasource whose tokens were already revoked still removes it.
    let ds = h.connect().await;
    h.emu.revoke_all();
    assert_eq!(h.host.disconnect(&ds.id).await.unwrap(), DisconnectOutcome::AlreadyRevoked);
    assert!(h.host.store.datasources().unwrap().is_empty());
}
