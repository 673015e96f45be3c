//! The waki (wasi:http) side of the core's one I/O seam, shared by both components. Single
//! calls go through waki; a batch ([`Transport::send_all`], the Coco sink's writes) goes out
//! at once through `wasi:http` futures, since each of Coco's writes waits for its index's
//! refresh and only writes in flight together make that wait cheap.

use std::time::Duration;

use crate::http::{read_body_capped, HttpRequest, HttpResponse, Method, ReadCapped, Transport, TransportError};

/// Bounds the TCP connect; the host bounds the rest of each request (first byte, between bytes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct WakiTransport;

impl Transport for WakiTransport {
    fn send(&mut self, r: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let client = waki::Client::new();
        let builder = match r.method {
            Method::Get => client.get(&r.url),
            Method::Post => client.post(&r.url),
            Method::Put => client.put(&r.url),
            Method::Delete => client.delete(&r.url),
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

    fn send_all(&mut self, requests: &[HttpRequest]) -> Vec<Result<HttpResponse, TransportError>> {
        if requests.len() <= 1 {
            return requests.iter().map(|r| self.send(r)).collect();
        }
        concurrent::send_all(requests)
    }
}

/// Header names (lower-case, as `http` keeps them) and values, for the core.
pub fn header_pairs(headers: &waki::header::HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

/// Many requests in flight at once: start each (`outgoing-handler.handle`, body written and
/// finished), then wait on all their futures with one `poll`, reading each answer as it comes.
mod concurrent {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, FutureIncomingResponse, IncomingResponse, Method as WasiMethod, OutgoingBody,
        OutgoingRequest, RequestOptions, Scheme,
    };
    use wasip2::io::streams::StreamError;

    use super::{read_body_capped, HttpRequest, HttpResponse, Method, ReadCapped, TransportError, CONNECT_TIMEOUT};

    fn failed(what: &str) -> TransportError {
        TransportError::Failed(what.to_string())
    }

    fn from_code(e: ErrorCode) -> TransportError {
        match e {
            ErrorCode::HttpRequestDenied => TransportError::Denied("the host denied the request".into()),
            e => TransportError::Failed(format!("{e:?}")),
        }
    }

    fn start(r: &HttpRequest) -> Result<FutureIncomingResponse, TransportError> {
        let url = url::Url::parse(&r.url).map_err(|e| TransportError::Failed(format!("bad URL: {e}")))?;
        let headers = Fields::new();
        for (name, value) in &r.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|e| TransportError::Failed(format!("header {name}: {e:?}")))?;
        }
        let length = r.body.len().to_string();
        headers.append("content-length", length.as_bytes()).map_err(|_| failed("content-length"))?;
        let req = OutgoingRequest::new(headers);
        let method = match r.method {
            Method::Get => WasiMethod::Get,
            Method::Post => WasiMethod::Post,
            Method::Put => WasiMethod::Put,
            Method::Delete => WasiMethod::Delete,
        };
        req.set_method(&method).map_err(|()| failed("method"))?;
        let scheme = match url.scheme() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            other => Scheme::Other(other.to_string()),
        };
        req.set_scheme(Some(&scheme)).map_err(|()| failed("scheme"))?;
        let host = url.host_str().ok_or_else(|| failed("URL without a host"))?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        req.set_authority(Some(&authority)).map_err(|()| failed("authority"))?;
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        req.set_path_with_query(Some(&path)).map_err(|()| failed("path"))?;
        let body = req.body().map_err(|()| failed("request body"))?;
        let options = RequestOptions::new();
        options.set_connect_timeout(Some(CONNECT_TIMEOUT.as_nanos() as u64)).map_err(|()| failed("timeout"))?;
        let future = outgoing_handler::handle(req, Some(options)).map_err(from_code)?;
        {
            let stream = body.write().map_err(|()| failed("request body stream"))?;
            for chunk in r.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| TransportError::Failed(format!("writing: {e:?}")))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(from_code)?;
        Ok(future)
    }

    fn read(r: &HttpRequest, resp: IncomingResponse) -> Result<HttpResponse, TransportError> {
        let status = resp.status();
        let headers: Vec<(String, String)> = resp
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let limit = r.response_cap(status);
        let incoming = resp.consume().map_err(|()| failed("response body"))?;
        let body = {
            let stream = incoming.stream().map_err(|()| failed("response body stream"))?;
            read_body_capped(&headers, limit, |n| match stream.blocking_read(n) {
                Ok(chunk) => Ok(Some(chunk)),
                Err(StreamError::Closed) => Ok(None),
                Err(StreamError::LastOperationFailed(e)) => Err(e.to_debug_string()),
            })
            .map_err(|e| match e {
                ReadCapped::TooLarge => TransportError::TooLarge { limit },
                ReadCapped::Failed(e) => TransportError::Failed(format!("reading the response body: {e}")),
            })?
        };
        drop(incoming);
        Ok(HttpResponse { status, headers, body })
    }

    pub fn send_all(requests: &[HttpRequest]) -> Vec<Result<HttpResponse, TransportError>> {
        let mut answers: Vec<Option<Result<HttpResponse, TransportError>>> = vec![None; requests.len()];
        let mut waiting: Vec<(usize, FutureIncomingResponse)> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            match start(r) {
                Ok(f) => waiting.push((i, f)),
                Err(e) => answers[i] = Some(Err(e)),
            }
        }
        while !waiting.is_empty() {
            let pollables: Vec<_> = waiting.iter().map(|(_, f)| f.subscribe()).collect();
            let refs: Vec<_> = pollables.iter().collect();
            let ready = wasip2::io::poll::poll(&refs);
            drop(pollables);
            let mut ready: Vec<usize> = ready.into_iter().map(|k| k as usize).collect();
            ready.sort_unstable();
            // Take the ready futures out, highest index first so the rest keep their places.
            for k in ready.into_iter().rev() {
                let (i, future) = waiting.swap_remove(k);
                let answer = match future.get() {
                    Some(Ok(Ok(resp))) => read(&requests[i], resp),
                    Some(Ok(Err(code))) => Err(from_code(code)),
                    Some(Err(())) => Err(failed("the response was taken twice")),
                    None => Err(failed("the response was not ready")),
                };
                answers[i] = Some(answer);
            }
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Err(failed("no answer")))).collect()
    }
}
