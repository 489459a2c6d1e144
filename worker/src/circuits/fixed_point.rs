//! Binary circuits behind the fixed-point functions
//! (`executor::nonlinear`): a full adder over bit-sliced bundles, the
//! leading one of a bundle, and a decoder from bits to a one-hot bundle.
//!
//! - [`add`] is a Sklansky parallel-prefix adder (Sklansky, IRE Trans.
//!   Electronic Computers 1960; the prefix operator of
//!   [`super::compare`]): every carry, not only the carry out, in
//!   `ceil(log2(w - 1))` AND levels and about `w/2` combinations per level.
//!   With one public operand (the additive protocol's opened `c`) its
//!   generates and propagates are local.
//! - [`leading_one`] marks the highest set plane: a suffix OR (a prefix AND
//!   of the complements, `ceil(log2 w)` levels), then XOR of neighbours.
//! - [`decode`] turns `w` planes into one plane per asked value, `[x == v]`:
//!   halves decoded recursively, `ceil(log2 w)` levels.

use super::BinaryOps;

/// `a + b (+ 1 if carry_in)` modulo `2^w`, `w` planes, position 0 lowest.
pub fn add<O: BinaryOps>(ops: &mut O, a: &O::Bits, b: &O::Bits, carry_in: bool) -> O::Bits {
    let width = ops.width(a);
    assert!(width >= 1 && ops.width(b) == width, "add of {width} and {} planes", ops.width(b));
    let g = ops.and(a, b);
    let p = ops.xor(a, b);
    let p0 = ops.gather(&p, &[0]);
    let s0 = if carry_in { ops.not(&p0) } else { p0.clone() };
    if width == 1 {
        return s0;
    }
    // Carries into positions 1..w are the prefixes of positions 0..w-1.
    let n = width - 1;
    let mut gens = ops.gather(&g, &(0..n).collect::<Vec<_>>());
    if carry_in {
        // Position 0 generates when it generates or propagates (never both).
        let g0 = ops.gather(&gens, &[0]);
        let g0 = ops.xor(&g0, &p0);
        let rest = ops.gather(&gens, &(1..n).collect::<Vec<_>>());
        gens = if n > 1 { ops.concat(&[&g0, &rest]) } else { g0 };
    }
    let mut prop = ops.gather(&p, &(0..n).collect::<Vec<_>>());
    let mut span = 1;
    while span < n {
        // Position i in the upper half of its block of 2·span joins the top
        // of the lower half, j; its group then starts at the block start.
        let mut upper = Vec::new();
        let mut lower = Vec::new();
        let mut p_upper = Vec::new();
        let mut p_lower = Vec::new();
        for i in 0..n {
            if i & span != 0 {
                let start = i & !(2 * span - 1);
                let j = start + span - 1;
                upper.push(i);
                lower.push(j);
                // A group starting at 0 never needs its propagate again.
                if start > 0 {
                    p_upper.push(i);
                    p_lower.push(j);
                }
            }
        }
        let left = {
            let a = ops.gather(&prop, &upper);
            if p_upper.is_empty() {
                a
            } else {
                let b = ops.gather(&prop, &p_upper);
                ops.concat(&[&a, &b])
            }
        };
        let right = {
            let a = ops.gather(&gens, &lower);
            if p_lower.is_empty() {
                a
            } else {
                let b = ops.gather(&prop, &p_lower);
                ops.concat(&[&a, &b])
            }
        };
        let products = ops.and(&left, &right);
        let carried = ops.gather(&products, &(0..upper.len()).collect::<Vec<_>>());
        let old = ops.gather(&gens, &upper);
        let new_g = ops.xor(&old, &carried);
        // Reassemble: combined positions from `new_g`, the others as they were.
        let all = ops.concat(&[&gens, &new_g]);
        let mut map: Vec<usize> = (0..n).collect();
        for (k, i) in upper.iter().enumerate() {
            map[*i] = n + k;
        }
        gens = ops.gather(&all, &map);
        if !p_upper.is_empty() {
            let new_p = ops.gather(&products, &(upper.len()..upper.len() + p_upper.len()).collect::<Vec<_>>());
            let all = ops.concat(&[&prop, &new_p]);
            let mut map: Vec<usize> = (0..n).collect();
            for (k, i) in p_upper.iter().enumerate() {
                map[*i] = n + k;
            }
            prop = ops.gather(&all, &map);
        }
        span *= 2;
    }
    let p_rest = ops.gather(&p, &(1..width).collect::<Vec<_>>());
    let rest = ops.xor(&p_rest, &gens);
    ops.concat(&[&s0, &rest])
}

/// `a - b` modulo `2^w`: `a + !b + 1`.
pub fn sub<O: BinaryOps>(ops: &mut O, a: &O::Bits, b: &O::Bits) -> O::Bits {
    let not_b = ops.not(b);
    add(ops, a, &not_b, true)
}

/// Plane `i` of the result is the AND of planes `i..w` of `x`: a
/// Sklansky prefix over the reversed planes, `ceil(log2 w)` levels.
pub fn suffix_and<O: BinaryOps>(ops: &mut O, x: &O::Bits) -> O::Bits {
    let width = ops.width(x);
    let reversed: Vec<usize> = (0..width).rev().collect();
    let mut y = ops.gather(x, &reversed);
    let mut span = 1;
    while span < width {
        let mut upper = Vec::new();
        let mut lower = Vec::new();
        for i in 0..width {
            if i & span != 0 {
                upper.push(i);
                lower.push((i & !(2 * span - 1)) + span - 1);
            }
        }
        let a = ops.gather(&y, &upper);
        let b = ops.gather(&y, &lower);
        let products = ops.and(&a, &b);
        let all = ops.concat(&[&y, &products]);
        let mut map: Vec<usize> = (0..width).collect();
        for (k, i) in upper.iter().enumerate() {
            map[*i] = width + k;
        }
        y = ops.gather(&all, &map);
        span *= 2;
    }
    ops.gather(&y, &reversed)
}

/// The highest set plane of `t`, one-hot (all zero when `t` is 0).
pub fn leading_one<O: BinaryOps>(ops: &mut O, t: &O::Bits) -> O::Bits {
    let width = ops.width(t);
    let not_t = ops.not(t);
    let none_above = suffix_and(ops, &not_t);
    // y_i = OR of planes i.. = !none_above_i; h_i = y_i ^ y_(i+1).
    if width == 1 {
        return ops.not(&none_above);
    }
    let here = ops.gather(&none_above, &(0..width - 1).collect::<Vec<_>>());
    let next = ops.gather(&none_above, &(1..width).collect::<Vec<_>>());
    let low = ops.xor(&here, &next);
    let top = ops.gather(&none_above, &[width - 1]);
    let top = ops.not(&top);
    ops.concat(&[&low, &top])
}

/// One plane per value of `values`: `[x == v]` for the `w`-plane unsigned
/// `x` (each `v < 2^w`). Halves are decoded recursively and their planes
/// combined with one AND each: `ceil(log2 w)` levels.
pub fn decode<O: BinaryOps>(ops: &mut O, x: &O::Bits, values: &[u64]) -> O::Bits {
    let width = ops.width(x);
    assert!(width >= 1 && !values.is_empty(), "decode of {width} planes into {} values", values.len());
    if width == 1 {
        let not_x = ops.not(x);
        let both = ops.concat(&[&not_x, x]);
        return ops.gather(&both, &values.iter().map(|v| *v as usize).collect::<Vec<_>>());
    }
    let low_width = width / 2;
    let low_mask = (1u64 << low_width) - 1;
    let mut lows: Vec<u64> = values.iter().map(|v| v & low_mask).collect();
    let mut highs: Vec<u64> = values.iter().map(|v| v >> low_width).collect();
    lows.sort_unstable();
    lows.dedup();
    highs.sort_unstable();
    highs.dedup();
    let low_planes = ops.gather(x, &(0..low_width).collect::<Vec<_>>());
    let high_planes = ops.gather(x, &(low_width..width).collect::<Vec<_>>());
    let low = decode(ops, &low_planes, &lows);
    let high = decode(ops, &high_planes, &highs);
    let at = |set: &[u64], v: u64| set.binary_search(&v).expect("decoded value");
    let li: Vec<usize> = values.iter().map(|v| at(&lows, v & low_mask)).collect();
    let hi: Vec<usize> = values.iter().map(|v| at(&highs, v >> low_width)).collect();
    let a = ops.gather(&low, &li);
    let b = ops.gather(&high, &hi);
    ops.and(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuits::{Cost, Plain, Shape};
    use crate::gf2::Bits;
    use proptest::prelude::*;

    fn values(b: &Bits) -> Vec<u64> {
        b.compose()
    }

    proptest! {
        #[test]
        fn add_and_sub_match_wrapping_arithmetic(
            pairs in prop::collection::vec((any::<u64>(), any::<u64>()), 1..100),
            width in 1usize..=64,
        ) {
            let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
            let (xs, ys): (Vec<u64>, Vec<u64>) = pairs.into_iter().map(|(x, y)| (x & mask, y & mask)).unzip();
            let (bx, by) = (Bits::decompose(&xs, width), Bits::decompose(&ys, width));
            let sum = values(&add(&mut Plain, &bx, &by, false));
            let sum1 = values(&add(&mut Plain, &bx, &by, true));
            let diff = values(&sub(&mut Plain, &bx, &by));
            for i in 0..xs.len() {
                prop_assert_eq!(sum[i], xs[i].wrapping_add(ys[i]) & mask);
                prop_assert_eq!(sum1[i], xs[i].wrapping_add(ys[i]).wrapping_add(1) & mask);
                prop_assert_eq!(diff[i], xs[i].wrapping_sub(ys[i]) & mask);
            }
        }

        #[test]
        fn leading_one_and_decode(xs in prop::collection::vec(any::<u64>(), 1..100), shift in 0u32..64) {
            let xs: Vec<u64> = xs.iter().map(|x| x >> shift).collect();
            let h = leading_one(&mut Plain, &Bits::decompose(&xs, 64));
            for (i, x) in xs.iter().enumerate() {
                let want = if *x == 0 { None } else { Some(63 - x.leading_zeros() as usize) };
                for j in 0..64 {
                    prop_assert_eq!(h.get(j, i), want == Some(j));
                }
            }
            let small: Vec<u64> = xs.iter().map(|x| x & 127).collect();
            let asked: Vec<u64> = vec![0, 1, 5, 63, 64, 100, 127];
            let d = decode(&mut Plain, &Bits::decompose(&small, 7), &asked);
            for (i, x) in small.iter().enumerate() {
                for (k, v) in asked.iter().enumerate() {
                    prop_assert_eq!(d.get(k, i), x == v);
                }
            }
        }
    }

    #[test]
    fn depths() {
        let mut cost = Cost::default();
        let s = sub(&mut cost, &Shape::public(64), &Shape::secret(64));
        assert_eq!(s.depth, 6, "a 64-bit subtraction with a public operand");
        let mut cost = Cost::default();
        assert_eq!(leading_one(&mut cost, &Shape::secret(62)).depth, 6);
        let mut cost = Cost::default();
        assert_eq!(decode(&mut cost, &Shape::secret(8), &(0..200).collect::<Vec<_>>()).depth, 3);
    }
}
