//! The worker's Prometheus metrics (prometheus-client) and its plain-HTTP
//! endpoint: `/metrics` (text format), `/healthz` (the process serves) and
//! `/readyz` (ready for jobs: not draining).
//!
//! Labels carry only bounded, public values (an outcome out of three, a
//! failure reason out of [`FAILURE_REASONS`]). No
//! metric carries an input, share, output, key or seed; sizes and counts
//! are public by the protocol's definition (see `docs/security.md`).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::api::Stats;
use crate::preprocessing::store::{Store, StoredKind};
use crate::transport::SharedIdentity;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadResult {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Peer {
    peer: String,
}

/// The pool's store as last observed: the kinds it has held, and its own
/// counts of consumed and discarded batches (the counters advance by the
/// difference).
#[derive(Debug, Default)]
struct PoolSeen {
    kinds: std::collections::BTreeSet<StoredKind>,
    consumed: u64,
    discarded: u64,
}

/// A kind of pool material: `triples`, or `div_pairs` with its divisor
/// (public: fixed by the programs' precision).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Material {
    kind: &'static str,
    divisor: String,
}

impl Material {
    fn of(kind: StoredKind) -> Material {
        match kind {
            StoredKind::Triples => Material { kind: "triples", divisor: String::new() },
            StoredKind::DivPairs { divisor } => Material { kind: "div_pairs", divisor: divisor.to_string() },
            StoredKind::BitTriples => Material { kind: "bit_triple_words", divisor: String::new() },
            StoredKind::EdaBits => Material { kind: "edabits", divisor: String::new() },
            StoredKind::DaBits => Material { kind: "dabits", divisor: String::new() },
        }
    }
}

/// The results of `tls_reloads_total`: new material in use, or refused
/// (unreadable, mismatched key, wrong identity) with the old kept.
pub const RELOAD_RESULTS: [&str; 2] = ["applied", "rejected"];

/// The outcomes of `jobs_total`.
pub const OUTCOMES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// The reasons of `jobs_refused_total`: this worker had no free slot
/// (`limits.maxJobs`: the submission was answered 429), or a peer had none
/// (the job failed here, retryable, before anything was computed).
pub const REFUSAL_REASONS: [&str; 2] = ["capacity", "peer_capacity"];

/// The reasons of `job_failures_total`, a fixed set derived from the
/// job's failure (see `jobs::failure_reason`): a peer closed the
/// connection; a socket error (refused, unreachable); a timeout (a round,
/// the connect window or the job's deadline); TLS refused (certificates);
/// the parties disagree at setup (program, party list, protocol or
/// version); a peer sent malformed or wrong content; preprocessing material
/// missing or wrong; the request or this party's input is invalid; other.
pub const FAILURE_REASONS: [&str; 9] =
    ["peer_closed", "network", "timeout", "tls", "setup_mismatch", "protocol", "preprocessing", "invalid", "other"];

/// The worker's metrics.
pub struct Metrics {
    registry: Registry,
    jobs: Family<Outcome, Counter>,
    failures: Family<Reason, Counter>,
    refused: Family<Reason, Counter>,
    pub(crate) jobs_active: Gauge,
    duration: Histogram,
    rounds: Counter,
    bytes_sent: Counter,
    cert_expiry: Gauge<f64, AtomicU64>,
    tls_reloads: Family<ReloadResult, Counter>,
    peer_dropped: Family<Reason, Counter>,
    peer_up: Family<Peer, Gauge>,
    peer_connect: Family<Peer, Gauge<f64, AtomicU64>>,
    pool_items: Family<Material, Gauge>,
    pool_batches: Family<Material, Gauge>,
    pool_generated: Family<Material, Counter>,
    pool_oldest: Gauge,
    pool_consumed: Counter,
    pool_discarded: Counter,
    /// What the pool's store held when last observed.
    pool_seen: std::sync::Mutex<PoolSeen>,
    identity: SharedIdentity,
}

impl Metrics {
    /// Metrics for a worker with this (replaceable) identity.
    pub fn new(identity: SharedIdentity) -> Metrics {
        let mut registry = Registry::with_prefix("cohort_worker");
        let jobs = Family::<Outcome, Counter>::default();
        registry.register("jobs", "Jobs finished, by outcome (succeeded, failed, cancelled)", jobs.clone());
        let failures = Family::<Reason, Counter>::default();
        registry.register(
            "job_failures",
            "Failed jobs, by reason (peer_closed, network, timeout, tls, setup_mismatch, protocol, preprocessing, invalid, other)",
            failures.clone(),
        );
        // Every series exists from the start (at 0), so rates and ratios
        // are defined before the first failure.
        for outcome in OUTCOMES {
            let _ = jobs.get_or_create(&Outcome { outcome });
        }
        for reason in FAILURE_REASONS {
            let _ = failures.get_or_create(&Reason { reason });
        }
        let refused = Family::<Reason, Counter>::default();
        registry.register(
            "jobs_refused",
            "Jobs refused for capacity, by reason (capacity: this worker had no free slot; peer_capacity: a peer had none); the controller resubmits them",
            refused.clone(),
        );
        for reason in REFUSAL_REASONS {
            let _ = refused.get_or_create(&Reason { reason });
        }
        let jobs_active = Gauge::default();
        registry.register("jobs_active", "Jobs admitted and not finished", jobs_active.clone());
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        registry.register("job_duration_seconds", "Wall time of finished jobs, from admission", duration.clone());
        let rounds = Counter::default();
        registry.register("job_rounds", "Communication rounds of succeeded jobs", rounds.clone());
        let bytes_sent = Counter::default();
        registry.register("job_sent_bytes", "Bytes this party sent in succeeded jobs", bytes_sent.clone());
        let cert_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until this worker's certificate expires (negative once expired)",
            cert_expiry.clone(),
        );
        let tls_reloads = Family::<ReloadResult, Counter>::default();
        registry.register(
            "tls_reloads",
            "Changes of the TLS files seen, by result (applied, rejected: the previous material stays in use)",
            tls_reloads.clone(),
        );
        for result in RELOAD_RESULTS {
            let _ = tls_reloads.get_or_create(&ReloadResult { result });
        }
        let peer_dropped = Family::<Reason, Counter>::default();
        registry.register(
            "peer_unauthenticated_dropped",
            "Connections to the peer port dropped before authentication, by reason (transport::router::dropped)",
            peer_dropped.clone(),
        );
        for reason in crate::transport::router::dropped::ALL {
            let _ = peer_dropped.get_or_create(&Reason { reason });
        }
        // `peer` is a party name from the configuration: bounded and public.
        let peer_up = Family::<Peer, Gauge>::default();
        registry.register(
            "peer_up",
            "1 when the last probe of the peer's worker succeeded (TCP, mutual TLS, hello)",
            peer_up.clone(),
        );
        let peer_connect = Family::<Peer, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "peer_connect_seconds",
            "Time the last successful probe took to connect, authenticate and exchange the hello (about three round trips)",
            peer_connect.clone(),
        );
        let pool_items = Family::<Material, Gauge>::default();
        registry.register(
            "pool_available_items",
            "Usable preprocessing material in this party's pool, in items (triples, division pairs), by kind",
            pool_items.clone(),
        );
        let pool_batches = Family::<Material, Gauge>::default();
        registry.register(
            "pool_available_batches",
            "Usable batches in this party's pool, by kind",
            pool_batches.clone(),
        );
        let pool_generated = Family::<Material, Counter>::default();
        registry.register(
            "pool_generated_items",
            "Items generated with the peers and stored in this party's pool, by kind (its rate is the generation rate)",
            pool_generated.clone(),
        );
        let pool_oldest = Gauge::default();
        registry.register(
            "pool_oldest_batch_created_timestamp_seconds",
            "When the oldest usable batch was stored (Unix seconds; 0 when the pool is empty): time() minus this is its age",
            pool_oldest.clone(),
        );
        let pool_consumed = Counter::default();
        registry.register("pool_consumed_batches", "Pool batches used by jobs", pool_consumed.clone());
        let pool_discarded = Counter::default();
        registry.register(
            "pool_discarded_batches",
            "Pool batches discarded unused: expired, spent at another party, or failing their checks",
            pool_discarded.clone(),
        );
        Metrics {
            registry,
            peer_dropped,
            pool_items,
            pool_batches,
            pool_generated,
            pool_oldest,
            pool_consumed,
            pool_discarded,
            pool_seen: std::sync::Mutex::default(),
            jobs,
            failures,
            refused,
            jobs_active,
            duration,
            rounds,
            bytes_sent,
            cert_expiry,
            tls_reloads,
            peer_up,
            peer_connect,
            identity,
        }
    }

    /// Create the series of every peer (at 0: down until probed).
    pub(crate) fn register_peers<'a>(&self, peers: impl Iterator<Item = &'a str>) {
        for peer in peers {
            let _ = self.peer_up.get_or_create(&Peer { peer: peer.to_string() });
        }
    }

    /// Record one probe.
    pub(crate) fn peer_probed(&self, health: &super::api::PeerHealth) {
        let label = Peer { peer: health.party.clone() };
        self.peer_up.get_or_create(&label).set(i64::from(health.up));
        if let Some(seconds) = health.connect_seconds {
            self.peer_connect.get_or_create(&label).set(seconds);
        }
    }

    /// Record what the pool's store holds now.
    pub(crate) fn pool_observed(&self, store: &Store) {
        let held = store.by_kind();
        let mut seen = self.pool_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Triples, the kind every pool holds, have series from the start;
        // a kind seen before and now used up reads 0 rather than vanishing.
        seen.kinds.insert(StoredKind::Triples);
        seen.kinds.extend(held.keys().copied());
        let _ = self.pool_generated.get_or_create(&Material::of(StoredKind::Triples));
        for kind in &seen.kinds {
            let (batches, items) = held.get(kind).copied().unwrap_or_default();
            let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.pool_batches.get_or_create(&Material::of(*kind)).set(to_i64(batches));
            self.pool_items.get_or_create(&Material::of(*kind)).set(to_i64(items));
        }
        self.pool_oldest.set(store.oldest().map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX)));
        let (consumed, discarded) = store.counts();
        self.pool_consumed.inc_by(consumed.saturating_sub(seen.consumed));
        self.pool_discarded.inc_by(discarded.saturating_sub(seen.discarded));
        (seen.consumed, seen.discarded) = (consumed, discarded);
    }

    /// Record items a fill stored.
    pub(crate) fn pool_generated(&self, kind: StoredKind, items: usize) {
        self.pool_generated.get_or_create(&Material::of(kind)).inc_by(items as u64);
    }

    /// Record a connection the peer port dropped before authentication.
    pub(crate) fn peer_dropped(&self, reason: &'static str) {
        self.peer_dropped.get_or_create(&Reason { reason }).inc();
    }

    /// Record a change of the TLS files (`result` out of [`RELOAD_RESULTS`]).
    pub(crate) fn tls_reloaded(&self, result: &'static str) {
        debug_assert!(RELOAD_RESULTS.contains(&result), "{result}");
        self.tls_reloads.get_or_create(&ReloadResult { result }).inc();
    }

    /// Record a finished job.
    pub(crate) fn job_finished(&self, outcome: &'static str, ran: Option<(Duration, Option<&Stats>)>) {
        self.jobs.get_or_create(&Outcome { outcome }).inc();
        if let Some((elapsed, stats)) = ran {
            self.duration.observe(elapsed.as_secs_f64());
            if let Some(s) = stats {
                self.rounds.inc_by(u64::from(s.rounds));
                self.bytes_sent.inc_by(s.bytes_sent);
            }
        }
    }

    /// Record why a job failed (`reason` out of [`FAILURE_REASONS`]); the
    /// job is also counted by [`Metrics::job_finished`] as `failed`.
    pub(crate) fn job_failed(&self, reason: &'static str) {
        debug_assert!(FAILURE_REASONS.contains(&reason), "{reason}");
        self.failures.get_or_create(&Reason { reason }).inc();
    }

    /// Record a job refused for capacity (`reason` out of
    /// [`REFUSAL_REASONS`]).
    pub(crate) fn job_refused(&self, reason: &'static str) {
        debug_assert!(REFUSAL_REASONS.contains(&reason), "{reason}");
        self.refused.get_or_create(&Reason { reason }).inc();
    }

    /// Seconds until the certificate in use expires.
    pub fn cert_expires_in(&self) -> f64 {
        self.identity.current().cert_expires_in()
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        self.cert_expiry.set(self.cert_expires_in());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `listener` (plain HTTP:
/// kubelet probes and Prometheus scrapers; nothing here is secret).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    jobs: Arc<super::jobs::Jobs>,
    cap: Arc<super::listen::ConnectionCap>,
) {
    use hyper::StatusCode;
    let route: Route = Arc::new(move |path| match path {
        "/metrics" => (StatusCode::OK, OPENMETRICS, metrics.render()),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => match jobs.load() {
            (false, _) => (StatusCode::OK, "text/plain", "ready\n".to_string()),
            (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n".to_string()),
        },
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_string()),
    });
    serve_plain_capped(listener, route, cap).await
}

/// The content type of the Prometheus text exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Answers one GET path of a plain-HTTP endpoint: status, content type,
/// body.
pub type Route = Arc<dyn Fn(&str) -> (hyper::StatusCode, &'static str, String) + Send + Sync>;

/// Connections a plain-HTTP endpoint serves at once by default (a few
/// scrapers and the kubelet's probes need a handful).
pub const PLAIN_MAX_CONNECTIONS: usize = 16;

/// Serve `route` for GET requests on `listener` (plain HTTP/1.1, for
/// probes and scrapes: at most [`PLAIN_MAX_CONNECTIONS`] connections at
/// once, the first byte within 2 s, headers within 5 s, and a connection
/// lasts at most 60 s) until the task is dropped. Shared by the worker and
/// the operator.
pub async fn serve_plain(listener: tokio::net::TcpListener, route: Route) {
    let cap = super::listen::ConnectionCap::new("metrics", PLAIN_MAX_CONNECTIONS);
    serve_plain_capped(listener, route, cap).await
}

/// [`serve_plain`] with the connection cap `cap`.
pub async fn serve_plain_capped(
    listener: tokio::net::TcpListener,
    route: Route,
    cap: Arc<super::listen::ConnectionCap>,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Method, Response, StatusCode};
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Some(permit) = cap.admit() else { continue };
        let route = route.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if !super::listen::first_byte(&tcp, super::listen::FIRST_BYTE_TIMEOUT).await {
                return;
            }
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let route = route.clone();
                async move {
                    let (status, content_type, body) = match req.method() {
                        &Method::GET => route(req.uri().path()),
                        _ => (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".to_string()),
                    };
                    Response::builder()
                        .status(status)
                        .header("content-type", content_type)
                        .body(Full::new(Bytes::from(body)))
                }
            });
            let io = hyper_util::rt::TokioIo::new(tcp);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(io, service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}
