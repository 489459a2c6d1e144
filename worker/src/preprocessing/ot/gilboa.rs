//! Multiplication over Z_2^64 from correlated OT: Gilboa's product sharing
//! (N. Gilboa, "Two Party RSA Key Generation", CRYPTO 1999), with the
//! packing of Demmler, Schneider and Zohner (ABY, NDSS 2015, §III-C).
//!
//! To share `a·b` where the sender holds `a` and the receiver `b`, write
//! `b = Σ_k 2^k b_k`. OT `k` (of 64) has choice bit `b_k` and correlation
//! `a`: from the IKNP rows (`t_j = q_j ⊕ b_k·Δ`, [`super::iknp`]) the
//! sender takes `x_k = H(q_j)` and sends
//!
//! ```text
//! d_k = x_k + a − H(q_j ⊕ Δ)   (mod 2^(64−k))
//! ```
//!
//! and the receiver computes `y_k = H(t_j) + b_k·d_k = x_k + b_k·a`
//! (mod 2^(64−k)). Then `Σ 2^k y_k − Σ 2^k x_k = a·b` (mod 2^64): the
//! sender's share is `−Σ 2^k x_k`, the receiver's `Σ 2^k y_k`. Only the low
//! `64 − k` bits of `d_k` matter after the shift by `k`, so the sender sends
//! just those, rounded up to whole bytes: 288 bytes per product instead of
//! 512 ([`CORRECTION_BYTES_PER_PRODUCT`]).
//! `H` is the correlation-robust hash of [`super::hash`], truncated to 64
//! bits; `d_k` is `a` masked by `H(q_j ⊕ Δ)`, pseudorandom to a receiver
//! with `b_k = 0`.
//!
//! [`send_cot`]/[`receive_cot`] are the same correlated OT with the full 64
//! bits and a correlation per OT, for the random bits of division pairs.

use super::OtError;
use super::hash::CcrHash;
use super::iknp::TILE_WORDS;
use zeroize::Zeroize;

/// Bytes of the correction of OT `k` of a product: its `64 − k` bits,
/// rounded up to whole bytes.
const fn correction_width(k: usize) -> usize {
    (64 - k).div_ceil(8)
}

/// Bytes the sender sends per product: `Σ_k ⌈(64 − k)/8⌉ = 288`. Whole
/// bytes cost 11 % over the 260 bytes of exact bit packing, and in exchange
/// a correction is one unaligned 8-byte store or load instead of a bit
/// shuffle: on these cores the packing, not the bytes, was the bottleneck.
pub const CORRECTION_BYTES_PER_PRODUCT: usize = {
    let mut total = 0;
    let mut k = 0;
    while k < 64 {
        total += correction_width(k);
        k += 1;
    }
    total
};

/// Bytes of corrections for `products` products.
pub fn correction_bytes(products: usize) -> usize {
    products * CORRECTION_BYTES_PER_PRODUCT
}

/// OTs per tile: the most rows one call takes.
const TILE_OTS: usize = 64 * TILE_WORDS;

/// Corrections being written: for each product, `d_0 … d_63` in order,
/// `d_k` in the [`correction_width`]`(k)` low bytes of its little-endian
/// encoding.
#[derive(Default)]
pub struct CorrectionWriter {
    out: Vec<u8>,
    len: usize,
}

impl CorrectionWriter {
    /// A writer for `products` products.
    pub fn for_products(products: usize) -> CorrectionWriter {
        // Eight bytes of slack: every value is written as a whole word,
        // whose high bytes the next value overwrites.
        CorrectionWriter { out: vec![0; correction_bytes(products) + 8], len: 0 }
    }

    /// Append `d_k`: an 8-byte store, then advance by its width.
    #[inline(always)]
    fn put(&mut self, value: u64, k: usize) {
        if self.out.len() < self.len + 8 {
            self.out.resize(self.len + 8, 0);
        }
        self.out[self.len..self.len + 8].copy_from_slice(&value.to_le_bytes());
        self.len += correction_width(k);
    }

    /// The message: every value written, nothing more.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.truncate(self.len);
        self.out
    }
}

/// Reads `d_k` at byte `pos`: the low [`correction_width`]`(k)` bytes are
/// the value, the rest belongs to the next values and is shifted out by
/// the receiver's `<< k` (bits at `64 − k` and above never matter).
#[inline(always)]
fn take(bytes: &[u8], pos: usize) -> u64 {
    match bytes.get(pos..pos + 8) {
        Some(word) => {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            u64::from_le_bytes(w)
        }
        None => {
            let mut w = [0u8; 8];
            let tail = &bytes[pos.min(bytes.len())..];
            w[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(w)
        }
    }
}

/// Sender of the products `a[t]·b[t]` (the receiver holds `b`), from the
/// rows `q` of `64·a.len()` OTs (OT `64t + k` chose bit `k` of `b[t]`), at
/// most one tile. Writes the sender's shares into `share` and appends the
/// corrections to `corrections` (which continues across calls).
pub fn send_products(
    hash: &CcrHash,
    delta: u128,
    q: &[u128],
    a: &[u64],
    share: &mut [u64],
    corrections: &mut CorrectionWriter,
) {
    assert!(q.len() == 64 * a.len() && q.len() <= TILE_OTS);
    assert_eq!(share.len(), a.len());
    let mut h0 = [0u64; TILE_OTS];
    let mut h1 = [0u64; TILE_OTS];
    let (h0s, h1s) = (&mut h0[..q.len()], &mut h1[..q.len()]);
    hash.hash_pair_low64(q, delta, h0s, h1s);
    for ((a, s), (x, y)) in a.iter().zip(share.iter_mut()).zip(h0s.chunks_exact(64).zip(h1s.chunks_exact(64))) {
        let mut sum = 0u64;
        for k in 0..64 {
            corrections.put(x[k].wrapping_add(*a).wrapping_sub(y[k]), k);
            sum = sum.wrapping_add(x[k] << k);
        }
        *s = sum.wrapping_neg();
    }
    h0.zeroize();
    h1.zeroize();
}

/// Receiver of the products: from `h[j] = H(t_j)` (low 64 bits) for the
/// `64·b.len()` OTs, its `b` (the choices) and the sender's corrections,
/// its shares of `a[t]·b[t]`.
pub fn receive_products(h: &[u64], b: &[u64], corrections: &[u8], share: &mut [u64]) -> Result<(), OtError> {
    assert_eq!(h.len(), 64 * b.len());
    assert_eq!(share.len(), b.len());
    if corrections.len() != correction_bytes(b.len()) {
        return Err(OtError::Malformed(format!(
            "{} bytes of product corrections for {} products, expected {}",
            corrections.len(),
            b.len(),
            correction_bytes(b.len())
        )));
    }
    let mut pos = 0;
    for ((b, s), h) in b.iter().zip(share.iter_mut()).zip(h.chunks_exact(64)) {
        let mut sum = 0u64;
        for (k, h) in h.iter().enumerate() {
            let d = take(corrections, pos);
            pos += correction_width(k);
            let chosen = 0u64.wrapping_sub(b >> k & 1);
            sum = sum.wrapping_add(h.wrapping_add(d & chosen) << k);
        }
        *s = sum;
    }
    Ok(())
}

/// Correlated OT over Z_2^64, sender side, for at most one tile: for OT
/// `j` with correlation `corr[j]`, writes the sender's `x_j` and appends
/// `d_j` (8 bytes, little-endian) to `corrections`; the receiver obtains
/// `y_j = x_j + r_j·corr[j]`.
pub fn send_cot(hash: &CcrHash, delta: u128, q: &[u128], corr: &[u64], x: &mut [u64], corrections: &mut Vec<u8>) {
    assert!(q.len() == corr.len() && x.len() == corr.len() && q.len() <= TILE_OTS);
    let mut h1 = [0u64; TILE_OTS];
    let h1s = &mut h1[..q.len()];
    hash.hash_pair_low64(q, delta, x, h1s);
    for ((x, c), h1) in x.iter().zip(corr).zip(h1s.iter()) {
        corrections.extend_from_slice(&x.wrapping_add(*c).wrapping_sub(*h1).to_le_bytes());
    }
    h1.zeroize();
}

/// Correlated OT over Z_2^64, receiver side: from `h[j] = H(t_j)`,
/// `y_j = h[j] + r_j·d_j` with `r_j` bit `j % 64` of `choices[j / 64]`.
pub fn receive_cot(h: &[u64], choices: &[u64], corrections: &[u8], y: &mut [u64]) -> Result<(), OtError> {
    assert!(h.len() == y.len() && h.len() <= 64 * choices.len());
    if corrections.len() != 8 * h.len() {
        return Err(OtError::Malformed(format!(
            "{} bytes of OT corrections for {} OTs, expected {}",
            corrections.len(),
            h.len(),
            8 * h.len()
        )));
    }
    let (d, _) = corrections.as_chunks::<8>();
    for (j, ((y, h), d)) in y.iter_mut().zip(h).zip(d).enumerate() {
        let chosen = 0u64.wrapping_sub(choices[j / 64] >> (j % 64) & 1);
        *y = h.wrapping_add(u64::from_le_bytes(*d) & chosen);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::iknp::tests::{extend_all, pair};
    use super::*;
    use crate::prg::{Prg, Seed};

    #[test]
    fn corrections_round_trip_in_their_widths() {
        assert_eq!(CORRECTION_BYTES_PER_PRODUCT, 288);
        let mut prg = Prg::new(&Seed::from_bytes([5; 16]));
        let values: Vec<u64> = prg.next_vec(3 * 64);
        let mut w = CorrectionWriter::for_products(3);
        for (i, v) in values.iter().enumerate() {
            w.put(*v, i % 64);
        }
        let bytes = w.finish();
        assert_eq!(bytes.len(), correction_bytes(3));
        let mut pos = 0;
        for (i, v) in values.iter().enumerate() {
            let k = i % 64;
            // What matters of d_k is what survives the shift by k.
            assert_eq!(take(&bytes, pos) << k, v << k, "value {i}");
            pos += correction_width(k);
        }
    }

    /// Run `send_products`/`receive_products` over fresh IKNP rows, a tile
    /// at a time as the session does.
    fn products(a: &[u64], b: &[u64]) -> (Vec<u64>, Vec<u64>, usize) {
        let (mut sender, mut receiver) = pair();
        let hash = CcrHash::new();
        let (_, t, q) = extend_all(&mut sender, &mut receiver, b);
        let mut s = vec![0; a.len()];
        let mut writer = CorrectionWriter::for_products(a.len());
        for (tile, rows) in q.chunks(TILE_OTS).enumerate() {
            let range = tile * TILE_WORDS..tile * TILE_WORDS + rows.len() / 64;
            send_products(&hash, sender.delta(), rows, &a[range.clone()], &mut s[range], &mut writer);
        }
        let corrections = writer.finish();
        let mut h = vec![0; t.len()];
        hash.hash_low64(&t, 0, &mut h);
        let mut r = vec![0; b.len()];
        receive_products(&h, b, &corrections, &mut r).expect("well-formed");
        (s, r, corrections.len())
    }

    #[test]
    fn shares_sum_to_the_product_on_many_inputs_and_edges() {
        let mut prg = Prg::new(&Seed::from_bytes([6; 16]));
        let edges = [0u64, 1, 2, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1, 0x5555_5555_5555_5555];
        let mut a: Vec<u64> = edges.iter().flat_map(|x| edges.iter().map(move |_| *x)).collect();
        let mut b: Vec<u64> = edges.iter().flat_map(|_| edges.iter().copied()).collect();
        a.extend(prg.next_vec(1000));
        b.extend(prg.next_vec(1000));
        let (s, r, bytes) = products(&a, &b);
        assert_eq!(bytes, correction_bytes(a.len()));
        for i in 0..a.len() {
            assert_eq!(s[i].wrapping_add(r[i]), a[i].wrapping_mul(b[i]), "product {i}: {} * {}", a[i], b[i]);
        }
        // The shares themselves look random: not the product, not constant.
        assert_ne!(s[..100], r[..100]);
        assert!(s.iter().zip(&a).zip(&b).filter(|((s, a), b)| **s == a.wrapping_mul(**b)).count() < 3);
    }

    #[test]
    fn wrong_length_corrections_are_refused() {
        let b = vec![1u64; 2];
        let mut out = vec![0; 2];
        let err = receive_products(&[0; 128], &b, &[0; 24], &mut out).expect_err("short");
        assert!(err.to_string().contains("expected 576"), "{err}");
        let err = receive_cot(&[0; 3], &b, &[0; 23], &mut [0; 3]).expect_err("short");
        assert!(err.to_string().contains("expected 24"), "{err}");
    }

    #[test]
    fn correlated_ot_gives_x_plus_choice_times_correlation() {
        let (mut sender, mut receiver) = pair();
        let hash = CcrHash::new();
        let mut prg = Prg::new(&Seed::from_bytes([8; 16]));
        let choices = prg.next_vec(3);
        let corr = prg.next_vec(192);
        let (_, t, q) = extend_all(&mut sender, &mut receiver, &choices);
        let (mut x, mut d, mut y) = (vec![0; 192], Vec::new(), vec![0; 192]);
        send_cot(&hash, sender.delta(), &q, &corr, &mut x, &mut d);
        let mut h = vec![0; 192];
        hash.hash_low64(&t, 0, &mut h);
        receive_cot(&h, &choices, &d, &mut y).expect("well-formed");
        for j in 0..192 {
            let r = choices[j / 64] >> (j % 64) & 1;
            assert_eq!(y[j], x[j].wrapping_add(r.wrapping_mul(corr[j])), "OT {j}");
            // The sender's other message differs from what the receiver got.
            let other = if r == 1 { x[j] } else { x[j].wrapping_add(corr[j]) };
            assert_ne!(y[j], other, "OT {j}");
        }
    }
}
