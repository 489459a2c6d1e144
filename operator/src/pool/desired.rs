//! Every object a hosting PreprocessingPool owns, built purely from the
//! checked [`Pool`], the dealer's certificate and the cluster's trust
//! bundle.
//!
//! [`build`] is a function of `(pool + cluster spec, Material, Settings)`
//! only — never of status or of the time — so building twice gives equal
//! objects. Each object carries the pool's labels, a controller owner
//! reference to the PreprocessingPool, and its namespace ([`metadata`]).
//!
//! # The dealer pod
//!
//! One replica of `cohort-dealer` (see the [module docs](super) for why
//! never more), from the cluster's worker image (the same image holds
//! both binaries), with:
//!
//! - `<pool>-dealer-tls` at `/etc/cohort/tls` (`tls.crt`, `tls.key`);
//! - the cluster's `<cluster>-trust` ConfigMap at `/etc/cohort/trust`: every
//!   party is pinned to its own CA with `--peer-ca <party>=<party>.pem`
//!   (no `--trust` bundle, which would trust one CA for every party);
//! - a PersistentVolumeClaim `state` (from `spec.storage`) at
//!   `/var/lib/cohort/dealer`, the `--state-dir` holding the journal of
//!   dealt job ids. The claim is **retained** when the pool is deleted or
//!   scaled: deleting it makes a new dealer forget which ids it served.
//!
//! The dealer reads its files at start-up, so the pod template carries
//! SHA-256 annotations of the certificate and of the trust entries it
//! uses: a renewed certificate or a changed party CA rolls the pod.
//! Readiness and liveness are TCP probes on the dealer port (the dealer
//! speaks only mTLS; a TCP connect that never completes a handshake is
//! dropped after the handshake timeout).

use std::collections::BTreeMap;

use cohort_crds::cluster::{PullPolicy, ServiceType};
use cohort_worker::transport::CertifiedKey;

use crate::cluster::METRICS_PORT;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretVolumeSource, Service, ServicePort,
    ServiceSpec, TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{DEALER_PORT, Dealer, Error, Pool};
use crate::cluster::certs::check_ca_bundle;
use crate::cluster::config::trust_key;
use crate::cluster::desired::{LABEL_CLUSTER, LABEL_PARTY, MANAGED_BY, Settings};
use crate::cluster::{hash_map, map};

/// `app.kubernetes.io/name` of dealer objects.
pub const APP_NAME: &str = "cohort-dealer";
/// `app.kubernetes.io/component` of dealer objects.
pub const COMPONENT: &str = "dealer";
/// The pool label.
pub const LABEL_POOL: &str = "cohort.dev/pool";
pub const ANNOTATION_CERTS_HASH: &str = "cohort.dev/certs-hash";
pub const ANNOTATION_TRUST_HASH: &str = "cohort.dev/trust-hash";
/// The name of the journal volume (claim template).
pub const STATE_VOLUME: &str = "state";
/// Where the dealer's certificate Secret is mounted.
pub const TLS_DIR: &str = "/etc/cohort/tls";
/// Where the cluster's trust ConfigMap is mounted.
pub const TRUST_DIR: &str = "/etc/cohort/trust";
/// The dealer's `--state-dir` (the journal volume).
pub const STATE_DIR: &str = "/var/lib/cohort/dealer";
/// The dealer binary in the worker image.
pub const DEALER_BIN: &str = "/usr/local/bin/cohort-dealer";
/// Resources of the dealer container: it keeps a few batches per party in
/// memory and generates with AES-CTR, one job at a time per core.
pub const CPU_REQUEST: &str = "250m";
pub const MEMORY_REQUEST: &str = "256Mi";
pub const MEMORY_LIMIT: &str = "1Gi";
/// More than the dealer's shutdown grace (5 s) for running streams.
pub const TERMINATION_GRACE_SECONDS: i64 = 30;

/// What the objects are built from, read by the controller.
#[derive(Debug)]
pub struct Material {
    /// The dealer's chain (`tls.crt`, leaf first) and key: what
    /// [`super::certs::issue`] returned or the controller read from
    /// `<pool>-dealer-tls`.
    pub dealer: CertifiedKey,
    /// The data of the cluster's `<cluster>-trust` ConfigMap, as observed
    /// (`<party>.pem` for every party).
    pub trust: BTreeMap<String, String>,
}

/// Every object a hosting pool owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub tls_secret: Secret,
    pub headless_service: Service,
    pub service: Service,
    pub stateful_set: StatefulSet,
    pub network_policy: NetworkPolicy,
}

impl Desired {
    pub fn services(&self) -> [&Service; 2] {
        [&self.headless_service, &self.service]
    }
}

/// Build every object of a hosting pool ([`Error::NotHosted`] for a
/// remote dealer: such a pool owns nothing). `settings` are the
/// operator's (the default image when the cluster names none).
pub fn build(pool: &Pool<'_>, material: &Material, settings: &Settings) -> Result<Desired, Error> {
    let dealer = pool.hosted_dealer().ok_or(Error::NotHosted)?;
    let trust_hash = trust_hash(pool, material)?;
    let certs_hash = hash_map([("tls.crt", material.dealer.cert_pem.as_str())]);
    Ok(Desired {
        tls_secret: tls_secret(pool, &material.dealer),
        headless_service: headless_service(pool),
        service: service(pool, dealer),
        stateful_set: stateful_set(pool, settings, &certs_hash, &trust_hash),
        network_policy: network_policy(pool),
    })
}

/// The hash of the trust entries the dealer reads (one per party), after
/// checking each is a CA bundle.
fn trust_hash(pool: &Pool<'_>, material: &Material) -> Result<String, Error> {
    let cm = pool.cluster.names().trust_config_map();
    let mut entries = Vec::with_capacity(pool.cluster.spec.parties.len());
    for party in &pool.cluster.spec.parties {
        let key = trust_key(&party.name);
        let what = format!("the ConfigMap {cm}, key {key}");
        let pem = material
            .trust
            .get(&key)
            .ok_or_else(|| crate::cluster::Error::material(&what, "missing (the MpcCluster's reconciler writes it)"))?;
        check_ca_bundle(pem).map_err(|r| crate::cluster::Error::material(&what, r))?;
        entries.push((key, pem.as_str()));
    }
    Ok(hash_map(entries.iter().map(|(k, v)| (k.as_str(), *v))))
}

/// The standard labels of every owned object.
pub fn labels(pool: &Pool<'_>) -> BTreeMap<String, String> {
    let mut l = selector_labels(pool);
    l.insert("app.kubernetes.io/component".into(), COMPONENT.into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    l.insert(LABEL_POOL.into(), pool.name.into());
    l.insert(LABEL_CLUSTER.into(), pool.cluster.name.into());
    l.insert(LABEL_PARTY.into(), pool.cluster.spec.self_.clone());
    l
}

/// The labels selecting this pool's dealer pod (immutable in the
/// StatefulSet: never add to them).
pub fn selector_labels(pool: &Pool<'_>) -> BTreeMap<String, String> {
    map([("app.kubernetes.io/name", APP_NAME), ("app.kubernetes.io/instance", pool.name)])
}

/// The controller owner reference to the PreprocessingPool.
pub fn owner_reference(pool: &Pool<'_>) -> OwnerReference {
    OwnerReference {
        api_version: format!("{}/{}", cohort_crds::GROUP, cohort_crds::VERSION),
        kind: "PreprocessingPool".into(),
        name: pool.name.into(),
        uid: pool.uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata of an owned object named `name`: namespace, labels, owner.
pub fn metadata(pool: &Pool<'_>, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(pool.namespace.into()),
        labels: Some(labels(pool)),
        owner_references: Some(vec![owner_reference(pool)]),
        ..ObjectMeta::default()
    }
}

/// `<pool>-dealer-tls`: the dealer's chain and key.
pub fn tls_secret(pool: &Pool<'_>, key: &CertifiedKey) -> Secret {
    let data = [("tls.crt", &key.cert_pem), ("tls.key", &key.key_pem)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    Secret {
        metadata: metadata(pool, pool.names().tls_secret()),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    }
}

fn dealer_port(port: i32) -> ServicePort {
    ServicePort {
        name: Some("dealer".into()),
        port,
        target_port: Some(IntOrString::String("dealer".into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// `<pool>-dealer-headless`: the pod's stable DNS name
/// (`<pool>-dealer-0.<pool>-dealer-headless.<ns>.svc`).
pub fn headless_service(pool: &Pool<'_>) -> Service {
    Service {
        metadata: metadata(pool, pool.names().headless_service()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(pool)),
            ports: Some(vec![dealer_port(DEALER_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `<pool>-dealer`: how the parties reach the dealer — port = the port of
/// the cluster's `spec.dealer.endpoint`, type and annotations from the
/// cluster's `spec.service` (a `NodePort` is the endpoint's port when in
/// the default range; `externalTrafficPolicy: Local` with `peerCidrs` and
/// an external type, so the NetworkPolicy sees client addresses).
pub fn service(pool: &Pool<'_>, dealer: &Dealer<'_>) -> Service {
    let port_number = i32::from(dealer.endpoint().port);
    let svc = &pool.cluster.spec.service;
    let mut port = dealer_port(port_number);
    if svc.type_ == ServiceType::NodePort && (30000..=32767).contains(&port_number) {
        port.node_port = Some(port_number);
    }
    let external = svc.type_ != ServiceType::ClusterIP;
    let mut meta = metadata(pool, pool.names().service());
    if !svc.annotations.is_empty() {
        meta.annotations = Some(svc.annotations.clone());
    }
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(
                match svc.type_ {
                    ServiceType::ClusterIP => "ClusterIP",
                    ServiceType::NodePort => "NodePort",
                    ServiceType::LoadBalancer => "LoadBalancer",
                }
                .into(),
            ),
            selector: Some(selector_labels(pool)),
            ports: Some(vec![port]),
            external_traffic_policy: (external && !pool.cluster.spec.network.peer_cidrs.is_empty())
                .then(|| "Local".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The dealer's command-line arguments.
pub fn args(pool: &Pool<'_>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--federation".into(),
        pool.cluster.spec.federation.clone(),
        "--name".into(),
        pool.dealer.as_ref().map_or("", |d| d.name()).to_string(),
        "--listen".into(),
        format!("0.0.0.0:{DEALER_PORT}"),
        "--cert".into(),
        format!("{TLS_DIR}/tls.crt"),
        "--key".into(),
        format!("{TLS_DIR}/tls.key"),
        "--state-dir".into(),
        STATE_DIR.into(),
        "--metrics-addr".into(),
        format!("0.0.0.0:{METRICS_PORT}"),
    ];
    for party in &pool.cluster.spec.parties {
        args.extend([
            "--party".into(),
            party.name.clone(),
            "--peer-ca".into(),
            format!("{}={TRUST_DIR}/{}", party.name, trust_key(&party.name)),
        ]);
    }
    args
}

/// `<pool>-dealer`: one `cohort-dealer` pod (see the module docs).
fn stateful_set(pool: &Pool<'_>, settings: &Settings, certs_hash: &str, trust_hash: &str) -> StatefulSet {
    let names = pool.names();
    let mut pod_labels = labels(pool);
    pod_labels.extend(selector_labels(pool));
    let annotations = map([(ANNOTATION_CERTS_HASH, certs_hash), (ANNOTATION_TRUST_HASH, trust_hash)]);
    StatefulSet {
        metadata: metadata(pool, names.stateful_set()),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(names.headless_service()),
            // One pod: a new one starts only after the old one is gone, so
            // two dealers never share (or split) the journal.
            pod_management_policy: Some("OrderedReady".into()),
            selector: LabelSelector { match_labels: Some(selector_labels(pool)), ..LabelSelector::default() },
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                // The journal outlives the pool: a recreated pool must not
                // forget which job ids were dealt.
                when_deleted: Some("Retain".into()),
                when_scaled: Some("Retain".into()),
            }),
            volume_claim_templates: Some(vec![state_claim(pool)]),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(pool, settings)),
            },
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn state_claim(pool: &Pool<'_>) -> PersistentVolumeClaim {
    let storage = &pool.spec.storage;
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(STATE_VOLUME.into()), labels: Some(labels(pool)), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), storage.size.clone())].into()),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn pod_spec(pool: &Pool<'_>, settings: &Settings) -> PodSpec {
    let names = pool.names();
    let trust_items = pool
        .cluster
        .spec
        .parties
        .iter()
        .map(|p| KeyToPath { key: trust_key(&p.name), path: trust_key(&p.name), mode: None })
        .collect();
    PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(crate::pod::pod_security_context()),
        containers: vec![container(pool, settings)],
        volumes: Some(vec![
            Volume {
                name: "tls".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(names.tls_secret()),
                    // Owner root, group fsGroup: readable by the dealer only.
                    default_mode: Some(0o440),
                    optional: Some(false),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "trust".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: pool.cluster.names().trust_config_map(),
                    items: Some(trust_items),
                    optional: Some(false),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    }
}

fn container(pool: &Pool<'_>, settings: &Settings) -> Container {
    let worker = pool.cluster.spec.worker.as_ref();
    let image = worker.and_then(|w| w.image.clone()).unwrap_or_else(|| settings.default_image.clone());
    let pull = match worker.and_then(|w| w.image_pull_policy).unwrap_or_default() {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    };
    let probe = |period: i32| Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::String("dealer".into()), host: None }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    };
    let quantity = |q: &str| Quantity(q.into());
    Container {
        name: "dealer".into(),
        image: Some(image),
        image_pull_policy: Some(pull.into()),
        command: Some(vec![DEALER_BIN.into()]),
        args: Some(args(pool)),
        ports: Some(vec![
            ContainerPort {
                name: Some("dealer".into()),
                container_port: DEALER_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(probe(5)),
        liveness_probe: Some(probe(20)),
        resources: Some(ResourceRequirements {
            requests: Some(
                [("cpu".to_string(), quantity(CPU_REQUEST)), ("memory".to_string(), quantity(MEMORY_REQUEST))].into(),
            ),
            limits: Some([("memory".to_string(), quantity(MEMORY_LIMIT))].into()),
            ..ResourceRequirements::default()
        }),
        security_context: Some(crate::pod::container_security_context()),
        volume_mounts: Some(vec![
            mount("tls", TLS_DIR, true),
            mount("trust", TRUST_DIR, true),
            mount(STATE_VOLUME, STATE_DIR, false),
        ]),
        ..Container::default()
    }
}

/// `<pool>-dealer`: ingress to the dealer port only, from the cluster's
/// `network.peerCidrs` and from this cluster's worker pods; from any
/// source when `peerCidrs` is empty (the parties are authenticated by
/// mutual TLS either way, as on the workers' peer port); the metrics port
/// from the cluster's `network.metricsFrom` (nobody when empty). No other
/// port is open. Egress is not restricted (the dealer dials nobody).
pub fn network_policy(pool: &Pool<'_>) -> NetworkPolicy {
    let cidrs = &pool.cluster.spec.network.peer_cidrs;
    let from = (!cidrs.is_empty()).then(|| {
        let mut peers: Vec<NetworkPolicyPeer> = cidrs
            .iter()
            .map(|cidr| NetworkPolicyPeer {
                ip_block: Some(IPBlock { cidr: cidr.clone(), except: None }),
                ..NetworkPolicyPeer::default()
            })
            .collect();
        peers.push(NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(crate::cluster::desired::selector_labels(&pool.cluster)),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        });
        peers
    });
    let tcp = |port: i32| {
        Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            ..NetworkPolicyPort::default()
        }])
    };
    let mut ingress = vec![NetworkPolicyIngressRule { ports: tcp(DEALER_PORT), from }];
    let metrics_from = &pool.cluster.spec.network.metrics_from;
    if !metrics_from.is_empty() {
        // Prometheus scrapes the dealer as it scrapes the workers.
        ingress.push(NetworkPolicyIngressRule { ports: tcp(METRICS_PORT), from: Some(metrics_from.clone()) });
    }
    NetworkPolicy {
        metadata: metadata(pool, pool.names().network_policy()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(selector_labels(pool)), ..LabelSelector::default() }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..NetworkPolicySpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::certs::{self, Requirements};
    use super::super::fixtures;
    use super::*;
    use cohort_crds::{MpcCluster, PreprocessingPool};
    use cohort_worker::transport::PartyCa;
    use std::time::Duration;

    fn settings() -> Settings {
        Settings {
            worker_otlp_endpoint: None,
            default_image: "ghcr.io/cohort/worker:default".into(),
            operator_namespace: "cohort-system".into(),
            operator_pod_labels: BTreeMap::new(),
        }
    }

    /// The cluster's trust data (bank-a's CA and two peers') and the
    /// dealer's certificate issued from bank-a's CA.
    fn material(pool: &Pool<'_>) -> (Material, PartyCa) {
        let ca = PartyCa::generate("consortium", "bank-a", Duration::from_secs(86400 * 3650)).expect("ca");
        let req = Requirements::from_pool(pool).expect("hosted");
        let dealer = certs::issue(&req, &ca, fixtures::now()).expect("issue");
        let trust = [
            ("bank-a.pem", ca.cert_pem()),
            ("bank-b.pem", fixtures::foreign_ca("bank-b")),
            ("bank-c.pem", fixtures::foreign_ca("bank-c")),
            ("_dealer.pem", fixtures::foreign_ca("dealer/main")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        (Material { dealer, trust }, ca)
    }

    fn resources() -> (PreprocessingPool, MpcCluster) {
        (fixtures::hosted(), fixtures::cluster(2))
    }

    fn sts_pod(d: &Desired) -> (&ObjectMeta, &PodSpec) {
        let t = &d.stateful_set.spec.as_ref().expect("spec").template;
        (t.metadata.as_ref().expect("meta"), t.spec.as_ref().expect("pod spec"))
    }

    fn all_meta(d: &Desired) -> Vec<(&str, &ObjectMeta)> {
        vec![
            ("Secret", &d.tls_secret.metadata),
            ("Service", &d.headless_service.metadata),
            ("Service", &d.service.metadata),
            ("StatefulSet", &d.stateful_set.metadata),
            ("NetworkPolicy", &d.network_policy.metadata),
        ]
    }

    #[test]
    fn every_object_has_labels_owner_and_namespace() {
        let (p, c) = resources();
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let (m, _) = material(&pool);
        let d = build(&pool, &m, &settings()).expect("builds");
        let names: Vec<&str> = all_meta(&d).iter().map(|(_, m)| m.name.as_deref().expect("name")).collect();
        assert_eq!(
            names,
            ["default-dealer-tls", "default-dealer-headless", "default-dealer", "default-dealer", "default-dealer"]
        );
        for (kind, meta) in all_meta(&d) {
            let what = format!("{kind} {:?}", meta.name);
            assert_eq!(meta.namespace.as_deref(), Some("bank-a"), "{what}");
            let labels = meta.labels.as_ref().expect("labels");
            for (k, v) in [
                ("app.kubernetes.io/name", "cohort-dealer"),
                ("app.kubernetes.io/instance", "default"),
                ("app.kubernetes.io/component", "dealer"),
                ("app.kubernetes.io/managed-by", "cohort-operator"),
                ("cohort.dev/pool", "default"),
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
                ("cohort.dev/v1alpha1", "PreprocessingPool", "default", "5f1c2d3e-aaaa-4bbb-8ccc-dddddddddddd"),
                "{what}"
            );
            assert_eq!((o.controller, o.block_owner_deletion), (Some(true), Some(true)), "{what}");
        }
        // The dealer's pods are never selected by the workers' objects.
        let worker_selector = crate::cluster::desired::selector_labels(&pool.cluster);
        let (meta, _) = sts_pod(&d);
        let pod_labels = meta.labels.as_ref().expect("labels");
        assert!(!worker_selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    }

    #[test]
    fn the_secret_holds_the_dealer_chain_with_its_names() {
        let (p, c) = resources();
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let (m, ca) = material(&pool);
        let d = build(&pool, &m, &settings()).expect("builds");
        let s = &d.tls_secret;
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        assert!(s.string_data.is_none());
        let data = s.data.as_ref().expect("data");
        assert_eq!(data.keys().cloned().collect::<Vec<_>>(), ["tls.crt", "tls.key"]);
        let chain = String::from_utf8(data["tls.crt"].0.clone()).expect("utf-8");
        assert_eq!(chain, m.dealer.cert_pem);
        // The stored chain is kept by the plan: identity and SANs match.
        let req = Requirements::from_pool(&pool).expect("hosted");
        let plan = certs::plan(&req, &ca.cert_pem(), Some(&chain), fixtures::now()).expect("plan");
        assert_eq!(plan.issue, None, "{plan:?}");
        let leaf = x509_parser::pem::parse_x509_pem(chain.as_bytes()).expect("pem").1;
        let x509 = leaf.parse_x509().expect("x509");
        use x509_parser::extensions::GeneralName;
        let sans: Vec<String> = x509
            .subject_alternative_name()
            .expect("san")
            .expect("present")
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(format!("URI:{u}")),
                GeneralName::DNSName(d) => Some(format!("DNS:{d}")),
                _ => None,
            })
            .collect();
        for want in [
            "URI:spiffe://consortium/dealer/main",
            "DNS:default-dealer.bank-a.svc",
            "DNS:default-dealer-0.default-dealer-headless.bank-a.svc",
            "DNS:dealer.neutral.example",
        ] {
            assert!(sans.iter().any(|s| s == want), "{want} not in {sans:?}");
        }
    }

    #[test]
    fn services_expose_only_the_dealer_port() {
        let (p, c) = resources();
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let (m, _) = material(&pool);
        let d = build(&pool, &m, &settings()).expect("builds");
        let h = d.headless_service.spec.as_ref().expect("spec");
        assert_eq!(h.cluster_ip.as_deref(), Some("None"));
        let ports: Vec<(&str, i32)> =
            h.ports.iter().flatten().map(|p| (p.name.as_deref().expect("name"), p.port)).collect();
        assert_eq!(ports, [("dealer", 7500)]);
        let s = d.service.spec.as_ref().expect("spec");
        assert_eq!(s.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(s.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(s.selector.as_ref(), Some(&selector_labels(&pool)));
        let p = &s.ports.as_ref().expect("ports")[0];
        assert_eq!(
            (p.name.as_deref(), p.port, p.target_port.clone()),
            (Some("dealer"), 7500, Some(IntOrString::String("dealer".into())))
        );
        assert_eq!(
            d.service.metadata.annotations.as_ref().and_then(|a| a.get("lb.example/shared")).map(String::as_str),
            Some("yes")
        );

        // A NodePort in range follows the endpoint's port.
        let mut c = fixtures::cluster(1);
        c.spec.service.type_ = ServiceType::NodePort;
        c.spec.dealer.as_mut().expect("dealer").endpoint = "dealer.bank-a.example:31500".into();
        let hosted = fixtures::hosted();
        let pool = Pool::from_resource(&hosted, &c).expect("valid");
        let d = build(&pool, &m, &settings()).expect("builds");
        let s = d.service.spec.as_ref().expect("spec");
        assert_eq!(s.type_.as_deref(), Some("NodePort"));
        assert_eq!(s.ports.as_ref().expect("ports")[0].node_port, Some(31500));
        assert_eq!(s.ports.as_ref().expect("ports")[0].port, 31500);
    }

    #[test]
    fn the_stateful_set_runs_one_locked_down_dealer_with_its_journal() {
        let (p, c) = resources();
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let (m, _) = material(&pool);
        let d = build(&pool, &m, &settings()).expect("builds");
        let spec = d.stateful_set.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("default-dealer-headless"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
        let retention = spec.persistent_volume_claim_retention_policy.as_ref().expect("retention");
        assert_eq!(
            (retention.when_deleted.as_deref(), retention.when_scaled.as_deref()),
            (Some("Retain"), Some("Retain"))
        );
        let selector = spec.selector.match_labels.as_ref().expect("selector");
        let (meta, pod) = sts_pod(&d);
        let pod_labels = meta.labels.as_ref().expect("labels");
        assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "the selector matches the pod");

        // The journal volume: size and class from spec.storage.
        let claims = spec.volume_claim_templates.as_ref().expect("claims");
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("state"));
        let cs = claims[0].spec.as_ref().expect("claim spec");
        assert_eq!(cs.storage_class_name.as_deref(), Some("fast-ssd"));
        assert_eq!(cs.access_modes.as_deref(), Some(&["ReadWriteOnce".to_string()][..]));
        assert_eq!(
            cs.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")),
            Some(&Quantity("2Gi".into()))
        );

        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.enable_service_links, Some(false));
        let psc = pod.security_context.as_ref().expect("pod security");
        assert_eq!((psc.run_as_non_root, psc.run_as_user, psc.fs_group), (Some(true), Some(65532), Some(65532)));
        assert_eq!(psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()), Some("RuntimeDefault"));
        assert_eq!(pod.containers.len(), 1);
        let w = &pod.containers[0];
        assert_eq!(w.image.as_deref(), Some("registry.example/cohort-worker:1.2.3"));
        assert_eq!(w.command.as_deref(), Some(&["/usr/local/bin/cohort-dealer".to_string()][..]));
        let sc = w.security_context.as_ref().expect("container security");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.privileged, Some(false));
        assert_eq!(sc.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_string()]));
        assert_eq!(sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()), Some("RuntimeDefault"));
        let res = w.resources.as_ref().expect("resources");
        assert!(res.requests.as_ref().is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")));
        assert!(res.limits.as_ref().is_some_and(|l| l.contains_key("memory")));

        let args = w.args.clone().expect("args");
        let joined = args.join(" ");
        assert!(
            joined.starts_with(
                "--federation consortium --name main --listen 0.0.0.0:7500 --cert /etc/cohort/tls/tls.crt \
                 --key /etc/cohort/tls/tls.key --state-dir /var/lib/cohort/dealer --metrics-addr 0.0.0.0:9464"
            ),
            "{joined}"
        );
        for party in ["bank-a", "bank-b", "bank-c"] {
            assert!(
                joined.contains(&format!("--party {party} --peer-ca {party}=/etc/cohort/trust/{party}.pem")),
                "{joined}"
            );
        }
        assert!(!args.iter().any(|a| a == "--trust"), "every party is pinned to its own CA");

        let ports: Vec<(&str, i32)> =
            w.ports.iter().flatten().map(|p| (p.name.as_deref().expect("named"), p.container_port)).collect();
        assert_eq!(ports, [("dealer", 7500), ("metrics", 9464)]);
        for probe in [&w.readiness_probe, &w.liveness_probe] {
            let tcp = probe.as_ref().and_then(|p| p.tcp_socket.as_ref()).expect("tcp probe");
            assert_eq!(tcp.port, IntOrString::String("dealer".into()));
        }
        let mounts: Vec<(&str, &str, Option<bool>)> =
            w.volume_mounts.iter().flatten().map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only)).collect();
        assert_eq!(
            mounts,
            [
                ("tls", "/etc/cohort/tls", Some(true)),
                ("trust", "/etc/cohort/trust", Some(true)),
                ("state", "/var/lib/cohort/dealer", Some(false)),
            ]
        );
        let volume = |name: &str| pod.volumes.iter().flatten().find(|v| v.name == name).expect("volume");
        let tls = volume("tls").secret.as_ref().expect("secret");
        assert_eq!((tls.secret_name.as_deref(), tls.default_mode), (Some("default-dealer-tls"), Some(0o440)));
        let trust = volume("trust").config_map.as_ref().expect("config map");
        assert_eq!(trust.name, "consortium-trust");
        let keys: Vec<&str> = trust.items.iter().flatten().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["bank-a.pem", "bank-b.pem", "bank-c.pem"]);

        let annotations = meta.annotations.as_ref().expect("annotations");
        for key in [ANNOTATION_CERTS_HASH, ANNOTATION_TRUST_HASH] {
            assert_eq!(annotations.get(key).map(String::len), Some(64), "{key}");
        }
    }

    #[test]
    fn the_default_image_is_used_when_the_cluster_names_none() {
        let (p, mut c) = resources();
        c.spec.worker = None;
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let (m, _) = material(&pool);
        let d = build(&pool, &m, &settings()).expect("builds");
        let (_, pod) = sts_pod(&d);
        assert_eq!(pod.containers[0].image.as_deref(), Some("ghcr.io/cohort/worker:default"));
        assert_eq!(pod.containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
    }

    #[test]
    fn hashes_roll_the_pod_on_certificate_and_party_ca_changes_only() {
        let (p, c) = resources();
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let (mut m, ca) = material(&pool);
        let before = build(&pool, &m, &settings()).expect("builds");
        assert_eq!(before, build(&pool, &m, &settings()).expect("builds"), "deterministic");
        let hashes = |d: &Desired| {
            let a = sts_pod(d).0.annotations.clone().expect("annotations");
            (a[ANNOTATION_CERTS_HASH].clone(), a[ANNOTATION_TRUST_HASH].clone())
        };
        let (certs0, trust0) = hashes(&before);
        // The dealer's own trust entry is not read by the dealer: no roll.
        m.trust.insert("_dealer.pem".into(), fixtures::foreign_ca("dealer/other"));
        assert_eq!(hashes(&build(&pool, &m, &settings()).expect("builds")), (certs0.clone(), trust0.clone()));
        // A party's CA changes: the trust hash moves.
        m.trust.insert("bank-b.pem".into(), fixtures::foreign_ca("bank-b"));
        let (certs1, trust1) = hashes(&build(&pool, &m, &settings()).expect("builds"));
        assert_eq!(certs1, certs0);
        assert_ne!(trust1, trust0);
        // A renewed certificate: the certificate hash moves.
        let req = Requirements::from_pool(&pool).expect("hosted");
        m.dealer = certs::issue(&req, &ca, fixtures::now()).expect("issue");
        let (certs2, trust2) = hashes(&build(&pool, &m, &settings()).expect("builds"));
        assert_ne!(certs2, certs1);
        assert_eq!(trust2, trust1);
        // Status changes roll nothing.
        let mut with_status = p.clone();
        with_status.status =
            Some(cohort_crds::pool::PreprocessingPoolStatus { ready_replicas: Some(1), ..Default::default() });
        let pool2 = Pool::from_resource(&with_status, &c).expect("valid");
        assert_eq!(build(&pool2, &m, &settings()).expect("builds"), build(&pool, &m, &settings()).expect("builds"));
    }

    #[test]
    fn the_network_policy_opens_the_dealer_port_to_peers_and_workers() {
        let (p, c) = resources();
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let (m, _) = material(&pool);
        let d = build(&pool, &m, &settings()).expect("builds");
        let spec = d.network_policy.spec.as_ref().expect("spec");
        assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_string()][..]));
        assert_eq!(spec.pod_selector.as_ref().and_then(|s| s.match_labels.clone()), Some(selector_labels(&pool)));
        let rules = spec.ingress.as_ref().expect("ingress");
        assert_eq!(rules.len(), 2, "the dealer port, and metrics from network.metricsFrom");
        assert_eq!(rules[0].ports.as_ref().expect("ports")[0].port, Some(IntOrString::Int(7500)));
        assert_eq!(rules[1].ports.as_ref().expect("ports")[0].port, Some(IntOrString::Int(9464)));
        assert_eq!(rules[1].from.as_ref(), Some(&c.spec.network.metrics_from));
        let from = rules[0].from.as_ref().expect("from");
        let cidrs: Vec<&str> = from.iter().filter_map(|p| p.ip_block.as_ref()).map(|b| b.cidr.as_str()).collect();
        assert_eq!(cidrs, ["203.0.113.0/24", "198.51.100.0/24"]);
        let workers = from.iter().find_map(|p| p.pod_selector.as_ref()).and_then(|s| s.match_labels.clone());
        assert_eq!(workers, Some(crate::cluster::desired::selector_labels(&pool.cluster)));

        let mut open = c.clone();
        open.spec.network = Default::default();
        let pool = Pool::from_resource(&p, &open).expect("valid");
        let d = build(&pool, &m, &settings()).expect("builds");
        let rules = d.network_policy.spec.as_ref().and_then(|s| s.ingress.clone()).expect("ingress");
        assert!(rules[0].from.is_none(), "any source: the dealer authenticates parties by mTLS");
        assert_eq!(rules.len(), 1, "no metricsFrom: nobody reaches the metrics port");
    }

    #[test]
    fn missing_or_bad_trust_names_the_config_map_key_without_echoing_it() {
        let (p, c) = resources();
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let (mut m, _) = material(&pool);
        m.trust.remove("bank-c.pem");
        let e = build(&pool, &m, &settings()).expect_err("missing");
        assert_eq!(e.reason(), "MaterialUnavailable");
        assert!(e.to_string().contains("consortium-trust, key bank-c.pem"), "{e}");
        m.trust.insert("bank-c.pem".into(), "SECRET-LOOKING junk".into());
        let e = build(&pool, &m, &settings()).expect_err("bad");
        assert!(e.to_string().contains("bank-c.pem") && !e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn a_remote_pool_owns_nothing() {
        let (p, c) = (fixtures::remote(), fixtures::cluster(1));
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let hosted = fixtures::hosted();
        let hp = Pool::from_resource(&hosted, &c).expect("valid");
        let (m, _) = material(&hp);
        assert!(matches!(build(&pool, &m, &settings()), Err(Error::NotHosted)));
    }

    /// The dealer binary's own argument parser accepts the arguments, and
    /// its TLS identity loads from the mounted objects (laid out as the
    /// kubelet would, re-rooted in a temporary directory).
    #[test]
    fn the_dealer_loads_its_identity_from_the_mounted_objects() {
        let (p, c) = resources();
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let (m, _) = material(&pool);
        let d = build(&pool, &m, &settings()).expect("builds");
        let root = tempfile::tempdir().expect("tempdir");
        let at = |p: &str| root.path().join(p.trim_start_matches('/'));
        let (_, pod) = sts_pod(&d);
        std::fs::create_dir_all(at(TLS_DIR)).expect("mkdir");
        std::fs::create_dir_all(at(TRUST_DIR)).expect("mkdir");
        for (k, v) in d.tls_secret.data.iter().flatten() {
            std::fs::write(at(TLS_DIR).join(k), &v.0).expect("write");
        }
        let trust = pod.volumes.iter().flatten().find_map(|v| v.config_map.as_ref()).expect("trust");
        for item in trust.items.iter().flatten() {
            std::fs::write(at(TRUST_DIR).join(&item.path), &m.trust[&item.key]).expect("write");
        }
        let args = args(&pool);
        let value = |flag: &str| args.iter().skip_while(|a| *a != flag).nth(1).cloned().expect(flag);
        let read = |p: &str| std::fs::read_to_string(at(p)).expect("mounted file");
        let mut pinned = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if a == "--peer-ca" {
                let (name, path) = args[i + 1].split_once('=').expect("NAME=PEM");
                pinned.push((name.to_string(), read(path)));
            }
        }
        assert_eq!(pinned.len(), 3);
        cohort_worker::transport::TlsIdentity::from_pem_pinned(
            &value("--federation"),
            &format!("dealer/{}", value("--name")),
            &read(&value("--cert")),
            &read(&value("--key")),
            &pinned,
        )
        .expect("the dealer's identity loads");
    }
}
