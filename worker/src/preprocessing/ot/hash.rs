//! The correlation-robust hash that turns IKNP's correlated rows into
//! independent-looking OT messages.
//!
//! Construction (Guo, Katz, Wang, Yu, "Efficient and Secure Multiparty
//! Computation from Fixed-Key Block Ciphers", IEEE S&P 2020, §7.3): with
//! `π` AES-128 under a fixed, public key and the linear orthomorphism
//! `σ(x_L ‖ x_R) = (x_L ⊕ x_R) ‖ x_L`,
//!
//! ```text
//! H(x) = π(σ(x)) ⊕ σ(x)
//! ```
//!
//! is *circular correlation robust*: for a secret uniform `Δ`, the values
//! `H(x_i ⊕ Δ)` (and `H(x_i ⊕ Δ) ⊕ b_i·Δ`) are indistinguishable from
//! random for any distinct `x_i` the adversary chooses, when `π` is modelled
//! as a random permutation. That is exactly what semi-honest IKNP needs:
//! the sender's second message `H(q_j ⊕ Δ)` must look random to a receiver
//! who knows `t_j = q_j` (GKWY20 §7.2). One AES call per hash, with the key
//! schedule computed once.

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use zerocopy::IntoBytes;

/// The fixed, public AES key of `π`: the first 16 bytes of
/// `SHA-256("cohort/ot/ccr-hash/v1")`, so anyone can check it hides
/// nothing.
fn fixed_key() -> [u8; 16] {
    let digest = ::ring::digest::digest(&::ring::digest::SHA256, b"cohort/ot/ccr-hash/v1");
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest.as_ref()[..16]);
    key
}

/// Rows hashed per call into AES (16 KiB: stays in L1 between `σ` and `π`).
const CHUNK: usize = 1024;

/// `H(x) = π(σ(x)) ⊕ σ(x)`, batched. Public: holds no secret.
#[derive(Clone)]
pub struct CcrHash {
    pi: Aes128,
}

impl std::fmt::Debug for CcrHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CcrHash(fixed-key AES-128)")
    }
}

impl Default for CcrHash {
    fn default() -> Self {
        CcrHash::new()
    }
}

/// `σ(x_L ‖ x_R) = (x_L ⊕ x_R) ‖ x_L`, with `x_L` the high 64 bits.
#[inline(always)]
fn sigma(x: u128) -> u128 {
    let hi = (x >> 64) as u64;
    let lo = x as u64;
    (u128::from(hi ^ lo) << 64) | u128::from(hi)
}

/// Bit `i` of the result is the lowest bit of `values[i]` (64 values).
#[inline(always)]
fn pack_low_bits(values: &[u64]) -> u64 {
    values.iter().enumerate().fold(0u64, |acc, (i, v)| acc | (v & 1) << i)
}

impl CcrHash {
    pub fn new() -> CcrHash {
        CcrHash { pi: Aes128::new(&fixed_key().into()) }
    }

    /// `out[j] = low 64 bits of H(x[j] ⊕ mask)` for every `j`.
    ///
    /// `out` must be as long as `x`. The low 64 bits of an AES block are its
    /// first 8 bytes read little-endian.
    pub fn hash_low64(&self, x: &[u128], mask: u128, out: &mut [u64]) {
        assert_eq!(x.len(), out.len());
        let mut sig = [0u128; CHUNK];
        let mut enc = [0u128; CHUNK];
        for (xs, outs) in x.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            let n = xs.len();
            for ((s, e), x) in sig[..n].iter_mut().zip(enc[..n].iter_mut()).zip(xs) {
                *s = sigma(*x ^ mask);
                *e = s.to_le();
            }
            let (bytes, _) = enc[..n].as_mut_bytes().as_chunks_mut::<16>();
            self.pi.encrypt_blocks(aes::Block::cast_slice_from_core_mut(bytes));
            for ((o, e), s) in outs.iter_mut().zip(&enc[..n]).zip(&sig[..n]) {
                *o = (u128::from_le(*e) ^ *s) as u64;
            }
        }
    }

    /// Both hashes the IKNP sender needs, in one pass:
    /// `out0[j] = low 64 bits of H(x[j])`, `out1[j] = low 64 bits of
    /// H(x[j] ⊕ delta)`. `σ` is linear, so `σ(x ⊕ Δ) = σ(x) ⊕ σ(Δ)` costs one
    /// XOR, and both blocks go through AES in the same batch.
    pub fn hash_pair_low64(&self, x: &[u128], delta: u128, out0: &mut [u64], out1: &mut [u64]) {
        assert!(x.len() == out0.len() && x.len() == out1.len());
        let sigma_delta = sigma(delta);
        let mut sig = [0u128; CHUNK];
        let mut enc = [0u128; CHUNK];
        for ((xs, o0), o1) in x.chunks(CHUNK / 2).zip(out0.chunks_mut(CHUNK / 2)).zip(out1.chunks_mut(CHUNK / 2)) {
            let n = xs.len();
            for (i, x) in xs.iter().enumerate() {
                let s0 = sigma(*x);
                let s1 = s0 ^ sigma_delta;
                sig[2 * i] = s0;
                sig[2 * i + 1] = s1;
                enc[2 * i] = s0.to_le();
                enc[2 * i + 1] = s1.to_le();
            }
            let (bytes, _) = enc[..2 * n].as_mut_bytes().as_chunks_mut::<16>();
            self.pi.encrypt_blocks(aes::Block::cast_slice_from_core_mut(bytes));
            for (i, (o0, o1)) in o0.iter_mut().zip(o1.iter_mut()).enumerate() {
                *o0 = (u128::from_le(enc[2 * i]) ^ sig[2 * i]) as u64;
                *o1 = (u128::from_le(enc[2 * i + 1]) ^ sig[2 * i + 1]) as u64;
            }
        }
        sig.fill(0);
        enc.fill(0);
    }

    /// The lowest bit of `H(x[j])` for every `j`, packed: bit `i` of
    /// `out[w]` is that of `x[64w + i]`, for random bit OTs (the bit
    /// triples of [`super::session`]). `x.len()` must be `64 · out.len()`.
    pub fn hash_bits(&self, x: &[u128], out: &mut [u64]) {
        assert_eq!(x.len(), 64 * out.len());
        let mut low = [0u64; CHUNK];
        for (xs, outs) in x.chunks(CHUNK).zip(out.chunks_mut(CHUNK / 64)) {
            let low = &mut low[..xs.len()];
            self.hash_low64(xs, 0, low);
            for (o, l) in outs.iter_mut().zip(low.chunks_exact(64)) {
                *o = pack_low_bits(l);
            }
        }
        low.fill(0);
    }

    /// Both packed bit hashes of the IKNP sender: the lowest bits of
    /// `H(x[j])` into `out0` and of `H(x[j] ⊕ delta)` into `out1`, packed as
    /// in [`CcrHash::hash_bits`].
    pub fn hash_pair_bits(&self, x: &[u128], delta: u128, out0: &mut [u64], out1: &mut [u64]) {
        assert!(x.len() == 64 * out0.len() && x.len() == 64 * out1.len());
        let mut low0 = [0u64; CHUNK];
        let mut low1 = [0u64; CHUNK];
        for ((xs, o0), o1) in x.chunks(CHUNK).zip(out0.chunks_mut(CHUNK / 64)).zip(out1.chunks_mut(CHUNK / 64)) {
            let (l0, l1) = (&mut low0[..xs.len()], &mut low1[..xs.len()]);
            self.hash_pair_low64(xs, delta, l0, l1);
            for ((o0, o1), (l0, l1)) in
                o0.iter_mut().zip(o1.iter_mut()).zip(l0.chunks_exact(64).zip(l1.chunks_exact(64)))
            {
                *o0 = pack_low_bits(l0);
                *o1 = pack_low_bits(l1);
            }
        }
        low0.fill(0);
        low1.fill(0);
    }

    /// The full 128-bit `H(x)` of one block (tests and the definition).
    pub fn hash(&self, x: u128) -> u128 {
        let s = sigma(x);
        let mut block = [s.to_le()];
        let (bytes, _) = block.as_mut_bytes().as_chunks_mut::<16>();
        self.pi.encrypt_blocks(aes::Block::cast_slice_from_core_mut(bytes));
        u128::from_le(block[0]) ^ s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_is_a_linear_orthomorphism() {
        // Linear: σ(x ⊕ y) = σ(x) ⊕ σ(y). Orthomorphism: σ and x ↦ σ(x) ⊕ x
        // are both permutations; checked on a sample (both are invertible
        // linear maps: σ⁻¹(a ‖ b) = b ‖ (a ⊕ b), (σ ⊕ id)⁻¹ = σ).
        let xs = [0u128, 1, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210, 1 << 64, 1 << 127];
        for &x in &xs {
            for &y in &xs {
                assert_eq!(sigma(x ^ y), sigma(x) ^ sigma(y));
            }
            let s = sigma(x);
            let inverse = ((s as u64 as u128) << 64) | u128::from((s >> 64) as u64 ^ s as u64);
            assert_eq!(inverse, x);
            assert_eq!(sigma(sigma(x) ^ x), x, "σ ⊕ id is its own inverse's σ");
        }
    }

    #[test]
    fn batched_hash_is_the_definition() {
        let h = CcrHash::new();
        let mask = 0xdead_beef_0000_1111_2222_3333_4444_5555u128;
        let x: Vec<u128> = (0..2500u128).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)).collect();
        let mut out = vec![0u64; x.len()];
        h.hash_low64(&x, mask, &mut out);
        for (x, o) in x.iter().zip(&out) {
            assert_eq!(*o, h.hash(x ^ mask) as u64);
        }
        let (mut out0, mut out1) = (vec![0u64; x.len()], vec![0u64; x.len()]);
        h.hash_pair_low64(&x, mask, &mut out0, &mut out1);
        for ((x, o0), o1) in x.iter().zip(&out0).zip(&out1) {
            assert_eq!((*o0, *o1), (h.hash(*x) as u64, h.hash(x ^ mask) as u64));
        }
        let x = &x[..2496];
        let (mut bits, mut bits0, mut bits1) = (vec![0u64; 39], vec![0u64; 39], vec![0u64; 39]);
        h.hash_bits(x, &mut bits);
        h.hash_pair_bits(x, mask, &mut bits0, &mut bits1);
        for (j, x) in x.iter().enumerate() {
            let bit = |words: &[u64]| words[j / 64] >> (j % 64) & 1;
            assert_eq!(bit(&bits), h.hash(*x) as u64 & 1, "row {j}");
            assert_eq!((bit(&bits0), bit(&bits1)), (h.hash(*x) as u64 & 1, h.hash(x ^ mask) as u64 & 1), "row {j}");
        }
        // The fixed-key permutation is AES: H(0) = AES_k(0) since σ(0) = 0.
        let mut zero = [0u128];
        let (bytes, _) = zero.as_mut_bytes().as_chunks_mut::<16>();
        Aes128::new(&fixed_key().into()).encrypt_blocks(aes::Block::cast_slice_from_core_mut(bytes));
        assert_eq!(h.hash(0), u128::from_le(zero[0]));
        assert_ne!(h.hash(1), h.hash(2));
    }
}
