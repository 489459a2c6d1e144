//! The operator's Prometheus metrics (prometheus-client).
//!
//! Labels are bounded and public: a kind out of three, a reason word out of
//! a fixed set, an outcome, a certificate out of three, and the namespace
//! and name of this party's MpcClusters and PreprocessingPools (objects an
//! administrator creates, a handful per party, public to the federation).
//! No job id, input, value or peer message is a label.
//!
//! Per-object series follow cert-manager's convention: labelled
//! `namespace` and `name` of the object (the ServiceMonitor keeps them with
//! `honorLabels`, so they are not overwritten by the operator pod's own
//! namespace), and removed when the object is deleted ([`Metrics::forget`],
//! [`Metrics::retain`]), so a deleted object's alerts stop.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// One MpcCluster or PreprocessingPool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ObjectLabels {
    namespace: String,
    name: String,
}

impl ObjectLabels {
    fn of(namespace: &str, name: &str) -> ObjectLabels {
        ObjectLabels { namespace: namespace.to_string(), name: name.to_string() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    namespace: String,
    name: String,
    certificate: &'static str,
}

/// The certificates `certificate_expiry_timestamp_seconds` reports.
pub const CERTIFICATES: [&str; 3] = ["ca", "worker", "operator"];

/// An MpcCluster or PreprocessingPool, as its series know it.
#[derive(Clone, Copy, Debug)]
pub struct Object<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// Tells a deleted object from a new one of the same name.
    pub uid: &'a str,
}

/// How many deleted objects' uids are remembered (see [`Metrics::forget`]).
const GONE_REMEMBERED: usize = 1024;

/// The kinds that have per-object series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectKind {
    MpcCluster,
    PreprocessingPool,
}

/// The kinds the operator reconciles.
pub const KINDS: [&str; 3] = ["MpcCluster", "PreprocessingPool", "MpcJob"];

/// The outcomes of `jobs_finished_total`.
pub const JOB_OUTCOMES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabel, Histogram>,
    jobs: Family<OutcomeLabel, Counter>,
    leader: Gauge,
    transitions: Counter,
    peers: Family<ObjectLabels, Gauge>,
    peers_reachable: Family<ObjectLabels, Gauge>,
    cert_expiry: Family<CertificateLabels, Gauge<f64, AtomicU64>>,
    pool_ready: Family<ObjectLabels, Gauge>,
    pool_below: Family<ObjectLabels, Gauge>,
    /// The objects that have series (a Family cannot be listed).
    objects: Mutex<BTreeSet<(ObjectKind, ObjectLabels)>>,
    /// The uids of the last deleted objects: a reconcile that was already
    /// running when its object was deleted must not bring its series back.
    gone: Mutex<std::collections::VecDeque<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cohort_operator");
        let reconciles = Family::<KindLabel, Counter>::default();
        registry.register("reconciliations", "Reconciles run, by kind", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed and were retried, by kind and reason",
            errors.clone(),
        );
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile, by kind", duration.clone());
        let jobs = Family::<OutcomeLabel, Counter>::default();
        registry.register("jobs_finished", "MpcJobs this operator saw finish, by outcome", jobs.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader Lease", leader.clone());
        let transitions = Counter::default();
        registry.register(
            "leader_transitions",
            "Times this replica gained the leader Lease (sum over replicas: leadership changes)",
            transitions.clone(),
        );
        let peers = Family::<ObjectLabels, Gauge>::default();
        registry.register("cluster_peers", "Peer parties of an MpcCluster (the leader's view)", peers.clone());
        let peers_reachable = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "cluster_peers_reachable",
            "Peer parties whose endpoint accepted a TCP connection at the last probe",
            peers_reachable.clone(),
        );
        let cert_expiry = Family::<CertificateLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When an MpcCluster's certificate expires (Unix seconds): ca, worker (the earliest shard), operator",
            cert_expiry.clone(),
        );
        let pool_ready = Family::<ObjectLabels, Gauge>::default();
        registry.register("pool_ready", "1 when a PreprocessingPool's Ready condition is True", pool_ready.clone());
        let pool_below = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "pool_below_watermark",
            "1 when a PreprocessingPool's BelowWatermark condition is True (always 0 in dealer mode: nothing is stocked)",
            pool_below.clone(),
        );
        // Every bounded series exists from the start, at 0: a family
        // without any is left out of the exposition, and rates and alerts
        // need the zero.
        for outcome in JOB_OUTCOMES {
            let _ = jobs.get_or_create(&OutcomeLabel { outcome });
        }
        for kind in KINDS {
            let _ = reconciles.get_or_create(&KindLabel { kind: kind.to_string() });
            for reason in crate::controller::Error::REASONS {
                let _ = errors.get_or_create(&ErrorLabels { kind: kind.to_string(), reason });
            }
        }
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            jobs,
            leader,
            transitions,
            peers,
            peers_reachable,
            cert_expiry,
            pool_ready,
            pool_below,
            objects: Mutex::new(BTreeSet::new()),
            gone: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// A shared handle.
    pub fn shared() -> Arc<Metrics> {
        Arc::new(Metrics::new())
    }

    pub fn reconciled(&self, kind: &str, took: Duration) {
        let label = KindLabel { kind: kind.to_string() };
        self.reconciles.get_or_create(&label).inc();
        self.duration.get_or_create(&label).observe(took.as_secs_f64());
    }

    pub fn reconcile_error(&self, kind: &str, reason: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind: kind.to_string(), reason }).inc();
    }

    pub fn job_finished(&self, outcome: &'static str) {
        self.jobs.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Record whether this replica leads. Gaining the Lease counts a
    /// transition; losing it clears the per-object gauges, which only the
    /// leader keeps current (a standby reports none rather than stale ones).
    pub fn set_leader(&self, leader: bool) {
        let was = self.leader.set(i64::from(leader)) == 1;
        if leader && !was {
            self.transitions.inc();
        }
        if !leader {
            self.peers.clear();
            self.peers_reachable.clear();
            self.cert_expiry.clear();
            self.pool_ready.clear();
            self.pool_below.clear();
            self.tracked().clear();
        }
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, BTreeSet<(ObjectKind, ObjectLabels)>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Note that `obj` has series; false (and nothing to record) when it
    /// was deleted.
    fn track(&self, kind: ObjectKind, obj: Object<'_>) -> bool {
        if self.gone.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|u| u == obj.uid) {
            return false;
        }
        self.tracked().insert((kind, ObjectLabels::of(obj.namespace, obj.name)));
        true
    }

    /// Remove every series of a deleted object (`uid`, when known, keeps a
    /// reconcile still running for it from recording them again).
    pub fn forget(&self, kind: ObjectKind, namespace: &str, name: &str, uid: Option<&str>) {
        if let Some(uid) = uid {
            let mut gone = self.gone.lock().unwrap_or_else(|p| p.into_inner());
            if gone.len() >= GONE_REMEMBERED {
                gone.pop_front();
            }
            gone.push_back(uid.to_string());
        }
        let labels = ObjectLabels::of(namespace, name);
        self.tracked().remove(&(kind, labels.clone()));
        match kind {
            ObjectKind::MpcCluster => {
                self.peers.remove(&labels);
                self.peers_reachable.remove(&labels);
                for certificate in CERTIFICATES {
                    self.cert_expiry.remove(&CertificateLabels {
                        namespace: labels.namespace.clone(),
                        name: labels.name.clone(),
                        certificate,
                    });
                }
            }
            ObjectKind::PreprocessingPool => {
                self.pool_ready.remove(&labels);
                self.pool_below.remove(&labels);
            }
        }
    }

    /// Keep the series of `kind`'s objects in `present` (namespace, name)
    /// only: after a (re)list, the objects deleted while no watch was open.
    pub fn retain(&self, kind: ObjectKind, present: &BTreeSet<(String, String)>) {
        let gone: Vec<ObjectLabels> = self
            .tracked()
            .iter()
            .filter(|(k, l)| *k == kind && !present.contains(&(l.namespace.clone(), l.name.clone())))
            .map(|(_, l)| l.clone())
            .collect();
        for l in gone {
            self.forget(kind, &l.namespace, &l.name, None);
        }
    }

    /// Times this replica gained the Lease.
    pub fn leader_transitions(&self) -> u64 {
        self.transitions.get()
    }

    /// An MpcCluster's last peer probe: how many peers, how many reachable.
    pub fn cluster_peers(&self, cluster: Object<'_>, peers: usize, reachable: usize) {
        if !self.track(ObjectKind::MpcCluster, cluster) {
            return;
        }
        let label = ObjectLabels::of(cluster.namespace, cluster.name);
        self.peers.get_or_create(&label).set(i64::try_from(peers).unwrap_or(i64::MAX));
        self.peers_reachable.get_or_create(&label).set(i64::try_from(reachable).unwrap_or(i64::MAX));
    }

    /// When an MpcCluster's `certificate` (`ca`, `worker`, `operator`)
    /// expires; `None` (not issued yet) removes the series.
    pub fn certificate_expiry(&self, cluster: Object<'_>, certificate: &'static str, not_after: Option<SystemTime>) {
        if !self.track(ObjectKind::MpcCluster, cluster) {
            return;
        }
        let label =
            CertificateLabels { namespace: cluster.namespace.to_string(), name: cluster.name.to_string(), certificate };
        match not_after {
            Some(t) => {
                let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
                    Ok(d) => d.as_secs_f64(),
                    Err(e) => -e.duration().as_secs_f64(),
                };
                self.cert_expiry.get_or_create(&label).set(secs);
            }
            None => {
                self.cert_expiry.remove(&label);
            }
        }
    }

    /// A PreprocessingPool's `Ready` and `BelowWatermark` conditions.
    pub fn pool(&self, pool: Object<'_>, ready: bool, below_watermark: bool) {
        if !self.track(ObjectKind::PreprocessingPool, pool) {
            return;
        }
        let label = ObjectLabels::of(pool.namespace, pool.name);
        self.pool_ready.get_or_create(&label).set(i64::from(ready));
        self.pool_below.get_or_create(&label).set(i64::from(below_watermark));
    }

    /// Reconciles run so far for `kind`.
    pub fn reconciliations(&self, kind: &str) -> u64 {
        self.reconciles.get_or_create(&KindLabel { kind: kind.to_string() }).get()
    }

    /// Whether this replica holds the leader Lease.
    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
