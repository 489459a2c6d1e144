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
use cohort_worker::program::ir::{Circuit, Func, Op};
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

/// A program over `x` (party 0) and `y` (party 2), `fixed` vectors, whose
/// one output is `op(x, y)`: built from `x + y` with the output node's
/// operation replaced (the IR ops directly, whatever the language spells).
fn circuit(frac_bits: u32, op: impl Fn(usize, usize) -> Op) -> (Circuit, String) {
    let source = format!(
        "fixed_point {frac_bits}\ninput x: fixed[] from party-0\ninput y: fixed[] from party-2\noutput o = x + y\n"
    );
    let names: Vec<String> = (0..3).map(|i| format!("party-{i}")).collect();
    let mut circuit = compile(&source, &names).expect("compiles");
    let out = circuit.outputs[0].value;
    let Op::Add(x, y) = circuit.nodes[out].op.clone() else { panic!("the output is x + y") };
    circuit.nodes[out].op = op(x, y);
    (circuit, source)
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
    op: impl Fn(usize, usize) -> Op + Copy,
    x: &[i64],
    y: &[i64],
    allowed: impl Fn(i64, i64, i64) -> i64,
    rounds: [usize; 2],
) {
    for backend in BACKENDS {
        let (c, source) = circuit(frac_bits, op);
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
        check(f, Op::DivSecret, &x, &y, |want, _, _| relative(want, -25, 2), [29, 37]).await;
    }
}

#[allow(dead_code)]
fn func(f: Func) -> impl Fn(usize, usize) -> Op + Copy {
    move |x, _| Op::Func(f, x)
}
