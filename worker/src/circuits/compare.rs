//! Comparison and equality as binary circuits of logarithmic depth.
//!
//! Comparison is a carry computation. For `w`-bit operands, `a < b`
//! (unsigned) exactly when `a + !b + 1` has no carry out of the top bit,
//! and the carry out of an addition is the *group generate* of all its
//! positions under the prefix operator of parallel-prefix adders (Ladner
//! and Fischer, JACM 1980; Kogge and Stone, IEEE ToC 1973):
//!
//! ```text
//! (G_hi, P_hi) ∘ (G_lo, P_lo) = (G_hi ^ P_hi & G_lo,  P_hi & P_lo)
//! ```
//!
//! with `g_i = a_i & b_i` and `p_i = a_i ^ b_i` per position. Only the
//! carry out is needed, not every prefix, so [`carry_out`] reduces the
//! positions pairwise in a balanced tree: `ceil(log2 w)` AND levels and
//! fewer than `2w` AND gates, against `w` levels for a ripple-carry chain.
//!
//! In MPC the comparison of secrets `x` and `y` becomes a circuit with one
//! public operand: the protocol opens `c = (x - y) + r` for a random `r`
//! whose bits it also holds in binary shares (an edaBit, Escudero et al.,
//! CRYPTO 2020), and `x - y = c - r`. The sign of `c - r` is
//! [`msb_of_difference`]: with `c` public, the first level's generate and
//! propagate are local, and a 64-bit comparison costs 6 AND levels —
//! 7 rounds with the opening of `c`, within the issue's 8.
//!
//! Equality is an AND tree over `!(a ^ b)`: `ceil(log2 w)` levels.

use super::BinaryOps;

/// The carry out of the top position of an addition whose positions
/// generate `g` and propagate `p` (bit-planes, position 0 lowest; a carry
/// into position 0 is folded into `g`'s plane 0 by the caller). A
/// one-plane bundle. `ceil(log2 w)` AND levels, one [`BinaryOps::and`]
/// call each.
pub fn carry_out<O: BinaryOps>(ops: &mut O, g: &O::Bits, p: &O::Bits) -> O::Bits {
    let width = ops.width(g);
    assert!(width >= 1 && ops.width(p) == width, "carry_out of {width} generate and {} propagate planes", ops.width(p));
    // Segment k covers a contiguous run of positions, segment 0 lowest.
    // `g` holds every segment's group generate; `p_up` the group propagate
    // of segments 1.. only (index k - 1): segment 0 is never the upper half
    // of a combination, so its propagate is never needed.
    let mut g = g.clone();
    let mut p_up = ops.gather(p, &(1..width).collect::<Vec<_>>());
    let mut segments = width;
    while segments > 1 {
        let pairs = segments / 2;
        // Pair k joins segment 2k (lower) and 2k + 1 (upper).
        let upper_p: Vec<usize> = (0..pairs).map(|k| 2 * k).collect();
        let lower_g: Vec<usize> = (0..pairs).map(|k| 2 * k).collect();
        let upper_g: Vec<usize> = (0..pairs).map(|k| 2 * k + 1).collect();
        // The new propagates of pairs 1..: P_hi & P_lo.
        let upper_p_rest: Vec<usize> = (1..pairs).map(|k| 2 * k).collect();
        let lower_p_rest: Vec<usize> = (1..pairs).map(|k| 2 * k - 1).collect();
        // Both products of the level in one AND call: one round.
        let left = {
            let a = ops.gather(&p_up, &upper_p);
            let b = ops.gather(&p_up, &upper_p_rest);
            ops.concat(&[&a, &b])
        };
        let right = {
            let a = ops.gather(&g, &lower_g);
            let b = ops.gather(&p_up, &lower_p_rest);
            ops.concat(&[&a, &b])
        };
        let products = ops.and(&left, &right);
        let carried = ops.gather(&products, &(0..pairs).collect::<Vec<_>>());
        let hi_g = ops.gather(&g, &upper_g);
        let mut next_g = ops.xor(&hi_g, &carried);
        let mut next_p = ops.gather(&products, &(pairs..2 * pairs - 1).collect::<Vec<_>>());
        if segments % 2 == 1 {
            // The top segment has no partner: it moves up unchanged.
            let top_g = ops.gather(&g, &[segments - 1]);
            let top_p = ops.gather(&p_up, &[segments - 2]);
            next_g = ops.concat(&[&next_g, &top_g]);
            next_p = ops.concat(&[&next_p, &top_p]);
        }
        g = next_g;
        p_up = next_p;
        segments = pairs + segments % 2;
    }
    g
}

/// `[a < b]` for unsigned `w`-bit bundles (`w >= 1`), a one-plane bundle:
/// `a - b` borrows exactly when `a + !b + 1` carries out of no position.
pub fn less_than<O: BinaryOps>(ops: &mut O, a: &O::Bits, b: &O::Bits) -> O::Bits {
    let width = ops.width(a);
    let not_b = ops.not(b);
    let g = ops.and(a, &not_b);
    let p = ops.xor(a, &not_b);
    // The carry into position 0 is 1: position 0 generates when it
    // generates or propagates, and since g_0 and p_0 are never both set,
    // `g_0 | p_0 = g_0 ^ p_0`.
    let g0 = {
        let g0 = ops.gather(&g, &[0]);
        let p0 = ops.gather(&p, &[0]);
        ops.xor(&g0, &p0)
    };
    let g_rest = ops.gather(&g, &(1..width).collect::<Vec<_>>());
    let g = ops.concat(&[&g0, &g_rest]);
    let carry = carry_out(ops, &g, &p);
    ops.not(&carry)
}

/// The most significant bit of `(c - r) mod 2^w`, a one-plane bundle: the
/// top bits of `c` and `r` and the borrow into the top position, which is
/// `[c_low < r_low]` over the `w - 1` low bits.
pub fn msb_of_difference<O: BinaryOps>(ops: &mut O, c: &O::Bits, r: &O::Bits) -> O::Bits {
    let width = ops.width(c);
    assert!(width >= 1 && ops.width(r) == width, "difference of {width} and {} planes", ops.width(r));
    let top = width - 1;
    let c_top = ops.gather(c, &[top]);
    let r_top = ops.gather(r, &[top]);
    let msb = ops.xor(&c_top, &r_top);
    if top == 0 {
        return msb;
    }
    let low: Vec<usize> = (0..top).collect();
    let c_low = ops.gather(c, &low);
    let r_low = ops.gather(r, &low);
    let borrow = less_than(ops, &c_low, &r_low);
    ops.xor(&msb, &borrow)
}

/// `[a < b]` for signed (two's complement) `w`-bit bundles: flipping the
/// sign bit maps the signed order onto the unsigned one.
pub fn signed_less_than<O: BinaryOps>(ops: &mut O, a: &O::Bits, b: &O::Bits) -> O::Bits {
    let width = ops.width(a);
    let flip = |ops: &mut O, x: &O::Bits| {
        let low = ops.gather(x, &(0..width - 1).collect::<Vec<_>>());
        let top = ops.gather(x, &[width - 1]);
        let top = ops.not(&top);
        ops.concat(&[&low, &top])
    };
    let (a, b) = (flip(ops, a), flip(ops, b));
    less_than(ops, &a, &b)
}

/// `1` where every plane of `x` is `1`, a one-plane bundle: a balanced AND
/// tree, `ceil(log2 w)` levels and `w - 1` gates.
pub fn all_ones<O: BinaryOps>(ops: &mut O, x: &O::Bits) -> O::Bits {
    let mut x = x.clone();
    let mut width = ops.width(&x);
    assert!(width >= 1, "all_ones of no planes");
    while width > 1 {
        let half = width / 2;
        let lo = ops.gather(&x, &(0..half).collect::<Vec<_>>());
        let hi = ops.gather(&x, &(half..2 * half).collect::<Vec<_>>());
        let mut next = ops.and(&lo, &hi);
        if width % 2 == 1 {
            let top = ops.gather(&x, &[width - 1]);
            next = ops.concat(&[&next, &top]);
        }
        x = next;
        width = half + width % 2;
    }
    x
}

/// `[a == b]`, a one-plane bundle.
pub fn equal<O: BinaryOps>(ops: &mut O, a: &O::Bits, b: &O::Bits) -> O::Bits {
    let diff = ops.xor(a, b);
    let same = ops.not(&diff);
    all_ones(ops, &same)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuits::{Cost, Plain, Shape};
    use crate::gf2::Bits;
    use proptest::prelude::*;

    fn bits_of(values: &[u64], width: usize) -> Bits {
        Bits::decompose(values, width)
    }

    fn column(b: &Bits) -> Vec<bool> {
        assert_eq!(b.width(), 1);
        (0..b.len()).map(|i| b.get(0, i)).collect()
    }

    const EDGES: [u64; 12] = [
        0,
        1,
        2,
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
        (1 << 63) - 1,
        (1 << 63) + 1,
        1 << 62,
        (1 << 62) - 1,
        0x5555_5555_5555_5555,
        0xAAAA_AAAA_AAAA_AAAA,
    ];

    /// Every pair of edge values and their neighbours.
    fn edge_pairs() -> (Vec<u64>, Vec<u64>) {
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for &x in &EDGES {
            for &y in &EDGES {
                for d in [0u64, 1, u64::MAX] {
                    xs.push(x);
                    ys.push(y.wrapping_add(d));
                }
            }
        }
        (xs, ys)
    }

    fn check_all(xs: &[u64], ys: &[u64]) {
        let (bx, by) = (bits_of(xs, 64), bits_of(ys, 64));
        let mut ops = Plain;
        let lt = column(&less_than(&mut ops, &bx, &by));
        let slt = column(&signed_less_than(&mut ops, &bx, &by));
        let eq = column(&equal(&mut ops, &bx, &by));
        let msb = column(&msb_of_difference(&mut ops, &bx, &by));
        for i in 0..xs.len() {
            let (x, y) = (xs[i], ys[i]);
            assert_eq!(lt[i], x < y, "{x} < {y}");
            assert_eq!(slt[i], (x as i64) < (y as i64), "{x} <s {y}");
            assert_eq!(eq[i], x == y, "{x} == {y}");
            assert_eq!(msb[i], x.wrapping_sub(y) >> 63 == 1, "msb({x} - {y})");
        }
    }

    #[test]
    fn edge_values_and_neighbours() {
        let (xs, ys) = edge_pairs();
        check_all(&xs, &ys);
    }

    proptest! {
        #[test]
        fn random_pairs_match_the_integer_order(pairs in prop::collection::vec((any::<u64>(), any::<u64>()), 0..150)) {
            let (xs, ys): (Vec<u64>, Vec<u64>) = pairs.into_iter().unzip();
            check_all(&xs, &ys);
        }

        #[test]
        fn every_width_compares_its_low_bits(
            pairs in prop::collection::vec((any::<u64>(), any::<u64>()), 1..80),
            width in 1usize..=64,
        ) {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            let (xs, ys): (Vec<u64>, Vec<u64>) = pairs.into_iter().map(|(x, y)| (x & mask, y & mask)).unzip();
            let (bx, by) = (bits_of(&xs, width), bits_of(&ys, width));
            let lt = column(&less_than(&mut Plain, &bx, &by));
            let eq = column(&equal(&mut Plain, &bx, &by));
            let msb = column(&msb_of_difference(&mut Plain, &bx, &by));
            for i in 0..xs.len() {
                prop_assert_eq!(lt[i], xs[i] < ys[i]);
                prop_assert_eq!(eq[i], xs[i] == ys[i]);
                prop_assert_eq!(msb[i], (xs[i].wrapping_sub(ys[i]) & mask) >> (width - 1) == 1);
            }
        }
    }

    #[test]
    fn a_64_bit_comparison_with_a_public_operand_takes_six_and_levels() {
        // The online comparison: c public (opened), r secret (edaBit bits).
        let mut cost = Cost::default();
        let out = msb_of_difference(&mut cost, &Shape::public(64), &Shape::secret(64));
        assert_eq!(out, Shape { width: 1, public: false, depth: 6 });
        assert_eq!(cost.and_calls, 6, "one AND call per level");
        // 63 low positions: 62 combinations of generates and fewer of
        // propagates; well under 2 gates per bit.
        assert!(cost.and_gates < 2 * 63, "{} gates", cost.and_gates);

        let mut cost = Cost::default();
        let out = equal(&mut cost, &Shape::public(64), &Shape::secret(64));
        assert_eq!(out.depth, 6);
        assert_eq!(cost.and_gates, 63);

        // Two secret operands pay one more level for the generates.
        let mut cost = Cost::default();
        assert_eq!(less_than(&mut cost, &Shape::secret(64), &Shape::secret(64)).depth, 7);
    }

    #[test]
    fn depth_is_the_ceiling_of_log2_of_the_width() {
        for width in 1usize..=64 {
            let mut cost = Cost::default();
            let carry = carry_out(&mut cost, &Shape::secret(width), &Shape::secret(width));
            let want = (width as f64).log2().ceil() as usize;
            assert_eq!(carry.depth, want, "width {width}");
            assert_eq!(cost.and_calls, want, "width {width}");
        }
    }
}
