//! Authenticated Dropbox calls for one invocation: refresh ahead of expiry, and on
//! `401 expired_access_token` refresh once and replay the same request.

use crate::api::{self, Failure, Route};
use crate::error::Error;
use crate::http::{HttpRequest, HttpResponse, Transport};
use crate::oauth::{self, Grant};
use crate::types::{AppCredentials, Endpoints, PageStats, Tokens};

/// Refresh margin used before a revoke: any token that still works will do.
pub const REVOKE_MARGIN_SECS: u64 = 30;

/// Default refresh margin: upstream's and the Python SDK's five minutes.
pub const DEFAULT_REFRESH_MARGIN_SECS: u64 = 300;

pub struct Session<'a, T: Transport> {
    transport: &'a mut T,
    endpoints: &'a Endpoints,
    app: &'a AppCredentials,
    tokens: Tokens,
    now: u64,
    /// Set once this invocation obtained a new access token.
    refreshed: bool,
    /// Cap on a list_folder page's body; other answers use the transport's default.
    pub max_page_bytes: usize,
    pub stats: PageStats,
}

impl<'a, T: Transport> Session<'a, T> {
    pub fn new(
        transport: &'a mut T,
        endpoints: &'a Endpoints,
        app: &'a AppCredentials,
        tokens: Tokens,
        now: u64,
    ) -> Self {
        Session {
            transport,
            endpoints,
            app,
            tokens,
            now,
            refreshed: false,
            max_page_bytes: crate::http::DEFAULT_MAX_PAGE_BYTES,
            stats: PageStats::default(),
        }
    }

    /// The tokens, if this invocation changed them.
    pub fn refreshed_tokens(&self) -> Option<Tokens> {
        self.refreshed.then(|| self.tokens.clone())
    }

    fn send(&mut self, route: Route, req: &HttpRequest) -> Result<HttpResponse, Error> {
        self.stats.requests += 1;
        self.transport.send(req).map_err(|e| api::transport_error(route, e))
    }

    /// Refresh if the access token is missing or expires within `margin_secs`.
    pub fn ensure_fresh(&mut self, margin_secs: u64) -> Result<(), Error> {
        let due = self.tokens.access_token.is_empty() || self.now.saturating_add(margin_secs) >= self.tokens.expires_at;
        if due {
            self.refresh()?;
        }
        Ok(())
    }

    pub fn refresh(&mut self) -> Result<(), Error> {
        if self.tokens.refresh_token.is_empty() {
            return Err(Error::ReauthRequired("no refresh token is stored".into()));
        }
        let req = oauth::refresh_request(&self.endpoints.api, self.app, &self.tokens.refresh_token);
        let resp = self.send(Route::Token, &req)?;
        self.stats.refreshes += 1;
        let tokens =
            oauth::parse_token_response(Grant::Refresh, self.app, &resp, self.now, Some(&self.tokens.refresh_token))?;
        self.tokens = tokens;
        self.refreshed = true;
        Ok(())
    }

    /// One RPC call; the body of a 200 response.
    pub fn rpc(&mut self, route: Route, body: &str, path_root: Option<&str>) -> Result<Vec<u8>, Error> {
        let max_page_bytes = self.max_page_bytes;
        let api = self.endpoints.api.clone();
        let sent = self.authorized(route, |token| {
            let req = api::rpc_request(&api, route, token, body.to_string(), path_root);
            match route {
                Route::ListFolder | Route::ListFolderContinue => req.max_response_bytes(max_page_bytes),
                _ => req,
            }
        })?;
        let resp = match sent {
            Sent::Response(r) => r,
            Sent::TooLarge { limit } => {
                return Err(api::transport_error(route, crate::http::TransportError::TooLarge { limit }))
            }
        };
        match api::check_rpc(route, &resp) {
            Ok(_) => Ok(resp.body),
            Err(Failure::Error(e)) => Err(e),
            // `authorized` already replayed once.
            Err(Failure::ExpiredToken) => {
                Err(Error::Transient("Dropbox called a just-refreshed access token expired".into()))
            }
        }
    }

    /// Send a request built around the current access token; on `401 expired_access_token`
    /// refresh once and send it again. Any other answer is returned as is for the caller to
    /// classify, and an answer over the request's cap as [`Sent::TooLarge`].
    pub fn authorized(&mut self, route: Route, build: impl Fn(&str) -> HttpRequest) -> Result<Sent, Error> {
        let mut replayed = false;
        loop {
            let req = build(self.tokens.access_token.expose());
            self.stats.requests += 1;
            let resp = match self.transport.send(&req) {
                Ok(r) => r,
                Err(crate::http::TransportError::TooLarge { limit }) => return Ok(Sent::TooLarge { limit }),
                Err(e) => return Err(api::transport_error(route, e)),
            };
            if resp.status == 401 && !replayed && matches!(api::check_rpc(route, &resp), Err(Failure::ExpiredToken)) {
                replayed = true;
                self.refresh()?;
                continue;
            }
            return Ok(Sent::Response(resp));
        }
    }
}

/// What [`Session::authorized`] got back.
#[derive(Debug)]
pub enum Sent {
    Response(HttpResponse),
    /// The answer was longer than the request's cap (and was not read whole).
    TooLarge {
        limit: usize,
    },
}
