//! The worker's preprocessing pool: its durable [`Store`], the generation
//! sessions ("fills") a controller starts through the control API, expiry
//! of old batches, and the pool's status and metrics.
//!
//! A fill is run like a job: each party registers the session id with the
//! peer router, the parties connect over the federation's mutual TLS and
//! generate the batches with OT ([`crate::preprocessing::pool::fill`]).
//! Fills start in two ways:
//!
//! - **by a controller**, which sends every party the same request
//!   (`POST /v1/pool/fills`);
//! - **by the pool itself** ([`Pool::generate_in_background`]): the
//!   federation's fill leader (the party last by name) starts a session
//!   (an id with [`JobId::FILL_PREFIX`]) when a kind falls below its low
//!   watermark and sends the plan first; the other parties join when its
//!   first connection reaches their router ([`Pool::follow_fills`]) and
//!   check the plan ([`FillPlan::accept`]).
//!
//! One fill runs at a time per worker, beside the jobs: it takes the CPU a
//! job would (the OT extension uses both cores of a small machine), which
//! is why the pool fills between watermarks rather than continuously. Jobs
//! take from the store with [`crate::preprocessing::pool::take`]
//! (`jobs.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::{Instrument, info, warn};

use super::api::{Failure, FillRequest, FillStatus, MaterialKind, Phase, PoolKind, PoolStatus};
use super::config::{PartyEndpoint, PoolConfig, WorkerConfig};
use super::jobs::{Context, JobLimits, SubmitError, mesh_config, parse_job_id, resolve_parties, resolve_timeouts};
use crate::preprocessing::ot::OtGenerator;
use crate::preprocessing::ot::session::MAX_ITEMS_PER_CALL;
use crate::preprocessing::pool::{self, FillError};
use crate::preprocessing::store::{Store, StoredKind, on_store, unix_now};
use crate::transport::{InboundSource, JobId, Mesh, Step};

/// Batches one fill may ask for.
pub const MAX_FILL_BATCHES: usize = 4096;
/// Finished fills whose status is kept.
const FILL_HISTORY: usize = 64;

/// The pool of one worker.
pub struct Pool {
    store: Arc<Mutex<Store>>,
    ttl: Duration,
    /// The configuration when the pool keeps watermarks (some positive
    /// target).
    watermarks: Option<PoolConfig>,
    fills: Mutex<Fills>,
    /// Items stored in the last [`RATE_WINDOW`], for the generation rate.
    recent: Mutex<std::collections::VecDeque<(Instant, StoredKind, usize)>>,
    metrics: Arc<super::metrics::Metrics>,
}

/// The window of [`PoolKind::generated_per_second`].
const RATE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Fills {
    /// Every known fill by id, with its controller's request (a
    /// resubmission must match; `None` for the pool's own fills).
    by_id: BTreeMap<String, (Option<FillRequest>, FillStatus)>,
    /// Finished fills, oldest first (bounded by [`FILL_HISTORY`]).
    finished: std::collections::VecDeque<String>,
    running: Option<String>,
}

/// What one fill generates: sent by the leader of a background fill to
/// the others at setup, or given by a controller to every party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct FillPlan {
    kind: MaterialKind,
    divisor: Option<u64>,
    per_batch: usize,
    batches: usize,
}

impl FillPlan {
    fn stored_kind(&self) -> Result<StoredKind, String> {
        match (self.kind, self.divisor) {
            (MaterialKind::Triples, None) => Ok(StoredKind::Triples),
            (MaterialKind::Triples, Some(_)) => Err("divisor: only division pairs have one".into()),
            (MaterialKind::DivPairs, Some(d)) if d.is_power_of_two() => Ok(StoredKind::DivPairs { divisor: d }),
            (MaterialKind::DivPairs, Some(d)) => {
                Err(format!("divisor: OT-based generation makes division pairs for powers of two only, not {d}"))
            }
            (MaterialKind::DivPairs, None) => Err("divisor: division pairs need one".into()),
            (MaterialKind::BitTriples, None) => Ok(StoredKind::BitTriples),
            (MaterialKind::EdaBits, None) => Ok(StoredKind::EdaBits),
            (MaterialKind::DaBits, None) => Ok(StoredKind::DaBits),
            (_, Some(_)) => Err("divisor: only division pairs have one".into()),
        }
    }

    /// The plan's own bounds.
    fn check(&self) -> Result<(), String> {
        let most = max_per_batch(self.stored_kind()?);
        if self.per_batch == 0 || self.per_batch > most {
            return Err(format!("perBatch: must be between 1 and {most}"));
        }
        if self.batches == 0 || self.batches > MAX_FILL_BATCHES {
            return Err(format!("batches: must be between 1 and {MAX_FILL_BATCHES}"));
        }
        Ok(())
    }

    /// A follower's check of the leader's plan: within the bounds, and, when
    /// this party keeps its own watermarks, no larger than its `target`
    /// (plus a batch of rounding). What it holds now is not compared: it
    /// may still hold batches a crash left it, which the next agreement
    /// discards.
    fn accept(&self, pool: &Pool) -> Result<(), String> {
        self.check()?;
        let kind = self.stored_kind()?;
        let Some(target) = pool.watermarks.as_ref().map(|c| c.watermarks(kind).target) else { return Ok(()) };
        let adding = self.per_batch.saturating_mul(self.batches);
        if adding > target.saturating_add(self.per_batch) {
            return Err(format!(
                "the leader's fill of {adding} {} exceeds this party's target of {target}",
                crate::preprocessing::pool::kind_name(kind)
            ));
        }
        Ok(())
    }
}

/// The most items of `kind` one batch holds: what one generator call
/// makes (a batch is one call).
fn max_per_batch(kind: StoredKind) -> usize {
    match kind {
        StoredKind::BitTriples => crate::preprocessing::ot::session::MAX_BIT_WORDS_PER_CALL,
        StoredKind::EdaBits => MAX_ITEMS_PER_CALL / 64,
        _ => MAX_ITEMS_PER_CALL,
    }
}

fn api_kind(kind: StoredKind) -> (MaterialKind, Option<u64>) {
    match kind {
        StoredKind::Triples => (MaterialKind::Triples, None),
        StoredKind::DivPairs { divisor } => (MaterialKind::DivPairs, Some(divisor)),
        StoredKind::BitTriples => (MaterialKind::BitTriples, None),
        StoredKind::EdaBits => (MaterialKind::EdaBits, None),
        StoredKind::DaBits => (MaterialKind::DaBits, None),
    }
}

/// One fill session at this party, before it starts.
struct Session {
    id: JobId,
    /// The controller's request (`None`: the pool's own fill).
    request: Option<FillRequest>,
    /// The session's parties, in share order, and this party's index.
    parties: Vec<PartyEndpoint>,
    me: usize,
    timeouts: JobLimits,
    role: Role,
}

/// How this party learns a fill's plan.
enum Role {
    /// Every party was given it (a controller's fill).
    Given(FillPlan),
    /// This party leads the pool's own fill and sends it.
    Lead(FillPlan),
    /// The party at index `leader` sends it.
    Follow { leader: usize },
}

impl Role {
    fn name(&self) -> &'static str {
        match self {
            Role::Given(_) => "controller",
            Role::Lead(_) => "leader",
            Role::Follow { .. } => "follower",
        }
    }

    /// The plan every party runs (one message, at `setup`, for the pool's
    /// own fills; a follower that refuses it fails the fill everywhere).
    async fn agree(&self, mesh: &Mesh, pool: &Pool) -> Result<FillPlan, FillError> {
        match self {
            Role::Given(plan) => Ok(*plan),
            Role::Lead(plan) => {
                let bytes = Arc::new(serde_json::to_vec(plan).unwrap_or_default());
                for peer in (0..mesh.party_count()).filter(|&p| p != mesh.self_index()) {
                    mesh.send_shared(peer, Step::Setup, bytes.clone()).await.map_err(FillError::from_transport)?;
                }
                Ok(*plan)
            }
            Role::Follow { leader } => {
                let bytes = mesh.recv(*leader, Step::Setup).await.map_err(FillError::from_transport)?;
                let plan: FillPlan = serde_json::from_slice(&bytes).map_err(|e| {
                    FillError::Session(format!("party {}'s fill plan is malformed: {e}", mesh.party_name(*leader)))
                })?;
                plan.accept(pool).map_err(|reason| {
                    FillError::Session(format!("refusing party {}'s fill plan: {reason}", mesh.party_name(*leader)))
                })?;
                Ok(plan)
            }
        }
    }
}

/// The time limits of the pool's own fills: the worker's job defaults.
fn own_fill_limits(ctx: &Context) -> JobLimits {
    let t = &ctx.loaded.config.timeouts;
    JobLimits { connect: t.connect, round: t.round, total: t.total }
}

/// The parties of the pool's own fills: the whole federation, by name
/// (every party computes the same order), and this party's index. The last
/// is the fill leader.
fn fill_parties(config: &WorkerConfig) -> (Vec<PartyEndpoint>, usize) {
    let mut parties = config.parties.clone();
    parties.sort_by(|a, b| a.name.cmp(&b.name));
    let me = parties.iter().position(|p| p.name == config.party).unwrap_or(0);
    (parties, me)
}

impl Pool {
    pub(crate) fn new(store: Store, config: &PoolConfig, metrics: Arc<super::metrics::Metrics>) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            store: Arc::new(Mutex::new(store)),
            ttl: config.ttl,
            watermarks: config.keeps_watermarks().then(|| config.clone()),
            fills: Mutex::default(),
            recent: Mutex::default(),
            metrics,
        });
        pool.refresh_metrics();
        pool
    }

    /// The store, shared with the jobs that take from it.
    pub fn store(&self) -> &Arc<Mutex<Store>> {
        &self.store
    }

    fn fills(&self) -> MutexGuard<'_, Fills> {
        // The table holds plain statuses; a panic elsewhere leaves it usable.
        self.fills.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the pool holds now.
    pub fn status(&self) -> PoolStatus {
        let filling = self.fills().running.clone();
        let Ok(store) = self.store.lock() else {
            return PoolStatus { kinds: Vec::new(), oldest_age_seconds: None, filling };
        };
        let kinds = store
            .by_kind()
            .into_iter()
            .map(|(stored, (batches, items))| {
                let (kind, divisor) = api_kind(stored);
                PoolKind { kind, divisor, batches, items, generated_per_second: self.rate(stored) }
            })
            .collect();
        let oldest_age_seconds = store.oldest().map(|created| unix_now().saturating_sub(created) as f64);
        PoolStatus { kinds, oldest_age_seconds, filling }
    }

    /// Bring the pool's gauges up to date (after a fill, a job, expiry).
    pub fn refresh_metrics(&self) {
        if let Ok(store) = self.store.lock() {
            self.metrics.pool_observed(&store);
        }
    }

    /// A fill's status.
    pub fn fill_status(&self, id: &str) -> Option<FillStatus> {
        self.fills().by_id.get(id).map(|(_, s)| s.clone())
    }

    /// Admit a controller's fill and start it (one at a time). Returns its
    /// status and whether it is new; resubmitting the same request returns
    /// the existing fill.
    pub(crate) fn submit_fill(
        self: &Arc<Self>,
        ctx: &Arc<Context>,
        request: FillRequest,
    ) -> Result<(FillStatus, bool), SubmitError> {
        let session = parse_job_id(&request.id).map_err(SubmitError::Invalid)?;
        if let Some((existing, status)) = self.fills().by_id.get(&request.id) {
            return if existing.as_ref() == Some(&request) {
                Ok((status.clone(), false))
            } else {
                Err(SubmitError::Conflict(request.id))
            };
        }
        let config = &ctx.loaded.config;
        let (parties, me) = resolve_parties(config, &request.parties, "fill").map_err(SubmitError::Invalid)?;
        let plan = FillPlan {
            kind: request.kind,
            divisor: request.divisor,
            per_batch: request.per_batch,
            batches: request.batches,
        };
        plan.check().map_err(SubmitError::Invalid)?;
        let timeouts = resolve_timeouts(&request.timeouts, &config.timeouts).map_err(SubmitError::Invalid)?;
        let session = Session { id: session, request: Some(request), parties, me, timeouts, role: Role::Given(plan) };
        let status = self.launch(ctx, session)?;
        Ok((status, true))
    }

    /// Register a fill session and run it in the background: connect,
    /// learn or send the plan, generate, store.
    fn launch(self: &Arc<Self>, ctx: &Arc<Context>, session: Session) -> Result<FillStatus, SubmitError> {
        let Session { id: session, request, parties, me, timeouts, role } = session;
        let id = session.to_string();
        let mut fills = self.fills();
        if let Some(running) = &fills.running {
            return Err(SubmitError::FillRunning(running.clone()));
        }
        let mut registration = ctx.router.register(session).map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let status = FillStatus { id: id.clone(), phase: Phase::Pending, batches_stored: 0, failure: None };
        fills.by_id.insert(id.clone(), (request, status.clone()));
        fills.running = Some(id.clone());
        drop(fills);

        let (pool, ctx) = (self.clone(), ctx.clone());
        let span = tracing::info_span!("fill", fill = %id, role = role.name());
        tokio::spawn(
            async move {
                let started = Instant::now();
                let deadline = started + timeouts.total;
                let result = async {
                    let cfg = mesh_config(&ctx, me, &parties, &timeouts).await.map_err(FillError::from_transport)?;
                    let mesh = tokio::time::timeout_at(
                        deadline.into(),
                        Mesh::establish_from(&cfg, InboundSource::Routed(registration.connections()), session),
                    )
                    .await
                    .map_err(|_| FillError::Session("the parties did not all connect before the deadline".into()))?
                    .map_err(FillError::from_transport)?;
                    drop(registration);
                    pool.set_phase(&id, Phase::Running);
                    let generate = async {
                        let plan = role.agree(&mesh, &pool).await?;
                        let fill = pool::FillRequest {
                            kind: plan.stored_kind().map_err(FillError::Session)?,
                            per_batch: plan.per_batch,
                            batches: plan.batches,
                            first_seq: 0,
                        };
                        let mut generator = OtGenerator::setup(&mesh).await?;
                        let federation = &ctx.loaded.config.federation;
                        pool::fill(&mut generator, &mesh, &pool.store, federation, fill, |meta| {
                            pool.stored(&id, meta.kind, meta.count)
                        })
                        .await
                    };
                    let result = tokio::time::timeout_at(deadline.into(), generate)
                        .await
                        .map_err(|_| FillError::Session(format!("the fill's deadline ({:?}) passed", timeouts.total)))
                        .and_then(|r| r);
                    if let Err(e) = &result {
                        mesh.abort(&e.to_string());
                    }
                    mesh.close().await;
                    result
                }
                .await;
                pool.finish(&id, result, started.elapsed());
            }
            .instrument(span),
        );
        Ok(status)
    }

    /// The pool's own generation, at the federation's fill leader: every
    /// `checkInterval`, when no fill runs and a kind (triples, then each
    /// configured divisor) is below `lowWatermark` items, fill it up to
    /// `target` with every party.
    pub(crate) async fn generate_in_background(self: Arc<Self>, ctx: Arc<Context>, config: PoolConfig) {
        let (parties, me) = fill_parties(&ctx.loaded.config);
        if me + 1 != parties.len() {
            // Another party leads; this one joins its fills (follow_fills).
            return;
        }
        // Binary kinds without watermarks have a zero low watermark: never
        // below it.
        let kinds: Vec<StoredKind> = std::iter::once(StoredKind::Triples)
            .chain(config.divisors.iter().map(|&divisor| StoredKind::DivPairs { divisor }))
            .chain([StoredKind::BitTriples, StoredKind::EdaBits, StoredKind::DaBits])
            .collect();
        loop {
            tokio::time::sleep(config.check_interval).await;
            if self.fills().running.is_some() {
                continue;
            }
            let available: Vec<usize> = match self.store.lock() {
                Ok(store) => kinds.iter().map(|k| store.available(*k)).collect(),
                Err(_) => return warn!("the preprocessing store is unavailable; background generation stops"),
            };
            let Some((kind, have, marks)) = kinds
                .iter()
                .zip(available)
                .map(|(k, have)| (*k, have, config.watermarks(*k)))
                .find(|(_, have, marks)| *have < marks.low_watermark)
            else {
                continue;
            };
            let per_batch = config.per_batch.min(max_per_batch(kind));
            let batches = (marks.target - have).div_ceil(per_batch).clamp(1, MAX_FILL_BATCHES);
            let (kind_api, divisor) = api_kind(kind);
            let plan = FillPlan { kind: kind_api, divisor, per_batch, batches };
            let timeouts = own_fill_limits(&ctx);
            let session = JobId::random_fill_session();
            info!(fill = %session, kind = %crate::preprocessing::pool::kind_name(kind), have,
                low_watermark = marks.low_watermark, target = marks.target, batches,
                "the pool is below its low watermark; filling it with the peers");
            let fill =
                Session { id: session, request: None, parties: parties.clone(), me, timeouts, role: Role::Lead(plan) };
            if let Err(e) = self.launch(&ctx, fill) {
                warn!(error = %e, "could not start a background fill");
            }
        }
    }

    /// A peer's side of the pool's own generation: on the first connection
    /// of a fill session this worker has not registered, join it (the
    /// leader sends the plan; [`FillPlan::accept`] checks it).
    pub(crate) async fn follow_fills(
        self: Arc<Self>,
        ctx: Arc<Context>,
        mut invitations: tokio::sync::mpsc::Receiver<(JobId, String)>,
    ) {
        let (parties, me) = fill_parties(&ctx.loaded.config);
        let leader = parties.len() - 1;
        while let Some((session, from)) = invitations.recv().await {
            if me == leader {
                // The leader starts every fill; a session it did not start
                // is stale or not a fill of this federation's pool.
                continue;
            }
            let fill = Session {
                id: session,
                request: None,
                parties: parties.clone(),
                me,
                timeouts: own_fill_limits(&ctx),
                role: Role::Follow { leader },
            };
            match self.launch(&ctx, fill) {
                Ok(_) => info!(fill = %session, invited_by = %from, "joining the pool leader's fill"),
                Err(e) => info!(fill = %session, invited_by = %from, error = %e, "not joining a fill"),
            }
        }
    }

    fn set_phase(&self, id: &str, phase: Phase) {
        if let Some((_, status)) = self.fills().by_id.get_mut(id) {
            status.phase = phase;
        }
    }

    /// Items of `kind` generated per second over the last minute.
    fn rate(&self, kind: StoredKind) -> f64 {
        let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while recent.front().is_some_and(|(at, _, _)| at.elapsed() > RATE_WINDOW) {
            recent.pop_front();
        }
        let items: usize = recent.iter().filter(|(_, k, _)| *k == kind).map(|(_, _, n)| n).sum();
        items as f64 / RATE_WINDOW.as_secs_f64()
    }

    fn stored(&self, id: &str, kind: StoredKind, count: usize) {
        self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_back((Instant::now(), kind, count));
        if let Some((_, status)) = self.fills().by_id.get_mut(id) {
            status.batches_stored += 1;
        }
        self.metrics.pool_generated(kind, count);
        self.refresh_metrics();
    }

    fn finish(&self, id: &str, result: Result<Vec<crate::preprocessing::BatchId>, FillError>, elapsed: Duration) {
        let mut fills = self.fills();
        fills.running = None;
        if let Some((_, status)) = fills.by_id.get_mut(id) {
            match result {
                Ok(ids) => {
                    info!(fill = %id, batches = ids.len(), seconds = elapsed.as_secs_f64(), "fill stored its batches");
                    status.phase = Phase::Succeeded;
                }
                Err(e) => {
                    warn!(fill = %id, error = %e, "fill failed");
                    status.phase = Phase::Failed;
                    status.failure = Some(Failure {
                        party: None,
                        step: Some("generation".into()),
                        message: e.to_string(),
                        retryable: false,
                    });
                }
            }
        }
        fills.finished.push_back(id.to_string());
        while fills.finished.len() > FILL_HISTORY {
            if let Some(old) = fills.finished.pop_front() {
                fills.by_id.remove(&old);
            }
        }
    }

    /// Discard batches older than the pool's `ttl` now, then every
    /// `interval` (a tenth of the ttl, at most a minute).
    pub(crate) async fn expire_periodically(self: Arc<Self>) {
        let interval = (self.ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let ttl = self.ttl;
            let expired = on_store(&self.store, move |store| store.expire(unix_now(), ttl))
                .await
                .and_then(|r| r.map_err(|e| e.to_string()));
            match expired {
                Ok(ids) if !ids.is_empty() => {
                    info!(batches = ids.len(), ttl = ?self.ttl, "expired preprocessing batches (overwritten, deleted)");
                    self.refresh_metrics();
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "expiring preprocessing batches failed; trying again"),
            }
            tokio::time::sleep(interval).await;
        }
    }
}

impl FillError {
    fn from_transport(e: crate::transport::TransportError) -> FillError {
        FillError::Generation(e.into())
    }
}
