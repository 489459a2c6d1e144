//! The MpcCluster controller.
//!
//! Pipeline: validate ([`Cluster::from_resource`]) → resolve the referenced
//! Secrets (peers' and dealer's CAs, a user-provided CA) and the owned ones
//! (the CA and leaf certificates issued earlier) → plan and issue
//! certificates ([`certs::plan`], [`certs::issue`]) → build every owned
//! object ([`desired::build`]) → apply them (the CA Secret first: nothing
//! it signed is used before it is stored) → status from the applied
//! StatefulSet, the certificates and a probe of each peer's endpoint.
//!
//! Requeues when the earliest certificate becomes due for renewal, and at
//! least every [`RESYNC`] to re-probe peers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cohort_crds::cluster::{CaRotationPhase, CertificatesStatus, MpcClusterStatus, PeerStatus, RolloutPhase};
use cohort_crds::conditions::{ConditionStatus, find_condition, set_condition, types};
use cohort_crds::pool::GeneratorMode;
use cohort_crds::{MpcCluster, PreprocessingPool};
use cohort_worker::service::control::ControlClient;
use cohort_worker::transport::TlsIdentity;
use cohort_worker::transport::certs::{CertifiedKey, PartyCa};
use futures::future::join_all;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use tracing::Instrument;

use super::{Context, Error, ShardRef, apply, now, object_key, write_status};
use crate::cluster::ca_rotation;
use crate::cluster::certs::{self, Observed, ObservedCa, Plan, Requirements};
use crate::cluster::config::PoolSettings;
use crate::cluster::desired::{self, ANNOTATION_TEMPLATE_HASH, CaMaterial, Material};
use crate::cluster::rollout::{self, ObservedSet, ShardHealth};
use crate::cluster::{Cluster, Endpoint};
use crate::metrics::Object;

/// Re-probe peers and re-check certificates at least this often.
pub const RESYNC: Duration = Duration::from_secs(120);
/// How long one peer probe may take.
pub const PEER_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Run the MpcCluster controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (clusters, secrets) = match &namespace {
        // Secrets are watched as metadata only: the mapping needs names and
        // owners, and the operator keeps no cache of Secret data.
        Some(ns) => (
            Api::<MpcCluster>::namespaced(client.clone(), ns),
            Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns),
        ),
        None => (Api::<MpcCluster>::all(client.clone()), Api::<PartialObjectMeta<Secret>>::all(client.clone())),
    };
    let owned = |c: &kube::Client| -> (Api<StatefulSet>, Api<ConfigMap>, Api<Service>) {
        match &namespace {
            Some(ns) => {
                (Api::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns), Api::namespaced(c.clone(), ns))
            }
            None => (Api::all(c.clone()), Api::all(c.clone()), Api::all(c.clone())),
        }
    };
    let (sets, maps, services) = owned(&client);
    let labelled = watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={}", desired::MANAGED_BY));
    let pools = match &namespace {
        Some(ns) => Api::<PreprocessingPool>::namespaced(client.clone(), ns),
        None => Api::<PreprocessingPool>::all(client.clone()),
    };
    let controller = Controller::new(clusters, watcher::Config::default());
    let store = controller.store();
    let stream = controller
        .owns(sets, labelled.clone())
        .owns(maps, labelled.clone())
        .owns(services, labelled)
        // An `ot` pool's settings go into every shard's configuration.
        .watches(pools, watcher::Config::default(), |pool| {
            pool.namespace().map(|ns| ObjectRef::new(&pool.spec.cluster_ref.name).within(&ns))
        })
        // Owned Secrets (certificates) and referenced ones (peer CAs): one
        // watch, mapped to every cluster that owns or names the Secret.
        .watches(secrets, watcher::Config::default(), move |secret| clusters_using(&store, &secret))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, super::error_policy, ctx);
    super::drain("MpcCluster", stream).await;
}

/// The workers' `pool:` settings, from the PreprocessingPool in mode `ot`
/// that serves `cluster` (the first by name, if several do; the pool
/// controller checks each pool itself). A pool that does not validate
/// against the cluster gives none.
async fn ot_pool(ctx: &Context, ns: &str, cluster: &MpcCluster) -> Result<Option<PoolSettings>, Error> {
    let pools: Api<PreprocessingPool> = Api::namespaced(ctx.client.clone(), ns);
    let name = cluster.name_any();
    let mut serving: Vec<PreprocessingPool> = pools
        .list(&Default::default())
        .await
        .map_err(|e| Error::kube("list PreprocessingPools".to_string(), e))?
        .items
        .into_iter()
        .filter(|p| p.spec.cluster_ref.name == name && p.spec.generator.mode == GeneratorMode::Ot)
        .collect();
    serving.sort_by_key(ResourceExt::name_any);
    let Some(pool) = serving.first() else { return Ok(None) };
    Ok(crate::pool::Pool::from_resource(pool, cluster).ok().and_then(|p| p.worker_settings()))
}

/// The clusters that own `secret` or reference it (peer trust, dealer
/// trust, a user-provided CA).
fn clusters_using(store: &Store<MpcCluster>, secret: &PartialObjectMeta<Secret>) -> Vec<ObjectRef<MpcCluster>> {
    let (Some(ns), name) = (secret.namespace(), secret.name_any()) else { return vec![] };
    store
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == Some(ns.as_str()))
        .filter(|c| {
            secret.owner_references().iter().any(|o| Some(&o.uid) == c.uid().as_ref())
                || referenced_secrets(c).contains(&name)
        })
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// Names of the Secrets `cluster`'s spec references.
fn referenced_secrets(cluster: &MpcCluster) -> Vec<String> {
    let spec = &cluster.spec;
    let mut names: Vec<String> =
        spec.parties.iter().filter_map(|p| p.trust.as_ref().map(|t| t.secret_ref.name.clone())).collect();
    names.extend(spec.dealer.as_ref().map(|d| d.trust.secret_ref.name.clone()));
    names.extend(spec.tls.ca.as_ref().map(|ca| ca.secret_ref.name.clone()));
    names
}

/// Reconcile one MpcCluster.
pub async fn reconcile(obj: Arc<MpcCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&obj, &ctx).instrument(super::reconcile_span(obj.as_ref())).await;
    ctx.metrics.reconciled("MpcCluster", started.elapsed());
    match &result {
        Ok(_) => ctx.reset_backoff(&object_key(obj.as_ref())),
        Err(e) => ctx.event(obj.as_ref(), EventType::Warning, e.reason(), "Reconcile", e.to_string()).await,
    }
    result
}

async fn reconcile_inner(cached: &MpcCluster, ctx: &Context) -> Result<Action, Error> {
    let ns = cached.namespace().ok_or(Error::Incomplete { object: object_key(cached), field: "metadata.namespace" })?;
    let clusters: Api<MpcCluster> = Api::namespaced(ctx.client.clone(), &ns);
    // The rollout steps from the status this operator last wrote: read it
    // fresh, since the watch cache can lag one write behind (a stale
    // `Draining` would drain the shard that just replaced it).
    let name = cached.name_any();
    let Some(fresh) = clusters.get_opt(&name).await.map_err(|e| Error::kube(format!("read MpcCluster {name}"), e))?
    else {
        return Ok(Action::await_change());
    };
    let obj = &fresh;
    let old = obj.status.as_ref();
    let mut status = old.cloned().unwrap_or_default();
    let generation = obj.metadata.generation;
    let now_time = now();

    // Validate.
    let pool = ot_pool(ctx, &ns, obj).await?;
    let cluster = match Cluster::from_resource(obj) {
        Ok(mut c) => {
            c.pool = pool;
            c
        }
        Err(e) => {
            let message = e.to_string();
            not_ready(&mut status, "InvalidSpec", &message, generation, &now_time);
            if write_status(&clusters, obj, old, &status).await? {
                ctx.event(obj, EventType::Warning, "InvalidSpec", "Validate", message).await;
            }
            // A spec change triggers the next reconcile.
            return Ok(Action::await_change());
        }
    };
    let req = match Requirements::from_cluster(&cluster) {
        Ok(r) => r,
        Err(e) => {
            not_ready(&mut status, "InvalidSpec", &e.to_string(), generation, &now_time);
            write_status(&clusters, obj, old, &status).await?;
            return Ok(Action::await_change());
        }
    };

    // The party CA comes first: the peers need its certificate before they
    // can trust this party, so it must not wait for theirs.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    if let Err(e) = ensure_managed_ca(obj, &cluster, &secrets, ctx).await? {
        let message = e.to_string();
        not_ready(&mut status, "CaUnreadable", &message, generation, &now_time);
        if write_status(&clusters, obj, old, &status).await? {
            ctx.event(obj, EventType::Warning, "CaUnreadable", "IssueCertificates", message).await;
        }
        return Ok(Action::requeue(RESYNC));
    }

    // Resolve Secrets.
    let resolved = match resolve(&cluster, &secrets).await? {
        Ok(r) => r,
        Err(missing) => {
            let message = missing.to_string();
            not_ready(&mut status, missing.reason(), &message, generation, &now_time);
            if write_status(&clusters, obj, old, &status).await? {
                ctx.event(obj, EventType::Warning, missing.reason(), "ResolveReferences", message).await;
            }
            // The Secret watch triggers a reconcile when it appears; the
            // requeue is a safety net.
            return Ok(Action::requeue(RESYNC));
        }
    };

    // A CA key replacement moves the CA material before anything is planned.
    let mut resolved = resolved;
    let dwell = match cluster.spec.tls.ca_rotation.min_phase_duration.to_std() {
        Ok(d) => d,
        Err(e) => {
            let message = format!("spec.tls.caRotation.minPhaseDuration: {e}");
            not_ready(&mut status, "InvalidSpec", &message, generation, &now_time);
            write_status(&clusters, obj, old, &status).await?;
            return Ok(Action::await_change());
        }
    };
    let prior_rotation = old.and_then(|s| s.certificates.as_ref()).and_then(|c| c.ca_rotation.as_ref());
    let rotation_input = ca_rotation::Observed {
        token: obj.annotations().get(ca_rotation::ANNOTATION_ROTATE_CA_KEY).map(String::as_str),
        managed: cluster.spec.tls.ca.is_none(),
        has_next: resolved.managed_next.is_some(),
        shards_on_signing_ca: None,
        peers_reachable: false,
    };
    let mut rotation = ca_rotation::step(prior_rotation, &rotation_input, dwell, &now_time);
    if let Err(e) = rotate(&cluster, &mut resolved, rotation.action) {
        let message = e.to_string();
        not_ready(&mut status, "CaRotationFailed", &message, generation, &now_time);
        write_status(&clusters, obj, old, &status).await?;
        return Ok(Action::requeue(RESYNC));
    }

    // Certificates.
    let wall = SystemTime::now();
    let material = match certificates(&cluster, &req, resolved, wall) {
        Ok(m) => m,
        Err(e) => {
            let message = e.to_string();
            set_condition(
                &mut status.conditions,
                types::CERTIFICATES_READY,
                ConditionStatus::False,
                "CertificateError",
                &message,
                generation,
                &now_time,
            );
            not_ready(&mut status, "CertificateError", &message, generation, &now_time);
            if write_status(&clusters, obj, old, &status).await? {
                ctx.event(obj, EventType::Warning, "CertificateError", "IssueCertificates", message).await;
            }
            return Ok(Action::requeue(RESYNC));
        }
    };
    let Certificates { mut material, issued, plan_after } = material;

    // Retiring the old CA waits until every shard serves the new one (a
    // handshake trusting the signing CA alone) and every peer answers.
    let peers = probe_peers(&cluster).await;
    if rotation.probe_shards {
        let only_new = ShardControl::new(ctx, &cluster, &material, material.ca.cert_pem());
        let observed = ca_rotation::Observed {
            shards_on_signing_ca: Some(only_new.all_answer(cluster.shards).await),
            peers_reachable: peers.iter().all(|(_, r)| r.is_ok()),
            ..rotation_input
        };
        rotation = ca_rotation::step(prior_rotation, &observed, dwell, &now_time);
        if rotation.action == ca_rotation::Action::Retire {
            material.ca_previous = None;
        }
    }
    if let Some((reason, message)) = &rotation.note {
        let kind = if *reason == "CaRotationRefused" { EventType::Warning } else { EventType::Normal };
        ctx.event(obj, kind, reason, "RotateCa", message.clone()).await;
    }

    // Build and apply.
    let built = desired::build(obj, &material, &ctx.settings).and_then(|d| Ok((rollout_timeouts(&cluster)?, d)));
    let ((shard_timeout, drain_timeout), desired) = match built {
        Ok(d) => d,
        Err(e) => {
            not_ready(&mut status, "InvalidSpec", &e.to_string(), generation, &now_time);
            write_status(&clusters, obj, old, &status).await?;
            return Ok(Action::await_change());
        }
    };
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);

    // The rollout decides the partition (before the StatefulSet is applied)
    // and whether a shard must drain first.
    let set_name = cluster.names().stateful_set();
    let existing = sets.get_opt(&set_name).await.map_err(|e| Error::kube(format!("read StatefulSet {set_name}"), e))?;
    let target = rollout::Target {
        hash: &desired.template_hash,
        shards: cluster.spec.shards,
        protocol: cluster.spec.protocol.name.as_str(),
        protocol_version: u32::try_from(cluster.spec.protocol.version).unwrap_or(0),
        shard_timeout,
        drain_timeout,
    };
    let control = ShardControl::new(ctx, &cluster, &material, &material.own_bundle());
    let prior_rollout = old.and_then(|s| s.rollout.as_ref());
    let health = match rollout::shard_to_probe(&target, prior_rollout) {
        Some(shard) => control.health(shard).await,
        None => ShardHealth::NotProbed,
    };
    let decision =
        rollout::step(&target, existing.as_ref().map(observe_set).as_ref(), &health, prior_rollout, &now_time);
    if let Some(shard) = decision.drain {
        // Idempotent; a failure shows in the next probe.
        if let Err(why) = control.drain(shard).await {
            tracing::info!(cluster = %cluster.name, shard, error = %why, "drain not acknowledged");
        }
    }
    if let Some(ca) = &desired.ca_secret {
        apply(&secrets, ca).await?;
    }
    for s in desired.secrets().filter(|s| Some(*s) != desired.ca_secret.as_ref()) {
        apply(&secrets, s).await?;
    }
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    for cm in desired.config_maps() {
        apply(&maps, cm).await?;
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    for svc in desired.services() {
        apply(&services, svc).await?;
    }
    let applied = apply(&sets, &desired.with_partition(decision.partition)).await?;
    apply(&Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &ns), &desired.pod_disruption_budget).await?;
    apply(&Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &ns), &desired.network_policy).await?;
    // Shards removed by a smaller `spec.shards`: their peer Services (a
    // load balancer each) and certificates (a live party key) go too.
    let selector = format!("{}={}", desired::LABEL_CLUSTER, cluster.name);
    let keep: BTreeSet<String> = desired.services().filter_map(|s| s.metadata.name.clone()).collect();
    super::prune(&services, &selector, cluster.uid, &keep).await?;
    let mut keep: BTreeSet<String> = desired.secrets().filter_map(|s| s.metadata.name.clone()).collect();
    keep.insert(cluster.names().ca_secret());
    super::prune(&secrets, &selector, cluster.uid, &keep).await?;
    if !issued.is_empty() {
        ctx.event(obj, EventType::Normal, "CertificatesIssued", "IssueCertificates", issued.join("; ")).await;
    }

    if let Some(note) = &decision.note {
        let kind = if note.warning { EventType::Warning } else { EventType::Normal };
        ctx.event(obj, kind, note.reason, "Rollout", note.message.clone()).await;
    }

    // Status. The protocol version the shards serve is read from their
    // health once a rollout completed (or when it was never read).
    let rolled_out = !decision.in_progress()
        && (decision.note.is_some()
            || status.protocol_version != Some(cluster.spec.protocol.version)
            || prior_rollout.is_none_or(|r| r.phase != RolloutPhase::Complete));
    let ready_now = applied.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0) >= cluster.spec.shards;
    if rolled_out
        && ready_now
        && let Some(v) = control.served_version(cluster.shards).await
    {
        status.protocol_version = Some(v);
    }
    status.rollout = Some(decision.rollout.clone());
    status.certificates.get_or_insert_with(Default::default).ca_rotation = rotation.status.clone();
    let reachable = peers.iter().filter(|(_, r)| r.is_ok()).count();
    let (m, me) = (&ctx.metrics, Object { namespace: cluster.namespace, name: cluster.name, uid: cluster.uid });
    m.cluster_peers(me, peers.len(), reachable);
    m.certificate_expiry(me, "ca", plan_after.ca_not_after);
    m.certificate_expiry(me, "worker", plan_after.worker_not_after);
    m.certificate_expiry(me, "operator", plan_after.operator_not_after);
    let was_ready = find_condition(&status.conditions, types::READY).is_some_and(|c| c.status == "True");
    compute_status(&mut status, &cluster, &applied, &plan_after, peers, generation, &now_time);
    let is_ready = find_condition(&status.conditions, types::READY).is_some_and(|c| c.status == "True");
    write_status(&clusters, obj, old, &status).await?;
    if is_ready && !was_ready {
        ctx.event(obj, EventType::Normal, "Ready", "Reconcile", format!("all {} shards are ready", cluster.shards))
            .await;
    }

    let mut wait = plan_after
        .next_renewal
        .and_then(|t| t.duration_since(wall).ok())
        .map_or(RESYNC, |d| d.min(RESYNC).max(Duration::from_secs(1)));
    let rotating = rotation.status.as_ref().is_some_and(|r| r.phase != CaRotationPhase::Complete);
    if decision.in_progress() || rotating {
        wait = wait.min(ctx.rollout_poll);
    }
    Ok(Action::requeue(wait))
}

/// Apply a CA-rotation action to the CA material read from `<name>-ca`.
fn rotate(
    cluster: &Cluster<'_>,
    resolved: &mut Resolved,
    action: ca_rotation::Action,
) -> Result<(), crate::cluster::Error> {
    match action {
        ca_rotation::Action::GenerateNext if resolved.managed_ca.is_some() => {
            let next = PartyCa::generate(&cluster.spec.federation, &cluster.spec.self_, certs::CA_LIFETIME)
                .map_err(|e| crate::cluster::Error::Issue { what: "the next party CA".into(), source: Box::new(e) })?;
            resolved.managed_next = Some(next.to_pem());
        }
        ca_rotation::Action::Promote => {
            if let (Some(next), Some(current)) = (resolved.managed_next.take(), resolved.managed_ca.take()) {
                resolved.managed_previous = Some(current.cert_pem.clone());
                resolved.managed_ca = Some(next);
            }
        }
        // Retiring is decided after the material is built (it needs a probe).
        _ => {}
    }
    Ok(())
}

/// `spec.rollout`'s deadlines.
fn rollout_timeouts(cluster: &Cluster<'_>) -> Result<(Duration, Duration), crate::cluster::Error> {
    let r = &cluster.spec.rollout;
    let shard = r.shard_timeout.to_std().map_err(|e| crate::cluster::Error::invalid("spec.rollout.shardTimeout", e))?;
    let drain = r.drain_timeout.to_std().map_err(|e| crate::cluster::Error::invalid("spec.rollout.drainTimeout", e))?;
    Ok((shard, drain))
}

/// What the rollout needs to know of the stored StatefulSet.
fn observe_set(set: &StatefulSet) -> ObservedSet {
    let status = set.status.as_ref();
    ObservedSet {
        template_hash: set.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_TEMPLATE_HASH)).cloned(),
        generation: set.metadata.generation,
        observed_generation: status.and_then(|s| s.observed_generation),
        ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        updated_replicas: status.and_then(|s| s.updated_replicas).unwrap_or(0),
    }
}

/// How long one control-API call of the rollout may take.
pub const CONTROL_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// This party's shards' control APIs, with the operator's client
/// certificate from the material just issued or read.
struct ShardControl<'c> {
    identity: Result<Arc<TlsIdentity>, String>,
    ctx: &'c Context,
    namespace: String,
    cluster: String,
    party: String,
}

impl<'c> ShardControl<'c> {
    /// Clients that accept a shard certificate chaining to `trust` (PEM).
    fn new(ctx: &'c Context, cluster: &Cluster<'_>, material: &Material, trust: &str) -> ShardControl<'c> {
        let party = cluster.spec.self_.clone();
        let identity = TlsIdentity::from_pem_pinned(
            &cluster.spec.federation,
            &certs::operator_principal(),
            &material.operator_client.cert_pem,
            &material.operator_client.key_pem,
            &[(party.clone(), trust.to_string())],
        )
        .map(Arc::new)
        .map_err(|e| format!("the operator's client certificate is unusable: {e}"));
        ShardControl { identity, ctx, namespace: cluster.namespace.into(), cluster: cluster.name.into(), party }
    }

    fn client(&self, shard: usize) -> Result<ControlClient, String> {
        let identity = self.identity.clone()?;
        let endpoint = (self.ctx.control_endpoints)(&ShardRef {
            namespace: &self.namespace,
            cluster: &self.cluster,
            party: &self.party,
            shard,
        });
        Ok(ControlClient::new(identity, endpoint, self.party.clone()))
    }

    async fn health(&self, shard: usize) -> ShardHealth {
        let client = match self.client(shard) {
            Ok(c) => c,
            Err(why) => return ShardHealth::Unreachable(why),
        };
        match tokio::time::timeout(CONTROL_PROBE_TIMEOUT, client.health()).await {
            Ok(Ok(h)) => ShardHealth::Up {
                draining: h.draining,
                active_jobs: h.active_jobs,
                protocol: h.protocol,
                min_version: h.min_version,
                max_version: h.max_version,
            },
            Ok(Err(e)) => ShardHealth::Unreachable(cohort_crds::common::truncate(&e.to_string(), 200).to_string()),
            Err(_) => ShardHealth::Unreachable(format!("no answer within {}s", CONTROL_PROBE_TIMEOUT.as_secs())),
        }
    }

    async fn drain(&self, shard: usize) -> Result<(), String> {
        let client = self.client(shard)?;
        match tokio::time::timeout(CONTROL_PROBE_TIMEOUT, client.drain()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", CONTROL_PROBE_TIMEOUT.as_secs())),
        }
    }

    /// Whether every shard's control API completes a handshake and answers.
    async fn all_answer(&self, shards: usize) -> Result<(), String> {
        let all = join_all((0..shards).map(|i| self.health(i))).await;
        let failed: Vec<String> = all
            .iter()
            .enumerate()
            .filter_map(|(i, h)| match h {
                ShardHealth::Unreachable(why) => Some(format!("shard {i}: {why}")),
                _ => None,
            })
            .collect();
        if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) }
    }

    /// The highest protocol version every shard offers, when all answer.
    async fn served_version(&self, shards: usize) -> Option<i32> {
        let all = join_all((0..shards).map(|i| self.health(i))).await;
        all.iter()
            .map(|h| match h {
                ShardHealth::Up { max_version, .. } => i32::try_from(*max_version).ok(),
                _ => None,
            })
            .collect::<Option<Vec<i32>>>()?
            .into_iter()
            .min()
    }
}

/// With an operator-managed CA (no `spec.tls.ca`): generate and store the
/// party CA when `<name>-ca` does not exist, before anything else, so this
/// party can hand its CA to the peers while it waits for theirs. A CA
/// Secret that exists but cannot be read is never replaced silently (every
/// peer trusts it): `Ok(Err(_))` says so, and a person decides.
async fn ensure_managed_ca(
    obj: &MpcCluster,
    cluster: &Cluster<'_>,
    api: &Api<Secret>,
    ctx: &Context,
) -> Result<Result<(), crate::cluster::Error>, Error> {
    if cluster.spec.tls.ca.is_some() {
        return Ok(Ok(()));
    }
    let name = cluster.names().ca_secret();
    if let Some(found) = get_secret(api, &name).await? {
        let readable = cert_and_key(Some(&found)).is_some_and(|k| load_ca(cluster, &k, "the party CA").is_ok());
        return Ok(if readable {
            Ok(())
        } else {
            Err(crate::cluster::Error::Material {
                what: format!("the party CA in Secret {name}"),
                reason: "tls.crt and tls.key do not hold this party's CA certificate and key; restore them, or \
                         delete the Secret to generate a new CA (which every peer must then trust again)"
                    .into(),
            })
        });
    }
    let ca = match PartyCa::generate(&cluster.spec.federation, &cluster.spec.self_, certs::CA_LIFETIME) {
        Ok(ca) => ca,
        Err(e) => return Ok(Err(crate::cluster::Error::Issue { what: "the party CA".into(), source: Box::new(e) })),
    };
    apply(api, &desired::ca_secret(cluster, &ca.to_pem(), None, None)).await?;
    let note = format!("generated the party CA and stored it in Secret {name}; send its tls.crt to the other parties");
    ctx.event(obj, EventType::Normal, "CaGenerated", "IssueCertificates", note).await;
    Ok(Ok(()))
}

/// Ready False with `reason` (Degraded True), keeping the other conditions.
fn not_ready(status: &mut MpcClusterStatus, reason: &str, message: &str, generation: Option<i64>, now: &Time) {
    set_condition(&mut status.conditions, types::READY, ConditionStatus::False, reason, message, generation, now);
    set_condition(&mut status.conditions, types::DEGRADED, ConditionStatus::True, reason, message, generation, now);
    status.observed_generation = generation;
}

/// A Secret or key the cluster needs that is not there (yet).
#[derive(Debug, thiserror::Error)]
pub enum Unresolved {
    #[error("Secret {secret} ({field}) does not exist")]
    MissingSecret { secret: String, field: String },
    #[error("Secret {secret} ({field}) has no key {key}")]
    MissingKey { secret: String, key: String, field: String },
    #[error("Secret {secret} ({field}), key {key}: {reason}")]
    Unusable { secret: String, key: String, field: String, reason: String },
}

impl Unresolved {
    pub fn reason(&self) -> &'static str {
        match self {
            Unresolved::MissingSecret { .. } => "SecretNotFound",
            Unresolved::MissingKey { .. } => "SecretKeyNotFound",
            Unresolved::Unusable { .. } => "InvalidTrust",
        }
    }
}

/// What was found in the Secrets.
struct Resolved {
    /// Operator-managed CA (cert, key) when stored; `provided` with spec.tls.ca.
    managed_ca: Option<CertifiedKey>,
    /// During a CA key replacement: the next CA, and the previous one.
    managed_next: Option<CertifiedKey>,
    managed_previous: Option<String>,
    provided_ca: Option<CertifiedKey>,
    workers: Vec<Option<CertifiedKey>>,
    operator_client: Option<CertifiedKey>,
    peer_cas: BTreeMap<String, String>,
    dealer_ca: Option<DealerCa>,
}

/// The CA that authenticates the dealer.
enum DealerCa {
    /// A bundle from the Secret `spec.dealer.trust` names.
    Bundle(String),
    /// This party's own CA (a dealer this cluster hosts).
    OwnCa,
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let ByteString(bytes) = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.clone()).ok()
}

fn cert_and_key(secret: Option<&Secret>) -> Option<CertifiedKey> {
    let s = secret?;
    Some(CertifiedKey { cert_pem: text(s, "tls.crt")?, key_pem: text(s, "tls.key")? })
}

async fn get_secret(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, Error> {
    api.get_opt(name).await.map_err(|e| Error::kube(format!("read Secret {name}"), e))
}

/// Read every Secret the cluster uses. `Ok(Err(_))`: one is missing or
/// unusable (a condition, not an error).
async fn resolve(cluster: &Cluster<'_>, api: &Api<Secret>) -> Result<Result<Resolved, Unresolved>, Error> {
    let names = cluster.names();
    let spec = cluster.spec;
    let mut peer_cas = BTreeMap::new();
    for (k, party) in spec.parties.iter().enumerate() {
        let Some(trust) = &party.trust else { continue };
        let field = format!("spec.parties[{k}].trust.secretRef");
        match trust_bundle(api, &trust.secret_ref.name, &trust.secret_ref.key, field).await? {
            Ok(pem) => peer_cas.insert(party.name.clone(), pem),
            Err(u) => return Ok(Err(u)),
        };
    }
    let dealer_ca = match &spec.dealer {
        // A dealer this cluster hosts (a PreprocessingPool with
        // `dealer.host`) has its certificate from this party's own
        // operator-managed CA, which the reconcile may be about to
        // generate: take it from the CA material instead of the Secret.
        Some(d) if spec.tls.ca.is_none() && d.trust.secret_ref.name == names.ca_secret() => Some(DealerCa::OwnCa),
        Some(d) => {
            let r = &d.trust.secret_ref;
            match trust_bundle(api, &r.name, &r.key, "spec.dealer.trust.secretRef".into()).await? {
                Ok(pem) => Some(DealerCa::Bundle(pem)),
                Err(u) => return Ok(Err(u)),
            }
        }
        None => None,
    };
    let provided_ca = match &spec.tls.ca {
        Some(ca) => {
            let name = &ca.secret_ref.name;
            let field = "spec.tls.ca.secretRef".to_string();
            let Some(secret) = get_secret(api, name).await? else {
                return Ok(Err(Unresolved::MissingSecret { secret: name.clone(), field }));
            };
            for key in ["tls.crt", "tls.key"] {
                if text(&secret, key).is_none() {
                    return Ok(Err(Unresolved::MissingKey { secret: name.clone(), key: key.into(), field }));
                }
            }
            cert_and_key(Some(&secret))
        }
        None => None,
    };
    let managed = if provided_ca.is_none() { get_secret(api, &names.ca_secret()).await? } else { None };
    let managed_ca = cert_and_key(managed.as_ref());
    let managed_next = managed
        .as_ref()
        .and_then(|s| Some(CertifiedKey { cert_pem: text(s, "next.crt")?, key_pem: text(s, "next.key")? }));
    let managed_previous = managed.as_ref().and_then(|s| text(s, "previous.crt"));
    let mut workers = Vec::with_capacity(cluster.shards);
    for i in 0..cluster.shards {
        workers.push(cert_and_key(get_secret(api, &names.worker_secret(i)).await?.as_ref()));
    }
    let operator_client = cert_and_key(get_secret(api, &names.operator_client_secret()).await?.as_ref());
    Ok(Ok(Resolved {
        managed_ca,
        managed_next,
        managed_previous,
        provided_ca,
        workers,
        operator_client,
        peer_cas,
        dealer_ca,
    }))
}

async fn trust_bundle(
    api: &Api<Secret>,
    name: &str,
    key: &str,
    field: String,
) -> Result<Result<String, Unresolved>, Error> {
    let Some(secret) = get_secret(api, name).await? else {
        return Ok(Err(Unresolved::MissingSecret { secret: name.into(), field }));
    };
    let Some(pem) = text(&secret, key) else {
        return Ok(Err(Unresolved::MissingKey { secret: name.into(), key: key.into(), field }));
    };
    if let Err(reason) = certs::check_ca_bundle(&pem) {
        return Ok(Err(Unresolved::Unusable { secret: name.into(), key: key.into(), field, reason }));
    }
    Ok(Ok(pem))
}

struct Certificates {
    material: Material,
    /// What was issued and why, for the event (no key material).
    issued: Vec<String>,
    /// The plan over the final material: expiry times, next renewal.
    plan_after: Plan,
}

/// Plan, issue what is due, and assemble the material to build from.
fn certificates(
    cluster: &Cluster<'_>,
    req: &Requirements,
    resolved: Resolved,
    now: SystemTime,
) -> Result<Certificates, crate::cluster::Error> {
    let Resolved {
        managed_ca,
        managed_next,
        managed_previous,
        provided_ca,
        mut workers,
        mut operator_client,
        peer_cas,
        dealer_ca,
    } = resolved;
    let observed_ca = match (&provided_ca, &managed_ca) {
        (Some(p), _) => ObservedCa::Provided(&p.cert_pem),
        (None, m) => ObservedCa::Managed(m.as_ref().map(|k| k.cert_pem.as_str())),
    };
    let observed = Observed {
        ca: observed_ca,
        workers: workers.iter().map(|w| w.as_ref().map(|k| k.cert_pem.as_str())).collect(),
        operator_client: operator_client.as_ref().map(|k| k.cert_pem.as_str()),
    };
    let plan = certs::plan(req, &observed, now)?;
    let mut issued_notes = Vec::new();
    let mut ca = match (&provided_ca, &managed_ca) {
        (Some(p), _) => Some(load_ca(cluster, p, "the CA in the Secret named by spec.tls.ca")?),
        (None, Some(m)) if !plan.generate_ca => Some(load_ca(cluster, m, "the party CA in its Secret")?),
        _ => None,
    };
    if plan.renew_ca
        && let (Some(current), Some(m)) = (&ca, &managed_ca)
    {
        // Same key, new validity: every leaf stays valid.
        ca = Some(certs::renew_ca(
            &cluster.spec.federation,
            &cluster.spec.self_,
            &current.cert_pem(),
            &m.key_pem,
            certs::CA_LIFETIME,
            now,
        )?);
        issued_notes.push("renewed the party CA certificate (same key)".to_string());
    }
    if !plan.issue.is_empty() || plan.generate_ca {
        let issued = certs::issue(&plan, req, ca.as_ref(), now)?;
        if let Some(new_ca) = issued.ca {
            issued_notes.push("generated a new party CA".to_string());
            ca = Some(new_ca);
        }
        for (slot, reason) in &plan.issue {
            issued_notes.push(format!("issued {slot}: {reason}"));
        }
        for (i, key) in issued.workers {
            if let Some(w) = workers.get_mut(i) {
                *w = Some(key);
            }
        }
        if issued.operator_client.is_some() {
            operator_client = issued.operator_client;
        }
    }
    let ca = ca.ok_or_else(|| crate::cluster::Error::Material {
        what: "the party CA".into(),
        reason: "neither stored nor generated".into(),
    })?;
    let ca_material = match &cluster.spec.tls.ca {
        Some(_) => CaMaterial::Provided { cert_pem: ca.cert_pem() },
        None => CaMaterial::Managed(ca.to_pem()),
    };
    let missing = |what: String| crate::cluster::Error::Material { what, reason: "not issued".into() };
    let workers: Vec<CertifiedKey> = workers
        .into_iter()
        .enumerate()
        .map(|(i, w)| w.ok_or_else(|| missing(format!("the certificate of worker shard {i}"))))
        .collect::<Result<_, _>>()?;
    let operator_client = operator_client.ok_or_else(|| missing("the operator client certificate".into()))?;
    let observed_after = Observed {
        ca: ObservedCa::Provided(ca_material.cert_pem()),
        workers: workers.iter().map(|k| Some(k.cert_pem.as_str())).collect(),
        operator_client: Some(&operator_client.cert_pem),
    };
    let plan_after = certs::plan(req, &observed_after, now)?;
    let (ca_next, ca_previous) =
        if cluster.spec.tls.ca.is_none() { (managed_next, managed_previous) } else { (None, None) };
    let mut material = Material {
        ca: ca_material,
        workers,
        operator_client,
        peer_cas,
        dealer_ca: None,
        ca_next,
        ca_previous,
        pool: cluster.pool.clone(),
    };
    material.dealer_ca = dealer_ca.map(|d| match d {
        DealerCa::Bundle(pem) => pem,
        DealerCa::OwnCa => material.own_bundle(),
    });
    Ok(Certificates { material, issued: issued_notes, plan_after })
}

fn load_ca(cluster: &Cluster<'_>, key: &CertifiedKey, what: &str) -> Result<PartyCa, crate::cluster::Error> {
    PartyCa::from_pem(&cluster.spec.federation, &cluster.spec.self_, &key.cert_pem, &key.key_pem)
        .map_err(|e| crate::cluster::Error::Material { what: what.into(), reason: e.to_string() })
}

/// Whether each peer's shard-0 endpoint accepts a TCP connection. The
/// probe proves reachability only; authentication happens per job.
async fn probe_peers(cluster: &Cluster<'_>) -> Vec<(String, Result<(), String>)> {
    let peers: Vec<(String, Endpoint)> = cluster
        .endpoints
        .iter()
        .filter(|(name, _)| *name != cluster.spec.self_)
        .map(|(name, e)| (name.to_string(), e.clone()))
        .collect();
    join_all(peers.into_iter().map(|(name, endpoint)| async move {
        let target = (endpoint.host.clone(), endpoint.port);
        let outcome = match tokio::time::timeout(PEER_PROBE_TIMEOUT, tokio::net::TcpStream::connect(target)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("{endpoint}: {}", probe_error(&e))),
            Err(_) => Err(format!("{endpoint}: no answer within {}s", PEER_PROBE_TIMEOUT.as_secs())),
        };
        (name, outcome)
    }))
    .await
}

fn probe_error(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused",
        std::io::ErrorKind::TimedOut => "timed out",
        _ if e.to_string().contains("lookup") || e.to_string().contains("resolve") => "name does not resolve",
        _ => "cannot connect",
    }
}

/// The status from what was applied and observed. Pure but for `now`.
pub fn compute_status(
    status: &mut MpcClusterStatus,
    cluster: &Cluster<'_>,
    applied: &StatefulSet,
    plan: &Plan,
    peers: Vec<(String, Result<(), String>)>,
    generation: Option<i64>,
    now: &Time,
) {
    let shards = cluster.shards as i32;
    let sts = applied.status.as_ref();
    let ready = sts.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = sts.and_then(|s| s.updated_replicas).unwrap_or(0);
    let observed_current =
        sts.and_then(|s| s.observed_generation) >= applied.metadata.generation && applied.metadata.generation.is_some();
    status.observed_generation = generation;
    status.ready_shards = Some(ready);
    status.shards_ready = Some(format!("{ready}/{shards}"));
    let all_ready = observed_current && ready >= shards;
    let rollout = status.rollout.clone().unwrap_or_default();
    let rolling = rollout.phase != RolloutPhase::Complete;
    let ca_rotation = status.certificates.as_ref().and_then(|c| c.ca_rotation.clone());
    status.certificates = Some(CertificatesStatus {
        ca_not_after: plan.ca_not_after.map(to_time),
        worker_not_after: plan.worker_not_after.map(to_time),
        operator_not_after: plan.operator_not_after.map(to_time),
        next_renewal: plan.next_renewal.map(to_time),
        ca_rotation,
    });
    let c = &mut status.conditions;
    set_condition(
        c,
        types::CERTIFICATES_READY,
        ConditionStatus::True,
        "Valid",
        "every certificate is valid and not due for renewal",
        generation,
        now,
    );

    // Peers: keep a peer's last probe time unless its reachability changed,
    // so a status that changes nothing is not rewritten.
    let previous: BTreeMap<String, PeerStatus> = status.peers.drain(..).map(|p| (p.name.clone(), p)).collect();
    let mut unreachable = Vec::new();
    for (name, outcome) in peers {
        let reachable = outcome.is_ok();
        let message = outcome.err();
        if let Some(m) = &message {
            unreachable.push(format!("{name} ({m})"));
        }
        let last_probe_time = match previous.get(&name) {
            Some(p) if p.reachable == reachable && p.message == message => p.last_probe_time.clone(),
            _ => Some(now.clone()),
        };
        status.peers.push(PeerStatus { name, reachable, last_probe_time, message });
    }
    let reachable = status.peers.iter().filter(|p| p.reachable).count() as i32;
    status.peers_reachable = Some(reachable);
    let c = &mut status.conditions;
    if unreachable.is_empty() {
        set_condition(
            c,
            types::PEERS_REACHABLE,
            ConditionStatus::True,
            "Reachable",
            "every peer answered on its endpoint",
            generation,
            now,
        );
        set_condition(c, types::DEGRADED, ConditionStatus::False, "AsExpected", "", generation, now);
    } else {
        let message = format!("no answer from {}", unreachable.join(", "));
        set_condition(c, types::PEERS_REACHABLE, ConditionStatus::False, "PeersUnreachable", &message, generation, now);
        set_condition(c, types::DEGRADED, ConditionStatus::True, "PeersUnreachable", &message, generation, now);
    }
    let rollout_message = rollout.message.clone().unwrap_or_default();
    match rollout.phase {
        RolloutPhase::Complete => {
            set_condition(
                c,
                types::ROLLOUT_PROGRESSING,
                ConditionStatus::False,
                "Complete",
                "every shard runs the current template",
                generation,
                now,
            );
            set_condition(c, types::ROLLOUT_PAUSED, ConditionStatus::False, "NotPaused", "", generation, now);
        }
        RolloutPhase::Paused => {
            set_condition(
                c,
                types::ROLLOUT_PROGRESSING,
                ConditionStatus::False,
                "Paused",
                &rollout_message,
                generation,
                now,
            );
            set_condition(
                c,
                types::ROLLOUT_PAUSED,
                ConditionStatus::True,
                "ShardUnhealthy",
                &rollout_message,
                generation,
                now,
            );
            set_condition(
                c,
                types::DEGRADED,
                ConditionStatus::True,
                "RolloutPaused",
                &rollout_message,
                generation,
                now,
            );
        }
        _ => {
            set_condition(
                c,
                types::ROLLOUT_PROGRESSING,
                ConditionStatus::True,
                "RollingOut",
                &rollout_message,
                generation,
                now,
            );
            set_condition(c, types::ROLLOUT_PAUSED, ConditionStatus::False, "NotPaused", "", generation, now);
        }
    }
    if all_ready && !rolling {
        set_condition(
            c,
            types::PROGRESSING,
            ConditionStatus::False,
            "RolledOut",
            "every shard runs the current spec",
            generation,
            now,
        );
    } else {
        let message = if rolling {
            format!("rolling out ({} shards replaced): {rollout_message}", rollout.shards_updated)
        } else {
            format!("{ready}/{shards} shards ready, {updated}/{shards} updated")
        };
        set_condition(c, types::PROGRESSING, ConditionStatus::True, "RollingOut", &message, generation, now);
    }
    // Ready is about serving jobs: every shard ready. A rollout replaces
    // one drained shard at a time, so the others keep serving.
    if all_ready {
        set_condition(
            c,
            types::READY,
            ConditionStatus::True,
            "AllShardsReady",
            &format!("{ready}/{shards} shards ready"),
            generation,
            now,
        );
    } else {
        let message = format!("{ready}/{shards} shards ready, {updated}/{shards} updated");
        set_condition(c, types::READY, ConditionStatus::False, "ShardsNotReady", &message, generation, now);
    }
}

fn to_time(t: SystemTime) -> Time {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    Time(jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}
