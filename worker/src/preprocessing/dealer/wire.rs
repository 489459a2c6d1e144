//! The wire format of a [`DealerBatch`], as the `cohort-dealer` process (a
//! TRUSTED THIRD PARTY) sends it to one party.
//!
//! All integers are little-endian. Layout, versions 1 to 3:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0  | 4  | magic `b"CHDB"` |
//! | 4  | 1  | version (`1`, `2` or `3`) |
//! | 5  | 1  | flags: bit 0 = corrections present; other bits must be 0 |
//! | 6  | 4  | `parties` (u32, >= 2) |
//! | 10 | 4  | `party` (u32, < parties) |
//! | 14 | 16 | batch id: session |
//! | 30 | 8  | batch id: seq (u64) |
//! | 38 | 8  | triples (u64) |
//! | 46 | 4  | divisor groups `G` (u32, <= [`MAX_DIVISOR_GROUPS`]) |
//! | 50 | 16·G | per group: divisor (u64), count (u64) |
//! | ..  | 24 | version 2 only: bit-triple words `W`, edaBits `E`, daBits `D` (u64 each) |
//! | ..  | 20 | version 3 only: a permutation step's permuter (u32), length `L` and columns `C` (u64 each); `T` and `G` are 0 |
//! | ..  | 16 | the party's batch seed |
//! | ..  | 8·(T + 2·ΣP [+ W + E + D]) | corrections, only when flagged: `c` (T elements), then per group `msb` then `q` (count elements each); version 2 then the bit triples' `c` (W words), the edaBits' bits (E words, bit `k` of word `t` is bit `k` of edaBit `t`), the daBits' arithmetic shares (D elements) |
//!
//! Version 3 carries one step of a dealt shuffle and nothing else: its
//! corrections are the permuter's `Δ` (`L·C` elements, column after
//! column), present exactly for the permuter.
//!
//! Corrections are present exactly when `party == parties - 1` (version 3:
//! `party == permuter`). The shape
//! must satisfy [`Demand`]'s invariants (divisors positive, ascending,
//! distinct; counts positive) and hold at most [`MAX_BATCH_ITEMS`] items.
//! The length must match the header exactly. Anything else is
//! [`PreprocessingError::Malformed`]; parsing never panics and allocates
//! only in proportion to the input.
//!
//! **Versions.** A batch is written in the lowest version that can hold
//! it: version 1 (byte for byte what builds before the binary kinds wrote)
//! when it holds none of them, version 2 when it holds binary kinds,
//! version 3 for a permutation step; a version-2 batch without binary
//! kinds is refused, so every batch has one encoding. This build reads all
//! three (a permutation step only reaches a build that plans dealt
//! shuffles, which reads it). So during a rolling upgrade a new dealer still serves
//! jobs without comparisons to old workers, and new workers draw such jobs
//! from an old dealer; only a job that needs binary material needs both
//! ends upgraded (an old party cannot compile such a job anyway).

use super::{BatchId, Corrections, DealerBatch, MAX_BATCH_ITEMS, MAX_DIVISOR_GROUPS, validate_demand};
use crate::preprocessing::{Demand, PermutationDemand, PreprocessingError};
use crate::prg::{SEED_BYTES, Seed};
use crate::sharing::Share;
use zeroize::{Zeroize, Zeroizing};

const MAGIC: [u8; 4] = *b"CHDB";

/// The version of the batch wire format written for batches with binary
/// kinds; this build reads it, [`WIRE_VERSION_ARITHMETIC`] and
/// [`WIRE_VERSION_PERMUTATION`].
pub const WIRE_VERSION: u8 = 2;

/// The version written for a permutation step (one step of a dealt
/// shuffle).
pub const WIRE_VERSION_PERMUTATION: u8 = 3;

/// The version written for batches without binary kinds (and the only one
/// builds before the binary kinds read).
pub const WIRE_VERSION_ARITHMETIC: u8 = 1;

/// Bytes before the divisor groups.
pub const WIRE_HEADER_BYTES: usize = 50;

const FLAG_CORRECTIONS: u8 = 1;

impl DealerBatch {
    /// The encoded length of this batch in bytes.
    pub fn wire_len(&self) -> usize {
        let corrections = match &self.corrections {
            Some(c) => {
                8 * (c.c.len()
                    + c.div.iter().map(|(m, q)| m.len() + q.len()).sum::<usize>()
                    + c.bit_c.len()
                    + c.eda_bits.len()
                    + c.da_arith.len()
                    + c.delta.len())
            }
            None => 0,
        };
        let binary = if self.shape.has_binary() { 24 } else { 0 };
        let permutation = if self.shape.permutation.is_some() { 20 } else { 0 };
        WIRE_HEADER_BYTES + 16 * self.shape.div_pairs.len() + binary + permutation + SEED_BYTES + corrections
    }

    /// The version this batch is written in (see the module documentation).
    pub fn wire_version(&self) -> u8 {
        if self.shape.permutation.is_some() {
            WIRE_VERSION_PERMUTATION
        } else if self.shape.has_binary() {
            WIRE_VERSION
        } else {
            WIRE_VERSION_ARITHMETIC
        }
    }

    /// Encode the batch (layout in the module documentation). The bytes hold
    /// the seed and corrections, so they are zeroized when dropped.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.wire_len()));
        out.extend_from_slice(&MAGIC);
        out.push(self.wire_version());
        out.push(if self.corrections.is_some() { FLAG_CORRECTIONS } else { 0 });
        // Both fit in u32: the dealer and the decoder enforce it.
        out.extend_from_slice(&(self.parties as u32).to_le_bytes());
        out.extend_from_slice(&(self.party as u32).to_le_bytes());
        out.extend_from_slice(&self.id.session);
        out.extend_from_slice(&self.id.seq.to_le_bytes());
        out.extend_from_slice(&(self.shape.triples as u64).to_le_bytes());
        out.extend_from_slice(&(self.shape.div_pairs.len() as u32).to_le_bytes());
        for &(d, n) in &self.shape.div_pairs {
            out.extend_from_slice(&d.to_le_bytes());
            out.extend_from_slice(&(n as u64).to_le_bytes());
        }
        if self.shape.has_binary() {
            for n in [self.shape.bit_triple_words, self.shape.edabits, self.shape.dabits] {
                out.extend_from_slice(&(n as u64).to_le_bytes());
            }
        }
        if let Some(p) = self.shape.permutation {
            // The permuter is below `parties`, which fits in u32.
            out.extend_from_slice(&(p.permuter as u32).to_le_bytes());
            out.extend_from_slice(&(p.len as u64).to_le_bytes());
            out.extend_from_slice(&(p.columns as u64).to_le_bytes());
        }
        out.extend_from_slice(self.seed.as_bytes());
        if let Some(c) = &self.corrections {
            put_elements(&mut out, c.c.expose());
            for (m, q) in &c.div {
                put_elements(&mut out, m.expose());
                put_elements(&mut out, q.expose());
            }
            put_elements(&mut out, &c.bit_c);
            put_elements(&mut out, &c.eda_bits);
            put_elements(&mut out, c.da_arith.expose());
            put_elements(&mut out, c.delta.expose());
        }
        debug_assert_eq!(out.len(), self.wire_len());
        out
    }

    /// Decode a batch, strictly: see the module documentation.
    pub fn from_bytes(bytes: &[u8]) -> Result<DealerBatch, PreprocessingError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(malformed("bad magic"));
        }
        let version = r.u8()?;
        if ![WIRE_VERSION_ARITHMETIC, WIRE_VERSION, WIRE_VERSION_PERMUTATION].contains(&version) {
            return Err(malformed(&format!("unsupported version {version}")));
        }
        let flags = r.u8()?;
        if flags & !FLAG_CORRECTIONS != 0 {
            return Err(malformed("unknown flags"));
        }
        let parties = r.u32()? as usize;
        let party = r.u32()? as usize;
        if parties < 2 {
            return Err(malformed("fewer than 2 parties"));
        }
        if party >= parties {
            return Err(malformed("party index out of range"));
        }
        let has_corrections = flags & FLAG_CORRECTIONS != 0;
        let session: [u8; 16] = r.take(16)?.try_into().expect("16 bytes");
        let seq = r.u64()?;
        let triples = r.count()?;
        let groups = r.u32()? as usize;
        if groups > MAX_DIVISOR_GROUPS {
            return Err(malformed("too many divisor groups"));
        }
        let mut div_pairs = Vec::with_capacity(groups.min(r.remaining() / 16));
        for _ in 0..groups {
            let d = r.u64()?;
            let n = r.count()?;
            div_pairs.push((d, n));
        }
        let mut shape = Demand { triples, div_pairs, ..Default::default() };
        if version == WIRE_VERSION {
            shape.bit_triple_words = r.count()?;
            shape.edabits = r.count()?;
            shape.dabits = r.count()?;
            if !shape.has_binary() {
                return Err(malformed("a version 2 batch without binary material (version 1 encodes it)"));
            }
        }
        if version == WIRE_VERSION_PERMUTATION {
            let permuter = r.u32()? as usize;
            let len = r.count()?;
            let columns = r.count()?;
            if permuter >= parties {
                return Err(malformed("permuter index out of range"));
            }
            shape.permutation = Some(PermutationDemand { permuter, len, columns });
        }
        if has_corrections != (party == super::corrected_party(&shape, parties)) {
            return Err(malformed(
                "corrections must be present exactly for the last party (a permutation step's permuter)",
            ));
        }
        let items = validate_demand(&shape).map_err(|e| malformed(&format!("bad shape ({e})")))?;
        if items > MAX_BATCH_ITEMS {
            return Err(malformed("too many items"));
        }
        let mut seed_bytes: [u8; SEED_BYTES] = r.take(SEED_BYTES)?.try_into().expect("seed length");
        let seed = Seed::from_bytes(seed_bytes);
        seed_bytes.zeroize();
        let corrections = if has_corrections {
            // items <= MAX_BATCH_ITEMS, so none of this overflows.
            let binary = shape.bit_triple_words + shape.edabits + shape.dabits;
            // A permutation step's items are its `Δ` elements (and nothing else).
            let elements =
                if shape.permutation.is_some() { items } else { triples + 2 * (items - triples - binary) + binary };
            if r.remaining() != 8 * elements {
                return Err(malformed("correction length does not match the shape"));
            }
            let c = r.elements(triples)?;
            let mut div = Vec::with_capacity(shape.div_pairs.len());
            for &(_, n) in &shape.div_pairs {
                let m = r.elements(n)?;
                let q = r.elements(n)?;
                div.push((m, q));
            }
            let bit_c = Zeroizing::new(r.elements(shape.bit_triple_words)?.into_inner());
            let eda_bits = Zeroizing::new(r.elements(shape.edabits)?.into_inner());
            let da_arith = r.elements(shape.dabits)?;
            let delta = r.elements(shape.permutation.map_or(0, |p| p.elements()))?;
            Some(Corrections { c, div, bit_c, eda_bits, da_arith, delta })
        } else {
            None
        };
        if r.remaining() != 0 {
            return Err(malformed("trailing bytes"));
        }
        Ok(DealerBatch { id: BatchId { session, seq }, party, parties, shape, seed, corrections })
    }
}

fn put_elements(out: &mut Vec<u8>, xs: &[u64]) {
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn malformed(what: &str) -> PreprocessingError {
    PreprocessingError::Malformed(what.to_string())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], PreprocessingError> {
        if n > self.remaining() {
            return Err(malformed("truncated"));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, PreprocessingError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, PreprocessingError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, PreprocessingError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    /// A u64 count that must fit the batch bound.
    fn count(&mut self) -> Result<usize, PreprocessingError> {
        let n = self.u64()?;
        usize::try_from(n).ok().filter(|&n| n <= MAX_BATCH_ITEMS).ok_or_else(|| malformed("count too large"))
    }
    /// `n` elements as a share vector (the caller checked the length).
    fn elements(&mut self, n: usize) -> Result<Share, PreprocessingError> {
        let bytes = self.take(8 * n)?;
        Ok(Share::new(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocessing::dealer::TrustedDealer;
    use proptest::prelude::*;

    fn sample(parties: usize) -> Vec<DealerBatch> {
        let mut d = TrustedDealer::new(parties).unwrap();
        d.deal(&Demand { triples: 5, div_pairs: vec![(3, 2), (1 << 16, 4)], ..Default::default() }).unwrap()
    }

    #[test]
    fn layout_offsets_are_as_documented() {
        let b = &sample(3)[2];
        let bytes = b.to_bytes();
        assert_eq!(&bytes[..4], b"CHDB");
        assert_eq!(bytes[4], WIRE_VERSION_ARITHMETIC);
        assert_eq!(bytes[5], FLAG_CORRECTIONS);
        assert_eq!(u32::from_le_bytes(bytes[6..10].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(bytes[10..14].try_into().unwrap()), 2);
        assert_eq!(&bytes[14..30], &b.id().session);
        assert_eq!(u64::from_le_bytes(bytes[38..46].try_into().unwrap()), 5);
        assert_eq!(u32::from_le_bytes(bytes[46..50].try_into().unwrap()), 2);
        assert_eq!(&bytes[50 + 32..50 + 32 + 16], b.seed.as_bytes());
        assert_eq!(bytes.len(), 50 + 32 + 16 + 8 * (5 + 2 * 6));
        assert_eq!(sample(3)[0].to_bytes().len(), 50 + 32 + 16);
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for b in sample(2) {
            let bytes = b.to_bytes();
            for cut in 0..bytes.len() {
                assert!(matches!(DealerBatch::from_bytes(&bytes[..cut]), Err(PreprocessingError::Malformed(_))));
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert!(matches!(DealerBatch::from_bytes(&longer), Err(PreprocessingError::Malformed(_))));
        }
    }

    #[test]
    fn permutation_steps_round_trip_in_version_3() {
        let mut d = TrustedDealer::new(3).unwrap();
        let shape =
            Demand { permutation: Some(PermutationDemand { permuter: 1, len: 7, columns: 2 }), ..Default::default() };
        let batches = d.deal(&shape).unwrap();
        for b in &batches {
            let bytes = b.to_bytes();
            assert_eq!(bytes[4], WIRE_VERSION_PERMUTATION);
            assert_eq!(bytes[5] == FLAG_CORRECTIONS, b.party() == 1, "corrections for the permuter only");
            assert_eq!(bytes.len(), 50 + 20 + 16 + if b.party() == 1 { 8 * 14 } else { 0 });
            let parsed = DealerBatch::from_bytes(&bytes).unwrap();
            assert_eq!(parsed.shape(), &shape);
            assert_eq!(parsed.to_bytes().to_vec(), bytes.to_vec());
            for cut in 0..bytes.len() {
                assert!(matches!(DealerBatch::from_bytes(&bytes[..cut]), Err(PreprocessingError::Malformed(_))));
            }
        }
        // A permuter out of range, and corrections at the wrong party.
        let mut bad = batches[1].to_bytes().to_vec();
        bad[50..54].copy_from_slice(&3u32.to_le_bytes());
        assert!(DealerBatch::from_bytes(&bad).is_err());
        let mut bad = batches[1].to_bytes().to_vec();
        bad[50..54].copy_from_slice(&2u32.to_le_bytes());
        assert!(DealerBatch::from_bytes(&bad).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = DealerBatch::from_bytes(&bytes);
            // Also with a valid prefix, so parsing gets past the magic.
            let mut framed = b"CHDB\x01".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = DealerBatch::from_bytes(&framed);
        }

        #[test]
        fn flipped_bytes_never_panic(pos in any::<prop::sample::Index>(), bit in 0u8..8, last in any::<bool>()) {
            let batches = sample(3);
            let b = if last { &batches[2] } else { &batches[0] };
            let mut bytes = b.to_bytes().to_vec();
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            if let Ok(parsed) = DealerBatch::from_bytes(&bytes) {
                // Whatever decodes re-encodes to the same bytes.
                prop_assert_eq!(parsed.to_bytes().to_vec(), bytes);
            }
        }
    }
}
