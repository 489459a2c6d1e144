//! The `cohort-dealer` service: a TRUSTED THIRD PARTY that deals
//! preprocessing material to the parties of a federation over mutually
//! authenticated TLS 1.3.
//!
//! **Trust.** The dealer learns every triple and division pair it deals (see
//! the [`dealer`](super) module documentation): whoever runs it must be
//! trusted by every party not to collude with any of them. It never sees an
//! input or an output.
//!
//! # Identities
//!
//! The dealer's certificate names the service principal `dealer/<name>`
//! (URI SAN `spiffe://<federation>/dealer/<name>`); it accepts TLS clients
//! whose certificate names one of the federation's parties
//! ([`DealerConfig::parties`]) and chains to a CA trusted for that party.
//! A request is honoured only when the party it names is the party the
//! client's certificate names.
//!
//! # Protocol (versions 1 and 2)
//!
//! One TLS connection per party per job. All integers are little-endian
//! (like the batch wire format); every length is checked against its bound
//! before anything is allocated for it.
//!
//! The party sends one **request**:
//!
//! | size | field |
//! |---|---|
//! | 4 | magic `b"CHDQ"` |
//! | 1 | version (`1`; `2` when the plan has binary kinds; `3` when it has permutation steps) |
//! | 4 | body length `L` (u32, at most [`DealerLimits::max_request_bytes`]) |
//! | 16 | job id ([`JobId`]) |
//! | 1 + k | the requesting party's name (length byte, 1..=63 bytes) |
//! | 2 | number of parties `P` (u16, 2..=[`MAX_PARTIES`]) |
//! | P × (1 + k) | the job's parties in job order (length byte + name each) |
//! | 8 | largest number of items per batch the party accepts (u64, 1..=[`MAX_BATCH_ITEMS`](super::MAX_BATCH_ITEMS)) |
//! | 4 | number of layers `N` (u32, at most [`MAX_LAYERS`]) |
//! | N × … | per layer: triples (u64), divisor groups `G` (u32, at most [`MAX_DIVISOR_GROUPS`](super::MAX_DIVISOR_GROUPS)), then `G` × (divisor u64, count u64); versions 2 and 3 then bit-triple words, edaBits, daBits (u64 each); version 3 then a permutation flag (u8, 0 or 1) and when 1 the permuter (u32), length and columns (u64 each) |
//!
//! The body must be exactly `L` bytes. A party writes version 1 when its
//! plan has no binary kinds (bit triples, edaBits, daBits) and version 2
//! otherwise; a version-2 request whose plan has none is refused, so a plan
//! has one encoding. The dealer reads both and answers in the version it
//! was asked in, and its batches are version 1 unless they hold binary
//! kinds (see the batch format): so during a rolling upgrade an old party
//! and a new dealer, or a new party and an old dealer, still run every job
//! without comparisons; a job with them needs a dealer that speaks version
//! 2 (an old one refuses the request as an unsupported version), and a job
//! with a dealt shuffle (a sort) one that speaks version 3. A version-3
//! request without permutation steps is refused too. The
//! dealer answers with the **response preamble** `b"CHDR"`, version (the
//! request's), followed by **frames**
//! `kind (u8) | length (u32) | body`:
//!
//! | kind | body | meaning |
//! |---|---|---|
//! | 1 `READY` | batches `B` (u64), items per batch (u64) | every party asked with the same party list and plan; `B` batch frames follow |
//! | 2 `BATCH` | one [`DealerBatch::to_bytes`](super::DealerBatch::to_bytes) | the next batch, in plan order |
//! | 3 `END` | batches sent (u64) | the stream is complete |
//! | 4 `FAILURE` | code (u8), reason (UTF-8, at most [`MAX_REASON_BYTES`]) | the job failed; nothing more follows |
//!
//! The first frame is `READY` or `FAILURE`; `FAILURE` may also end a stream
//! after `READY`. Failure codes: 1 refused (identity, bad request, limits),
//! 2 mismatch (parties disagree on the party list or the plan), 3 timeout
//! (a party never asked, or stalled), 4 reused job id, 5 stream failure
//! (another party disconnected, the dealer failed or is shutting down).
//!
//! # Jobs
//!
//! Requests are grouped by job id. When every party of the job's list has
//! asked with an identical party list and plan, the dealer creates a fresh
//! [`TrustedDealer`] for the job, splits each layer into batches of at most
//! the smallest requested (and configured) batch size with
//! [`split_demand`], and streams each party its batches in lockstep through
//! a bounded buffer per party ([`DealerLimits::buffer_batches`]): a slow
//! party holds the others back by at most that many batches, and a party
//! that reads nothing for [`DealerTimeouts::stall`] fails the job. A job id
//! is served once; the dealer remembers served and failed ids (up to
//! [`DealerLimits::remembered_jobs`]) and refuses them. With a
//! [`Journal`] ([`DealerServer::with_journal`], `cohort-dealer
//! --state-dir`), every job id is recorded durably before its first batch
//! is dealt and recorded ids are refused for ever, across restarts; a job
//! whose record cannot be written is failed, never dealt. Any disagreement (a
//! different plan or party list, a party asking for a job it is not part
//! of) or a party missing at [`DealerTimeouts::gather`] fails the job for
//! every waiting party, with a reason that names the party.
//!
//! Logs name jobs, parties and counts, never material, seeds or keys.

use super::journal::{Journal, plan_digest};
use super::metrics::DealerMetrics;
use super::{MAX_BATCH_ITEMS, MAX_DIVISOR_GROUPS, TrustedDealer, split_demand, validate_demand};
use crate::preprocessing::{Demand, MaterialPlan, PermutationDemand};
use crate::transport::certs::{PartyIdentity, describe, party_identity, validate_name};
use crate::transport::tls::ReportSlot;
use crate::transport::{JobId, Role, SharedIdentity};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, info, warn};
use zeroize::Zeroizing;

/// Request magic.
pub(crate) const REQUEST_MAGIC: [u8; 4] = *b"CHDQ";
/// Response magic.
pub(crate) const RESPONSE_MAGIC: [u8; 4] = *b"CHDR";
/// The version of the dealer protocol for plans with binary kinds; this
/// build also speaks [`PROTOCOL_VERSION_ARITHMETIC`] and
/// [`PROTOCOL_VERSION_PERMUTATION`].
pub const PROTOCOL_VERSION: u8 = 2;
/// The version for plans with permutation steps (dealt shuffles).
pub const PROTOCOL_VERSION_PERMUTATION: u8 = 3;
/// The version for plans without binary kinds, the only one builds before
/// them speak.
pub const PROTOCOL_VERSION_ARITHMETIC: u8 = 1;
/// The most parties a job may have.
pub const MAX_PARTIES: usize = 256;
/// The most layers a plan may have.
pub const MAX_LAYERS: usize = 1 << 20;
/// The longest failure reason sent or accepted.
pub const MAX_REASON_BYTES: usize = 4096;
/// Bytes of the request before its body (magic, version, body length).
pub(crate) const REQUEST_HEADER: usize = 9;
/// Bytes of a frame header (kind, length).
pub(crate) const FRAME_HEADER: usize = 5;

pub(crate) mod kind {
    pub(crate) const READY: u8 = 1;
    pub(crate) const BATCH: u8 = 2;
    pub(crate) const END: u8 = 3;
    pub(crate) const FAILURE: u8 = 4;
}

/// Why a job failed, as sent in a `FAILURE` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureCode {
    /// The request was refused (identity, malformed request, limits).
    Refused = 1,
    /// The parties disagree on the party list or the material plan.
    Mismatch = 2,
    /// A party never asked in time, or stalled.
    Timeout = 3,
    /// The job id was already served (or failed); ids are never reused.
    Reused = 4,
    /// The stream failed after it started, or the dealer is shutting down.
    Stream = 5,
}

impl FailureCode {
    pub(crate) fn from_u8(b: u8) -> Option<FailureCode> {
        Some(match b {
            1 => FailureCode::Refused,
            2 => FailureCode::Mismatch,
            3 => FailureCode::Timeout,
            4 => FailureCode::Reused,
            5 => FailureCode::Stream,
            _ => return None,
        })
    }
}

/// A job's failure: a code and a reason that names the job and party
/// (never material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) code: FailureCode,
    pub(crate) reason: String,
}

impl Failure {
    fn new(code: FailureCode, reason: impl Into<String>) -> Failure {
        Failure { code, reason: reason.into() }
    }
}

/// A party's request for its stream of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) job: JobId,
    pub(crate) party: String,
    pub(crate) parties: Vec<String>,
    pub(crate) max_batch_items: usize,
    pub(crate) plan: MaterialPlan,
}

impl Request {
    /// The version this request is written in: the lowest that holds its
    /// plan.
    pub(crate) fn version(&self) -> u8 {
        if self.plan.has_permutations() {
            PROTOCOL_VERSION_PERMUTATION
        } else if self.plan.has_binary() {
            PROTOCOL_VERSION
        } else {
            PROTOCOL_VERSION_ARITHMETIC
        }
    }

    /// Encode (header and body). Checks the bounds the dealer checks.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, String> {
        check_request(self)?;
        let mut body = Vec::new();
        body.extend_from_slice(&self.job.0);
        put_name(&mut body, &self.party);
        body.extend_from_slice(&(self.parties.len() as u16).to_le_bytes());
        for p in &self.parties {
            put_name(&mut body, p);
        }
        body.extend_from_slice(&(self.max_batch_items as u64).to_le_bytes());
        body.extend_from_slice(&(self.plan.layers.len() as u32).to_le_bytes());
        for layer in &self.plan.layers {
            body.extend_from_slice(&(layer.triples as u64).to_le_bytes());
            body.extend_from_slice(&(layer.div_pairs.len() as u32).to_le_bytes());
            for &(d, n) in &layer.div_pairs {
                body.extend_from_slice(&d.to_le_bytes());
                body.extend_from_slice(&(n as u64).to_le_bytes());
            }
            if self.version() != PROTOCOL_VERSION_ARITHMETIC {
                for n in [layer.bit_triple_words, layer.edabits, layer.dabits] {
                    body.extend_from_slice(&(n as u64).to_le_bytes());
                }
            }
            if self.version() == PROTOCOL_VERSION_PERMUTATION {
                match layer.permutation {
                    None => body.push(0),
                    Some(p) => {
                        body.push(1);
                        // `check_request` bounded the permuter by the parties.
                        body.extend_from_slice(&(p.permuter as u32).to_le_bytes());
                        body.extend_from_slice(&(p.len as u64).to_le_bytes());
                        body.extend_from_slice(&(p.columns as u64).to_le_bytes());
                    }
                }
            }
        }
        let len = u32::try_from(body.len()).map_err(|_| "the request is larger than 4 GiB".to_string())?;
        let mut out = Vec::with_capacity(REQUEST_HEADER + body.len());
        out.extend_from_slice(&REQUEST_MAGIC);
        out.push(self.version());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decode a request body (after the header) of protocol `version`,
    /// strictly.
    pub(crate) fn decode_body(version: u8, body: &[u8]) -> Result<Request, String> {
        let mut r = Reader { bytes: body, pos: 0 };
        let job = JobId(r.take(16)?.try_into().map_err(|_| "truncated job id")?);
        let party = r.name()?;
        let count = r.u16()? as usize;
        if !(2..=MAX_PARTIES).contains(&count) {
            return Err(format!("{count} parties; a job has 2 to {MAX_PARTIES}"));
        }
        let mut parties = Vec::with_capacity(count);
        for _ in 0..count {
            parties.push(r.name()?);
        }
        let max_batch_items = r.u64()?;
        let max_batch_items = usize::try_from(max_batch_items)
            .ok()
            .filter(|n| (1..=MAX_BATCH_ITEMS).contains(n))
            .ok_or_else(|| format!("items per batch must be 1 to {MAX_BATCH_ITEMS}"))?;
        let layers = r.u32()? as usize;
        if layers > MAX_LAYERS {
            return Err(format!("{layers} layers, at most {MAX_LAYERS}"));
        }
        // Every layer takes at least 12 bytes.
        let mut plan = MaterialPlan { layers: Vec::with_capacity(layers.min(r.remaining() / 12)) };
        for _ in 0..layers {
            let triples = r.count()?;
            let groups = r.u32()? as usize;
            if groups > MAX_DIVISOR_GROUPS {
                return Err(format!("{groups} divisor groups in a layer, at most {MAX_DIVISOR_GROUPS}"));
            }
            let mut div_pairs = Vec::with_capacity(groups.min(r.remaining() / 16));
            for _ in 0..groups {
                let d = r.u64()?;
                let n = r.count()?;
                div_pairs.push((d, n));
            }
            let mut layer = Demand { triples, div_pairs, ..Default::default() };
            if version != PROTOCOL_VERSION_ARITHMETIC {
                layer.bit_triple_words = r.count()?;
                layer.edabits = r.count()?;
                layer.dabits = r.count()?;
            }
            if version == PROTOCOL_VERSION_PERMUTATION {
                layer.permutation = match r.u8()? {
                    0 => None,
                    1 => Some(PermutationDemand { permuter: r.u32()? as usize, len: r.count()?, columns: r.count()? }),
                    other => return Err(format!("permutation flag {other}, expected 0 or 1")),
                };
            }
            plan.layers.push(layer);
        }
        if r.remaining() != 0 {
            return Err("trailing bytes after the plan".into());
        }
        if version == PROTOCOL_VERSION && !plan.has_binary() {
            return Err("a version 2 request whose plan has no binary kinds (version 1 encodes it)".into());
        }
        if version == PROTOCOL_VERSION_PERMUTATION && !plan.has_permutations() {
            return Err("a version 3 request whose plan has no permutation steps (version 1 or 2 encodes it)".into());
        }
        let req = Request { job, party, parties, max_batch_items, plan };
        check_request(&req)?;
        Ok(req)
    }
}

/// The bounds both sides check: names, party list, plan invariants.
fn check_request(req: &Request) -> Result<(), String> {
    validate_name("party", &req.party)?;
    if !(2..=MAX_PARTIES).contains(&req.parties.len()) {
        return Err(format!("{} parties; a job has 2 to {MAX_PARTIES}", req.parties.len()));
    }
    for (i, p) in req.parties.iter().enumerate() {
        validate_name("party", p)?;
        if req.parties[..i].contains(p) {
            return Err(format!("party {p} is listed twice in the job's party list"));
        }
    }
    if !(1..=MAX_BATCH_ITEMS).contains(&req.max_batch_items) {
        return Err(format!("items per batch must be 1 to {MAX_BATCH_ITEMS}"));
    }
    if req.plan.layers.len() > MAX_LAYERS {
        return Err(format!("{} layers, at most {MAX_LAYERS}", req.plan.layers.len()));
    }
    for (i, layer) in req.plan.layers.iter().enumerate() {
        validate_demand(layer).map_err(|e| format!("layer {i}: {e}"))?;
        if let Some(p) = layer.permutation.filter(|p| p.permuter >= req.parties.len()) {
            return Err(format!(
                "layer {i}: a permutation step for party {}, the job has {}",
                p.permuter,
                req.parties.len()
            ));
        }
    }
    Ok(())
}

/// Items of one layer (triples, division pairs, bit-triple words, edaBits
/// and daBits, as [`split_demand`] counts them), saturating.
fn layer_items(l: &Demand) -> u64 {
    if let Some(p) = l.permutation {
        return p.elements() as u64;
    }
    let binary = [l.bit_triple_words, l.edabits, l.dabits].iter().fold(0u64, |acc, &n| acc.saturating_add(n as u64));
    l.div_pairs.iter().fold((l.triples as u64).saturating_add(binary), |acc, &(_, n)| acc.saturating_add(n as u64))
}

/// Total items of a plan (saturating).
pub(crate) fn plan_items(plan: &MaterialPlan) -> u64 {
    plan.layers.iter().fold(0u64, |acc, l| acc.saturating_add(layer_items(l)))
}

/// Number of batches a plan splits into at `max_items` per batch (empty
/// layers yield none).
pub(crate) fn batch_count(plan: &MaterialPlan, max_items: usize) -> u64 {
    let max = max_items.max(1) as u64;
    // A permutation step is one batch (`split_demand`).
    let batches = |l: &Demand| if l.permutation.is_some() { 1 } else { layer_items(l).div_ceil(max) };
    plan.layers.iter().fold(0u64, |acc, l| acc.saturating_add(batches(l)))
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    // Names are validated (1..=63 bytes) before encoding.
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err("truncated".into());
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.take(N)?.try_into().map_err(|_| "truncated".to_string())
    }
    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn count(&mut self) -> Result<usize, String> {
        let n = self.u64()?;
        usize::try_from(n).ok().filter(|&n| n <= u32::MAX as usize).ok_or_else(|| "count too large".to_string())
    }
    fn name(&mut self) -> Result<String, String> {
        let len = self.u8()? as usize;
        let bytes = self.take(len)?;
        let name = std::str::from_utf8(bytes).map_err(|_| "a party name is not UTF-8".to_string())?;
        validate_name("party", name)?;
        Ok(name.to_string())
    }
}

/// Write one frame.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, kind: u8, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| std::io::Error::other("frame larger than 4 GiB"))?;
    let mut header = [0u8; FRAME_HEADER];
    header[0] = kind;
    header[1..].copy_from_slice(&len.to_le_bytes());
    w.write_all(&header).await?;
    w.write_all(body).await?;
    w.flush().await
}

pub(crate) fn failure_body(f: &Failure) -> Vec<u8> {
    let mut end = f.reason.len().min(MAX_REASON_BYTES);
    while !f.reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut body = Vec::with_capacity(1 + end);
    body.push(f.code as u8);
    body.extend_from_slice(&f.reason.as_bytes()[..end]);
    body
}

/// Size limits of the dealer service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DealerLimits {
    /// Jobs gathering requests or being dealt at once (default 64).
    pub max_jobs: usize,
    /// Connections open at once (default 1024); more are closed at once.
    pub max_connections: usize,
    /// Largest request body (default 1 MiB).
    pub max_request_bytes: usize,
    /// Largest batch the dealer deals, in items (default 65536); a party may
    /// ask for smaller batches.
    pub max_batch_items: usize,
    /// Most items (triples plus division pairs) one job may ask for
    /// (default 2^32).
    pub max_job_items: u64,
    /// Batches buffered per party (default 4).
    pub buffer_batches: usize,
    /// Served or failed job ids remembered, to refuse their reuse (default
    /// 65536).
    pub remembered_jobs: usize,
}

impl Default for DealerLimits {
    fn default() -> Self {
        DealerLimits {
            max_jobs: 64,
            max_connections: 1024,
            max_request_bytes: 1 << 20,
            max_batch_items: 1 << 16,
            max_job_items: 1 << 32,
            buffer_batches: 4,
            remembered_jobs: 1 << 16,
        }
    }
}

/// Time limits of the dealer service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DealerTimeouts {
    /// Bound on the TLS handshake plus reading the request (default 10 s).
    pub handshake: Duration,
    /// Every party of a job must ask within this time of the first
    /// (default 60 s).
    pub gather: Duration,
    /// Longest a party's stream may stall (its buffer full, or a write
    /// blocked) before the job fails (default 120 s).
    pub stall: Duration,
    /// On shutdown, how long running streams get to finish (default 5 s).
    pub shutdown_grace: Duration,
}

impl Default for DealerTimeouts {
    fn default() -> Self {
        DealerTimeouts {
            handshake: Duration::from_secs(10),
            gather: Duration::from_secs(60),
            stall: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What the dealer serves.
#[derive(Clone, Debug)]
pub struct DealerConfig {
    /// The federation's parties the dealer serves (their certificates are
    /// accepted; a job's party list must be drawn from them).
    pub parties: Vec<String>,
    pub limits: DealerLimits,
    pub timeouts: DealerTimeouts,
}

impl DealerConfig {
    pub fn new(parties: Vec<String>) -> DealerConfig {
        DealerConfig { parties, limits: DealerLimits::default(), timeouts: DealerTimeouts::default() }
    }
}

/// A configuration the dealer cannot run with.
#[derive(Debug, thiserror::Error)]
#[error("dealer configuration: {0}")]
pub struct DealerConfigError(pub String);

/// The dealer server: a TRUSTED THIRD PARTY serving dealt material (see the
/// module documentation for the protocol).
pub struct DealerServer {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl fmt::Debug for DealerServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DealerServer")
            .field("principal", &self.shared.identity.current().party())
            .field("parties", &self.shared.config.parties)
            .finish_non_exhaustive()
    }
}

impl DealerServer {
    /// A server on `listener` (already bound) with the dealer's identity
    /// (principal `dealer/<name>`), serving `config.parties`.
    pub fn new(
        listener: TcpListener,
        identity: impl Into<SharedIdentity>,
        config: DealerConfig,
    ) -> Result<DealerServer, DealerConfigError> {
        Self::build(listener, identity.into(), config, None)
    }

    /// Like [`DealerServer::new`], recording every job in `journal` before
    /// dealing it and refusing every job id the journal already holds (see
    /// [`super::journal`]). Without a journal, served ids are remembered in
    /// memory only and a restarted dealer forgets them.
    pub fn with_journal(
        listener: TcpListener,
        identity: impl Into<SharedIdentity>,
        config: DealerConfig,
        journal: Journal,
    ) -> Result<DealerServer, DealerConfigError> {
        Self::build(listener, identity.into(), config, Some(journal))
    }

    fn build(
        listener: TcpListener,
        shared_identity: SharedIdentity,
        config: DealerConfig,
        journal: Option<Journal>,
    ) -> Result<DealerServer, DealerConfigError> {
        let bad = |m: String| Err(DealerConfigError(m));
        let identity = shared_identity.current();
        match identity.party().split_once('/') {
            Some((role, _)) if role == Role::Dealer.as_str() => {}
            _ => {
                return bad(format!(
                    "the TLS identity is for {}, not a dealer (dealer/<name>)",
                    describe(identity.party())
                ));
            }
        }
        if config.parties.len() < 2 {
            return bad("the dealer serves at least 2 parties".into());
        }
        for (i, p) in config.parties.iter().enumerate() {
            validate_name("party", p).map_err(DealerConfigError)?;
            if config.parties[..i].contains(p) {
                return bad(format!("party {p} is listed twice"));
            }
        }
        let l = &config.limits;
        if l.max_jobs == 0 || l.max_connections == 0 || l.buffer_batches == 0 || l.remembered_jobs == 0 {
            return bad("max_jobs, max_connections, buffer_batches and remembered_jobs must be positive".into());
        }
        if !(1..=MAX_BATCH_ITEMS).contains(&l.max_batch_items) {
            return bad(format!("max_batch_items must be 1 to {MAX_BATCH_ITEMS}"));
        }
        if l.max_request_bytes < 64 || l.max_request_bytes > u32::MAX as usize {
            return bad("max_request_bytes must be 64 bytes to 4 GiB".into());
        }
        let t = &config.timeouts;
        if t.handshake.is_zero() || t.gather.is_zero() || t.stall.is_zero() {
            return bad("timeouts must be non-zero".into());
        }
        // Fails early if the identity trusts no CA for a listed party.
        identity.server_config(&config.parties, ReportSlot::default()).map_err(|e| DealerConfigError(e.to_string()))?;
        let state =
            State { journaled: journal.as_ref().map(|j| j.served().clone()).unwrap_or_default(), ..State::default() };
        let shared = Arc::new(Shared {
            jobs: Arc::new(Semaphore::new(config.limits.max_jobs)),
            metrics: Arc::new(DealerMetrics::new(shared_identity.clone())),
            identity: shared_identity,
            config,
            state: Mutex::new(state),
            nonce: AtomicU64::new(0),
            journal: journal.map(|j| Arc::new(Mutex::new(j))),
        });
        Ok(DealerServer { listener, shared })
    }

    /// The address the server listens on.
    /// The dealer's metrics (serve them with [`DealerMetrics::render`]).
    pub fn metrics(&self) -> Arc<DealerMetrics> {
        self.shared.metrics.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` completes. Then stop accepting, fail every job
    /// still gathering requests, give running streams
    /// [`DealerTimeouts::shutdown_grace`] to finish, and close the rest.
    pub async fn run<F: Future<Output = ()>>(self, shutdown: F) {
        let shared = self.shared;
        let conns = Arc::new(Semaphore::new(shared.config.limits.max_connections));
        let mut tasks = JoinSet::new();
        info!(
            principal = %shared.identity.current().party(),
            parties = shared.config.parties.len(),
            "trusted dealer (a trusted third party) serving"
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, addr)) => match conns.clone().try_acquire_owned() {
                        Ok(permit) => {
                            tasks.spawn(serve_connection(shared.clone(), tcp, addr, permit));
                        }
                        Err(_) => debug!(%addr, "connection limit reached; closing a new connection"),
                    },
                    Err(e) => {
                        debug!(error = %e, "accept failed");
                        sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
        info!("trusted dealer shutting down");
        shared.fail_all_pending(Failure::new(FailureCode::Stream, "the trusted dealer is shutting down"));
        let grace = shared.config.timeouts.shutdown_grace;
        let _ = timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        tasks.abort_all();
    }
}

/// A frame queued for one party.
enum Frame {
    Batch(Zeroizing<Vec<u8>>),
    End(u64),
    Failure(Failure),
}

/// Why a party's connection task stopped taking frames (set before it
/// drops its receiver, read by the dealing task).
/// Why a party's stream stopped, and whether the party stalled (stopped
/// reading: the job fails for everyone) rather than left (the others'
/// streams go on).
type StopReason = Arc<Mutex<Option<(String, bool)>>>;

/// What a waiting party learns once its job is complete or failed.
enum Outcome {
    Go { rx: mpsc::Receiver<Frame>, why: StopReason, batches: u64, batch_items: usize },
    Refused(Failure),
}

struct Gathering {
    nonce: u64,
    parties: Vec<String>,
    plan: MaterialPlan,
    /// The first party that asked (named in mismatch reasons).
    first: String,
    batch_items: usize,
    waiters: Vec<Option<oneshot::Sender<Outcome>>>,
    permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct State {
    gathering: HashMap<JobId, Gathering>,
    /// Served or failed job ids and why they cannot be asked for again.
    finished: HashMap<JobId, String>,
    finished_order: VecDeque<JobId>,
    /// Job ids recorded in the journal (loaded at start, then each dealt
    /// job): never forgotten.
    journaled: HashSet<JobId>,
}

impl State {
    fn finish(&mut self, job: JobId, why: String, remembered: usize) {
        if self.finished.insert(job, why).is_none() {
            self.finished_order.push_back(job);
        }
        while self.finished_order.len() > remembered {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }
}

struct Shared {
    /// Read anew for every handshake: renewed files take effect at once.
    identity: SharedIdentity,
    metrics: Arc<DealerMetrics>,
    config: DealerConfig,
    state: Mutex<State>,
    jobs: Arc<Semaphore>,
    nonce: AtomicU64,
    /// The durable record of dealt jobs, when the dealer has a state
    /// directory.
    journal: Option<Arc<Mutex<Journal>>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fail a gathering job for every waiting party and remember its id.
    fn fail_job(&self, st: &mut State, job: JobId, failure: &Failure) {
        if let Some(g) = st.gathering.remove(&job) {
            warn!(job = %job, reason = %failure.reason, "job failed before dealing");
            self.metrics.job("failed");
            for tx in g.waiters.into_iter().flatten() {
                let _ = tx.send(Outcome::Refused(failure.clone()));
            }
        }
        st.finish(job, format!("it failed: {}", failure.reason), self.config.limits.remembered_jobs);
    }

    fn fail_all_pending(&self, failure: Failure) {
        let mut st = self.lock();
        let jobs: Vec<JobId> = st.gathering.keys().copied().collect();
        for job in jobs {
            self.fail_job(&mut st, job, &failure);
        }
    }

    fn expire(&self, job: JobId, nonce: u64) {
        let mut st = self.lock();
        let Some(g) = st.gathering.get(&job).filter(|g| g.nonce == nonce) else { return };
        let missing: Vec<&str> =
            g.parties.iter().zip(&g.waiters).filter(|(_, w)| w.is_none()).map(|(p, _)| p.as_str()).collect();
        let failure = Failure::new(
            FailureCode::Timeout,
            format!(
                "job {job}: party {} did not ask the trusted dealer within {:?} of the first request",
                missing.join(", party "),
                self.config.timeouts.gather
            ),
        );
        self.fail_job(&mut st, job, &failure);
    }

    /// Register an authenticated party's request; the receiver learns when
    /// the job starts or fails. `Err` refuses this request alone (the job,
    /// if it fails too, has been failed for the others).
    fn submit(self: &Arc<Self>, principal: &str, req: Request) -> Result<oneshot::Receiver<Outcome>, Failure> {
        let job = req.job;
        let refused = |m: String| Err(Failure::new(FailureCode::Refused, m));
        if principal != req.party {
            return refused(format!(
                "job {job}: the request claims party {} but the client's certificate identifies {}",
                req.party,
                describe(principal)
            ));
        }
        if let Some(p) = req.parties.iter().find(|p| !self.config.parties.contains(p)) {
            return refused(format!("job {job}: party {p} of the job's party list is not served by this dealer"));
        }
        let items = plan_items(&req.plan);
        if items > self.config.limits.max_job_items {
            return refused(format!(
                "job {job}: the plan holds {items} items, this dealer deals at most {} per job",
                self.config.limits.max_job_items
            ));
        }
        let mut st = self.lock();
        if st.journaled.contains(&job) {
            return Err(Failure::new(
                FailureCode::Reused,
                format!(
                    "job {job} was already dealt (it is recorded in the trusted dealer's journal); a job id is \
                     never reused"
                ),
            ));
        }
        if let Some(why) = st.finished.get(&job) {
            return Err(Failure::new(
                FailureCode::Reused,
                format!("job {job} was already served or failed ({why}); a job id is never reused"),
            ));
        }
        let Some(me) = req.parties.iter().position(|p| *p == req.party) else {
            let failure = Failure::new(
                FailureCode::Mismatch,
                format!("job {job}: party {} asked for the job but is not in its party list", req.party),
            );
            if st.gathering.contains_key(&job) {
                self.fail_job(&mut st, job, &failure);
            }
            return Err(failure);
        };
        let (tx, rx) = oneshot::channel();
        let batch_items = req.max_batch_items.min(self.config.limits.max_batch_items);
        let Some(g) = st.gathering.get_mut(&job) else {
            let Ok(permit) = self.jobs.clone().try_acquire_owned() else {
                return refused(format!(
                    "job {job}: the trusted dealer is serving its limit of {} jobs; try again later",
                    self.config.limits.max_jobs
                ));
            };
            let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
            let mut waiters: Vec<Option<oneshot::Sender<Outcome>>> = req.parties.iter().map(|_| None).collect();
            waiters[me] = Some(tx);
            info!(job = %job, party = %req.party, parties = req.parties.len(), layers = req.plan.layers.len(), items, "first request of a job");
            st.gathering.insert(
                job,
                Gathering {
                    nonce,
                    parties: req.parties,
                    plan: req.plan,
                    first: req.party,
                    batch_items,
                    waiters,
                    permit,
                },
            );
            let shared = self.clone();
            let gather = self.config.timeouts.gather;
            tokio::spawn(async move {
                sleep(gather).await;
                shared.expire(job, nonce);
            });
            return Ok(rx);
        };
        if g.waiters[me].is_some() {
            return refused(format!("job {job}: party {} already asked for this job", req.party));
        }
        let mismatch = if g.parties != req.parties {
            Some("party list")
        } else if g.plan != req.plan {
            Some("material plan")
        } else {
            None
        };
        if let Some(what) = mismatch {
            let failure = Failure::new(
                FailureCode::Mismatch,
                format!("job {job}: party {} asked with a different {what} than party {}", req.party, g.first),
            );
            self.fail_job(&mut st, job, &failure);
            return Err(failure);
        }
        g.waiters[me] = Some(tx);
        g.batch_items = g.batch_items.min(batch_items);
        debug!(job = %job, party = %req.party, "request joined a job");
        if g.waiters.iter().all(Option::is_some)
            && let Some(g) = st.gathering.remove(&job)
        {
            st.finish(job, "it was served".into(), self.config.limits.remembered_jobs);
            drop(st);
            self.start(job, g);
        }
        Ok(rx)
    }

    /// Every party has asked (the id is already marked finished): record
    /// the job durably, then hand each party its stream and deal. A job
    /// whose record fails is failed for every party and never dealt.
    fn start(self: &Arc<Self>, job: JobId, g: Gathering) {
        let shared = self.clone();
        tokio::spawn(async move {
            match shared.record(job, &g).await {
                Ok(()) => shared.deal(job, g).await,
                Err(failure) => {
                    for tx in g.waiters.into_iter().flatten() {
                        let _ = tx.send(Outcome::Refused(failure.clone()));
                    }
                }
            }
        });
    }

    /// Append `job` to the journal and fsync (off the async threads).
    async fn record(&self, job: JobId, g: &Gathering) -> Result<(), Failure> {
        let Some(journal) = &self.journal else { return Ok(()) };
        let digest = plan_digest(&g.parties, &g.plan);
        let journal = journal.clone();
        let written = tokio::task::spawn_blocking(move || {
            journal.lock().unwrap_or_else(|p| p.into_inner()).record(job, &digest).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("the journal writer panicked".into()));
        match written {
            Ok(()) => {
                self.lock().journaled.insert(job);
                debug!(job = %job, "job recorded in the dealer journal");
                Ok(())
            }
            Err(error) => {
                warn!(job = %job, %error, "cannot record the job in the dealer journal; it is not dealt");
                Err(Failure::new(
                    FailureCode::Stream,
                    format!(
                        "job {job}: the trusted dealer could not record the job in its journal, so it deals nothing \
                         for it (see the dealer's log)"
                    ),
                ))
            }
        }
    }

    /// Hand each party its stream and deal.
    async fn deal(&self, job: JobId, g: Gathering) {
        let Gathering { parties, plan, batch_items, waiters, permit, .. } = g;
        let batches = batch_count(&plan, batch_items);
        let mut senders = Vec::with_capacity(parties.len());
        let mut whys = Vec::with_capacity(parties.len());
        for waiter in waiters.into_iter().flatten() {
            let (tx, rx) = mpsc::channel(self.config.limits.buffer_batches);
            // A party whose connection is gone shows up as a closed stream.
            let why = StopReason::default();
            let _ = waiter.send(Outcome::Go { rx, why: why.clone(), batches, batch_items });
            senders.push(tx);
            whys.push(why);
        }
        info!(
            job = %job,
            parties = parties.len(),
            batches,
            batch_items,
            triples = plan.total_triples(),
            div_pairs = plan.total_div_pairs(),
            bit_triples = plan.total_bit_triples(),
            edabits = plan.total_edabits(),
            dabits = plan.total_dabits(),
            "dealing a job"
        );
        let stall = self.config.timeouts.stall;
        // Counts only: material never appears in a span.
        let span = tracing::info_span!(
            "deal",
            job.id = %job,
            parties = parties.len(),
            batches,
            batch_items,
            material.triples = plan.total_triples(),
            material.div_pairs = plan.total_div_pairs(),
            material.bit_triples = plan.total_bit_triples(),
            material.edabits = plan.total_edabits(),
            material.dabits = plan.total_dabits()
        );
        let dealt = deal_job(job, &parties, &plan, batch_items, &senders, &whys, stall).instrument(span).await;
        if dealt {
            self.metrics.job("dealt");
            self.metrics.dealt(&plan.totals(), parties.len() as u64);
        } else {
            self.metrics.job("failed");
        }
        drop(permit);
    }
}

/// Deal `plan` to every party in lockstep through the bounded `senders`;
/// `true` when it was dealt to the end.
async fn deal_job(
    job: JobId,
    parties: &[String],
    plan: &MaterialPlan,
    batch_items: usize,
    senders: &[mpsc::Sender<Frame>],
    whys: &[StopReason],
    stall: Duration,
) -> bool {
    let fail = |failure: Failure| {
        warn!(job = %job, reason = %failure.reason, "dealing stopped");
        for tx in senders {
            let tx = tx.clone();
            let f = Failure::new(failure.code, failure.reason.clone());
            tokio::spawn(async move {
                let _ = timeout(stall, tx.send(Frame::Failure(f))).await;
            });
        }
        false
    };
    let mut dealer = match TrustedDealer::new(parties.len()) {
        Ok(d) => d,
        Err(e) => return fail(Failure::new(FailureCode::Stream, format!("job {job}: the trusted dealer failed: {e}"))),
    };
    let mut sent = 0u64;
    // A party that disconnects does not stop the others' streams: they
    // learn of its departure from their mesh, which names it. Stopping
    // here would reach them first, as a dealer failure, and each would
    // abort without sending its next message — the parties would then
    // blame each other rather than the party that left.
    let mut gone = vec![false; senders.len()];
    for demand in plan.layers.iter().filter(|d| !d.is_empty()) {
        for piece in split_demand(demand, batch_items) {
            let dealt = tokio::task::spawn_blocking(move || {
                let result = dealer.deal(&piece).map(|b| b.iter().map(|b| b.to_bytes()).collect::<Vec<_>>());
                (dealer, result)
            })
            .await;
            let encoded = match dealt {
                Ok((d, Ok(encoded))) => {
                    dealer = d;
                    encoded
                }
                Ok((_, Err(e))) => {
                    return fail(Failure::new(
                        FailureCode::Stream,
                        format!("job {job}: the trusted dealer failed: {e}"),
                    ));
                }
                Err(_) => {
                    return fail(Failure::new(FailureCode::Stream, format!("job {job}: the trusted dealer failed")));
                }
            };
            for (i, (tx, bytes)) in senders.iter().zip(encoded).enumerate() {
                if gone[i] {
                    continue;
                }
                let reason = match timeout(stall, tx.send(Frame::Batch(bytes))).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) => {
                        let why = whys[i].lock().ok().and_then(|w| w.clone());
                        match why {
                            Some((why, true)) => format!("job {job}: party {} {why}", parties[i]),
                            left => {
                                let why = left.map_or_else(|| "disconnected".into(), |(why, _)| why);
                                info!(job = %job, party = %parties[i], %why, "a party left; dealing to the others goes on");
                                gone[i] = true;
                                if gone.iter().all(|g| *g) {
                                    return false;
                                }
                                continue;
                            }
                        }
                    }
                    Err(_) => format!("job {job}: party {} did not read its material within {stall:?}", parties[i]),
                };
                let code = FailureCode::Stream;
                return fail(Failure::new(code, reason));
            }
            sent += 1;
        }
    }
    for (i, tx) in senders.iter().enumerate().filter(|(i, _)| !gone[*i]) {
        if timeout(stall, tx.send(Frame::End(sent))).await.is_err() {
            debug!(job = %job, party = %parties[i], "could not queue the end of the stream");
        }
    }
    info!(job = %job, batches = sent, "job dealt");
    true
}

/// One party's connection: authenticate, read the request, wait for the
/// job, stream the frames.
async fn serve_connection(shared: Arc<Shared>, tcp: TcpStream, addr: SocketAddr, _permit: OwnedSemaphorePermit) {
    let _ = tcp.set_nodelay(true);
    let t = shared.config.timeouts;
    let report = ReportSlot::default();
    let identity = shared.identity.current();
    let config = match identity.server_config(&shared.config.parties, report.clone()) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot build the TLS server configuration");
            return;
        }
    };
    let mut tls = match timeout(t.handshake, TlsAcceptor::from(config).accept(tcp)).await {
        Err(_) => {
            debug!(%addr, "TLS handshake did not finish in time");
            return;
        }
        Ok(Err(e)) => {
            let failure = report.lock().ok().and_then(|mut r| r.failure.take());
            match failure {
                Some(f) => {
                    shared.metrics.refused("handshake");
                    warn!(%addr, reason = %f, "refused a client certificate")
                }
                None => debug!(%addr, error = %e, "TLS handshake failed"),
            }
            return;
        }
        Ok(Ok(s)) => s,
    };
    let principal = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| party_identity(identity.federation(), c).ok());
    let Some(PartyIdentity::Party(principal)) = principal else {
        // The verifier accepts only named parties; never serve a connection
        // we cannot attribute.
        warn!(%addr, "could not attribute an authenticated connection");
        return;
    };
    // Answer in the version the party asked in (version 1 until its
    // header says otherwise, so an old party understands the refusal).
    let mut version = PROTOCOL_VERSION_ARITHMETIC;
    let request = match timeout(
        t.handshake,
        read_request(&mut tls, shared.config.limits.max_request_bytes, &mut version),
    )
    .await
    {
        Err(_) => Err(format!("no complete request within {:?}", t.handshake)),
        Ok(r) => r,
    };
    let request = match request {
        Ok(r) => r,
        Err(reason) => {
            warn!(%addr, party = %principal, %reason, "refused a malformed request");
            let f = Failure::new(
                FailureCode::Refused,
                format!("malformed request from {}: {reason}", describe(&principal)),
            );
            refuse(&mut tls, &f, version, t.handshake).await;
            return;
        }
    };
    let job = request.job;
    let party = request.party.clone();
    let outcome = match shared.submit(&principal, request) {
        Ok(rx) => rx.await.unwrap_or_else(|_| {
            Outcome::Refused(Failure::new(
                FailureCode::Stream,
                format!("job {job}: the trusted dealer dropped the job"),
            ))
        }),
        Err(f) => Outcome::Refused(f),
    };
    let (mut rx, why, batches, batch_items) = match outcome {
        Outcome::Refused(f) => {
            info!(job = %job, party = %party, reason = %f.reason, "request refused");
            shared.metrics.refused("request");
            refuse(&mut tls, &f, version, t.handshake).await;
            return;
        }
        Outcome::Go { rx, why, batches, batch_items } => (rx, why, batches, batch_items),
    };
    let mut ready = Vec::with_capacity(16);
    ready.extend_from_slice(&batches.to_le_bytes());
    ready.extend_from_slice(&(batch_items as u64).to_le_bytes());
    let started = async {
        tls.write_all(&RESPONSE_MAGIC).await?;
        tls.write_all(&[version]).await?;
        write_frame(&mut tls, kind::READY, &ready).await
    };
    let stop = |reason: String, stalled: bool| {
        info!(job = %job, party = %party, %reason, "stream to the party stopped");
        if let Ok(mut w) = why.lock() {
            *w = Some((reason, stalled));
        }
    };
    if !matches!(timeout(t.stall, started).await, Ok(Ok(()))) {
        return stop("went away before its stream started".into(), false);
    }
    let mut frames = 0u64;
    while let Some(frame) = rx.recv().await {
        let (k, body, last): (u8, Zeroizing<Vec<u8>>, bool) = match frame {
            Frame::Batch(bytes) => (kind::BATCH, bytes, false),
            Frame::End(n) => (kind::END, Zeroizing::new(n.to_le_bytes().to_vec()), true),
            Frame::Failure(f) => (kind::FAILURE, Zeroizing::new(failure_body(&f)), true),
        };
        match timeout(t.stall, write_frame(&mut tls, k, &body)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return stop(format!("disconnected from the trusted dealer ({e})"), false),
            Err(_) => return stop(format!("did not read its material within {:?}", t.stall), true),
        }
        frames += 1;
        if last {
            break;
        }
    }
    debug!(job = %job, party = %party, frames, "stream finished");
    let _ = timeout(Duration::from_secs(2), tls.shutdown()).await;
}

/// Send a refusal (preamble in `version` and `FAILURE`) and close.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, f: &Failure, version: u8, limit: Duration) {
    let body = failure_body(f);
    let _ = timeout(limit, async {
        stream.write_all(&RESPONSE_MAGIC).await?;
        stream.write_all(&[version]).await?;
        write_frame(stream, kind::FAILURE, &body).await?;
        stream.shutdown().await
    })
    .await;
}

/// Read one request, checking the header before the body is allocated;
/// `version` becomes the request's version once the header shows a
/// supported one.
async fn read_request<R: AsyncRead + Unpin>(r: &mut R, max_body: usize, version: &mut u8) -> Result<Request, String> {
    let mut header = [0u8; REQUEST_HEADER];
    r.read_exact(&mut header).await.map_err(|e| format!("reading the request header: {e}"))?;
    if header[..4] != REQUEST_MAGIC {
        return Err("bad magic (not a dealer request)".into());
    }
    if ![PROTOCOL_VERSION_ARITHMETIC, PROTOCOL_VERSION, PROTOCOL_VERSION_PERMUTATION].contains(&header[4]) {
        return Err(format!(
            "unsupported dealer protocol version {} (this dealer speaks {PROTOCOL_VERSION_ARITHMETIC} to \
             {PROTOCOL_VERSION_PERMUTATION})",
            header[4]
        ));
    }
    *version = header[4];
    let len = u32::from_le_bytes([header[5], header[6], header[7], header[8]]) as usize;
    if len > max_body {
        return Err(format!("the request body is {len} bytes, at most {max_body}"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| format!("reading the request body: {e}"))?;
    Request::decode_body(*version, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Request {
        Request {
            job: JobId([7; 16]),
            party: "bank-a".into(),
            parties: vec!["bank-a".into(), "bank-b".into()],
            max_batch_items: 100,
            plan: MaterialPlan {
                layers: vec![
                    Demand { triples: 3, div_pairs: vec![(2, 5), (1 << 16, 1)], ..Default::default() },
                    Demand::default(),
                ],
            },
        }
    }

    #[test]
    fn requests_round_trip() {
        let req = sample();
        let bytes = req.encode().unwrap();
        assert_eq!(&bytes[..4], b"CHDQ");
        assert_eq!(u32::from_le_bytes(bytes[5..9].try_into().unwrap()) as usize, bytes.len() - REQUEST_HEADER);
        assert_eq!(bytes[4], PROTOCOL_VERSION_ARITHMETIC);
        assert_eq!(Request::decode_body(1, &bytes[REQUEST_HEADER..]).unwrap(), req);
        for cut in REQUEST_HEADER..bytes.len() {
            assert!(Request::decode_body(1, &bytes[REQUEST_HEADER..cut]).is_err());
        }
        // The same plan as version 2 is refused: one encoding per plan.
        assert!(Request::decode_body(2, &bytes[REQUEST_HEADER..]).is_err());
    }

    #[test]
    fn requests_with_binary_kinds_are_version_2_and_round_trip() {
        let mut req = sample();
        req.plan.layers[1] = Demand { bit_triple_words: 3, edabits: 2, dabits: 1, ..Default::default() };
        let bytes = req.encode().unwrap();
        assert_eq!(bytes[4], PROTOCOL_VERSION);
        assert_eq!(Request::decode_body(2, &bytes[REQUEST_HEADER..]).unwrap(), req);
        assert!(Request::decode_body(1, &bytes[REQUEST_HEADER..]).is_err());
        for cut in REQUEST_HEADER..bytes.len() {
            assert!(Request::decode_body(2, &bytes[REQUEST_HEADER..cut]).is_err());
        }
        assert_eq!(plan_items(&req.plan), 3 + 5 + 1 + 6);
    }

    #[test]
    fn requests_with_permutation_steps_are_version_3_and_round_trip() {
        let mut req = sample();
        req.plan.layers.push(Demand { edabits: 2, ..Default::default() });
        for permuter in 0..2 {
            let step = PermutationDemand { permuter, len: 1000, columns: 3 };
            req.plan.layers.push(Demand { permutation: Some(step), ..Default::default() });
        }
        let bytes = req.encode().unwrap();
        assert_eq!(bytes[4], PROTOCOL_VERSION_PERMUTATION);
        assert_eq!(Request::decode_body(3, &bytes[REQUEST_HEADER..]).unwrap(), req);
        for version in [1, 2] {
            assert!(Request::decode_body(version, &bytes[REQUEST_HEADER..]).is_err());
        }
        for cut in REQUEST_HEADER..bytes.len() {
            assert!(Request::decode_body(3, &bytes[REQUEST_HEADER..cut]).is_err());
        }
        assert_eq!(plan_items(&req.plan), 3 + 5 + 1 + 2 + 2 * 3000);
        // One batch per step, whatever the batch size.
        for max in [1, 7, 100] {
            let pieces: usize = req.plan.layers.iter().map(|l| split_demand(l, max).len()).sum();
            assert_eq!(batch_count(&req.plan, max), pieces as u64);
        }
        // A permuter outside the job, and a step that holds more.
        let mut outside = req.clone();
        outside.plan.layers[3].permutation = Some(PermutationDemand { permuter: 2, len: 4, columns: 1 });
        let mut mixed = req.clone();
        mixed.plan.layers[3].triples = 1;
        for r in [outside, mixed] {
            assert!(r.encode().is_err(), "{r:?}");
        }
    }

    #[test]
    fn invalid_requests_are_refused() {
        let mut dup = sample();
        dup.parties = vec!["bank-a".into(), "bank-a".into()];
        let mut bad_plan = sample();
        bad_plan.plan.layers[0].div_pairs = vec![(5, 1), (2, 1)];
        let mut zero_batch = sample();
        zero_batch.max_batch_items = 0;
        for r in [dup, bad_plan, zero_batch] {
            assert!(r.encode().is_err(), "{r:?}");
        }
    }

    #[test]
    fn batch_counts_match_split_demand() {
        let plan = sample().plan;
        for max in [1, 2, 3, 7, 100] {
            let pieces: usize = plan.layers.iter().map(|l| split_demand(l, max).len()).sum();
            assert_eq!(batch_count(&plan, max), pieces as u64);
        }
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut prefixed = sample().encode().unwrap()[REQUEST_HEADER..REQUEST_HEADER + 30].to_vec();
            prefixed.extend_from_slice(&bytes);
            for version in [1, 2, 3] {
                let _ = Request::decode_body(version, &bytes);
                let _ = Request::decode_body(version, &prefixed);
            }
        }
    }
}
