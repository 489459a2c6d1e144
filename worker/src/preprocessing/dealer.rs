//! Trusted-dealer preprocessing.
//!
//! **Trust assumption.** The dealer is a TRUSTED THIRD PARTY. It never sees
//! an input or an output, but it learns every value it deals: the `a`, `b`,
//! `c` of each Beaver triple and the `r` of each division pair. A dealer
//! that colludes with (or is) one of the parties can therefore unmask that
//! party's peers' inputs from the values opened during the online phase.
//! Use it for development, tests, benchmarks, and for federations that have
//! an independent dealer they all trust; it is never the only way to run
//! (dealer-free, OT-based generation implements the same
//! [`MaterialSource`](super::MaterialSource) seam).
//!
//! What this module owns:
//!
//! - [`TrustedDealer`]: generates Beaver triples and division pairs for `n`
//!   parties, one [`DealerBatch`] per party per [`deal`](TrustedDealer::deal)
//!   call, each batch named by a [`BatchId`] (session id + sequence number);
//! - the party side, [`DealerBatch::expand`]: turning a batch into shares;
//! - the wire format of a batch ([`DealerBatch::to_bytes`],
//!   [`DealerBatch::from_bytes`]; layout in the `wire` submodule);
//! - streaming: [`DealerSource`], a [`MaterialSource`](super::MaterialSource)
//!   fed by a bounded channel of batches, and [`spawn_local_dealer`], which
//!   runs a dealer in-process for local runs and tests;
//! - the networked dealer: [`service`] (the `cohort-dealer` process's server,
//!   serving each party its batches over mutually authenticated TLS 1.3)
//!   and [`client`] ([`client::draw`], how a worker draws its stream);
//! - [`journal`]: the networked dealer's durable record of dealt job ids,
//!   so a restarted dealer still refuses them.
//!
//! # Construction: PRG-seed compression
//!
//! For every batch the dealer draws one fresh 16-byte seed `s_i` per party
//! `i`. From its seed a party derives *component seeds* (the first
//! `16 * (3 + 3G)` bytes of `PRG(s_i)`, where `G` is the number of divisor
//! groups in the batch), in this fixed order:
//!
//! | index     | component                                |
//! |-----------|------------------------------------------|
//! | 0         | `a_i` (one element per triple)           |
//! | 1         | `b_i`                                    |
//! | 2         | `c_i`                                    |
//! | 3 + 3g    | `r_i` of divisor group `g` (Demand order)|
//! | 4 + 3g    | `msb_i` of group `g`                     |
//! | 5 + 3g    | `q_i` of group `g`                       |
//!
//! and expands component `k` as `PRG(seed_k)` (AES-128-CTR, see
//! [`crate::prg`]) into as many ring elements as the batch has items of that
//! kind. Parties `0..n-1` (all but the last) take every component from their
//! seed. The **last party `n-1`** takes `a`, `b` and `r` from its seed, but
//! receives explicit *corrections* for the rest:
//!
//! ```text
//! c_{n-1}   = (sum_i a_i) * (sum_i b_i) - sum_{i<n-1} c_i
//! msb_{n-1} = (r >> 63)                 - sum_{i<n-1} msb_i     where r = sum_i r_i
//! q_{n-1}   = (r mod 2^63) / d          - sum_{i<n-1} q_i
//! ```
//!
//! So `n-1` parties receive a header and 16 bytes per batch, and one party
//! receives 8 bytes per triple and 16 bytes per division pair. Each
//! component has its own stream so that the dealer can generate every
//! component in cache-sized chunks side by side, and a party can expand a
//! component straight into its share vector. Security: the shares of any
//! `n-1` parties are pseudorandom and independent of the dealt values, under
//! the assumption that AES-128 is a pseudorandom permutation (seeds are
//! fresh, used for one batch, and never reused across components).
//!
//! # Consumption
//!
//! Material is consumed once: a [`DealerSource`] records every batch id it
//! has used and refuses a second batch with the same id
//! ([`PreprocessingError::Reused`]). The [`MaterialTag`](super::MaterialTag)
//! of a layer is a hash of the ids of the batches it was assembled from, so
//! parties that hold different material (different dealers, sessions or
//! batches) hold different tags, which the executor compares before use.
//! The record of consumed ids is in memory; a durable ledger belongs to the
//! component that stores material (the preprocessing pool).

pub mod client;
pub mod journal;
pub mod metrics;
pub mod service;
mod source;
mod wire;

pub use source::{BatchReceiver, BatchSender, DealerSource, spawn_local_dealer};
pub use wire::{WIRE_HEADER_BYTES, WIRE_VERSION, WIRE_VERSION_ARITHMETIC};

use super::{
    BitTripleShares, DaBitShares, Demand, DivPairShares, EdaBitShares, PermutationShares, PreprocessingError,
    TripleShares,
};
use crate::gf2::{Bits, words_for};
use crate::prg::{Prg, SEED_BYTES, Seed};
use crate::sharing::Share;
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// The largest number of items one batch may hold: triples, division
/// pairs, bit-triple words (64 bit triples each), edaBits and daBits, each
/// one item (each costs the last party at most 16 bytes of corrections). Bounds the memory a batch (and its wire encoding) can claim; larger
/// demands are split with [`split_demand`].
pub const MAX_BATCH_ITEMS: usize = 1 << 24;

/// The largest number of divisor groups one batch may hold.
pub const MAX_DIVISOR_GROUPS: usize = 1 << 12;

/// Elements per vector the dealer processes at a time: its working set
/// (three scratch vectors and the output) stays in the L2 cache.
const DEALER_CHUNK: usize = 16 * 1024;

pub use super::BatchId;

/// The corrections the last party receives in place of PRG expansion.
#[derive(Clone)]
struct Corrections {
    /// `c_{n-1}`, one element per triple.
    c: Share,
    /// `(msb_{n-1}, q_{n-1})` per divisor group, in shape order.
    div: Vec<(Share, Share)>,
    /// The last party's XOR share of the bit triples' `c`, one word (64
    /// triples) per bit-triple word.
    bit_c: Zeroizing<Vec<u64>>,
    /// The last party's XOR share of each edaBit's bits, one word per
    /// edaBit (bit `k` of the word is bit `k` of `r`; the party transposes
    /// them into planes).
    eda_bits: Zeroizing<Vec<u64>>,
    /// The last party's additive share of each daBit.
    da_arith: Share,
    /// A permutation step's `Δ = B − π(A)`, for its permuter (which
    /// receives the corrections of a permutation batch, see
    /// [`corrected_party`]).
    delta: Share,
}

/// The party that receives a batch's corrections: a permutation step's
/// permuter, the last party otherwise.
pub(crate) fn corrected_party(shape: &Demand, parties: usize) -> usize {
    shape.permutation.map_or(parties - 1, |p| p.permuter)
}

/// One party's part of a batch of dealt material: a seed, and for the last
/// party the correction vectors. Secret: `Debug` redacts the seed and the
/// corrections, and both zeroize on drop.
#[derive(Clone)]
pub struct DealerBatch {
    id: BatchId,
    party: usize,
    parties: usize,
    shape: Demand,
    seed: Seed,
    corrections: Option<Corrections>,
}

impl fmt::Debug for DealerBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DealerBatch")
            .field("id", &format_args!("{}", self.id))
            .field("party", &self.party)
            .field("parties", &self.parties)
            .field("shape", &self.shape)
            .field("seed", &self.seed)
            .field("corrections", &format_args!("{}", if self.corrections.is_some() { "<redacted>" } else { "none" }))
            .finish()
    }
}

/// One party's shares from one batch.
#[derive(Debug)]
pub struct BatchMaterial {
    pub id: BatchId,
    pub triples: TripleShares,
    /// In the order of the batch's [`Demand::div_pairs`].
    pub div_pairs: Vec<DivPairShares>,
    pub bit_triples: BitTripleShares,
    pub edabits: EdaBitShares,
    pub dabits: DaBitShares,
    pub permutation: Option<PermutationShares>,
}

impl DealerBatch {
    pub fn id(&self) -> BatchId {
        self.id
    }
    /// The party this batch is for (0-based).
    pub fn party(&self) -> usize {
        self.party
    }
    /// The number of parties the material is shared among.
    pub fn parties(&self) -> usize {
        self.parties
    }
    /// What the batch holds (public).
    pub fn shape(&self) -> &Demand {
        &self.shape
    }
    /// Whether the batch carries explicit corrections (it does exactly when
    /// it is for the last party, or a permutation step's permuter).
    pub fn has_corrections(&self) -> bool {
        self.corrections.is_some()
    }

    /// Check that the batch is addressed to `party` of `parties`.
    pub(crate) fn check_recipient(&self, party: usize, parties: usize) -> Result<(), PreprocessingError> {
        if self.party != party || self.parties != parties {
            return Err(PreprocessingError::Mismatch(format!(
                "batch {} is for party {} of {}, but this is party {} of {}",
                self.id, self.party, self.parties, party, parties
            )));
        }
        Ok(())
    }

    /// Expand into this party's shares, after checking that the batch is
    /// for `party` of `parties` and holds exactly `expected`
    /// ([`PreprocessingError::Mismatch`] otherwise).
    pub fn expand(self, party: usize, parties: usize, expected: &Demand) -> Result<BatchMaterial, PreprocessingError> {
        self.check_recipient(party, parties)?;
        if self.shape != *expected {
            return Err(PreprocessingError::Mismatch(format!(
                "batch {} holds {:?}, expected {:?}",
                self.id, self.shape, expected
            )));
        }
        let id = self.id;
        let mut asm = Assembly::new(expected);
        self.expand_into(&mut asm);
        let Parts { triples, div_pairs, bit_triples, edabits, dabits, permutation } = asm.finish();
        Ok(BatchMaterial { id, triples, div_pairs, bit_triples, edabits, dabits, permutation })
    }

    /// Append this batch's shares to `asm`. The caller has checked the
    /// recipient and that the shape fits ([`Assembly::check_fits`]).
    pub(crate) fn expand_into(self, asm: &mut Assembly) {
        let DealerBatch { shape, seed, corrections, .. } = self;
        let seeds = component_seeds(&seed, shape.div_pairs.len());
        if let Some(p) = shape.permutation {
            // A permutation batch holds nothing else (`validate_demand`).
            let g = shape.div_pairs.len();
            asm.permutation = Some(match corrections {
                Some(c) => PermutationShares::Permuter {
                    perm: Zeroizing::new(Prg::new(&seeds[comp_binary(g, PERM_PI)]).permutation(p.len)),
                    delta: c.delta,
                },
                None => PermutationShares::Other {
                    a: Share::new(Prg::new(&seeds[comp_binary(g, PERM_A)]).next_vec(p.elements())),
                    b: Share::new(Prg::new(&seeds[comp_binary(g, PERM_B)]).next_vec(p.elements())),
                },
            });
            return;
        }
        let t = shape.triples;
        append_prg(&mut asm.triples.a, &seeds[COMP_A], t);
        append_prg(&mut asm.triples.b, &seeds[COMP_B], t);
        let mut div_corr = match corrections {
            Some(Corrections { c, div, bit_c, eda_bits, da_arith, .. }) => {
                append_share(&mut asm.triples.c, c);
                append_words(&mut asm.bit_c, &bit_c);
                append_words(&mut asm.eda_bits, &eda_bits);
                append_share(&mut asm.da_arith, da_arith);
                Some(div.into_iter())
            }
            None => {
                append_prg(&mut asm.triples.c, &seeds[COMP_C], t);
                let g = shape.div_pairs.len();
                prg_words(&mut asm.bit_c, &seeds[comp_binary(g, BT_C)], shape.bit_triple_words);
                prg_words(&mut asm.eda_bits, &seeds[comp_binary(g, EDA_BITS)], shape.edabits);
                append_prg(&mut asm.da_arith, &seeds[comp_binary(g, DA_ARITH)], shape.dabits);
                None
            }
        };
        let g = shape.div_pairs.len();
        prg_words(&mut asm.bit_a, &seeds[comp_binary(g, BT_A)], shape.bit_triple_words);
        prg_words(&mut asm.bit_b, &seeds[comp_binary(g, BT_B)], shape.bit_triple_words);
        append_prg(&mut asm.eda_r, &seeds[comp_binary(g, EDA_R)], shape.edabits);
        if shape.dabits > 0 {
            let mut words = Zeroizing::new(Prg::new(&seeds[comp_binary(g, DA_BITS)]).next_vec(words_for(shape.dabits)));
            append_bits(&mut asm.da_bits, &mut asm.da_len, &words, shape.dabits);
            words.zeroize();
        }
        for (g, &(divisor, count)) in shape.div_pairs.iter().enumerate() {
            let slot = asm
                .div_pairs
                .iter_mut()
                .find(|p| p.divisor == divisor)
                .expect("caller checked that the batch fits the assembly");
            append_prg(&mut slot.r, &seeds[comp_r(g)], count);
            match div_corr.as_mut().and_then(|it| it.next()) {
                Some((msb, q)) => {
                    append_share(&mut slot.msb, msb);
                    append_share(&mut slot.q, q);
                }
                None => {
                    append_prg(&mut slot.msb, &seeds[comp_msb(g)], count);
                    append_prg(&mut slot.q, &seeds[comp_q(g)], count);
                }
            }
        }
    }
}

/// Collects one party's shares from one or more batches into vectors sized
/// for a whole [`Demand`] (so growing them never reallocates and leaves an
/// unzeroized copy behind).
pub(crate) struct Assembly {
    triples_total: usize,
    triples: TripleShares,
    /// Per divisor group: the target count and the shares so far.
    div_totals: Vec<usize>,
    div_pairs: Vec<DivPairShares>,
    bit_words_total: usize,
    bit_a: Zeroizing<Vec<u64>>,
    bit_b: Zeroizing<Vec<u64>>,
    bit_c: Zeroizing<Vec<u64>>,
    eda_total: usize,
    eda_r: Share,
    /// One word per edaBit, bit `k` = this party's share of bit `k`.
    eda_bits: Zeroizing<Vec<u64>>,
    da_total: usize,
    da_arith: Share,
    /// Packed, `da_len` bits so far.
    da_bits: Zeroizing<Vec<u64>>,
    da_len: usize,
    /// A permutation step's correlation (the whole of its layer).
    permutation_demand: Option<super::PermutationDemand>,
    permutation: Option<PermutationShares>,
}

/// One party's shares of a whole demand, per kind.
pub(crate) struct Parts {
    pub(crate) triples: TripleShares,
    pub(crate) div_pairs: Vec<DivPairShares>,
    pub(crate) bit_triples: BitTripleShares,
    pub(crate) edabits: EdaBitShares,
    pub(crate) dabits: DaBitShares,
    pub(crate) permutation: Option<PermutationShares>,
}

impl Assembly {
    pub(crate) fn new(demand: &Demand) -> Assembly {
        let cap = |n: usize| Share::new(Vec::with_capacity(n));
        let words = |n: usize| Zeroizing::new(Vec::with_capacity(n));
        Assembly {
            triples_total: demand.triples,
            triples: TripleShares { a: cap(demand.triples), b: cap(demand.triples), c: cap(demand.triples) },
            div_totals: demand.div_pairs.iter().map(|&(_, n)| n).collect(),
            div_pairs: demand
                .div_pairs
                .iter()
                .map(|&(divisor, n)| DivPairShares { divisor, r: cap(n), msb: cap(n), q: cap(n), g: cap(0) })
                .collect(),
            bit_words_total: demand.bit_triple_words,
            bit_a: words(demand.bit_triple_words),
            bit_b: words(demand.bit_triple_words),
            bit_c: words(demand.bit_triple_words),
            eda_total: demand.edabits,
            eda_r: cap(demand.edabits),
            eda_bits: words(demand.edabits),
            da_total: demand.dabits,
            da_arith: cap(demand.dabits),
            da_bits: words(words_for(demand.dabits)),
            da_len: 0,
            permutation_demand: demand.permutation,
            permutation: None,
        }
    }

    /// Whether a batch of `shape` fits in what is still missing.
    pub(crate) fn check_fits(&self, id: BatchId, shape: &Demand) -> Result<(), PreprocessingError> {
        let mismatch =
            |what: String| PreprocessingError::Mismatch(format!("batch {id} does not fit the layer: {what}"));
        if shape.permutation.is_some() || self.permutation_demand.is_some() {
            // A permutation step is one batch, and its layer's only one.
            if shape.permutation != self.permutation_demand || self.permutation.is_some() {
                return Err(mismatch(format!(
                    "a permutation step {:?}, the layer wants {:?}",
                    shape.permutation, self.permutation_demand
                )));
            }
            return Ok(());
        }
        let missing = self.triples_total - self.triples.a.len();
        if shape.triples > missing {
            return Err(mismatch(format!("{} triples, only {missing} still needed", shape.triples)));
        }
        for &(divisor, count) in &shape.div_pairs {
            let Some(g) = self.div_pairs.iter().position(|p| p.divisor == divisor) else {
                return Err(mismatch(format!("division pairs for divisor {divisor}, which the layer does not use")));
            };
            let missing = self.div_totals[g] - self.div_pairs[g].r.len();
            if count > missing {
                return Err(mismatch(format!(
                    "{count} division pairs for divisor {divisor}, only {missing} still needed"
                )));
            }
        }
        for (what, count, missing) in [
            ("bit-triple words", shape.bit_triple_words, self.bit_words_total - self.bit_a.len()),
            ("edaBits", shape.edabits, self.eda_total - self.eda_r.len()),
            ("daBits", shape.dabits, self.da_total - self.da_arith.len()),
        ] {
            if count > missing {
                return Err(mismatch(format!("{count} {what}, only {missing} still needed")));
            }
        }
        Ok(())
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.triples.a.len() == self.triples_total
            && self.div_pairs.iter().zip(&self.div_totals).all(|(p, &n)| p.r.len() == n)
            && self.bit_a.len() == self.bit_words_total
            && self.eda_r.len() == self.eda_total
            && self.da_arith.len() == self.da_total
            && self.permutation.is_some() == self.permutation_demand.is_some()
    }

    pub(crate) fn finish(mut self) -> Parts {
        let plane = |words: &mut Zeroizing<Vec<u64>>, len: usize| {
            if len == 0 {
                return Bits::default();
            }
            Bits::from_words(1, len, std::mem::take(&mut **words)).expect("assembled whole words")
        };
        let bit_len = 64 * self.bit_a.len();
        let bit_triples = BitTripleShares {
            a: plane(&mut self.bit_a, bit_len),
            b: plane(&mut self.bit_b, bit_len),
            c: plane(&mut self.bit_c, bit_len),
        };
        let edabits = EdaBitShares {
            r: self.eda_r,
            bits: if self.eda_bits.is_empty() { Bits::default() } else { Bits::decompose(&self.eda_bits, 64) },
        };
        let dabits = DaBitShares { arith: self.da_arith, bits: plane(&mut self.da_bits, self.da_len) };
        Parts {
            triples: self.triples,
            div_pairs: self.div_pairs,
            bit_triples,
            edabits,
            dabits,
            permutation: self.permutation.take(),
        }
    }
}

/// Make room for `additional` more elements without leaving an unzeroized
/// copy of the old contents behind.
fn reserve_zeroizing(v: &mut Vec<u64>, additional: usize) {
    if v.capacity() - v.len() < additional {
        let mut grown = Vec::with_capacity(v.len() + additional);
        grown.extend_from_slice(v);
        v.zeroize();
        *v = grown;
    }
}

/// Append `count` elements of `PRG(seed)` to `dst`.
fn append_prg(dst: &mut Share, seed: &Seed, count: usize) {
    if count == 0 {
        return;
    }
    let v = dst.expose_mut();
    reserve_zeroizing(v, count);
    // Written once, in place (see `Prg::append`).
    Prg::new(seed).append(v, count);
}

/// Append an explicit share vector to `dst` (moving it when `dst` is empty
/// and the vector fills it).
fn append_share(dst: &mut Share, src: Share) {
    if src.is_empty() {
        return;
    }
    let v = dst.expose_mut();
    if v.is_empty() && v.capacity() <= src.len() {
        *v = src.into_inner();
    } else {
        reserve_zeroizing(v, src.len());
        v.extend_from_slice(src.expose());
    }
}

/// Append `words` to `dst` (whose capacity was sized for the demand).
fn append_words(dst: &mut Zeroizing<Vec<u64>>, words: &[u64]) {
    reserve_zeroizing(dst, words.len());
    dst.extend_from_slice(words);
}

/// Append `count` words of `PRG(seed)` to `dst`.
fn prg_words(dst: &mut Zeroizing<Vec<u64>>, seed: &Seed, count: usize) {
    if count == 0 {
        return;
    }
    reserve_zeroizing(dst, count);
    Prg::new(seed).append(dst, count);
}

/// Append the first `count` bits of `src` (packed, bit `j` of the bundle
/// at bit `j % 64` of word `j / 64`) to the `len` packed bits of `dst`.
fn append_bits(dst: &mut Zeroizing<Vec<u64>>, len: &mut usize, src: &[u64], count: usize) {
    let more = words_for(*len + count) - dst.len();
    reserve_zeroizing(dst, more);
    for (i, &word) in src.iter().enumerate().take(words_for(count)) {
        let bits = 64.min(count - 64 * i);
        let word = if bits == 64 { word } else { word & ((1u64 << bits) - 1) };
        let offset = *len % 64;
        if offset == 0 {
            dst.push(word);
        } else {
            *dst.last_mut().expect("a partial word") |= word << offset;
            if offset + bits > 64 {
                dst.push(word >> (64 - offset));
            }
        }
        *len += bits;
    }
}

const COMP_A: usize = 0;
const COMP_B: usize = 1;
const COMP_C: usize = 2;
fn comp_r(g: usize) -> usize {
    3 + 3 * g
}
fn comp_msb(g: usize) -> usize {
    4 + 3 * g
}
fn comp_q(g: usize) -> usize {
    5 + 3 * g
}

/// The binary components, after the divisor groups (offsets from
/// `3 + 3G`).
const BT_A: usize = 0;
const BT_B: usize = 1;
const BT_C: usize = 2;
const EDA_R: usize = 3;
const EDA_BITS: usize = 4;
const DA_BITS: usize = 5;
const DA_ARITH: usize = 6;
/// A permutation step's components (after the binary ones).
const PERM_A: usize = 7;
const PERM_B: usize = 8;
const PERM_PI: usize = 9;
const BINARY_COMPONENTS: usize = 10;
fn comp_binary(groups: usize, which: usize) -> usize {
    3 + 3 * groups + which
}

/// The component seeds of a batch seed with `groups` divisor groups, in the
/// documented order: consecutive 16-byte blocks of `PRG(seed)`. The binary
/// components follow the arithmetic ones, and the permutation's the binary
/// ones, so a batch without the later kinds expands exactly as it did
/// before they existed.
fn component_seeds(seed: &Seed, groups: usize) -> Vec<Seed> {
    let count = 3 + 3 * groups + BINARY_COMPONENTS;
    let words = SEED_BYTES / 8;
    let mut raw = Prg::new(seed).next_vec(words * count);
    let seeds = raw
        .chunks_exact(words)
        .map(|w| {
            let mut bytes = [0u8; SEED_BYTES];
            for (dst, x) in bytes.chunks_exact_mut(8).zip(w) {
                dst.copy_from_slice(&x.to_le_bytes());
            }
            let s = Seed::from_bytes(bytes);
            bytes.zeroize();
            s
        })
        .collect();
    raw.zeroize();
    seeds
}

/// Check a demand against the documented invariants (divisors positive,
/// ascending and distinct) and return its item count. A count of zero is
/// valid: a plan lists every divisor a layer divides by, and dividing an
/// empty vector needs no pairs.
pub(crate) fn validate_demand(demand: &Demand) -> Result<usize, PreprocessingError> {
    let bad = |what: String| PreprocessingError::Mismatch(format!("invalid demand: {what}"));
    if demand.div_pairs.len() > MAX_DIVISOR_GROUPS {
        return Err(bad(format!("{} divisor groups, at most {MAX_DIVISOR_GROUPS}", demand.div_pairs.len())));
    }
    let mut total = demand.triples;
    let mut prev = 0u64;
    for &(divisor, count) in &demand.div_pairs {
        if divisor == 0 {
            return Err(bad("divisor 0".into()));
        }
        if divisor <= prev {
            return Err(bad("divisors are not ascending and distinct".into()));
        }
        prev = divisor;
        total = total.checked_add(count).ok_or_else(|| bad("item count overflows".into()))?;
    }
    for count in [demand.bit_triple_words, demand.edabits, demand.dabits] {
        total = total.checked_add(count).ok_or_else(|| bad("item count overflows".into()))?;
    }
    if let Some(p) = demand.permutation {
        if total != 0 {
            return Err(bad("a permutation step holds nothing else".into()));
        }
        if p.len == 0 || p.columns == 0 || u32::try_from(p.len).is_err() {
            return Err(bad(format!("a permutation of {} elements in {} columns", p.len, p.columns)));
        }
        if p.elements() > MAX_BATCH_ITEMS {
            return Err(bad(format!("a permutation step of {} elements, at most {MAX_BATCH_ITEMS}", p.elements())));
        }
        total = p.elements();
    }
    Ok(total)
}

/// One kind of item, for [`split_demand`].
#[derive(Clone, Copy)]
enum Item {
    Triple,
    Pair(u64),
    BitWord,
    EdaBit,
    DaBit,
}

/// Split `demand` into consecutive demands of at most `max_items` items each
/// (triples first, then the divisor groups in order, then bit-triple words,
/// edaBits and daBits; see [`MAX_BATCH_ITEMS`] for what an item is);
/// `max_items` of 0 counts as 1. An empty demand splits into no pieces; a
/// permutation step is never split.
pub fn split_demand(demand: &Demand, max_items: usize) -> Vec<Demand> {
    if demand.permutation.is_some() {
        // One permutation, one batch (`validate_demand` bounds its size).
        return vec![demand.clone()];
    }
    let max = max_items.max(1);
    let mut out = Vec::new();
    let mut cur = Demand::default();
    let mut room = max;
    let kinds = std::iter::once((Item::Triple, demand.triples))
        .chain(demand.div_pairs.iter().map(|&(d, n)| (Item::Pair(d), n)))
        .chain([
            (Item::BitWord, demand.bit_triple_words),
            (Item::EdaBit, demand.edabits),
            (Item::DaBit, demand.dabits),
        ]);
    for (kind, mut n) in kinds {
        while n > 0 {
            let take = n.min(room);
            match kind {
                Item::Triple => cur.triples += take,
                Item::Pair(d) => cur.div_pairs.push((d, take)),
                Item::BitWord => cur.bit_triple_words += take,
                Item::EdaBit => cur.edabits += take,
                Item::DaBit => cur.dabits += take,
            }
            n -= take;
            room -= take;
            if room == 0 {
                out.push(std::mem::take(&mut cur));
                room = max;
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `floor(x / d)` for `x < 2^63` by a precomputed reciprocal (Granlund and
/// Montgomery, "Division by invariant integers using multiplication", 1994,
/// Theorem 4.2 with N = 63): hardware division would dominate the cost of
/// dealing division pairs.
#[derive(Clone, Copy, Debug)]
enum Divider {
    /// `d = 2^k`.
    Shift(u32),
    /// `d > 2^63`: every quotient of a 63-bit numerator is 0.
    Zero,
    /// `q = (x * m) >> shift`, with `m = ceil(2^(63 + l) / d)`,
    /// `l = ceil(log2 d)`, `shift = 63 + l`.
    Magic { m: u64, shift: u32 },
}

impl Divider {
    fn new(d: u64) -> Divider {
        debug_assert!(d > 0);
        if d.is_power_of_two() {
            Divider::Shift(d.trailing_zeros())
        } else if d > 1 << 63 {
            Divider::Zero
        } else {
            let l = 64 - (d - 1).leading_zeros(); // ceil(log2 d), 2 <= l <= 63
            let shift = 63 + l;
            let num = 1u128 << shift;
            let m = num.div_ceil(d as u128);
            debug_assert!(m < 1 << 64);
            Divider::Magic { m: m as u64, shift }
        }
    }

    #[inline(always)]
    fn div(self, x: u64) -> u64 {
        debug_assert!(x < 1 << 63);
        match self {
            Divider::Shift(k) => x >> k,
            Divider::Zero => 0,
            Divider::Magic { m, shift } => ((x as u128 * m as u128) >> shift) as u64,
        }
    }
}

const LOW_63: u64 = (1 << 63) - 1;

/// A TRUSTED THIRD PARTY that deals Beaver triples and division pairs to
/// `n` parties (see the module documentation for what it learns and the
/// construction). One dealer is one session: its batch ids share a fresh
/// random session id and carry consecutive sequence numbers.
pub struct TrustedDealer {
    parties: usize,
    session: [u8; 16],
    next_seq: u64,
    /// Working vectors reused across `deal` calls; they hold dealt values
    /// and are zeroized after each call and on drop.
    scratch_a: Vec<u64>,
    scratch_b: Vec<u64>,
    scratch_t: Vec<u64>,
}

impl fmt::Debug for TrustedDealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedDealer")
            .field("parties", &self.parties)
            .field("session", &format_args!("{}", BatchId { session: self.session, seq: self.next_seq }))
            .finish_non_exhaustive()
    }
}

impl Drop for TrustedDealer {
    fn drop(&mut self) {
        self.scratch_a.zeroize();
        self.scratch_b.zeroize();
        self.scratch_t.zeroize();
    }
}

impl TrustedDealer {
    /// A dealer for `parties >= 2` parties with a fresh random session id.
    pub fn new(parties: usize) -> Result<TrustedDealer, PreprocessingError> {
        if parties < 2 {
            return Err(PreprocessingError::Mismatch(format!(
                "a trusted dealer deals to at least 2 parties, not {parties}"
            )));
        }
        if u32::try_from(parties).is_err() {
            return Err(PreprocessingError::Mismatch(format!("too many parties ({parties})")));
        }
        let session = *Seed::random()?.as_bytes();
        Ok(TrustedDealer {
            parties,
            session,
            next_seq: 0,
            scratch_a: vec![0; DEALER_CHUNK],
            scratch_b: vec![0; DEALER_CHUNK],
            scratch_t: vec![0; DEALER_CHUNK],
        })
    }

    pub fn parties(&self) -> usize {
        self.parties
    }

    /// The random id shared by every batch of this dealer.
    pub fn session(&self) -> [u8; 16] {
        self.session
    }

    /// How many batches (per party) this dealer has produced.
    pub fn batches_dealt(&self) -> u64 {
        self.next_seq
    }

    /// Deal the material of `demand` as one batch per party (index = party).
    /// The demand must satisfy [`Demand`]'s invariants and hold at most
    /// [`MAX_BATCH_ITEMS`] items ([`PreprocessingError::Mismatch`]
    /// otherwise); an empty demand yields empty batches.
    pub fn deal(&mut self, demand: &Demand) -> Result<Vec<DealerBatch>, PreprocessingError> {
        let items = validate_demand(demand)?;
        if items > MAX_BATCH_ITEMS {
            return Err(PreprocessingError::Mismatch(format!(
                "a batch holds at most {MAX_BATCH_ITEMS} items, the demand has {items}; split it"
            )));
        }
        let n = self.parties;
        if let Some(p) = demand.permutation.filter(|p| p.permuter >= n) {
            return Err(PreprocessingError::Mismatch(format!(
                "a permutation step for party {}, this dealer deals to {n} parties",
                p.permuter
            )));
        }
        let seeds = (0..n).map(|_| Seed::random()).collect::<Result<Vec<_>, _>>()?;
        let id = BatchId { session: self.session, seq: self.next_seq };
        self.next_seq += 1;

        let groups = demand.div_pairs.len();
        let comps: Vec<Vec<Seed>> = seeds.iter().map(|s| component_seeds(s, groups)).collect();
        if let Some(p) = demand.permutation {
            let delta = deal_permutation(&p, &comps, groups);
            let corrections = Corrections { delta, ..Corrections::empty() };
            return Ok(batches(id, seeds, demand, p.permuter, corrections));
        }
        let prgs = |k: usize, upto: usize| -> Vec<Prg> { comps[..upto].iter().map(|c| Prg::new(&c[k])).collect() };

        let c = self.deal_triples(demand.triples, prgs(COMP_A, n), prgs(COMP_B, n), prgs(COMP_C, n - 1));
        let bin = |which: usize, upto: usize| prgs(comp_binary(groups, which), upto);
        let bit_c = self.deal_bit_triples(demand.bit_triple_words, bin(BT_A, n), bin(BT_B, n), bin(BT_C, n - 1));
        let eda_bits = self.deal_edabits(demand.edabits, bin(EDA_R, n), bin(EDA_BITS, n - 1));
        let da_arith = self.deal_dabits(demand.dabits, bin(DA_BITS, n), bin(DA_ARITH, n - 1));
        let div = demand
            .div_pairs
            .iter()
            .enumerate()
            .map(|(g, &(d, count))| {
                self.deal_div_pairs(d, count, prgs(comp_r(g), n), prgs(comp_msb(g), n - 1), prgs(comp_q(g), n - 1))
            })
            .collect();

        let used = DEALER_CHUNK.min(items);
        self.scratch_a[..used].zeroize();
        self.scratch_b[..used].zeroize();
        self.scratch_t[..used].zeroize();

        let corrections = Corrections { c: Share::new(c), div, bit_c, eda_bits, da_arith, delta: Share::default() };
        Ok(batches(id, seeds, demand, n - 1, corrections))
    }

    /// `c_{n-1}` for `count` triples, chunk by chunk: `a = sum_i a_i`,
    /// `b = sum_i b_i`, `c_{n-1} = a * b - sum_{i<n-1} c_i`.
    fn deal_triples(&mut self, count: usize, mut pa: Vec<Prg>, mut pb: Vec<Prg>, mut pc: Vec<Prg>) -> Vec<u64> {
        let mut out = vec![0u64; count];
        for chunk in out.chunks_mut(DEALER_CHUNK) {
            let k = chunk.len();
            let (a, b, t) = (&mut self.scratch_a[..k], &mut self.scratch_b[..k], &mut self.scratch_t[..k]);
            sum_streams(&mut pa, a, t);
            sum_streams(&mut pb, b, t);
            for ((o, x), y) in chunk.iter_mut().zip(a.iter()).zip(b.iter()) {
                *o = x.wrapping_mul(*y);
            }
            for p in &mut pc {
                p.fill(t);
                crate::ring::sub_assign(chunk, t);
            }
        }
        out
    }

    /// The last party's `c` words for `words` words of bit triples:
    /// `a = XOR_i a_i`, `b = XOR_i b_i`, `c_{n-1} = (a AND b) XOR
    /// XOR_{i<n-1} c_i`, 64 triples per word.
    fn deal_bit_triples(
        &mut self,
        words: usize,
        mut pa: Vec<Prg>,
        mut pb: Vec<Prg>,
        mut pc: Vec<Prg>,
    ) -> Zeroizing<Vec<u64>> {
        let mut out = Zeroizing::new(vec![0u64; words]);
        for chunk in out.chunks_mut(DEALER_CHUNK) {
            let k = chunk.len();
            let (a, b, t) = (&mut self.scratch_a[..k], &mut self.scratch_b[..k], &mut self.scratch_t[..k]);
            xor_streams(&mut pa, a, t);
            xor_streams(&mut pb, b, t);
            for ((o, x), y) in chunk.iter_mut().zip(a.iter()).zip(b.iter()) {
                *o = x & y;
            }
            for p in &mut pc {
                p.fill(t);
                chunk.iter_mut().zip(t.iter()).for_each(|(o, t)| *o ^= t);
            }
        }
        out
    }

    /// The last party's bit words for `count` edaBits: `r = sum_i r_i`,
    /// `bits_{n-1} = r XOR XOR_{i<n-1} bits_i` (one word per edaBit,
    /// element-wise: bit `k` of the word is bit `k` of `r`).
    fn deal_edabits(&mut self, count: usize, mut pr: Vec<Prg>, mut pbits: Vec<Prg>) -> Zeroizing<Vec<u64>> {
        let mut out = Zeroizing::new(vec![0u64; count]);
        for chunk in out.chunks_mut(DEALER_CHUNK) {
            let k = chunk.len();
            let t = &mut self.scratch_t[..k];
            sum_streams(&mut pr, chunk, t);
            for p in &mut pbits {
                p.fill(t);
                chunk.iter_mut().zip(t.iter()).for_each(|(o, t)| *o ^= t);
            }
        }
        out
    }

    /// The last party's additive shares of `count` daBits: `b = XOR_i
    /// bits_i` (every party's bits from its seed, packed), `arith_{n-1} = b
    /// - sum_{i<n-1} arith_i`.
    fn deal_dabits(&mut self, count: usize, mut pbits: Vec<Prg>, mut parith: Vec<Prg>) -> Share {
        let mut out = vec![0u64; count];
        for chunk in out.chunks_mut(DEALER_CHUNK) {
            let k = chunk.len();
            let w = words_for(k);
            let (b, t) = (&mut self.scratch_b[..w], &mut self.scratch_t[..w]);
            // DEALER_CHUNK is a multiple of 64: every chunk starts a word.
            xor_streams(&mut pbits, b, t);
            for (j, o) in chunk.iter_mut().enumerate() {
                *o = b[j / 64] >> (j % 64) & 1;
            }
            let t = &mut self.scratch_t[..k];
            for p in &mut parith {
                p.fill(t);
                crate::ring::sub_assign(chunk, t);
            }
        }
        Share::new(out)
    }

    /// `(msb_{n-1}, q_{n-1})` for `count` division pairs with divisor `d`.
    fn deal_div_pairs(
        &mut self,
        d: u64,
        count: usize,
        mut pr: Vec<Prg>,
        mut pm: Vec<Prg>,
        mut pq: Vec<Prg>,
    ) -> (Share, Share) {
        let div = Divider::new(d);
        let mut msb = vec![0u64; count];
        let mut q = vec![0u64; count];
        for (mc, qc) in msb.chunks_mut(DEALER_CHUNK).zip(q.chunks_mut(DEALER_CHUNK)) {
            let k = mc.len();
            let (r, t) = (&mut self.scratch_a[..k], &mut self.scratch_t[..k]);
            sum_streams(&mut pr, r, t);
            for ((m, qq), &x) in mc.iter_mut().zip(qc.iter_mut()).zip(r.iter()) {
                *m = x >> 63;
                *qq = div.div(x & LOW_63);
            }
            for p in &mut pm {
                p.fill(t);
                crate::ring::sub_assign(mc, t);
            }
            for p in &mut pq {
                p.fill(t);
                crate::ring::sub_assign(qc, t);
            }
        }
        (Share::new(msb), Share::new(q))
    }
}

impl Corrections {
    fn empty() -> Corrections {
        Corrections {
            c: Share::default(),
            div: Vec::new(),
            bit_c: Zeroizing::new(Vec::new()),
            eda_bits: Zeroizing::new(Vec::new()),
            da_arith: Share::default(),
            delta: Share::default(),
        }
    }
}

/// One batch per party, the corrections for `corrected`.
fn batches(id: BatchId, seeds: Vec<Seed>, demand: &Demand, corrected: usize, c: Corrections) -> Vec<DealerBatch> {
    let parties = seeds.len();
    let mut corrections = Some(c);
    seeds
        .into_iter()
        .enumerate()
        .map(|(party, seed)| DealerBatch {
            id,
            party,
            parties,
            shape: demand.clone(),
            seed,
            corrections: if party == corrected { corrections.take() } else { None },
        })
        .collect()
}

/// The permuter's `Δ = B − π(A)` of a permutation step, column by column:
/// `π` from the permuter's seed, `A` and `B` the sums of the other
/// parties' `a_j` and `b_j` streams. The dealer sees `π`, as it sees every
/// triple; no party but the permuter learns it.
fn deal_permutation(p: &super::PermutationDemand, comps: &[Vec<Seed>], groups: usize) -> Share {
    let others: Vec<&Vec<Seed>> = comps.iter().enumerate().filter(|(j, _)| *j != p.permuter).map(|(_, c)| c).collect();
    let mut pa: Vec<Prg> = others.iter().map(|c| Prg::new(&c[comp_binary(groups, PERM_A)])).collect();
    let mut pb: Vec<Prg> = others.iter().map(|c| Prg::new(&c[comp_binary(groups, PERM_B)])).collect();
    let pi = Zeroizing::new(Prg::new(&comps[p.permuter][comp_binary(groups, PERM_PI)]).permutation(p.len));
    let mut delta = vec![0u64; p.elements()];
    let (mut a, mut t) = (vec![0u64; p.len], vec![0u64; p.len]);
    for column in delta.chunks_exact_mut(p.len) {
        // Δ = B, then Δ[π(i)] −= A[i].
        sum_streams(&mut pb, column, &mut t);
        sum_streams(&mut pa, &mut a, &mut t);
        for (x, &to) in a.iter().zip(pi.iter()) {
            let d = &mut column[to as usize];
            *d = d.wrapping_sub(*x);
        }
    }
    a.zeroize();
    t.zeroize();
    Share::new(delta)
}

/// `acc = sum of the next acc.len() elements of every stream` (`tmp` is
/// scratch of the same length).
fn sum_streams(prgs: &mut [Prg], acc: &mut [u64], tmp: &mut [u64]) {
    let (first, rest) = prgs.split_first_mut().expect("at least one stream");
    first.fill(acc);
    for p in rest {
        p.fill(tmp);
        crate::ring::add_assign(acc, tmp);
    }
}

/// `acc = XOR of the next acc.len() words of every stream` (`tmp` is
/// scratch of the same length).
fn xor_streams(prgs: &mut [Prg], acc: &mut [u64], tmp: &mut [u64]) {
    let (first, rest) = prgs.split_first_mut().expect("at least two parties");
    first.fill(acc);
    for p in rest {
        p.fill(tmp);
        acc.iter_mut().zip(tmp.iter()).for_each(|(a, t)| *a ^= t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocessing::PermutationDemand;
    use proptest::prelude::*;

    fn reconstruct(parts: &[&Share]) -> Vec<u64> {
        let mut out = parts[0].expose().to_vec();
        for p in &parts[1..] {
            crate::ring::add_assign(&mut out, p.expose());
        }
        out
    }

    #[test]
    fn divider_matches_hardware_division_on_edges() {
        let ds = [1, 2, 3, 5, 7, 10, 1000, 1 << 16, (1 << 40) + 1, (1 << 62) + 1, (1 << 63) - 1, 1 << 63];
        let ds2 = [(1u64 << 63) + 1, u64::MAX];
        let xs = [0, 1, 2, 999, 1000, 1001, (1 << 62) - 1, 1 << 62, LOW_63 - 1, LOW_63];
        for &d in ds.iter().chain(&ds2) {
            let div = Divider::new(d);
            for &x in &xs {
                assert_eq!(div.div(x), x / d, "{x} / {d}");
            }
        }
    }

    proptest! {
        #[test]
        fn divider_matches_hardware_division(d in 1u64.., x in 0u64..=LOW_63, small in 1u64..100_000) {
            prop_assert_eq!(Divider::new(d).div(x), x / d);
            prop_assert_eq!(Divider::new(small).div(x), x / small);
        }

        #[test]
        fn split_demand_preserves_totals(t in 0usize..50, groups in proptest::collection::btree_map(1u64..100, 1usize..30, 0..4), max in 0usize..20) {
            let demand = Demand { triples: t, div_pairs: groups.into_iter().collect(), ..Default::default() };
            let pieces = split_demand(&demand, max);
            let mut triples = 0;
            let mut pairs = std::collections::BTreeMap::new();
            for p in &pieces {
                let items = validate_demand(p).unwrap();
                prop_assert!(items >= 1 && items <= max.max(1));
                triples += p.triples;
                for &(d, n) in &p.div_pairs { *pairs.entry(d).or_insert(0) += n; }
            }
            prop_assert_eq!(triples, demand.triples);
            prop_assert_eq!(pairs.into_iter().collect::<Vec<_>>(), demand.div_pairs.clone());
            prop_assert_eq!(pieces.is_empty(), demand.is_empty());
        }
    }

    #[test]
    fn chunk_boundaries_are_invisible() {
        // More than one dealer chunk, and a count that is not a multiple.
        let n = 3;
        let count = DEALER_CHUNK * 2 + 17;
        let demand = Demand { triples: count, div_pairs: vec![(3, count)], ..Default::default() };
        let mut dealer = TrustedDealer::new(n).unwrap();
        let shares: Vec<BatchMaterial> = dealer
            .deal(&demand)
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, b)| b.expand(i, n, &demand).unwrap())
            .collect();
        let a = reconstruct(&shares.iter().map(|s| &s.triples.a).collect::<Vec<_>>());
        let b = reconstruct(&shares.iter().map(|s| &s.triples.b).collect::<Vec<_>>());
        let c = reconstruct(&shares.iter().map(|s| &s.triples.c).collect::<Vec<_>>());
        for i in 0..count {
            assert_eq!(c[i], a[i].wrapping_mul(b[i]));
        }
        let r = reconstruct(&shares.iter().map(|s| &s.div_pairs[0].r).collect::<Vec<_>>());
        let q = reconstruct(&shares.iter().map(|s| &s.div_pairs[0].q).collect::<Vec<_>>());
        for i in 0..count {
            assert_eq!(q[i], (r[i] & LOW_63) / 3);
        }
        // The scratch vectors were wiped.
        assert!(dealer.scratch_a.iter().chain(&dealer.scratch_b).chain(&dealer.scratch_t).all(|&x| x == 0));
    }

    #[test]
    fn component_seeds_follow_the_documented_order() {
        let seed = Seed::from_bytes([9; 16]);
        let comps = component_seeds(&seed, 2);
        assert_eq!(comps.len(), 9 + BINARY_COMPONENTS);
        let raw = Prg::new(&seed).next_vec(2 * comps.len());
        let mut expect = [0u8; 16];
        expect[..8].copy_from_slice(&raw[2 * comp_q(1)].to_le_bytes());
        expect[8..].copy_from_slice(&raw[2 * comp_q(1) + 1].to_le_bytes());
        assert_eq!(comps[comp_q(1)].as_bytes(), &expect);
        // The binary components follow the groups: the arithmetic ones
        // are where batches without binary kinds always found them.
        expect[..8].copy_from_slice(&raw[2 * comp_binary(2, DA_ARITH)].to_le_bytes());
        expect[8..].copy_from_slice(&raw[2 * comp_binary(2, DA_ARITH) + 1].to_le_bytes());
        assert_eq!(comps[comp_binary(2, DA_ARITH)].as_bytes(), &expect);
        assert_eq!(comp_binary(2, BT_A), comp_q(1) + 1);
    }

    #[test]
    fn appended_bits_concatenate_at_any_offset() {
        let mut dst = Zeroizing::new(Vec::with_capacity(4));
        let mut len = 0;
        let src = [u64::MAX, 0x5555_5555_5555_5555];
        append_bits(&mut dst, &mut len, &src, 3);
        append_bits(&mut dst, &mut len, &src[1..], 64);
        append_bits(&mut dst, &mut len, &src, 100);
        assert_eq!(len, 167);
        let bits = Bits::from_words(1, len, dst.to_vec()).unwrap();
        for i in 0..len {
            let want = match i {
                0..3 => true,
                3..67 => (i - 3) % 2 == 0,
                67..131 => true,
                _ => (i - 131) % 2 == 0,
            };
            assert_eq!(bits.get(0, i), want, "bit {i}");
        }
    }

    #[test]
    fn assembly_never_leaves_unzeroized_copies_when_growing() {
        let mut v = Share::new(Vec::with_capacity(2));
        append_prg(&mut v, &Seed::from_bytes([1; 16]), 2);
        append_share(&mut v, Share::new(vec![5, 6, 7]));
        assert_eq!(v.len(), 5);
        assert_eq!(&v.expose()[2..], &[5, 6, 7]);
    }

    #[test]
    fn invalid_demands_are_refused() {
        let mut dealer = TrustedDealer::new(2).unwrap();
        for bad in [
            Demand { triples: 1, div_pairs: vec![(0, 1)], ..Default::default() },
            Demand { triples: 1, div_pairs: vec![(4, 1), (2, 1)], ..Default::default() },
            Demand { triples: 1, div_pairs: vec![(4, 1), (4, 1)], ..Default::default() },
            Demand { triples: MAX_BATCH_ITEMS + 1, div_pairs: vec![], ..Default::default() },
            permutation(0, 0, 1, 0),
            permutation(0, 3, 0, 0),
            permutation(2, 3, 1, 0),
            permutation(0, MAX_BATCH_ITEMS / 2 + 1, 2, 0),
            permutation(0, 3, 1, 1),
        ] {
            assert!(matches!(dealer.deal(&bad), Err(PreprocessingError::Mismatch(_))), "{bad:?}");
        }
        assert!(matches!(TrustedDealer::new(1), Err(PreprocessingError::Mismatch(_))));
    }

    fn permutation(permuter: usize, len: usize, columns: usize, triples: usize) -> Demand {
        Demand { triples, permutation: Some(PermutationDemand { permuter, len, columns }), ..Default::default() }
    }

    /// A permutation step: the permuter's `π` and `Δ`, the others' `a_j`
    /// and `b_j`, with `Δ = B − π(A)` column by column, and the batch is
    /// never split.
    #[test]
    fn permutation_steps_satisfy_their_definition() {
        for (parties, permuter, len, columns) in [(2, 0, 1, 1), (2, 1, 9, 2), (3, 2, 100, 3), (5, 1, 33, 1)] {
            let shape = permutation(permuter, len, columns, 0);
            assert_eq!(split_demand(&shape, 1), vec![shape.clone()]);
            let mut dealer = TrustedDealer::new(parties).unwrap();
            let parts: Vec<PermutationShares> = dealer
                .deal(&shape)
                .unwrap()
                .into_iter()
                .enumerate()
                .map(|(p, b)| {
                    assert_eq!(b.has_corrections(), p == permuter);
                    b.expand(p, parties, &shape).unwrap().permutation.unwrap()
                })
                .collect();
            let (mut a, mut b) = (vec![0u64; len * columns], vec![0u64; len * columns]);
            let mut held = None;
            for part in &parts {
                match part {
                    PermutationShares::Other { a: aj, b: bj } => {
                        crate::ring::add_assign(&mut a, aj.expose());
                        crate::ring::add_assign(&mut b, bj.expose());
                    }
                    PermutationShares::Permuter { perm, delta } => held = Some((perm, delta)),
                }
            }
            let (perm, delta) = held.expect("the permuter's part");
            let mut sorted = perm.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..len as u32).collect::<Vec<_>>(), "a permutation");
            for c in 0..columns {
                for i in 0..len {
                    let to = c * len + perm[i] as usize;
                    assert_eq!(delta.expose()[to], b[to].wrapping_sub(a[c * len + i]), "column {c}, element {i}");
                }
            }
        }
    }

    /// Dividing an empty vector puts a divisor with no pairs in the plan
    /// (issue 15, item 4): valid, dealt as nothing.
    #[test]
    fn zero_counts_are_valid() {
        let mut dealer = TrustedDealer::new(2).unwrap();
        let demand = Demand { triples: 1, div_pairs: vec![(2, 0), (3, 2)], ..Default::default() };
        assert_eq!(validate_demand(&demand).unwrap(), 3);
        let batches = dealer.deal(&demand).unwrap();
        assert_eq!(batches.len(), 2);
        assert!(split_demand(&demand, 10).iter().all(|d| d.div_pairs.iter().all(|&(_, n)| n > 0)));
    }
}
