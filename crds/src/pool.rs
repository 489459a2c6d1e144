//! `PreprocessingPool`: correlated randomness kept ready ahead of jobs.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Duration, ENDPOINT_PATTERN, LocalObjectReference, NAME_PATTERN, Trust};

/// The most generator replicas a pool may run.
pub const MAX_GENERATOR_REPLICAS: i32 = 16;

/// Preprocessing material (Beaver triples, division pairs) generated ahead
/// of jobs for one MpcCluster, kept between a low watermark and a target.
/// Material is used once: consumption is recorded before use.
// kube's `printcolumn(...)` entries repeat keys such as `type_`, which
// clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, KubeSchema)]
#[kube(
    group = "cohort.dev",
    version = "v1alpha1",
    kind = "PreprocessingPool",
    plural = "preprocessingpools",
    shortname = "mpcpool",
    category = "cohort",
    namespaced,
    status = "PreprocessingPoolStatus",
    derive = "PartialEq",
    validation = Rule::new("size(self.metadata.name) <= 45").message("metadata.name: at most 45 characters (it prefixes the dealer's Service and pod names)"),
    doc = "PreprocessingPool keeps correlated randomness (Beaver triples, division pairs) ready ahead of MPC jobs for one MpcCluster.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name",
        priority = 1,
        description = "The MpcCluster this pool serves"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.generator.mode",
        description = "How material is generated"
    ),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.available.beaver-triple",
        description = "Beaver triples available"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether material is above the low watermark"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1,
        description = "Why the pool is (not) ready"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PreprocessingPoolSpec {
    /// The MpcCluster whose workers consume this pool. Immutable: material
    /// is bound to the federation it was generated for.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.clusterRef is immutable"))]
    pub cluster_ref: LocalObjectReference,

    /// The material kinds to keep, each with a target and a low watermark.
    /// Kinds are unique.
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["kind".into()]))]
    pub material: Vec<MaterialTarget>,

    /// How material is generated.
    pub generator: GeneratorSpec,

    /// Persistent storage of a hosted dealer's journal. Unused in mode
    /// `ot`: the workers keep the material on their results volumes.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.storage is immutable: it sizes the dealer's journal volume, which a StatefulSet cannot resize"))]
    pub storage: StorageSpec,

    /// Material older than this is deleted unused, as a duration such as
    /// `24h`. Defaults to 24h.
    #[serde(default = "default_ttl")]
    pub ttl: Duration,
}

fn default_ttl() -> Duration {
    Duration::new("24h")
}

/// A material kind and how much of it to keep.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.lowWatermark <= self.target").message("lowWatermark must not exceed target"))]
pub struct MaterialTarget {
    /// `beaver-triple` (one per secret multiplication), `division-pair`
    /// (one per secret division or fixed-point truncation), or a binary
    /// kind of comparisons: `bit-triple` (one per AND gate, counted in
    /// triples, kept in words of 64), `eda-bit` or `da-bit` (conversions
    /// between the arithmetic and binary sharings).
    pub kind: MaterialKind,
    /// How many items to generate up to.
    #[schemars(range(min = 1, max = 1_000_000_000_000i64))]
    pub target: i64,
    /// Below this many items the pool reports `BelowWatermark` and generates
    /// with priority. At most `target`.
    #[schemars(range(min = 0, max = 1_000_000_000_000i64))]
    pub low_watermark: i64,
}

/// A kind of preprocessing material.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema)]
pub enum MaterialKind {
    /// Beaver multiplication triples.
    #[serde(rename = "beaver-triple")]
    BeaverTriple,
    /// Random pairs for division by a public value (and truncation).
    #[serde(rename = "division-pair")]
    DivisionPair,
    /// Bit triples over GF(2), for AND gates (counted in triples).
    #[serde(rename = "bit-triple")]
    BitTriple,
    /// edaBits: a random ring element with its bits (arithmetic to binary).
    #[serde(rename = "eda-bit")]
    EdaBit,
    /// daBits: a random bit in both sharings (binary to arithmetic).
    #[serde(rename = "da-bit")]
    DaBit,
}

impl MaterialKind {
    /// The kind as written in manifests and as the key of `status.available`.
    pub fn as_str(self) -> &'static str {
        match self {
            MaterialKind::BeaverTriple => "beaver-triple",
            MaterialKind::DivisionPair => "division-pair",
            MaterialKind::BitTriple => "bit-triple",
            MaterialKind::EdaBit => "eda-bit",
            MaterialKind::DaBit => "da-bit",
        }
    }

    /// Whether the kind is one of comparisons' binary kinds.
    pub fn is_binary(self) -> bool {
        matches!(self, MaterialKind::BitTriple | MaterialKind::EdaBit | MaterialKind::DaBit)
    }
}

/// How material is generated.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'dealer' || has(self.dealer)").message("generator.dealer is required when mode is dealer"))]
#[x_kube(validation = Rule::new("self.mode == 'dealer' || !has(self.dealer)").message("generator.dealer is only allowed when mode is dealer"))]
pub struct GeneratorSpec {
    /// `dealer`: a TRUSTED THIRD PARTY generates the material (it could
    /// learn inputs if it colluded with a party). `ot`: the parties generate
    /// it together with oblivious transfer, no trusted party; the cluster's
    /// worker shards generate and keep it, between the watermarks.
    pub mode: GeneratorMode,

    /// Generator pods of a hosted dealer (exactly 1). Unused in mode `ot`,
    /// where the cluster's worker shards generate. Defaults to 1.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = MAX_GENERATOR_REPLICAS))]
    pub replicas: i32,

    /// The dealer, in `dealer` mode: hosted by this pool, or remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dealer: Option<PoolDealer>,
}

fn default_replicas() -> i32 {
    1
}

/// How material is generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorMode {
    /// A trusted dealer generates the material.
    Dealer,
    /// The parties generate it with oblivious transfer.
    Ot,
}

/// The dealer of a pool in dealer mode. Either `host: true` (this pool runs
/// the federation's dealer: do this only in an organization every party
/// trusts, or in a test federation), or `name`, `endpoint` and `trust` of a
/// dealer run elsewhere.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.host) && self.host) ? !has(self.endpoint) && !has(self.trust) : has(self.name) && has(self.endpoint) && has(self.trust)").message("set either host: true, or name, endpoint and trust of a remote dealer"))]
pub struct PoolDealer {
    /// Run the dealer in this pool's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<bool>,
    /// The dealer's name (`spiffe://<federation>/dealer/<name>`). Defaults to
    /// the pool's name when hosting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(NAME_PATTERN))]
    pub name: Option<String>,
    /// A remote dealer's address, as `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 261), pattern(ENDPOINT_PATTERN))]
    pub endpoint: Option<String>,
    /// The CA that issued a remote dealer's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<Trust>,
}

/// Persistent storage for generated material.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size per generator replica. Defaults to 10Gi.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// The StorageClass of the volumes. Defaults to the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self { size: default_storage_size(), storage_class_name: None }
    }
}

fn default_storage_size() -> Quantity {
    Quantity("10Gi".to_string())
}

/// The observed state of a PreprocessingPool, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreprocessingPoolStatus {
    /// Ready, Progressing, Degraded, BelowWatermark.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Items available per material kind (`beaver-triple`, `division-pair`,
    /// `bit-triple`, `eda-bit`, `da-bit`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub available: BTreeMap<String, i64>,

    /// Items generated per second per material kind, averaged over the last
    /// minute.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub generation_rate: BTreeMap<String, i64>,

    /// Generator replicas that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
}
