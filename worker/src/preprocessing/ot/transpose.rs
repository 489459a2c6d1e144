//! Bit-matrix transposition, the data movement at the heart of IKNP: the
//! extension works on `κ = 128` columns of `N` bits and hands out `N` rows
//! of 128 bits.
//!
//! The matrix is processed in 64×64 blocks, each transposed in place with
//! the recursive block-swap method (Warren, *Hacker's Delight*, §7-3):
//! six rounds of masked swaps of half-blocks, `64 · 6 / 2` word operations
//! per 4096 bits, in safe, portable code.

/// Transpose a 64×64 bit matrix in place: on return, bit `j` of word `i`
/// is what bit `i` of word `j` was.
pub fn transpose64(m: &mut [u64; 64]) {
    let mut width = 32;
    let mut mask: u64 = 0x0000_0000_FFFF_FFFF;
    while width != 0 {
        let mut k = 0;
        while k < 64 {
            for i in k..k + width {
                // Swap the high `width` bits of row i with the low `width`
                // bits of row i + width (bit j of word i is column j).
                let t = ((m[i] >> width) ^ m[i + width]) & mask;
                m[i] ^= t << width;
                m[i + width] ^= t;
            }
            k += 2 * width;
        }
        width >>= 1;
        mask ^= mask << width;
    }
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
    rows.resize(64 * words, 0);
    let mut block = [0u64; 64];
    for half in 0..2 {
        for w in 0..words {
            for (i, b) in block.iter_mut().enumerate() {
                *b = columns[(64 * half + i) * words + w];
            }
            transpose64(&mut block);
            let shift = 64 * half;
            for (i, b) in block.iter().enumerate() {
                rows[64 * w + i] |= u128::from(*b) << shift;
            }
        }
    }
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
