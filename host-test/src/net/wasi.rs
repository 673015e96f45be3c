//! The components' outbound requests (`wasi:http/outgoing-handler`) sent through the host's
//! client, so Dropbox is reached with the same trust and proxy as everything else. wasmtime's
//! own sender knows neither extra roots nor proxies.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use super::failure::{NetFailure, NetFailureKind};
use super::HttpClient;

/// A request body larger than this is refused (the components send small JSON).
const MAX_REQUEST_BODY: usize = 16 << 20;

/// Send one request from a component: the answer's head within the first-byte timeout, the body
/// streamed with the between-bytes timeout. On failure, wasi:http's code for the guest and,
/// where the network said why, the reason for the operator.
pub async fn send(
    client: &HttpClient,
    request: http::Request<WasiBody>,
    options: RequestOptions,
) -> Result<http::Response<WasiBody>, (Error, Option<NetFailure>)> {
    let (parts, body) = request.into_parts();
    let url = url::Url::parse(&parts.uri.to_string()).map_err(|_| (Error::HttpRequestUriInvalid, None))?;
    let body = http_body_util::Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|_| (Error::HttpRequestBodySize(None), None))?
        .to_bytes();
    let mut req = reqwest::Request::new(parts.method, url.clone());
    *req.headers_mut() = parts.headers;
    // The client writes the Host header from the URL.
    req.headers_mut().remove(http::header::HOST);
    *req.body_mut() = Some(body.into());
    // The client bounds connecting (10 s); the first byte is due within its own timeout of
    // sending, which a connection still being opened counts against (a pooled one does not).
    let head_within = options.first_byte_timeout.unwrap_or(Duration::from_secs(60));
    let resp = match tokio::time::timeout(head_within, client.reqwest().execute(req)).await {
        Err(_) => return Err((Error::ConnectionReadTimeout, None)),
        Ok(Err(e)) => {
            let failure = client.failure(&url, &e);
            return Err((code(&failure), Some(failure)));
        }
        Ok(Ok(resp)) => resp,
    };
    let between = options.between_bytes_timeout.unwrap_or(Duration::from_secs(30)).max(Duration::from_millis(1));
    let resp: http::Response<reqwest::Body> = resp.into();
    Ok(resp.map(|body| BetweenBytes { body, between, deadline: Box::pin(tokio::time::sleep(between)) }.boxed_unsync()))
}

/// wasi:http's error code for a failure.
fn code(f: &NetFailure) -> Error {
    match &f.kind {
        NetFailureKind::Certificate(_) | NetFailureKind::Hostname => Error::TlsCertificateError,
        NetFailureKind::Handshake(_) => Error::TlsProtocolError,
        NetFailureKind::Connect(_) => Error::ConnectionRefused,
        NetFailureKind::Timeout => Error::ConnectionTimeout,
        NetFailureKind::ProxyRefused(_) | NetFailureKind::Other(_) => Error::InternalError(Some(f.to_string())),
    }
}

/// A response body that fails when no bytes come for `between`.
struct BetweenBytes {
    body: reqwest::Body,
    between: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for BetweenBytes {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.between;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                Error::ConnectionReadTimeout
            } else {
                Error::HttpResponseIncomplete
            }))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
