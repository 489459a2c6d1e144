//! `cohort-worker`: one party's worker process. See
//! `cohort_worker::service` and `docs/worker.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cohort_worker::service::config::{ConfigError, WorkerConfig};
use cohort_worker::service::{EXIT_ADDRESS_IN_USE, Worker};
use cohort_worker::telemetry;
use tracing::{info, warn};

// jemalloc, keeping freed large blocks for reuse (cohort_worker::memory).
cohort_worker::global_allocator!();

/// One party's Cohort worker: the peer protocol port, the control API and
/// the metrics endpoint.
#[derive(Parser, Debug)]
#[command(name = "cohort-worker", version)]
struct Args {
    /// The worker's configuration file (YAML; see docs/worker.md).
    #[arg(long, short, required_unless_present = "config_dir", conflicts_with = "config_dir")]
    config: Option<PathBuf>,
    /// A directory of per-shard configurations: the worker reads
    /// `shard-<ordinal>.yaml`, the ordinal being the number that ends its
    /// pod name (`--pod-name`). How a StatefulSet gives each pod its own
    /// file from one pod template.
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// The pod name whose trailing ordinal selects the file in
    /// `--config-dir` (StatefulSet pods are named `<set>-<ordinal>`).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Override `listen.peer`.
    #[arg(long)]
    listen_peer: Option<String>,
    /// Override `listen.control`.
    #[arg(long)]
    listen_control: Option<String>,
    /// Override `listen.metrics`.
    #[arg(long)]
    listen_metrics: Option<String>,
    /// Override `resultsDir`.
    #[arg(long)]
    results_dir: Option<PathBuf>,
    /// Log lines as JSON objects instead of text.
    #[arg(long)]
    log_json: bool,
    /// How long a SIGTERM waits for running jobs before exiting.
    #[arg(long, default_value = "30s", value_parser = cohort_worker::service::config::parse_duration)]
    shutdown_grace: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let options =
        telemetry::Options { service_name: "cohort-worker", default_log_filter: "info", log_json: args.log_json };
    let telemetry = match telemetry::init(&options) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cohort-worker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = run(args).await;
    // Jobs have drained: export their spans before exiting.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { message, address_in_use }) => {
            eprintln!("cohort-worker: {message}");
            if address_in_use { ExitCode::from(EXIT_ADDRESS_IN_USE) } else { ExitCode::FAILURE }
        }
    }
}

/// Why the worker stopped, and whether it was only a taken port.
struct Failure {
    message: String,
    address_in_use: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { message, address_in_use: false }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        message.to_string().into()
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure { address_in_use: e.is_address_in_use(), message: e.to_string() }
    }
}

/// The configuration file to read: `--config`, or this shard's file in
/// `--config-dir`.
fn config_path(args: &Args) -> Result<PathBuf, String> {
    if let Some(path) = &args.config {
        return Ok(path.clone());
    }
    let dir = args.config_dir.as_ref().ok_or("give --config FILE or --config-dir DIR")?;
    let pod = args.pod_name.as_deref().ok_or("--config-dir needs --pod-name (or POD_NAME) to pick the shard")?;
    let ordinal = pod
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u32>().ok())
        .ok_or_else(|| format!("pod name {pod:?} does not end in -<ordinal>"))?;
    Ok(dir.join(format!("shard-{ordinal}.yaml")))
}

async fn run(args: Args) -> Result<(), Failure> {
    let path = config_path(&args)?;
    let mut config = WorkerConfig::read(&path)?;
    if let Some(a) = args.listen_peer {
        config.listen.peer = a;
    }
    if let Some(a) = args.listen_control {
        config.listen.control = a;
    }
    if let Some(a) = args.listen_metrics {
        config.listen.metrics = a;
    }
    if let Some(d) = args.results_dir {
        config.results_dir = Some(d);
    }
    let loaded = config.load(&path)?;
    let (party, federation) = (loaded.config.party.clone(), loaded.config.federation.clone());
    let worker = Worker::start(loaded).await?;
    info!(%party, %federation, peer = %worker.peer_addr, control = %worker.control_addr,
        metrics = %worker.metrics_addr, "worker listening");
    // One line on stdout for whoever started us (e.g. `cohort run` with
    // port 0): where each port is bound.
    println!(
        "{}",
        serde_json::json!({
            "event": "listening",
            "party": party,
            "peer": worker.peer_addr.to_string(),
            "control": worker.control_addr.to_string(),
            "metrics": worker.metrics_addr.to_string(),
        })
    );
    cohort_worker::service::shutdown_signal().await;
    info!("shutting down: draining");
    worker.jobs.drain();
    let deadline = tokio::time::Instant::now() + args.shutdown_grace;
    while worker.jobs.load().1 > 0 {
        if tokio::time::Instant::now() >= deadline {
            warn!(active = worker.jobs.load().1, "shutdown grace over; abandoning running jobs");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
