//! The program language end to end: compile errors with exact positions,
//! and compile → `plain::evaluate` round trips checked against direct
//! `f64`/`i64` computation.

use std::collections::HashMap;

use cohort_worker::fixed::{FixedPoint, decode_int, encode_int};
use cohort_worker::program::ir::{Circuit, ElemType, Op, Owners, Span};
use cohort_worker::program::plain::{EvalErrorKind, PlainInputs, evaluate};
use cohort_worker::program::{compile, interactive_depth, program_hash};
use proptest::prelude::*;

fn parties(n: usize) -> Vec<String> {
    ["bank-a", "bank-b", "bank-c", "bank-d", "bank-e"][..n].iter().map(|s| s.to_string()).collect()
}

/// Input data for a test run.
#[derive(Clone, Debug)]
enum Data {
    Int(Vec<i64>),
    Fixed(Vec<f64>),
    Bool(Vec<bool>),
}

struct Run {
    circuit: Circuit,
    /// The inputs as the circuit sees them (fixed values after encoding).
    seen: HashMap<(String, usize), Vec<f64>>,
    outputs: HashMap<String, Vec<f64>>,
}

fn encode(fp: FixedPoint, d: &Data) -> Vec<u64> {
    match d {
        Data::Int(v) => v.iter().map(|&x| encode_int(x).unwrap()).collect(),
        Data::Fixed(v) => v.iter().map(|&x| fp.encode(x).unwrap()).collect(),
        Data::Bool(v) => v.iter().map(|&b| u64::from(b)).collect(),
    }
}

fn decode(fp: FixedPoint, elem: ElemType, v: &[u64]) -> Vec<f64> {
    match elem {
        ElemType::Int => v.iter().map(|&x| decode_int(x) as f64).collect(),
        ElemType::Bool => v.iter().map(|&x| (x & 1) as f64).collect(),
        ElemType::Fixed => v.iter().map(|&x| fp.decode(x)).collect(),
    }
}

/// Compile `src` for `n` parties and evaluate it on `data` (input name,
/// party index, values).
fn run(src: &str, n: usize, data: &[(&str, usize, Data)]) -> Run {
    let circuit = compile(src, &parties(n)).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let fp = FixedPoint::new(circuit.frac_bits).unwrap();
    let mut inputs = PlainInputs::new();
    let mut seen = HashMap::new();
    for (name, party, d) in data {
        let idx = circuit.inputs.iter().position(|i| i.name == *name).expect("input declared");
        let enc = encode(fp, d);
        seen.insert((name.to_string(), *party), decode(fp, circuit.inputs[idx].elem, &enc));
        inputs.insert(idx, *party, enc);
    }
    let out = evaluate(&circuit, &inputs).unwrap_or_else(|e| panic!("{e}"));
    let outputs = circuit.outputs.iter().zip(&out).map(|(o, v)| (o.name.clone(), decode(fp, o.elem, v))).collect();
    Run { circuit, seen, outputs }
}

impl Run {
    fn out(&self, name: &str) -> &[f64] {
        &self.outputs[name]
    }
    fn scalar(&self, name: &str) -> f64 {
        let v = self.out(name);
        assert_eq!(v.len(), 1, "{name} is not a scalar");
        v[0]
    }
    fn seen(&self, name: &str, party: usize) -> &[f64] {
        &self.seen[&(name.to_string(), party)]
    }
    fn ulp(&self) -> f64 {
        FixedPoint::new(self.circuit.frac_bits).unwrap().ulp()
    }
    fn output_elem(&self, name: &str) -> ElemType {
        self.circuit.outputs.iter().find(|o| o.name == name).unwrap().elem
    }
}

fn close(actual: f64, expected: f64, tol: f64, what: &str) {
    assert!((actual - expected).abs() <= tol, "{what}: got {actual}, expected {expected} (tolerance {tol})");
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn variance(xs: &[f64]) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64
}

// ---- compile errors ---------------------------------------------------

#[test]
fn compile_errors_have_exact_positions() {
    let cases: &[(&str, u32, u32, &str)] = &[
        ("input x: int from bank-z", 1, 19, "unknown party `bank-z`"),
        ("output y = z", 1, 12, "unknown identifier `z`"),
        ("input x: int from bank-a\ninput x: fixed from bank-b", 2, 7, "already defined at line 1, column 7"),
        ("let a = 1\nlet a = 2", 2, 5, "`a` is already defined"),
        ("let a = 1\noutput a = 2", 2, 8, "`a` is already defined"),
        ("input s: fixed[] from each\ninput w: int[] from bank-a\noutput d = dot(w, s)", 3, 19, "per-party list"),
        ("input s: fixed[] from each\noutput d = s + 1", 2, 12, "per-party list"),
        ("input s: fixed[] from each\noutput d = 1 - s", 2, 16, "per-party list"),
        ("input s: fixed[] from each\noutput d = -s", 2, 13, "per-party list"),
        ("output y = foo(1)", 1, 12, "unknown function `foo`"),
        ("input x: int[] from bank-a\noutput y = dot(x)", 2, 12, "`dot` takes 2 arguments, found 1"),
        ("input x: int[] from bank-a\noutput y = sum(x, x)", 2, 12, "`sum` takes 1 argument, found 2"),
        ("output y = concat()", 1, 12, "at least 1 argument"),
        ("input x: int[] from bank-a\noutput z = x / 0", 2, 16, "division by zero"),
        ("output z = 1 / (2 - 2)", 1, 14, "division by zero"),
        ("input x: fixed[] from bank-a\noutput y = x / 1e-9", 2, 16, "divisor rounds to zero"),
        ("input x: int[] from bank-a\noutput y2 = x / concat(1, 2)", 2, 17, "divisor must be a scalar"),
        ("let x = 3 $ 4", 1, 11, "invalid character `$`"),
        ("let x = 3.", 1, 11, "decimal point"),
        ("output a = 1\noutput a = 2", 2, 8, "duplicate output `a` (first declared at line 1, column 8)"),
        (
            "output a = 1 to bank-a, bank-z",
            1,
            25,
            "unknown party `bank-z`; the job's parties are: bank-a, bank-b, bank-c",
        ),
        ("output a = 1e30", 1, 12, "fixed-point constant out of range"),
        ("output a = 70368744177663.0 * 2", 1, 29, "fixed-point constant out of range"),
        ("fixed_point 30\noutput a = 4294967296.0", 2, 12, "strictly between -2^32 and 2^32"),
        ("output a = 4611686018427387903 + 1", 1, 32, "integer constant out of range"),
        ("output a = 4611686018427387904", 1, 12, "integer literal out of range"),
        ("input s: fixed[] from each\noutput n = len(s)", 2, 16, "`len` of a per-party list"),
        ("input x: int[] from bank-a\noutput n = sum", 2, 12, "`sum` is a function"),
        ("input x: int from bank-a\noutput s = sum(x)", 2, 16, "`sum` expects a vector, found an int scalar"),
        ("output s = mean(2.5)", 1, 17, "`mean` expects a vector, found a fixed constant"),
        ("input x: int[] from bank-a\noutput s = x[bank-a]", 2, 12, "only a per-party list"),
        ("input s: int[] from each\noutput s0 = s[bank-q]", 2, 15, "unknown party `bank-q`"),
        ("input s: int[] from each\noutput o = s", 2, 12, "cannot output a per-party list of int vectors"),
        ("input x: int[] from bank-a\noutput a = aggregate(x)", 2, 22, "`aggregate` expects a per-party list"),
        ("output x = 1 +", 1, 15, "expected an expression, found the end of the program"),
        ("output x = (1 + 2", 1, 18, "expected `)` to close the `(` at line 1, column 12"),
        ("output x = 1 to", 1, 16, "expected a party name"),
        ("input x: int[] from\nlet y = 1", 2, 1, "expected a party name, found the reserved word `let`"),
        ("input x: int from bank-a-", 1, 19, "invalid party name `bank-a-`"),
        ("input x: int from all", 1, 19, "use `from each`"),
        ("input x: vector from bank-a", 1, 10, "expected a type"),
        ("  # comment\n\n   let = 1", 3, 8, "expected a name after `let`"),
        ("let a = 1\nfixed_point 20", 2, 1, "must come before"),
        ("output a = 1 to all, bank-a", 1, 17, "cannot be combined"),
        ("let x = 1\nlet y = x x", 2, 11, "expected an operator or a new statement"),
        // A program that outputs nothing is refused, not run (issue 15, item 23).
        ("", 1, 1, "the program is empty"),
        ("  # only a comment\n", 1, 1, "the program is empty"),
        ("input x: int from bank-a\n  let y = x * 2", 2, 3, "the program has no outputs"),
    ];
    for (src, line, column, msg) in cases {
        let e = compile(src, &parties(3)).expect_err(src);
        assert_eq!((e.line, e.column), (*line, *column), "position for {src:?}: {e}");
        assert!(e.message.contains(msg), "message for {src:?}: {e}");
        assert_eq!(e.to_string(), format!("line {line}, column {column}: {}", e.message));
    }
}

#[test]
fn unused_inputs_and_variables_are_fine() {
    let c =
        compile("input x: int[] from bank-a\ninput y: fixed from each\nlet z = 1\noutput o = 2", &parties(2)).unwrap();
    assert_eq!(c.inputs.len(), 2);
    assert_eq!(c.inputs[1].owners, Owners::Each);
    // One Input node per party for an input `from each`, even if unused.
    let input_nodes = c.nodes.iter().filter(|n| matches!(n.op, Op::Input { input: 1, .. })).count();
    assert_eq!(input_nodes, 2);
}

// ---- round trips ------------------------------------------------------

const SALARIES: &str = "\
# salary statistics
input salaries: fixed[] from each        # per-party list of vectors
input weights: fixed[] from bank-a       # one owner, vector
input bonus: int from bank-b             # one owner, scalar
let all = concat(salaries)
let total = aggregate(salaries)          # elementwise sum across parties
output count = len(all)                  # public
output mean = mean(all)
output var = variance(all) to bank-b, bank-a
output dot_ab = dot(weights, all) to bank-a
output scaled = all * 2.5 - 1 / 3        # public constant arithmetic folds
output total = total
output with_bonus = total + bonus
output first = salaries[bank-c] * salaries[bank-a] to bank-c
";

#[test]
fn salary_statistics() {
    let a = vec![1.5, -2.25, 3.0, 10.125];
    let b = vec![100.0, 0.0, -1.0, 7.5];
    let c = vec![0.001, 42.0, -17.5, 3.25];
    let w: Vec<f64> = (0..12).map(|i| i as f64 * 0.5 - 2.0).collect();
    let r = run(
        SALARIES,
        3,
        &[
            ("salaries", 0, Data::Fixed(a)),
            ("salaries", 1, Data::Fixed(b)),
            ("salaries", 2, Data::Fixed(c)),
            ("weights", 0, Data::Fixed(w)),
            ("bonus", 1, Data::Int(vec![-3])),
        ],
    );
    let ulp = r.ulp();
    let (a, b, c) = (r.seen("salaries", 0).to_vec(), r.seen("salaries", 1).to_vec(), r.seen("salaries", 2).to_vec());
    let all: Vec<f64> = a.iter().chain(&b).chain(&c).copied().collect();
    let w = r.seen("weights", 0).to_vec();

    assert_eq!(r.output_elem("count"), ElemType::Int);
    assert_eq!(r.scalar("count"), 12.0);
    close(r.scalar("mean"), mean(&all), ulp, "mean");
    let m = mean(&all);
    close(r.scalar("var"), variance(&all), (2.0 * m.abs() + 4.0) * ulp, "variance");
    let dot: f64 = w.iter().zip(&all).map(|(x, y)| x * y).sum();
    close(r.scalar("dot_ab"), dot, ulp, "dot");
    for (got, x) in r.out("scaled").iter().zip(&all) {
        close(*got, x * 2.5 - 1.0 / 3.0, 1.5 * ulp, "scaled");
    }
    for (i, got) in r.out("total").iter().enumerate() {
        close(*got, a[i] + b[i] + c[i], 0.0, "total");
    }
    for (i, got) in r.out("with_bonus").iter().enumerate() {
        close(*got, a[i] + b[i] + c[i] - 3.0, 0.0, "with_bonus");
    }
    for (i, got) in r.out("first").iter().enumerate() {
        close(*got, c[i] * a[i], ulp, "first");
    }

    let recipients: HashMap<&str, Vec<usize>> =
        r.circuit.outputs.iter().map(|o| (o.name.as_str(), o.recipients.clone())).collect();
    assert_eq!(recipients["count"], vec![0, 1, 2]);
    assert_eq!(recipients["var"], vec![0, 1]);
    assert_eq!(recipients["dot_ab"], vec![0]);
    assert_eq!(recipients["first"], vec![2]);
    assert_eq!(r.circuit.frac_bits, 16);
    assert_eq!(r.circuit.parties, parties(3));
}

#[test]
fn the_product_brief_example_compiles() {
    // From BRIEF.md: outputs are usable as variables afterwards.
    let src = "input salaries: fixed[] from each party\n\
               let all = concat(salaries)\n\
               output mean = sum(all) / len(all)\n\
               output variance = sum(all * all) / len(all) - mean * mean\n";
    let xs = [vec![10.0, 20.0], vec![30.0], vec![40.0, 50.0, 60.0]];
    let data: Vec<_> = xs.iter().enumerate().map(|(p, v)| ("salaries", p, Data::Fixed(v.clone()))).collect();
    let r = run(src, 3, &data);
    let all: Vec<f64> = xs.concat();
    close(r.scalar("mean"), 35.0, r.ulp(), "mean");
    close(r.scalar("variance"), variance(&all), 100.0 * r.ulp(), "variance");
}

#[test]
fn int_mean_does_not_floor_and_division_yields_fixed() {
    let src = "input x: int[] from bank-a\n\
               output m = mean(x)\n\
               output h = x / 2\n\
               output q = x / -4\n\
               output t = sum(x) / 2.5\n\
               output v = variance(x)\n\
               output d = dot(x, x)\n";
    let r = run(src, 2, &[("x", 0, Data::Int(vec![1, 2, -7, 0, 9]))]);
    let ulp = r.ulp();
    assert_eq!(r.output_elem("m"), ElemType::Fixed);
    close(r.scalar("m"), 1.0, ulp, "mean");
    assert_eq!(r.out("h"), &[0.5, 1.0, -3.5, 0.0, 4.5]);
    for (got, x) in r.out("q").iter().zip([1.0, 2.0, -7.0, 0.0, 9.0]) {
        close(*got, x / -4.0, ulp, "negative divisor");
    }
    close(r.scalar("t"), 2.0, ulp, "fixed divisor");
    close(r.scalar("v"), variance(&[1.0, 2.0, -7.0, 0.0, 9.0]), 4.0 * ulp, "int variance");
    assert_eq!(r.output_elem("d"), ElemType::Int);
    assert_eq!(r.scalar("d"), 135.0);
}

#[test]
fn mixed_int_and_fixed_arithmetic() {
    let src = "input i: int[] from bank-a\n\
               input f: fixed[] from bank-b\n\
               input k: int from bank-a\n\
               output sum_if = i + f\n\
               output diff = f - k\n\
               output prod_if = i * f\n\
               output prod_ff = f * f\n\
               output prod_ii = i * k\n\
               output mix = (i + 0.5) * 3 - k * 2.0\n\
               output dot_if = dot(i, f)\n\
               output neg = -f\n\
               output cat = concat(i, f, k, 1)\n";
    let iv = vec![3, -4, 0, 1_000_000];
    let fv = vec![0.5, -1.25, 7.0, -0.001];
    let r = run(src, 2, &[("i", 0, Data::Int(iv.clone())), ("f", 1, Data::Fixed(fv)), ("k", 0, Data::Int(vec![-5]))]);
    let ulp = r.ulp();
    let f = r.seen("f", 1).to_vec();
    let i: Vec<f64> = iv.iter().map(|&x| x as f64).collect();
    for n in 0..4 {
        close(r.out("sum_if")[n], i[n] + f[n], 0.0, "i + f");
        close(r.out("diff")[n], f[n] + 5.0, 0.0, "f - k");
        close(r.out("prod_if")[n], i[n] * f[n], 0.0, "i * f");
        close(r.out("prod_ff")[n], f[n] * f[n], ulp, "f * f");
        close(r.out("prod_ii")[n], i[n] * -5.0, 0.0, "i * k");
        close(r.out("mix")[n], (i[n] + 0.5) * 3.0 + 10.0, 0.0, "mix");
        close(r.out("neg")[n], -f[n], 0.0, "neg");
    }
    assert_eq!(r.output_elem("prod_ii"), ElemType::Int);
    assert_eq!(r.output_elem("prod_if"), ElemType::Fixed);
    close(r.scalar("dot_if"), i.iter().zip(&f).map(|(a, b)| a * b).sum(), 0.0, "dot int fixed");
    let cat: Vec<f64> = i.iter().chain(&f).copied().chain([-5.0, 1.0]).collect();
    assert_eq!(r.out("cat"), cat.as_slice());
    assert_eq!(r.output_elem("cat"), ElemType::Fixed);
}

#[test]
fn public_constants_fold_at_compile_time() {
    let src = "output a = 1 / 3 * 3 + 2.5\noutput b = -(2 - 7) * 4\noutput c = 2 * 0.25\noutput d = a * b";
    let r = run(src, 2, &[]);
    // Every output is a single Const node: nothing left to compute.
    assert!(r.circuit.nodes.iter().all(|n| matches!(n.op, Op::Const(_))), "{:?}", r.circuit.nodes);
    close(r.scalar("a"), 3.5, r.ulp(), "a");
    assert_eq!(r.output_elem("b"), ElemType::Int);
    assert_eq!(r.scalar("b"), 20.0);
    assert_eq!(r.output_elem("c"), ElemType::Fixed);
    assert_eq!(r.scalar("c"), 0.5);
    close(r.scalar("d"), 70.0, r.ulp(), "d");
    assert_eq!(interactive_depth(&r.circuit), 0);
}

#[test]
fn lengths_are_public_and_runtime_public_arithmetic_is_local() {
    let src = "input x: fixed[] from bank-a\ninput y: int[] from each\n\
               let n = len(x) + len(concat(y))\n\
               output n = n\n\
               output half = n / 2\n\
               output scaled = x / (n * 0.5)\n";
    let r = run(
        src,
        2,
        &[
            ("x", 0, Data::Fixed(vec![1.0, 2.0, 3.0])),
            ("y", 0, Data::Int(vec![1])),
            ("y", 1, Data::Int(vec![1, 2, 3, 4])),
        ],
    );
    assert_eq!(r.scalar("n"), 8.0);
    assert_eq!(r.scalar("half"), 4.0);
    for (got, x) in r.out("scaled").iter().zip([1.0, 2.0, 3.0]) {
        close(*got, x / 4.0, r.ulp(), "x / (n * 0.5)");
    }
    // Only the division of the secret x costs a round.
    assert_eq!(interactive_depth(&r.circuit), 1);
}

#[test]
fn recipients_are_sorted_and_deduplicated() {
    let c = compile(
        "input x: int from bank-c\noutput a = x to bank-c, bank-a, bank-c\noutput b = x to all\noutput c = x",
        &parties(3),
    )
    .unwrap();
    assert_eq!(c.outputs[0].recipients, vec![0, 2]);
    assert_eq!(c.outputs[1].recipients, vec![0, 1, 2]);
    assert_eq!(c.outputs[2].recipients, vec![0, 1, 2]);
    assert_eq!(c.outputs[0].span, Span { line: 2, column: 8 });
    assert_eq!(c.inputs[0].owners, Owners::Party(2));
}

#[test]
fn fixed_point_header_sets_the_format() {
    let src = "fixed_point 20\ninput x: fixed[] from bank-a\noutput m = mean(x)\noutput p = x * 1.5";
    let r = run(src, 2, &[("x", 0, Data::Fixed(vec![0.1, 0.2, 0.3]))]);
    assert_eq!(r.circuit.frac_bits, 20);
    assert_eq!(r.ulp(), 2f64.powi(-20));
    let x = r.seen("x", 0).to_vec();
    close(r.scalar("m"), mean(&x), r.ulp(), "mean at 20 bits");
    for (got, x) in r.out("p").iter().zip(&x) {
        close(*got, x * 1.5, r.ulp(), "p");
    }
    let c = compile("fixed_point 0\ninput x: fixed[] from bank-a\noutput y = x * 2.0", &parties(1)).unwrap();
    assert_eq!(c.frac_bits, 0);
}

#[test]
fn edge_values_and_the_safe_range() {
    // Linear operations are exact up to the edge of the safe range.
    let big = (1i64 << 62) - 1;
    let src = "input x: int[] from bank-a\ninput y: int[] from bank-b\n\
               output s = x - y\noutput n = -x\noutput t = sum(x)";
    let r =
        run(src, 2, &[("x", 0, Data::Int(vec![0, 1, -1, big, -big])), ("y", 1, Data::Int(vec![0, -1, 1, big, -big]))]);
    let exact = compile(src, &parties(2)).unwrap();
    let inputs = PlainInputs::new()
        .set(0, 0, [0, 1, -1, big, -big].iter().map(|&v| encode_int(v).unwrap()).collect())
        .set(1, 1, [0, -1, 1, big, -big].iter().map(|&v| encode_int(v).unwrap()).collect());
    let out = evaluate(&exact, &inputs).unwrap();
    let s: Vec<i64> = out[0].iter().map(|&v| decode_int(v)).collect();
    assert_eq!(s, vec![0, 2, -2, 0, 0]);
    let n: Vec<i64> = out[1].iter().map(|&v| decode_int(v)).collect();
    assert_eq!(n, vec![0, -1, 1, -big, big]);
    assert_eq!(decode_int(out[2][0]), 0);
    assert_eq!(r.out("s").len(), 5);

    // Fixed values just inside the safe range add and average exactly.
    let fp = FixedPoint::default();
    let edge = fp.max_abs() / 2.0 - 1.0; // 2^45 - 1
    let src = "input x: fixed[] from bank-a\noutput s = x + x\noutput m = mean(x)\noutput d = x / 4";
    let r = run(src, 1, &[("x", 0, Data::Fixed(vec![edge, -edge, 0.0, 1.0, -1.0]))]);
    assert_eq!(r.out("s"), &[2.0 * edge, -2.0 * edge, 0.0, 2.0, -2.0]);
    close(r.scalar("m"), 0.0, r.ulp(), "mean");
    assert_eq!(r.out("d"), &[edge / 4.0, -edge / 4.0, 0.0, 0.25, -0.25]);
}

#[test]
fn long_vectors() {
    let n = 100_000;
    let xs: Vec<f64> = (0..n).map(|i| ((i * 7919) % 2001) as f64 / 100.0 - 10.0).collect();
    let ys: Vec<i64> = (0..n).map(|i| (i as i64 % 13) - 6).collect();
    let src = "input x: fixed[] from bank-a\ninput y: int[] from bank-b\n\
               output m = mean(x)\noutput v = variance(x)\noutput d = dot(x, y)\n\
               output dd = dot(x, x)\noutput n = len(x)\noutput vy = variance(y)";
    let r = run(src, 2, &[("x", 0, Data::Fixed(xs)), ("y", 1, Data::Int(ys.clone()))]);
    let x = r.seen("x", 0).to_vec();
    let y: Vec<f64> = ys.iter().map(|&v| v as f64).collect();
    let ulp = r.ulp();
    assert_eq!(r.scalar("n"), n as f64);
    close(r.scalar("m"), mean(&x), ulp, "mean");
    close(r.scalar("v"), variance(&x), (2.0 * mean(&x).abs() + 4.0) * ulp, "variance");
    close(r.scalar("d"), x.iter().zip(&y).map(|(a, b)| a * b).sum(), 1e-6, "dot");
    // Each product is truncated (floored, in the plaintext semantics) before
    // the sum: up to one ulp per element.
    close(r.scalar("dd"), x.iter().map(|a| a * a).sum(), n as f64 * ulp + 1e-6, "dot x x");
    close(r.scalar("vy"), variance(&y), (2.0 * mean(&y).abs() + 4.0) * ulp, "int variance");
}

#[test]
fn aggregate_is_secure_aggregation() {
    let src = "input v: int[] from each\noutput total = aggregate(v)\noutput s = aggregate(v)[bank-a]";
    // `aggregate(v)[bank-a]` is not a per-party list.
    assert!(compile(src, &parties(3)).is_err());
    let src = "input v: int[] from each\ninput c: fixed from each\noutput total = aggregate(v)\n\
               output count = aggregate(c)\noutput all = concat(c)";
    let r = run(
        src,
        3,
        &[
            ("v", 0, Data::Int(vec![1, 2, 3])),
            ("v", 1, Data::Int(vec![10, 20, 30])),
            ("v", 2, Data::Int(vec![100, 200, 300])),
            ("c", 0, Data::Fixed(vec![0.5])),
            ("c", 1, Data::Fixed(vec![0.25])),
            ("c", 2, Data::Fixed(vec![-1.0])),
        ],
    );
    assert_eq!(r.out("total"), &[111.0, 222.0, 333.0]);
    assert_eq!(r.out("count"), &[-0.25]);
    assert_eq!(r.out("all"), &[0.5, 0.25, -1.0]);
    assert_eq!(interactive_depth(&r.circuit), 0);
}

#[test]
fn runtime_errors_point_at_the_source() {
    let c = compile("input v: int[] from each\n\noutput total =   aggregate(v)", &parties(2)).unwrap();
    let inputs = PlainInputs::new().set(0, 0, vec![1, 2]).set(0, 1, vec![1, 2, 3]);
    let e = evaluate(&c, &inputs).unwrap_err();
    assert_eq!(e.span, Span { line: 3, column: 18 });
    assert_eq!(e.kind, EvalErrorKind::LengthMismatch { left: 2, right: 3 });

    let c = compile("input x: fixed[] from bank-a\noutput m = mean(x)", &parties(2)).unwrap();
    let e = evaluate(&c, &PlainInputs::new().set(0, 0, vec![])).unwrap_err();
    assert_eq!(e.span, Span { line: 2, column: 12 });
    assert_eq!(e.kind, EvalErrorKind::NonPositiveDivisor { divisor: 0 });

    let e = evaluate(&c, &PlainInputs::new()).unwrap_err();
    assert_eq!(e.span, Span { line: 1, column: 7 });
    assert!(matches!(e.kind, EvalErrorKind::MissingInput { input: 0, party: 0, .. }));

    let c = compile("input x: int from bank-a\noutput m = x", &parties(2)).unwrap();
    let e = evaluate(&c, &PlainInputs::new().set(0, 0, vec![1, 2])).unwrap_err();
    assert!(matches!(e.kind, EvalErrorKind::NotAScalar { len: 2, .. }));
}

/// Public run-time arithmetic is checked like constant folding (issue 15,
/// item 3): `50000.5*50000.5` folds to 2500050000.25, so the same product
/// of run-time public values must not wrap to a wrong number but fail at
/// the operator. The raw product carries 2f = 32 fractional bits:
/// 2500050000.25 * 2^32 > 2^62.
#[test]
fn public_runtime_arithmetic_out_of_range_fails_at_the_operator() {
    let folded = run("output p = 50000.5*50000.5", 2, &[]);
    assert_eq!(folded.outputs["p"], vec![2500050000.25]);

    let src = "input x: int[] from bank-a\noutput p = (len(x)*50000.5)  *  (len(x)*50000.5)";
    let c = compile(src, &parties(2)).unwrap();
    let e = evaluate(&c, &PlainInputs::new().set(0, 0, vec![7])).unwrap_err();
    assert_eq!(e.span, Span { line: 2, column: 30 }, "{e}");
    assert_eq!(e.kind, EvalErrorKind::PublicOutOfRange("multiplication"));
    assert!(e.to_string().starts_with("line 2, column 30: the multiplication of public values leaves the range"));

    // Inside the range the same expression is exact; sums, differences and
    // negations of public values are checked too.
    let r = run(
        "input x: int[] from bank-a\noutput p = (len(x)*1000.5)*(len(x)*1000.5)",
        2,
        &[("x", 0, Data::Int(vec![1, 2]))],
    );
    assert_eq!(r.outputs["p"], vec![2001.0 * 2001.0]);
    for (src, column, what) in [
        ("input x: int[] from bank-a\noutput p = len(x)*4611686018427387903 + len(x)", 39, "addition"),
        ("input x: int[] from bank-a\noutput p = -4611686018427387903 - len(x)*2", 33, "subtraction"),
        ("input x: int[] from bank-a\noutput p = len(x)*2305843009213693952*2", 38, "multiplication"),
        ("input x: int[] from bank-a\noutput p = sum(concat(len(x)*4611686018427387903, len(x)))", 12, "sum"),
    ] {
        let c = compile(src, &parties(2)).unwrap_or_else(|e| panic!("{src}: {e}"));
        let e = evaluate(&c, &PlainInputs::new().set(0, 0, vec![7])).unwrap_err();
        assert_eq!(
            (e.span.line, e.span.column, e.kind.clone()),
            (2, column, EvalErrorKind::PublicOutOfRange(what)),
            "{src}: {e}"
        );
    }
}

// ---- depth ------------------------------------------------------------

fn depth(src: &str) -> usize {
    interactive_depth(&compile(src, &parties(3)).unwrap())
}

#[test]
fn interactive_depth_of_each_construct() {
    let pre = "input x: fixed[] from bank-a\ninput y: fixed[] from bank-b\ninput i: int[] from bank-c\n\
               input s: fixed[] from each\n";
    let cases: &[(&str, usize)] = &[
        ("output o = x + y - 3 + i", 0),
        ("output o = sum(x) + len(y) + aggregate(s) * 2", 0),
        ("output o = x * 2", 0),
        ("output o = x * 2.0", 0),
        ("output o = i * 2.5", 0),
        ("output o = x * 2.5", 1),
        ("output o = x / 3", 1),
        ("output o = x / len(y)", 1),
        ("output o = i * i", 1),
        ("output o = i * x", 1),
        ("output o = x * y", 2),
        ("output o = dot(i, i)", 1),
        ("output o = dot(i, x)", 1),
        ("output o = dot(x, y)", 2),
        ("output o = mean(x)", 1),
        ("output o = mean(i)", 1),
        ("output o = variance(x)", 3),
        ("output o = variance(i)", 3),
        ("output o = variance(concat(s))", 3),
        ("output o = x * y * x", 4),
    ];
    for (body, want) in cases {
        assert_eq!(depth(&format!("{pre}{body}")), *want, "{body}");
    }
    // mean and variance of the same vector share their sums.
    let c = compile(&format!("{pre}output m = mean(x)\noutput v = variance(x)"), &parties(3)).unwrap();
    let sums = c.nodes.iter().filter(|n| matches!(n.op, Op::Sum(_))).count();
    assert_eq!(sums, 2, "sum(x) and sum(x*x)");
    assert_eq!(interactive_depth(&c), 3);
}

#[test]
fn variance_depth_is_constant_in_the_vector_length_and_parties() {
    for n in 1..=5 {
        let c = compile("input s: fixed[] from each\noutput v = variance(concat(s))", &parties(n)).unwrap();
        assert_eq!(interactive_depth(&c), 3);
    }
}

#[test]
fn program_hash_is_of_the_exact_text() {
    let h = program_hash(SALARIES);
    assert_eq!(h, program_hash(SALARIES));
    assert_ne!(h, program_hash(&SALARIES.replace("bank-a", "bank-b")));
    assert_ne!(h, program_hash(&format!("{SALARIES} ")));
}

// ---- properties -------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Linear expressions over int and fixed inputs match f64 arithmetic:
    /// exactly without truncation, within one ulp per truncation.
    #[test]
    fn linear_expressions_match_f64(
        a in prop::collection::vec(-1e6f64..1e6, 1..20),
        bseed in prop::collection::vec(-1_000_000i64..1_000_000, 20),
        s in -1e6f64..1e6,
        c1 in -1000i64..1000,
        q2 in -400i64..400,
        m3 in -64i64..64,
        k in -1_000_000i64..1_000_000,
    ) {
        let n = a.len();
        let b: Vec<i64> = bseed[..n].to_vec();
        let c2 = q2 as f64 / 4.0;
        let c3 = (2 * m3 + 1) as f64 / 8.0;
        let src = format!(
            "input a: fixed[] from bank-a\ninput b: int[] from bank-b\ninput s: fixed from bank-c\n\
             output y = {c1} * a - b * {c2:?} + s + {k}\n\
             output z = a * {c3:?} - (b - s) * -1\n\
             output t = sum(a) * {c1} + sum(b) - len(a) * s\n"
        );
        let r = run(&src, 3, &[("a", 0, Data::Fixed(a)), ("b", 1, Data::Int(b.clone())), ("s", 2, Data::Fixed(vec![s]))]);
        let a = r.seen("a", 0).to_vec();
        let s = r.seen("s", 2)[0];
        let b: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        let ulp = r.ulp();
        for i in 0..n {
            let y = c1 as f64 * a[i] - b[i] * c2 + s + k as f64;
            prop_assert!((r.out("y")[i] - y).abs() <= 1e-9 * y.abs().max(1.0), "y {} vs {}", r.out("y")[i], y);
            let z = a[i] * c3 + (b[i] - s);
            prop_assert!((r.out("z")[i] - z).abs() <= ulp + 1e-9 * z.abs(), "z {} vs {}", r.out("z")[i], z);
        }
        let t = a.iter().sum::<f64>() * c1 as f64 + b.iter().sum::<f64>() - n as f64 * s;
        prop_assert!((r.scalar("t") - t).abs() <= 1e-9 * t.abs().max(1.0));
        prop_assert_eq!(interactive_depth(&r.circuit), 1);
    }
}

#[test]
fn examples_in_the_language_docs_compile() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/language.md")).unwrap();
    let first = doc.split("```\n").nth(1).expect("first code block");
    let c = compile(first, &parties(3)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.outputs.len(), 7);
    assert_eq!(interactive_depth(&c), 3);
    let comparisons = doc.split("```\n").find(|b| b.starts_with("# which customers")).expect("comparison example");
    let c = compile(comparisons, &parties(2)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.outputs.len(), 4);
    assert_eq!(c.outputs[0].elem, ElemType::Bool);
}

#[test]
fn large_programs_are_bounded_not_crashing() {
    // The largest accepted expressions compile on a small (512 KiB) stack.
    let chain = format!("input x: fixed[] from bank-a\noutput y = x{}", " + x * 1.5".repeat(500));
    let nested = format!("output z = {}1{}", "-(".repeat(100), ")".repeat(100));
    let handle = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            compile(&chain, &parties(2)).unwrap();
            compile(&nested, &parties(2)).unwrap();
        })
        .unwrap();
    handle.join().unwrap();
    // Beyond the limits: an error, not a stack overflow.
    let e = compile(&format!("output y = 1{}", " - 1".repeat(5000)), &parties(2)).unwrap_err();
    assert!(e.message.contains("expression too large"), "{e}");
    let e = compile(&format!("output z = {}1", "(".repeat(100_000)), &parties(2)).unwrap_err();
    assert!(e.message.contains("nested too deeply"), "{e}");
}

// ---- comparisons, bools and the comparison family (issue 16) -----------

/// Outputs as bools (panics if not 0/1).
fn bools(v: &[f64]) -> Vec<bool> {
    v.iter()
        .map(|&x| {
            assert!(x == 0.0 || x == 1.0, "{x} is not a bool");
            x == 1.0
        })
        .collect()
}

#[test]
fn comparison_compile_errors_have_exact_positions() {
    let pre = "input x: int[] from bank-a\ninput f: fixed from bank-b\ninput s: int[] from each\n\
               input c: bool[] from bank-c\n";
    let cases: &[(&str, u32, u32, &str)] = &[
        // A per-party list must be indexed or combined before comparing.
        ("output o = s < 3", 5, 12, "cannot compare a per-party list"),
        ("output o = 3 == s", 5, 17, "cannot compare a per-party list"),
        ("output o = max(s)", 5, 16, "use concat(...) or aggregate(...)"),
        ("output o = select(c, s, 1)", 5, 22, "per-party list"),
        // Bools have no order, and do not compare with numbers.
        ("output o = c < c", 5, 14, "`<` compares numbers, found two bools"),
        ("output o = true >= false", 5, 17, "bools compare only with `==` and `!=`"),
        ("output o = x == c", 5, 17, "`==` cannot compare a bool with a number, found a bool vector"),
        ("output o = (x < 1) > 0", 5, 12, "cannot compare a bool with a number"),
        // A number where a bool is required.
        (
            "output o = select(1, x, 2)",
            5,
            19,
            "`select`'s condition (its first argument) expects a bool, found an int constant",
        ),
        ("output o = not x", 5, 16, "`not` expects a bool, found an int vector"),
        ("output o = c and f", 5, 18, "`and` expects a bool, found a fixed scalar"),
        ("output o = 1 or c", 5, 12, "`or` expects a bool"),
        ("output o = (x > 0) xor 1.5", 5, 24, "`xor` expects a bool, found a fixed constant"),
        ("output o = not s", 5, 16, "per-party list"),
        // A bool where a number is required and no conversion is defined.
        ("output o = abs(c)", 5, 16, "`abs` expects a number (int or fixed), found a bool vector"),
        ("output o = min(c)", 5, 16, "`min` expects a vector of numbers, found a bool vector"),
        ("output o = max(x, c)", 5, 19, "`max` expects a number"),
        ("output o = argmax(c)", 5, 19, "`argmax` expects a vector of numbers"),
        ("output o = clamp(f, true, 2)", 5, 21, "`clamp` expects a number"),
        ("output o = select(c, x, true)", 5, 25, "two numbers or two bools"),
        ("output o = concat(x, c)", 5, 22, "`concat` cannot mix bools and numbers, found a bool vector"),
        ("output o = count(x)", 5, 18, "`count` expects a bool vector, found an int vector"),
        ("output o = count(true)", 5, 18, "`count` expects a vector"),
        // Arity and shape.
        ("output o = min()", 5, 12, "`min` takes a vector or at least 2 values, found no arguments"),
        ("output o = max(3)", 5, 16, "`max` expects a vector, found an int constant; or give it two or more values"),
        ("output o = argmin(x, x)", 5, 12, "`argmin` takes 1 argument, found 2"),
        ("output o = select(c, x)", 5, 12, "`select` takes 3 arguments, found 2"),
        ("output o = clamp(x, 5, 1)", 5, 21, "lower bound is above its upper bound"),
        ("output o = clamp(x, 0.5, 0.25)", 5, 21, "lower bound is above its upper bound"),
        // Syntax.
        ("output o = x < 1 < 2", 5, 18, "comparisons do not chain"),
        ("output o = x ! 1", 5, 14, "write `not` for negation"),
        ("output o = x && c", 5, 14, "`and`"),
        ("let true = 1", 5, 5, "expected a name after `let`, found `true`"),
    ];
    for (body, line, column, msg) in cases {
        let src = format!("{pre}{body}");
        let e = compile(&src, &parties(3)).expect_err(body);
        assert_eq!((e.line, e.column), (*line, *column), "position for {body:?}: {e}");
        assert!(e.message.contains(msg), "message for {body:?}: {e}");
    }
}

#[test]
fn comparisons_on_int_fixed_and_mixed_vectors_and_scalars() {
    let src = "input x: int[] from bank-a\ninput y: int[] from bank-b\ninput f: fixed[] from bank-b\n\
               input k: fixed from bank-a\n\
               output lt = x < y\noutput le = x <= y\noutput gt = x > y\noutput ge = x >= y\n\
               output eq = x == y\noutput ne = x != y\n\
               output mixed = x < f\noutput fixed_eq = f == x\noutput scalar = f >= k\n\
               output constant = x > 1.5\noutput constant_eq = f == 0.1\n";
    let xs = vec![0, 1, -1, 5, -3, 7, 2];
    let ys = vec![0, 2, -1, 4, 3, -7, 2];
    let fs = vec![0.5, 1.0, -1.25, 5.0, -3.0, 6.999, 0.1];
    let r = run(
        src,
        2,
        &[
            ("x", 0, Data::Int(xs.clone())),
            ("y", 1, Data::Int(ys.clone())),
            ("f", 1, Data::Fixed(fs)),
            ("k", 0, Data::Fixed(vec![1.0])),
        ],
    );
    let f = r.seen("f", 1).to_vec();
    let pairs = || xs.iter().zip(&ys);
    assert_eq!(bools(r.out("lt")), pairs().map(|(a, b)| a < b).collect::<Vec<_>>());
    assert_eq!(bools(r.out("le")), pairs().map(|(a, b)| a <= b).collect::<Vec<_>>());
    assert_eq!(bools(r.out("gt")), pairs().map(|(a, b)| a > b).collect::<Vec<_>>());
    assert_eq!(bools(r.out("ge")), pairs().map(|(a, b)| a >= b).collect::<Vec<_>>());
    assert_eq!(bools(r.out("eq")), pairs().map(|(a, b)| a == b).collect::<Vec<_>>());
    assert_eq!(bools(r.out("ne")), pairs().map(|(a, b)| a != b).collect::<Vec<_>>());
    let xf: Vec<f64> = xs.iter().map(|&a| a as f64).collect();
    assert_eq!(bools(r.out("mixed")), xf.iter().zip(&f).map(|(a, b)| a < b).collect::<Vec<_>>());
    assert_eq!(bools(r.out("fixed_eq")), xf.iter().zip(&f).map(|(a, b)| a == b).collect::<Vec<_>>());
    assert_eq!(bools(r.out("scalar")), f.iter().map(|&b| b >= 1.0).collect::<Vec<_>>());
    assert_eq!(bools(r.out("constant")), xf.iter().map(|&a| a > 1.5).collect::<Vec<_>>());
    // `fixed` compares encodings: the input 0.1 and the constant 0.1 are
    // the same grid point.
    assert_eq!(bools(r.out("constant_eq")), vec![false, false, false, false, false, false, true]);
    for o in &r.circuit.outputs {
        assert_eq!(o.elem, ElemType::Bool, "{}", o.name);
    }
}

#[test]
fn comparisons_lower_to_less_equal_and_not() {
    let c = compile(
        "input a: int from bank-a\ninput b: int from bank-b\n\
         output lt = a < b\noutput gt = a > b\noutput le = a <= b\noutput ge = a >= b\n\
         output eq = a == b\noutput ne = a != b\noutput nn = not not (a < b)",
        &parties(2),
    )
    .unwrap();
    let op = |name: &str| c.nodes[c.outputs.iter().find(|o| o.name == name).unwrap().value].op.clone();
    let (a, b) = (0, 1);
    let less_ab = c.nodes.iter().position(|n| n.op == Op::Less(a, b)).unwrap();
    let less_ba = c.nodes.iter().position(|n| n.op == Op::Less(b, a)).unwrap();
    let equal = c.nodes.iter().position(|n| n.op == Op::Equal(a, b)).unwrap();
    assert_eq!(op("lt"), Op::Less(a, b));
    assert_eq!(op("gt"), Op::Less(b, a));
    assert_eq!(op("le"), Op::Not(less_ba));
    assert_eq!(op("ge"), Op::Not(less_ab));
    assert_eq!(op("eq"), Op::Equal(a, b));
    assert_eq!(op("ne"), Op::Not(equal));
    // A double negation cancels; identical comparisons are shared.
    assert_eq!(op("nn"), Op::Less(a, b));
    assert_eq!(c.nodes.iter().filter(|n| matches!(n.op, Op::Less(..))).count(), 2);
    // An int compared with a fixed is scaled to fixed first.
    let c = compile("input a: int from bank-a\ninput f: fixed from bank-b\noutput o = a < f", &parties(2)).unwrap();
    assert!(
        matches!(c.nodes[c.outputs[0].value].op, Op::Less(scaled, 1) if matches!(c.nodes[scaled].op, Op::Mul(0, _)))
    );
}

#[test]
fn comparisons_of_constants_fold() {
    let src = "output a = 1 < 2\noutput b = 1.5 >= 2\noutput c = 3 == 3.0\noutput d = not (1 != 1) and true\n\
               output e = (2 < 1) or (1 < 2) xor true\noutput f = select(1 < 2, 3, 4.5)\noutput g = min(3, -1, 2)\n\
               output h = max(1, 2.5)\noutput i = abs(-4)\noutput j = clamp(7, 0, 5)\noutput k = true * 3 + false\n\
               output l = 0.1 + 0.2 == 0.3";
    let r = run(src, 2, &[]);
    assert!(r.circuit.nodes.iter().all(|n| matches!(n.op, Op::Const(_) | Op::Bool(_))), "{:?}", r.circuit.nodes);
    assert_eq!(bools(r.out("a")), vec![true]);
    assert_eq!(bools(r.out("b")), vec![false]);
    assert_eq!(bools(r.out("c")), vec![true]);
    assert_eq!(bools(r.out("d")), vec![true]);
    assert_eq!(bools(r.out("e")), vec![false]);
    assert_eq!(r.output_elem("e"), ElemType::Bool);
    assert_eq!((r.scalar("f"), r.output_elem("f")), (3.0, ElemType::Fixed));
    assert_eq!((r.scalar("g"), r.output_elem("g")), (-1.0, ElemType::Int));
    assert_eq!((r.scalar("h"), r.output_elem("h")), (2.5, ElemType::Fixed));
    assert_eq!(r.scalar("i"), 4.0);
    assert_eq!(r.scalar("j"), 5.0);
    assert_eq!((r.scalar("k"), r.output_elem("k")), (3.0, ElemType::Int));
    // Constants are folded in double precision and then rounded to the grid:
    // 0.1 + 0.2 and 0.3 are the same grid point.
    assert_eq!(bools(r.out("l")), vec![true]);
    assert_eq!(interactive_depth(&r.circuit), 0);
}

#[test]
fn logic_on_bools() {
    let src = "input p: bool[] from bank-a\ninput q: bool[] from bank-b\n\
               output both = p and q\noutput either = p or q\noutput one = p xor q\noutput neither = not p\n\
               output same = p == q\noutput differ = p != q\noutput kept = p and true\noutput flipped = p xor true\n\
               output mix = not p and q or p xor q";
    let p = vec![false, false, true, true];
    let q = vec![false, true, false, true];
    let r = run(src, 2, &[("p", 0, Data::Bool(p.clone())), ("q", 1, Data::Bool(q.clone()))]);
    let each = |f: &dyn Fn(bool, bool) -> bool| p.iter().zip(&q).map(|(&a, &b)| f(a, b)).collect::<Vec<_>>();
    assert_eq!(bools(r.out("both")), each(&|a, b| a & b));
    assert_eq!(bools(r.out("either")), each(&|a, b| a | b));
    assert_eq!(bools(r.out("one")), each(&|a, b| a ^ b));
    assert_eq!(bools(r.out("neither")), each(&|a, _| !a));
    assert_eq!(bools(r.out("same")), each(&|a, b| a == b));
    assert_eq!(bools(r.out("differ")), each(&|a, b| a != b));
    assert_eq!(bools(r.out("kept")), p);
    assert_eq!(bools(r.out("flipped")), each(&|a, _| !a));
    assert_eq!(bools(r.out("mix")), each(&|a, b| (!a & b) | (a ^ b)));
    assert_eq!(r.circuit.inputs[0].elem, ElemType::Bool);
}

#[test]
fn select_abs_min_max_clamp_and_counting() {
    let src = "input x: int[] from bank-a\ninput y: fixed[] from bank-b\ninput t: int from bank-b\n\
               let c = x > t\n\
               output sel = select(c, x, y)\noutput sel_int = select(c, x, 0)\n\
               output sel_bool = select(c, x < 0, y < 0)\n\
               output abs = abs(x)\noutput mn = min(x, y)\noutput mx = max(x, t)\noutput mn3 = min(x, t, 1, -2)\n\
               output vmin = min(x)\noutput vmax = max(y)\noutput amin = argmin(x)\noutput amax = argmax(x)\n\
               output cl = clamp(x, -2, t)\noutput clf = clamp(y, -1.5, 2.5)\n\
               output cnt = count(c)\noutput sum_c = sum(c)\noutput kept = c * x\noutput kept_r = y * c\n\
               output plus = c + 1\noutput scaled = c * 2.5\noutput both = c * (x < 0)\noutput neg = -c\n\
               output frac = mean(c)\noutput d = dot(c, y)\noutput cat = concat(c, x == t, true)\n";
    let xs: Vec<i64> = vec![-5, 3, 0, 7, -1, 3, 7, 2];
    let ys: Vec<f64> = vec![0.5, -4.25, 0.0, 7.0, -1.0, 2.75, 8.5, 100.0];
    let t = 2;
    let r = run(
        src,
        2,
        &[("x", 0, Data::Int(xs.clone())), ("y", 1, Data::Fixed(ys.clone())), ("t", 1, Data::Int(vec![t]))],
    );
    let x: Vec<f64> = xs.iter().map(|&v| v as f64).collect();
    let y = r.seen("y", 1).to_vec();
    let c: Vec<bool> = xs.iter().map(|&v| v > t).collect();
    let tf = t as f64;
    let map = |f: &dyn Fn(usize) -> f64| (0..xs.len()).map(f).collect::<Vec<_>>();
    let b = |v: bool| if v { 1.0 } else { 0.0 };
    assert_eq!(r.out("sel"), map(&|i| if c[i] { x[i] } else { y[i] }));
    assert_eq!(r.output_elem("sel"), ElemType::Fixed);
    assert_eq!(r.out("sel_int"), map(&|i| if c[i] { x[i] } else { 0.0 }));
    assert_eq!(r.output_elem("sel_int"), ElemType::Int);
    assert_eq!(
        bools(r.out("sel_bool")),
        (0..8).map(|i| if c[i] { x[i] < 0.0 } else { y[i] < 0.0 }).collect::<Vec<_>>()
    );
    assert_eq!(r.out("abs"), map(&|i| x[i].abs()));
    assert_eq!(r.out("mn"), map(&|i| x[i].min(y[i])));
    assert_eq!(r.out("mx"), map(&|i| x[i].max(tf)));
    assert_eq!(r.out("mn3"), map(&|i| x[i].min(tf).min(-2.0)));
    assert_eq!(r.scalar("vmin"), -5.0);
    assert_eq!(r.scalar("vmax"), 100.0);
    assert_eq!((r.scalar("amin"), r.output_elem("amin")), (0.0, ElemType::Int));
    assert_eq!(r.scalar("amax"), 3.0, "ties go to the first index");
    assert_eq!(r.out("cl"), map(&|i| x[i].clamp(-2.0, tf)));
    assert_eq!(r.out("clf"), map(&|i| y[i].clamp(-1.5, 2.5)));
    let count = c.iter().filter(|&&v| v).count() as f64;
    assert_eq!((r.scalar("cnt"), r.output_elem("cnt")), (count, ElemType::Int));
    assert_eq!((r.scalar("sum_c"), r.output_elem("sum_c")), (count, ElemType::Int));
    assert_eq!(r.out("kept"), map(&|i| b(c[i]) * x[i]));
    assert_eq!(r.out("kept_r"), map(&|i| b(c[i]) * y[i]));
    assert_eq!(r.output_elem("kept_r"), ElemType::Fixed);
    assert_eq!(r.out("plus"), map(&|i| b(c[i]) + 1.0));
    assert_eq!(r.out("scaled"), map(&|i| b(c[i]) * 2.5));
    assert_eq!(r.out("both"), map(&|i| b(c[i] && x[i] < 0.0)));
    assert_eq!(r.out("neg"), map(&|i| -b(c[i])));
    close(r.scalar("frac"), count / 8.0, r.ulp(), "mean of a bool vector");
    assert_eq!(r.scalar("d"), (0..8).map(|i| b(c[i]) * y[i]).sum::<f64>());
    let mut cat: Vec<bool> = c.clone();
    cat.extend(xs.iter().map(|&v| v == t));
    cat.push(true);
    assert_eq!(bools(r.out("cat")), cat);
    assert_eq!(r.output_elem("cat"), ElemType::Bool);

    // The lowerings named in docs/language.md.
    let op = |name: &str| r.circuit.nodes[r.circuit.outputs.iter().find(|o| o.name == name).unwrap().value].op.clone();
    assert!(matches!(op("kept"), Op::Select(_, 0, z) if r.circuit.nodes[z].op == Op::Const(0)));
    assert!(matches!(op("cnt"), Op::Sum(t) if matches!(r.circuit.nodes[t].op, Op::ToRing(_))));
    assert_eq!(op("cnt"), op("sum_c"), "count(c) and sum(c) are one node");
    assert!(matches!(op("vmin"), Op::Min(0)));
    assert!(matches!(op("amax"), Op::ArgMax(0)));
    assert!(matches!(op("both"), Op::ToRing(a) if matches!(r.circuit.nodes[a].op, Op::And(..))));
    // abs(x) = Select(Less(x, 0), Neg(x), x).
    let Op::Select(lt, neg, x_id) = op("abs") else { panic!("{:?}", op("abs")) };
    assert_eq!(x_id, 0);
    assert_eq!(r.circuit.nodes[neg].op, Op::Neg(0));
    assert!(matches!(r.circuit.nodes[lt].op, Op::Less(0, z) if r.circuit.nodes[z].op == Op::Const(0)));
    // clamp: two comparisons of x, no Select depending on another Select.
    let Op::Add(_, down) = op("cl") else { panic!("{:?}", op("cl")) };
    let Op::Select(above, _, _) = r.circuit.nodes[down].op else { panic!() };
    assert!(matches!(r.circuit.nodes[above].op, Op::Less(_, 0)));
}

#[test]
fn clamp_with_crossed_runtime_bounds_is_documented() {
    // docs/language.md: with lo > hi, clamp(x, lo, hi) is lo where x <= hi,
    // hi where x >= lo, and lo + hi - x strictly between.
    let src = "input x: int[] from bank-a\ninput lo: int from bank-b\ninput hi: int from bank-b\n\
               output o = clamp(x, lo, hi)";
    let r = run(
        src,
        2,
        &[("x", 0, Data::Int(vec![0, 1, 2, 3, 4, 5, 6])), ("lo", 1, Data::Int(vec![5])), ("hi", 1, Data::Int(vec![1]))],
    );
    assert_eq!(r.out("o"), &[5.0, 5.0, 4.0, 3.0, 2.0, 1.0, 1.0]);
}

#[test]
fn bools_in_from_each_lists() {
    let src = "input votes: bool[] from each\noutput yes = aggregate(votes)\noutput all = concat(votes)\n\
               output mine = votes[bank-b] to bank-b\noutput n = count(concat(votes))";
    let r = run(
        src,
        3,
        &[
            ("votes", 0, Data::Bool(vec![true, false])),
            ("votes", 1, Data::Bool(vec![true, true])),
            ("votes", 2, Data::Bool(vec![false, false])),
        ],
    );
    assert_eq!((r.out("yes"), r.output_elem("yes")), (&[2.0, 1.0][..], ElemType::Int));
    assert_eq!(bools(r.out("all")), vec![true, false, true, true, false, false]);
    assert_eq!(bools(r.out("mine")), vec![true, true]);
    assert_eq!(r.scalar("n"), 3.0);
}

#[test]
fn extremes_of_an_empty_vector_fail_at_the_call() {
    for f in ["min", "max", "argmin", "argmax"] {
        let c = compile(&format!("input x: int[] from bank-a\noutput m =  {f}(x)"), &parties(2)).unwrap();
        let e = evaluate(&c, &PlainInputs::new().set(0, 0, vec![])).unwrap_err();
        assert_eq!(e.span, Span { line: 2, column: 13 }, "{f}");
        assert!(matches!(e.kind, EvalErrorKind::EmptyVector { .. }), "{f}: {e}");
    }
}

#[test]
fn public_comparisons_are_public() {
    let c = compile(
        "input x: int[] from bank-a\nlet big = len(x) > 3\noutput big = big\noutput n = select(big, len(x), 0)",
        &parties(2),
    )
    .unwrap();
    let secret = cohort_worker::program::secret_nodes(&c);
    assert!(c.outputs.iter().all(|o| !secret[o.value]));
    let out = evaluate(&c, &PlainInputs::new().set(0, 0, vec![1, 2, 3, 4])).unwrap();
    assert_eq!(out, vec![vec![1], vec![4]]);
}

/// Plaintext comparisons against Rust's integer order, on the edges of the
/// documented range |v| < 2^62 and on random values.
fn check_against_rust(xs: &[i64], ys: &[i64]) {
    let src = "input x: int[] from bank-a\ninput y: int[] from bank-b\n\
               output lt = x < y\noutput le = x <= y\noutput gt = x > y\noutput ge = x >= y\n\
               output eq = x == y\noutput ne = x != y\noutput mn = min(x, y)\noutput mx = max(x, y)\n\
               output ab = abs(x)\noutput cl = clamp(x, -1000, 1000)\n\
               output vmin = min(x)\noutput vmax = max(x)\noutput amin = argmin(x)\noutput amax = argmax(x)";
    let c = compile(src, &parties(2)).unwrap();
    let enc = |v: &[i64]| v.iter().map(|&x| encode_int(x).unwrap()).collect::<Vec<_>>();
    let out = evaluate(&c, &PlainInputs::new().set(0, 0, enc(xs)).set(1, 1, enc(ys))).unwrap();
    let ints = |v: &Vec<u64>| v.iter().map(|&x| decode_int(x)).collect::<Vec<_>>();
    let each = |f: &dyn Fn(i64, i64) -> i64| xs.iter().zip(ys).map(|(&a, &b)| f(a, b)).collect::<Vec<_>>();
    assert_eq!(ints(&out[0]), each(&|a, b| i64::from(a < b)), "{xs:?} < {ys:?}");
    assert_eq!(ints(&out[1]), each(&|a, b| i64::from(a <= b)));
    assert_eq!(ints(&out[2]), each(&|a, b| i64::from(a > b)));
    assert_eq!(ints(&out[3]), each(&|a, b| i64::from(a >= b)));
    assert_eq!(ints(&out[4]), each(&|a, b| i64::from(a == b)));
    assert_eq!(ints(&out[5]), each(&|a, b| i64::from(a != b)));
    assert_eq!(ints(&out[6]), each(&|a, b| a.min(b)));
    assert_eq!(ints(&out[7]), each(&|a, b| a.max(b)));
    assert_eq!(ints(&out[8]), each(&|a, _| a.abs()));
    assert_eq!(ints(&out[9]), each(&|a, _| a.clamp(-1000, 1000)));
    let min = *xs.iter().min().unwrap();
    let max = *xs.iter().max().unwrap();
    assert_eq!(ints(&out[10]), vec![min]);
    assert_eq!(ints(&out[11]), vec![max]);
    assert_eq!(ints(&out[12]), vec![xs.iter().position(|&v| v == min).unwrap() as i64]);
    assert_eq!(ints(&out[13]), vec![xs.iter().position(|&v| v == max).unwrap() as i64]);
}

#[test]
fn comparisons_are_exact_at_the_edges_of_the_range() {
    let m = (1i64 << 62) - 1;
    let edges = [0, 1, -1, 2, -2, m, -m, m - 1, -m + 1, 1000, -1000, 1001, -1001];
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for &a in &edges {
        for &b in &edges {
            xs.push(a);
            ys.push(b);
        }
    }
    check_against_rust(&xs, &ys);
    // Ties: the first extreme wins.
    check_against_rust(&[3, -m, 7, -m, 7], &[0; 5]);
    check_against_rust(&[m, m], &[m, -m]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn comparisons_match_rust_integers(
        pairs in prop::collection::vec(((-(1i64 << 62) + 1)..(1i64 << 62), (-(1i64 << 62) + 1)..(1i64 << 62)), 1..30),
        small in prop::collection::vec((-3i64..3, -3i64..3), 1..30),
    ) {
        let (xs, ys): (Vec<i64>, Vec<i64>) = pairs.into_iter().unzip();
        check_against_rust(&xs, &ys);
        // Small values: many ties and equal operands.
        let (xs, ys): (Vec<i64>, Vec<i64>) = small.into_iter().unzip();
        check_against_rust(&xs, &ys);
    }

    /// Fixed values compare as their encodings, mixed with ints as the
    /// int scaled to fixed.
    #[test]
    fn fixed_comparisons_match_the_encodings(
        a in prop::collection::vec(-1e9f64..1e9, 1..20),
        k in -1_000_000_000i64..1_000_000_000,
    ) {
        let r = run(
            "input a: fixed[] from bank-a\ninput k: int from bank-b\noutput lt = a < k\noutput eq = a == k\n\
             output mx = max(a, k)\noutput sel = select(a >= 0, a, -a)",
            2,
            &[("a", 0, Data::Fixed(a)), ("k", 1, Data::Int(vec![k]))],
        );
        let a = r.seen("a", 0).to_vec();
        let k = k as f64;
        prop_assert_eq!(bools(r.out("lt")), a.iter().map(|&v| v < k).collect::<Vec<_>>());
        prop_assert_eq!(bools(r.out("eq")), a.iter().map(|&v| v == k).collect::<Vec<_>>());
        prop_assert_eq!(r.out("mx").to_vec(), a.iter().map(|&v| v.max(k)).collect::<Vec<_>>());
        prop_assert_eq!(r.out("sel").to_vec(), a.iter().map(|&v| v.abs()).collect::<Vec<_>>());
    }
}

/// The comparison circuits' costs quoted in docs/language.md.
#[test]
fn documented_circuit_costs() {
    use cohort_worker::circuits::{Cost, Shape, compare};
    let mut cost = Cost::default();
    let out = compare::msb_of_difference(&mut cost, &Shape::public(64), &Shape::secret(64));
    let (less_gates, less_levels) = (cost.and_gates, out.depth);
    let mut cost = Cost::default();
    let out = compare::equal(&mut cost, &Shape::public(64), &Shape::secret(64));
    let (eq_gates, eq_levels) = (cost.and_gates, out.depth);
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/language.md")).unwrap();
    let less_row = format!("| {} | {less_levels} |", less_gates);
    let eq_row = format!("| {} | {eq_levels} |", eq_gates);
    assert!(doc.contains(&less_row), "docs/language.md lacks the `<` circuit cost {less_row}");
    assert!(doc.contains(&eq_row), "docs/language.md lacks the `==` circuit cost {eq_row}");
}

// ---- the comparison examples (examples/fraud-flags, examples/sealed-auction)

fn example_path(dir: &str, file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(dir).join(file)
}

/// A one-value-per-line data file (`#` comments and blank lines skipped).
fn data_file(dir: &str, file: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(example_path(dir, file)).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.parse().unwrap_or_else(|e| panic!("{dir}/{file}: {l:?}: {e}")))
        .collect()
}

/// Compile an example for the parties (in order) its run.yaml names, and
/// check the run file names each party and data file.
fn example(dir: &str, program: &str, parties: &[(&str, &str, &str)], n_inputs: usize) -> Run {
    let yaml = std::fs::read_to_string(example_path(dir, "run.yaml")).unwrap();
    assert!(yaml.contains(&format!("program: {program}")), "{dir}/run.yaml names {program}");
    let mut at = 0;
    for (party, input, file) in parties {
        let found =
            yaml[at..].find(&format!("- name: {party}")).unwrap_or_else(|| panic!("{dir}: party {party} in order"));
        at += found;
        assert!(yaml.contains(&format!("{input}: {{file: {file}}}")), "{dir}: {party} provides {input} from {file}");
    }
    let src = std::fs::read_to_string(example_path(dir, program)).unwrap();
    let names: Vec<String> = parties.iter().map(|p| p.0.to_string()).collect();
    let circuit = compile(&src, &names).unwrap_or_else(|e| panic!("{dir}: {e}"));
    assert_eq!(circuit.inputs.len(), n_inputs);
    let fp = FixedPoint::new(circuit.frac_bits).unwrap();
    let mut inputs = PlainInputs::new();
    let mut seen = HashMap::new();
    for (p, (_, input, file)) in parties.iter().enumerate() {
        let idx = circuit.inputs.iter().position(|i| i.name == *input).unwrap();
        let values = data_file(dir, file);
        let enc: Vec<u64> = values.iter().map(|&x| fp.encode(x).unwrap()).collect();
        seen.insert((input.to_string(), p), enc.iter().map(|&x| fp.decode(x)).collect());
        inputs.insert(idx, p, enc);
    }
    let out = evaluate(&circuit, &inputs).unwrap_or_else(|e| panic!("{dir}: {e}"));
    let outputs = circuit.outputs.iter().zip(&out).map(|(o, v)| (o.name.clone(), decode(fp, o.elem, v))).collect();
    Run { circuit, seen, outputs }
}

#[test]
fn example_fraud_flags() {
    let parties =
        [("bank-a", "signal", "bank-a.txt"), ("bank-b", "signal", "bank-b.txt"), ("bank-c", "signal", "bank-c.txt")];
    let r = example("fraud-flags", "score.cohort", &parties, 1);
    let (a, b, c) = (r.seen("signal", 0).to_vec(), r.seen("signal", 1).to_vec(), r.seen("signal", 2).to_vec());
    assert_eq!(a.len(), 24);
    let flags: Vec<bool> = (0..a.len())
        .map(|i| {
            let score = 3.0 * a[i] + 2.0 * b[i] + 5.0 * c[i];
            let high = |x: f64, y: f64| x > 8.0 && y > 8.0;
            score > 60.0 || high(a[i], b[i]) || high(b[i], c[i]) || high(a[i], c[i])
        })
        .collect();
    let count = flags.iter().filter(|&&f| f).count();
    // The data flags some customers, not all: the example shows something.
    assert!(count > 0 && count < a.len(), "{count} of {} flagged", a.len());
    assert_eq!(bools(r.out("flags")), flags);
    assert_eq!((r.scalar("flagged_count"), r.output_elem("flagged_count")), (count as f64, ElemType::Int));
    let recipients: HashMap<&str, Vec<usize>> =
        r.circuit.outputs.iter().map(|o| (o.name.as_str(), o.recipients.clone())).collect();
    assert_eq!(recipients["flagged_count"], vec![0, 1, 2]);
    assert_eq!(recipients["flags"], vec![0]);
    assert_eq!(r.output_elem("flags"), ElemType::Bool);
}

#[test]
fn example_sealed_auction() {
    let parties = [
        ("seller", "reserve", "seller.txt"),
        ("bidder-1", "bid_1", "bidder-1.txt"),
        ("bidder-2", "bid_2", "bidder-2.txt"),
        ("bidder-3", "bid_3", "bidder-3.txt"),
        ("bidder-4", "bid_4", "bidder-4.txt"),
    ];
    let r = example("sealed-auction", "auction.cohort", &parties, 5);
    let bids: Vec<f64> = (1..=4).map(|p| r.seen(&format!("bid_{p}"), p)[0]).collect();
    let reserve = r.seen("reserve", 0)[0];
    let highest = bids.iter().copied().fold(f64::MIN, f64::max);
    let winner = bids.iter().position(|&b| b == highest).unwrap();
    let second = bids.iter().enumerate().filter(|(i, _)| *i != winner).map(|(_, &b)| b).fold(f64::MIN, f64::max);
    assert_eq!(r.scalar("highest"), highest);
    assert_eq!(bools(r.out("sold")), vec![highest >= reserve]);
    assert_eq!((r.scalar("winner"), r.output_elem("winner")), (winner as f64, ElemType::Int));
    assert_eq!(r.scalar("second_price"), second);
    assert_eq!((winner, highest, second), (1, 1410.0, 1395.25));
    let recipients: HashMap<&str, Vec<usize>> =
        r.circuit.outputs.iter().map(|o| (o.name.as_str(), o.recipients.clone())).collect();
    assert_eq!(recipients["highest"], vec![0, 1, 2, 3, 4]);
    assert_eq!(recipients["winner"], vec![0]);
    assert_eq!(recipients["second_price"], vec![0]);

    // Ties go to the lowest position, and the second price is then the tie.
    let src = std::fs::read_to_string(example_path("sealed-auction", "auction.cohort")).unwrap();
    let names: Vec<String> = parties.iter().map(|p| p.0.to_string()).collect();
    let c = compile(&src, &names).unwrap();
    let fp = FixedPoint::new(c.frac_bits).unwrap();
    let mut inputs = PlainInputs::new().set(4, 0, vec![fp.encode(10.0).unwrap()]);
    for (p, bid) in [(1, 5.0), (2, 7.5), (3, 7.5), (4, 7.0)] {
        inputs.insert(p - 1, p, vec![fp.encode(bid).unwrap()]);
    }
    let out = evaluate(&c, &inputs).unwrap();
    assert_eq!(fp.decode(out[0][0]), 7.5);
    assert_eq!(out[1], vec![0], "7.5 is below the reserve 10");
    assert_eq!(decode_int(out[2][0]), 1, "the first of the two 7.5 bids");
    assert_eq!(fp.decode(out[3][0]), 7.5);
}

/// The longest chain of comparisons (`Less`/`Equal`) in a circuit: what
/// the comparison rounds of `min`/`max` of several values scale with.
fn comparison_depth(c: &Circuit) -> usize {
    let mut depth = vec![0usize; c.nodes.len()];
    for (i, n) in c.nodes.iter().enumerate() {
        let below = n.op.operands().iter().map(|&a| depth[a]).max().unwrap_or(0);
        depth[i] = below + usize::from(matches!(n.op, Op::Less(..) | Op::Equal(..)));
    }
    depth.into_iter().max().unwrap_or(0)
}

#[test]
fn min_max_of_several_values_is_a_balanced_tree() {
    for (k, want) in [(2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4)] {
        let args: Vec<String> = (0..k).map(|i| format!("x[bank-{}]", ["a", "b", "c", "d", "e"][i % 5])).collect();
        // Distinct expressions, so that sharing does not shrink the tree.
        let args: Vec<String> = args.iter().enumerate().map(|(i, a)| format!("{a} + {i}")).collect();
        let src = format!("input x: int[] from each\noutput m = max({})", args.join(", "));
        let c = compile(&src, &parties(5)).unwrap();
        assert_eq!(comparison_depth(&c), want, "max of {k} values");
        let n_less = c.nodes.iter().filter(|n| matches!(n.op, Op::Less(..))).count();
        assert_eq!(n_less, k - 1, "max of {k} values: k - 1 comparisons");
    }
    // clamp compares x with both bounds in parallel, abs once.
    let c = compile("input x: int[] from bank-a\ninput t: int from bank-b\noutput o = clamp(x, -t, t)", &parties(2))
        .unwrap();
    assert_eq!(comparison_depth(&c), 1);
}

#[test]
fn constant_conditions_keep_shapes() {
    let src = "input x: int[] from bank-a\noutput ones = select(true, 1, x)\noutput same = select(false, 1, x)\n\
               output none = (x > 0) and false\noutput all = (x > 0) or true\noutput k = select(x > 0, 1, 2.5)";
    let r = run(src, 2, &[("x", 0, Data::Int(vec![-1, 0, 4]))]);
    assert_eq!(r.out("ones"), &[1.0, 1.0, 1.0]);
    assert_eq!(r.out("same"), &[-1.0, 0.0, 4.0]);
    assert_eq!(bools(r.out("none")), vec![false; 3]);
    assert_eq!(bools(r.out("all")), vec![true; 3]);
    assert_eq!((r.out("k"), r.output_elem("k")), (&[2.5, 2.5, 1.0][..], ElemType::Fixed));
}
