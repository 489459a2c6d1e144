//! Fixed-point encoding of real numbers into Z_2^64.
//!
//! A real `x` is encoded as the ring element `round(x * 2^f)` (two's
//! complement), with `f` fractional bits (16 unless a program says
//! otherwise). Encoding refuses values outside the *safe range*
//! `|round(x * 2^f)| < 2^62`, never wrapping them: the secure division and
//! truncation protocol (`protocol::division`) is correct only for dividends
//! in that range, so it is the range every secret value must stay in.
//! Products of two fixed-point values carry `2f` fractional bits before
//! truncation, so their operands must be correspondingly smaller
//! (`|x*y| < 2^(62-2f)`, about 2^30 with the default `f = 16`); see
//! `docs/language.md`.

use crate::ring::{from_signed, to_signed};
use thiserror::Error;

/// Largest number of fractional bits a program may ask for.
pub const MAX_FRAC_BITS: u32 = 40;

/// Default number of fractional bits.
pub const DEFAULT_FRAC_BITS: u32 = 16;

/// Magnitude bound (exclusive) of every encoded value: 2^62.
pub const SAFE_BOUND: u64 = 1 << 62;

/// Why a value cannot be encoded. Deliberately carries no value: the value
/// being encoded is secret input.
#[derive(Debug, Error, Clone, Copy, PartialEq)]
pub enum EncodeError {
    #[error("not a finite number")]
    NotFinite,
    #[error(
        "out of range: fixed-point values with {frac_bits} fractional bits must lie strictly between -{limit} and {limit}"
    )]
    FixedOutOfRange { frac_bits: u32, limit: f64 },
    #[error("out of range: integers must lie strictly between -2^62 and 2^62")]
    IntOutOfRange,
}

/// A fixed-point format: the number of fractional bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FixedPoint {
    frac_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        FixedPoint { frac_bits: DEFAULT_FRAC_BITS }
    }
}

impl FixedPoint {
    /// A format with `frac_bits` fractional bits; `None` above
    /// [`MAX_FRAC_BITS`].
    pub fn new(frac_bits: u32) -> Option<FixedPoint> {
        (frac_bits <= MAX_FRAC_BITS).then_some(FixedPoint { frac_bits })
    }

    pub fn frac_bits(&self) -> u32 {
        self.frac_bits
    }

    /// The scale `2^f` as a ring element.
    pub fn scale(&self) -> u64 {
        1u64 << self.frac_bits
    }

    /// The exclusive bound on the magnitude of encodable reals: 2^(62-f).
    pub fn max_abs(&self) -> f64 {
        (SAFE_BOUND as f64) / (self.scale() as f64)
    }

    /// Encode a real number, refusing anything outside the safe range.
    pub fn encode(&self, x: f64) -> Result<u64, EncodeError> {
        if !x.is_finite() {
            return Err(EncodeError::NotFinite);
        }
        let scaled = (x * self.scale() as f64).round();
        // Compare in f64: both bounds are powers of two, exactly representable.
        if scaled.abs() >= SAFE_BOUND as f64 {
            return Err(EncodeError::FixedOutOfRange { frac_bits: self.frac_bits, limit: self.max_abs() });
        }
        Ok(from_signed(scaled as i64))
    }

    /// Decode a ring element as a real number (exact for `|v| < 2^53`).
    pub fn decode(&self, v: u64) -> f64 {
        to_signed(v) as f64 / self.scale() as f64
    }

    /// The resolution of the format, `2^-f`: one unit in the last place.
    pub fn ulp(&self) -> f64 {
        1.0 / self.scale() as f64
    }
}

/// Encode an integer, refusing anything outside the safe range.
pub fn encode_int(x: i64) -> Result<u64, EncodeError> {
    if x.unsigned_abs() >= SAFE_BOUND {
        return Err(EncodeError::IntOutOfRange);
    }
    Ok(from_signed(x))
}

/// Decode a ring element as an integer.
pub fn decode_int(v: u64) -> i64 {
    to_signed(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edges_are_refused_not_wrapped() {
        let fp = FixedPoint::default();
        let max = fp.max_abs();
        assert_eq!(max, 2f64.powi(46));
        assert!(fp.encode(max).is_err());
        assert!(fp.encode(-max).is_err());
        // 2^46 - 1 is the largest integer inside; f64 cannot hold 2^46 - 2^-16.
        let just_inside = max - 1.0;
        assert_eq!(fp.decode(fp.encode(just_inside).unwrap()), just_inside);
        assert_eq!(fp.decode(fp.encode(-just_inside).unwrap()), -just_inside);
        assert_eq!(fp.encode(f64::NAN), Err(EncodeError::NotFinite));
        assert_eq!(fp.encode(f64::INFINITY), Err(EncodeError::NotFinite));
        assert!(encode_int(1 << 62).is_err());
        assert!(encode_int(-(1 << 62)).is_err());
        assert!(encode_int(i64::MIN).is_err());
        assert_eq!(decode_int(encode_int((1 << 62) - 1).unwrap()), (1 << 62) - 1);
        assert!(FixedPoint::new(MAX_FRAC_BITS + 1).is_none());
    }

    #[test]
    fn encodes_exact_values() {
        let fp = FixedPoint::default();
        for x in [0.0, 1.0, -1.0, 0.5, -0.5, 1234.25, -1e9] {
            assert_eq!(fp.decode(fp.encode(x).unwrap()), x);
        }
        assert_eq!(fp.encode(1.0).unwrap(), 1 << 16);
        assert_eq!(to_signed(fp.encode(-1.0).unwrap()), -(1 << 16));
    }

    proptest! {
        #[test]
        fn round_trip_error_is_half_an_ulp(x in -1e12f64..1e12, f in 0u32..=21) {
            let fp = FixedPoint::new(f).unwrap();
            let decoded = fp.decode(fp.encode(x).unwrap());
            prop_assert!((decoded - x).abs() <= fp.ulp() / 2.0 + x.abs() * 1e-15);
        }

        #[test]
        fn ints_round_trip(x in -(1i64 << 62) + 1..(1i64 << 62)) {
            prop_assert_eq!(decode_int(encode_int(x).unwrap()), x);
        }
    }
}
