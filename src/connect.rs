//! `handle-redirect`: verify the redirect, exchange the code, read the account, and build the
//! datasource exactly as upstream names and keys it.

use serde::Deserialize;

use crate::api::{self, Failure, RootInfoJson, Route};
use crate::error::Error;
use crate::http::Transport;
use crate::mapping::{datasource_id, datasource_name};
use crate::oauth::{self, Grant};
use crate::types::{Datasource, DatasourceConfig, Profile, RedirectRequest};

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
    let nonce =
        oauth::verify_state(&req.state_secret, params.state.as_deref().unwrap_or(""), &req.connector_id, req.now)?;
    let code = params
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::InvalidInput("the redirect carries no authorization code".into()))?;

    let verifier = oauth::pkce_verifier(&req.state_secret, &nonce);
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
            client_secret: req.app.client_secret.clone(),
            refresh_token: tokens.refresh_token.clone(),
            profile,
        },
        tokens,
    })
}
