//! The pure half of the `MpcCluster` reconciler.
//!
//! Reconcile is a pipeline: resolve references → validate → build the
//! desired objects → apply them (server-side apply, one field manager) →
//! compute status. This module holds the steps that need no Kubernetes
//! client:
//!
//! - [`Cluster::from_resource`] validates what the builders rely on (names,
//!   endpoints, shard count) and names the offending field when it fails;
//! - [`certs`] decides which certificates to (re)issue from the observed
//!   Secrets, the spec and the time ([`certs::plan`]), then issues them
//!   ([`certs::issue`], the only impure function here: it draws keys);
//! - [`ca_rotation`] decides each phase of a CA key replacement;
//! - [`config`] renders each shard's `cohort-worker` configuration file
//!   (the format of docs/worker.md);
//! - [`desired`] builds every object the MpcCluster owns, as `k8s-openapi`
//!   types, from the resource and the issued [`desired::Material`];
//! - [`rollout`] decides each step of the partitioned rollout of the worker
//!   StatefulSet from the target template, the observed StatefulSet, the
//!   health of the shard concerned, the prior rollout status and the time.
//!
//! # Naming
//!
//! For an MpcCluster `<name>`, the operator owns (all in its namespace):
//!
//! | object | name |
//! |---|---|
//! | Secret (party CA cert + key; absent with `tls.ca`) | `<name>-ca` |
//! | Secret per shard (worker chain + key) | `<name>-worker-<i>` |
//! | Secret (control-API client cert of the operator) | `<name>-operator-client` |
//! | ConfigMap (trust: `<party>.pem` per party, `_dealer.pem`) | `<name>-trust` |
//! | ConfigMap (`shard-<i>.yaml` per shard) | `<name>-config` |
//! | headless Service (stable pod DNS; peer, control, metrics) | `<name>-workers` |
//! | Service per shard (peer port only; type from the spec) | `<name>-peer-<i>` |
//! | StatefulSet (pods `<name>-<i>`) | `<name>` |
//! | PodDisruptionBudget, NetworkPolicy | `<name>` |
//!
//! Service names are DNS-1035 labels of at most 63 characters and the
//! StatefulSet's pods carry a `controller-revision-hash` label
//! `<name>-<10 chars>`, so the MpcCluster's name must be a DNS-1035 label of
//! at most [`MAX_CLUSTER_NAME`] characters.

pub mod ca_rotation;
pub mod certs;
pub mod config;
pub mod desired;
pub mod rollout;

use std::collections::BTreeMap;

use cohort_crds::MpcCluster;
use cohort_crds::cluster::{MAX_SHARDS, MpcClusterSpec};
use cohort_crds::common::truncate;
use cohort_worker::program::hex;

/// The longest MpcCluster name the operator accepts (see the module docs).
pub const MAX_CLUSTER_NAME: usize = 52;

/// Container ports of every worker (each pod has its own IP, so every
/// shard listens on the same ports; the per-shard peer Service maps the
/// endpoint's port + i to this one).
pub const PEER_PORT: i32 = 7443;
/// The control API port (mTLS, the operator only).
pub const CONTROL_PORT: i32 = 7444;
/// `/metrics`, `/healthz`, `/readyz` (plain HTTP).
pub const METRICS_PORT: i32 = 9464;

/// The controller name the workers accept on their control API: the
/// operator's client certificate names `controller/operator`.
pub const CONTROLLER_NAME: &str = "operator";

/// Why desired objects or certificates could not be built. Every variant
/// names the field or object concerned; none carries key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the MpcCluster has a value the operator cannot use.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A field the operator needs is not set.
    #[error("{field} is not set")]
    Missing { field: String },
    /// Observed or issued material (a referenced CA, a certificate) is
    /// missing or unusable.
    #[error("{what}: {reason}")]
    Material { what: String, reason: String },
    /// Issuing a certificate failed.
    #[error("issuing {what}: {source}")]
    Issue {
        what: String,
        #[source]
        source: Box<cohort_worker::transport::TransportError>,
    },
    /// Rendering a worker configuration file failed.
    #[error("rendering {what}: {reason}")]
    Render { what: String, reason: String },
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid { field: field.into(), reason: reason.into() }
    }

    pub(crate) fn material(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Material { what: what.into(), reason: reason.into() }
    }
}

/// The worker's protocol for the MpcCluster's `spec.protocol.name` (the
/// same names; the CRD keeps its own enum so the API does not depend on the
/// worker crate).
pub fn worker_protocol(name: cohort_crds::cluster::ProtocolName) -> cohort_worker::protocol::ProtocolName {
    use cohort_crds::cluster::ProtocolName as Crd;
    use cohort_worker::protocol::ProtocolName as Worker;
    match name {
        Crd::AdditiveSemiHonest => Worker::AdditiveSemiHonest,
        Crd::Replicated3 => Worker::Replicated3,
    }
}

/// A `host:port` endpoint. `host` is kept without IPv6 brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parse `host:port` (`[v6]:port` for IPv6); `field` names the field in
    /// errors.
    pub fn parse(field: &str, text: &str) -> Result<Endpoint, Error> {
        let bad = |reason: &str| Error::invalid(field, format!("{:?}: {reason}", truncate(text, 80)));
        let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("expected host:port"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or_else(|| bad("unbalanced brackets"))?,
            None if host.contains(':') => return Err(bad("put an IPv6 address in brackets")),
            None => host,
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port: u16 = port.parse().map_err(|_| bad("the port must be 1 to 65535"))?;
        if port == 0 {
            return Err(bad("the port must be 1 to 65535"));
        }
        Ok(Endpoint { host: host.to_string(), port })
    }

    /// The endpoint of shard `shard`: the same host, port + shard.
    pub fn shard(&self, shard: usize) -> Option<Endpoint> {
        let port = u16::try_from(shard).ok().and_then(|s| self.port.checked_add(s))?;
        Some(Endpoint { host: self.host.clone(), port })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// An MpcCluster checked for what the builders rely on: everything the
/// desired objects and certificates are derived from, with the names of
/// the owned objects.
#[derive(Clone, Debug)]
pub struct Cluster<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub spec: &'a MpcClusterSpec,
    pub shards: usize,
    /// Every party's endpoint of shard 0, in `spec.parties` order.
    pub endpoints: Vec<(&'a str, Endpoint)>,
    /// The index of `spec.self` in `endpoints`.
    self_index: usize,
    /// The workers' pool, when a PreprocessingPool in mode `ot` serves this
    /// cluster (the controller sets it; [`Cluster::from_resource`] cannot
    /// see pools).
    pub pool: Option<config::PoolSettings>,
}

impl<'a> Cluster<'a> {
    /// Check `cluster`. Errors name the field (`metadata.name`,
    /// `spec.parties[1].endpoint`, ...).
    pub fn from_resource(cluster: &'a MpcCluster) -> Result<Cluster<'a>, Error> {
        let meta = &cluster.metadata;
        let name = meta.name.as_deref().ok_or_else(|| Error::Missing { field: "metadata.name".into() })?;
        let namespace =
            meta.namespace.as_deref().ok_or_else(|| Error::Missing { field: "metadata.namespace".into() })?;
        let uid = meta.uid.as_deref().ok_or_else(|| Error::Missing { field: "metadata.uid".into() })?;
        check_cluster_name(name)?;
        let spec = &cluster.spec;
        if !(1..=MAX_SHARDS).contains(&spec.shards) {
            return Err(Error::invalid("spec.shards", format!("{} is not between 1 and {MAX_SHARDS}", spec.shards)));
        }
        let shards = spec.shards as usize;
        let self_index = spec
            .parties
            .iter()
            .position(|p| p.name == spec.self_)
            .ok_or_else(|| Error::invalid("spec.self", "must name one of spec.parties"))?;
        if !is_label_value(&spec.self_) {
            return Err(Error::invalid(
                "spec.self",
                "must end with a letter or digit (it becomes the cohort.dev/party label)",
            ));
        }
        let mut endpoints = Vec::with_capacity(spec.parties.len());
        let mut seen = std::collections::BTreeSet::new();
        for (k, party) in spec.parties.iter().enumerate() {
            cohort_worker::transport::certs::validate_name("party", &party.name)
                .map_err(|r| Error::invalid(format!("spec.parties[{k}].name"), r))?;
            if !seen.insert(party.name.as_str()) {
                return Err(Error::invalid(
                    format!("spec.parties[{k}].name"),
                    format!("{} is listed twice", party.name),
                ));
            }
            let field = format!("spec.parties[{k}].endpoint");
            let endpoint = Endpoint::parse(&field, &party.endpoint)?;
            if endpoint.shard(shards - 1).is_none() {
                return Err(Error::invalid(
                    field,
                    format!("port {} + {} shards exceeds 65535 (shard i listens on port + i)", endpoint.port, shards),
                ));
            }
            if party.name != spec.self_ && party.trust.is_none() {
                return Err(Error::Missing { field: format!("spec.parties[{k}].trust") });
            }
            endpoints.push((party.name.as_str(), endpoint));
        }
        cohort_worker::transport::certs::validate_name("federation", &spec.federation)
            .map_err(|r| Error::invalid("spec.federation", r))?;
        // The schema's CEL rules say the same; this covers objects stored
        // before them and clients that skip validation.
        spec.protocol.name.check_parties(spec.parties.len()).map_err(|r| Error::invalid("spec.protocol.name", r))?;
        spec.protocol.name.check_dealer(spec.dealer.is_some()).map_err(|r| Error::invalid("spec.dealer", r))?;
        if let Some(d) = &spec.dealer {
            cohort_worker::transport::certs::validate_name("dealer", &d.name)
                .map_err(|r| Error::invalid("spec.dealer.name", r))?;
            Endpoint::parse("spec.dealer.endpoint", &d.endpoint)?;
        }
        Ok(Cluster { name, namespace, uid, spec, shards, endpoints, self_index, pool: None })
    }

    /// This party's shard-0 endpoint.
    pub fn self_endpoint(&self) -> &Endpoint {
        &self.endpoints[self.self_index].1
    }

    /// Names of the owned objects.
    pub fn names(&self) -> Names<'a> {
        Names { cluster: self.name }
    }

    /// DNS names (and IP addresses) shard `shard`'s certificate must cover:
    /// the pod's stable names under the headless Service, the shard's peer
    /// Service, and this party's external endpoint host.
    pub fn shard_dns_names(&self, shard: usize) -> Vec<String> {
        let n = self.names();
        let ns = self.namespace;
        let pod = n.pod(shard);
        let headless = n.headless_service();
        let peer = n.peer_service(shard);
        let mut names = vec![
            format!("{pod}.{headless}.{ns}.svc"),
            format!("{pod}.{headless}.{ns}.svc.cluster.local"),
            format!("{peer}.{ns}.svc"),
            format!("{peer}.{ns}.svc.cluster.local"),
            self.self_endpoint().host.clone(),
        ];
        names.sort();
        names.dedup();
        names
    }
}

/// Names of the objects an MpcCluster owns.
#[derive(Clone, Copy, Debug)]
pub struct Names<'a> {
    cluster: &'a str,
}

impl<'a> Names<'a> {
    /// The names for the MpcCluster called `cluster`.
    pub fn of(cluster: &'a str) -> Names<'a> {
        Names { cluster }
    }
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.cluster)
    }
    pub fn worker_secret(&self, shard: usize) -> String {
        format!("{}-worker-{shard}", self.cluster)
    }
    pub fn operator_client_secret(&self) -> String {
        format!("{}-operator-client", self.cluster)
    }
    pub fn trust_config_map(&self) -> String {
        format!("{}-trust", self.cluster)
    }
    pub fn config_map(&self) -> String {
        format!("{}-config", self.cluster)
    }
    pub fn headless_service(&self) -> String {
        format!("{}-workers", self.cluster)
    }
    pub fn peer_service(&self, shard: usize) -> String {
        format!("{}-peer-{shard}", self.cluster)
    }
    pub fn stateful_set(&self) -> String {
        self.cluster.to_string()
    }
    pub fn pod(&self, shard: usize) -> String {
        format!("{}-{shard}", self.cluster)
    }
    pub fn pod_disruption_budget(&self) -> String {
        self.cluster.to_string()
    }
    pub fn network_policy(&self) -> String {
        self.cluster.to_string()
    }
    /// The control API endpoint of shard `shard` (through the headless
    /// Service), for the dispatcher.
    pub fn control_endpoint(&self, namespace: &str, shard: usize) -> String {
        format!("{}.{}.{namespace}.svc:{CONTROL_PORT}", self.pod(shard), self.headless_service())
    }
}

fn check_cluster_name(name: &str) -> Result<(), Error> {
    let ok_chars = name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    let ok_ends = name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && name.as_bytes().last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() > MAX_CLUSTER_NAME || !ok_chars || !ok_ends {
        return Err(Error::invalid(
            "metadata.name",
            format!(
                "{:?}: use at most {MAX_CLUSTER_NAME} lowercase letters, digits and '-', starting with a letter \
                 and ending with a letter or digit (it prefixes Service and pod names)",
                truncate(name, 80)
            ),
        ));
    }
    Ok(())
}

/// Whether `v` is a valid label value (at most 63 characters, alphanumeric
/// at both ends, `-`, `_`, `.` inside).
pub(crate) fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    v.len() <= 63
        && (b.is_empty()
            || (b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))))
}

/// SHA-256 over a string map, as lowercase hex (keys and values separated
/// by NUL bytes, so no two maps share an encoding).
pub(crate) fn hash_map<'v>(entries: impl IntoIterator<Item = (&'v str, &'v str)>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (k, v) in entries {
        ctx.update(k.as_bytes());
        ctx.update(&[0]);
        ctx.update(v.as_bytes());
        ctx.update(&[0]);
    }
    hex(ctx.finish().as_ref())
}

/// A string map from pairs (for labels and data).
pub(crate) fn map<K: Into<String>, V: Into<String>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A three-party federation seen from bank-a, and material for it.
    use std::time::{Duration, SystemTime};

    use cohort_crds::MpcCluster;
    use cohort_crds::cluster::MpcClusterSpec;
    use cohort_worker::transport::PartyCa;

    pub fn cluster(shards: i32) -> MpcCluster {
        let spec: MpcClusterSpec = serde_json::from_value(serde_json::json!({
            "self": "bank-a",
            "federation": "consortium",
            "parties": [
                {"name": "bank-a", "endpoint": "mpc.bank-a.example:7443"},
                {"name": "bank-b", "endpoint": "mpc.bank-b.example:7443", "trust": {"secretRef": {"name": "bank-b-ca"}}},
                {"name": "bank-c", "endpoint": "[2001:db8::7]:8443", "trust": {"secretRef": {"name": "bank-c-ca"}}},
            ],
            "shards": shards,
            "worker": {"image": "registry.example/cohort-worker:1.2.3",
                       "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}},
            "service": {"type": "LoadBalancer", "annotations": {"lb.example/shared": "yes"}},
            "network": {"peerCidrs": ["203.0.113.0/24", "198.51.100.0/24"],
                        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]},
            "dealer": {"name": "main", "endpoint": "dealer.neutral.example:7500", "trust": {"secretRef": {"name": "dealer-ca"}}},
        }))
        .expect("a valid spec");
        let mut c = MpcCluster::new("consortium", spec);
        c.metadata.namespace = Some("bank-a".into());
        c.metadata.uid = Some("0b7e3f2a-1111-4222-8333-944455556666".into());
        c.metadata.generation = Some(3);
        c
    }

    /// A CA of another party, PEM.
    pub fn foreign_ca(party: &str) -> String {
        PartyCa::generate("consortium", party, Duration::from_secs(86400)).expect("ca").cert_pem()
    }

    pub fn now() -> SystemTime {
        SystemTime::now()
    }
}
