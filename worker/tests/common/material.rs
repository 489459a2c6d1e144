//! Checking reconstructed preprocessing material across parties.

use cohort_worker::gf2::Bits;
use cohort_worker::preprocessing::{BitTripleShares, DaBitShares, Demand, EdaBitShares, LayerMaterial, MaterialPlan};
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

/// Reconstruct a XOR-shared bundle.
pub fn xor(shares: &[&Bits]) -> Bits {
    let mut out = shares[0].clone();
    for s in &shares[1..] {
        out.xor_assign(s);
    }
    out
}

/// Check the binary kinds held by every party (index = party) against
/// their definitions, after reconstruction: bit triples `c = a AND b`
/// (one plane of `64 · words` bits each), edaBits (the XOR of the 64-plane
/// bits composes to the sum of `r`), daBits (the XOR of the bit is the sum
/// of the ring shares, 0 or 1). Empty kinds must be empty (default).
pub fn check_binary(bt: &[&BitTripleShares], eda: &[&EdaBitShares], da: &[&DaBitShares], expected: &Demand) {
    let words = expected.bit_triple_words;
    for t in bt {
        for plane in [&t.a, &t.b, &t.c] {
            assert_eq!((plane.width(), plane.len()), if words == 0 { (0, 0) } else { (1, 64 * words) });
        }
    }
    if words > 0 {
        let a = xor(&bt.iter().map(|t| &t.a).collect::<Vec<_>>());
        let b = xor(&bt.iter().map(|t| &t.b).collect::<Vec<_>>());
        let c = xor(&bt.iter().map(|t| &t.c).collect::<Vec<_>>());
        let mut and = a.clone();
        and.and_assign(&b);
        assert!(c == and, "a bit triple has c != a AND b");
        if words >= 16 {
            for (what, x) in [("a", &a), ("b", &b)] {
                let fraction = x.count_ones() as f64 / (64 * words) as f64;
                assert!((fraction - 0.5).abs() < 0.05, "bit triples' {what}: {fraction} of the bits set");
            }
        }
    }
    let e = expected.edabits;
    for x in eda {
        assert_eq!(x.r.len(), e);
        assert_eq!((x.bits.width(), x.bits.len()), if e == 0 { (0, 0) } else { (64, e) });
    }
    if e > 0 {
        let r = sum(&eda.iter().map(|x| &x.r).collect::<Vec<_>>());
        let bits = xor(&eda.iter().map(|x| &x.bits).collect::<Vec<_>>());
        assert_eq!(bits.compose(), r, "edaBits: the bits are not those of r");
        if e >= 64 {
            let distinct: std::collections::HashSet<u64> = r.iter().copied().collect();
            assert_eq!(distinct.len(), e, "edaBits: a repeated r");
        }
    }
    let d = expected.dabits;
    for x in da {
        assert_eq!(x.arith.len(), d);
        assert_eq!((x.bits.width(), x.bits.len()), if d == 0 { (0, 0) } else { (1, d) });
    }
    if d > 0 {
        let arith = sum(&da.iter().map(|x| &x.arith).collect::<Vec<_>>());
        let bits = xor(&da.iter().map(|x| &x.bits).collect::<Vec<_>>());
        for (i, v) in arith.iter().enumerate() {
            assert_eq!(*v, u64::from(bits.get(0, i)), "daBit {i}");
        }
        if d >= 1000 {
            let fraction = bits.count_ones() as f64 / d as f64;
            assert!((fraction - 0.5).abs() < 0.1, "daBits: {fraction} of the bits set");
        }
    }
}

/// Check one layer held by every party (index = party): equal tags, and
/// every reconstructed triple satisfies `c = a * b`, every division pair
/// `msb = r >> 63`, `q = (r mod 2^63) / d`, and the binary kinds their
/// definitions ([`check_binary`]).
pub fn check_layer(layer: &[&LayerMaterial], expected: &Demand) {
    assert!(layer.windows(2).all(|w| w[0].tag == w[1].tag), "parties hold different material tags");
    check_binary(
        &layer.iter().map(|m| &m.bit_triples).collect::<Vec<_>>(),
        &layer.iter().map(|m| &m.edabits).collect::<Vec<_>>(),
        &layer.iter().map(|m| &m.dabits).collect::<Vec<_>>(),
        expected,
    );
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
                // S·2^s/d (protocol::additive::division).
                let low = (r[i] & LOW_63) as u128;
                let s = low.checked_sub(q[i] as u128 * d as u128).expect("q·d <= r_low");
                assert!(s < 63 * d as u128, "remainder of pair {i}, divisor {d}");
                let scaled = s << cohort_worker::protocol::additive::division::CORRECTION_SHIFT;
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
