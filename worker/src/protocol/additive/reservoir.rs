//! The material of a dynamic step (a sort): a budget planned as a run of
//! chunks in the job's material plan, drawn from the job's source only as
//! the step's sub-instances need it, and split at element granularity
//! into their layers.
//!
//! A sort's quicksort makes a random (public, data-independent) number of
//! comparisons, so its material cannot be planned layer by layer before
//! the job. The planner reserves a budget instead
//! (`executor::sort::sort_demands`): the shuffle's triples exactly, and
//! comparison material for a number of comparisons the sort exceeds with
//! negligible probability. The step draws chunk after chunk as its layers
//! ask; what it leaves unused is drawn and discarded at its end, so the
//! stream stays in plan order for the layers after it.

use crate::gf2::{Bits, words_for};
use crate::preprocessing::{
    BitTripleShares, DaBitShares, Demand, EdaBitShares, LayerMaterial, MaterialSource, MaterialTag, PermutationDemand,
    PermutationShares, PreprocessingError, TripleShares,
};
use crate::sharing::Share;
use std::collections::VecDeque;

/// The unused part of the chunks drawn so far, and the chunks to come.
pub struct Reservoir {
    /// Plan index of the next chunk.
    next: usize,
    chunks: VecDeque<Demand>,
    /// Mixed from the tags of the chunks drawn so far (equal at every
    /// party exactly when their chunks are).
    tag: u64,
    served: u64,
    triples: [Vec<u64>; 3],
    /// Bit triples (`a`, `b`, `c`, one plane each).
    bit_triples: [BitQueue; 3],
    eda_r: Vec<u64>,
    eda_bits: BitQueue,
}

/// Bundles of one width, taken from the front element by element: a take
/// copies what it takes (and slices only the pieces it cuts), never what
/// stays.
#[derive(Default)]
struct BitQueue {
    pieces: VecDeque<Bits>,
    /// Elements of the front piece already taken.
    offset: usize,
}

impl BitQueue {
    fn push(&mut self, b: Bits) {
        if !b.is_empty() {
            self.pieces.push_back(b);
        }
    }

    fn held(&self) -> usize {
        self.pieces.iter().map(Bits::len).sum::<usize>() - self.offset
    }

    /// The first `count` elements (`count <= held()`), of `width` planes.
    fn take(&mut self, width: usize, count: usize) -> Bits {
        let mut parts = Vec::new();
        let mut left = count;
        while left > 0 {
            let front_len = self.pieces[0].len();
            let t = left.min(front_len - self.offset);
            if self.offset == 0 && t == front_len {
                parts.push(self.pieces.pop_front().expect("a piece"));
            } else {
                parts.push(self.pieces[0].slice(self.offset..self.offset + t));
                self.offset += t;
                if self.offset == front_len {
                    self.pieces.pop_front();
                    self.offset = 0;
                }
            }
            left -= t;
        }
        match parts.len() {
            0 => Bits::zeros(width, 0),
            1 => parts.pop().expect("one part"),
            _ => Bits::concat_elements(&parts.iter().collect::<Vec<_>>()),
        }
    }

    fn clear(&mut self) {
        self.pieces.clear();
        self.offset = 0;
    }
}

impl Reservoir {
    pub fn new(first: usize, chunks: &[Demand]) -> Reservoir {
        Reservoir {
            next: first,
            chunks: chunks.iter().cloned().collect(),
            tag: 0,
            served: 0,
            triples: Default::default(),
            bit_triples: Default::default(),
            eda_r: Vec::new(),
            eda_bits: BitQueue::default(),
        }
    }

    /// Draw the next chunk of the budget into the reservoir.
    async fn pull<S: MaterialSource>(&mut self, source: &mut S) -> Result<(), PreprocessingError> {
        let Some(demand) = self.chunks.pop_front() else {
            return Err(PreprocessingError::Exhausted(
                "the sort used up its planned material budget (a rare, data-independent event: the number of \
                 quicksort comparisons is random; retry the job)"
                    .into(),
            ));
        };
        // A permutation step met here (never: a shuffle takes them first)
        // is dropped with `m`, and wiped with its shares.
        let mut m = self.draw(source, &demand).await?;
        let t = &mut m.triples;
        for (have, new) in self.triples.iter_mut().zip([&mut t.a, &mut t.b, &mut t.c]) {
            have.extend_from_slice(new.expose());
        }
        let b = m.bit_triples;
        if !b.a.is_empty() {
            for (have, new) in self.bit_triples.iter_mut().zip([b.a, b.b, b.c]) {
                have.push(new);
            }
        }
        if !m.edabits.r.is_empty() {
            self.eda_r.extend_from_slice(m.edabits.r.expose());
            self.eda_bits.push(m.edabits.bits);
        }
        Ok(())
    }

    /// Whether the budget's next chunk is a permutation step (a sort's
    /// shuffle from dealt correlations).
    pub fn next_is_permutation(&self) -> bool {
        self.chunks.front().is_some_and(|d| d.permutation.is_some())
    }

    /// The next chunk, a permutation step: its shape and this party's
    /// correlation. Its tag enters the tags of the layers after it, so
    /// parties holding different steps disagree at the next opening.
    pub async fn permutation<S: MaterialSource>(
        &mut self,
        source: &mut S,
    ) -> Result<(PermutationDemand, PermutationShares), PreprocessingError> {
        let mismatch = || PreprocessingError::Mismatch("the sort's budget has no permutation step here".into());
        let shape = self.chunks.front().and_then(|d| d.permutation).ok_or_else(mismatch)?;
        let demand = self.chunks.pop_front().expect("the front chunk");
        let m = self.draw(source, &demand).await?;
        Ok((shape, m.permutation.ok_or_else(mismatch)?))
    }

    /// The material of the budget's next plan entry, its tag mixed into
    /// the reservoir's.
    async fn draw<S: MaterialSource>(
        &mut self,
        source: &mut S,
        demand: &Demand,
    ) -> Result<LayerMaterial, PreprocessingError> {
        let m = source.next_layer(self.next, demand).await?;
        self.next += 1;
        self.tag = self.tag.rotate_left(13) ^ m.tag.0;
        Ok(m)
    }

    /// The material of one sub-instance layer: `demand`'s triples and
    /// edaBits, and `and_bits` bit triples packed into the demand's words
    /// (the tail of the last word zero, an unused triple of zeros).
    pub async fn layer<S: MaterialSource>(
        &mut self,
        source: &mut S,
        demand: &Demand,
        and_bits: usize,
    ) -> Result<LayerMaterial, PreprocessingError> {
        if !demand.div_pairs.is_empty() || demand.dabits > 0 || words_for(and_bits) != demand.bit_triple_words {
            return Err(PreprocessingError::Mismatch(
                "a sort's step takes only triples, bit triples and edaBits".into(),
            ));
        }
        while self.triples[0].len() < demand.triples
            || self.bit_triples[0].held() < and_bits
            || self.eda_r.len() < demand.edabits
        {
            self.pull(source).await?;
        }
        let triples = {
            let [a, b, c] = self.triples.each_mut().map(|v| Share::new(v.drain(..demand.triples).collect()));
            TripleShares { a, b, c }
        };
        let bit_triples = if and_bits == 0 {
            BitTripleShares::default()
        } else {
            let words = demand.bit_triple_words;
            let [a, b, c] = self.bit_triples.each_mut().map(|have| {
                // The tail of the last word: zeros (a triple of zeros).
                let mut w = have.take(1, and_bits).words().to_vec();
                w.resize(words, 0);
                Bits::from_words(1, 64 * words, w).expect("one plane of whole words")
            });
            BitTripleShares { a, b, c }
        };
        let edabits = if demand.edabits == 0 {
            EdaBitShares::default()
        } else {
            let r = Share::new(self.eda_r.drain(..demand.edabits).collect());
            let bits = self.eda_bits.take(64, demand.edabits);
            EdaBitShares { r, bits }
        };
        self.served += 1;
        Ok(LayerMaterial {
            tag: MaterialTag(self.tag ^ self.served.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            triples,
            div_pairs: Vec::new(),
            bit_triples,
            edabits,
            dabits: DaBitShares::default(),
            permutation: None,
        })
    }

    /// Draw and discard the chunks the step did not use, so that the
    /// source continues at the plan's next entry. Returns how many.
    pub async fn drain<S: MaterialSource>(mut self, source: &mut S) -> Result<usize, PreprocessingError> {
        let unused = self.chunks.len();
        while !self.chunks.is_empty() {
            self.pull(source).await?;
            // Material is wiped when dropped (shares zeroize): keep
            // nothing.
            self.triples.iter_mut().for_each(crate::memory::wipe_vec);
            crate::memory::wipe_vec(&mut self.eda_r);
            self.eda_bits.clear();
            self.bit_triples.iter_mut().for_each(BitQueue::clear);
        }
        Ok(unused)
    }
}
