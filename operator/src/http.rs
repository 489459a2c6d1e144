//! The operator's plain-HTTP endpoints: `/healthz` and `/readyz` on the
//! health address, `/metrics` on the metrics address, served by the same
//! server as the worker's (`cohort_worker::service::metrics::serve_plain`).
//! Nothing here carries a secret: probes answer a word, metrics are counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cohort_worker::service::metrics::{OPENMETRICS, Route};
use hyper::StatusCode;

pub use cohort_worker::service::metrics::serve_plain as serve;

/// `/healthz` and `/readyz`: the process serves, and (readyz) it is set up
/// — a standby replica is ready too, it just does not hold the Lease.
pub fn health(ready: Arc<AtomicBool>) -> Route {
    Arc::new(move |path| match path {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if ready.load(Ordering::Acquire) => (StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n".into()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

/// `/metrics` in the OpenMetrics text format.
pub fn metrics(metrics: Arc<crate::metrics::Metrics>) -> Route {
    Arc::new(move |path| match path {
        "/metrics" => (StatusCode::OK, OPENMETRICS, metrics.encode()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}
