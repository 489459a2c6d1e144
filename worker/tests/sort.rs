//! Sorting (shuffle, then quicksort with opened comparisons;
//! `docs/sorting.md`) under every protocol and material source, against
//! `program::plain`: random data and the edges (ties, all equal, sorted,
//! reverse, lengths around the bit-slicing and padding boundaries), 2, 3
//! and 5 parties; the shuffles' routing and uniformity (networks, dealt
//! correlations, resharing); the rounds; ranks (`rank`, `rank_desc`),
//! alone and sharing a sort's quicksort.

mod common;

use cohort_worker::executor::shuffle;
use cohort_worker::executor::sort::SortRounds;
use cohort_worker::ring::from_signed;
use common::backends::{BACKENDS, Backend, check};
use common::ints;

fn enc(v: &[i64]) -> Vec<u64> {
    v.iter().map(|x| from_signed(*x)).collect()
}

/// Every sort form on key `k` (party 0) and values `v` (the last party).
async fn sorts(backend: Backend, parties: usize, k: &[i64], v: &[i64]) {
    let last = format!("party-{}", parties - 1);
    let source = format!(
        "input k: int[] from party-0\ninput v: int[] from {last}\n\
         output up = sort(k)\noutput down = sort_desc(k)\noutput by = sort_by(k, v)\n\
         output byd = sort_by_desc(k, v)\noutput both = sort_by(k, v + k)\n"
    );
    let mut inputs = vec![Vec::new(); parties];
    inputs[0].push(("k", enc(k)));
    inputs[parties - 1].push(("v", enc(v)));
    check(backend, parties, &source, inputs).await;
}

/// The edge inputs of length `n`.
fn edge_cases(n: usize) -> Vec<(&'static str, Vec<i64>)> {
    let bound = 1i64 << 61;
    vec![
        ("random", ints(n, bound, n as u64 + 1)),
        ("ties", ints(n, 3, n as u64 + 2)),
        ("equal", vec![-7; n]),
        ("sorted", (0..n as i64).map(|i| i * 5 - 100).collect()),
        ("reverse", (0..n as i64).rev().map(|i| i * 5 - 100).collect()),
        ("extremes", (0..n).map(|i| if i % 2 == 0 { bound - 1 } else { 1 - bound }).collect()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorts_match_plain_under_every_protocol() {
    for backend in BACKENDS {
        for n in [0, 1, 2, 3, 63, 64, 65] {
            for (_, k) in edge_cases(n) {
                let v: Vec<i64> = (0..n as i64).collect();
                sorts(backend, 3, &k, &v).await;
            }
        }
        let k = ints(300, 40, 9);
        sorts(backend, 3, &k, &ints(300, 1 << 40, 10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorts_match_plain_with_two_and_five_parties() {
    for parties in [2, 5] {
        for backend in [Backend::AdditiveDealer, Backend::AdditiveOt] {
            for n in [0, 1, 2, 65, 200] {
                let k = ints(n, 9, n as u64);
                sorts(backend, parties, &k, &ints(n, 1000, 3)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_hundred_elements_with_several_columns_by_one_key() {
    // Several columns sorted by one key in one program (each `sort_by` of
    // the same key and direction), a secret key under a public column.
    let source = "input k: int[] from party-0\ninput a: int[] from party-1\ninput b: int[] from party-2\n\
                  output sa = sort_by(k, a)\noutput sb = sort_by(k, b)\noutput sk = sort_by(k, k * 2)\n\
                  output pub = sort_by_desc(k, a * 0 + 1)\n";
    for backend in BACKENDS {
        let n = 400;
        let inputs = vec![
            vec![("k", enc(&ints(n, 50, 1)))],
            vec![("a", enc(&ints(n, 1 << 50, 2)))],
            vec![("b", enc(&ints(n, 7, 3)))],
        ];
        check(backend, 3, source, inputs).await;
    }
}

/// `rank` and `rank_desc` of a secret int key (party 0), of a secret
/// fixed vector (the last party), of all-equal secret values and of a
/// public vector.
async fn ranks(backend: Backend, parties: usize, k: &[i64], v: &[i64]) {
    let last = format!("party-{}", parties - 1);
    let source = format!(
        "input k: int[] from party-0\ninput f: fixed[] from {last}\n\
         output up = rank(k)\noutput down = rank_desc(k)\noutput fu = rank(f)\noutput fd = rank_desc(f)\n\
         output same = rank(k * 0 + 1)\noutput public = rank_desc([3, 1, 3, 2])\n"
    );
    let mut inputs = vec![Vec::new(); parties];
    inputs[0].push(("k", enc(k)));
    // Fixed point: the values scaled by 2^16, ties kept.
    let f: Vec<i64> = v.iter().map(|x| x << 16).collect();
    inputs[parties - 1].push(("f", enc(&f)));
    check(backend, parties, &source, inputs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranks_match_plain_under_every_protocol() {
    for backend in BACKENDS {
        for n in [0, 1, 2, 3, 63, 64, 65] {
            for (_, k) in edge_cases(n) {
                let v: Vec<i64> = k.iter().rev().map(|x| x >> 20).collect();
                ranks(backend, 3, &k, &v).await;
            }
        }
        ranks(backend, 3, &ints(300, 40, 11), &ints(300, 1 << 20, 12)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranks_match_plain_with_two_and_five_parties() {
    for parties in [2, 5] {
        for backend in [Backend::AdditiveDealer, Backend::AdditiveOt] {
            for n in [0, 1, 2, 64, 65, 200] {
                ranks(backend, parties, &ints(n, 9, n as u64), &ints(n, 3, 5)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rank_and_a_sort_of_one_key_run_one_quicksort() {
    use cohort_worker::executor::netlist::GateOp;
    use cohort_worker::executor::plan::Lowering;
    use cohort_worker::executor::{InputLengths, Instance, Quotients};
    use cohort_worker::preprocessing::Mode;
    let names: Vec<String> = (0..3).map(|p| format!("party-{p}")).collect();
    let sorts = |source: &str, lowering: Lowering, n: usize| {
        let circuit = cohort_worker::program::compile(source, &names).expect("compiles");
        let lengths = InputLengths(vec![vec![Some(n), None, None], vec![None, Some(n), None]]);
        let instance = Instance::plan(&circuit, &lengths, lowering).expect("plans");
        let sorts: Vec<bool> = instance
            .netlist
            .gates
            .iter()
            .filter_map(|g| match g.op {
                GateOp::Sort { ranks, .. } => Some(ranks),
                _ => None,
            })
            .collect();
        (sorts, instance.job_rounds())
    };
    let head = "input k: int[] from party-0\ninput v: int[] from party-1\n";
    let shared = format!("{head}output r = rank(k)\noutput s = sort(k)\noutput b = sort_by(k, v)\n");
    for backend in BACKENDS {
        let mode = if backend == Backend::AdditiveOt { Mode::Ot } else { Mode::Dealer };
        let lowering = Lowering { protocol: backend.protocol(), quotients: Quotients::of(mode) };
        // One sort, with ranks, whichever comes first; the other
        // direction is a sort of its own.
        assert_eq!(sorts(&shared, lowering, 10).0, vec![true]);
        let after = format!("{head}output s = sort_by_desc(k, v)\noutput t = top_k(k, 3)\noutput r = rank_desc(k)\n");
        assert_eq!(sorts(&after, lowering, 10).0, vec![true]);
        let both = format!("{head}output r = rank(k)\noutput d = rank_desc(k)\n");
        assert_eq!(sorts(&both, lowering, 10).0, vec![true, true]);
        for n in [64usize, 300] {
            let inputs = vec![vec![("k", enc(&ints(n, 1 << 40, n as u64)))], vec![("v", enc(&ints(n, 50, 2)))], vec![]];
            let outs = check(backend, 3, &shared, inputs).await;
            let (_, fixed) = sorts(&shared, lowering, n);
            // The key's sort carries `v` (one column besides the key).
            let r = SortRounds::of(lowering, 3, n, 1);
            for out in &outs {
                assert_quicksort_rounds(&format!("{backend:?}, n {n}"), n, out.stats.rounds as usize, fixed, r, true);
            }
        }
    }
}

/// A job's `rounds` are its `fixed` ones, the sort's shuffle, padding and
/// (when it has them) ranks, and whole quicksort levels: at least the height of a balanced
/// recursion, at most a generous multiple of log2 n (expected about
/// 3 log2 n).
fn assert_quicksort_rounds(what: &str, n: usize, rounds: usize, fixed: usize, r: SortRounds, ranks: bool) {
    let dynamic = rounds - fixed - r.shuffle - r.padding - if ranks { r.ranks } else { 0 };
    assert_eq!(dynamic % r.per_level, 0, "{what}: {rounds} rounds, {r:?}, {fixed} fixed");
    let levels = dynamic / r.per_level;
    let log = n.next_power_of_two().trailing_zeros() as usize;
    assert!(levels + 1 >= log && levels <= 4 * log + 8, "{what}: {levels} quicksort levels ({rounds} rounds, {r:?})");
}

/// Chi-square statistic of observed counts against a uniform expectation.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts.iter().map(|c| (*c as f64 - expected).powi(2) / expected).sum()
}

/// The Lehmer code (0..24) of an order of `0..4`.
fn lehmer(v: &[u64]) -> usize {
    let mut code = 0;
    for i in 0..4 {
        code = code * (4 - i) + v[i + 1..].iter().filter(|x| **x < v[i]).count();
    }
    code
}

/// Every trial's opened vector (`results[party][trial]` summed over the
/// parties' shares) is a permutation of `[0, 1, 2, 3]`, and the 24 orders
/// are uniform (chi-square, 23 degrees of freedom: the 99.99th percentile
/// is about 57; the threshold is generous).
fn assert_uniform_orders(results: &[Vec<Vec<u64>>]) {
    let mut counts = [0u64; 24];
    for t in 0..results[0].len() {
        let v: Vec<u64> =
            (0..4).map(|i| results.iter().fold(0u64, |acc, party| acc.wrapping_add(party[t][i]))).collect();
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3], "trial {t}: a permutation");
        counts[lehmer(&v)] += 1;
    }
    let chi = chi_square(&counts);
    assert!(chi < 80.0, "chi-square {chi} over the 24 orders: {counts:?}");
}

#[test]
fn the_routed_network_realizes_a_uniform_permutation() {
    // The permutations of 4 slots (24 orders) a party's network applies,
    // over many draws: each a permutation, the orders uniform.
    let orders: Vec<Vec<u64>> = (0..24_000)
        .map(|_| {
            let sigma = shuffle::random_permutation(4).unwrap();
            let bits = shuffle::route(2, &sigma);
            let mut v: Vec<u64> = (0..4).collect();
            shuffle::apply(2, &bits, &mut v);
            v
        })
        .collect();
    assert_uniform_orders(&[orders]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sort_takes_logarithmically_many_rounds() {
    use cohort_worker::executor::plan::Lowering;
    use cohort_worker::executor::{InputLengths, Instance, Quotients};
    use cohort_worker::preprocessing::Mode;
    let source = "input k: int[] from party-0\noutput s = sort(k)\n";
    let names: Vec<String> = (0..3).map(|p| format!("party-{p}")).collect();
    let circuit = cohort_worker::program::compile(source, &names).expect("compiles");
    for backend in BACKENDS {
        let mode = if backend == Backend::AdditiveOt { Mode::Ot } else { Mode::Dealer };
        let lowering = Lowering { protocol: backend.protocol(), quotients: Quotients::of(mode) };
        for n in [64usize, 300, 1000] {
            let outs =
                check(backend, 3, source, vec![vec![("k", enc(&ints(n, 1 << 40, n as u64)))], vec![], vec![]]).await;
            let lengths = InputLengths(vec![vec![Some(n), None, None]]);
            let fixed = Instance::plan(&circuit, &lengths, lowering).expect("plans").job_rounds();
            let r = SortRounds::of(lowering, 3, n, 0);
            for out in &outs {
                assert_quicksort_rounds(&format!("{backend:?}, n {n}"), n, out.stats.rounds as usize, fixed, r, false);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicated_resharing_shuffle_is_a_uniform_permutation() {
    // Over real TLS: the three parties shuffle a secret [0, 1, 2, 3] many
    // times; every result is a permutation of it, and the 24 orders are
    // uniform (chi-square, 23 degrees of freedom, generous threshold).
    use cohort_worker::executor::net::Net;
    use cohort_worker::executor::{InputLengths, Instance, OwnInputs};
    use cohort_worker::protocol::Protocol;
    use cohort_worker::protocol::replicated::Replicated;
    use cohort_worker::sharing::{Secret, Share};
    const TRIALS: usize = 2400;
    let names: Vec<String> = (0..3).map(|p| format!("party-{p}")).collect();
    let source = "input x: int from party-0\noutput y = x\n";
    let circuit = std::sync::Arc::new(cohort_worker::program::compile(source, &names).expect("compiles"));
    let results = common::each_party(3, move |mesh| {
        let circuit = circuit.clone();
        Box::pin(async move {
            let me = mesh.self_index();
            let mut net = Net::new(&mesh, std::time::Duration::from_secs(120));
            let mut protocol = Replicated::new(me, 3).expect("three parties");
            // The input round exchanges the pairwise keys.
            let lengths = InputLengths(vec![vec![Some(1), None, None]]);
            let lowering = cohort_worker::executor::Lowering {
                protocol: cohort_worker::protocol::ProtocolName::Replicated3,
                quotients: cohort_worker::executor::Quotients::Exact,
            };
            let instance = Instance::plan(&circuit, &lengths, lowering).expect("plans");
            let mut own = OwnInputs::new();
            if me == 0 {
                own.insert_encoded(&circuit, "x", Secret::new(vec![7])).expect("input");
            }
            let mut values: Vec<Option<_>> = (0..instance.netlist.gates.len()).map(|_| None).collect();
            protocol.share_inputs(&mut net, &instance, &circuit, &own, &mut values).await.expect("keys");
            let mut parts_seen = Vec::with_capacity(TRIALS);
            for _ in 0..TRIALS {
                // [0, 1, 2, 3] as a public value: component 0 (party 0's
                // part 0, party 2's part 1).
                let public: Vec<u64> = (0..4).collect();
                let zero = vec![0u64; 4];
                let parts = match me {
                    0 => [public.clone(), zero.clone()],
                    2 => [zero.clone(), public.clone()],
                    _ => [zero.clone(), zero.clone()],
                };
                let mut shares: Vec<Share> = parts.into_iter().map(Share::new).collect();
                assert!(protocol.shuffle(&mut net, &mut shares, 4).await.expect("shuffle"));
                parts_seen.push(shares[0].expose().to_vec());
            }
            (parts_seen, mesh)
        })
    })
    .await;
    // x = x_0 + x_1 + x_2, component i being party i's part 0.
    assert_uniform_orders(&results);
}

/// One dealt shuffle's budget among three parties: a permutation step of
/// `len` elements (one column) for each party in turn.
fn permutation_steps(len: usize) -> Vec<cohort_worker::preprocessing::Demand> {
    use cohort_worker::preprocessing::{Demand, PermutationDemand};
    (0..3)
        .map(|permuter| Demand {
            permutation: Some(PermutationDemand { permuter, len, columns: 1 }),
            ..Default::default()
        })
        .collect()
}

/// A material source per party, each taken by its party once.
type Sources = std::sync::Arc<std::sync::Mutex<Vec<Option<cohort_worker::preprocessing::dealer::DealerSource>>>>;

/// `shuffles` times `steps` from an in-process trusted dealer.
fn dealt(shuffles: usize, steps: &[cohort_worker::preprocessing::Demand]) -> Sources {
    use cohort_worker::preprocessing::MaterialPlan;
    use cohort_worker::preprocessing::dealer::spawn_local_dealer;
    let plan = MaterialPlan { layers: (0..shuffles).flat_map(|_| steps.iter().cloned()).collect() };
    std::sync::Arc::new(std::sync::Mutex::new(spawn_local_dealer(plan, 3, 1 << 16).into_iter().map(Some).collect()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dealt_permutation_shuffle_is_a_uniform_permutation() {
    // Over real TLS, with a trusted dealer's permutation correlations:
    // three parties shuffle a secret [0, 1, 2, 3] (party 0 holds it, the
    // others hold zeros) many times; every result is a permutation of it,
    // and the 24 orders are uniform (chi-square, 23 degrees of freedom,
    // generous threshold). Each trial's steps are one sort's budget.
    use cohort_worker::executor::net::Net;
    use cohort_worker::protocol::Protocol;
    use cohort_worker::protocol::additive::Additive;
    use cohort_worker::sharing::Share;
    const TRIALS: usize = 2400;
    let steps = permutation_steps(4);
    let sources = dealt(TRIALS, &steps);
    let results = common::each_party(3, move |mesh| {
        let (sources, steps) = (sources.clone(), steps.clone());
        Box::pin(async move {
            let me = mesh.self_index();
            let source = sources.lock().unwrap()[me].take().expect("a source per party");
            let mut net = Net::new(&mesh, std::time::Duration::from_secs(120));
            let mut protocol = Additive::new(source, me);
            let mut seen = Vec::with_capacity(TRIALS);
            for t in 0..TRIALS {
                let part = if me == 0 { (0..4).collect() } else { vec![0u64; 4] };
                let mut shares = vec![Share::new(part)];
                protocol.begin_dynamic(3 * t, &steps);
                assert!(protocol.shuffle(&mut net, &mut shares, 4).await.expect("shuffle"), "a dealt shuffle");
                protocol.end_dynamic().await.expect("the budget used up");
                seen.push(shares[0].expose().to_vec());
            }
            (seen, mesh)
        })
    })
    .await;
    assert_uniform_orders(&results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_masked_vector_in_a_dealt_shuffle_is_refused_naming_its_sender() {
    // Party 1 sends the permuter of the first step (party 0) 3 elements
    // where the shuffle of 4 takes 4: party 0's job fails with an error
    // that names party 1, the step and the lengths, never a share.
    use cohort_worker::executor::net::Net;
    use cohort_worker::executor::run::JobError;
    use cohort_worker::protocol::Protocol;
    use cohort_worker::protocol::additive::Additive;
    use cohort_worker::sharing::Share;
    use cohort_worker::transport::Step;
    use std::sync::Arc;
    let steps = permutation_steps(4);
    let sources = dealt(1, &steps);
    let results = common::each_party(3, move |mesh| {
        let (sources, steps) = (sources.clone(), steps.clone());
        Box::pin(async move {
            let me = mesh.self_index();
            let source = sources.lock().unwrap()[me].take().expect("a source per party");
            let mut net = Net::new(&mesh, std::time::Duration::from_secs(5));
            let result = if me == 1 {
                let short = Arc::new(vec![7u8; 8 * 3]);
                net.round(Step::Input, vec![(0, short)], &[]).await.map(|_| ())
            } else {
                let mut protocol = Additive::new(source, me);
                protocol.begin_dynamic(0, &steps);
                let mut shares = vec![Share::new(vec![me as u64; 4])];
                protocol.shuffle(&mut net, &mut shares, 4).await.map(|_| ())
            };
            (result.map_err(|e| (e.to_string(), matches!(e, JobError::Protocol { .. }))), mesh)
        })
    })
    .await;
    let (message, typed) = results[0].clone().expect_err("the permuter refuses the short vector");
    assert!(typed, "a protocol error: {message}");
    assert!(message.contains("party-1") && message.contains("expected 4 masked elements"), "{message}");
    assert!(message.contains("24 bytes"), "{message}");
}
