//! OT extension: IKNP (Ishai, Kilian, Nissim, Petrank, "Extending Oblivious
//! Transfers Efficiently", CRYPTO 2003), in the form of Asharov, Lindell,
//! Schneider and Zohner ("More Efficient Oblivious Transfer and Extensions
//! for Faster Secure Computation", CCS 2013, §4) that sends one matrix.
//!
//! κ = 128 base OTs, run *in reverse* (the extension receiver is the base
//! OT sender), turn into any number `N` of correlated OTs:
//!
//! ```text
//! base OTs:  receiver R holds seeds (k_i^0, k_i^1), i < κ;
//!            sender S holds Δ ∈ {0,1}^κ and k_i^{Δ_i}
//! R, choices r ∈ {0,1}^N:  t^i = G(k_i^0),  u^i = t^i ⊕ G(k_i^1) ⊕ r   ── u ──▶
//! S:                       q^i = G(k_i^{Δ_i}) ⊕ Δ_i·u^i  (= t^i ⊕ Δ_i·r)
//! ```
//!
//! Transposing the κ columns into rows gives, for every OT `j < N`,
//! `q_j = t_j ⊕ r_j·Δ`: a correlated OT over GF(2)^128 with global offset
//! `Δ`. [`super::gilboa`] hashes the rows ([`super::hash`]) into OTs over
//! Z_2^64. `G` is [`crate::prg::Prg`] (AES-128-CTR); each base key seeds one
//! stream that continues across calls, so successive extensions never
//! reuse PRG output.
//!
//! Security: semi-honest, from the base OTs, `G` being a PRG, and the
//! correlation robustness of the hash. `u` is `r` masked by the pseudorandom
//! `G(k_i^{1−Δ_i})`, which S does not know; R never learns `Δ`.

use super::transpose::transpose_128;
use crate::prg::{Prg, Seed};
use zeroize::{Zeroize, Zeroizing};

/// The security parameter κ: base OTs per direction, bits per row.
pub const KAPPA: usize = 128;

/// Rows of correlated OTs: `N` 128-bit values. Secret; zeroized on drop.
pub type Rows = Zeroizing<Vec<u128>>;

/// The extension receiver: both seeds of each base OT.
pub struct ExtReceiver {
    g0: Vec<Prg>,
    g1: Vec<Prg>,
    /// Column scratch, kept between calls.
    columns: Vec<u64>,
}

impl std::fmt::Debug for ExtReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtReceiver(<redacted>)")
    }
}

impl Drop for ExtReceiver {
    fn drop(&mut self) {
        self.columns.zeroize();
    }
}

impl ExtReceiver {
    /// From the κ key pairs of base OTs in which this party was the sender.
    pub fn new(keys: &[[Seed; 2]]) -> ExtReceiver {
        assert_eq!(keys.len(), KAPPA, "IKNP needs κ base OTs");
        ExtReceiver {
            g0: keys.iter().map(|[k0, _]| Prg::new(k0)).collect(),
            g1: keys.iter().map(|[_, k1]| Prg::new(k1)).collect(),
            columns: Vec::new(),
        }
    }

    /// Extend to `64 · choices.len()` OTs whose choice bit `j` is bit `j % 64`
    /// of `choices[j / 64]`. Returns the matrix `u` for the sender (column
    /// `i` in words `i·w .. (i+1)·w`, `w = choices.len()`) and this party's
    /// rows `t_j`.
    pub fn extend(&mut self, choices: &[u64]) -> (Vec<u64>, Rows) {
        let w = choices.len();
        let mut u = vec![0u64; KAPPA * w];
        self.columns.resize(KAPPA * w, 0);
        for i in 0..KAPPA {
            let t = &mut self.columns[i * w..(i + 1) * w];
            self.g0[i].fill(t);
            let col = &mut u[i * w..(i + 1) * w];
            self.g1[i].fill(col);
            for ((u, t), r) in col.iter_mut().zip(t.iter()).zip(choices) {
                *u ^= t ^ r;
            }
        }
        let mut rows = Zeroizing::new(Vec::new());
        transpose_128(&self.columns, w, &mut rows);
        self.columns.zeroize();
        (u, rows)
    }
}

/// The extension sender: the offset `Δ` and one seed per base OT.
pub struct ExtSender {
    delta: u128,
    g: Vec<Prg>,
    columns: Vec<u64>,
}

impl std::fmt::Debug for ExtSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtSender(<redacted>)")
    }
}

impl Drop for ExtSender {
    fn drop(&mut self) {
        self.delta.zeroize();
        self.columns.zeroize();
    }
}

impl ExtSender {
    /// From `Δ` (bit `i` = the choice in base OT `i`) and the keys received
    /// in the κ base OTs.
    pub fn new(delta: u128, keys: &[Seed]) -> ExtSender {
        assert_eq!(keys.len(), KAPPA, "IKNP needs κ base OTs");
        ExtSender { delta, g: keys.iter().map(Prg::new).collect(), columns: Vec::new() }
    }

    /// The global offset: `q_j ⊕ t_j = r_j·Δ`.
    pub fn delta(&self) -> u128 {
        self.delta
    }

    /// The sender's rows `q_j` for the receiver's matrix `u` of `w` words
    /// per column. `u.len()` must be `κ · w` (checked by the caller, which
    /// knows `w` from the agreed batch size).
    pub fn extend(&mut self, u: &[u64], w: usize) -> Rows {
        assert_eq!(u.len(), KAPPA * w);
        self.columns.resize(KAPPA * w, 0);
        for i in 0..KAPPA {
            let q = &mut self.columns[i * w..(i + 1) * w];
            self.g[i].fill(q);
            if self.delta >> i & 1 == 1 {
                for (q, u) in q.iter_mut().zip(&u[i * w..(i + 1) * w]) {
                    *q ^= u;
                }
            }
        }
        let mut rows = Zeroizing::new(Vec::new());
        transpose_128(&self.columns, w, &mut rows);
        self.columns.zeroize();
        rows
    }
}

/// The bits of `delta` as base-OT choices (bit `i` for OT `i`).
pub fn delta_choices(delta: u128) -> Vec<bool> {
    (0..KAPPA).map(|i| delta >> i & 1 == 1).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::base;
    use super::*;
    use crate::prg::Seed;

    /// A sender and receiver connected by real base OTs.
    pub(crate) fn pair() -> (ExtSender, ExtReceiver) {
        let mut bytes = [0u8; 16];
        crate::prg::fill_random(&mut bytes).expect("entropy");
        let delta = u128::from_le_bytes(bytes);
        let (base_sender, a) = base::BaseOtSender::start().expect("entropy");
        let (chosen, reply) = base::receive(&delta_choices(delta), &a).expect("receive");
        let keys = base_sender.finish(&reply, KAPPA).expect("finish");
        (ExtSender::new(delta, &chosen), ExtReceiver::new(&keys))
    }

    #[test]
    fn every_row_satisfies_the_correlation_on_many_batches() {
        let (mut sender, mut receiver) = pair();
        let mut prg = Prg::new(&Seed::from_bytes([3; 16]));
        let delta = sender.delta();
        let mut seen = std::collections::HashSet::new();
        for (batch, w) in [1usize, 7, 64, 3, 200].into_iter().enumerate() {
            let mut choices = prg.next_vec(w);
            if batch == 1 {
                choices.iter_mut().for_each(|c| *c = 0); // all-zero choices
            }
            if batch == 3 {
                choices.iter_mut().for_each(|c| *c = u64::MAX); // all-one choices
            }
            let (u, t) = receiver.extend(&choices);
            let q = sender.extend(&u, w);
            assert_eq!((t.len(), q.len()), (64 * w, 64 * w));
            for j in 0..64 * w {
                let r = choices[j / 64] >> (j % 64) & 1 == 1;
                assert_eq!(q[j] ^ t[j], if r { delta } else { 0 }, "batch {batch}, OT {j}");
                // Rows never repeat, within or across batches.
                assert!(seen.insert(t[j]), "batch {batch}, OT {j}: a repeated row");
            }
        }
    }

    #[test]
    fn the_matrix_hides_the_choices() {
        // Same choices twice: u differs (fresh PRG output each call), and
        // is far from the choice vector itself (about half its bits flip).
        let (_, mut receiver) = pair();
        let choices = vec![0u64; 16];
        let (u1, _) = receiver.extend(&choices);
        let (u2, _) = receiver.extend(&choices);
        assert_ne!(u1, u2);
        let ones: u32 = u1.iter().map(|w| w.count_ones()).sum();
        let total = (u1.len() * 64) as f64;
        assert!((f64::from(ones) / total - 0.5).abs() < 0.02, "{ones} of {total} bits set");
    }
}
