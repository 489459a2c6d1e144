//! The controllers: kube-runtime reconcilers for the three kinds, and what
//! they share.
//!
//! Every reconcile is the same pipeline: resolve references → validate →
//! build the desired objects with pure functions (`crate::cluster`,
//! `crate::pool`) → apply them with server-side apply under one field
//! manager ([`FIELD_MANAGER`]) → compute status from what was applied and
//! write it only when it changed ([`write_status`]).
//!
//! Expected trouble — an invalid spec, a Secret that is not there yet, a
//! cluster that is not ready — becomes a condition with a reason and a
//! requeue, never an error. Errors are what the operator cannot explain to
//! the user (the API server failing, a worker unreachable): they emit a
//! Warning event, count in `cohort_operator_reconcile_errors_total`, and
//! requeue with per-object exponential backoff ([`Context::backoff`]).
//!
//! - [`cluster`]: MpcCluster → certificates, configuration, Services,
//!   worker StatefulSet, PDB, NetworkPolicy; status from the StatefulSet,
//!   the certificates and peer probes.
//! - [`job`]: MpcJob → compile, resolve inputs, wait for the cluster,
//!   dispatch through the control API, store outputs, then `Succeeded`.
//! - [`pool`]: PreprocessingPool → the dealer (when this cluster hosts it).

pub mod cluster;
pub mod job;
pub mod pool;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::Cluster;
use crate::cluster::certs::operator_principal;
use crate::cluster::desired::Settings;
use crate::dispatch::Dispatcher;
use crate::metrics::{Metrics, ObjectKind};
use cohort_worker::transport::TlsIdentity;
use k8s_openapi::api::core::v1::Secret;

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "cohort-operator";

/// The shortest and longest wait before retrying a failed reconcile.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How the operator reaches a shard's control API. In a cluster that is
/// the pod's stable DNS name through the headless Service; tests running
/// real workers on loopback resolve it to their ports.
pub type ControlEndpoints = Arc<dyn Fn(&ShardRef<'_>) -> String + Send + Sync>;

/// One worker shard, as [`ControlEndpoints`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct ShardRef<'a> {
    pub namespace: &'a str,
    pub cluster: &'a str,
    pub party: &'a str,
    pub shard: usize,
}

/// The in-cluster control endpoint: `<pod>.<headless>.<ns>.svc:<port>`.
pub fn cluster_dns_endpoints() -> ControlEndpoints {
    Arc::new(|s: &ShardRef<'_>| crate::cluster::Names::of(s.cluster).control_endpoint(s.namespace, s.shard))
}

/// What every reconcile gets.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub control_endpoints: ControlEndpoints,
    /// How often a running job's status is polled.
    pub job_poll: Duration,
    /// How often an MpcCluster is reconciled while its workers roll out
    /// (a draining shard's jobs, a replaced shard's health).
    pub rollout_poll: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        control_endpoints: ControlEndpoints,
    ) -> Context {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            control_endpoints,
            job_poll: Duration::from_secs(2),
            rollout_poll: Duration::from_secs(5),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The wait before retrying `key` after its n-th consecutive failure:
    /// 1s, 2s, 4s … capped at [`BACKOFF_MAX`].
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        let wait = BACKOFF_MIN.saturating_mul(1u32 << (*n).min(16)).min(BACKOFF_MAX);
        *n = n.saturating_add(1);
        wait
    }

    /// Forget `key`'s failures after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Publish an event about `obj`. Events are best-effort: failing to
    /// record one is logged, never fails the reconcile.
    pub async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(cohort_crds::common::truncate(&note, 1000).to_string()),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(reason, error = %e, "cannot record an event");
        }
    }
}

/// What a reconcile could not do. Never carries a secret: API errors are
/// reported by code and reason, not the server's message (which can quote
/// a field's value).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Kubernetes API answered {code} ({reason}) to {action}")]
    Api { action: String, code: u16, reason: String },
    #[error("the Kubernetes API cannot be reached to {action}: {detail}")]
    Unreachable { action: String, detail: String },
    #[error("{object} has no {field}")]
    Incomplete { object: String, field: &'static str },
    #[error("{0}")]
    Dispatch(#[from] crate::dispatch::DispatchError),
    #[error("{0}")]
    Finalizer(String),
}

impl Error {
    /// Wrap a kube error with what was being done.
    pub fn kube(action: impl Into<String>, e: kube::Error) -> Error {
        let action = action.into();
        match e {
            kube::Error::Api(s) => Error::Api { action, code: s.code, reason: s.reason.clone() },
            other => Error::Unreachable { action, detail: describe_kube_error(&other) },
        }
    }

    /// The reason word for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Api { .. } => "ApiError",
            Error::Unreachable { .. } => "ApiUnreachable",
            Error::Incomplete { .. } => "Incomplete",
            Error::Dispatch(_) => "WorkerUnreachable",
            Error::Finalizer(_) => "FinalizerError",
        }
    }

    /// Every word [`Error::reason`] returns (the operator's metrics start
    /// each at 0).
    pub const REASONS: [&'static str; 5] =
        ["ApiError", "ApiUnreachable", "Incomplete", "WorkerUnreachable", "FinalizerError"];

    /// Whether the API server said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { code: 404, .. })
    }
}

/// A kube client error in a few words: the kind of failure without bodies
/// the server sent.
fn describe_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::HyperError(_) | kube::Error::Service(_) => "connection failed".into(),
        kube::Error::SerdeError(_) => "an answer could not be parsed".into(),
        other => cohort_crds::common::truncate(&other.to_string(), 200).to_string(),
    }
}

/// Server-side apply `obj` (which names itself) under [`FIELD_MANAGER`],
/// taking ownership of every field it sets (`force`): the operator is the
/// only intended writer of what it owns, so drift is repaired.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    K::DynamicType: Default,
{
    let name = obj.meta().name.clone().ok_or_else(|| Error::Incomplete {
        object: K::kind(&K::DynamicType::default()).into_owned(),
        field: "metadata.name",
    })?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(obj))
        .await
        .map_err(|e| Error::kube(format!("apply {} {name}", K::kind(&K::DynamicType::default())), e))
}

/// Write `status` to `obj` (server-side apply of the status subresource)
/// unless it equals the stored status. Returns whether it wrote.
pub async fn write_status<K, S>(api: &Api<K>, obj: &K, old: Option<&S>, status: &S) -> Result<bool, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    S: Serialize + PartialEq,
{
    if old == Some(status) {
        return Ok(false);
    }
    let name = obj.name_any();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&name, &params, &Patch::Apply(&patch))
        .await
        .map_err(|e| Error::kube(format!("write the status of {} {name}", K::kind(&())), e))?;
    Ok(true)
}

/// Delete the objects matching `selector` that `owner_uid` owns and whose
/// names are not in `keep` (what a smaller spec no longer wants).
pub async fn prune<K>(
    api: &Api<K>,
    selector: &str,
    owner_uid: &str,
    keep: &std::collections::BTreeSet<String>,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let kind = K::kind(&());
    let found = api
        .list(&kube::api::ListParams::default().labels(selector))
        .await
        .map_err(|e| Error::kube(format!("list {kind} ({selector})"), e))?;
    for obj in found {
        let name = obj.name_any();
        let owned = obj.owner_references().iter().any(|o| o.uid == owner_uid);
        if !owned || keep.contains(&name) {
            continue;
        }
        match api.delete(&name, &kube::api::DeleteParams::background()).await {
            Ok(_) => tracing::info!(kind = %kind, name = %name, "pruned an object the spec no longer wants"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("delete {kind} {name}"), e)),
        }
    }
    Ok(())
}

/// `now` as a Kubernetes time (second precision, as the API stores it, so
/// a status computed twice in the same second compares equal).
pub fn now() -> Time {
    let secs = jiff::Timestamp::now().as_second();
    Time(jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// Run every controller until `stop` turns true.
pub async fn run_all(ctx: Arc<Context>, namespace: Option<String>, stop: tokio::sync::watch::Receiver<bool>) {
    use crate::leader::stopped;
    type Meta<K> = kube::core::PartialObjectMeta<K>;
    let api = |c: &Client| match &namespace {
        Some(ns) => (Api::<Meta<cohort_crds::MpcCluster>>::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns)),
        None => (Api::all(c.clone()), Api::<Meta<cohort_crds::PreprocessingPool>>::all(c.clone())),
    };
    let (clusters, pools) = api(&ctx.client);
    tokio::join!(
        cluster::run(ctx.clone(), namespace.clone(), stopped(stop.clone())),
        job::run(ctx.clone(), namespace.clone(), stopped(stop.clone())),
        pool::run(ctx.clone(), namespace.clone(), stopped(stop.clone())),
        forget_deleted(clusters, ObjectKind::MpcCluster, ctx.metrics.clone(), stopped(stop.clone())),
        forget_deleted(pools, ObjectKind::PreprocessingPool, ctx.metrics.clone(), stopped(stop.clone())),
    );
}

/// Drop a deleted object's metrics. kube-runtime's controllers never
/// reconcile an object that is gone (MpcClusters and PreprocessingPools
/// have no finalizer), so a metadata-only watch of the kind does it: a
/// deletion forgets that object, and every (re)list forgets the objects
/// missing from it (deleted while no watch was open).
async fn forget_deleted<K>(
    api: Api<kube::core::PartialObjectMeta<K>>,
    kind: ObjectKind,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::{self, Event as Watched};
    let key = |m: &kube::api::ObjectMeta| (m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default());
    let mut listed = std::collections::BTreeSet::new();
    let events = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let sweep = events.for_each(|event| {
        match event {
            Ok(Watched::Delete(obj)) => {
                let (ns, name) = key(&obj.metadata);
                metrics.forget(kind, &ns, &name, obj.metadata.uid.as_deref());
            }
            Ok(Watched::Init) => listed.clear(),
            Ok(Watched::InitApply(obj)) => {
                listed.insert(key(&obj.metadata));
            }
            Ok(Watched::InitDone) => metrics.retain(kind, &listed),
            Ok(Watched::Apply(_)) => {}
            Err(e) => tracing::debug!(?kind, error = %e, "the metrics' deletion watch restarts"),
        }
        futures::future::ready(())
    });
    tokio::select! {
        () = sweep => {}
        () = stop => {}
    }
}

/// Drive a controller stream to its end, logging each outcome.
pub async fn drain<S, T, E>(kind: &'static str, stream: S)
where
    S: futures::Stream<Item = Result<T, E>>,
    T: Debug,
    E: std::fmt::Display,
{
    stream
        .for_each(|outcome| async move {
            match outcome {
                Ok(o) => tracing::debug!(kind, object = ?o, "reconciled"),
                Err(e) => tracing::warn!(kind, error = %e, "reconcile failed"),
            }
        })
        .await;
}

/// The error policy every controller uses: count, log, back off.
pub fn error_policy<K>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let key = object_key(obj.as_ref());
    let wait = ctx.backoff(&key);
    ctx.metrics.reconcile_error(K::kind(&()).as_ref(), error.reason());
    tracing::warn!(object = %key, error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// The span of one reconcile: the object's kind, namespace, name and
/// generation (dispatch spans, and through them the workers' job spans,
/// are its children).
pub fn reconcile_span<K: Resource<DynamicType = ()>>(obj: &K) -> tracing::Span {
    let meta = obj.meta();
    tracing::info_span!(
        "reconcile",
        kind = %K::kind(&()),
        namespace = meta.namespace.as_deref().unwrap_or(""),
        name = meta.name.as_deref().unwrap_or(""),
        generation = meta.generation.unwrap_or(0),
    )
}

/// `Kind/namespace/name`, for logs and the backoff table.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// The operator's control-API client for `cluster`'s workers (its client
/// certificate from `<cluster>-operator-client`).
pub(crate) async fn dispatcher(ctx: &Context, ns: &str, cluster: &Cluster<'_>) -> Result<Dispatcher, Error> {
    let name = cluster.names().operator_client_secret();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = api.get(&name).await.map_err(|e| Error::kube(format!("read Secret {name}"), e))?;
    let text = |key: &'static str| -> Result<String, Error> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .ok_or(Error::Incomplete { object: format!("Secret {name}"), field: key })
    };
    let (cert, key, ca) = (text("tls.crt")?, zeroize::Zeroizing::new(text("tls.key")?), text("ca.crt")?);
    let party = cluster.spec.self_.clone();
    let identity = TlsIdentity::from_pem_pinned(
        &cluster.spec.federation,
        &operator_principal(),
        &cert,
        &key,
        &[(party.clone(), ca)],
    )
    .map_err(|e| Error::Incomplete { object: format!("Secret {name} ({e})"), field: "a usable client certificate" })?;
    Ok(Dispatcher::new(Arc::new(identity), party, ctx.job_poll))
}
