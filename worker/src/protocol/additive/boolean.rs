//! AND of XOR-shared bits with a bit triple: Beaver's multiplication
//! (Beaver, CRYPTO '91) over GF(2), the GMW protocol's AND gate with
//! preprocessed triples, bit-sliced so that one word operation is 64 gates.
//!
//! To compute `z = x & y` with a triple `(a, b, c = a & b)`:
//!
//! 1. [`mask_into`]: each party appends `d_i = x_i ^ a_i` and
//!    `e_i = y_i ^ b_i`;
//! 2. the parties open `d = x ^ a` and `e = y ^ b` (XOR of everyone's
//!    words), in the layer's one round;
//! 3. [`combine`]: `z_i = c_i ^ (d & b_i) ^ (e & a_i)`, and party 0 also
//!    XORs `d & e`, so that `XOR_i z_i = c ^ d&b ^ e&a ^ d&e = x & y`.
//!
//! Security: semi-honest, any `n - 1` corrupt parties. `a` and `b` are
//! uniform and unknown to any coalition of `n - 1` parties, so `d` and `e`
//! are uniform; a triple is consumed once.

/// Step 1: append `x ^ a` to `out` (equal lengths).
pub fn mask_into(x: &[u64], a: &[u64], out: &mut Vec<u64>) {
    debug_assert_eq!(x.len(), a.len());
    out.extend(x.iter().zip(a).map(|(x, a)| x ^ a));
}

/// Step 3: overwrite `c` with this party's share of `x & y` from the
/// opened `d`, `e` and its triple shares `a`, `b`.
pub fn combine(d: &[u64], e: &[u64], a: &[u64], b: &[u64], c: &mut [u64], is_first: bool) {
    debug_assert!(d.len() == c.len() && e.len() == c.len() && a.len() == c.len() && b.len() == c.len());
    for i in 0..c.len() {
        let mut z = c[i] ^ (d[i] & b[i]) ^ (e[i] & a[i]);
        if is_first {
            z ^= d[i] & e[i];
        }
        c[i] = z;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against the definition, for 2 to 5 parties with random shares.
        #[test]
        fn shared_and_is_the_and_of_the_secrets(
            x in any::<u64>(), y in any::<u64>(), a in any::<u64>(), b in any::<u64>(),
            shares in proptest::collection::vec(any::<[u64; 5]>(), 1..5),
        ) {
            let c = a & b;
            let n = shares.len() + 1;
            // Party i < n-1 holds shares[i]; the last party holds the rest.
            let split = |secret: u64, k: usize| -> Vec<u64> {
                let mut v: Vec<u64> = shares.iter().map(|s| s[k]).collect();
                v.push(v.iter().fold(secret, |acc, s| acc ^ s));
                v
            };
            let (xs, ys, as_, bs, cs) = (split(x, 0), split(y, 1), split(a, 2), split(b, 3), split(c, 4));
            let mut d_parts = Vec::new();
            let mut e_parts = Vec::new();
            for i in 0..n {
                mask_into(&[xs[i]], &[as_[i]], &mut d_parts);
                mask_into(&[ys[i]], &[bs[i]], &mut e_parts);
            }
            let d = d_parts.iter().fold(0, |acc, v| acc ^ v);
            let e = e_parts.iter().fold(0, |acc, v| acc ^ v);
            let mut z = 0;
            for i in 0..n {
                let mut ci = [cs[i]];
                combine(&[d], &[e], &[as_[i]], &[bs[i]], &mut ci, i == 0);
                z ^= ci[0];
            }
            prop_assert_eq!(z, x & y);
        }
    }
}
