//! Checking reconstructed preprocessing material across parties.

use cohort_worker::preprocessing::{Demand, LayerMaterial, MaterialPlan};
use cohort_worker::sharing::Share;

/// Bits below the sign bit: a division pair's `r mod 2^63`.
pub const LOW_63: u64 = (1 << 63) - 1;

/// Reconstruct a shared vector: the parties' shares summed.
pub fn sum(shares: &[&Share]) -> Vec<u64> {
    let mut out = shares[0].expose().to_vec();
    for s in &shares[1..] {
        assert_eq!(s.len(), out.len());
        for (o, x) in out.iter_mut().zip(s.expose()) {
            *o = o.wrapping_add(*x);
        }
    }
    out
}

/// Check one layer held by every party (index = party): equal tags, and
/// every reconstructed triple satisfies `c = a * b` and every division pair
/// `msb = r >> 63`, `q = (r mod 2^63) / d`.
pub fn check_layer(layer: &[&LayerMaterial], expected: &Demand) {
    assert!(layer.windows(2).all(|w| w[0].tag == w[1].tag), "parties hold different material tags");
    let a = sum(&layer.iter().map(|m| &m.triples.a).collect::<Vec<_>>());
    let b = sum(&layer.iter().map(|m| &m.triples.b).collect::<Vec<_>>());
    let c = sum(&layer.iter().map(|m| &m.triples.c).collect::<Vec<_>>());
    assert_eq!(a.len(), expected.triples);
    for i in 0..a.len() {
        assert_eq!(c[i], a[i].wrapping_mul(b[i]), "triple {i}");
    }
    for (g, &(d, count)) in expected.div_pairs.iter().enumerate() {
        let r = sum(&layer.iter().map(|m| &m.div_pairs[g].r).collect::<Vec<_>>());
        let msb = sum(&layer.iter().map(|m| &m.div_pairs[g].msb).collect::<Vec<_>>());
        let q = sum(&layer.iter().map(|m| &m.div_pairs[g].q).collect::<Vec<_>>());
        assert!(layer.iter().all(|m| m.div_pairs[g].divisor == d));
        assert_eq!(r.len(), count);
        let g = layer[0].div_pairs[g]
            .g
            .is_empty()
            .then(Vec::new)
            .unwrap_or_else(|| sum(&layer.iter().map(|m| &m.div_pairs[g].g).collect::<Vec<_>>()));
        for i in 0..count {
            assert_eq!(msb[i], r[i] >> 63, "msb of pair {i}, divisor {d}");
            if g.is_empty() {
                assert_eq!(q[i], (r[i] & LOW_63) / d, "quotient of pair {i}, divisor {d}");
            } else {
                // A generated pair for a divisor that is not a power of
                // two: q leaves a remainder S in [0, 63·d), and g brackets
                // S·2^s/d (protocol::division).
                let low = (r[i] & LOW_63) as u128;
                let s = low.checked_sub(q[i] as u128 * d as u128).expect("q·d <= r_low");
                assert!(s < 63 * d as u128, "remainder of pair {i}, divisor {d}");
                let scaled = s << cohort_worker::protocol::division::CORRECTION_SHIFT;
                let gd = g[i] as u128 * d as u128;
                assert!(gd >= scaled && gd < scaled + 63 * d as u128, "g of pair {i}, divisor {d}");
            }
        }
    }
}

/// Check every layer of `plan`; `per_party[p][l]` is party `p`'s layer `l`.
pub fn check_plan(per_party: &[Vec<LayerMaterial>], plan: &MaterialPlan) {
    for (l, demand) in plan.layers.iter().enumerate() {
        let layer: Vec<&LayerMaterial> = per_party.iter().map(|p| &p[l]).collect();
        check_layer(&layer, demand);
    }
}
