//! OAuth math, free of I/O: signed state, PKCE, the authorize URL, token requests and
//! responses. The redirect handler needs no storage: the state carries connector id, nonce and
//! expiry under an HMAC, and the PKCE verifier is re-derived from the host secret and the nonce.
//!
//! A state can also be bound to the browser that started the flow: the caller passes a value
//! only that browser holds (a cookie); the state carries an HMAC of it, and the PKCE verifier
//! depends on it, so a leaked redirect URL is useless without that browser's cookie.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::{quote, Route};
use crate::error::Error;
use crate::http::{HttpRequest, HttpResponse};
use crate::secret::{Secret, SecretBytes};
use crate::types::{AppCredentials, ConnectRequest, Tokens, DEFAULT_SCOPES};

type HmacSha256 = Hmac<Sha256>;

/// Default lifetime of a state: long enough to log in, short enough to be useless when leaked.
pub const DEFAULT_STATE_TTL_SECS: u64 = 600;
/// A weaker secret would make the state forgeable.
pub const MIN_SECRET_LEN: usize = 16;
/// Bytes of randomness in each state.
pub const NONCE_LEN: usize = 16;
const MAX_CONNECTOR_ID_LEN: usize = 128;
const STATE_DOMAIN: &[u8] = b"coco-dropbox/state/v1\0";
const PKCE_DOMAIN: &[u8] = b"coco-dropbox/pkce/v1\0";
const BINDING_DOMAIN: &[u8] = b"coco-dropbox/binding/v1\0";
/// Bytes of the binding's HMAC kept in the state (128 bits; the state is capped at 500 bytes).
const BINDING_TAG_LEN: usize = 16;

/// What the state carries; its field names are kept short because Dropbox caps state at 500 bytes.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct StatePayload {
    /// Connector id.
    c: String,
    /// Nonce, base64url.
    n: String,
    /// Expiry, unix seconds.
    e: u64,
    /// HMAC of the browser binding, truncated, base64url; absent for an unbound state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<String>,
}

fn mac(secret: &[u8], domain: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(domain);
    m.update(data);
    m
}

pub fn check_secret(secret: &SecretBytes) -> Result<(), Error> {
    if secret.expose().len() < MIN_SECRET_LEN {
        return Err(Error::InvalidInput(format!("the state secret must be at least {MIN_SECRET_LEN} bytes")));
    }
    Ok(())
}

fn binding_tag(secret: &SecretBytes, binding: &[u8]) -> Vec<u8> {
    mac(secret.expose(), BINDING_DOMAIN, binding).finalize().into_bytes()[..BINDING_TAG_LEN].to_vec()
}

/// Mint a state: `base64url(payload) "." base64url(hmac)`, bound to `binding` when given.
pub fn sign_state(
    secret: &SecretBytes,
    connector_id: &str,
    nonce: &[u8],
    expires_at: u64,
    binding: Option<&[u8]>,
) -> String {
    let payload = StatePayload {
        c: connector_id.to_string(),
        n: URL_SAFE_NO_PAD.encode(nonce),
        e: expires_at,
        b: binding.map(|b| URL_SAFE_NO_PAD.encode(binding_tag(secret, b))),
    };
    let json = serde_json::to_vec(&payload).expect("plain struct serializes");
    let tag = mac(secret.expose(), STATE_DOMAIN, &json).finalize().into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(&json), URL_SAFE_NO_PAD.encode(tag))
}

/// Check a state from a redirect; returns its nonce. Every failure is `Denied`. A bound state
/// is accepted only with the same binding (the browser that started the flow).
pub fn verify_state(
    secret: &SecretBytes,
    state: &str,
    connector_id: &str,
    now: u64,
    binding: Option<&[u8]>,
) -> Result<Vec<u8>, Error> {
    let denied = |why: &str| Error::Denied(format!("OAuth state rejected: {why}"));
    if state.is_empty() {
        return Err(denied("the redirect carries no state"));
    }
    let (payload_b64, tag_b64) = state.split_once('.').ok_or_else(|| denied("malformed"))?;
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| denied("malformed"))?;
    let tag = URL_SAFE_NO_PAD.decode(tag_b64).map_err(|_| denied("malformed"))?;
    mac(secret.expose(), STATE_DOMAIN, &payload)
        .verify_slice(&tag)
        .map_err(|_| denied("bad signature (forged, or signed with another secret)"))?;
    let p: StatePayload = serde_json::from_slice(&payload).map_err(|_| denied("malformed"))?;
    if p.c != connector_id {
        return Err(denied("it was issued for another connector"));
    }
    if now >= p.e {
        return Err(denied("it has expired; start the connect flow again"));
    }
    match (&p.b, binding) {
        (None, _) => {}
        (Some(_), None) => {
            return Err(denied("this sign-in was started in another browser (its session cookie is missing)"))
        }
        (Some(tag), Some(binding)) => {
            let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| denied("malformed"))?;
            mac(secret.expose(), BINDING_DOMAIN, binding)
                .verify_truncated_left(&tag)
                .ok()
                .filter(|()| tag.len() == BINDING_TAG_LEN)
                .ok_or_else(|| denied("this sign-in was started in another browser (its session cookie differs)"))?;
        }
    }
    URL_SAFE_NO_PAD.decode(&p.n).map_err(|_| denied("malformed"))
}

/// The PKCE verifier for a nonce (and the browser binding, when there is one): 43 base64url
/// characters, reproducible from the secret only by whoever also holds the binding.
pub fn pkce_verifier(secret: &SecretBytes, nonce: &[u8], binding: Option<&[u8]>) -> String {
    let mut m = mac(secret.expose(), PKCE_DOMAIN, nonce);
    if let Some(b) = binding {
        m.update(&Sha256::digest(b));
    }
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

/// S256: base64url(sha256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Build the authorize URL for a given nonce (the glue supplies fresh random bytes).
pub fn authorize_url(req: &ConnectRequest, nonce: &[u8]) -> Result<String, Error> {
    check_secret(&req.state_secret)?;
    if req.connector_id.is_empty() || req.connector_id.len() > MAX_CONNECTOR_ID_LEN {
        return Err(Error::InvalidInput(format!("connector id must be 1 to {MAX_CONNECTOR_ID_LEN} bytes")));
    }
    if req.client_id.trim().is_empty() {
        return Err(Error::InvalidInput("client_id is empty".into()));
    }
    check_redirect_uri(&req.redirect_uri)?;
    let mut url = url::Url::parse(&req.endpoints.authorize)
        .map_err(|e| Error::InvalidInput(format!("authorize endpoint is not a URL: {e}")))?;
    url.set_path("/oauth2/authorize");
    let ttl = match req.state_ttl_secs {
        None => DEFAULT_STATE_TTL_SECS,
        Some(0) => return Err(Error::InvalidInput("state-ttl-secs must be at least 1".into())),
        Some(n) => u64::from(n),
    };
    let binding = req.session_binding.as_ref().map(|b| b.expose());
    if binding.is_some_and(|b| b.len() < MIN_SECRET_LEN) {
        return Err(Error::InvalidInput(format!("a session binding must be at least {MIN_SECRET_LEN} bytes")));
    }
    let state = sign_state(&req.state_secret, &req.connector_id, nonce, req.now + ttl, binding);
    let challenge = pkce_challenge(&pkce_verifier(&req.state_secret, nonce, binding));
    let scope = match &req.scopes {
        Some(s) => s.join(" "),
        None => DEFAULT_SCOPES.join(" "),
    };
    {
        let mut q = url.query_pairs_mut();
        q.clear()
            .append_pair("client_id", &req.client_id)
            .append_pair("redirect_uri", &req.redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("token_access_type", "offline");
        if !scope.is_empty() {
            q.append_pair("scope", &scope);
        }
        q.append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
    }
    Ok(url.into())
}

pub fn check_redirect_uri(uri: &str) -> Result<(), Error> {
    match url::Url::parse(uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(Error::InvalidInput(format!("redirect_uri must be an absolute http(s) URL, got {uri:?}"))),
    }
}

/// The parameters a redirect arrives with.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RedirectParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Accepts `?a=b`, `a=b`, or a whole URL.
pub fn parse_redirect(input: &str) -> RedirectParams {
    let query = match input.find('?') {
        Some(i) => &input[i + 1..],
        None if input.contains("://") => "",
        None => input,
    };
    let query = query.split('#').next().unwrap_or("");
    let mut p = RedirectParams::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let slot = match k.as_ref() {
            "code" => &mut p.code,
            "state" => &mut p.state,
            "error" => &mut p.error,
            "error_description" => &mut p.error_description,
            _ => continue,
        };
        // First value wins; a repeated parameter cannot override a checked one.
        slot.get_or_insert_with(|| v.into_owned());
    }
    p
}

fn basic_auth(app: &AppCredentials) -> String {
    // RFC 6749 §2.3.1: form-encode both parts before joining them.
    let id: String = url::form_urlencoded::byte_serialize(app.client_id.as_bytes()).collect();
    let secret: String = url::form_urlencoded::byte_serialize(app.client_secret.expose().as_bytes()).collect();
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn token_request(api_base: &str, app: &AppCredentials, form: &[(&str, &str)]) -> HttpRequest {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    HttpRequest::post(format!("{api_base}{}", Route::Token.path()))
        .header("authorization", basic_auth(app))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
}

/// Authorization-code grant with the PKCE verifier; client credentials as HTTP Basic.
pub fn code_exchange_request(
    api_base: &str,
    app: &AppCredentials,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> HttpRequest {
    token_request(
        api_base,
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
    )
}

pub fn refresh_request(api_base: &str, app: &AppCredentials, refresh_token: &Secret) -> HttpRequest {
    token_request(api_base, app, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose())])
}

#[derive(Deserialize)]
struct TokenJson {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenErrorJson {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Which grant a token response answers: `invalid_grant` means different things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    Code,
    Refresh,
}

/// Read a token response. `previous_refresh` is kept when Dropbox sends none (it never rotates).
pub fn parse_token_response(
    grant: Grant,
    app: &AppCredentials,
    resp: &HttpResponse,
    now: u64,
    previous_refresh: Option<&Secret>,
) -> Result<Tokens, Error> {
    if resp.status == 200 {
        let t: TokenJson = crate::api::parse_json(Route::Token, &resp.body)?;
        let refresh = match (t.refresh_token, previous_refresh) {
            (Some(r), _) if !r.is_empty() => Secret::new(r),
            (_, Some(prev)) => prev.clone(),
            _ => {
                return Err(Error::Api(
                    "Dropbox granted no refresh token (was token_access_type=offline dropped?)".into(),
                ))
            }
        };
        if t.access_token.is_empty() {
            return Err(Error::Transient("token endpoint returned an empty access token".into()));
        }
        // Tokens without expiry (legacy) are treated as valid for four hours, Dropbox's norm.
        let expires_in = t.expires_in.unwrap_or(14_400);
        return Ok(Tokens {
            access_token: Secret::new(t.access_token),
            expires_at: now.saturating_add(expires_in),
            refresh_token: refresh,
        });
    }
    if resp.status == 429 || resp.status >= 500 {
        return match crate::api::check_rpc(Route::Token, resp) {
            Err(crate::api::Failure::Error(e)) => Err(e),
            _ => Err(Error::Transient(format!("oauth2/token answered {}", resp.status))),
        };
    }
    // Never quote the body itself: whatever answered may have put a token in it.
    let Ok(e) = serde_json::from_slice::<TokenErrorJson>(&resp.body) else {
        return Err(Error::Api(format!(
            "oauth2/token answered {} with {} bytes that are not a Dropbox error",
            resp.status,
            resp.body.len()
        )));
    };
    let detail = e.error_description.as_deref().map(str::trim).filter(|d| !d.is_empty());
    let with_detail = |msg: String| match detail {
        Some(d) => format!("{msg} (Dropbox says: {})", quote(d.as_bytes())),
        None => msg,
    };
    // Dropbox may put the description into `error` itself: match on the prefix.
    if e.error.starts_with("invalid_client") {
        return Err(Error::InvalidClient(format!(
            "Dropbox rejected the app credentials for client_id {:?}: check client_id and client_secret in the connector config",
            app.client_id
        )));
    }
    if e.error.starts_with("invalid_grant") {
        return Err(match grant {
            Grant::Code => {
                Error::Denied(with_detail("the authorization code is invalid, expired or already used".into()))
            }
            Grant::Refresh => Error::ReauthRequired(with_detail(
                "the refresh token was revoked or is invalid; connect the account again".into(),
            )),
        });
    }
    Err(Error::Api(with_detail(format!("oauth2/token answered {} {}", resp.status, quote(e.error.as_bytes())))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Endpoints;

    fn secret() -> SecretBytes {
        SecretBytes::new("0123456789abcdef-host-secret")
    }

    fn app() -> AppCredentials {
        AppCredentials { client_id: "APPKEY".into(), client_secret: Secret::new("s3cr3t") }
    }

    fn connect_req() -> ConnectRequest {
        ConnectRequest {
            connector_id: "dropbox".into(),
            client_id: "APPKEY".into(),
            redirect_uri: "http://localhost:9000/connector/dropbox/dropbox/oauth_redirect".into(),
            state_secret: secret(),
            now: 1_000,
            state_ttl_secs: None,
            scopes: None,
            endpoints: Endpoints::dropbox(),
            session_binding: None,
        }
    }

    #[test]
    fn state_round_trips_and_rejects_tampering() {
        let s = sign_state(&secret(), "dropbox", b"nonce-0123456789", 2_000, None);
        assert_eq!(verify_state(&secret(), &s, "dropbox", 1_999, None).unwrap(), b"nonce-0123456789");
        assert!(s.len() < 500);
        // Expired, foreign connector, other secret, flipped payload, garbage.
        assert!(
            matches!(verify_state(&secret(), &s, "dropbox", 2_000, None), Err(Error::Denied(m)) if m.contains("expired"))
        );
        assert!(
            matches!(verify_state(&secret(), &s, "box", 1_500, None), Err(Error::Denied(m)) if m.contains("another connector"))
        );
        let other = SecretBytes::new("another-secret-of-16+bytes");
        assert!(
            matches!(verify_state(&other, &s, "dropbox", 1_500, None), Err(Error::Denied(m)) if m.contains("signature"))
        );
        let forged = sign_state(&other, "dropbox", b"nonce-0123456789", 9_999, None);
        assert!(verify_state(&secret(), &forged, "dropbox", 1_500, None).is_err());
        let (p, t) = s.split_once('.').unwrap();
        let mut payload = URL_SAFE_NO_PAD.decode(p).unwrap();
        payload[5] ^= 1;
        let tampered = format!("{}.{t}", URL_SAFE_NO_PAD.encode(payload));
        assert!(verify_state(&secret(), &tampered, "dropbox", 1_500, None).is_err());
        for junk in ["", ".", "abc", "a.b", "!!!.???"] {
            assert!(matches!(verify_state(&secret(), junk, "dropbox", 1_500, None), Err(Error::Denied(_))));
        }
    }

    #[test]
    fn an_unreadable_token_response_never_quotes_the_token() {
        let resp = HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"access_token":"sl.SECRET-ACCESS-TOKEN-VALUE","expires_in":"sl.SECRET-IN-A-NUMBER","#.to_vec(),
        };
        let e = parse_token_response(Grant::Refresh, &app(), &resp, 0, None).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(matches!(e, Error::Transient(_)), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        let resp = HttpResponse { body: br#"{"access_token":7,"refresh_token":"rt.SECRET"}"#.to_vec(), ..resp };
        let text = format!("{:?}", parse_token_response(Grant::Refresh, &app(), &resp, 0, None).unwrap_err());
        assert!(!text.contains("SECRET"), "{text}");
        // Found by the fuzzer: a token-shaped body under an error status was quoted.
        let resp = HttpResponse { status: 401, ..resp };
        let text = format!("{:?}", parse_token_response(Grant::Refresh, &app(), &resp, 0, None).unwrap_err());
        assert!(!text.contains("SECRET"), "{text}");
    }

    #[test]
    fn a_bound_state_needs_the_same_browser() {
        let cookie = b"cookie-value-of-the-browser-0001";
        let s = sign_state(&secret(), "dropbox", b"nonce-0123456789", 2_000, Some(cookie));
        assert_eq!(verify_state(&secret(), &s, "dropbox", 1_500, Some(cookie)).unwrap(), b"nonce-0123456789");
        let missing = verify_state(&secret(), &s, "dropbox", 1_500, None);
        assert!(matches!(missing, Err(Error::Denied(m)) if m.contains("another browser")));
        let other = verify_state(&secret(), &s, "dropbox", 1_500, Some(b"cookie-value-of-another-browser!"));
        assert!(matches!(other, Err(Error::Denied(m)) if m.contains("differs")));
        // An unbound state stays valid without a cookie (the CLI's flow), and the verifier
        // depends on the binding: whoever lacks the cookie cannot redo the exchange.
        let unbound = sign_state(&secret(), "dropbox", b"nonce-0123456789", 2_000, None);
        assert!(verify_state(&secret(), &unbound, "dropbox", 1_500, None).is_ok());
        let n = b"nonce-0123456789";
        assert_ne!(pkce_verifier(&secret(), n, Some(cookie)), pkce_verifier(&secret(), n, None));
        assert_ne!(pkce_verifier(&secret(), n, Some(cookie)), pkce_verifier(&secret(), n, Some(b"x".as_slice())));
    }

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        // RFC 7636 Appendix B test vector.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let v = pkce_verifier(&secret(), b"n", None);
        assert_eq!(v.len(), 43);
        assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(v, pkce_verifier(&secret(), b"n", None));
        assert_ne!(v, pkce_verifier(&secret(), b"m", None));
    }

    #[test]
    fn authorize_url_carries_every_parameter() {
        let url = authorize_url(&connect_req(), b"nonce-0123456789").unwrap();
        let u = url::Url::parse(&url).unwrap();
        assert_eq!(u.host_str(), Some("www.dropbox.com"));
        assert_eq!(u.path(), "/oauth2/authorize");
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "APPKEY");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["token_access_type"], "offline");
        assert_eq!(q["redirect_uri"], connect_req().redirect_uri);
        assert_eq!(
            q["scope"],
            "files.content.read files.metadata.read sharing.read account_info.read team_data.member"
        );
        assert_eq!(q["code_challenge_method"], "S256");
        let nonce = verify_state(&secret(), &q["state"], "dropbox", 1_599, None).unwrap();
        assert!(verify_state(&secret(), &q["state"], "dropbox", 1_600, None).is_err(), "default ttl is 600 s");
        assert_eq!(q["code_challenge"], pkce_challenge(&pkce_verifier(&secret(), &nonce, None)));
        // Spaces encode as '+', like upstream's Go url.Values.
        assert!(url.contains("scope=files.content.read+files.metadata.read"));
    }

    #[test]
    fn authorize_url_rejects_bad_config() {
        let mut r = connect_req();
        r.state_secret = SecretBytes::new("short");
        assert!(matches!(authorize_url(&r, b"n"), Err(Error::InvalidInput(m)) if m.contains("at least 16")));
        let mut r = connect_req();
        r.redirect_uri = "/connector/x/oauth_redirect".into();
        assert!(matches!(authorize_url(&r, b"n"), Err(Error::InvalidInput(m)) if m.contains("absolute")));
        let mut r = connect_req();
        r.client_id = " ".into();
        assert!(authorize_url(&r, b"n").is_err());
    }

    #[test]
    fn redirect_params_from_url_query_or_bare() {
        let p = parse_redirect("http://h/cb?code=abc&state=s%2Bt&code=evil#frag");
        assert_eq!(p.code.as_deref(), Some("abc"));
        assert_eq!(p.state.as_deref(), Some("s+t"));
        let p = parse_redirect("error=access_denied&error_description=The+user+chose+not+to+give+your+app+access");
        assert_eq!(p.error.as_deref(), Some("access_denied"));
        assert_eq!(p.error_description.as_deref(), Some("The user chose not to give your app access"));
        assert_eq!(parse_redirect("http://h/cb"), RedirectParams::default());
    }

    #[test]
    fn token_requests_use_basic_auth_and_form_bodies() {
        let r = code_exchange_request("https://api", &app(), "C0DE", "http://cb", "verif");
        let auth = &r.headers.iter().find(|(k, _)| *k == "authorization").unwrap().1;
        assert_eq!(auth, &format!("Basic {}", STANDARD.encode("APPKEY:s3cr3t")));
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert_eq!(body, "grant_type=authorization_code&code=C0DE&redirect_uri=http%3A%2F%2Fcb&code_verifier=verif");
        assert!(!body.contains("s3cr3t"));
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }

    fn token_resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec() }
    }

    #[test]
    fn refresh_keeps_the_old_refresh_token() {
        let prev = Secret::new("old-refresh");
        let t = parse_token_response(
            Grant::Refresh,
            &app(),
            &token_resp(200, r#"{"access_token":"sl.new","expires_in":14400,"token_type":"bearer"}"#),
            100,
            Some(&prev),
        )
        .unwrap();
        assert_eq!(t.refresh_token, prev);
        assert_eq!(t.expires_at, 14_500);
        assert_eq!(t.access_token.expose(), "sl.new");
    }

    #[test]
    fn token_errors_are_classified_without_echoing_secrets() {
        let e = parse_token_response(
            Grant::Code,
            &app(),
            &token_resp(400, r#"{"error":"invalid_client: Invalid client_id or client_secret"}"#),
            0,
            None,
        )
        .unwrap_err();
        assert!(matches!(&e, Error::InvalidClient(m) if m.contains("client_secret") && !m.contains("s3cr3t")));
        let grant = r#"{"error":"invalid_grant","error_description":"code doesn't exist or has expired"}"#;
        assert!(matches!(
            parse_token_response(Grant::Code, &app(), &token_resp(400, grant), 0, None),
            Err(Error::Denied(m)) if m.contains("already used") && m.contains("has expired")
        ));
        assert!(matches!(
            parse_token_response(Grant::Refresh, &app(), &token_resp(400, grant), 0, None),
            Err(Error::ReauthRequired(_))
        ));
        assert!(matches!(
            parse_token_response(Grant::Refresh, &app(), &token_resp(503, "busy"), 0, None),
            Err(Error::Transient(_))
        ));
        assert!(matches!(
            parse_token_response(Grant::Refresh, &app(), &token_resp(200, "{not json"), 0, None),
            Err(Error::Transient(_))
        ));
    }
}
