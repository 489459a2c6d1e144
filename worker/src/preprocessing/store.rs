//! One party's durable store of preprocessed material: batches generated
//! ahead of jobs, kept on disk until a job uses them or they expire.
//!
//! What this module owns: the on-disk format of a batch, the ledger of
//! batches that must never be used (again), and the rules that make use
//! once-only across crashes. Agreeing with the peers on *which* batches a
//! job uses is the caller's (every party must consume the same ids); the
//! store gives it what it needs: the [`BatchMeta::digest`] parties compare
//! and a consume operation that is durable before it returns material.
//!
//! # Layout
//!
//! ```text
//! DIR/                        mode 0700
//!   ledger                    the use-once record (below), mode 0600
//!   batches/<id>.batch        one batch, mode 0600
//! ```
//!
//! # Batch file (little-endian)
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `COHORTB1` |
//! | 4 | `H`, the length of the header |
//! | `H` | header: session id (16), sequence (8), kind (1: 0 triples, 1 division pairs, 2 bit triples, 3 edaBits, 4 daBits), divisor (8), count (8), created (8, Unix seconds), party index (4), federation (2 + bytes), parties (2, then each 2 + bytes) |
//! | 32 | [`BatchMeta::digest`] of the header's agreed fields |
//! | `8 · W` | this party's shares, part after part ([`part_words`]) |
//! | 32 | SHA-256 of the shares |
//!
//! The parts, and so `W`, follow from the kind and `count`:
//!
//! | kind | `count` counts | parts (words each) |
//! |---|---|---|
//! | triples | triples | `a`, `b`, `c` (`count` each) |
//! | division pairs | pairs | `r`, `m`, `q` (`count` each) |
//! | bit triples | 64-triple words | planes `a`, `b`, `c` (`count` each) |
//! | edaBits | edaBits | `r` (`count`), the 64-plane bundle of its bits (`64 · ⌈count/64⌉`) |
//! | daBits | daBits | the ring shares (`count`), the one-plane bundle (`⌈count/64⌉`) |
//!
//! A bundle's width is the kind's (64 or 1) and its length `count` (64 ·
//! `count` for bit triples), laid out as [`crate::gf2::Bits`] holds it:
//! plane after plane, 64 elements to a word.
//!
//! The header is public; the shares are secret, so the file is private to
//! the worker's user, and is overwritten before it is unlinked.
//!
//! # Use once
//!
//! The ledger is a [`LineLog`]: `consume <id>` or `discard <id>` per line,
//! each made durable before the operation goes on. [`Store::consume`]
//! records the id, *then* reads the batch, *then* overwrites and removes
//! the file. A crash anywhere leaves the id recorded (so the batch is never
//! read again: [`Store::open`] finishes removing recorded batches) or not
//! recorded with the file intact (so nothing was used). The same holds for
//! [`Store::discard`] (a batch another party consumed, or one that failed
//! its checks) and for expiry ([`Store::expire`]).

use super::durable::{IoError, LineLog, LogError, create_private_dir, io, overwrite_and_remove, write_private};
use super::{BatchId, BitTripleShares, DaBitShares, DivPairShares, EdaBitShares, TripleShares};
use crate::gf2::{Bits, words_for};
use crate::program::{hex, unhex};
use crate::sharing::Share;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{info, warn};

/// The ledger's first line.
pub const LEDGER_HEADER: &str = "cohort-preprocessing-ledger 1";
const MAGIC: &[u8; 8] = b"COHORTB1";

/// What a batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoredKind {
    Triples,
    DivPairs {
        divisor: u64,
    },
    /// Bit triples, counted in 64-triple words (as [`super::Demand`] does).
    BitTriples,
    EdaBits,
    DaBits,
}

/// The words of each part of a batch of `count` items of `kind` (the
/// batch file's layout).
pub fn part_words(kind: StoredKind, count: usize) -> Vec<usize> {
    match kind {
        StoredKind::Triples | StoredKind::DivPairs { .. } | StoredKind::BitTriples => vec![count; 3],
        StoredKind::EdaBits => vec![count, 64 * words_for(count)],
        StoredKind::DaBits => vec![count, words_for(count)],
    }
}

/// A batch's public description. Every field but `party` and `created`
/// is the same at every party holding shares of the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    pub id: BatchId,
    pub kind: StoredKind,
    pub count: usize,
    pub federation: String,
    /// The parties sharing the batch, in share order.
    pub parties: Vec<String>,
    /// Whose shares this file holds (index into `parties`).
    pub party: usize,
    /// When this party stored it (Unix seconds).
    pub created: u64,
}

impl BatchMeta {
    /// SHA-256 over the fields every party agrees on (id, kind, divisor,
    /// count, federation, parties; length-prefixed): what the parties
    /// compare before a job uses the batch, so that a mismatch is an error
    /// and never a wrong answer.
    pub fn digest(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"cohort/preprocessing/batch/v1\0");
        ctx.update(&self.id.session);
        ctx.update(&self.id.seq.to_le_bytes());
        let (kind, divisor) = kind_code(self.kind);
        ctx.update(&[kind]);
        ctx.update(&divisor.to_le_bytes());
        ctx.update(&(self.count as u64).to_le_bytes());
        ctx.update(&(self.federation.len() as u64).to_le_bytes());
        ctx.update(self.federation.as_bytes());
        ctx.update(&(self.parties.len() as u64).to_le_bytes());
        for p in &self.parties {
            ctx.update(&(p.len() as u64).to_le_bytes());
            ctx.update(p.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

fn kind_code(kind: StoredKind) -> (u8, u64) {
    match kind {
        StoredKind::Triples => (0, 0),
        StoredKind::DivPairs { divisor } => (1, divisor),
        StoredKind::BitTriples => (2, 0),
        StoredKind::EdaBits => (3, 0),
        StoredKind::DaBits => (4, 0),
    }
}

/// This party's shares of one batch.
#[derive(Debug)]
pub enum StoredMaterial {
    Triples(TripleShares),
    DivPairs(DivPairShares),
    BitTriples(BitTripleShares),
    EdaBits(EdaBitShares),
    DaBits(DaBitShares),
}

impl StoredMaterial {
    /// The parts as the batch file holds them ([`part_words`]).
    fn parts(&self) -> Vec<&[u64]> {
        match self {
            StoredMaterial::Triples(t) => vec![t.a.expose(), t.b.expose(), t.c.expose()],
            StoredMaterial::DivPairs(d) => vec![d.r.expose(), d.msb.expose(), d.q.expose()],
            StoredMaterial::BitTriples(t) => vec![t.a.words(), t.b.words(), t.c.words()],
            StoredMaterial::EdaBits(e) => vec![e.r.expose(), e.bits.words()],
            StoredMaterial::DaBits(d) => vec![d.arith.expose(), d.bits.words()],
        }
    }

    /// Whether this is `count` items of `kind`: the kind, every part's
    /// length, and each bundle's width and length.
    fn fits(&self, kind: StoredKind, count: usize) -> bool {
        let shape = match (kind, self) {
            (StoredKind::Triples, StoredMaterial::Triples(_)) => true,
            (StoredKind::DivPairs { divisor }, StoredMaterial::DivPairs(d)) => d.divisor == divisor,
            (StoredKind::BitTriples, StoredMaterial::BitTriples(t)) => {
                [&t.a, &t.b, &t.c].iter().all(|b| b.width() == 1 && b.len() == 64 * count)
            }
            (StoredKind::EdaBits, StoredMaterial::EdaBits(e)) => e.bits.width() == 64 && e.bits.len() == count,
            (StoredKind::DaBits, StoredMaterial::DaBits(d)) => d.bits.width() == 1 && d.bits.len() == count,
            _ => false,
        };
        shape && self.parts().iter().map(|p| p.len()).eq(part_words(kind, count))
    }
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the preprocessing store: {0}")]
    Io(#[from] IoError),
    #[error("the preprocessing store's ledger {}, line {line}: {reason}; the store refuses to open rather than forget which batches were used", path.display())]
    Ledger { path: PathBuf, line: usize, reason: String },
    /// A batch file that fails its checks. It is never used.
    #[error("the preprocessing batch {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("batch {0} was already used or discarded; refusing to use it again")]
    Used(BatchId),
    #[error("batch {0} is not in the store")]
    Missing(BatchId),
    #[error("batch {id}: {reason}")]
    Invalid { id: BatchId, reason: String },
}

impl From<LogError> for StoreError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Io(e) => StoreError::Io(e),
            LogError::Corrupt { path, line, reason } => StoreError::Ledger { path, line, reason },
        }
    }
}

/// One party's store, open.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    ledger: LineLog,
    /// Ids recorded in the ledger: never used again.
    spent: HashSet<BatchId>,
    /// Batches on disk and usable, by id.
    batches: BTreeMap<BatchId, BatchMeta>,
    /// Consumed and discarded since the store was opened.
    counts: (u64, u64),
}

/// `<session hex>-<sequence, 16 hex digits>`: how the ledger and file names
/// write a batch id.
pub(crate) fn id_text(id: BatchId) -> String {
    format!("{}-{:016x}", hex(&id.session), id.seq)
}

fn file_name(id: BatchId) -> String {
    format!("{}.batch", id_text(id))
}

pub(crate) fn parse_id(text: &str) -> Option<BatchId> {
    let (session, seq) = text.split_once('-')?;
    let session = unhex::<16>(session)?;
    if seq.len() != 16 {
        return None;
    }
    Some(BatchId { session, seq: u64::from_str_radix(seq, 16).ok()? })
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Store {
    /// Open (or create) the store in `dir`: load the ledger, finish removing
    /// every recorded batch still on disk (a crash after the record), and
    /// index the usable batches, checking each header. A batch whose header
    /// does not parse is discarded with a warning.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(&dir.join("batches"))?;
        let opened = LineLog::open(&dir.join("ledger"), LEDGER_HEADER)?;
        let mut spent = HashSet::new();
        for (line, text) in &opened.records {
            let id =
                text.strip_prefix("consume ").or_else(|| text.strip_prefix("discard ")).and_then(parse_id).ok_or_else(
                    || StoreError::Ledger {
                        path: opened.log.path().to_path_buf(),
                        line: *line,
                        reason: "expected `consume <id>` or `discard <id>`".into(),
                    },
                )?;
            spent.insert(id);
        }
        if opened.dropped_tail > 0 {
            warn!(path = %opened.log.path().display(), bytes = opened.dropped_tail,
                "the preprocessing ledger ends in a torn record (a crash while writing it); dropping it: \
                 that batch was not used");
        }
        let mut store =
            Store { dir: dir.to_path_buf(), ledger: opened.log, spent, batches: BTreeMap::new(), counts: (0, 0) };
        let batches_dir = dir.join("batches");
        let entries = std::fs::read_dir(&batches_dir).map_err(io(&batches_dir, "list"))?;
        for entry in entries {
            let path = entry.map_err(io(&batches_dir, "list"))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('.') {
                // A temporary file of a write that never finished.
                overwrite_and_remove(&path)?;
                continue;
            }
            let Some(id) = name.strip_suffix(".batch").and_then(parse_id) else {
                warn!(path = %path.display(), "not a batch file; leaving it alone");
                continue;
            };
            if store.spent.contains(&id) {
                overwrite_and_remove(&path)?;
                continue;
            }
            match read_header(&path) {
                Ok(meta) if meta.id == id => {
                    store.batches.insert(id, meta);
                }
                Ok(_) => store.discard_file(id, &path, "its header names another batch")?,
                Err(e) => store.discard_file(id, &path, &e.to_string())?,
            }
        }
        info!(dir = %dir.display(), batches = store.batches.len(), spent = store.spent.len(), "the preprocessing store is open");
        Ok(store)
    }

    fn path_of(&self, id: BatchId) -> PathBuf {
        self.dir.join("batches").join(file_name(id))
    }

    fn discard_file(&mut self, id: BatchId, path: &Path, why: &str) -> Result<(), StoreError> {
        warn!(path = %path.display(), reason = why, "discarding a preprocessing batch that fails its checks");
        self.discard(id)
    }

    /// Record `verb id` in the ledger, durably, and never use `id` again.
    fn record(&mut self, verb: &str, id: BatchId) -> Result<(), StoreError> {
        self.ledger.append(&format!("{verb} {}", id_text(id)))?;
        self.spent.insert(id);
        match verb {
            "consume" => self.counts.0 += 1,
            _ => self.counts.1 += 1,
        }
        Ok(())
    }

    /// Batches consumed and discarded since the store was opened.
    pub fn counts(&self) -> (u64, u64) {
        self.counts
    }

    /// The usable batches, in id order.
    pub fn batches(&self) -> impl Iterator<Item = &BatchMeta> {
        self.batches.values()
    }

    /// The usable batch `id`, if any.
    pub fn get(&self, id: BatchId) -> Option<&BatchMeta> {
        self.batches.get(&id)
    }

    /// Whether `id` was used or discarded (and so must never be used).
    pub fn is_spent(&self, id: BatchId) -> bool {
        self.spent.contains(&id)
    }

    /// Items available of `kind`.
    pub fn available(&self, kind: StoredKind) -> usize {
        self.batches.values().filter(|m| m.kind == kind).map(|m| m.count).sum()
    }

    /// Usable batches and items, by kind.
    pub fn by_kind(&self) -> BTreeMap<StoredKind, (usize, usize)> {
        let mut kinds: BTreeMap<StoredKind, (usize, usize)> = BTreeMap::new();
        for meta in self.batches.values() {
            let entry = kinds.entry(meta.kind).or_default();
            entry.0 += 1;
            entry.1 += meta.count;
        }
        kinds
    }

    /// The creation time of the oldest usable batch.
    pub fn oldest(&self) -> Option<u64> {
        self.batches.values().map(|m| m.created).min()
    }

    /// Store a new batch durably (written whole, private, then indexed).
    /// Refuses an id already stored or spent.
    pub fn put(&mut self, meta: BatchMeta, material: &StoredMaterial) -> Result<(), StoreError> {
        let id = meta.id;
        if self.spent.contains(&id) || self.batches.contains_key(&id) {
            return Err(StoreError::Invalid { id, reason: "the id is already stored or was used".into() });
        }
        let names_fit = meta.parties.len() <= usize::from(u16::MAX)
            && std::iter::once(&meta.federation).chain(&meta.parties).all(|n| n.len() <= usize::from(u16::MAX));
        if !material.fits(meta.kind, meta.count) || !names_fit || meta.party >= meta.parties.len() {
            return Err(StoreError::Invalid { id, reason: "the material does not match its description".into() });
        }
        let bytes = encode(&meta, material);
        write_private(&self.path_of(id), &bytes)?;
        self.batches.insert(id, meta);
        Ok(())
    }

    /// Use batch `id`: record it in the ledger (durably), then read and
    /// check it, then overwrite and remove its file. `expected` is the
    /// digest the peers hold; a different one is an error, and the batch
    /// is discarded rather than used.
    pub fn consume(&mut self, id: BatchId, expected: &[u8; 32]) -> Result<StoredMaterial, StoreError> {
        if self.spent.contains(&id) {
            return Err(StoreError::Used(id));
        }
        let meta = self.batches.remove(&id).ok_or(StoreError::Missing(id))?;
        self.record("consume", id)?;
        let path = self.path_of(id);
        let result = if &meta.digest() != expected {
            Err(StoreError::Invalid {
                id,
                reason: "this party's batch differs from the peers' (digest mismatch)".into(),
            })
        } else {
            read_batch(&path).and_then(|(m, material)| {
                if m == meta {
                    Ok(material)
                } else {
                    Err(StoreError::Corrupt { path: path.clone(), reason: "the header changed on disk".into() })
                }
            })
        };
        overwrite_and_remove(&path)?;
        result
    }

    /// Never use batch `id` (it was used or refused elsewhere): record it,
    /// then overwrite and remove its file. Idempotent.
    pub fn discard(&mut self, id: BatchId) -> Result<(), StoreError> {
        if self.spent.contains(&id) {
            return Ok(());
        }
        self.batches.remove(&id);
        self.record("discard", id)?;
        overwrite_and_remove(&self.path_of(id))?;
        Ok(())
    }

    /// Discard every batch created more than `ttl` before `now` (Unix
    /// seconds); the discarded ids.
    pub fn expire(&mut self, now: u64, ttl: Duration) -> Result<Vec<BatchId>, StoreError> {
        let old: Vec<BatchId> =
            self.batches.values().filter(|m| now.saturating_sub(m.created) > ttl.as_secs()).map(|m| m.id).collect();
        for id in &old {
            self.discard(*id)?;
        }
        Ok(old)
    }
}

/// Run `f` on a shared store off the async threads (the store fsyncs).
/// The outer `Err` says why the store could not be reached (a thread
/// panicked holding it, or the task failed); the inner one is `f`'s.
pub async fn on_store<T, E>(
    store: &std::sync::Arc<std::sync::Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T, E> + Send + 'static,
) -> Result<Result<T, E>, String>
where
    T: Send + 'static,
    E: Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = store.lock().map_err(|_| "a thread panicked holding it".to_string())?;
        Ok(f(&mut store))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A new batch description stamped with the current time.
pub fn describe(
    id: BatchId,
    kind: StoredKind,
    count: usize,
    federation: &str,
    parties: &[String],
    party: usize,
) -> BatchMeta {
    BatchMeta {
        id,
        kind,
        count,
        federation: federation.to_string(),
        parties: parties.to_vec(),
        party,
        created: unix_now(),
    }
}

fn encode_header(meta: &BatchMeta) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&meta.id.session);
    h.extend_from_slice(&meta.id.seq.to_le_bytes());
    let (kind, divisor) = kind_code(meta.kind);
    h.push(kind);
    h.extend_from_slice(&divisor.to_le_bytes());
    h.extend_from_slice(&(meta.count as u64).to_le_bytes());
    h.extend_from_slice(&meta.created.to_le_bytes());
    h.extend_from_slice(&(meta.party as u32).to_le_bytes());
    put_str(&mut h, &meta.federation);
    h.extend_from_slice(&(meta.parties.len() as u16).to_le_bytes());
    for p in &meta.parties {
        put_str(&mut h, p);
    }
    h
}

/// A name as its length (2 bytes) and UTF-8 bytes. Names are DNS labels,
/// far shorter than 2^16.
fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u16).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn encode(meta: &BatchMeta, material: &StoredMaterial) -> zeroize::Zeroizing<Vec<u8>> {
    let header = encode_header(meta);
    let body_words: usize = part_words(meta.kind, meta.count).iter().sum();
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(8 + 4 + header.len() + 32 + 8 * body_words + 32));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&meta.digest());
    let body_start = out.len();
    for part in material.parts() {
        for x in part {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    let checksum = ring::digest::digest(&ring::digest::SHA256, &out[body_start..]);
    out.extend_from_slice(checksum.as_ref());
    out
}

/// Reads the fields of a header, refusing anything out of shape.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated header".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }
}

fn decode_header(bytes: &[u8]) -> Result<BatchMeta, String> {
    let mut r = Reader(bytes);
    let mut session = [0u8; 16];
    session.copy_from_slice(r.take(16)?);
    let seq = r.u64()?;
    let kind = r.take(1)?[0];
    let divisor = r.u64()?;
    let kind = match (kind, divisor) {
        (0, 0) => StoredKind::Triples,
        (1, d) if d > 0 => StoredKind::DivPairs { divisor: d },
        (2, 0) => StoredKind::BitTriples,
        (3, 0) => StoredKind::EdaBits,
        (4, 0) => StoredKind::DaBits,
        _ => return Err("unknown material kind".into()),
    };
    let count = usize::try_from(r.u64()?).map_err(|_| "count out of range")?;
    let created = r.u64()?;
    let mut p = [0u8; 4];
    p.copy_from_slice(r.take(4)?);
    let party = u32::from_le_bytes(p) as usize;
    let federation = r.string()?;
    let n = r.u16()? as usize;
    let parties = (0..n).map(|_| r.string()).collect::<Result<Vec<_>, _>>()?;
    if !r.0.is_empty() || party >= parties.len() {
        return Err("malformed header".into());
    }
    Ok(BatchMeta { id: BatchId { session, seq }, kind, count, federation, parties, party, created })
}

/// Check the header at the start of `bytes` (a prefix of a batch file of
/// `file_len` bytes, at least through the digest): the metadata and where
/// the shares start.
fn parse_header(path: &Path, bytes: &[u8], file_len: u64) -> Result<(BatchMeta, usize), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { path: path.to_path_buf(), reason };
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(corrupt("not a batch file (bad magic or too short)".into()));
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let body_start = 12 + len + 32;
    if len > HEADER_MAX || bytes.len() < body_start {
        return Err(corrupt("truncated or oversized header".into()));
    }
    let meta = decode_header(&bytes[12..12 + len]).map_err(corrupt)?;
    if meta.digest()[..] != bytes[12 + len..body_start] {
        return Err(corrupt("the header does not match its digest".into()));
    }
    // In u128: a forged count must not overflow the check.
    let expected = body_start as u128 + 8 * part_words_checked(meta.kind, meta.count) + 32;
    if u128::from(file_len) != expected {
        return Err(corrupt(format!("{file_len} bytes, expected {expected}")));
    }
    Ok((meta, body_start))
}

/// [`part_words`] summed without overflow, for any `count` a header
/// declares.
fn part_words_checked(kind: StoredKind, count: usize) -> u128 {
    let count = count as u128;
    match kind {
        StoredKind::Triples | StoredKind::DivPairs { .. } | StoredKind::BitTriples => 3 * count,
        StoredKind::EdaBits => count + 64 * count.div_ceil(64),
        StoredKind::DaBits => count + count.div_ceil(64),
    }
}

/// The longest header a batch file may declare.
const HEADER_MAX: usize = 1 << 20;

/// The header of a batch file, checked (the shares are not read).
fn read_header(path: &Path) -> Result<BatchMeta, StoreError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(io(path, "open"))?;
    let file_len = file.metadata().map_err(io(path, "read the size"))?.len();
    let mut prefix = Vec::new();
    file.take(12 + HEADER_MAX as u64 + 32).read_to_end(&mut prefix).map_err(io(path, "read"))?;
    let mut fixed = [0u8; 4];
    if let Some(len) = prefix.get(8..12) {
        fixed.copy_from_slice(len);
        prefix.truncate(12 + (u32::from_le_bytes(fixed) as usize).min(HEADER_MAX) + 32);
    }
    parse_header(path, &prefix, file_len).map(|(meta, _)| meta)
}

/// The whole batch, every check passed, from one read of the file.
fn read_batch(path: &Path) -> Result<(BatchMeta, StoredMaterial), StoreError> {
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(io(path, "read"))?);
    let (meta, body_start) = parse_header(path, &bytes, bytes.len() as u64)?;
    let body = &bytes[body_start..bytes.len() - 32];
    if ring::digest::digest(&ring::digest::SHA256, body).as_ref() != &bytes[bytes.len() - 32..] {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: "the shares do not match their checksum".into(),
        });
    }
    // The file's size was checked: every part has its kind's length.
    let (words, _) = body.as_chunks::<8>();
    let mut parts = Vec::new();
    let mut start = 0;
    for n in part_words(meta.kind, meta.count) {
        parts.push(zeroize::Zeroizing::new(words[start..start + n].iter().map(|w| u64::from_le_bytes(*w)).collect()));
        start += n;
    }
    let mut parts = parts.into_iter();
    let mut next =
        || parts.next().map(|mut p: zeroize::Zeroizing<Vec<u64>>| std::mem::take(&mut *p)).unwrap_or_default();
    let count = meta.count;
    let bundle = |width: usize, len: usize, words: Vec<u64>| {
        Bits::from_words(width, len, words).ok_or_else(|| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: "a bundle has the wrong number of words".into(),
        })
    };
    let material = match meta.kind {
        StoredKind::Triples => StoredMaterial::Triples(TripleShares {
            a: Share::new(next()),
            b: Share::new(next()),
            c: Share::new(next()),
        }),
        StoredKind::DivPairs { divisor } => StoredMaterial::DivPairs(DivPairShares {
            divisor,
            r: Share::new(next()),
            msb: Share::new(next()),
            q: Share::new(next()),
            g: Share::new(Vec::new()),
        }),
        StoredKind::BitTriples => StoredMaterial::BitTriples(BitTripleShares {
            a: bundle(1, 64 * count, next())?,
            b: bundle(1, 64 * count, next())?,
            c: bundle(1, 64 * count, next())?,
        }),
        StoredKind::EdaBits => {
            StoredMaterial::EdaBits(EdaBitShares { r: Share::new(next()), bits: bundle(64, count, next())? })
        }
        StoredKind::DaBits => {
            StoredMaterial::DaBits(DaBitShares { arith: Share::new(next()), bits: bundle(1, count, next())? })
        }
    };
    Ok((meta, material))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64, count: usize, party: usize) -> BatchMeta {
        describe(
            BatchId { session: [7; 16], seq },
            StoredKind::Triples,
            count,
            "fed",
            &["a".to_string(), "b".to_string()],
            party,
        )
    }

    fn triples(count: usize, base: u64) -> StoredMaterial {
        let v = |k: u64| Share::new((0..count as u64).map(|i| base + 10 * i + k).collect());
        StoredMaterial::Triples(TripleShares { a: v(0), b: v(1), c: v(2) })
    }

    fn values(m: &StoredMaterial) -> Vec<Vec<u64>> {
        m.parts().iter().map(|s| s.to_vec()).collect()
    }

    #[test]
    fn a_batch_round_trips_once_and_never_again_even_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let m = meta(0, 5, 1);
        store.put(m.clone(), &triples(5, 100)).unwrap();
        store.put(meta(1, 3, 1), &triples(3, 900)).unwrap();
        assert_eq!(store.available(StoredKind::Triples), 8);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path_of(m.id)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // The digest ignores whose shares and when: the peer's matches.
        let mut peer = m.clone();
        peer.party = 0;
        peer.created += 99;
        assert_eq!(peer.digest(), m.digest());
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get(m.id), Some(&m));
        let got = store.consume(m.id, &m.digest()).unwrap();
        assert_eq!(values(&got), values(&triples(5, 100)));
        assert!(!store.path_of(m.id).exists());
        assert!(matches!(store.consume(m.id, &m.digest()), Err(StoreError::Used(_))));
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        assert!(store.is_spent(m.id) && store.get(m.id).is_none());
        assert!(matches!(store.consume(m.id, &m.digest()), Err(StoreError::Used(_))));
        assert!(store.put(m.clone(), &triples(5, 1)).is_err(), "a spent id is never stored again");
        assert_eq!(store.available(StoredKind::Triples), 3);
    }

    #[test]
    fn a_crash_after_the_record_never_leaves_a_usable_batch() {
        let dir = tempfile::tempdir().unwrap();
        let m = meta(4, 2, 0);
        {
            let mut store = Store::open(dir.path()).unwrap();
            store.put(m.clone(), &triples(2, 1)).unwrap();
        }
        // Simulate a crash right after the ledger record of a consume: the
        // record is durable, the file still there.
        {
            let mut ledger = LineLog::open(&dir.path().join("ledger"), LEDGER_HEADER).unwrap().log;
            ledger.append("consume 07070707070707070707070707070707-0000000000000004").unwrap();
        }
        let path = dir.path().join("batches").join(file_name(m.id));
        assert!(path.exists());
        let store = Store::open(dir.path()).unwrap();
        assert!(store.is_spent(m.id) && store.get(m.id).is_none());
        assert!(!path.exists(), "the recorded batch is removed when the store opens");
    }

    #[test]
    fn mismatched_and_corrupt_batches_are_refused_and_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let m = meta(0, 4, 0);
        store.put(m.clone(), &triples(4, 1)).unwrap();
        let mut other = m.clone();
        other.count = 5;
        let err = store.consume(m.id, &other.digest()).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        assert!(store.is_spent(m.id), "a mismatched batch is never used later either");
        // Flip a share byte on disk: the checksum catches it.
        let m2 = meta(1, 4, 0);
        store.put(m2.clone(), &triples(4, 1)).unwrap();
        let path = store.path_of(m2.id);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = store.consume(m2.id, &m2.digest()).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        // A truncated file is discarded when the store opens.
        let m3 = meta(2, 4, 0);
        store.put(m3.clone(), &triples(4, 1)).unwrap();
        let path = store.path_of(m3.id);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.is_spent(m3.id) && !path.exists());
    }

    #[test]
    fn expiry_discards_old_batches_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut old = meta(0, 1, 0);
        old.created = 1_000;
        let mut new = meta(1, 1, 0);
        new.created = 5_000;
        store.put(old.clone(), &triples(1, 1)).unwrap();
        store.put(new.clone(), &triples(1, 1)).unwrap();
        assert_eq!(store.oldest(), Some(1_000));
        let gone = store.expire(5_000, Duration::from_secs(3_600)).unwrap();
        assert_eq!(gone, vec![old.id]);
        assert!(store.is_spent(old.id) && store.get(new.id).is_some());
        assert!(!store.path_of(old.id).exists());
    }
}
