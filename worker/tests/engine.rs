//! The engine end to end: compiled programs run among 2, 3 and 5 parties in
//! one process over real loopback TLS, checked against plaintext
//! evaluation; round counts; job-level faults.

mod common;

use cohort_worker::executor::{ExecuteOptions, Instance, JobError, execute};
use cohort_worker::fixed::FixedPoint;
use cohort_worker::local::{LocalFederation, PartyRun};
use cohort_worker::program::ir::ElemType;
use cohort_worker::program::{compile, plain};
use cohort_worker::ring::to_signed;
use cohort_worker::transport::{JobId, Step, Timeouts};
use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const F: u32 = 16;

fn ulp() -> f64 {
    FixedPoint::default().ulp()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn variance(xs: &[f64]) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64
}

fn assert_close(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!((got - want).abs() <= tolerance, "{what}: got {got}, want {want} (tolerance {tolerance})");
}

const SALARY_STATS: &str = "
input salaries: fixed[] from each
let all = concat(salaries)
output count = len(all)
output mean = mean(all)
output variance = variance(all)
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salary_statistics_among_three_parties() {
    let data = [sample(40, 5000.0, 1), sample(25, 5000.0, 2), sample(1, 5000.0, 3)];
    let inputs: PartyInputs = data.iter().map(|d| vec![("salaries", d.clone())]).collect();
    let all: Vec<f64> = data.concat();
    for result in run_program(SALARY_STATS, inputs).await {
        let out = result.expect("job succeeds");
        assert_eq!(output(&out, "count", F).unwrap(), vec![66.0]);
        assert_close(output(&out, "mean", F).unwrap()[0], mean(&all), 2.0 * ulp(), "mean");
        // mean(x*x) - mean^2 with |x| up to 5000: each of the two terms is
        // within a few ulp of its exact value; the square amplifies the
        // mean's error by 2|mean|.
        let tolerance = 4.0 * ulp() * (1.0 + 2.0 * mean(&all).abs());
        assert_close(output(&out, "variance", F).unwrap()[0], variance(&all), tolerance, "variance");
        assert_eq!(out.stats.protocol_version, cohort_worker::protocol::SUPPORTED_VERSIONS.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_product_only_the_recipient_learns() {
    let program = "
input x: fixed[] from party-0
input y: fixed[] from party-1
output d = dot(x, y) to party-0
";
    let (x, y) = (sample(1000, 100.0, 4), sample(1000, 100.0, 5));
    let want: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
    let results = run_program(program, vec![vec![("x", x)], vec![("y", y)]]).await;
    let outs: Vec<_> = results.into_iter().map(|r| r.expect("job succeeds")).collect();
    assert_close(output(&outs[0], "d", F).unwrap()[0], want, ulp(), "dot");
    assert!(output(&outs[1], "d", F).is_none(), "party-1 is not a recipient");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_aggregation_among_five_parties() {
    let program = "
input gradient: int[] from each
output total = aggregate(gradient)
";
    let vectors: Vec<Vec<f64>> =
        (0..5).map(|p| (0..1000).map(|i| ((i * 7919 + p * 104729) % 20001) as f64 - 10000.0).collect()).collect();
    let inputs: PartyInputs = vectors.iter().map(|v| vec![("gradient", v.clone())]).collect();
    for result in run_program(program, inputs).await {
        let out = result.expect("job succeeds");
        let total = output(&out, "total", F).unwrap();
        for (i, t) in total.iter().enumerate() {
            assert_eq!(*t, vectors.iter().map(|v| v[i]).sum::<f64>());
        }
        assert_eq!(out.stats.layers, 0, "aggregation is linear: no online layer");
    }
}

/// Every operation, for `n` parties, against the plaintext evaluation of
/// the same circuit: exact for ring operations, within one unit for each
/// division or truncation.
async fn every_operation_against_plaintext(n: usize) {
    let last = format!("party-{}", n - 1);
    let program = format!(
        "
input a: int[] from party-0
input b: int[] from {last}
input x: fixed[] from party-0
input y: fixed[] from {last}
input s: fixed from {last}
input k: int from party-0
input edge: fixed[] from party-0
output add = a + b
output sub = a - b
output neg = -a
output mul = a * b
output affine = a * 3 - 7
output scalar = a * k
output total = sum(a)
output cat_len = len(a) + len(x)
output addf = x + y
output mulf = x * y
output divf = x / 3
output divi = a / 1000
output scaled = x * s
output halves = x * 0.5
output dotf = dot(x, y)
output meanf = mean(x)
output mixed = a * x
output chain = (x * y) * s
output edge_linear = -edge + 0.5 * 2 - edge * 3
"
    );
    let fp = FixedPoint::default();
    // Edges: 0, ±1, and the largest magnitudes each operation admits.
    let big_int = ((1u64 << 61) - 1) as f64;
    let a = vec![0.0, 1.0, -1.0, 2.0, -3.0, 123456.0, -654321.0, 1e9, -1e9, 0.0];
    let b = vec![0.0, -1.0, 1.0, big_int, -big_int, 7.0, -7.0, 1e9, 3.0, 1.0];
    let x_edge = 1024.0 - 1.0 / 256.0; // products stay below 2^(62-2f)
    let x = vec![0.0, 1.0, -1.0, x_edge, -x_edge, 0.5, -0.25, 3.25159, -2.61828, 1.0 / 65536.0];
    let y = vec![0.0, -1.0, 1.0, x_edge, x_edge, -0.5, 1000.0, -3.0, 0.0, 65536.0 / 1024.0];
    let s = vec![-1.5];
    let k = vec![-3.0];
    let mut party_inputs: PartyInputs = vec![Vec::new(); n];
    // The fixed-point range edges, for linear operations (which wrap
    // exactly in the ring whatever the intermediate magnitudes).
    let edge_max = fp.max_abs() - 1.0;
    let edge = vec![edge_max, -edge_max, fp.ulp(), -fp.ulp(), 0.0];
    party_inputs[0] = vec![("a", a), ("x", x), ("k", k), ("edge", edge)];
    party_inputs[n - 1].extend([("b", b), ("y", y), ("s", s)]);

    let federation = federation(n).await;
    let circuit = compile(&program, &federation.names).expect("compiles");
    // Plaintext reference on the same encoded inputs.
    let mut plain_inputs = plain::PlainInputs::new();
    for (party, inputs) in party_inputs.iter().enumerate() {
        for (name, values) in inputs {
            let index = circuit.inputs.iter().position(|i| i.name == *name).unwrap();
            let encoded: Vec<u64> = values
                .iter()
                .map(|v| match circuit.inputs[index].elem {
                    ElemType::Int => cohort_worker::fixed::encode_int(*v as i64).unwrap(),
                    ElemType::Bool => *v as u64,
                    ElemType::Fixed => fp.encode(*v).unwrap(),
                })
                .collect();
            plain_inputs = plain_inputs.set(index, party, encoded);
        }
    }
    let expected = plain::evaluate(&circuit, &plain_inputs).expect("plaintext evaluation");
    let results = run_on(&federation, &program, party_inputs).await;
    for (party, result) in results.into_iter().enumerate() {
        let out = result.unwrap_or_else(|e| panic!("party {party}: {e}"));
        for (decl, (got, want)) in circuit.outputs.iter().zip(out.outputs.iter().zip(&expected)) {
            let got = got.value.as_ref().expect("every party receives").expose();
            assert_eq!(got.len(), want.len(), "{}", decl.name);
            // Allowed error in ring units: none for ring operations, one per
            // division (two chained truncations amplify by |s|).
            let tolerance: i64 = match decl.name.as_str() {
                "mulf" | "divf" | "divi" | "scaled" | "halves" | "dotf" | "meanf" => 1,
                "chain" => 3,
                _ => 0,
            };
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                let diff = to_signed(g.wrapping_sub(*w));
                assert!(diff.abs() <= tolerance, "{} [{i}] with {n} parties: off by {diff}", decl.name);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_two_parties() {
    every_operation_against_plaintext(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_three_parties() {
    every_operation_against_plaintext(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_five_parties() {
    every_operation_against_plaintext(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_element_vectors() {
    let program = "
input x: fixed[] from party-0
input y: fixed[] from party-1
output product = x * y to party-2
output d = dot(x, y)
";
    let len = 1_000_000;
    let (x, y) = (sample(len, 1000.0, 6), sample(len, 1000.0, 7));
    let fp = FixedPoint::default();
    let results = run_program(program, vec![vec![("x", x.clone())], vec![("y", y.clone())], vec![]]).await;
    let outs: Vec<_> = results.into_iter().map(|r| r.expect("job succeeds")).collect();
    let product = output(&outs[2], "product", F).unwrap();
    assert_eq!(product.len(), len);
    for i in 0..len {
        let exact = fp.decode(fp.encode(x[i]).unwrap()) * fp.decode(fp.encode(y[i]).unwrap());
        assert!((product[i] - exact).abs() <= fp.ulp(), "element {i}");
    }
    assert!(output(&outs[0], "product", F).is_none());
    let want: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
    assert_close(output(&outs[1], "d", F).unwrap()[0], want, want.abs() * 1e-12 + ulp(), "dot");
    // One layer of a million multiplications, then one of truncations; `d`
    // shares both with `product` (the compiler builds identical nodes once).
    assert_eq!(outs[0].stats.triples_used, len as u64);
    assert_eq!(outs[0].stats.div_pairs_used, len as u64);
    assert_eq!(outs[0].stats.layers, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_counts_do_not_depend_on_lengths() {
    let names: Vec<String> = (0..3).map(|i| format!("party-{i}")).collect();
    let circuit = compile(SALARY_STATS, &names).unwrap();
    let mut rounds = Vec::new();
    for len in [1usize, 10, 10_000] {
        let lengths = cohort_worker::executor::InputLengths(vec![vec![Some(len); 3]]);
        let instance = Instance::new(&circuit, &lengths).unwrap();
        rounds.push(instance.depth());
    }
    assert!(rounds.iter().all(|r| *r == rounds[0]), "{rounds:?}");
    assert!(rounds[0] <= 3, "variance takes at most 3 online layers, got {}", rounds[0]);

    // And the executed job reports setup + input + layers + output rounds.
    let inputs: PartyInputs = (0..3).map(|p| vec![("salaries", sample(10 + p * 100, 50.0, p as u64))]).collect();
    for result in run_program(SALARY_STATS, inputs).await {
        let stats = result.unwrap().stats;
        assert_eq!(stats.layers as usize, rounds[0]);
        assert_eq!(stats.rounds as usize, 3 + rounds[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_programs_are_refused_at_setup() {
    let federation = federation(3).await;
    let hub = DealerHub::new(3);
    // Party 2 applied a different program (its consent digest differs).
    let parties = (0..3)
        .map(|me| {
            let digest =
                if me == 2 { federation.consent("output other = 1") } else { federation.consent(SALARY_STATS) };
            (digest, hub.clone())
        })
        .collect();
    let results = run_parties(&federation, SALARY_STATS, parties, ("salaries", vec![1.0, 2.0])).await;
    for (me, result) in results.into_iter().enumerate() {
        let err = result.expect_err("mismatch is refused");
        match &err {
            JobError::Protocol { party, step: Step::Setup, reason } => {
                assert!(reason.contains("different program"), "{err}");
                if me != 2 {
                    assert_eq!(party, "party-2");
                }
            }
            other => panic!("party {me}: unexpected error {other}"),
        }
    }
}

/// Run `source` where each party uses its own consent digest and dealer
/// (to inject disagreement), every party providing `input`.
async fn run_parties(
    federation: &LocalFederation,
    source: &str,
    parties: Vec<([u8; 32], DealerHub)>,
    input: (&'static str, Vec<f64>),
) -> Vec<Result<cohort_worker::executor::JobOutput, JobError>> {
    let circuit = Arc::new(compile(source, &federation.names).unwrap());
    let parties = parties
        .into_iter()
        .map(|(consent, dealer)| PartyRun {
            consent,
            dealer,
            inputs: own_inputs(&circuit, std::slice::from_ref(&input)).unwrap(),
        })
        .collect();
    federation.run_parties(circuit, parties).await.unwrap()
}

/// Run a job where party `victim` misbehaves through `sabotage` (given its
/// mesh), and return the other parties' errors and how long they took.
async fn job_with_faulty_party<F, Fut>(
    federation: &LocalFederation,
    victim: usize,
    sabotage: F,
) -> Vec<(JobError, Duration)>
where
    F: FnOnce(cohort_worker::transport::Mesh) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let source = "input x: fixed[] from each\noutput p = sum(concat(x)) * sum(concat(x))";
    let circuit = Arc::new(compile(source, &federation.names).unwrap());
    let meshes = federation.meshes(JobId::random()).await.unwrap();
    let hub = DealerHub::new(federation.names.len());
    let digest = federation.consent(source);
    let mut tasks = Vec::new();
    let mut sabotage = Some(sabotage);
    for (me, mesh) in meshes.into_iter().enumerate() {
        if me == victim {
            let f = sabotage.take().unwrap();
            tokio::spawn(async move { f(mesh).await });
            continue;
        }
        let (circuit, hub) = (circuit.clone(), hub.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let own = own_inputs(&circuit, &[("x", vec![1.5, -2.0])]).unwrap();
            let result =
                execute(&mesh, &circuit, &own, &ExecuteOptions::new(digest), |plan| async move { hub.take(me, plan) })
                    .await;
            (result, started.elapsed())
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        let (result, elapsed) = t.await.unwrap();
        errors.push((result.expect_err("the job fails"), elapsed));
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_that_disconnects_ends_the_job_and_the_next_job_runs() {
    let mut federation = federation(3).await;
    federation.timeouts = Timeouts { connect: Duration::from_secs(5), round: Duration::from_secs(3) };
    let errors = job_with_faulty_party(&federation, 1, |mesh| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(mesh);
    })
    .await;
    for (err, elapsed) in errors {
        let text = err.to_string();
        // Party 0 talks to party 1 directly; party 2 may instead see the
        // failure cascade, but names a party and a step either way.
        assert!(text.contains("party-1") || text.contains("party-0"), "{text}");
        assert!(text.contains("step") || text.contains("setup"), "{text}");
        assert!(elapsed < Duration::from_secs(3 + 5), "took {elapsed:?}");
    }
    // The same federation (same listeners) serves the next job.
    let inputs: PartyInputs = (0..3).map(|_| vec![("salaries", vec![1.0, 2.0, 3.0])]).collect();
    for result in run_on(&federation, SALARY_STATS, inputs).await {
        assert_close(output(&result.expect("next job succeeds"), "mean", F).unwrap()[0], 2.0, ulp(), "mean");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_party_times_out_naming_it() {
    let mut federation = federation(3).await;
    federation.timeouts = Timeouts { connect: Duration::from_secs(5), round: Duration::from_millis(1500) };
    let errors = job_with_faulty_party(&federation, 2, |mesh| async move {
        // Keep the connections open but never speak.
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(mesh);
    })
    .await;
    for (err, elapsed) in errors {
        let text = err.to_string();
        assert!(text.contains("party-2"), "{text}");
        assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_material_is_detected_before_use() {
    let federation = federation(3).await;
    let source = "input x: fixed[] from each\nlet all = concat(x)\noutput p = dot(all, all)";
    // Party 2 draws from a different dealer than parties 0 and 1.
    let (hub, rogue) = (DealerHub::new(3), DealerHub::new(3));
    let digest = federation.consent(source);
    let parties = (0..3).map(|me| (digest, if me == 2 { rogue.clone() } else { hub.clone() })).collect();
    let results = run_parties(&federation, source, parties, ("x", vec![1.0, 2.0])).await;
    for result in results {
        let err = result.expect_err("mismatched material is refused");
        assert!(err.to_string().contains("material mismatch"), "{err}");
    }
}

#[tokio::test]
async fn bad_own_inputs_are_refused_without_echoing_values() {
    let names: Vec<String> = (0..2).map(|i| format!("party-{i}")).collect();
    let circuit =
        compile("input x: fixed[] from party-0\ninput k: int from party-0\noutput y = x * k", &names).unwrap();
    let too_big = FixedPoint::default().max_abs() * 2.0;
    let err = own_inputs(&circuit, &[("x", vec![1.0, too_big])]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`x`") && text.contains("element 1") && text.contains("out of range"), "{text}");
    assert!(!text.contains(&too_big.to_string()), "{text}");
    let err = own_inputs(&circuit, &[("k", vec![1.5])]).unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
    let err = own_inputs(&circuit, &[("nope", vec![1.0])]).unwrap_err();
    assert!(err.to_string().contains("no input of that name"), "{err}");
}

/// Run `source` once among `inputs.len()` parties with OT-based
/// preprocessing: the parties generate the material over the job's own
/// mesh (as `preprocessing: ot` does), with generated division pairs.
async fn run_program_ot(
    source: &str,
    inputs: PartyInputs,
) -> Vec<Result<cohort_worker::executor::JobOutput, JobError>> {
    let n = inputs.len();
    let names: Vec<String> = (0..n).map(|i| format!("party-{i}")).collect();
    let circuit = Arc::new(compile(source, &names).expect("program compiles"));
    let consent = cohort_worker::local::consent_digest_for(source, &names, cohort_worker::preprocessing::Mode::Ot);
    let inputs = Arc::new(inputs);
    let encode = circuit.clone();
    run_circuit_ot(circuit, consent, move |me| own_inputs(&encode, &inputs[me]).expect("inputs encode")).await
}

/// Item 1 of issue 15: mean and variance over lengths that are not powers
/// of two, in dealer and OT modes, within the same bound. (OT mode refused
/// these divisors before.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mean_and_variance_over_lengths_that_are_not_powers_of_two_in_dealer_and_ot_modes() {
    for (seed, len) in [3usize, 50, 1000, 99_999].into_iter().enumerate() {
        let data = [sample(len - len / 2, 5000.0, 10 + seed as u64), sample(len / 2, 5000.0, 20 + seed as u64)];
        let inputs: PartyInputs = data.iter().map(|d| vec![("salaries", d.clone())]).collect();
        let all: Vec<f64> = data.concat();
        let tolerance = 4.0 * ulp() * (1.0 + 2.0 * mean(&all).abs());
        for (mode, results) in [
            ("dealer", run_program(SALARY_STATS, inputs.clone()).await),
            ("ot", run_program_ot(SALARY_STATS, inputs).await),
        ] {
            for result in results {
                let out = result.unwrap_or_else(|e| panic!("{mode}, {len} values: {e}"));
                assert_eq!(output(&out, "count", F).unwrap(), vec![len as f64]);
                let what = format!("{mode}, {len} values");
                assert_close(output(&out, "mean", F).unwrap()[0], mean(&all), 2.0 * ulp(), &format!("mean, {what}"));
                assert_close(
                    output(&out, "variance", F).unwrap()[0],
                    variance(&all),
                    tolerance,
                    &format!("variance, {what}"),
                );
            }
        }
    }
}

/// The exact answer of `x / d` for many `x` near the edges and many
/// divisors, in OT mode (generated pairs, the correction round), against
/// plaintext: within one of the floor, as with the dealer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_division_by_many_divisors_in_ot_mode_is_within_one() {
    let divisors: [i64; 8] = [3, 7, 50, 1000, 99_999, 65_536_000, (1 << 40) + 1, (1 << 61) + 1];
    let mut src = String::from("input x: int[] from party-0\ninput y: int[] from party-1\nlet v = concat(x, y)\n");
    for (i, d) in divisors.iter().enumerate() {
        src.push_str(&format!("output q{i} = v / {d}\n"));
    }
    src.push_str("output m = v / len(v)\n");
    let mut values: Vec<f64> = vec![0.0, 1.0, -1.0, 2.0, -2.0, 49.0, 50.0, -50.0, 99_998.0, 99_999.0, -99_999.0];
    values.extend(sample(40, 1e10, 7).into_iter().map(f64::round));
    // `/` gives `fixed`: the dividend is x·2^16, which must stay below
    // 2^62 − d; these are at that edge for the largest divisor.
    let edge = ((1i64 << 45) - 1) as f64;
    let big: Vec<f64> = vec![edge, -edge, edge - 99_999.0, -edge + 3.0];
    let inputs: PartyInputs = vec![vec![("x", values.clone())], vec![("y", big.clone())]];
    let all: Vec<i64> = values.iter().chain(&big).map(|v| *v as i64).collect();
    for result in run_program_ot(&src, inputs).await {
        let out = result.expect("job succeeds");
        for (i, d) in divisors.iter().chain(std::iter::once(&(all.len() as i64))).enumerate() {
            let name = if i < divisors.len() { format!("q{i}") } else { "m".to_string() };
            // The raw ring values: exact, whatever their size.
            let got = out.outputs.iter().find(|o| o.name == name).and_then(|o| o.value.as_ref()).expect("output");
            for (x, y) in all.iter().zip(got.expose()) {
                let err = to_signed(*y) - (x << F).div_euclid(*d);
                assert!((-1..=1).contains(&err), "{x} / {d}: error {err}");
            }
        }
    }
}
