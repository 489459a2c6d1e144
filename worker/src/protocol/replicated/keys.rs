//! The pairwise PRG keys of a replicated job.
//!
//! Party `i` samples `k_i` and sends it to party `i - 1` in the input
//! round. Then the two holders of component `j` — party `j` (its part 0)
//! and party `j - 1` (its part 1) — both hold `k_j`, and draw the same
//! stream from it as long as they draw in the same order, which the
//! protocol's steps guarantee by drawing in gate order.
//!
//! A zero-sharing is `α_i = F(k_i) − F(k_{i+1})` at party `i`: the three
//! sum to zero and each is uniform to a single party, which knows only
//! two of the three keys (Araki et al., CCS 2016, §2.2).

use crate::prg::{Prg, Seed};

/// This party's two streams: its own key's (component `me`, its part 0)
/// and its next party's (component `me + 1`, its part 1).
pub struct Keys {
    own: Prg,
    next: Option<Prg>,
}

impl Keys {
    /// Keys with this party's own seed; the next party's arrives later
    /// ([`Keys::set_next`]).
    pub fn new(own: &Seed) -> Keys {
        Keys { own: Prg::new(own), next: None }
    }

    pub fn set_next(&mut self, seed: &Seed) {
        self.next = Some(Prg::new(seed));
    }

    /// The stream of the component held as part `part`.
    pub fn part(&mut self, part: usize) -> &mut Prg {
        match part {
            0 => &mut self.own,
            _ => self.next.as_mut().expect("the next party's key arrives in the input round, before any use"),
        }
    }

    /// `len` elements of the stream of part `part`.
    pub fn draw(&mut self, part: usize, len: usize) -> Vec<u64> {
        self.part(part).next_vec(len)
    }

    /// This party's share of a zero-sharing of `len` ring elements.
    pub fn zero_ring(&mut self, len: usize) -> Vec<u64> {
        let mut alpha = self.draw(0, len);
        let theirs = self.draw(1, len);
        crate::ring::sub_assign(&mut alpha, &theirs);
        alpha
    }

    /// This party's share of a zero-sharing of `len` words (XOR).
    pub fn zero_words(&mut self, len: usize) -> Vec<u64> {
        let mut alpha = self.draw(0, len);
        let theirs = self.draw(1, len);
        alpha.iter_mut().zip(&theirs).for_each(|(a, b)| *a ^= b);
        alpha
    }
}
