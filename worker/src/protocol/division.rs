//! Division of a secret by a public value; fixed-point truncation.
//!
//! Construction: the probabilistic truncation of Escudero, Ghosh, Keller,
//! Rachuri and Scholl (CRYPTO 2020, §5), generalized from divisors `2^m` to
//! any public divisor `1 <= d <= 2^62`. With `k = 64` and a division pair
//! `([r], [m], [q])` — `r` uniform, `m = r >> 63`, `q = floor(r_low / d)`
//! where `r_low = r mod 2^63`:
//!
//! 1. Shift the secret into `[0, 2^63)`: `x' = x + K`, with `K` the largest
//!    multiple of `d` not above `2^62` (party 0 adds `K` to its share).
//! 2. [`mask`] and open `c = x' + r mod 2^64`. Because `r` is uniform, `c`
//!    is uniform and reveals nothing about `x` (perfect hiding).
//! 3. Let `c' = c mod 2^63` and `c_top = c >> 63`. Since `x' < 2^63` and
//!    `r_low < 2^63`, `x' + r_low = c' + w*2^63` with the carry
//!    `w = c_top XOR m = c_top + m - 2*c_top*m`, linear in `[m]`. Hence
//!    `x' = c' - r_low + w*2^63` and [`finish`] computes
//!    `y = floor(c'/d) - q + w*floor(2^63/d) - K/d`.
//!
//! Correctness: writing each of `c'`, `r_low`, `2^63` as quotient and
//! remainder by `d`, `y` differs from `floor(x/d)` by `floor(delta/d)` for
//! `delta = rem(c') - rem(r_low) + w*rem(2^63)` in `(-d, 2d)`, so
//! `y - floor(x/d)` is in `{-1, 0, 1}`; for `d = 2^j` the last remainder is
//! zero and `y - floor(x/d)` is in `{0, 1}`. The error is at most one unit
//! in the last place of the result, whatever `x` is, as long as the
//! precondition `|x| < 2^62 - d` holds (outside it the result is garbage,
//! which is why encoding refuses values beyond `2^62`).

use crate::sharing::Share;

/// Largest divisor the protocol accepts.
pub const MAX_DIVISOR: u64 = 1 << 62;

/// Public constants of a division by `divisor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Division {
    pub divisor: u64,
    /// `K`: the largest multiple of `divisor` not above 2^62.
    offset: u64,
    /// `floor(2^63 / divisor)`.
    top_quotient: u64,
}

impl Division {
    /// `None` unless `1 <= divisor <= 2^62`.
    pub fn new(divisor: u64) -> Option<Division> {
        if divisor == 0 || divisor > MAX_DIVISOR {
            return None;
        }
        Some(Division { divisor, offset: (MAX_DIVISOR / divisor) * divisor, top_quotient: (1u64 << 63) / divisor })
    }

    /// Step 2, local part: this party's share of `c = x + K + r`, appended
    /// to `out`.
    pub fn mask(&self, x: &[u64], r: &[u64], is_first: bool, out: &mut Vec<u64>) {
        debug_assert_eq!(x.len(), r.len());
        let k = if is_first { self.offset } else { 0 };
        out.extend(x.iter().zip(r).map(|(x, r)| x.wrapping_add(*r).wrapping_add(k)));
    }

    /// Step 3: this party's share of `x / divisor` from the opened `c` and
    /// its shares of `m` and `q`.
    pub fn finish(&self, c: &[u64], msb: &[u64], q: &[u64], is_first: bool) -> Share {
        debug_assert!(c.len() == msb.len() && c.len() == q.len());
        let d = self.divisor;
        let k_over_d = self.offset / d;
        let y = c
            .iter()
            .zip(msb.iter().zip(q))
            .map(|(c, (m, q))| {
                let c_top = c >> 63;
                // [w] = [first]*c_top + [m]*(1 - 2*c_top)
                let mut w = m.wrapping_mul(1u64.wrapping_sub(c_top << 1));
                let mut y = 0u64.wrapping_sub(*q);
                if is_first {
                    w = w.wrapping_add(c_top);
                    let c_low = c & ((1u64 << 63) - 1);
                    y = y.wrapping_add(c_low / d).wrapping_sub(k_over_d);
                }
                y.wrapping_add(w.wrapping_mul(self.top_quotient))
            })
            .collect();
        Share::new(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prg::{Prg, Seed};
    use crate::ring::{floor_div, from_signed, to_signed};
    use crate::sharing::{Secret, reconstruct, share};
    use proptest::prelude::*;

    /// Run the protocol with all parties in one place and a division pair
    /// built from its definition.
    fn divide(xs: &[u64], divisor: u64, n: usize, seed: u8) -> Vec<u64> {
        let div = Division::new(divisor).unwrap();
        let r = Prg::new(&Seed::from_bytes([seed; 16])).next_vec(xs.len());
        let msb: Vec<u64> = r.iter().map(|r| r >> 63).collect();
        let q: Vec<u64> = r.iter().map(|r| (r & ((1 << 63) - 1)) / divisor).collect();
        let [sr, sm, sq, sx] = [r, msb, q, xs.to_vec()].map(|v| share(&Secret::new(v), n).unwrap());
        let mut c = vec![0u64; xs.len()];
        for i in 0..n {
            let mut ci = Vec::new();
            div.mask(sx[i].expose(), sr[i].expose(), i == 0, &mut ci);
            crate::ring::add_assign(&mut c, &ci);
        }
        let ys: Vec<Share> = (0..n).map(|i| div.finish(&c, sm[i].expose(), sq[i].expose(), i == 0)).collect();
        reconstruct(&ys).into_inner()
    }

    fn check(xs: &[u64], divisor: u64, ys: &[u64]) {
        for (x, y) in xs.iter().zip(ys) {
            let exact = to_signed(floor_div(*x, divisor));
            let err = to_signed(*y).wrapping_sub(exact);
            if divisor.is_power_of_two() {
                assert!((0..=1).contains(&err), "x={} d={divisor} err={err}", to_signed(*x));
            } else {
                assert!((-1..=1).contains(&err), "x={} d={divisor} err={err}", to_signed(*x));
            }
        }
    }

    const DIVISORS: [u64; 9] = [1, 2, 3, 7, 1000, 1 << 16, (1 << 16) * 1000, 1 << 40, MAX_DIVISOR];

    #[test]
    fn edge_values_for_many_divisors() {
        for (s, d) in DIVISORS.into_iter().enumerate() {
            let bound = (1i64 << 62) - d as i64 - 1;
            let xs: Vec<u64> = [0, 1, -1, 2, -2, d as i64, -(d as i64), bound, -bound, bound / 3, -bound / 7]
                .into_iter()
                .map(from_signed)
                .collect();
            for n in [2, 3, 5] {
                check(&xs, d, &divide(&xs, d, n, s as u8 + n as u8));
            }
        }
    }

    #[test]
    fn exact_power_of_two_truncation_of_fixed_point_values() {
        // A fixed-point product with 32 fractional bits truncated by 2^16
        // lands within one ulp of the real product.
        let fp = crate::fixed::FixedPoint::default();
        let vals = [0.0, 1.0, -1.0, 1.5, -2.25, 12345.678, -0.0001, 30000.0];
        let xs: Vec<u64> = vals.iter().map(|v| fp.encode(*v).unwrap()).collect();
        let prods: Vec<u64> = xs.iter().map(|x| x.wrapping_mul(*x)).collect();
        let ys = divide(&prods, 1 << 16, 3, 9);
        for ((v, x), y) in vals.iter().zip(&xs).zip(&ys) {
            // Compare with the product of the encoded operands: encoding
            // error is not the protocol's.
            let exact = fp.decode(*x) * fp.decode(*x);
            let got = fp.decode(*y);
            assert!((got - exact).abs() <= fp.ulp(), "{v}: {got} vs {exact}");
        }
    }

    #[test]
    fn rejects_invalid_divisors() {
        assert!(Division::new(0).is_none());
        assert!(Division::new(MAX_DIVISOR + 1).is_none());
        assert!(Division::new(MAX_DIVISOR).is_some());
    }

    proptest! {
        #[test]
        fn within_one_of_floor(
            xs in proptest::collection::vec(-(1i64 << 61)..(1i64 << 61), 1..64),
            d in 1u64..(1 << 40),
            n in 2usize..6,
            seed in any::<u8>(),
        ) {
            let xs: Vec<u64> = xs.into_iter().map(from_signed).collect();
            check(&xs, d, &divide(&xs, d, n, seed));
        }
    }
}
