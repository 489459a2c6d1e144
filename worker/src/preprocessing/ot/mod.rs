//! Dealer-free preprocessing: the parties generate their Beaver triples and
//! division pairs among themselves with oblivious transfer.
//!
//! **Trust model.** No third party. Security is semi-honest with a
//! dishonest majority: any coalition of up to `n − 1` parties that follows
//! the protocol learns nothing about the other parties' shares of the
//! material (and so, later, nothing about their inputs). A party that
//! deviates — sends a wrong correction, a malformed matrix — can make the
//! material wrong (`c ≠ a·b`) and so the result wrong, and may learn bits
//! of an honest party's shares through selective failure; stopping that
//! needs the checks of a maliciously secure protocol (MASCOT-style
//! sacrificing, SPDZ_2k MACs), which `docs/security.md` places on the
//! roadmap.
//!
//! The constructions, bottom up, each in its own module with its paper:
//!
//! - [`base`]: κ = 128 base OTs per ordered pair of parties, Chou–Orlandi
//!   over Ristretto255 (CDH, random oracle);
//! - [`iknp`]: IKNP OT extension (ALSZ13 form) to millions of correlated
//!   OTs (a PRG and a correlation-robust hash);
//! - [`hash`]: the fixed-key-AES circular-correlation-robust hash of Guo,
//!   Katz, Wang and Yu;
//! - [`transpose`]: the bit-matrix transposition IKNP needs;
//! - [`gilboa`]: Gilboa's OT-based product sharing over Z_2^64, with ABY's
//!   packing, and plain correlated OT over Z_2^64;
//! - [`session`]: one party's generator over the transport: pairwise
//!   products combined into `n`-party Beaver triples, random shared bits
//!   and, from them, division pairs for every divisor, daBits and edaBits;
//!   bit triples from random OTs (GMW, ALSZ13).

pub mod base;
pub mod gilboa;
pub mod hash;
pub mod iknp;
pub mod session;
pub mod transpose;

pub use session::{BIT_WORDS_PER_CHUNK, OtGenerator, TRIPLES_PER_CHUNK};

use super::{
    BitTripleShares, DaBitShares, DivPairShares, EdaBitShares, LayerMaterial, MaterialPlan, MaterialTag, Prefetched,
    PreprocessingError, TripleShares,
};
use crate::gf2::Bits;
use crate::sharing::Share;
use crate::transport::{JobId, Mesh, TransportError};
use zeroize::Zeroizing;

/// Division pairs generated per call: each takes 64 shared random bits,
/// so this bounds the bits in memory to 8 MiB per party.
const DIV_PAIRS_PER_CALL: usize = 16 * 1024;

/// `total` split into pieces of at most `max` (none for 0).
fn pieces(total: usize, max: usize) -> impl Iterator<Item = usize> {
    (0..total).step_by(max).map(move |start| max.min(total - start))
}

/// Append `more` to `share` (both this party's shares).
fn append(share: &mut Share, more: Share) {
    if share.is_empty() {
        *share = more;
    } else {
        share.expose_mut().extend_from_slice(more.expose());
    }
}

/// edaBits generated per call (64 random bits each, as division pairs).
const EDABITS_PER_CALL: usize = DIV_PAIRS_PER_CALL;

/// daBits generated per call (a multiple of 64, so the calls' packed bits
/// concatenate word by word).
const DABITS_PER_CALL: usize = 64 * DIV_PAIRS_PER_CALL;

/// The most of each binary kind one plan may ask for: bounds what a job
/// holds in memory (2^32 bit triples are 1.5 GiB of shares).
pub const MAX_BINARY_PER_PLAN: usize = 1 << 32;

/// Check that OT-based generation can serve `plan`: every divisor is in
/// `1..=2^62` (any such divisor: see [`session::pairs_from_bits`]), the
/// binary kinds are within [`MAX_BINARY_PER_PLAN`], and no layer is a
/// permutation step (only a dealer makes those). Every party
/// computes the same plan, so every party refuses the same job, before any
/// message.
pub fn check_plan(plan: &MaterialPlan) -> Result<(), PreprocessingError> {
    let sum = |f: fn(&super::Demand) -> usize| plan.layers.iter().try_fold(0usize, |acc, l| acc.checked_add(f(l)));
    for (what, total) in [
        ("bit triples", sum(|l| l.bit_triple_words).and_then(|w| w.checked_mul(64))),
        ("edaBits", sum(|l| l.edabits)),
        ("daBits", sum(|l| l.dabits)),
    ] {
        if total.is_none_or(|t| t > MAX_BINARY_PER_PLAN) {
            return Err(PreprocessingError::Mismatch(format!(
                "the plan asks for more than {MAX_BINARY_PER_PLAN} {what}"
            )));
        }
    }
    for (layer, demand) in plan.layers.iter().enumerate() {
        if demand.permutation.is_some() {
            return Err(PreprocessingError::Mismatch(format!(
                "layer {layer} is a step of a dealt shuffle; permutation correlations come from a trusted dealer \
                 only (OT and pool jobs shuffle through Beneš networks)"
            )));
        }
        for &(divisor, _) in &demand.div_pairs {
            if divisor == 0 || divisor > crate::protocol::additive::division::MAX_DIVISOR {
                return Err(PreprocessingError::Mismatch(format!(
                    "layer {layer} divides by {divisor}; divisors are between 1 and 2^62"
                )));
            }
        }
    }
    Ok(())
}

/// The tag of a generated layer: the first 8 bytes of
/// `SHA-256("cohort/ot/layer-tag/v1" || job || layer)`. The material was
/// made by every party together for this job and layer, so equal tags are
/// what the executor checks; a party out of step is caught by the message
/// numbering first.
fn layer_tag(job: JobId, layer: usize) -> MaterialTag {
    let mut ctx = ::ring::digest::Context::new(&::ring::digest::SHA256);
    ctx.update(b"cohort/ot/layer-tag/v1");
    ctx.update(&job.0);
    ctx.update(&(layer as u64).to_le_bytes());
    let digest = ctx.finish();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest.as_ref()[..8]);
    MaterialTag(u64::from_le_bytes(tag))
}

/// A generation failure as a [`PreprocessingError`]: a transport error
/// stays typed (its party, step and kind are what the job's failure
/// reports); anything else is described.
pub fn generation_error(e: OtError) -> PreprocessingError {
    match e {
        OtError::Transport(t) => PreprocessingError::Transport(Box::new(t)),
        other => PreprocessingError::Generation(other.to_string()),
    }
}

/// Generate every layer of `plan` with the job's peers over `mesh`, now:
/// base OTs, then every layer's material at once. Every party of the job
/// calls this at the same point (after the setup step, before input
/// sharing).
pub async fn generate_for_plan(mesh: &Mesh, job: JobId, plan: &MaterialPlan) -> Result<Prefetched, PreprocessingError> {
    check_plan(plan)?;
    let mut generator = OtGenerator::setup(mesh).await.map_err(generation_error)?;
    generate_with(&mut generator, mesh, job, plan).await
}

/// The first message number of the OT generation that completes a pool
/// job's material ([`complete_pool_material`]): far above the pool
/// agreement's numbers, which count up from 0 in threes per attempt.
pub const POOL_COMPLETION_MESSAGES: u32 = 1 << 30;

/// Complete a pool job's material: `stocked` is what the pool served for
/// the stocked part of `plan` ([`super::pool::split_plan`]: triples,
/// power-of-two division pairs and the binary kinds); the rest — division
/// pairs for divisors that are not powers of two and the correction
/// round's pairs — is generated now with OT over the job's mesh (a job's
/// divisors, such as a length, are not known when a pool fills).
/// Every party calls this at the same point; a plan with nothing to
/// generate exchanges no message.
pub async fn complete_pool_material(
    mesh: &Mesh,
    job: JobId,
    plan: &MaterialPlan,
    stocked: Prefetched,
) -> Result<Prefetched, PreprocessingError> {
    let (_, generated) = super::pool::split_plan(plan);
    if generated.total_div_pairs() == 0 && generated.total_triples() == 0 && !generated.has_binary() {
        return Ok(stocked);
    }
    check_plan(&generated)?;
    let mut generator = OtGenerator::setup_at(mesh, POOL_COMPLETION_MESSAGES).await.map_err(generation_error)?;
    let extra = generate_with(&mut generator, mesh, job, &generated).await?;
    stocked.merge(extra, plan)
}

/// [`generate_for_plan`] with a generator already set up.
///
/// The whole plan is generated in one batch, then cut into layers: the
/// triples of every layer in one call, the random bits of every division
/// pair of every layer in calls of at most [`DIV_PAIRS_PER_CALL`] pairs,
/// then the bit triples, edaBits and daBits of every layer, each kind in
/// calls of a bounded size. So the number of message exchanges depends on
/// the amounts, never on the circuit's depth (one call per layer would pay
/// the round trips of each call once per layer).
pub async fn generate_with(
    generator: &mut OtGenerator,
    mesh: &Mesh,
    job: JobId,
    plan: &MaterialPlan,
) -> Result<Prefetched, PreprocessingError> {
    let empty = || Share::new(Vec::new());
    let mut all = TripleShares { a: empty(), b: empty(), c: empty() };
    for n in pieces(plan.total_triples(), session::MAX_ITEMS_PER_CALL) {
        let t = generator.triples(mesh, n).await.map_err(generation_error)?;
        append(&mut all.a, t.a);
        append(&mut all.b, t.b);
        append(&mut all.c, t.c);
    }
    // The bits of every pair, in plan order, drawn call by call.
    let mut bits = BitSupply { pending: plan.total_div_pairs(), held: Vec::new(), next: 0 };
    let mut layers = Vec::with_capacity(plan.layers.len());
    let mut taken = 0;
    for (index, demand) in plan.layers.iter().enumerate() {
        let cut = |v: &Share| Share::new(v.expose()[taken..taken + demand.triples].to_vec());
        let triples = TripleShares { a: cut(&all.a), b: cut(&all.b), c: cut(&all.c) };
        taken += demand.triples;
        let mut div_pairs = Vec::with_capacity(demand.div_pairs.len());
        for &(divisor, count) in &demand.div_pairs {
            let mut pairs = DivPairShares { divisor, r: empty(), msb: empty(), q: empty(), g: empty() };
            let mut left = count;
            while left > 0 {
                let chunk = bits.take(generator, mesh, left).await?;
                let n = chunk.len() / 64;
                let p = session::pairs_from_bits(chunk.expose(), divisor);
                append(&mut pairs.r, p.r);
                append(&mut pairs.msb, p.msb);
                append(&mut pairs.q, p.q);
                append(&mut pairs.g, p.g);
                left -= n;
            }
            div_pairs.push(pairs);
        }
        layers.push((index, LayerMaterial::arithmetic(layer_tag(job, index), triples, div_pairs)));
    }
    if plan.has_binary() {
        let mut binary = BinaryMaterial::generate(generator, mesh, plan).await?;
        for ((_, layer), demand) in layers.iter_mut().zip(&plan.layers) {
            binary.cut(layer, demand);
        }
    }
    Ok(Prefetched::from_layers(layers))
}

/// The binary kinds of a whole plan, generated kind by kind and handed to
/// the layers in order. This party's shares: zeroized on drop.
#[derive(Default)]
struct BinaryMaterial {
    /// Bit triples, one word per 64.
    bit_a: Zeroizing<Vec<u64>>,
    bit_b: Zeroizing<Vec<u64>>,
    bit_c: Zeroizing<Vec<u64>>,
    /// edaBits: additive shares of `r`, and one word per edaBit (its XOR
    /// shares of the bits of `r`, element-wise).
    eda_r: Zeroizing<Vec<u64>>,
    eda_bits: Zeroizing<Vec<u64>>,
    /// daBits: additive shares and packed XOR shares.
    da_arith: Zeroizing<Vec<u64>>,
    da_bits: Zeroizing<Vec<u64>>,
    /// What the layers cut so far: (bit words, edaBits, daBits).
    taken: (usize, usize, usize),
}

impl BinaryMaterial {
    async fn generate(
        generator: &mut OtGenerator,
        mesh: &Mesh,
        plan: &MaterialPlan,
    ) -> Result<BinaryMaterial, PreprocessingError> {
        let mut m = BinaryMaterial::default();
        let words: usize = plan.layers.iter().map(|l| l.bit_triple_words).sum();
        for n in pieces(words, session::MAX_BIT_WORDS_PER_CALL) {
            let t = generator.bit_triples(mesh, n).await.map_err(generation_error)?;
            m.bit_a.extend_from_slice(t.a.words());
            m.bit_b.extend_from_slice(t.b.words());
            m.bit_c.extend_from_slice(t.c.words());
        }
        for n in pieces(plan.total_edabits(), EDABITS_PER_CALL) {
            let (r, bits) = generator.edabit_words(mesh, n).await.map_err(generation_error)?;
            m.eda_r.extend_from_slice(r.expose());
            m.eda_bits.extend_from_slice(&bits);
        }
        for n in pieces(plan.total_dabits(), DABITS_PER_CALL) {
            let d = generator.dabits(mesh, n).await.map_err(generation_error)?;
            m.da_arith.extend_from_slice(d.arith.expose());
            m.da_bits.extend_from_slice(d.bits.words());
        }
        Ok(m)
    }

    /// Give `layer` the next binary material its `demand` asks for.
    fn cut(&mut self, layer: &mut LayerMaterial, demand: &super::Demand) {
        let (w0, e0, d0) = self.taken;
        let (w, e, d) = (demand.bit_triple_words, demand.edabits, demand.dabits);
        if w > 0 {
            let plane = |v: &[u64]| Bits::from_words(1, 64 * w, v[w0..w0 + w].to_vec()).expect("whole words");
            layer.bit_triples = BitTripleShares { a: plane(&self.bit_a), b: plane(&self.bit_b), c: plane(&self.bit_c) };
        }
        if e > 0 {
            layer.edabits = EdaBitShares {
                r: Share::new(self.eda_r[e0..e0 + e].to_vec()),
                bits: Bits::decompose(&self.eda_bits[e0..e0 + e], 64),
            };
        }
        if d > 0 {
            let bits = Bits::from_words(1, d, extract_bits(&self.da_bits, d0, d)).expect("whole words");
            layer.dabits = DaBitShares { arith: Share::new(self.da_arith[d0..d0 + d].to_vec()), bits };
        }
        self.taken = (w0 + w, e0 + e, d0 + d);
    }
}

/// Bits `start..start + len` of the packed `words`, packed from bit 0.
fn extract_bits(words: &[u64], start: usize, len: usize) -> Vec<u64> {
    let (first, shift) = (start / 64, start % 64);
    (0..len.div_ceil(64))
        .map(|i| {
            let lo = words[first + i] >> shift;
            let hi = if shift == 0 { 0 } else { words.get(first + i + 1).map_or(0, |w| w << (64 - shift)) };
            lo | hi
        })
        .collect()
}

/// Shared random bits for division pairs, generated [`DIV_PAIRS_PER_CALL`]
/// pairs' worth at a time and handed out in order.
struct BitSupply {
    /// Pairs not generated yet.
    pending: usize,
    /// This party's shares of the bits of the current call.
    held: Vec<u64>,
    /// The first unused bit of `held`.
    next: usize,
}

impl BitSupply {
    /// The bits of up to `pairs` pairs (64 per pair; at least one pair).
    async fn take(
        &mut self,
        generator: &mut OtGenerator,
        mesh: &Mesh,
        pairs: usize,
    ) -> Result<Share, PreprocessingError> {
        if self.next == self.held.len() {
            use zeroize::Zeroize;
            self.held.zeroize();
            let n = self.pending.min(DIV_PAIRS_PER_CALL);
            if n == 0 {
                return Err(PreprocessingError::Mismatch(
                    "the plan asks for more division pairs than it counts".into(),
                ));
            }
            self.held = generator.random_bits(mesh, 64 * n).await.map_err(generation_error)?.into_inner();
            self.pending -= n;
            self.next = 0;
        }
        let n = pairs.min((self.held.len() - self.next) / 64);
        let out = Share::new(self.held[self.next..self.next + 64 * n].to_vec());
        self.next += 64 * n;
        Ok(out)
    }
}

impl Drop for BitSupply {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.held.zeroize();
    }
}

/// Why OT-based generation failed. Carries no secret: messages name sizes,
/// parties and steps, never values.
#[derive(Debug, thiserror::Error)]
pub enum OtError {
    /// A peer's message does not have the expected form.
    #[error("malformed OT message: {0}")]
    Malformed(String),
    /// A request this generator does not serve.
    #[error("{0}")]
    Unsupported(String),
    /// An earlier call failed mid-protocol: the extension state is gone,
    /// so the generator refuses further work (set up a new one).
    #[error("the OT generator stopped after an error: {0}")]
    Stopped(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Entropy(#[from] crate::prg::EntropyError),
    /// A blocking computation task panicked or was cancelled.
    #[error("an OT computation task failed: {0}")]
    Task(String),
}
