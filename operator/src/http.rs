//! The operator's plain-HTTP endpoints: `/healthz` and `/readyz` on the
//! health address, `/metrics` on the metrics address. Nothing here carries
//! a secret: probes answer a word, metrics are counts.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Response, StatusCode};

/// Answers one GET path: status, content type, body.
pub type Route = Arc<dyn Fn(&str) -> (StatusCode, &'static str, String) + Send + Sync>;

/// Serve `route` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, route: Route) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let route = route.clone();
        tokio::spawn(async move {
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
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

/// `/healthz` and `/readyz`: the process serves, and (readyz) it is set up
/// — a standby replica is ready too, it just does not hold the Lease.
pub fn health(ready: Arc<std::sync::atomic::AtomicBool>) -> Route {
    Arc::new(move |path| match path {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if ready.load(std::sync::atomic::Ordering::Acquire) => {
            (StatusCode::OK, "text/plain", "ready\n".into())
        }
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n".into()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

/// `/metrics` in the Prometheus text format.
pub fn metrics(metrics: Arc<crate::metrics::Metrics>) -> Route {
    Arc::new(move |path| match path {
        "/metrics" => (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.encode()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}
