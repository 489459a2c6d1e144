//! Every object an MpcCluster owns, built purely from the resource and the
//! certificate material.
//!
//! [`build`] is a function of `(MpcCluster metadata + spec, Material,
//! Settings)` only — never of status or of the time — so building twice
//! gives equal objects and a status-only change rolls nothing. Each object
//! carries the standard labels, a controller owner reference to the
//! MpcCluster, and the cluster's namespace ([`metadata`]).
//!
//! # One pod template, one certificate per shard
//!
//! A StatefulSet has a single pod template, yet shard *i* must use its own
//! configuration (its shard-*i* endpoints) and its own certificate. The pod
//! mounts:
//!
//! - the `<name>-config` ConfigMap at `/etc/cohort/config`, holding
//!   `shard-<i>.yaml` for every shard; the worker runs with
//!   `--config-dir /etc/cohort/config` and `POD_NAME` (downward API), and
//!   reads `shard-<ordinal>.yaml`, the ordinal ending its pod name — no
//!   shell, no init container (the image is distroless);
//! - every shard's Secret through one projected volume at
//!   `/etc/cohort/tls/shard-<i>/{tls.crt,tls.key}`; `shard-<i>.yaml` names
//!   its own shard's files. Every shard's certificate carries the same
//!   identity (`spiffe://<federation>/party/<self>`) and only the DNS names
//!   differ, so a pod that can read its siblings' keys can impersonate
//!   nothing it could not already — while separate Secrets keep issuance,
//!   renewal and SANs per shard;
//! - the `<name>-trust` ConfigMap at `/etc/cohort/trust` (CA certificates
//!   are public, hence a ConfigMap);
//! - a PersistentVolumeClaim (`results`, from `volumeClaimTemplates`) at
//!   the worker's `resultsDir`: a job's result is stored before it is
//!   reported `Succeeded` and must survive a pod restart.
//!
//! Every volume is mounted whole (never `subPath`, which the kubelet does
//! not refresh), so a renewed certificate or a changed trust bundle reaches
//! the running workers, which reload their certificate, key and trust
//! files: certificate renewals and CA changes restart nothing. The
//! configuration file is read at start-up only, so the pod template carries
//! a SHA-256 annotation of the rendered configuration (which includes the
//! protocol's name and version): a change rolls the pods, through the partitioned
//! rollout of [`super::rollout`]. The StatefulSet itself carries the hash
//! of its whole pod template ([`ANNOTATION_TEMPLATE_HASH`]), the identity
//! of a rollout's target.

use std::collections::BTreeMap;

use cohort_crds::MpcCluster;
use cohort_crds::cluster::{PullPolicy, ServiceType};
use cohort_worker::transport::CertifiedKey;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    KeyToPath, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
    PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource, Secret, SecretProjection, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount, VolumeProjection, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::certs::check_ca_bundle;
use super::config::{self, CONFIG_DIR, DEALER_TRUST_KEY, RESULTS_DIR, TLS_DIR, TRUST_DIR, trust_key};
use super::{CONTROL_PORT, Cluster, Error, METRICS_PORT, PEER_PORT, hash_map, map};

/// `app.kubernetes.io/name` of worker objects.
pub const APP_NAME: &str = "cohort-worker";
/// `app.kubernetes.io/name` of the operator's pods: the only pods the
/// NetworkPolicy lets reach the control port.
pub const OPERATOR_APP_NAME: &str = "cohort-operator";
/// `app.kubernetes.io/managed-by`.
pub const MANAGED_BY: &str = "cohort-operator";
pub const LABEL_CLUSTER: &str = "cohort.dev/cluster";
pub const LABEL_PARTY: &str = "cohort.dev/party";
pub const ANNOTATION_CONFIG_HASH: &str = "cohort.dev/config-hash";
/// On the StatefulSet (not its pods): SHA-256 of the pod template.
pub const ANNOTATION_TEMPLATE_HASH: &str = "cohort.dev/template-hash";
/// The label the StatefulSet controller puts on each pod with its name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// UID/GID of the worker process (distroless `nonroot`).
pub const WORKER_UID: i64 = crate::pod::RUN_AS;
/// Size of each pod's results volume.
pub const RESULTS_VOLUME_SIZE: &str = "1Gi";
/// Pod termination grace: more than the worker's default `--shutdown-grace`
/// (30s), so draining jobs finish before SIGKILL.
pub const TERMINATION_GRACE_SECONDS: i64 = 60;

/// The party CA as the builders need it.
#[derive(Debug)]
pub enum CaMaterial {
    /// Operator-managed: stored in `<name>-ca` (certificate and key).
    Managed(CertifiedKey),
    /// User-provided (`spec.tls.ca`): only the certificate is used here;
    /// the key stays in the user's Secret.
    Provided { cert_pem: String },
}

impl CaMaterial {
    pub fn cert_pem(&self) -> &str {
        match self {
            CaMaterial::Managed(k) => &k.cert_pem,
            CaMaterial::Provided { cert_pem } => cert_pem,
        }
    }
}

/// The certificates and CAs the objects are built from: what
/// [`super::certs`] issued or the controller read from the owned Secrets,
/// and the peers' (and dealer's) CAs read from the referenced Secrets.
#[derive(Debug)]
pub struct Material {
    pub ca: CaMaterial,
    /// Per shard, in order: the chain (`tls.crt`, leaf first) and key.
    pub workers: Vec<CertifiedKey>,
    /// The operator's control-API client chain and key.
    pub operator_client: CertifiedKey,
    /// Each peer's CA bundle (PEM), by party name.
    pub peer_cas: BTreeMap<String, String>,
    /// The dealer's CA bundle, when `spec.dealer` is set.
    pub dealer_ca: Option<String>,
    /// During a CA key replacement ([`super::ca_rotation`]): the next CA,
    /// trusted but not yet signing (stored as `next.crt`, `next.key`).
    pub ca_next: Option<CertifiedKey>,
    /// During a CA key replacement: the previous CA, still trusted, no
    /// longer signing (stored as `previous.crt`).
    pub ca_previous: Option<String>,
    /// The settings of the PreprocessingPool in mode `ot` that serves the
    /// cluster (observed: another object's spec), for the workers' `pool:`.
    pub pool: Option<super::config::PoolSettings>,
}

impl Material {
    /// Every CA certificate of this party that must be trusted: the signing
    /// CA, then the next or previous one during a key replacement. This is
    /// the published bundle (`<name>-ca`, `ca.crt`), this party's trust
    /// entry and the operator's `ca.crt`.
    pub fn own_bundle(&self) -> String {
        let mut out = String::new();
        let next = self.ca_next.as_ref().map(|k| k.cert_pem.as_str());
        for pem in std::iter::once(self.ca.cert_pem()).chain(next).chain(self.ca_previous.as_deref()) {
            out.push_str(pem.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Operator-wide settings (from its flags / the chart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The worker image when `spec.worker.image` is not set.
    pub default_image: String,
    /// The namespace the operator's pods run in (the control port admits
    /// only them).
    pub operator_namespace: String,
    /// Labels selecting the operator's pods in that namespace; empty means
    /// `app.kubernetes.io/name: cohort-operator`.
    pub operator_pod_labels: BTreeMap<String, String>,
    /// The OTLP/HTTP endpoint workers export traces to; `None`: workers
    /// export nothing.
    pub worker_otlp_endpoint: Option<String>,
}

/// Every object the MpcCluster owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// `<name>-ca`; `None` with a user-provided CA.
    pub ca_secret: Option<Secret>,
    pub worker_secrets: Vec<Secret>,
    pub operator_client_secret: Secret,
    pub trust: ConfigMap,
    pub config: ConfigMap,
    pub headless_service: Service,
    pub peer_services: Vec<Service>,
    /// The worker StatefulSet with the partition at 0; the rollout sets it
    /// ([`Desired::with_partition`]).
    pub stateful_set: StatefulSet,
    /// SHA-256 of the StatefulSet's pod template (also its
    /// [`ANNOTATION_TEMPLATE_HASH`]).
    pub template_hash: String,
    pub pod_disruption_budget: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
}

impl Desired {
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.ca_secret.iter().chain(&self.worker_secrets).chain(std::iter::once(&self.operator_client_secret))
    }
    pub fn config_maps(&self) -> [&ConfigMap; 2] {
        [&self.trust, &self.config]
    }
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        std::iter::once(&self.headless_service).chain(&self.peer_services)
    }

    /// The StatefulSet with `updateStrategy.rollingUpdate.partition` set:
    /// only pods with an ordinal of at least `partition` are replaced.
    pub fn with_partition(&self, partition: i32) -> StatefulSet {
        let mut set = self.stateful_set.clone();
        if let Some(spec) = set.spec.as_mut() {
            spec.update_strategy = Some(update_strategy(partition));
        }
        set
    }
}

fn update_strategy(partition: i32) -> StatefulSetUpdateStrategy {
    StatefulSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateStatefulSetStrategy { partition: Some(partition), max_unavailable: None }),
    }
}

/// Build every owned object.
pub fn build(resource: &MpcCluster, material: &Material, settings: &Settings) -> Result<Desired, Error> {
    let mut cluster = Cluster::from_resource(resource)?;
    cluster.pool = material.pool.clone();
    if material.workers.len() != cluster.shards {
        return Err(Error::material(
            "worker certificates",
            format!("{} given for {} shards (spec.shards)", material.workers.len(), cluster.shards),
        ));
    }
    let trust = trust_config_map(&cluster, material)?;
    let config = config_config_map(&cluster)?;
    let worker_secrets: Vec<Secret> =
        material.workers.iter().enumerate().map(|(i, k)| worker_secret(&cluster, i, k)).collect();
    let config_hash = hash_map(data_pairs(&config));
    let stateful_set = stateful_set(&cluster, settings, &config_hash)?;
    let template_hash = stateful_set
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_TEMPLATE_HASH))
        .cloned()
        .unwrap_or_default();
    Ok(Desired {
        ca_secret: match &material.ca {
            CaMaterial::Managed(ca) => {
                Some(ca_secret(&cluster, ca, material.ca_next.as_ref(), material.ca_previous.as_deref()))
            }
            CaMaterial::Provided { .. } => None,
        },
        worker_secrets,
        operator_client_secret: operator_client_secret(&cluster, material),
        trust,
        config,
        headless_service: headless_service(&cluster),
        peer_services: (0..cluster.shards).map(|i| peer_service(&cluster, i)).collect::<Result<_, _>>()?,
        stateful_set,
        template_hash,
        pod_disruption_budget: pod_disruption_budget(&cluster),
        network_policy: network_policy(&cluster, settings),
    })
}

fn data_pairs(cm: &ConfigMap) -> impl Iterator<Item = (&str, &str)> {
    cm.data.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The standard labels of every owned object.
pub fn labels(cluster: &Cluster<'_>) -> BTreeMap<String, String> {
    let mut l = selector_labels(cluster);
    l.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    l.insert(LABEL_CLUSTER.into(), cluster.name.into());
    l.insert(LABEL_PARTY.into(), cluster.spec.self_.clone());
    l
}

/// The labels selecting this cluster's worker pods (immutable in the
/// StatefulSet: never add to them).
pub fn selector_labels(cluster: &Cluster<'_>) -> BTreeMap<String, String> {
    map([("app.kubernetes.io/name", APP_NAME), ("app.kubernetes.io/instance", cluster.name)])
}

/// The controller owner reference to the MpcCluster.
pub fn owner_reference(cluster: &Cluster<'_>) -> OwnerReference {
    OwnerReference {
        api_version: format!("{}/{}", cohort_crds::GROUP, cohort_crds::VERSION),
        kind: "MpcCluster".into(),
        name: cluster.name.into(),
        uid: cluster.uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata of an owned object named `name`: namespace, labels, owner.
pub fn metadata(cluster: &Cluster<'_>, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.into()),
        labels: Some(labels(cluster)),
        owner_references: Some(vec![owner_reference(cluster)]),
        ..ObjectMeta::default()
    }
}

fn tls_secret(cluster: &Cluster<'_>, name: String, data: Vec<(&str, &str)>) -> Secret {
    Secret {
        metadata: metadata(cluster, name),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data.into_iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
        ..Secret::default()
    }
}

/// `<name>-ca`: the operator-managed party CA: `tls.crt`, `tls.key` (the
/// signing CA) and `ca.crt`, the bundle to give the peers (the signing CA,
/// and during a key replacement the other one too, `next.*` or
/// `previous.crt`). Keys this apply no longer sets are removed by
/// server-side apply.
///
/// Not owned by the MpcCluster: the CA is the party's identity towards
/// every peer, so deleting and re-creating the MpcCluster (or reinstalling
/// the chart) keeps it. Delete the Secret by hand to retire the CA.
pub fn ca_secret(
    cluster: &Cluster<'_>,
    ca: &CertifiedKey,
    next: Option<&CertifiedKey>,
    previous: Option<&str>,
) -> Secret {
    let mut bundle = String::new();
    for pem in std::iter::once(ca.cert_pem.as_str()).chain(next.map(|k| k.cert_pem.as_str())).chain(previous) {
        bundle.push_str(pem.trim_end());
        bundle.push('\n');
    }
    let mut data = vec![("tls.crt", ca.cert_pem.as_str()), ("tls.key", ca.key_pem.as_str()), ("ca.crt", &bundle)];
    if let Some(next) = next {
        data.extend([("next.crt", next.cert_pem.as_str()), ("next.key", next.key_pem.as_str())]);
    }
    if let Some(previous) = previous {
        data.push(("previous.crt", previous));
    }
    let mut secret = tls_secret(cluster, cluster.names().ca_secret(), data);
    secret.metadata.owner_references = None;
    secret
}

/// `<name>-worker-<i>`: shard i's chain and key.
pub fn worker_secret(cluster: &Cluster<'_>, shard: usize, key: &CertifiedKey) -> Secret {
    tls_secret(
        cluster,
        cluster.names().worker_secret(shard),
        vec![("tls.crt", &key.cert_pem), ("tls.key", &key.key_pem)],
    )
}

/// `<name>-operator-client`: the operator's client chain and key for the
/// control API (`controller/operator`), and `ca.crt`, the party CA that
/// authenticates the workers to it.
pub fn operator_client_secret(cluster: &Cluster<'_>, material: &Material) -> Secret {
    tls_secret(
        cluster,
        cluster.names().operator_client_secret(),
        vec![
            ("tls.crt", &material.operator_client.cert_pem),
            ("tls.key", &material.operator_client.key_pem),
            ("ca.crt", &material.own_bundle()),
        ],
    )
}

/// `<name>-trust`: `<party>.pem` for every party (this party's entry is its
/// own CA, which also issues the operator's client certificate, so it is
/// the workers' `controller.ca`), and `_dealer.pem` with a dealer.
pub fn trust_config_map(cluster: &Cluster<'_>, material: &Material) -> Result<ConfigMap, Error> {
    let mut data = BTreeMap::new();
    data.insert(trust_key(&cluster.spec.self_), material.own_bundle());
    for (k, party) in cluster.spec.parties.iter().enumerate() {
        if party.name == cluster.spec.self_ {
            continue;
        }
        let field = format!("spec.parties[{k}].trust.secretRef");
        let pem = material
            .peer_cas
            .get(&party.name)
            .ok_or_else(|| Error::material(&field, format!("the CA of party {} was not read", party.name)))?;
        check_ca_bundle(pem).map_err(|r| Error::material(&field, format!("the CA of party {}: {r}", party.name)))?;
        data.insert(trust_key(&party.name), pem.clone());
    }
    if cluster.spec.dealer.is_some() {
        let pem = material
            .dealer_ca
            .as_ref()
            .ok_or_else(|| Error::material("spec.dealer.trust.secretRef", "the dealer's CA was not read"))?;
        check_ca_bundle(pem)
            .map_err(|r| Error::material("spec.dealer.trust.secretRef", format!("the dealer's CA: {r}")))?;
        data.insert(DEALER_TRUST_KEY.to_string(), pem.clone());
    }
    Ok(ConfigMap {
        metadata: metadata(cluster, cluster.names().trust_config_map()),
        data: Some(data),
        ..ConfigMap::default()
    })
}

/// `<name>-config`: `shard-<i>.yaml` per shard.
pub fn config_config_map(cluster: &Cluster<'_>) -> Result<ConfigMap, Error> {
    Ok(ConfigMap {
        metadata: metadata(cluster, cluster.names().config_map()),
        data: Some(config::render(cluster)?),
        ..ConfigMap::default()
    })
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// `<name>-workers`: headless, for the pods' stable DNS names
/// (`<name>-<i>.<name>-workers.<ns>.svc`), through which the operator
/// reaches each shard's control port. Not-ready pods are published too, so
/// the operator can ask a starting worker for its health.
pub fn headless_service(cluster: &Cluster<'_>) -> Service {
    Service {
        metadata: metadata(cluster, cluster.names().headless_service()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(cluster)),
            ports: Some(vec![port("peer", PEER_PORT), port("control", CONTROL_PORT), port("metrics", METRICS_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `<name>-peer-<i>`: how peers reach shard i — one pod
/// (`statefulset.kubernetes.io/pod-name: <name>-<i>`), port = this party's
/// endpoint port + i, so shard i is `<endpoint host>:<port + i>` as every
/// peer computes it. Only the peer port: the control and metrics ports are
/// never exposed outside the cluster. For `NodePort`, the node port is the
/// endpoint's port + i when that lies in the default node-port range
/// (30000-32767), otherwise Kubernetes picks one and the endpoint must be
/// mapped by the user's own load balancer. With `network.peerCidrs` and an
/// external type, `externalTrafficPolicy: Local` keeps client addresses, so
/// the NetworkPolicy can see them.
pub fn peer_service(cluster: &Cluster<'_>, shard: usize) -> Result<Service, Error> {
    let endpoint = cluster
        .self_endpoint()
        .shard(shard)
        .ok_or_else(|| Error::invalid("spec.parties", format!("no port for shard {shard} of this party")))?;
    let port_number = i32::from(endpoint.port);
    let service_type = cluster.spec.service.type_;
    let mut peer = ServicePort { port: port_number, ..port("peer", PEER_PORT) };
    if service_type == ServiceType::NodePort && (30000..=32767).contains(&port_number) {
        peer.node_port = Some(port_number);
    }
    let mut selector = selector_labels(cluster);
    selector.insert(POD_NAME_LABEL.into(), cluster.names().pod(shard));
    let external = service_type != ServiceType::ClusterIP;
    let mut meta = metadata(cluster, cluster.names().peer_service(shard));
    if !cluster.spec.service.annotations.is_empty() {
        meta.annotations = Some(cluster.spec.service.annotations.clone());
    }
    Ok(Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(service_type_str(service_type).into()),
            selector: Some(selector),
            ports: Some(vec![peer]),
            external_traffic_policy: (external && !cluster.spec.network.peer_cidrs.is_empty()).then(|| "Local".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

fn service_type_str(t: ServiceType) -> &'static str {
    match t {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    }
}

/// `<name>`: the worker StatefulSet (see the module docs for the volumes),
/// partition 0, annotated with the hash of its pod template.
fn stateful_set(cluster: &Cluster<'_>, settings: &Settings, config_hash: &str) -> Result<StatefulSet, Error> {
    let names = cluster.names();
    let mut pod_labels = labels(cluster);
    pod_labels.extend(selector_labels(cluster));
    let annotations = map([(ANNOTATION_CONFIG_HASH, config_hash)]);
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(cluster, settings)),
    };
    // serde_json writes struct fields in declaration order and maps sorted
    // (BTreeMap): the same template always hashes the same.
    let encoded = serde_json::to_string(&template)
        .map_err(|e| Error::Render { what: "the pod template".into(), reason: e.to_string() })?;
    let mut metadata = metadata(cluster, names.stateful_set());
    metadata.annotations = Some(map([(ANNOTATION_TEMPLATE_HASH, hash_map([("template", encoded.as_str())]))]));
    Ok(StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(cluster.spec.shards),
            service_name: Some(names.headless_service()),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector { match_labels: Some(selector_labels(cluster)), ..LabelSelector::default() },
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                // Results outlive a scale-down (the shard comes back with
                // them) but not the MpcCluster.
                when_deleted: Some("Delete".into()),
                when_scaled: Some("Retain".into()),
            }),
            volume_claim_templates: Some(vec![results_claim(cluster)]),
            update_strategy: Some(update_strategy(0)),
            template,
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}

fn results_claim(cluster: &Cluster<'_>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some("results".into()), labels: Some(labels(cluster)), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity(RESULTS_VOLUME_SIZE.into()))].into()),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn pod_spec(cluster: &Cluster<'_>, settings: &Settings) -> PodSpec {
    let names = cluster.names();
    let tls_sources = (0..cluster.shards)
        .map(|i| VolumeProjection {
            secret: Some(SecretProjection {
                name: names.worker_secret(i),
                items: Some(vec![
                    KeyToPath { key: "tls.crt".into(), path: format!("shard-{i}/tls.crt"), mode: None },
                    KeyToPath { key: "tls.key".into(), path: format!("shard-{i}/tls.key"), mode: None },
                ]),
                optional: Some(false),
            }),
            ..VolumeProjection::default()
        })
        .collect();
    PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(crate::pod::pod_security_context()),
        affinity: Some(spread_shards(cluster)),
        containers: vec![container(cluster, settings)],
        volumes: Some(vec![
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names.config_map(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "trust".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names.trust_config_map(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "tls".into(),
                projected: Some(ProjectedVolumeSource {
                    // Owner root, group fsGroup: readable by the worker only.
                    default_mode: Some(0o440),
                    sources: Some(tls_sources),
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    }
}

/// Prefer one shard per node.
fn spread_shards(cluster: &Cluster<'_>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(cluster)),
                        ..LabelSelector::default()
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..PodAffinityTerm::default()
                },
            }]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The worker's environment: its pod name (it picks its shard's config by
/// it) and, when the operator is told where, the OpenTelemetry exporter.
fn worker_env(cluster: &Cluster<'_>, settings: &Settings) -> Vec<EnvVar> {
    let var = |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), ..EnvVar::default() };
    let mut env = vec![EnvVar {
        name: "POD_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".into(), api_version: None }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }];
    if let Some(endpoint) = &settings.worker_otlp_endpoint {
        env.push(var("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()));
        env.push(var("OTEL_SERVICE_NAME", "cohort-worker".into()));
        // `$(POD_NAME)` is expanded by the kubelet from the variable above.
        env.push(var(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("cohort.party={},cohort.cluster={},k8s.pod.name=$(POD_NAME)", cluster.spec.self_, cluster.name),
        ));
    }
    env
}

fn container(cluster: &Cluster<'_>, settings: &Settings) -> Container {
    let worker = cluster.spec.worker.as_ref();
    let image = worker.and_then(|w| w.image.clone()).unwrap_or_else(|| settings.default_image.clone());
    let pull = match worker.and_then(|w| w.image_pull_policy).unwrap_or_default() {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    };
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let container_port = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    Container {
        name: "worker".into(),
        image: Some(image),
        image_pull_policy: Some(pull.into()),
        args: Some(vec!["--config-dir".into(), CONFIG_DIR.into(), "--log-json".into()]),
        env: Some(worker_env(cluster, settings)),
        ports: Some(vec![
            container_port("peer", PEER_PORT),
            container_port("control", CONTROL_PORT),
            container_port("metrics", METRICS_PORT),
        ]),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/healthz", 10)),
        resources: worker.and_then(|w| w.resources.clone()),
        security_context: Some(crate::pod::container_security_context()),
        volume_mounts: Some(vec![
            mount("config", CONFIG_DIR, true),
            mount("tls", TLS_DIR, true),
            mount("trust", TRUST_DIR, true),
            mount("results", RESULTS_DIR, false),
        ]),
        ..Container::default()
    }
}

/// `<name>`: at most one shard down for voluntary disruptions.
pub fn pod_disruption_budget(cluster: &Cluster<'_>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(cluster, cluster.names().pod_disruption_budget()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(cluster)), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// `<name>`: ingress to the workers. The peer port from
/// `network.peerCidrs` (any source when empty: peers are authenticated by
/// mTLS either way); the control port only from the operator's pods
/// (`app.kubernetes.io/name: cohort-operator` in the operator's
/// namespace); the metrics port from `network.metricsFrom` (nobody when
/// empty, as documented — kubelet probes are not subject to
/// NetworkPolicy). Egress is not restricted: workers dial peers wherever
/// their endpoints are.
pub fn network_policy(cluster: &Cluster<'_>, settings: &Settings) -> NetworkPolicy {
    let tcp = |port: i32| {
        Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            ..NetworkPolicyPort::default()
        }])
    };
    let peer_from = (!cluster.spec.network.peer_cidrs.is_empty()).then(|| {
        cluster
            .spec
            .network
            .peer_cidrs
            .iter()
            .map(|cidr| NetworkPolicyPeer {
                ip_block: Some(IPBlock { cidr: cidr.clone(), except: None }),
                ..NetworkPolicyPeer::default()
            })
            .collect()
    });
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(map([("kubernetes.io/metadata.name", settings.operator_namespace.as_str())])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(if settings.operator_pod_labels.is_empty() {
                map([("app.kubernetes.io/name", OPERATOR_APP_NAME)])
            } else {
                settings.operator_pod_labels.clone()
            }),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let mut ingress = vec![
        NetworkPolicyIngressRule { ports: tcp(PEER_PORT), from: peer_from },
        NetworkPolicyIngressRule { ports: tcp(CONTROL_PORT), from: Some(vec![operator]) },
    ];
    if !cluster.spec.network.metrics_from.is_empty() {
        ingress.push(NetworkPolicyIngressRule {
            ports: tcp(METRICS_PORT),
            from: Some(cluster.spec.network.metrics_from.clone()),
        });
    }
    NetworkPolicy {
        metadata: metadata(cluster, cluster.names().network_policy()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::certs::{self, Observed, ObservedCa, Requirements};
    use super::super::fixtures;
    use super::*;
    use cohort_worker::service::config::WorkerConfig;
    use cohort_worker::transport::PartyCa;
    use std::time::SystemTime;

    fn settings() -> Settings {
        Settings {
            worker_otlp_endpoint: None,
            default_image: "ghcr.io/cohort/worker:default".into(),
            operator_namespace: "cohort-system".into(),
            operator_pod_labels: BTreeMap::new(),
        }
    }

    /// Material for `resource`, issued from nothing, plus the CA.
    fn material(resource: &MpcCluster, now: SystemTime) -> (Material, PartyCa) {
        let cluster = Cluster::from_resource(resource).expect("valid");
        let req = Requirements::from_cluster(&cluster).expect("tls");
        let observed = Observed { ca: ObservedCa::Managed(None), workers: vec![], operator_client: None };
        let plan = certs::plan(&req, &observed, now).expect("plan");
        let mut issued = certs::issue(&plan, &req, None, now).expect("issue");
        let ca = issued.ca.take().expect("ca");
        let workers = (0..cluster.shards).map(|i| issued.workers.remove(&i).expect("worker")).collect();
        let material = Material {
            ca: CaMaterial::Provided { cert_pem: ca.cert_pem() },
            workers,
            operator_client: issued.operator_client.take().expect("op"),
            peer_cas: [("bank-b", fixtures::foreign_ca("bank-b")), ("bank-c", fixtures::foreign_ca("bank-c"))]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            dealer_ca: Some(fixtures::foreign_ca("dealer/main")),
            ca_next: None,
            ca_previous: None,
            pool: None,
        };
        (material, ca)
    }

    fn all_meta(d: &Desired) -> Vec<(&str, &ObjectMeta)> {
        let mut v: Vec<(&str, &ObjectMeta)> = Vec::new();
        v.extend(d.secrets().map(|s| ("Secret", &s.metadata)));
        v.extend(d.config_maps().into_iter().map(|c| ("ConfigMap", &c.metadata)));
        v.extend(d.services().map(|s| ("Service", &s.metadata)));
        v.push(("StatefulSet", &d.stateful_set.metadata));
        v.push(("PodDisruptionBudget", &d.pod_disruption_budget.metadata));
        v.push(("NetworkPolicy", &d.network_policy.metadata));
        v
    }

    fn sts_pod(d: &Desired) -> (&ObjectMeta, &PodSpec) {
        let t = &d.stateful_set.spec.as_ref().expect("spec").template;
        (t.metadata.as_ref().expect("meta"), t.spec.as_ref().expect("pod spec"))
    }

    #[test]
    fn every_object_has_labels_owner_and_namespace() {
        let c = fixtures::cluster(2);
        let (m, _) = material(&c, fixtures::now());
        let d = build(&c, &m, &settings()).expect("builds");
        let names: Vec<&str> = all_meta(&d).iter().map(|(_, m)| m.name.as_deref().expect("name")).collect();
        assert_eq!(
            names,
            [
                "consortium-worker-0",
                "consortium-worker-1",
                "consortium-operator-client",
                "consortium-trust",
                "consortium-config",
                "consortium-workers",
                "consortium-peer-0",
                "consortium-peer-1",
                "consortium",
                "consortium",
                "consortium",
            ]
        );
        assert!(d.ca_secret.is_none(), "a provided CA is not copied");
        for (kind, meta) in all_meta(&d) {
            let what = format!("{kind} {:?}", meta.name);
            assert_eq!(meta.namespace.as_deref(), Some("bank-a"), "{what}");
            let labels = meta.labels.as_ref().expect("labels");
            for (k, v) in [
                ("app.kubernetes.io/name", "cohort-worker"),
                ("app.kubernetes.io/instance", "consortium"),
                ("app.kubernetes.io/managed-by", "cohort-operator"),
                ("cohort.dev/cluster", "consortium"),
                ("cohort.dev/party", "bank-a"),
            ] {
                assert_eq!(labels.get(k).map(String::as_str), Some(v), "{what}: {k}");
            }
            let owners = meta.owner_references.as_ref().expect("owners");
            assert_eq!(owners.len(), 1, "{what}");
            let o = &owners[0];
            assert_eq!(
                (o.api_version.as_str(), o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
                ("cohort.dev/v1alpha1", "MpcCluster", "consortium", "0b7e3f2a-1111-4222-8333-944455556666"),
                "{what}"
            );
            assert_eq!((o.controller, o.block_owner_deletion), (Some(true), Some(true)), "{what}");
        }
    }

    #[test]
    fn a_managed_ca_gets_its_secret_and_secrets_are_tls_typed() {
        let c = fixtures::cluster(1);
        let (mut m, ca) = material(&c, fixtures::now());
        let ca_pem = ca.cert_pem();
        m.ca = CaMaterial::Managed(CertifiedKey { cert_pem: ca_pem.clone(), key_pem: "KEY".into() });
        let d = build(&c, &m, &settings()).expect("builds");
        let s = d.ca_secret.as_ref().expect("ca secret");
        assert_eq!(s.metadata.name.as_deref(), Some("consortium-ca"));
        let data = s.data.as_ref().expect("data");
        assert_eq!(data["tls.crt"].0, ca_pem.as_bytes());
        assert_eq!(data["tls.key"].0, b"KEY");
        for s in d.secrets() {
            assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
            assert!(s.string_data.is_none());
        }
        let op = d.operator_client_secret.data.as_ref().expect("data");
        assert_eq!(op["ca.crt"].0, ca_pem.as_bytes());
        let trust = d.trust.data.as_ref().expect("data");
        assert_eq!(trust["bank-a.pem"], ca_pem);
        assert_eq!(
            trust.keys().cloned().collect::<Vec<_>>(),
            ["_dealer.pem", "bank-a.pem", "bank-b.pem", "bank-c.pem"]
        );
        assert_eq!(data.keys().cloned().collect::<Vec<_>>(), ["ca.crt", "tls.crt", "tls.key"]);
        assert_eq!(data["ca.crt"].0, ca_pem.as_bytes());

        // A CA key replacement: the next CA beside the signing one in the
        // Secret, and both in every bundle; then the previous one.
        let next = PartyCa::generate("consortium", "bank-a", std::time::Duration::from_secs(3600)).expect("ca");
        m.ca_next = Some(next.to_pem());
        let d = build(&c, &m, &settings()).expect("builds");
        let data = d.ca_secret.as_ref().and_then(|s| s.data.clone()).expect("data");
        assert_eq!(data.keys().cloned().collect::<Vec<_>>(), ["ca.crt", "next.crt", "next.key", "tls.crt", "tls.key"]);
        let bundle = String::from_utf8(data["ca.crt"].0.clone()).expect("utf-8");
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(bundle.contains(next.cert_pem().trim()) && bundle.contains(ca_pem.trim()));
        assert_eq!(d.trust.data.as_ref().expect("data")["bank-a.pem"], bundle);
        assert_eq!(d.operator_client_secret.data.as_ref().expect("data")["ca.crt"].0, bundle.as_bytes());
        assert!(check_ca_bundle(&bundle).is_ok());
        m.ca_next = None;
        m.ca_previous = Some(next.cert_pem());
        let d = build(&c, &m, &settings()).expect("builds");
        let data = d.ca_secret.as_ref().and_then(|s| s.data.clone()).expect("data");
        assert_eq!(data.keys().cloned().collect::<Vec<_>>(), ["ca.crt", "previous.crt", "tls.crt", "tls.key"]);
        assert_eq!(data["ca.crt"].0, bundle.as_bytes(), "the same two CAs, the signing one first");
    }

    #[test]
    fn workers_export_traces_only_when_the_operator_is_told_where() {
        let c = fixtures::cluster(3);
        let (m, _) = material(&c, fixtures::now());
        let env_of = |settings: &Settings| {
            let d = build(&c, &m, settings).expect("builds");
            let (_, pod) = sts_pod(&d);
            let env = pod.containers[0].env.clone().expect("env");
            env.into_iter().map(|e| (e.name, e.value.unwrap_or_default())).collect::<Vec<_>>()
        };
        let names = |env: &[(String, String)]| env.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&env_of(&settings())), ["POD_NAME"]);
        let traced = Settings { worker_otlp_endpoint: Some("http://collector.monitoring:4318".into()), ..settings() };
        let env = env_of(&traced);
        assert_eq!(
            names(&env),
            ["POD_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"]
        );
        assert_eq!(env[1].1, "http://collector.monitoring:4318");
        assert!(env[3].1.starts_with(&format!("cohort.party={},cohort.cluster=", c.spec.self_)), "{}", env[3].1);
        assert!(env[3].1.ends_with("k8s.pod.name=$(POD_NAME)"));
    }

    #[test]
    fn the_stateful_set_runs_locked_down_workers() {
        let c = fixtures::cluster(3);
        let (m, _) = material(&c, fixtures::now());
        let d = build(&c, &m, &settings()).expect("builds");
        let spec = d.stateful_set.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("consortium-workers"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let selector = spec.selector.match_labels.as_ref().expect("selector");
        let (meta, pod) = sts_pod(&d);
        let pod_labels = meta.labels.as_ref().expect("labels");
        assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "the selector matches the pods");
        assert_eq!(pod.automount_service_account_token, Some(false));
        let psc = pod.security_context.as_ref().expect("pod security");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()), Some("RuntimeDefault"));
        assert_eq!(pod.containers.len(), 1);
        let w = &pod.containers[0];
        assert_eq!(w.image.as_deref(), Some("registry.example/cohort-worker:1.2.3"));
        assert_eq!(w.image_pull_policy.as_deref(), Some("IfNotPresent"));
        let sc = w.security_context.as_ref().expect("container security");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_string()]));
        assert_eq!(sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()), Some("RuntimeDefault"));
        assert_eq!(
            w.args.as_deref(),
            Some(&["--config-dir".to_string(), "/etc/cohort/config".into(), "--log-json".into()][..])
        );
        let env = &w.env.as_ref().expect("env")[0];
        assert_eq!(env.name, "POD_NAME");
        assert_eq!(
            env.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.as_str()),
            Some("metadata.name")
        );
        let ports: Vec<(&str, i32)> =
            w.ports.iter().flatten().map(|p| (p.name.as_deref().expect("named"), p.container_port)).collect();
        assert_eq!(ports, [("peer", 7443), ("control", 7444), ("metrics", 9464)]);
        let probe = |p: &Option<Probe>| {
            let h = p.as_ref().and_then(|p| p.http_get.as_ref()).expect("http probe");
            (h.path.clone().expect("path"), h.port.clone())
        };
        assert_eq!(probe(&w.readiness_probe), ("/readyz".into(), IntOrString::String("metrics".into())));
        assert_eq!(probe(&w.liveness_probe), ("/healthz".into(), IntOrString::String("metrics".into())));
        assert_eq!(w.resources, c.spec.worker.as_ref().and_then(|w| w.resources.clone()));
        // Every shard's Secret is projected under its own directory.
        let tls =
            pod.volumes.iter().flatten().find(|v| v.name == "tls").and_then(|v| v.projected.as_ref()).expect("tls");
        let projected: Vec<(String, Vec<String>)> = tls
            .sources
            .iter()
            .flatten()
            .map(|s| {
                let s = s.secret.as_ref().expect("secret source");
                (s.name.clone(), s.items.iter().flatten().map(|i| i.path.clone()).collect())
            })
            .collect();
        assert_eq!(projected.len(), 3);
        for (i, (name, paths)) in projected.iter().enumerate() {
            assert_eq!(name, &format!("consortium-worker-{i}"));
            assert_eq!(paths, &[format!("shard-{i}/tls.crt"), format!("shard-{i}/tls.key")]);
        }
        let mounts: Vec<(&str, &str, Option<bool>)> =
            w.volume_mounts.iter().flatten().map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only)).collect();
        assert_eq!(
            mounts,
            [
                ("config", "/etc/cohort/config", Some(true)),
                ("tls", "/etc/cohort/tls", Some(true)),
                ("trust", "/etc/cohort/trust", Some(true)),
                ("results", "/var/lib/cohort/results", Some(false)),
            ]
        );
        let claim = &spec.volume_claim_templates.as_ref().expect("claims")[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("results"));
        // Whole-volume mounts only: the kubelet never refreshes a subPath,
        // and renewed certificates must reach the running workers.
        assert!(w.volume_mounts.iter().flatten().all(|m| m.sub_path.is_none() && m.sub_path_expr.is_none()));
        let annotations = meta.annotations.as_ref().expect("annotations");
        assert_eq!(annotations.keys().collect::<Vec<_>>(), [ANNOTATION_CONFIG_HASH]);
        assert_eq!(annotations[ANNOTATION_CONFIG_HASH].len(), 64);
        // A partitioned rolling update, at rest; the template's hash on the set.
        let strategy = spec.update_strategy.as_ref().expect("strategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(strategy.rolling_update.as_ref().and_then(|r| r.partition), Some(0));
        let set_annotations = d.stateful_set.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(set_annotations.get(ANNOTATION_TEMPLATE_HASH), Some(&d.template_hash));
        assert_eq!(d.template_hash.len(), 64);
        let partitioned = d.with_partition(2);
        let rolling = partitioned.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).expect("strategy");
        assert_eq!(rolling.rolling_update.as_ref().and_then(|r| r.partition), Some(2));
        assert_eq!(partitioned.spec.as_ref().map(|s| &s.template), Some(&spec.template));
    }

    #[test]
    fn the_default_image_is_used_when_the_spec_names_none() {
        let mut c = fixtures::cluster(1);
        c.spec.worker = None;
        let (m, _) = material(&c, fixtures::now());
        let d = build(&c, &m, &settings()).expect("builds");
        let (_, pod) = sts_pod(&d);
        assert_eq!(pod.containers[0].image.as_deref(), Some("ghcr.io/cohort/worker:default"));
        assert!(pod.containers[0].resources.is_none());
    }

    #[test]
    fn services_give_each_shard_its_own_peer_port() {
        let c = fixtures::cluster(2);
        let (m, _) = material(&c, fixtures::now());
        let d = build(&c, &m, &settings()).expect("builds");
        let h = d.headless_service.spec.as_ref().expect("spec");
        assert_eq!(h.cluster_ip.as_deref(), Some("None"));
        let ports: Vec<(&str, i32)> =
            h.ports.iter().flatten().map(|p| (p.name.as_deref().expect("name"), p.port)).collect();
        assert_eq!(ports, [("peer", 7443), ("control", 7444), ("metrics", 9464)]);
        for (i, s) in d.peer_services.iter().enumerate() {
            let spec = s.spec.as_ref().expect("spec");
            assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
            assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
            assert_eq!(
                spec.selector.as_ref().and_then(|s| s.get(POD_NAME_LABEL)).map(String::as_str),
                Some(format!("consortium-{i}").as_str())
            );
            let p = spec.ports.as_ref().expect("ports");
            assert_eq!(p.len(), 1, "only the peer port is exposed");
            assert_eq!(p[0].name.as_deref(), Some("peer"));
            assert_eq!(p[0].port, 7443 + i as i32);
            assert_eq!(p[0].target_port, Some(IntOrString::String("peer".into())));
            assert_eq!(
                s.metadata.annotations.as_ref().and_then(|a| a.get("lb.example/shared")).map(String::as_str),
                Some("yes")
            );
        }
    }

    #[test]
    fn node_ports_follow_the_endpoint_when_in_range() {
        let mut c = fixtures::cluster(2);
        c.spec.service.type_ = ServiceType::NodePort;
        c.spec.parties[0].endpoint = "mpc.bank-a.example:30443".into();
        let (m, _) = material(&c, fixtures::now());
        let d = build(&c, &m, &settings()).expect("builds");
        let node_ports: Vec<Option<i32>> = d
            .peer_services
            .iter()
            .map(|s| s.spec.as_ref().and_then(|s| s.ports.as_ref()).expect("ports")[0].node_port)
            .collect();
        assert_eq!(node_ports, [Some(30443), Some(30444)]);
    }

    #[test]
    fn the_network_policy_opens_each_port_to_its_clients_only() {
        let c = fixtures::cluster(1);
        let (m, _) = material(&c, fixtures::now());
        let d = build(&c, &m, &settings()).expect("builds");
        let spec = d.network_policy.spec.as_ref().expect("spec");
        assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_string()][..]));
        let rules = spec.ingress.as_ref().expect("ingress");
        let port_of = |r: &NetworkPolicyIngressRule| r.ports.as_ref().expect("ports")[0].port.clone();
        assert_eq!(port_of(&rules[0]), Some(IntOrString::Int(7443)));
        let cidrs: Vec<&str> =
            rules[0].from.iter().flatten().map(|p| p.ip_block.as_ref().expect("ip block").cidr.as_str()).collect();
        assert_eq!(cidrs, ["203.0.113.0/24", "198.51.100.0/24"]);
        assert_eq!(port_of(&rules[1]), Some(IntOrString::Int(7444)));
        let op = &rules[1].from.as_ref().expect("from")[0];
        assert_eq!(
            op.pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .and_then(|l| l.get("app.kubernetes.io/name"))
                .map(String::as_str),
            Some("cohort-operator")
        );
        assert_eq!(
            op.namespace_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .and_then(|l| l.get("kubernetes.io/metadata.name"))
                .map(String::as_str),
            Some("cohort-system")
        );
        assert_eq!(port_of(&rules[2]), Some(IntOrString::Int(9464)));
        assert_eq!(rules[2].from.as_ref(), Some(&c.spec.network.metrics_from));

        let mut open = fixtures::cluster(1);
        open.spec.network = Default::default();
        let d = build(&open, &m, &settings()).expect("builds");
        let rules = d.network_policy.spec.as_ref().and_then(|s| s.ingress.clone()).expect("ingress");
        assert_eq!(rules.len(), 2, "no metrics rule: nobody may scrape");
        assert!(rules[0].from.is_none(), "peer port open to any source");
        let pdb = d.pod_disruption_budget.spec.as_ref().expect("pdb");
        assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    }

    #[test]
    fn building_twice_gives_equal_objects_and_status_changes_roll_nothing() {
        let c = fixtures::cluster(2);
        let (m, _) = material(&c, fixtures::now());
        let first = build(&c, &m, &settings()).expect("builds");
        assert_eq!(first, build(&c, &m, &settings()).expect("builds"));
        let mut with_status = c.clone();
        with_status.status = Some(cohort_crds::MpcClusterStatus { ready_shards: Some(1), ..Default::default() });
        with_status.metadata.resource_version = Some("42".into());
        assert_eq!(first, build(&with_status, &m, &settings()).expect("builds"));
    }

    #[test]
    fn certificates_and_trust_change_no_pod_template_while_config_image_and_version_do() {
        let c = fixtures::cluster(2);
        let (mut m, _) = material(&c, fixtures::now());
        let before = build(&c, &m, &settings()).expect("builds");
        // A peer's new CA and renewed worker certificates reach the
        // ConfigMap and Secrets, which the workers reload: no pod restarts.
        m.peer_cas.insert("bank-b".into(), fixtures::foreign_ca("bank-b"));
        let (m2, _) = material(&c, fixtures::now());
        m.workers = m2.workers;
        let after = build(&c, &m, &settings()).expect("builds");
        assert_ne!(before.trust, after.trust);
        assert_ne!(before.worker_secrets, after.worker_secrets);
        assert_eq!(before.template_hash, after.template_hash);
        assert_eq!(sts_pod(&before), sts_pod(&after));
        // An endpoint change rolls through the configuration hash.
        let mut moved = c.clone();
        moved.spec.parties[1].endpoint = "mpc2.bank-b.example:7443".into();
        let moved = build(&moved, &m, &settings()).expect("builds");
        let (mv, _) = sts_pod(&moved);
        let (b, _) = sts_pod(&after);
        assert_ne!(
            mv.annotations.as_ref().expect("m")[ANNOTATION_CONFIG_HASH],
            b.annotations.as_ref().expect("b")[ANNOTATION_CONFIG_HASH]
        );
        assert_ne!(moved.template_hash, after.template_hash);
        // So do a new protocol version (the configuration's maxVersion) and
        // a new image, each with its own template hash.
        let mut upgraded = c.clone();
        upgraded.spec.protocol.version = 2;
        let upgraded = build(&upgraded, &m, &settings()).expect("builds");
        let mut reimaged = c.clone();
        reimaged.spec.worker.as_mut().expect("worker").image = Some("registry.example/cohort-worker:1.3.0".into());
        let reimaged = build(&reimaged, &m, &settings()).expect("builds");
        // And a new protocol (the configuration's protocol.name), which
        // rolls exactly as a version does.
        let mut switched = c.clone();
        switched.spec.protocol.name = cohort_crds::cluster::ProtocolName::Replicated3;
        switched.spec.dealer = None;
        let switched = build(&switched, &m, &settings()).expect("builds");
        let (sw, _) = sts_pod(&switched);
        assert_ne!(
            sw.annotations.as_ref().expect("s")[ANNOTATION_CONFIG_HASH],
            b.annotations.as_ref().expect("b")[ANNOTATION_CONFIG_HASH]
        );
        assert_eq!(sts_pod(&switched).1, sts_pod(&after).1, "only the configuration differs");
        let hashes: std::collections::BTreeSet<&str> =
            [&after, &moved, &upgraded, &reimaged, &switched].iter().map(|d| d.template_hash.as_str()).collect();
        assert_eq!(hashes.len(), 5);
    }

    #[test]
    fn bad_input_names_the_field() {
        let c = fixtures::cluster(2);
        let (m, _) = material(&c, fixtures::now());
        let err = |c: &MpcCluster, m: &Material| build(c, m, &settings()).expect_err("invalid").to_string();

        let mut long = c.clone();
        long.metadata.name = Some("a".repeat(53));
        assert!(err(&long, &m).starts_with("metadata.name:"));
        let mut dotted = c.clone();
        dotted.metadata.name = Some("my.cluster".into());
        assert!(err(&dotted, &m).starts_with("metadata.name:"));
        let mut no_uid = c.clone();
        no_uid.metadata.uid = None;
        assert_eq!(err(&no_uid, &m), "metadata.uid is not set");
        let mut overflow = c.clone();
        overflow.spec.parties[1].endpoint = "mpc.bank-b.example:65535".into();
        assert!(err(&overflow, &m).starts_with("spec.parties[1].endpoint:"), "{}", err(&overflow, &m));
        let mut no_self = c.clone();
        no_self.spec.self_ = "bank-z".into();
        assert!(err(&no_self, &m).starts_with("spec.self:"));
        let mut too_many = c.clone();
        too_many.spec.shards = 17;
        assert!(err(&too_many, &m).starts_with("spec.shards:"));
        // replicated-3 with two parties (the CRD's CEL rule says the same).
        let mut pair = c.clone();
        pair.spec.protocol.name = cohort_crds::cluster::ProtocolName::Replicated3;
        pair.spec.parties.pop();
        assert_eq!(err(&pair, &m), "spec.protocol.name: replicated-3 runs with exactly 3 parties, got 2");
        // replicated-3 with a dealer: refused, not ignored (the CRD's CEL
        // rule says the same); without one it builds.
        let mut dealt = c.clone();
        dealt.spec.protocol.name = cohort_crds::cluster::ProtocolName::Replicated3;
        assert_eq!(
            err(&dealt, &m),
            "spec.dealer: replicated-3 takes no preprocessing material, so no dealer: remove it, or choose \
             additive-semi-honest"
        );
        dealt.spec.dealer = None;
        build(&dealt, &m, &settings()).expect("replicated-3 without a dealer builds");

        let mut no_peer = Material { peer_cas: BTreeMap::new(), ..material(&c, fixtures::now()).0 };
        assert!(err(&c, &no_peer).starts_with("spec.parties[1].trust.secretRef:"), "{}", err(&c, &no_peer));
        no_peer.peer_cas.insert("bank-b".into(), "PRIVATE junk".into());
        no_peer.peer_cas.insert("bank-c".into(), fixtures::foreign_ca("bank-c"));
        let e = err(&c, &no_peer);
        assert!(e.starts_with("spec.parties[1].trust.secretRef:") && !e.contains("junk"), "{e}");
        let no_dealer = Material { dealer_ca: None, ..material(&c, fixtures::now()).0 };
        assert!(err(&c, &no_dealer).starts_with("spec.dealer.trust.secretRef:"));
        let one_short =
            Material { workers: m.workers.into_iter().take(1).collect(), ..material(&c, fixtures::now()).0 };
        assert!(err(&c, &one_short).contains("spec.shards"));
    }

    /// Lay out the pod's mounts as the kubelet would (from the built
    /// objects, following the StatefulSet's volumes), re-rooted in a
    /// temporary directory, and start the worker's configuration loader on
    /// every shard's file: the config, certificates and trust agree.
    #[test]
    fn the_worker_loads_every_shard_from_the_mounted_objects() {
        let c = fixtures::cluster(2);
        let loaded = load_every_shard(&c);
        for (shard, l) in loaded.iter().enumerate() {
            assert_eq!(l.dealer.as_deref(), Some("dealer/main"));
            assert_eq!(l.protocol, cohort_worker::protocol::ProtocolName::AdditiveSemiHonest, "shard {shard}");
        }
        // A replicated-3 cluster without a dealer: the worker accepts its
        // files (it refuses replicated-3 with other than three parties or
        // with a pool) and runs replicated-3.
        let mut rep3 = c.clone();
        rep3.spec.protocol.name = cohort_crds::cluster::ProtocolName::Replicated3;
        rep3.spec.dealer = None;
        for l in load_every_shard(&rep3) {
            assert_eq!(l.protocol, cohort_worker::protocol::ProtocolName::Replicated3);
            assert!(l.dealer.is_none());
        }
    }

    /// What the worker's loader makes of every shard's mounted files.
    fn load_every_shard(c: &MpcCluster) -> Vec<cohort_worker::service::config::Loaded> {
        let (m, _) = material(c, fixtures::now());
        let d = build(c, &m, &settings()).expect("builds");
        let root = tempfile::tempdir().expect("tempdir");
        let at = |p: &str| root.path().join(p.trim_start_matches('/'));
        let write = |path: std::path::PathBuf, bytes: &[u8]| {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, bytes).expect("write");
        };
        let (_, pod) = sts_pod(&d);
        let secrets: BTreeMap<&str, &Secret> =
            d.secrets().map(|s| (s.metadata.name.as_deref().expect("name"), s)).collect();
        let root_text = root.path().to_str().expect("utf-8");
        for mount in pod.containers[0].volume_mounts.iter().flatten() {
            let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name);
            let Some(volume) = volume else { continue }; // the results claim
            if let Some(cm) = &volume.config_map {
                let obj =
                    d.config_maps().into_iter().find(|o| o.metadata.name.as_deref() == Some(&cm.name)).expect("cm");
                for (k, v) in obj.data.iter().flatten() {
                    let text = v
                        .replace("/etc/cohort/", &format!("{root_text}/etc/cohort/"))
                        .replace("/var/lib/cohort/", &format!("{root_text}/var/lib/cohort/"));
                    write(at(&mount.mount_path).join(k), text.as_bytes());
                }
            }
            for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
                let s = source.secret.as_ref().expect("secret");
                let data = secrets[s.name.as_str()].data.as_ref().expect("data");
                for item in s.items.iter().flatten() {
                    write(at(&mount.mount_path).join(&item.path), &data[&item.key].0);
                }
            }
        }
        // The results volume (a PersistentVolumeClaim) is mounted there.
        std::fs::create_dir_all(at(RESULTS_DIR)).expect("the results volume");
        (0..c.spec.shards as usize)
            .map(|shard| {
                let path = at(CONFIG_DIR).join(format!("shard-{shard}.yaml"));
                let loaded = WorkerConfig::read(&path).and_then(|cfg| cfg.load(&path)).expect("the worker accepts it");
                assert_eq!(loaded.controller, "controller/operator");
                assert_eq!(loaded.config.parties[1].endpoint, format!("mpc.bank-b.example:{}", 7443 + shard));
                loaded
            })
            .collect()
    }
}
