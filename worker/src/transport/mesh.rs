//! The full mesh of mutually authenticated TLS connections for one job.
//!
//! This module owns connection establishment ([`Mesh::establish`]: dial the
//! lower-indexed parties, accept the higher-indexed ones, TLS 1.3 with
//! identity checks, then the version hello), and the per-peer machinery
//! afterwards:
//!
//! - a **reader task** per peer reads frames, checks every header before
//!   reading the body (magic, version, job, step, size), reads the bodies of
//!   a message's fragments straight into one buffer, and pushes complete
//!   messages into a bounded queue; it stops after the first failure
//!   (disconnect, malformed or oversized frame, TLS error), which it queues
//!   last. Its memory is bounded by a budget of `queue_frames` frames not yet
//!   taken by `recv` (a single message may exceed the budget, up to
//!   `max_message_bytes`);
//! - a **writer task** per peer takes whole messages from a bounded queue
//!   (`queue_frames` frames), splits them into frames of at most
//!   `max_frame_bytes`, writes them through a 256 KiB buffer and flushes
//!   once per message;
//! - [`Mesh::recv`] takes the next message, checks its step and enforces the
//!   per-round timeout. A failure is sticky: every later `recv` from that
//!   peer reports it again;
//! - **blame**: every peer's abort is posted where any receive can see it.
//!   A timed-out receive tells the peers at once, then follows their aborts
//!   to the party at fault (a peer that was itself waiting is not it); a
//!   timer that fired over a second late (this process was stopped or
//!   starved) first reads what arrived meanwhile and, if nothing explains
//!   the wait, blames no peer ([`TransportErrorKind::Stalled`]);
//! - **party order**: a job behind a [`Router`](super::Router) asks the
//!   parties it waits for whether they list the parties in its order
//!   (order queries, see `hello`), since two parties that disagree would
//!   each wait for the other to dial.
//!
//! Every error names the peer and the step. Payload bytes never appear in
//! an error or a log line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tokio_rustls::server::StartHandshake;
use tokio_rustls::{LazyConfigAcceptor, TlsConnector, TlsStream};
use tracing::{debug, info};

use super::certs::{truncate, validate_name};
use super::error::{TransportError, TransportErrorKind};
use super::frame::{FrameHeader, HEADER_LEN, JobId, MAX_ABORT_REASON, Step, frame_count};
use super::hello::{Hello, Reply, order_digest, order_query, read_hello, read_reply, status, write_all};
use super::tls::{ReportSlot, TlsIdentity};

/// Capacity of the per-peer write buffer.
const WRITE_BUFFER: usize = 256 * 1024;
/// Longest wait for a graceful close (flush + close_notify) per mesh.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Longest extra wait, after a round timed out or a peer's connection
/// failed, for what the peers already sent (their message, or an abort
/// naming the party they blame) before naming a peer.
const BLAME_GRACE: Duration = Duration::from_secs(1);
/// How long a job behind a router waits for a peer to dial before asking
/// it whether they agree on the party order (then twice as long each time,
/// up to [`ORDER_ASK_MAX`]).
const ORDER_ASK_AFTER: Duration = Duration::from_millis(500);
const ORDER_ASK_MAX: Duration = Duration::from_secs(4);
/// A timer firing this late means this process was not running (stopped,
/// or starved of CPU): the wait was ours, not the peer's.
const CLOCK_JUMP: Duration = Duration::from_secs(1);

/// Aborts the peers sent, in arrival order, as soon as a reader reads them
/// (even while the job waits on another peer).
#[derive(Default)]
struct AbortBoard {
    aborts: Mutex<Vec<(usize, String)>>,
    notify: tokio::sync::Notify,
}

impl AbortBoard {
    fn post(&self, from: usize, reason: String) {
        match self.aborts.lock() {
            Ok(mut g) => g.push((from, reason)),
            Err(p) => p.into_inner().push((from, reason)),
        }
        self.notify.notify_waiters();
    }

    fn all(&self) -> Vec<(usize, String)> {
        match self.aborts.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// The party an abort reason blames: the last `party NAME,` in it (an
/// error names its party so; nested aborts end with the root cause)
/// naming a party of this job.
fn blamed_party<'a>(reason: &str, names: &'a [String]) -> Option<&'a str> {
    let mut best: Option<(usize, &'a str)> = None;
    for name in names {
        let pattern = format!("party {name},");
        if let Some(at) = reason.rfind(&pattern)
            && best.is_none_or(|(b, _)| at > b)
        {
            best = Some((at, name.as_str()));
        }
    }
    best.map(|(_, n)| n)
}

/// A party's name and network address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// Party name, as in its certificate's URI SAN.
    pub name: String,
    /// Where its worker listens.
    pub addr: SocketAddr,
}

/// The protocol this party runs and the versions it supports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolOffer {
    /// Protocol name (must be identical at every party), 1..=255 bytes.
    pub name: String,
    /// Lowest supported version.
    pub min_version: u32,
    /// Highest supported version.
    pub max_version: u32,
}

/// Size limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame payload sent or accepted (default 4 MiB). Larger
    /// messages are split into several frames.
    pub max_frame_bytes: usize,
    /// Largest message sent or accepted (default 512 MiB).
    pub max_message_bytes: usize,
    /// Frames queued per peer and direction (default 64).
    pub queue_frames: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_frame_bytes: 4 * 1024 * 1024, max_message_bytes: 512 * 1024 * 1024, queue_frames: 64 }
    }
}

/// Time limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Bound on establishing the whole mesh (default 30 s).
    pub connect: Duration,
    /// Bound on receiving one message, or on waiting for send queue space
    /// (default 30 s).
    pub round: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(30), round: Duration::from_secs(30) }
    }
}

/// Everything needed to establish one party's side of the mesh.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Federation name (part of every party URI).
    pub federation: String,
    /// This party's index into `parties`.
    pub self_index: usize,
    /// All parties including this one, in job order (the same at every party).
    pub parties: Vec<PeerAddr>,
    /// This party's certificate, key and trusted CAs.
    pub identity: Arc<TlsIdentity>,
    /// Protocol name and supported versions.
    pub protocol: ProtocolOffer,
    /// Size limits.
    pub limits: Limits,
    /// Time limits.
    pub timeouts: Timeouts,
}

/// One complete message as delivered by a reader task. It holds permits of
/// the peer's inbound frame budget until `recv` takes it.
struct Message {
    step: Step,
    body: Vec<u8>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// An item for a writer task.
enum Outgoing {
    Message {
        step: Step,
        /// Shared, so that one broadcast payload is never copied per peer.
        payload: Arc<Vec<u8>>,
        _permit: OwnedSemaphorePermit,
    },
    /// Raw bytes for fault-injection tests.
    Raw(Vec<u8>),
}

/// Receive-side state of one peer.
struct Inbound {
    rx: mpsc::Receiver<Result<Message, TransportErrorKind>>,
    /// Sticky failure: reported by every later `recv`.
    failed: Option<TransportError>,
}

/// The connection to one peer.
struct Link {
    out: Option<mpsc::Sender<Outgoing>>,
    permits: Arc<Semaphore>,
    writer_failure: Arc<Mutex<Option<TransportErrorKind>>>,
    inbound: tokio::sync::Mutex<Inbound>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    writer: Option<JoinHandle<()>>,
    reader: Option<JoinHandle<()>>,
    /// Expected size of an upcoming message, shared with the reader task.
    hint: Arc<Mutex<Option<(Step, usize)>>>,
    /// IANA name of the negotiated TLS cipher suite.
    suite: Option<&'static str>,
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(h) = &self.writer {
            h.abort();
        }
        if let Some(h) = &self.reader {
            h.abort();
        }
    }
}

impl Link {
    fn writer_failure(&self) -> Option<TransportErrorKind> {
        match self.writer_failure.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// The established mesh of one job: one TLS connection to every other party.
///
/// `Send + Sync`; all methods take `&self`, so sends and receives to and from
/// different peers can run concurrently. Dropping the mesh aborts its tasks
/// and closes every socket; [`Mesh::close`] first flushes queued messages.
pub struct Mesh {
    job: JobId,
    self_index: usize,
    names: Vec<String>,
    version: u32,
    limits: Limits,
    timeouts: Timeouts,
    links: Vec<Option<Link>>,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    aborts: Arc<AbortBoard>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("job", &self.job.to_string())
            .field("self_index", &self.self_index)
            .field("parties", &self.names)
            .field("protocol_version", &self.version)
            .finish_non_exhaustive()
    }
}

fn validate(cfg: &MeshConfig) -> Result<(), TransportError> {
    let bad = |m: String| Err(TransportError::config(Step::Handshake, m));
    let n = cfg.parties.len();
    if n == 0 || cfg.self_index >= n {
        return bad(format!("self_index {} is not an index into the {n} parties", cfg.self_index));
    }
    if let Err(m) = validate_name("federation", &cfg.federation) {
        return bad(m);
    }
    for (i, p) in cfg.parties.iter().enumerate() {
        if let Err(m) = validate_name("party", &p.name) {
            return bad(m);
        }
        if cfg.parties[..i].iter().any(|q| q.name == p.name) {
            return bad(format!("party {} is listed twice", p.name));
        }
    }
    let me = &cfg.parties[cfg.self_index].name;
    if cfg.identity.federation() != cfg.federation || cfg.identity.party() != me {
        return bad(format!(
            "the TLS identity is for party {} of federation {}, but this is party {me} of federation {}",
            cfg.identity.party(),
            cfg.identity.federation(),
            cfg.federation
        ));
    }
    let p = &cfg.protocol;
    if p.name.is_empty() || p.name.len() > 255 {
        return bad("the protocol name must be 1 to 255 bytes".into());
    }
    if p.min_version > p.max_version {
        return bad(format!("empty protocol version range {}..={}", p.min_version, p.max_version));
    }
    let l = &cfg.limits;
    if l.max_frame_bytes == 0 || l.max_frame_bytes as u64 > u32::MAX as u64 {
        return bad("max_frame_bytes must be between 1 and 4 GiB - 1".into());
    }
    if l.max_message_bytes == 0 {
        return bad("max_message_bytes must be at least 1".into());
    }
    if l.queue_frames == 0 || l.queue_frames > 65_536 {
        return bad("queue_frames must be between 1 and 65536".into());
    }
    if cfg.timeouts.connect.is_zero() || cfg.timeouts.round.is_zero() {
        return bad("timeouts must be non-zero".into());
    }
    Ok(())
}

/// What establishment needs, shared with the dial and accept tasks.
struct Ctx {
    identity: Arc<TlsIdentity>,
    names: Vec<String>,
    me: usize,
    job: JobId,
    protocol: ProtocolOffer,
}

impl Ctx {
    fn inbound_names(&self) -> Vec<String> {
        self.names[self.me + 1..].to_vec()
    }

    /// Take an authenticated connection: it must come from a party that, in
    /// this job's party order, dials us.
    fn attribute(&self, accepted: Accepted) -> Result<(usize, Box<TlsStream<TcpStream>>, Hello), TransportError> {
        match self.names.iter().position(|n| *n == accepted.principal) {
            Some(index) if index > self.me => Ok((index, accepted.stream, accepted.hello)),
            Some(_) => Err(handshake_err(
                &accepted.principal,
                TransportErrorKind::Handshake(
                    "it dialed us, but in this job's party order we dial it: the parties disagree on the party list"
                        .into(),
                ),
            )),
            None => Err(handshake_err(
                &accepted.principal,
                TransportErrorKind::Handshake("it is not a party of this job".into()),
            )),
        }
    }
}

fn handshake_err(peer: &str, kind: TransportErrorKind) -> TransportError {
    TransportError::new(Some(peer), Step::Handshake, kind)
}

type Established = (usize, TlsStream<TcpStream>, u32);

/// Outcome of one failed dial attempt.
enum Attempt {
    /// Worth retrying until the deadline (connection refused, reset, EOF
    /// before any TLS alert).
    Retry(TransportErrorKind),
    /// Final (certificate refused, version mismatch, wrong job, ...).
    Fatal(TransportErrorKind),
}

fn take_report(report: &ReportSlot) -> (Option<String>, Option<super::error::TlsFailure>) {
    let mut g = match report.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    (g.claimed.clone(), g.failure.take())
}

/// Classify a failure while dialing: a verifier report or a TLS alert is
/// final; a plain disconnect or I/O error is retried.
fn classify_dial(kind: TransportErrorKind, report: &ReportSlot) -> Attempt {
    if let (_, Some(failure)) = take_report(report) {
        return Attempt::Fatal(TransportErrorKind::Tls(failure));
    }
    match kind {
        TransportErrorKind::Disconnected | TransportErrorKind::Io(_) => Attempt::Retry(kind),
        other => Attempt::Fatal(other),
    }
}

async fn dial_once(ctx: &Ctx, j: usize, addr: SocketAddr) -> Result<Established, Attempt> {
    let name = &ctx.names[j];
    let tcp = TcpStream::connect(addr).await.map_err(|e| Attempt::Retry(TransportErrorKind::from_io(e)))?;
    let _ = tcp.set_nodelay(true);
    let report = ReportSlot::default();
    let config = ctx.identity.client_config(name, report.clone()).map_err(|e| Attempt::Fatal(e.kind))?;
    let mut tls = TlsConnector::from(config)
        .connect(rustls::pki_types::ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| classify_dial(TransportErrorKind::from_io(e), &report))?;
    let hello = Hello {
        job: ctx.job,
        party: ctx.names[ctx.me].clone(),
        protocol: ctx.protocol.name.clone(),
        min_version: ctx.protocol.min_version,
        max_version: ctx.protocol.max_version,
    };
    write_all(&mut tls, &hello.encode()).await.map_err(|k| classify_dial(k, &report))?;
    // In TLS 1.3 the acceptor checks our certificate after our side of the
    // handshake is done: a refusal arrives here, as an alert.
    let reply = read_reply(&mut tls).await.map_err(|k| classify_dial(k, &report))?;
    let p = &ctx.protocol;
    let fatal = |k| Err(Attempt::Fatal(k));
    match reply.status {
        status::OK => {
            if reply.version < p.min_version || reply.version > p.max_version {
                return fatal(TransportErrorKind::Malformed(format!(
                    "version hello: the peer chose version {} outside our range {}..={}",
                    reply.version, p.min_version, p.max_version
                )));
            }
            Ok((j, TlsStream::Client(tls), reply.version))
        }
        status::WRONG_JOB => fatal(TransportErrorKind::WrongJob),
        status::PROTOCOL_MISMATCH => {
            fatal(TransportErrorKind::ProtocolMismatch { ours: p.name.clone(), theirs: reply.protocol })
        }
        status::VERSION_MISMATCH => fatal(TransportErrorKind::VersionMismatch {
            our_min: p.min_version,
            our_max: p.max_version,
            their_min: reply.min_version,
            their_max: reply.max_version,
        }),
        _ => fatal(TransportErrorKind::Handshake(format!("the peer refused our hello: {}", reply.reason))),
    }
}

/// What a peer probe measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// From the TCP connect to the hello reply: what a job pays to reach
    /// this peer (TCP, a TLS 1.3 handshake, the hello: about three round
    /// trips).
    pub elapsed: Duration,
    /// The protocol versions the peer offers.
    pub min_version: u32,
    pub max_version: u32,
}

/// Check that `peer` at `addr` is up and accepts us: connect, mutual TLS,
/// and a hello for [`JobId::PROBE`], which its router answers at once
/// (see [`answer_probe`]). Fails with the reason a job would fail with (a
/// refused or expired certificate names whose), never retries.
pub async fn probe(
    identity: &TlsIdentity,
    peer: &str,
    addr: SocketAddr,
    offer: &ProtocolOffer,
    within: Duration,
) -> Result<Probe, TransportError> {
    let start = Instant::now();
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.map_err(TransportErrorKind::from_io)?;
        let _ = tcp.set_nodelay(true);
        let report = ReportSlot::default();
        let config = identity.client_config(peer, report.clone()).map_err(|e| e.kind)?;
        let unwrap = |a: Attempt| match a {
            Attempt::Retry(k) | Attempt::Fatal(k) => k,
        };
        let mut tls = TlsConnector::from(config)
            .connect(rustls::pki_types::ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map_err(|e| unwrap(classify_dial(TransportErrorKind::from_io(e), &report)))?;
        let hello = Hello {
            job: JobId::PROBE,
            party: identity.party().to_string(),
            protocol: offer.name.clone(),
            min_version: offer.min_version,
            max_version: offer.max_version,
        };
        write_all(&mut tls, &hello.encode()).await.map_err(|k| unwrap(classify_dial(k, &report)))?;
        let reply = read_reply(&mut tls).await.map_err(|k| unwrap(classify_dial(k, &report)))?;
        let _ = tls.shutdown().await;
        if reply.status != status::OK {
            return Err(TransportErrorKind::Handshake(format!("the peer refused the probe: {}", reply.reason)));
        }
        Ok(Probe { elapsed: start.elapsed(), min_version: reply.min_version, max_version: reply.max_version })
    };
    match timeout(within, attempt).await {
        Ok(result) => result.map_err(|k| handshake_err(peer, k)),
        Err(_) => Err(handshake_err(peer, TransportErrorKind::Timeout { after: within, waiting_for: "a probe reply" })),
    }
}

/// Answer a probe ([`JobId::PROBE`]): our protocol and versions, then
/// close. Best effort: a probe that goes away early is no one's concern.
pub async fn answer_probe(accepted: Accepted, offer: &ProtocolOffer, within: Duration) {
    let mut stream = accepted.stream;
    let reply = Reply {
        status: status::OK,
        version: 0,
        min_version: offer.min_version,
        max_version: offer.max_version,
        protocol: offer.name.clone(),
        reason: String::new(),
    };
    let _ = timeout(within, async {
        write_all(&mut *stream, &reply.encode()).await.ok();
        stream.shutdown().await.ok();
    })
    .await;
}

/// Answer an order query (status and reason), then close. Best effort.
pub(crate) async fn answer_order(accepted: Accepted, st: u8, reason: String, within: Duration) {
    let mut stream = accepted.stream;
    let reply =
        Reply { status: st, version: 0, min_version: 0, max_version: 0, protocol: "cohort-order".into(), reason };
    let _ = timeout(within, async {
        write_all(&mut *stream, &reply.encode()).await.ok();
        stream.shutdown().await.ok();
    })
    .await;
}

/// Ask party `j` at `addr` whether its job lists the parties in our order
/// (an order query, see `hello`): `Some(reason)` when it says they differ;
/// `None` when they agree, it does not know the job (yet), cannot tell
/// (an older router), or could not be asked (the dial reports that).
async fn ask_order(ctx: &Ctx, j: usize, addr: SocketAddr) -> Option<String> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let _ = tcp.set_nodelay(true);
    let config = ctx.identity.client_config(&ctx.names[j], ReportSlot::default()).ok()?;
    let mut tls = TlsConnector::from(config)
        .connect(rustls::pki_types::ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .ok()?;
    let hello = Hello {
        job: JobId::PROBE,
        party: ctx.names[ctx.me].clone(),
        protocol: order_query(ctx.job, &order_digest(&ctx.names)),
        min_version: ctx.protocol.min_version,
        max_version: ctx.protocol.max_version,
    };
    write_all(&mut tls, &hello.encode()).await.ok()?;
    let reply = read_reply(&mut tls).await.ok()?;
    let _ = tls.shutdown().await;
    (reply.status == status::REFUSED).then_some(reply.reason)
}

/// Dial party `j` until connected, refused, or the deadline passes.
async fn dial(
    ctx: Arc<Ctx>,
    j: usize,
    addr: SocketAddr,
    deadline: Instant,
    connect_timeout: Duration,
) -> Result<Established, TransportError> {
    let name = ctx.names[j].clone();
    let mut backoff = Duration::from_millis(20);
    loop {
        match timeout_at(deadline, dial_once(&ctx, j, addr)).await {
            Ok(Ok(est)) => return Ok(est),
            Ok(Err(Attempt::Fatal(k))) => return Err(handshake_err(&name, k)),
            Ok(Err(Attempt::Retry(k))) => {
                debug!(peer = %name, error = %k, "dial attempt failed; retrying");
                sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Err(_) => {
                return Err(handshake_err(
                    &name,
                    TransportErrorKind::Timeout {
                        after: connect_timeout,
                        waiting_for: "the connection to be established",
                    },
                ));
            }
        }
    }
}

/// An inbound connection that passed mutual TLS authentication and whose
/// version hello has been read, but not yet answered. Produced by
/// [`authenticate`]; a [`Router`](super::Router) hands it to the job it
/// names.
pub struct Accepted {
    principal: String,
    stream: Box<TlsStream<TcpStream>>,
    hello: Hello,
}

impl Accepted {
    /// The job the peer's hello names (not yet checked against anything).
    pub fn job(&self) -> JobId {
        self.hello.job
    }

    /// The party its certificate authenticates.
    pub fn party(&self) -> &str {
        &self.principal
    }

    /// The protocol its hello names.
    pub(crate) fn protocol(&self) -> &str {
        &self.hello.protocol
    }
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted").field("party", &self.principal).field("job", &self.hello.job.to_string()).finish()
    }
}

/// Outcome of one inbound connection.
pub enum AuthOutcome {
    /// Authenticated as one of the accepted principals; its hello was read.
    Ready(Accepted),
    /// Dropped without affecting establishment (e.g. a connection closed
    /// before the TLS handshake: a port scan, or a stale dial).
    Ignored(String),
    /// The peer is refused (certificate refused, garbage hello, a hello
    /// naming another party than its certificate, ...): the error names the
    /// party the certificate claimed when it claimed one, and the job when
    /// the hello was read.
    Failed(TransportError, Option<JobId>),
}

/// Authenticate one inbound TCP connection: a TLS 1.3 handshake that
/// accepts only the `accepted` principals (each through the CAs trusted for
/// it), then read the dialer's hello. Nothing is answered yet, unless the
/// hello names another party than the certificate (refused at once).
pub async fn authenticate(
    identity: &TlsIdentity,
    accepted: &[String],
    tcp: TcpStream,
    deadline: Instant,
) -> AuthOutcome {
    let _ = tcp.set_nodelay(true);
    match timeout_at(deadline, client_hello(tcp)).await {
        Err(_) => AuthOutcome::Ignored("no TLS ClientHello in time".into()),
        Ok(Err(reason)) => AuthOutcome::Ignored(reason),
        Ok(Ok(start)) => authenticate_started(identity, accepted, start, deadline).await,
    }
}

/// Read a connection's TLS ClientHello, and nothing more: the cheap first
/// part of an inbound handshake, which a [`Router`](super::Router) bounds
/// by a short deadline of its own before the connection takes a handshake
/// slot.
pub async fn client_hello(tcp: TcpStream) -> Result<StartHandshake<TcpStream>, String> {
    LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
        .await
        .map_err(|e| format!("inbound connection failed before a TLS ClientHello: {}", TransportErrorKind::from_io(e)))
}

/// [`authenticate`] for a connection whose ClientHello was read
/// ([`client_hello`]).
pub async fn authenticate_started(
    identity: &TlsIdentity,
    accepted: &[String],
    start: StartHandshake<TcpStream>,
    deadline: Instant,
) -> AuthOutcome {
    let label = accepted.join(" or ");
    let report = ReportSlot::default();
    let config = match identity.server_config(accepted, report.clone()) {
        Ok(c) => c,
        Err(e) => return AuthOutcome::Failed(e, None),
    };
    let mut tls = match timeout_at(deadline, start.into_stream(config)).await {
        Err(_) => return AuthOutcome::Ignored("TLS handshake did not finish in time".into()),
        Ok(Err(e)) => {
            let (claimed, failure) = take_report(&report);
            let peer = claimed.filter(|c| accepted.contains(c)).unwrap_or(label);
            if let Some(f) = failure {
                return AuthOutcome::Failed(handshake_err(&peer, TransportErrorKind::Tls(f)), None);
            }
            return match TransportErrorKind::from_io(e) {
                k @ TransportErrorKind::Tls(_) => AuthOutcome::Failed(handshake_err(&peer, k), None),
                other => AuthOutcome::Ignored(format!("inbound connection failed before authentication: {other}")),
            };
        }
        Ok(Ok(s)) => s,
    };
    let (claimed, _) = take_report(&report);
    let Some(principal) = claimed.filter(|c| accepted.contains(c)) else {
        // The verifier accepts only the listed principals; unreachable in
        // practice, but never trust a connection we cannot attribute.
        return AuthOutcome::Failed(
            handshake_err(
                &label,
                TransportErrorKind::Handshake("could not attribute an authenticated connection".into()),
            ),
            None,
        );
    };
    let hello = match timeout_at(deadline, read_hello(&mut tls)).await {
        Err(_) => return AuthOutcome::Ignored(format!("party {principal} sent no hello in time")),
        Ok(Err(TransportErrorKind::Disconnected)) => {
            return AuthOutcome::Ignored(format!("party {principal} disconnected before its hello"));
        }
        Ok(Err(k)) => return AuthOutcome::Failed(handshake_err(&principal, k), None),
        Ok(Ok(hello)) => hello,
    };
    if hello.party != principal {
        // Refused here, before it is parked or routed: an authenticated
        // peer must not occupy another party's place.
        let m = format!("the hello names party {:?} but the certificate identifies party {principal}", hello.party);
        let reply = Reply {
            status: status::REFUSED,
            version: 0,
            min_version: 0,
            max_version: 0,
            protocol: hello.protocol.clone(),
            reason: m.clone(),
        };
        let _ = timeout_at(deadline, async {
            write_all(&mut tls, &reply.encode()).await.ok();
            tls.shutdown().await.ok();
        })
        .await;
        return AuthOutcome::Failed(handshake_err(&principal, TransportErrorKind::Handshake(m)), Some(hello.job));
    }
    AuthOutcome::Ready(Accepted { principal, stream: Box::new(TlsStream::Server(tls)), hello })
}

/// What a [`Router`](super::Router) hands a job.
#[derive(Debug)]
pub enum Routed {
    /// An authenticated connection whose hello names the job.
    Connection(Accepted),
    /// A dialer the router refused (its certificate expired, not yet
    /// valid, untrusted; a hello naming another party): the error names
    /// the party its certificate claimed. A job still waiting for that
    /// party to dial fails with it at once, instead of timing out.
    Refused(TransportError),
    /// A peer asks whether this job lists the parties in its order
    /// (see `hello`'s order queries).
    OrderQuery(OrderQuery),
}

/// A peer's question whether a job lists the parties in the same order;
/// answered by the job while it establishes its mesh.
pub struct OrderQuery {
    from: String,
    digest: [u8; 32],
    reply: tokio::sync::oneshot::Sender<Result<(), String>>,
}

impl OrderQuery {
    pub(crate) fn new(
        from: &str,
        digest: [u8; 32],
    ) -> (OrderQuery, tokio::sync::oneshot::Receiver<Result<(), String>>) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        (OrderQuery { from: from.to_string(), digest, reply }, rx)
    }
}

impl std::fmt::Debug for OrderQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderQuery").field("from", &self.from).finish_non_exhaustive()
    }
}

/// Where [`Mesh::establish_from`] takes inbound connections from.
pub enum InboundSource<'a> {
    /// Accept on this listener, for this job only.
    Listener(&'a TcpListener),
    /// Take connections a [`Router`](super::Router) authenticated and
    /// routed to this job (one listener serving many jobs).
    Routed(&'a mut mpsc::Receiver<Routed>),
}

/// The next routed connection; pending forever when there is no router or
/// it has gone (the deadline then ends establishment).
async fn recv_routed(routed: &mut Option<&mut mpsc::Receiver<Routed>>) -> Option<Routed> {
    match routed {
        Some(rx) => match rx.recv().await {
            Some(a) => Some(a),
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Accept on `listener`; pending forever without one.
async fn accept_on(listener: Option<&TcpListener>) -> std::io::Result<TcpStream> {
    match listener {
        Some(l) => l.accept().await.map(|(tcp, _)| tcp),
        None => std::future::pending().await,
    }
}

/// Check an authenticated peer's hello, send the reply, and return the
/// agreed version (or the error, after telling the peer).
async fn answer_hello(
    ctx: &Ctx,
    already_connected: bool,
    index: usize,
    stream: &mut TlsStream<TcpStream>,
    hello: &Hello,
    deadline: Instant,
) -> Result<u32, TransportError> {
    let name = &ctx.names[index];
    let p = &ctx.protocol;
    let (st, version, reason, outcome) = if hello.job != ctx.job {
        (status::WRONG_JOB, 0, "the hello is for a different job".to_string(), Err(TransportErrorKind::WrongJob))
    } else if hello.party != *name {
        let m = format!("the hello names party {:?} but the certificate identifies party {name}", hello.party);
        (status::REFUSED, 0, m.clone(), Err(TransportErrorKind::Handshake(m)))
    } else if already_connected {
        let m = format!("party {name} is already connected (duplicate connection)");
        (status::REFUSED, 0, m.clone(), Err(TransportErrorKind::Handshake(m)))
    } else if hello.protocol != p.name {
        (
            status::PROTOCOL_MISMATCH,
            0,
            "protocol mismatch".to_string(),
            Err(TransportErrorKind::ProtocolMismatch { ours: p.name.clone(), theirs: hello.protocol.clone() }),
        )
    } else {
        let lo = p.min_version.max(hello.min_version);
        let hi = p.max_version.min(hello.max_version);
        if lo > hi {
            (
                status::VERSION_MISMATCH,
                0,
                "no common protocol version".to_string(),
                Err(TransportErrorKind::VersionMismatch {
                    our_min: p.min_version,
                    our_max: p.max_version,
                    their_min: hello.min_version,
                    their_max: hello.max_version,
                }),
            )
        } else {
            (status::OK, hi, String::new(), Ok(hi))
        }
    };
    let reply = Reply {
        status: st,
        version,
        min_version: p.min_version,
        max_version: p.max_version,
        protocol: p.name.clone(),
        reason,
    };
    let written = timeout_at(deadline, write_all(stream, &reply.encode())).await;
    match (outcome, written) {
        (Err(kind), _) => {
            // Let the refusal reach the peer before the socket goes away.
            let _ = timeout(Duration::from_millis(200), stream.shutdown()).await;
            Err(handshake_err(name, kind))
        }
        (Ok(v), Ok(Ok(()))) => Ok(v),
        (Ok(_), Ok(Err(k))) => Err(handshake_err(name, k)),
        (Ok(_), Err(_)) => {
            Err(handshake_err(name, TransportErrorKind::Handshake("could not send the hello reply in time".into())))
        }
    }
}

impl Mesh {
    /// Establish the full mesh for one job.
    ///
    /// Party `i` dials every party `j < i` and accepts every party `j > i` on
    /// `listener` (bound in advance; one `establish` at a time per listener).
    /// TLS 1.3 only, mutual authentication: each side verifies the peer's
    /// chain against its trusted CAs and that the peer's URI SAN is exactly
    /// [`party_uri`](super::party_uri)`(federation, expected peer)`. Then the
    /// dialer sends its hello (job id, party name, protocol name, version
    /// range) and the acceptor checks the job, that the name matches the
    /// certificate and a not-yet-connected peer, the protocol name, and
    /// replies with the highest common version or a refusal.
    ///
    /// Connection refusals and connections closed before authentication are
    /// retried (dialer) or ignored (acceptor) until `timeouts.connect`; a
    /// refused certificate, wrong job, protocol or version mismatch fails
    /// at once with an error naming the (claimed or expected) party.
    pub async fn establish(cfg: &MeshConfig, listener: &TcpListener, job: JobId) -> Result<Mesh, TransportError> {
        Mesh::establish_from(cfg, InboundSource::Listener(listener), job).await
    }

    /// [`Mesh::establish`] with inbound connections from `inbound`: a
    /// listener of this job's own, or the connections a
    /// [`Router`](super::Router) routes to this job.
    pub async fn establish_from(
        cfg: &MeshConfig,
        inbound: InboundSource<'_>,
        job: JobId,
    ) -> Result<Mesh, TransportError> {
        validate(cfg)?;
        let (listener, mut routed) = match inbound {
            InboundSource::Listener(l) => (Some(l), None),
            InboundSource::Routed(rx) => (None, Some(rx)),
        };
        let n = cfg.parties.len();
        let me = cfg.self_index;
        let names: Vec<String> = cfg.parties.iter().map(|p| p.name.clone()).collect();
        let deadline = Instant::now() + cfg.timeouts.connect;
        let ctx = Arc::new(Ctx {
            identity: cfg.identity.clone(),
            names: names.clone(),
            me,
            job,
            protocol: cfg.protocol.clone(),
        });

        let mut streams: Vec<Option<(TlsStream<TcpStream>, u32)>> = (0..n).map(|_| None).collect();
        let mut dialers = JoinSet::new();
        for (j, peer) in cfg.parties.iter().enumerate().take(me) {
            dialers.spawn(dial(ctx.clone(), j, peer.addr, deadline, cfg.timeouts.connect));
        }
        let max_pending = 2 * n + 4;
        let mut handshakes: JoinSet<AuthOutcome> = JoinSet::new();
        // A job behind a router asks the parties it waits for whether they
        // list the parties in its order, once it waited a moment: two
        // parties that disagree would each wait for the other to dial.
        let order = order_digest(&names);
        let mut ask_every = ORDER_ASK_AFTER;
        let mut next_ask = Instant::now() + ask_every;
        let mut asks: JoinSet<(usize, Option<String>)> = JoinSet::new();
        let mut missing = n - 1;
        let inbound_names = ctx.inbound_names();
        while missing > 0 {
            let want_inbound = streams[me + 1..].iter().any(Option::is_none);
            let want_accept = listener.is_some() && want_inbound && handshakes.len() < max_pending;
            let want_routed = routed.is_some() && want_inbound;
            tokio::select! {
                biased;
                _ = sleep_until(deadline) => {
                    let waiting: Vec<&str> = (0..n)
                        .filter(|&j| j != me && streams[j].is_none())
                        .map(|j| names[j].as_str())
                        .collect();
                    return Err(TransportError::new(
                        Some(&waiting.join(", ")),
                        Step::Handshake,
                        TransportErrorKind::Timeout {
                            after: cfg.timeouts.connect,
                            waiting_for: "the connection to be established",
                        },
                    ));
                }
                Some(res) = dialers.join_next(), if !dialers.is_empty() => match res {
                    Ok(Ok((j, stream, v))) => {
                        debug!(job = %job, peer = %names[j], version = v, "connected (dialed)");
                        streams[j] = Some((stream, v));
                        missing -= 1;
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(e) => {
                        return Err(TransportError::config(
                            Step::Handshake,
                            format!("dial task failed: {e}"),
                        ));
                    }
                },
                Some(res) = handshakes.join_next(), if !handshakes.is_empty() => match res {
                    Ok(AuthOutcome::Ready(accepted)) => {
                        let (index, mut stream, hello) = ctx.attribute(accepted)?;
                        let v = answer_hello(&ctx, streams[index].is_some(), index, &mut stream, &hello, deadline)
                            .await?;
                        debug!(job = %job, peer = %names[index], version = v, "connected (accepted)");
                        streams[index] = Some((*stream, v));
                        missing -= 1;
                    }
                    Ok(AuthOutcome::Ignored(reason)) => {
                        debug!(job = %job, %reason, "ignored an inbound connection");
                    }
                    Ok(AuthOutcome::Failed(e, _)) => return Err(e),
                    Err(e) => {
                        return Err(TransportError::config(
                            Step::Handshake,
                            format!("accept task failed: {e}"),
                        ));
                    }
                },
                Some(item) = recv_routed(&mut routed), if want_routed => match item {
                    Routed::Refused(e) => {
                        // Refused by the router before it knew the job:
                        // ours if we still wait for the party it names.
                        let awaited = e.peer.as_deref().and_then(|p| names.iter().position(|n| n == p));
                        match awaited {
                            Some(index) if index > me && streams[index].is_none() => return Err(e),
                            _ => debug!(job = %job, error = %e, "a refused dialer concerns another job"),
                        }
                    }
                    Routed::OrderQuery(q) => {
                        if q.digest == order {
                            let _ = q.reply.send(Ok(()));
                        } else {
                            let theirs = format!(
                                "party {} lists the parties of job {job} in another order than party {} ({}): the parties \
                                 disagree on the party list or its order",
                                q.from, names[me], names.join(", ")
                            );
                            let _ = q.reply.send(Err(theirs));
                            return Err(handshake_err(
                                &q.from,
                                TransportErrorKind::Handshake(format!(
                                    "it lists the parties of this job in another order than this party ({}): the \
                                     parties disagree on the party list or its order",
                                    names.join(", ")
                                )),
                            ));
                        }
                    }
                    Routed::Connection(accepted) => {
                        let (index, mut stream, hello) = ctx.attribute(accepted)?;
                        let v = answer_hello(&ctx, streams[index].is_some(), index, &mut stream, &hello, deadline)
                            .await?;
                        debug!(job = %job, peer = %names[index], version = v, "connected (routed)");
                        streams[index] = Some((*stream, v));
                        missing -= 1;
                    }
                },
                _ = sleep_until(next_ask), if routed.is_some() && want_inbound => {
                    // Asked again, less and less often: the peer's job may
                    // not be registered yet.
                    ask_every = (ask_every * 2).min(ORDER_ASK_MAX);
                    next_ask = Instant::now() + ask_every;
                    for j in (me + 1..n).filter(|&j| streams[j].is_none()) {
                        let (ctx, addr) = (ctx.clone(), cfg.parties[j].addr);
                        asks.spawn(async move {
                            (j, timeout(ORDER_ASK_AFTER, ask_order(&ctx, j, addr)).await.ok().flatten())
                        });
                    }
                },
                Some(Ok((j, Some(reason)))) = asks.join_next(), if !asks.is_empty() => {
                    return Err(handshake_err(&names[j], TransportErrorKind::Handshake(reason)));
                },
                acc = accept_on(listener), if want_accept => match acc {
                    Ok(tcp) => {
                        let (identity, accepted) = (ctx.identity.clone(), inbound_names.clone());
                        handshakes.spawn(async move { authenticate(&identity, &accepted, tcp, deadline).await });
                    }
                    Err(e) => {
                        // E.g. out of file descriptors: back off briefly.
                        debug!(error = %e, "accept failed");
                        sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
        drop(dialers);
        drop(handshakes);
        drop(asks);

        let sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let aborts = Arc::new(AbortBoard::default());
        let mut version = cfg.protocol.max_version;
        let mut links = Vec::with_capacity(n);
        for (j, slot) in streams.into_iter().enumerate() {
            match slot {
                None => links.push(None),
                Some((stream, v)) => {
                    version = version.min(v);
                    let counters = (&sent, &received);
                    links.push(Some(start_link(
                        stream,
                        (j, &names[j]),
                        job,
                        cfg.limits,
                        cfg.timeouts,
                        counters,
                        &aborts,
                    )));
                }
            }
        }
        info!(job = %job, party = %names[me], peers = n - 1, version, "mesh established");
        Ok(Mesh {
            job,
            self_index: me,
            names,
            version,
            limits: cfg.limits,
            timeouts: cfg.timeouts,
            links,
            sent,
            received,
            aborts,
        })
    }

    /// This party's index.
    pub fn self_index(&self) -> usize {
        self.self_index
    }

    /// Number of parties, including this one.
    pub fn party_count(&self) -> usize {
        self.names.len()
    }

    /// Name of party `index` (panics if out of range, like slice indexing).
    pub fn party_name(&self, index: usize) -> &str {
        &self.names[index]
    }

    /// The job this mesh serves.
    pub fn job(&self) -> JobId {
        self.job
    }

    /// Highest protocol version every connected peer agreed (minimum over
    /// peers of the pairwise agreements; the same at every party).
    pub fn protocol_version(&self) -> u32 {
        self.version
    }

    /// Total bytes this party wrote to the network for this mesh (frame
    /// headers and payload, not TLS overhead).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Bytes written to `peer` (0 for self or an unknown index).
    pub fn bytes_sent_to(&self, peer: usize) -> u64 {
        self.links.get(peer).and_then(Option::as_ref).map_or(0, |l| l.sent.load(Ordering::Relaxed))
    }

    /// Total frame bytes (headers and payload) read from all peers.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Frame bytes read from `peer` (0 for self or an unknown index).
    pub fn bytes_received_from(&self, peer: usize) -> u64 {
        self.links.get(peer).and_then(Option::as_ref).map_or(0, |l| l.received.load(Ordering::Relaxed))
    }

    /// IANA name of the TLS cipher suite negotiated with `peer` (`None`
    /// for self or an unknown index).
    pub fn cipher_suite(&self, peer: usize) -> Option<&'static str> {
        self.links.get(peer).and_then(Option::as_ref).and_then(|l| l.suite)
    }

    fn link(&self, peer: usize, step: Step) -> Result<(&Link, &str), TransportError> {
        match self.links.get(peer).and_then(Option::as_ref) {
            Some(l) => Ok((l, &self.names[peer])),
            None => Err(TransportError::config(
                step,
                format!("no peer with index {peer} (this is party {} of {})", self.self_index, self.names.len()),
            )),
        }
    }

    /// Queue one message for `peer`, tagged with this job and `step`.
    ///
    /// Messages larger than `max_frame_bytes` are split into frames and
    /// reassembled by the receiver. Waits (at most `timeouts.round`) while
    /// the bounded per-peer send queue is full. Returns once queued; a write
    /// failure is reported by the next `send` to that peer. Messages larger
    /// than `max_message_bytes` are refused.
    pub async fn send(&self, peer: usize, step: Step, payload: Vec<u8>) -> Result<(), TransportError> {
        self.send_shared(peer, step, Arc::new(payload)).await
    }

    /// [`Mesh::send`] for a payload shared with other sends (the same
    /// message to several peers is queued without a copy per peer).
    pub async fn send_shared(&self, peer: usize, step: Step, payload: Arc<Vec<u8>>) -> Result<(), TransportError> {
        let (link, _) = self.link(peer, step)?;
        if payload.len() > self.limits.max_message_bytes {
            return Err(self.peer_err(
                peer,
                step,
                TransportErrorKind::MessageTooLarge {
                    size: payload.len() as u64,
                    max: self.limits.max_message_bytes as u64,
                },
            ));
        }
        let queued: Result<(), TransportErrorKind> = async {
            if let Some(k) = link.writer_failure() {
                return Err(k);
            }
            let frames = frame_count(payload.len(), self.limits.max_frame_bytes).min(self.limits.queue_frames) as u32;
            let failed = || link.writer_failure().unwrap_or(TransportErrorKind::Disconnected);
            let permit = match timeout(self.timeouts.round, link.permits.clone().acquire_many_owned(frames)).await {
                Ok(Ok(p)) => p,
                Ok(Err(_closed)) => return Err(failed()),
                Err(_) => {
                    return Err(TransportErrorKind::Timeout {
                        after: self.timeouts.round,
                        waiting_for: "send queue space (the peer is not reading)",
                    });
                }
            };
            let Some(out) = &link.out else {
                return Err(failed());
            };
            out.send(Outgoing::Message { step, payload, _permit: permit }).await.map_err(|_| failed())
        }
        .await;
        match queued {
            Ok(()) => Ok(()),
            Err(k @ TransportErrorKind::Timeout { .. }) => {
                // As for a receive: a peer's abort names the culprit better.
                let grace = (self.timeouts.round / 4).min(BLAME_GRACE);
                let check = || self.follow_aborts(peer, step, false);
                match self.within_grace(grace, std::future::pending::<()>(), check).await {
                    Err(abort) => Err(abort),
                    Ok(_) => Err(self.peer_err(peer, step, k)),
                }
            }
            Err(k) => Err(self.failure(peer, step, k).await),
        }
    }

    /// An empty buffer with room for at least `capacity` bytes, for a large
    /// outgoing message: a recycled one when available (see
    /// [`Mesh::recycle`]), so that its pages are not faulted in afresh.
    pub fn take_buffer(&self, capacity: usize) -> Vec<u8> {
        let mut buf = pool::take(capacity).unwrap_or_default();
        buf.reserve_exact(capacity);
        buf
    }

    /// Hand back a message buffer this party is done with (a received
    /// message, or a payload no longer shared with a send) whose content is
    /// public to the job's parties: an opening's masked values, which every
    /// party sees (see [`crate::memory`] for why they need no wiping).
    /// Large buffers are kept, within a bounded process-wide budget, for
    /// later messages and jobs, **not zeroed**; others are simply dropped.
    /// A buffer that held shares or secrets goes to
    /// [`Mesh::recycle_secret`] instead.
    pub fn recycle(&self, buf: Vec<u8>) {
        pool::give(buf, false);
    }

    /// [`Mesh::recycle`] for a buffer that held shares or secrets (a
    /// message that re-shares a product to a neighbour, say): its whole
    /// capacity is wiped in bulk, once, before it is kept or dropped.
    pub fn recycle_secret(&self, buf: Vec<u8>) {
        pool::give(buf, true);
    }

    /// Announce that the next message from `peer` for `step` should be
    /// `len` bytes long, so that its receive buffer is allocated once at
    /// that size instead of growing fragment by fragment (a hint for large
    /// messages: it changes no check, and a message of another size is
    /// still received as usual). Takes effect if the message has not
    /// started arriving yet. `len` is capped at `max_message_bytes`.
    pub fn expect_message(&self, peer: usize, step: Step, len: usize) {
        if let Some(link) = self.links.get(peer).and_then(Option::as_ref) {
            let hint = Some((step, len.min(self.limits.max_message_bytes)));
            match link.hint.lock() {
                Ok(mut g) => *g = hint,
                Err(p) => *p.into_inner() = hint,
            }
        }
    }

    /// The next message from `peer`, which must carry this job and exactly
    /// `step`.
    ///
    /// Fails (naming the peer and `step`) after `timeouts.round` without a
    /// complete message, when the peer disconnects, sends a malformed frame,
    /// a frame for another job or step, or a frame larger than
    /// `max_frame_bytes` (checked from the header, before reading the body).
    /// A failure is sticky: later calls for this peer return it again.
    pub async fn recv(&self, peer: usize, step: Step) -> Result<Vec<u8>, TransportError> {
        let (link, name) = self.link(peer, step)?;
        let err = |k| TransportError::new(Some(name), step, k);
        let deadline = Instant::now() + self.timeouts.round;
        let Ok(mut guard) = timeout_at(deadline, link.inbound.lock()).await else {
            return Err(err(TransportErrorKind::Timeout {
                after: self.timeouts.round,
                waiting_for: "a concurrent receive from the same peer",
            }));
        };
        let state = &mut *guard;
        if let Some(e) = &state.failed {
            return Err(e.clone());
        }
        match self.recv_locked(state, peer, step, deadline).await {
            Ok(msg) => Ok(msg),
            Err(e) => {
                debug!(job = %self.job, peer = %name, %step, error = %e, "receive failed");
                state.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn recv_locked(
        &self,
        state: &mut Inbound,
        peer: usize,
        step: Step,
        deadline: Instant,
    ) -> Result<Vec<u8>, TransportError> {
        let item = match timeout_at(deadline, state.rx.recv()).await {
            Ok(item) => item,
            Err(_) => {
                let late = Instant::now().saturating_duration_since(deadline);
                let timed_out = self.peer_err(
                    peer,
                    step,
                    TransportErrorKind::Timeout { after: self.timeouts.round, waiting_for: "a complete message" },
                );
                if late < CLOCK_JUMP {
                    // The peer may itself be waiting on another party and
                    // have said so: follow the aborts to the party at fault.
                    if let Some(e) = self.follow_aborts(peer, step, false) {
                        return Err(e);
                    }
                    // Tell the peers now (not after the grace), so that a
                    // party waiting on this one learns in time who stalled.
                    self.abort(&timed_out.to_string());
                    let grace = (self.timeouts.round / 4).min(BLAME_GRACE);
                    let check = || self.follow_aborts(peer, step, false);
                    return Err(match self.within_grace(grace, std::future::pending::<()>(), check).await {
                        Err(abort) => abort,
                        Ok(_) => timed_out,
                    });
                }
                // This process was not running past the deadline (stopped,
                // or starved): its timers fire before its readers run, so
                // read what the peers sent before blaming anyone.
                let check = || self.follow_aborts(peer, step, true).or_else(|| self.blaming_me(step));
                match self.within_grace(BLAME_GRACE, state.rx.recv(), check).await {
                    Err(abort) => return Err(abort),
                    Ok(Some(item)) => item,
                    Ok(None) => {
                        return Err(TransportError::local(
                            step,
                            TransportErrorKind::Stalled {
                                after: self.timeouts.round,
                                late,
                                waiting_for: "a complete message",
                                from: self.names[peer].clone(),
                            },
                        ));
                    }
                }
            }
        };
        match item {
            None => Err(self.failure(peer, step, TransportErrorKind::Disconnected).await),
            Some(Err(k)) => Err(self.failure(peer, step, k).await),
            Some(Ok(msg)) if msg.step != step => {
                Err(self.peer_err(peer, step, TransportErrorKind::UnexpectedStep { expected: step, got: msg.step }))
            }
            Some(Ok(msg)) => Ok(msg.body),
        }
    }

    fn peer_err(&self, peer: usize, step: Step, kind: TransportErrorKind) -> TransportError {
        TransportError::new(Some(&self.names[peer]), step, kind)
    }

    /// The error of an abort `reason` from party `from`, read from its
    /// connection: it concerns the party the aborts lead to (see
    /// [`Mesh::follow_aborts`]; possibly this one), else `from` itself.
    fn abort_err(&self, from: usize, step: Step, reason: String) -> TransportError {
        self.follow_aborts(from, step, true)
            .unwrap_or_else(|| self.peer_err(from, step, TransportErrorKind::Aborted(reason)))
    }

    /// Follow the peers' aborts from party `start`: while the party reached
    /// gave up blaming another party (its reason names it), go on to that
    /// one. The error naming the party reached; `None` when `start` sent no
    /// abort, or the blame runs in a cycle or (unless `to_me`) back to this
    /// party, which was waiting too.
    fn follow_aborts(&self, start: usize, step: Step, to_me: bool) -> Option<TransportError> {
        let aborts = self.aborts.all();
        let me = self.self_index;
        let (mut current, mut visited) = (start, vec![start]);
        let mut followed: Option<(usize, &String)> = None;
        while current != me {
            let Some((_, reason)) = aborts.iter().find(|(from, _)| *from == current) else { break };
            let blamed = blamed_party(reason, &self.names).and_then(|b| self.names.iter().position(|n| n == b));
            match blamed {
                Some(next) if next != current => {
                    if visited.contains(&next) || (next == me && !to_me) {
                        return None;
                    }
                    visited.push(next);
                    followed = Some((current, reason));
                    current = next;
                }
                // It gave up for a reason of its own: it is the cause.
                _ => return Some(self.peer_err(current, step, TransportErrorKind::Aborted(reason.clone()))),
            }
        }
        let (by, reason) = followed?;
        Some(TransportError::new(
            Some(&self.names[current]),
            step,
            TransportErrorKind::AbortedBy { by: self.names[by].clone(), reason: reason.clone() },
        ))
    }

    /// An abort that blames this party, as an error naming this party.
    fn blaming_me(&self, step: Step) -> Option<TransportError> {
        let me = &self.names[self.self_index];
        let (by, reason) =
            self.aborts.all().into_iter().find(|(_, r)| blamed_party(r, &self.names) == Some(me.as_str()))?;
        Some(TransportError::new(Some(me), step, TransportErrorKind::AbortedBy { by: self.names[by].clone(), reason }))
    }

    /// Wait up to `grace` for `fut`, but return at once the error `check`
    /// finds in the peers' aborts (`Err`), looking again at each new one;
    /// `Ok(None)` when neither came.
    async fn within_grace<T>(
        &self,
        grace: Duration,
        fut: impl std::future::Future<Output = T>,
        check: impl Fn() -> Option<TransportError>,
    ) -> Result<Option<T>, TransportError> {
        let until = Instant::now() + grace;
        tokio::pin!(fut);
        loop {
            let notified = self.aborts.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = check() {
                return Err(e);
            }
            tokio::select! {
                biased;
                _ = &mut notified => continue,
                out = &mut fut => return Ok(Some(out)),
                _ = sleep_until(until) => return Ok(None),
            }
        }
    }

    /// The error for a failed connection to `peer`: its abort leads to the
    /// party at fault; a closed connection or a socket error is explained
    /// by the peers' aborts when they arrive within a short grace.
    async fn failure(&self, peer: usize, step: Step, kind: TransportErrorKind) -> TransportError {
        match kind {
            TransportErrorKind::Aborted(reason) => self.abort_err(peer, step, reason),
            k @ (TransportErrorKind::Disconnected | TransportErrorKind::Io(_)) => {
                let grace = (self.timeouts.round / 4).min(BLAME_GRACE);
                let check = || self.follow_aborts(peer, step, true);
                match self.within_grace(grace, std::future::pending::<()>(), check).await {
                    Err(abort) => abort,
                    Ok(_) => self.peer_err(peer, step, k),
                }
            }
            k => self.peer_err(peer, step, k),
        }
    }

    /// Tell every peer that this party gives up on the job, and why, so that
    /// each reports the cause rather than a closed connection. Protocol
    /// version 2 and later only (a version-1 peer would refuse the frame);
    /// best effort: a peer whose send queue is full is not waited for.
    /// `reason` is this party's own error message, which never contains a
    /// secret.
    pub fn abort(&self, reason: &str) {
        if self.version < 2 {
            return;
        }
        let payload = Arc::new(truncate(reason, MAX_ABORT_REASON - 3).into_bytes());
        for link in self.links.iter().flatten() {
            let (Some(out), Ok(permit)) = (&link.out, link.permits.clone().try_acquire_owned()) else {
                continue;
            };
            let _ = out.try_send(Outgoing::Message { step: Step::Abort, payload: payload.clone(), _permit: permit });
        }
    }

    /// Fault injection for tests: write `bytes` to `peer` as they are, with
    /// no framing. Never use outside tests.
    #[doc(hidden)]
    pub async fn send_raw(&self, peer: usize, bytes: Vec<u8>) -> Result<(), TransportError> {
        let (link, name) = self.link(peer, Step::Handshake)?;
        let failed = || {
            TransportError::new(
                Some(name),
                Step::Handshake,
                link.writer_failure().unwrap_or(TransportErrorKind::Disconnected),
            )
        };
        match &link.out {
            Some(out) => out.send(Outgoing::Raw(bytes)).await.map_err(|_| failed()),
            None => Err(failed()),
        }
    }

    /// Shut the mesh down: flush queued messages and send TLS close_notify
    /// to every peer (best effort, bounded), then release all tasks and
    /// sockets. Dropping a `Mesh` releases everything too, without flushing.
    pub async fn close(mut self) {
        let grace = Instant::now() + self.timeouts.round.min(CLOSE_GRACE);
        let mut writers = Vec::new();
        for link in self.links.iter_mut().flatten() {
            link.out = None; // the writer drains its queue, then shuts down
            if let Some(h) = link.writer.take() {
                writers.push(h);
            }
        }
        for h in writers {
            let abort = h.abort_handle();
            if timeout_at(grace, h).await.is_err() {
                abort.abort();
            }
        }
        // Readers are aborted when `self` drops.
    }
}

fn start_link(
    stream: TlsStream<TcpStream>,
    (index, name): (usize, &str),
    job: JobId,
    limits: Limits,
    timeouts: Timeouts,
    (total_sent, total_received): (&Arc<AtomicU64>, &Arc<AtomicU64>),
    aborts: &Arc<AbortBoard>,
) -> Link {
    let suite = stream.get_ref().1.negotiated_cipher_suite().and_then(|s| s.suite().as_str());
    let (rd, wr) = tokio::io::split(stream);
    let (in_tx, in_rx) = mpsc::channel(limits.queue_frames);
    let (out_tx, out_rx) = mpsc::channel(limits.queue_frames);
    let permits = Arc::new(Semaphore::new(limits.queue_frames));
    let writer_failure = Arc::new(Mutex::new(None));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let hint = Arc::new(Mutex::new(None));
    let reader = tokio::spawn(reader_task(
        rd,
        in_tx,
        ReaderCtx {
            job,
            limits,
            budget: Arc::new(Semaphore::new(limits.queue_frames)),
            counters: [received.clone(), total_received.clone()],
            hint: hint.clone(),
            peer: index,
            aborts: aborts.clone(),
        },
    ));
    let writer = tokio::spawn(writer_task(
        BufWriter::with_capacity(WRITE_BUFFER, wr),
        out_rx,
        WriterCtx {
            peer: name.to_string(),
            job,
            max_frame: limits.max_frame_bytes,
            round: timeouts.round,
            counters: [sent.clone(), total_sent.clone()],
            failure: writer_failure.clone(),
            permits: permits.clone(),
        },
    ));
    Link {
        out: Some(out_tx),
        permits,
        writer_failure,
        inbound: tokio::sync::Mutex::new(Inbound { rx: in_rx, failed: None }),
        sent,
        received,
        writer: Some(writer),
        reader: Some(reader),
        hint,
        suite,
    }
}

type Conn = TlsStream<TcpStream>;

struct ReaderCtx {
    job: JobId,
    limits: Limits,
    /// Inbound frame budget: one permit per frame read and not yet taken by
    /// `recv` (at most `queue_frames` per message, so one message larger
    /// than the budget still gets through).
    budget: Arc<Semaphore>,
    counters: [Arc<AtomicU64>; 2],
    /// Size announced by [`Mesh::expect_message`] for a step's next message.
    hint: Arc<Mutex<Option<(Step, usize)>>>,
    /// This peer's index, and where its abort is posted as soon as read.
    peer: usize,
    aborts: Arc<AbortBoard>,
}

impl ReaderCtx {
    /// The announced size of the message for `step` that starts now (the
    /// announcement is used once).
    fn take_hint(&self, step: Step) -> Option<usize> {
        let mut g = match self.hint.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match *g {
            Some((s, len)) if s == step => {
                *g = None;
                Some(len)
            }
            _ => None,
        }
    }
}

async fn reader_task(mut rd: ReadHalf<Conn>, tx: mpsc::Sender<Result<Message, TransportErrorKind>>, ctx: ReaderCtx) {
    if let Err(k) = read_messages(&mut rd, &tx, &ctx).await {
        let _ = tx.send(Err(k)).await;
    }
}

/// Read frames and reassemble messages until the connection fails (`Err`)
/// or the mesh is gone (`Ok`). Fragments are read straight into the message
/// buffer: no intermediate copy, no zero-filling.
async fn read_messages(
    rd: &mut ReadHalf<Conn>,
    tx: &mpsc::Sender<Result<Message, TransportErrorKind>>,
    ctx: &ReaderCtx,
) -> Result<(), TransportErrorKind> {
    let max_message = ctx.limits.max_message_bytes as u64;
    let mut partial: Option<Message> = None;
    let mut held = 0usize;
    loop {
        let mut header = [0u8; HEADER_LEN];
        rd.read_exact(&mut header).await.map_err(TransportErrorKind::from_io)?;
        let h = FrameHeader::decode(&header, ctx.job, ctx.limits.max_frame_bytes)?;
        let mut msg = match partial.take() {
            None => {
                held = 0;
                Message { step: h.step, body: Vec::new(), _permit: None }
            }
            Some(m) if m.step == h.step => m,
            Some(m) => {
                return Err(TransportErrorKind::Malformed(format!(
                    "a fragment of a message for step {} carried step {}",
                    m.step, h.step
                )));
            }
        };
        let size = msg.body.len() as u64 + h.len as u64;
        if h.step == Step::Abort && size > MAX_ABORT_REASON as u64 {
            return Err(TransportErrorKind::Malformed("an abort reason longer than 1024 bytes".into()));
        }
        if size > max_message {
            return Err(TransportErrorKind::MessageTooLarge { size, max: max_message });
        }
        if held < ctx.limits.queue_frames {
            // Waits while `recv` is behind: backpressure down to TCP.
            let Ok(p) = ctx.budget.clone().acquire_owned().await else {
                return Ok(());
            };
            match &mut msg._permit {
                Some(all) => all.merge(p),
                None => msg._permit = Some(p),
            }
            held += 1;
        }
        // `h.len <= max_frame_bytes` was checked from the header, so this
        // reservation is bounded.
        let len = h.len as usize;
        if msg.body.is_empty() {
            // The first fragment: our own announcement (bounded by
            // `max_message_bytes`), or exactly this frame.
            let want = len.max(ctx.take_hint(h.step).unwrap_or(0));
            if let Some(buf) = pool::take(want) {
                msg.body = buf;
            }
            msg.body.reserve_exact(want);
        } else {
            msg.body.reserve(len); // amortized doubling across fragments
        }
        let target = msg.body.len() + len;
        let mut body = (&mut *rd).take(len as u64);
        while msg.body.len() < target {
            let n = body.read_buf(&mut msg.body).await.map_err(TransportErrorKind::from_io)?;
            if n == 0 {
                return Err(TransportErrorKind::Disconnected);
            }
        }
        for c in &ctx.counters {
            c.fetch_add((HEADER_LEN + len) as u64, Ordering::Relaxed);
        }
        if h.last && msg.step == Step::Abort {
            // The peer's own error, as it reported it: shown, so strip
            // anything that could forge log lines.
            let reason: String =
                String::from_utf8_lossy(&msg.body).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            ctx.aborts.post(ctx.peer, reason.clone());
            return Err(TransportErrorKind::Aborted(reason));
        }
        if h.last {
            if tx.send(Ok(msg)).await.is_err() {
                return Ok(()); // the mesh is gone
            }
        } else {
            partial = Some(msg);
        }
    }
}

struct WriterCtx {
    peer: String,
    job: JobId,
    max_frame: usize,
    round: Duration,
    counters: [Arc<AtomicU64>; 2],
    failure: Arc<Mutex<Option<TransportErrorKind>>>,
    permits: Arc<Semaphore>,
}

impl WriterCtx {
    fn count(&self, n: usize) {
        for c in &self.counters {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

async fn write_message(
    w: &mut BufWriter<WriteHalf<Conn>>,
    ctx: &WriterCtx,
    step: Step,
    payload: &[u8],
) -> std::io::Result<()> {
    let count = frame_count(payload.len(), ctx.max_frame);
    let mut chunks = payload.chunks(ctx.max_frame.max(1));
    for i in 0..count {
        let chunk = chunks.next().unwrap_or(&[]);
        let header = FrameHeader { job: ctx.job, step, last: i + 1 == count, len: chunk.len() as u32 }.encode();
        w.write_all(&header).await?;
        w.write_all(chunk).await?;
        ctx.count(HEADER_LEN + chunk.len());
    }
    w.flush().await
}

async fn writer_task(mut w: BufWriter<WriteHalf<Conn>>, mut rx: mpsc::Receiver<Outgoing>, ctx: WriterCtx) {
    let result: Result<(), TransportErrorKind> = async {
        while let Some(item) = rx.recv().await {
            let write = async {
                match &item {
                    Outgoing::Message { step, payload, .. } => {
                        write_message(&mut w, &ctx, *step, payload.as_slice()).await
                    }
                    Outgoing::Raw(bytes) => {
                        w.write_all(bytes).await?;
                        w.flush().await
                    }
                }
            };
            match timeout(ctx.round, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(TransportErrorKind::from_io(e)),
                Err(_) => {
                    return Err(TransportErrorKind::Timeout {
                        after: ctx.round,
                        waiting_for: "the peer to read our data",
                    });
                }
            }
            drop(item); // releases the queue permits
        }
        // All senders gone (close): flush and send close_notify.
        let _ = timeout(CLOSE_GRACE, w.shutdown()).await;
        Ok(())
    }
    .await;
    if let Err(k) = result {
        debug!(peer = %ctx.peer, error = %k, "writer stopped");
        match ctx.failure.lock() {
            Ok(mut g) => *g = Some(k),
            Err(p) => *p.into_inner() = Some(k),
        }
    }
    ctx.permits.close();
}

/// Large message buffers kept for reuse, so that a big message does not
/// fault in fresh zero pages every time (the kernel's page faults on fresh
/// 16 MB buffers were a tenth of a job's CPU time). The pool is bounded
/// ([`pool::MAX_TOTAL`] bytes of capacity, process-wide). Buffers are not
/// zeroed here: what [`Mesh::recycle`] hands back is public to the job's
/// parties (see [`crate::memory`]), and what [`Mesh::recycle_secret`] hands
/// back is wiped once on the way in. A kept buffer comes out empty, so its
/// old bytes are only ever overwritten, never read.
mod pool {
    use std::sync::Mutex;

    /// Smaller buffers are not worth keeping.
    pub(super) const MIN: usize = 1 << 20;
    /// Capacity kept at most, over all buffers.
    pub(super) const MAX_TOTAL: usize = 128 << 20;

    static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    fn lock() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
        match POOL.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// An empty buffer with capacity for `len` bytes (wasting at most half
    /// of it), if one is kept.
    pub(super) fn take(len: usize) -> Option<Vec<u8>> {
        if len < MIN {
            return None;
        }
        let mut pool = lock();
        let fits = |b: &Vec<u8>| b.capacity() >= len && b.capacity() / 2 <= len;
        let (i, _) = pool.iter().enumerate().filter(|(_, b)| fits(b)).min_by_key(|(_, b)| b.capacity())?;
        Some(pool.swap_remove(i))
    }

    /// Keep `buf`, emptied, if it is large and the budget allows; drop it
    /// otherwise. With `secret`, its whole capacity is wiped first, either
    /// way.
    pub(super) fn give(mut buf: Vec<u8>, secret: bool) {
        if secret {
            crate::memory::wipe_vec(&mut buf);
        }
        let capacity = buf.capacity();
        if !(MIN..=MAX_TOTAL).contains(&capacity) {
            return;
        }
        buf.clear();
        let mut pool = lock();
        let kept: usize = pool.iter().map(Vec::capacity).sum();
        if kept + capacity <= MAX_TOTAL {
            pool.push(buf);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn buffers_come_back_empty_and_secret_ones_wiped_and_the_pool_is_bounded() {
            // Sizes no other test uses, so that concurrent tests cannot
            // take these buffers.
            let len = MIN + 12_345;
            let mut buf = Vec::with_capacity(len);
            buf.extend(std::iter::repeat_n(0xa5u8, len));
            let ptr = buf.as_ptr();
            give(buf, false);
            // Handed back: empty, the same allocation, not wiped (public).
            let mut again = take(len).expect("kept");
            assert_eq!(again.as_ptr(), ptr);
            assert!(again.is_empty() && again.capacity() >= len);
            // SAFETY: the bytes were initialized before the buffer was kept.
            unsafe { again.set_len(len) };
            assert!(again.iter().all(|b| *b == 0xa5), "a public buffer is not wiped");
            assert!(take(MIN - 1).is_none());
            // A secret buffer is wiped, its whole capacity.
            let cap = again.capacity();
            give(again, true);
            let mut wiped = take(len).expect("kept");
            assert_eq!(wiped.as_ptr(), ptr);
            // SAFETY: the wipe initialized the whole capacity.
            unsafe { wiped.set_len(cap) };
            assert!(wiped.iter().all(|b| *b == 0), "a secret buffer was kept unwiped");
            // The budget holds.
            for _ in 0..(MAX_TOTAL / MIN + 4) {
                give(vec![1u8; MIN + 7], false);
            }
            assert!(lock().iter().map(Vec::capacity).sum::<usize>() <= MAX_TOTAL);
        }
    }
}
