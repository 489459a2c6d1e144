//! Additive secret sharing over Z_2^64, and the types that hold secrets.
//!
//! A secret vector `x` is split among `n` parties as shares `x_0..x_{n-1}`
//! with `sum_i x_i = x` (mod 2^64). Any `n-1` shares are jointly uniform and
//! independent of `x`, so the construction is secure against a semi-honest
//! adversary corrupting up to `n-1` parties (dishonest majority).
//!
//! Two types hold secret data: [`Secret`] (a plaintext value a party may
//! know: its own input, an output it is entitled to) and [`Share`] (one
//! party's additive share). Both redact `Debug`, have no `Display`, and
//! zeroize their memory on drop: the whole allocation, once, in bulk
//! ([`crate::memory::wipe_vec`]; see [`crate::memory`] for which buffers
//! hold secrets and why).

use crate::prg::{Prg, Seed};
use crate::ring;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A plaintext secret vector (scalars are vectors of length 1).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u64>);

/// One party's additive share of a secret vector.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Share(Vec<u64>);

macro_rules! secret_container {
    ($t:ident) => {
        impl $t {
            pub fn new(values: Vec<u64>) -> Self {
                $t(values)
            }
            pub fn zeros(len: usize) -> Self {
                $t(crate::memory::zeroed(len))
            }
            pub fn len(&self) -> usize {
                self.0.len()
            }
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
            /// The underlying ring elements. Callers must not log them.
            pub fn expose(&self) -> &[u64] {
                &self.0
            }
            /// Mutable access to the underlying ring elements.
            pub fn expose_mut(&mut self) -> &mut Vec<u64> {
                &mut self.0
            }
            /// Take the elements out; the caller becomes responsible for them.
            pub fn into_inner(mut self) -> Vec<u64> {
                std::mem::take(&mut self.0)
            }
        }
        /// Zeroes the whole allocation in bulk and leaves the vector empty
        /// (as `zeroize` does for a `Vec`, without its word-by-word loop).
        impl Zeroize for $t {
            fn zeroize(&mut self) {
                crate::memory::wipe_vec(&mut self.0);
            }
        }
        impl Drop for $t {
            fn drop(&mut self) {
                // Once: `zeroize` leaves an empty vector, and a vector taken
                // out by `into_inner` leaves none.
                crate::memory::wipe_vec(&mut self.0);
            }
        }
        impl ZeroizeOnDrop for $t {}
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "(<{} redacted elements>)"), self.0.len())
            }
        }
    };
}

secret_container!(Secret);
secret_container!(Share);

/// Split `secret` into `n >= 1` additive shares with fresh randomness.
pub fn share(secret: &Secret, n: usize) -> Result<Vec<Share>, crate::prg::EntropyError> {
    assert!(n >= 1, "sharing among zero parties");
    let mut shares = Vec::with_capacity(n);
    let mut last = secret.0.clone();
    for _ in 1..n {
        let r = Prg::new(&Seed::random()?).next_vec(secret.len());
        ring::sub_assign(&mut last, &r);
        shares.push(Share(r));
    }
    shares.push(Share(last));
    Ok(shares)
}

/// Share `secret` using one seed per other party: party `j` (for each seed)
/// takes `PRG(seed_j)` as its share and the owner keeps
/// `secret - sum_j PRG(seed_j)`. Sending a 16-byte seed instead of a vector
/// makes input sharing cost O(n) bytes regardless of the input's length; the
/// shares are pseudorandom, so the construction is secure under the PRG
/// assumption.
pub fn share_with_seeds(secret: &Secret, seeds: &[Seed]) -> Share {
    let mut prgs: Vec<Prg> = seeds.iter().map(Prg::new).collect();
    let mut own = Vec::with_capacity(secret.len());
    // Block by block through an L1-resident buffer: `own` is written once
    // and no full-length pseudorandom vector is ever allocated.
    let mut r = [0u64; SHARE_BLOCK];
    for x in secret.0.chunks(SHARE_BLOCK) {
        let start = own.len();
        own.extend_from_slice(x);
        let r = &mut r[..x.len()];
        for prg in &mut prgs {
            prg.fill(r);
            ring::sub_assign(&mut own[start..], r);
        }
    }
    r.zeroize();
    Share(own)
}

/// Elements per block in [`share_with_seeds`] (8 KiB).
const SHARE_BLOCK: usize = 1024;

/// The share a receiving party derives from the owner's seed.
pub fn share_from_seed(seed: &Seed, len: usize) -> Share {
    Share(Prg::new(seed).next_vec(len))
}

/// Reconstruct a secret from all shares. Shares must have equal lengths.
pub fn reconstruct(shares: &[Share]) -> Secret {
    let mut out = shares.first().map(|s| s.0.clone()).unwrap_or_default();
    for s in shares.iter().skip(1) {
        ring::add_assign(&mut out, &s.0);
    }
    Secret(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn share_then_reconstruct(xs in proptest::collection::vec(any::<u64>(), 0..64), n in 1usize..8) {
            let secret = Secret::new(xs.clone());
            let shares = share(&secret, n).unwrap();
            prop_assert_eq!(shares.len(), n);
            prop_assert_eq!(reconstruct(&shares).into_inner(), xs);
        }

        #[test]
        fn seeded_sharing_reconstructs(xs in proptest::collection::vec(any::<u64>(), 0..64), n in 1usize..8) {
            let secret = Secret::new(xs.clone());
            let seeds: Vec<Seed> = (1..n).map(|_| Seed::random().unwrap()).collect();
            let mut shares: Vec<Share> = seeds.iter().map(|s| share_from_seed(s, xs.len())).collect();
            shares.push(share_with_seeds(&secret, &seeds));
            prop_assert_eq!(reconstruct(&shares).into_inner(), xs);
        }

        #[test]
        fn sharing_is_linear(
            pairs in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..32),
            c in any::<u64>(),
            n in 2usize..6,
        ) {
            let (xs, ys): (Vec<u64>, Vec<u64>) = pairs.into_iter().unzip();
            let sx = share(&Secret::new(xs.clone()), n).unwrap();
            let sy = share(&Secret::new(ys.clone()), n).unwrap();
            // [x] + [y], c * [x], and [x] + c (added by one party only).
            let sum: Vec<Share> = sx.iter().zip(&sy).map(|(a, b)| {
                let mut v = a.expose().to_vec();
                ring::add_assign(&mut v, b.expose());
                Share::new(v)
            }).collect();
            let scaled: Vec<Share> = sx.iter().map(|a| {
                let mut v = a.expose().to_vec();
                ring::scale_assign(&mut v, c);
                Share::new(v)
            }).collect();
            let mut plus_c = sx.clone();
            for v in plus_c[0].expose_mut().iter_mut() { *v = v.wrapping_add(c); }
            for i in 0..xs.len() {
                prop_assert_eq!(reconstruct(&sum).expose()[i], xs[i].wrapping_add(ys[i]));
                prop_assert_eq!(reconstruct(&scaled).expose()[i], xs[i].wrapping_mul(c));
                prop_assert_eq!(reconstruct(&plus_c).expose()[i], xs[i].wrapping_add(c));
            }
        }
    }

    #[test]
    fn any_n_minus_one_shares_look_uniform() {
        // Two different secrets; the first n-1 shares are fresh PRG output
        // either way. A coarse check that they are not correlated with the
        // secret: their low bits are balanced.
        let n = 3;
        let zeros = share(&Secret::zeros(4096), n).unwrap();
        let ones: usize = zeros[..n - 1].iter().flat_map(|s| s.expose()).map(|x| (x & 1) as usize).sum();
        assert!((3500..4700).contains(&ones), "{ones}");
    }

    #[test]
    fn dropped_shares_and_secrets_are_freed_wiped() {
        use crate::memory::tests::watch;
        for secret in [false, true] {
            // Old values in the spare capacity too (a truncated share).
            let mut v = vec![0xdead_beef_u64; 1000];
            v.truncate(10);
            watch::start(v.as_ptr().cast());
            if secret {
                drop(Secret::new(v));
            } else {
                drop(Share::new(v));
            }
            assert_eq!(watch::freed_zeroed(), Some(true), "secret: {secret}");
        }
        // `into_inner` hands the elements over unwiped.
        let v = Share::new(vec![7; 100]).into_inner();
        assert_eq!(v, vec![7; 100]);
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new(vec![424242]);
        assert_eq!(format!("{s:?}"), "Secret(<1 redacted elements>)");
        let sh = share(&s, 2).unwrap();
        assert!(!format!("{sh:?}").contains("424242"));
    }
}
