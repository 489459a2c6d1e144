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
//! `[x]·β_k` is party `k`'s local term plus a correlated OT from every other
//! party `i` (correlation `⟨x⟩_i`, choice `β_k`). That is `n − 1` sequential
//! rounds, one per party after the first. A division pair for `d = 2^f` is
//! 64 such bits: `r = Σ 2^k r_k`, `m = r_63`, `q = Σ_{f≤k<63} 2^{k−f} r_k`
//! (see [`crate::protocol::division`]). Other divisors need a shared value
//! uniform modulo `d`, which this generator does not make yet; it refuses
//! them ([`OtError::Unsupported`]).
//!
//! # Messages
//!
//! Every message is [`Step::Preprocess`]`(m)` with `m` counted identically
//! at every party, so a peer that is out of step is an error, never a
//! mix-up. The heavy computations run on Tokio's blocking pool, so the
//! transport's tasks keep moving bytes meanwhile.

use super::OtError;
use super::base::{self, BaseOtSender};
use super::gilboa::{correction_words, receive_cot, receive_products, send_cot, send_products};
use super::hash::CcrHash;
use super::iknp::{ExtReceiver, ExtSender, KAPPA, delta_choices};
use crate::preprocessing::{DivPairShares, TripleShares};
use crate::prg::{Prg, Seed};
use crate::sharing::Share;
use crate::transport::{Mesh, Step};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Triples generated per round trip with every peer: large enough to
/// amortize the round trip, small enough that a chunk's matrices (8 MiB per
/// peer and direction) stay modest.
pub const TRIPLES_PER_CHUNK: usize = 8192;

/// The largest number of items one call generates (bounds memory).
pub const MAX_ITEMS_PER_CALL: usize = 1 << 24;

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

type Words = Zeroizing<Vec<u64>>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, OtError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| OtError::Task(e.to_string()))
}

fn words_to_bytes(words: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 8);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// Decode a message of exactly `expected` little-endian words.
fn bytes_to_words(bytes: &[u8], expected: usize, what: &str, mesh: &Mesh, peer: usize) -> Result<Vec<u64>, OtError> {
    let (words, rest) = bytes.as_chunks::<8>();
    if !rest.is_empty() || words.len() != expected {
        return Err(OtError::Malformed(format!(
            "party {} sent {} bytes of {what}, expected {}",
            mesh.party_name(peer),
            bytes.len(),
            expected * 8
        )));
    }
    Ok(words.iter().map(|w| u64::from_le_bytes(*w)).collect())
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
async fn setup_pair(mesh: &Mesh, peer: usize) -> Result<Pair, OtError> {
    let (base_sender, a) = BaseOtSender::start()?;
    mesh.send(peer, Step::Preprocess(0), a.to_vec()).await?;
    let a_peer = mesh.recv(peer, Step::Preprocess(0)).await?;
    let delta = random_delta()?;
    let (chosen, reply) = base::receive(&delta_choices(delta), &a_peer).map_err(|e| named(e, mesh, peer))?;
    mesh.send(peer, Step::Preprocess(1), reply).await?;
    let reply_peer = mesh.recv(peer, Step::Preprocess(1)).await?;
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

/// One chunk of cross products with `peer`, both directions: this party's
/// shares of `a_me·b_peer` (as sender) plus `a_peer·b_me` (as receiver).
async fn pair_products(
    mesh: &Mesh,
    peer: usize,
    mut pair: Pair,
    a: Arc<Words>,
    b: Arc<Words>,
    hash: Arc<CcrHash>,
    message: u32,
) -> Result<(Pair, Words), OtError> {
    let w = b.len();
    let choices = b.clone();
    let (mut pair, u, t) = blocking(move || {
        let (u, t) = pair.receiver.extend(&choices);
        (pair, u, t)
    })
    .await?;
    mesh.send(peer, Step::Preprocess(message), words_to_bytes(&u)).await?;
    drop(u);
    let bytes = mesh.recv(peer, Step::Preprocess(message)).await?;
    let u_peer = bytes_to_words(&bytes, KAPPA * w, "OT extension matrix", mesh, peer)?;
    mesh.recycle(bytes);
    let h = hash.clone();
    let (pair, mut share, corrections) = blocking(move || {
        let q = pair.sender.extend(&u_peer, w);
        let mut share = Zeroizing::new(vec![0u64; w]);
        let mut corrections = Vec::new();
        send_products(&h, pair.sender.delta(), &q, &a, &mut share, &mut corrections);
        (pair, share, corrections)
    })
    .await?;
    mesh.send(peer, Step::Preprocess(message + 1), words_to_bytes(&corrections)).await?;
    let bytes = mesh.recv(peer, Step::Preprocess(message + 1)).await?;
    let corrections_peer = bytes_to_words(&bytes, correction_words(w), "product corrections", mesh, peer)?;
    let received = blocking(move || {
        let mut r = Zeroizing::new(vec![0u64; w]);
        receive_products(&hash, &t, &b, &corrections_peer, &mut r).map(|()| r)
    })
    .await?
    .map_err(|e| named(e, mesh, peer))?;
    for (s, r) in share.iter_mut().zip(received.iter()) {
        *s = s.wrapping_add(*r);
    }
    Ok((pair, share))
}

/// Party `receiver`'s side of correlated OTs from `peer`: `y_j = X_j +
/// β_j·⟨x⟩_peer`, for `count` OTs with choices `beta`.
async fn cot_receive(
    mesh: &Mesh,
    peer: usize,
    mut pair: Pair,
    beta: Arc<Words>,
    count: usize,
    hash: Arc<CcrHash>,
    message: u32,
) -> Result<(Pair, Words), OtError> {
    let choices = beta.clone();
    let (pair, u, t) = blocking(move || {
        let (u, t) = pair.receiver.extend(&choices);
        (pair, u, t)
    })
    .await?;
    mesh.send(peer, Step::Preprocess(message), words_to_bytes(&u)).await?;
    let bytes = mesh.recv(peer, Step::Preprocess(message + 1)).await?;
    let d = bytes_to_words(&bytes, count, "OT corrections", mesh, peer)?;
    let y = blocking(move || {
        let mut y = Zeroizing::new(vec![0u64; count]);
        receive_cot(&hash, &t[..count], &beta, &d, &mut y).map(|()| y)
    })
    .await?
    .map_err(|e| named(e, mesh, peer))?;
    Ok((pair, y))
}

/// The sender's side of [`cot_receive`]: correlation `x` (this party's
/// shares); returns `X` (the receiver gets `X + β·x`).
async fn cot_send(
    mesh: &Mesh,
    peer: usize,
    mut pair: Pair,
    x: Arc<Words>,
    hash: Arc<CcrHash>,
    message: u32,
) -> Result<(Pair, Words), OtError> {
    let count = x.len();
    let w = count.div_ceil(64);
    let bytes = mesh.recv(peer, Step::Preprocess(message)).await?;
    let u = bytes_to_words(&bytes, KAPPA * w, "OT extension matrix", mesh, peer)?;
    let (pair, out, d) = blocking(move || {
        let q = pair.sender.extend(&u, w);
        let mut out = Zeroizing::new(vec![0u64; count]);
        let mut d = Vec::with_capacity(count);
        send_cot(&hash, pair.sender.delta(), &q[..count], &x, &mut out, &mut d);
        (pair, out, d)
    })
    .await?;
    mesh.send(peer, Step::Preprocess(message + 1), words_to_bytes(&d)).await?;
    Ok((pair, out))
}

impl OtGenerator {
    /// Run the base OTs with every peer of `mesh` (one round trip each, all
    /// peers at once).
    pub async fn setup(mesh: &Mesh) -> Result<OtGenerator, OtError> {
        let me = mesh.self_index();
        let parties = mesh.party_count();
        let setups = (0..parties).filter(|&p| p != me).map(|peer| async move { (peer, setup_pair(mesh, peer).await) });
        let mut pairs: Vec<Option<Pair>> = (0..parties).map(|_| None).collect();
        for (peer, result) in futures::future::join_all(setups).await {
            pairs[peer] = Some(result?);
        }
        Ok(OtGenerator { me, parties, pairs, hash: Arc::new(CcrHash::new()), next_message: 2, failed: None })
    }

    fn check(&self) -> Result<(), OtError> {
        match &self.failed {
            Some(reason) => Err(OtError::Unsupported(format!("the OT generator stopped after an error: {reason}"))),
            None => Ok(()),
        }
    }

    fn take_pairs(&mut self) -> Vec<(usize, Pair)> {
        self.pairs.iter_mut().enumerate().filter_map(|(p, slot)| slot.take().map(|pair| (p, pair))).collect()
    }

    /// Record a failure: the extension state of the failed round is gone,
    /// so the generator refuses further work.
    fn fail<T>(&mut self, e: OtError) -> Result<T, OtError> {
        self.failed = Some(e.to_string());
        Err(e)
    }

    /// This party's shares of `count` fresh Beaver triples, generated with
    /// every peer (who must call this with the same `count` at the same
    /// point of the session).
    pub async fn triples(&mut self, mesh: &Mesh, count: usize) -> Result<TripleShares, OtError> {
        self.check()?;
        if count > MAX_ITEMS_PER_CALL {
            return Err(OtError::Unsupported(format!("{count} triples in one call; at most {MAX_ITEMS_PER_CALL}")));
        }
        let mut out_a = Vec::with_capacity(count);
        let mut out_b = Vec::with_capacity(count);
        let mut out_c = Vec::with_capacity(count);
        let mut done = 0;
        while done < count {
            let n = (count - done).min(TRIPLES_PER_CHUNK);
            let (a, b, c) = match self.triple_chunk(mesh, n).await {
                Ok(chunk) => chunk,
                Err(e) => return self.fail(e),
            };
            out_a.extend_from_slice(&a);
            out_b.extend_from_slice(&b);
            out_c.extend_from_slice(&c);
            done += n;
        }
        Ok(TripleShares { a: Share::new(out_a), b: Share::new(out_b), c: Share::new(out_c) })
    }

    async fn triple_chunk(&mut self, mesh: &Mesh, n: usize) -> Result<(Words, Words, Words), OtError> {
        let a = Arc::new(random_words(n)?);
        let b = Arc::new(random_words(n)?);
        let mut c: Words = Zeroizing::new(a.iter().zip(b.iter()).map(|(a, b)| a.wrapping_mul(*b)).collect());
        let message = self.next_message;
        self.next_message += 2;
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
        let a = Arc::try_unwrap(a).map_err(|_| OtError::Task("triple chunk still shared".into()))?;
        let b = Arc::try_unwrap(b).map_err(|_| OtError::Task("triple chunk still shared".into()))?;
        Ok((a, b, c))
    }

    /// This party's shares of `count` uniformly random bits (each 0 or 1 as
    /// a ring element).
    pub async fn random_bits(&mut self, mesh: &Mesh, count: usize) -> Result<Share, OtError> {
        self.check()?;
        if count > 64 * MAX_ITEMS_PER_CALL {
            return Err(OtError::Unsupported(format!("{count} random bits in one call")));
        }
        match self.random_bits_inner(mesh, count).await {
            Ok(bits) => Ok(bits),
            Err(e) => self.fail(e),
        }
    }

    async fn random_bits_inner(&mut self, mesh: &Mesh, count: usize) -> Result<Share, OtError> {
        let words = count.div_ceil(64);
        let beta_words = Arc::new(random_words(words)?);
        let beta: Words = Zeroizing::new((0..count).map(|j| beta_words[j / 64] >> (j % 64) & 1).collect());
        let mut x: Words = if self.me == 0 { beta.clone() } else { Zeroizing::new(vec![0; count]) };
        let base_message = self.next_message;
        self.next_message += 2 * (self.parties as u32 - 1);
        for k in 1..self.parties {
            let message = base_message + 2 * (k as u32 - 1);
            // [p] = [x]·β_k; then [x] ← [x] + β_k − 2[p].
            let mut p: Words = Zeroizing::new(vec![0; count]);
            if self.me == k {
                for ((p, x), b) in p.iter_mut().zip(x.iter()).zip(beta.iter()) {
                    *p = x.wrapping_mul(*b);
                }
                let work = self.take_pairs().into_iter().map(|(peer, pair)| {
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
        Ok(Share::new(std::mem::take(&mut *x)))
    }

    /// This party's shares of `count` division pairs for `divisor` (see
    /// [`crate::protocol::division`]), which must be a power of two.
    pub async fn div_pairs(&mut self, mesh: &Mesh, divisor: u64, count: usize) -> Result<DivPairShares, OtError> {
        if !divisor.is_power_of_two() || divisor > crate::protocol::division::MAX_DIVISOR {
            return Err(OtError::Unsupported(format!(
                "OT-based generation makes division pairs for power-of-two divisors up to 2^62 (fixed-point \
                 truncation) only; divisor {divisor} needs the trusted dealer"
            )));
        }
        if count > MAX_ITEMS_PER_CALL / 64 {
            return Err(OtError::Unsupported(format!("{count} division pairs in one call")));
        }
        let f = divisor.trailing_zeros();
        let bits = self.random_bits(mesh, 64 * count).await?;
        let bits = bits.expose();
        let mut r = Vec::with_capacity(count);
        let mut msb = Vec::with_capacity(count);
        let mut q = Vec::with_capacity(count);
        for t in 0..count {
            let bits = &bits[64 * t..64 * (t + 1)];
            r.push(bits.iter().enumerate().fold(0u64, |acc, (k, b)| acc.wrapping_add(b << k)));
            msb.push(bits[63]);
            q.push(bits[f as usize..63].iter().enumerate().fold(0u64, |acc, (k, b)| acc.wrapping_add(b << k)));
        }
        Ok(DivPairShares { divisor, r: Share::new(r), msb: Share::new(msb), q: Share::new(q) })
    }
}

/// Attach the peer index to a per-peer result.
async fn tagged<T>(
    peer: usize,
    work: impl Future<Output = Result<(Pair, T), OtError>>,
) -> Result<(usize, Pair, T), OtError> {
    let (pair, t) = work.await?;
    Ok((peer, pair, t))
}
