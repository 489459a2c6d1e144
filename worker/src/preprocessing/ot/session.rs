//! One party's OT-based generator: the pairwise constructions of the
//! sibling modules run against every peer over the job transport, and
//! combined into `n`-party material.
//!
//! # Beaver triples
//!
//! Every party `i` draws `a_i`, `b_i` uniformly. For every ordered pair
//! `i ≠ j`, [`gilboa`] shares the cross product `a_i·b_j` between `i` (the
//! OT sender, correlation `a_i`) and `j` (the OT receiver, choices `b_j`).
//! Party `i` then holds
//!
//! ```text
//! c_i = a_i·b_i + Σ_{j≠i} ⟨a_i·b_j⟩_i + Σ_{j≠i} ⟨a_j·b_i⟩_i
//! ```
//!
//! and `Σ_i c_i = (Σ_i a_i)(Σ_i b_i)`: a Beaver triple over Z_2^64. With
//! every pair running both directions at once, one chunk is two messages
//! each way per pair: the IKNP matrix `u`, then the packed corrections.
//!
//! # Random bits and division pairs
//!
//! A shared uniform bit is the XOR of one private bit `β_k` per party,
//! folded in arithmetically: `[x ⊕ β_k] = [x] + β_k − 2·[x]·β_k`, where
//! `[x]·β_k` is party `k`'s local term plus a correlated OT from every
//! party `i < k` (correlation `⟨x⟩_i`, choice `β_k`; the later parties'
//! shares of `x` are still 0, so they sit the round out). That is `n − 1`
//! sequential rounds, one per party after the first, and `n(n − 1)/2`
//! correlated OTs per bit. A division pair for `d = 2^f` is
//! 64 such bits: `r = Σ 2^k r_k`, `m = r_63`, `q = Σ_{f≤k<63} 2^{k−f} r_k`
//! (see [`crate::protocol::additive::division`]). For any other divisor `q =
//! Σ_k floor(2^k/d)·r_k` and `g = Σ_k ceil((2^k mod d)·2^s/d)·r_k` are as
//! linear, and the online phase corrects the quotient in a second round.
//!
//! # Bit triples
//!
//! GMW-style, from random OTs (Asharov, Lindell, Schneider, Zohner,
//! "More Efficient Oblivious Transfer and Extensions for Faster Secure
//! Computation", CCS 2013, §5: "OT-based multiplication triples"). Every
//! party draws `a_i` and uses it as its choice bits in the IKNP extension
//! with every peer. As the extension *sender* towards peer `j`, party `i`
//! holds for each OT the two random one-bit messages `m_0 = lsb H(q)` and
//! `m_1 = lsb H(q ⊕ Δ)`; the receiver learns `m_{a_j} = m_0 ⊕ a_j·(m_0 ⊕
//! m_1)`. So with `s = m_0 ⊕ m_1`, the sender's `m_0` and the receiver's
//! `m_{a_j}` XOR-share `a_j ∧ s`: an AND of the receiver's bit and a random
//! bit of the sender, from one random OT and no correction. With two
//! parties that `s` *is* the sender's `b_i`: 2 random OTs per triple, one
//! in each direction, and nothing but the matrices on the wire. With more
//! parties `b_i` must be the same towards every peer, so it is drawn at
//! random and the sender also sends `d = s ⊕ b_i` (one bit per OT, 1/128 of
//! the matrix); the receiver adds `a_j·d`. Then
//!
//! ```text
//! c_i = a_i ∧ b_i ⊕ ⊕_{j≠i} (⟨a_j ∧ b_i⟩_i ⊕ ⟨a_i ∧ b_j⟩_i)
//! ```
//!
//! XORs to `(⊕ a_i) ∧ (⊕ b_i)`. Everything is bit-sliced: 64 triples per
//! word, the hash's lowest bits packed as they come out of a tile.
//!
//! # daBits and edaBits
//!
//! A random shared bit above is the XOR of private bits `β_k`: `β_k` is
//! party `k`'s XOR share of the bit and the arithmetic sharing is what the
//! folding computes, so the pair is a daBit (Rotaru and Wood, INDOCRYPT
//! 2019) at no extra cost. 64 daBits `b_0 … b_63` make an edaBit (Escudero,
//! Ghosh, Keller, Rachuri, Scholl, CRYPTO 2020): `r = Σ 2^k b_k`
//! arithmetically and plane `k` of the binary sharing is `b_k`; the
//! `β` of 64 consecutive bits are one word, which is the edaBit's XOR share
//! of `r` in element form, transposed into planes. (The paper's cheaper
//! construction, each party's own `r_i` in both sharings and a binary adder,
//! trades these 64 correlated OTs per edaBit for `64·(n − 1)` ANDs plus a
//! 63-round carry chain or a log-depth adder with more ANDs; measured, the
//! edaBits here are a small part of a comparison's material (see
//! docs/benchmarks.md), so the simple form stays.)
//!
//! # Messages
//!
//! Every message is [`Step::Preprocess`]`(m)` with `m` counted identically
//! at every party, so a peer that is out of step is an error, never a
//! mix-up. The heavy computations run on Tokio's blocking pool, so the
//! transport's tasks keep moving bytes meanwhile.

use super::OtError;
use super::base::{self, BaseOtSender};
use super::gilboa::{CorrectionWriter, correction_bytes, receive_cot, receive_products, send_cot, send_products};
use super::hash::CcrHash;
use super::iknp::{ExtReceiver, ExtSender, KAPPA, delta_choices, matrix_bytes};
use crate::gf2::Bits;
use crate::preprocessing::{BitTripleShares, DaBitShares, DivPairShares, EdaBitShares, TripleShares};
use crate::prg::{Prg, Seed};
use crate::sharing::Share;
use crate::transport::{Mesh, Step};
use std::collections::VecDeque;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Triples per chunk of the pipeline with each peer: the chunk's matrix
/// `u` is 4 MiB, one transport frame; larger chunks measured no faster,
/// smaller ones pay more round trips (see docs/benchmarks.md).
pub const TRIPLES_PER_CHUNK: usize = 4096;

/// The largest number of items one call generates (bounds memory).
pub const MAX_ITEMS_PER_CALL: usize = 1 << 24;

/// Words of bit triples (64 each) per chunk of the pipeline with each peer:
/// 262,144 random OTs, so the chunk's matrix `u` is 4 MiB, as for triples.
pub const BIT_WORDS_PER_CHUNK: usize = 4096;

/// The most bit-triple words one call generates (16 Mi bit triples).
pub const MAX_BIT_WORDS_PER_CALL: usize = 1 << 18;

/// Both directions of OT extension with one peer.
struct Pair {
    sender: ExtSender,
    receiver: ExtReceiver,
}

/// One party's side of OT-based generation with every peer of a mesh.
/// Secret: holds the OT extension state.
pub struct OtGenerator {
    me: usize,
    parties: usize,
    pairs: Vec<Option<Pair>>,
    hash: Arc<CcrHash>,
    next_message: u32,
    failed: Option<String>,
}

impl std::fmt::Debug for OtGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtGenerator").field("me", &self.me).field("parties", &self.parties).finish_non_exhaustive()
    }
}

pub(crate) type Words = Zeroizing<Vec<u64>>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, OtError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| OtError::Task(e.to_string()))
}

/// Check that a peer's message has the length the agreed sizes imply.
fn check_len(bytes: &[u8], expected: usize, what: &str, mesh: &Mesh, peer: usize) -> Result<(), OtError> {
    if bytes.len() != expected {
        return Err(OtError::Malformed(format!(
            "party {} sent {} bytes of {what}, expected {expected}",
            mesh.party_name(peer),
            bytes.len()
        )));
    }
    Ok(())
}

/// Run the extension receiver over `choices` and hash its rows:
/// `h[j] = H(t_j)` for the `64 · choices.len()` OTs, and the matrix `u`.
fn extend_as_receiver(receiver: &mut ExtReceiver, choices: &[u64], hash: &CcrHash) -> (Vec<u8>, Words) {
    let mut u = Vec::new();
    let mut h = Zeroizing::new(vec![0u64; 64 * choices.len()]);
    receiver.extend(choices, &mut u, |j0, rows| hash.hash_low64(rows, 0, &mut h[j0..j0 + rows.len()]));
    (u, h)
}

fn random_words(n: usize) -> Result<Words, OtError> {
    Ok(Zeroizing::new(Prg::new(&Seed::random()?).next_vec(n)))
}

fn random_delta() -> Result<u128, OtError> {
    let mut bytes = [0u8; 16];
    crate::prg::fill_random(&mut bytes)?;
    Ok(u128::from_le_bytes(bytes))
}

/// Base OTs with `peer` in both directions: this party is the base-OT
/// sender for its extension receiver and the base-OT receiver (choices
/// `Δ`) for its extension sender.
async fn setup_pair(mesh: &Mesh, peer: usize, first: u32) -> Result<Pair, OtError> {
    let (base_sender, a) = BaseOtSender::start()?;
    mesh.send(peer, Step::Preprocess(first), a.to_vec()).await?;
    let a_peer = mesh.recv(peer, Step::Preprocess(first)).await?;
    let delta = random_delta()?;
    let (chosen, reply) = base::receive(&delta_choices(delta), &a_peer).map_err(|e| named(e, mesh, peer))?;
    mesh.send(peer, Step::Preprocess(first + 1), reply).await?;
    let reply_peer = mesh.recv(peer, Step::Preprocess(first + 1)).await?;
    let keys = base_sender.finish(&reply_peer, KAPPA).map_err(|e| named(e, mesh, peer))?;
    Ok(Pair { sender: ExtSender::new(delta, &chosen), receiver: ExtReceiver::new(&keys) })
}

/// Name the peer in a malformed-message error.
fn named(e: OtError, mesh: &Mesh, peer: usize) -> OtError {
    match e {
        OtError::Malformed(m) => OtError::Malformed(format!("from party {}: {m}", mesh.party_name(peer))),
        other => other,
    }
}

type Extension = tokio::task::JoinHandle<(ExtReceiver, Vec<u8>, Words)>;

/// Start the receiver's extension for the triples `range` on the blocking
/// pool.
fn spawn_extension(
    mut receiver: ExtReceiver,
    b: &Arc<Words>,
    hash: &Arc<CcrHash>,
    range: std::ops::Range<usize>,
) -> Extension {
    let (b, hash) = (b.clone(), hash.clone());
    tokio::task::spawn_blocking(move || {
        let (u, h) = extend_as_receiver(&mut receiver, &b[range], &hash);
        (receiver, u, h)
    })
}

/// The receiver's side of the pipeline in [`pair_products`]: the extension
/// in flight, the hashed rows of chunks whose corrections are due, and the
/// extension state once no chunk is left.
struct ReceiverPipeline {
    running: Option<Extension>,
    due: VecDeque<Words>,
    idle: Option<ExtReceiver>,
}

impl ReceiverPipeline {
    /// Wait for the running extension, send its matrix as `message`, and
    /// start the extension of `next`, if any.
    async fn send_matrix(
        &mut self,
        mesh: &Mesh,
        peer: usize,
        message: u32,
        next: Option<std::ops::Range<usize>>,
        b: &Arc<Words>,
        hash: &Arc<CcrHash>,
    ) -> Result<(), OtError> {
        let task = self.running.take().ok_or_else(|| OtError::Task("the OT extension pipeline lost a chunk".into()))?;
        let (receiver, u, h) = task.await.map_err(|e| OtError::Task(e.to_string()))?;
        self.due.push_back(h);
        match next {
            Some(range) => self.running = Some(spawn_extension(receiver, b, hash, range)),
            None => self.idle = Some(receiver),
        }
        mesh.send(peer, Step::Preprocess(message), u).await?;
        Ok(())
    }
}

/// The cross products with `peer` for every triple, both directions: this
/// party's shares of `a_me·b_peer` (as sender) plus `a_peer·b_me` (as
/// receiver), chunk by chunk.
///
/// Pipelined so that both cores stay busy although every chunk is a round
/// trip: this party's matrix `u` runs one chunk ahead of its corrections,
/// and the extension of the next chunk computes while the corrections of
/// the current one do. On the link, each way, the messages are
/// `u_0, u_1, c_0, u_2, c_1, …, u_{n−1}, c_{n−2}, c_{n−1}`, numbered
/// `u_i = first + 2i`, `c_i = first + 2i + 1`.
async fn pair_products(
    mesh: &Mesh,
    peer: usize,
    pair: Pair,
    a: Arc<Words>,
    b: Arc<Words>,
    hash: Arc<CcrHash>,
    first_message: u32,
) -> Result<(Pair, Words), OtError> {
    let Pair { mut sender, receiver } = pair;
    let chunks: Vec<std::ops::Range<usize>> =
        (0..b.len()).step_by(TRIPLES_PER_CHUNK).map(|s| s..(s + TRIPLES_PER_CHUNK).min(b.len())).collect();
    let mut out = Zeroizing::new(vec![0u64; b.len()]);
    if chunks.is_empty() {
        return Ok((Pair { sender, receiver }, out));
    }
    let u_message = |i: usize| first_message + 2 * i as u32;
    let mut pipeline = ReceiverPipeline {
        running: Some(spawn_extension(receiver, &b, &hash, chunks[0].clone())),
        due: VecDeque::new(),
        idle: None,
    };
    pipeline.send_matrix(mesh, peer, u_message(0), chunks.get(1).cloned(), &b, &hash).await?;
    let mut u_peer = mesh.recv(peer, Step::Preprocess(u_message(0))).await?;
    for (i, range) in chunks.iter().enumerate() {
        let w = range.len();
        check_len(&u_peer, matrix_bytes(w), "OT extension matrix", mesh, peer)?;
        let (a, h, start) = (a.clone(), hash.clone(), range.start);
        let corrections_task = tokio::task::spawn_blocking(move || {
            let mut share = Zeroizing::new(vec![0u64; w]);
            let mut writer = CorrectionWriter::for_products(w);
            let delta = sender.delta();
            sender.extend(&u_peer, w, |j0, rows| {
                let (local, n) = (j0 / 64, rows.len() / 64);
                let t0 = start + local;
                send_products(&h, delta, rows, &a[t0..t0 + n], &mut share[local..local + n], &mut writer);
            });
            (sender, share, writer.finish())
        });
        if i + 1 < chunks.len() {
            pipeline.send_matrix(mesh, peer, u_message(i + 1), chunks.get(i + 2).cloned(), &b, &hash).await?;
        }
        let (s, share, corrections) = corrections_task.await.map_err(|e| OtError::Task(e.to_string()))?;
        sender = s;
        mesh.send(peer, Step::Preprocess(u_message(i) + 1), corrections).await?;
        if i + 1 < chunks.len() {
            u_peer = mesh.recv(peer, Step::Preprocess(u_message(i + 1))).await?;
        } else {
            u_peer = Vec::new();
        }
        let corrections_peer = mesh.recv(peer, Step::Preprocess(u_message(i) + 1)).await?;
        check_len(&corrections_peer, correction_bytes(w), "product corrections", mesh, peer)?;
        let h_t = pipeline.due.pop_front().ok_or_else(|| OtError::Task("the OT pipeline lost a chunk".into()))?;
        let out = &mut out[range.clone()];
        receive_products(&h_t, &b[range.clone()], &corrections_peer, out).map_err(|e| named(e, mesh, peer))?;
        for (o, s) in out.iter_mut().zip(share.iter()) {
            *o = o.wrapping_add(*s);
        }
    }
    let receiver = pipeline.idle.ok_or_else(|| OtError::Task("the OT extension pipeline ended early".into()))?;
    Ok((Pair { sender, receiver }, out))
}

/// Words of choices (64 correlated OTs each) per chunk of [`cot_receive`]
/// and [`cot_send`]: a 2 MiB matrix. Chunks let the sender work on one
/// chunk while the receiver extends the next.
pub const COT_CHUNK_WORDS: usize = 2048;

/// The chunks (in words of choices) of `count` correlated OTs.
fn cot_chunks(count: usize) -> Vec<std::ops::Range<usize>> {
    let words = count.div_ceil(64);
    (0..words).step_by(COT_CHUNK_WORDS).map(|s| s..(s + COT_CHUNK_WORDS).min(words)).collect()
}

/// Message numbers `count` correlated OTs take: two per chunk.
fn cot_messages(count: usize) -> u32 {
    2 * cot_chunks(count).len() as u32
}

/// Party `receiver`'s side of correlated OTs from `peer`: `y_j = X_j +
/// β_j·⟨x⟩_peer`, for `count` OTs with choices `beta`, chunk by chunk:
/// matrix `u_i` as `first + 2i`, the sender's corrections as `first + 2i +
/// 1`; the next chunk's extension computes while this chunk's corrections
/// are awaited.
async fn cot_receive(
    mesh: &Mesh,
    peer: usize,
    pair: Pair,
    beta: Arc<Words>,
    count: usize,
    hash: Arc<CcrHash>,
    first_message: u32,
) -> Result<(Pair, Words), OtError> {
    let Pair { sender, receiver } = pair;
    let chunks = cot_chunks(count);
    let mut y = Zeroizing::new(vec![0u64; count]);
    let Some(first) = chunks.first() else {
        return Ok((Pair { sender, receiver }, y));
    };
    let lost = || OtError::Task("the correlated-OT pipeline lost a chunk".into());
    let mut running = Some(spawn_extension(receiver, &beta, &hash, first.clone()));
    let mut idle = None;
    for (i, range) in chunks.iter().enumerate() {
        let (receiver, u, h) = running.take().ok_or_else(lost)?.await.map_err(|e| OtError::Task(e.to_string()))?;
        match chunks.get(i + 1) {
            Some(next) => running = Some(spawn_extension(receiver, &beta, &hash, next.clone())),
            None => idle = Some(receiver),
        }
        let message = first_message + 2 * i as u32;
        mesh.send(peer, Step::Preprocess(message), u).await?;
        let (lo, hi) = (64 * range.start, (64 * range.end).min(count));
        let d = mesh.recv(peer, Step::Preprocess(message + 1)).await?;
        check_len(&d, 8 * (hi - lo), "OT corrections", mesh, peer)?;
        receive_cot(&h[..hi - lo], &beta[range.clone()], &d, &mut y[lo..hi]).map_err(|e| named(e, mesh, peer))?;
    }
    let receiver = idle.ok_or_else(lost)?;
    Ok((Pair { sender, receiver }, y))
}

/// The sender's side of [`cot_receive`]: correlation `x` (this party's
/// shares); returns `X` (the receiver gets `X + β·x`).
async fn cot_send(
    mesh: &Mesh,
    peer: usize,
    mut pair: Pair,
    x: Arc<Words>,
    hash: Arc<CcrHash>,
    first_message: u32,
) -> Result<(Pair, Words), OtError> {
    let count = x.len();
    let mut out = Zeroizing::new(vec![0u64; count]);
    for (i, range) in cot_chunks(count).into_iter().enumerate() {
        let message = first_message + 2 * i as u32;
        let w = range.len();
        let u = mesh.recv(peer, Step::Preprocess(message)).await?;
        check_len(&u, matrix_bytes(w), "OT extension matrix", mesh, peer)?;
        let (lo, hi) = (64 * range.start, (64 * range.end).min(count));
        let (x, hash) = (x.clone(), hash.clone());
        let (p, chunk, d) = blocking(move || {
            let mut out = Zeroizing::new(vec![0u64; hi - lo]);
            let mut d = Vec::with_capacity(8 * (hi - lo));
            let delta = pair.sender.delta();
            pair.sender.extend(&u, w, |j0, rows| {
                let end = (j0 + rows.len()).min(hi - lo);
                if j0 < end {
                    send_cot(&hash, delta, &rows[..end - j0], &x[lo + j0..lo + end], &mut out[j0..end], &mut d);
                }
            });
            (pair, out, d)
        })
        .await?;
        pair = p;
        out[lo..hi].copy_from_slice(&chunk);
        mesh.send(peer, Step::Preprocess(message + 1), d).await?;
    }
    Ok((pair, out))
}

impl OtGenerator {
    /// Run the base OTs with every peer of `mesh` (one round trip each, all
    /// peers at once).
    pub async fn setup(mesh: &Mesh) -> Result<OtGenerator, OtError> {
        OtGenerator::setup_at(mesh, 0).await
    }

    /// As [`OtGenerator::setup`], numbering its messages from `first`
    /// (so that generation can follow other preprocessing messages of the
    /// same job, such as a pool agreement's).
    pub async fn setup_at(mesh: &Mesh, first: u32) -> Result<OtGenerator, OtError> {
        let me = mesh.self_index();
        let parties = mesh.party_count();
        let setups =
            (0..parties).filter(|&p| p != me).map(|peer| async move { (peer, setup_pair(mesh, peer, first).await) });
        let mut pairs: Vec<Option<Pair>> = (0..parties).map(|_| None).collect();
        for (peer, result) in futures::future::join_all(setups).await {
            pairs[peer] = Some(result?);
        }
        Ok(OtGenerator { me, parties, pairs, hash: Arc::new(CcrHash::new()), next_message: first + 2, failed: None })
    }

    /// How many message numbers this generator has used so far (each is
    /// one message each way with every peer it involves): what a
    /// generation costs in exchanges, whatever the payloads.
    pub fn messages_used(&self) -> u32 {
        self.next_message
    }

    /// Refuse a call after a failure, or one larger than a call may be.
    fn admit(&self, count: usize, what: &str) -> Result<(), OtError> {
        if let Some(reason) = &self.failed {
            return Err(OtError::Stopped(reason.clone()));
        }
        if count > MAX_ITEMS_PER_CALL {
            return Err(OtError::Unsupported(format!("{count} {what} in one call; at most {MAX_ITEMS_PER_CALL}")));
        }
        Ok(())
    }

    fn take_pairs(&mut self) -> Vec<(usize, Pair)> {
        self.pairs.iter_mut().enumerate().filter_map(|(p, slot)| slot.take().map(|pair| (p, pair))).collect()
    }

    /// Record a failure: the extension state of the failed round is gone,
    /// so the generator refuses further work.
    fn settle<T>(&mut self, result: Result<T, OtError>) -> Result<T, OtError> {
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    /// This party's shares of `count` fresh Beaver triples, generated with
    /// every peer (who must call this with the same `count` at the same
    /// point of the session).
    pub async fn triples(&mut self, mesh: &Mesh, count: usize) -> Result<TripleShares, OtError> {
        self.admit(count, "triples")?;
        let result = self.triples_inner(mesh, count).await;
        self.settle(result)
    }

    async fn triples_inner(&mut self, mesh: &Mesh, count: usize) -> Result<TripleShares, OtError> {
        let a = Arc::new(random_words(count)?);
        let b = Arc::new(random_words(count)?);
        let mut c: Words = Zeroizing::new(a.iter().zip(b.iter()).map(|(a, b)| a.wrapping_mul(*b)).collect());
        let message = self.next_message;
        self.next_message += 2 * count.div_ceil(TRIPLES_PER_CHUNK) as u32;
        let work = self.take_pairs().into_iter().map(|(peer, pair)| {
            tagged(peer, pair_products(mesh, peer, pair, a.clone(), b.clone(), self.hash.clone(), message))
        });
        for result in futures::future::join_all(work).await {
            let (peer, pair, share) = result?;
            for (c, s) in c.iter_mut().zip(share.iter()) {
                *c = c.wrapping_add(*s);
            }
            self.pairs[peer] = Some(pair);
        }
        let shared = || OtError::Task("the triples are still shared with a finished task".into());
        let mut a = Arc::try_unwrap(a).map_err(|_| shared())?;
        let mut b = Arc::try_unwrap(b).map_err(|_| shared())?;
        Ok(TripleShares {
            a: Share::new(std::mem::take(&mut *a)),
            b: Share::new(std::mem::take(&mut *b)),
            c: Share::new(std::mem::take(&mut *c)),
        })
    }

    /// This party's shares of `count` uniformly random bits (each 0 or 1 as
    /// a ring element).
    pub async fn random_bits(&mut self, mesh: &Mesh, count: usize) -> Result<Share, OtError> {
        self.admit(count, "random bits")?;
        let result = self.random_bits_inner(mesh, count).await;
        self.settle(result)
    }

    async fn random_bits_inner(&mut self, mesh: &Mesh, count: usize) -> Result<Share, OtError> {
        Ok(self.random_bits_xor(mesh, count).await?.0)
    }

    /// [`OtGenerator::random_bits`], also returning this party's XOR shares
    /// of the same bits (the `β`, packed 64 to a word; bits past `count`
    /// in the last word are garbage).
    async fn random_bits_xor(&mut self, mesh: &Mesh, count: usize) -> Result<(Share, Words), OtError> {
        let words = count.div_ceil(64);
        let beta_words = Arc::new(random_words(words)?);
        let beta: Words = Zeroizing::new((0..count).map(|j| beta_words[j / 64] >> (j % 64) & 1).collect());
        let mut x: Words = if self.me == 0 { beta.clone() } else { Zeroizing::new(vec![0; count]) };
        let base_message = self.next_message;
        let per_round = cot_messages(count);
        self.next_message += per_round * (self.parties as u32 - 1);
        for k in 1..self.parties {
            let message = base_message + per_round * (k as u32 - 1);
            // Parties after k have not folded a bit in yet: their shares of
            // [x] are 0, so their terms of [x]·β_k are 0 and they sit the
            // round out ((n − 1)·n/2 correlated OTs per bit, not (n − 1)²).
            if self.me > k {
                continue;
            }
            // [p] = [x]·β_k; then [x] ← [x] + β_k − 2[p].
            let mut p: Words = Zeroizing::new(vec![0; count]);
            if self.me == k {
                for ((p, x), b) in p.iter_mut().zip(x.iter()).zip(beta.iter()) {
                    *p = x.wrapping_mul(*b);
                }
                let earlier: Vec<(usize, Pair)> =
                    (0..k).filter_map(|peer| self.pairs[peer].take().map(|pair| (peer, pair))).collect();
                let work = earlier.into_iter().map(|(peer, pair)| {
                    tagged(peer, cot_receive(mesh, peer, pair, beta_words.clone(), count, self.hash.clone(), message))
                });
                for result in futures::future::join_all(work).await {
                    let (peer, pair, y) = result?;
                    self.pairs[peer] = Some(pair);
                    for (p, y) in p.iter_mut().zip(y.iter()) {
                        *p = p.wrapping_add(*y);
                    }
                }
                for (x, b) in x.iter_mut().zip(beta.iter()) {
                    *x = x.wrapping_add(*b);
                }
            } else {
                let pair = self.pairs[k].take().ok_or_else(|| OtError::Task(format!("no OT state for party {k}")))?;
                let xs = Arc::new(x.clone());
                let (pair, big_x) = cot_send(mesh, k, pair, xs, self.hash.clone(), message).await?;
                self.pairs[k] = Some(pair);
                for (p, big_x) in p.iter_mut().zip(big_x.iter()) {
                    *p = big_x.wrapping_neg();
                }
            }
            for (x, p) in x.iter_mut().zip(p.iter()) {
                *x = x.wrapping_sub(p.wrapping_shl(1));
            }
        }
        let beta_words = Arc::try_unwrap(beta_words)
            .map_err(|_| OtError::Task("the random bits are still shared with a finished task".into()))?;
        Ok((Share::new(std::mem::take(&mut *x)), beta_words))
    }

    /// This party's shares of `words · 64` fresh bit triples (see the module
    /// documentation), generated with every peer (who must call this with
    /// the same `words` at the same point).
    pub async fn bit_triples(&mut self, mesh: &Mesh, words: usize) -> Result<BitTripleShares, OtError> {
        if words > MAX_BIT_WORDS_PER_CALL {
            return Err(OtError::Unsupported(format!(
                "{words} bit-triple words in one call; at most {MAX_BIT_WORDS_PER_CALL}"
            )));
        }
        self.admit(words, "bit-triple words")?;
        let result = self.bit_triples_inner(mesh, words).await;
        self.settle(result)
    }

    async fn bit_triples_inner(&mut self, mesh: &Mesh, words: usize) -> Result<BitTripleShares, OtError> {
        let a = Arc::new(random_words(words)?);
        // With two parties b comes out of the random OTs; with more it is
        // drawn here and corrected towards every peer.
        let own_b = if self.parties > 2 { Some(Arc::new(random_words(words)?)) } else { None };
        let message = self.next_message;
        self.next_message += 2 * words.div_ceil(BIT_WORDS_PER_CHUNK) as u32;
        let work = self.take_pairs().into_iter().map(|(peer, pair)| {
            tagged(peer, pair_bit_products(mesh, peer, pair, a.clone(), own_b.clone(), self.hash.clone(), message))
        });
        let mut c: Words = Zeroizing::new(vec![0; words]);
        let mut b_from_ots = None;
        for result in futures::future::join_all(work).await {
            let (peer, pair, (share, s)) = result?;
            c.iter_mut().zip(share.iter()).for_each(|(c, x)| *c ^= x);
            if own_b.is_none() {
                b_from_ots = Some(s);
            }
            self.pairs[peer] = Some(pair);
        }
        let shared = || OtError::Task("the bit triples are still shared with a finished task".into());
        let mut b = match own_b {
            Some(b) => Arc::try_unwrap(b).map_err(|_| shared())?,
            None => b_from_ots.ok_or_else(|| OtError::Task("no peer defined the bit triples' b".into()))?,
        };
        let mut a = Arc::try_unwrap(a).map_err(|_| shared())?;
        c.iter_mut().zip(a.iter().zip(b.iter())).for_each(|(c, (a, b))| *c ^= a & b);
        let plane = |w: &mut Words| Bits::from_words(1, 64 * words, std::mem::take(&mut **w)).expect("whole words");
        Ok(BitTripleShares { a: plane(&mut a), b: plane(&mut b), c: plane(&mut c) })
    }

    /// This party's shares of `count` fresh daBits: uniform bits, both
    /// additively over Z_2^64 and XOR-shared.
    pub async fn dabits(&mut self, mesh: &Mesh, count: usize) -> Result<DaBitShares, OtError> {
        self.admit(count, "daBits")?;
        let result = self.random_bits_xor(mesh, count).await;
        let (arith, mut beta) = self.settle(result)?;
        let bits = Bits::from_words(1, count, std::mem::take(&mut *beta)).expect("whole words");
        Ok(DaBitShares { arith, bits })
    }

    /// This party's shares of `count` fresh edaBits, each from 64 daBits.
    pub async fn edabits(&mut self, mesh: &Mesh, count: usize) -> Result<EdaBitShares, OtError> {
        let (r, words) = self.edabit_words(mesh, count).await?;
        Ok(EdaBitShares { r, bits: Bits::decompose(&words, 64) })
    }

    /// [`OtGenerator::edabits`] with the XOR shares in element form: word
    /// `t` holds this party's shares of the 64 bits of edaBit `t`.
    pub(crate) async fn edabit_words(&mut self, mesh: &Mesh, count: usize) -> Result<(Share, Words), OtError> {
        if count > MAX_ITEMS_PER_CALL / 64 {
            return Err(OtError::Unsupported(format!("{count} edaBits in one call")));
        }
        self.admit(64 * count, "random bits")?;
        let result = self.random_bits_xor(mesh, 64 * count).await;
        let (arith, mut beta) = self.settle(result)?;
        beta.truncate(count);
        Ok((edabit_values(arith.expose()), beta))
    }

    /// This party's shares of `count` division pairs for `divisor`, any
    /// of `1..=2^62`, from 64 shared random bits each: `q` and (for a
    /// divisor that is not a power of two) `g` are linear in the bits (see
    /// [`crate::protocol::additive::division`]).
    pub async fn div_pairs(&mut self, mesh: &Mesh, divisor: u64, count: usize) -> Result<DivPairShares, OtError> {
        if divisor == 0 || divisor > crate::protocol::additive::division::MAX_DIVISOR {
            return Err(OtError::Unsupported(format!("division pairs for divisor {divisor}: the range is 1 to 2^62")));
        }
        if count > MAX_ITEMS_PER_CALL / 64 {
            return Err(OtError::Unsupported(format!("{count} division pairs in one call")));
        }
        let bits = self.random_bits(mesh, 64 * count).await?;
        Ok(pairs_from_bits(bits.expose(), divisor))
    }
}

/// The additive shares of edaBits from this party's shares of their 64
/// daBits each (bit `k` of edaBit `t` at `64·t + k`): `r = Σ 2^k b_k`.
fn edabit_values(arith: &[u64]) -> Share {
    let r =
        arith.chunks_exact(64).map(|bits| bits.iter().enumerate().fold(0u64, |acc, (k, b)| acc.wrapping_add(b << k)));
    Share::new(r.collect())
}

/// The cross ANDs with `peer` for `a.len()` words of bit triples, both
/// directions, chunk by chunk: this party's XOR share of `a_peer ∧ b_me`
/// (as the extension sender) XOR its share of `a_me ∧ b_peer` (as the
/// receiver, choices `a_me`), and the sender's random `s` (this party's
/// `b` with two parties; `own_b` is `Some` with more, and then `s ⊕ b` is
/// sent). On the link, each way: `u_0 [d_0] u_1 [d_1] …`, numbered `u_i =
/// first + 2i`, `d_i = first + 2i + 1`. The receiver's extension of the
/// next chunk computes while the current chunk's sender side does.
async fn pair_bit_products(
    mesh: &Mesh,
    peer: usize,
    pair: Pair,
    a: Arc<Words>,
    own_b: Option<Arc<Words>>,
    hash: Arc<CcrHash>,
    first_message: u32,
) -> Result<(Pair, (Words, Words)), OtError> {
    let Pair { mut sender, receiver } = pair;
    let words = a.len();
    let chunks: Vec<std::ops::Range<usize>> =
        (0..words).step_by(BIT_WORDS_PER_CHUNK).map(|s| s..(s + BIT_WORDS_PER_CHUNK).min(words)).collect();
    let mut share = Zeroizing::new(vec![0u64; words]);
    let mut s_all = Zeroizing::new(vec![0u64; if own_b.is_none() { words } else { 0 }]);
    let Some(first) = chunks.first() else {
        return Ok((Pair { sender, receiver }, (share, s_all)));
    };
    let lost = || OtError::Task("the bit-triple pipeline lost a chunk".into());
    let mut running = Some(spawn_bit_extension(receiver, &a, &hash, first.clone()));
    let mut idle = None;
    for (i, range) in chunks.iter().enumerate() {
        let (receiver, u, mut v) = running.take().ok_or_else(lost)?.await.map_err(|e| OtError::Task(e.to_string()))?;
        match chunks.get(i + 1) {
            Some(next) => running = Some(spawn_bit_extension(receiver, &a, &hash, next.clone())),
            None => idle = Some(receiver),
        }
        let message = first_message + 2 * i as u32;
        mesh.send(peer, Step::Preprocess(message), u).await?;
        let u_peer = mesh.recv(peer, Step::Preprocess(message)).await?;
        let w = range.len();
        check_len(&u_peer, matrix_bytes(w), "OT extension matrix", mesh, peer)?;
        let h = hash.clone();
        let (s, m0, sbits) = blocking(move || {
            let mut m0 = Zeroizing::new(vec![0u64; w]);
            let mut m1 = Zeroizing::new(vec![0u64; w]);
            let delta = sender.delta();
            sender.extend(&u_peer, w, |j0, rows| {
                let (k, n) = (j0 / 64, rows.len() / 64);
                h.hash_pair_bits(rows, delta, &mut m0[k..k + n], &mut m1[k..k + n]);
            });
            m1.iter_mut().zip(m0.iter()).for_each(|(s, m)| *s ^= m);
            (sender, m0, m1)
        })
        .await?;
        sender = s;
        match &own_b {
            Some(b) => {
                let mut d = Vec::with_capacity(8 * w);
                for (s, b) in sbits.iter().zip(&b[range.clone()]) {
                    d.extend_from_slice(&(s ^ b).to_le_bytes());
                }
                mesh.send(peer, Step::Preprocess(message + 1), d).await?;
                let d_peer = mesh.recv(peer, Step::Preprocess(message + 1)).await?;
                check_len(&d_peer, 8 * w, "bit-triple corrections", mesh, peer)?;
                let (d_peer, _) = d_peer.as_chunks::<8>();
                for ((v, a), d) in v.iter_mut().zip(&a[range.clone()]).zip(d_peer) {
                    *v ^= a & u64::from_le_bytes(*d);
                }
            }
            None => s_all[range.clone()].copy_from_slice(&sbits),
        }
        for ((o, m), v) in share[range.clone()].iter_mut().zip(m0.iter()).zip(v.iter()) {
            *o = m ^ v;
        }
    }
    let receiver = idle.ok_or_else(lost)?;
    Ok((Pair { sender, receiver }, (share, s_all)))
}

type BitExtension = tokio::task::JoinHandle<(ExtReceiver, Vec<u8>, Words)>;

/// Start the receiver's extension for the bit-triple words `range` (choices
/// `a`) on the blocking pool: the matrix `u` and the packed lowest bits of
/// `H(t_j)`.
fn spawn_bit_extension(
    mut receiver: ExtReceiver,
    a: &Arc<Words>,
    hash: &Arc<CcrHash>,
    range: std::ops::Range<usize>,
) -> BitExtension {
    let (a, hash) = (a.clone(), hash.clone());
    tokio::task::spawn_blocking(move || {
        let choices = &a[range];
        let mut u = Vec::new();
        let mut v = Zeroizing::new(vec![0u64; choices.len()]);
        receiver.extend(choices, &mut u, |j0, rows| {
            let (k, n) = (j0 / 64, rows.len() / 64);
            hash.hash_bits(rows, &mut v[k..k + n]);
        });
        (receiver, u, v)
    })
}

/// Division pairs for `divisor` from this party's shares of 64 random bits
/// per pair (bit `k` of pair `t` at `64·t + k`).
pub fn pairs_from_bits(bits: &[u64], divisor: u64) -> DivPairShares {
    let count = bits.len() / 64;
    let (f, h) = crate::protocol::additive::division::linear_coefficients(divisor);
    let corrected = !divisor.is_power_of_two();
    let mut r = Vec::with_capacity(count);
    let mut msb = Vec::with_capacity(count);
    let mut q = Vec::with_capacity(count);
    let mut g = Vec::with_capacity(if corrected { count } else { 0 });
    for bits in bits.chunks_exact(64) {
        r.push(bits.iter().enumerate().fold(0u64, |acc, (k, b)| acc.wrapping_add(b << k)));
        msb.push(bits[63]);
        q.push(bits[..63].iter().zip(&f).fold(0u64, |acc, (b, f)| acc.wrapping_add(b.wrapping_mul(*f))));
        if corrected {
            g.push(bits[..63].iter().zip(&h).fold(0u64, |acc, (b, h)| acc.wrapping_add(b.wrapping_mul(*h))));
        }
    }
    DivPairShares { divisor, r: Share::new(r), msb: Share::new(msb), q: Share::new(q), g: Share::new(g) }
}

/// Attach the peer index to a per-peer result.
async fn tagged<T>(
    peer: usize,
    work: impl Future<Output = Result<(Pair, T), OtError>>,
) -> Result<(usize, Pair, T), OtError> {
    let (pair, t) = work.await?;
    Ok((peer, pair, t))
}
