//! The jobs of one worker: admission, running, status, cancellation,
//! draining, and the durable record of results.
//!
//! A job is admitted once per id. Submitting the same id again with the
//! same program and party list returns the existing job (so a controller
//! that restarts and resubmits never runs a job twice); with anything else
//! it is a conflict. At most `limits.maxJobs` jobs run at once and a
//! draining worker admits none. Admission registers the job with the
//! peer [`Router`] at once, so peers that dial early are not lost.
//!
//! A job then connects to its peers, runs the protocol with material from
//! the configured dealer, and — when a results directory is configured —
//! writes its result there (fsync, then rename) *before* it reports
//! `Succeeded`. Results found there at start-up are served again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tracing::{Instrument, info, warn};

use super::api::{self, Failure, JobRequest, JobStatus, Phase, STEP_WAITING_FOR_PREPROCESSING, Stats};
use super::audit::{Outcome, RECORD_VERSION, Record, timestamp};
use super::config::Loaded;
use super::ledger::{Ledger, Record as LedgerRecord, State as LedgerState};
use super::metrics::Metrics;
use crate::executor::{ExecuteOptions, JobError, JobOutput, OwnInputs, execute};
use crate::fixed::{self, FixedPoint};
use crate::local::job_consent_digest;
use crate::preprocessing::dealer::DealerSource;
use crate::preprocessing::dealer::client::{DealerEndpoint, DrawOptions, draw};
use crate::preprocessing::ot::generate_for_plan;
use crate::preprocessing::pool::{Taken, take};
use crate::preprocessing::{JobMaterial, Mode};
use crate::preprocessing::{MaterialPlan, PreprocessingError};
use crate::program::ir::{Circuit, ElemType};
use crate::program::{compile, hex, program_hash};
use crate::protocol::ProtocolName;
use crate::telemetry;
use crate::transport::{
    InboundSource, JobId, Limits, Mesh, MeshConfig, PeerAddr, ProtocolOffer, Registration, Router, Step, Timeouts,
    TransportError, TransportErrorKind,
};

/// How long a job waits before agreeing again when the pool is short.
const POOL_RETRY: Duration = Duration::from_millis(500);

/// What a party that refused a job for capacity tells the parties that
/// admitted it (inside its abort reason); such a failure before any input
/// was shared is retryable ([`api::Failure::retryable`]).
pub const CAPACITY_REFUSAL: &str = "refused the job for capacity";

/// Jobs refused for capacity whose peers are told so at once, at most.
const MAX_REFUSERS: usize = 256;

/// How long a refusing party waits for each peer's first message before it
/// closes the connections.
const REFUSAL_LINGER: Duration = Duration::from_secs(5);

/// Why a submission was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Invalid(String),
    #[error("job {0} exists with a different program or party list")]
    Conflict(String),
    #[error("the worker is draining and admits no new jobs")]
    Draining,
    #[error("{0} jobs are already running (limits.maxJobs)")]
    Busy(usize),
    #[error("fill {0} is running; a worker runs one fill at a time")]
    FillRunning(String),
    /// The job id could not be recorded durably (`resultsDir`): the job is
    /// not admitted, since it could otherwise run twice.
    #[error("cannot record the job id in the results directory: {0}")]
    Storage(String),
}

/// Parse a job id: 32 hex digits.
pub fn parse_job_id(text: &str) -> Result<JobId, String> {
    let bytes = text.as_bytes();
    if bytes.len() != 32 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return Err("a job id is 32 hexadecimal digits".into());
    }
    let mut id = [0u8; 16];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hex = std::str::from_utf8(pair).map_err(|_| "invalid job id".to_string())?;
        id[i] = u8::from_str_radix(hex, 16).map_err(|_| "invalid job id".to_string())?;
    }
    if JobId(id) == JobId::PROBE {
        return Err("the all-zero job id is reserved (peer probes)".into());
    }
    if JobId(id).is_fill_session() {
        return Err("job ids starting with f1115e55 are reserved (the pools' own generation sessions)".into());
    }
    Ok(JobId(id))
}

struct Entry {
    fingerprint: String,
    status: JobStatus,
    task: Option<AbortHandle>,
    /// For the audit record.
    parties: Vec<String>,
    admitted: SystemTime,
}

#[derive(Default)]
struct Table {
    jobs: HashMap<String, Entry>,
    finished: VecDeque<String>,
    draining: bool,
    /// Jobs refused for capacity whose peers are being told so (see
    /// [`Jobs::refuse`]); such an id is refused again until that ends.
    refusing: HashMap<String, AbortHandle>,
}

/// Everything a job needs from its worker.
pub(crate) struct Context {
    pub(crate) loaded: Loaded,
    pub(crate) router: Router,
    pub(crate) metrics: Arc<Metrics>,
    /// The preprocessing pool, when configured.
    pub(crate) pool: Option<Arc<super::pool::Pool>>,
}

/// The worker's jobs.
pub struct Jobs {
    ctx: Arc<Context>,
    table: Mutex<Table>,
    slots: Arc<Semaphore>,
    /// Every id admitted (see [`super::ledger`]). Locked after `table`.
    ledger: Mutex<Ledger>,
}

/// What is stored for a finished job in the results directory.
#[derive(Serialize, Deserialize)]
struct Stored {
    fingerprint: String,
    status: JobStatus,
}

impl Jobs {
    pub(crate) fn new(ctx: Arc<Context>) -> Result<Arc<Jobs>, std::io::Error> {
        let slots = Arc::new(Semaphore::new(ctx.loaded.config.limits.max_jobs));
        let limits = &ctx.loaded.config.limits;
        let ledger =
            Ledger::open(ctx.loaded.config.results_dir.as_deref(), limits.id_retention, limits.max_remembered_ids)?;
        let jobs = Arc::new(Jobs { ctx, table: Mutex::new(Table::default()), slots, ledger: Mutex::new(ledger) });
        jobs.load_results();
        Ok(jobs)
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record `id` in the ledger; a failure is logged (the outcome stands:
    /// the admission was recorded already).
    fn record(&self, id: &str, fingerprint: &str, state: LedgerState) {
        if let Err(e) = self.ledger().record(id, fingerprint, state) {
            tracing::error!(job = %id, error = %e, "cannot record the job's outcome in the job id ledger");
        }
    }

    /// What a job the ledger remembers (its status forgotten after
    /// `limits.history`, or lost in a restart) answers to a resubmission.
    fn remembered(&self, request: &JobRequest, record: &LedgerRecord) -> JobStatus {
        if record.state == LedgerState::Succeeded
            && let Some(dir) = &self.ctx.loaded.config.results_dir
            && let Ok(bytes) = std::fs::read(dir.join(format!("{}.json", request.id)))
            && let Ok(stored) = serde_json::from_slice::<Stored>(&bytes)
        {
            return stored.status;
        }
        let (phase, what) = match record.state {
            LedgerState::Succeeded => (Phase::Succeeded, "succeeded (its result is no longer kept)"),
            LedgerState::Cancelled => (Phase::Cancelled, "was cancelled"),
            LedgerState::Failed => (Phase::Failed, "failed"),
            LedgerState::Admitted | LedgerState::Released => {
                (Phase::Failed, "did not finish: this worker stopped while it ran")
            }
        };
        let failure = (phase != Phase::Succeeded).then(|| Failure {
            party: Some(self.party().to_string()),
            step: None,
            message: format!(
                "job {} was admitted here before and {what}; its details are forgotten (limits.history), and a job \
                 id never runs twice: submit the job under a new id",
                request.id
            ),
            retryable: false,
        });
        JobStatus {
            id: request.id.clone(),
            phase,
            program_hash: format!("sha256:{}", hex(&program_hash(&request.program))),
            step: None,
            failure,
            stats: None,
            outputs: None,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Every update leaves the table consistent; keep using it after a
        // panic elsewhere.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Results from an earlier run of this worker.
    fn load_results(&self) {
        let Some(dir) = &self.ctx.loaded.config.results_dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut table = self.table();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&path).map_err(|e| e.to_string()).and_then(|b| {
                serde_json::from_slice::<Stored>(&b)
                    .map_err(|e| format!("not a result file: {}", api::redacted_json_error(&e)))
            }) {
                Ok(stored) => {
                    let id = stored.status.id.clone();
                    table.finished.push_back(id.clone());
                    // Audited when it finished; only its status is served now.
                    let entry = Entry {
                        fingerprint: stored.fingerprint,
                        status: stored.status,
                        task: None,
                        parties: Vec::new(),
                        admitted: SystemTime::now(),
                    };
                    table.jobs.insert(id, entry);
                }
                Err(reason) => warn!(file = %path.display(), %reason, "skipped a file in the results directory"),
            }
        }
    }

    /// Admit a job and start it. Returns its status and whether it is new.
    /// A new job's root span (`job`) is a child of `parent`, the trace
    /// context its controller sent; a resubmission starts no span.
    pub fn submit(
        self: &Arc<Self>,
        request: JobRequest,
        parent: Option<opentelemetry::Context>,
    ) -> Result<(JobStatus, bool), SubmitError> {
        let job = parse_job_id(&request.id).map_err(SubmitError::Invalid)?;
        let fingerprint = fingerprint(self.ctx.loaded.protocol, &request);
        let mut table = self.table();
        if let Some(existing) = table.jobs.get(&request.id) {
            if existing.fingerprint != fingerprint {
                return Err(SubmitError::Conflict(request.id));
            }
            if !existing.status.is_retryable() {
                return Ok((existing.status.clone(), false));
            }
            // It never started (a party had no slot): run it now.
            table.jobs.remove(&request.id);
            table.finished.retain(|id| *id != request.id);
        }
        if let Some(record) = self.ledger().get(&request.id).cloned() {
            if record.fingerprint != fingerprint {
                return Err(SubmitError::Conflict(request.id));
            }
            return Ok((self.remembered(&request, &record), false));
        }
        if table.draining {
            return Err(SubmitError::Draining);
        }
        if table.refusing.contains_key(&request.id) {
            self.ctx.metrics.job_refused("capacity");
            return Err(SubmitError::Busy(self.max_jobs()));
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.refuse(job, &request, &mut table);
            return Err(SubmitError::Busy(self.max_jobs()));
        };
        // Recorded before anything runs: from here on the id is used up
        // (unless the job fails for capacity, which releases it).
        self.ledger()
            .record(&request.id, &fingerprint, LedgerState::Admitted)
            .map_err(|e| SubmitError::Storage(format!("{e}")))?;
        let mut status = JobStatus {
            id: request.id.clone(),
            phase: Phase::Pending,
            program_hash: format!("sha256:{}", hex(&program_hash(&request.program))),
            step: Some("connecting".into()),
            failure: None,
            stats: None,
            outputs: None,
        };
        let span = job_span(&request, self.party(), &status.program_hash, self.ctx.loaded.protocol);
        telemetry::set_remote_parent(&span, parent);
        // Everything that can be checked alone is checked now; a job that
        // fails here still gets a status, and its peers see it never
        // connect.
        let prepared = span.in_scope(|| self.prepare(job, &request));
        let task = match prepared {
            Err(message) => {
                span.record("outcome", "failed");
                span.record("failure.reason", "invalid");
                span.record("otel.status_code", "ERROR");
                status.phase = Phase::Failed;
                status.step = None;
                status.failure =
                    Some(Failure { party: Some(self.party().to_string()), step: None, message, retryable: false });
                None
            }
            Ok(prepared) => {
                let jobs = self.clone();
                let id = request.id.clone();
                let handle = tokio::spawn(async move {
                    let _slot = slot;
                    let started = Instant::now();
                    let result = jobs.run(job, &id, prepared).instrument(span.clone()).await;
                    record_outcome(&span, &result);
                    // The span ends (and is queued for export) before the
                    // status turns final, so a worker that drains and exits
                    // once its jobs are final exports every finished job.
                    drop(span);
                    jobs.finish(&id, result, started.elapsed()).await;
                });
                Some(handle.abort_handle())
            }
        };
        info!(job = %request.id, parties = ?request.parties, phase = ?status.phase, "job admitted");
        let failed_early = task.is_none();
        let entry = Entry {
            fingerprint,
            status: status.clone(),
            task,
            parties: request.parties.clone(),
            admitted: SystemTime::now(),
        };
        if failed_early {
            self.audit(&entry, &status, Outcome::Failed);
            self.record(&request.id, &entry.fingerprint, LedgerState::Failed);
        }
        table.jobs.insert(request.id.clone(), entry);
        if failed_early {
            self.ctx.metrics.job_finished("failed", None);
            self.ctx.metrics.job_failed("invalid");
            Self::remember_finished(&mut table, &request.id, self.ctx.loaded.config.limits.history);
        } else {
            self.ctx.metrics.jobs_active.inc();
        }
        Ok((status, true))
    }

    /// Refuse `job` for capacity (the caller answers 429) and tell the
    /// parties that admitted it, so they fail it at once with a retryable
    /// failure instead of holding their slots until the connect timeout:
    /// join the job's mesh as an ordinary party would (taking the
    /// connections peers dial us with, parked ones included, and dialing
    /// those we dial), then abort it with [`CAPACITY_REFUSAL`] in the
    /// reason. Costs no slot; at most [`MAX_REFUSERS`] at once (beyond
    /// that, peers find out at their connect timeout, as before).
    fn refuse(self: &Arc<Self>, job: JobId, request: &JobRequest, table: &mut Table) {
        self.ctx.metrics.job_refused("capacity");
        if table.refusing.len() >= MAX_REFUSERS {
            return;
        }
        let config = &self.ctx.loaded.config;
        let (Ok((parties, me)), Ok(timeouts)) =
            (resolve_parties(config, &request.parties, "job"), resolve_timeouts(&request.timeouts, &config.timeouts))
        else {
            return; // the peers would refuse it too
        };
        let Ok(mut registration) = self.ctx.router.register(job) else { return };
        let reason = format!(
            "party {} {CAPACITY_REFUSAL}: it is running its limit of {} jobs (limits.maxJobs); nothing was computed, \
             resubmit the same job",
            self.party(),
            self.max_jobs()
        );
        let (jobs, id) = (self.clone(), request.id.clone());
        let task = tokio::spawn(async move {
            let told = async {
                let cfg = mesh_config(&jobs.ctx, me, &parties, &timeouts).await.ok()?;
                let inbound = InboundSource::Routed(registration.connections());
                let mesh = tokio::time::timeout(timeouts.connect, Mesh::establish_from(&cfg, inbound, job))
                    .await
                    .ok()?
                    .ok()?;
                mesh.abort(&reason);
                // Read each peer's first message (its setup, or its own
                // abort) before closing, so that none of them fails on a
                // closed connection before it reads our reason.
                let linger = timeouts.round.min(REFUSAL_LINGER);
                for peer in (0..mesh.party_count()).filter(|p| *p != me) {
                    let _ = tokio::time::timeout(linger, mesh.recv(peer, Step::Setup)).await;
                }
                mesh.close().await;
                Some(())
            };
            if told.await.is_some() {
                info!(job = %id, "told the parties that admitted the job that this party refused it for capacity");
            }
            drop(registration);
            jobs.table().refusing.remove(&id);
        });
        table.refusing.insert(request.id.clone(), task.abort_handle());
    }

    /// Admit a fill of the pool (see [`super::pool`]); refused while
    /// draining or without a pool.
    pub fn submit_fill(&self, request: api::FillRequest) -> Result<(api::FillStatus, bool), SubmitError> {
        let pool =
            self.ctx.pool.as_ref().ok_or_else(|| SubmitError::Invalid("this worker has no pool configured".into()))?;
        if self.table().draining {
            return Err(SubmitError::Draining);
        }
        pool.submit_fill(&self.ctx, request)
    }

    /// The worker's pool, when configured.
    pub fn pool(&self) -> Option<&Arc<super::pool::Pool>> {
        self.ctx.pool.as_ref()
    }

    fn max_jobs(&self) -> usize {
        self.ctx.loaded.config.limits.max_jobs
    }

    fn party(&self) -> &str {
        &self.ctx.loaded.config.party
    }

    /// Check the request against this worker's federation, compile the
    /// program and encode the inputs.
    fn prepare(&self, job: JobId, request: &JobRequest) -> Result<Prepared, String> {
        let config = &self.ctx.loaded.config;
        let (parties, me) = resolve_parties(config, &request.parties, "job")?;
        let protocol = self.ctx.loaded.protocol;
        let mode = resolve_mode(protocol, request.preprocessing)?;
        if mode == Mode::Pool && self.ctx.pool.is_none() {
            return Err("the job asks for preprocessing: pool, and this worker has no pool configured".into());
        }
        let circuit = compile(&request.program, &request.parties).map_err(|e| format!("program: {e}"))?;
        check_scalar_inputs(&circuit, me, &request.inputs)?;
        let inputs = encode_inputs(&circuit, me, &request.inputs)?;
        let timeouts = resolve_timeouts(&request.timeouts, &config.timeouts)?;
        let registration = self.ctx.router.register(job).map_err(|e| e.to_string())?;
        Ok(Prepared {
            circuit,
            inputs,
            me,
            parties,
            consent: job_consent_digest(protocol, &request.program, &request.parties, mode),
            timeouts,
            registration,
            mode,
        })
    }

    async fn run(&self, job: JobId, id: &str, prepared: Prepared) -> Result<Ran, JobError> {
        let Prepared { circuit, inputs, me, parties, consent, timeouts, mut registration, mode } = prepared;
        let deadline = Instant::now() + timeouts.total;
        let cfg = mesh_config(&self.ctx, me, &parties, &timeouts).await?;
        let connect = tracing::info_span!("connect", peers = parties.len().saturating_sub(1));
        let mesh = match tokio::time::timeout_at(
            deadline.into(),
            Mesh::establish_from(&cfg, InboundSource::Routed(registration.connections()), job),
        )
        .instrument(connect)
        .await
        {
            Ok(mesh) => mesh?,
            Err(_) => return Err(JobError::Deadline { limit: timeouts.total, step: Step::Handshake }),
        };
        drop(registration);
        tracing::Span::current().record("protocol.version", mesh.protocol_version());
        self.set_running(id);
        let mut options = ExecuteOptions::new(consent);
        options.job_timeout = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        options.max_vector_len = self.ctx.loaded.config.limits.max_vector_len;
        options.quotients = crate::executor::Quotients::of(mode);
        options.protocol = self.ctx.loaded.protocol;
        let names: Vec<String> = parties.iter().map(|p| p.name.clone()).collect();
        let mut batches = Vec::new();
        let result = execute(&mesh, &circuit, &inputs, &options, |plan| async {
            match mode {
                Mode::Dealer => self.draw(job, names, plan).await.map(JobMaterial::Dealer),
                Mode::Ot => generate_for_plan(&mesh, job, &plan).await.map(JobMaterial::Generated),
                Mode::Pool => {
                    // The pool serves what it stocks; the job generates the rest.
                    let (stocked, _) = crate::preprocessing::pool::split_plan(&plan);
                    let (material, used) = self.take_from_pool(&mesh, id, &stocked, deadline).await?;
                    batches = used;
                    let material =
                        crate::preprocessing::ot::complete_pool_material(&mesh, job, &plan, material).await?;
                    Ok(JobMaterial::Generated(material))
                }
            }
        })
        .await;
        if let Err(e) = &result {
            mesh.abort(&e.to_string());
        }
        let span = tracing::Span::current();
        span.record("bytes.sent", mesh.bytes_sent());
        span.record("bytes.received", mesh.bytes_received());
        mesh.close().await;
        result.map(|output| Ran { output, frac_bits: circuit.frac_bits, batches })
    }

    /// This party's material for the job, from the pool: agree on the
    /// batches with the peers and consume them ([`pool::take`]). While the
    /// pool is short, wait (the status's step says for what) and agree
    /// again, until the job's deadline.
    async fn take_from_pool(
        &self,
        mesh: &Mesh,
        id: &str,
        plan: &MaterialPlan,
        deadline: Instant,
    ) -> Result<(crate::preprocessing::Prefetched, Vec<String>), PreprocessingError> {
        let pool = self.ctx.pool.as_ref().ok_or_else(|| PreprocessingError::Pool("no pool is configured".into()))?;
        // The pools generate with OT: a divisor it cannot serve would only
        // wait; every party refuses it now, before any message.
        crate::preprocessing::pool::check_plan(plan)?;
        let federation = &self.ctx.loaded.config.federation;
        let mut round = 0;
        loop {
            // The leader decides when to give up (its deadline), so every
            // party stops waiting in the same agreement.
            let last = Instant::now() + POOL_RETRY >= deadline;
            let taken = take(mesh, pool.store(), federation, plan, &mut round, last)
                .await
                .map_err(|e| PreprocessingError::Pool(e.to_string()));
            pool.refresh_metrics();
            match taken? {
                Taken::Ready(material, used) => {
                    self.set_step(id, "running");
                    return Ok((material, used.iter().map(ToString::to_string).collect()));
                }
                Taken::Short { kind, need, have, last: true } => {
                    return Err(PreprocessingError::Pool(format!(
                        "the pool holds {have} of the {need} {kind} this job needs at every party, and the job's \
                         deadline came first"
                    )));
                }
                Taken::Short { kind, need, have, last: false } => {
                    let reason =
                        format!("{STEP_WAITING_FOR_PREPROCESSING}: the pool holds {have} of the {need} {kind} needed");
                    self.set_step(id, &reason);
                    tokio::time::sleep(POOL_RETRY).await;
                }
            }
        }
    }

    /// This party's material stream for the job, from the dealer.
    async fn draw(
        &self,
        job: JobId,
        parties: Vec<String>,
        plan: MaterialPlan,
    ) -> Result<DealerSource, PreprocessingError> {
        let loaded = &self.ctx.loaded;
        let (Some(dealer), Some(principal)) = (&loaded.config.dealer, &loaded.dealer) else {
            return Err(PreprocessingError::Exhausted("no dealer is configured for this worker".into()));
        };
        let addr = resolve(&dealer.endpoint).await.map_err(|reason| {
            PreprocessingError::Exhausted(format!("cannot resolve the dealer's endpoint {}: {reason}", dealer.endpoint))
        })?;
        let endpoint = DealerEndpoint { principal: principal.clone(), addr };
        draw(&loaded.identity.current(), &endpoint, job, &parties, &plan, &DrawOptions::default()).await
    }

    /// Say what a running job is doing (its status's `step`).
    fn set_step(&self, id: &str, step: &str) {
        if let Some(entry) = self.table().jobs.get_mut(id)
            && entry.status.phase == Phase::Running
        {
            entry.status.step = Some(step.into());
        }
    }

    fn set_running(&self, id: &str) {
        if let Some(entry) = self.table().jobs.get_mut(id)
            && entry.status.phase == Phase::Pending
        {
            entry.status.phase = Phase::Running;
            entry.status.step = Some("running".into());
        }
    }

    async fn finish(&self, id: &str, result: Result<Ran, JobError>, elapsed: Duration) {
        let mut reason = "other";
        let (phase, stats, outputs, failure) = match result {
            Ok(Ran { output, frac_bits, batches }) => {
                let stats = Stats { batches, ..stats_of(&output, elapsed) };
                (Phase::Succeeded, Some(stats), Some(outputs_of(&output, frac_bits)), None)
            }
            Err(e) => {
                reason = failure_reason(&e);
                let failure = Failure { retryable: refused_for_capacity(&e), ..failure_of(&e) };
                (Phase::Failed, None, None, Some(failure))
            }
        };
        let mut status = {
            let table = self.table();
            let Some(entry) = table.jobs.get(id) else { return };
            if entry.status.phase.is_final() {
                return; // cancelled meanwhile
            }
            entry.status.clone()
        };
        status.phase = phase;
        status.step = None;
        status.stats = stats;
        status.outputs = outputs;
        status.failure = failure;
        if phase == Phase::Succeeded
            && let Err(e) = self.store(id, &status).await
        {
            status.phase = Phase::Failed;
            status.outputs = None;
            status.failure = Some(Failure {
                party: Some(self.party().to_string()),
                step: Some("output".into()),
                message: format!("the result could not be stored: {e}"),
                retryable: false,
            });
        }
        match &status.failure {
            None => info!(job = %id, "job succeeded"),
            Some(f) => warn!(job = %id, failure = %f.message, "job failed"),
        }
        let outcome = if status.phase == Phase::Succeeded { "succeeded" } else { "failed" };
        if status.is_retryable() {
            // Not a failure of the service: counted as a refusal.
            self.ctx.metrics.job_refused("peer_capacity");
        } else {
            self.ctx.metrics.job_finished(outcome, Some((elapsed, status.stats.as_ref())));
            if status.phase != Phase::Succeeded {
                self.ctx.metrics.job_failed(reason);
            }
        }
        self.ctx.metrics.jobs_active.dec();
        let mut table = self.table();
        if let Some(entry) = table.jobs.get_mut(id) {
            let state = match status.phase {
                _ if status.is_retryable() => LedgerState::Released,
                Phase::Succeeded => LedgerState::Succeeded,
                _ => LedgerState::Failed,
            };
            self.record(id, &entry.fingerprint, state);
            let outcome = if status.phase == Phase::Succeeded { Outcome::Succeeded } else { Outcome::Failed };
            self.audit(entry, &status, outcome);
            entry.status = status;
            entry.task = None;
        }
        Self::remember_finished(&mut table, id, self.ctx.loaded.config.limits.history);
    }

    /// Append the job's audit record (off the async threads). A record that
    /// cannot be written is logged, naming the file; the job's outcome
    /// stands.
    fn audit(&self, entry: &Entry, status: &JobStatus, outcome: Outcome) {
        let Some(log) = self.ctx.loaded.audit.clone() else { return };
        let failure = status.failure.as_ref();
        let record = Record {
            v: RECORD_VERSION,
            job_id: status.id.clone(),
            program_hash: status.program_hash.trim_start_matches("sha256:").to_string(),
            parties: entry.parties.clone(),
            party: self.party().to_string(),
            protocol_version: status.stats.as_ref().map(|s| s.protocol_version),
            admitted: timestamp(entry.admitted),
            finished: timestamp(SystemTime::now()),
            outcome,
            rounds: status.stats.as_ref().map(|s| s.rounds),
            bytes_sent: status.stats.as_ref().map(|s| s.bytes_sent),
            failed_step: failure.and_then(|f| f.step.clone()),
            failed_party: failure.and_then(|f| f.party.clone()),
        };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = log.append(&record) {
                tracing::error!(error = %e, job = %record.job_id, "cannot append to the audit log");
            }
        });
    }

    /// Write the result durably before it is reported.
    async fn store(&self, id: &str, status: &JobStatus) -> std::io::Result<()> {
        let Some(dir) = self.ctx.loaded.config.results_dir.clone() else { return Ok(()) };
        let fingerprint = self.table().jobs.get(id).map(|e| e.fingerprint.clone()).unwrap_or_default();
        let bytes =
            serde_json::to_vec(&Stored { fingerprint, status: status.clone() }).map_err(std::io::Error::other)?;
        let id = id.to_string();
        tokio::task::spawn_blocking(move || write_durably(&dir, &id, &bytes))
            .await
            .map_err(|e| std::io::Error::other(format!("storing task failed: {e}")))?
    }

    fn remember_finished(table: &mut Table, id: &str, history: usize) {
        table.finished.push_back(id.to_string());
        while table.finished.len() > history {
            if let Some(old) = table.finished.pop_front() {
                table.jobs.remove(&old);
            }
        }
    }

    /// A job's status.
    pub fn status(&self, id: &str) -> Option<JobStatus> {
        self.table().jobs.get(id).map(|e| e.status.clone())
    }

    /// Cancel a job that has not finished; peers see this party leave.
    pub fn cancel(&self, id: &str) -> Option<JobStatus> {
        let mut table = self.table();
        let entry = table.jobs.get_mut(id)?;
        if !entry.status.phase.is_final() {
            if let Some(task) = entry.task.take() {
                task.abort();
            }
            entry.status.phase = Phase::Cancelled;
            entry.status.step = None;
            entry.status.failure = Some(Failure {
                party: Some(self.ctx.loaded.config.party.clone()),
                step: None,
                message: "cancelled by the controller".into(),
                retryable: false,
            });
            self.ctx.metrics.job_finished("cancelled", None);
            self.ctx.metrics.jobs_active.dec();
            let status = entry.status.clone();
            self.audit(entry, &status, Outcome::Cancelled);
            self.record(id, &entry.fingerprint, LedgerState::Cancelled);
            Self::remember_finished(&mut table, id, self.ctx.loaded.config.limits.history);
            return Some(status);
        }
        Some(entry.status.clone())
    }

    /// Admit no new jobs from now on.
    pub fn drain(&self) {
        self.table().draining = true;
    }

    /// Whether the worker is draining, and how many jobs have not finished.
    pub fn load(&self) -> (bool, usize) {
        let table = self.table();
        (table.draining, table.jobs.values().filter(|e| !e.status.phase.is_final()).count())
    }
}

/// A job's root span. Its fields are public (ids, counts, sizes; the
/// party list is known to every party); the rest is recorded as the job
/// learns it. Never an input, output, share, key or seed.
fn job_span(request: &JobRequest, party: &str, program_hash: &str, protocol: ProtocolName) -> tracing::Span {
    use tracing::field::Empty;
    tracing::info_span!(
        parent: None,
        "job",
        job.id = %request.id,
        party = %party,
        parties = request.parties.len(),
        program.hash = %program_hash,
        protocol = protocol.as_str(),
        protocol.version = Empty,
        rounds = Empty,
        layers = Empty,
        bytes.sent = Empty,
        bytes.received = Empty,
        material.triples = Empty,
        material.div_pairs = Empty,
        outcome = Empty,
        failure.reason = Empty,
        failure.step = Empty,
        otel.status_code = Empty,
    )
}

/// Record how the job ended on its span.
fn record_outcome(span: &tracing::Span, result: &Result<Ran, JobError>) {
    match result {
        Ok(Ran { output, .. }) => {
            let s = &output.stats;
            span.record("outcome", "succeeded");
            span.record("rounds", s.rounds);
            span.record("layers", s.layers);
            span.record("material.triples", s.triples_used);
            span.record("material.div_pairs", s.div_pairs_used);
        }
        Err(e) => {
            span.record("outcome", "failed");
            // Bounded values only: the reason's class and the step.
            span.record("failure.reason", failure_reason(e));
            if let Some(step) = failure_of(e).step {
                span.record("failure.step", step.as_str());
            }
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// A job that ran: its output, its fixed-point precision, and the pool
/// batches it used.
struct Ran {
    output: JobOutput,
    frac_bits: u32,
    batches: Vec<String>,
}

/// What a job needs once admitted.
struct Prepared {
    circuit: Circuit,
    inputs: OwnInputs,
    me: usize,
    parties: Vec<super::config::PartyEndpoint>,
    consent: [u8; 32],
    timeouts: JobLimits,
    registration: Registration,
    mode: Mode,
}

/// The mesh settings of a job or fill among `parties` (this party is
/// `me`).
pub(crate) async fn mesh_config(
    ctx: &Context,
    me: usize,
    parties: &[super::config::PartyEndpoint],
    timeouts: &JobLimits,
) -> Result<MeshConfig, TransportError> {
    let mut peers = Vec::new();
    for p in parties {
        let addr = resolve(&p.endpoint).await.map_err(|reason| {
            TransportError::new(
                Some(&p.name),
                Step::Handshake,
                TransportErrorKind::Config(format!("cannot resolve its endpoint {}: {reason}", p.endpoint)),
            )
        })?;
        peers.push(PeerAddr { name: p.name.clone(), addr });
    }
    Ok(MeshConfig {
        federation: ctx.loaded.config.federation.clone(),
        self_index: me,
        parties: peers,
        identity: ctx.loaded.identity.current(),
        protocol: ProtocolOffer {
            name: ctx.loaded.protocol.as_str().into(),
            min_version: ctx.loaded.versions.0,
            max_version: ctx.loaded.versions.1,
        },
        limits: Limits::default(),
        timeouts: Timeouts { connect: timeouts.connect, round: timeouts.round },
    })
}

/// Check a request's party list against this worker's federation: the
/// parties' endpoints in order, and this party's index. `what` names the
/// request (`job`, `fill`).
pub(crate) fn resolve_parties(
    config: &super::config::WorkerConfig,
    names: &[String],
    what: &str,
) -> Result<(Vec<super::config::PartyEndpoint>, usize), String> {
    if names.len() < 2 {
        return Err(format!("a {what} needs at least two parties"));
    }
    let mut parties = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(format!("party {name} is listed twice"));
        }
        let Some(p) = config.parties.iter().find(|p| p.name == *name) else {
            return Err(format!("party {name} is not in this worker's federation"));
        };
        parties.push(p.clone());
    }
    let Some(me) = names.iter().position(|p| p == &config.party) else {
        return Err(format!("this party ({}) is not among the {what}'s parties", config.party));
    };
    Ok((parties, me))
}

pub(crate) struct JobLimits {
    pub(crate) connect: Duration,
    pub(crate) round: Duration,
    pub(crate) total: Duration,
}

pub(crate) fn resolve_timeouts(
    requested: &api::JobTimeouts,
    defaults: &super::config::DefaultTimeouts,
) -> Result<JobLimits, String> {
    let pick = |what: &str, v: Option<f64>, default: Duration| match v {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 && s <= 7.0 * 86400.0 => Ok(Duration::from_secs_f64(s)),
        Some(_) => Err(format!("timeouts.{what}: must be a positive number of seconds, at most a week")),
    };
    Ok(JobLimits {
        connect: pick("connectSeconds", requested.connect_seconds, defaults.connect)?,
        round: pick("roundSeconds", requested.round_seconds, defaults.round)?,
        total: pick("totalSeconds", requested.total_seconds, defaults.total)?,
    })
}

/// A scalar input takes exactly one value: refused at submission, like
/// every other input check, rather than after every party connected.
fn check_scalar_inputs(
    circuit: &Circuit,
    me: usize,
    given: &BTreeMap<String, Vec<api::InputValue>>,
) -> Result<(), String> {
    use crate::program::ir::InputShape;
    for decl in circuit.inputs.iter().filter(|d| d.owners.includes(me) && d.shape == InputShape::Scalar) {
        match given.get(&decl.name).map(Vec::len) {
            Some(1) | None => {}
            Some(n) => {
                return Err(format!("input `{}`: a scalar input takes exactly one value, got {n}", decl.name));
            }
        }
    }
    Ok(())
}

/// Encode this party's inputs: every input the program expects from it,
/// and nothing else. Errors name the input and element, never a value.
fn encode_inputs(
    circuit: &Circuit,
    me: usize,
    given: &BTreeMap<String, Vec<api::InputValue>>,
) -> Result<OwnInputs, String> {
    let fp = FixedPoint::new(circuit.frac_bits).ok_or("unsupported fixed-point precision")?;
    let mut own = OwnInputs::new();
    for name in given.keys() {
        let Some(decl) = circuit.inputs.iter().find(|d| d.name == *name) else {
            return Err(format!("input `{name}`: the program declares no input of that name"));
        };
        if !decl.owners.includes(me) {
            return Err(format!("input `{name}`: the program does not take it from this party"));
        }
    }
    for decl in circuit.inputs.iter().filter(|d| d.owners.includes(me)) {
        let Some(values) = given.get(&decl.name) else {
            return Err(format!("input `{}`: missing (the program takes it from this party)", decl.name));
        };
        let mut encoded = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            use api::InputValue::{Bool, Number};
            let e = match (decl.elem, v) {
                (ElemType::Int, Number(v)) => match v.as_i64() {
                    Some(x) => fixed::encode_int(x).map_err(|e| e.to_string()),
                    // Above 2^63 the number is a u64, above 2^64 an f64: an
                    // integer all the same, just out of range.
                    None if v.is_u64()
                        || v.as_f64().is_some_and(|x| x.fract() == 0.0 && x.abs() >= fixed::SAFE_BOUND as f64) =>
                    {
                        Err(fixed::EncodeError::IntOutOfRange.to_string())
                    }
                    None => Err("not an integer".to_string()),
                },
                (ElemType::Fixed, Number(v)) => match v.as_f64() {
                    Some(x) => fp.encode(x).map_err(|e| e.to_string()),
                    None => Err("not a number".to_string()),
                },
                (ElemType::Bool, Bool(b)) => Ok(u64::from(*b)),
                // JSON has booleans: a number for a bool input is a mistake
                // (and a boolean for a number one), not something to coerce.
                (ElemType::Bool, Number(_)) => Err("not a bool (the input is a bool: give true or false)".to_string()),
                (ElemType::Int | ElemType::Fixed, Bool(_)) => Err(format!(
                    "a bool, but the input is {} (give a number)",
                    if decl.elem == ElemType::Int { "an int" } else { "a fixed" }
                )),
            };
            encoded.push(e.map_err(|reason| format!("input `{}`, element {i}: {reason}", decl.name))?);
        }
        own.insert_encoded(circuit, &decl.name, crate::sharing::Secret::new(encoded)).map_err(|e| e.to_string())?;
    }
    Ok(own)
}

/// What makes two submissions the same job: the consent digest (program,
/// party list, protocol, preprocessing mode), which every party must agree
/// on anyway.
fn fingerprint(protocol: ProtocolName, request: &JobRequest) -> String {
    let mode = request.preprocessing.unwrap_or_default();
    hex(&job_consent_digest(protocol, &request.program, &request.parties, mode))
}

/// The job's preprocessing mode: the request's, `dealer` by default. A
/// protocol without material refuses any mode rather than ignore it.
fn resolve_mode(protocol: ProtocolName, asked: Option<Mode>) -> Result<Mode, String> {
    match asked {
        Some(mode) if !protocol.uses_preprocessing() => Err(format!(
            "the job asks for preprocessing: {mode}, and this federation runs {protocol}, which takes no \
             preprocessing material; omit the field"
        )),
        asked => Ok(asked.unwrap_or_default()),
    }
}

fn stats_of(output: &JobOutput, elapsed: Duration) -> Stats {
    let s = &output.stats;
    Stats {
        rounds: s.rounds,
        layers: s.layers,
        bytes_sent: s.bytes_sent,
        triples_used: s.triples_used,
        div_pairs_used: s.div_pairs_used,
        protocol_version: s.protocol_version,
        wall_seconds: elapsed.as_secs_f64(),
        batches: Vec::new(),
    }
}

/// The outputs this party received, as JSON: `int`s as exact integers,
/// `fixed` values as their grid point (exact below 2^53 units; see
/// [`api::OutputValue`]), never through a lossy `f64` for an `int`, and
/// `bool`s as `true`/`false`.
fn outputs_of(output: &JobOutput, frac_bits: u32) -> BTreeMap<String, api::OutputValue> {
    let fp = FixedPoint::new(frac_bits).unwrap_or_default();
    let mut out = BTreeMap::new();
    for o in &output.outputs {
        let Some(secret) = &o.value else { continue };
        let v = match o.elem {
            ElemType::Bool => {
                // A bool output holds the ring elements 0 and 1.
                let mut bits: Vec<bool> = secret.expose().iter().map(|x| *x & 1 == 1).collect();
                match (o.is_vector, bits.len()) {
                    (false, 1) => api::OutputValue::Bool(bits.remove(0)),
                    _ => api::OutputValue::Bools(bits),
                }
            }
            ElemType::Int | ElemType::Fixed => {
                let number = |x: &u64| match o.elem {
                    ElemType::Fixed => {
                        // A decoded ring element is always finite.
                        serde_json::Number::from_f64(fp.decode(*x)).unwrap_or_else(|| 0.into())
                    }
                    _ => serde_json::Number::from(fixed::decode_int(*x)),
                };
                let mut values: Vec<serde_json::Number> = secret.expose().iter().map(number).collect();
                match (o.is_vector, values.len()) {
                    (false, 1) => api::OutputValue::Scalar(values.remove(0)),
                    _ => api::OutputValue::Vector(values),
                }
            }
        };
        out.insert(o.name.clone(), v);
    }
    out
}

/// The bounded reason a job failed, for `cohort_worker_job_failures_total`
/// (one of `metrics::FAILURE_REASONS`; never a party name or a message).
fn failure_reason(e: &JobError) -> &'static str {
    use crate::transport::{Step, TransportErrorKind as K};
    match e {
        JobError::Transport(t) => match &t.kind {
            K::Disconnected | K::Aborted(_) | K::AbortedBy { .. } => "peer_closed",
            K::Io(_) => "network",
            K::Timeout { .. } | K::Stalled { .. } => "timeout",
            K::Tls(_) => "tls",
            K::VersionMismatch { .. } | K::ProtocolMismatch { .. } => "setup_mismatch",
            K::FrameTooLarge { .. }
            | K::MessageTooLarge { .. }
            | K::Malformed(_)
            | K::UnexpectedStep { .. }
            | K::WrongJob
            | K::Handshake(_) => "protocol",
            K::Certificate(_) | K::Config(_) => "other",
        },
        JobError::Protocol { step: Step::Setup, .. } => "setup_mismatch",
        JobError::Protocol { .. } => "protocol",
        JobError::Preprocessing { .. } => "preprocessing",
        JobError::Deadline { .. } => "timeout",
        JobError::Plan(_) | JobError::Input { .. } => "invalid",
        JobError::Entropy(_) => "other",
    }
}

/// Whether the job failed because a party refused it for capacity (its
/// abort names [`CAPACITY_REFUSAL`], directly or relayed by another party)
/// before any input was shared: then nothing was computed and the id may
/// run when resubmitted. Later in the protocol no reason makes a job
/// retryable, whatever a peer says.
fn refused_for_capacity(e: &JobError) -> bool {
    match e {
        JobError::Transport(t) => {
            matches!(t.step, Step::Handshake | Step::Setup)
                && matches!(&t.kind, TransportErrorKind::Aborted(reason) | TransportErrorKind::AbortedBy { reason, .. }
                    if reason.contains(CAPACITY_REFUSAL))
        }
        _ => false,
    }
}

fn failure_of(e: &JobError) -> Failure {
    let (party, step) = match e {
        JobError::Transport(t) => (t.peer.clone(), Some(t.step)),
        JobError::Protocol { party, step, .. } => (Some(party.clone()), Some(*step)),
        JobError::Preprocessing { step, .. } | JobError::Deadline { step, .. } => (None, Some(*step)),
        JobError::Plan(_) | JobError::Input { .. } | JobError::Entropy(_) => (None, None),
    };
    Failure { party, step: step.map(|s| s.to_string()), message: e.to_string(), retryable: false }
}

pub(crate) async fn resolve(endpoint: &str) -> Result<std::net::SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host(endpoint).await.map_err(|e| e.to_string())?;
    addrs.next().ok_or_else(|| "no address".to_string())
}

fn write_durably(dir: &Path, id: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp: PathBuf = dir.join(format!(".{id}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(format!("{id}.json")))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids() {
        let id = JobId::random();
        assert_eq!(parse_job_id(&id.to_string()), Ok(id));
        assert!(parse_job_id("abc").is_err());
        assert!(parse_job_id(&"g".repeat(32)).is_err());
        assert!(parse_job_id(&"0".repeat(33)).is_err());
        assert!(parse_job_id(&"0".repeat(32)).unwrap_err().contains("reserved"));
    }

    /// Integers above 2^63 (a u64) or 2^64 (an f64 to serde_json) are out
    /// of range, not "not an integer" (issue 15, item 13).
    #[test]
    fn huge_integer_inputs_are_out_of_range() {
        let parties = vec!["a".to_string(), "b".to_string()];
        let circuit = compile("input x: int[] from a\noutput s = sum(x)", &parties).unwrap();
        let big: serde_json::Number = serde_json::from_str("123456789012345678901234567890").unwrap();
        for n in [big, serde_json::Number::from(u64::MAX), serde_json::Number::from(1u64 << 62)] {
            let given = BTreeMap::from([("x".to_string(), vec![1i64.into(), n.into()])]);
            let Err(err) = encode_inputs(&circuit, 0, &given) else { panic!("refused") };
            assert!(err.starts_with("input `x`, element 1: out of range"), "{err}");
        }
        let given = BTreeMap::from([("x".to_string(), vec![serde_json::Number::from_f64(1.5).unwrap().into()])]);
        let Err(err) = encode_inputs(&circuit, 0, &given) else { panic!("refused") };
        assert!(err.ends_with("not an integer"), "{err}");
    }

    /// Bool inputs take JSON booleans, and only them; number inputs refuse
    /// booleans. Errors name the input and element, never the value.
    #[test]
    fn bool_inputs_are_json_booleans() {
        use crate::program::ir::{InputDecl, InputShape, Owners, Span};
        let parties = vec!["a".to_string(), "b".to_string()];
        let mut circuit = compile("input x: int[] from a\noutput s = sum(x)", &parties).unwrap();
        // Built by hand: the language's `bool` type may not be parsed yet.
        let decl = |name: &str, elem| InputDecl {
            name: name.into(),
            elem,
            shape: InputShape::Vector,
            owners: Owners::Party(0),
            span: Span::default(),
        };
        circuit.inputs.push(decl("flags", ElemType::Bool));
        circuit.inputs.push(decl("f", ElemType::Fixed));
        let request: JobRequest = serde_json::from_str(
            r#"{"id": "0", "program": "", "parties": [],
                "inputs": {"x": [7, -2], "flags": [true, false, true], "f": [1.5]}}"#,
        )
        .unwrap();
        let own = encode_inputs(&circuit, 0, &request.inputs).expect("encodes");
        assert!(format!("{own:?}").contains("OwnInputs"));
        let refused = |name: &str, values: Vec<api::InputValue>| {
            let mut given = request.inputs.clone();
            given.insert(name.to_string(), values);
            encode_inputs(&circuit, 0, &given).expect_err("refused")
        };
        let err = refused("flags", vec![true.into(), 1i64.into()]);
        assert_eq!(err, "input `flags`, element 1: not a bool (the input is a bool: give true or false)");
        let err = refused("x", vec![5i64.into(), 6i64.into(), false.into()]);
        assert_eq!(err, "input `x`, element 2: a bool, but the input is an int (give a number)");
        let err = refused("f", vec![true.into()]);
        assert_eq!(err, "input `f`, element 0: a bool, but the input is a fixed (give a number)");
        // Round trip: booleans serialize as JSON booleans.
        let json = serde_json::to_string(&request.inputs["flags"]).unwrap();
        assert_eq!(json, "[true,false,true]");
        assert_eq!(format!("{:?}", request.inputs["flags"][0]), "InputValue([redacted])");
    }

    /// Input elements read as numbers (exactly as serde_json reads them)
    /// or booleans, nothing else.
    #[test]
    fn input_values_are_numbers_or_booleans() {
        use api::InputValue::{Bool, Number};
        let parsed: Vec<api::InputValue> =
            serde_json::from_str("[1, -2, 1.5, 18446744073709551615, 123456789012345678901234567890, true, false]")
                .unwrap();
        let want: Vec<serde_json::Number> =
            serde_json::from_str("[1, -2, 1.5, 18446744073709551615, 123456789012345678901234567890]").unwrap();
        assert_eq!(parsed[..5], want.into_iter().map(Number).collect::<Vec<_>>()[..]);
        assert_eq!(parsed[5..], [Bool(true), Bool(false)]);
        for bad in [r#"["1"]"#, "[null]", "[[1]]", r#"[{"a": 1}]"#] {
            assert!(serde_json::from_str::<Vec<api::InputValue>>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            "[1,-2,1.5,18446744073709551615,1.2345678901234568e+29,true,false]"
        );
    }

    /// Bool outputs are JSON booleans (scalars and vectors); ints stay
    /// exact integers and fixed values their grid point.
    #[test]
    fn bool_outputs_are_json_booleans() {
        use crate::executor::OutputValue;
        use crate::sharing::Secret;
        let output = |name: &str, elem, is_vector, values: Vec<u64>| OutputValue {
            name: name.into(),
            elem,
            is_vector,
            value: Some(Secret::new(values)),
        };
        let job = JobOutput {
            outputs: vec![
                output("any", ElemType::Bool, false, vec![1]),
                output("flags", ElemType::Bool, true, vec![0, 1, 1]),
                output("none", ElemType::Bool, true, vec![]),
                output("n", ElemType::Int, false, vec![(1 << 53) + 1]),
                output("m", ElemType::Fixed, true, vec![3 << 15]),
                OutputValue { name: "hidden".into(), elem: ElemType::Bool, is_vector: false, value: None },
            ],
            stats: Default::default(),
        };
        let outputs = outputs_of(&job, 16);
        let json = serde_json::to_string(&outputs).unwrap();
        assert_eq!(json, r#"{"any":true,"flags":[false,true,true],"m":[1.5],"n":9007199254740993,"none":[]}"#);
        let back: BTreeMap<String, api::OutputValue> = serde_json::from_str(&json).unwrap();
        assert_eq!(back["any"].as_bool(), Some(true));
        assert_eq!(back["flags"], outputs["flags"]);
        assert_eq!(back["flags"].to_f64s(), [0.0, 1.0, 1.0]);
        assert_eq!(format!("{:?}", back["flags"]), "Bools([3 redacted])");
        // An empty list reads back as `Vector([])`, whatever its type.
        assert_eq!(back["none"], api::OutputValue::Vector(Vec::new()));
        let without_none = |m: &BTreeMap<String, api::OutputValue>| {
            m.iter().filter(|(k, _)| *k != "none").map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()
        };
        assert_eq!(without_none(&back), without_none(&outputs));
        // Every shape reads back as itself; mixed lists are refused.
        for json in ["1", "-2", "1.5", "true", "[]", "[1,2.5,-3]", "[true,false]", "[18446744073709551615]"] {
            let v: api::OutputValue = serde_json::from_str(json).unwrap();
            assert_eq!(serde_json::to_string(&v).unwrap(), json);
        }
        for bad in ["[1,true]", "[true,1]", r#""1""#, "null", "[[1]]"] {
            assert!(serde_json::from_str::<api::OutputValue>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn failure_reasons_are_bounded_and_never_name_a_party() {
        use crate::transport::{Step, TransportError, TransportErrorKind as K};
        let transport = |kind| JobError::Transport(TransportError::new(Some("bank-b"), Step::Layer(2), kind));
        let cases = [
            (transport(K::Disconnected), "peer_closed"),
            (transport(K::Timeout { after: Duration::from_secs(5), waiting_for: "a round" }), "timeout"),
            (transport(K::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))), "network"),
            (transport(K::WrongJob), "protocol"),
            (transport(K::ProtocolMismatch { ours: "a".into(), theirs: "b".into() }), "setup_mismatch"),
            (
                JobError::Protocol { party: "bank-b".into(), step: Step::Setup, reason: "digest".into() },
                "setup_mismatch",
            ),
            (JobError::Protocol { party: "bank-b".into(), step: Step::Input, reason: "length".into() }, "protocol"),
            (JobError::Deadline { limit: Duration::from_secs(1), step: Step::Output }, "timeout"),
            (JobError::Input { input: "x".into(), reason: "range".into() }, "invalid"),
        ];
        for (error, want) in cases {
            let got = failure_reason(&error);
            assert_eq!(got, want, "{error}");
            assert!(super::super::metrics::FAILURE_REASONS.contains(&got));
        }
    }
}
