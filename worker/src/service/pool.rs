//! The worker's preprocessing pool: its durable [`Store`], the generation
//! sessions ("fills") a controller starts through the control API, expiry
//! of old batches, and the pool's status and metrics.
//!
//! A fill is run like a job: every party is sent the same request (same
//! session id and parties), each registers the id with the peer router,
//! the parties connect over the federation's mutual TLS and generate the
//! batches with OT ([`crate::preprocessing::pool::fill`]). One fill runs
//! at a time per worker, beside the jobs: it takes the CPU a job would
//! (the OT extension uses both cores of a small machine), so a controller
//! fills between the pool's watermarks, not continuously. Jobs take from
//! the store with [`crate::preprocessing::pool::take`] (`jobs.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{Instrument, info, warn};

use super::api::{Failure, FillRequest, FillStatus, MaterialKind, Phase, PoolKind, PoolStatus};
use super::jobs::{Context, SubmitError, mesh_config, parse_job_id, resolve_parties, resolve_timeouts};
use crate::preprocessing::ot::OtGenerator;
use crate::preprocessing::ot::session::MAX_ITEMS_PER_CALL;
use crate::preprocessing::pool::{self, FillError};
use crate::preprocessing::store::{Store, StoredKind};
use crate::transport::{InboundSource, Mesh};

/// Batches one fill may ask for.
pub const MAX_FILL_BATCHES: usize = 4096;
/// Finished fills whose status is kept.
const FILL_HISTORY: usize = 64;

/// The pool of one worker.
pub struct Pool {
    store: Arc<Mutex<Store>>,
    ttl: Duration,
    fills: Mutex<Fills>,
    metrics: Arc<super::metrics::Metrics>,
}

#[derive(Default)]
struct Fills {
    /// Every known fill by id, with its request (a resubmission must match).
    by_id: BTreeMap<String, (FillRequest, FillStatus)>,
    /// Finished fills, oldest first (bounded by [`FILL_HISTORY`]).
    finished: std::collections::VecDeque<String>,
    running: Option<String>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What `request` asks to generate, checked.
fn stored_kind(request: &FillRequest) -> Result<StoredKind, String> {
    match (request.kind, request.divisor) {
        (MaterialKind::Triples, None) => Ok(StoredKind::Triples),
        (MaterialKind::Triples, Some(_)) => Err("divisor: only division pairs have one".into()),
        (MaterialKind::DivPairs, Some(d)) if d.is_power_of_two() => Ok(StoredKind::DivPairs { divisor: d }),
        (MaterialKind::DivPairs, Some(d)) => {
            Err(format!("divisor: OT-based generation makes division pairs for powers of two only, not {d}"))
        }
        (MaterialKind::DivPairs, None) => Err("divisor: division pairs need one".into()),
    }
}

impl Pool {
    pub(crate) fn new(store: Store, ttl: Duration, metrics: Arc<super::metrics::Metrics>) -> Arc<Pool> {
        let pool = Arc::new(Pool { store: Arc::new(Mutex::new(store)), ttl, fills: Mutex::default(), metrics });
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
        let mut kinds: BTreeMap<StoredKind, (usize, usize)> = BTreeMap::new();
        for meta in store.batches() {
            let entry = kinds.entry(meta.kind).or_default();
            entry.0 += 1;
            entry.1 += meta.count;
        }
        let kinds = kinds
            .into_iter()
            .map(|(kind, (batches, items))| {
                let (kind, divisor) = match kind {
                    StoredKind::Triples => (MaterialKind::Triples, None),
                    StoredKind::DivPairs { divisor } => (MaterialKind::DivPairs, Some(divisor)),
                };
                PoolKind { kind, divisor, batches, items }
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

    /// Admit a fill and start it (one at a time). Returns its status and
    /// whether it is new; resubmitting the same request returns the
    /// existing fill.
    pub(crate) fn submit_fill(
        self: &Arc<Self>,
        ctx: &Arc<Context>,
        request: FillRequest,
    ) -> Result<(FillStatus, bool), SubmitError> {
        let session = parse_job_id(&request.id).map_err(SubmitError::Invalid)?;
        let mut fills = self.fills();
        if let Some((existing, status)) = fills.by_id.get(&request.id) {
            return if *existing == request {
                Ok((status.clone(), false))
            } else {
                Err(SubmitError::Conflict(request.id))
            };
        }
        let config = &ctx.loaded.config;
        let (parties, me) = resolve_parties(config, &request.parties, "fill").map_err(SubmitError::Invalid)?;
        let kind = stored_kind(&request).map_err(SubmitError::Invalid)?;
        if request.per_batch == 0 || request.per_batch > MAX_ITEMS_PER_CALL {
            return Err(SubmitError::Invalid(format!("perBatch: must be between 1 and {MAX_ITEMS_PER_CALL}")));
        }
        if request.batches == 0 || request.batches > MAX_FILL_BATCHES {
            return Err(SubmitError::Invalid(format!("batches: must be between 1 and {MAX_FILL_BATCHES}")));
        }
        let timeouts = resolve_timeouts(&request.timeouts, &config.timeouts).map_err(SubmitError::Invalid)?;
        if let Some(running) = &fills.running {
            return Err(SubmitError::FillRunning(running.clone()));
        }
        let mut registration = ctx.router.register(session).map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let status = FillStatus { id: request.id.clone(), phase: Phase::Pending, batches_stored: 0, failure: None };
        fills.by_id.insert(request.id.clone(), (request.clone(), status.clone()));
        fills.running = Some(request.id.clone());
        drop(fills);

        let (pool, ctx) = (self.clone(), ctx.clone());
        let fill = pool::FillRequest { kind, per_batch: request.per_batch, batches: request.batches, first_seq: 0 };
        let span =
            tracing::info_span!("fill", fill = %request.id, batches = request.batches, per_batch = request.per_batch);
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
                    .map_err(|_| FillError::Unavailable("the parties did not all connect before the deadline".into()))?
                    .map_err(FillError::from_transport)?;
                    pool.set_phase(&request.id, Phase::Running);
                    let generate = async {
                        let mut generator = OtGenerator::setup(&mesh).await?;
                        let federation = &ctx.loaded.config.federation;
                        pool::fill(&mut generator, &mesh, &pool.store, federation, fill, |meta| {
                            pool.stored(&request.id, meta.kind, meta.count)
                        })
                        .await
                    };
                    let result = tokio::time::timeout_at(deadline.into(), generate)
                        .await
                        .map_err(|_| {
                            FillError::Unavailable(format!("the fill's deadline ({:?}) passed", timeouts.total))
                        })
                        .and_then(|r| r);
                    if let Err(e) = &result {
                        mesh.abort(&e.to_string());
                    }
                    mesh.close().await;
                    result
                }
                .await;
                pool.finish(&request.id, result, started.elapsed());
            }
            .instrument(span),
        );
        Ok((status, true))
    }

    fn set_phase(&self, id: &str, phase: Phase) {
        if let Some((_, status)) = self.fills().by_id.get_mut(id) {
            status.phase = phase;
        }
    }

    fn stored(&self, id: &str, kind: StoredKind, count: usize) {
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
                    status.failure =
                        Some(Failure { party: None, step: Some("generation".into()), message: e.to_string() });
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
            let pool = self.clone();
            let expired = tokio::task::spawn_blocking(move || {
                let mut store = pool.store.lock().map_err(|_| "a thread panicked holding the store".to_string())?;
                store.expire(unix_now(), pool.ttl).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
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
