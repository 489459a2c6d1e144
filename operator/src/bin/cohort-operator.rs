//! `cohort-operator`: reconciles MpcCluster, PreprocessingPool and MpcJob
//! for one party. Flags and environment are the chart's contract
//! (docs/operator.md, "The operator process").

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use cohort_operator::cluster::desired::Settings;
use cohort_operator::controller::{self, Context};
use cohort_operator::leader::{self, LeaseConfig};
use cohort_operator::metrics::Metrics;
use kube::runtime::events::Reporter;

#[derive(Debug, Parser)]
#[command(name = "cohort-operator", version, about = "The Cohort Kubernetes operator (one per party)")]
struct Args {
    /// The cohort-worker image for clusters that do not set spec.worker.image.
    #[arg(long, default_value = concat!("ghcr.io/cohort-mpc/cohort-worker:", env!("CARGO_PKG_VERSION")))]
    worker_image: String,
    /// The OTLP/HTTP endpoint the worker pods export traces to (sets their
    /// OTEL_EXPORTER_OTLP_ENDPOINT); workers export nothing when unset.
    #[arg(long)]
    worker_otlp_endpoint: Option<String>,
    /// Watch only this namespace (namespaced mode); all namespaces if unset.
    #[arg(long)]
    watch_namespace: Option<String>,
    /// The Lease the replicas elect a leader with.
    #[arg(long, default_value = "cohort-operator")]
    lease_name: String,
    /// The Lease's namespace (defaults to the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: String,
    /// How long the Lease lasts without renewal (e.g. 15s).
    #[arg(long, default_value = "15s", value_parser = duration)]
    lease_duration: Duration,
    /// This replica's identity in the Lease (the pod name; the host name
    /// when unset).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Labels of the operator's pods, `k=v,k=v`: the workers' NetworkPolicy
    /// admits only them to the control port.
    #[arg(long, default_value = "app.kubernetes.io/name=cohort-operator", value_parser = labels)]
    operator_pod_labels: BTreeMap<String, String>,
    /// `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    health_addr: SocketAddr,
    /// `/metrics`.
    #[arg(long, default_value = "0.0.0.0:9090")]
    metrics_addr: SocketAddr,
    /// Log JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn duration(s: &str) -> Result<Duration, String> {
    cohort_worker::service::config::parse_duration(s).map_err(|e| e.to_string())
}

fn labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not key=value"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = cohort_worker::telemetry::Options {
        service_name: "cohort-operator",
        default_log_filter: "info,kube_lease_manager=warn",
        log_json: args.log_json,
    };
    let telemetry = match cohort_worker::telemetry::init(&options) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cohort-operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cohort-operator stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Metrics::shared();
    let ready = Arc::new(AtomicBool::new(false));
    let health = tokio::net::TcpListener::bind(args.health_addr)
        .await
        .map_err(|e| format!("binding {}: {e}", args.health_addr))?;
    let scrape = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| format!("binding {}: {e}", args.metrics_addr))?;
    tokio::spawn(cohort_operator::http::serve(health, cohort_operator::http::health(ready.clone())));
    tokio::spawn(cohort_operator::http::serve(scrape, cohort_operator::http::metrics(metrics.clone())));

    let client = kube::Client::try_default().await.map_err(|e| format!("connecting to the Kubernetes API: {e}"))?;
    let settings = Settings {
        default_image: args.worker_image,
        operator_namespace: args.lease_namespace.clone(),
        operator_pod_labels: args.operator_pod_labels,
        worker_otlp_endpoint: args.worker_otlp_endpoint.filter(|e| !e.is_empty()),
    };
    let identity = args.pod_name.or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(|| "cohort-operator".into());
    let reporter = Reporter { controller: "cohort-operator".into(), instance: Some(identity.clone()) };
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        reporter,
        metrics.clone(),
        controller::cluster_dns_endpoints(),
    ));
    let lease =
        LeaseConfig { name: args.lease_name, namespace: args.lease_namespace, identity, duration: args.lease_duration };
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        cohort_worker::service::shutdown_signal().await;
        tracing::info!("shutting down: finishing reconciles and releasing the Lease");
        let _ = shutdown_tx.send(true);
    });
    ready.store(true, Ordering::Release);
    // An empty value (the chart's default) means every namespace.
    let namespace = args.watch_namespace.filter(|ns| !ns.is_empty());
    leader::lead(client, &lease, metrics, shutdown_rx, |stop| {
        controller::run_all(ctx.clone(), namespace.clone(), stop)
    })
    .await?;
    Ok(())
}
