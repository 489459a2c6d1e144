//! The dealer's Prometheus metrics (`cohort_dealer_`), served by
//! `cohort-dealer --metrics-addr`.
//!
//! Counts only: jobs by outcome, material dealt by kind, refusals by stage,
//! certificate reloads and expiry. Labels come from fixed sets; no job id,
//! party input or material value is ever a label or a sample.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::transport::SharedIdentity;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Stage {
    stage: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadResult {
    result: &'static str,
}

/// A counter family with every label value of `values` created at 0.
fn family<L>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: &[&'static str],
    label: fn(&'static str) -> L,
) -> Family<L, Counter>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Counter>::default();
    registry.register(name, help, f.clone());
    for &v in values {
        let _ = f.get_or_create(&label(v));
    }
    f
}

/// Outcomes of `jobs_total`: dealt to the end, or failed (before or while
/// dealing).
pub const OUTCOMES: [&str; 2] = ["dealt", "failed"];
/// Kinds of `material_dealt_total`.
pub const KINDS: [&str; 6] = ["triple", "div_pair", "bit_triple", "edabit", "dabit", "permutation_element"];
/// Stages of `refusals_total`: a client certificate refused at the TLS
/// handshake, or a request refused (malformed, unknown party, reused job
/// id, limits).
pub const STAGES: [&str; 2] = ["handshake", "request"];
/// Results of `tls_reloads_total`.
pub const RELOADS: [&str; 2] = ["applied", "rejected"];

/// The dealer's metrics.
pub struct DealerMetrics {
    registry: Registry,
    jobs: Family<Outcome, Counter>,
    material: Family<Kind, Counter>,
    refusals: Family<Stage, Counter>,
    tls_reloads: Family<ReloadResult, Counter>,
    cert_expiry: Gauge<f64, AtomicU64>,
    identity: SharedIdentity,
}

impl DealerMetrics {
    /// Metrics of a dealer with this (replaceable) identity; every series
    /// exists from the start, at 0.
    pub fn new(identity: SharedIdentity) -> DealerMetrics {
        let mut registry = Registry::with_prefix("cohort_dealer");
        let jobs =
            family(&mut registry, "jobs", "Jobs by outcome (dealt, failed)", &OUTCOMES, |outcome| Outcome { outcome });
        let material = family(
            &mut registry,
            "material_dealt",
            "Items of correlated randomness dealt, summed over parties (triple, div_pair, bit_triple, edabit, dabit, \
             permutation_element)",
            &KINDS,
            |kind| Kind { kind },
        );
        let refusals = family(
            &mut registry,
            "refusals",
            "Clients refused (handshake: certificate refused; request: request refused)",
            &STAGES,
            |stage| Stage { stage },
        );
        let tls_reloads = family(
            &mut registry,
            "tls_reloads",
            "Changes of the TLS files seen (applied; rejected: the previous material stays in use)",
            &RELOADS,
            |result| ReloadResult { result },
        );
        let cert_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until the dealer's certificate in use expires (negative once expired)",
            cert_expiry.clone(),
        );
        DealerMetrics { registry, jobs, material, refusals, tls_reloads, cert_expiry, identity }
    }

    pub(crate) fn job(&self, outcome: &'static str) {
        debug_assert!(OUTCOMES.contains(&outcome), "{outcome}");
        self.jobs.get_or_create(&Outcome { outcome }).inc();
    }

    /// Count a dealt job's material, per kind (bit triples in triples, not
    /// words), summed over its parties.
    pub(crate) fn dealt(&self, totals: &crate::preprocessing::MaterialTotals, parties: u64) {
        for (kind, n) in [
            ("triple", totals.triples),
            ("div_pair", totals.div_pairs),
            ("bit_triple", totals.bit_triples),
            ("edabit", totals.edabits),
            ("dabit", totals.dabits),
            ("permutation_element", totals.permutations),
        ] {
            self.material.get_or_create(&Kind { kind }).inc_by(n.saturating_mul(parties));
        }
    }

    pub(crate) fn refused(&self, stage: &'static str) {
        debug_assert!(STAGES.contains(&stage), "{stage}");
        self.refusals.get_or_create(&Stage { stage }).inc();
    }

    /// Record a change of the TLS files (`applied` or `rejected`).
    pub fn tls_reloaded(&self, result: &'static str) {
        debug_assert!(RELOADS.contains(&result), "{result}");
        self.tls_reloads.get_or_create(&ReloadResult { result }).inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        self.cert_expiry.set(self.identity.current().cert_expires_in());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
