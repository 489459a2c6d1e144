//! Job time against round-trip time, dealer mode against OT mode, for
//! programs of several depths (issue 15, item 8; `bench/latency/run.sh`).
//!
//! Starts one release `cohort-worker` per party and one `cohort-dealer`,
//! and routes every party-to-party connection through a user-space TCP
//! delay line run by this process: worker `i`'s configuration names, as
//! party `j`'s endpoint, a proxy that forwards to `j`'s peer port and
//! delays every chunk, in each direction, by RTT/2 (order and throughput
//! kept: chunks are read as they come and each is written at its own
//! deadline). With `--netns PREFIX` each worker runs in its own network
//! namespace `PREFIX-p<i>` (made by `run.sh`: a veth pair, `10.77.<i>.2`
//! inside, `10.77.<i>.1` here, no route between namespaces), so the delay
//! line is the only path between parties; without it everything is on
//! loopback. The dealer and the control API are not delayed.
//!
//! Jobs of every cell (RTT × program × mode) are interleaved, dealer and
//! OT runs alternating, and the medians printed as a Markdown table; every
//! sample goes to `--json`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use cohort_worker::preprocessing::Mode;
use cohort_worker::service::api::{JobRequest, JobStatus, JobTimeouts, OutputValue, Phase};
use cohort_worker::service::control::ControlClient;
use cohort_worker::transport::{JobId, PartyCa, Role, SharedIdentity, TlsIdentity};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const FEDERATION: &str = "local";
const CONTROLLER: &str = "cohort";
const DEALER: &str = "main";

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    parties: usize,
    runs: usize,
    rtts_ms: Vec<u64>,
    /// Elements per party, split over the chain's multiplications.
    elements: usize,
    /// Chain lengths (multiplications; each is 2 layers).
    depths: Vec<usize>,
    netns: Option<String>,
    bin_dir: PathBuf,
    json: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: latency [--parties N] [--runs N] [--rtt-ms 0,10,50] [--elements N] [--depths 1,5,10] [--netns PREFIX] \
         [--bin-dir DIR] [--json FILE]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        parties: 3,
        runs: 5,
        rtts_ms: vec![0, 10, 50],
        elements: 5000,
        depths: vec![1, 5, 10],
        netns: None,
        bin_dir: PathBuf::from("target/release"),
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        let num = |v: &str| v.parse::<usize>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--parties" => a.parties = num(&value),
            "--runs" => a.runs = num(&value),
            "--elements" => a.elements = num(&value),
            "--depths" => a.depths = value.split(',').map(num).collect(),
            "--rtt-ms" => a.rtts_ms = value.split(',').map(|v| v.parse().unwrap_or_else(|_| usage())).collect(),
            "--netns" => a.netns = Some(value),
            "--bin-dir" => a.bin_dir = PathBuf::from(value),
            "--json" => a.json = Some(PathBuf::from(value)),
            _ => usage(),
        }
    }
    if a.parties < 2 || a.runs == 0 || a.depths.iter().any(|&d| d == 0 || a.elements / d == 0) {
        usage();
    }
    a
}

/// `depth` chained `fixed` multiplications (each a multiplication layer
/// and a truncation layer) over vectors of `elements / depth` values per
/// party: every depth uses the same number of triples and truncation pairs,
/// so the programs differ only in depth.
fn program(depth: usize) -> String {
    let mut p = String::from("input x: fixed[] from each\nlet v = concat(x)\nlet y1 = v * v\n");
    for k in 2..=depth {
        p.push_str(&format!("let y{k} = y{} * v\n", k - 1));
    }
    p.push_str(&format!("output s = sum(y{depth})\n"));
    p
}

/// Party `i`'s inputs: values in [0.5, 1), so every power stays in range.
fn inputs(i: usize, n: usize) -> Vec<f64> {
    (0..n).map(|j| 0.5 + ((i * 7919 + j * 104_729) % 1000) as f64 / 2000.0).collect()
}

fn expected(depth: usize, args: &Args) -> f64 {
    let n = args.elements / depth;
    (0..args.parties).flat_map(|i| inputs(i, n)).map(|x| x.powi(depth as i32 + 1)).sum()
}

// ---------------------------------------------------------------------------
// The delay line.

/// Forward `from` to `to`, each chunk written `delay` after it was read
/// (and never before `not_before`: the emulated TCP handshake's round trip).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    half_rtt: Arc<AtomicU64>,
    not_before: tokio::time::Instant,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let delay = Duration::from_micros(half_rtt.load(Ordering::Relaxed));
                    let at = tokio::time::Instant::now().max(not_before) + delay;
                    if tx.send((at, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// A delay proxy listening on `listen`, forwarding to `target`; its address.
async fn proxy(listen: SocketAddr, target: SocketAddr, half_rtt: Arc<AtomicU64>) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind(listen).await?;
    let at = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let half_rtt = half_rtt.clone();
            tokio::spawn(async move {
                // A real connection spends one round trip in the TCP
                // handshake before the dialer's first byte can leave.
                let rtt = Duration::from_micros(2 * half_rtt.load(Ordering::Relaxed));
                let not_before = tokio::time::Instant::now() + rtt;
                let Ok(server) = TcpStream::connect(target).await else { return };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let now = tokio::time::Instant::now();
                tokio::join!(pipe(cr, sw, half_rtt.clone(), not_before), pipe(sr, cw, half_rtt, now));
            });
        }
    });
    Ok(at)
}

// ---------------------------------------------------------------------------
// The federation.

struct Party {
    client: ControlClient,
    _child: Child,
}

/// Party `i`'s addresses: (its own, where its worker binds; this
/// process's as party `i` reaches it, where its proxies and the dealer are).
fn addresses(netns: &Option<String>, i: usize) -> (String, String) {
    match netns {
        Some(_) => (format!("10.77.{i}.2"), format!("10.77.{i}.1")),
        None => ("127.0.0.1".into(), "127.0.0.1".into()),
    }
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

/// A CA for `principal` and a leaf from it, written as `<stem>-ca.pem`,
/// `<stem>.crt` (chain), `<stem>.key`.
fn credentials(dir: &Path, stem: &str, principal: &str) -> Result<PathBuf, Error> {
    let day = Duration::from_secs(86_400);
    let ca = PartyCa::generate(FEDERATION, principal, day)?;
    let now = SystemTime::now();
    let leaf = ca.issue_party_cert(principal, &["localhost".into()], now - Duration::from_secs(60), now + day)?;
    write(&dir.join(format!("{stem}-ca.pem")), &ca.cert_pem())?;
    write(&dir.join(format!("{stem}.crt")), &format!("{}{}", leaf.cert_pem, ca.cert_pem()))?;
    write(&dir.join(format!("{stem}.key")), &leaf.key_pem)?;
    Ok(dir.join(format!("{stem}-ca.pem")))
}

fn spawn(
    netns: &Option<String>,
    party: Option<usize>,
    bin: &Path,
    args: &[String],
    log: &Path,
) -> Result<Child, Error> {
    let mut cmd = match (netns, party) {
        (Some(prefix), Some(i)) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &format!("{prefix}-p{i}")]).arg(bin);
            c
        }
        _ => Command::new(bin),
    };
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true);
    Ok(cmd.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?)
}

/// The first stdout line of `child` that `parse` accepts (stdout is then
/// drained in the background).
async fn await_line<T: Send + 'static>(
    child: &mut Child,
    mut parse: impl FnMut(&str) -> Option<T>,
) -> Result<T, Error> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(v) = parse(&line) {
                return Ok::<_, Error>(v);
            }
        }
        Err("the process exited before it was listening; see its log".into())
    })
    .await
    .map_err(|_| "not listening after 60 s")??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(found)
}

async fn start(args: &Args, dir: &Path, half_rtt: Arc<AtomicU64>) -> Result<(Vec<Party>, Child), Error> {
    let names: Vec<String> = (0..args.parties).map(|i| format!("party-{i}")).collect();
    let mut cas = Vec::new();
    for name in &names {
        cas.push(credentials(dir, name, name)?);
    }
    let controller_principal = Role::Controller.principal(CONTROLLER);
    let controller_ca = credentials(dir, "controller", &controller_principal)?;
    let dealer_ca = credentials(dir, "dealer", &Role::Dealer.principal(DEALER))?;

    // The dealer, here (undelayed), reachable from every namespace.
    let mut dealer_args: Vec<String> = vec![
        "--federation".into(),
        FEDERATION.into(),
        "--name".into(),
        DEALER.into(),
        "--listen".into(),
        if args.netns.is_some() { "0.0.0.0:0" } else { "127.0.0.1:0" }.into(),
        "--cert".into(),
        dir.join("dealer.crt").display().to_string(),
        "--key".into(),
        dir.join("dealer.key").display().to_string(),
    ];
    for (name, ca) in names.iter().zip(&cas) {
        dealer_args.extend(["--party".into(), name.clone(), "--peer-ca".into(), format!("{name}={}", ca.display())]);
    }
    let mut dealer = spawn(&None, None, &args.bin_dir.join("cohort-dealer"), &dealer_args, &dir.join("dealer.log"))?;
    let dealer_addr: SocketAddr =
        await_line(&mut dealer, |l| l.strip_prefix("listening on ").and_then(|a| a.trim().parse().ok())).await?;

    // Peer ports are fixed inside namespaces, picked on loopback.
    let peer_ports: Vec<u16> = (0..args.parties)
        .map(|_| match &args.netns {
            Some(_) => Ok(7443),
            None => std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()),
        })
        .collect::<Result<_, _>>()?;
    let peer_addr = |j: usize| -> SocketAddr {
        format!("{}:{}", addresses(&args.netns, j).0, peer_ports[j]).parse().expect("address")
    };

    let mut identity_trust = Vec::new();
    for (name, ca) in names.iter().zip(&cas) {
        identity_trust.push((name.clone(), std::fs::read_to_string(ca)?));
    }
    let controller = SharedIdentity::from(TlsIdentity::from_pem_pinned(
        FEDERATION,
        &controller_principal,
        &std::fs::read_to_string(dir.join("controller.crt"))?,
        &std::fs::read_to_string(dir.join("controller.key"))?,
        &identity_trust,
    )?);

    let mut children = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (inside, outside) = addresses(&args.netns, i);
        // Party j as party i sees it: a delay proxy in front of j's port.
        let mut endpoints = Vec::new();
        for (j, peer) in names.iter().enumerate() {
            let endpoint = if i == j {
                peer_addr(j)
            } else {
                proxy(format!("{outside}:0").parse()?, peer_addr(j), half_rtt.clone()).await?
            };
            endpoints.push(serde_json::json!({"name": peer, "endpoint": endpoint.to_string()}));
        }
        let peer_cas: BTreeMap<&String, String> =
            names.iter().zip(&cas).filter(|(p, _)| *p != name).map(|(p, ca)| (p, ca.display().to_string())).collect();
        let config = serde_json::json!({
            "federation": FEDERATION,
            "party": name,
            "listen": {"peer": peer_addr(i).to_string(), "control": format!("{inside}:0"), "metrics": "127.0.0.1:0"},
            "tls": {"cert": dir.join(format!("{name}.crt")), "key": dir.join(format!("{name}.key")), "peerCas": peer_cas},
            "controller": {"name": CONTROLLER, "ca": controller_ca},
            "parties": endpoints,
            "dealer": {"name": DEALER, "endpoint": format!("{outside}:{}", dealer_addr.port()), "ca": dealer_ca},
            "resultsDir": dir.join(format!("{name}-results")),
            "auditLog": dir.join(format!("{name}-audit.jsonl")),
            "peerProbe": {"interval": "3600s"},
            "pool": {"dir": dir.join(format!("{name}-pool"))},
        });
        let path = dir.join(format!("{name}.yaml"));
        write(&path, &config.to_string())?;
        let child = spawn(
            &args.netns,
            Some(i),
            &args.bin_dir.join("cohort-worker"),
            &["--config".into(), path.display().to_string()],
            &dir.join(format!("{name}.log")),
        )?;
        children.push(child);
    }
    let mut parties = Vec::new();
    for (i, mut child) in children.into_iter().enumerate() {
        let control = await_line(&mut child, |line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            Some(v.get("control")?.as_str()?.to_string())
        })
        .await?;
        parties
            .push(Party { client: ControlClient::new(controller.clone(), control, names[i].clone()), _child: child });
    }
    Ok((parties, dealer))
}

/// One job: (seconds from the first submission to every party's final
/// status, the slowest party's own job time, what it used).
/// What a job used, from its status.
#[derive(Clone, Copy)]
struct Shape {
    layers: u32,
    triples: u64,
    div_pairs: u64,
}

async fn job(parties: &[Party], args: &Args, depth: usize, mode: Mode) -> Result<(f64, f64, Shape), Error> {
    let id = JobId::random().to_string();
    let names: Vec<String> = (0..args.parties).map(|i| format!("party-{i}")).collect();
    let n = args.elements / depth;
    let requests: Vec<JobRequest> = (0..args.parties)
        .map(|i| JobRequest {
            id: id.clone(),
            program: program(depth),
            parties: names.clone(),
            inputs: BTreeMap::from([(
                "x".to_string(),
                inputs(i, n).into_iter().map(|v| serde_json::Number::from_f64(v).expect("finite").into()).collect(),
            )]),
            timeouts: JobTimeouts {
                connect_seconds: Some(60.0),
                round_seconds: Some(60.0),
                total_seconds: Some(600.0),
            },
            preprocessing: Some(mode),
        })
        .collect();
    let started = Instant::now();
    for (p, r) in parties.iter().zip(&requests) {
        p.client.submit(r).await?;
    }
    let mut statuses: Vec<JobStatus> = Vec::new();
    for p in parties {
        statuses.push(p.client.wait(&id, Duration::from_millis(2)).await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let want = expected(depth, args);
    let mut slowest: f64 = 0.0;
    let mut shape = Shape { layers: 0, triples: 0, div_pairs: 0 };
    for s in &statuses {
        if s.phase != Phase::Succeeded {
            return Err(format!("job {id} ({mode:?}) failed: {:?}", s.failure).into());
        }
        let got = s.outputs.as_ref().and_then(|o| o.get("s")).and_then(OutputValue::as_f64).ok_or("no output")?;
        if (got - want).abs() > 1e-3 * want.abs().max(1.0) {
            return Err(format!("job {id} ({mode:?}): s = {got}, expected {want}").into());
        }
        let stats = s.stats.as_ref().ok_or("no stats")?;
        slowest = slowest.max(stats.wall_seconds);
        shape = Shape { layers: stats.layers, triples: stats.triples_used, div_pairs: stats.div_pairs_used };
    }
    Ok((elapsed, slowest, shape))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown".into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args = parse_args();
    let dir = std::env::temp_dir().join(format!("cohort-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let half_rtt = Arc::new(AtomicU64::new(0));
    let result = measure(&args, &dir, half_rtt).await;
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("logs kept in {}", dir.display());
    }
    result
}

/// Per (RTT in ms, multiplications, mode): every job's (controller
/// seconds, slowest party's own seconds).
type Samples = BTreeMap<(u64, usize, &'static str), Vec<(f64, f64)>>;

async fn measure(args: &Args, dir: &Path, half_rtt: Arc<AtomicU64>) -> Result<(), Error> {
    let (parties, _dealer) = start(args, dir, half_rtt.clone()).await?;
    let modes = [("dealer", Mode::Dealer), ("ot", Mode::Ot)];
    let deepest = *args.depths.iter().max().expect("a depth");
    // Warm-up: connections, page cache, the workers' first allocations.
    for (_, mode) in modes {
        job(&parties, args, deepest, mode).await?;
    }
    let mut samples: Samples = BTreeMap::new();
    let mut shape: BTreeMap<usize, Shape> = BTreeMap::new();
    for &rtt in &args.rtts_ms {
        half_rtt.store(rtt * 500, Ordering::Relaxed);
        for run in 0..args.runs {
            for &depth in &args.depths {
                // Alternate which mode goes first, so neither always
                // follows the other.
                let order = if run % 2 == 0 { [modes[0], modes[1]] } else { [modes[1], modes[0]] };
                for (name, mode) in order {
                    let (t, party, job_shape) = job(&parties, args, depth, mode).await?;
                    eprintln!("rtt {rtt} ms, {depth} mults, {name}: {t:.3} s (slowest party {party:.3} s)");
                    samples.entry((rtt, depth, name)).or_default().push((t, party));
                    shape.insert(depth, job_shape);
                }
            }
        }
    }

    println!(
        "{} parties, {} runs per cell (medians; controller's view: first submission to every party's final status)",
        args.parties, args.runs
    );
    println!("CPU: {} ({} logical CPUs)", cpu_model(), std::thread::available_parallelism().map_or(0, |n| n.get()));
    for (depth, s) in &shape {
        println!(
            "{depth} multiplications: {} layers, {} triples and {} truncation pairs per party, {} elements",
            s.layers,
            s.triples,
            s.div_pairs,
            args.elements / depth * args.parties
        );
    }
    println!();
    let shallowest = *args.depths.iter().min().expect("a depth");
    println!("| RTT | program | dealer | OT | OT − dealer | excess − shallowest's |");
    println!("|---|---|---|---|---|---|");
    let mut json_cells = Vec::new();
    for &rtt in &args.rtts_ms {
        let cell =
            |depth: usize, mode: &str| median(&samples[&(rtt, depth, mode)].iter().map(|s| s.0).collect::<Vec<_>>());
        let base = cell(shallowest, "ot") - cell(shallowest, "dealer");
        for &depth in &args.depths {
            let (d, o) = (cell(depth, "dealer"), cell(depth, "ot"));
            let layers = shape[&depth].layers;
            println!(
                "| {rtt} ms | {depth} mult. ({layers} layers) | {d:.3} s | {o:.3} s | {:+.3} s | {:+.3} s |",
                o - d,
                o - d - base
            );
            json_cells.push(serde_json::json!({
                "rtt_ms": rtt, "multiplications": depth, "layers": layers,
                "dealer_median_seconds": d, "ot_median_seconds": o,
                "dealer_samples": samples[&(rtt, depth, "dealer")], "ot_samples": samples[&(rtt, depth, "ot")],
            }));
        }
    }
    if let Some(path) = &args.json {
        let programs: BTreeMap<String, String> = args.depths.iter().map(|&d| (d.to_string(), program(d))).collect();
        let report = serde_json::json!({
            "cpu": cpu_model(), "parties": args.parties, "runs": args.runs, "elements_per_party": args.elements,
            "netns": args.netns, "samples_are": "[controller seconds, slowest party's stats.wallSeconds]",
            "programs": programs, "cells": json_cells,
        });
        write(path, &serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
