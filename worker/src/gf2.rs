//! Bit-sliced vectors over GF(2): the binary counterpart of [`crate::ring`].
//!
//! A [`Bits`] value is a *bundle* of `width` bit-planes over `len`
//! elements: plane `j` holds bit `j` of every element, packed 64 elements
//! to a machine word (element `i` is bit `i % 64` of word `i / 64` of the
//! plane). So one XOR or AND of two words acts on 64 elements at once, and
//! a layer of a binary circuit over 10^6 comparisons is a few thousand
//! word operations per plane.
//!
//! Bundles are what binary circuits move around: a 64-bit comparison
//! decomposes its operands into 64 planes ([`Bits::decompose`]), combines
//! planes with XOR and AND, and ends with a one-plane bundle (the result
//! bit of every element). Bits past `len` in a plane's last word are kept
//! zero by every operation here, so planes compare and count exactly.

use crate::preprocessing::ot::transpose::transpose64;
use std::ops::Range;

/// Words that hold `len` bits.
pub fn words_for(len: usize) -> usize {
    len.div_ceil(64)
}

/// The mask of the valid bits of a plane's last word (all ones when `len`
/// is a multiple of 64).
fn tail_mask(len: usize) -> u64 {
    match len % 64 {
        0 => u64::MAX,
        r => (1u64 << r) - 1,
    }
}

/// 64 bits of `words` from bit `start` on (zeros past the end).
fn window(words: &[u64], start: usize) -> u64 {
    let (w, s) = (start / 64, start % 64);
    let lo = words.get(w).copied().unwrap_or(0) >> s;
    let hi = if s == 0 { 0 } else { words.get(w + 1).copied().unwrap_or(0) << (64 - s) };
    lo | hi
}

/// Planes packed densely, one after another, each `len` bits long: how a
/// layer's AND gates are opened, so that a short vector's plane costs its
/// length in bit triples, not a whole word. Zeroized on drop (it holds
/// shares).
#[derive(Default)]
pub struct Packed {
    words: Vec<u64>,
    /// Bits held.
    len: usize,
}

impl Packed {
    /// Room for `bits` bits.
    pub fn with_capacity(bits: usize) -> Packed {
        Packed { words: Vec::with_capacity(words_for(bits)), len: 0 }
    }

    /// Append every plane of `b`, in order.
    pub fn push(&mut self, b: &Bits) {
        for j in 0..b.width {
            self.push_bits(b.plane(j), b.len);
        }
    }

    /// Append the first `len` bits of `words` (bits past `len` are zero).
    fn push_bits(&mut self, words: &[u64], len: usize) {
        let s = self.len % 64;
        if s == 0 {
            self.words.extend_from_slice(&words[..words_for(len)]);
        } else {
            for (k, word) in words[..words_for(len)].iter().enumerate() {
                *self.words.last_mut().expect("a partial word") |= word << s;
                // The high part starts a new word only if bits remain for it.
                if 64 * k + (64 - s) < len {
                    self.words.push(word >> (64 - s));
                }
            }
        }
        self.len += len;
        debug_assert_eq!(self.words.len(), words_for(self.len));
    }

    /// The packed words (`words_for(len)` of them).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// `width` planes of `len` bits each, read from `words` (packed as
    /// [`Packed::push`] packs them) from bit `offset` on.
    pub fn unpack(words: &[u64], offset: usize, width: usize, len: usize) -> Bits {
        let wpp = words_for(len);
        let mut out = Vec::with_capacity(width * wpp);
        for j in 0..width {
            let start = offset + j * len;
            out.extend((0..wpp).map(|k| window(words, start + 64 * k)));
        }
        let mut b = Bits { width, len, words: out };
        b.clear_tails();
        b
    }
}

impl Drop for Packed {
    fn drop(&mut self) {
        // Packed operands are shares: wiped once, in bulk.
        crate::memory::wipe_vec(&mut self.words);
    }
}

/// `width` bit-planes over `len` elements, stored plane after plane.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Bits {
    width: usize,
    len: usize,
    /// `width * words_for(len)` words; plane `j` is
    /// `words[j * wpp .. (j + 1) * wpp]` with `wpp = words_for(len)`.
    words: Vec<u64>,
}

impl std::fmt::Debug for Bits {
    // Bundles may hold shares or secrets: never print their contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bits(<{} planes x {} elements redacted>)", self.width, self.len)
    }
}

impl Bits {
    /// All-zero planes.
    pub fn zeros(width: usize, len: usize) -> Bits {
        Bits { width, len, words: crate::memory::zeroed(width * words_for(len)) }
    }

    /// All-one planes (the constant `2^width - 1` in every element).
    pub fn ones(width: usize, len: usize) -> Bits {
        let mut b = Bits { width, len, words: vec![u64::MAX; width * words_for(len)] };
        b.clear_tails();
        b
    }

    /// A bundle from its words (plane after plane); `None` if the count is
    /// wrong. Bits past `len` are cleared.
    pub fn from_words(width: usize, len: usize, words: Vec<u64>) -> Option<Bits> {
        if words.len() != width * words_for(len) {
            return None;
        }
        let mut b = Bits { width, len, words };
        b.clear_tails();
        Some(b)
    }

    /// The low `width` bits of each value, as planes (a transposition in
    /// 64×64 blocks).
    pub fn decompose(values: &[u64], width: usize) -> Bits {
        assert!(width <= 64, "a bundle decomposes at most 64 bits");
        let len = values.len();
        let wpp = words_for(len);
        let mut words = vec![0u64; width * wpp];
        let mut block = [0u64; 64];
        for (w, chunk) in values.chunks(64).enumerate() {
            block[..chunk.len()].copy_from_slice(chunk);
            block[chunk.len()..].fill(0);
            // Row i = element i; after the transpose, row j = plane j.
            transpose64(&mut block);
            for (j, plane_word) in block.iter().take(width).enumerate() {
                words[j * wpp + w] = *plane_word;
            }
        }
        block.fill(0);
        Bits { width, len, words }
    }

    /// The inverse of [`Bits::decompose`]: element `i` is
    /// `sum_j plane_j[i] * 2^j` (planes past 64 are ignored).
    pub fn compose(&self) -> Vec<u64> {
        let wpp = words_for(self.len);
        let mut out = Vec::with_capacity(self.len);
        let mut block = [0u64; 64];
        for w in 0..wpp {
            block.fill(0);
            for (j, row) in block.iter_mut().enumerate().take(self.width.min(64)) {
                *row = self.words[j * wpp + w];
            }
            transpose64(&mut block);
            let take = 64.min(self.len - 64 * w);
            out.extend_from_slice(&block[..take]);
        }
        block.fill(0);
        out
    }

    /// One bit per element, from booleans (a one-plane bundle).
    pub fn from_bools(bits: &[bool]) -> Bits {
        let mut b = Bits::zeros(1, bits.len());
        for (i, _) in bits.iter().enumerate().filter(|(_, bit)| **bit) {
            b.words[i / 64] |= 1 << (i % 64);
        }
        b
    }

    /// Bit `i` of plane `plane`.
    pub fn get(&self, plane: usize, i: usize) -> bool {
        assert!(plane < self.width && i < self.len);
        self.words[plane * words_for(self.len) + i / 64] >> (i % 64) & 1 == 1
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The words, plane after plane (the wire layout of a bundle).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Plane `j` as words.
    pub fn plane(&self, j: usize) -> &[u64] {
        let wpp = words_for(self.len);
        &self.words[j * wpp..(j + 1) * wpp]
    }

    /// Planes `range`, as a bundle of their own.
    pub fn planes(&self, range: Range<usize>) -> Bits {
        assert!(range.end <= self.width, "planes {range:?} of a {}-plane bundle", self.width);
        let wpp = words_for(self.len);
        Bits { width: range.len(), len: self.len, words: self.words[range.start * wpp..range.end * wpp].to_vec() }
    }

    /// The planes at `indices`, in that order, as a bundle of their own.
    pub fn gather(&self, indices: &[usize]) -> Bits {
        let wpp = words_for(self.len);
        let mut words = Vec::with_capacity(indices.len() * wpp);
        for &j in indices {
            assert!(j < self.width, "plane {j} of a {}-plane bundle", self.width);
            words.extend_from_slice(&self.words[j * wpp..(j + 1) * wpp]);
        }
        Bits { width: indices.len(), len: self.len, words }
    }

    /// The planes of every part, in order (all parts over the same
    /// elements).
    pub fn concat(parts: &[&Bits]) -> Bits {
        let len = parts.first().map_or(0, |p| p.len);
        assert!(parts.iter().all(|p| p.len == len), "concatenated bundles differ in length");
        Bits {
            width: parts.iter().map(|p| p.width).sum(),
            len,
            words: parts.iter().flat_map(|p| p.words.iter().copied()).collect(),
        }
    }

    /// Plane `0` of `self`, repeated `width` times.
    pub fn broadcast(&self, width: usize) -> Bits {
        assert_eq!(self.width, 1, "only a one-plane bundle broadcasts");
        Bits { width, len: self.len, words: self.words.repeat(width) }
    }

    /// A one-element bundle repeated over `len` elements (a scalar
    /// broadcast over a vector).
    pub fn repeat(&self, len: usize) -> Bits {
        assert_eq!(self.len, 1, "only a one-element bundle repeats");
        let wpp = words_for(len);
        let mut words = Vec::with_capacity(self.width * wpp);
        for j in 0..self.width {
            let fill = if self.words[j] & 1 == 1 { u64::MAX } else { 0 };
            words.extend(std::iter::repeat_n(fill, wpp));
        }
        let mut b = Bits { width: self.width, len, words };
        b.clear_tails();
        b
    }

    /// 64 bits of plane `j` from element `start` on (zeros past `len`).
    fn window(&self, j: usize, start: usize) -> u64 {
        window(self.plane(j), start)
    }

    /// Elements `range` of every plane, as a bundle of their own.
    pub fn slice(&self, range: Range<usize>) -> Bits {
        assert!(range.end <= self.len, "elements {range:?} of a bundle of {}", self.len);
        let len = range.len();
        let wpp = words_for(len);
        let mut words = Vec::with_capacity(self.width * wpp);
        for j in 0..self.width {
            words.extend((0..wpp).map(|k| self.window(j, range.start + 64 * k)));
        }
        let mut b = Bits { width: self.width, len, words };
        b.clear_tails();
        b
    }

    /// The elements of every part, in order (all parts of one width).
    pub fn concat_elements(parts: &[&Bits]) -> Bits {
        let width = parts.first().map_or(0, |p| p.width);
        assert!(parts.iter().all(|p| p.width == width), "concatenated bundles differ in width");
        let len = parts.iter().map(|p| p.len).sum();
        let wpp = words_for(len);
        let mut out = Bits::zeros(width, len);
        let mut at = 0;
        for p in parts {
            for j in 0..width {
                for k in 0..words_for(p.len) {
                    let word = p.plane(j)[k];
                    let pos = at + 64 * k;
                    let (w, s) = (pos / 64, pos % 64);
                    out.words[j * wpp + w] |= word << s;
                    if s != 0 && w + 1 < wpp {
                        out.words[j * wpp + w + 1] |= word >> (64 - s);
                    }
                }
            }
            at += p.len;
        }
        out.clear_tails();
        out
    }

    /// `self ^= other`, plane by plane.
    pub fn xor_assign(&mut self, other: &Bits) {
        self.check_shape(other);
        self.words.iter_mut().zip(&other.words).for_each(|(a, b)| *a ^= b);
    }

    /// `self &= other`, plane by plane.
    pub fn and_assign(&mut self, other: &Bits) {
        self.check_shape(other);
        self.words.iter_mut().zip(&other.words).for_each(|(a, b)| *a &= b);
    }

    /// Flip every bit (within `len`).
    pub fn not_assign(&mut self) {
        self.words.iter_mut().for_each(|w| *w = !*w);
        self.clear_tails();
    }

    /// Number of set bits over all planes.
    pub fn count_ones(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    fn check_shape(&self, other: &Bits) {
        assert!(
            self.width == other.width && self.len == other.len,
            "bundles of {}x{} and {}x{} bits",
            self.width,
            self.len,
            other.width,
            other.len
        );
    }

    fn clear_tails(&mut self) {
        let wpp = words_for(self.len);
        if wpp == 0 {
            return;
        }
        let mask = tail_mask(self.len);
        for j in 0..self.width {
            self.words[j * wpp + wpp - 1] &= mask;
        }
    }
}

impl Drop for Bits {
    fn drop(&mut self) {
        // Bundles hold shares of secrets: wiped once, in bulk.
        crate::memory::wipe_vec(&mut self.words);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dropped_bundles_are_freed_wiped() {
        use crate::memory::tests::watch;
        let b = Bits::from_words(3, 640, vec![u64::MAX; 30]).expect("3 planes of 10 words");
        watch::start(b.words().as_ptr().cast());
        drop(b);
        assert_eq!(watch::freed_zeroed(), Some(true));
    }

    proptest! {
        #[test]
        fn slicing_concatenating_and_repeating_move_elements(
            a in prop::collection::vec(any::<u64>(), 0..200),
            b in prop::collection::vec(any::<u64>(), 0..200),
            cut in any::<prop::sample::Index>(),
            scalar in any::<u64>(),
            copies in 0usize..150,
        ) {
            let (ba, bb) = (Bits::decompose(&a, 64), Bits::decompose(&b, 64));
            let joined = Bits::concat_elements(&[&ba, &bb]);
            let want: Vec<u64> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(joined.compose(), want.clone());
            let at = if want.is_empty() { 0 } else { cut.index(want.len() + 1) };
            prop_assert_eq!(joined.slice(0..at).compose(), want[..at].to_vec());
            prop_assert_eq!(joined.slice(at..want.len()).compose(), want[at..].to_vec());
            let repeated = Bits::decompose(&[scalar], 64).repeat(copies);
            prop_assert_eq!(repeated.compose(), vec![scalar; copies]);
            prop_assert_eq!(repeated.count_ones(), u64::from(scalar.count_ones()) * copies as u64);
        }

        #[test]
        fn packing_then_unpacking_is_the_identity(
            parts in prop::collection::vec((1usize..4, prop::collection::vec(any::<u64>(), 0..150)), 0..6),
        ) {
            let bundles: Vec<Bits> = parts.iter().map(|(w, v)| Bits::decompose(v, *w)).collect();
            let mut packed = Packed::default();
            for b in &bundles {
                packed.push(b);
            }
            let total: usize = bundles.iter().map(|b| b.width() * b.len()).sum();
            prop_assert_eq!(packed.words().len(), words_for(total));
            let mut offset = 0;
            for b in &bundles {
                prop_assert_eq!(&Packed::unpack(packed.words(), offset, b.width(), b.len()), b);
                offset += b.width() * b.len();
            }
        }

        #[test]
        fn decompose_then_compose_is_the_identity(values in prop::collection::vec(any::<u64>(), 0..300)) {
            let b = Bits::decompose(&values, 64);
            prop_assert_eq!(b.compose(), values.clone());
            for (i, v) in values.iter().enumerate() {
                for j in [0, 1, 31, 63] {
                    prop_assert_eq!(b.get(j, i), v >> j & 1 == 1);
                }
            }
        }

        #[test]
        fn narrow_bundles_keep_the_low_bits(values in prop::collection::vec(any::<u64>(), 0..200), width in 0usize..=64) {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            let b = Bits::decompose(&values, width);
            let want: Vec<u64> = values.iter().map(|v| v & mask).collect();
            prop_assert_eq!(b.compose(), want);
        }

        #[test]
        fn word_operations_act_elementwise(
            pairs in prop::collection::vec((any::<u64>(), any::<u64>()), 0..200),
        ) {
            let (x, y): (Vec<u64>, Vec<u64>) = pairs.into_iter().unzip();
            let (bx, by) = (Bits::decompose(&x, 64), Bits::decompose(&y, 64));
            let mut xor = bx.clone();
            xor.xor_assign(&by);
            let mut and = bx.clone();
            and.and_assign(&by);
            let mut not = bx.clone();
            not.not_assign();
            let zip = |f: fn(u64, u64) -> u64| x.iter().zip(&y).map(|(a, b)| f(*a, *b)).collect::<Vec<_>>();
            prop_assert_eq!(xor.compose(), zip(|a, b| a ^ b));
            prop_assert_eq!(and.compose(), zip(|a, b| a & b));
            prop_assert_eq!(not.compose(), x.iter().map(|a| !a).collect::<Vec<_>>());
            // The tails stay clear, so counts are exact.
            prop_assert_eq!(not.count_ones(), x.iter().map(|a| u64::from((!a).count_ones())).sum::<u64>());
        }
    }

    #[test]
    fn planes_concat_and_broadcast_rearrange_whole_planes() {
        let values: Vec<u64> = (0..130u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        let b = Bits::decompose(&values, 64);
        let (low, high) = (b.planes(0..20), b.planes(20..64));
        assert_eq!(Bits::concat(&[&low, &high]), b);
        assert_eq!(b.gather(&(20..64).collect::<Vec<_>>()), high);
        // An empty gather keeps the elements, so it concatenates.
        let none = b.gather(&[]);
        assert_eq!((none.width(), none.len()), (0, 130));
        assert_eq!(Bits::concat(&[&none, &low]), low);
        let top = b.planes(63..64).broadcast(3);
        for (i, v) in values.iter().enumerate() {
            for j in 0..3 {
                assert_eq!(top.get(j, i), v >> 63 == 1);
            }
        }
        assert_eq!(Bits::from_bools(&[true, false, true]).compose(), vec![1, 0, 1]);
        assert!(Bits::from_words(2, 65, vec![0; 3]).is_none());
        assert_eq!(Bits::ones(2, 65).count_ones(), 130);
        assert_eq!(format!("{:?}", b), "Bits(<64 planes x 130 elements redacted>)");
    }

    #[test]
    fn lengths_at_word_boundaries() {
        for len in [0usize, 1, 63, 64, 65, 127, 128, 129] {
            let values: Vec<u64> = (0..len as u64).map(|i| !i).collect();
            let b = Bits::decompose(&values, 64);
            assert_eq!(b.words().len(), 64 * words_for(len));
            assert_eq!(b.compose(), values);
            let mut n = b.clone();
            n.not_assign();
            assert_eq!(n.compose(), (0..len as u64).collect::<Vec<_>>());
        }
    }
}
