use std::collections::HashMap;

use super::*;
use crate::http::fake::{reply, Scripted};

const API_TOKEN: &str = "api-token-0123456789";
const CALLBACK_TOKEN: &str = "callback-token-0123456789";
const TOKEN_BODY: &str =
    r#"{"access_token":"sl.ACCESS-xyz","expires_in":14400,"refresh_token":"REFRESH-abc","token_type":"bearer"}"#;
const ACCOUNT: &str = r#"{"account_id":"dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc","name":{"display_name":"Franz <b>"},
    "email":"franz@dropbox.com","root_info":{".tag":"user","root_namespace_id":"1","home_namespace_id":"1"}}"#;

fn config_with(extra: &[(&'static str, &'static str)]) -> FacadeConfig {
    let mut vars: HashMap<&str, &str> = HashMap::from([
        (ENV_CLIENT_ID, "APPKEY"),
        (ENV_CLIENT_SECRET, "APP-SECRET-xyz"),
        (ENV_STATE_SECRET, "state-secret-0123456789"),
        (ENV_API_TOKEN, API_TOKEN),
        (ENV_CALLBACK_URL, "http://127.0.0.1:7/callback"),
        (ENV_CALLBACK_TOKEN, CALLBACK_TOKEN),
    ]);
    for (k, v) in extra {
        if v.is_empty() {
            vars.remove(k);
        } else {
            vars.insert(k, v);
        }
    }
    FacadeConfig::from_lookup(|k| vars.get(k).map(|v| v.to_string()))
}

fn random() -> Randomness {
    Randomness { nonce: *b"nonce-0123456789", cookie: [7; 32], seal_nonce: [3; 24], holder: [5; 16] }
}

fn request<'a>(
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a [(String, String)],
    body: &'a [u8],
) -> Incoming<'a> {
    Incoming { method, path, query, headers, body }
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn header<'a>(out: &'a Outgoing, name: &str) -> Option<&'a str> {
    out.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
}

fn run(config: &FacadeConfig, req: &Incoming<'_>, t: &mut Scripted) -> Outgoing {
    handle(config, req, t, 1_000, &random(), None)
}

fn connect(config: &FacadeConfig) -> (Outgoing, HashMap<String, String>, String) {
    let h = headers(&[("host", "127.0.0.1:9000"), ("x-api-token", API_TOKEN)]);
    let out = run(
        config,
        &request("GET", "/api/coco/connector/dropbox/dropbox/connect", "", &h, b""),
        &mut Scripted::offline(),
    );
    let location = header(&out, "location").unwrap_or_default().to_string();
    let q = url::Url::parse(&location).map(|u| u.query_pairs().into_owned().collect()).unwrap_or_default();
    let cookie = header(&out, "set-cookie").unwrap_or_default().split(';').next().unwrap_or_default().to_string();
    (out, q, cookie)
}

#[test]
fn routes_match_upstream_and_the_api_prefix() {
    assert_eq!(route("/connector/abc/dropbox/connect"), Some(Route::Connect { connector_id: "abc", prefix: "" }));
    assert_eq!(
        route("/api/coco/connector/abc/dropbox/oauth_redirect"),
        Some(Route::Redirect { connector_id: "abc", prefix: "/api/coco" })
    );
    assert_eq!(route("/sync"), Some(Route::Sync));
    assert_eq!(route("/oauth/exchange"), Some(Route::Exchange));
    for bad in ["/connector//dropbox/connect", "/connector/abc/box/connect", "/", "/api/coco/sync"] {
        assert_eq!(route(bad), None, "{bad}");
    }
}

#[test]
fn connect_sets_a_bound_cookie_and_is_never_cached() {
    let (out, q, cookie) = connect(&config_with(&[]));
    assert_eq!(out.status, 302);
    assert_eq!(q["redirect_uri"], "http://127.0.0.1:9000/api/coco/connector/dropbox/dropbox/oauth_redirect");
    assert!(cookie.starts_with("coco_dropbox_oauth="), "{cookie}");
    assert!(header(&out, "set-cookie").unwrap().contains("HttpOnly"));
    assert_eq!(header(&out, "cache-control"), Some("no-store"));
    let location = header(&out, "location").unwrap();
    assert!(
        !location.contains("APP-SECRET") && !location.contains("state-secret") && !location.contains(&cookie[19..])
    );
}

#[test]
fn forwarded_headers_count_only_when_trusted_and_a_configured_uri_wins() {
    let h = headers(&[
        ("host", "inner:8080"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-api-token", API_TOKEN),
    ]);
    let req = request("GET", "/connector/dropbox/dropbox/connect", "", &h, b"");
    let uri = |c: &FacadeConfig| redirect_uri(c, &req, "", "dropbox").map_err(|o| o.status);
    // A public host behind untrusted headers: not guessed (an `http://` guess behind a TLS proxy
    // would be a URI Dropbox does not know), a 503 naming the variable.
    assert_eq!(uri(&config_with(&[])), Err(503));
    let out = run(&config_with(&[]), &req, &mut Scripted::offline());
    assert_eq!(out.status, 503);
    assert!(String::from_utf8_lossy(&out.body).contains(ENV_REDIRECT_URI));
    assert_eq!(
        uri(&config_with(&[(ENV_TRUST_FORWARDED, "1")])),
        Ok("https://evil.example/connector/dropbox/dropbox/oauth_redirect".to_string())
    );
    let fixed = config_with(&[(ENV_REDIRECT_URI, "https://coco.example/connector/{id}/dropbox/oauth_redirect")]);
    assert_eq!(uri(&fixed), Ok("https://coco.example/connector/dropbox/dropbox/oauth_redirect".to_string()));
    // On loopback it is derived.
    let local = headers(&[("host", "127.0.0.1:9000")]);
    let req_local = request("GET", "/connector/dropbox/dropbox/connect", "", &local, b"");
    assert_eq!(
        redirect_uri(&config_with(&[]), &req_local, "", "dropbox").map_err(|o| o.status),
        Ok("http://127.0.0.1:9000/connector/dropbox/dropbox/oauth_redirect".to_string())
    );
    // Over https the cookie is __Host- prefixed and Secure.
    let out = run(&fixed, &req, &mut Scripted::offline());
    assert!(header(&out, "set-cookie").unwrap().starts_with("__Host-coco_dropbox_oauth="));
    assert!(header(&out, "set-cookie").unwrap().contains("; Secure"));
}

#[test]
fn a_redirect_without_the_browsers_cookie_is_refused_before_any_exchange() {
    let config = config_with(&[]);
    let (_, q, cookie) = connect(&config);
    let query = format!("code=CODE&state={}", q["state"]);
    for h in [headers(&[]), headers(&[("cookie", "coco_dropbox_oauth=someone-elses-cookie-value-000")])] {
        let mut t = Scripted::offline();
        let out = run(
            &config,
            &request("GET", "/api/coco/connector/dropbox/dropbox/oauth_redirect", &query, &h, b""),
            &mut t,
        );
        assert_eq!(out.status, 403, "{}", String::from_utf8_lossy(&out.body));
        assert!(t.seen.is_empty(), "no code exchange at Dropbox");
    }
    assert!(!cookie.is_empty());
}

#[test]
fn the_browser_flow_delivers_tokens_to_the_callback_and_only_id_and_name_to_the_browser() {
    let config = config_with(&[]);
    let (_, q, cookie) = connect(&config);
    let query = format!("code=CODE&state={}", q["state"]);
    let h = headers(&[("host", "127.0.0.1:9000"), ("cookie", &cookie)]);
    let mut t = Scripted::new([reply(200, TOKEN_BODY), reply(200, ACCOUNT), reply(201, "{}")]);
    let out =
        run(&config, &request("GET", "/api/coco/connector/dropbox/dropbox/oauth_redirect", &query, &h, b""), &mut t);
    assert_eq!(out.status, 200, "{}", String::from_utf8_lossy(&out.body));
    let page = String::from_utf8(out.body.clone()).unwrap();
    assert!(
        page.contains("Franz &lt;b&gt;&#39;s Dropbox") && page.contains("0335b4e59c687f2666f7d7e5d5d17686"),
        "{page}"
    );
    for secret in ["sl.ACCESS-xyz", "REFRESH-abc", "APP-SECRET", CALLBACK_TOKEN] {
        assert!(!page.contains(secret) && !out.headers.iter().any(|(_, v)| v.contains(secret)), "{secret}");
    }
    assert_eq!(header(&out, "cache-control"), Some("no-store"));
    assert!(header(&out, "set-cookie").unwrap().contains("Max-Age=0"), "the session cookie is cleared");
    // The exchange used a verifier only this browser's cookie yields; the callback got everything.
    let callback = &t.seen[2];
    assert_eq!(callback.url, "http://127.0.0.1:7/callback");
    assert!(callback.headers.iter().any(|(k, v)| *k == "x-api-token" && v == CALLBACK_TOKEN));
    let delivered: serde_json::Value = serde_json::from_slice(&callback.body).unwrap();
    assert_eq!(delivered["tokens"]["access_token"], "sl.ACCESS-xyz");
    assert_eq!(delivered["connector"]["config"]["refresh_token"], "REFRESH-abc");
    assert!(delivered["connector"]["config"].get("client_secret").is_none());

    // With a connected page configured, a redirect carrying only id and name.
    let config = config_with(&[(ENV_CONNECTED_URL, "https://coco.example/#/data-source")]);
    let mut t = Scripted::new([reply(200, TOKEN_BODY), reply(200, ACCOUNT), reply(200, "")]);
    let out =
        run(&config, &request("GET", "/api/coco/connector/dropbox/dropbox/oauth_redirect", &query, &h, b""), &mut t);
    assert_eq!(out.status, 302);
    let location = header(&out, "location").unwrap();
    assert!(
        location.contains("datasource_id=0335b4e59c687f2666f7d7e5d5d17686") && !location.contains("ACCESS"),
        "{location}"
    );
}

#[test]
fn a_failed_delivery_is_502_and_still_gives_the_browser_no_token() {
    let config = config_with(&[]);
    let (_, q, cookie) = connect(&config);
    let query = format!("code=CODE&state={}", q["state"]);
    let h = headers(&[("cookie", &cookie)]);
    let mut t = Scripted::new([reply(200, TOKEN_BODY), reply(200, ACCOUNT), reply(500, "down")]);
    let out = run(&config, &request("GET", "/connector/dropbox/dropbox/oauth_redirect", &query, &h, b""), &mut t);
    assert_eq!(out.status, 502);
    assert!(!String::from_utf8_lossy(&out.body).contains("ACCESS"));
}

#[test]
fn browser_routes_without_a_callback_and_api_routes_without_a_token_are_closed() {
    let config = config_with(&[(ENV_CALLBACK_URL, ""), (ENV_API_TOKEN, "")]);
    let (out, _, _) = connect(&config);
    assert_eq!(out.status, 503);
    assert!(String::from_utf8_lossy(&out.body).contains(ENV_CALLBACK_URL));
    let h = headers(&[("authorization", "Bearer anything")]);
    let out = run(&config, &request("POST", "/sync", "", &h, b"{}"), &mut Scripted::offline());
    assert_eq!(out.status, 503);
    assert!(String::from_utf8_lossy(&out.body).contains(ENV_API_TOKEN));
}

#[test]
fn api_routes_need_the_right_token() {
    let config = config_with(&[]);
    let body =
        br#"{"datasource":{"id":"ds","name":"n"},"tokens":{"access_token":"","expires_at":0,"refresh_token":"R"}}"#;
    for h in [
        headers(&[]),
        headers(&[("authorization", "Bearer wrong")]),
        headers(&[("x-api-token", "api-token-012345678")]),
    ] {
        let mut t = Scripted::offline();
        let out = run(&config, &request("POST", "/sync", "", &h, body), &mut t);
        assert_eq!(out.status, 401);
        assert_eq!(header(&out, "www-authenticate"), Some("Bearer"));
        assert!(t.seen.is_empty(), "no refresh with the operator's secret");
    }
    for h in [headers(&[("authorization", &format!("Bearer {API_TOKEN}"))]), headers(&[("x-api-token", API_TOKEN)])] {
        let mut t = Scripted::offline();
        let out = run(&config, &request("POST", "/sync", "", &h, body), &mut t);
        assert_eq!(out.status, 503, "authenticated; the (offline) refresh fails as transient");
        assert_eq!(t.seen.len(), 1);
        assert_eq!(header(&out, "cache-control"), Some("no-store"));
    }
}

#[test]
fn exchange_returns_the_datasource_to_an_authenticated_orchestrator() {
    let config = config_with(&[(ENV_REDIRECT_URI, "https://orchestrator.example/cb/{id}")]);
    let (_, q, cookie) = connect(&config);
    let cookie_value = cookie.split_once('=').unwrap().1;
    let body = serde_json::json!({
        "connector_id": "dropbox",
        "redirect_query": format!("code=CODE&state={}", q["state"]),
        "session_cookie": cookie_value,
    })
    .to_string();
    let h = headers(&[("x-api-token", API_TOKEN)]);
    let mut t = Scripted::new([reply(200, TOKEN_BODY), reply(200, ACCOUNT)]);
    let out = run(&config, &request("POST", "/oauth/exchange", "", &h, body.as_bytes()), &mut t);
    assert_eq!(out.status, 200, "{}", String::from_utf8_lossy(&out.body));
    let ds: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(ds["tokens"]["refresh_token"], "REFRESH-abc");
    assert_eq!(header(&out, "cache-control"), Some("no-store"));
    let form = String::from_utf8(t.seen[0].body.clone()).unwrap();
    assert!(form.contains("redirect_uri=https%3A%2F%2Forchestrator.example%2Fcb%2Fdropbox"), "{form}");
}

#[test]
fn bodies_are_capped_and_unknown_fields_refused() {
    let config = config_with(&[(ENV_MAX_BODY_BYTES, "64")]);
    let h = headers(&[("x-api-token", API_TOKEN)]);
    let big = vec![b' '; 65];
    assert_eq!(run(&config, &request("POST", "/sync", "", &h, &big), &mut Scripted::offline()).status, 413);
    let config = config_with(&[]);
    let body = br#"{"datasource":{"id":"ds","name":"n"},"tokens":{"access_token":"","expires_at":0,"refresh_token":"R"},"extra":1}"#;
    let out = run(&config, &request("POST", "/sync", "", &h, body), &mut Scripted::offline());
    assert_eq!(out.status, 400);
    assert!(String::from_utf8_lossy(&out.body).contains("unknown field"));
}

#[test]
fn errors_have_fitting_statuses() {
    let config = config_with(&[]);
    let none = headers(&[]);
    assert_eq!(run(&config, &request("GET", "/nope", "", &none, b""), &mut Scripted::offline()).status, 404);
    assert_eq!(run(&config, &request("GET", "/sync", "", &none, b""), &mut Scripted::offline()).status, 405);
    let unconfigured = config_with(&[(ENV_CLIENT_ID, "")]);
    let (out, _, _) = connect(&unconfigured);
    assert_eq!(out.status, 503);
    let limited = error_response(&Error::RateLimited(1500), None);
    assert_eq!(limited.status, 429);
    assert!(limited.headers.contains(&("retry-after", "2".into())));
    let h = headers(&[("x-api-token", API_TOKEN)]);
    assert_eq!(run(&config, &request("POST", "/sync", "", &h, b"{"), &mut Scripted::offline()).status, 400);
}

/// `/connect` is by invitation: the API token, or a link from `POST /api/connect-links` for that
/// connector, unexpired; only configured connector ids have routes at all.
#[test]
fn connect_needs_the_token_or_a_fresh_link_for_that_connector() {
    let config = config_with(&[]);
    let host = headers(&[("host", "127.0.0.1:9000")]);
    let open =
        |query: &str, path: &str| run(&config, &request("GET", path, query, &host, b""), &mut Scripted::offline());
    let path = "/connector/dropbox/dropbox/connect";
    let out = open("", path);
    assert_eq!(out.status, 401, "a stranger's browser is refused");
    assert!(String::from_utf8_lossy(&out.body).contains("/api/connect-links"));
    // Minting needs the token.
    let mint = |h: &[(String, String)], body: &[u8]| {
        run(&config, &request("POST", "/api/connect-links", "", h, body), &mut Scripted::offline())
    };
    assert_eq!(mint(&host, b"").status, 401);
    let with_token = headers(&[("host", "127.0.0.1:9000"), ("x-api-token", API_TOKEN)]);
    let out = mint(&with_token, b"");
    assert_eq!(out.status, 200, "{}", String::from_utf8_lossy(&out.body));
    assert_eq!(header(&out, "cache-control"), Some("no-store"));
    let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    let url = url::Url::parse(v["url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), path);
    assert_eq!(v["expires_at"], "1970-01-01T00:26:40Z", "ten minutes after now (1,000 s)");
    let query = url.query().unwrap().to_string();
    assert_eq!(open(&query, path).status, 302, "the link lets a browser in");
    // Not for another connector, not once expired, not forged.
    assert_eq!(open(&query, "/connector/other/dropbox/connect").status, 404, "only configured connectors");
    let late =
        handle(&config, &request("GET", path, &query, &host, b""), &mut Scripted::offline(), 1_600, &random(), None);
    assert_eq!(late.status, 401, "expired");
    assert_eq!(open(&query.replace("link=", "link=x"), path).status, 401);
    // Bad requests for a link.
    assert_eq!(mint(&with_token, br#"{"connector_id":"other"}"#).status, 404);
    assert_eq!(mint(&with_token, br#"{"connector":"dropbox"}"#).status, 400, "unknown fields are refused");
    // A second allowed connector gets its own links.
    let two = config_with(&[(ENV_CONNECTOR_IDS, "dropbox, team")]);
    let out = run(
        &two,
        &request("POST", "/api/connect-links", "", &with_token, br#"{"connector_id":"team"}"#),
        &mut Scripted::offline(),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    let url = url::Url::parse(v["url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), "/connector/team/dropbox/connect");
    let out = run(&two, &request("GET", url.path(), url.query().unwrap(), &host, b""), &mut Scripted::offline());
    assert_eq!(out.status, 302);
    assert_eq!(
        run(&config, &request("GET", url.path(), url.query().unwrap(), &host, b""), &mut Scripted::offline()).status,
        404
    );
}

#[test]
fn loopback_hosts_are_told_apart_from_public_ones() {
    for host in ["localhost", "localhost:9000", "127.0.0.1", "127.0.0.1:8080", "[::1]:80", "app.localhost:3000"] {
        assert!(is_loopback(host), "{host}");
    }
    for host in ["coco.example", "coco.example:9000", "10.0.0.1:80", "[2001:db8::1]:443", "localhost.example.com"] {
        assert!(!is_loopback(host), "{host}");
    }
}
