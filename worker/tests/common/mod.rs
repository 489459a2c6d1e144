//! Shared helpers for the engine's integration tests, on top of
//! `cohort_worker::local` (a federation in one process over loopback TLS).

#![allow(dead_code, unused_imports)]

use cohort_worker::executor::{JobError, JobOutput, OwnInputs};
use cohort_worker::local::LocalFederation;
use cohort_worker::program::compile;
use cohort_worker::program::ir::Circuit;
use std::sync::Arc;

pub use cohort_worker::local::DealerHub;

pub mod backends;
pub mod material;

/// Run `work` at each of `n` parties, each in its own task, on a fresh
/// mesh of one session; the mesh is closed (its last messages flushed)
/// after `work` hands it back. The parties' results, in party order.
pub async fn each_party<T: Send + 'static>(
    n: usize,
    work: impl Fn(
        cohort_worker::transport::Mesh,
    ) -> futures::future::BoxFuture<'static, (T, cohort_worker::transport::Mesh)>
    + Send
    + Sync
    + 'static,
) -> Vec<T> {
    let meshes = federation(n).await.meshes(cohort_worker::transport::JobId::random()).await.expect("meshes");
    let work = Arc::new(work);
    let tasks: Vec<_> = meshes
        .into_iter()
        .map(|mesh| {
            let work = work.clone();
            tokio::spawn(async move {
                let (out, mesh) = work(mesh).await;
                mesh.close().await;
                out
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("party task"));
    }
    out
}

/// Party inputs: (input name, values) pairs, per party.
pub type PartyInputs = Vec<Vec<(&'static str, Vec<f64>)>>;

pub async fn federation(n: usize) -> LocalFederation {
    LocalFederation::with_parties(n).await.expect("local federation")
}

/// Run `source` among a fresh federation of `inputs.len()` parties.
pub async fn run_program(source: &str, inputs: PartyInputs) -> Vec<Result<JobOutput, JobError>> {
    run_on(&federation(inputs.len()).await, source, inputs).await
}

/// Run `source` on an existing federation.
pub async fn run_on(
    federation: &LocalFederation,
    source: &str,
    inputs: PartyInputs,
) -> Vec<Result<JobOutput, JobError>> {
    let circuit = Arc::new(compile(source, &federation.names).expect("program compiles"));
    let own = inputs.iter().map(|i| own_inputs(&circuit, i).expect("inputs encode")).collect();
    federation.run(circuit, federation.consent(source), own).await.expect("meshes establish")
}

pub fn own_inputs(circuit: &Circuit, inputs: &[(&str, Vec<f64>)]) -> Result<OwnInputs, JobError> {
    let mut own = OwnInputs::new();
    for (name, values) in inputs {
        own.insert_values(circuit, name, values)?;
    }
    Ok(own)
}

/// The named output as seen by one party, decoded.
pub fn output(result: &JobOutput, name: &str, frac_bits: u32) -> Option<Vec<f64>> {
    result.outputs.iter().find(|o| o.name == name).expect("output exists").decode(frac_bits)
}

/// The tests' deterministic generator (xorshift64), seeded so that
/// failures reproduce: the next value of `state` (never 0).
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A xorshift state from a seed (any seed, 0 included).
pub fn seeded(seed: u64) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
}

/// Deterministic pseudorandom ints in `[-bound, bound]`.
pub fn ints(len: usize, bound: i64, seed: u64) -> Vec<i64> {
    let mut state = seeded(seed);
    (0..len).map(|_| (xorshift(&mut state) % (2 * bound as u64 + 1)) as i64 - bound).collect()
}

/// Deterministic pseudorandom reals in `[-bound, bound]` with 2^-8 steps.
pub fn sample(len: usize, bound: f64, seed: u64) -> Vec<f64> {
    let mut state = seeded(seed);
    (0..len)
        .map(|_| {
            let state = xorshift(&mut state);
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            ((unit * 2.0 - 1.0) * bound * 256.0).round() / 256.0
        })
        .collect()
}

/// Run `circuit` once among its parties with OT-based preprocessing: the
/// parties generate the material over the job's own mesh (as
/// `preprocessing: ot` does), with generated division pairs. `inputs[p]`
/// builds party `p`'s own inputs.
pub async fn run_circuit_ot(
    circuit: Arc<Circuit>,
    consent: [u8; 32],
    inputs: impl Fn(usize) -> OwnInputs + Send + Sync + 'static,
) -> Vec<Result<JobOutput, JobError>> {
    use cohort_worker::executor::{ExecuteOptions, Quotients, execute};
    use cohort_worker::preprocessing::Mode;
    use cohort_worker::preprocessing::ot::generate_for_plan;
    let n = circuit.parties.len();
    let inputs = Arc::new(inputs);
    each_party(n, move |mesh| {
        let (circuit, inputs) = (circuit.clone(), inputs.clone());
        Box::pin(async move {
            let own = inputs(mesh.self_index());
            let mut options = ExecuteOptions::new(consent);
            options.quotients = Quotients::of(Mode::Ot);
            let job = mesh.job();
            let m = &mesh;
            let result =
                execute(m, &circuit, &own, &options, |plan| async move { generate_for_plan(m, job, &plan).await })
                    .await;
            (result, mesh)
        })
    })
    .await
}

/// Signed edge values: zero, ±1, the ends of the documented range, and
/// values around powers of two.
pub fn edges() -> Vec<i64> {
    let top = (1i64 << 62) - 1;
    let mut v = vec![0, 1, -1, 2, -2, top, -top, top - 1, -top + 1, 1 << 32, -(1 << 32), 65536, -65536];
    v.extend(sample(40, 1e12, 7).iter().map(|x| (*x * 256.0) as i64));
    v
}

/// Pairs of edge values and their neighbours: `(v, v)`, `(v, v + 1)`,
/// `(v, v − 1)` and `(v, −v)` for every edge value `v`, as two vectors of
/// `len` elements (cycling).
pub fn neighbour_pairs(len: usize) -> (Vec<i64>, Vec<i64>) {
    let top = (1i64 << 62) - 1;
    let mut pairs = Vec::new();
    for v in edges() {
        for w in [v, v.saturating_add(1).min(top), v.saturating_sub(1).max(-top), -v] {
            pairs.push((v, w));
        }
    }
    (0..len).map(|i| pairs[(i * 7) % pairs.len()]).unzip()
}
