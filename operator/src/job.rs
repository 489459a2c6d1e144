//! The pure half of the MpcJob reconciler: which inputs a job must bind,
//! parsing their data, the preprocessing mode it is dispatched with, the
//! result Secret, and the status a worker's job status maps to. No Kubernetes client here; the controller
//! (`crate::controller::job`) does the reading and writing.

use std::collections::{BTreeMap, BTreeSet};

use cohort_crds::MpcJob;
use cohort_crds::cluster::ProtocolName;
use cohort_crds::conditions::{ConditionStatus, set_condition, types};
use cohort_crds::job::{InputSource, JobFailure, JobPhase, JobResult, MpcJobStatus};
use cohort_crds::pool::GeneratorMode;
use cohort_worker::data::{self, DataError, DataErrorKind, DataFormat};
use cohort_worker::preprocessing::Mode;
use cohort_worker::program::ir::{Circuit, InputShape};
use cohort_worker::service::api::{InputValue, JobStatus, JobTimeouts, Phase, STEP_WAITING_FOR_PREPROCESSING};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

/// The finalizer that cancels a running job on the workers when its MpcJob
/// is deleted.
pub const FINALIZER: &str = "cohort.dev/cancel-on-delete";
/// Label on result Secrets naming their MpcJob.
pub const LABEL_JOB: &str = "cohort.dev/job";

/// Why a job cannot run as specified. Permanent: the spec is immutable, so
/// the job fails with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BindingError {
    #[error("the program declares input {input} from {party}, but spec.inputs does not bind it")]
    Unbound { input: String, party: String },
    #[error("spec.inputs.{input}: the program declares no input {input} from {party}")]
    Unexpected { input: String, party: String },
}

/// Check that `bound` (the names in `spec.inputs`) are exactly the inputs
/// the program takes from `party` (index `index`).
pub fn check_bindings(
    circuit: &Circuit,
    party: &str,
    index: usize,
    bound: &BTreeSet<&str>,
) -> Result<(), BindingError> {
    let declared: BTreeSet<&str> =
        circuit.inputs.iter().filter(|i| i.is_owned_by(index)).map(|i| i.name.as_str()).collect();
    if let Some(missing) = declared.difference(bound).next() {
        return Err(BindingError::Unbound { input: missing.to_string(), party: party.into() });
    }
    if let Some(extra) = bound.difference(&declared).next() {
        return Err(BindingError::Unexpected { input: extra.to_string(), party: party.into() });
    }
    Ok(())
}

/// Where an input's data is, for messages: `Secret ns/name, key k`.
pub fn origin(namespace: &str, source: &InputSource) -> String {
    match (&source.secret_key_ref, &source.config_map_key_ref) {
        (Some(s), _) => format!("Secret {namespace}/{}, key {}", s.name, s.key),
        (None, Some(c)) => format!("ConfigMap {namespace}/{}, key {}", c.name, c.key),
        (None, None) => "an input with neither secretKeyRef nor configMapKeyRef".into(),
    }
}

/// Parse input `name`'s data (the bytes of its Secret or ConfigMap key) as
/// the program declares it. Errors name the origin, line and field, never
/// a value.
pub fn parse_input(
    circuit: &Circuit,
    name: &str,
    origin: &str,
    source: &InputSource,
    bytes: &[u8],
) -> Result<Vec<InputValue>, DataError> {
    let decl = circuit.inputs.iter().find(|i| i.name == name);
    let (elem, shape) = match decl {
        Some(d) => (d.elem, d.shape),
        // check_bindings ran first; stay total anyway.
        None => (cohort_worker::program::ir::ElemType::Int, InputShape::Vector),
    };
    let format = match &source.column {
        Some(c) => DataFormat::Csv { column: c.clone() },
        None => DataFormat::Lines,
    };
    let key = source.secret_key_ref.as_ref().or(source.config_map_key_ref.as_ref()).map(|k| k.key.as_str());
    let csv_like = key.is_some_and(|k| k.to_ascii_lowercase().ends_with(".csv"));
    let values = data::parse_values(origin, bytes, &format, elem, circuit.frac_bits, csv_like)?;
    if shape == InputShape::Scalar && values.len() != 1 {
        return Err(DataError {
            origin: origin.into(),
            line: None,
            field: None,
            kind: DataErrorKind::ScalarCount(values.len()),
        });
    }
    Ok(values.to_json())
}

/// The preprocessing mode the workers are told for a job of a cluster
/// running `protocol`, whose `spec.preprocessing` names a pool of generator
/// mode `pool` (`None`: it names none): nothing for a protocol without
/// material, `pool` for an `ot` pool (the material is in the workers' own
/// pools), the cluster's dealer otherwise. A resubmission must send what
/// the first submission sent: the mode is bound into the job's consent
/// digest, so the worker that holds the job refuses another mode (409) and
/// peers that hold it disagree at setup.
pub fn preprocessing_mode(protocol: ProtocolName, pool: Option<GeneratorMode>) -> Option<Mode> {
    if !protocol.uses_preprocessing() {
        return None;
    }
    Some(match pool {
        Some(GeneratorMode::Ot) => Mode::Pool,
        Some(GeneratorMode::Dealer) | None => Mode::Dealer,
    })
}

/// The worker's time limits from `spec.timeouts`. Errors name the field.
pub fn timeouts(job: &MpcJob) -> Result<JobTimeouts, String> {
    let Some(t) = &job.spec.timeouts else { return Ok(JobTimeouts::default()) };
    let secs = |field: &str, d: &Option<cohort_crds::common::Duration>| -> Result<Option<f64>, String> {
        d.as_ref()
            .map(|d| d.to_std().map(|s| s.as_secs_f64()).map_err(|r| format!("spec.timeouts.{field}: {r}")))
            .transpose()
    };
    Ok(JobTimeouts {
        connect_seconds: secs("connect", &t.connect)?,
        round_seconds: secs("round", &t.round)?,
        total_seconds: secs("total", &t.total)?,
    })
}

/// The name of the job's result Secret.
pub fn result_secret_name(job: &MpcJob) -> String {
    job.spec
        .outputs
        .as_ref()
        .and_then(|o| o.secret_name.clone())
        .unwrap_or_else(|| job.metadata.name.clone().unwrap_or_default())
}

/// The result Secret: one key per output this party receives, each the
/// JSON of its value (a number, or an array for vectors). Owned by the
/// MpcJob, so deleting the job deletes it.
pub fn result_secret(job: &MpcJob, status: &JobStatus) -> Secret {
    let name = job.metadata.name.clone().unwrap_or_default();
    let data: BTreeMap<String, ByteString> = status
        .outputs
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), ByteString(serde_json::to_vec(v).unwrap_or_default())))
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(result_secret_name(job)),
            namespace: job.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/managed-by".to_string(), crate::cluster::desired::MANAGED_BY.to_string()),
                (LABEL_JOB.to_string(), truncate_label(&name)),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: format!("{}/{}", cohort_crds::GROUP, cohort_crds::VERSION),
                kind: "MpcJob".into(),
                name,
                uid: job.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

fn truncate_label(name: &str) -> String {
    cohort_crds::common::truncate(name, 63).trim_end_matches(['-', '.', '_']).to_string()
}

/// A status in `phase` with `reason`; the job's `Progressing` condition
/// follows (True while Pending, Waiting or Running).
pub fn set_phase(
    status: &mut MpcJobStatus,
    phase: JobPhase,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    status.phase = Some(phase);
    status.reason = Some(reason.to_string());
    status.observed_generation = generation;
    let c = &mut status.conditions;
    let progressing = ConditionStatus::from(!phase.is_finished());
    set_condition(c, types::PROGRESSING, progressing, reason, message, generation, now);
    match phase {
        JobPhase::Succeeded => {
            set_condition(c, types::COMPLETE, ConditionStatus::True, reason, message, generation, now);
            set_condition(c, types::FAILED, ConditionStatus::False, reason, "", generation, now);
        }
        JobPhase::Failed => {
            set_condition(c, types::COMPLETE, ConditionStatus::False, reason, "", generation, now);
            set_condition(c, types::FAILED, ConditionStatus::True, reason, message, generation, now);
        }
        _ => {}
    }
}

/// Fail the job at `step` (`compile`, `inputs`, or a protocol step).
pub fn fail(status: &mut MpcJobStatus, reason: &str, failure: JobFailure, generation: Option<i64>, now: &Time) {
    let message = failure.message.clone();
    status.failure = Some(failure);
    if status.completion_time.is_none() {
        status.completion_time = Some(now.clone());
    }
    set_phase(status, JobPhase::Failed, reason, &message, generation, now);
}

/// Fold the worker's view of the job into the status. `stored` says the
/// result Secret was written (required before `Succeeded`). Returns the
/// new phase.
pub fn observe_worker(
    status: &mut MpcJobStatus,
    worker: &JobStatus,
    party: &str,
    secret_name: &str,
    stored: bool,
    generation: Option<i64>,
    now: &Time,
) -> JobPhase {
    if let Some(stats) = &worker.stats {
        status.rounds = Some(i64::from(stats.rounds));
        status.bytes_sent = i64::try_from(stats.bytes_sent).ok();
    }
    if status.start_time.is_none() {
        status.start_time = Some(now.clone());
    }
    match worker.phase {
        Phase::Pending => {
            set_phase(
                status,
                JobPhase::Running,
                "Connecting",
                "the workers are connecting to every party",
                generation,
                now,
            );
            JobPhase::Running
        }
        Phase::Running => {
            let step = worker.step.as_deref().unwrap_or("running");
            // A pool job waiting for material says so in its reason.
            let reason =
                if step.starts_with(STEP_WAITING_FOR_PREPROCESSING) { "WaitingForPreprocessing" } else { "Running" };
            set_phase(status, JobPhase::Running, reason, &format!("step: {step}"), generation, now);
            JobPhase::Running
        }
        Phase::Succeeded if stored => {
            status.completion_time.get_or_insert_with(|| now.clone());
            status.result = Some(JobResult { secret_name: secret_name.to_string() });
            status.failure = None;
            let received = worker.outputs.as_ref().map_or(0, BTreeMap::len);
            let message = format!("{received} output(s) for {party} stored in Secret {secret_name}");
            set_phase(status, JobPhase::Succeeded, "Succeeded", &message, generation, now);
            JobPhase::Succeeded
        }
        Phase::Succeeded => {
            set_phase(status, JobPhase::Running, "StoringResult", "writing the result Secret", generation, now);
            JobPhase::Running
        }
        Phase::Failed | Phase::Cancelled => {
            let f = worker.failure.clone();
            let (reason, failure) = match (&f, worker.phase) {
                (_, Phase::Cancelled) => (
                    "Cancelled",
                    JobFailure {
                        party: Some(party.into()),
                        step: None,
                        message: "cancelled on this party's workers".into(),
                    },
                ),
                (Some(f), _) => (
                    if f.party.as_deref().is_some_and(|p| p != party) { "PeerFailed" } else { "Failed" },
                    JobFailure { party: f.party.clone(), step: f.step.clone(), message: f.message.clone() },
                ),
                (None, _) => (
                    "Failed",
                    JobFailure {
                        party: None,
                        step: None,
                        message: "the worker reported a failure without details".into(),
                    },
                ),
            };
            fail(status, reason, failure, generation, now);
            JobPhase::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_crds::common::KeySelector;
    use cohort_worker::service::api::{Failure, OutputValue, Stats};

    fn circuit() -> Circuit {
        let parties = vec!["bank-a".to_string(), "bank-b".to_string()];
        cohort_worker::program::compile(
            "input x: int[] from bank-a\ninput t: fixed from bank-b\ninput y: int[] from each\noutput s = sum(x) to all\n",
            &parties,
        )
        .expect("compiles")
    }

    fn secret_source(key: &str, column: Option<&str>) -> InputSource {
        InputSource {
            secret_key_ref: Some(KeySelector { name: "data".into(), key: key.into() }),
            config_map_key_ref: None,
            column: column.map(str::to_string),
        }
    }

    #[test]
    fn the_preprocessing_mode_follows_the_protocol_and_the_pools_generator() {
        use ProtocolName::{AdditiveSemiHonest, Replicated3};
        assert_eq!(preprocessing_mode(AdditiveSemiHonest, None), Some(Mode::Dealer));
        assert_eq!(preprocessing_mode(AdditiveSemiHonest, Some(GeneratorMode::Dealer)), Some(Mode::Dealer));
        assert_eq!(preprocessing_mode(AdditiveSemiHonest, Some(GeneratorMode::Ot)), Some(Mode::Pool));
        for pool in [None, Some(GeneratorMode::Dealer), Some(GeneratorMode::Ot)] {
            assert_eq!(preprocessing_mode(Replicated3, pool), None, "{pool:?}");
        }
    }

    #[test]
    fn bindings_must_match_the_program_exactly() {
        let c = circuit();
        assert_eq!(check_bindings(&c, "bank-a", 0, &BTreeSet::from(["x", "y"])), Ok(()));
        assert_eq!(check_bindings(&c, "bank-b", 1, &BTreeSet::from(["t", "y"])), Ok(()));
        assert_eq!(
            check_bindings(&c, "bank-a", 0, &BTreeSet::from(["x"])),
            Err(BindingError::Unbound { input: "y".into(), party: "bank-a".into() })
        );
        assert_eq!(
            check_bindings(&c, "bank-a", 0, &BTreeSet::from(["x", "y", "t"])),
            Err(BindingError::Unexpected { input: "t".into(), party: "bank-a".into() })
        );
    }

    #[test]
    fn inputs_parse_like_cohort_run_and_errors_never_echo_values() {
        let c = circuit();
        let src = secret_source("x.csv", Some("amount"));
        let origin = origin("ns", &src);
        assert_eq!(origin, "Secret ns/data, key x.csv");
        let got = parse_input(&c, "x", &origin, &src, b"id,amount\n1,10\n2,-7\n").expect("parses");
        assert_eq!(got, vec![InputValue::from(10), InputValue::from(-7)]);
        let lines = secret_source("x", None);
        let got = parse_input(&c, "x", "o", &lines, b"# comment\n5\n\n6\n").expect("parses");
        assert_eq!(got.len(), 2);
        let err = parse_input(&c, "x", &origin, &src, b"id,amount\n1,987654x\n").expect_err("not a number");
        let shown = err.to_string();
        assert!(shown.starts_with("Secret ns/data, key x.csv:2: column \"amount\""), "{shown}");
        assert!(!shown.contains("987654"), "{shown}");
        // A bool input (declared by hand: the language may not parse `bool`
        // yet) takes true/false or 1/0 and becomes JSON booleans.
        let mut c = c;
        c.inputs.push(cohort_worker::program::ir::InputDecl {
            name: "f".into(),
            elem: cohort_worker::program::ir::ElemType::Bool,
            shape: InputShape::Vector,
            owners: cohort_worker::program::ir::Owners::Party(0),
            span: Default::default(),
        });
        let got = parse_input(&c, "f", "o", &lines, b"true\nFALSE\n1\n").expect("parses");
        assert_eq!(got, vec![InputValue::from(true), false.into(), true.into()]);
        let err = parse_input(&c, "f", "o", &lines, b"true\nyes-secret\n").expect_err("not a bool");
        assert_eq!(err.to_string(), "o:2: value: not a bool (write true or false, or 1 or 0)");
        let err = parse_input(&c, "t", "o", &lines, b"1.5\n2.5\n").expect_err("scalar needs one value");
        assert!(err.to_string().contains("exactly one value"), "{err}");
        assert!(parse_input(&c, "t", "o", &lines, b"1.5\n").is_ok());
    }

    fn job() -> MpcJob {
        let mut job: MpcJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "cohort.dev/v1alpha1", "kind": "MpcJob",
            "metadata": {"name": "stats", "namespace": "ns", "uid": "u-1"},
            "spec": {"clusterRef": {"name": "c"}, "program": "p", "timeouts": {"round": "45s", "total": "1h"}}
        }))
        .expect("a job");
        job.status = None;
        job
    }

    fn worker(phase: Phase) -> JobStatus {
        JobStatus {
            id: "0".repeat(32),
            phase,
            program_hash: String::new(),
            step: Some("layer 2".into()),
            failure: None,
            stats: Some(Stats { rounds: 6, bytes_sent: 1234, ..Stats::default() }),
            outputs: Some(BTreeMap::from([
                ("mean".to_string(), OutputValue::Scalar(serde_json::Number::from_f64(1.5).expect("finite"))),
                ("v".to_string(), OutputValue::Vector(vec![9007199254740993i64.into(), (-2).into()])),
                ("flagged".to_string(), OutputValue::Bool(true)),
                ("flags".to_string(), OutputValue::Bools(vec![false, true])),
            ])),
        }
    }

    #[test]
    fn timeouts_and_result_secret() {
        let j = job();
        let t = timeouts(&j).expect("valid");
        assert_eq!((t.connect_seconds, t.round_seconds, t.total_seconds), (None, Some(45.0), Some(3600.0)));
        let s = result_secret(&j, &worker(Phase::Succeeded));
        assert_eq!(s.metadata.name.as_deref(), Some("stats"));
        let owner = &s.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("MpcJob", "u-1", Some(true)));
        let data = s.data.expect("data");
        assert_eq!(data["mean"].0, b"1.5");
        // An int output stays exact in the Secret (above 2^53).
        assert_eq!(data["v"].0, b"[9007199254740993,-2]");
        // Bool outputs are JSON booleans.
        assert_eq!(data["flagged"].0, b"true");
        assert_eq!(data["flags"].0, b"[false,true]");
    }

    #[test]
    fn worker_status_maps_to_job_status_and_success_waits_for_the_stored_result() {
        let now = Time(jiff::Timestamp::UNIX_EPOCH);
        let mut s = MpcJobStatus::default();
        assert_eq!(
            observe_worker(&mut s, &worker(Phase::Running), "bank-a", "stats", false, Some(1), &now),
            JobPhase::Running
        );
        assert_eq!((s.rounds, s.bytes_sent), (Some(6), Some(1234)));
        assert_eq!(s.reason.as_deref(), Some("Running"));
        let mut waiting = worker(Phase::Running);
        waiting.step = Some("waiting for preprocessing: the pool holds 90 of the 120 triples needed".into());
        observe_worker(&mut s, &waiting, "bank-a", "stats", false, Some(1), &now);
        assert_eq!(s.reason.as_deref(), Some("WaitingForPreprocessing"));
        let progressing = cohort_crds::conditions::find_condition(&s.conditions, types::PROGRESSING).expect("p");
        assert!(progressing.message.contains("holds 90 of the 120 triples"), "{}", progressing.message);
        assert_eq!(
            observe_worker(&mut s, &worker(Phase::Succeeded), "bank-a", "stats", false, Some(1), &now),
            JobPhase::Running
        );
        assert_eq!(s.reason.as_deref(), Some("StoringResult"));
        assert_eq!(
            observe_worker(&mut s, &worker(Phase::Succeeded), "bank-a", "stats", true, Some(1), &now),
            JobPhase::Succeeded
        );
        assert_eq!(s.result.as_ref().map(|r| r.secret_name.as_str()), Some("stats"));
        assert!(cohort_crds::conditions::is_condition_true(&s.conditions, types::COMPLETE));
        assert!(!cohort_crds::conditions::is_condition_true(&s.conditions, types::PROGRESSING));

        let mut s = MpcJobStatus::default();
        let mut failed = worker(Phase::Failed);
        failed.failure = Some(Failure {
            party: Some("bank-b".into()),
            step: Some("layer 2".into()),
            message: "bank-b, layer 2: peer closed the connection".into(),
            retryable: false,
        });
        assert_eq!(observe_worker(&mut s, &failed, "bank-a", "stats", false, None, &now), JobPhase::Failed);
        assert_eq!(s.reason.as_deref(), Some("PeerFailed"));
        let f = s.failure.expect("failure");
        assert_eq!((f.party.as_deref(), f.step.as_deref()), (Some("bank-b"), Some("layer 2")));
    }
}
