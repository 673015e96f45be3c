//! The HTTP front door of `serve`, with the limits a public endpoint needs (webhooks and the
//! connect flow face the internet): at most `max_connections` open at once (more are closed at
//! once), a request's header must arrive within `header_timeout`, and a whole request (its body
//! and the handler) must be done within `request_timeout` (else `408`). A slow client therefore
//! holds one connection for seconds, never a task for ever; webhooks, `/healthz` and the
//! scheduler go on. Stopping is graceful: no new connections, open ones finish their request.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{watch, Semaphore};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A whole request, body and handler, within the limit.
async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            (StatusCode::REQUEST_TIMEOUT, [("connection", "close")], "the request took too long\n").into_response()
        }
    }
}

/// Resolves once `shutdown` is true (or its sender is gone), holding no borrow of it.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serve `app` on `listener` until `shutdown` turns true, then wait for open connections to
/// finish the request they are on.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let app = app.layer(axum::middleware::from_fn_with_state(limits.request_timeout, deadline));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut open = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: back off rather than spin.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        while open.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("{} connections open: closing a new one", limits.max_connections);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let stop = shutdown.clone();
        let acceptor = acceptor.clone();
        open.spawn(async move {
            let _slot = slot;
            match acceptor {
                None => connection(stream, service, limits, stop).await,
                // The handshake counts against the header deadline: a client that opens a
                // connection and says nothing is closed as soon over TLS as without.
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => connection(tls, service, limits, stop).await,
                    Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        });
    }
    while open.join_next().await.is_some() {}
}

/// One connection's requests, until it closes or the service stops.
async fn connection<I>(
    io: I,
    service: hyper_util::service::TowerToHyperService<axum::Router>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
