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
//! and in total) and expires on a timer of its own; a dropped connection
//! costs the dialer a retry, never the job.
//!
//! The port must be reachable from other organisations, so anyone can
//! open connections to it before authenticating. Such connections are
//! kept cheap and short-lived: a connection gets
//! [`RouterLimits::client_hello_timeout`] (2 s) to deliver its TLS
//! ClientHello, and only then takes one of the
//! [`RouterLimits::max_handshakes`] handshake slots; at most
//! [`RouterLimits::max_per_source`] unauthenticated connections are held
//! per source address, and at most [`RouterLimits::max_silent`] that sent
//! no ClientHello yet (the oldest is dropped for a new one). Dropped
//! connections are counted ([`Router::on_dropped`]) and logged at most
//! every [`DROP_LOG_EVERY`].
//!
//! A dialer whose certificate is refused (expired, not yet valid,
//! untrusted) or whose hello names another party than its certificate is
//! refused before its job is known: the refusal is handed to every
//! registered job (and kept as long as parked connections are) as
//! [`Routed::Refused`], and a job still waiting for that party to dial
//! fails with it at once.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{debug, info, warn};

use super::error::TransportError;
use super::frame::{JobId, Step};
use super::hello::{ORDER_AGREES, parse_order_query, status};
use super::mesh::{
    Accepted, AuthOutcome, OrderQuery, ProtocolOffer, Routed, answer_order, answer_probe, authenticate_started,
    client_hello,
};
use super::tls::SharedIdentity;

/// Dropped unauthenticated connections are logged at most this often (one
/// line with the counts since the last one).
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why the router dropped a connection before authenticating it (the
/// `reason` label of the worker's counter).
pub mod dropped {
    /// No TLS ClientHello within the deadline.
    pub const SILENT: &str = "silent";
    /// Too many unauthenticated connections from its source address.
    pub const SOURCE_CAP: &str = "source_cap";
    /// Evicted, still silent, to make room for a newer connection.
    pub const EVICTED: &str = "evicted";
    /// Sent a ClientHello, but no handshake slot came free in time.
    pub const BUSY: &str = "busy";
    /// Every reason, for metrics.
    pub const ALL: [&str; 4] = [SILENT, SOURCE_CAP, EVICTED, BUSY];
}

/// Told the reason (out of [`dropped::ALL`]) of every dropped
/// unauthenticated connection.
pub type OnDropped = Box<dyn Fn(&'static str) + Send + Sync>;

/// Bounds of a [`Router`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterLimits {
    /// Handshakes in progress at once (connections that sent their TLS
    /// ClientHello; silent ones do not count).
    pub max_handshakes: usize,
    /// Time a connection has, once it sent its ClientHello, to finish its
    /// TLS handshake and hello.
    pub handshake_timeout: Duration,
    /// Time a new connection has to deliver its TLS ClientHello.
    pub client_hello_timeout: Duration,
    /// Unauthenticated connections held at once from one source address.
    pub max_per_source: usize,
    /// Connections held at once that have not sent a ClientHello yet.
    pub max_silent: usize,
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
            client_hello_timeout: Duration::from_secs(2),
            max_per_source: 32,
            max_silent: 512,
            park_for: Duration::from_secs(10),
            max_parked: 256,
            max_parked_per_job: 32,
        }
    }
}

#[derive(Default)]
struct State {
    jobs: HashMap<JobId, mpsc::Sender<Routed>>,
    parked: HashMap<JobId, Vec<(Instant, Accepted)>>,
    /// Refusals of dialers, kept as long as parked connections, for jobs
    /// registered after them.
    refused: Vec<(Instant, TransportError)>,
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
        self.refused.retain(|(until, _)| *until > now);
    }
}

/// Unauthenticated connections: per source address, and those still
/// silent (no ClientHello), oldest first.
#[derive(Default)]
struct Gate {
    per_source: HashMap<IpAddr, usize>,
    silent: BTreeMap<u64, Arc<Notify>>,
    next: u64,
}

/// One unauthenticated connection's place in the [`Gate`]; released on drop.
struct Ticket {
    shared: Arc<Shared>,
    source: IpAddr,
    seq: u64,
    evicted: Arc<Notify>,
}

impl Ticket {
    /// The ClientHello arrived: no longer silent (cannot be evicted).
    fn spoke(&self) {
        self.shared.gate().silent.remove(&self.seq);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut gate = self.shared.gate();
        gate.silent.remove(&self.seq);
        if let Some(n) = gate.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                gate.per_source.remove(&self.source);
            }
        }
    }
}

/// Counts of dropped connections since the last log line.
struct DropLog {
    last: Option<Instant>,
    counts: BTreeMap<&'static str, u64>,
}

struct Shared {
    state: Mutex<State>,
    gate: Mutex<Gate>,
    drop_log: Mutex<DropLog>,
    on_dropped: Mutex<Option<OnDropped>>,
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

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admit a new connection from `source`, or say why not. When too many
    /// connections are silent, the oldest silent one is told to go.
    fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Ticket, &'static str> {
        let mut gate = self.gate();
        let held = gate.per_source.get(&source).copied().unwrap_or(0);
        if held >= self.limits.max_per_source.max(1) {
            return Err(dropped::SOURCE_CAP);
        }
        if gate.silent.len() >= self.limits.max_silent.max(1)
            && let Some((_, oldest)) = gate.silent.pop_first()
        {
            oldest.notify_one();
        }
        let seq = gate.next;
        gate.next += 1;
        let evicted = Arc::new(Notify::new());
        gate.silent.insert(seq, evicted.clone());
        *gate.per_source.entry(source).or_default() += 1;
        Ok(Ticket { shared: self.clone(), source, seq, evicted })
    }

    /// Count a dropped unauthenticated connection; log (rate-limited).
    fn dropped(&self, reason: &'static str, source: IpAddr) {
        if let Some(f) = self.on_dropped.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            f(reason);
        }
        let mut log = self.drop_log.lock().unwrap_or_else(|p| p.into_inner());
        *log.counts.entry(reason).or_default() += 1;
        let now = Instant::now();
        if log.last.is_some_and(|last| now.duration_since(last) < DROP_LOG_EVERY) {
            return;
        }
        let counts: Vec<String> = log.counts.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        warn!(
            latest_source = %source,
            dropped = %counts.join(", "),
            "dropped unauthenticated connections on the peer port (silent, or too many from one address; logged at most every 10 s)"
        );
        log.counts.clear();
        log.last = Some(now);
    }

    /// Answer an order query (see `hello`) with the registered job's answer.
    async fn ask_job_order(&self, accepted: Accepted, job: JobId, digest: [u8; 32]) {
        let within = self.limits.handshake_timeout;
        let (query, answer) = OrderQuery::new(accepted.party(), digest);
        let asked = self.state().jobs.get(&job).is_some_and(|tx| tx.try_send(Routed::OrderQuery(query)).is_ok());
        let (st, reason) = if !asked {
            (status::WRONG_JOB, "the job is not registered here".to_string())
        } else {
            match timeout(within, answer).await {
                Ok(Ok(Ok(()))) => (status::OK, ORDER_AGREES.to_string()),
                Ok(Ok(Err(disagreement))) => (status::REFUSED, disagreement),
                // Established already, or gone: it agreed, or cannot say.
                _ => (status::WRONG_JOB, "the job did not answer".to_string()),
            }
        };
        answer_order(accepted, st, reason, within).await;
    }

    /// Hand a refusal of a dialer to the jobs (see [`Routed::Refused`]):
    /// to `job` when its hello was read, else to every registered job; kept
    /// for jobs registered within `park_for`.
    fn refuse(&self, error: TransportError, job: Option<JobId>) {
        let mut state = self.state();
        let now = Instant::now();
        state.expire(now);
        match job {
            Some(job) => {
                if let Some(tx) = state.jobs.get(&job) {
                    let _ = tx.try_send(Routed::Refused(error));
                    return;
                }
            }
            None => {
                for tx in state.jobs.values() {
                    let _ = tx.try_send(Routed::Refused(error.clone()));
                }
            }
        }
        if state.refused.len() < self.limits.max_parked {
            state.refused.push((now + self.limits.park_for, error));
        }
    }

    /// Deliver an authenticated connection to its job, or park it.
    fn route(&self, accepted: Accepted) {
        let job = accepted.job();
        let mut state = self.state();
        if let Some(tx) = state.jobs.get(&job) {
            if let Err(e) = tx.try_send(Routed::Connection(accepted)) {
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
    expiry: JoinHandle<()>,
}

impl Drop for Router {
    fn drop(&mut self) {
        self.accept_loop.abort();
        self.expiry.abort();
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
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            gate: Mutex::new(Gate::default()),
            drop_log: Mutex::new(DropLog { last: None, counts: BTreeMap::new() }),
            on_dropped: Mutex::new(None),
            fills: Mutex::new(None),
            limits,
            probes,
        });
        let accept_loop = tokio::spawn(accept_loop(listener, identity, peers, shared.clone()));
        let expiry = tokio::spawn(expire_parked(Arc::downgrade(&shared)));
        Router { shared, accept_loop, expiry }
    }

    /// Be told the reason of every unauthenticated connection the router
    /// drops (a metric). Replaces an earlier callback.
    pub fn on_dropped(&self, f: OnDropped) {
        *self.shared.on_dropped.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// Connections parked now, for jobs not registered yet.
    pub fn parked(&self) -> usize {
        self.shared.state().parked_total()
    }

    /// Unauthenticated connections held now: `(all, silent)`.
    pub fn unauthenticated(&self) -> (usize, usize) {
        let gate = self.shared.gate();
        (gate.per_source.values().sum(), gate.silent.len())
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
        let (tx, rx) = mpsc::channel(self.shared.limits.max_parked_per_job.max(1) + 8);
        let now = Instant::now();
        state.expire(now);
        for (_, accepted) in state.parked.remove(&job).unwrap_or_default() {
            // Capacity exceeds the per-job parking bound: cannot fail.
            let _ = tx.try_send(Routed::Connection(accepted));
        }
        // The latest refusals first (the channel is bounded).
        for (_, refused) in state.refused.iter().rev().take(8) {
            let _ = tx.try_send(Routed::Refused(refused.clone()));
        }
        state.jobs.insert(job, tx);
        Ok(Registration { job, shared: self.shared.clone(), rx })
    }
}

/// A job's claim on the connections routed to it; see [`Router::register`].
pub struct Registration {
    job: JobId,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Routed>,
}

impl Registration {
    /// The routed connections, for
    /// [`Inbound::Routed`](super::mesh::InboundSource::Routed).
    pub fn connections(&mut self) -> &mut mpsc::Receiver<Routed> {
        &mut self.rx
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.state().jobs.remove(&self.job);
    }
}

/// Expire parked connections on a timer of their own (not only when
/// another connection arrives); ends with the router.
async fn expire_parked(shared: std::sync::Weak<Shared>) {
    let Some(every) =
        shared.upgrade().map(|s| (s.limits.park_for / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)))
    else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else { return };
        shared.state().expire(Instant::now());
    }
}

async fn accept_loop(listener: TcpListener, identity: SharedIdentity, peers: Vec<String>, shared: Arc<Shared>) {
    let handshakes = Arc::new(Semaphore::new(shared.limits.max_handshakes.max(1)));
    let peers: Arc<[String]> = peers.into();
    loop {
        let (tcp, source) = match listener.accept().await {
            Ok((tcp, addr)) => (tcp, addr.ip()),
            Err(e) => {
                // E.g. out of file descriptors: back off briefly.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let ticket = match shared.admit(source) {
            Ok(t) => t,
            Err(reason) => {
                drop(tcp);
                shared.dropped(reason, source);
                continue;
            }
        };
        let (identity, peers, shared, handshakes) =
            (identity.clone(), peers.clone(), shared.clone(), handshakes.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            // Silent connections wait here, holding no handshake slot.
            let evicted = ticket.evicted.clone();
            let start = tokio::select! {
                hello = timeout(shared.limits.client_hello_timeout, client_hello(tcp)) => match hello {
                    Ok(Ok(start)) => start,
                    Ok(Err(reason)) => return debug!(%source, %reason, "ignored an inbound connection"),
                    Err(_) => return shared.dropped(dropped::SILENT, source),
                },
                _ = evicted.notified() => return shared.dropped(dropped::EVICTED, source),
            };
            ticket.spoke();
            let deadline = Instant::now() + shared.limits.handshake_timeout;
            let Ok(Ok(permit)) = timeout_at(deadline, handshakes.acquire_owned()).await else {
                return shared.dropped(dropped::BUSY, source);
            };
            match authenticate_started(&identity.current(), &peers, start, deadline).await {
                AuthOutcome::Ready(accepted) => {
                    drop(ticket);
                    let within = shared.limits.handshake_timeout;
                    match (&shared.probes, parse_order_query(accepted.protocol())) {
                        (_, Some((job, digest))) if accepted.job() == JobId::PROBE => {
                            shared.ask_job_order(accepted, job, digest).await
                        }
                        (Some(offer), None) if accepted.job() == JobId::PROBE => {
                            answer_probe(accepted, offer, within).await
                        }
                        _ => shared.route(accepted),
                    }
                }
                AuthOutcome::Ignored(reason) => debug!(%reason, "ignored an inbound connection"),
                AuthOutcome::Failed(e, job) => {
                    info!(error = %e, "refused an inbound connection");
                    // Only a refusal that names one of our peers concerns
                    // a job (never an unidentified dialer's).
                    if e.peer.as_deref().is_some_and(|p| peers.iter().any(|q| q == p)) {
                        shared.refuse(e, job);
                    }
                }
            }
            drop(permit);
        });
    }
}
