//! The pseudorandom generator: AES-128 in counter mode keyed by a seed.
//!
//! Seeds compress randomness on the wire: a party that receives a 16-byte
//! seed expands it locally into as many ring elements as it needs (input
//! shares, dealer material). Security rests on AES-128 being a
//! pseudorandom permutation: without the seed, the expanded stream is
//! indistinguishable from uniform. A seed is used for exactly one stream;
//! independent streams use independent seeds.

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use std::fmt;
use zerocopy::IntoBytes;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a seed in bytes.
pub const SEED_BYTES: usize = 16;

/// A PRG seed. Secret: redacted in `Debug`, zeroized on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Seed([u8; SEED_BYTES]);

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// The operating system's randomness source failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct EntropyError(String);

/// Fill `out` from the operating system's CSPRNG.
pub fn fill_random(out: &mut [u8]) -> Result<(), EntropyError> {
    getrandom::fill(out).map_err(|e| EntropyError(e.to_string()))
}

impl Seed {
    /// A fresh seed from the operating system's CSPRNG.
    pub fn random() -> Result<Seed, EntropyError> {
        let mut bytes = [0u8; SEED_BYTES];
        fill_random(&mut bytes)?;
        Ok(Seed(bytes))
    }

    pub fn from_bytes(bytes: [u8; SEED_BYTES]) -> Seed {
        Seed(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; SEED_BYTES] {
        &self.0
    }
}

/// An AES-128-CTR keystream (zero IV, 64-bit little-endian counter in the
/// first half of the counter block, as `ctr::Ctr64LE`), read as
/// little-endian `u64` ring elements: block `i` is `AES_seed(i as 16
/// little-endian bytes)`, elements `2i` and `2i + 1` are its two halves.
///
/// The keystream is produced in place: the counter blocks are written
/// straight into the output, a chunk at a time, and encrypted there (no
/// intermediate buffer, no XOR over a zeroed buffer, no copy).
pub struct Prg {
    cipher: Aes128,
    /// Index of the next counter block.
    counter: u64,
    /// The second half of a block whose first half was already returned.
    pending: Option<u64>,
}

impl fmt::Debug for Prg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Prg(<redacted>)")
    }
}

impl Drop for Prg {
    fn drop(&mut self) {
        self.pending.zeroize();
    }
}

/// Counter blocks encrypted per call (16 KiB: the chunk stays in the L1
/// cache between writing the counters and encrypting them).
const CHUNK_BLOCKS: usize = 1024;

impl Prg {
    pub fn new(seed: &Seed) -> Prg {
        Prg { cipher: Aes128::new(&seed.0.into()), counter: 0, pending: None }
    }

    /// Overwrite `blocks` with the next `blocks.len()` keystream blocks.
    fn keystream_into(&mut self, blocks: &mut [[u64; 2]]) {
        for chunk in blocks.chunks_mut(CHUNK_BLOCKS) {
            for b in chunk.iter_mut() {
                *b = [self.counter.to_le(), 0];
                self.counter = self.counter.wrapping_add(1);
            }
            self.encrypt_in_place(chunk);
        }
    }

    /// Encrypt counter blocks where they are (each block as its 16
    /// little-endian bytes), leaving keystream elements.
    fn encrypt_in_place(&self, blocks: &mut [[u64; 2]]) {
        let (bytes, rest) = blocks.as_mut_bytes().as_chunks_mut::<16>();
        debug_assert!(rest.is_empty());
        self.cipher.encrypt_blocks(aes::Block::cast_slice_from_core_mut(bytes));
        if cfg!(target_endian = "big") {
            blocks.iter_mut().flatten().for_each(|x| *x = u64::from_le(*x));
        }
    }

    /// The next block as two elements.
    fn next_block(&mut self) -> [u64; 2] {
        let mut b = [[0u64; 2]];
        self.keystream_into(&mut b);
        b[0]
    }

    /// Overwrite `out` with the next `out.len()` pseudorandom elements.
    pub fn fill(&mut self, out: &mut [u64]) {
        let mut out = out;
        if let (Some(first), Some(x)) = (out.first_mut(), self.pending.as_mut()) {
            *first = std::mem::take(x);
            self.pending = None;
            out = &mut out[1..];
        }
        let (whole, tail) = out.as_chunks_mut::<2>();
        self.keystream_into(whole);
        if let [last] = tail {
            let [x, y] = self.next_block();
            *last = x;
            self.pending = Some(y);
        }
    }

    /// Append the next `n` pseudorandom elements to `out` (written once:
    /// no zero-filled vector first).
    pub fn append(&mut self, out: &mut Vec<u64>, n: usize) {
        out.reserve(n);
        let mut left = n;
        if left > 0
            && let Some(x) = self.pending.take()
        {
            out.push(x);
            left -= 1;
        }
        while left >= 2 {
            let k = (left / 2).min(CHUNK_BLOCKS);
            let start = out.len();
            // The counter blocks, written once into the spare capacity.
            let c = self.counter;
            out.extend((0..2 * k as u64).map(|j| if j % 2 == 0 { c.wrapping_add(j / 2).to_le() } else { 0 }));
            self.counter = c.wrapping_add(k as u64);
            let (blocks, _) = out[start..].as_chunks_mut::<2>();
            self.encrypt_in_place(blocks);
            left -= 2 * k;
        }
        if left == 1 {
            let [x, y] = self.next_block();
            out.push(x);
            self.pending = Some(y);
        }
    }

    /// The next `n` pseudorandom elements.
    pub fn next_vec(&mut self, n: usize) -> Vec<u64> {
        let mut v = Vec::with_capacity(n);
        self.append(&mut v, n);
        v
    }

    /// The next pseudorandom element.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = [0u64; 1];
        self.fill(&mut x);
        x[0]
    }

    /// A uniformly random permutation of `0..n` from the stream
    /// (Fisher–Yates; Lemire's multiply-shift index, whose bias is below
    /// `n / 2^64`). `n` is below 2^32.
    pub fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut draws = self.next_vec(n.saturating_sub(1));
        let mut p: Vec<u32> = (0..n as u32).collect();
        for (i, r) in (1..n).rev().zip(&draws) {
            let j = ((u128::from(*r) * (i as u128 + 1)) >> 64) as usize;
            p.swap(i, j);
        }
        crate::memory::wipe_vec(&mut draws);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_chunking_is_invisible() {
        let seed = Seed::from_bytes([7; 16]);
        let whole = Prg::new(&seed).next_vec(5000);
        let mut p = Prg::new(&seed);
        let mut parts = p.next_vec(3);
        parts.extend(p.next_vec(2047));
        parts.extend(p.next_vec(2950));
        assert_eq!(whole, parts);
    }

    #[test]
    fn matches_aes_ctr_definition() {
        // AES-128 of the all-zero block under the all-zero key (FIPS-197
        // derived test vector): 66e94bd4ef8a2c3b884cfa59ca342b2e. With a zero
        // IV the first keystream block is exactly that.
        let mut p = Prg::new(&Seed::from_bytes([0; 16]));
        let first = p.next_vec(2);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&first[0].to_le_bytes());
        bytes.extend_from_slice(&first[1].to_le_bytes());
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "66e94bd4ef8a2c3b884cfa59ca342b2e");
    }

    /// The stream is exactly `ctr::Ctr64LE<Aes128>` with a zero IV read as
    /// little-endian `u64`s (the dealer's seed compression depends on it),
    /// whatever the split into calls of `fill`, `append` and `next_u64`.
    #[test]
    fn matches_the_ctr_crate_for_any_chunking() {
        use ctr::cipher::{KeyIvInit, StreamCipher};
        let seed = Seed::from_bytes(*b"0123456789abcdef");
        let total = 3 * 2048 + 77;
        let mut bytes = vec![0u8; 8 * total];
        ctr::Ctr64LE::<Aes128>::new(&(*seed.as_bytes()).into(), &[0u8; 16].into()).apply_keystream(&mut bytes);
        let reference: Vec<u64> =
            bytes.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
        for sizes in
            [vec![total], vec![1, 1, 3, 2048, 2049, 1, total], vec![5, 4096, 2, 7, total], vec![2, 2047, total]]
        {
            let mut p = Prg::new(&seed);
            let mut got = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let size = (*size).min(total - got.len());
                match i % 3 {
                    0 => p.append(&mut got, size),
                    1 => {
                        let mut v = vec![7u64; size];
                        p.fill(&mut v);
                        got.extend_from_slice(&v);
                    }
                    _ => (0..size).for_each(|_| got.push(p.next_u64())),
                }
            }
            assert_eq!(got, reference, "{sizes:?}");
        }
    }

    #[test]
    fn different_seeds_differ_and_debug_is_redacted() {
        let a = Seed::random().unwrap();
        let b = Seed::random().unwrap();
        assert_ne!(Prg::new(&a).next_vec(4), Prg::new(&b).next_vec(4));
        assert_eq!(format!("{a:?}"), "Seed(<redacted>)");
    }
}
