//! The one I/O seam of the core: send a request, get a response. The wasm glue implements it
//! with waki (wasi:http); native tests and benchmarks implement it with fakes.

use std::fmt;

/// Largest answer we read from an ordinary call (token, account, revoke).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Largest error body we read, whatever the call: error envelopes are small.
pub const MAX_ERROR_BODY_BYTES: usize = 64 << 10;
/// Default cap on a list_folder page: a 2,000-entry page is about 1 MiB.
pub const DEFAULT_MAX_PAGE_BYTES: usize = 32 << 20;

#[derive(Clone)]
pub struct HttpRequest {
    /// `POST` for every Dropbox call; the Coco sink also `GET`, `PUT` and `DELETE`.
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// A successful answer longer than this fails as [`TransportError::TooLarge`]; error
    /// answers are capped at [`MAX_ERROR_BODY_BYTES`].
    pub max_response_bytes: usize,
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
        HttpRequest {
            method: Method::Post,
            url,
            headers: Vec::new(),
            body: Vec::new(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// A `DELETE` with a body (Coco Server's bulk document delete).
    pub fn delete(url: String) -> Self {
        HttpRequest::new(Method::Delete, url)
    }

    pub fn new(method: Method, url: String) -> Self {
        HttpRequest { method, ..HttpRequest::post(url) }
    }

    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// The cap for an answer with this status.
    pub fn response_cap(&self, status: u16) -> usize {
        if (200..300).contains(&status) {
            self.max_response_bytes
        } else {
            self.max_response_bytes.min(MAX_ERROR_BODY_BYTES)
        }
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
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
    /// The answer is longer than the request's cap (its `Content-Length`, or what was read).
    TooLarge { limit: usize },
}

/// Read a body chunk by chunk (`next(max_len)` gives `None` at the end) and stop as soon as it
/// passes `limit`: an endless or huge body costs at most `limit` bytes of memory.
pub fn read_capped<E>(
    limit: usize,
    next: impl FnMut(u64) -> Result<Option<Vec<u8>>, E>,
) -> Result<Vec<u8>, ReadCapped<E>> {
    read_capped_sized(limit, 0, next)
}

/// [`read_capped`] into a buffer sized for `expected` bytes up front (a declared length,
/// never trusted past `limit`): a 1 MiB page is read without regrowing.
fn read_capped_sized<E>(
    limit: usize,
    expected: usize,
    mut next: impl FnMut(u64) -> Result<Option<Vec<u8>>, E>,
) -> Result<Vec<u8>, ReadCapped<E>> {
    const CHUNK: u64 = 64 << 10;
    let mut body = Vec::with_capacity(expected.min(limit));
    while let Some(chunk) = next(CHUNK).map_err(ReadCapped::Failed)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadCapped::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Read a body of at most `limit` bytes: refused before a byte is read when its declared
/// `Content-Length` is over the cap, else read with [`read_capped`].
pub fn read_body_capped<E>(
    headers: &[(String, String)],
    limit: usize,
    next: impl FnMut(u64) -> Result<Option<Vec<u8>>, E>,
) -> Result<Vec<u8>, ReadCapped<E>> {
    let declared =
        headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ReadCapped::TooLarge);
    }
    read_capped_sized(limit, declared.unwrap_or(0) as usize, next)
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReadCapped<E> {
    TooLarge,
    Failed(E),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_capped_stops_at_the_limit() {
        let chunks = |n: usize| {
            let mut left = n;
            move |max: u64| -> Result<Option<Vec<u8>>, ()> {
                let take = left.min(max as usize);
                left -= take;
                Ok((take > 0).then(|| vec![b'x'; take]))
            }
        };
        assert_eq!(read_capped(100, chunks(100)).unwrap().len(), 100);
        assert_eq!(read_capped(99, chunks(100)), Err(ReadCapped::TooLarge));
        // An endless stream ends at the cap, not at out-of-memory.
        let endless = |max: u64| -> Result<Option<Vec<u8>>, ()> { Ok(Some(vec![0; max as usize])) };
        assert_eq!(read_capped(1 << 20, endless), Err(ReadCapped::TooLarge));
        // An announced oversized body is refused without reading.
        let announced = [("Content-Length".to_string(), "101".to_string())];
        let unread = |_: u64| -> Result<Option<Vec<u8>>, ()> { panic!("read despite the declared length") };
        assert_eq!(read_body_capped(&announced, 100, unread), Err(ReadCapped::TooLarge));
        let req = HttpRequest::post("http://x".into()).max_response_bytes(10 << 20);
        assert_eq!(req.response_cap(200), 10 << 20);
        assert_eq!(req.response_cap(500), MAX_ERROR_BODY_BYTES);
    }
}

pub trait Transport {
    fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, TransportError>;

    /// Several requests, answered in the order asked. A transport that can keep requests in
    /// flight together sends them at once; by default they go one after another.
    fn send_all(&mut self, requests: &[HttpRequest]) -> Vec<Result<HttpResponse, TransportError>> {
        requests.iter().map(|r| self.send(r)).collect()
    }
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
