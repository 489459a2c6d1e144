//! One peer port for many jobs.
//!
//! A worker runs many jobs over its lifetime, some at the same time, and
//! its peers dial one well-known port. The [`Router`] owns that port: it
//! accepts connections, authenticates them (mutual TLS 1.3 accepting only
//! the federation's parties, then the dialer's version hello, which names
//! the job), and hands each to the job it names. A job takes its
//! connections through a [`Registration`] and
//! [`Mesh::establish_from`](super::Mesh::establish_from) with
//! [`Inbound::Routed`](super::mesh::InboundSource::Routed), which answers the
//! hello exactly as a job with its own listener would.
//!
//! A peer may dial before this party has registered the job (its
//! controller submitted earlier): such connections are *parked* for a
//! short time and delivered on registration. Parking is bounded (per job
//! and in total) and expires; a dropped connection costs the dialer a
//! retry, never the job. Handshakes in progress are bounded too, so a flood
//! of idle connections cannot exhaust the worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info};

use super::error::TransportError;
use super::frame::{JobId, Step};
use super::mesh::{Accepted, AuthOutcome, ProtocolOffer, answer_probe, authenticate};
use super::tls::SharedIdentity;

/// Bounds of a [`Router`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterLimits {
    /// Handshakes in progress at once.
    pub max_handshakes: usize,
    /// Time a connection has to finish its TLS handshake and hello.
    pub handshake_timeout: Duration,
    /// How long a connection for a job not (yet) registered is kept.
    pub park_for: Duration,
    /// Parked connections in total, and per job.
    pub max_parked: usize,
    pub max_parked_per_job: usize,
}

impl Default for RouterLimits {
    fn default() -> Self {
        RouterLimits {
            max_handshakes: 64,
            handshake_timeout: Duration::from_secs(10),
            park_for: Duration::from_secs(10),
            max_parked: 256,
            max_parked_per_job: 32,
        }
    }
}

#[derive(Default)]
struct State {
    jobs: HashMap<JobId, mpsc::Sender<Accepted>>,
    parked: HashMap<JobId, Vec<(Instant, Accepted)>>,
}

impl State {
    fn parked_total(&self) -> usize {
        self.parked.values().map(Vec::len).sum()
    }

    fn expire(&mut self, now: Instant) {
        self.parked.retain(|_, conns| {
            conns.retain(|(until, _)| *until > now);
            !conns.is_empty()
        });
    }
}

struct Shared {
    state: Mutex<State>,
    /// Told `(session, party)` when a party first dials a pool generation
    /// session this worker has not registered ([`Router::watch_fills`]).
    fills: Mutex<Option<mpsc::Sender<(JobId, String)>>>,
    limits: RouterLimits,
    /// What probes ([`JobId::PROBE`]) are answered with; `None`: probes
    /// are routed like any job (and find none).
    probes: Option<ProtocolOffer>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across every early return, so a
        // poisoned lock (a panic elsewhere) is safe to keep using.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Deliver an authenticated connection to its job, or park it.
    fn route(&self, accepted: Accepted) {
        let job = accepted.job();
        let mut state = self.state();
        if let Some(tx) = state.jobs.get(&job) {
            if let Err(e) = tx.try_send(accepted) {
                debug!(%job, "dropped a connection for a job that is not taking connections");
                drop(e);
            }
            return;
        }
        let now = Instant::now();
        state.expire(now);
        let total = state.parked_total();
        let parked = state.parked.entry(job).or_default();
        if total >= self.limits.max_parked || parked.len() >= self.limits.max_parked_per_job {
            debug!(%job, party = accepted.party(), "parking is full; dropped a connection (the peer retries)");
            return;
        }
        debug!(%job, party = accepted.party(), "parked a connection for a job not registered yet");
        let first = parked.is_empty();
        let party = accepted.party().to_string();
        parked.push((now + self.limits.park_for, accepted));
        drop(state);
        if first && job.is_fill_session() {
            let fills = self.fills.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(tx) = fills.as_ref() {
                // Full: a fill is being started already; the peer retries.
                let _ = tx.try_send((job, party));
            }
        }
    }
}

/// Accepts and authenticates peer connections on one port and routes them
/// to jobs by job id. Dropping the router stops accepting.
pub struct Router {
    shared: Arc<Shared>,
    accept_loop: JoinHandle<()>,
}

impl Drop for Router {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl Router {
    /// Serve `listener`, accepting connections from the `peers` principals
    /// (authenticated with `identity`, read anew for every handshake).
    pub fn spawn(
        listener: TcpListener,
        identity: impl Into<SharedIdentity>,
        peers: Vec<String>,
        limits: RouterLimits,
    ) -> Router {
        Router::start(listener, identity.into(), peers, limits, None)
    }

    /// Like [`Router::spawn`], also answering peer probes
    /// ([`probe`](super::mesh::probe)) with `offer`.
    pub fn spawn_answering_probes(
        listener: TcpListener,
        identity: impl Into<SharedIdentity>,
        peers: Vec<String>,
        limits: RouterLimits,
        offer: ProtocolOffer,
    ) -> Router {
        Router::start(listener, identity.into(), peers, limits, Some(offer))
    }

    fn start(
        listener: TcpListener,
        identity: SharedIdentity,
        peers: Vec<String>,
        limits: RouterLimits,
        probes: Option<ProtocolOffer>,
    ) -> Router {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), fills: Mutex::new(None), limits, probes });
        let accept_loop = tokio::spawn(accept_loop(listener, identity, peers, shared.clone()));
        Router { shared, accept_loop }
    }

    /// Hear of pool generation sessions ([`JobId::is_fill_session`]) that
    /// a peer dials before this worker registered them: `(session, the
    /// dialing party)`, once per session (while its connections are
    /// parked). Replaces an earlier watcher.
    pub fn watch_fills(&self) -> mpsc::Receiver<(JobId, String)> {
        let (tx, rx) = mpsc::channel(4);
        *self.shared.fills.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(tx);
        rx
    }

    /// Take the connections for `job` (including any parked ones) until the
    /// registration is dropped. A job is registered at most once at a time.
    pub fn register(&self, job: JobId) -> Result<Registration, TransportError> {
        let mut state = self.shared.state();
        if state.jobs.contains_key(&job) {
            return Err(TransportError::config(Step::Handshake, format!("job {job} is already taking connections")));
        }
        let (tx, rx) = mpsc::channel(self.shared.limits.max_parked_per_job.max(1));
        let now = Instant::now();
        for (until, accepted) in state.parked.remove(&job).unwrap_or_default() {
            if until > now {
                // Capacity equals the per-job parking bound: cannot fail.
                let _ = tx.try_send(accepted);
            }
        }
        state.jobs.insert(job, tx);
        Ok(Registration { job, shared: self.shared.clone(), rx })
    }
}

/// A job's claim on the connections routed to it; see [`Router::register`].
pub struct Registration {
    job: JobId,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Accepted>,
}

impl Registration {
    /// The routed connections, for
    /// [`Inbound::Routed`](super::mesh::InboundSource::Routed).
    pub fn connections(&mut self) -> &mut mpsc::Receiver<Accepted> {
        &mut self.rx
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.state().jobs.remove(&self.job);
    }
}

async fn accept_loop(listener: TcpListener, identity: SharedIdentity, peers: Vec<String>, shared: Arc<Shared>) {
    let handshakes = Arc::new(Semaphore::new(shared.limits.max_handshakes.max(1)));
    let peers: Arc<[String]> = peers.into();
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // E.g. out of file descriptors: back off briefly.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let (identity, peers, shared) = (identity.current(), peers.clone(), shared.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + shared.limits.handshake_timeout;
            match authenticate(&identity, &peers, tcp, deadline).await {
                AuthOutcome::Ready(accepted) => match &shared.probes {
                    Some(offer) if accepted.job() == JobId::PROBE => {
                        answer_probe(accepted, offer, shared.limits.handshake_timeout).await
                    }
                    _ => shared.route(accepted),
                },
                AuthOutcome::Ignored(reason) => debug!(%reason, "ignored an inbound connection"),
                AuthOutcome::Failed(e) => info!(error = %e, "refused an inbound connection"),
            }
            drop(permit);
        });
    }
}
