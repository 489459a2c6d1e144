//! The `cohort-worker` process: one party's long-running worker.
//!
//! It serves three ports:
//!
//! - the **peer** port (mutual TLS; the federation's parties only), where a
//!   [`Router`](crate::transport::Router) hands each authenticated
//!   connection to the job its hello names;
//! - the **control** API ([`control`]; mutual TLS; only the configured
//!   controller), through which a controller submits, follows, cancels jobs
//!   and drains the worker;
//! - **metrics** ([`metrics`]; plain HTTP): `/metrics`, `/healthz`, `/readyz`.
//!
//! [`jobs`] owns admission, running and the durable record of results;
//! [`config`] the configuration file. Renewed certificates and trust
//! take effect without a restart ([`crate::transport::reload`]). The worker needs no Kubernetes
//! credentials: the operator (or `cohort run`) is its controller.

pub mod api;
pub mod audit;
pub mod config;
pub mod control;
pub mod jobs;
mod ledger;
pub mod listen;
pub mod metrics;
mod peers;
pub mod pool;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::transport::mesh::ProtocolOffer;
use crate::transport::reload::TlsWatcher;
use crate::transport::{Router, RouterLimits};
use config::{ConfigError, Loaded};
use control::ControlServer;
use jobs::{Context, Jobs};
use metrics::Metrics;
use peers::{PeerProber, PeerTable};

/// A running worker: its bound addresses and its tasks (stopped on drop).
pub struct Worker {
    pub peer_addr: SocketAddr,
    pub control_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub jobs: Arc<Jobs>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// The exit status of `cohort-worker` (and `cohort-dealer`) when a listen
/// address is taken: sysexits' `EX_TEMPFAIL`, so a launcher that picked
/// the port (`cohort run`) can tell this from a real failure and retry.
pub const EXIT_ADDRESS_IN_USE: u8 = 75;

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, ConfigError> {
    TcpListener::bind(addr).await.map_err(|source| ConfigError::Listen { what, addr: addr.into(), source })
}

impl Worker {
    /// Bind the three ports and start serving.
    pub async fn start(loaded: Loaded) -> Result<Worker, ConfigError> {
        let peer = bind("peer", &loaded.config.listen.peer).await?;
        let control = bind("control", &loaded.config.listen.control).await?;
        let metrics_listener = bind("metrics", &loaded.config.listen.metrics).await?;
        let local = |l: &TcpListener| {
            l.local_addr().map_err(|e| ConfigError::Invalid {
                path: "(listen)".into(),
                field: "listen".into(),
                reason: e.to_string(),
            })
        };
        let (peer_addr, control_addr, metrics_addr) = (local(&peer)?, local(&control)?, local(&metrics_listener)?);

        let identity = loaded.identity.clone();
        let peers: Vec<String> =
            loaded.config.parties.iter().map(|p| p.name.clone()).filter(|n| *n != loaded.config.party).collect();
        let offer = ProtocolOffer {
            name: loaded.protocol.as_str().into(),
            min_version: loaded.versions.0,
            max_version: loaded.versions.1,
        };
        let router =
            Router::spawn_answering_probes(peer, identity.clone(), peers, RouterLimits::default(), offer.clone());
        let metrics = Arc::new(Metrics::new(identity.clone()));
        let dropped = metrics.clone();
        router.on_dropped(Box::new(move |reason| dropped.peer_dropped(reason)));
        let max_request_bytes = loaded.config.limits.max_request_bytes;
        let max_control_connections = loaded.config.limits.max_control_connections;
        let max_metrics_connections = loaded.config.limits.max_metrics_connections;
        let controller = loaded.controller.clone();
        let versions = loaded.versions;
        let protocol = loaded.protocol;
        let watcher = {
            let (config, controller, dealer) =
                (loaded.config.clone(), loaded.controller.clone(), loaded.dealer.clone());
            let metrics = metrics.clone();
            TlsWatcher::new(
                identity.clone(),
                loaded.tls_digest,
                Box::new(move || config.read_tls(&controller, dealer.as_deref()).map_err(|e| e.to_string())),
                Box::new(move |result| metrics.tls_reloaded(result)),
            )
        };
        let reload_interval = loaded.config.tls.reload_interval;
        let peer_table = PeerTable::default();
        let prober = PeerProber {
            peers: loaded.config.parties.iter().filter(|p| p.name != loaded.config.party).cloned().collect(),
            identity: identity.clone(),
            offer,
            timeout: loaded.config.peer_probe.timeout,
            metrics: metrics.clone(),
            table: peer_table.clone(),
        };
        metrics.register_peers(prober.peers.iter().map(|p| p.name.as_str()));
        let probe_interval = loaded.config.peer_probe.interval;
        let mut loaded = loaded;
        let pool = match (loaded.store.take(), &loaded.config.pool) {
            (Some(store), Some(config)) => Some(pool::Pool::new(store, config, metrics.clone())),
            _ => None,
        };
        let ctx_pool_config = loaded.config.pool.clone();
        let ctx = Arc::new(Context { loaded, router, metrics: metrics.clone(), pool: pool.clone() });
        let jobs = Jobs::new(ctx.clone()).map_err(|e| ConfigError::Invalid {
            path: ctx.loaded.config.results_dir.clone().unwrap_or_default(),
            field: "resultsDir".into(),
            reason: format!("cannot open the job id ledger ({}): {e}", ledger::FILE_NAME),
        })?;

        let health = {
            let (identity, jobs, metrics) = (identity.clone(), jobs.clone(), metrics.clone());
            Arc::new(move || {
                control::health(
                    &identity.current(),
                    protocol,
                    versions,
                    &jobs,
                    metrics.cert_expires_in(),
                    peer_table.snapshot(),
                )
            })
        };
        let server = Arc::new(ControlServer {
            identity,
            controller,
            jobs: jobs.clone(),
            max_request_bytes,
            health,
            connections: listen::ConnectionCap::new("control", max_control_connections),
            bodies: ControlServer::body_readers(),
        });
        let metrics_cap = listen::ConnectionCap::new("metrics", max_metrics_connections);
        let mut tasks = vec![
            tokio::spawn(server.serve(control)),
            tokio::spawn(metrics::serve(metrics_listener, metrics, jobs.clone(), metrics_cap)),
            tokio::spawn(watcher.run(reload_interval)),
            tokio::spawn(prober.run(probe_interval)),
        ];
        if let (Some(pool), Some(config)) = (pool, ctx_pool_config) {
            tasks.push(tokio::spawn(pool.clone().expire_periodically()));
            tasks.push(tokio::spawn(pool.clone().follow_fills(ctx.clone(), ctx.router.watch_fills())));
            if config.keeps_watermarks() {
                tasks.push(tokio::spawn(pool.generate_in_background(ctx.clone(), config)));
            }
        }
        Ok(Worker { peer_addr, control_addr, metrics_addr, jobs, tasks })
    }
}

/// Resolves on SIGTERM or Ctrl-C: how both binaries learn to stop.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
