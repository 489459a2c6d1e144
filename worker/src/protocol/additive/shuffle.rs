//! An oblivious shuffle from dealt permutation correlations: one round per
//! party, `n − 1` messages of the vector's length each.
//!
//! Construction: the permute-and-share step of secret-shared shuffling
//! (Chase, Ghosh, Poburinnaya, "Secret-shared shuffle", ASIACRYPT 2020,
//! §4; the permutation correlation there made by a trusted dealer here, as
//! in the dealer model of Mohassel, Rindal, Rosulek, "Fast database joins
//! and PSI for secret shared data", CCS 2020). The shared vector `[x]`
//! passes one step per party `p`, in party order. In step `p` the dealer
//! has given party `p` a uniform permutation `π` and `Δ = B − π(A)`, and
//! every other party `j` uniform `a_j`, `b_j` (`A = Σ a_j`, `B = Σ b_j`):
//!
//! 1. every `j ≠ p` sends `m_j = x_j + a_j` to `p` ([`masked`]) and takes
//!    `−b_j` as its new share ([`after_step`]);
//! 2. `p` takes `π(x_p + Σ m_j) + Δ = π(x) + B` ([`permuted`]).
//!
//! The new shares sum to `π(x)`. Security (semi-honest, any coalition of
//! `n − 1` parties, the dealer not colluding): `p` sees `x_j + a_j` under a
//! uniform `a_j` it does not know, and `Δ`, uniform under `B`; the others
//! see nothing. The composition of the `n` steps' permutations is uniform
//! to a coalition that misses party `h`, since `π_h` is uniform and
//! independent of its view. Against the Beneš networks
//! (`executor::shuffle`), which take `2⌈log2 n⌉ − 1` rounds and one
//! multiplication per switch per column per party, this takes `n` rounds
//! and `(n − 1)·len` elements per column in all.

use crate::executor::shuffle::permute_columns;
use crate::ring;
use crate::sharing::Share;

/// Step 1 at a party `j ≠ p`: the message `x_j + a_j` for the permuter.
pub fn masked(x: &Share, a: &Share) -> Vec<u64> {
    let mut m = x.expose().to_vec();
    ring::add_assign(&mut m, a.expose());
    m
}

/// Step 1 at a party `j ≠ p`: its share after the step, `−b_j`.
pub fn after_step(b: Share) -> Share {
    let mut s = b.into_inner();
    ring::neg_assign(&mut s);
    Share::new(s)
}

/// Step 2 at the permuter: `π(x_p + Σ m_j) + Δ`, column by column
/// (`sum_m` is `Σ m_j`, `len` elements per column).
pub fn permuted(x: &Share, sum_m: &Share, perm: &[u32], delta: &Share, len: usize) -> Share {
    let mut z = x.expose().to_vec();
    ring::add_assign(&mut z, sum_m.expose());
    let mut y = permute_columns(&z, perm, len);
    crate::memory::wipe_vec(&mut z);
    ring::add_assign(&mut y, delta.expose());
    Share::new(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocessing::dealer::TrustedDealer;
    use crate::preprocessing::{Demand, PermutationDemand, PermutationShares};
    use crate::sharing;

    /// The dealt correlation, run through every step with plain arithmetic
    /// on the shares, permutes the secret; the permutation is the
    /// composition of the permuters' and differs from run to run.
    #[test]
    fn the_steps_permute_the_secret_under_dealt_material() {
        for (parties, len, columns) in [(2, 1, 1), (2, 5, 2), (3, 17, 3), (5, 64, 1)] {
            let secret: Vec<u64> = (0..len * columns).map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
            let mut shares = sharing::share(&crate::sharing::Secret::new(secret.clone()), parties).unwrap();
            let mut dealer = TrustedDealer::new(parties).unwrap();
            for permuter in 0..parties {
                let shape =
                    Demand { permutation: Some(PermutationDemand { permuter, len, columns }), ..Default::default() };
                let material: Vec<PermutationShares> = dealer
                    .deal(&shape)
                    .unwrap()
                    .into_iter()
                    .enumerate()
                    .map(|(p, b)| b.expand(p, parties, &shape).unwrap().permutation.unwrap())
                    .collect();
                let mut sum_m = Share::new(vec![0u64; len * columns]);
                let mut next: Vec<Option<Share>> = (0..parties).map(|_| None).collect();
                let mut permuter_material = None;
                for (p, m) in material.into_iter().enumerate() {
                    match m {
                        PermutationShares::Other { a, b } => {
                            assert_ne!(p, permuter);
                            ring::add_assign(sum_m.expose_mut(), &masked(&shares[p], &a));
                            next[p] = Some(after_step(b));
                        }
                        PermutationShares::Permuter { perm, delta } => {
                            assert_eq!(p, permuter);
                            permuter_material = Some((perm, delta));
                        }
                    }
                }
                let (perm, delta) = permuter_material.unwrap();
                next[permuter] = Some(permuted(&shares[permuter], &sum_m, &perm, &delta, len));
                shares = next.into_iter().map(Option::unwrap).collect();
            }
            let opened = sharing::reconstruct(&shares);
            for c in 0..columns {
                let mut got = opened.expose()[c * len..(c + 1) * len].to_vec();
                let mut want = secret[c * len..(c + 1) * len].to_vec();
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(got, want, "column {c} is a permutation of the secret's");
            }
            // Every column moved by the same permutation.
            let first = &opened.expose()[..len];
            for c in 1..columns {
                for (i, x) in first.iter().enumerate() {
                    let j = secret[..len].iter().position(|s| s == x).unwrap();
                    assert_eq!(opened.expose()[c * len + i], secret[c * len + j]);
                }
            }
        }
    }
}
