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
use zerocopy::IntoBytes;
use zeroize::Zeroize;

/// The security parameter κ: base OTs per direction, bits per row.
pub const KAPPA: usize = 128;

/// Words of choices (64 OTs each) processed at a time. The matrix `u` is
/// sent tile by tile: for each tile, the κ column segments of `TILE_WORDS`
/// words (fewer in the last tile), each as little-endian words. A tile's
/// columns (64 KiB) and rows stay in the L2 cache from the PRG through the
/// transposition to the hash.
pub const TILE_WORDS: usize = 128;

/// Bytes of the matrix `u` for `words` words of choices.
pub fn matrix_bytes(words: usize) -> usize {
    KAPPA * words * 8
}

/// The tiles of `words` words: `(first word, words in the tile)`.
fn tiles(words: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..words).step_by(TILE_WORDS).map(move |first| (first, TILE_WORDS.min(words - first)))
}

/// Column scratch and row output of one tile. Secret; zeroized on drop.
struct Tile {
    columns: Vec<u64>,
    rows: Vec<u128>,
}

impl Tile {
    fn new() -> Tile {
        Tile { columns: vec![0; KAPPA * TILE_WORDS], rows: Vec::with_capacity(64 * TILE_WORDS) }
    }
}

impl Drop for Tile {
    fn drop(&mut self) {
        self.columns.zeroize();
        self.rows.zeroize();
    }
}

/// The extension receiver: both seeds of each base OT.
pub struct ExtReceiver {
    g0: Vec<Prg>,
    g1: Vec<Prg>,
}

impl std::fmt::Debug for ExtReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtReceiver(<redacted>)")
    }
}

impl ExtReceiver {
    /// From the κ key pairs of base OTs in which this party was the sender.
    pub fn new(keys: &[[Seed; 2]]) -> ExtReceiver {
        assert_eq!(keys.len(), KAPPA, "IKNP needs κ base OTs");
        ExtReceiver {
            g0: keys.iter().map(|[k0, _]| Prg::new(k0)).collect(),
            g1: keys.iter().map(|[_, k1]| Prg::new(k1)).collect(),
        }
    }

    /// Extend to `64 · choices.len()` OTs whose choice bit `j` is bit `j % 64`
    /// of `choices[j / 64]`. Appends the matrix `u` for the sender to `u_out`
    /// ([`matrix_bytes`] bytes, tile by tile) and hands this party's rows
    /// `t_j` to `on_rows(j0, rows)`, a tile at a time (`rows[k]` is `t_{j0+k}`).
    pub fn extend(&mut self, choices: &[u64], u_out: &mut Vec<u8>, mut on_rows: impl FnMut(usize, &[u128])) {
        u_out.reserve(matrix_bytes(choices.len()));
        let mut tile = Tile::new();
        let mut column = [0u64; TILE_WORDS];
        for (first, tw) in tiles(choices.len()) {
            let r = &choices[first..first + tw];
            for i in 0..KAPPA {
                let t = &mut tile.columns[i * tw..(i + 1) * tw];
                self.g0[i].fill(t);
                let u = &mut column[..tw];
                self.g1[i].fill(u);
                for ((u, t), r) in u.iter_mut().zip(t.iter()).zip(r) {
                    *u = (*u ^ t ^ r).to_le();
                }
                u_out.extend_from_slice(u.as_bytes());
            }
            transpose_128(&tile.columns[..KAPPA * tw], tw, &mut tile.rows);
            on_rows(64 * first, &tile.rows);
        }
    }
}

/// The extension sender: the offset `Δ` and one seed per base OT.
pub struct ExtSender {
    delta: u128,
    g: Vec<Prg>,
}

impl std::fmt::Debug for ExtSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtSender(<redacted>)")
    }
}

impl Drop for ExtSender {
    fn drop(&mut self) {
        self.delta.zeroize();
    }
}

impl ExtSender {
    /// From `Δ` (bit `i` = the choice in base OT `i`) and the keys received
    /// in the κ base OTs.
    pub fn new(delta: u128, keys: &[Seed]) -> ExtSender {
        assert_eq!(keys.len(), KAPPA, "IKNP needs κ base OTs");
        ExtSender { delta, g: keys.iter().map(Prg::new).collect() }
    }

    /// The global offset: `q_j ⊕ t_j = r_j·Δ`.
    pub fn delta(&self) -> u128 {
        self.delta
    }

    /// The sender's rows `q_j` for the receiver's matrix `u` of `words`
    /// words of choices, handed to `on_rows(j0, rows)` a tile at a time.
    /// `u.len()` must be [`matrix_bytes`]`(words)`: the caller checks it,
    /// as it knows `words` from the agreed batch size.
    pub fn extend(&mut self, u: &[u8], words: usize, mut on_rows: impl FnMut(usize, &[u128])) {
        assert_eq!(u.len(), matrix_bytes(words));
        let (u, _) = u.as_chunks::<8>();
        let mut tile = Tile::new();
        let mut offset = 0;
        for (first, tw) in tiles(words) {
            for i in 0..KAPPA {
                let q = &mut tile.columns[i * tw..(i + 1) * tw];
                self.g[i].fill(q);
                let u = &u[offset..offset + tw];
                offset += tw;
                if self.delta >> i & 1 == 1 {
                    for (q, u) in q.iter_mut().zip(u) {
                        *q ^= u64::from_le_bytes(*u);
                    }
                }
            }
            transpose_128(&tile.columns[..KAPPA * tw], tw, &mut tile.rows);
            on_rows(64 * first, &tile.rows);
        }
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

    /// Extend once and collect all rows at both ends.
    pub(crate) fn extend_all(
        sender: &mut ExtSender,
        receiver: &mut ExtReceiver,
        choices: &[u64],
    ) -> (Vec<u8>, Vec<u128>, Vec<u128>) {
        let mut u = Vec::new();
        let mut t = Vec::new();
        receiver.extend(choices, &mut u, |j0, rows| {
            assert_eq!(j0, t.len());
            t.extend_from_slice(rows)
        });
        let mut q = Vec::new();
        sender.extend(&u, choices.len(), |j0, rows| {
            assert_eq!(j0, q.len());
            q.extend_from_slice(rows)
        });
        (u, t, q)
    }

    #[test]
    fn every_row_satisfies_the_correlation_on_many_batches() {
        let (mut sender, mut receiver) = pair();
        let mut prg = Prg::new(&Seed::from_bytes([3; 16]));
        let delta = sender.delta();
        let mut seen = std::collections::HashSet::new();
        for (batch, w) in [1usize, 7, 64, 3, 200, 129].into_iter().enumerate() {
            let mut choices = prg.next_vec(w);
            if batch == 1 {
                choices.iter_mut().for_each(|c| *c = 0); // all-zero choices
            }
            if batch == 3 {
                choices.iter_mut().for_each(|c| *c = u64::MAX); // all-one choices
            }
            let (u, t, q) = extend_all(&mut sender, &mut receiver, &choices);
            assert_eq!(u.len(), matrix_bytes(w));
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
        // about half its bits are set although every choice is 0.
        let (_, mut receiver) = pair();
        let choices = vec![0u64; 16];
        let (mut u1, mut u2) = (Vec::new(), Vec::new());
        receiver.extend(&choices, &mut u1, |_, _| {});
        receiver.extend(&choices, &mut u2, |_, _| {});
        assert_ne!(u1, u2);
        let ones: u32 = u1.iter().map(|b| b.count_ones()).sum();
        let total = (u1.len() * 8) as f64;
        assert!((f64::from(ones) / total - 0.5).abs() < 0.02, "{ones} of {total} bits set");
    }
}
