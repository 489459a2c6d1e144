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
//!
//! # Pairs with a linear quotient, and the correction round
//!
//! A trusted dealer knows `r` and deals the exact `q = floor(r_low / d)`.
//! Parties that generate the pair themselves ([`crate::preprocessing::ot`])
//! build `r = Σ_i b_i·2^i` from 64 shared random bits and can only compute
//! *linear* functions of them. For `d = 2^j`, `floor(r_low / d) =
//! Σ_{i≥j} b_i·2^(i−j)` is linear; for other divisors it is not. So a
//! generated pair for such a divisor ([`Division::corrected`]) carries
//!
//! - `q = Σ_{i<63} b_i·floor(2^i / d)`, which leaves the remainder
//!   `S = r_low − d·q = Σ_{i<63} b_i·(2^i mod d)` in `[0, 63·d)` (not
//!   `[0, d)`), and
//! - `g = Σ_{i<63} b_i·ceil((2^i mod d)·2^s / d)` with `s` =
//!   [`CORRECTION_SHIFT`], so that `S·2^s/d <= g < S·2^s/d + 63`
//!   ([`linear_coefficients`] gives both coefficient lists).
//!
//! With `c' = d·Q_c + R_c` and `2^63 = d·T + R_T` as above,
//! `x' = d·(Q_c − q + w·T) + D` with `D = R_c − S + w·R_T` in `(−63·d, 2·d)`,
//! so `floor(x/d) = y1 + floor(D/d)` for the first round's `y1 = Q_c − q +
//! w·T − K/d` ([`Division::finish_first`]), which is exact. The correction
//! `floor(D/d)` is a small secret, computed in a second round by the
//! power-of-two truncation above (divisor `2^s`) applied to
//!
//! ```text
//! V = floor(R_c·2^s/d) + w·floor(R_T·2^s/d) − g + A·2^s      (A = CORRECTION_OFFSET)
//! ```
//!
//! which is linear in `[m]` and `[g]`. Let `z = D/d + A`. Each of the two
//! floors is below its real value by less than 1 and `g` is above `S·2^s/d`
//! by less than 63, so `V` is in `(z·2^s − 65, z·2^s]`; since `65 < 2^s`,
//! `floor(V/2^s)` is `floor(z)` or `floor(z) − 1`. The truncation adds
//! `{0, 1}`, so `t − A` ([`Division::correct`]) is `floor(D/d)` plus an
//! error in `{−1, 0, 1}`, and `y = y1 + t − A` is within one of
//! `floor(x/d)` — the same bound as a dealt pair's, for every divisor
//! `1 <= d <= 2^62`. The truncation's precondition holds: `0 < z < A + 2`,
//! so `−65 < V < (A + 2)·2^s < 2^62 − 2^s`. Its opening is masked by a
//! fresh uniform pair, so it reveals nothing either. The definition of `S`
//! and `g` only asks `S` to be below `A·d` and `g` to be within `[S·2^s/d,
//! S·2^s/d + 63)`, so pairs built other ways (from wider digits of `r`, say)
//! fit the same round.

use crate::sharing::Share;

/// Largest divisor the protocol accepts.
pub const MAX_DIVISOR: u64 = 1 << 62;

/// `s`: the correction round of a [`Division::corrected`] division
/// truncates by `2^s`.
pub const CORRECTION_SHIFT: u32 = 38;

/// `A`: the correction round's offset; a pair's remainder `S` must be below
/// `A·d`. `(A + 2)·2^s < 2^62 − 2^s` keeps the truncation in range.
pub const CORRECTION_OFFSET: u64 = 1 << 23;

/// The divisor of the correction round's truncation.
pub const CORRECTION_DIVISOR: u64 = 1 << CORRECTION_SHIFT;

const _: () = assert!((CORRECTION_OFFSET + 2) << CORRECTION_SHIFT < (1 << 62) - CORRECTION_DIVISOR);

/// The coefficients a pair generated from the bits `b_0..b_62` of `r_low`
/// uses for `divisor` (see the module documentation): `q = Σ_i b_i·f[i]`
/// and, for a divisor that is not a power of two, `g = Σ_i b_i·h[i]`.
/// For a power of two, `q` is the exact quotient and `h` is all zero.
pub fn linear_coefficients(divisor: u64) -> ([u64; 63], [u64; 63]) {
    let mut f = [0u64; 63];
    let mut h = [0u64; 63];
    let d = divisor as u128;
    for i in 0..63 {
        let p = 1u128 << i;
        f[i] = (p / d) as u64;
        if !divisor.is_power_of_two() {
            // ceil((2^i mod d)·2^s / d) < 2^s: the product fits in u128.
            let e = p % d;
            h[i] = ((e << CORRECTION_SHIFT).div_ceil(d)) as u64;
        }
    }
    (f, h)
}

/// This party's share of the carry `w = c_top XOR m` (module
/// documentation): `[first]·c_top + [m]·(1 − 2·c_top)`, linear in `[m]`.
fn carry_share(c: u64, m: u64, is_first: bool) -> u64 {
    let c_top = c >> 63;
    let w = m.wrapping_mul(1u64.wrapping_sub(c_top << 1));
    if is_first { w.wrapping_add(c_top) } else { w }
}

/// Public constants of a division by `divisor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Division {
    pub divisor: u64,
    /// `K`: the largest multiple of `divisor` not above 2^62.
    offset: u64,
    /// `floor(2^63 / divisor)`.
    top_quotient: u64,
    /// Whether the pairs have a linear quotient and the division takes the
    /// correction round (generated material, divisor not a power of two).
    corrected: bool,
}

impl Division {
    /// `None` unless `1 <= divisor <= 2^62`.
    pub fn new(divisor: u64) -> Option<Division> {
        if divisor == 0 || divisor > MAX_DIVISOR {
            return None;
        }
        Some(Division {
            divisor,
            offset: (MAX_DIVISOR / divisor) * divisor,
            top_quotient: (1u64 << 63) / divisor,
            corrected: false,
        })
    }

    /// As [`Division::new`], for pairs whose quotient is linear in the bits
    /// of `r` (generated material): a divisor that is not a power of two
    /// then takes the correction round.
    pub fn with_linear_quotient(divisor: u64) -> Option<Division> {
        let mut division = Division::new(divisor)?;
        division.corrected = !divisor.is_power_of_two();
        Some(division)
    }

    /// `K`: the largest multiple of the divisor not above 2^62, which
    /// shifts a secret in range into `[0, 2^63)`.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// `floor(2^63 / divisor)`.
    pub fn top_quotient(&self) -> u64 {
        self.top_quotient
    }

    /// Whether this division takes a second round (the correction), with a
    /// pair carrying `g` and a pair for [`CORRECTION_DIVISOR`].
    pub fn corrected(&self) -> bool {
        self.corrected
    }

    /// Round 1 of a [`Division::corrected`] division: this party's shares
    /// of `y1` and of `V` (module documentation) from the opened `c` and
    /// its shares of `m`, `q` and `g`. `V` is then truncated by
    /// [`CORRECTION_DIVISOR`] and the result handed to [`Division::correct`].
    pub fn finish_first(&self, c: &[u64], msb: &[u64], q: &[u64], g: &[u64], is_first: bool) -> (Share, Share) {
        debug_assert!(c.len() == g.len());
        let y1 = self.finish(c, msb, q, is_first);
        let d = self.divisor as u128;
        let top_rem = ((1u128 << 63) % d) as u64;
        let top_frac = (((top_rem as u128) << CORRECTION_SHIFT) / d) as u64;
        let offset = CORRECTION_OFFSET << CORRECTION_SHIFT;
        let v = c
            .iter()
            .zip(msb.iter().zip(g))
            .map(|(c, (m, g))| {
                let w = carry_share(*c, *m, is_first);
                let mut v = 0u64.wrapping_sub(*g);
                if is_first {
                    let rem = ((c & ((1u64 << 63) - 1)) as u128 % d) as u64;
                    let frac = (((rem as u128) << CORRECTION_SHIFT) / d) as u64;
                    v = v.wrapping_add(frac).wrapping_add(offset);
                }
                v.wrapping_add(w.wrapping_mul(top_frac))
            })
            .collect();
        (y1, Share::new(v))
    }

    /// Round 2 of a [`Division::corrected`] division: `y1 + t − A`, with
    /// `t` this party's share of the truncation of `V` by
    /// [`CORRECTION_DIVISOR`]. Overwrites `y1`.
    pub fn correct(y1: &mut Share, t: &[u64], is_first: bool) {
        for (y, t) in y1.expose_mut().iter_mut().zip(t) {
            *y = y.wrapping_add(*t);
            if is_first {
                *y = y.wrapping_sub(CORRECTION_OFFSET);
            }
        }
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
                let w = carry_share(*c, *m, is_first);
                let mut y = 0u64.wrapping_sub(*q);
                if is_first {
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

    /// Shares of a pair built from the 64 bits of `r` the way generated
    /// material is: `q` and `g` linear in the bits.
    fn linear_pair(r: &[u64], divisor: u64) -> [Vec<u64>; 4] {
        let (f, h) = linear_coefficients(divisor);
        let bit = |r: u64, i: usize| (r >> i) & 1;
        let msb = r.iter().map(|r| r >> 63).collect();
        let q =
            r.iter().map(|r| (0..63).fold(0u64, |acc, i| acc.wrapping_add(bit(*r, i).wrapping_mul(f[i])))).collect();
        let g =
            r.iter().map(|r| (0..63).fold(0u64, |acc, i| acc.wrapping_add(bit(*r, i).wrapping_mul(h[i])))).collect();
        [r.to_vec(), msb, q, g]
    }

    /// Run both rounds of a division with a linear-quotient pair, all
    /// parties in one place.
    fn divide_linear(xs: &[u64], divisor: u64, n: usize, seed: u8) -> Vec<u64> {
        let div = Division::with_linear_quotient(divisor).unwrap();
        let mut prg = Prg::new(&Seed::from_bytes([seed; 16]));
        let r = prg.next_vec(xs.len());
        let [sr, sm, sq, sg] = linear_pair(&r, divisor).map(|v| share(&Secret::new(v), n).unwrap());
        let sx = share(&Secret::new(xs.to_vec()), n).unwrap();
        let mut c = vec![0u64; xs.len()];
        for i in 0..n {
            let mut ci = Vec::new();
            div.mask(sx[i].expose(), sr[i].expose(), i == 0, &mut ci);
            crate::ring::add_assign(&mut c, &ci);
        }
        if !div.corrected() {
            let ys: Vec<Share> = (0..n).map(|i| div.finish(&c, sm[i].expose(), sq[i].expose(), i == 0)).collect();
            return reconstruct(&ys).into_inner();
        }
        let firsts: Vec<(Share, Share)> =
            (0..n).map(|i| div.finish_first(&c, sm[i].expose(), sq[i].expose(), sg[i].expose(), i == 0)).collect();
        // Round 2: a fresh dealt pair for 2^s truncates V.
        let trunc = Division::new(CORRECTION_DIVISOR).unwrap();
        let r2 = prg.next_vec(xs.len());
        let m2: Vec<u64> = r2.iter().map(|r| r >> 63).collect();
        let q2: Vec<u64> = r2.iter().map(|r| (r & ((1 << 63) - 1)) >> CORRECTION_SHIFT).collect();
        let [sr2, sm2, sq2] = [r2, m2, q2].map(|v| share(&Secret::new(v), n).unwrap());
        let mut c2 = vec![0u64; xs.len()];
        for (i, (_, v)) in firsts.iter().enumerate() {
            let mut ci = Vec::new();
            trunc.mask(v.expose(), sr2[i].expose(), i == 0, &mut ci);
            crate::ring::add_assign(&mut c2, &ci);
        }
        let ys: Vec<Share> = firsts
            .into_iter()
            .enumerate()
            .map(|(i, (mut y1, _))| {
                let t = trunc.finish(&c2, sm2[i].expose(), sq2[i].expose(), i == 0);
                Division::correct(&mut y1, t.expose(), i == 0);
                y1
            })
            .collect();
        reconstruct(&ys).into_inner()
    }

    /// `x` near the edges of the precondition for `d`, and around zero.
    fn edge_inputs(d: u64) -> Vec<u64> {
        let bound = (1i64 << 62) - d as i64 - 1;
        let d = d as i64;
        [0, 1, -1, 2, -2, d, -d, d - 1, -d + 1, d + 1, bound, -bound, bound - 1, -bound + 1, bound / 3, -bound / 7]
            .into_iter()
            .filter(|x| x.unsigned_abs() <= bound as u64)
            .map(from_signed)
            .collect()
    }

    /// The divisors the linear-quotient tests cover: small odd ones, the
    /// lengths of typical data sets, a power of two times an odd number,
    /// and the extremes of the range.
    const LINEAR_DIVISORS: [u64; 16] = [
        1,
        2,
        3,
        7,
        50,
        1000,
        99_999,
        1 << 16,
        (1 << 16) * 1000,
        (1 << 40) + 1,
        (1 << 48) - 59,
        (1 << 55) + 3,
        (1 << 61) + (1 << 60) + 1,
        (1 << 62) - 1,
        MAX_DIVISOR,
        CORRECTION_DIVISOR - 1,
    ];

    #[test]
    fn linear_quotient_pairs_are_within_one_for_every_divisor() {
        for (s, d) in LINEAR_DIVISORS.into_iter().enumerate() {
            let xs = edge_inputs(d);
            for n in [2, 3, 5] {
                for round in 0..8u8 {
                    let ys = divide_linear(&xs, d, n, (s as u8).wrapping_mul(31).wrapping_add(n as u8 * 8 + round));
                    check(&xs, d, &ys);
                }
            }
        }
    }

    #[test]
    fn linear_coefficients_reconstruct_the_quotient() {
        // q + floor(S/d) is the exact quotient, S < 63·d and g brackets S·2^s/d.
        let mut prg = Prg::new(&Seed::from_bytes([3; 16]));
        for d in LINEAR_DIVISORS {
            let (f, h) = linear_coefficients(d);
            for r in prg.next_vec(200) {
                let low = r & ((1 << 63) - 1);
                let q: u128 = (0..63).map(|i| ((low >> i) & 1) as u128 * f[i] as u128).sum();
                let s: u128 = (0..63).map(|i| ((low >> i) & 1) as u128 * ((1u128 << i) % d as u128)).sum();
                assert_eq!(q * d as u128 + s, low as u128, "d={d}");
                assert!(s < 63 * d as u128);
                if !d.is_power_of_two() {
                    let g: u128 = (0..63).map(|i| ((low >> i) & 1) as u128 * h[i] as u128).sum();
                    let exact = s << CORRECTION_SHIFT;
                    assert!(g * d as u128 >= exact && g * (d as u128) < exact + 63 * d as u128, "d={d}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn linear_quotient_within_one_of_floor(
            xs in proptest::collection::vec(-(1i64 << 61)..(1i64 << 61), 1..32),
            d in prop_oneof![1u64..100_000, 1u64..(1 << 40), 1u64..=(1 << 62)],
            n in 2usize..5,
            seed in any::<u8>(),
        ) {
            let bound = (1i64 << 62) - d as i64 - 1;
            let xs: Vec<u64> = xs.into_iter().map(|x| from_signed(x.clamp(-bound, bound))).collect();
            check(&xs, d, &divide_linear(&xs, d, n, seed));
        }
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
