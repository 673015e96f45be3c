//! `handle-redirect`: verify the redirect, exchange the code, read the account, and build the
//! datasource exactly as upstream names and keys it.

use serde::Deserialize;

use crate::api::{self, Failure, RootInfoJson, Route};
use crate::error::Error;
use crate::http::Transport;
use crate::mapping::{datasource_id, datasource_name};
use crate::oauth::{self, Grant};
use crate::session::{Session, REVOKE_MARGIN_SECS};
use crate::types::{Datasource, DatasourceConfig, Profile, RedirectRequest, RevokeRequest};

#[derive(Deserialize)]
struct NameJson {
    #[serde(default)]
    display_name: String,
}

/// The parts of `FullAccount` we keep.
#[derive(Deserialize)]
struct AccountJson {
    account_id: String,
    #[serde(default)]
    email: String,
    name: NameJson,
    #[serde(default)]
    profile_photo_url: Option<String>,
    root_info: RootInfoJson,
}

pub fn handle_redirect<T: Transport>(req: &RedirectRequest, transport: &mut T) -> Result<Datasource, Error> {
    oauth::check_secret(&req.state_secret)?;
    if req.app.client_id.is_empty() || req.app.client_secret.is_empty() {
        return Err(Error::InvalidInput("client_id and client_secret are required".into()));
    }
    oauth::check_redirect_uri(&req.redirect_uri)?;

    let params = oauth::parse_redirect(&req.redirect_query);
    if let Some(error) = params.error {
        let why = params.error_description.unwrap_or_else(|| "no description given".into());
        return Err(Error::Denied(format!(
            "Dropbox authorization was refused ({}): {}",
            api::quote(error.as_bytes()),
            api::quote(why.as_bytes())
        )));
    }
    let binding = req.session_binding.as_ref().map(|b| b.expose());
    let state = params.state.as_deref().unwrap_or("");
    let nonce = oauth::verify_state(&req.state_secret, state, &req.connector_id, req.now, binding)?;
    let code = params
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::InvalidInput("the redirect carries no authorization code".into()))?;

    let verifier = oauth::pkce_verifier(&req.state_secret, &nonce, binding);
    let exchange = oauth::code_exchange_request(&req.endpoints.api, &req.app, &code, &req.redirect_uri, &verifier);
    let resp = transport.send(&exchange).map_err(|e| api::transport_error(Route::Token, e))?;
    let tokens = oauth::parse_token_response(Grant::Code, &req.app, &resp, req.now, None)?;

    let account = api::rpc_request(
        &req.endpoints.api,
        Route::GetCurrentAccount,
        tokens.access_token.expose(),
        "null".into(),
        None,
    );
    let resp = transport.send(&account).map_err(|e| api::transport_error(Route::GetCurrentAccount, e))?;
    let body = match api::check_rpc(Route::GetCurrentAccount, &resp) {
        Ok(body) => body,
        Err(Failure::Error(e)) => return Err(e),
        Err(Failure::ExpiredToken) => {
            return Err(Error::Transient("a freshly issued access token was called expired".into()))
        }
    };
    let a: AccountJson = api::parse_json(Route::GetCurrentAccount, body)?;
    if a.account_id.is_empty() {
        return Err(Error::Api("get_current_account returned no account_id".into()));
    }
    let profile = Profile {
        account_id: a.account_id,
        email: a.email,
        name: a.name.display_name,
        picture: a.profile_photo_url.filter(|p| !p.is_empty()),
        root_info: a.root_info.into(),
    };
    Ok(Datasource {
        id: datasource_id(&req.connector_id, &profile.account_id, &profile.email),
        name: datasource_name(&profile.name),
        connector_id: req.connector_id.clone(),
        config: DatasourceConfig {
            client_id: req.app.client_id.clone(),
            refresh_token: tokens.refresh_token.clone(),
            profile,
        },
        tokens,
    })
}

/// Revoke the datasource's tokens at Dropbox.
pub fn revoke<T: Transport>(req: &RevokeRequest, transport: &mut T) -> Result<(), Error> {
    if req.app.client_id.is_empty() || req.tokens.refresh_token.is_empty() {
        return Err(Error::InvalidInput("client_id and refresh_token are required to revoke".into()));
    }
    let mut session = Session::new(transport, &req.endpoints, &req.app, req.tokens.clone(), req.now);
    session.ensure_fresh(REVOKE_MARGIN_SECS)?;
    session.rpc(Route::Revoke, "null", None).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::fake::Scripted;
    use crate::http::HttpResponse;
    use crate::secret::{Secret, SecretBytes};
    use crate::types::{AppCredentials, Endpoints, Tokens};

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec() }
    }

    fn app() -> AppCredentials {
        AppCredentials { client_id: "APPKEY".into(), client_secret: Secret::new("s") }
    }

    fn redirect(query: String) -> RedirectRequest {
        RedirectRequest {
            connector_id: "dropbox".into(),
            app: app(),
            redirect_uri: "http://localhost/cb".into(),
            redirect_query: query,
            state_secret: SecretBytes::new("0123456789abcdef0123"),
            now: 1_000,
            endpoints: Endpoints::single("http://127.0.0.1:9"),
            session_binding: None,
        }
    }

    const ACCOUNT: &str = r#"{"account_id":"dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc","name":{"display_name":""},
        "email":"franz@dropbox.com","profile_photo_url":"","root_info":{".tag":"user","root_namespace_id":"1","home_namespace_id":"1"}}"#;

    #[test]
    fn a_good_redirect_becomes_upstreams_datasource() {
        let secret = SecretBytes::new("0123456789abcdef0123");
        let state = oauth::sign_state(&secret, "dropbox", b"nonce", 2_000, None);
        let token = r#"{"access_token":"sl.A","expires_in":14400,"refresh_token":"rt.R","token_type":"bearer"}"#;
        let mut t = Scripted::new([Ok(resp(200, token)), Ok(resp(200, ACCOUNT))]);
        let ds = handle_redirect(&redirect(format!("?code=C&state={state}")), &mut t).unwrap();
        assert_eq!(ds.id, "0335b4e59c687f2666f7d7e5d5d17686");
        assert_eq!(ds.name, "My Dropbox");
        assert_eq!(ds.config.refresh_token.expose(), "rt.R");
        assert_eq!(ds.config.profile.picture, None);
        assert_eq!(ds.tokens.expires_at, 15_400);
        let form = String::from_utf8(t.seen[0].body.clone()).unwrap();
        assert!(form.contains(&format!("code_verifier={}", oauth::pkce_verifier(&secret, b"nonce", None))));
        assert_eq!(t.seen[1].body, b"null");
    }

    #[test]
    fn refusals_and_bad_states_are_denied_without_any_request() {
        let mut t = Scripted::offline();
        let e = handle_redirect(&redirect("error=access_denied&error_description=The+user+said+no".into()), &mut t);
        assert!(matches!(e, Err(Error::Denied(m)) if m.contains("access_denied") && m.contains("The user said no")));
        assert!(matches!(handle_redirect(&redirect("code=C".into()), &mut t), Err(Error::Denied(_))));
        assert!(t.seen.is_empty());
    }

    #[test]
    fn revoke_refreshes_an_expired_token_first() {
        let tokens = Tokens { access_token: Secret::new("old"), expires_at: 0, refresh_token: Secret::new("rt") };
        let req = RevokeRequest { app: app(), tokens, now: 1_000, endpoints: Endpoints::single("http://127.0.0.1:9") };
        let token = r#"{"access_token":"fresh","expires_in":14400}"#;
        let mut t = Scripted::new([Ok(resp(200, token)), Ok(resp(200, "null"))]);
        revoke(&req, &mut t).unwrap();
        assert!(t.seen[1].url.ends_with("/2/auth/token/revoke"));
        assert!(t.seen[1].headers.iter().any(|(k, v)| *k == "authorization" && v == "Bearer fresh"));
    }
}
