//! One test suite, every protocol: the backends the conformance, sorting,
//! statistics and fixed-point suites run under, and the check of a job's
//! outputs at every party against `program::plain`.

use cohort_worker::executor::{JobError, JobOutput, OwnInputs};
use cohort_worker::local::LocalFederation;
use cohort_worker::preprocessing::Mode;
use cohort_worker::program::{compile, plain};
use cohort_worker::protocol::ProtocolName;
use std::sync::Arc;

/// A protocol with its source of material.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Additive sharing with a trusted dealer.
    AdditiveDealer,
    /// Additive sharing with material the parties generate with OT in the
    /// job (generated division pairs: the correction round).
    AdditiveOt,
    /// Replicated sharing (three parties).
    Replicated,
}

/// Every protocol, and every material source of a protocol that takes
/// material.
pub const BACKENDS: [Backend; 3] = [Backend::AdditiveDealer, Backend::AdditiveOt, Backend::Replicated];

impl Backend {
    pub fn protocol(self) -> ProtocolName {
        match self {
            Backend::AdditiveDealer | Backend::AdditiveOt => ProtocolName::AdditiveSemiHonest,
            Backend::Replicated => ProtocolName::Replicated3,
        }
    }
}

/// Run `source` among `parties` with ring-encoded inputs (`inputs[p]`:
/// party `p`'s name/value pairs) and check every output at every
/// recipient against `program::plain`, exactly. Returns the outputs.
pub async fn check(
    backend: Backend,
    parties: usize,
    source: &str,
    inputs: Vec<Vec<(&str, Vec<u64>)>>,
) -> Vec<JobOutput> {
    check_within(backend, parties, source, inputs, |_| 0).await
}

/// As [`check`], allowing output `name` to differ from plain by
/// `tolerance(name)` ring units per element (divisions and truncations
/// are exact to within one unit).
pub async fn check_within(
    backend: Backend,
    parties: usize,
    source: &str,
    inputs: Vec<Vec<(&str, Vec<u64>)>>,
    tolerance: impl Fn(&str) -> i64,
) -> Vec<JobOutput> {
    let run = run(backend, parties, source, inputs).await;
    let want = run.plain.unwrap_or_else(|e| panic!("plain evaluates: {e}"));
    let (circuit, results) = (run.circuit, run.results);
    let mut outs = Vec::new();
    for (party, result) in results.into_iter().enumerate() {
        let out = result.unwrap_or_else(|e| panic!("{backend:?}: party {party} failed: {e}"));
        for (decl, want) in circuit.outputs.iter().zip(&want) {
            let got = out.outputs.iter().find(|o| o.name == decl.name).expect("output");
            if decl.recipients.contains(&party) {
                let got = got.value.as_ref().expect("a recipient gets the value").expose().to_vec();
                let allowed = tolerance(&decl.name);
                if allowed == 0 {
                    assert_eq!(&got, want, "{backend:?}: output `{}` at party {party}", decl.name);
                }
                assert_eq!(got.len(), want.len(), "{backend:?}: output `{}` length", decl.name);
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    let diff = cohort_worker::ring::to_signed(g.wrapping_sub(*w));
                    assert!(diff.abs() <= allowed, "{backend:?}: `{}`[{i}] at party {party} off by {diff}", decl.name);
                }
            } else {
                assert!(got.value.is_none());
            }
        }
        outs.push(out);
    }
    outs
}

/// A job run under a backend, with the plaintext evaluation of the same
/// inputs.
pub struct Run {
    pub circuit: Arc<cohort_worker::program::ir::Circuit>,
    pub plain: Result<Vec<Vec<u64>>, plain::EvalError>,
    pub results: Vec<Result<JobOutput, JobError>>,
}

/// Run `source` among `parties` with ring-encoded inputs (`inputs[p]`:
/// party `p`'s name/value pairs) under `backend`, and evaluate it in
/// plaintext; nothing is checked.
pub async fn run(backend: Backend, parties: usize, source: &str, inputs: Vec<Vec<(&str, Vec<u64>)>>) -> Run {
    let federation =
        LocalFederation::with_parties(parties).await.expect("local federation").with_protocol(backend.protocol());
    let circuit = compile(source, &federation.names).expect("compiles");
    let mut plain_inputs = plain::PlainInputs::new();
    let mut own = Vec::new();
    for (party, mine) in inputs.iter().enumerate() {
        let mut o = cohort_worker::executor::OwnInputs::new();
        for (name, values) in mine {
            let index = circuit.inputs.iter().position(|i| i.name == *name).expect("declared input");
            plain_inputs.insert(index, party, values.clone());
            o.insert_encoded(&circuit, name, cohort_worker::sharing::Secret::new(values.clone())).unwrap();
        }
        own.push(o);
    }
    let plain = plain::evaluate(&circuit, &plain_inputs);
    let circuit = Arc::new(circuit);
    let results = if backend == Backend::AdditiveOt {
        let consent = cohort_worker::local::consent_digest_for(source, &circuit.parties, Mode::Ot);
        let own: Vec<std::sync::Mutex<Option<OwnInputs>>> =
            own.into_iter().map(|o| std::sync::Mutex::new(Some(o))).collect();
        super::run_circuit_ot(circuit.clone(), consent, move |me| {
            own[me].lock().expect("not poisoned").take().expect("each party's inputs are taken once")
        })
        .await
    } else {
        federation.run(circuit.clone(), federation.consent(source), own).await.expect("meshes")
    };
    Run { circuit, plain, results }
}
