//! The MpcJob controller.
//!
//! Pipeline, on every reconcile until the job is finished: find the
//! MpcCluster (a job naming a pool on a cluster whose protocol takes no
//! material, `replicated-3`, fails here) → compile the program for its
//! parties (a compile error fails the job with line and column) → check
//! and read this party's inputs from their Secrets and ConfigMaps → wait
//! for the cluster (and pool) to be Ready → submit to the shard
//! [`shard_for`] picks, through the mTLS control API → fold the worker's
//! status into the MpcJob's → once the workers succeeded, apply the result
//! Secret, and only then report `Succeeded`.
//!
//! Submission is idempotent on the workers (same id and consent digest:
//! the job already there is returned), so a restarted operator, a requeue
//! or a second replica resubmitting never runs a job twice, and a finished
//! job's stored result is served again.
//!
//! Deleting an unfinished MpcJob cancels it on the workers (finalizer
//! [`FINALIZER`]). A worker that cannot be reached does not block the
//! deletion forever: the job's own timeouts end it there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_crds::conditions::{ConditionStatus, is_condition_true, set_condition, types};
use cohort_crds::job::{JobFailure, JobPhase, MpcJobStatus};
use cohort_crds::{MpcCluster, MpcJob, PreprocessingPool};
use cohort_worker::program;
use cohort_worker::service::api::Phase;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

use super::{Context, Error, ShardRef, apply, dispatcher, now, object_key, write_status};
use crate::cluster::Cluster;
use crate::dispatch::{self, DispatchError, shard_for};
use crate::job::{self as pure, FINALIZER, fail, set_phase};
use tracing::Instrument;

/// How often a job waiting for its cluster, pool or inputs is re-checked
/// (watches usually trigger sooner).
pub const WAIT_RECHECK: Duration = Duration::from_secs(15);

/// Run the MpcJob controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let c = ctx.client.clone();
    let (jobs, clusters, pools, secrets) = match &namespace {
        Some(ns) => (
            Api::<MpcJob>::namespaced(c.clone(), ns),
            Api::<MpcCluster>::namespaced(c.clone(), ns),
            Api::<PreprocessingPool>::namespaced(c.clone(), ns),
            Api::<Secret>::namespaced(c.clone(), ns),
        ),
        None => (Api::all(c.clone()), Api::all(c.clone()), Api::all(c.clone()), Api::all(c.clone())),
    };
    let controller = Controller::new(jobs, watcher::Config::default());
    let (by_cluster, by_pool) = (controller.store(), controller.store());
    let labelled = watcher::Config::default()
        .labels(&format!("app.kubernetes.io/managed-by={}", crate::cluster::desired::MANAGED_BY));
    let stream = controller
        .owns(secrets, labelled)
        .watches(clusters, watcher::Config::default(), move |cluster| {
            waiting_jobs(&by_cluster, cluster.namespace(), |j| j.spec.cluster_ref.name == cluster.name_any())
        })
        .watches(pools, watcher::Config::default(), move |pool| {
            waiting_jobs(&by_pool, pool.namespace(), |j| {
                j.spec.preprocessing.as_ref().is_some_and(|p| p.pool_ref.name == pool.name_any())
            })
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, super::error_policy, ctx);
    super::drain("MpcJob", stream).await;
}

/// Unfinished jobs in `ns` matching `pred`.
fn waiting_jobs(store: &Store<MpcJob>, ns: Option<String>, pred: impl Fn(&MpcJob) -> bool) -> Vec<ObjectRef<MpcJob>> {
    store
        .state()
        .iter()
        .filter(|j| j.namespace() == ns && pred(j))
        .filter(|j| !j.status.as_ref().and_then(|s| s.phase).is_some_and(JobPhase::is_finished))
        .map(|j| ObjectRef::from_obj(j.as_ref()))
        .collect()
}

/// Reconcile one MpcJob (through the finalizer helper).
pub async fn reconcile(obj: Arc<MpcJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = super::reconcile_span(obj.as_ref());
    reconcile_traced(obj, ctx).instrument(span).await
}

async fn reconcile_traced(obj: Arc<MpcJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns =
        obj.namespace().ok_or(Error::Incomplete { object: object_key(obj.as_ref()), field: "metadata.namespace" })?;
    let api: Api<MpcJob> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, obj.clone(), |event| async {
        match event {
            Finalizer::Apply(job) => apply_job(&job, &ctx, &ns).await,
            Finalizer::Cleanup(job) => cleanup(&job, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.reconciled("MpcJob", started.elapsed());
    match &result {
        Ok(_) => ctx.reset_backoff(&object_key(obj.as_ref())),
        Err(e) => ctx.event(obj.as_ref(), EventType::Warning, e.reason(), "Reconcile", e.to_string()).await,
    }
    result
}

async fn apply_job(cached: &MpcJob, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let api: Api<MpcJob> = Api::namespaced(ctx.client.clone(), ns);
    // Work from the stored object, not the watch cache: a reconcile queued
    // before this operator's last status write reached the cache must not
    // redo (and re-announce) what that write recorded.
    let name = cached.name_any();
    let Some(job) = api.get_opt(&name).await.map_err(|e| Error::kube(format!("read MpcJob {name}"), e))? else {
        return Ok(Action::await_change());
    };
    let job = &job;
    let old = job.status.as_ref();
    let mut status = old.cloned().unwrap_or_default();
    let now_time = now();
    if status.phase.is_some_and(JobPhase::is_finished) {
        return expire(job, ctx, &api, &status).await;
    }
    let before = status.phase;
    let action = step(job, ctx, ns, &mut status, &now_time).await?;
    write_status(&api, job, old, &status).await?;
    if status.phase != before {
        announce(job, ctx, &status).await;
    }
    Ok(action)
}

/// An event for each phase a job enters.
async fn announce(job: &MpcJob, ctx: &Context, status: &MpcJobStatus) {
    let reason = status.reason.clone().unwrap_or_default();
    let (type_, note) = match status.phase {
        Some(JobPhase::Failed) => {
            ctx.metrics.job_finished("failed");
            (EventType::Warning, status.failure.as_ref().map(|f| f.message.clone()).unwrap_or_default())
        }
        Some(JobPhase::Succeeded) => {
            ctx.metrics.job_finished("succeeded");
            (EventType::Normal, "the result is stored".to_string())
        }
        Some(p) => (EventType::Normal, format!("{p:?}")),
        None => return,
    };
    ctx.event(job, type_, &reason, "Run", note).await;
}

/// Waiting for something outside the job: phase Waiting with `reason`.
fn waiting(status: &mut MpcJobStatus, reason: &str, message: &str, generation: Option<i64>, now: &Time) -> Action {
    set_phase(status, JobPhase::Waiting, reason, message, generation, now);
    Action::requeue(WAIT_RECHECK)
}

fn failed(
    status: &mut MpcJobStatus,
    reason: &str,
    step: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Action {
    let failure = JobFailure { party: None, step: Some(step.into()), message };
    fail(status, reason, failure, generation, now);
    Action::await_change()
}

async fn step(job: &MpcJob, ctx: &Context, ns: &str, status: &mut MpcJobStatus, now: &Time) -> Result<Action, Error> {
    let generation = job.metadata.generation;
    let spec = &job.spec;
    status.program_hash = Some(cohort_crds::program_hash(&spec.program));
    if status.phase.is_none() {
        set_phase(status, JobPhase::Pending, "Accepted", "", generation, now);
    }

    // The cluster.
    let clusters: Api<MpcCluster> = Api::namespaced(ctx.client.clone(), ns);
    let cluster_name = &spec.cluster_ref.name;
    let cluster_obj =
        clusters.get_opt(cluster_name).await.map_err(|e| Error::kube(format!("read MpcCluster {cluster_name}"), e))?;
    let Some(cluster_obj) = cluster_obj else {
        return Ok(waiting(
            status,
            "ClusterNotFound",
            &format!("MpcCluster {cluster_name} does not exist"),
            generation,
            now,
        ));
    };
    let cluster = match Cluster::from_resource(&cluster_obj) {
        Ok(c) => c,
        Err(e) => {
            return Ok(waiting(status, "ClusterInvalid", &format!("MpcCluster {cluster_name}: {e}"), generation, now));
        }
    };
    let federation = &cluster.spec.federation;
    let party = cluster.spec.self_.as_str();
    let parties: Vec<String> = cluster.spec.parties.iter().map(|p| p.name.clone()).collect();
    let job_id = job.job_id(federation).ok_or(Error::Incomplete { object: object_key(job), field: "metadata.name" })?;
    status.job_id = Some(job_id.clone());

    // A job already submitted is followed where it runs.
    if status.phase == Some(JobPhase::Running)
        && let Some(action) = follow(job, ctx, ns, &cluster, status, now).await?
    {
        return Ok(action);
    }

    // A protocol without material (replicated-3) runs no job that names a
    // pool: refused before anything is read or dispatched.
    let protocol = cluster.spec.protocol.name;
    if let (false, Some(p)) = (protocol.uses_preprocessing(), &spec.preprocessing) {
        let message = format!(
            "spec.preprocessing names the PreprocessingPool {}, but the MpcCluster {cluster_name} runs {protocol}, \
             which takes no preprocessing material; create the MpcJob without spec.preprocessing",
            p.pool_ref.name
        );
        return Ok(failed(
            status,
            crate::pool::reasons::PROTOCOL_TAKES_NO_PREPROCESSING,
            "preprocessing",
            message,
            generation,
            now,
        ));
    }

    // A result Secret name that is taken fails the job before it runs.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    if let Some(message) = foreign_result_secret(&secrets, job, &pure::result_secret_name(job)).await? {
        return Ok(failed(status, "ResultSecretConflict", "output", message, generation, now));
    }

    // Compile.
    let circuit = match program::compile(&spec.program, &parties) {
        Ok(c) => c,
        Err(e) => {
            let message = format!("line {}, column {}: {}", e.line, e.column, e.message);
            set_condition(
                &mut status.conditions,
                types::PROGRAM_VALID,
                ConditionStatus::False,
                "CompileError",
                &message,
                generation,
                now,
            );
            return Ok(failed(status, "CompileError", "compile", message, generation, now));
        }
    };
    set_condition(&mut status.conditions, types::PROGRAM_VALID, ConditionStatus::True, "Compiled", "", generation, now);

    // Inputs.
    let index = parties.iter().position(|p| p == party).unwrap_or(0);
    let bound: BTreeSet<&str> = spec.inputs.keys().map(String::as_str).collect();
    if let Err(e) = pure::check_bindings(&circuit, party, index, &bound) {
        let message = e.to_string();
        set_condition(
            &mut status.conditions,
            types::INPUTS_RESOLVED,
            ConditionStatus::False,
            "InputsMismatch",
            &message,
            generation,
            now,
        );
        return Ok(failed(status, "InputsMismatch", "inputs", message, generation, now));
    }
    let timeouts = match pure::timeouts(job) {
        Ok(t) => t,
        Err(message) => return Ok(failed(status, "InvalidSpec", "inputs", message, generation, now)),
    };
    let mut inputs = BTreeMap::new();
    for (name, source) in &spec.inputs {
        let origin = pure::origin(ns, source);
        let bytes = match read_input(ctx, ns, source).await? {
            Some(b) => b,
            None => {
                let message = format!("input {name}: {origin} does not exist");
                set_condition(
                    &mut status.conditions,
                    types::INPUTS_RESOLVED,
                    ConditionStatus::False,
                    "InputNotFound",
                    &message,
                    generation,
                    now,
                );
                return Ok(waiting(status, "InputNotFound", &message, generation, now));
            }
        };
        match pure::parse_input(&circuit, name, &origin, source, &bytes) {
            Ok(values) => inputs.insert(name.clone(), values),
            Err(e) => {
                let message = format!("input {name}: {e}");
                set_condition(
                    &mut status.conditions,
                    types::INPUTS_RESOLVED,
                    ConditionStatus::False,
                    "InvalidInput",
                    &message,
                    generation,
                    now,
                );
                return Ok(failed(status, "InvalidInput", "inputs", message, generation, now));
            }
        };
    }
    set_condition(
        &mut status.conditions,
        types::INPUTS_RESOLVED,
        ConditionStatus::True,
        "Resolved",
        "",
        generation,
        now,
    );

    // Cluster (and pool) ready. A job already running goes on: its
    // workers decide whether it can finish.
    let running = status.phase == Some(JobPhase::Running);
    let cluster_ready = cluster_obj.status.as_ref().is_some_and(|s| is_condition_true(&s.conditions, types::READY));
    if !running && !cluster_ready {
        return Ok(waiting(
            status,
            "ClusterNotReady",
            &format!("MpcCluster {cluster_name} is not Ready"),
            generation,
            now,
        ));
    }
    // The mode the workers are told, derived the same way for a first
    // submission and for a resubmission of a running job (the worker lost
    // it, or a peer had no slot): it is bound into the job's consent
    // digest. So the pool is read either way; only a job not yet running
    // waits for it to be Ready (one already running goes on, as above).
    let mut pool_mode = None;
    if let Some(p) = &spec.preprocessing {
        let pools: Api<PreprocessingPool> = Api::namespaced(ctx.client.clone(), ns);
        let pool_name = &p.pool_ref.name;
        match pools
            .get_opt(pool_name)
            .await
            .map_err(|e| Error::kube(format!("read PreprocessingPool {pool_name}"), e))?
        {
            // Nothing runs at the workers now (they do not hold the job, or
            // hold it failed for capacity), so a running job waits too.
            None => {
                return Ok(waiting(
                    status,
                    "PoolNotFound",
                    &format!("PreprocessingPool {pool_name} does not exist"),
                    generation,
                    now,
                ));
            }
            Some(pool)
                if !running
                    && !pool.status.as_ref().is_some_and(|s| is_condition_true(&s.conditions, types::READY)) =>
            {
                return Ok(waiting(
                    status,
                    "PoolNotReady",
                    &format!("PreprocessingPool {pool_name} is not Ready"),
                    generation,
                    now,
                ));
            }
            Some(pool) => pool_mode = Some(pool.spec.generator.mode),
        }
    }
    let preprocessing = pure::preprocessing_mode(protocol, pool_mode);

    // Submit (idempotent) to the shard chosen once, and observe.
    let shard =
        status.shard.and_then(|s| usize::try_from(s).ok()).unwrap_or_else(|| shard_for(&job_id, cluster.shards));
    status.shard = i32::try_from(shard).ok();
    let dispatcher = dispatcher(ctx, ns, &cluster).await?;
    let endpoint = (ctx.control_endpoints)(&ShardRef { namespace: ns, cluster: cluster.name, party, shard });
    let request = dispatch::Job { id: job_id, program: spec.program.clone(), parties, inputs, timeouts, preprocessing };
    let worker = match dispatcher.submit(&endpoint, &request).await {
        Ok(w) => w,
        Err(DispatchError::Conflict { .. }) => {
            let message = "the workers already hold a different job with this id (reused name or spec.jobId, or the parties' programs differ)".to_string();
            return Ok(failed(status, "JobIdConflict", "submit", message, generation, now));
        }
        Err(e @ DispatchError::Unavailable { .. }) => {
            set_phase(
                status,
                status.phase.unwrap_or(JobPhase::Waiting),
                "WorkersBusy",
                &e.to_string(),
                generation,
                now,
            );
            return Ok(Action::requeue(ctx.job_poll.max(Duration::from_secs(5))));
        }
        Err(e) => return Err(e.into()),
    };
    observe(job, ctx, ns, status, &worker, party, now).await
}

/// A job already submitted: ask its shard for its status, without
/// re-reading inputs or recompiling (they may have changed or gone since;
/// the workers hold what was submitted). `None`: the worker does not know
/// the job, so it must be submitted again.
async fn follow(
    job: &MpcJob,
    ctx: &Context,
    ns: &str,
    cluster: &Cluster<'_>,
    status: &mut MpcJobStatus,
    now: &Time,
) -> Result<Option<Action>, Error> {
    let (Some(id), Some(shard)) = (status.job_id.clone(), status.shard.and_then(|s| usize::try_from(s).ok())) else {
        return Ok(None);
    };
    let party = cluster.spec.self_.as_str();
    let dispatcher = dispatcher(ctx, ns, cluster).await?;
    let endpoint = (ctx.control_endpoints)(&ShardRef { namespace: ns, cluster: cluster.name, party, shard });
    match dispatcher.status(&endpoint, &id).await {
        // A peer had no slot and nothing ran: submit the same job again
        // (docs/worker.md, "Admission and retries").
        Ok(worker) if worker.is_retryable() => Ok(None),
        Ok(worker) => observe(job, ctx, ns, status, &worker, party, now).await.map(Some),
        Err(DispatchError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Fold the worker's status in; once it succeeded, store the result
/// Secret first.
async fn observe(
    job: &MpcJob,
    ctx: &Context,
    ns: &str,
    status: &mut MpcJobStatus,
    worker: &cohort_worker::service::api::JobStatus,
    party: &str,
    now: &Time,
) -> Result<Action, Error> {
    let generation = job.metadata.generation;
    let secret_name = pure::result_secret_name(job);
    let mut stored = false;
    if worker.phase == Phase::Succeeded {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
        if let Some(message) = foreign_result_secret(&secrets, job, &secret_name).await? {
            return Ok(failed(status, "ResultSecretConflict", "output", message, generation, now));
        }
        apply(&secrets, &pure::result_secret(job, worker)).await?;
        stored = true;
    }
    let phase = pure::observe_worker(status, worker, party, &secret_name, stored, generation, now);
    Ok(if phase.is_finished() { ttl_action(job, status) } else { Action::requeue(ctx.job_poll) })
}

/// Why the result Secret's name is taken, when it is: a Secret that exists
/// and is not controlled by this MpcJob (a user's Secret, another job's
/// result) is never overwritten, adopted or deleted with the job.
async fn foreign_result_secret(api: &Api<Secret>, job: &MpcJob, name: &str) -> Result<Option<String>, Error> {
    let Some(existing) = api.get_opt(name).await.map_err(|e| Error::kube(format!("read Secret {name}"), e))? else {
        return Ok(None);
    };
    let ours = existing
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == job.metadata.uid.as_ref());
    Ok((!ours).then(|| {
        format!(
            "Secret {name} exists and is not this job's result Secret; set spec.outputs.secretName to an unused \
             name (the result stays on the workers)"
        )
    }))
}

/// The bytes of an input's Secret or ConfigMap key; `None` when the
/// object or key does not exist.
async fn read_input(ctx: &Context, ns: &str, source: &cohort_crds::job::InputSource) -> Result<Option<Vec<u8>>, Error> {
    if let Some(r) = &source.secret_key_ref {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
        let s = api.get_opt(&r.name).await.map_err(|e| Error::kube(format!("read Secret {}", r.name), e))?;
        return Ok(s.and_then(|s| s.data).and_then(|mut d| d.remove(&r.key)).map(|b| b.0));
    }
    if let Some(r) = &source.config_map_key_ref {
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        let c = api.get_opt(&r.name).await.map_err(|e| Error::kube(format!("read ConfigMap {}", r.name), e))?;
        let Some(c) = c else { return Ok(None) };
        if let Some(v) = c.data.as_ref().and_then(|d| d.get(&r.key)) {
            return Ok(Some(v.clone().into_bytes()));
        }
        return Ok(c.binary_data.and_then(|mut d| d.remove(&r.key)).map(|b| b.0));
    }
    Ok(None)
}

/// A dispatcher with the operator's control-API client certificate from
/// `<cluster>-operator-client` (`tls.crt`, `tls.key`, and `ca.crt`, the
/// party CA that issued the workers' certificates).
/// After a finished job: requeue for its TTL, or wait for changes.
fn ttl_action(job: &MpcJob, status: &MpcJobStatus) -> Action {
    match (job.spec.ttl_seconds_after_finished, &status.completion_time) {
        (Some(ttl), Some(done)) => {
            let deadline = done.0.as_second() + i64::from(ttl);
            let left = deadline - jiff::Timestamp::now().as_second();
            Action::requeue(Duration::from_secs(left.clamp(1, 3600) as u64))
        }
        _ => Action::await_change(),
    }
}

/// A finished job: delete it once its TTL has passed.
async fn expire(job: &MpcJob, ctx: &Context, api: &Api<MpcJob>, status: &MpcJobStatus) -> Result<Action, Error> {
    let (Some(ttl), Some(done)) = (job.spec.ttl_seconds_after_finished, &status.completion_time) else {
        return Ok(Action::await_change());
    };
    if jiff::Timestamp::now().as_second() < done.0.as_second() + i64::from(ttl) {
        return Ok(ttl_action(job, status));
    }
    let name = job.name_any();
    ctx.event(job, EventType::Normal, "Expired", "Delete", format!("deleting {ttl}s after the job finished")).await;
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(Error::kube(format!("delete MpcJob {name}"), e)),
    }
}

/// Deleting an unfinished job: cancel it on the workers, best-effort.
async fn cleanup(job: &MpcJob, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let status = job.status.clone().unwrap_or_default();
    let (false, Some(id)) = (status.phase.is_some_and(JobPhase::is_finished), status.job_id.clone()) else {
        return Ok(Action::await_change());
    };
    let clusters: Api<MpcCluster> = Api::namespaced(ctx.client.clone(), ns);
    let name = &job.spec.cluster_ref.name;
    let Some(cluster_obj) =
        clusters.get_opt(name).await.map_err(|e| Error::kube(format!("read MpcCluster {name}"), e))?
    else {
        return Ok(Action::await_change());
    };
    let Ok(cluster) = Cluster::from_resource(&cluster_obj) else { return Ok(Action::await_change()) };
    let outcome = match dispatcher(ctx, ns, &cluster).await {
        Ok(d) => {
            let endpoint = (ctx.control_endpoints)(&ShardRef {
                namespace: ns,
                cluster: cluster.name,
                party: &cluster.spec.self_,
                shard: status
                    .shard
                    .and_then(|s| usize::try_from(s).ok())
                    .unwrap_or_else(|| shard_for(&id, cluster.shards)),
            });
            match d.cancel(&endpoint, &id).await {
                // It was running there and is now cancelled: count it.
                Ok(worker) if worker.phase == Phase::Cancelled => {
                    ctx.metrics.job_finished("cancelled");
                    Ok(())
                }
                // Finished already, or never reached this worker: nothing to cancel.
                Ok(_) | Err(DispatchError::NotFound { .. }) => Ok(()),
                Err(e) => Err(Error::from(e)),
            }
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => {
            ctx.event(job, EventType::Normal, "Cancelled", "Delete", "cancelled on this party's workers".into()).await
        }
        Err(e) => {
            let note = format!("could not cancel the job on the workers ({e}); its timeouts end it there");
            ctx.event(job, EventType::Warning, "CancelFailed", "Delete", note).await;
        }
    }
    Ok(Action::await_change())
}
