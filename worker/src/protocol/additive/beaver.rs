//! Beaver multiplication (Beaver, CRYPTO '91).
//!
//! To multiply secrets `x` and `y` with a triple `(a, b, c = a*b)`:
//!
//! 1. [`mask`]: each party computes `d_i = x_i - a_i` and `e_i = y_i - b_i`;
//! 2. the parties open `d = x - a` and `e = y - b` (one round, batched over
//!    every multiplication of a layer);
//! 3. [`combine`]: each party computes
//!    `z_i = c_i + d*b_i + e*a_i (+ d*e for party 0)`, so that
//!    `sum z_i = c + d*b + e*a + d*e = x*y`.
//!
//! `a` and `b` are uniform and unknown to any `n-1` parties, so `d` and `e`
//! are uniform: opening them reveals nothing. A triple must never be used
//! twice — two openings `x - a` and `x' - a` reveal `x - x'`.

use crate::ring;
use crate::sharing::Share;

/// Elements combined per block by [`combine_opened_in_place`]: the opened
/// `d` and `e` of a block stay in the L1 cache.
const BLOCK: usize = 512;

/// Step 1: this party's shares of `d = x - a` and `e = y - b`, appended to
/// `d_out` and `e_out`. `x` and `y` have the triple's length.
pub fn mask(x: &[u64], y: &[u64], a: &[u64], b: &[u64], d_out: &mut Vec<u64>, e_out: &mut Vec<u64>) {
    debug_assert!(x.len() == a.len() && y.len() == b.len() && x.len() == y.len());
    d_out.extend(x.iter().zip(a).map(|(x, a)| x.wrapping_sub(*a)));
    e_out.extend(y.iter().zip(b).map(|(y, b)| y.wrapping_sub(*b)));
}

/// Step 1, straight to the wire: append `x_i - a_i` to `out` as
/// little-endian bytes (the opening message's format). `x` and `a` have
/// equal lengths.
pub fn mask_into(x: &[u64], a: &[u64], out: &mut Vec<u8>) {
    debug_assert_eq!(x.len(), a.len());
    out.reserve(8 * x.len());
    // Block by block through an L1-resident buffer, so that `out` is
    // written once (no zero-filling pass over it).
    let mut block = [0u8; 8 * BLOCK];
    for (x, a) in x.chunks(BLOCK).zip(a.chunks(BLOCK)) {
        let bytes = &mut block[..8 * x.len()];
        for (dst, (x, a)) in bytes.chunks_exact_mut(8).zip(x.iter().zip(a)) {
            dst.copy_from_slice(&x.wrapping_sub(*a).to_le_bytes());
        }
        out.extend_from_slice(bytes);
    }
}

/// Steps 2 and 3 fused: open `d` and `e` by summing every party's masked
/// shares (`d_parts`, `e_parts`: one little-endian byte slice per party,
/// this one's included, each `8 * c.len()` bytes) and overwrite `c` with
/// this party's share of `x * y`, block by block, so that the opened
/// vectors are never materialized.
pub fn combine_opened_in_place(
    d_parts: &[&[u8]],
    e_parts: &[&[u8]],
    a: &[u64],
    b: &[u64],
    c: &mut [u64],
    is_first: bool,
) {
    debug_assert!(a.len() == c.len() && b.len() == c.len());
    let mut d = [0u64; BLOCK];
    let mut e = [0u64; BLOCK];
    for start in (0..c.len()).step_by(BLOCK) {
        let k = BLOCK.min(c.len() - start);
        let bytes = 8 * start..8 * (start + k);
        let (d, e) = (&mut d[..k], &mut e[..k]);
        d.fill(0);
        e.fill(0);
        for p in d_parts {
            ring::add_le_bytes(d, &p[bytes.clone()]);
        }
        for p in e_parts {
            ring::add_le_bytes(e, &p[bytes.clone()]);
        }
        let (a, b, c) = (&a[start..start + k], &b[start..start + k], &mut c[start..start + k]);
        for ((((z, d), e), a), b) in c.iter_mut().zip(d.iter()).zip(e.iter()).zip(a).zip(b) {
            let v = z.wrapping_add(d.wrapping_mul(*b)).wrapping_add(e.wrapping_mul(*a));
            *z = if is_first { v.wrapping_add(d.wrapping_mul(*e)) } else { v };
        }
    }
}

/// Step 3: this party's share of `x * y` from the opened `d`, `e` and its
/// triple shares. Exactly one party (`is_first`) adds the public term `d*e`.
pub fn combine(d: &[u64], e: &[u64], a: &[u64], b: &[u64], c: &[u64], is_first: bool) -> Share {
    let z = d
        .iter()
        .zip(e)
        .zip(a.iter().zip(b).zip(c))
        .map(|((d, e), ((a, b), c))| {
            let z = c.wrapping_add(d.wrapping_mul(*b)).wrapping_add(e.wrapping_mul(*a));
            if is_first { z.wrapping_add(d.wrapping_mul(*e)) } else { z }
        })
        .collect();
    Share::new(z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring;
    use crate::sharing::{Secret, reconstruct, share};
    use proptest::prelude::*;

    /// Run the protocol with all parties' shares in one place.
    fn multiply(xs: &[u64], ys: &[u64], n: usize) -> Vec<u64> {
        let len = xs.len();
        let a = Secret::new((0..len as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect());
        let b = Secret::new((0..len as u64).map(|i| i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f) ^ 5).collect());
        let mut c = a.expose().to_vec();
        ring::mul_assign(&mut c, b.expose());
        let (sa, sb, sc) = (share(&a, n).unwrap(), share(&b, n).unwrap(), share(&Secret::new(c), n).unwrap());
        let (sx, sy) = (share(&Secret::new(xs.to_vec()), n).unwrap(), share(&Secret::new(ys.to_vec()), n).unwrap());
        let mut d = vec![0u64; len];
        let mut e = vec![0u64; len];
        for i in 0..n {
            let (mut di, mut ei) = (Vec::new(), Vec::new());
            mask(sx[i].expose(), sy[i].expose(), sa[i].expose(), sb[i].expose(), &mut di, &mut ei);
            ring::add_assign(&mut d, &di);
            ring::add_assign(&mut e, &ei);
        }
        let z: Vec<Share> =
            (0..n).map(|i| combine(&d, &e, sa[i].expose(), sb[i].expose(), sc[i].expose(), i == 0)).collect();
        reconstruct(&z).into_inner()
    }

    proptest! {
        #[test]
        fn beaver_product_is_the_ring_product(
            pairs in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..64),
            n in 2usize..6,
        ) {
            let (xs, ys): (Vec<u64>, Vec<u64>) = pairs.into_iter().unzip();
            let z = multiply(&xs, &ys, n);
            for i in 0..xs.len() {
                prop_assert_eq!(z[i], xs[i].wrapping_mul(ys[i]));
            }
        }
    }

    proptest! {
        #[test]
        fn fused_steps_match_the_reference(
            rows in proptest::collection::vec(any::<[u64; 5]>(), 0..1200),
            peers in proptest::collection::vec(any::<u64>(), 1..4),
            first in any::<bool>(),
        ) {
            let col = |k: usize| rows.iter().map(|r| r[k]).collect::<Vec<u64>>();
            let (x, y, a, b, c) = (col(0), col(1), col(2), col(3), col(4));
            let (mut d, mut e) = (Vec::new(), Vec::new());
            mask(&x, &y, &a, &b, &mut d, &mut e);
            let mut bytes = Vec::new();
            mask_into(&x, &a, &mut bytes);
            mask_into(&y, &b, &mut bytes);
            prop_assert_eq!(&bytes[..], &ring::to_le_bytes(&[d.clone(), e.clone()].concat())[..]);
            // Other parties' masked shares: arbitrary offsets of ours.
            let theirs: Vec<Vec<u64>> = peers.iter().map(|k| d.iter().chain(&e).map(|v| v ^ k).collect()).collect();
            let mut dd = d.clone();
            let mut ee = e.clone();
            for t in &theirs {
                ring::add_assign(&mut dd, &t[..d.len()]);
                ring::add_assign(&mut ee, &t[d.len()..]);
            }
            let expected = combine(&dd, &ee, &a, &b, &c, first);
            let their_bytes: Vec<Vec<u8>> = theirs.iter().map(|t| ring::to_le_bytes(t)).collect();
            let n = 8 * x.len();
            let parts: Vec<&[u8]> = std::iter::once(&bytes[..]).chain(their_bytes.iter().map(|t| &t[..])).collect();
            let d_parts: Vec<&[u8]> = parts.iter().map(|p| &p[..n]).collect();
            let e_parts: Vec<&[u8]> = parts.iter().map(|p| &p[n..]).collect();
            let mut z = c.clone();
            combine_opened_in_place(&d_parts, &e_parts, &a, &b, &mut z, first);
            prop_assert_eq!(&z[..], expected.expose());
        }
    }

    #[test]
    fn edge_values() {
        let edges = [0u64, 1, u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 32];
        let xs: Vec<u64> = edges.iter().flat_map(|x| edges.iter().map(move |_| *x)).collect();
        let ys: Vec<u64> = edges.iter().flat_map(|_| edges.iter().copied()).collect();
        let z = multiply(&xs, &ys, 3);
        for i in 0..xs.len() {
            assert_eq!(z[i], xs[i].wrapping_mul(ys[i]));
        }
    }
}
