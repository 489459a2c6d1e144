//! Peer probes: is each peer's worker up, does it accept us, and how long
//! does reaching it take?
//!
//! Every `peerProbe.interval` the worker opens a connection to each peer's
//! peer port exactly as a job would — TCP, mutual TLS with the current
//! certificates, the version hello — but for the reserved probe job id,
//! which the peer's router answers at once with its version range
//! ([`crate::transport::mesh::probe`]). The result feeds
//! `cohort_worker_peer_up{peer}`, `cohort_worker_peer_connect_seconds{peer}`
//! and the health document, and a change of state is logged once with the
//! reason a job would fail with (an expired certificate names whose).
//! Between jobs, this is how a party learns that a peer is down or has
//! stopped trusting it before a job fails on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use super::api::PeerHealth;
use super::config::PartyEndpoint;
use super::metrics::Metrics;
use crate::transport::mesh::{ProtocolOffer, probe};
use crate::transport::{SharedIdentity, Step, TransportError, TransportErrorKind};

/// The last probe of every peer, shared with the health document.
#[derive(Clone, Default)]
pub(crate) struct PeerTable(Arc<Mutex<Vec<PeerHealth>>>);

impl PeerTable {
    pub(crate) fn snapshot(&self) -> Vec<PeerHealth> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Record `now` for its party; returns the previous record.
    fn record(&self, now: PeerHealth) -> Option<PeerHealth> {
        let mut table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match table.iter_mut().find(|p| p.party == now.party) {
            Some(slot) => Some(std::mem::replace(slot, now)),
            None => {
                table.push(now);
                None
            }
        }
    }
}

/// Probes the peers of one worker.
pub(crate) struct PeerProber {
    pub(crate) peers: Vec<PartyEndpoint>,
    pub(crate) identity: SharedIdentity,
    pub(crate) offer: ProtocolOffer,
    pub(crate) timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) table: PeerTable,
}

impl PeerProber {
    /// Probe every `interval`, forever (until the task is dropped).
    pub(crate) async fn run(self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first probe waits one interval: peers starting together are
        // not reported down for having started a moment later.
        tick.tick().await;
        loop {
            tick.tick().await;
            self.probe_all().await;
        }
    }

    async fn probe_all(&self) {
        // Concurrently: a slow peer does not delay the others.
        let probes = self.peers.iter().map(|p| self.probe_one(p));
        for health in futures::future::join_all(probes).await {
            self.metrics.peer_probed(&health);
            let before = self.table.record(health.clone());
            let was_up = before.as_ref().map(|b| b.up);
            match (was_up, health.up) {
                (Some(true), true) => {}
                (_, true) => info!(peer = %health.party, connect_seconds = health.connect_seconds, "peer is reachable"),
                (Some(false), false) => {}
                (_, false) => {
                    warn!(peer = %health.party, error = health.error.as_deref().unwrap_or(""), "peer is unreachable")
                }
            }
        }
    }

    async fn probe_one(&self, peer: &PartyEndpoint) -> PeerHealth {
        let result = match super::jobs::resolve(&peer.endpoint).await {
            Ok(addr) => probe(&self.identity.current(), &peer.name, addr, &self.offer, self.timeout).await,
            Err(reason) => Err(TransportError::new(
                Some(&peer.name),
                Step::Handshake,
                TransportErrorKind::Config(format!("cannot resolve its endpoint {}: {reason}", peer.endpoint)),
            )),
        };
        match result {
            Ok(p) => PeerHealth {
                party: peer.name.clone(),
                up: true,
                connect_seconds: Some(p.elapsed.as_secs_f64()),
                min_version: Some(p.min_version),
                max_version: Some(p.max_version),
                error: None,
            },
            Err(e) => PeerHealth {
                party: peer.name.clone(),
                up: false,
                connect_seconds: None,
                min_version: None,
                max_version: None,
                error: Some(e.to_string()),
            },
        }
    }
}
