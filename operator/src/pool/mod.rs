//! The pure half of the `PreprocessingPool` reconciler.
//!
//! The same pipeline as [`crate::cluster`]: resolve references → validate →
//! build the desired objects → apply them → compute status. This module
//! holds the steps that need no Kubernetes client:
//!
//! - [`Pool::from_resource`] checks the pool against the MpcCluster it
//!   names and says which field is wrong, with a condition reason
//!   ([`Error::reason`]);
//! - [`certs`] plans and issues the hosted dealer's certificate from the
//!   cluster's party CA (renewed `renewBefore` ahead of expiry, like the
//!   workers');
//! - [`desired`] builds every object a hosting pool owns;
//! - [`status`] computes `PreprocessingPoolStatus` from the validation
//!   outcome and the observed dealer StatefulSet.
//!
//! # What a pool is today
//!
//! Only `generator.mode: dealer` runs. A trusted dealer generates material
//! **on demand, per job**, when every party of the job has asked for it:
//! there is no stock, so the pool counts none (`status.available` stays
//! empty and `BelowWatermark` is `False`, reason `OnDemand`).
//!
//! With `generator.mode: ot` the parties generate the material among
//! themselves, and **the cluster's worker shards are the generators**: the
//! MpcCluster controller renders the pool's watermarks and `ttl` into every
//! shard's configuration ([`Pool::worker_settings`]); each shard keeps its
//! store on its results volume and fills it with its peers' same shard
//! (the federation's fill leader starts fills; see docs/preprocessing.md).
//! Such a pool owns no object; its status is read from the workers'
//! control API (`GET /v1/pool`), and MpcJobs that name it are dispatched
//! with `preprocessing: pool`. Keeping the store beside the jobs that use
//! it (rather than in separate generator pods) means material never
//! crosses another channel between generation and use, and the use-once
//! ledger is the same file the job consumes from.
//!
//! A pool serves only a cluster whose protocol takes material
//! (`additive-semi-honest`). For a `replicated-3` cluster it is refused
//! ([`Error::ProtocolTakesNoPreprocessing`], reason
//! `ProtocolTakesNoPreprocessing`): it generates nothing, the workers get
//! no `pool:` settings, and a dealer it hosted before the cluster changed
//! protocol is removed.
//!
//! # The pool and `MpcCluster.spec.dealer`
//!
//! The workers draw material from the dealer named by their MpcCluster's
//! `spec.dealer` (rendered into every shard's configuration), never from
//! the pool directly. So the two must agree:
//!
//! - a **remote** dealer (`generator.dealer: {name, endpoint, trust}`) must
//!   be the cluster's `spec.dealer` — same name, endpoint and trust Secret
//!   reference — else reason `DealerMismatch`. Such a pool owns no object;
//!   it documents and reports the federation's material source.
//! - a **hosted** dealer (`generator.dealer.host: true`) is named by
//!   `generator.dealer.name`, or the pool's name. The cluster's
//!   `spec.dealer` must name it (so this party's workers use it; its
//!   `endpoint` is where peers reach the dealer, and so the dealer
//!   certificate's DNS name and the peer Service's port), else
//!   `DealerMismatch`. The dealer's certificate is issued by this party's
//!   CA (the cluster's `<cluster>-ca` or `spec.tls.ca`), so the other
//!   parties configure this party's CA certificate as the dealer's trust.
//!   It serves every party of the cluster's `spec.parties`, each pinned to
//!   its own CA from the cluster's trust ConfigMap.
//!
//! A hosted dealer runs exactly **one** replica: each replica would keep
//! its own journal of dealt job ids, so two replicas behind one Service
//! could both deal the same job id — material reuse, which breaks Beaver
//! multiplication. `generator.replicas` other than 1 is refused (reason
//! `InvalidSpec`). A remote pool runs nothing, so its `replicas` and
//! `storage` are unused.
//!
//! # Naming
//!
//! For a hosting PreprocessingPool `<pool>`, the operator owns (all in its
//! namespace):
//!
//! | object | name |
//! |---|---|
//! | Secret (dealer chain + key, `kubernetes.io/tls`) | `<pool>-dealer-tls` |
//! | headless Service (the pod's stable DNS name) | `<pool>-dealer-headless` |
//! | Service (the dealer port; type from the cluster's `spec.service`) | `<pool>-dealer` |
//! | StatefulSet (pod `<pool>-dealer-0`) | `<pool>-dealer` |
//! | PersistentVolumeClaim (the journal; from the StatefulSet's template) | `state-<pool>-dealer-0` |
//! | NetworkPolicy | `<pool>-dealer` |
//!
//! and mounts, read-only, the cluster's `<cluster>-trust` ConfigMap (owned
//! by the MpcCluster). Service names are DNS-1035 labels of at most 63
//! characters, and the pod's `controller-revision-hash` label is
//! `<pool>-dealer-<10 chars>`, so the pool's name must be a DNS-1035 label
//! of at most [`MAX_POOL_NAME`] characters.

pub mod certs;
pub mod desired;
pub mod status;

use cohort_crds::common::{DealerEndpoint, truncate};
use cohort_crds::pool::{GeneratorMode, MaterialKind, PoolDealer, PreprocessingPoolSpec};
use cohort_crds::{MpcCluster, PreprocessingPool};
use cohort_worker::transport::Role;

use crate::cluster::{self, Cluster, Endpoint};

/// The longest PreprocessingPool name the operator accepts (see the module
/// docs).
pub const MAX_POOL_NAME: usize = 45;

/// The dealer's container port (every pod has its own address; the peer
/// Service maps the dealer endpoint's port to it).
pub const DEALER_PORT: i32 = 7500;

/// Condition reasons for a pool the operator cannot run.
pub mod reasons {
    /// A field has a value the operator cannot use (the message names it).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The pool's dealer and the MpcCluster's `spec.dealer` disagree.
    pub const DEALER_MISMATCH: &str = "DealerMismatch";
    /// The referenced MpcCluster itself is invalid.
    pub const CLUSTER_INVALID: &str = "ClusterInvalid";
    /// Observed material (the party CA, the trust bundle, a certificate)
    /// is missing or unusable; usually transient while the cluster converges.
    pub const MATERIAL_UNAVAILABLE: &str = "MaterialUnavailable";
    /// Issuing the dealer's certificate failed.
    pub const ISSUE_FAILED: &str = "IssueFailed";
    /// The MpcCluster runs a protocol without preprocessing material
    /// (`replicated-3`): the pool is refused, and so is an MpcJob that
    /// names a pool on such a cluster.
    pub const PROTOCOL_TAKES_NO_PREPROCESSING: &str = "ProtocolTakesNoPreprocessing";
}

/// Why a pool cannot be run or its objects built. Every variant names the
/// field or object concerned; none carries key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the PreprocessingPool has a value the operator cannot use.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A field the operator needs is not set.
    #[error("{field} is not set")]
    Missing { field: String },
    /// The pool's dealer and the MpcCluster's `spec.dealer` disagree.
    #[error("{field}: {reason}")]
    DealerMismatch { field: String, reason: String },
    /// The referenced MpcCluster is invalid (its own status says more).
    #[error("the MpcCluster {name}: {source}")]
    Cluster {
        name: String,
        #[source]
        source: cluster::Error,
    },
    /// Observed material, issuing or rendering failed (see the cluster's
    /// error; these name the object concerned).
    #[error(transparent)]
    Build(cluster::Error),
    /// The MpcCluster runs a protocol that takes no preprocessing material,
    /// so the pool has nothing to do: it generates nothing and owns nothing.
    #[error(
        "the MpcCluster {cluster} runs {protocol}, which takes no preprocessing material: this pool is not used; \
         delete it (and spec.preprocessing from the MpcJobs that name it)"
    )]
    ProtocolTakesNoPreprocessing { cluster: String, protocol: &'static str },
    /// [`desired::build`] was asked for a pool whose dealer is remote: it
    /// owns no objects.
    #[error("spec.generator.dealer: the dealer is remote; this pool owns no objects")]
    NotHosted,
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid { field: field.into(), reason: reason.into() }
    }

    fn mismatch(field: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::DealerMismatch { field: field.into(), reason: reason.into() }
    }

    /// The CamelCase reason for the pool's conditions ([`reasons`]).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Invalid { .. } | Error::Missing { .. } | Error::NotHosted => reasons::INVALID_SPEC,
            Error::DealerMismatch { .. } => reasons::DEALER_MISMATCH,
            Error::Cluster { .. } => reasons::CLUSTER_INVALID,
            Error::ProtocolTakesNoPreprocessing { .. } => reasons::PROTOCOL_TAKES_NO_PREPROCESSING,
            Error::Build(cluster::Error::Issue { .. }) => reasons::ISSUE_FAILED,
            Error::Build(cluster::Error::Invalid { .. } | cluster::Error::Missing { .. }) => reasons::INVALID_SPEC,
            Error::Build(_) => reasons::MATERIAL_UNAVAILABLE,
        }
    }
}

impl From<cluster::Error> for Error {
    fn from(e: cluster::Error) -> Error {
        Error::Build(e)
    }
}

/// The pool's dealer, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dealer<'a> {
    /// This pool runs the dealer.
    Hosted {
        /// `dealer/<name>` is its principal.
        name: String,
        /// Where peers reach it: the cluster's `spec.dealer.endpoint`.
        endpoint: Endpoint,
    },
    /// A dealer run elsewhere: the cluster's `spec.dealer`.
    Remote { name: &'a str, endpoint: Endpoint },
}

impl Dealer<'_> {
    /// The dealer's name.
    pub fn name(&self) -> &str {
        match self {
            Dealer::Hosted { name, .. } => name,
            Dealer::Remote { name, .. } => name,
        }
    }

    /// Where the dealer is reached.
    pub fn endpoint(&self) -> &Endpoint {
        match self {
            Dealer::Hosted { endpoint, .. } | Dealer::Remote { endpoint, .. } => endpoint,
        }
    }

    /// The dealer's principal, `dealer/<name>`.
    pub fn principal(&self) -> String {
        Role::Dealer.principal(self.name())
    }

    /// Whether this pool runs the dealer.
    pub fn is_hosted(&self) -> bool {
        matches!(self, Dealer::Hosted { .. })
    }
}

/// A PreprocessingPool checked against its MpcCluster: everything the
/// builders and the status rely on.
#[derive(Clone, Debug)]
pub struct Pool<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a PreprocessingPoolSpec,
    /// The MpcCluster the pool serves, checked.
    pub cluster: Cluster<'a>,
    /// The pool's dealer (`generator.mode: dealer`); `None` in `ot` mode,
    /// where the cluster's workers generate and keep the material.
    pub dealer: Option<Dealer<'a>>,
}

impl<'a> Pool<'a> {
    /// Check `pool` against `cluster` (the MpcCluster its `spec.clusterRef`
    /// names, in its namespace). Errors name the field; [`Error::reason`]
    /// gives the condition reason.
    pub fn from_resource(pool: &'a PreprocessingPool, cluster: &'a MpcCluster) -> Result<Pool<'a>, Error> {
        let meta = &pool.metadata;
        let name = meta.name.as_deref().ok_or_else(|| Error::Missing { field: "metadata.name".into() })?;
        let namespace =
            meta.namespace.as_deref().ok_or_else(|| Error::Missing { field: "metadata.namespace".into() })?;
        let uid = meta.uid.as_deref().ok_or_else(|| Error::Missing { field: "metadata.uid".into() })?;
        check_pool_name(name)?;
        let spec = &pool.spec;
        let cluster_name = cluster.metadata.name.as_deref().unwrap_or_default();
        if spec.cluster_ref.name != cluster_name || cluster.metadata.namespace.as_deref() != Some(namespace) {
            return Err(Error::invalid(
                "spec.clusterRef.name",
                format!(
                    "names the MpcCluster {:?}, but {:?} in namespace {:?} was given",
                    truncate(&spec.cluster_ref.name, 80),
                    truncate(cluster_name, 80),
                    cluster.metadata.namespace.as_deref().unwrap_or_default()
                ),
            ));
        }
        let checked = Cluster::from_resource(cluster)
            .map_err(|source| Error::Cluster { name: cluster_name.to_string(), source })?;
        let protocol = checked.spec.protocol.name;
        if !protocol.uses_preprocessing() {
            return Err(Error::ProtocolTakesNoPreprocessing {
                cluster: cluster_name.to_string(),
                protocol: protocol.as_str(),
            });
        }
        check_material(spec)?;
        spec.ttl.to_std().map_err(|r| Error::invalid("spec.ttl", r))?;
        if spec.generator.mode == GeneratorMode::Ot {
            if spec.generator.dealer.is_some() {
                return Err(Error::invalid("spec.generator.dealer", "only mode dealer has a dealer"));
            }
            check_fits_the_workers_volume(spec)?;
            return Ok(Pool {
                name,
                namespace,
                uid,
                generation: meta.generation,
                spec,
                cluster: checked,
                dealer: None,
            });
        }
        let d =
            spec.generator.dealer.as_ref().ok_or_else(|| Error::Missing { field: "spec.generator.dealer".into() })?;
        let dealer = if d.host == Some(true) {
            hosted(name, spec, d, checked.spec.dealer.as_ref())?
        } else {
            remote(d, checked.spec.dealer.as_ref())?
        };
        Ok(Pool { name, namespace, uid, generation: meta.generation, spec, cluster: checked, dealer: Some(dealer) })
    }

    /// The hosted dealer, when this pool runs one.
    pub fn hosted_dealer(&self) -> Option<&Dealer<'a>> {
        self.dealer.as_ref().filter(|d| d.is_hosted())
    }

    /// The `pool:` settings every shard's worker configuration carries when
    /// the workers generate (`generator.mode: ot`).
    pub fn worker_settings(&self) -> Option<cluster::config::PoolSettings> {
        (self.spec.generator.mode == GeneratorMode::Ot).then(|| worker_settings(self.spec))
    }

    /// Names of the owned objects.
    pub fn names(&self) -> Names<'a> {
        Names { pool: self.name }
    }

    /// The DNS names (and addresses) the hosted dealer's certificate
    /// covers: the pod under the headless Service, the dealer Service, and
    /// the host of the endpoint peers use.
    pub fn dealer_dns_names(&self) -> Vec<String> {
        let n = self.names();
        let ns = self.namespace;
        let (pod, headless, service) = (n.pod(), n.headless_service(), n.service());
        let mut names = vec![
            format!("{pod}.{headless}.{ns}.svc"),
            format!("{pod}.{headless}.{ns}.svc.cluster.local"),
            format!("{service}.{ns}.svc"),
            format!("{service}.{ns}.svc.cluster.local"),
            self.dealer.as_ref().map(|d| d.endpoint().host.clone()).unwrap_or_default(),
        ];
        names.sort();
        names.dedup();
        names
    }
}

fn hosted(
    pool: &str,
    spec: &PreprocessingPoolSpec,
    d: &PoolDealer,
    cluster_dealer: Option<&DealerEndpoint>,
) -> Result<Dealer<'static>, Error> {
    if d.endpoint.is_some() || d.trust.is_some() {
        return Err(Error::invalid(
            "spec.generator.dealer",
            "a hosted dealer (host: true) takes no endpoint or trust: its endpoint is the MpcCluster's \
             spec.dealer.endpoint and its certificate is issued by this party's CA",
        ));
    }
    let name = d.name.clone().unwrap_or_else(|| pool.to_string());
    let field = if d.name.is_some() { "spec.generator.dealer.name" } else { "metadata.name" };
    cohort_worker::transport::certs::validate_name("dealer", &name).map_err(|r| Error::invalid(field, r))?;
    if spec.generator.replicas != 1 {
        return Err(Error::invalid(
            "spec.generator.replicas",
            format!(
                "{}: a hosted dealer runs exactly 1 replica (each replica would keep its own journal of dealt job \
                 ids, so two replicas could deal the same job id twice)",
                spec.generator.replicas
            ),
        ));
    }
    let Some(cd) = cluster_dealer else {
        return Err(Error::mismatch(
            "spec.dealer",
            format!(
                "this pool hosts the dealer {name}, but the MpcCluster sets no spec.dealer; set spec.dealer.name to \
                 {name} (with the endpoint where peers reach this dealer and this party's CA as its trust) so the \
                 workers use it"
            ),
        ));
    };
    if cd.name != name {
        return Err(Error::mismatch(
            "spec.dealer.name",
            format!(
                "this pool hosts the dealer {name}, but the MpcCluster's spec.dealer names {}; the workers use the \
                 cluster's dealer, so name the same dealer in both",
                truncate(&cd.name, 63)
            ),
        ));
    }
    let endpoint = Endpoint::parse("spec.dealer.endpoint", &cd.endpoint)
        .map_err(|e| Error::mismatch("spec.dealer.endpoint", e.to_string()))?;
    Ok(Dealer::Hosted { name, endpoint })
}

fn remote<'a>(d: &'a PoolDealer, cluster_dealer: Option<&'a DealerEndpoint>) -> Result<Dealer<'a>, Error> {
    let name = d.name.as_deref().ok_or_else(|| Error::Missing { field: "spec.generator.dealer.name".into() })?;
    let endpoint_text =
        d.endpoint.as_deref().ok_or_else(|| Error::Missing { field: "spec.generator.dealer.endpoint".into() })?;
    let trust = d.trust.as_ref().ok_or_else(|| Error::Missing { field: "spec.generator.dealer.trust".into() })?;
    cohort_worker::transport::certs::validate_name("dealer", name)
        .map_err(|r| Error::invalid("spec.generator.dealer.name", r))?;
    let endpoint = Endpoint::parse("spec.generator.dealer.endpoint", endpoint_text)
        .map_err(|e| Error::invalid("spec.generator.dealer.endpoint", e.to_string()))?;
    let Some(cd) = cluster_dealer else {
        return Err(Error::mismatch(
            "spec.generator.dealer",
            format!(
                "names the remote dealer {name}, but the MpcCluster sets no spec.dealer, so the workers would use no \
                 dealer; set the MpcCluster's spec.dealer to the same name, endpoint and trust"
            ),
        ));
    };
    let differs = |what: &str, pool: &str, cluster: &str| {
        Error::mismatch(
            format!("spec.generator.dealer.{what}"),
            format!(
                "{:?} differs from the MpcCluster's spec.dealer.{what} {:?}; the workers use the cluster's dealer, so \
                 both must name the same one",
                truncate(pool, 80),
                truncate(cluster, 80)
            ),
        )
    };
    if cd.name != name {
        return Err(differs("name", name, &cd.name));
    }
    if cd.endpoint != endpoint_text {
        return Err(differs("endpoint", endpoint_text, &cd.endpoint));
    }
    if cd.trust != *trust {
        let show = |t: &cohort_crds::common::Trust| format!("{}/{}", t.secret_ref.name, t.secret_ref.key);
        return Err(differs("trust.secretRef", &show(trust), &show(&cd.trust)));
    }
    Ok(Dealer::Remote { name, endpoint })
}

/// Bytes a stored item takes at one party: three 64-bit shares (the most
/// of any kind: a bit triple takes 3 bits, an edaBit 16 bytes, a daBit
/// about 8).
const BYTES_PER_ITEM: i64 = 24;
/// The share of a worker's results volume the pool may fill.
const POOL_BYTES: i64 = 512 * 1024 * 1024;

/// In `ot` mode the material is stored on each worker shard's results
/// volume (1Gi): the targets must fit in half of it, leaving the rest for
/// results and the audit log, with a batch of slack per kind.
fn check_fits_the_workers_volume(spec: &PreprocessingPoolSpec) -> Result<(), Error> {
    // A bit triple's target is in triples; the workers keep words of 64.
    let items: i64 = spec
        .material
        .iter()
        .map(|m| if m.kind == MaterialKind::BitTriple { bit_triple_words(m.target) } else { m.target })
        .sum();
    let bytes = items.saturating_add(2 * i64::try_from(cluster::config::POOL_PER_BATCH).unwrap_or(0)) * BYTES_PER_ITEM;
    if bytes > POOL_BYTES {
        return Err(Error::invalid(
            "spec.material",
            format!(
                "the targets add up to {items} items, about {} MiB per worker shard; in mode ot the workers keep their \
                 material on their results volume, which holds at most {} MiB of it ({} items)",
                bytes / (1024 * 1024),
                POOL_BYTES / (1024 * 1024),
                POOL_BYTES / BYTES_PER_ITEM
            ),
        ));
    }
    Ok(())
}

/// The workers' `pool:` settings of an `ot` pool.
fn worker_settings(spec: &PreprocessingPoolSpec) -> cluster::config::PoolSettings {
    let marks = |kind: MaterialKind| {
        spec.material.iter().find(|m| m.kind == kind).map_or((0, 0), |m| (m.low_watermark, m.target))
    };
    let (low, target) = marks(MaterialKind::BitTriple);
    cluster::config::PoolSettings {
        ttl_seconds: spec.ttl.to_std().map_or(24 * 3600, |d| d.as_secs()),
        triples: marks(MaterialKind::BeaverTriple),
        division_pairs: marks(MaterialKind::DivisionPair),
        bit_triple_words: (bit_triple_words(low), bit_triple_words(target)),
        eda_bits: marks(MaterialKind::EdaBit),
        da_bits: marks(MaterialKind::DaBit),
    }
}

/// Bit triples in the workers' unit, words of 64 (rounded up).
pub fn bit_triple_words(triples: i64) -> i64 {
    triples.saturating_add(63) / 64
}

fn check_material(spec: &PreprocessingPoolSpec) -> Result<(), Error> {
    if spec.material.is_empty() {
        return Err(Error::invalid("spec.material", "list at least one material kind"));
    }
    for (k, m) in spec.material.iter().enumerate() {
        if spec.material[..k].iter().any(|o| o.kind == m.kind) {
            return Err(Error::invalid(
                format!("spec.material[{k}].kind"),
                format!("{} is listed twice", m.kind.as_str()),
            ));
        }
        if m.target < 1 {
            return Err(Error::invalid(format!("spec.material[{k}].target"), "must be at least 1"));
        }
        if m.low_watermark < 0 || m.low_watermark > m.target {
            return Err(Error::invalid(
                format!("spec.material[{k}].lowWatermark"),
                format!("{} is not between 0 and the target {}", m.low_watermark, m.target),
            ));
        }
    }
    Ok(())
}

fn check_pool_name(name: &str) -> Result<(), Error> {
    let ok_chars = name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    let ok_ends = name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && name.as_bytes().last().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() > MAX_POOL_NAME || !ok_chars || !ok_ends {
        return Err(Error::invalid(
            "metadata.name",
            format!(
                "{:?}: use at most {MAX_POOL_NAME} lowercase letters, digits and '-', starting with a letter and \
                 ending with a letter or digit (it prefixes the dealer's Service and pod names)",
                truncate(name, 80)
            ),
        ));
    }
    Ok(())
}

/// Names of the objects a hosting PreprocessingPool owns.
#[derive(Clone, Copy, Debug)]
pub struct Names<'a> {
    pool: &'a str,
}

impl<'a> Names<'a> {
    /// The names for the PreprocessingPool called `pool`.
    pub fn of(pool: &'a str) -> Names<'a> {
        Names { pool }
    }
    pub fn tls_secret(&self) -> String {
        format!("{}-dealer-tls", self.pool)
    }
    pub fn headless_service(&self) -> String {
        format!("{}-dealer-headless", self.pool)
    }
    pub fn service(&self) -> String {
        format!("{}-dealer", self.pool)
    }
    pub fn stateful_set(&self) -> String {
        format!("{}-dealer", self.pool)
    }
    pub fn pod(&self) -> String {
        format!("{}-dealer-0", self.pool)
    }
    /// The claim the StatefulSet creates from its `state` template.
    pub fn state_claim(&self) -> String {
        format!("{}-{}", desired::STATE_VOLUME, self.pod())
    }
    pub fn network_policy(&self) -> String {
        format!("{}-dealer", self.pool)
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! bank-a's cluster (from the cluster fixtures) and pools for it.
    use cohort_crds::PreprocessingPool;
    use cohort_crds::pool::PreprocessingPoolSpec;

    pub use crate::cluster::fixtures::{cluster, foreign_ca, now};

    /// A pool named `name` from a JSON spec.
    pub fn pool(name: &str, spec: serde_json::Value) -> PreprocessingPool {
        let spec: PreprocessingPoolSpec = serde_json::from_value(spec).expect("a valid spec");
        let mut p = PreprocessingPool::new(name, spec);
        p.metadata.namespace = Some("bank-a".into());
        p.metadata.uid = Some("5f1c2d3e-aaaa-4bbb-8ccc-dddddddddddd".into());
        p.metadata.generation = Some(2);
        p
    }

    /// bank-a hosts the dealer `main` (the cluster fixture's `spec.dealer`).
    pub fn hosted() -> PreprocessingPool {
        pool(
            "default",
            serde_json::json!({
                "clusterRef": {"name": "consortium"},
                "material": [{"kind": "beaver-triple", "target": 1000, "lowWatermark": 100}],
                "generator": {"mode": "dealer", "dealer": {"host": true, "name": "main"}},
                "storage": {"size": "2Gi", "storageClassName": "fast-ssd"},
            }),
        )
    }

    /// The cluster fixture's dealer, as a remote pool dealer.
    pub fn remote() -> PreprocessingPool {
        pool(
            "default",
            serde_json::json!({
                "clusterRef": {"name": "consortium"},
                "material": [{"kind": "beaver-triple", "target": 1000, "lowWatermark": 100}],
                "generator": {"mode": "dealer", "dealer": {
                    "name": "main", "endpoint": "dealer.neutral.example:7500",
                    "trust": {"secretRef": {"name": "dealer-ca"}}}},
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{self, cluster};
    use super::*;
    use cohort_crds::pool::MaterialTarget;

    fn err(pool: &PreprocessingPool, cluster: &MpcCluster) -> Error {
        Pool::from_resource(pool, cluster).expect_err("invalid")
    }

    #[test]
    fn a_hosted_pool_names_its_dealer_and_takes_the_cluster_endpoint() {
        let (p, c) = (fixtures::hosted(), cluster(2));
        let pool = Pool::from_resource(&p, &c).expect("valid");
        assert_eq!((pool.name, pool.namespace, pool.cluster.name), ("default", "bank-a", "consortium"));
        let dealer = pool.hosted_dealer().expect("hosted");
        assert_eq!(dealer.principal(), "dealer/main");
        assert_eq!(dealer.endpoint().to_string(), "dealer.neutral.example:7500");
        assert_eq!(
            pool.dealer_dns_names(),
            [
                "dealer.neutral.example",
                "default-dealer-0.default-dealer-headless.bank-a.svc",
                "default-dealer-0.default-dealer-headless.bank-a.svc.cluster.local",
                "default-dealer.bank-a.svc",
                "default-dealer.bank-a.svc.cluster.local",
            ]
        );
        let n = pool.names();
        assert_eq!(
            [n.tls_secret(), n.headless_service(), n.service(), n.stateful_set(), n.pod(), n.state_claim()],
            [
                "default-dealer-tls",
                "default-dealer-headless",
                "default-dealer",
                "default-dealer",
                "default-dealer-0",
                "state-default-dealer-0"
            ]
        );
    }

    #[test]
    fn a_hosted_dealer_defaults_its_name_to_the_pool() {
        let mut p = fixtures::hosted();
        p.spec.generator.dealer.as_mut().expect("dealer").name = None;
        let mut c = cluster(1);
        let e = err(&p, &c);
        assert_eq!(e.reason(), "DealerMismatch");
        assert!(e.to_string().starts_with("spec.dealer.name:") && e.to_string().contains("default"), "{e}");
        c.spec.dealer.as_mut().expect("dealer").name = "default".into();
        let pool = Pool::from_resource(&p, &c).expect("valid");
        assert_eq!(pool.hosted_dealer().expect("hosted").principal(), "dealer/default");
    }

    #[test]
    fn a_remote_pool_must_be_the_clusters_dealer() {
        let c = cluster(1);
        let p = fixtures::remote();
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let dealer = pool.dealer.as_ref().expect("a dealer");
        assert_eq!(*dealer, Dealer::Remote { name: "main", endpoint: dealer.endpoint().clone() });
        assert!(pool.hosted_dealer().is_none());

        let with = |f: &dyn Fn(&mut PoolDealer)| {
            let mut p = fixtures::remote();
            f(p.spec.generator.dealer.as_mut().expect("dealer"));
            p
        };
        for (p, field) in [
            (with(&|d| d.name = Some("other".into())), "spec.generator.dealer.name:"),
            (with(&|d| d.endpoint = Some("dealer.neutral.example:7501".into())), "spec.generator.dealer.endpoint:"),
            (
                with(&|d| d.trust.as_mut().expect("trust").secret_ref.name = "other-ca".into()),
                "spec.generator.dealer.trust.secretRef:",
            ),
        ] {
            let e = err(&p, &c);
            assert_eq!(e.reason(), "DealerMismatch", "{e}");
            assert!(e.to_string().starts_with(field), "{e}");
        }
        let mut no_dealer = c.clone();
        no_dealer.spec.dealer = None;
        let e = err(&p, &no_dealer);
        assert_eq!(e.reason(), "DealerMismatch");
        assert!(e.to_string().contains("sets no spec.dealer"), "{e}");
    }

    #[test]
    fn an_ot_pool_runs_no_dealer_and_gives_the_workers_its_settings() {
        let mut p = fixtures::remote();
        p.spec.generator.mode = GeneratorMode::Ot;
        p.spec.generator.dealer = None;
        p.spec.material = vec![
            MaterialTarget { kind: MaterialKind::BeaverTriple, target: 4000, low_watermark: 1000 },
            MaterialTarget { kind: MaterialKind::DivisionPair, target: 800, low_watermark: 200 },
            // Counted in triples here, in words of 64 at the workers.
            MaterialTarget { kind: MaterialKind::BitTriple, target: 640_001, low_watermark: 64_000 },
            MaterialTarget { kind: MaterialKind::DaBit, target: 3000, low_watermark: 100 },
        ];
        let c = cluster(2);
        let pool = Pool::from_resource(&p, &c).expect("valid");
        assert!(pool.dealer.is_none() && pool.hosted_dealer().is_none());
        let settings = pool.worker_settings().expect("settings");
        assert_eq!((settings.triples, settings.division_pairs), ((1000, 4000), (200, 800)));
        assert_eq!(settings.bit_triple_words, (1000, 10_001));
        assert_eq!((settings.eda_bits, settings.da_bits), ((0, 0), (100, 3000)), "edaBits are not kept");
        assert_eq!(settings.ttl_seconds, 24 * 3600);

        // A dealer is for mode dealer only.
        let mut with_dealer = p.clone();
        with_dealer.spec.generator.dealer = fixtures::remote().spec.generator.dealer;
        let e = err(&with_dealer, &c);
        assert!(e.to_string().starts_with("spec.generator.dealer: only mode dealer"), "{e}");

        // The material lives on the workers' results volume: it must fit.
        let mut huge = p.clone();
        huge.spec.material[0].target = 100_000_000;
        let e = err(&huge, &c);
        assert_eq!(e.reason(), "InvalidSpec");
        assert!(e.to_string().starts_with("spec.material: the targets add up to 100013801 items"), "{e}");

        // A dealer pool gives the workers no pool settings.
        let (remote, one) = (fixtures::remote(), cluster(1));
        assert!(Pool::from_resource(&remote, &one).expect("valid").worker_settings().is_none());
    }

    #[test]
    fn a_replicated_3_cluster_refuses_every_pool() {
        let mut c = cluster(2);
        c.spec.protocol.name = cohort_crds::cluster::ProtocolName::Replicated3;
        c.spec.dealer = None;
        let mut ot = fixtures::remote();
        ot.spec.generator.mode = GeneratorMode::Ot;
        ot.spec.generator.dealer = None;
        for p in [fixtures::hosted(), fixtures::remote(), ot] {
            let e = err(&p, &c);
            assert!(matches!(e, Error::ProtocolTakesNoPreprocessing { .. }), "{e:?}");
            assert_eq!(e.reason(), reasons::PROTOCOL_TAKES_NO_PREPROCESSING);
            let message = e.to_string();
            assert!(
                message.contains("MpcCluster consortium runs replicated-3")
                    && message.contains("takes no preprocessing material"),
                "{message}"
            );
        }
        // An invalid cluster is still reported as such first.
        c.spec.parties.pop();
        assert_eq!(err(&fixtures::hosted(), &c).reason(), reasons::CLUSTER_INVALID);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let c = cluster(1);
        let check = |p: &PreprocessingPool, c: &MpcCluster, prefix: &str, reason: &str| {
            let e = err(p, c);
            assert!(e.to_string().starts_with(prefix), "{prefix}: {e}");
            assert_eq!(e.reason(), reason, "{e}");
        };
        let mut other_cluster = fixtures::hosted();
        other_cluster.spec.cluster_ref.name = "elsewhere".into();
        check(&other_cluster, &c, "spec.clusterRef.name:", "InvalidSpec");
        let mut other_ns = c.clone();
        other_ns.metadata.namespace = Some("bank-b".into());
        check(&fixtures::hosted(), &other_ns, "spec.clusterRef.name:", "InvalidSpec");

        let mut replicas = fixtures::hosted();
        replicas.spec.generator.replicas = 2;
        check(&replicas, &c, "spec.generator.replicas:", "InvalidSpec");
        assert!(err(&replicas, &c).to_string().contains("twice"));
        // A remote pool runs nothing: its replicas are unused.
        let mut remote_replicas = fixtures::remote();
        remote_replicas.spec.generator.replicas = 3;
        assert!(Pool::from_resource(&remote_replicas, &c).is_ok());

        let mut hosted_endpoint = fixtures::hosted();
        hosted_endpoint.spec.generator.dealer.as_mut().expect("d").endpoint = Some("x.example:1".into());
        check(&hosted_endpoint, &c, "spec.generator.dealer:", "InvalidSpec");
        let mut no_dealer = fixtures::hosted();
        no_dealer.spec.generator.dealer = None;
        check(&no_dealer, &c, "spec.generator.dealer is not set", "InvalidSpec");
        let mut bad_name = fixtures::hosted();
        bad_name.spec.generator.dealer.as_mut().expect("d").name = Some("no/slash".into());
        check(&bad_name, &c, "spec.generator.dealer.name:", "InvalidSpec");
        let mut no_endpoint = fixtures::remote();
        no_endpoint.spec.generator.dealer.as_mut().expect("d").endpoint = None;
        check(&no_endpoint, &c, "spec.generator.dealer.endpoint is not set", "InvalidSpec");

        let mut long = fixtures::hosted();
        long.metadata.name = Some("p".repeat(46));
        check(&long, &c, "metadata.name:", "InvalidSpec");
        let mut no_uid = fixtures::hosted();
        no_uid.metadata.uid = None;
        check(&no_uid, &c, "metadata.uid is not set", "InvalidSpec");

        let mut twice = fixtures::hosted();
        twice.spec.material.push(twice.spec.material[0].clone());
        check(&twice, &c, "spec.material[1].kind:", "InvalidSpec");
        let mut above = fixtures::hosted();
        above.spec.material[0].low_watermark = 5000;
        check(&above, &c, "spec.material[0].lowWatermark:", "InvalidSpec");
        let mut ttl = fixtures::hosted();
        ttl.spec.ttl = cohort_crds::common::Duration::new("soon");
        check(&ttl, &c, "spec.ttl:", "InvalidSpec");

        let mut broken = c.clone();
        broken.spec.shards = 0;
        let e = err(&fixtures::hosted(), &broken);
        assert_eq!(e.reason(), "ClusterInvalid");
        assert!(e.to_string().starts_with("the MpcCluster consortium: spec.shards:"), "{e}");
    }
}
