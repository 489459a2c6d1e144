//! The control API's messages (JSON over HTTP/1.1 over mutual TLS).
//!
//! | method and path          | body → reply                              |
//! |--------------------------|-------------------------------------------|
//! | `POST /v1/jobs`          | [`JobRequest`] → [`JobStatus`] (201; 200 when the same job was already submitted; 409 when another job has that id) |
//! | `GET /v1/jobs/{id}`      | → [`JobStatus`] (404 when unknown)        |
//! | `DELETE /v1/jobs/{id}`   | → [`JobStatus`]: cancels a running job    |
//! | `GET /v1/health`         | → [`Health`]                              |
//! | `POST /v1/drain`         | → [`Health`]: refuse new jobs from now on |
//!
//! Errors are [`ApiError`] bodies with a 4xx/5xx status. A [`JobRequest`]
//! carries this party's inputs, so its `Debug` prints only their sizes; a
//! [`JobStatus`] carries outputs only for a job that succeeded and only the
//! outputs this party receives, and goes only to the controller.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A job as the controller submits it to one party's worker. Every party's
/// controller submits the same id, program, party list and protocol; only
/// the inputs differ.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobRequest {
    /// The job id: 32 hex digits, the same at every party, never reused.
    pub id: String,
    /// The program source.
    pub program: String,
    /// The job's parties in order (each must be in the worker's
    /// federation); this worker's party must be one of them.
    pub parties: Vec<String>,
    /// This party's inputs by input name. Integers for `int` inputs (kept
    /// exact up to 2^62), reals for `fixed` ones, `true`/`false` for `bool`
    /// ones. Secret.
    #[serde(default)]
    pub inputs: BTreeMap<String, Vec<InputValue>>,
    /// Time limits; the worker's defaults where absent.
    #[serde(default)]
    pub timeouts: JobTimeouts,
    /// Where the material comes from: `dealer` (the default: the worker's
    /// configured trusted dealer), `ot` (the parties generate it with
    /// oblivious transfer, no third party) or `pool`. Every party must be
    /// given the same mode. A protocol without material (`replicated-3`)
    /// refuses a job that names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<crate::preprocessing::Mode>,
}

impl fmt::Debug for JobRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: BTreeMap<&str, usize> = self.inputs.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        f.debug_struct("JobRequest")
            .field("id", &self.id)
            .field("parties", &self.parties)
            .field("program_bytes", &self.program.len())
            .field("input_lengths", &sizes)
            .field("timeouts", &self.timeouts)
            .field("preprocessing", &self.preprocessing)
            .finish()
    }
}

/// One element of an input: a JSON number (`int` and `fixed` inputs) or a
/// JSON boolean (`bool` inputs). The worker refuses an element of the wrong
/// kind for its input's type, naming the input and the element's index.
/// Secret: `Debug` does not show it.
#[derive(Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum InputValue {
    Number(serde_json::Number),
    Bool(bool),
}

/// By hand rather than `untagged`: an untagged enum buffers every element
/// before trying each variant, and a request may carry 2^27 of them.
impl<'de> Deserialize<'de> for InputValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<InputValue, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = InputValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a boolean")
            }
            fn visit_bool<E>(self, b: bool) -> Result<InputValue, E> {
                Ok(InputValue::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<InputValue, E> {
                Ok(InputValue::Number(n.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<InputValue, E> {
                Ok(InputValue::Number(n.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<InputValue, E> {
                serde_json::Number::from_f64(x).map(InputValue::Number).ok_or_else(|| E::custom("not a finite number"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl From<serde_json::Number> for InputValue {
    fn from(n: serde_json::Number) -> InputValue {
        InputValue::Number(n)
    }
}

impl From<i64> for InputValue {
    fn from(n: i64) -> InputValue {
        InputValue::Number(n.into())
    }
}

impl From<bool> for InputValue {
    fn from(b: bool) -> InputValue {
        InputValue::Bool(b)
    }
}

impl fmt::Debug for InputValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InputValue([redacted])")
    }
}

/// Time limits of a job, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobTimeouts {
    /// Establishing the connections to every peer.
    pub connect_seconds: Option<f64>,
    /// Waiting for any one message.
    pub round_seconds: Option<f64>,
    /// The whole job, from submission.
    pub total_seconds: Option<f64>,
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Accepted; connecting to the peers.
    Pending,
    /// Connected; the protocol is running.
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Phase {
    /// Whether the job has finished (successfully or not).
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    }
}

/// Why a job failed: which party and step, and what happened. Never a
/// secret value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The party the failure concerns, when one does (a peer that
    /// disconnected, disagreed or sent garbage).
    pub party: Option<String>,
    /// The protocol step (e.g. `handshake`, `setup`, `layer 2`).
    pub step: Option<String>,
    /// The whole message.
    pub message: String,
    /// The job never started because a party had no free slot
    /// (`limits.maxJobs`): nothing was computed, and its id is not used
    /// up. A controller resubmits the same request (see `docs/worker.md`,
    /// "Admission and retries").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
}

impl JobStatus {
    /// Whether the job failed only for lack of a slot at some party and
    /// may be resubmitted under the same id.
    pub fn is_retryable(&self) -> bool {
        self.phase == Phase::Failed && self.failure.as_ref().is_some_and(|f| f.retryable)
    }
}

/// The public cost of a job at this party.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub rounds: u32,
    pub layers: u32,
    pub bytes_sent: u64,
    pub triples_used: u64,
    pub div_pairs_used: u64,
    pub protocol_version: u32,
    /// From submission to the end of the job.
    pub wall_seconds: f64,
    /// The pool batches the job used (`preprocessing: pool`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<String>,
}

/// One output this party received: a number or a boolean, or a list of
/// them for vectors. `int` outputs are JSON integers, exact over the whole
/// range; `fixed` outputs are the value of their grid point `k / 2^f` as
/// the shortest decimal that reads back to it, exact whenever `|k| < 2^53`
/// (every value below `2^(53-f)` in magnitude), the nearest double beyond;
/// `bool` outputs are JSON `true`/`false`. An empty vector reads back as
/// `Vector([])` whatever its type.
#[derive(Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OutputValue {
    Scalar(serde_json::Number),
    Vector(Vec<serde_json::Number>),
    Bool(bool),
    Bools(Vec<bool>),
}

/// By hand rather than `untagged` (which buffers a whole vector before
/// trying each variant): a list's first element decides its kind, and a
/// list mixing numbers and booleans is refused.
impl<'de> Deserialize<'de> for OutputValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<OutputValue, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OutputValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, a boolean, or a list of numbers or of booleans")
            }
            fn visit_bool<E>(self, b: bool) -> Result<OutputValue, E> {
                Ok(OutputValue::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<OutputValue, E> {
                Ok(OutputValue::Scalar(n.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<OutputValue, E> {
                Ok(OutputValue::Scalar(n.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<OutputValue, E> {
                serde_json::Number::from_f64(x).map(OutputValue::Scalar).ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<OutputValue, A::Error> {
                let capacity = seq.size_hint().unwrap_or(0).min(1 << 20);
                match seq.next_element::<InputValue>()? {
                    None => Ok(OutputValue::Vector(Vec::new())),
                    Some(InputValue::Bool(first)) => {
                        let mut v = Vec::with_capacity(capacity);
                        v.push(first);
                        while let Some(b) = seq.next_element::<bool>()? {
                            v.push(b);
                        }
                        Ok(OutputValue::Bools(v))
                    }
                    Some(InputValue::Number(first)) => {
                        let mut v = Vec::with_capacity(capacity);
                        v.push(first);
                        while let Some(n) = seq.next_element::<serde_json::Number>()? {
                            v.push(n);
                        }
                        Ok(OutputValue::Vector(v))
                    }
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl OutputValue {
    /// The scalar's value as an `f64` (`None` for a vector or a bool).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            OutputValue::Scalar(x) => x.as_f64(),
            _ => None,
        }
    }

    /// The scalar bool's value (`None` for anything else).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            OutputValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value's elements as `f64`s (one for a scalar; a bool is 0 or 1).
    pub fn to_f64s(&self) -> Vec<f64> {
        let all = match self {
            OutputValue::Scalar(x) => std::slice::from_ref(x),
            OutputValue::Vector(v) => v.as_slice(),
            OutputValue::Bool(b) => return vec![f64::from(u8::from(*b))],
            OutputValue::Bools(v) => return v.iter().map(|b| f64::from(u8::from(*b))).collect(),
        };
        all.iter().filter_map(serde_json::Number::as_f64).collect()
    }

    /// The elements as JSON text, in order (one for a scalar): what
    /// `cohort run` prints.
    pub fn elements(&self) -> Vec<String> {
        match self {
            OutputValue::Scalar(x) => vec![x.to_string()],
            OutputValue::Vector(v) => v.iter().map(ToString::to_string).collect(),
            OutputValue::Bool(b) => vec![b.to_string()],
            OutputValue::Bools(v) => v.iter().map(ToString::to_string).collect(),
        }
    }

    /// Whether the value is a vector (otherwise one element).
    pub fn is_vector(&self) -> bool {
        matches!(self, OutputValue::Vector(_) | OutputValue::Bools(_))
    }
}

impl fmt::Debug for OutputValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputValue::Scalar(_) => f.write_str("Scalar([redacted])"),
            OutputValue::Vector(v) => write!(f, "Vector([{} redacted])", v.len()),
            OutputValue::Bool(_) => f.write_str("Bool([redacted])"),
            OutputValue::Bools(v) => write!(f, "Bools([{} redacted])", v.len()),
        }
    }
}

/// How a running job's `step` starts while it waits for the pool
/// (`preprocessing: pool` and too little material at every party).
pub const STEP_WAITING_FOR_PREPROCESSING: &str = "waiting for preprocessing";

/// A job's state as the worker reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    pub id: String,
    pub phase: Phase,
    /// SHA-256 of the program source, hex.
    pub program_hash: String,
    /// The step running now (while `Running`).
    pub step: Option<String>,
    pub failure: Option<Failure>,
    pub stats: Option<Stats>,
    /// The outputs this party receives (only once `Succeeded`).
    pub outputs: Option<BTreeMap<String, OutputValue>>,
}

/// The worker's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub party: String,
    pub federation: String,
    /// `ok`, or `draining` once drain was requested.
    pub status: String,
    pub draining: bool,
    /// Jobs not yet finished.
    pub active_jobs: usize,
    pub protocol: String,
    pub min_version: u32,
    pub max_version: u32,
    /// Seconds until this worker's certificate expires (negative once expired).
    pub certificate_expires_in_seconds: f64,
    /// What the last probe of each peer found (empty until the first).
    #[serde(default)]
    pub peers: Vec<PeerHealth>,
}

/// The last probe of one peer's worker (see `docs/worker.md`, "Peer
/// probes").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerHealth {
    pub party: String,
    /// It accepted a mutually authenticated connection and answered.
    pub up: bool,
    /// TCP connect, TLS handshake and hello, in seconds (when up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_seconds: Option<f64>,
    /// The versions it offers (when up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<u32>,
    /// Why it is down: the error a job would see (never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An error reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// Describe a JSON decoding error without quoting the document: serde_json's
/// own message can quote the offending value, and a request carries inputs.
pub(crate) fn redacted_json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "i/o",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "data (a missing, unknown or mistyped field)",
        serde_json::error::Category::Eof => "unexpected end",
    };
    format!("{kind} error at line {}, column {}", e.line(), e.column())
}

/// What a pool batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MaterialKind {
    Triples,
    DivPairs,
    /// Bit triples; a fill's `perBatch` and a pool's counts are in words of
    /// 64 triples.
    BitTriples,
    EdaBits,
    DaBits,
}

/// `POST /v1/pool/fills`: generate batches with the named parties and
/// store this party's shares. Every party is sent the same request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FillRequest {
    /// The generation session's id (32 hex digits, fresh per fill): the
    /// batches are named after it.
    pub id: String,
    /// The parties sharing the batches, in share order (the federation's
    /// parties, as jobs that use the batches list them).
    pub parties: Vec<String>,
    pub kind: MaterialKind,
    /// The divisor of division pairs (a power of two).
    #[serde(default)]
    pub divisor: Option<u64>,
    /// Items per batch.
    pub per_batch: usize,
    /// Batches to generate.
    pub batches: usize,
    #[serde(default)]
    pub timeouts: JobTimeouts,
}

/// A fill's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FillStatus {
    pub id: String,
    pub phase: Phase,
    /// Batches stored so far by this party.
    pub batches_stored: usize,
    pub failure: Option<Failure>,
}

/// `GET /v1/pool`: what this party's pool holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Usable material by kind.
    pub kinds: Vec<PoolKind>,
    /// Age of the oldest usable batch.
    pub oldest_age_seconds: Option<f64>,
    /// The id of the fill running now, if any.
    pub filling: Option<String>,
}

/// Usable material of one kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolKind {
    pub kind: MaterialKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divisor: Option<u64>,
    pub batches: usize,
    pub items: usize,
    /// Items generated per second over the last minute.
    #[serde(default)]
    pub generated_per_second: f64,
}
