//! `cohort-dealer`: the networked trusted dealer. A TRUSTED THIRD PARTY: it
//! learns every Beaver triple and division pair it deals (never an input or
//! an output), so every party of the federation must trust whoever runs it
//! not to collude with any party. See `docs/security.md`.
//!
//! It serves the federation's parties over mutually authenticated TLS 1.3
//! (protocol: `cohort_worker::preprocessing::dealer::service`), prints
//! `listening on ADDR` on stdout once bound (after `metrics on ADDR` with
//! `--metrics-addr`), logs to stderr (filter with
//! `RUST_LOG`, default `info`), and stops on SIGTERM or ctrl-c.
//!
//! With `--state-dir DIR` it records every job id durably in
//! `DIR/served-jobs.journal` before dealing it and refuses recorded ids
//! after a restart too (`cohort_worker::preprocessing::dealer::journal`).
//! Without it, served ids are remembered in memory only: fine for tests and
//! `cohort run`, never for a long-lived dealer.

use clap::Parser;
use cohort_worker::preprocessing::dealer::journal::Journal;
use cohort_worker::preprocessing::dealer::service::{DealerConfig, DealerLimits, DealerServer, DealerTimeouts};
use cohort_worker::service::metrics::{OPENMETRICS, Route, serve_plain};
use cohort_worker::transport::reload::TlsWatcher;
use cohort_worker::transport::{Role, SharedIdentity, TlsMaterial};
use hyper::StatusCode;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

// jemalloc, keeping freed large blocks for reuse (cohort_worker::memory).
cohort_worker::global_allocator!();

/// The Cohort trusted dealer (a TRUSTED THIRD PARTY that learns all the
/// preprocessing material it deals).
#[derive(Clone, Debug, Parser)]
#[command(name = "cohort-dealer", version, about, long_about = None)]
struct Args {
    /// Federation name (part of every certificate identity).
    #[arg(long)]
    federation: String,
    /// This dealer's name; its certificate must name `dealer/<name>`.
    #[arg(long, default_value = "main")]
    name: String,
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long)]
    listen: SocketAddr,
    /// The dealer's certificate chain, PEM.
    #[arg(long)]
    cert: PathBuf,
    /// The dealer's private key, PEM.
    #[arg(long)]
    key: PathBuf,
    /// A bundle of the parties' CA certificates, PEM (trusted for every
    /// party not pinned with --peer-ca).
    #[arg(long)]
    trust: Option<PathBuf>,
    /// A party's own CA bundle, `NAME=PEM`: that party is trusted only
    /// through it. Repeatable.
    #[arg(long = "peer-ca", value_name = "NAME=PEM")]
    peer_ca: Vec<String>,
    /// A party of the federation this dealer serves. Repeat for each.
    #[arg(long = "party", value_name = "NAME", required = true)]
    parties: Vec<String>,
    /// Seconds for a client's TLS handshake and request.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// Seconds within which every party of a job must ask.
    #[arg(long, default_value_t = 60)]
    gather_timeout: u64,
    /// Seconds a party's stream may stall before its job fails.
    #[arg(long, default_value_t = 120)]
    stall_timeout: u64,
    /// Largest batch dealt, in items.
    #[arg(long, default_value_t = DealerLimits::default().max_batch_items)]
    max_batch_items: usize,
    /// Jobs gathering or being dealt at once.
    #[arg(long, default_value_t = DealerLimits::default().max_jobs)]
    max_jobs: usize,
    /// A directory for the journal of dealt job ids (created 0700 if
    /// missing). Each id is recorded and fsynced before it is dealt, and
    /// recorded ids are refused after a restart. Without it, a restarted
    /// dealer forgets which ids it served.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// How often to re-read the certificate, key and CA files; changed
    /// files take effect for new connections without a restart.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    reload_interval: Duration,
    /// Serve `/metrics` (Prometheus text), `/healthz` and `/readyz` here
    /// (plain HTTP); off when unset.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    cohort_worker::service::config::parse_duration(text)
}

fn read(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

/// Read the dealer's TLS files: its chain and key, and the parties' CAs.
fn material(args: &Args) -> Result<TlsMaterial, String> {
    let cert = read(&args.cert, "the certificate file")?;
    let key = read(&args.key, "the key file")?;
    if args.peer_ca.is_empty() {
        let Some(trust) = &args.trust else {
            return Err("give the parties' CAs with --trust and/or --peer-ca NAME=PEM".into());
        };
        return Ok(TlsMaterial::bundle(cert, key, read(trust, "the trust bundle")?));
    }
    let bundle = match &args.trust {
        Some(path) => Some(read(path, "the trust bundle")?),
        None => None,
    };
    let mut pinned: Vec<(String, String)> = Vec::new();
    for spec in &args.peer_ca {
        let Some((name, path)) = spec.split_once('=') else {
            return Err(format!("--peer-ca {spec:?}: expected NAME=PEM"));
        };
        if !args.parties.iter().any(|p| p == name) {
            return Err(format!("--peer-ca names {name}, which is not one of the --party names"));
        }
        pinned.push((name.to_string(), read(Path::new(path), &format!("the CA of party {name}"))?));
    }
    for party in &args.parties {
        if pinned.iter().any(|(n, _)| n == party) {
            continue;
        }
        match &bundle {
            Some(b) => pinned.push((party.clone(), b.clone())),
            None => return Err(format!("no CA for party {party}: add --peer-ca {party}=PEM or --trust")),
        }
    }
    Ok(TlsMaterial::pinned(cert, key, pinned))
}

async fn run(args: Args) -> Result<(), String> {
    let principal = Role::Dealer.principal(&args.name);
    let loaded = material(&args)?;
    let identity =
        SharedIdentity::new(loaded.identity(&args.federation, &principal).map_err(|e| format!("TLS identity: {e}"))?);
    let mut config = DealerConfig::new(args.parties.clone());
    config.limits.max_batch_items = args.max_batch_items;
    config.limits.max_jobs = args.max_jobs;
    config.timeouts = DealerTimeouts {
        handshake: Duration::from_secs(args.handshake_timeout),
        gather: Duration::from_secs(args.gather_timeout),
        stall: Duration::from_secs(args.stall_timeout),
        ..DealerTimeouts::default()
    };
    // Open the journal before binding: a dealer that cannot tell which ids
    // it served must not accept a request.
    let journal = match &args.state_dir {
        Some(dir) => Some(Journal::open(dir).map_err(|e| e.to_string())?),
        None => {
            // Info, not a warning: `cohort run` runs its ephemeral dealer so.
            tracing::info!(
                "no --state-dir: served job ids are remembered in memory only, so a restarted dealer could deal a \
                 job id twice; give --state-dir for any long-lived dealer"
            );
            None
        }
    };
    let listener =
        TcpListener::bind(args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let server = match journal {
        Some(journal) => DealerServer::with_journal(listener, identity.clone(), config, journal),
        None => DealerServer::new(listener, identity.clone(), config),
    }
    .map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| format!("cannot read the bound address: {e}"))?;
    let metrics_listener = match args.metrics_addr {
        Some(at) => {
            let l = TcpListener::bind(at).await.map_err(|e| format!("cannot listen on {at} for metrics: {e}"))?;
            let bound = l.local_addr().map_err(|e| format!("cannot read the bound metrics address: {e}"))?;
            Some((l, bound))
        }
        None => None,
    };
    {
        // Every port is bound before `listening on`, the line launchers
        // wait for (with port 0, these lines say which ports).
        let mut out = std::io::stdout().lock();
        if let Some((_, bound)) = &metrics_listener {
            writeln!(out, "metrics on {bound}").map_err(|e| format!("stdout: {e}"))?;
        }
        writeln!(out, "listening on {addr}").and_then(|()| out.flush()).map_err(|e| format!("stdout: {e}"))?;
    }
    let metrics = server.metrics();
    let watcher = {
        let (args, metrics) = (args.clone(), metrics.clone());
        TlsWatcher::new(
            identity.clone(),
            loaded.digest(),
            Box::new(move || material(&args)),
            Box::new(move |result| metrics.tls_reloaded(result)),
        )
    };
    if let Some((listener, _)) = metrics_listener {
        let route: Route = Arc::new(move |path: &str| match path {
            "/metrics" => (StatusCode::OK, OPENMETRICS, metrics.render()),
            "/healthz" | "/readyz" => (StatusCode::OK, "text/plain", "ok\n".into()),
            _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        });
        tokio::spawn(serve_plain(listener, route));
    }
    let reload = tokio::spawn(watcher.run(args.reload_interval));
    server.run(cohort_worker::service::shutdown_signal()).await;
    reload.abort();
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = cohort_worker::telemetry::Options {
        service_name: "cohort-dealer",
        default_log_filter: "info",
        log_json: false,
    };
    let telemetry = match cohort_worker::telemetry::init(&options) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cohort-dealer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cohort-dealer: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohort-dealer: {e}");
            ExitCode::FAILURE
        }
    }
}
