//! The operator's Prometheus metrics (prometheus-client).
//!
//! Labels are bounded and public: a kind out of three, a reason word out of
//! a fixed set, an outcome. No object name, job id or value is a label.

use std::sync::Arc;
use std::time::Duration;

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

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabel, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabel, Histogram>,
    jobs: Family<OutcomeLabel, Counter>,
    leader: Gauge,
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
        Metrics { registry, reconciles, errors, duration, jobs, leader }
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

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Reconciles run so far for `kind`.
    pub fn reconciliations(&self, kind: &str) -> u64 {
        self.reconciles.get_or_create(&KindLabel { kind: kind.to_string() }).get()
    }

    /// Whether this replica holds the leader Lease.
    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
