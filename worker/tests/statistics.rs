//! Order statistics, grouping and joins (`sort`, `rank`, `median`, `quantile`,
//! `top_k`, `histogram`, `group_count`/`group_sum`, `join_count`,
//! `join_sum`): the compiler's checks, and every construct under every
//! protocol against `program::plain`, on random data and on the edges
//! (ties, all equal, sorted and reverse-sorted, lengths 0, 1, 2).

mod common;

use cohort_worker::program::compile;
use cohort_worker::ring::from_signed;
use common::backends::{BACKENDS, Backend, check, check_within};

fn enc(v: &[i64]) -> Vec<u64> {
    v.iter().map(|x| from_signed(*x)).collect()
}

fn parties(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("party-{i}")).collect()
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        common::xorshift(&mut self.0)
    }
    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

#[test]
fn the_compiler_checks_the_new_functions() {
    let p = parties(3);
    let cases: &[(&str, &str)] = &[
        ("input x: int[] from party-0\noutput q = quantile(x, 1.5)", "constant q between 0 and 1"),
        ("input x: int[] from party-0\ninput q: fixed from party-1\noutput y = quantile(x, q)", "constant q"),
        ("input x: int[] from party-0\noutput h = histogram(x, [3])", "at least two constants"),
        ("input x: int[] from party-0\noutput h = histogram(x, [3, 3])", "increase strictly"),
        ("input x: int[] from party-0\ninput e: int from party-1\noutput h = histogram(x, [0, e])", "constants"),
        ("input x: int[] from party-0\noutput c = group_count(x, 0)", "between 1 and 1000"),
        ("input x: int[] from party-0\noutput c = group_count(x, [1, 2, 1])", "twice"),
        ("input x: int[] from party-0\noutput c = group_sum(x)", "takes 2 or 3 arguments"),
        ("input x: int[] from party-0\noutput c = group_keys(x, 3)", "takes 1 argument"),
        ("input x: fixed[] from party-0\noutput c = group_count(x, 3)", "int keys"),
        ("input x: int[] from party-0\noutput c = top_k(x, -1)", "non-negative"),
        ("input x: int[] from party-0\ninput k: int from party-1\noutput c = top_k(x, k)", "public"),
        ("input x: bool[] from party-0\noutput s = sort(x)", "vector of numbers"),
        ("input x: int from party-0\noutput s = sort(x)", "expects a vector"),
        ("input a: int[] from party-0\ninput b: fixed[] from party-1\noutput j = join_count(a, b)", "int keys"),
        ("output v = []", "empty vector"),
        (
            &format!(
                "input x: int[] from party-0\noutput c = group_count(x, [{}])",
                (0..1001).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            ),
            "at most 1000",
        ),
        (
            &format!(
                "input x: int[] from party-0\noutput h = histogram(x, [{}])",
                (0..1002).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            ),
            "at most 1001",
        ),
        ("input x: int[] from party-0\noutput v = [x, 1]", "scalars"),
        ("input x: int[] from party-0\noutput v = sort_by(x)", "takes 2 arguments"),
        ("input x: bool[] from party-0\noutput r = rank(x)", "vector of numbers"),
        ("input x: fixed from party-0\noutput r = rank_desc(x)", "expects a vector"),
        ("input x: int[] from party-0\noutput r = rank(x, x)", "takes 1 argument"),
        ("input x: int[] from party-0\noutput r = rank", "is a function"),
    ];
    for (source, needle) in cases {
        let e = compile(source, &p).expect_err(source);
        assert!(e.message.contains(needle), "{source}: {e}");
    }
    // Constants fold; a vector literal is a vector.
    assert!(compile("output v = [1, 2.5, 3]", &p).is_ok());
    assert!(compile("output v = sqrt(2)", &p).is_ok());
}

/// The data shapes the suites run on: random, ties, all equal, sorted,
/// reverse-sorted, and the shortest lengths.
fn shapes(rng: &mut Rng, n: usize) -> Vec<Vec<i64>> {
    let random: Vec<i64> = (0..n).map(|_| rng.below(2000) - 1000).collect();
    let ties: Vec<i64> = (0..n).map(|_| rng.below(4)).collect();
    let mut sorted = random.clone();
    sorted.sort_unstable();
    let reverse: Vec<i64> = sorted.iter().rev().copied().collect();
    vec![random, ties, vec![7; n], sorted, reverse, vec![], vec![-3], vec![5, -5]]
}

async fn order_statistics(backend: Backend, parties: usize) {
    let source = "input x: int[] from party-0\ninput y: fixed[] from party-1\n\
                  output s = sort(x)\noutput d = sort_desc(y)\noutput b = sort_by(x, y)\n\
                  output t = top_k(x, len(x))\noutput t0 = top_k(y, 0)\n";
    let stats = "input x: int[] from party-0\ninput y: fixed[] from party-1\n\
                 output m = median(x)\noutput q0 = quantile(y, 0)\noutput q1 = quantile(y, 1)\n\
                 output q3 = quantile(x, 0.75)\noutput my = median(y)\noutput t1 = top_k(y, 1)\n";
    let mut rng = Rng(0x5eed ^ parties as u64);
    for x in shapes(&mut rng, 9) {
        let y: Vec<i64> = x.iter().map(|v| v * 65536 + rng.below(65536)).collect();
        let mut inputs = vec![vec![("x", enc(&x))], vec![("y", enc(&y))]];
        inputs.resize(parties, vec![]);
        check(backend, parties, source, inputs.clone()).await;
        if !x.is_empty() {
            // Interpolated quantiles truncate once: within one unit.
            check_within(backend, parties, stats, inputs, |_| 1).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_statistics_under_every_protocol() {
    for backend in BACKENDS {
        order_statistics(backend, 3).await;
    }
    order_statistics(Backend::AdditiveDealer, 2).await;
}

async fn grouping(backend: Backend, parties: usize) {
    let source = "input age: int[] from party-0\ninput ward: int[] from party-1\ninput stay: fixed[] from party-2\n\
                  output h = histogram(age, [0, 18, 40, 65, 120])\n\
                  output hf = histogram(stay, [0.5, 2, 7.25])\n\
                  output n = group_count(ward, 4)\n\
                  output s = group_sum(ward, stay, [3, 0, 9])\n\
                  output si = group_sum(ward, age, 4)\n";
    let mut rng = Rng(0xbeef);
    for n in [0usize, 1, 2, 17] {
        let age: Vec<i64> = (0..n).map(|i| if i == 0 { 18 } else { rng.below(130) - 5 }).collect();
        let ward: Vec<i64> = (0..n).map(|_| rng.below(5)).collect();
        let stay: Vec<i64> = (0..n).map(|i| if i == 1 { 2 * 65536 } else { rng.below(10 * 65536) }).collect();
        let mut inputs = vec![vec![("age", enc(&age))], vec![("ward", enc(&ward))], vec![("stay", enc(&stay))]];
        inputs.resize(parties, vec![]);
        check(backend, parties, source, inputs).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouping_under_every_protocol() {
    for backend in BACKENDS {
        grouping(backend, 3).await;
    }
    grouping(Backend::AdditiveDealer, 5).await;
}

async fn group_by_secret_keys(backend: Backend, parties: usize) {
    let source = "input zip: int[] from party-0\ninput spend: fixed[] from party-1\n\
                  output keys = group_keys(zip)\noutput n = group_count(zip)\noutput total = group_sum(zip, spend)\n\
                  output mean = group_mean(zip, spend)\noutput groups = count_distinct(zip)\n";
    let mut rng = Rng(0x6b);
    let cases: Vec<Vec<i64>> = vec![
        vec![],
        vec![42],
        vec![5, 5],
        vec![9, -3],
        vec![7; 8],
        (0..12).map(|i| 100 - i).collect(), // all distinct, reverse-sorted
        (0..30).map(|_| rng.below(6) * 1000 - 2500).collect(),
    ];
    for zip in cases {
        let spend: Vec<i64> = zip.iter().map(|_| rng.below(500 * 65536)).collect();
        let mut inputs = vec![vec![("zip", enc(&zip))], vec![("spend", enc(&spend))]];
        inputs.resize(parties, vec![]);
        // The means divide by a secret count: within the division's bound
        // (2^-25 of the quotient and 2 ulps: 3 ulps for these means).
        check_within(backend, parties, source, inputs, |name| if name == "mean" { 3 } else { 0 }).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_secret_keys_under_every_protocol() {
    for backend in BACKENDS {
        group_by_secret_keys(backend, 3).await;
    }
    group_by_secret_keys(Backend::AdditiveDealer, 2).await;
}

async fn joins(backend: Backend, parties: usize) {
    let source = "input seen: int[] from party-0\ninput bought: int[] from party-1\ninput amount: fixed[] from party-1\n\
                  output users = join_count(seen, bought)\noutput value = join_sum(seen, bought, amount)\n\
                  output again = join_sum(bought, seen, seen)\n";
    let mut rng = Rng(0x101);
    let cases: Vec<(Vec<i64>, Vec<i64>)> = vec![
        (vec![], vec![]),
        (vec![1, 2], vec![]),
        (vec![], vec![4]),
        (vec![1, 2, 3], vec![4, 5]),             // no overlap
        (vec![5, 5, 1], vec![5, 5, 2, 1, 1, 9]), // duplicates on both sides
        (vec![3], vec![3]),
        (vec![7; 6], vec![7; 4]),
        ((0..20).map(|_| rng.below(12)).collect(), (0..15).map(|_| rng.below(12)).collect()),
    ];
    for (seen, bought) in cases {
        let amount: Vec<i64> = bought.iter().map(|_| rng.below(1000 * 65536)).collect();
        let mut inputs = vec![vec![("seen", enc(&seen))], vec![("bought", enc(&bought)), ("amount", enc(&amount))]];
        inputs.resize(parties, vec![]);
        check(backend, parties, source, inputs).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_under_every_protocol() {
    for backend in BACKENDS {
        joins(backend, 3).await;
    }
    joins(Backend::AdditiveDealer, 2).await;
}

/// `sort_by` on one key, `sort` of it and its quantiles plan one sort,
/// with a column per value.
#[test]
fn sorts_by_one_key_share_one_sort() {
    use cohort_worker::executor::{InputLengths, Instance};
    let p = parties(2);
    let source = "input k: int[] from party-0\ninput a: int[] from party-1\ninput b: fixed[] from party-1\n\
                  output x = sort_by(k, a)\noutput y = sort_by(k, b)\noutput m = median(k)\n\
                  output q = quantile(k, 0.9)\noutput s = sort(k)\noutput d = sort_by_desc(k, a)\n";
    let circuit = compile(source, &p).expect("compiles");
    let lengths = InputLengths(vec![vec![Some(40), None], vec![None, Some(40)], vec![None, Some(40)]]);
    let instance = Instance::new(&circuit, &lengths).expect("plans");
    let sorts: usize = instance.layers.iter().map(|l| l.sorts.len()).sum();
    assert_eq!(sorts, 2, "one ascending sort for x, y, m, q and s; one descending for d");
    // Every group-by on one key column: the sort by key and the compaction.
    let source = "input k: int[] from party-0\ninput a: int[] from party-1\n\
                  output g = group_keys(k)\noutput c = group_count(k)\noutput s = group_sum(k, a)\n\
                  output m = group_mean(k, a)\noutput d = count_distinct(k)\n";
    let circuit = compile(source, &p).expect("compiles");
    let lengths = InputLengths(vec![vec![Some(40), None], vec![None, Some(40)]]);
    let instance = Instance::new(&circuit, &lengths).expect("plans");
    let sorts: usize = instance.layers.iter().map(|l| l.sorts.len()).sum();
    assert_eq!(sorts, 3, "one sort by key, one compaction of the keys and counts, one of the sums");
}

/// A median does not depend on the program's fixed point: at
/// `fixed_point 0` the middle of an even length is the halved sum,
/// floored to the grid, not the maximum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_median_at_fixed_point_zero() {
    let source = "fixed_point 0\ninput x: int[] from party-0\noutput m = median(x)\noutput q = quantile(x, 0.25)\n";
    for backend in BACKENDS {
        let inputs = vec![vec![("x", enc(&[9, 1, 4, 6]))], vec![], vec![]];
        let outs = check_within(backend, 3, source, inputs, |_| 1).await;
        let m = outs[0].outputs.iter().find(|o| o.name == "m").and_then(|o| o.value.as_ref()).expect("median");
        assert!((4..=5).contains(&m.expose()[0]), "{backend:?}: the median of 1 4 6 9 is 5, floored within one unit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rank_of_a_sum_is_range_checked() {
    // `rank(x + y)` compares a secret sum: under `range_check` it is
    // checked like `sort`'s key; in range the ranks are plain's, out of
    // range every party fails at the rank, as plain does.
    let source = "range_check\ninput x: int[] from party-0\ninput y: int[] from party-1\noutput r = rank(x + y)\n";
    let big = 1i64 << 61;
    for backend in BACKENDS {
        let inputs = vec![vec![("x", enc(&[3, big - 1, -5, 3]))], vec![("y", enc(&[1, 0, 2, 1]))], vec![]];
        check(backend, 3, source, inputs).await;
        let over = vec![vec![("x", enc(&[big, 0]))], vec![("y", enc(&[big, 0]))], vec![]];
        let run = common::backends::run(backend, 3, source, over).await;
        let err = run.plain.expect_err("plain refuses");
        assert_eq!(err.span.line, 4, "{err}");
        for (party, result) in run.results.iter().enumerate() {
            let e = result.as_ref().expect_err("the job fails").to_string();
            assert!(e.contains("line 4") && e.contains("left the range"), "{backend:?} party {party}: {e}");
        }
    }
}
