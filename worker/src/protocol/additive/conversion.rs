//! Conversions between the arithmetic and the binary sharing.
//!
//! - **Arithmetic to binary** with an edaBit (Escudero, Ghosh, Keller,
//!   Rachuri, Scholl, CRYPTO 2020): a uniform `r` shared additively, with
//!   its bits XOR-shared. The parties open `c = x + r` ([`mask_open`]; `c`
//!   is uniform, so it reveals nothing about `x`) and continue with
//!   `x = c - r` as a binary circuit with one public operand (`c`'s bits)
//!   and one secret (`r`'s bits): see `circuits::compare::msb_of_difference`.
//! - **Binary to arithmetic**, fused with a product, with a daBit (Rotaru
//!   and Wood, INDOCRYPT 2019): a uniform bit `s` shared both ways. To
//!   compute `b·x` for a secret bit `b` and a ring value `x`, the parties
//!   open `e = b ^ s` (uniform: reveals nothing) and, in the same round, a
//!   Beaver product `s·x` when `x` is secret. Since `b = e + s - 2es`,
//!   `b·x = e·x + (1 - 2e)·s·x`, local in `e` ([`inject_secret`],
//!   [`inject_public`]). One round for a select, a count or a conversion.
//!
//! Security: semi-honest, any `n - 1` corrupt parties; every material item
//! is consumed once.

/// Masked opening, step 1: this party's share of `c = x + r`.
pub fn mask_open(x: &[u64], r: &[u64], out: &mut Vec<u64>) {
    debug_assert_eq!(x.len(), r.len());
    out.extend(x.iter().zip(r).map(|(x, r)| x.wrapping_add(*r)));
}

/// Bit of element `i` in a one-plane bundle's words.
#[inline]
fn bit(words: &[u64], i: usize) -> bool {
    words[i / 64] >> (i % 64) & 1 == 1
}

/// Injection of a secret bit into a secret `x`: this party's share of
/// `b·x = e·x + (1 - 2e)·(s·x)` from the opened `e` (one-plane words), its
/// shares of `x` and of the Beaver product `s·x` (written over `sx`).
pub fn inject_secret(e: &[u64], x: &[u64], sx: &mut [u64]) {
    debug_assert_eq!(x.len(), sx.len());
    for (i, (x, p)) in x.iter().zip(sx.iter_mut()).enumerate() {
        *p = if bit(e, i) { x.wrapping_sub(*p) } else { *p };
    }
}

/// Injection of a secret bit into a public `x`: this party's share of
/// `b·x = e·x + (1 - 2e)·x·s` from the opened `e` and its arithmetic share
/// of the daBit `s` (public terms at party 0 only).
pub fn inject_public(e: &[u64], x: &[u64], s: &[u64], is_first: bool) -> Vec<u64> {
    debug_assert_eq!(x.len(), s.len());
    x.iter()
        .zip(s)
        .enumerate()
        .map(|(i, (x, s))| {
            let xs = x.wrapping_mul(*s);
            if bit(e, i) {
                let public = if is_first { *x } else { 0 };
                public.wrapping_sub(xs)
            } else {
                xs
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Both injections against `b·x`, with 3 parties' random shares.
        #[test]
        fn injection_is_the_product_with_the_bit(
            b in any::<bool>(), s in any::<bool>(), x in any::<u64>(),
            r in any::<[u64; 6]>(),
        ) {
            let e = u64::from(b ^ s);
            // Additive shares of s and x, and of s·x.
            let s_sh = [r[0], r[1], u64::from(s).wrapping_sub(r[0]).wrapping_sub(r[1])];
            let x_sh = [r[2], r[3], x.wrapping_sub(r[2]).wrapping_sub(r[3])];
            let sx = u64::from(s).wrapping_mul(x);
            let sx_sh = [r[4], r[5], sx.wrapping_sub(r[4]).wrapping_sub(r[5])];
            let mut total = 0u64;
            for (x_i, sx_i) in x_sh.iter().zip(sx_sh) {
                let mut p = [sx_i];
                inject_secret(&[e], &[*x_i], &mut p);
                total = total.wrapping_add(p[0]);
            }
            prop_assert_eq!(total, u64::from(b).wrapping_mul(x));
            let mut total = 0u64;
            for (i, s_i) in s_sh.iter().enumerate() {
                total = total.wrapping_add(inject_public(&[e], &[x], &[*s_i], i == 0)[0]);
            }
            prop_assert_eq!(total, u64::from(b).wrapping_mul(x));
        }
    }
}
