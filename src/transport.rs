//! The waki (wasi:http) side of the core's one I/O seam, shared by both components.

use std::time::Duration;

use crate::http::{read_body_capped, HttpRequest, HttpResponse, ReadCapped, Transport, TransportError};

/// Bounds the TCP connect; the host bounds the rest of each request (first byte, between bytes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct WakiTransport;

impl Transport for WakiTransport {
    fn send(&mut self, r: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let client = waki::Client::new();
        let builder = match r.method {
            crate::http::Method::Post => client.post(&r.url),
            crate::http::Method::Delete => client.delete(&r.url),
        };
        let mut builder = builder.connect_timeout(CONNECT_TIMEOUT);
        for (name, value) in &r.headers {
            builder = builder.header(*name, value.as_str());
        }
        let resp = builder.body(r.body.clone()).send().map_err(|e| match e.downcast_ref::<waki::ErrorCode>() {
            // The host's outbound policy, not the network: retrying cannot help.
            Some(waki::ErrorCode::HttpRequestDenied) => TransportError::Denied(format!("{e:#}")),
            _ => TransportError::Failed(format!("{e:#}")),
        })?;
        let status = resp.status_code();
        let headers = header_pairs(resp.headers());
        let limit = r.response_cap(status);
        let body = read_body_capped(&headers, limit, |n| resp.chunk(n)).map_err(|e| match e {
            ReadCapped::TooLarge => TransportError::TooLarge { limit },
            ReadCapped::Failed(e) => TransportError::Failed(format!("reading the response body: {e:#}")),
        })?;
        Ok(HttpResponse { status, headers, body })
    }
}

/// Header names (lower-case, as `http` keeps them) and values, for the core.
pub fn header_pairs(headers: &waki::header::HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}
