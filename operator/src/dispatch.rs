//! Dispatching a job to this party's workers.
//!
//! Every party's operator dispatches the same job (same id, program and
//! party list) to its own workers; the workers find each other on their peer
//! ports. Two rules make that work without any coordination between the
//! operators:
//!
//! - **The same shard everywhere.** Shard *i* of a party pairs with shard *i*
//!   of every peer, so every operator must pick the same shard for a job:
//!   [`shard_for`] is a function of the job id and the shard count alone.
//! - **Idempotent submission.** The worker admits a job id once; submitting
//!   it again with the same program and parties returns the existing job
//!   (and after a worker restart, its stored result). An operator that
//!   restarts mid-job, or retries after a lost reply, therefore never runs a
//!   job twice: it re-submits and follows.

use cohort_worker::preprocessing::Mode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cohort_worker::service::api::{JobRequest, JobStatus, JobTimeouts, PoolStatus};
use cohort_worker::service::control::{ControlClient, ControlError};
use cohort_worker::transport::TlsIdentity;
use tracing::{Instrument, info_span};

/// The shard that runs job `job_id` when each party has `shards` workers:
/// the first 8 bytes of SHA-256(job id), modulo `shards`. Every party
/// computes the same index; `shards` must be at least 1.
pub fn shard_for(job_id: &str, shards: usize) -> usize {
    let digest = ring::digest::digest(&ring::digest::SHA256, job_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    (u64::from_be_bytes(first) % shards.max(1) as u64) as usize
}

/// A job as this party dispatches it. `inputs` are this party's own
/// (secret): `Debug` prints only their lengths.
#[derive(Clone)]
pub struct Job {
    pub id: String,
    pub program: String,
    pub parties: Vec<String>,
    pub inputs: BTreeMap<String, Vec<cohort_worker::service::api::InputValue>>,
    pub timeouts: JobTimeouts,
    /// Where the job's material comes from: the cluster's dealer, or the
    /// workers' pools (a PreprocessingPool in mode `ot`). `None` for a
    /// protocol that takes no material (`replicated-3`): its workers refuse
    /// a job that names any mode.
    pub preprocessing: Option<Mode>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lengths: BTreeMap<&str, usize> = self.inputs.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("parties", &self.parties)
            .field("preprocessing", &self.preprocessing)
            .field("input_lengths", &lengths)
            .finish_non_exhaustive()
    }
}

/// Why a dispatch did not reach a final job status.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The worker holds a different job under this id (a reused id, or
    /// parties that disagree on the job): never retried.
    #[error("job {id}: the worker already holds a different job with this id")]
    Conflict { id: String },
    /// The worker refused the job for now (draining, or at `maxJobs`):
    /// retry later.
    #[error("job {id}: the worker cannot take it now: {source}")]
    Unavailable { id: String, source: Box<ControlError> },
    /// The worker does not know the job (never submitted there, or
    /// forgotten after its history bound).
    #[error("job {id}: the worker does not know this job")]
    NotFound { id: String },
    /// The worker could not be reached or answered badly: retry.
    #[error("job {id}: {source}")]
    Worker { id: String, source: Box<ControlError> },
}

impl DispatchError {
    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, DispatchError::Conflict { .. })
    }

    fn from_control(id: &str, e: ControlError) -> DispatchError {
        let id = id.to_string();
        match e.status() {
            Some(404) => DispatchError::NotFound { id },
            Some(409) => DispatchError::Conflict { id },
            Some(429) | Some(503) => DispatchError::Unavailable { id, source: Box::new(e) },
            _ => DispatchError::Worker { id, source: Box::new(e) },
        }
    }
}

/// This party's operator as its workers' controller.
#[derive(Clone)]
pub struct Dispatcher {
    identity: Arc<TlsIdentity>,
    party: String,
    poll: Duration,
}

impl Dispatcher {
    /// A dispatcher authenticating as `identity` (principal
    /// `controller/<name>`) to the workers of `party`, polling job status
    /// every `poll`.
    pub fn new(identity: Arc<TlsIdentity>, party: impl Into<String>, poll: Duration) -> Dispatcher {
        Dispatcher { identity, party: party.into(), poll }
    }

    fn client(&self, control_endpoint: &str) -> ControlClient {
        ControlClient::new(self.identity.clone(), control_endpoint, self.party.clone())
    }

    /// Submit `job` to the worker at `control_endpoint` (idempotent: a job
    /// already there is returned as it stands).
    pub async fn submit(&self, control_endpoint: &str, job: &Job) -> Result<JobStatus, DispatchError> {
        let request = JobRequest {
            id: job.id.clone(),
            program: job.program.clone(),
            parties: job.parties.clone(),
            inputs: job.inputs.clone(),
            timeouts: job.timeouts,
            preprocessing: job.preprocessing,
        };
        // The worker parents its job span on this one (traceparent).
        let span = info_span!("dispatch.submit", job.id = %job.id, party = %self.party, worker = %control_endpoint);
        self.client(control_endpoint)
            .submit(&request)
            .instrument(span)
            .await
            .map_err(|e| DispatchError::from_control(&job.id, e))
    }

    /// What the pool of the worker at `control_endpoint` holds.
    pub async fn pool(&self, control_endpoint: &str) -> Result<PoolStatus, ControlError> {
        let span = info_span!("dispatch.pool", party = %self.party, worker = %control_endpoint);
        self.client(control_endpoint).pool().instrument(span).await
    }

    /// The status of job `id` on the worker at `control_endpoint`.
    pub async fn status(&self, control_endpoint: &str, id: &str) -> Result<JobStatus, DispatchError> {
        let span = info_span!("dispatch.status", job.id = %id, party = %self.party, worker = %control_endpoint);
        self.client(control_endpoint).status(id).instrument(span).await.map_err(|e| DispatchError::from_control(id, e))
    }

    /// Follow a submitted job until it is final, calling `progress` with
    /// every status seen.
    pub async fn follow(
        &self,
        control_endpoint: &str,
        id: &str,
        mut progress: impl FnMut(&JobStatus),
    ) -> Result<JobStatus, DispatchError> {
        let client = self.client(control_endpoint);
        loop {
            let status = client.status(id).await.map_err(|e| DispatchError::from_control(id, e))?;
            progress(&status);
            if status.phase.is_final() {
                return Ok(status);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Submit and follow to the end.
    pub async fn run(&self, control_endpoint: &str, job: &Job) -> Result<JobStatus, DispatchError> {
        let submitted = self.submit(control_endpoint, job).await?;
        if submitted.phase.is_final() {
            return Ok(submitted);
        }
        self.follow(control_endpoint, &job.id, |_| {}).await
    }

    /// Cancel a job (its peers see this party leave).
    pub async fn cancel(&self, control_endpoint: &str, id: &str) -> Result<JobStatus, DispatchError> {
        self.client(control_endpoint).cancel(id).await.map_err(|e| DispatchError::from_control(id, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_party_picks_the_same_shard_and_shards_are_used_evenly() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let id = format!("{i:032x}");
            let shard = shard_for(&id, 4);
            assert_eq!(shard, shard_for(&id, 4), "deterministic");
            counts[shard] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
        assert_eq!(shard_for("anything", 1), 0);
        assert_eq!(shard_for("anything", 0), 0, "no shards is treated as one");
    }

    #[test]
    fn job_debug_hides_inputs() {
        let job = Job {
            id: "j".into(),
            program: "p".into(),
            parties: vec!["a".into()],
            inputs: BTreeMap::from([("x".to_string(), vec![987_654_321.into()])]),
            timeouts: JobTimeouts::default(),
            preprocessing: Some(Mode::Pool),
        };
        let shown = format!("{job:?}");
        assert!(shown.contains("input_lengths") && !shown.contains("987654321"), "{shown}");
    }
}
