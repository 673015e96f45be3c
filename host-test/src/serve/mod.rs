//! `coco-host serve`: the host as a long-running, multi-tenant service.
//!
//! One process keeps every datasource of a state in sync by itself: a scheduler steps them page
//! by page (fair across tenants, a global cap on pages in flight, per-datasource budgets), each
//! run under a lease in the store so two processes on one state never sync one datasource at
//! once; longpolls and Dropbox webhooks wake idle datasources as soon as they change. HTTP
//! serves the connect flow to browsers, an admin API to operators, and `/metrics`.
//!
//! - `schedule`: which datasource steps next (pure, unit-tested);
//! - `driver`: the loops that run steps, keep leases and longpolls (I/O);
//! - `routes`: the HTTP surface; `auth`: who may call what; `webhook`: signature checks;
//! - `metrics`: the Prometheus registry.

mod auth;
mod delivery;
mod driver;
pub mod listener;
mod metrics;
mod routes;
pub mod schedule;
mod webhook;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::host::{Host, HostError, Run};
use crate::secret::Secret;
use metrics::Metrics;
use schedule::{Schedule, Settings};

/// Everything `serve` is told on its command line and environment.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Where browsers reach this service (the redirect URI's base), e.g. `https://coco.example`.
    pub public_url: String,
    /// Guards the admin API (and `/metrics`); from `COCO_API_TOKEN`.
    pub api_token: Secret,
    pub schedule: Settings,
    /// Keep a longpoll on each idle datasource (at most `max_longpolls`).
    pub longpoll: bool,
    pub max_longpolls: usize,
    /// Seconds Dropbox may hold each longpoll (30..=480).
    pub longpoll_timeout: u32,
    /// Where the browser goes after connecting (`?datasource_id&name` appended); None: a page.
    pub connected_url: Option<String>,
    /// Anyone may start a connect flow (as upstream behind Coco's login); otherwise it takes the
    /// API token or a signed link from `POST /api/connect-links`.
    pub open_connect: bool,
    /// `/metrics` without the API token.
    pub open_metrics: bool,
    /// How long in-flight pages get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Sync lease length; renewed every third of it while a run lasts.
    pub lease_ttl: Duration,
    /// How often the datasource list is re-read (other processes and the CLI change it too).
    pub reload_every: Duration,
    /// Where documents are delivered from the outbox (registered at start).
    pub sinks: Vec<crate::deliver::SinkConfig>,
    /// Content calls in flight across datasources (0: no content fetching in this process).
    pub content_concurrency: usize,
    /// Connections, header and request deadlines of the HTTP server.
    pub http_limits: listener::Limits,
    /// Terminate TLS here (`--tls-cert`, `--tls-key`), for a deployment without a proxy in front.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ServeConfig {
    /// Defaults for everything but where to listen and the token.
    pub fn new(listen: SocketAddr, api_token: Secret) -> Self {
        ServeConfig {
            listen,
            public_url: format!("http://{listen}"),
            api_token,
            schedule: Settings {
                default_interval: Duration::from_secs(30),
                jitter: 0.1,
                pages_per_minute: 600,
                max_in_flight: 8,
            },
            longpoll: true,
            max_longpolls: 1000,
            longpoll_timeout: 120,
            connected_url: None,
            open_connect: false,
            open_metrics: false,
            shutdown_grace: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(60),
            reload_every: Duration::from_secs(2),
            sinks: Vec::new(),
            content_concurrency: 2,
            http_limits: listener::Limits::default(),
            tls: None,
        }
    }
}

/// What woke a datasource out of its interval, for the notice-to-index histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Webhook,
    Longpoll,
    Admin,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Webhook => "webhook",
            Trigger::Longpoll => "longpoll",
            Trigger::Admin => "admin",
        }
    }
}

/// Per-datasource memory that is not the scheduler's: errors and pending notices.
#[derive(Default)]
struct Notes {
    /// Last error per datasource: (class, description, unix time).
    last_error: HashMap<String, (String, String, u64)>,
    /// First unhandled notice per datasource.
    notices: HashMap<String, (Instant, Trigger)>,
    /// Dropbox account id → (datasource id, connector id) (for webhooks).
    by_account: HashMap<String, Vec<(String, String)>>,
    /// No longpoll for this datasource before this (Dropbox's `backoff`).
    longpoll_not_before: HashMap<String, Instant>,
}

/// The running service, shared by the HTTP handlers and the driver's tasks.
impl AsRef<Host> for Service {
    fn as_ref(&self) -> &Host {
        &self.host
    }
}

pub struct Service {
    pub host: Host,
    pub config: ServeConfig,
    schedule: Mutex<Schedule>,
    /// Runs between their steps (taken out while a step runs).
    runs: Mutex<HashMap<String, Run>>,
    /// Datasources whose lease this process holds.
    leased: Mutex<HashSet<String>>,
    watchers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    notes: Mutex<Notes>,
    metrics: Metrics,
    /// Wakes the scheduler loop (a step ended, a datasource was woken or added).
    wake: tokio::sync::Notify,
    /// Wakes the sink tasks (a page was applied).
    deliver_wake: tokio::sync::Notify,
    shutdown: tokio::sync::watch::Sender<bool>,
    ready: AtomicBool,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking task must not wedge the service.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Service {
    pub fn new(host: Host, config: ServeConfig) -> Arc<Self> {
        // Replicas break ties in orders of their own, so they start on different datasources.
        let salt = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            host.lease_holder.hash(&mut h);
            h.finish() | 1
        };
        Arc::new(Service {
            host,
            schedule: Mutex::new(Schedule::new(config.schedule.clone()).salted(salt)),
            config,
            runs: Mutex::default(),
            leased: Mutex::default(),
            watchers: Mutex::default(),
            notes: Mutex::default(),
            metrics: Metrics::new(),
            wake: tokio::sync::Notify::new(),
            deliver_wake: tokio::sync::Notify::new(),
            shutdown: tokio::sync::watch::Sender::new(false),
            ready: AtomicBool::new(false),
        })
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// `/metrics`' text (for embedders and benchmarks that run the service in-process).
    pub fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    /// Stop admitting work; in-flight pages finish (see [`run`]).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.wake.notify_one();
    }
}

/// Serve until `stop` resolves (a signal), then shut down gracefully: no new pages, in-flight
/// pages finish and commit within the grace period, leases are given back.
pub async fn run(service: Arc<Service>, stop: impl std::future::Future<Output = ()> + Send) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(service.config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", service.config.listen))?;
    let addr = listener.local_addr()?;
    serve_on(service, listener, addr, stop).await
}

async fn serve_on(
    service: Arc<Service>,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    stop: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let app = routes::router(service.clone());
    for sink in &service.config.sinks {
        service.host.store.register_sink(&sink.name())?;
    }
    let deliveries: Vec<_> =
        service.config.sinks.iter().map(|s| tokio::spawn(delivery::run(service.clone(), s.clone()))).collect();
    let driver = tokio::spawn(driver::run(service.clone()));
    // Content: one drain over every datasource's queue for the life of the process.
    let content_control = Arc::new(crate::extract::DrainControl::default());
    content_control.more_coming.store(true, std::sync::atomic::Ordering::Release);
    let content = (service.config.content_concurrency > 0).then(|| {
        let (service, control) = (service.clone(), content_control.clone());
        tokio::spawn(async move {
            // A store error ends one drain; the next starts after a pause, until shutdown.
            while !control.stop.load(std::sync::atomic::Ordering::Acquire) {
                let drained = crate::extract::drain_content(
                    service.clone(),
                    None,
                    service.config.content_concurrency,
                    control.clone(),
                )
                .await;
                if let Err(e) = drained {
                    tracing::warn!("content fetching: {e}; resuming in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            Ok::<_, HostError>(())
        })
    });
    service.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!(%addr, "serving");
    let scheme = if service.config.tls.is_some() { "https" } else { "http" };
    eprintln!("coco-host serve: listening on {scheme}://{addr} (public URL {})", service.config.public_url);
    let http = listener::serve(
        listener,
        app,
        service.config.http_limits,
        service.config.tls.clone(),
        service.shutdown.subscribe(),
    );
    let mut http = std::pin::pin!(async move {
        http.await;
        Ok::<(), std::io::Error>(())
    });
    let early = tokio::select! {
        r = &mut http => Some(r),
        () = stop => None,
    };
    service.ready.store(false, std::sync::atomic::Ordering::SeqCst);
    service.begin_shutdown();
    eprintln!("coco-host serve: shutting down (in-flight pages finish, no new ones start)");
    let served = match early {
        Some(r) => r,
        None => http.await,
    };
    content_control.stop.store(true, std::sync::atomic::Ordering::Release);
    if let Some(task) = content {
        match task.await {
            Ok(Err(e)) => tracing::warn!("content fetching stopped with an error: {e}"),
            Err(e) => tracing::warn!("the content task failed: {e}"),
            Ok(Ok(_)) => {}
        }
    }
    let driven = driver.await;
    for d in deliveries {
        let _ = d.await;
    }
    served.map_err(|e| anyhow::anyhow!("the HTTP server failed: {e}"))?;
    match driven {
        Ok(r) => r?,
        Err(e) => anyhow::bail!("the scheduler task failed: {e}"),
    }
    eprintln!("coco-host serve: stopped");
    Ok(())
}

/// SIGTERM or SIGINT.
pub async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
