//! Replicated sharing's inputs, multiplication and AND (Araki, Furukawa,
//! Lindell, Nof and Ohara, CCS 2016, §2).
//!
//! **Input** of a value `x` by its owner `o`: component `o` is drawn from
//! `k_o` (so the owner and party `o - 1` know it), component `o + 2` is
//! zero, and component `o + 1 = x − x_o` goes to party `o + 1`, one
//! message. Party `o + 1` sees `x` masked by a stream it does not hold;
//! party `o - 1` sees a random component and a zero.
//!
//! **Multiplication** `z = x·y`: party `i` computes its share of a
//! 3-out-of-3 sharing, `z_i = x_i·y_i + x_i·y_{i+1} + x_{i+1}·y_i + α_i`
//! — the nine cross terms `x_a·y_b` are each covered once by the three
//! parties — masked by a zero-sharing `α`, and sends `z_i` to party
//! `i - 1`, which holds component `i` as its part 1. One round, one
//! element to one neighbour. AND is the same over GF(2), 64 elements per
//! word.

/// Which role a party plays in an input by `owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputRole {
    /// Draws component `o` from its own key, sends `x − x_o` to the next
    /// party: parts `(x_o, x − x_o)`.
    Owner,
    /// Receives component `o + 1`: parts `(received, 0)`.
    Receiver,
    /// Draws component `o` from its next party's key: parts `(0, x_o)`.
    Helper,
}

impl InputRole {
    pub fn of(me: usize, owner: usize) -> InputRole {
        if me == owner {
            InputRole::Owner
        } else if me == super::next(owner) {
            InputRole::Receiver
        } else {
            InputRole::Helper
        }
    }
}

/// `z_i = x_i·y_i + x_i·y_{i+1} + x_{i+1}·y_i + α_i` over Z_2^64, written
/// over `alpha` (this party's zero-sharing share).
pub fn mul_local(x: [&[u64]; 2], y: [&[u64]; 2], alpha: &mut [u64]) {
    for (k, z) in alpha.iter_mut().enumerate() {
        let (x0, x1, y0, y1) = (x[0][k], x[1][k], y[0][k], y[1][k]);
        *z = z.wrapping_add(x0.wrapping_mul(y0.wrapping_add(y1))).wrapping_add(x1.wrapping_mul(y0));
    }
}

/// The same over GF(2), word by word: `z_i = x_i&y_i ^ x_i&y_{i+1} ^
/// x_{i+1}&y_i ^ α_i`.
pub fn and_local(x: [&[u64]; 2], y: [&[u64]; 2], alpha: &mut [u64]) {
    for (k, z) in alpha.iter_mut().enumerate() {
        let (x0, x1, y0, y1) = (x[0][k], x[1][k], y[0][k], y[1][k]);
        *z ^= (x0 & (y0 ^ y1)) ^ (x1 & y0);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Components of `x` (random but summing to it) and each party's parts.
    pub fn share3(x: &[u64], r: &[[u64; 2]]) -> [[Vec<u64>; 2]; 3] {
        let c0: Vec<u64> = r.iter().map(|r| r[0]).collect();
        let c1: Vec<u64> = r.iter().map(|r| r[1]).collect();
        let c2: Vec<u64> = x.iter().zip(r).map(|(x, r)| x.wrapping_sub(r[0]).wrapping_sub(r[1])).collect();
        let c = [c0, c1, c2];
        [0, 1, 2].map(|i| [c[i].clone(), c[(i + 1) % 3].clone()])
    }

    proptest! {
        #[test]
        fn multiplication_reshares_to_the_product(
            xy in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<[u64; 2]>(), any::<[u64; 2]>(), any::<[u64; 2]>()), 0..40)
        ) {
            let x: Vec<u64> = xy.iter().map(|t| t.0).collect();
            let y: Vec<u64> = xy.iter().map(|t| t.1).collect();
            let rx: Vec<[u64; 2]> = xy.iter().map(|t| t.2).collect();
            let ry: Vec<[u64; 2]> = xy.iter().map(|t| t.3).collect();
            // A zero-sharing: a, b, -(a + b).
            let alpha: [Vec<u64>; 3] = [
                xy.iter().map(|t| t.4[0]).collect(),
                xy.iter().map(|t| t.4[1]).collect(),
                xy.iter().map(|t| 0u64.wrapping_sub(t.4[0]).wrapping_sub(t.4[1])).collect(),
            ];
            let (sx, sy) = (share3(&x, &rx), share3(&y, &ry));
            let mut z = alpha.clone();
            for i in 0..3 {
                mul_local([&sx[i][0], &sx[i][1]], [&sy[i][0], &sy[i][1]], &mut z[i]);
            }
            for k in 0..x.len() {
                let sum = z[0][k].wrapping_add(z[1][k]).wrapping_add(z[2][k]);
                prop_assert_eq!(sum, x[k].wrapping_mul(y[k]));
            }
        }

        #[test]
        fn and_reshares_to_the_conjunction(x in any::<u64>(), y in any::<u64>(), r in any::<[u64; 6]>(), a in any::<[u64; 2]>()) {
            let cx = [r[0], r[1], x ^ r[0] ^ r[1]];
            let cy = [r[2], r[3], y ^ r[2] ^ r[3]];
            let alpha = [a[0], a[1], a[0] ^ a[1]];
            let mut out = 0u64;
            for i in 0..3 {
                let mut z = [alpha[i]];
                and_local([&[cx[i]], &[cx[(i + 1) % 3]]], [&[cy[i]], &[cy[(i + 1) % 3]]], &mut z);
                out ^= z[0];
            }
            prop_assert_eq!(out, x & y);
        }
    }

    #[test]
    fn input_roles_cover_the_three_parties() {
        for owner in 0..3 {
            let roles: Vec<InputRole> = (0..3).map(|me| InputRole::of(me, owner)).collect();
            assert_eq!(roles.iter().filter(|r| **r == InputRole::Owner).count(), 1);
            assert_eq!(roles[super::super::next(owner)], InputRole::Receiver);
            assert_eq!(roles[super::super::prev(owner)], InputRole::Helper);
        }
    }
}
