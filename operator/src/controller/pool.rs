//! The PreprocessingPool controller.
//!
//! Pipeline: read the MpcCluster the pool names → validate the pool against
//! it ([`Pool::from_resource`]) → for a hosted dealer: read the party CA and
//! the cluster's trust ConfigMap, plan and issue the dealer's certificate,
//! build the dealer's objects ([`desired::build`]) and apply them (the
//! certificate Secret first) → status from the applied StatefulSet
//! ([`status::status`]). A remote dealer owns nothing: objects left from a
//! hosted configuration are deleted. A pool of a cluster whose protocol
//! takes no material (`replicated-3`) is refused
//! (`ProtocolTakesNoPreprocessing`) and its hosted objects deleted.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cohort_crds::conditions::{ConditionStatus, find_condition, set_condition, types};
use cohort_crds::pool::PreprocessingPoolStatus;
use cohort_crds::{MpcCluster, PreprocessingPool};
use cohort_worker::transport::certs::{CertifiedKey, PartyCa};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{Context, Error, apply, now, object_key, write_status};
use crate::cluster;
use crate::pool::desired::{self, Material};
use crate::pool::status::{self, DealerObserved};
use crate::pool::{self as pure, Pool, certs};
use tracing::Instrument;

/// Re-check at least this often (certificate renewal, a cluster that was
/// not ready).
pub const RESYNC: Duration = Duration::from_secs(120);

/// Run the PreprocessingPool controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let c = ctx.client.clone();
    let (pools, clusters, sets, maps) = match &namespace {
        Some(ns) => (
            Api::<PreprocessingPool>::namespaced(c.clone(), ns),
            Api::<MpcCluster>::namespaced(c.clone(), ns),
            Api::<StatefulSet>::namespaced(c.clone(), ns),
            Api::<ConfigMap>::namespaced(c.clone(), ns),
        ),
        None => (Api::all(c.clone()), Api::all(c.clone()), Api::all(c.clone()), Api::all(c.clone())),
    };
    let labelled =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={}", cluster::desired::MANAGED_BY));
    let controller = Controller::new(pools, watcher::Config::default());
    let (by_cluster, by_trust) = (controller.store(), controller.store());
    let stream = controller
        .owns(sets, labelled.clone())
        .watches(clusters, watcher::Config::default(), move |c| pools_of(&by_cluster, c.namespace(), &c.name_any()))
        // The trust ConfigMap (owned by the MpcCluster) lists every
        // party's CA, which the dealer pins each party to.
        .watches(maps, labelled, move |cm| {
            let name = cm.name_any();
            match name.strip_suffix("-trust") {
                Some(cluster) => pools_of(&by_trust, cm.namespace(), cluster),
                None => Vec::new(),
            }
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, super::error_policy, ctx);
    super::drain("PreprocessingPool", stream).await;
}

fn pools_of(store: &Store<PreprocessingPool>, ns: Option<String>, cluster: &str) -> Vec<ObjectRef<PreprocessingPool>> {
    store
        .state()
        .iter()
        .filter(|p| p.namespace() == ns && p.spec.cluster_ref.name == cluster)
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Reconcile one PreprocessingPool.
pub async fn reconcile(obj: Arc<PreprocessingPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = super::reconcile_span(obj.as_ref());
    reconcile_traced(obj, ctx).instrument(span).await
}

async fn reconcile_traced(obj: Arc<PreprocessingPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&obj, &ctx).await;
    ctx.metrics.reconciled("PreprocessingPool", started.elapsed());
    match &result {
        Ok(_) => ctx.reset_backoff(&object_key(obj.as_ref())),
        Err(e) => ctx.event(obj.as_ref(), EventType::Warning, e.reason(), "Reconcile", e.to_string()).await,
    }
    result
}

async fn reconcile_inner(obj: &PreprocessingPool, ctx: &Context) -> Result<Action, Error> {
    let ns = obj.namespace().ok_or(Error::Incomplete { object: object_key(obj), field: "metadata.namespace" })?;
    let pools: Api<PreprocessingPool> = Api::namespaced(ctx.client.clone(), &ns);
    let old = obj.status.as_ref();
    let now_time = now();

    let cluster_name = &obj.spec.cluster_ref.name;
    let clusters: Api<MpcCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let cluster_obj =
        clusters.get_opt(cluster_name).await.map_err(|e| Error::kube(format!("read MpcCluster {cluster_name}"), e))?;
    let Some(cluster_obj) = cluster_obj else {
        let mut s = old.cloned().unwrap_or_default();
        let message = format!("MpcCluster {cluster_name} (spec.clusterRef) does not exist");
        let generation = obj.metadata.generation;
        set_condition(
            &mut s.conditions,
            types::READY,
            ConditionStatus::False,
            "ClusterNotFound",
            &message,
            generation,
            &now_time,
        );
        set_condition(
            &mut s.conditions,
            types::DEGRADED,
            ConditionStatus::True,
            "ClusterNotFound",
            &message,
            generation,
            &now_time,
        );
        s.observed_generation = generation;
        record(ctx, obj, &s);
        write_status(&pools, obj, old, &s).await?;
        return Ok(Action::requeue(RESYNC));
    };

    let checked = Pool::from_resource(obj, &cluster_obj);
    let no_workers = Vec::new();
    let (status, action) = match &checked {
        Err(e @ pure::Error::ProtocolTakesNoPreprocessing { .. }) => {
            // Nothing to generate: a dealer hosted before the cluster's
            // protocol changed goes too.
            remove_hosted(ctx, &ns, pure::Names::of(&obj.name_any()), &obj.uid().unwrap_or_default()).await?;
            (status::status(obj, Err(e), None, &no_workers, &now_time), Action::await_change())
        }
        Err(e) => (status::status(obj, Err(e), None, &no_workers, &now_time), Action::await_change()),
        Ok(pool) if pool.dealer.is_none() => {
            // Mode ot: the cluster's workers generate and keep the
            // material (the MpcCluster controller gives them the pool's
            // settings); this pool reports what they hold.
            remove_hosted_objects(ctx, &ns, pool).await?;
            let workers = observe_workers(ctx, &ns, pool).await;
            (status::status(obj, Ok(pool), None, &workers, &now_time), Action::requeue(OT_POLL))
        }
        Ok(pool) if pool.hosted_dealer().is_none() => {
            remove_hosted_objects(ctx, &ns, pool).await?;
            (status::status(obj, Ok(pool), None, &no_workers, &now_time), Action::await_change())
        }
        Ok(pool) => match hosted(ctx, obj, &ns, pool, &cluster_obj).await? {
            Ok((observed, next_renewal)) => {
                let wait = next_renewal
                    .and_then(|t| t.duration_since(SystemTime::now()).ok())
                    .map_or(RESYNC, |d| d.clamp(Duration::from_secs(1), RESYNC));
                (status::status(obj, Ok(pool), Some(observed), &no_workers, &now_time), Action::requeue(wait))
            }
            Err(e) => {
                let warning = (e.reason(), e.to_string());
                let status = status::status(obj, Err(&e), None, &no_workers, &now_time);
                record(ctx, obj, &status);
                // Warn when the problem appears (the status changes), not
                // on every retry.
                if write_status(&pools, obj, old, &status).await? {
                    ctx.event(obj, EventType::Warning, warning.0, "Reconcile", warning.1).await;
                }
                return Ok(Action::requeue(Duration::from_secs(15)));
            }
        },
    };
    record(ctx, obj, &status);
    if write_status(&pools, obj, old, &status).await?
        && let Err(e) = &checked
    {
        ctx.event(obj, EventType::Warning, e.reason(), "Validate", e.to_string()).await;
    }
    Ok(action)
}

/// How often an `ot` pool's stock is read from the workers.
pub const OT_POLL: Duration = Duration::from_secs(30);

/// Every worker shard's pool (`GET /v1/pool`), in shard order.
async fn observe_workers(ctx: &Context, ns: &str, pool: &Pool<'_>) -> status::WorkersObserved {
    let cluster = &pool.cluster;
    let dispatcher = match super::dispatcher(ctx, ns, cluster).await {
        Ok(d) => d,
        Err(e) => return vec![Err(format!("no control-API client yet: {e}")); cluster.shards],
    };
    let mut observed = Vec::with_capacity(cluster.shards);
    for shard in 0..cluster.shards {
        let endpoint = (ctx.control_endpoints)(&super::ShardRef {
            namespace: ns,
            cluster: cluster.name,
            party: &cluster.spec.self_,
            shard,
        });
        observed.push(dispatcher.pool(&endpoint).await.map_err(|e| e.to_string()));
    }
    observed
}

/// The pool's `Ready` and `BelowWatermark` conditions as gauges.
fn record(ctx: &Context, obj: &PreprocessingPool, status: &PreprocessingPoolStatus) {
    let is_true = |t: &str| find_condition(&status.conditions, t).is_some_and(|c| c.status == "True");
    let (ns, name, uid) = (obj.namespace().unwrap_or_default(), obj.name_any(), obj.uid().unwrap_or_default());
    let me = crate::metrics::Object { namespace: &ns, name: &name, uid: &uid };
    ctx.metrics.pool(me, is_true(types::READY), is_true(types::BELOW_WATERMARK));
}

/// Issue, build and apply a hosted dealer's objects. `Ok(Err(_))`: the
/// material is not there yet (a condition, not an error).
async fn hosted(
    ctx: &Context,
    obj: &PreprocessingPool,
    ns: &str,
    pool: &Pool<'_>,
    cluster_obj: &MpcCluster,
) -> Result<Result<(DealerObserved, Option<SystemTime>), pure::Error>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let cluster = &pool.cluster;
    let names = cluster.names();
    // The party CA: the operator's `<cluster>-ca`, or the user's.
    let ca_secret = cluster_obj.spec.tls.ca.as_ref().map_or_else(|| names.ca_secret(), |ca| ca.secret_ref.name.clone());
    let unavailable =
        |what: String, reason: &str| pure::Error::Build(cluster::Error::Material { what, reason: reason.to_string() });
    let Some(ca) = read_key_pair(&secrets, &ca_secret).await? else {
        return Ok(Err(unavailable(format!("the party CA (Secret {ca_secret})"), "not found yet")));
    };
    let trust_name = names.trust_config_map();
    let trust = maps.get_opt(&trust_name).await.map_err(|e| Error::kube(format!("read ConfigMap {trust_name}"), e))?;
    let Some(trust) = trust.and_then(|t| t.data) else {
        return Ok(Err(unavailable(format!("ConfigMap {trust_name}"), "not found yet")));
    };

    let req = match certs::Requirements::from_pool(pool) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let wall = SystemTime::now();
    let stored = read_key_pair(&secrets, &pool.names().tls_secret()).await?;
    let plan = match certs::plan(&req, &ca.cert_pem, stored.as_ref().map(|k| k.cert_pem.as_str()), wall) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let (dealer, next_renewal) = match (plan.issue, stored) {
        (None, Some(kept)) => (kept, plan.next_renewal),
        (reason, _) => {
            let party_ca =
                match PartyCa::from_pem(&cluster.spec.federation, &cluster.spec.self_, &ca.cert_pem, &ca.key_pem) {
                    Ok(c) => c,
                    Err(e) => {
                        return Ok(Err(unavailable(format!("the party CA (Secret {ca_secret})"), &e.to_string())));
                    }
                };
            let issued = match certs::issue(&req, &party_ca, wall) {
                Ok(k) => k,
                Err(e) => return Ok(Err(e)),
            };
            let why = reason.map_or_else(|| "missing".to_string(), |r| r.to_string());
            ctx.event(
                obj,
                EventType::Normal,
                "CertificateIssued",
                "IssueCertificates",
                format!("issued the dealer certificate: {why}"),
            )
            .await;
            (issued, wall.checked_add(req.lifetime.saturating_sub(req.renew_before)))
        }
    };
    let desired = match desired::build(pool, &Material { dealer, trust }, &ctx.settings) {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    apply(&secrets, &desired.tls_secret).await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    for svc in desired.services() {
        apply(&services, svc).await?;
    }
    apply(&Api::<NetworkPolicy>::namespaced(ctx.client.clone(), ns), &desired.network_policy).await?;
    let applied = apply(&Api::<StatefulSet>::namespaced(ctx.client.clone(), ns), &desired.stateful_set).await?;
    Ok(Ok((DealerObserved::from_stateful_set(&applied), next_renewal)))
}

/// `tls.crt` and `tls.key` of a Secret; `None` when either is missing.
async fn read_key_pair(api: &Api<Secret>, name: &str) -> Result<Option<CertifiedKey>, Error> {
    let secret = api.get_opt(name).await.map_err(|e| Error::kube(format!("read Secret {name}"), e))?;
    let text = |s: &Secret, key: &str| {
        s.data.as_ref().and_then(|d| d.get(key)).and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Ok(secret.and_then(|s| Some(CertifiedKey { cert_pem: text(&s, "tls.crt")?, key_pem: text(&s, "tls.key")? })))
}

/// A pool switched to a remote dealer: delete what it hosted (the journal's
/// volume claim is kept on purpose, see `docs/dealer.md`).
async fn remove_hosted_objects(ctx: &Context, ns: &str, pool: &Pool<'_>) -> Result<(), Error> {
    remove_hosted(ctx, ns, pool.names(), pool.uid).await
}

/// Delete the hosted dealer's objects named by `n` that `uid` owns.
async fn remove_hosted(ctx: &Context, ns: &str, n: pure::Names<'_>, uid: &str) -> Result<(), Error> {
    if uid.is_empty() {
        return Ok(());
    }
    delete_owned::<StatefulSet>(ctx, ns, &n.stateful_set(), uid).await?;
    delete_owned::<Service>(ctx, ns, &n.service(), uid).await?;
    delete_owned::<Service>(ctx, ns, &n.headless_service(), uid).await?;
    delete_owned::<NetworkPolicy>(ctx, ns, &n.network_policy(), uid).await?;
    delete_owned::<Secret>(ctx, ns, &n.tls_secret(), uid).await
}

/// Delete `name` if it exists and `uid` owns it.
async fn delete_owned<K>(ctx: &Context, ns: &str, name: &str, uid: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let kind = K::kind(&());
    let Some(found) = api.get_opt(name).await.map_err(|e| Error::kube(format!("read {kind} {name}"), e))? else {
        return Ok(());
    };
    if !found.owner_references().iter().any(|o| o.uid == uid) {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("delete {kind} {name}"), e)),
    }
}
