//! The conformance suite: every language construct, under every protocol
//! (and every preprocessing mode of a protocol that takes material),
//! against `program::plain` on the same inputs. Adding a protocol means
//! adding a [`Backend`] here.

mod common;

use cohort_worker::program::compile;
use cohort_worker::protocol::ProtocolName;
use cohort_worker::ring::from_signed;
use common::backends::{BACKENDS, Backend, check, check_within};
use common::{edges, neighbour_pairs};

fn enc(v: &[i64]) -> Vec<u64> {
    v.iter().map(|x| from_signed(*x)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_arithmetic() {
    let source = "input x: int[] from party-0\ninput y: int[] from party-1\ninput t: int from party-2\n\
                  output s = x + y * t\noutput p = x * y\noutput total = sum(x * y)\n";
    for backend in BACKENDS {
        check(
            backend,
            3,
            source,
            vec![vec![("x", enc(&[1, -2, 3, 1 << 40]))], vec![("y", enc(&[5, 6, -7, 3]))], vec![("t", enc(&[9]))]],
        )
        .await;
    }
}

/// Every construct of the comparison family (exact: no truncation).
async fn comparison_family(backend: Backend, parties: usize, len: usize) {
    let last = format!("party-{}", parties - 1);
    let reductions = if len == 0 {
        ""
    } else {
        "output vmin = min(x)\noutput vmax = max(y)\noutput amin = argmin(x)\noutput amax = argmax(y)\n"
    };
    let source = format!(
        "input x: int[] from party-0\ninput y: int[] from {last}\ninput f: fixed[] from party-0\n\
         input g: fixed[] from {last}\ninput t: int from {last}\ninput flags: bool[] from party-0\n\
         output lt = x < y\noutput le = x <= y\noutput gt = x > y\noutput ge = x >= y\noutput eq = x == y\n\
         output ne = x != y\noutput fl = f < g\noutput feq = f == g\noutput mixed = x < f\n\
         output sel = select(x < y, x, y)\noutput ab = abs(x)\noutput mn = min(x, y)\noutput mx = max(x, y)\n\
         {reductions}output cl = clamp(x, -100, t)\noutput cnt = count(x < t)\noutput kept = select(flags, x, 0)\n\
         output logic = (x < y and flags) or not (x == y) xor flags\noutput counted = sum(x < y)\n\
         output scalar = t > 3\noutput fsel = select(flags, f, 1.5)\n"
    );
    let (x, y) = neighbour_pairs(len);
    let f: Vec<i64> = x.iter().map(|v| v >> 17).collect();
    let g: Vec<i64> = x.iter().zip(&y).map(|(v, w)| (v >> 17) + (w - v).signum()).collect();
    let flags: Vec<u64> = (0..len).map(|i| (i % 3 == 0) as u64).collect();
    let mut inputs = vec![Vec::new(); parties];
    inputs[0] = vec![("x", enc(&x)), ("f", enc(&f)), ("flags", flags)];
    inputs[parties - 1].extend([("y", enc(&y)), ("g", enc(&g)), ("t", enc(&[12345]))]);
    check(backend, parties, &source, inputs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_comparison_family_under_every_protocol() {
    // The bit-slicing boundaries and an empty vector (the additive
    // protocol's own suite, comparisons.rs, covers every length and 2 and
    // 5 parties too).
    for backend in BACKENDS {
        for len in [0, 1, 2, 63, 64, 65, 200] {
            comparison_family(backend, 3, len).await;
        }
    }
}

/// Every arithmetic operation, with the fixed-point range's edges: exact
/// for ring operations, within one unit per division or truncation.
async fn arithmetic(backend: Backend, parties: usize) {
    let last = format!("party-{}", parties - 1);
    let source = format!(
        "input a: int[] from party-0\ninput b: int[] from {last}\ninput x: fixed[] from party-0\n\
         input y: fixed[] from {last}\ninput s: fixed from {last}\ninput k: int from party-0\n\
         output add = a + b\noutput sub = a - b\noutput neg = -a\noutput mul = a * b\noutput affine = a * 3 - 7\n\
         output scalar = a * k\noutput total = sum(a)\noutput cat_len = len(a) + len(x)\noutput addf = x + y\n\
         output mulf = x * y\noutput divf = x / 3\noutput divi = a / 1000\noutput divbig = a / 4611686018427387903\n\
         output scaled = x * s\noutput halves = x * 0.5\noutput dotf = dot(x, y)\noutput meanf = mean(x)\n\
         output mixed = a * x\noutput chain = (x * y) * s\n"
    );
    let fp = cohort_worker::fixed::FixedPoint::default();
    let big = (1i64 << 61) - 1;
    let a: Vec<i64> = vec![0, 1, -1, 2, -3, 123456, -654321, 1_000_000_000, -1_000_000_000, 0];
    let b: Vec<i64> = vec![0, -1, 1, big, -big, 7, -7, 1_000_000_000, 3, 1];
    let edge = 1024.0 - 1.0 / 256.0;
    let xf = [0.0, 1.0, -1.0, edge, -edge, 0.5, -0.25, 3.25159, -2.61828, 1.0 / 65536.0];
    let yf = [0.0, -1.0, 1.0, edge, edge, -0.5, 1000.0, -3.0, 0.0, 64.0];
    let fixed = |v: &[f64]| -> Vec<u64> { v.iter().map(|v| fp.encode(*v).unwrap()).collect() };
    let ints = |v: &[i64]| -> Vec<u64> { v.iter().map(|v| cohort_worker::fixed::encode_int(*v).unwrap()).collect() };
    let mut inputs = vec![Vec::new(); parties];
    inputs[0] = vec![("a", ints(&a)), ("x", fixed(&xf)), ("k", ints(&[-3]))];
    inputs[parties - 1].extend([("b", ints(&b)), ("y", fixed(&yf)), ("s", fixed(&[-1.5]))]);
    check_within(backend, parties, &source, inputs, |name| match name {
        "mulf" | "divf" | "divi" | "divbig" | "scaled" | "halves" | "dotf" | "meanf" => 1,
        "chain" => 3,
        _ => 0,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arithmetic_under_every_protocol() {
    for backend in BACKENDS {
        arithmetic(backend, 3).await;
    }
}

/// Truncation is exact when the divisor divides the value (a product of
/// whole numbers), under every protocol: `dot` truncates each product.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_multiples_truncate_exactly() {
    let fp = cohort_worker::fixed::FixedPoint::default();
    let fixed = |v: &[f64]| -> Vec<u64> { v.iter().map(|v| fp.encode(*v).unwrap()).collect() };
    let source = "input x: fixed[] from party-0\ninput y: fixed[] from party-2\noutput d = dot(x, y)\n\
                  output p = x * y\noutput q = x / 4\n";
    for backend in BACKENDS {
        let inputs = vec![
            vec![("x", fixed(&[1.0, 2.0, -3.0, 0.5, 1000.0, -0.25]))],
            vec![],
            vec![("y", fixed(&[1.0, 1.0, 4.0, -2.0, 0.5, 8.0]))],
        ];
        check(backend, 3, source, inputs).await;
    }
}

/// The online layers of `source` under `protocol` for inputs of `len`
/// elements.
fn layers(protocol: ProtocolName, source: &str, len: usize) -> usize {
    use cohort_worker::executor::{InputLengths, Instance, Lowering, Quotients};
    let names: Vec<String> = (0..3).map(|i| format!("party-{i}")).collect();
    let circuit = compile(source, &names).expect("compiles");
    let lengths = InputLengths(
        circuit.inputs.iter().map(|i| (0..3).map(|p| i.is_owned_by(p).then_some(len)).collect()).collect(),
    );
    let lowering = Lowering { protocol, quotients: Quotients::Exact };
    Instance::plan(&circuit, &lengths, lowering).expect("plans").depth()
}

/// Rounds per construct under replicated sharing, whatever the length:
/// a comparison is the split's input round, one AND level for the first
/// generate and 6 for the carry (8); equality the input round and 6
/// levels (7); a select after a comparison one more; a fixed-point
/// product one multiplication and a two-round truncation.
#[test]
fn rounds_per_construct_under_replicated_sharing() {
    let rep3 = ProtocolName::Replicated3;
    let head = "input x: int[] from party-0\ninput y: int[] from party-2\ninput f: fixed[] from party-0\n";
    for len in [1, 2, 63, 64, 65, 1000] {
        let at = |body: &str| layers(rep3, &format!("{head}{body}\n"), len);
        assert_eq!(at("output o = x < y"), 8, "x < y over {len}");
        assert_eq!(at("output o = x == y"), 7, "x == y over {len}");
        assert_eq!(at("output o = select(x < y, x, y)"), 9, "select over {len}");
        assert_eq!(at("output o = min(x, y)"), 9, "min(x, y) over {len}");
        assert_eq!(at("output o = x * y"), 1, "x * y over {len}");
        assert_eq!(at("output o = f * f"), 3, "a fixed-point product over {len}");
        assert_eq!(at("output o = x / 7"), 2, "a division over {len}");
        let levels = (len as f64).log2().ceil() as usize;
        assert_eq!(at("output o = max(x)"), 9 * levels, "max(x) over {len}");
        assert_eq!(at("output o = argmin(x)"), 9 * levels, "argmin(x) over {len}");
    }
}

/// A job's rounds under replicated sharing: setup, inputs, the daBit
/// round when the program injects bits, its layers and the output round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_rounds_under_replicated_sharing() {
    let source = "input x: int[] from party-0\ninput y: int[] from party-2\noutput p = x * y\n";
    let inputs = || vec![vec![("x", enc(&[1, 2]))], vec![], vec![("y", enc(&[3, 4]))]];
    for out in check(Backend::Replicated, 3, source, inputs()).await {
        assert_eq!(out.stats.rounds, 3 + 1);
    }
    let source = "input x: int[] from party-0\ninput y: int[] from party-2\noutput m = min(x, y)\n";
    for out in check(Backend::Replicated, 3, source, inputs()).await {
        assert_eq!(out.stats.rounds, 3 + 1 + 9, "with the daBit round");
    }
}

/// A random program over the comparison family, as source text: typed
/// expressions over int vectors `x`, `y`, an int scalar `t` and a bool
/// vector `flags`, built from `choices` (one per decision).
struct RandomProgram<'a> {
    choices: &'a [u8],
    next: usize,
}

impl RandomProgram<'_> {
    fn pick(&mut self, n: u8) -> u8 {
        let c = self.choices.get(self.next).copied().unwrap_or(0);
        self.next += 1;
        c % n
    }

    fn int(&mut self, depth: u32) -> String {
        if depth == 0 {
            return match self.pick(10) {
                0 => "x".into(),
                1 => "y".into(),
                2 => "t".into(),
                3 => format!("{}", self.pick(7) as i64 - 3),
                // Vectors of the inputs' length from the order statistics
                // and group-bys (issue 18): they combine elementwise.
                4 => "sort(x)".into(),
                5 => "sort_by_desc(x, y)".into(),
                6 => "group_count(y)".into(),
                7 => "group_sum(x, y)".into(),
                8 => ["rank(x)", "rank_desc(y)"][self.pick(2) as usize].into(),
                _ => "(x - y)".into(),
            };
        }
        let d = depth - 1;
        match self.pick(11) {
            0 => format!("({} + {})", self.int(d), self.int(d)),
            1 => format!("({} - {})", self.int(d), self.int(d)),
            2 => format!("({} * {})", self.int(d), self.int(d)),
            3 => format!("select({}, {}, {})", self.bool(d), self.int(d), self.int(d)),
            4 => format!("min({}, {})", self.int(d), self.int(d)),
            5 => format!("max({}, {})", self.int(d), self.int(d)),
            6 => format!("abs({})", self.int(d)),
            7 => format!("clamp({}, -3, 4)", self.int(d)),
            8 => format!("count({})", self.bool(d)),
            9 => match self.pick(4) {
                0 => "min(x)".into(),
                1 => "max(y)".into(),
                2 => "argmin(y)".into(),
                _ => "argmax(x)".into(),
            },
            _ => format!("({} * {})", self.bool(d), self.int(d)),
        }
    }

    fn bool(&mut self, depth: u32) -> String {
        if depth == 0 {
            return match self.pick(3) {
                0 => "flags".into(),
                1 => "(x < y)".into(),
                _ => "(t == y)".into(),
            };
        }
        let d = depth - 1;
        match self.pick(9) {
            0 => format!("({} < {})", self.int(d), self.int(d)),
            1 => format!("({} <= {})", self.int(d), self.int(d)),
            2 => format!("({} == {})", self.int(d), self.int(d)),
            3 => format!("({} != {})", self.int(d), self.int(d)),
            4 => format!("({} and {})", self.bool(d), self.bool(d)),
            5 => format!("({} or {})", self.bool(d), self.bool(d)),
            6 => format!("({} xor {})", self.bool(d), self.bool(d)),
            7 => format!("(not {})", self.bool(d)),
            _ => format!("({} > {})", self.int(d), self.int(d)),
        }
    }
}

/// Random programs of the comparison family, with sorts, ranks and
/// group-bys among their leaves, under every protocol (3
/// parties; the additive protocol with dealt material) against
/// `program::plain` on edge and random inputs: every output equal, element
/// by element.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_programs_against_plain() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config { cases: 24, ..Config::default() },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[16; 32]),
    );
    let strategy = (proptest::collection::vec(any::<u8>(), 64), proptest::collection::vec(any::<i64>(), 6), 1usize..70);
    let names: Vec<String> = (0..3).map(|i| format!("party-{i}")).collect();
    let mut cases = Vec::new();
    for _ in 0..24 {
        let (choices, seeds, len) = strategy.new_tree(&mut runner).expect("a case").current();
        let mut program = RandomProgram { choices: &choices, next: 0 };
        let source = format!(
            "input x: int[] from party-0\ninput y: int[] from party-1\ninput t: int from party-2\n\
             input flags: bool[] from party-0\noutput a = {}\noutput b = {}\noutput c = {}\n",
            program.int(3),
            program.bool(3),
            program.int(2)
        );
        cases.push((source, seeds, len));
    }
    for (source, seeds, len) in cases {
        if let Err(e) = compile(&source, &names) {
            panic!("generated program does not compile: {e}\n{source}");
        }
        // Edge values first, then values derived from the seeds.
        let mut e = edges();
        e.extend(seeds.iter().map(|s| s >> 2));
        let x: Vec<i64> = (0..len).map(|i| e[i % e.len()]).collect();
        let y: Vec<i64> = (0..len).map(|i| e[(i * 7 + 3) % e.len()]).collect();
        let flags: Vec<u64> = (0..len).map(|i| ((seeds[0] >> (i % 64)) & 1) as u64).collect();
        let t = vec![from_signed(seeds[1] % 5)];
        let inputs = vec![vec![("x", enc(&x)), ("flags", flags)], vec![("y", enc(&y))], vec![("t", t)]];
        for backend in BACKENDS {
            check(backend, 3, &source, inputs.clone()).await;
        }
    }
}

/// Outputs revealed to some parties only: the others get nothing, under
/// every protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_reach_their_recipients_only() {
    let source = "input x: int[] from party-0\ninput y: int[] from party-1\n\
                  output p = x * y to party-2\noutput q = x < y to party-0, party-1\noutput r = sum(x) to party-1\n";
    for backend in BACKENDS {
        let inputs = vec![vec![("x", enc(&[5, -6, 7]))], vec![("y", enc(&[1, 2, 3]))], vec![]];
        check(backend, 3, source, inputs).await;
    }
}

/// 10^6 elements under replicated sharing: products, comparisons, a
/// selection and a reduction, against plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_elements_under_replicated_sharing() {
    let source = "input x: int[] from party-0\ninput y: int[] from party-2\noutput p = x * y\noutput lt = x < y\n\
                  output s = select(x == y, 0, x)\noutput top = argmax(x)\n";
    let (x, y) = neighbour_pairs(1_000_000);
    let small = |v: &[i64]| -> Vec<i64> { v.iter().map(|v| v >> 32).collect() };
    let inputs = vec![vec![("x", enc(&small(&x)))], vec![], vec![("y", enc(&small(&y)))]];
    check(Backend::Replicated, 3, source, inputs).await;
}
