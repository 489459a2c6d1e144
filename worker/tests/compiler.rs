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
        (
            "input x: int[] from bank-a\ninput y: int from bank-b\noutput z = x / y",
            3,
            14,
            "division by a secret value is not supported; the divisor must be public",
        ),
        ("input x: fixed[] from bank-a\noutput z = len(x) / sum(x)", 2, 19, "division by a secret value"),
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
