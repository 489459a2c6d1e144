//! Division of a replicated secret by a public divisor `1 <= d <= 2^62`
//! (and so fixed-point truncation), in two rounds, with the error bound of
//! the additive protocol's (`protocol::additive::division`).
//!
//! Construction: the 3-party probabilistic truncation of Dalskov, Escudero
//! and Keller ("Secure evaluation of quantized neural networks", PETS
//! 2020, §4.1; MP-SPDZ's `Replicated::trunc_pr` for values with a small
//! gap), generalized from `2^m` to any divisor, in the form of the
//! additive protocol's construction so that its bound carries over. Party
//! 0 holds components 0 and 1 of `x`; parties 1 and 2 hold component 2.
//! With the offset `K` (a multiple of `d`), `x' = x + K` is in `[0, 2^63)`
//! for `|x| < 2^62 - d`. Party 0 knows `c = x_0 + x_1 + K = x' + s` for
//! `s = −x_2`, which parties 1 and 2 know: `s` masks `x'` as an edaBit's
//! `r` does in the additive protocol, but `c` is known to party 0 only
//! instead of opened. As there, with `c' = c mod 2^63`, `c_t = c >> 63`,
//! `s_low = s mod 2^63` and `m = s >> 63`,
//!
//! ```text
//! x' = c' − s_low + w·2^63,   w = c_t XOR m = c_t + m − 2·c_t·m
//! ```
//!
//! and with `c' = d·A + R_a`, `s_low = d·B + R_b`, `2^63 = d·T + R_T`,
//! `floor(x'/d) = A − B + w·T + floor(D/d)` for `D = R_a − R_b + w·R_T` in
//! `(−d, 2d)`. So `y = A − B + w·T − K/d` is within one of `floor(x/d)`;
//! for a power of two `R_T = 0`, `y` is `floor(x/d)` or one more, and
//! exact when `d` divides `x`.
//!
//! 1. Party 0 computes `A` and `c_t` from its own components and inputs
//!    them ([`super::arithmetic`], one message); parties 1 and 2 compute
//!    `B` and `m` from `s`, so `[B]` and `[m]` are the replicated sharings
//!    with component 2 set and need no message.
//! 2. One multiplication `[c_t]·[m]` gives `[w]`, and `y` is linear.
//!
//! Privacy: party 0 computes only on its own components; its inputs are
//! hidden by the input step; the multiplication reveals nothing. Nothing
//! is opened.

use crate::protocol::additive::division::Division;

/// Round 1 at party 0: `(A, c_t)` per element from its components.
pub fn owner_values(division: &Division, part0: &[u64], part1: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let d = division.divisor;
    part0
        .iter()
        .zip(part1)
        .map(|(a, b)| {
            let c = a.wrapping_add(*b).wrapping_add(division.offset());
            ((c & LOW) / d, c >> 63)
        })
        .unzip()
}

/// Round 1 at the holders of component 2: `(B, m)` per element of
/// `x_2`, for the mask `s = −x_2`.
pub fn mask_values(division: &Division, x2: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let d = division.divisor;
    x2.iter()
        .map(|x| {
            let s = x.wrapping_neg();
            ((s & LOW) / d, s >> 63)
        })
        .unzip()
}

/// Round 2, one part: `y = base + T·(c_t + m − 2·c_t·m)` where `base` is
/// this part of `[A] − [B] − K/d` and `product` of `[c_t]·[m]`.
/// Overwrites `base`.
pub fn finish(division: &Division, base: &mut [u64], ct: &[u64], m: &[u64], product: &[u64]) {
    let t = division.top_quotient();
    for (k, y) in base.iter_mut().enumerate() {
        let w = ct[k].wrapping_add(m[k]).wrapping_sub(product[k].wrapping_mul(2));
        *y = y.wrapping_add(w.wrapping_mul(t));
    }
}

const LOW: u64 = (1 << 63) - 1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{from_signed, to_signed};
    use proptest::prelude::*;

    /// The protocol's arithmetic on clear components.
    fn divide(x: i64, d: u64, c0: u64, c1: u64) -> i64 {
        let division = Division::new(d).unwrap();
        let x = from_signed(x);
        let x2 = x.wrapping_sub(c0).wrapping_sub(c1);
        let (a, ct) = owner_values(&division, &[c0], &[c1]);
        let (b, m) = mask_values(&division, &[x2]);
        let mut y = [a[0].wrapping_sub(b[0]).wrapping_sub(division.offset() / d)];
        finish(&division, &mut y, &ct, &m, &[ct[0] * m[0]]);
        to_signed(y[0])
    }

    fn floor_div(x: i64, d: u64) -> i64 {
        (x as i128).div_euclid(d as i128) as i64
    }

    proptest! {
        #[test]
        fn within_one_of_the_quotient(
            d in 1u64..=(1 << 62),
            frac in 0.0f64..1.0,
            negative: bool,
            c0: u64,
            c1: u64,
        ) {
            let bound = ((1u64 << 62) - d) as f64;
            let x = ((frac * bound) as i64).min(((1u64 << 62) - d - 1) as i64);
            let x = if negative { -x } else { x };
            let y = divide(x, d, c0, c1);
            let exact = floor_div(x, d);
            prop_assert!((y - exact).abs() <= 1, "x={x} d={d}: {y} vs {exact}");
            if d.is_power_of_two() {
                prop_assert!(y == exact || y == exact + 1);
            }
            if x % (d as i64) == 0 {
                prop_assert_eq!(y, exact, "an exact multiple divides exactly");
            }
        }

        #[test]
        fn small_values_and_powers_of_two(x in -100_000i64..100_000, j in 0u32..40, c0: u64, c1: u64) {
            let d = 1u64 << j;
            let y = divide(x, d, c0, c1);
            let exact = floor_div(x, d);
            prop_assert!(y == exact || y == exact + 1, "x={x} d={d}: {y}");
            if x % (d as i64) == 0 {
                prop_assert_eq!(y, exact);
            }
        }
    }

    #[test]
    fn edges() {
        let limit = ((1u64 << 62) - 16 - 1) as i64;
        for x in [0, 1, -1, 15, 16, -16, -17, limit, -limit] {
            for (c0, c1) in [(0, 0), (u64::MAX, 1), (1 << 63, 1 << 63), (12345, u64::MAX - 7)] {
                let y = divide(x, 16, c0, c1);
                let exact = floor_div(x, 16);
                assert!(y == exact || y == exact + 1, "x={x}: {y} vs {exact}");
            }
        }
    }
}
