//! Conversions between replicated arithmetic and binary sharing.
//!
//! **Arithmetic to binary** (for comparisons): `x = x_0 + (x_1 + x_2)`.
//! Parties 0 and 2 hold `x_0`, so its bits are a binary sharing with
//! component 0 set and no message ([`local_bits`]); party 1 holds `x_1`
//! and `x_2`, so it inputs the bits of `v = −(x_1 + x_2)` (one round,
//! [`input_bits`]). Then `x = u − v` for two secret bundles, and the
//! generic circuits of [`crate::circuits::compare`] compute the sign (an
//! extra AND level against the additive protocol, whose `u` is public:
//! 1 + 1 + 6 = 8 rounds for a 64-bit comparison) and equality (1 + 6).
//! This is the share-local bit decomposition of ABY3 (Mohassel and
//! Rindal, CCS 2018, §5.3) with two summands instead of three, which
//! saves the carry-save level.
//!
//! **Binary to arithmetic** (bit injection `b·x`): with a daBit — a random
//! bit `r` shared both ways (Rotaru and Wood, INDOCRYPT 2019) — open
//! `e = b XOR r` and compute `b·x = e·x + (1 − 2e)·r·x`, where `r·x` is one
//! multiplication in the same round. The parties make the daBits
//! themselves: `r = r_0 XOR r_1 XOR r_2` with component `j` drawn from a
//! stream its two holders share, so the binary sharing is free; party 0
//! knows `t = r_0 XOR r_1` and inputs it in the input round, and
//! `r = t + r_2 − 2·t·r_2` ([`dabit_arith`]) takes one multiplication by
//! `[r_2]` (component 2 set), in one extra round before the first layer.

/// The bits of `part` (this party's copy of component 0) as the part of
/// a 64-plane bundle, or zeros where this party does not hold component 0.
pub fn local_bits(part: Option<&[u64]>, len: usize) -> crate::gf2::Bits {
    match part {
        Some(x) => crate::gf2::Bits::decompose(x, 64),
        None => crate::gf2::Bits::zeros(64, len),
    }
}

/// Party 1's value to input for a split: `v = −(x_1 + x_2)`, its parts
/// summed and negated.
pub fn input_bits(part0: &[u64], part1: &[u64]) -> crate::gf2::Bits {
    let v: Vec<u64> = part0.iter().zip(part1).map(|(a, b)| 0u64.wrapping_sub(a.wrapping_add(*b))).collect();
    crate::gf2::Bits::decompose(&v, 64)
}

/// One part of a daBit's arithmetic share: `t + r_2 − 2·t·r_2`.
pub fn dabit_arith(t: &[u64], r2: &[u64], product: &[u64]) -> Vec<u64> {
    t.iter().zip(r2).zip(product).map(|((t, r), p)| t.wrapping_add(*r).wrapping_sub(p.wrapping_mul(2))).collect()
}

/// One part of `b·x = e·x + (1 − 2e)·r·x`, with `e` the opened bits (one
/// plane of words), `x` this part of the injected value (or the public
/// value at the parts it enters, zeros elsewhere) and `rx` this part of
/// `r·x`.
pub fn inject(e: &[u64], x: &[u64], rx: &[u64]) -> Vec<u64> {
    x.iter()
        .zip(rx)
        .enumerate()
        .map(|(i, (x, rx))| if e[i / 64] >> (i % 64) & 1 == 1 { x.wrapping_sub(*rx) } else { *rx })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn injection_and_dabits_are_correct(b: bool, r0: bool, r1: bool, r2: bool, x: u64) {
            // The daBit's arithmetic value from t and r_2.
            let t = u64::from(r0 ^ r1);
            let r2v = u64::from(r2);
            let r = dabit_arith(&[t], &[r2v], &[t * r2v])[0];
            prop_assert_eq!(r, u64::from(r0 ^ r1 ^ r2));
            // b·x from e and r·x.
            let e = u64::from(b) ^ r;
            let out = inject(&[e], &[x], &[r.wrapping_mul(x)])[0];
            prop_assert_eq!(out, if b { x } else { 0 });
        }

        #[test]
        fn a_split_recombines(x: u64, c0: u64, c1: u64) {
            let c2 = x.wrapping_sub(c0).wrapping_sub(c1);
            let u = local_bits(Some(&[c0]), 1).compose()[0];
            let v = input_bits(&[c1], &[c2]).compose()[0];
            prop_assert_eq!(u.wrapping_sub(v), x);
        }
    }
}
