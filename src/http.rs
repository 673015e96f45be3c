//! The one I/O seam of the core: send a request, get a response. The wasm glue implements it
//! with waki (wasi:http); native tests and benchmarks implement it with fakes.

use std::fmt;

#[derive(Clone)]
pub struct HttpRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Only the URL: headers carry bearer tokens and Basic credentials.
impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest").field("url", &self.url).finish_non_exhaustive()
    }
}

impl HttpRequest {
    /// Every Dropbox call we make is a POST.
    pub fn post(url: String) -> Self {
        HttpRequest { url, headers: Vec::new(), body: Vec::new() }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

#[derive(Clone, Debug, Default)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A request that produced no HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// The host refused the destination (not on the datasource's allow-list).
    Denied(String),
    /// Connect/read timeouts, refused or reset connections, truncated bodies.
    Failed(String),
}

pub trait Transport {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError>;
}

/// The one fake [`Transport`] of the unit tests: answers from a script, records what was asked.
#[cfg(test)]
pub mod fake {
    use super::{HttpRequest, HttpResponse, Transport, TransportError};
    use std::collections::VecDeque;

    #[derive(Default)]
    pub struct Scripted {
        pub answers: VecDeque<Result<HttpResponse, TransportError>>,
        pub seen: Vec<HttpRequest>,
    }

    impl Scripted {
        pub fn new(answers: impl IntoIterator<Item = Result<HttpResponse, TransportError>>) -> Self {
            Scripted { answers: answers.into_iter().collect(), seen: Vec::new() }
        }

        /// No network at all: every request fails as a dead connection.
        pub fn offline() -> Self {
            Scripted::default()
        }
    }

    impl Transport for Scripted {
        fn send(&mut self, r: &HttpRequest) -> Result<HttpResponse, TransportError> {
            self.seen.push(r.clone());
            self.answers.pop_front().unwrap_or_else(|| Err(TransportError::Failed("script ended".into())))
        }
    }

    /// A response with this status and body.
    pub fn reply(status: u16, body: &str) -> Result<HttpResponse, TransportError> {
        Ok(HttpResponse { status, headers: vec![], body: body.as_bytes().to_vec() })
    }
}
