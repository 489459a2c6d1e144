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
//! just those: `Σ_k (64 − k) = 2080` bits per product instead of 4096.
//! `H` is the correlation-robust hash of [`super::hash`], truncated to 64
//! bits; `d_k` is `a` masked by `H(q_j ⊕ Δ)`, pseudorandom to a receiver
//! with `b_k = 0`.
//!
//! [`send_cot`]/[`receive_cot`] are the same correlated OT with the full 64
//! bits and a correlation per OT, for the random bits of division pairs.

use super::OtError;
use super::hash::CcrHash;

/// Bits the sender sends per product (`Σ_{k<64} (64 − k)`).
pub const CORRECTION_BITS_PER_PRODUCT: usize = 64 * 65 / 2;

/// Words of packed corrections for `products` products.
pub fn correction_words(products: usize) -> usize {
    (products * CORRECTION_BITS_PER_PRODUCT).div_ceil(64)
}

#[inline(always)]
fn low_bits(width: u32) -> u64 {
    if width == 64 { u64::MAX } else { (1u64 << width) - 1 }
}

/// Appends values of 1..=64 bits to a word vector, least significant first.
struct BitWriter<'a> {
    out: &'a mut Vec<u64>,
    acc: u128,
    bits: u32,
}

impl BitWriter<'_> {
    #[inline(always)]
    fn put(&mut self, value: u64, width: u32) {
        self.acc |= u128::from(value & low_bits(width)) << self.bits;
        self.bits += width;
        if self.bits >= 64 {
            self.out.push(self.acc as u64);
            self.acc >>= 64;
            self.bits -= 64;
        }
    }
    fn finish(self) {
        if self.bits > 0 {
            self.out.push(self.acc as u64);
        }
    }
}

/// Reads what [`BitWriter`] wrote.
struct BitReader<'a> {
    words: std::slice::Iter<'a, u64>,
    acc: u128,
    bits: u32,
}

impl BitReader<'_> {
    #[inline(always)]
    fn take(&mut self, width: u32) -> u64 {
        if self.bits < width {
            // The caller checked the length, so a word is always there.
            self.acc |= u128::from(self.words.next().copied().unwrap_or(0)) << self.bits;
            self.bits += 64;
        }
        let v = self.acc as u64 & low_bits(width);
        self.acc >>= width;
        self.bits -= width;
        v
    }
}

/// Sender of the products `a[t]·b[t]` (the receiver holds `b`), from the
/// rows `q` of `64·a.len()` OTs (OT `64t + k` chose bit `k` of `b[t]`).
/// Writes the sender's shares into `share` and appends the packed
/// corrections to `corrections`.
pub fn send_products(
    hash: &CcrHash,
    delta: u128,
    q: &[u128],
    a: &[u64],
    share: &mut [u64],
    corrections: &mut Vec<u64>,
) {
    assert_eq!(q.len(), 64 * a.len());
    assert_eq!(share.len(), a.len());
    let mut h0 = vec![0u64; q.len()];
    let mut h1 = vec![0u64; q.len()];
    hash.hash_low64(q, 0, &mut h0);
    hash.hash_low64(q, delta, &mut h1);
    corrections.reserve(correction_words(a.len()));
    let mut w = BitWriter { out: corrections, acc: 0, bits: 0 };
    for (t, (a, s)) in a.iter().zip(share.iter_mut()).enumerate() {
        let mut sum = 0u64;
        for k in 0..64u32 {
            let j = 64 * t + k as usize;
            let x = h0[j];
            w.put(x.wrapping_add(*a).wrapping_sub(h1[j]), 64 - k);
            sum = sum.wrapping_add(x << k);
        }
        *s = sum.wrapping_neg();
    }
    w.finish();
    zeroize::Zeroize::zeroize(&mut h0);
    zeroize::Zeroize::zeroize(&mut h1);
}

/// Receiver of the products: from its rows `t`, its `b` (the choices) and
/// the sender's packed corrections, its shares of `a[t]·b[t]`.
pub fn receive_products(
    hash: &CcrHash,
    t: &[u128],
    b: &[u64],
    corrections: &[u64],
    share: &mut [u64],
) -> Result<(), OtError> {
    assert_eq!(t.len(), 64 * b.len());
    assert_eq!(share.len(), b.len());
    if corrections.len() != correction_words(b.len()) {
        return Err(OtError::Malformed(format!(
            "{} words of product corrections for {} products, expected {}",
            corrections.len(),
            b.len(),
            correction_words(b.len())
        )));
    }
    let mut h = vec![0u64; t.len()];
    hash.hash_low64(t, 0, &mut h);
    let mut r = BitReader { words: corrections.iter(), acc: 0, bits: 0 };
    for (i, (b, s)) in b.iter().zip(share.iter_mut()).enumerate() {
        let mut sum = 0u64;
        for k in 0..64u32 {
            let d = r.take(64 - k);
            let chosen = 0u64.wrapping_sub(b >> k & 1);
            sum = sum.wrapping_add(h[64 * i + k as usize].wrapping_add(d & chosen) << k);
        }
        *s = sum;
    }
    zeroize::Zeroize::zeroize(&mut h);
    Ok(())
}

/// Correlated OT over Z_2^64, sender side: for OT `j` with correlation
/// `corr[j]`, writes the sender's `x_j` and appends `d_j` to `corrections`;
/// the receiver obtains `y_j = x_j + r_j·corr[j]`.
pub fn send_cot(hash: &CcrHash, delta: u128, q: &[u128], corr: &[u64], x: &mut [u64], corrections: &mut Vec<u64>) {
    assert!(q.len() == corr.len() && x.len() == corr.len());
    let mut h1 = vec![0u64; q.len()];
    hash.hash_low64(q, 0, x);
    hash.hash_low64(q, delta, &mut h1);
    corrections.extend(x.iter().zip(corr).zip(&h1).map(|((x, c), h1)| x.wrapping_add(*c).wrapping_sub(*h1)));
    zeroize::Zeroize::zeroize(&mut h1);
}

/// Correlated OT over Z_2^64, receiver side: `y_j = H(t_j) + r_j·d_j`, with
/// `r_j` bit `j % 64` of `choices[j / 64]`.
pub fn receive_cot(
    hash: &CcrHash,
    t: &[u128],
    choices: &[u64],
    corrections: &[u64],
    y: &mut [u64],
) -> Result<(), OtError> {
    assert!(t.len() == y.len() && t.len() <= 64 * choices.len());
    if corrections.len() != t.len() {
        return Err(OtError::Malformed(format!("{} OT corrections for {} OTs", corrections.len(), t.len())));
    }
    hash.hash_low64(t, 0, y);
    for (j, (y, d)) in y.iter_mut().zip(corrections).enumerate() {
        let chosen = 0u64.wrapping_sub(choices[j / 64] >> (j % 64) & 1);
        *y = y.wrapping_add(d & chosen);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::iknp::tests::pair;
    use super::*;
    use crate::prg::{Prg, Seed};

    #[test]
    fn bit_packing_round_trips_every_width() {
        let mut prg = Prg::new(&Seed::from_bytes([5; 16]));
        let values: Vec<(u64, u32)> = (0..500).map(|i| (prg.next_u64(), (i % 64) as u32 + 1)).collect();
        let mut words = Vec::new();
        let mut w = BitWriter { out: &mut words, acc: 0, bits: 0 };
        for (v, width) in &values {
            w.put(*v, *width);
        }
        w.finish();
        let total: u32 = values.iter().map(|(_, w)| w).sum();
        assert_eq!(words.len(), (total as usize).div_ceil(64));
        let mut r = BitReader { words: words.iter(), acc: 0, bits: 0 };
        for (v, width) in &values {
            assert_eq!(r.take(*width), v & low_bits(*width));
        }
    }

    /// Run `send_products`/`receive_products` over fresh IKNP rows.
    fn products(a: &[u64], b: &[u64]) -> (Vec<u64>, Vec<u64>, usize) {
        let (mut sender, mut receiver) = pair();
        let hash = CcrHash::new();
        let (u, t) = receiver.extend(b);
        let q = sender.extend(&u, b.len());
        let mut s = vec![0; a.len()];
        let mut corrections = Vec::new();
        send_products(&hash, sender.delta(), &q, a, &mut s, &mut corrections);
        let mut r = vec![0; b.len()];
        receive_products(&hash, &t, b, &corrections, &mut r).expect("well-formed");
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
        let (s, r, words) = products(&a, &b);
        assert_eq!(words, correction_words(a.len()));
        for i in 0..a.len() {
            assert_eq!(s[i].wrapping_add(r[i]), a[i].wrapping_mul(b[i]), "product {i}: {} * {}", a[i], b[i]);
        }
        // The shares themselves look random: not the product, not constant.
        assert_ne!(s[..100], r[..100]);
        assert!(s.iter().zip(&a).zip(&b).filter(|((s, a), b)| **s == a.wrapping_mul(**b)).count() < 3);
    }

    #[test]
    fn wrong_length_corrections_are_refused() {
        let (_, mut receiver) = pair();
        let hash = CcrHash::new();
        let b = vec![1u64; 2];
        let (_, t) = receiver.extend(&b);
        let mut out = vec![0; 2];
        let err = receive_products(&hash, &t, &b, &[0; 3], &mut out).expect_err("short");
        assert!(err.to_string().contains("expected 65"), "{err}");
    }

    #[test]
    fn correlated_ot_gives_x_plus_choice_times_correlation() {
        let (mut sender, mut receiver) = pair();
        let hash = CcrHash::new();
        let mut prg = Prg::new(&Seed::from_bytes([8; 16]));
        let choices = prg.next_vec(3);
        let corr = prg.next_vec(192);
        let (u, t) = receiver.extend(&choices);
        let q = sender.extend(&u, 3);
        let (mut x, mut d, mut y) = (vec![0; 192], Vec::new(), vec![0; 192]);
        send_cot(&hash, sender.delta(), &q, &corr, &mut x, &mut d);
        receive_cot(&hash, &t, &choices, &d, &mut y).expect("well-formed");
        for j in 0..192 {
            let r = choices[j / 64] >> (j % 64) & 1;
            assert_eq!(y[j], x[j].wrapping_add(r.wrapping_mul(corr[j])), "OT {j}");
            // The sender's other message differs from what the receiver got.
            let other = if r == 1 { x[j] } else { x[j].wrapping_add(corr[j]) };
            assert_ne!(y[j], other, "OT {j}");
        }
    }
}
