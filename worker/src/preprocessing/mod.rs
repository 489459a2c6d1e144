//! Correlated randomness for the online phase, and where it comes from.
//!
//! The online phase of `additive-semi-honest` consumes two kinds of
//! material, both additively shared among the parties:
//!
//! - **Beaver triples** `([a], [b], [c])` with `c = a * b`, `a`, `b`
//!   uniform in Z_2^64: one per secret-by-secret multiplication.
//! - **Division pairs** for a public divisor `d`: `([r], [m], [q])` with `r`
//!   uniform in Z_2^64, `m` the most significant bit of `r` (0 or 1, shared
//!   as a ring element) and `q = floor((r mod 2^63) / d)`: one per element
//!   of a secure division by a public value (fixed-point truncation is
//!   division by `2^f`). See `protocol::additive::division`.
//!
//! What a job consumes is a [`MaterialPlan`]: one [`Demand`] per layer of
//! the circuit, computed from public information only (the circuit and the
//! input lengths), so every party and the material's producer agree on it.
//! A [`MaterialSource`] hands a party its shares layer by layer. Material is
//! consumed exactly once — reusing a triple leaks the difference of the
//! inputs it masked — and every [`LayerMaterial`] carries a [`MaterialTag`]
//! that the parties compare before using it, so mismatched material is an
//! error, never a wrong result.
//!
//! Two producers implement the seam, chosen per job by [`Mode`]:
//!
//! - a trusted dealer ([`dealer`]): a third party that sees all the
//!   randomness it deals (but no input);
//! - the parties themselves ([`ot`]): oblivious-transfer-based generation,
//!   no third party; [`ot::generate_for_plan`] makes a job's material over
//!   the job's own connections before its inputs are shared.

pub mod dealer;
pub mod durable;
pub mod ot;
pub mod pool;
pub mod store;

use crate::gf2::Bits;
use crate::sharing::Share;
use std::fmt;
use std::future::Future;

/// Where a job's material comes from. Every party of a job must use the
/// same mode: it is part of the consent digest the parties compare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A trusted dealer (a TRUSTED THIRD PARTY that sees the material).
    #[default]
    Dealer,
    /// The parties generate it among themselves with oblivious transfer,
    /// during the job.
    Ot,
    /// Every party takes it from its durable pool ([`store`]), filled
    /// ahead of time with OT-based generation; the parties agree on the
    /// batches first ([`pool::take`]).
    Pool,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Dealer => "dealer",
            Mode::Ot => "ot",
            Mode::Pool => "pool",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one batch of material (dealt, or generated and stored).
/// Public: it names the material, not its value, and appears in errors,
/// tags and file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId {
    /// Random per dealer or generation session, so ids never collide
    /// across sessions.
    pub session: [u8; 16],
    /// Sequence number of the batch within the session, from 0.
    pub seq: u64,
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.session {
            write!(f, "{b:02x}")?;
        }
        write!(f, ":{:016x}", self.seq)
    }
}

/// What one layer consumes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Demand {
    /// Number of Beaver triples.
    pub triples: usize,
    /// Division pairs needed, as (divisor, count), divisors ascending and
    /// distinct, a count may be zero (dividing an empty vector).
    pub div_pairs: Vec<(u64, usize)>,
    /// Bit triples for the layer's AND gates, in 64-bit words: each word
    /// holds 64 independent triples, bit-sliced ([`BitTripleShares`]).
    pub bit_triple_words: usize,
    /// edaBits for the layer's masked openings ([`EdaBitShares`]).
    pub edabits: usize,
    /// daBits for the layer's bit injections ([`DaBitShares`]).
    pub dabits: usize,
    /// One step of a dealt oblivious shuffle ([`PermutationShares`]). A
    /// demand that holds one holds nothing else, and is dealt as one batch.
    pub permutation: Option<PermutationDemand>,
}

/// One step of a shuffle from a permutation correlation: party `permuter`
/// receives a uniformly random permutation `π` of `0..len` and, for each of
/// `columns` columns, `Δ = B − π(A)`; every other party `j` receives
/// uniform `a_j` and `b_j` (`A = Σ a_j`, `B = Σ b_j` over `j ≠ permuter`).
/// Only a trusted dealer makes it (it knows `π`, as it knows every triple);
/// see `protocol::additive::shuffle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PermutationDemand {
    pub permuter: usize,
    /// Elements per column (at least 1).
    pub len: usize,
    /// Columns permuted together by the same `π` (at least 1).
    pub columns: usize,
}

impl PermutationDemand {
    /// Ring elements per share vector (`len · columns`).
    pub fn elements(&self) -> usize {
        self.len.saturating_mul(self.columns)
    }
}

impl Demand {
    pub fn is_empty(&self) -> bool {
        self.triples == 0
            && self.div_pairs.is_empty()
            && self.bit_triple_words == 0
            && self.edabits == 0
            && self.dabits == 0
            && self.permutation.is_none()
    }

    /// Whether the layer needs any of the binary kinds (bit triples,
    /// edaBits, daBits).
    pub fn has_binary(&self) -> bool {
        self.bit_triple_words > 0 || self.edabits > 0 || self.dabits > 0
    }
}

/// What a whole job consumes: one [`Demand`] per layer, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MaterialPlan {
    pub layers: Vec<Demand>,
}

impl MaterialPlan {
    pub fn total_triples(&self) -> usize {
        self.layers.iter().map(|l| l.triples).sum()
    }
    pub fn total_div_pairs(&self) -> usize {
        self.layers.iter().flat_map(|l| &l.div_pairs).map(|(_, n)| n).sum()
    }
    /// Bit triples (not words) over every layer.
    pub fn total_bit_triples(&self) -> usize {
        64 * self.layers.iter().map(|l| l.bit_triple_words).sum::<usize>()
    }
    pub fn total_edabits(&self) -> usize {
        self.layers.iter().map(|l| l.edabits).sum()
    }
    pub fn total_dabits(&self) -> usize {
        self.layers.iter().map(|l| l.dabits).sum()
    }
    /// Whether any layer needs a binary kind.
    pub fn has_binary(&self) -> bool {
        self.layers.iter().any(Demand::has_binary)
    }
    /// Whether any layer is a step of a dealt shuffle.
    pub fn has_permutations(&self) -> bool {
        self.layers.iter().any(|l| l.permutation.is_some())
    }
    /// What the whole plan consumes, per kind.
    pub fn totals(&self) -> MaterialTotals {
        MaterialTotals {
            triples: self.total_triples() as u64,
            div_pairs: self.total_div_pairs() as u64,
            bit_triples: self.total_bit_triples() as u64,
            edabits: self.total_edabits() as u64,
            dabits: self.total_dabits() as u64,
            permutations: self.layers.iter().filter_map(|l| l.permutation).map(|p| p.elements() as u64).sum(),
        }
    }
}

/// The material a plan consumes, per kind (public: counts only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MaterialTotals {
    /// Beaver triples over Z_2^64.
    pub triples: u64,
    /// Division pairs (any divisor).
    pub div_pairs: u64,
    /// Bit triples over GF(2) (AND gates), counted in bits.
    pub bit_triples: u64,
    /// edaBits (a ring element with its bits).
    pub edabits: u64,
    /// daBits (one bit in both sharings).
    pub dabits: u64,
    /// Permutation correlations (dealt shuffles), in elements: `len ·
    /// columns` per step.
    pub permutations: u64,
}

/// Identifies the material of one layer. Equal at every party exactly when
/// the parties hold shares of the same material (derived from the ids of
/// the batches the layer was assembled from). Public.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaterialTag(pub u64);

impl fmt::Display for MaterialTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One party's shares of a batch of Beaver triples (`a`, `b`, `c` have
/// equal lengths).
#[derive(Debug)]
pub struct TripleShares {
    pub a: Share,
    pub b: Share,
    pub c: Share,
}

/// One party's shares of a batch of division pairs for one divisor.
#[derive(Debug)]
pub struct DivPairShares {
    pub divisor: u64,
    /// Shares of `r`, uniform in Z_2^64.
    pub r: Share,
    /// Shares of the top bit of `r` (0 or 1).
    pub msb: Share,
    /// Shares of the quotient `q`: `floor((r mod 2^63) / divisor)` when
    /// dealt; linear in the bits of `r` when generated (see
    /// `protocol::additive::division`).
    pub q: Share,
    /// Shares of `g`, the correction round's input, for generated pairs of
    /// a divisor that is not a power of two; empty otherwise.
    pub g: Share,
}

/// One party's XOR shares of a batch of bit triples (`c = a AND b`,
/// bitwise), bit-sliced: each is one plane of `64 * words` elements, so
/// word `k` of `a`, `b`, `c` holds 64 independent triples.
#[derive(Debug, Default)]
pub struct BitTripleShares {
    pub a: Bits,
    pub b: Bits,
    pub c: Bits,
}

impl BitTripleShares {
    /// The number of 64-triple words held.
    pub fn words(&self) -> usize {
        self.a.words().len()
    }
}

/// One party's shares of a batch of edaBits (Escudero, Ghosh, Keller,
/// Rachuri, Scholl, CRYPTO 2020): `r` uniform in Z_2^64, additively shared,
/// and the 64 bits of the same `r`, XOR-shared as a 64-plane bundle.
#[derive(Debug, Default)]
pub struct EdaBitShares {
    /// Additive shares of `r`.
    pub r: Share,
    /// XOR shares of the bits of `r` (plane `k` is bit `k`).
    pub bits: Bits,
}

/// One party's shares of a batch of daBits (Rotaru and Wood, INDOCRYPT
/// 2019): a uniform bit `b`, additively shared over Z_2^64 (as 0 or 1) and
/// XOR-shared.
#[derive(Debug, Default)]
pub struct DaBitShares {
    /// Additive shares of `b` as a ring element.
    pub arith: Share,
    /// XOR shares of `b` (one plane).
    pub bits: Bits,
}

/// One party's part of a permutation correlation ([`PermutationDemand`]).
/// Share vectors hold the columns one after the other.
pub enum PermutationShares {
    /// At the permuter: `π` (element `i` moves to position `perm[i]`) and
    /// `Δ = B − π(A)`, column by column.
    Permuter { perm: zeroize::Zeroizing<Vec<u32>>, delta: Share },
    /// At every other party: its `a_j` and `b_j`.
    Other { a: Share, b: Share },
}

impl fmt::Debug for PermutationShares {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PermutationShares::Permuter { perm, .. } => write!(f, "Permuter({} elements, <redacted>)", perm.len()),
            PermutationShares::Other { a, .. } => write!(f, "Other({} elements, <redacted>)", a.len()),
        }
    }
}

/// Everything one layer consumes, for one party.
#[derive(Debug)]
pub struct LayerMaterial {
    pub tag: MaterialTag,
    pub triples: TripleShares,
    /// In the order of [`Demand::div_pairs`].
    pub div_pairs: Vec<DivPairShares>,
    pub bit_triples: BitTripleShares,
    pub edabits: EdaBitShares,
    pub dabits: DaBitShares,
    /// A dealt shuffle step's correlation (its layer holds nothing else).
    pub permutation: Option<PermutationShares>,
}

impl LayerMaterial {
    /// A layer of arithmetic material only (no binary kinds).
    pub fn arithmetic(tag: MaterialTag, triples: TripleShares, div_pairs: Vec<DivPairShares>) -> LayerMaterial {
        LayerMaterial {
            tag,
            triples,
            div_pairs,
            bit_triples: BitTripleShares::default(),
            edabits: EdaBitShares::default(),
            dabits: DaBitShares::default(),
            permutation: None,
        }
    }

    /// Whether the layer holds any binary material.
    pub fn has_binary(&self) -> bool {
        !self.bit_triples.a.is_empty() || !self.edabits.r.is_empty() || !self.dabits.arith.is_empty()
    }
}

/// Why material could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessingError {
    #[error("the material source is closed or exhausted ({0})")]
    Exhausted(String),
    #[error("material batch {0} was already consumed; refusing to reuse it")]
    Reused(String),
    #[error("material does not match the plan: {0}")]
    Mismatch(String),
    #[error("malformed material batch: {0}")]
    Malformed(String),
    #[error(transparent)]
    Entropy(#[from] crate::prg::EntropyError),
    /// OT-based generation failed (the message names the party and step).
    #[error("OT-based preprocessing: {0}")]
    Generation(String),
    /// The connection to a peer failed while the parties generated
    /// material. Kept typed, so that the job's failure names the party, the
    /// step and the kind, as it does in the online phase.
    #[error("OT-based preprocessing: {0}")]
    Transport(Box<crate::transport::TransportError>),
    /// Taking material from the pool failed (the message names the batch,
    /// kind or party).
    #[error("the preprocessing pool: {0}")]
    Pool(String),
}

/// A party's supply of preprocessed material.
pub trait MaterialSource: Send {
    /// The material for layer `layer` (0-based) of the plan, which must be
    /// requested once per layer in order. Never yields the same material
    /// twice.
    fn next_layer(
        &mut self,
        layer: usize,
        demand: &Demand,
    ) -> impl Future<Output = Result<LayerMaterial, PreprocessingError>> + Send;
}

/// Material drawn from another source ahead of time and held in memory, so
/// that the online phase runs without waiting for generation (used to
/// measure the online phase alone).
#[derive(Debug, Default)]
pub struct Prefetched {
    layers: std::collections::VecDeque<(usize, LayerMaterial)>,
}

impl Prefetched {
    /// Draw every layer of `plan` from `source` now.
    pub async fn drain<S: MaterialSource>(
        source: &mut S,
        plan: &MaterialPlan,
    ) -> Result<Prefetched, PreprocessingError> {
        let mut layers = std::collections::VecDeque::with_capacity(plan.layers.len());
        for (index, demand) in plan.layers.iter().enumerate() {
            layers.push_back((index, source.next_layer(index, demand).await?));
        }
        Ok(Prefetched { layers })
    }
}

impl Prefetched {
    /// Combine the material of two complementary parts of `plan` (each
    /// with every layer: one holds the triples, the groups of each divisor
    /// are in one or the other, the binary kinds are in one or the other)
    /// into the plan's layers. A layer's tag
    /// combines both tags, so parties holding different material still
    /// disagree.
    pub fn merge(self, other: Prefetched, plan: &MaterialPlan) -> Result<Prefetched, PreprocessingError> {
        let mismatch = |what: String| PreprocessingError::Mismatch(format!("combining material: {what}"));
        if self.layers.len() != plan.layers.len() || other.layers.len() != plan.layers.len() {
            return Err(mismatch("the parts do not have the plan's layers".into()));
        }
        let mut layers = Vec::with_capacity(plan.layers.len());
        for (((index, mut a), (other_index, b)), demand) in self.layers.into_iter().zip(other.layers).zip(&plan.layers)
        {
            if index != other_index || !b.triples.a.is_empty() {
                return Err(mismatch(format!("layer {index} against layer {other_index}")));
            }
            if b.has_binary() {
                if a.has_binary() {
                    return Err(mismatch(format!("layer {index}: both parts hold binary material")));
                }
                a.bit_triples = b.bit_triples;
                a.edabits = b.edabits;
                a.dabits = b.dabits;
            }
            a.div_pairs.extend(b.div_pairs);
            a.div_pairs.sort_by_key(|p| p.divisor);
            let divisors: Vec<u64> = a.div_pairs.iter().map(|p| p.divisor).collect();
            let planned: Vec<u64> = demand.div_pairs.iter().map(|(d, _)| *d).collect();
            if divisors != planned {
                return Err(mismatch(format!("layer {index} holds pairs for {divisors:?}, the plan {planned:?}")));
            }
            a.tag = MaterialTag(a.tag.0.rotate_left(17) ^ b.tag.0);
            layers.push((index, a));
        }
        Ok(Prefetched { layers: layers.into() })
    }

    /// Material already assembled, as `(layer index, material)` in layer
    /// order.
    pub fn from_layers(layers: Vec<(usize, LayerMaterial)>) -> Prefetched {
        Prefetched { layers: layers.into() }
    }
}

/// A job's material, from whichever [`Mode`] the job uses.
#[derive(Debug)]
pub enum JobMaterial {
    /// Streamed from a trusted dealer.
    Dealer(dealer::DealerSource),
    /// Generated by the parties before the job's inputs were shared.
    Generated(Prefetched),
}

impl MaterialSource for JobMaterial {
    async fn next_layer(&mut self, layer: usize, demand: &Demand) -> Result<LayerMaterial, PreprocessingError> {
        match self {
            JobMaterial::Dealer(s) => s.next_layer(layer, demand).await,
            JobMaterial::Generated(s) => s.next_layer(layer, demand).await,
        }
    }
}

impl MaterialSource for Prefetched {
    async fn next_layer(&mut self, layer: usize, _demand: &Demand) -> Result<LayerMaterial, PreprocessingError> {
        match self.layers.pop_front() {
            Some((index, material)) if index == layer => Ok(material),
            Some((index, _)) => {
                Err(PreprocessingError::Mismatch(format!("asked for layer {layer}, holding layer {index}")))
            }
            None => Err(PreprocessingError::Exhausted("no prefetched material left".into())),
        }
    }
}
