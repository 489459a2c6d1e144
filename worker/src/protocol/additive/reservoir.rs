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
    BitTripleShares, DaBitShares, Demand, EdaBitShares, LayerMaterial, MaterialSource, MaterialTag, PreprocessingError,
    TripleShares,
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
    /// Bit triples (`a`, `b`, `c`, one plane each), in pieces joined when
    /// taken: one copy per layer, not one per chunk.
    bit_triples: [Vec<Bits>; 3],
    eda_r: Vec<u64>,
    eda_bits: Vec<Bits>,
}

/// The elements of `pieces` (one width), joined into one bundle in place.
fn joined(pieces: &mut Vec<Bits>, width: usize) -> &mut Bits {
    if pieces.len() != 1 {
        let whole = if pieces.is_empty() {
            Bits::zeros(width, 0)
        } else {
            Bits::concat_elements(&pieces.iter().collect::<Vec<_>>())
        };
        *pieces = vec![whole];
    }
    &mut pieces[0]
}

/// The first `count` elements of `pieces`, leaving the rest.
fn take_bits(pieces: &mut Vec<Bits>, width: usize, count: usize) -> Bits {
    let whole = joined(pieces, width);
    let taken = whole.slice(0..count);
    *whole = whole.slice(count..whole.len());
    taken
}

fn held(pieces: &[Bits]) -> usize {
    pieces.iter().map(Bits::len).sum()
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
            eda_bits: Vec::new(),
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
        let mut m = source.next_layer(self.next, &demand).await?;
        self.next += 1;
        self.tag = self.tag.rotate_left(13) ^ m.tag.0;
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
            || held(&self.bit_triples[0]) < and_bits
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
            let pad = Bits::zeros(1, 64 * demand.bit_triple_words - and_bits);
            let [a, b, c] = self.bit_triples.each_mut().map(|have| {
                let taken = take_bits(have, 1, and_bits);
                Bits::concat_elements(&[&taken, &pad])
            });
            BitTripleShares { a, b, c }
        };
        let edabits = if demand.edabits == 0 {
            EdaBitShares::default()
        } else {
            let r = Share::new(self.eda_r.drain(..demand.edabits).collect());
            let bits = take_bits(&mut self.eda_bits, 64, demand.edabits);
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
            self.triples.iter_mut().for_each(|v| crate::memory::wipe_vec(v));
            crate::memory::wipe_vec(&mut self.eda_r);
            self.eda_bits.clear();
            self.bit_triples.iter_mut().for_each(Vec::clear);
        }
        Ok(unused)
    }
}
