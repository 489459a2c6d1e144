//! The comparison family under MPC (issue 16): circuits built directly in
//! the IR, run among 2 and 3 parties over real loopback TLS with dealt
//! material, checked against Rust's integer semantics on edge values; the
//! rounds of each construct.

mod common;

use cohort_worker::executor::{InputLengths, Instance, JobOutput};
use cohort_worker::preprocessing::Mode;
use cohort_worker::program::ir::{
    Circuit, ElemType, InputDecl, InputShape, Node, Op, OutputDecl, Owners, Span, ValueId,
};
use cohort_worker::program::{compile, plain};
use cohort_worker::ring::{from_signed, to_signed};
use common::*;
use std::sync::Arc;

/// Builds a circuit node by node.
struct Builder {
    circuit: Circuit,
}

impl Builder {
    fn new(parties: usize) -> Builder {
        Builder {
            circuit: Circuit {
                frac_bits: 16,
                parties: (0..parties).map(|i| format!("party-{i}")).collect(),
                inputs: Vec::new(),
                nodes: Vec::new(),
                outputs: Vec::new(),
                checks: Vec::new(),
            },
        }
    }

    fn op(&mut self, op: Op) -> ValueId {
        self.circuit.nodes.push(Node { op, span: Span { line: 1, column: 1 } });
        self.circuit.nodes.len() - 1
    }

    fn input(&mut self, name: &str, elem: ElemType, shape: InputShape, owner: usize) -> ValueId {
        self.circuit.inputs.push(InputDecl {
            name: name.into(),
            elem,
            shape,
            owners: Owners::Party(owner),
            span: Span::default(),
        });
        let input = self.circuit.inputs.len() - 1;
        self.op(Op::Input { input, party: owner })
    }

    fn output(&mut self, name: &str, value: ValueId, elem: ElemType) {
        let recipients = (0..self.circuit.parties.len()).collect();
        self.circuit.outputs.push(OutputDecl { name: name.into(), value, elem, recipients, span: Span::default() });
    }
}

/// Run `circuit` among its parties with dealt material; `inputs[p]` are
/// party `p`'s (name, ring-encoded values).
async fn run(circuit: Circuit, inputs: Vec<Vec<(&'static str, Vec<u64>)>>) -> Vec<JobOutput> {
    let n = circuit.parties.len();
    let federation = federation(n).await;
    let circuit = Arc::new(circuit);
    let own = inputs
        .iter()
        .map(|mine| {
            let mut own = cohort_worker::executor::OwnInputs::new();
            for (name, values) in mine {
                own.insert_encoded(&circuit, name, cohort_worker::sharing::Secret::new(values.clone())).unwrap();
            }
            own
        })
        .collect();
    let results = federation.run(circuit, federation.consent("comparisons"), own).await.expect("meshes establish");
    results.into_iter().map(|r| r.expect("job succeeds")).collect()
}

fn raw(out: &JobOutput, name: &str) -> Vec<u64> {
    let o = out.outputs.iter().find(|o| o.name == name).expect("output exists");
    o.value.as_ref().expect("a recipient").expose().to_vec()
}

/// Every pair of edge values, as two vectors.
fn pairs() -> (Vec<i64>, Vec<i64>) {
    let e = edges();
    let mut a = Vec::new();
    let mut b = Vec::new();
    for x in &e {
        for y in &e {
            a.push(*x);
            b.push(*y);
        }
    }
    (a, b)
}

fn enc(v: &[i64]) -> Vec<u64> {
    v.iter().map(|x| from_signed(*x)).collect()
}

async fn comparisons_match_integer_order(parties: usize) {
    let mut b = Builder::new(parties);
    let x = b.input("x", ElemType::Int, InputShape::Vector, 0);
    let y = b.input("y", ElemType::Int, InputShape::Vector, parties - 1);
    let lt = b.op(Op::Less(x, y));
    let eq = b.op(Op::Equal(x, y));
    let le = {
        let gt = b.op(Op::Less(y, x));
        b.op(Op::Not(gt))
    };
    let both = b.op(Op::And(lt, eq));
    let either = b.op(Op::Or(lt, eq));
    let differ = b.op(Op::Xor(lt, le));
    let smaller = b.op(Op::Select(lt, x, y));
    let count = {
        let ones = b.op(Op::ToRing(lt));
        b.op(Op::Sum(ones))
    };
    b.output("lt", lt, ElemType::Bool);
    b.output("eq", eq, ElemType::Bool);
    b.output("le", le, ElemType::Bool);
    b.output("both", both, ElemType::Bool);
    b.output("either", either, ElemType::Bool);
    b.output("differ", differ, ElemType::Bool);
    b.output("smaller", smaller, ElemType::Int);
    b.output("count", count, ElemType::Int);
    let (xs, ys) = pairs();
    let mut inputs = vec![Vec::new(); parties];
    inputs[0].push(("x", enc(&xs)));
    inputs[parties - 1].push(("y", enc(&ys)));
    for out in run(b.circuit, inputs).await {
        let bools = |name| raw(&out, name);
        let want = |f: &dyn Fn(i64, i64) -> bool| -> Vec<u64> {
            xs.iter().zip(&ys).map(|(a, b)| u64::from(f(*a, *b))).collect()
        };
        assert_eq!(bools("lt"), want(&|a, b| a < b), "x < y");
        assert_eq!(bools("eq"), want(&|a, b| a == b), "x == y");
        assert_eq!(bools("le"), want(&|a, b| a <= b), "x <= y");
        assert_eq!(bools("both"), want(&|_, _| false), "x < y and x == y");
        assert_eq!(bools("either"), want(&|a, b| a <= b), "x < y or x == y");
        assert_eq!(bools("differ"), want(&|a, b| a == b), "x < y xor x <= y");
        let smaller: Vec<i64> = raw(&out, "smaller").iter().map(|v| to_signed(*v)).collect();
        assert_eq!(smaller, xs.iter().zip(&ys).map(|(a, b)| *a.min(b)).collect::<Vec<_>>(), "select");
        let count = xs.iter().zip(&ys).filter(|(a, b)| a < b).count() as u64;
        assert_eq!(raw(&out, "count"), vec![count], "count");
        // The comparisons (7 layers) and one AND, OR or injection after them.
        assert_eq!(out.stats.layers, 8);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comparisons_match_integer_order_two_parties() {
    comparisons_match_integer_order(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comparisons_match_integer_order_three_parties() {
    comparisons_match_integer_order(3).await;
}

/// Reductions, scalars broadcast over vectors, bool inputs and public
/// operands, among 3 parties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reductions_broadcasts_and_bool_inputs() {
    let mut b = Builder::new(3);
    let v = b.input("v", ElemType::Int, InputShape::Vector, 1);
    let t = b.input("t", ElemType::Int, InputShape::Scalar, 2);
    let flags = b.input("flags", ElemType::Bool, InputShape::Vector, 0);
    let min = b.op(Op::Min(v));
    let max = b.op(Op::Max(v));
    let argmin = b.op(Op::ArgMin(v));
    let argmax = b.op(Op::ArgMax(v));
    let above = b.op(Op::Less(t, v));
    let flagged_above = b.op(Op::And(above, flags));
    let zero = b.op(Op::Const(0));
    let kept = b.op(Op::Select(flagged_above, v, zero));
    let seven = b.op(Op::Const(7));
    let below_seven = b.op(Op::Less(v, seven));
    let public_true = b.op(Op::Bool(true));
    let same = b.op(Op::Xor(below_seven, public_true));
    b.output("min", min, ElemType::Int);
    b.output("max", max, ElemType::Int);
    b.output("argmin", argmin, ElemType::Int);
    b.output("argmax", argmax, ElemType::Int);
    b.output("kept", kept, ElemType::Int);
    b.output("flags", flags, ElemType::Bool);
    b.output("not_below_seven", same, ElemType::Bool);
    // Ties: the first smallest is at 2, the first largest at 4.
    for values in [
        vec![5i64, 9, -3, 7, 12, -3, 12, 0, 1],
        vec![-1],
        vec![(1 << 62) - 1, -(1 << 62) + 1],
        edges(),
        (0..1000).map(|i| (i * 7919) % 1009 - 500).collect(),
    ] {
        let n = values.len();
        let flag_bits: Vec<u64> = (0..n).map(|i| (i % 3 != 1) as u64).collect();
        let threshold = 4i64;
        let mut b2 = Builder { circuit: b.circuit.clone() };
        b2.circuit.outputs.retain(|_| true);
        let inputs =
            vec![vec![("flags", flag_bits.clone())], vec![("v", enc(&values))], vec![("t", enc(&[threshold]))]];
        for out in run(b2.circuit, inputs).await {
            let signed = |name| raw(&out, name).iter().map(|x| to_signed(*x)).collect::<Vec<i64>>();
            let lo = *values.iter().min().unwrap();
            let hi = *values.iter().max().unwrap();
            assert_eq!(signed("min"), vec![lo]);
            assert_eq!(signed("max"), vec![hi]);
            assert_eq!(signed("argmin"), vec![values.iter().position(|x| *x == lo).unwrap() as i64]);
            assert_eq!(signed("argmax"), vec![values.iter().position(|x| *x == hi).unwrap() as i64]);
            let kept: Vec<i64> =
                values.iter().zip(&flag_bits).map(|(x, f)| if *x > threshold && *f == 1 { *x } else { 0 }).collect();
            assert_eq!(signed("kept"), kept);
            assert_eq!(raw(&out, "flags"), flag_bits);
            assert_eq!(raw(&out, "not_below_seven"), values.iter().map(|x| u64::from(*x >= 7)).collect::<Vec<_>>());
        }
    }
}

/// Rounds per construct, whatever the lengths: a comparison is one masked
/// opening and 6 AND levels (7 layers), a select after it one more; a
/// reduction over n elements ceil(log2 n) levels of 8.
#[test]
fn rounds_per_construct() {
    let layers = |build: &dyn Fn(&mut Builder, ValueId, ValueId) -> ValueId, len: usize| -> usize {
        let mut b = Builder::new(2);
        let x = b.input("x", ElemType::Int, InputShape::Vector, 0);
        let y = b.input("y", ElemType::Int, InputShape::Vector, 1);
        let out = build(&mut b, x, y);
        b.output("o", out, ElemType::Int);
        let lengths = InputLengths(vec![vec![Some(len), None], vec![None, Some(len)]]);
        Instance::new(&b.circuit, &lengths).expect("plans").depth()
    };
    for len in [1, 2, 63, 64, 65, 1000] {
        assert_eq!(layers(&|b, x, y| b.op(Op::Less(x, y)), len), 7, "x < y over {len}");
        assert_eq!(layers(&|b, x, y| b.op(Op::Equal(x, y)), len), 7, "x == y over {len}");
        let select = |b: &mut Builder, x, y| {
            let c = b.op(Op::Less(x, y));
            b.op(Op::Select(c, x, y))
        };
        assert_eq!(layers(&select, len), 8, "min(x, y) over {len}");
        let and = |b: &mut Builder, x, y| {
            let c = b.op(Op::Less(x, y));
            let d = b.op(Op::Equal(x, y));
            let e = b.op(Op::Or(c, d));
            b.op(Op::ToRing(e))
        };
        assert_eq!(layers(&and, len), 9, "[x <= y] as an int over {len}");
        let levels = (len as f64).log2().ceil() as usize;
        assert_eq!(layers(&|b, x, _| b.op(Op::Max(x)), len), 8 * levels, "max(x) over {len}");
        assert_eq!(layers(&|b, x, _| b.op(Op::ArgMin(x)), len), 8 * levels, "argmin(x) over {len}");
    }
}

/// The material a comparison consumes, per element: one edaBit and the
/// carry circuit's bit triples, in 64-triple words per plane.
#[test]
fn material_per_comparison() {
    let mut b = Builder::new(2);
    let x = b.input("x", ElemType::Int, InputShape::Vector, 0);
    let y = b.input("y", ElemType::Int, InputShape::Vector, 1);
    let lt = b.op(Op::Less(x, y));
    let s = b.op(Op::Select(lt, x, y));
    b.output("o", s, ElemType::Int);
    let lengths = InputLengths(vec![vec![Some(640), None], vec![None, Some(640)]]);
    let totals = Instance::new(&b.circuit, &lengths).unwrap().plan.totals();
    assert_eq!(totals.edabits, 640);
    assert_eq!(totals.dabits, 640);
    assert_eq!(totals.triples, 640, "the select's product with a secret difference");
    let mut cost = cohort_worker::circuits::Cost::default();
    let shape = cohort_worker::circuits::Shape::public(64);
    let secret = cohort_worker::circuits::Shape::secret(64);
    cohort_worker::circuits::compare::msb_of_difference(&mut cost, &shape, &secret);
    assert_eq!(totals.bit_triples, 640 * cost.and_gates as u64, "{} AND gates per comparison", cost.and_gates);
}

/// Every construct of the comparison family, compiled from the language,
/// under MPC against `program::plain` on the same inputs of length `len`:
/// exact equality (the program has no truncation). Inputs are edge values
/// and their neighbours (ints `v, v ± 1`; fixed encodings `v, v ± 2^-16`).
async fn the_language_against_plain(parties: usize, mode: Mode, len: usize) {
    let last = format!("party-{}", parties - 1);
    // Reductions need at least one element.
    let reductions = if len == 0 {
        ""
    } else {
        "output vmin = min(x)\noutput vmax = max(y)\noutput amin = argmin(x)\noutput amax = argmax(y)\n"
    };
    let source = format!(
        "
input x: int[] from party-0
input y: int[] from {last}
input f: fixed[] from party-0
input g: fixed[] from {last}
input t: int from {last}
input flags: bool[] from party-0
output lt = x < y
output le = x <= y
output gt = x > y
output ge = x >= y
output eq = x == y
output ne = x != y
output fl = f < g
output feq = f == g
output mixed = x < f
output sel = select(x < y, x, y)
output ab = abs(x)
output mn = min(x, y)
output mx = max(x, y)
{reductions}output cl = clamp(x, -100, t)
output cnt = count(x < t)
output kept = select(flags, x, 0)
output logic = (x < y and flags) or not (x == y) xor flags
output counted = sum(x < y)
output scalar = t > 3
"
    );
    let names: Vec<String> = (0..parties).map(|i| format!("party-{i}")).collect();
    let circuit = compile(&source, &names).expect("compiles");
    let (x, y) = neighbour_pairs(len);
    // Fixed encodings: the same pairs scaled down into the fixed range, so
    // that neighbours differ by one unit (2^-16).
    let f: Vec<i64> = x.iter().map(|v| v >> 17).collect();
    let g: Vec<i64> = x.iter().zip(&y).map(|(v, w)| (v >> 17) + (w - v).signum()).collect();
    let flags: Vec<u64> = (0..len).map(|i| (i % 3 == 0) as u64).collect();
    let t = vec![from_signed(12345)];
    let index = |name: &str| circuit.inputs.iter().position(|i| i.name == name).unwrap();
    let mut plain_inputs = plain::PlainInputs::new();
    let mut inputs: Vec<Vec<(&'static str, Vec<u64>)>> = vec![Vec::new(); parties];
    for (name, owner, values) in [
        ("x", 0, enc(&x)),
        ("f", 0, enc(&f)),
        ("flags", 0, flags.clone()),
        ("y", parties - 1, enc(&y)),
        ("g", parties - 1, enc(&g)),
        ("t", parties - 1, t.clone()),
    ] {
        plain_inputs.insert(index(name), owner, values.clone());
        inputs[owner].push((name, values));
    }
    let want = plain::evaluate(&circuit, &plain_inputs).expect("plain evaluates");
    for out in run_mode(circuit.clone(), inputs, mode).await {
        for (decl, want) in circuit.outputs.iter().zip(&want) {
            assert_eq!(
                &raw(&out, &decl.name),
                want,
                "output `{}` ({parties} parties, {mode}, length {len})",
                decl.name
            );
        }
    }
}

/// The bit-slicing boundaries (a word holds 64 elements) and an empty
/// vector, in every party count the issue names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_against_plain_dealer() {
    for parties in [2, 3, 5] {
        for len in [0, 1, 2, 63, 64, 65, 200] {
            the_language_against_plain(parties, Mode::Dealer, len).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_against_plain_ot() {
    for parties in [2, 3] {
        for len in [0, 1, 65] {
            the_language_against_plain(parties, Mode::Ot, len).await;
        }
    }
}

/// 10^6 elements: comparisons, a selection and a reduction over a vector
/// of a million, against plain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_elements_against_plain() {
    let names: Vec<String> = (0..3).map(|i| format!("party-{i}")).collect();
    let source = "input x: int[] from party-0\ninput y: int[] from party-2\noutput lt = x < y\n\
                  output s = select(x == y, 0, x)\noutput top = argmax(x)\n";
    let circuit = compile(source, &names).expect("compiles");
    let n = 1_000_000;
    let (x, y) = neighbour_pairs(n);
    let mut plain_inputs = plain::PlainInputs::new();
    plain_inputs.insert(0, 0, enc(&x));
    plain_inputs.insert(1, 2, enc(&y));
    let want = plain::evaluate(&circuit, &plain_inputs).expect("plain evaluates");
    let inputs = vec![vec![("x", enc(&x))], Vec::new(), vec![("y", enc(&y))]];
    for out in run_mode(circuit.clone(), inputs, Mode::Dealer).await {
        for (decl, want) in circuit.outputs.iter().zip(&want) {
            assert!(&raw(&out, &decl.name) == want, "output `{}` of 10^6 elements", decl.name);
        }
    }
}

/// Run `circuit` with dealt material (`Mode::Dealer`) or with material the
/// parties generate over the job's mesh (`Mode::Ot`).
async fn run_mode(circuit: Circuit, inputs: Vec<Vec<(&'static str, Vec<u64>)>>, mode: Mode) -> Vec<JobOutput> {
    if mode == Mode::Dealer {
        return run(circuit, inputs).await;
    }
    let circuit = Arc::new(circuit);
    let consent = cohort_worker::local::consent_digest_for("comparisons", &circuit.parties, Mode::Ot);
    let encode = circuit.clone();
    let results = run_circuit_ot(circuit, consent, move |me| {
        let mut own = cohort_worker::executor::OwnInputs::new();
        for (name, values) in &inputs[me] {
            own.insert_encoded(&encode, name, cohort_worker::sharing::Secret::new(values.clone())).unwrap();
        }
        own
    })
    .await;
    results.into_iter().map(|r| r.expect("job succeeds")).collect()
}
