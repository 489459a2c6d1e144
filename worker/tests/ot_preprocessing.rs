//! OT-based preprocessing among real parties: every party runs its
//! `OtGenerator` in its own task over a real mTLS mesh on loopback, and the
//! material is checked against its definition after reconstruction.

mod common;

use cohort_worker::preprocessing::MaterialSource;
use cohort_worker::preprocessing::ot::{OtGenerator, generate_with};
use cohort_worker::preprocessing::{DivPairShares, TripleShares};
use cohort_worker::transport::Mesh;
use std::collections::HashSet;

fn sum(shares: &[&[u64]]) -> Vec<u64> {
    let mut out = vec![0u64; shares[0].len()];
    for s in shares {
        assert_eq!(s.len(), out.len());
        for (o, x) in out.iter_mut().zip(s.iter()) {
            *o = o.wrapping_add(*x);
        }
    }
    out
}

/// Each party sets up its generator and runs `work` on it.
async fn run_parties<T: Send + 'static>(
    parties: usize,
    work: impl Fn(OtGenerator, Mesh) -> futures::future::BoxFuture<'static, (T, Mesh)> + Send + Sync + 'static,
) -> Vec<T> {
    let work = std::sync::Arc::new(work);
    common::each_party(parties, move |mesh| {
        let work = work.clone();
        Box::pin(async move {
            let generator = OtGenerator::setup(&mesh).await.expect("base OTs");
            work(generator, mesh).await
        })
    })
    .await
}

/// A sample is not constant and has no repeated value (64-bit uniform
/// values repeat with negligible probability), and its bits are balanced.
/// Generate `plan` whole with the job's peers and take its layers in order.
async fn generate_layers(
    generator: &mut OtGenerator,
    mesh: &Mesh,
    plan: &cohort_worker::preprocessing::MaterialPlan,
) -> Vec<cohort_worker::preprocessing::LayerMaterial> {
    let mut material = generate_with(generator, mesh, mesh.job(), plan).await.expect("material");
    let mut layers = Vec::new();
    for (index, demand) in plan.layers.iter().enumerate() {
        layers.push(material.next_layer(index, demand).await.expect("layer"));
    }
    layers
}

fn looks_uniform(values: &[u64], what: &str) {
    let distinct: HashSet<u64> = values.iter().copied().collect();
    assert_eq!(distinct.len(), values.len(), "{what}: a repeated value");
    let ones: u64 = values.iter().map(|v| u64::from(v.count_ones())).sum();
    let fraction = ones as f64 / (64 * values.len()) as f64;
    assert!((fraction - 0.5).abs() < 0.01, "{what}: {fraction} of the bits are set");
}

async fn check_triples(parties: usize, batches: &[usize]) {
    let sizes = batches.to_vec();
    let results: Vec<Vec<TripleShares>> = run_parties(parties, move |mut generator, mesh| {
        let sizes = sizes.clone();
        Box::pin(async move {
            let mut out = Vec::new();
            for n in sizes {
                out.push(generator.triples(&mesh, n).await.expect("triples"));
            }
            (out, mesh)
        })
    })
    .await;
    let mut all_a = Vec::new();
    for (batch, &n) in batches.iter().enumerate() {
        let parts: Vec<&TripleShares> = results.iter().map(|r| &r[batch]).collect();
        let a = sum(&parts.iter().map(|t| t.a.expose()).collect::<Vec<_>>());
        let b = sum(&parts.iter().map(|t| t.b.expose()).collect::<Vec<_>>());
        let c = sum(&parts.iter().map(|t| t.c.expose()).collect::<Vec<_>>());
        assert_eq!(a.len(), n);
        for i in 0..n {
            assert_eq!(c[i], a[i].wrapping_mul(b[i]), "{parties} parties, batch {batch}, triple {i}");
        }
        // Every party's share of c differs from the product (no party holds
        // the whole value).
        for p in &parts {
            assert!(p.c.expose().iter().zip(&c).filter(|(s, c)| s == c).count() <= 1);
        }
        all_a.extend(a);
        if n >= 1000 {
            looks_uniform(&b, "b");
            looks_uniform(&c, "c");
        }
    }
    // No triple is ever reused, within or across batches.
    looks_uniform(&all_a, "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triples_satisfy_c_equals_a_times_b_for_two_parties() {
    check_triples(2, &[1, 63, 8192, 20_000]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triples_satisfy_c_equals_a_times_b_for_three_parties() {
    check_triples(3, &[5000, 1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triples_satisfy_c_equals_a_times_b_for_five_parties() {
    check_triples(5, &[3000]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bits_and_division_pairs_match_their_definitions() {
    for parties in [2, 3, 5] {
        let results: Vec<(Vec<u64>, DivPairShares, DivPairShares)> = run_parties(parties, |mut generator, mesh| {
            Box::pin(async move {
                let bits = generator.random_bits(&mesh, 4000).await.expect("bits").expose().to_vec();
                let trunc = generator.div_pairs(&mesh, 1 << 16, 700).await.expect("pairs");
                let one = generator.div_pairs(&mesh, 1, 300).await.expect("pairs");
                ((bits, trunc, one), mesh)
            })
        })
        .await;
        let bits = sum(&results.iter().map(|r| r.0.as_slice()).collect::<Vec<_>>());
        assert!(bits.iter().all(|b| *b <= 1), "{parties} parties: a shared bit is not 0 or 1");
        let ones = bits.iter().sum::<u64>() as f64 / bits.len() as f64;
        assert!((ones - 0.5).abs() < 0.05, "{parties} parties: {ones} of the bits are 1");
        for (which, divisor) in [(1usize, 1u64 << 16), (2, 1)] {
            let pairs: Vec<&DivPairShares> = results.iter().map(|r| if which == 1 { &r.1 } else { &r.2 }).collect();
            assert!(pairs.iter().all(|p| p.divisor == divisor));
            let r = sum(&pairs.iter().map(|p| p.r.expose()).collect::<Vec<_>>());
            let m = sum(&pairs.iter().map(|p| p.msb.expose()).collect::<Vec<_>>());
            let q = sum(&pairs.iter().map(|p| p.q.expose()).collect::<Vec<_>>());
            for i in 0..r.len() {
                assert_eq!(m[i], r[i] >> 63, "{parties} parties, d = {divisor}, pair {i}: msb");
                assert_eq!(q[i], (r[i] & ((1 << 63) - 1)) / divisor, "{parties} parties, d = {divisor}, pair {i}: q");
            }
            looks_uniform(&r, "r");
        }
    }
}

/// Divisors that are not powers of two (and a few that are), across the
/// range: generated pairs meet the linear-quotient definition
/// (`protocol::additive::division`), checked after reconstruction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn division_pairs_for_every_divisor_match_their_definition() {
    use cohort_worker::preprocessing::{Demand, MaterialPlan};
    const DIVISORS: [u64; 10] =
        [3, 7, 50, 1000, 99_999, 1 << 16, (1 << 16) * 1000, (1 << 40) + 1, (1 << 62) - 1, 1 << 62];
    let plan = MaterialPlan {
        layers: vec![
            Demand { triples: 2, div_pairs: DIVISORS.iter().map(|d| (*d, 150)).collect(), ..Default::default() },
            Demand { triples: 0, div_pairs: vec![(3, 0), (1 << 38, 5)], ..Default::default() },
        ],
    };
    for parties in [2, 3] {
        let p = plan.clone();
        let layers = run_parties(parties, move |mut generator, mesh| {
            let plan = p.clone();
            Box::pin(async move {
                let layers = generate_layers(&mut generator, &mesh, &plan).await;
                (layers, mesh)
            })
        })
        .await;
        common::material::check_plan(&layers, &plan);
        let mut all_r = Vec::new();
        for (g, d) in DIVISORS.iter().enumerate() {
            all_r.extend(common::material::sum(&layers.iter().map(|l| &l[0].div_pairs[g].r).collect::<Vec<_>>()));
            assert_eq!(layers[0][0].div_pairs[g].g.is_empty(), d.is_power_of_two(), "g for {d}");
        }
        looks_uniform(&all_r, "r");
    }
}

/// Item 8 of issue 15: a ten-layer plan costs the same preprocessing
/// message exchanges as a one-layer plan with the same amounts (one call
/// per layer made them grow with depth).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_plan_takes_no_more_preprocessing_exchanges_than_a_shallow_one() {
    use cohort_worker::preprocessing::{Demand, MaterialPlan};
    let shallow = MaterialPlan {
        layers: vec![Demand { triples: 30, div_pairs: vec![(3, 20), (1 << 16, 10)], ..Default::default() }],
    };
    let deep = MaterialPlan {
        layers: vec![Demand { triples: 3, div_pairs: vec![(3, 2), (1 << 16, 1)], ..Default::default() }; 10],
    };
    let used = [messages_for(3, &shallow).await, messages_for(3, &deep).await];
    assert_eq!(used[0], used[1], "one layer took {} message numbers, ten layers {}", used[0], used[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_parties_fill_their_stores_with_agreed_batches_that_reconstruct() {
    use cohort_worker::preprocessing::pool::{FillRequest, fill};
    use cohort_worker::preprocessing::store::{Store, StoredKind, StoredMaterial};
    use std::sync::{Arc, Mutex};

    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let paths: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.path().to_path_buf()).collect();
    let paths_for_parties = paths.clone();
    let ids = run_parties(3, move |mut generator, mesh| {
        let dir = paths_for_parties[mesh.self_index()].clone();
        Box::pin(async move {
            let store = Arc::new(Mutex::new(Store::open(&dir).expect("store")));
            let mut ids = Vec::new();
            for request in [
                FillRequest { kind: StoredKind::Triples, per_batch: 1000, batches: 2, first_seq: 0 },
                FillRequest { kind: StoredKind::DivPairs { divisor: 256 }, per_batch: 50, batches: 1, first_seq: 2 },
            ] {
                ids.extend(fill(&mut generator, &mesh, &store, "local", request, |_| {}).await.expect("fill"));
            }
            (ids, mesh)
        })
    })
    .await;
    assert!(ids.iter().all(|i| i == &ids[0]), "every party names the batches alike");
    // Reopen every store from disk, as a restarted worker would.
    let mut stores: Vec<Store> = paths.iter().map(|p| Store::open(p).expect("reopen")).collect();
    for id in &ids[0] {
        let metas: Vec<_> = stores.iter().map(|s| s.get(*id).expect("stored at every party").clone()).collect();
        assert!(metas.iter().all(|m| m.digest() == metas[0].digest()), "the digests agree");
        assert_eq!(metas.iter().map(|m| m.party).collect::<Vec<_>>(), [0, 1, 2]);
        let digest = metas[0].digest();
        let material: Vec<StoredMaterial> =
            stores.iter_mut().map(|s| s.consume(*id, &digest).expect("consume")).collect();
        match &material[0] {
            StoredMaterial::Triples(_) => {
                let part = |f: fn(&TripleShares) -> &[u64]| {
                    sum(&material
                        .iter()
                        .map(|m| match m {
                            StoredMaterial::Triples(t) => f(t),
                            _ => panic!("kinds differ"),
                        })
                        .collect::<Vec<_>>())
                };
                let (a, b, c) = (part(|t| t.a.expose()), part(|t| t.b.expose()), part(|t| t.c.expose()));
                assert!(a.iter().zip(&b).zip(&c).all(|((a, b), c)| *c == a.wrapping_mul(*b)));
            }
            StoredMaterial::DivPairs(_) => {
                let pairs: Vec<&DivPairShares> = material
                    .iter()
                    .map(|m| match m {
                        StoredMaterial::DivPairs(d) => d,
                        _ => panic!("kinds differ"),
                    })
                    .collect();
                let r = sum(&pairs.iter().map(|p| p.r.expose()).collect::<Vec<_>>());
                let q = sum(&pairs.iter().map(|p| p.q.expose()).collect::<Vec<_>>());
                assert!(r.iter().zip(&q).all(|(r, q)| *q == (r & ((1 << 63) - 1)) / 256));
            }
            // Only triples and pairs are filled here; the binary kinds'
            // round trip is `tests/pool.rs`.
            _ => panic!("an unfilled kind"),
        }
        for s in &mut stores {
            assert!(s.consume(*id, &digest).is_err(), "a consumed batch is never used again");
        }
    }
}

/// Item 9 of issue 15: a peer that goes away while the parties generate
/// material fails the survivors' generation with a typed transport error
/// that names it and the preprocessing step (not a flattened string), and
/// the job built on it reports that party.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_lost_during_generation_is_named_with_its_step() {
    use cohort_worker::executor::JobError;
    use cohort_worker::preprocessing::PreprocessingError;
    use cohort_worker::preprocessing::ot::generate_for_plan;
    use cohort_worker::preprocessing::{Demand, MaterialPlan};
    use cohort_worker::transport::Step;
    let plan =
        MaterialPlan { layers: vec![Demand { triples: 50_000, div_pairs: vec![(50, 1000)], ..Default::default() }] };
    let results = common::each_party(3, move |mesh| {
        let plan = plan.clone();
        Box::pin(async move {
            let me = mesh.self_index();
            if me == 2 {
                // Take part in the base OTs, then leave.
                let generator = OtGenerator::setup(&mesh).await;
                drop(generator);
                return (None, mesh);
            }
            let job = mesh.job();
            let err = generate_for_plan(&mesh, job, &plan).await.expect_err("a peer left");
            (Some(err), mesh)
        })
    })
    .await;
    for err in results.into_iter().flatten() {
        let PreprocessingError::Transport(t) = &err else { panic!("not a transport error: {err}") };
        assert_eq!(t.peer.as_deref(), Some("party-2"), "{err}");
        assert!(matches!(t.step, Step::Preprocess(_)), "{err}");
        // The executor keeps it a transport error (what the service's
        // failure classification names the party from).
        let job: Result<(), JobError> = Err(PreprocessingError::Transport(t.clone()))
            .map_err(|e| cohort_worker::executor::run::preprocessing_failed(Step::Setup, e));
        match job {
            Err(JobError::Transport(t)) => assert_eq!(t.peer.as_deref(), Some("party-2")),
            other => panic!("{other:?}"),
        }
    }
}

/// The binary kinds (issue 16): bit triples from random OTs, daBits and
/// edaBits from shared random bits, generated through `generate_with` and
/// cut into layers, reconstruct to their definitions for 2 and 3 parties —
/// at word boundaries, mixed with arithmetic kinds, and with the bit
/// triples spanning several pipeline chunks (4096 words each).
async fn check_binary_generation(parties: usize, big_words: usize) {
    use cohort_worker::preprocessing::{Demand, MaterialPlan};
    let plan = MaterialPlan {
        layers: vec![
            Demand { triples: 5, bit_triple_words: 1, edabits: 1, dabits: 1, ..Default::default() },
            Demand { bit_triple_words: big_words, edabits: 130, dabits: 63, ..Default::default() },
            Demand { triples: 3, div_pairs: vec![(1 << 16, 4)], ..Default::default() },
            Demand { edabits: 64, dabits: 2000, ..Default::default() },
            Demand { bit_triple_words: 17, ..Default::default() },
        ],
    };
    let p = plan.clone();
    let layers = run_parties(parties, move |mut generator, mesh| {
        let plan = p.clone();
        Box::pin(async move {
            let layers = generate_layers(&mut generator, &mesh, &plan).await;
            (layers, mesh)
        })
    })
    .await;
    common::material::check_plan(&layers, &plan);
    assert!(!layers[0][2].has_binary());
    // No party holds the triples' c alone.
    let c: Vec<u64> = layers[0][1].bit_triples.c.words().to_vec();
    let total = common::material::xor(&layers.iter().map(|l| &l[1].bit_triples.c).collect::<Vec<_>>());
    assert_ne!(c, total.words().to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_material_matches_its_definitions_for_two_parties() {
    check_binary_generation(2, 2 * cohort_worker::preprocessing::ot::BIT_WORDS_PER_CHUNK + 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_material_matches_its_definitions_for_three_parties() {
    check_binary_generation(3, cohort_worker::preprocessing::ot::BIT_WORDS_PER_CHUNK + 1).await;
}

/// The generator's own calls, outside a plan: bit triples in one call and
/// edaBits and daBits, for 2, 3 and 5 parties (5 exercises the corrections
/// towards several peers; the edaBits' bits span two correlated-OT
/// chunks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_calls_for_binary_kinds_match_their_definitions() {
    use cohort_worker::preprocessing::{BitTripleShares, DaBitShares, Demand, EdaBitShares};
    for parties in [2, 3, 5] {
        let results: Vec<(BitTripleShares, EdaBitShares, DaBitShares)> = run_parties(parties, |mut generator, mesh| {
            Box::pin(async move {
                let t = generator.bit_triples(&mesh, 40).await.expect("bit triples");
                // 134,400 random bits: more than one correlated-OT chunk.
                let e = generator.edabits(&mesh, 2100).await.expect("edaBits");
                let d = generator.dabits(&mesh, 1001).await.expect("daBits");
                ((t, e, d), mesh)
            })
        })
        .await;
        let demand = Demand { bit_triple_words: 40, edabits: 2100, dabits: 1001, ..Default::default() };
        common::material::check_binary(
            &results.iter().map(|r| &r.0).collect::<Vec<_>>(),
            &results.iter().map(|r| &r.1).collect::<Vec<_>>(),
            &results.iter().map(|r| &r.2).collect::<Vec<_>>(),
            &demand,
        );
    }
}

/// Binary kinds keep the number of exchanges independent of depth: a
/// twelve-layer plan of comparisons-like layers takes exactly the message
/// numbers of one layer with the same amounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_plan_with_binary_kinds_takes_no_more_exchanges_than_a_shallow_one() {
    use cohort_worker::preprocessing::{Demand, MaterialPlan};
    let layer = Demand { triples: 2, bit_triple_words: 5, edabits: 3, dabits: 7, ..Default::default() };
    let shallow = MaterialPlan {
        layers: vec![Demand { triples: 24, bit_triple_words: 60, edabits: 36, dabits: 84, ..Default::default() }],
    };
    let deep = MaterialPlan { layers: vec![layer; 12] };
    for parties in [2, 3] {
        let used = [messages_for(parties, &shallow).await, messages_for(parties, &deep).await];
        assert_eq!(
            used[0], used[1],
            "{parties} parties: one layer took {} message numbers, twelve {}",
            used[0], used[1]
        );
    }
}

/// Generate `plan` among `parties` parties, check the material against the
/// plan, and return the message numbers the generation used (equal at
/// every party).
async fn messages_for(parties: usize, plan: &cohort_worker::preprocessing::MaterialPlan) -> u32 {
    let p = plan.clone();
    let results = run_parties(parties, move |mut generator, mesh| {
        let plan = p.clone();
        Box::pin(async move {
            let layers = generate_layers(&mut generator, &mesh, &plan).await;
            ((generator.messages_used(), layers), mesh)
        })
    })
    .await;
    let counts: Vec<u32> = results.iter().map(|r| r.0).collect();
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "parties disagree on the message count: {counts:?}");
    let layers: Vec<_> = results.into_iter().map(|r| r.1).collect();
    common::material::check_plan(&layers, plan);
    counts[0]
}
