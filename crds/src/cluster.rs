//! `MpcCluster`: one party's membership in a federation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DealerEndpoint, Duration, ENDPOINT_PATTERN, NAME_PATTERN, SecretReference, Trust};

/// The most worker shards a party may run.
pub const MAX_SHARDS: i32 = 16;
/// The most parties a federation may list.
pub const MAX_PARTIES: u32 = 32;

/// One party's membership in an MPC federation: who the parties are, where
/// they are reached, which CA vouches for each, and how this party's
/// workers run. Create one per federation in each party's cluster; the
/// operator issues certificates and runs the worker StatefulSet from it.
// kube's `printcolumn(...)` entries repeat keys such as `type_`, which
// clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, KubeSchema)]
#[kube(
    group = "cohort.dev",
    version = "v1alpha1",
    kind = "MpcCluster",
    plural = "mpcclusters",
    shortname = "mpcc",
    category = "cohort",
    namespaced,
    status = "MpcClusterStatus",
    derive = "PartialEq",
    validation = Rule::new("size(self.metadata.name) <= 52").message("metadata.name: at most 52 characters (it prefixes the Service and pod names the operator creates)"),
    doc = "MpcCluster is one party's membership in a secure multiparty computation federation: the parties, their endpoints and CAs, and this party's workers.",
    printcolumn(name = "Party", type_ = "string", json_path = ".spec.self", description = "This party's name"),
    printcolumn(
        name = "Shards",
        type_ = "string",
        json_path = ".status.shardsReady",
        description = "Ready/desired worker shards"
    ),
    printcolumn(name = "Protocol", type_ = "string", json_path = ".spec.protocol.name", description = "MPC protocol"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every shard is ready"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the cluster is (not) ready"
    ),
    printcolumn(
        name = "Federation",
        type_ = "string",
        json_path = ".spec.federation",
        priority = 1,
        description = "Federation name"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.parties.exists(p, p.name == self.self)").message("spec.self must name one of spec.parties").field_path(".self"))]
#[x_kube(validation = Rule::new("self.parties.all(p, p.name == self.self || has(p.trust))").message("every party other than spec.self needs trust.secretRef: the CA bundle that issued its certificates").field_path(".parties"))]
#[x_kube(validation = Rule::new("self.parties.all(p, p.name != self.self || !has(p.trust))").message("the party named by spec.self must not set trust: its CA is spec.tls.ca or the one the operator creates").field_path(".parties"))]
#[x_kube(validation = Rule::new(REPLICATED_3_PARTIES_RULE).message("protocol.name replicated-3 runs with exactly 3 parties: list 3 in spec.parties, or choose additive-semi-honest").field_path(".protocol.name"))]
#[x_kube(validation = Rule::new(REPLICATED_3_NO_DEALER_RULE).message("spec.dealer: protocol.name replicated-3 takes no preprocessing material, so no dealer: remove spec.dealer, or choose additive-semi-honest").field_path(".dealer"))]
pub struct MpcClusterSpec {
    /// This party's name: one of `parties[].name`. Immutable: it is bound
    /// into this party's certificates and every peer's configuration.
    #[serde(rename = "self")]
    #[schemars(length(min = 1, max = 63), pattern(NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.self is immutable"))]
    pub self_: String,

    /// The federation's name, the same at every party. It is the trust
    /// domain of every certificate (`spiffe://<federation>/party/<name>`).
    /// Immutable: changing it would invalidate every certificate.
    #[schemars(length(min = 1, max = 63), pattern(NAME_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.federation is immutable"))]
    pub federation: String,

    /// Every party of the federation, this one included: the same names,
    /// endpoints and order at every party (jobs list parties in this order).
    /// Names are unique.
    #[schemars(length(min = 2, max = MAX_PARTIES))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub parties: Vec<Party>,

    /// The MPC protocol the workers run, the same at every party:
    /// `additive-semi-honest` (the default; any number of parties, needs
    /// preprocessing material) or `replicated-3` (exactly three parties,
    /// honest majority, no preprocessing). Changing it rolls the shards one
    /// at a time, like a version change.
    #[serde(default)]
    pub protocol: ProtocolSpec,

    /// Worker pods of this party. Shard i pairs with shard i of every peer,
    /// so every party should run the same number; jobs are spread over
    /// shards. Defaults to 1.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = MAX_SHARDS))]
    pub shards: i32,

    /// The worker pods: image, pull policy and resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerSpec>,

    /// Certificates: lifetimes and, optionally, a CA you provide.
    #[serde(default)]
    pub tls: TlsSpec,

    /// How a change to the worker pods (image, protocol version,
    /// configuration) rolls out: one shard at a time, highest first, each
    /// drained before it is replaced (docs/upgrades.md).
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// The Service through which peers reach this party's workers.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Who may connect to the workers (becomes a NetworkPolicy).
    #[serde(default)]
    pub network: NetworkSpec,

    /// The trusted dealer the workers draw preprocessing material from, when
    /// the federation uses one. A dealer is a TRUSTED THIRD PARTY: if it
    /// colludes with a party, inputs leak. Omit it when the material comes
    /// from OT or a PreprocessingPool; refused with `replicated-3`, which
    /// takes no material.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dealer: Option<DealerEndpoint>,
}

fn default_shards() -> i32 {
    1
}

/// A party of the federation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Party {
    /// The party's name, unique in the federation; its workers' certificates
    /// carry the URI SAN `spiffe://<federation>/party/<name>`.
    #[schemars(length(min = 1, max = 63), pattern(NAME_PATTERN))]
    pub name: String,

    /// Where the party's shard 0 accepts peer connections, as `host:port`.
    /// Shard i is reached at the same host on port + i.
    #[schemars(length(min = 3, max = 261), pattern(ENDPOINT_PATTERN))]
    pub endpoint: String,

    /// The CA bundle that issued this party's certificates. Required for
    /// every party except this one (`spec.self`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<Trust>,
}

/// The CEL rule (on `spec`) refusing `replicated-3` with other than three
/// parties; [`ProtocolName::check_parties`] is the same condition in Rust.
pub const REPLICATED_3_PARTIES_RULE: &str = "!has(self.protocol) || !has(self.protocol.name) || self.protocol.name != 'replicated-3' || size(self.parties) == 3";

/// The CEL rule (on `spec`) refusing a `dealer` with `replicated-3`, which
/// takes no preprocessing material (a setting that does not apply is
/// refused, never ignored); [`ProtocolName::check_dealer`] is the same
/// condition in Rust.
pub const REPLICATED_3_NO_DEALER_RULE: &str =
    "!has(self.protocol) || !has(self.protocol.name) || self.protocol.name != 'replicated-3' || !has(self.dealer)";

/// The MPC protocol.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolSpec {
    /// The protocol, the same at every party (it is bound into every job's
    /// consent digest and the workers' hello, so parties on different
    /// protocols refuse each other's jobs).
    /// `additive-semi-honest`: n >= 2 parties, semi-honest adversary,
    /// dishonest majority (inputs stay private unless every other party
    /// colludes); needs preprocessing material from a dealer, oblivious
    /// transfer or a PreprocessingPool.
    /// `replicated-3`: exactly 3 parties, semi-honest adversary, honest
    /// majority (private as long as no two parties collude); needs no
    /// preprocessing, so no dealer or PreprocessingPool, and moves less
    /// data per multiplication. Changing it rolls the shards one at a time.
    #[serde(default)]
    pub name: ProtocolName,

    /// The highest protocol version this party's workers offer (each job
    /// runs at the highest version every party offers); the worker image
    /// must implement it. Changing it rolls the shards one at a time.
    /// Defaults to 1.
    #[serde(default = "default_protocol_version")]
    #[schemars(range(min = 1, max = 1000))]
    pub version: i32,
}

impl Default for ProtocolSpec {
    fn default() -> Self {
        Self { name: ProtocolName::default(), version: default_protocol_version() }
    }
}

fn default_protocol_version() -> i32 {
    1
}

/// An MPC protocol name (the worker's `cohort_worker::protocol::ProtocolName`
/// under the same names; the operator maps one to the other).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum ProtocolName {
    /// Additive secret sharing among n >= 2 parties, semi-honest adversary,
    /// dishonest majority; material from a dealer, OT or a pool.
    #[default]
    #[serde(rename = "additive-semi-honest")]
    AdditiveSemiHonest,
    /// Replicated secret sharing among exactly 3 parties, semi-honest
    /// adversary, honest majority (no two parties collude); no
    /// preprocessing.
    #[serde(rename = "replicated-3")]
    Replicated3,
}

impl ProtocolName {
    /// Every protocol, in a stable order.
    pub const ALL: [ProtocolName; 2] = [ProtocolName::AdditiveSemiHonest, ProtocolName::Replicated3];

    /// The name as written in manifests and in the worker's consent digest.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolName::AdditiveSemiHonest => "additive-semi-honest",
            ProtocolName::Replicated3 => "replicated-3",
        }
    }

    /// Whether the protocol runs with `parties` parties; the reason if not
    /// (the condition of [`REPLICATED_3_PARTIES_RULE`], and the schema's
    /// minimum of 2 parties).
    pub fn check_parties(self, parties: usize) -> Result<(), String> {
        match self {
            ProtocolName::AdditiveSemiHonest if parties < 2 => {
                Err(format!("{} needs at least 2 parties, got {parties}", self.as_str()))
            }
            ProtocolName::Replicated3 if parties != 3 => {
                Err(format!("{} runs with exactly 3 parties, got {parties}", self.as_str()))
            }
            _ => Ok(()),
        }
    }

    /// Whether jobs take preprocessing material (a dealer, OT or a
    /// PreprocessingPool).
    pub fn uses_preprocessing(self) -> bool {
        matches!(self, ProtocolName::AdditiveSemiHonest)
    }

    /// Whether the protocol may name a dealer (`dealer`: whether
    /// `spec.dealer` is set); the reason if not (the condition of
    /// [`REPLICATED_3_NO_DEALER_RULE`]).
    pub fn check_dealer(self, dealer: bool) -> Result<(), String> {
        if dealer && !self.uses_preprocessing() {
            return Err(format!(
                "{} takes no preprocessing material, so no dealer: remove it, or choose additive-semi-honest",
                self.as_str()
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for ProtocolName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Worker pods.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// The `cohort-worker` image. Defaults to the image the operator was
    /// installed with (the chart's `worker.image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// When to pull the image. Defaults to `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// CPU and memory for each worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// The partitioned rollout of the worker StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// How long a replaced shard may take to be updated, ready and healthy
    /// (its control API answering with the expected protocol version)
    /// before the rollout pauses with `RolloutPaused`. Defaults to 10m.
    #[serde(default = "default_shard_timeout")]
    pub shard_timeout: Duration,

    /// How long a draining shard's in-flight jobs may run before the shard
    /// is replaced anyway (those jobs then fail, as at their own timeout).
    /// Defaults to 10m, the workers' default job timeout.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Duration,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self { shard_timeout: default_shard_timeout(), drain_timeout: default_drain_timeout() }
    }
}

fn default_shard_timeout() -> Duration {
    Duration::new("10m")
}

fn default_drain_timeout() -> Duration {
    Duration::new("10m")
}

/// Image pull policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum PullPolicy {
    /// Pull on every pod start.
    Always,
    /// Pull only when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

/// Certificates. The operator creates a party CA (unless `ca` is given),
/// one certificate per worker shard and one for itself, and renews them
/// `renewBefore` ahead of expiry.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.renewBefore) < duration(self.certLifetime)").message("tls.renewBefore must be shorter than tls.certLifetime"))]
#[x_kube(validation = Rule::new("duration(self.certLifetime) >= duration('1h')").message("tls.certLifetime must be at least 1h"))]
pub struct TlsSpec {
    /// Lifetime of the worker and operator certificates, as a duration such
    /// as `720h`. Defaults to 720h (30 days).
    #[serde(default = "default_cert_lifetime")]
    pub cert_lifetime: Duration,

    /// How long before expiry a certificate is renewed, as a duration such as
    /// `240h`; shorter than `certLifetime`. Defaults to 240h (10 days).
    #[serde(default = "default_renew_before")]
    pub renew_before: Duration,

    /// A party CA you provide instead of the one the operator generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaSpec>,

    /// How a CA key replacement (annotation `cohort.dev/rotate-ca-key`)
    /// paces its phases.
    #[serde(default)]
    pub ca_rotation: CaRotationSpec,
}

impl Default for TlsSpec {
    fn default() -> Self {
        Self {
            cert_lifetime: default_cert_lifetime(),
            renew_before: default_renew_before(),
            ca: None,
            ca_rotation: CaRotationSpec::default(),
        }
    }
}

/// Pacing of a CA key replacement (docs/operator.md, "Rotating the CA").
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaRotationSpec {
    /// The least time each phase lasts before the next begins: long enough
    /// for the kubelet to project the changed Secrets and ConfigMaps into
    /// the pods (up to a minute or two) and the workers to reload them.
    /// Defaults to 2m.
    #[serde(default = "default_phase_dwell")]
    pub min_phase_duration: Duration,
}

impl Default for CaRotationSpec {
    fn default() -> Self {
        Self { min_phase_duration: default_phase_dwell() }
    }
}

fn default_phase_dwell() -> Duration {
    Duration::new("2m")
}

fn default_cert_lifetime() -> Duration {
    Duration::new("720h")
}

fn default_renew_before() -> Duration {
    Duration::new("240h")
}

/// A user-provided party CA.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSpec {
    /// A `kubernetes.io/tls` Secret whose `tls.crt` and `tls.key` are the CA
    /// certificate and key. Give the peers this CA's certificate.
    pub secret_ref: SecretReference,
}

/// The peer-facing Service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// How peers reach the workers: `ClusterIP` (same cluster, or behind
    /// your own ingress), `NodePort` or `LoadBalancer`. Defaults to ClusterIP.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,

    /// Annotations for the peer Service (for example, load balancer settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A Service type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ServiceType {
    /// A cluster-internal virtual IP.
    #[default]
    ClusterIP,
    /// A port on every node.
    NodePort,
    /// An external load balancer.
    LoadBalancer,
}

/// Network access to the workers.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Source CIDRs allowed to reach the peer port. Empty: any source (peers
    /// are still authenticated by mutual TLS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("network.peerCidrs must be CIDRs such as 203.0.113.0/24"))]
    pub peer_cidrs: Vec<String>,

    /// Who may scrape the metrics port (for example, Prometheus pods by
    /// namespace and pod selector). Empty: nobody; the control port is
    /// always open only to the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub metrics_from: Vec<NetworkPolicyPeer>,
}

/// The observed state of an MpcCluster, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MpcClusterStatus {
    /// Ready, Progressing, Degraded, CertificatesReady, PeersReachable,
    /// RolloutProgressing, RolloutPaused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Worker shards whose pods are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_shards: Option<i32>,

    /// Ready and desired shards as `ready/desired`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards_ready: Option<String>,

    /// The highest protocol version every shard offers, as their control
    /// API reports it once the last rollout completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<i32>,

    /// Peers that answered on their endpoint at the last probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_reachable: Option<i32>,

    /// Per-peer reachability.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub peers: Vec<PeerStatus>,

    /// Certificate expiry, and the phase of a CA key replacement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificatesStatus>,

    /// The partitioned rollout of the worker pods: which template is being
    /// rolled out and how far it got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum RolloutPhase {
    /// The new pod template is applied with the partition at the shard
    /// count: no pod is replaced until the StatefulSet controller has seen it.
    #[default]
    Starting,
    /// `currentShard` is draining: it admits no new jobs while its
    /// in-flight jobs finish (or `drainTimeout` passes).
    Draining,
    /// The partition is at `currentShard`: its pod is being replaced and
    /// must become updated, ready and healthy within `shardTimeout`.
    Updating,
    /// `currentShard` did not become healthy within `shardTimeout`; no other
    /// shard is touched. Resumes by itself if the shard recovers; revert
    /// the spec to roll back.
    Paused,
    /// Every shard runs the target template.
    Complete,
}

/// The rollout of the worker pod template.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Where the rollout stands.
    pub phase: RolloutPhase,
    /// SHA-256 of the pod template being rolled out (the StatefulSet's
    /// `cohort.dev/template-hash` annotation).
    pub target_hash: String,
    /// The shard being drained or replaced (shards go from the highest
    /// ordinal down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_shard: Option<i32>,
    /// Shards rolled to the target and verified healthy in this rollout.
    #[serde(default)]
    pub shards_updated: i32,
    /// Shards that already ran the target when the rollout began (the low
    /// ordinals, after a rollback); they are not replaced.
    #[serde(default)]
    pub already_updated: i32,
    /// When this rollout began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the current step (draining or replacing `currentShard`) began;
    /// the drain and shard deadlines count from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// What the rollout waits for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Reachability of one peer party.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    /// The peer's name.
    pub name: String,
    /// Whether the peer completed a TLS handshake at the last probe.
    pub reachable: bool,
    /// When the peer was last probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// Why the peer is unreachable (never contains a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Certificate expiry times.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesStatus {
    /// When the party CA expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_not_after: Option<Time>,
    /// When the first worker certificate expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_not_after: Option<Time>,
    /// When the operator's control-API client certificate expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_not_after: Option<Time>,
    /// When the operator will next renew a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_renewal: Option<Time>,
    /// A CA key replacement in progress (or the last one, `Complete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_rotation: Option<CaRotationStatus>,
}

/// The phases of a CA key replacement, in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
pub enum CaRotationPhase {
    /// A new CA key is generated and stored beside the old one; the
    /// published CA bundle (`<name>-ca`, `ca.crt`) and every trust bundle
    /// hold both CAs. Peers must copy the bundle now.
    #[default]
    TrustNewCa,
    /// Worker and operator certificates are reissued by the new CA.
    ReissueLeaves,
    /// Every shard serves a certificate of the new CA; the old CA leaves
    /// the bundles.
    RetireOldCa,
    /// Only the new CA remains.
    Complete,
}

/// A CA key replacement.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaRotationStatus {
    /// The current phase.
    pub phase: CaRotationPhase,
    /// The `cohort.dev/rotate-ca-key` annotation value that started it.
    pub token: String,
    /// When the replacement began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the current phase began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_started_at: Option<Time>,
    /// What the phase waits for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl MpcClusterSpec {
    /// The party named by `spec.self`, if the list holds it (the schema
    /// guarantees it for stored objects).
    pub fn self_party(&self) -> Option<&Party> {
        self.parties.iter().find(|p| p.name == self.self_)
    }

    /// The other parties, in list order.
    pub fn peers(&self) -> impl Iterator<Item = &Party> {
        self.parties.iter().filter(move |p| p.name != self.self_)
    }
}
