//! Jobs taking material from the parties' pools (`preprocessing::pool::take`)
//! over real mTLS meshes on loopback, one task per party: the parties agree
//! on the same batches, consume each once, reconstruct valid material, wait
//! when the pool is short, and repair the state a crash leaves (a batch
//! consumed at some parties only is discarded everywhere). A batch held
//! differently is an error, never a wrong answer.

mod common;

use cohort_worker::preprocessing::ot::OtGenerator;
use cohort_worker::preprocessing::pool::{ABSENT_GRACE, FillRequest, Taken, fill, take};
use cohort_worker::preprocessing::store::{Store, StoredKind, StoredMaterial, describe};
use cohort_worker::preprocessing::{
    BatchId, Demand, LayerMaterial, MaterialPlan, MaterialSource, Prefetched, TripleShares,
};
use cohort_worker::sharing::Share;
use cohort_worker::transport::Mesh;
use std::sync::{Arc, Mutex};

const PARTIES: usize = 3;
const DIVISOR: u64 = 1 << 16;

fn names() -> Vec<String> {
    (0..PARTIES).map(|i| format!("party-{i}")).collect()
}

fn sum(parts: &[&[u64]]) -> Vec<u64> {
    let mut out = vec![0u64; parts[0].len()];
    for p in parts {
        for (o, x) in out.iter_mut().zip(p.iter()) {
            *o = o.wrapping_add(*x);
        }
    }
    out
}

struct Stores {
    _dirs: Vec<tempfile::TempDir>,
    stores: Vec<Arc<Mutex<Store>>>,
}

fn open_stores() -> Stores {
    let dirs: Vec<tempfile::TempDir> = (0..PARTIES).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let stores = dirs.iter().map(|d| Arc::new(Mutex::new(Store::open(d.path()).expect("store")))).collect();
    Stores { _dirs: dirs, stores }
}

/// Run `work` at every party, with its store, on a fresh mesh (one per
/// call: a session).
async fn each_party<T: Send + 'static>(
    stores: &Stores,
    work: impl Fn(Mesh, Arc<Mutex<Store>>) -> futures::future::BoxFuture<'static, (T, Mesh)> + Send + Sync + 'static,
) -> Vec<T> {
    let (work, stores) = (Arc::new(work), stores.stores.clone());
    common::each_party(PARTIES, move |mesh| {
        let store = stores[mesh.self_index()].clone();
        work(mesh, store)
    })
    .await
}

/// Every party fills its store in one generation session.
async fn fill_all(stores: &Stores, requests: Vec<FillRequest>) -> Vec<BatchId> {
    let ids = each_party(stores, move |mesh, store| {
        let requests = requests.clone();
        Box::pin(async move {
            let mut generator = OtGenerator::setup(&mesh).await.expect("base OTs");
            let mut ids = Vec::new();
            for r in requests {
                ids.extend(fill(&mut generator, &mesh, &store, "local", r, |_| {}).await.expect("fill"));
            }
            (ids, mesh)
        })
    })
    .await;
    ids.into_iter().next().expect("a party")
}

/// Every party takes `plan` once.
async fn take_all(stores: &Stores, plan: MaterialPlan) -> Vec<Result<Taken, String>> {
    each_party(stores, move |mesh, store| {
        let plan = plan.clone();
        Box::pin(async move {
            let mut round = 0;
            let taken = take(&mesh, &store, "local", &plan, &mut round, false).await.map_err(|e| e.to_string());
            (taken, mesh)
        })
    })
    .await
}

fn plan() -> MaterialPlan {
    MaterialPlan {
        layers: vec![
            Demand { triples: 150, div_pairs: vec![(DIVISOR, 60)], ..Default::default() },
            Demand { triples: 20, div_pairs: Vec::new(), ..Default::default() },
        ],
    }
}

async fn layers(material: &mut Prefetched, plan: &MaterialPlan) -> Vec<LayerMaterial> {
    let mut out = Vec::new();
    for (i, demand) in plan.layers.iter().enumerate() {
        out.push(material.next_layer(i, demand).await.expect("layer"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_take_the_same_batches_once_and_the_material_reconstructs() {
    let stores = open_stores();
    let filled = fill_all(
        &stores,
        vec![
            FillRequest { kind: StoredKind::Triples, per_batch: 100, batches: 3, first_seq: 0 },
            FillRequest { kind: StoredKind::DivPairs { divisor: DIVISOR }, per_batch: 50, batches: 2, first_seq: 3 },
        ],
    )
    .await;
    assert_eq!(filled.len(), 5);
    let plan = plan();
    let mut taken = Vec::new();
    for result in take_all(&stores, plan.clone()).await {
        match result.expect("take") {
            Taken::Ready(material, ids) => taken.push((material, ids)),
            other => panic!("short: {other:?}"),
        }
    }
    // The same batches everywhere: 170 triples take two batches of 100,
    // 60 pairs both batches of 50; oldest first.
    let ids = taken[0].1.clone();
    assert!(taken.iter().all(|(_, i)| *i == ids), "every party uses the same batches");
    assert_eq!(ids, [filled[0], filled[1], filled[3], filled[4]]);
    let mut per_party = Vec::new();
    for (material, _) in &mut taken {
        per_party.push(layers(material, &plan).await);
    }
    for layer in 0..plan.layers.len() {
        let tags: Vec<_> = per_party.iter().map(|l| l[layer].tag).collect();
        assert!(tags.iter().all(|t| *t == tags[0]), "layer tags agree");
        let part = |f: fn(&TripleShares) -> &Share| {
            sum(&per_party.iter().map(|l| f(&l[layer].triples).expose()).collect::<Vec<_>>())
        };
        let (a, b, c) = (part(|t| &t.a), part(|t| &t.b), part(|t| &t.c));
        assert_eq!(a.len(), plan.layers[layer].triples);
        assert!(a.iter().zip(&b).zip(&c).all(|((a, b), c)| *c == a.wrapping_mul(*b)), "c = a·b");
        for (k, &(divisor, count)) in plan.layers[layer].div_pairs.iter().enumerate() {
            let r = sum(&per_party.iter().map(|l| l[layer].div_pairs[k].r.expose()).collect::<Vec<_>>());
            let q = sum(&per_party.iter().map(|l| l[layer].div_pairs[k].q.expose()).collect::<Vec<_>>());
            assert_eq!(r.len(), count);
            assert!(r.iter().zip(&q).all(|(r, q)| *q == (r & ((1 << 63) - 1)) / divisor));
        }
    }
    // Used once: spent at every party; the third triple batch remains.
    for store in &stores.stores {
        let store = store.lock().expect("store");
        assert!(ids.iter().all(|id| store.is_spent(*id) && store.get(*id).is_none()));
        assert_eq!(store.available(StoredKind::Triples), 100);
        assert_eq!(store.available(StoredKind::DivPairs { divisor: DIVISOR }), 0);
    }
    // The same plan again: 100 triples and no pairs left, so every party
    // hears the pool is short, and nothing is consumed.
    for result in take_all(&stores, plan.clone()).await {
        match result.expect("take") {
            Taken::Short { kind, need, have, last } => {
                assert_eq!((kind.as_str(), need, have, last), ("triples", 170, 100, false));
            }
            other => panic!("expected short, got {other:?}"),
        }
    }
    for store in &stores.stores {
        assert_eq!(store.lock().expect("store").available(StoredKind::Triples), 100, "nothing consumed");
    }
}

/// Store a synthetic batch of `count` triples (zeros: these tests never
/// reconstruct it) at every party, as a fill would.
fn put_everywhere(stores: &Stores, id: BatchId, count: usize, parties_at: impl Fn(usize) -> Vec<String>) {
    for (party, store) in stores.stores.iter().enumerate() {
        let parties = parties_at(party);
        let index = parties.iter().position(|p| *p == format!("party-{party}")).expect("listed");
        let meta = describe(id, StoredKind::Triples, count, "local", &parties, index);
        let zeros = || Share::new(vec![0; count]);
        let material = StoredMaterial::Triples(TripleShares { a: zeros(), b: zeros(), c: zeros() });
        store.lock().expect("store").put(meta, &material).expect("put");
    }
}

fn batch(seq: u64) -> BatchId {
    BatchId { session: [7; 16], seq }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_consumed_at_some_parties_only_is_discarded_everywhere() {
    let stores = open_stores();
    for seq in 0..4 {
        put_everywhere(&stores, batch(seq), 10, |_| names());
    }
    // A crash left batch 0 consumed at the leader and party-1 only, and
    // batch 1 consumed at party-1 only.
    for (party, seqs) in [(0, vec![0]), (1, vec![0, 1])] {
        let mut store = stores.stores[party].lock().expect("store");
        for seq in seqs {
            let digest = store.get(batch(seq)).expect("stored").digest();
            store.consume(batch(seq), &digest).expect("consume");
        }
    }
    let plan = MaterialPlan { layers: vec![Demand { triples: 10, div_pairs: Vec::new(), ..Default::default() }] };
    for result in take_all(&stores, plan).await {
        match result.expect("take") {
            Taken::Ready(_, ids) => assert_eq!(ids, [batch(2)], "the first batch usable everywhere"),
            other => panic!("{other:?}"),
        }
    }
    for store in &stores.stores {
        let store = store.lock().expect("store");
        for seq in 0..3 {
            assert!(store.is_spent(batch(seq)) && store.get(batch(seq)).is_none(), "batch {seq} is gone everywhere");
        }
        assert!(store.get(batch(3)).is_some(), "batch 3 is untouched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_held_differently_fails_the_job_and_is_discarded_everywhere() {
    let stores = open_stores();
    // party-2 describes batch 0 with another party order: its digest
    // differs.
    put_everywhere(&stores, batch(0), 10, |party| {
        let mut n = names();
        if party == 2 {
            n.swap(0, 1);
        }
        n
    });
    put_everywhere(&stores, batch(1), 10, |_| names());
    let plan = MaterialPlan { layers: vec![Demand { triples: 10, div_pairs: Vec::new(), ..Default::default() }] };
    for result in take_all(&stores, plan).await {
        let err = result.expect_err("a different batch is an error");
        assert!(err.contains("held differently by party party-2"), "{err}");
    }
    for store in &stores.stores {
        let store = store.lock().expect("store");
        assert!(store.is_spent(batch(0)), "discarded everywhere");
        assert!(store.get(batch(1)).is_some(), "nothing was consumed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_serve_jobs_that_list_the_same_parties_in_another_order() {
    let stores = open_stores();
    // The pool's own fills list the federation by name; this job's mesh
    // lists party-0, party-1, party-2, the batch lists them reversed.
    let reversed = || names().into_iter().rev().collect::<Vec<_>>();
    put_everywhere(&stores, batch(0), 10, |_| reversed());
    let plan = MaterialPlan { layers: vec![Demand { triples: 10, div_pairs: Vec::new(), ..Default::default() }] };
    for result in take_all(&stores, plan).await {
        match result.expect("take") {
            Taken::Ready(_, ids) => assert_eq!(ids, [batch(0)]),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_lost_in_a_crashed_fill_is_discarded_everywhere_after_the_grace() {
    let stores = open_stores();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
    let old = now - ABSENT_GRACE.as_secs() - 10;
    // Stored at some parties only: a fill a crash interrupted. Batches 0
    // and 1 are old (lost); batch 2 was stored a moment ago (its fill may
    // still be storing it elsewhere).
    let put_at = |parties: &[usize], seq: u64, created: u64| {
        for &party in parties {
            let mut meta = describe(batch(seq), StoredKind::Triples, 10, "local", &names(), party);
            meta.created = created;
            let zeros = || Share::new(vec![0; 10]);
            let material = StoredMaterial::Triples(TripleShares { a: zeros(), b: zeros(), c: zeros() });
            stores.stores[party].lock().expect("store").put(meta, &material).expect("put");
        }
    };
    put_at(&[0, 1], 0, old); // offered by the leader, absent at party-2
    put_at(&[1, 2], 1, old); // not at the leader: listed unoffered
    put_at(&[0, 1], 2, now);
    put_everywhere(&stores, batch(3), 10, |_| names());
    let plan = MaterialPlan { layers: vec![Demand { triples: 10, div_pairs: Vec::new(), ..Default::default() }] };
    for result in take_all(&stores, plan).await {
        match result.expect("take") {
            Taken::Ready(_, ids) => assert_eq!(ids, [batch(3)], "only the batch every party holds"),
            other => panic!("{other:?}"),
        }
    }
    for (party, store) in stores.stores.iter().enumerate() {
        let store = store.lock().expect("store");
        for seq in [0, 1] {
            assert!(store.get(batch(seq)).is_none(), "party {party}: lost batch {seq} is gone");
        }
        assert_eq!(store.get(batch(2)).is_some(), party < 2, "party {party}: a young batch is left alone");
    }
}

/// A pool job whose plan has binary kinds (issue 16): the pool serves the
/// triples, the power-of-two pairs and the bit triples, edaBits and daBits
/// it stocks, agreed and used once like triples; the job generates over its
/// own mesh only the pairs of a divisor that is not a power of two. The
/// merged layers reconstruct to every kind's definition
/// (`preprocessing/mod.rs`), a layer's binary material sits beside its
/// stocked triples, and the batches are spent everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_job_takes_its_binary_kinds_from_the_pool_once() {
    use cohort_worker::preprocessing::ot::complete_pool_material;
    use cohort_worker::preprocessing::pool::split_plan;
    let stores = open_stores();
    // Batches of odd sizes, so layers cut across batch boundaries and
    // bundles join at bit offsets that are not multiples of 64.
    let filled = fill_all(
        &stores,
        vec![
            FillRequest { kind: StoredKind::Triples, per_batch: 100, batches: 2, first_seq: 0 },
            FillRequest { kind: StoredKind::DivPairs { divisor: DIVISOR }, per_batch: 50, batches: 1, first_seq: 2 },
            FillRequest { kind: StoredKind::BitTriples, per_batch: 7, batches: 2, first_seq: 3 },
            FillRequest { kind: StoredKind::EdaBits, per_batch: 45, batches: 2, first_seq: 5 },
            FillRequest { kind: StoredKind::DaBits, per_batch: 100, batches: 2, first_seq: 7 },
        ],
    )
    .await;
    assert_eq!(filled.len(), 9);
    let plan = MaterialPlan {
        layers: vec![
            Demand { triples: 150, div_pairs: vec![(DIVISOR, 40)], bit_triple_words: 9, ..Default::default() },
            // A divisor that is not a power of two: generated in the job.
            Demand { edabits: 70, dabits: 130, div_pairs: vec![(10, 5)], ..Default::default() },
            Demand { triples: 20, bit_triple_words: 2, dabits: 1, ..Default::default() },
        ],
    };
    let (stocked, generated) = split_plan(&plan);
    assert!(stocked.has_binary() && !generated.has_binary(), "the pool serves every binary kind");
    assert_eq!(generated.total_div_pairs(), 5);
    let p = plan.clone();
    let results = each_party(&stores, move |mesh, store| {
        let plan = p.clone();
        Box::pin(async move {
            let (stocked, _) = split_plan(&plan);
            let mut round = 0;
            let (material, ids) = match take(&mesh, &store, "local", &stocked, &mut round, false).await.expect("take") {
                Taken::Ready(material, ids) => (material, ids),
                other => panic!("short: {other:?}"),
            };
            let mut material = complete_pool_material(&mesh, mesh.job(), &plan, material).await.expect("complete");
            let layers = layers(&mut material, &plan).await;
            ((layers, ids), mesh)
        })
    })
    .await;
    let ids = results[0].1.clone();
    assert!(results.iter().all(|(_, i)| *i == ids), "every party uses the same batches");
    // 11 bit-triple words take both batches of 7, 70 edaBits both of 45,
    // 131 daBits both of 100.
    for (k, id) in filled.iter().enumerate() {
        assert!(ids.contains(id), "batch {k} is used");
    }
    let per_party: Vec<Vec<LayerMaterial>> = results.into_iter().map(|(layers, _)| layers).collect();
    common::material::check_plan(&per_party, &plan);
    assert!(per_party[0][0].has_binary() && per_party[0][0].triples.a.len() == 150);
    for store in &stores.stores {
        let store = store.lock().expect("store");
        assert!(ids.iter().all(|id| store.is_spent(*id) && store.get(*id).is_none()), "used once");
        for kind in [StoredKind::BitTriples, StoredKind::EdaBits, StoredKind::DaBits] {
            assert_eq!(store.available(kind), 0);
        }
    }
    // Nothing left: a second job with binary kinds hears the pool is short
    // of the first kind it lacks, as for triples, and consumes nothing.
    fill_all(&stores, vec![FillRequest { kind: StoredKind::EdaBits, per_batch: 10, batches: 1, first_seq: 0 }]).await;
    let binary_only = MaterialPlan { layers: vec![Demand { bit_triple_words: 1, edabits: 5, ..Default::default() }] };
    for result in take_all(&stores, binary_only).await {
        match result.expect("take") {
            Taken::Short { kind, need, have, last } => {
                assert_eq!((kind.as_str(), need, have, last), ("bit triples (in words of 64)", 1, 0, false));
            }
            other => panic!("expected short, got {other:?}"),
        }
    }
    for store in &stores.stores {
        assert_eq!(store.lock().expect("store").available(StoredKind::EdaBits), 10, "nothing consumed");
    }
}

/// Binary batches survive a reopen of the store bit for bit, and a
/// corrupted one is refused by its checksum, never used.
#[test]
fn binary_batches_round_trip_through_the_store_and_corruption_is_refused() {
    use cohort_worker::gf2::Bits;
    use cohort_worker::preprocessing::{BitTripleShares, DaBitShares, EdaBitShares};
    let dir = tempfile::tempdir().expect("tempdir");
    let words =
        |n: usize, seed: u64| (0..n as u64).map(|i| seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i).collect::<Vec<u64>>();
    let bit_triples = || {
        let plane = |seed| Bits::from_words(1, 64 * 3, words(3, seed)).expect("plane");
        StoredMaterial::BitTriples(BitTripleShares { a: plane(1), b: plane(2), c: plane(3) })
    };
    let edabits = || {
        StoredMaterial::EdaBits(EdaBitShares { r: Share::new(words(70, 4)), bits: Bits::decompose(&words(70, 5), 64) })
    };
    let dabits = || {
        StoredMaterial::DaBits(DaBitShares {
            arith: Share::new(words(70, 6)),
            bits: Bits::from_words(1, 70, words(2, 7)).expect("plane"),
        })
    };
    let parts = |m: &StoredMaterial| -> Vec<Vec<u64>> {
        match m {
            StoredMaterial::BitTriples(t) => vec![t.a.words().to_vec(), t.b.words().to_vec(), t.c.words().to_vec()],
            StoredMaterial::EdaBits(e) => vec![e.r.expose().to_vec(), e.bits.words().to_vec()],
            StoredMaterial::DaBits(d) => vec![d.arith.expose().to_vec(), d.bits.words().to_vec()],
            _ => unreachable!("binary kinds only"),
        }
    };
    let cases = [
        (StoredKind::BitTriples, 3, bit_triples()),
        (StoredKind::EdaBits, 70, edabits()),
        (StoredKind::DaBits, 70, dabits()),
    ];
    let mut store = Store::open(dir.path()).expect("store");
    for (seq, (kind, count, material)) in cases.iter().enumerate() {
        let meta = describe(batch(seq as u64), *kind, *count, "local", &names(), 0);
        // The wrong count is refused: the shape must match the description.
        let wrong = describe(batch(10 + seq as u64), *kind, count + 1, "local", &names(), 0);
        assert!(store.put(wrong, material).is_err(), "{kind:?}: a mismatched shape is refused");
        store.put(meta, material).expect("put");
    }
    drop(store);
    let mut store = Store::open(dir.path()).expect("reopen");
    for (seq, (kind, count, material)) in cases.iter().enumerate() {
        let meta = store.get(batch(seq as u64)).expect("indexed after a reopen").clone();
        assert_eq!((meta.kind, meta.count), (*kind, *count));
        let got = store.consume(meta.id, &meta.digest()).expect("consume");
        assert_eq!(parts(&got), parts(material), "{kind:?} round-trips");
        assert!(store.consume(meta.id, &meta.digest()).is_err(), "{kind:?}: used once");
    }
    // Flip one share bit of a stored edaBit batch: its checksum refuses it.
    let meta = describe(batch(20), StoredKind::EdaBits, 70, "local", &names(), 0);
    store.put(meta.clone(), &edabits()).expect("put");
    let path = std::fs::read_dir(dir.path().join("batches"))
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().ends_with("0000000000000014.batch"))
        .expect("the batch file");
    let mut bytes = std::fs::read(&path).expect("read");
    let n = bytes.len();
    bytes[n - 40] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    let err = store.consume(meta.id, &meta.digest()).expect_err("corrupt");
    assert!(err.to_string().contains("checksum"), "{err}");
}
