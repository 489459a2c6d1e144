//! `MpcJob`: one computation, applied by every party.
//!
//! # Job identity
//!
//! Every party applies its own MpcJob, and the workers must see the same
//! 32-hex-digit job id at every party (they route peer connections and
//! deduplicate submissions by it). The id is:
//!
//! - `spec.jobId` when set: every party writes the same value (for example
//!   from `openssl rand -hex 16`); lets parties use different object names.
//! - otherwise [`derive_job_id`]`(federation, metadata.name)`: the first 128
//!   bits of SHA-256 over the federation and the object name. Every party
//!   then names its MpcJob identically. A name is never reused for another
//!   computation in the same federation: the workers remember finished job
//!   ids, so a re-created job with the same name and program returns the
//!   stored result, and with another program is refused.
//!
//! The operator records the id it used in `status.jobId`. The spec is
//! immutable, so the id never changes for an object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Duration, KeySelector, LocalObjectReference, OBJECT_NAME_PATTERN};

/// The longest program source accepted, in bytes.
pub const MAX_PROGRAM_BYTES: u32 = 65_536;
/// The most inputs a job may bind.
pub const MAX_INPUTS: u32 = 64;
/// A job id: 32 lowercase hexadecimal digits.
pub const JOB_ID_PATTERN: &str = "^[0-9a-f]{32}$";

/// One secure multiparty computation. Every party applies an MpcJob with the
/// same program (and job id); each binds only its own inputs. Workers run it
/// only when every party agreed on program, parties and protocol.
// kube's `printcolumn(...)` entries repeat keys such as `type_`, which
// clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, KubeSchema)]
#[kube(
    group = "cohort.dev",
    version = "v1alpha1",
    kind = "MpcJob",
    plural = "mpcjobs",
    shortname = "mpcjob",
    category = "cohort",
    namespaced,
    status = "MpcJobStatus",
    derive = "PartialEq",
    doc = "MpcJob is one secure multiparty computation. Every party applies one with the same program; each binds only its own inputs.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name",
        priority = 1,
        description = "The MpcCluster that runs the job"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Waiting, Running, Succeeded or Failed"
    ),
    printcolumn(
        name = "Rounds",
        type_ = "integer",
        json_path = ".status.rounds",
        description = "Communication rounds so far"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.reason",
        description = "Why the job is in its phase"
    ),
    printcolumn(
        name = "Job ID",
        type_ = "string",
        json_path = ".status.jobId",
        priority = 1,
        description = "The id the workers know the job by"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: create a new MpcJob to run another computation"))]
pub struct MpcJobSpec {
    /// The MpcCluster whose workers run the job.
    pub cluster_ref: LocalObjectReference,

    /// The id the workers know this job by: 32 lowercase hex digits, the same
    /// at every party, never reused. When omitted it is derived from the
    /// federation and this object's name, so every party must then give its
    /// MpcJob the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 32, max = 32), pattern(JOB_ID_PATTERN))]
    pub job_id: Option<String>,

    /// The program source, identical at every party (its SHA-256 is part of
    /// the consent check). See docs/language.md.
    #[schemars(length(min = 1, max = MAX_PROGRAM_BYTES))]
    pub program: String,

    /// This party's inputs: program input name to the Secret or ConfigMap key
    /// holding the data. Bind exactly the inputs the program declares
    /// `from` this party; the operator checks the names against the program.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = MAX_INPUTS))]
    pub inputs: BTreeMap<String, InputSource>,

    /// Where this party's outputs are stored. Which outputs a party receives
    /// is declared in the program (`output ... to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<OutputsSpec>,

    /// The PreprocessingPool to draw material from. Omitted: the cluster's
    /// dealer serves material on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<PreprocessingSpec>,

    /// Limits on connecting, each round and the whole job. Omitted values
    /// take the worker's defaults (30s, 30s, 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<JobTimeouts>,

    /// Delete the MpcJob (and its result Secret) this many seconds after it
    /// finished. Omitted: keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
}

/// Where one input's data comes from: exactly one of `secretKeyRef` and
/// `configMapKeyRef`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretKeyRef) != has(self.configMapKeyRef)").message("set exactly one of secretKeyRef and configMapKeyRef"))]
pub struct InputSource {
    /// A key of a Secret in this namespace (use this for private data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,
    /// A key of a ConfigMap in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
    /// For CSV data: the column to read (the value is then a header row and
    /// rows). Omitted: the value holds one number per line. The same formats
    /// as `cohort run` (docs/run-file.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub column: Option<String>,
}

/// Where outputs are stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputsSpec {
    /// The Secret (owned by this MpcJob) that receives the outputs this party
    /// is a recipient of, one key per output. Defaults to the job's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(OBJECT_NAME_PATTERN))]
    pub secret_name: Option<String>,
}

/// Preprocessing material for the job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreprocessingSpec {
    /// The PreprocessingPool (same namespace, same cluster) to draw from.
    pub pool_ref: LocalObjectReference,
}

/// Job time limits, as durations such as `30s` or `10m`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTimeouts {
    /// How long to wait for every peer to connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Duration>,
    /// How long one communication round may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<Duration>,
    /// How long the whole job may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Duration>,
}

/// The phase of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum JobPhase {
    /// Accepted; the operator has not acted on it yet.
    Pending,
    /// Compiled and inputs resolved; waiting for the cluster, the pool or
    /// the peers.
    Waiting,
    /// Running on the workers.
    Running,
    /// Finished; outputs are stored in the result Secret.
    Succeeded,
    /// Finished without a result; `failure` and the reason say why.
    Failed,
}

impl JobPhase {
    /// Whether the job has finished (Succeeded or Failed).
    pub fn is_finished(self) -> bool {
        matches!(self, JobPhase::Succeeded | JobPhase::Failed)
    }
}

/// The observed state of an MpcJob, written by the operator. Never contains
/// an input, share or output value.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MpcJobStatus {
    /// Pending, Waiting, Running, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,

    /// Why the job is in its phase, as a CamelCase word (for example
    /// ClusterNotReady, InputNotFound, CompileError, PeerFailed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// The id the workers know the job by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,

    /// `sha256:` and the hex SHA-256 of the program source; compare it with
    /// the other parties'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_hash: Option<String>,

    /// When the workers started the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Communication rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<i64>,

    /// Bytes this party's workers sent to peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<i64>,

    /// Where and why the job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<JobFailure>,

    /// Where the outputs are, once Succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,

    /// The worker shard the job was submitted to. Kept, so a change of
    /// `shards` while the job runs never sends it to another shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<i32>,

    /// ProgramValid, InputsResolved, Progressing, Complete, Failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Why a job failed. Never contains a secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobFailure {
    /// The party concerned, when one is (for example the peer that dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party: Option<String>,
    /// The step that failed: `compile`, `inputs`, `connect`, `setup`,
    /// `input sharing`, `layer N` or `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// What went wrong.
    pub message: String,
}

/// Where a succeeded job's outputs are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    /// The Secret holding this party's outputs, one key per output.
    pub secret_name: String,
}

/// The job id of an MpcJob without `spec.jobId`: the first 16 bytes of
/// SHA-256 over `cohort.dev/mpcjob\0<federation>\0<name>`, as 32 lowercase
/// hex digits. Every party computes the same id from the same federation
/// and object name.
pub fn derive_job_id(federation: &str, name: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"cohort.dev/mpcjob\0");
    ctx.update(federation.as_bytes());
    ctx.update(b"\0");
    ctx.update(name.as_bytes());
    let digest = ctx.finish();
    digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl MpcJob {
    /// The job id the workers know this job by: `spec.jobId`, or
    /// [`derive_job_id`] from the federation and `metadata.name`.
    /// `None` when neither an id nor a name is set.
    pub fn job_id(&self, federation: &str) -> Option<String> {
        if let Some(id) = &self.spec.job_id {
            return Some(id.clone());
        }
        self.metadata.name.as_deref().map(|name| derive_job_id(federation, name))
    }
}

/// The program hash as reported in `status.programHash`: `sha256:` and the
/// hex SHA-256 of the source (the worker's format).
pub fn program_hash(program: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, program.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_job_ids_are_stable_distinct_and_well_formed() {
        let a = derive_job_id("consortium", "salary-stats");
        assert_eq!(a, derive_job_id("consortium", "salary-stats"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_ne!(a, derive_job_id("consortium", "salary-stats-2"));
        assert_ne!(a, derive_job_id("other", "salary-stats"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(derive_job_id("ab", "c"), derive_job_id("a", "bc"));
    }

    #[test]
    fn an_explicit_job_id_wins() {
        let mut job = MpcJob::new(
            "salary-stats",
            MpcJobSpec {
                cluster_ref: LocalObjectReference::new("consortium"),
                job_id: None,
                program: "input x: int from bank-a\noutput y = x to all\n".into(),
                inputs: BTreeMap::new(),
                outputs: None,
                preprocessing: None,
                timeouts: None,
                ttl_seconds_after_finished: None,
            },
        );
        assert_eq!(job.job_id("consortium"), Some(derive_job_id("consortium", "salary-stats")));
        job.spec.job_id = Some("0123456789abcdef0123456789abcdef".into());
        assert_eq!(job.job_id("consortium").as_deref(), Some("0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn program_hash_has_the_worker_format() {
        let h = program_hash("");
        assert_eq!(h, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
