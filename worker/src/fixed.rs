//! Fixed-point encoding of real numbers into Z_2^64.
//!
//! A real `x` is encoded as the ring element `round(x * 2^f)` (two's
//! complement), with `f` fractional bits (16 unless a program says
//! otherwise). Encoding refuses values outside the *safe range*
//! `|round(x * 2^f)| < 2^62`, never wrapping them: the secure division and
//! truncation protocol (`protocol::additive::division`) is correct only for dividends
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

    /// Encode a decimal text exactly: `round(x * 2^f)` (half away from
    /// zero, as [`FixedPoint::encode`]) of the exact decimal value, with no
    /// detour through `f64`, refusing anything outside the safe range.
    /// Syntax: optional sign, digits with an optional point (`1.`, `.5`),
    /// optional exponent (`1e-3`).
    pub fn encode_decimal(&self, text: &str) -> Result<u64, DecimalError> {
        let (negative, digits, point) = decimal_digits(text)?;
        if digits.is_empty() || point < -(DECISIVE_DIGITS as i64) {
            // Zero, or below 10^-42: rounds to zero in every format.
            return Ok(0);
        }
        if point > 19 {
            // At least 10^19 > 2^62.
            return Err(DecimalError::OutOfRange);
        }
        // The integer part (at most 19 digits: fits a u64) ...
        let int_len = point.max(0) as usize;
        let whole = (0..int_len).fold(0u64, |acc, i| acc * 10 + u64::from(digits.get(i).copied().unwrap_or(0)));
        // ... and the fractional digits that matter.
        let mut frac: Vec<u8> = std::iter::repeat_n(0u8, (-point).max(0) as usize)
            .chain(digits.iter().skip(int_len).copied())
            .take(DECISIVE_DIGITS)
            .collect();
        // Multiply the fraction by 2 once per fractional bit; each carry
        // out of the fraction is the next bit of the encoding.
        let mut bits = 0u64;
        for _ in 0..self.frac_bits {
            let mut carry = 0u8;
            for d in frac.iter_mut().rev() {
                let twice = *d * 2 + carry;
                *d = twice % 10;
                carry = twice / 10;
            }
            bits = bits << 1 | u64::from(carry);
        }
        let round_up = frac.first().is_some_and(|&d| d >= 5);
        let magnitude = (u128::from(whole) << self.frac_bits) + u128::from(bits) + u128::from(round_up);
        if magnitude >= u128::from(SAFE_BOUND) {
            return Err(DecimalError::OutOfRange);
        }
        let k = magnitude as i64;
        Ok(from_signed(if negative { -k } else { k }))
    }

    /// The exact decimal value of a ring element's grid point `k / 2^f`:
    /// every such value has a finite decimal expansion (at most `f`
    /// fractional digits). `-12.5`, `3`, `0.0000152587890625`.
    pub fn exact_decimal(&self, v: u64) -> String {
        let k = to_signed(v);
        let magnitude = k.unsigned_abs();
        let mut out = String::new();
        if k < 0 {
            out.push('-');
        }
        out.push_str(&(magnitude >> self.frac_bits).to_string());
        let mask = (1u64 << self.frac_bits) - 1;
        let mut rest = magnitude & mask;
        if rest != 0 {
            out.push('.');
            while rest != 0 {
                rest *= 10;
                out.push(char::from(b'0' + (rest >> self.frac_bits) as u8));
                rest &= mask;
            }
        }
        out
    }

    /// A ring element's grid point as an `f64`: exact when `|k| < 2^53`
    /// (every value below `2^(53-f)` in magnitude), otherwise the nearest
    /// `f64` toward zero, so that it never leaves the safe range and
    /// [`FixedPoint::encode`] of it gives a grid point at most one `f64`
    /// step from `k`.
    pub fn to_f64_toward_zero(&self, v: u64) -> f64 {
        let k = to_signed(v);
        let magnitude = k.unsigned_abs();
        // Clear the bits below the 53 most significant ones: exact in f64.
        let shift = (64 - magnitude.leading_zeros()).saturating_sub(53);
        let truncated = (magnitude >> shift << shift) as f64 / self.scale() as f64;
        if k < 0 { -truncated } else { truncated }
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

/// Why a decimal text cannot be encoded ([`FixedPoint::encode_decimal`]).
/// Carries no value: the text being encoded is secret input.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    #[error("not a decimal number")]
    Syntax,
    #[error("out of range")]
    OutOfRange,
}

/// Fractional digits that decide the rounding for every supported format:
/// each boundary `(2m+1)/2^(f+1)` has at most `f + 1 <= 41` fractional
/// digits, so the digits after the 41st cannot change `round(x * 2^f)`.
const DECISIVE_DIGITS: usize = MAX_FRAC_BITS as usize + 1;

/// A decimal's digits without leading zeros, and where its point is:
/// the value is `0.d1 d2 d3 ... * 10^point`.
fn decimal_digits(text: &str) -> Result<(bool, Vec<u8>, i64), DecimalError> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !all_digits(whole) || !all_digits(frac) {
        return Err(DecimalError::Syntax);
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !all_digits(digits) {
                return Err(DecimalError::Syntax);
            }
            // Anything beyond a million decimal places is zero or out of
            // range either way; saturate rather than overflow.
            let magnitude = digits.trim_start_matches('0');
            let m: i64 = if magnitude.len() > 7 { 10_000_000 } else { magnitude.parse().unwrap_or(0) };
            if e.starts_with('-') { -m } else { m }
        }
    };
    let mut digits: Vec<u8> = whole.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let mut point = (whole.len() as i64).saturating_add(exponent);
    let leading = digits.iter().take_while(|&&d| d == 0).count();
    digits.drain(..leading);
    point = point.saturating_sub(leading as i64);
    while digits.last() == Some(&0) {
        digits.pop();
    }
    Ok((negative, digits, point))
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

    #[test]
    fn decimals_encode_exactly() {
        let fp = FixedPoint::default();
        let k = |t: &str| fp.encode_decimal(t).map(to_signed);
        // Below 2^46 by 0.001: f64 rounds it to 2^46, exact parsing does not
        // (round(0.999 * 2^16) = 65470).
        assert_eq!(k("70368744177663.999"), Ok((1 << 62) - 65536 + 65470));
        assert_eq!(k("-70368744177663.999"), Ok(-((1 << 62) - 65536 + 65470)));
        assert_eq!(k("70368744177664"), Err(DecimalError::OutOfRange));
        assert_eq!(k("70368744177663.99999"), Ok((1 << 62) - 1));
        assert_eq!(k("70368744177663.999993"), Err(DecimalError::OutOfRange), "rounds up to 2^46");
        assert_eq!(k("243.4"), Ok(15951462));
        assert_eq!(k("1"), Ok(65536));
        assert_eq!(k("+.5"), Ok(32768));
        assert_eq!(k("2."), Ok(131072));
        assert_eq!(k("1e-3"), Ok(66));
        assert_eq!(k("15.2587890625e-6"), Ok(1), "exactly 2^-16");
        assert_eq!(k("7.62939453125e-6"), Ok(1), "exactly half a unit rounds away from zero");
        assert_eq!(k("-7.62939453125e-6"), Ok(-1));
        assert_eq!(k("7.629394531249999999999999999999999999999999999e-6"), Ok(0), "just below half");
        assert_eq!(k("0.00000762939453125000000000000000000000000000000000001"), Ok(1));
        assert_eq!(k("1e-100000000000"), Ok(0));
        assert_eq!(k("1e100000000000"), Err(DecimalError::OutOfRange));
        assert_eq!(k("0e999999999"), Ok(0));
        assert_eq!(k("-0"), Ok(0));
        assert_eq!(k("000000000000000000000000012.5"), Ok(819200));
        for bad in ["", ".", "-", "e5", "1e", "1e+", "1.2.3", "0x10", "1_000", "1,5", " 1", "inf", "NaN", "--1"] {
            assert_eq!(k(bad), Err(DecimalError::Syntax), "{bad:?}");
        }
        // Ints range: 2^62 - 1 at zero fractional bits.
        let f0 = FixedPoint::new(0).unwrap();
        assert_eq!(f0.encode_decimal("4611686018427387903").map(to_signed), Ok((1 << 62) - 1));
        assert_eq!(f0.encode_decimal("4611686018427387903.5"), Err(DecimalError::OutOfRange));
    }

    #[test]
    fn grid_points_print_exactly() {
        let fp = FixedPoint::default();
        assert_eq!(fp.exact_decimal(15951462), "243.399993896484375");
        assert_eq!(fp.exact_decimal(from_signed(-1)), "-0.0000152587890625");
        assert_eq!(fp.exact_decimal(from_signed(-(1 << 16))), "-1");
        assert_eq!(fp.exact_decimal(0), "0");
        // The shortest f64 text of a grid point below 2^53 units reads back
        // to it: the form outputs take in JSON.
        assert_eq!(fp.decode(15951462).to_string(), "243.39999389648438");
        // Just below 2^46 the doubles are 2^-7 apart.
        assert_eq!(fp.to_f64_toward_zero(from_signed((1 << 62) - 1)), 2f64.powi(46) - 2f64.powi(-7));
        assert_eq!(fp.to_f64_toward_zero(from_signed(-(1 << 62) + 1)), -(2f64.powi(46) - 2f64.powi(-7)));
    }

    proptest! {
        /// Every grid point prints as an exact decimal that parses back to
        /// itself, in every format.
        #[test]
        fn every_grid_point_prints_and_parses_back(
            k in -(1i64 << 62) + 1..(1i64 << 62),
            small in -(1i64 << 52) + 1..(1i64 << 52),
            f in 0u32..=MAX_FRAC_BITS,
        ) {
            let fp = FixedPoint::new(f).unwrap();
            for k in [k, small, small >> 20] {
                let v = from_signed(k);
                prop_assert_eq!(fp.encode_decimal(&fp.exact_decimal(v)), Ok(v));
            }
            // Below 2^53 units the f64 is the grid point, and its shortest
            // text (what JSON carries) reads back to the same f64; below
            // 2^52 (half a unit or less per f64 step) exact decimal parsing
            // of that text gives the same grid point too.
            for small in [small, small >> 20] {
                let v = from_signed(small);
                let x = fp.to_f64_toward_zero(v);
                prop_assert_eq!(x, fp.decode(v));
                prop_assert_eq!(x.to_string().parse::<f64>().unwrap(), x);
                prop_assert_eq!(fp.encode_decimal(&x.to_string()), Ok(v));
                prop_assert_eq!(fp.encode_decimal(&format!("{x:e}")), Ok(v));
            }
            let v = from_signed(k);
            // Above, the f64 toward zero stays in range and within one f64 step.
            let back = to_signed(fp.encode(fp.to_f64_toward_zero(v)).unwrap());
            prop_assert!(back.unsigned_abs() <= k.unsigned_abs());
            prop_assert!(k.abs_diff(back) <= k.unsigned_abs() >> 52);
        }

        /// Exact parsing agrees with f64 parsing wherever f64 is exact
        /// enough to decide: decimals of a few digits.
        #[test]
        fn decimal_parsing_matches_f64_for_short_decimals(whole in -1_000_000i64..1_000_000, frac in 0u32..1000, f in 0u32..=20) {
            let fp = FixedPoint::new(f).unwrap();
            let text = format!("{}{}.{frac:03}", if whole < 0 { "-" } else { "" }, whole.unsigned_abs());
            let x: f64 = text.parse().unwrap();
            prop_assert_eq!(fp.encode_decimal(&text).ok(), fp.encode(x).ok());
        }

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
