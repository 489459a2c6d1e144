//! Trusted-dealer preprocessing (the dealer is a TRUSTED THIRD PARTY):
//! correctness of dealt material across parties, layer assembly from
//! streamed batches, the wire format, and the errors that keep material
//! from being reused or mismatched.

use cohort_worker::preprocessing::dealer::{
    BatchId, BatchMaterial, DealerBatch, DealerSource, TrustedDealer, WIRE_HEADER_BYTES, WIRE_VERSION,
    WIRE_VERSION_ARITHMETIC, spawn_local_dealer, split_demand,
};
use cohort_worker::preprocessing::{
    Demand, LayerMaterial, MaterialPlan, MaterialSource, MaterialTag, PreprocessingError,
};

mod common;
use common::material::{LOW_63, check_binary, sum};

const DIVISORS: [u64; 5] = [1, 3, 1000, 1 << 16, 1 << 40];

/// `triples` triples and `pairs` division pairs for each of [`DIVISORS`]
/// (no division pairs at all when `pairs` is 0).
fn demand(triples: usize, pairs: usize) -> Demand {
    let div_pairs = if pairs == 0 { vec![] } else { DIVISORS.iter().map(|&d| (d, pairs)).collect() };
    Demand { triples, div_pairs, ..Default::default() }
}

/// Reconstruct and check every triple and division pair of one layer/batch
/// (given as each party's triple shares and division-pair shares).
fn check_material(
    triples: &[&cohort_worker::preprocessing::TripleShares],
    div: &[&[cohort_worker::preprocessing::DivPairShares]],
    expected: &Demand,
) {
    let a = sum(&triples.iter().map(|t| &t.a).collect::<Vec<_>>());
    let b = sum(&triples.iter().map(|t| &t.b).collect::<Vec<_>>());
    let c = sum(&triples.iter().map(|t| &t.c).collect::<Vec<_>>());
    assert_eq!(a.len(), expected.triples);
    for i in 0..a.len() {
        assert_eq!(c[i], a[i].wrapping_mul(b[i]), "triple {i}");
    }
    for (g, &(d, count)) in expected.div_pairs.iter().enumerate() {
        let r = sum(&div.iter().map(|p| &p[g].r).collect::<Vec<_>>());
        let msb = sum(&div.iter().map(|p| &p[g].msb).collect::<Vec<_>>());
        let q = sum(&div.iter().map(|p| &p[g].q).collect::<Vec<_>>());
        assert!(div.iter().all(|p| p[g].divisor == d));
        assert_eq!(r.len(), count);
        for i in 0..count {
            assert_eq!(msb[i], r[i] >> 63, "msb of pair {i}, divisor {d}");
            assert_eq!(q[i], (r[i] & LOW_63) / d, "quotient of pair {i}, divisor {d}");
        }
    }
}

fn deal_and_expand(n: usize, d: &Demand) -> Vec<BatchMaterial> {
    let mut dealer = TrustedDealer::new(n).unwrap();
    let batches = dealer.deal(d).unwrap();
    assert_eq!(batches.len(), n);
    batches.into_iter().enumerate().map(|(i, b)| b.expand(i, n, d).unwrap()).collect()
}

fn check_batch_material(m: &[BatchMaterial], d: &Demand) {
    let ids: Vec<BatchId> = m.iter().map(|x| x.id).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    let t: Vec<_> = m.iter().map(|x| &x.triples).collect();
    let p: Vec<&[_]> = m.iter().map(|x| x.div_pairs.as_slice()).collect();
    check_material(&t, &p, d);
    check_binary(
        &m.iter().map(|x| &x.bit_triples).collect::<Vec<_>>(),
        &m.iter().map(|x| &x.edabits).collect::<Vec<_>>(),
        &m.iter().map(|x| &x.dabits).collect::<Vec<_>>(),
        d,
    );
}

/// [`demand`] with the binary kinds too.
fn mixed(triples: usize, pairs: usize, words: usize, edabits: usize, dabits: usize) -> Demand {
    Demand { bit_triple_words: words, edabits, dabits, ..demand(triples, pairs) }
}

/// Bit triples, edaBits and daBits reconstruct to their definitions for 2,
/// 3 and 5 parties, alone, mixed with arithmetic kinds, at word and
/// dealer-chunk boundaries (16,384 elements per chunk).
#[test]
fn dealt_binary_material_reconstructs_for_2_3_5_parties() {
    for n in [2, 3, 5] {
        for d in [
            mixed(0, 0, 1, 0, 0),
            mixed(0, 0, 0, 1, 0),
            mixed(0, 0, 0, 0, 1),
            mixed(3, 2, 5, 63, 65),
            mixed(0, 0, 40, 64, 64),
            mixed(1, 1, 16 * 1024 + 3, 16 * 1024 + 1, 16 * 1024 + 65),
        ] {
            let m = deal_and_expand(n, &d);
            check_batch_material(&m, &d);
        }
    }
}

/// The seed compression of the binary kinds: the first parties' batches
/// stay a seed; the last party's carries one word per 64 bit triples, per
/// edaBit and per daBit.
#[test]
fn binary_kinds_compress_to_seeds_and_one_word_per_item() {
    let d = mixed(0, 0, 10, 20, 30);
    let batches = TrustedDealer::new(3).unwrap().deal(&d).unwrap();
    let head = WIRE_HEADER_BYTES + 24 + 16;
    assert_eq!(batches[0].to_bytes().len(), head);
    assert_eq!(batches[1].to_bytes().len(), head);
    assert_eq!(batches[2].to_bytes().len(), head + 8 * (10 + 20 + 30));
}

#[test]
fn dealt_material_reconstructs_for_2_3_5_parties() {
    for n in [2, 3, 5] {
        for d in [
            demand(7, 5),
            demand(1, 1),
            Demand { triples: 33, div_pairs: vec![], ..Default::default() },
            Demand::default(),
        ] {
            check_batch_material(&deal_and_expand(n, &d), &d);
        }
    }
}

#[test]
fn large_batches_reconstruct() {
    for n in [2, 3, 5] {
        let d = demand(100_000, 100_000);
        check_batch_material(&deal_and_expand(n, &d), &d);
    }
}

#[test]
fn zero_count_demand_gives_empty_batches() {
    let mut dealer = TrustedDealer::new(3).unwrap();
    let batches = dealer.deal(&Demand::default()).unwrap();
    for (i, b) in batches.into_iter().enumerate() {
        assert_eq!(b.to_bytes().len(), WIRE_HEADER_BYTES + 16);
        let m = b.expand(i, 3, &Demand::default()).unwrap();
        assert!(m.triples.a.is_empty() && m.triples.c.is_empty() && m.div_pairs.is_empty());
    }
}

#[test]
fn seed_compression_sizes() {
    // n-1 parties get header + seed; the last gets 8 bytes per triple and
    // 16 per division pair on top.
    let d = Demand { triples: 1000, div_pairs: vec![(1 << 16, 300)], ..Default::default() };
    let mut dealer = TrustedDealer::new(5).unwrap();
    let batches = dealer.deal(&d).unwrap();
    let base = WIRE_HEADER_BYTES + 16 + 16;
    for b in &batches[..4] {
        assert!(!b.has_corrections());
        assert_eq!(b.to_bytes().len(), base);
    }
    assert!(batches[4].has_corrections());
    assert_eq!(batches[4].to_bytes().len(), base + 8 * 1000 + 16 * 300);
}

#[test]
fn shares_of_the_first_parties_look_uniform() {
    // A coarse check that every component is pseudorandom (not, say, zero):
    // low bits of each party's msb shares are balanced.
    let d = Demand { triples: 0, div_pairs: vec![(2, 4096)], ..Default::default() };
    let m = deal_and_expand(3, &d);
    for p in &m {
        let ones: usize = p.div_pairs[0].msb.expose().iter().map(|x| (x & 1) as usize).sum();
        assert!((1700..2400).contains(&ones), "{ones}");
    }
}

#[test]
fn expand_checks_shape_and_recipient() {
    let d = demand(4, 2);
    let mut dealer = TrustedDealer::new(3).unwrap();
    let batches = dealer.deal(&d).unwrap();
    let mismatch = |r: Result<BatchMaterial, PreprocessingError>| matches!(r, Err(PreprocessingError::Mismatch(_)));
    assert!(mismatch(batches[0].clone().expand(1, 3, &d)), "wrong party");
    assert!(mismatch(batches[0].clone().expand(0, 4, &d)), "wrong party count");
    assert!(mismatch(batches[0].clone().expand(0, 3, &demand(5, 2))), "wrong triple count");
    assert!(mismatch(batches[0].clone().expand(0, 3, &demand(4, 3))), "wrong pair count");
    let other_divisor = Demand { triples: 4, div_pairs: vec![(7, 2)], ..Default::default() };
    assert!(mismatch(batches[2].clone().expand(2, 3, &other_divisor)), "wrong divisor");
    assert!(batches[2].clone().expand(2, 3, &d).is_ok());
}

#[test]
fn batch_ids_are_sequential_within_a_session_and_display_as_hex() {
    let mut dealer = TrustedDealer::new(2).unwrap();
    let first = dealer.deal(&demand(1, 1)).unwrap();
    let second = dealer.deal(&demand(1, 1)).unwrap();
    assert_eq!(first[0].id().seq, 0);
    assert_eq!(second[1].id().seq, 1);
    assert_eq!(first[0].id().session, dealer.session());
    assert_eq!(dealer.batches_dealt(), 2);
    let id = BatchId { session: [0xab; 16], seq: 0x1f };
    assert_eq!(id.to_string(), format!("{}:000000000000001f", "ab".repeat(16)));
    let other = TrustedDealer::new(2).unwrap();
    assert_ne!(other.session(), dealer.session());
}

#[test]
fn wire_round_trip() {
    for n in [2, 3, 5] {
        let d = demand(50, 20);
        let mut dealer = TrustedDealer::new(n).unwrap();
        let batches = dealer.deal(&d).unwrap();
        let decoded: Vec<DealerBatch> =
            batches.iter().map(|b| DealerBatch::from_bytes(&b.to_bytes()).unwrap()).collect();
        for (b, x) in batches.iter().zip(&decoded) {
            assert_eq!(b.to_bytes().to_vec(), x.to_bytes().to_vec());
            assert_eq!(b.id(), x.id());
            assert_eq!(b.party(), x.party());
            assert_eq!(b.parties(), x.parties());
            assert_eq!(b.shape(), x.shape());
        }
        let m: Vec<BatchMaterial> = decoded.into_iter().enumerate().map(|(i, b)| b.expand(i, n, &d).unwrap()).collect();
        check_batch_material(&m, &d);
    }
}

/// Batches with binary kinds travel as version 2, batches without as
/// version 1, byte for byte as before the binary kinds (so old workers and
/// dealers keep working for jobs without them); both round-trip.
#[test]
fn wire_round_trip_with_binary_kinds_and_versions() {
    for n in [2, 3, 5] {
        let d = mixed(7, 3, 9, 70, 130);
        let mut dealer = TrustedDealer::new(n).unwrap();
        let batches = dealer.deal(&d).unwrap();
        let decoded: Vec<DealerBatch> =
            batches.iter().map(|b| DealerBatch::from_bytes(&b.to_bytes()).unwrap()).collect();
        for (b, x) in batches.iter().zip(&decoded) {
            let bytes = b.to_bytes();
            assert_eq!(bytes[4], WIRE_VERSION);
            assert_eq!(bytes.to_vec(), x.to_bytes().to_vec());
            assert_eq!(b.shape(), x.shape());
        }
        let m: Vec<BatchMaterial> = decoded.into_iter().enumerate().map(|(i, b)| b.expand(i, n, &d).unwrap()).collect();
        check_batch_material(&m, &d);
        let arithmetic = dealer.deal(&demand(4, 2)).unwrap();
        assert!(arithmetic.iter().all(|b| b.to_bytes()[4] == WIRE_VERSION_ARITHMETIC));
    }
}

/// Strict decoding of version 2: every truncation and extension, a
/// version-2 header without binary kinds (version 1 encodes that), a
/// version-1 header on a binary batch, counts beyond the batch bound, and
/// corrections one word short are all refused.
#[test]
fn wire_refuses_malformed_binary_batches() {
    let d = mixed(2, 1, 3, 4, 5);
    let batches = TrustedDealer::new(3).unwrap().deal(&d).unwrap();
    let malformed = |bytes: &[u8]| matches!(DealerBatch::from_bytes(bytes), Err(PreprocessingError::Malformed(_)));
    for b in &batches {
        let bytes = b.to_bytes();
        for cut in 0..bytes.len() {
            assert!(malformed(&bytes[..cut]), "cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[0; 8]);
        assert!(malformed(&longer));
        let mut as_v1 = bytes.to_vec();
        as_v1[4] = WIRE_VERSION_ARITHMETIC;
        assert!(malformed(&as_v1));
    }
    // The binary counts sit after the one divisor group.
    let counts = WIRE_HEADER_BYTES + 16;
    let first = batches[0].to_bytes().to_vec();
    let mut no_binary = first.clone();
    no_binary[counts..counts + 24].fill(0);
    assert!(malformed(&no_binary));
    let mut huge = first.clone();
    huge[counts + 8..counts + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(malformed(&huge));
    let mut too_many = first.clone();
    too_many[counts + 16..counts + 24].copy_from_slice(&(1u64 << 24).to_le_bytes());
    assert!(malformed(&too_many));
    // The arithmetic form refuses a version-2 header too.
    let mut arithmetic = TrustedDealer::new(2).unwrap().deal(&demand(1, 0)).unwrap()[0].to_bytes().to_vec();
    arithmetic[4] = WIRE_VERSION;
    assert!(malformed(&arithmetic));
    arithmetic[4] = 3;
    assert!(malformed(&arithmetic));
}

#[test]
fn wire_rejects_garbage_with_malformed() {
    let mut dealer = TrustedDealer::new(3).unwrap();
    let batches = dealer.deal(&demand(3, 2)).unwrap();
    let malformed = |bytes: &[u8]| matches!(DealerBatch::from_bytes(bytes), Err(PreprocessingError::Malformed(_)));
    assert!(malformed(b""));
    assert!(malformed(b"CHDB"));
    let good = batches[0].to_bytes().to_vec();
    let mut bad_version = good.clone();
    bad_version[4] = 3;
    assert!(malformed(&bad_version));
    let mut party_out_of_range = good.clone();
    party_out_of_range[10..14].copy_from_slice(&3u32.to_le_bytes());
    assert!(malformed(&party_out_of_range));
    // Claiming to be the last party without corrections.
    let mut last_without_corrections = good.clone();
    last_without_corrections[10..14].copy_from_slice(&2u32.to_le_bytes());
    assert!(malformed(&last_without_corrections));
    // Divisors out of order.
    let mut swapped = good.clone();
    let g = WIRE_HEADER_BYTES;
    let (first, second) = (swapped[g..g + 16].to_vec(), swapped[g + 16..g + 32].to_vec());
    swapped[g..g + 16].copy_from_slice(&second);
    swapped[g + 16..g + 32].copy_from_slice(&first);
    assert!(malformed(&swapped));
    // A huge triple count on a seed-only batch.
    let mut huge = good.clone();
    huge[38..46].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(malformed(&huge));
    // Corrections that are one element short.
    let last = batches[2].to_bytes();
    assert!(malformed(&last[..last.len() - 8]));
}

#[test]
fn debug_never_prints_seeds_or_corrections() {
    let mut dealer = TrustedDealer::new(2).unwrap();
    let d = Demand { triples: 3, div_pairs: vec![(3, 2)], ..Default::default() };
    let batches = dealer.deal(&d).unwrap();
    for b in &batches {
        let text = format!("{b:?} {b:#?} {dealer:?}");
        let bytes = b.to_bytes();
        let seed = &bytes[WIRE_HEADER_BYTES + 16..WIRE_HEADER_BYTES + 32];
        let hex: String = seed.iter().map(|x| format!("{x:02x}")).collect();
        assert!(!text.contains(&hex), "{text}");
        assert!(!text.contains(&format!("{seed:?}")), "{text}");
        assert!(text.contains("redacted"), "{text}");
        // Every correction value (and the seed as two words).
        let mut secrets: Vec<u64> = bytes[WIRE_HEADER_BYTES + 32..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        secrets.push(u64::from_le_bytes(seed[..8].try_into().unwrap()));
        secrets.push(u64::from_le_bytes(seed[8..].try_into().unwrap()));
        for x in secrets.into_iter().filter(|&x| x > 1 << 20) {
            assert!(!text.contains(&x.to_string()) && !text.contains(&format!("{x:x}")), "{text}");
        }
    }
}

// --- streaming ---------------------------------------------------------

/// Every party consumes the plan in its own task, as in a real run: the
/// dealer moves in lockstep with bounded buffers, so reading one party's
/// whole layer before the others' could wait forever.
async fn collect_layers(sources: &mut Vec<DealerSource>, plan: &MaterialPlan) -> Vec<Vec<LayerMaterial>> {
    let tasks: Vec<_> = sources
        .drain(..)
        .map(|mut s| {
            let plan = plan.clone();
            tokio::spawn(async move {
                let mut layers = Vec::new();
                for (layer, d) in plan.layers.iter().enumerate() {
                    layers.push(s.next_layer(layer, d).await.unwrap());
                }
                (s, layers)
            })
        })
        .collect();
    let mut per_party = Vec::new();
    for t in tasks {
        let (s, layers) = t.await.unwrap();
        sources.push(s);
        per_party.push(layers);
    }
    // Transpose to per layer, per party.
    let mut out: Vec<Vec<LayerMaterial>> = (0..plan.layers.len()).map(|_| Vec::new()).collect();
    for layers in per_party {
        for (l, m) in layers.into_iter().enumerate() {
            out[l].push(m);
        }
    }
    out
}

fn check_layer(m: &[LayerMaterial], d: &Demand) {
    assert!(m.windows(2).all(|w| w[0].tag == w[1].tag), "tags differ across parties");
    let t: Vec<_> = m.iter().map(|x| &x.triples).collect();
    let p: Vec<&[_]> = m.iter().map(|x| x.div_pairs.as_slice()).collect();
    check_material(&t, &p, d);
    check_binary(
        &m.iter().map(|x| &x.bit_triples).collect::<Vec<_>>(),
        &m.iter().map(|x| &x.edabits).collect::<Vec<_>>(),
        &m.iter().map(|x| &x.dabits).collect::<Vec<_>>(),
        d,
    );
}

/// Layers with binary kinds assembled from many batches: a layer's bit
/// triples, edaBits and daBits straddle batch boundaries (daBits at bit
/// offsets that are not multiples of 64), and arithmetic-only layers keep
/// empty binary fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dealer_assembles_binary_layers_from_several_batches() {
    for n in [2, 3, 5] {
        let plan = MaterialPlan {
            layers: vec![
                mixed(10, 5, 300, 250, 333),
                demand(4, 0),
                mixed(0, 0, 0, 0, 77),
                mixed(0, 0, 7, 0, 0),
                Demand::default(),
            ],
        };
        // 100 items per batch: layer 0 spans 10 batches.
        let mut sources = spawn_local_dealer(plan.clone(), n, 100);
        let layers = collect_layers(&mut sources, &plan).await;
        for (m, d) in layers.iter().zip(&plan.layers) {
            check_layer(m, d);
        }
        assert!(!layers[1][0].has_binary());
        assert_eq!(sources[0].consumed_batches(), 10 + 1 + 1 + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dealer_streams_layers_from_several_batches() {
    for n in [2, 3, 5] {
        let plan = MaterialPlan {
            layers: vec![
                demand(2500, 700),
                Demand::default(),
                Demand { triples: 0, div_pairs: vec![(1 << 16, 1001)], ..Default::default() },
                Demand { triples: 1, div_pairs: vec![], ..Default::default() },
            ],
        };
        // 1000 items per batch: layer 0 (6000 items) spans 6 batches, and
        // its triples and pairs straddle batch boundaries.
        let mut sources = spawn_local_dealer(plan.clone(), n, 1000);
        assert_eq!(sources.len(), n);
        let layers = collect_layers(&mut sources, &plan).await;
        for (m, d) in layers.iter().zip(&plan.layers) {
            check_layer(m, d);
        }
        let tags: Vec<MaterialTag> = layers.iter().map(|m| m[0].tag).collect();
        for i in 0..tags.len() {
            for j in 0..i {
                assert_ne!(tags[i], tags[j]);
            }
        }
        assert_eq!(sources[0].consumed_batches(), 6 + 2 + 1);
        // The plan is used up: the dealer finished and closed the streams.
        let more = sources[0].next_layer(plan.layers.len(), &demand(1, 0)).await;
        assert!(matches!(more, Err(PreprocessingError::Exhausted(_))), "{more:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_of_a_million_triples_arrives_in_batches() {
    let plan = MaterialPlan {
        layers: vec![Demand { triples: 1_000_000, div_pairs: vec![(1 << 16, 1000)], ..Default::default() }],
    };
    let mut sources = spawn_local_dealer(plan.clone(), 3, 1 << 18);
    let layers = collect_layers(&mut sources, &plan).await;
    check_layer(&layers[0], &plan.layers[0]);
    assert_eq!(sources[2].consumed_batches(), 4);
}

#[tokio::test]
async fn tags_differ_across_dealer_sessions() {
    let plan = MaterialPlan { layers: vec![demand(10, 3)] };
    let mut s1 = spawn_local_dealer(plan.clone(), 2, 100);
    let mut s2 = spawn_local_dealer(plan.clone(), 2, 100);
    let a = s1[0].next_layer(0, &plan.layers[0]).await.unwrap();
    let b = s2[1].next_layer(0, &plan.layers[0]).await.unwrap();
    assert_ne!(a.tag, b.tag, "parties fed by different dealers must see different tags");
    // The same holds for two batches of one dealer: a party that is one
    // batch ahead has a different tag.
    let mut dealer = TrustedDealer::new(2).unwrap();
    let (tx0, mut p0) = DealerSource::channel(0, 2, 4);
    let (tx1, mut p1) = DealerSource::channel(1, 2, 4);
    let d = demand(2, 0);
    let first = dealer.deal(&d).unwrap();
    let second = dealer.deal(&d).unwrap();
    tx0.send(Ok(first.into_iter().next().unwrap())).await.unwrap();
    tx1.send(Ok(second.into_iter().nth(1).unwrap())).await.unwrap();
    let m0 = p0.next_layer(0, &d).await.unwrap();
    let m1 = p1.next_layer(0, &d).await.unwrap();
    assert_ne!(m0.tag, m1.tag);
}

#[tokio::test]
async fn a_batch_seen_twice_is_reused_error() {
    let mut dealer = TrustedDealer::new(2).unwrap();
    let d = demand(3, 1);
    let batch = dealer.deal(&d).unwrap().remove(0);
    let (tx, mut source) = DealerSource::channel(0, 2, 4);
    tx.send(Ok(batch.clone())).await.unwrap();
    tx.send(Ok(DealerBatch::from_bytes(&batch.to_bytes()).unwrap())).await.unwrap();
    source.next_layer(0, &d).await.unwrap();
    let again = source.next_layer(1, &d).await;
    match again {
        Err(PreprocessingError::Reused(id)) => assert_eq!(id, batch.id().to_string()),
        other => panic!("expected Reused, got {other:?}"),
    }
    // The source is finished after an error.
    assert!(source.next_layer(2, &d).await.is_err());
}

#[tokio::test]
async fn a_reused_batch_within_one_layer_is_refused() {
    let mut dealer = TrustedDealer::new(2).unwrap();
    let d = demand(3, 0);
    let batch = dealer.deal(&d).unwrap().remove(1);
    let (tx, mut source) = DealerSource::channel(1, 2, 4);
    tx.send(Ok(batch.clone())).await.unwrap();
    tx.send(Ok(batch)).await.unwrap();
    let r = source.next_layer(0, &demand(6, 0)).await;
    assert!(matches!(r, Err(PreprocessingError::Reused(_))), "{r:?}");
}

#[tokio::test]
async fn mismatches_are_errors() {
    let mut dealer = TrustedDealer::new(3).unwrap();
    let d = demand(4, 2);
    let batches = dealer.deal(&d).unwrap();

    // A batch for another party.
    let (tx, mut s) = DealerSource::channel(0, 3, 4);
    tx.send(Ok(batches[1].clone())).await.unwrap();
    assert!(matches!(s.next_layer(0, &d).await, Err(PreprocessingError::Mismatch(_))));

    // A batch bigger than the layer.
    let (tx, mut s) = DealerSource::channel(0, 3, 4);
    tx.send(Ok(batches[0].clone())).await.unwrap();
    assert!(matches!(s.next_layer(0, &demand(3, 2)).await, Err(PreprocessingError::Mismatch(_))));

    // Division pairs for a divisor the layer does not use.
    let (tx, mut s) = DealerSource::channel(0, 3, 4);
    tx.send(Ok(batches[0].clone())).await.unwrap();
    let other = Demand { triples: 4, div_pairs: vec![(7, 100)], ..Default::default() };
    assert!(matches!(s.next_layer(0, &other).await, Err(PreprocessingError::Mismatch(_))));

    // Layers out of order.
    let (_tx, mut s) = DealerSource::channel(0, 3, 4);
    assert!(matches!(s.next_layer(1, &d).await, Err(PreprocessingError::Mismatch(_))));

    // An invalid demand.
    let (_tx, mut s) = DealerSource::channel(0, 3, 4);
    let bad = Demand { triples: 1, div_pairs: vec![(0, 1)], ..Default::default() };
    assert!(matches!(s.next_layer(0, &bad).await, Err(PreprocessingError::Mismatch(_))));

    // Batches from two dealer sessions mixed in one stream.
    let mut other_dealer = TrustedDealer::new(3).unwrap();
    let foreign = other_dealer.deal(&d).unwrap().remove(0);
    let (tx, mut s) = DealerSource::channel(0, 3, 4);
    tx.send(Ok(batches[0].clone())).await.unwrap();
    tx.send(Ok(foreign)).await.unwrap();
    s.next_layer(0, &d).await.unwrap();
    assert!(matches!(s.next_layer(1, &d).await, Err(PreprocessingError::Mismatch(_))));
}

#[tokio::test]
async fn closed_stream_is_exhausted_and_dealer_errors_are_forwarded() {
    let mut dealer = TrustedDealer::new(2).unwrap();
    let d = demand(4, 0);
    let batch = dealer.deal(&demand(2, 0)).unwrap().remove(0);
    let (tx, mut s) = DealerSource::channel(0, 2, 4);
    tx.send(Ok(batch)).await.unwrap();
    drop(tx);
    // Half a layer, then the stream closes.
    assert!(matches!(s.next_layer(0, &d).await, Err(PreprocessingError::Exhausted(_))));

    // A dealer that cannot deal forwards its error to every party.
    let plan = MaterialPlan { layers: vec![Demand { triples: 1, div_pairs: vec![(0, 1)], ..Default::default() }] };
    let mut sources = spawn_local_dealer(plan, 2, 10);
    for s in &mut sources {
        let r = s.next_layer(0, &Demand { triples: 1, div_pairs: vec![], ..Default::default() }).await;
        assert!(matches!(r, Err(PreprocessingError::Mismatch(_))), "{r:?}");
    }
}

#[tokio::test]
async fn empty_layers_consume_nothing() {
    let plan = MaterialPlan { layers: vec![Demand::default(), demand(5, 1), Demand::default()] };
    let mut sources = spawn_local_dealer(plan.clone(), 3, 1000);
    let layers = collect_layers(&mut sources, &plan).await;
    for (m, d) in layers.iter().zip(&plan.layers) {
        check_layer(m, d);
    }
    assert_eq!(sources[1].consumed_batches(), 1);
}

#[tokio::test]
async fn dropping_a_source_stops_the_dealer() {
    let plan = MaterialPlan { layers: (0..100).map(|_| demand(1000, 0)).collect() };
    let mut sources = spawn_local_dealer(plan.clone(), 2, 1000);
    drop(sources.pop());
    // The remaining party gets what was buffered, then Exhausted (never hangs).
    let mut err = None;
    for (layer, d) in plan.layers.iter().enumerate() {
        if let Err(e) = sources[0].next_layer(layer, d).await {
            err = Some(e);
            break;
        }
    }
    assert!(matches!(err, Some(PreprocessingError::Exhausted(_))), "{err:?}");
}

#[test]
fn split_demand_respects_the_batch_size() {
    let d = demand(2500, 700);
    let pieces = split_demand(&d, 1000);
    assert_eq!(pieces.len(), 6);
    assert_eq!(pieces[0], Demand { triples: 1000, div_pairs: vec![], ..Default::default() });
    assert_eq!(pieces[2], Demand { triples: 500, div_pairs: vec![(1, 500)], ..Default::default() });
    assert!(split_demand(&Demand::default(), 10).is_empty());
    let pieces = split_demand(&mixed(1, 0, 3, 2, 5), 4);
    assert_eq!(pieces.len(), 3);
    assert_eq!(pieces[0], Demand { triples: 1, bit_triple_words: 3, ..Default::default() });
    assert_eq!(pieces[1], Demand { edabits: 2, dabits: 2, ..Default::default() });
    assert_eq!(pieces[2], Demand { dabits: 3, ..Default::default() });
}
