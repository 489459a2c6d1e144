//! Bit-matrix transposition, the data movement at the heart of IKNP: the
//! extension works on `κ = 128` columns of `N` bits and hands out `N` rows
//! of 128 bits.
//!
//! The matrix is processed in 64×64 blocks, each transposed in place with
//! the recursive block-swap method (Warren, *Hacker's Delight*, §7-3):
//! six rounds of masked swaps of half-blocks, `64 · 6 / 2` word operations
//! per 4096 bits, in safe, portable code.

/// One round of the block swap: for every pair of rows `(i, i + W)` in
/// each group of `2W` rows, swap the high `W` bits of row `i` with the low
/// `W` bits of row `i + W` (bit `j` of a word is column `j`). `W` is a
/// constant, so the loops unroll and vectorize.
#[inline(always)]
fn swap_round<const W: usize>(m: &mut [u64; 64], mask: u64) {
    for group in m.chunks_exact_mut(2 * W) {
        let (low, high) = group.split_at_mut(W);
        for (a, b) in low.iter_mut().zip(high.iter_mut()) {
            let t = ((*a >> W) ^ *b) & mask;
            *a ^= t << W;
            *b ^= t;
        }
    }
}

/// Transpose a 64×64 bit matrix in place: on return, bit `j` of word `i`
/// is what bit `i` of word `j` was.
#[inline]
pub fn transpose64(m: &mut [u64; 64]) {
    swap_round::<32>(m, 0x0000_0000_FFFF_FFFF);
    swap_round::<16>(m, 0x0000_FFFF_0000_FFFF);
    swap_round::<8>(m, 0x00FF_00FF_00FF_00FF);
    swap_round::<4>(m, 0x0F0F_0F0F_0F0F_0F0F);
    swap_round::<2>(m, 0x3333_3333_3333_3333);
    swap_round::<1>(m, 0x5555_5555_5555_5555);
}

/// Transpose 128 columns of `64 · words` bits into `64 · words` rows of 128
/// bits.
///
/// `columns` holds column `c` in `columns[c * words .. (c + 1) * words]`,
/// bit `j` of the column being bit `j % 64` of word `j / 64`. On return,
/// bit `c` of `rows[j]` is bit `j` of column `c`.
pub fn transpose_128(columns: &[u64], words: usize, rows: &mut Vec<u128>) {
    assert_eq!(columns.len(), 128 * words, "128 columns of {words} words each");
    rows.clear();
    rows.reserve(64 * words);
    let mut low = [0u64; 64];
    let mut high = [0u64; 64];
    for w in 0..words {
        for i in 0..64 {
            low[i] = columns[i * words + w];
            high[i] = columns[(64 + i) * words + w];
        }
        transpose64(&mut low);
        transpose64(&mut high);
        rows.extend(low.iter().zip(&high).map(|(l, h)| u128::from(*l) | u128::from(*h) << 64));
    }
    low.fill(0);
    high.fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prg::{Prg, Seed};

    fn bit(words: &[u64], j: usize) -> bool {
        words[j / 64] >> (j % 64) & 1 == 1
    }

    #[test]
    fn transpose64_is_the_definition_and_an_involution() {
        let mut prg = Prg::new(&Seed::from_bytes([7; 16]));
        for _ in 0..20 {
            let original: [u64; 64] = prg.next_vec(64).try_into().expect("64 words");
            let mut m = original;
            transpose64(&mut m);
            for (i, row) in m.iter().enumerate() {
                for (j, column) in original.iter().enumerate() {
                    assert_eq!(row >> j & 1, column >> i & 1, "bit ({i}, {j})");
                }
            }
            transpose64(&mut m);
            assert_eq!(m, original);
        }
        let mut identity: [u64; 64] = std::array::from_fn(|i| 1 << i);
        transpose64(&mut identity);
        assert_eq!(identity, std::array::from_fn(|i| 1 << i));
    }

    #[test]
    fn transpose_128_moves_every_bit_where_the_definition_says() {
        let mut prg = Prg::new(&Seed::from_bytes([9; 16]));
        for words in [1, 2, 5] {
            let columns = prg.next_vec(128 * words);
            let mut rows = vec![u128::MAX; 3]; // stale contents are overwritten
            transpose_128(&columns, words, &mut rows);
            assert_eq!(rows.len(), 64 * words);
            for (j, row) in rows.iter().enumerate() {
                for c in 0..128 {
                    assert_eq!(row >> c & 1 == 1, bit(&columns[c * words..(c + 1) * words], j), "row {j}, column {c}");
                }
            }
        }
    }
}
