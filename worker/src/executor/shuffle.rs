//! Oblivious shuffle: every party in turn permutes the shared vectors by a
//! uniformly random permutation of its own choice, through a Beneš network
//! whose switch settings are its private input.
//!
//! Construction (generic over the protocol seam): the vectors, padded to
//! `N = 2^k` elements, pass `parties` Beneš networks (Beneš 1964; Waksman,
//! JACM 1968), one per party. Party `p` samples a uniform permutation
//! `π_p` and *routes* it (the looping algorithm below), so that its
//! network applies exactly `π_p`; uniformly random switch bits would not
//! give a uniform permutation. Each switch is `(x, y) ↦ (x + s·(y − x),
//! y − s·(y − x))` for its secret bit `s`: one multiplication per switch
//! per column. The composition `π_{P−1} ∘ … ∘ π_0` is uniform and unknown
//! to any coalition that misses one party, since that party's `π_p` is
//! uniform and independent of everything the coalition sees (its switch
//! bits are shared, as inputs are).
//!
//! Layout: the network works in place on `N` slots. Stage `t` of the
//! `2k − 1` stages pairs slot `x` with `x + 2^s` for every `x` whose bit
//! `s` is clear, `s = min(t, 2k − 2 − t)` (a butterfly): the recursive
//! Beneš network's upper subnetwork holds the even slots of its block and
//! its lower one the odd slots, so no wiring moves data between stages.
//! A stage's switches are numbered by their lower slot, in order
//! ([`super::netlist::GateOp::Pairs`]).

use crate::prg::{EntropyError, Prg, Seed};

/// The number of stages of the Beneš network on `2^k` slots.
pub fn stages(k: u32) -> usize {
    if k == 0 { 0 } else { 2 * k as usize - 1 }
}

/// The pairing distance of stage `t` of the network on `2^k` slots.
pub fn stride(k: u32, t: usize) -> usize {
    let last = 2 * k as usize - 2;
    1 << t.min(last - t)
}

/// A uniformly random permutation of `0..n` (Fisher–Yates over an AES-CTR
/// stream from a fresh OS seed; Lemire's multiply-shift index, whose bias
/// is below `n / 2^64`).
pub fn random_permutation(n: usize) -> Result<Vec<u32>, EntropyError> {
    Ok(Prg::new(&Seed::random()?).permutation(n))
}

/// `columns` (each `len` elements, one after the other) with element `i`
/// of each moved to position `pi[i]` (`pi` a permutation of `0..len`).
pub fn permute_columns(columns: &[u64], pi: &[u32], len: usize) -> Vec<u64> {
    // Written, not requested zeroed (see `memory::zeroed`).
    let mut out = crate::memory::zeroed(columns.len());
    for (to, from) in out.chunks_exact_mut(len.max(1)).zip(columns.chunks_exact(len.max(1))) {
        for (x, &p) in from.iter().zip(pi) {
            to[p as usize] = *x;
        }
    }
    out
}

/// The switch settings (0 or 1, stage after stage, `2^(k-1)` per stage)
/// that make the network on `2^k` slots move the element at slot `i` to
/// slot `sigma[i]`.
pub fn route(k: u32, sigma: &[u32]) -> Vec<u64> {
    let n = 1usize << k;
    assert_eq!(sigma.len(), n, "a permutation of the network's slots");
    let half = n / 2;
    let mut bits = vec![0u64; stages(k) * half];
    if k > 0 {
        route_block(k, 0, 0, sigma.to_vec(), &mut bits);
    }
    bits
}

/// Route `sigma` through the sub-network of depth `t` on the slots
/// `r + i·2^t` (`i` its positions), by the looping algorithm: the inputs
/// of a switch go to different halves, and so do the sources of an output
/// switch's two outputs; the constraints form even cycles, 2-colourable by
/// walking them.
fn route_block(k: u32, t: usize, r: usize, sigma: Vec<u32>, bits: &mut [u64]) {
    let m = sigma.len();
    let half = 1usize << (k - 1);
    let last = stages(k) - 1;
    let switch = |stage: usize, i: usize| stage * half + (i << t) + r;
    if m == 2 {
        bits[switch(t, 0)] = u64::from(sigma[0] == 1);
        return;
    }
    let mut inverse = vec![0u32; m];
    for (i, o) in sigma.iter().enumerate() {
        inverse[*o as usize] = i as u32;
    }
    // side[i]: 0 upper, 1 lower, 2 not yet assigned.
    let mut side = vec![2u8; m];
    for start in (0..m).step_by(2) {
        if side[start] != 2 {
            continue;
        }
        let mut x = start;
        loop {
            side[x] = 0;
            side[x ^ 1] = 1;
            // The output beside x^1's must come from the upper half.
            let y = inverse[(sigma[x ^ 1] ^ 1) as usize] as usize;
            if side[y] != 2 {
                break;
            }
            x = y;
        }
    }
    let mut upper = vec![0u32; m / 2];
    let mut lower = vec![0u32; m / 2];
    for i in 0..m / 2 {
        let (up, down) = if side[2 * i] == 0 { (2 * i, 2 * i + 1) } else { (2 * i + 1, 2 * i) };
        bits[switch(t, i)] = u64::from(up != 2 * i);
        upper[i] = sigma[up] >> 1;
        lower[i] = sigma[down] >> 1;
        // The output switch of the upper element's output: crossed when
        // the upper half's element leaves by the odd output.
        bits[switch(last - t, (sigma[up] >> 1) as usize)] = u64::from(sigma[up] & 1);
    }
    route_block(k, t + 1, r, upper, bits);
    route_block(k, t + 1, r + (1 << t), lower, bits);
}

/// Apply the network with switch settings `bits` to `v` (plaintext: the
/// reference the tests check routing against).
pub fn apply(k: u32, bits: &[u64], v: &mut [u64]) {
    let half = 1usize << k.saturating_sub(1);
    for t in 0..stages(k) {
        let s = stride(k, t);
        let lows = (0..v.len()).filter(|x| x & s == 0);
        for (i, x) in lows.enumerate() {
            if bits[t * half + i] == 1 {
                v.swap(x, x + s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_every_permutation_it_is_given() {
        for k in 1..=7 {
            let n = 1 << k;
            for _ in 0..20 {
                let sigma = random_permutation(n).unwrap();
                let bits = route(k, &sigma);
                let mut v: Vec<u64> = (0..n as u64).collect();
                apply(k, &bits, &mut v);
                for (i, o) in sigma.iter().enumerate() {
                    assert_eq!(v[*o as usize], i as u64, "k {k}: element {i} at slot {o}");
                }
            }
        }
    }

    #[test]
    fn routes_all_permutations_of_eight() {
        // Every permutation of 8 slots (Heap's algorithm).
        let mut p: Vec<u32> = (0..8).collect();
        let mut c = [0usize; 8];
        let check = |p: &[u32]| {
            let bits = route(3, p);
            let mut v: Vec<u64> = (0..8).collect();
            apply(3, &bits, &mut v);
            for (i, o) in p.iter().enumerate() {
                assert_eq!(v[*o as usize], i as u64);
            }
        };
        check(&p);
        let mut i = 0;
        while i < 8 {
            if c[i] < i {
                if i % 2 == 0 {
                    p.swap(0, i)
                } else {
                    p.swap(c[i], i)
                }
                check(&p);
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
    }
}
