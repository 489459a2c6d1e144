//! Division by a secret and the fixed-point functions (`sqrt`, `exp`,
//! `log`, `sigmoid`) under every protocol — the additive protocol with a
//! dealer and with OT-generated material, and replicated-3 — over real TLS
//! between in-process parties, against `program::plain` within the bounds
//! `docs/fixed-point-functions.md` documents, on random values and the
//! domains' edges; and their rounds.

mod common;

use cohort_worker::executor::{InputLengths, Instance, Lowering, OwnInputs, Quotients};
use cohort_worker::local::LocalFederation;
use cohort_worker::preprocessing::Mode;
use cohort_worker::program::ir::Circuit;
use cohort_worker::program::{compile, plain};
use cohort_worker::protocol::ProtocolName;
use cohort_worker::ring::{from_signed, to_signed};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    AdditiveDealer,
    AdditiveOt,
    Replicated,
}

const BACKENDS: [Backend; 3] = [Backend::AdditiveDealer, Backend::AdditiveOt, Backend::Replicated];

impl Backend {
    fn protocol(self) -> ProtocolName {
        match self {
            Backend::AdditiveDealer | Backend::AdditiveOt => ProtocolName::AdditiveSemiHonest,
            Backend::Replicated => ProtocolName::Replicated3,
        }
    }
}

/// A program over `x` (party 0) and `y` (party 2), `fixed` vectors (or
/// scalars, as `shape` says), whose one output is `expr`.
fn circuit(frac_bits: u32, expr: &str, shape: &str) -> (Circuit, String) {
    let source = format!(
        "fixed_point {frac_bits}\ninput x: fixed{shape} from party-0\ninput y: fixed{shape} from party-2\n\
         output o = {expr}\n"
    );
    let names: Vec<String> = (0..3).map(|i| format!("party-{i}")).collect();
    (compile(&source, &names).expect("compiles"), source)
}

/// Run `circuit` under `backend` with encoded inputs; party 0's output and
/// every party's rounds.
async fn run(backend: Backend, circuit: Circuit, source: &str, x: &[i64], y: &[i64]) -> (Vec<i64>, Vec<usize>) {
    let federation = LocalFederation::with_parties(3).await.expect("federation").with_protocol(backend.protocol());
    let circuit = Arc::new(circuit);
    let enc = |v: &[i64]| -> Vec<u64> { v.iter().map(|x| from_signed(*x)).collect() };
    let own = |party: usize| {
        let mut own = OwnInputs::new();
        if party == 0 {
            own.insert_encoded(&circuit, "x", cohort_worker::sharing::Secret::new(enc(x))).unwrap();
        }
        if party == 2 {
            own.insert_encoded(&circuit, "y", cohort_worker::sharing::Secret::new(enc(y))).unwrap();
        }
        own
    };
    let results = if backend == Backend::AdditiveOt {
        let consent = cohort_worker::local::consent_digest_for(source, &circuit.parties, Mode::Ot);
        let owns: Vec<std::sync::Mutex<Option<OwnInputs>>> =
            (0..3).map(|p| std::sync::Mutex::new(Some(own(p)))).collect();
        common::run_circuit_ot(circuit.clone(), consent, move |me| owns[me].lock().unwrap().take().unwrap()).await
    } else {
        federation.run(circuit.clone(), federation.consent(source), (0..3).map(own).collect()).await.expect("meshes")
    };
    let mut rounds = Vec::new();
    let mut value = Vec::new();
    for (party, result) in results.into_iter().enumerate() {
        let out = result.unwrap_or_else(|e| panic!("{backend:?}: party {party} failed: {e}"));
        rounds.push(out.stats.rounds as usize);
        if party == 0 {
            let got = out.outputs[0].value.as_ref().expect("party 0 learns the output").expose().to_vec();
            value = got.iter().map(|v| to_signed(*v)).collect();
        }
    }
    (value, rounds)
}

/// The planner's online layers for `circuit` with `n` elements per input.
fn depth(protocol: ProtocolName, circuit: &Circuit, n: usize) -> usize {
    let lengths =
        InputLengths(circuit.inputs.iter().map(|i| (0..3).map(|p| i.is_owned_by(p).then_some(n)).collect()).collect());
    Instance::plan(circuit, &lengths, Lowering { protocol, quotients: Quotients::Exact }).expect("plans").depth()
}

/// Check `got` against `plain` elementwise: `allowed(want, x, y)` ulps.
async fn check(
    frac_bits: u32,
    expr: &str,
    x: &[i64],
    y: &[i64],
    allowed: impl Fn(i64, i64, i64) -> i64,
    rounds: [usize; 2],
) {
    for backend in BACKENDS {
        let (c, source) = circuit(frac_bits, expr, "[]");
        let mut inputs = plain::PlainInputs::new();
        inputs.insert(0, 0, x.iter().map(|v| from_signed(*v)).collect());
        inputs.insert(1, 2, y.iter().map(|v| from_signed(*v)).collect());
        let want: Vec<i64> = plain::evaluate(&c, &inputs).expect("plain")[0].iter().map(|v| to_signed(*v)).collect();
        let layers = depth(backend.protocol(), &c, x.len());
        let want_layers = if backend == Backend::Replicated { rounds[1] } else { rounds[0] };
        assert_eq!(layers, want_layers, "{backend:?}: layers at f = {frac_bits}");
        let (got, job_rounds) = run(backend, c, &source, x, y).await;
        // Setup, inputs, the layers, the output (and replicated sharing's
        // daBit round).
        let extra = if backend == Backend::Replicated { 4 } else { 3 };
        assert!(job_rounds.iter().all(|r| *r == layers + extra), "{backend:?}: rounds {job_rounds:?}");
        assert_eq!(got.len(), want.len());
        for i in 0..got.len() {
            let err = (got[i] - want[i]).abs();
            let bound = allowed(want[i], x[i], y[i]);
            assert!(
                err <= bound,
                "{backend:?} f = {frac_bits}: element {i} (x = {}, y = {}): got {}, plain {}, off by {err} > {bound}",
                x[i],
                y[i],
                got[i],
                want[i]
            );
        }
    }
}

/// Deterministic pseudorandom `u64`s.
fn stream(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// `n` encodings with log-uniform magnitudes below `2^max_bits`, both signs
/// when `signed`, after the `edges`.
fn values(n: usize, max_bits: u32, seed: u64, signed: bool, edges: &[i64]) -> Vec<i64> {
    let mut next = stream(seed);
    let mut v = edges.to_vec();
    while v.len() < n {
        let bits = next() % u64::from(max_bits) + 1;
        let m = (next() >> (64 - bits)) as i64;
        v.push(if signed && next() & 1 == 1 { -m } else { m });
    }
    v
}

/// The relative bound of a function plus whole ulps.
fn relative(want: i64, log2_rel: i32, ulps: i64) -> i64 {
    (want.abs() as f64 * f64::from(log2_rel).exp2()) as i64 + ulps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn division_by_a_secret() {
    for f in [16u32, 0, 40] {
        let top = (1i64 << 62) - 1;
        let unit = 1i64 << f;
        let edges = [0, 1, -1, 2, -2, unit, -unit, unit + 1, top, -top, 3 * unit, 7];
        let x = values(300, 62, 11 + u64::from(f), true, &edges);
        // Divisors: the edges too (0 and ±1 ulp), and every magnitude.
        let y = values(300, 62, 23 + u64::from(f), true, &[0, 0, 1, -1, 1, unit, -unit, top, top, -top, 1, -1]);
        // Pairs out of the domain (|x/y| >= 2^(60-f)) get a divisor that keeps them in.
        let y: Vec<i64> = x
            .iter()
            .zip(&y)
            .map(|(a, b)| {
                let q = (*a as f64) / (*b as f64);
                if *b != 0 && q.abs() >= ((60 - f) as f64).exp2() { if *b < 0 { -top } else { top } } else { *b }
            })
            .collect();
        check(f, "x / y", &x, &y, |want, _, _| relative(want, -25, 2), [31, 39]).await;
    }
}

/// The bound of `log` and `sigmoid`: 2 ulps and 2^-27 (absolute).
fn absolute(frac_bits: u32) -> i64 {
    2 + if frac_bits > 27 { 1 << (frac_bits - 27) } else { 0 }
}

/// `exp` on its domain's edges (the clamp at both ends, 0, ±1 ulp) and
/// random arguments with |x| < 64, and beyond the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exp_against_plain() {
    for f in [16u32, 0, 40] {
        let unit = 1i64 << f;
        let top = (1i64 << 62) - 1;
        // The clamp's ends, as the circuit computes them (see
        // docs/fixed-point-functions.md): ln 2 at 2^-60.
        let ln2 = 799_144_290_325_165_979i128;
        let lo = (-(((i128::from(f) + 1) * ln2) >> (60 - f)) - 1) as i64;
        let hi = (((((62 - i128::from(f)) << 60) - (1 << 38)) * ln2) >> (120 - f)) as i64;
        let edges = [0, 1, -1, unit, -unit, lo, lo - 1, lo + 1, hi, hi - 1, hi + 1, top, -top, 10 * unit];
        let x = values(300, f + 6, 31 + u64::from(f), true, &edges);
        let y = vec![0; x.len()];
        check(f, "exp(x) + y", &x, &y, |want, _, _| relative(want, -26, 2), [27, 35]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigmoid_against_plain() {
    for f in [16u32, 0, 40] {
        let unit = 1i64 << f;
        let top = (1i64 << 62) - 1;
        let edges = [0, 1, -1, unit, -unit, top, -top, 22 * unit, -22 * unit, 40 * unit, -40 * unit];
        let mut x = values(200, (f + 6).min(61), 41 + u64::from(f), true, &edges);
        x.extend(values(100, 61, 43 + u64::from(f), true, &[]));
        let y = vec![0; x.len()];
        let rounds = if f >= 31 { [35, 47] } else { [36, 49] };
        check(f, "sigmoid(x) + y", &x, &y, |_, _, _| absolute(f), rounds).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_against_plain() {
    for f in [16u32, 0, 40] {
        let unit = 1i64 << f;
        let top = (1i64 << 62) - 1;
        let edges = [0, 1, -1, 2, unit, unit - 1, unit + 1, -unit, top, top - 1, -top, 1 << 61, (1 << 61) - 1];
        let x = values(300, 62, 51 + u64::from(f), true, &edges);
        let y = vec![0; x.len()];
        check(f, "log(x) + y", &x, &y, |_, _, _| absolute(f), [27, 34]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqrt_against_plain() {
    for f in [16u32, 0, 40] {
        let unit = 1i64 << f;
        let top = (1i64 << 62) - 1;
        let edges = [0, 1, -1, 2, 3, 4, unit, unit - 1, unit + 1, 4 * unit, -unit, top, top - 1, -top, 1 << 61];
        let x = values(300, 62, 61 + u64::from(f), true, &edges);
        let y = vec![0; x.len()];
        check(f, "sqrt(x) + y", &x, &y, |want, _, _| relative(want, -27, 2), [29, 37]).await;
    }
}

/// Scalars, a scalar divisor of a vector, and empty vectors, under every
/// protocol: the shapes the planner broadcasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scalars_broadcasts_and_empty_vectors() {
    let unit = 1i64 << 16;
    for backend in BACKENDS {
        for (expr, shape, x, y) in [
            ("x / y", "", vec![7 * unit], vec![-2 * unit]),
            ("sqrt(x) + exp(y) + log(x) + sigmoid(y)", "", vec![9 * unit], vec![unit / 2]),
            ("x / y", "[]", vec![], vec![]),
            // A public dividend (a reciprocal) and a public argument mixed in.
            ("1 / y + 2.5 / (y + x)", "[]", vec![unit, 3 * unit, -5], vec![3 * unit, -unit / 4, 7 * unit]),
            ("1 / y", "", vec![0], vec![-3 * unit]),
            ("sqrt(x) + exp(y) + log(x) + sigmoid(y)", "[]", vec![], vec![]),
        ] {
            let (c, source) = circuit(16, expr, shape);
            let mut inputs = plain::PlainInputs::new();
            inputs.insert(0, 0, x.iter().map(|v| from_signed(*v)).collect());
            inputs.insert(1, 2, y.iter().map(|v| from_signed(*v)).collect());
            let want: Vec<i64> =
                plain::evaluate(&c, &inputs).expect("plain")[0].iter().map(|v| to_signed(*v)).collect();
            let (got, _) = run(backend, c, &source, &x, &y).await;
            assert_eq!(got.len(), want.len(), "{backend:?}: {expr} over {shape:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 8, "{backend:?}: {expr}: got {g}, plain {w}");
            }
        }
    }
}

/// A secret divisor of a vector by a scalar: `x / y` with `y` one secret
/// value, and the mixed program the fraud model needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scalar_secret_divisor() {
    let names: Vec<String> = (0..3).map(|i| format!("party-{i}")).collect();
    let source = "input x: fixed[] from party-0\ninput s: fixed from party-2\noutput o = x / s\n\
                  output p = sigmoid(x * s - 1.5)\n";
    let circuit = compile(source, &names).expect("compiles");
    let x: Vec<i64> = values(100, 40, 71, true, &[0, 1, -1, 65536]);
    let s = 3 * 65536 + 12345;
    for backend in BACKENDS {
        if backend == Backend::AdditiveOt {
            continue; // the OT backend is covered by the suites above
        }
        let federation = LocalFederation::with_parties(3).await.expect("federation").with_protocol(backend.protocol());
        let c = Arc::new(circuit.clone());
        let mut own = vec![OwnInputs::new(), OwnInputs::new(), OwnInputs::new()];
        own[0]
            .insert_encoded(&c, "x", cohort_worker::sharing::Secret::new(x.iter().map(|v| from_signed(*v)).collect()))
            .unwrap();
        own[2].insert_encoded(&c, "s", cohort_worker::sharing::Secret::new(vec![from_signed(s)])).unwrap();
        let mut inputs = plain::PlainInputs::new();
        inputs.insert(0, 0, x.iter().map(|v| from_signed(*v)).collect());
        inputs.insert(1, 2, vec![from_signed(s)]);
        let want = plain::evaluate(&c, &inputs).expect("plain");
        let results = federation.run(c.clone(), federation.consent(source), own).await.expect("meshes");
        let out = results.into_iter().next().unwrap().expect("party 0");
        for (k, w) in want.iter().enumerate() {
            let got = out.outputs[k].value.as_ref().unwrap().expose().to_vec();
            for (g, w) in got.iter().zip(w) {
                let (g, w) = (to_signed(*g), to_signed(*w));
                assert!((g - w).abs() <= relative(w, -25, 3), "{backend:?}: output {k}: got {g}, plain {w}");
            }
        }
    }
}

/// Per element, at f = 16: (layers, Beaver products, truncations, AND
/// gates, bit injections, conversions to binary) of each function under
/// the additive protocol and under replicated-3 — the table of
/// docs/fixed-point-functions.md — and the additive material plan agrees.
#[test]
fn rounds_and_material_per_element() {
    use cohort_worker::executor::netlist::{GateOp, Kind};
    type Row = (usize, usize, usize, usize, usize, usize);
    let table: [(&str, Row, Row); 5] = [
        ("x / y", (31, 20, 13, 1035, 49, 2), (39, 20, 13, 1163, 49, 2)),
        ("exp(x) + y", (27, 16, 15, 585, 26, 3), (35, 16, 15, 775, 26, 3)),
        ("sigmoid(x) + y", (36, 15, 19, 727, 42, 4), (49, 15, 19, 980, 42, 4)),
        ("log(x) + y", (27, 13, 13, 553, 62, 1), (34, 13, 13, 617, 62, 1)),
        ("sqrt(x) + y", (29, 15, 14, 553, 62, 1), (37, 15, 14, 617, 62, 1)),
    ];
    for (expr, additive, replicated) in table {
        let (c, _) = circuit(16, expr, "[]");
        for n in [1usize, 300] {
            let lengths = InputLengths(
                c.inputs.iter().map(|i| (0..3).map(|p| i.is_owned_by(p).then_some(n)).collect()).collect(),
            );
            for (protocol, want) in
                [(ProtocolName::AdditiveSemiHonest, additive), (ProtocolName::Replicated3, replicated)]
            {
                let inst = Instance::plan(&c, &lengths, Lowering { protocol, quotients: Quotients::Exact }).unwrap();
                let (mut muls, mut divs, mut ands, mut inj, mut a2b) = (0, 0, 0, 0, 0);
                for gate in inst.netlist.gates.iter().filter(|g| g.interactive) {
                    let w = gate.width();
                    match gate.op {
                        GateOp::Mul(..) => muls += w,
                        GateOp::Div(..) => divs += w,
                        GateOp::And(..) => ands += w * if let Kind::Bits(b) = gate.kind { b } else { 0 },
                        GateOp::Inject(..) => inj += w,
                        GateOp::MaskedOpen(..) | GateOp::SplitInput(..) => a2b += w,
                        _ => {}
                    }
                }
                let got = (inst.depth(), muls / n, divs / n, ands / n, inj / n, a2b / n);
                assert_eq!(got, want, "{expr} under {protocol:?} over {n}");
                if protocol == ProtocolName::AdditiveSemiHonest {
                    let plan = &inst.plan;
                    assert_eq!(plan.total_div_pairs(), divs);
                    assert_eq!(plan.total_edabits(), a2b);
                    assert_eq!(plan.total_dabits(), inj);
                    // Products, and injections of a secret value (a triple each).
                    assert!(plan.total_triples() >= muls && plan.total_triples() <= muls + inj);
                    assert!(plan.total_bit_triples() >= ands);
                }
            }
        }
    }
}

/// Every function with 2 and 5 parties under the additive protocol (dealt
/// and OT-generated material), through the language: arguments where every
/// bound is a few ulps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_and_five_parties() {
    use common::backends::{Backend as B, check_within};
    let fp = cohort_worker::fixed::FixedPoint::default();
    let enc = |v: &[f64]| -> Vec<u64> { v.iter().map(|x| fp.encode(*x).unwrap()).collect() };
    let x: Vec<f64> = common::sample(150, 1000.0, 5);
    let y: Vec<f64> = common::sample(150, 1000.0, 6).iter().map(|v| if v.abs() < 1.0 { v + 2.0 } else { *v }).collect();
    let small: Vec<f64> = x.iter().map(|v| v / 200.0).collect();
    for parties in [2usize, 5] {
        let last = format!("party-{}", parties - 1);
        let source = format!(
            "input x: fixed[] from party-0\ninput y: fixed[] from {last}\ninput s: fixed[] from party-0\n\
             output q = x / y\noutput e = exp(s)\noutput g = sigmoid(s)\noutput l = log(x)\noutput r = sqrt(y)\n"
        );
        for backend in [B::AdditiveDealer, B::AdditiveOt] {
            let mut inputs = vec![Vec::new(); parties];
            inputs[0] = vec![("x", enc(&x)), ("s", enc(&small))];
            inputs[parties - 1].push(("y", enc(&y)));
            check_within(backend, parties, &source, inputs, |_| 4).await;
        }
    }
}
