//! The measurements behind `cohort bench`: how fast one layer of
//! secret-by-secret multiplications runs among local parties over real
//! loopback mTLS, and how close that is to the bound the network imposes.
//!
//! Everything runs in this process: a [`LocalFederation`] (every party with
//! its own CA, certificate and listener, talking through the same [`Mesh`]
//! a deployed worker uses) and an in-process trusted dealer. All parties,
//! the dealer and the TLS of every link share the cores of the Tokio
//! runtime `run` is called on (use a multi-threaded runtime with one worker
//! per core). This is the engine's figure, not the deployed path's: no
//! worker process, no control API, and the dealer hands material over in
//! memory, not over TLS. `cohort bench` measures the deployed path beside
//! it (real `cohort-worker` and `cohort-dealer` processes, `cli/src/bench.rs`).
//!
//! # The job
//!
//! `output z = sum(x * y)` with `x` (party-0) and `y` (party-1) vectors of
//! `mults` secret ring elements: one online layer of `mults` Beaver
//! multiplications, `3 + 1` rounds (setup, input sharing, the layer,
//! output). Every run checks the output against the plaintext result.
//!
//! # What the figures mean
//!
//! - **online** (`online_mults_per_second`): `mults` divided by the time of
//!   the *whole job* with the dealer's material already drawn by every
//!   party: from the moment every party's mesh is established to the moment
//!   the *last* party holds its outputs. That includes setup (consent and
//!   lengths), input sharing (seed-compressed, so parties expand `mults`
//!   elements per input), the multiplication layer and the output round.
//!   This is the standard definition: MP-SPDZ reports the online phase as
//!   the time of the program with preprocessing excluded, inputs and
//!   outputs included. Timing only the opening round would look better and
//!   is not what a user waits for.
//! - **in-process dealer** (`in_process_dealer_mults_per_second`): the same
//!   job with the trusted dealer, *a thread of this process handing the
//!   material over in-memory channels*, starting when the job does:
//!   generation, hand-over and the parties' expansion of the material
//!   happen during the run, from meshes established to outputs at every
//!   party. (Called "end to end" before issue 15; it leaves out the dealer
//!   process, the dealer-to-party TLS and the worker process.)
//!   Mesh establishment (TCP + TLS handshakes + version hello) is measured
//!   separately (`mesh_setup_seconds`) and excluded from both, as it is a
//!   per-job constant independent of `mults`.
//! - **dealer** (`dealer_triples_per_second`): `mults` divided by the time
//!   from starting the in-process dealer to every party holding all its
//!   expanded triple shares (generation + hand-over + expansion at every
//!   party, concurrently, on the same cores) — the prefetch of the online
//!   run. `dealer_generation_triples_per_second` is `TrustedDealer::deal`
//!   alone on one thread.
//! - **bytes** (`bytes_per_mult_per_party`): the bytes every party's
//!   [`Mesh`] counted as sent during the online run (frame headers and
//!   payload of every round, not TLS record overhead), averaged over the
//!   parties, divided by `mults`. The protocol needs `16 · (n − 1)` bytes
//!   per multiplication per party (its shares of `d` and `e` to every
//!   peer); the rest is framing and the small setup, input and output
//!   messages.
//! - **TLS** ([`measure_tls`]): raw application-data throughput of rustls
//!   over loopback TCP with the transport's setup (TLS 1.3 only, `ring`
//!   provider, mutual authentication), per cipher suite, for one stream
//!   (one connection, one direction) and for the mesh's shape (`n(n−1)/2`
//!   connections, both directions at once: `n(n−1)` streams sharing the
//!   cores). `tls_loopback_bytes_per_second` is the mesh-shaped aggregate
//!   with the suite the transport negotiates (TLS13_AES_128_GCM_SHA256).
//! - **bound** (`online_bound_mults_per_second`): the layer moves
//!   `bytes_per_mult_per_party · n` bytes through TLS per multiplication,
//!   so no implementation on these cores and this TLS stack can exceed
//!   `tls_loopback_bytes_per_second / (bytes_per_mult_per_party · n)`
//!   multiplications per second (the bound ignores every cost but
//!   encrypting, moving and decrypting those bytes).
//!
//! # Under `replicated-3`
//!
//! [`BenchOptions::protocol`] picks the protocol. Replicated sharing takes
//! no material, so there is one variant: **online** is the whole job (the
//! same span as above: meshes established to outputs at every party, with
//! input sharing, the layer and the output round), and the dealer's
//! figures (`in_process_dealer_*`, `dealer_*`) are 0. The protocol sends
//! one ring element (8 bytes) per multiplication to one neighbour.
//!
//! Timings are the **median** over `repeats` runs, after one unreported
//! warm-up run of each variant; every sample is in the report too.

pub mod compare;
pub mod ot;
pub mod sort;

use crate::executor::{ExecuteOptions, InputLengths, Instance, JobError, OwnInputs, execute};
use crate::local::{DealerHub, LocalFederation};
use crate::preprocessing::dealer::TrustedDealer;
use crate::preprocessing::{Demand, MaterialPlan, Prefetched, PreprocessingError};
use crate::program::compile;
use crate::program::ir::Circuit;
use crate::protocol::ProtocolName;
use crate::sharing::Secret;
use crate::transport::{JobId, Mesh, PartyCa, TransportError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Number of parties (at least 2).
    pub parties: usize,
    /// Multiplications in the layer (at least 1).
    pub mults: usize,
    /// Runs of each variant; timings are the median.
    pub repeats: usize,
    /// Application bytes sent per stream in the TLS measurement (0 skips
    /// it; the TLS fields are then 0).
    pub tls_bytes_per_stream: usize,
    /// The protocol the parties run. Under `replicated-3` (no material)
    /// the online figure is the whole job and the dealer's are 0.
    pub protocol: ProtocolName,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            parties: 3,
            mults: 1_000_000,
            repeats: 5,
            tls_bytes_per_stream: 256 << 20,
            protocol: ProtocolName::default(),
        }
    }
}

/// One TLS throughput measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TlsThroughput {
    /// IANA name of the cipher suite.
    pub suite: String,
    /// TLS connections used at once.
    pub connections: usize,
    /// Directed streams (a connection used in both directions counts twice).
    pub streams: usize,
    /// Application bytes delivered per second, summed over the streams.
    pub bytes_per_second: f64,
}

/// The processor a benchmark ran on, from `/proc/cpuinfo` (empty fields
/// where it is unreadable).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CpuInfo {
    /// `model name`, e.g. `AMD EPYC` or `Intel(R) Xeon(R) Platinum 8488C`.
    pub model: String,
    /// `vendor_id`, e.g. `AuthenticAMD`, `GenuineIntel`.
    pub vendor: String,
    /// Logical CPUs the kernel lists.
    pub logical_cpus: usize,
    /// Of the flags that matter to these figures (AES and carry-less
    /// multiplication for TLS and the PRG, vector widths), those present.
    pub features: Vec<String>,
}

impl CpuInfo {
    /// This machine's processor.
    pub fn current() -> CpuInfo {
        std::fs::read_to_string("/proc/cpuinfo").map(|text| CpuInfo::parse(&text)).unwrap_or_default()
    }

    /// Parse the text of `/proc/cpuinfo` (the first processor's model and
    /// flags; every processor counted).
    pub fn parse(text: &str) -> CpuInfo {
        const FEATURES: [&str; 8] = ["aes", "pclmulqdq", "sha_ni", "avx2", "avx512f", "avx512bw", "vaes", "vpclmulqdq"];
        let field = |name: &str| {
            text.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let flags = field("flags").unwrap_or_default();
        let flags: Vec<&str> = flags.split_whitespace().collect();
        CpuInfo {
            model: field("model name").unwrap_or_default(),
            vendor: field("vendor_id").unwrap_or_default(),
            logical_cpus: text.lines().filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor")).count(),
            features: FEATURES.iter().filter(|f| flags.contains(f)).map(|f| f.to_string()).collect(),
        }
    }
}

/// The result of [`run`]. Times are seconds, rates per second.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// The processor this ran on.
    pub cpu: CpuInfo,
    /// The protocol the parties ran (`additive-semi-honest`, `replicated-3`).
    pub protocol: ProtocolName,
    pub parties: usize,
    pub mults: usize,
    pub repeats: usize,
    /// Communication rounds of the job (setup, input, layers, output).
    pub rounds: usize,
    /// Cipher suite the transport negotiated on the mesh's links.
    pub cipher_suite: String,
    /// Median online job time (material prefetched).
    pub online_seconds: f64,
    pub online_mults_per_second: f64,
    /// Median job time with the in-process dealer (a thread, in-memory
    /// hand-over) running during the job.
    pub in_process_dealer_seconds: f64,
    pub in_process_dealer_mults_per_second: f64,
    /// Mean over parties of the bytes sent in the online run, per
    /// multiplication.
    pub bytes_per_mult_per_party: f64,
    /// What the protocol must send per multiplication per party:
    /// `16 · (parties − 1)` (additive), 8 (replicated-3: one element to
    /// one neighbour).
    pub protocol_bytes_per_mult_per_party: f64,
    /// Dealer to every party, expanded (median prefetch time).
    pub dealer_triples_per_second: f64,
    /// `TrustedDealer::deal` alone, one thread.
    pub dealer_generation_triples_per_second: f64,
    /// Median time to establish every party's mesh.
    pub mesh_setup_seconds: f64,
    /// Mesh-shaped aggregate loopback TLS throughput, AES-128-GCM.
    pub tls_loopback_bytes_per_second: f64,
    /// `tls_loopback_bytes_per_second / (bytes_per_mult_per_party · parties)`.
    pub online_bound_mults_per_second: f64,
    /// `online_mults_per_second / online_bound_mults_per_second`.
    pub online_fraction_of_bound: f64,
    /// Every TLS measurement.
    pub tls: Vec<TlsThroughput>,
    /// Every sample, seconds.
    pub online_samples: Vec<f64>,
    pub in_process_dealer_samples: Vec<f64>,
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid benchmark options: {0}")]
    Options(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("party {party}: {source}")]
    Job { party: usize, source: JobError },
    #[error("preprocessing: {0}")]
    Preprocessing(#[from] PreprocessingError),
    #[error("the benchmark program does not compile: {0}")]
    Compile(String),
    #[error("party {0} computed a wrong result")]
    WrongResult(usize),
    #[error("TLS measurement: {0}")]
    Tls(String),
    #[error("a benchmark task failed: {0}")]
    Task(String),
}

/// The benchmark program for the parties `names` (party-0 owns `x`,
/// party-1 owns `y`).
fn program(names: &[String]) -> String {
    format!("input x: int[] from {}\ninput y: int[] from {}\noutput z = sum(x * y)", names[0], names[1])
}

/// Deterministic inputs (their values do not affect the timing).
fn input_values(mults: usize, which: u64) -> Vec<u64> {
    (0..mults as u64).map(|i| (i ^ which).wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect()
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Run the benchmark described by `options` (see the module documentation).
pub async fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    let BenchOptions { parties, mults, repeats, tls_bytes_per_stream, protocol } = *options;
    if parties < 2 {
        return Err(BenchError::Options(format!("at least 2 parties are needed, not {parties}")));
    }
    protocol.check_parties(parties).map_err(BenchError::Options)?;
    if mults == 0 || repeats == 0 {
        return Err(BenchError::Options("mults and repeats must be at least 1".into()));
    }
    let material = protocol.uses_preprocessing();
    let federation = LocalFederation::with_parties(parties).await?.with_protocol(protocol);
    let source = program(&federation.names);
    let circuit = Arc::new(compile(&source, &federation.names).map_err(|e| BenchError::Compile(e.to_string()))?);
    let mut lengths = InputLengths(vec![vec![None; parties]; 2]);
    lengths.0[0][0] = Some(mults);
    lengths.0[1][1] = Some(mults);
    let plan = Instance::new(&circuit, &lengths).map_err(|e| BenchError::Compile(e.to_string()))?.plan;
    let x = Arc::new(input_values(mults, 1));
    let y = Arc::new(input_values(mults, 2));
    let expected = x.iter().zip(y.iter()).fold(0u64, |acc, (a, b)| acc.wrapping_add(a.wrapping_mul(*b)));
    let job = JobSpec {
        circuit,
        consent: federation.consent(&source),
        x,
        y,
        expected: vec![expected],
        tolerance: exact,
        protocol,
    };

    let (mut online, mut e2e, mut drain, mut setup) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rounds = 0;
    let mut bytes_per_mult = 0.0;
    let mut suite = String::new();
    // Without material the job itself is the online figure.
    let online_material = if material { Material::Prefetch(&plan) } else { Material::None };
    // One unreported run of each variant first: the first job of a process
    // pays for cold allocator arenas and caches.
    one_job(&federation, &job, online_material).await?;
    if material {
        one_job(&federation, &job, Material::Dealer).await?;
    }
    for _ in 0..repeats {
        let run = one_job(&federation, &job, online_material).await?;
        online.push(run.seconds);
        drain.push(run.prefetch_seconds);
        setup.push(run.mesh_seconds);
        rounds = run.rounds;
        bytes_per_mult = run.bytes_sent.iter().sum::<u64>() as f64 / parties as f64 / mults as f64;
        suite = run.suite;
        if material {
            let run = one_job(&federation, &job, Material::Dealer).await?;
            e2e.push(run.seconds);
        }
    }

    let generation = if material { dealer_generation(parties, mults)? } else { 0.0 };
    // 0 rather than a division by nothing: no dealer ran.
    let rate = |seconds: f64| if seconds > 0.0 { mults as f64 / seconds } else { 0.0 };
    let mut tls = Vec::new();
    let mut aggregate = 0.0;
    if tls_bytes_per_stream > 0 {
        let connections = parties * (parties - 1) / 2;
        // Warm-up (unreported): the first transfer of a process is slower.
        let aes128 = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
        measure_tls(aes128, 1, false, tls_bytes_per_stream.min(32 << 20)).await?;
        for s in [
            rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
            rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ] {
            let single = measure_tls(s, 1, false, tls_bytes_per_stream).await?;
            let mesh = measure_tls(s, connections, true, tls_bytes_per_stream).await?;
            if s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 {
                aggregate = mesh.bytes_per_second;
            }
            tls.push(single);
            tls.push(mesh);
        }
    }
    let online_seconds = median(&online);
    let bound = if aggregate > 0.0 { aggregate / (bytes_per_mult * parties as f64) } else { 0.0 };
    let online_rate = mults as f64 / online_seconds;
    Ok(BenchReport {
        cpu: CpuInfo::current(),
        protocol,
        parties,
        mults,
        repeats,
        rounds,
        cipher_suite: suite,
        online_seconds,
        online_mults_per_second: online_rate,
        in_process_dealer_seconds: median(&e2e),
        in_process_dealer_mults_per_second: rate(median(&e2e)),
        bytes_per_mult_per_party: bytes_per_mult,
        protocol_bytes_per_mult_per_party: match protocol {
            ProtocolName::AdditiveSemiHonest => 16.0 * (parties - 1) as f64,
            ProtocolName::Replicated3 => 8.0,
        },
        dealer_triples_per_second: rate(median(&drain)),
        dealer_generation_triples_per_second: generation,
        mesh_setup_seconds: median(&setup),
        tls_loopback_bytes_per_second: aggregate,
        online_bound_mults_per_second: bound,
        online_fraction_of_bound: if bound > 0.0 { online_rate / bound } else { 0.0 },
        tls,
        online_samples: online,
        in_process_dealer_samples: e2e,
    })
}

struct JobSpec {
    circuit: Arc<Circuit>,
    consent: [u8; 32],
    x: Arc<Vec<u64>>,
    y: Arc<Vec<u64>>,
    /// The first output's value at every party.
    expected: Vec<u64>,
    /// How far an element may be from `expected`, in ring units: the
    /// documented bound of an approximate operation (0: exact).
    tolerance: fn(u64) -> u64,
    protocol: ProtocolName,
}

/// The tolerance of an exact operation.
fn exact(_: u64) -> u64 {
    0
}

impl JobSpec {
    /// Whether `got` is the expected value within the tolerance.
    fn accepts(&self, got: Option<&[u64]>) -> bool {
        got.is_some_and(|got| {
            got.len() == self.expected.len()
                && got
                    .iter()
                    .zip(&self.expected)
                    .all(|(g, w)| crate::ring::to_signed(g.wrapping_sub(*w)).unsigned_abs() <= (self.tolerance)(*w))
        })
    }
}

struct JobRun {
    seconds: f64,
    prefetch_seconds: f64,
    mesh_seconds: f64,
    rounds: usize,
    bytes_sent: Vec<u64>,
    suite: String,
}

/// Where a benchmark job's material comes from.
#[derive(Clone, Copy)]
enum Material<'a> {
    /// Every party drains its whole material for this plan from an
    /// in-process dealer before the clock starts.
    Prefetch(&'a MaterialPlan),
    /// An in-process dealer deals during the job.
    Dealer,
    /// The parties generate it with OT over the job's mesh, during the job.
    Ot,
    /// None: the protocol takes no material (`replicated-3`).
    None,
}

/// One job among all parties, with material from `material`.
async fn one_job(federation: &LocalFederation, job: &JobSpec, material: Material<'_>) -> Result<JobRun, BenchError> {
    let prefetch = match material {
        Material::Prefetch(plan) => Some(plan),
        _ => None,
    };
    let ot = matches!(material, Material::Ot);
    let n = federation.names.len();
    let hub = DealerHub::new(n);
    let mut prefetched: Vec<Option<Prefetched>> = (0..n).map(|_| None).collect();
    let mut prefetch_seconds = 0.0;
    if let Some(plan) = prefetch {
        // The dealer deals to all parties in lockstep: drain concurrently.
        let started = Instant::now();
        let mut drains = Vec::new();
        for me in 0..n {
            let (hub, plan) = (hub.clone(), plan.clone());
            drains.push(tokio::spawn(async move {
                let mut stream = hub.take(me, plan.clone())?;
                let material = Prefetched::drain(&mut stream, &plan).await?;
                Ok::<_, PreprocessingError>(material)
            }));
        }
        for (me, d) in drains.into_iter().enumerate() {
            prefetched[me] = Some(d.await.map_err(|e| BenchError::Task(e.to_string()))??);
        }
        prefetch_seconds = started.elapsed().as_secs_f64();
    }
    let started = Instant::now();
    let meshes = federation.meshes(JobId::random()).await?;
    let mesh_seconds = started.elapsed().as_secs_f64();
    let suite = meshes[0].cipher_suite(1).unwrap_or("unknown").to_string();

    // Each party's own inputs, as a party holds them when a job starts.
    let mut inputs = Vec::new();
    for me in 0..n {
        let mut own = OwnInputs::new();
        let input = match me {
            0 => Some(("x", &job.x)),
            1 => Some(("y", &job.y)),
            _ => None,
        };
        if let Some((name, values)) = input {
            own.insert_encoded(&job.circuit, name, Secret::new(values.to_vec()))
                .map_err(|source| BenchError::Job { party: me, source })?;
        }
        inputs.push(own);
    }

    let started = Instant::now();
    let mut tasks = Vec::new();
    for (me, ((mesh, material), own)) in meshes.into_iter().zip(prefetched).zip(inputs).enumerate() {
        let hub = hub.clone();
        let circuit = job.circuit.clone();
        let (consent, protocol) = (job.consent, job.protocol);
        tasks.push(tokio::spawn(async move {
            let result = party(&mesh, &circuit, (consent, protocol), own, material, hub, me, ot).await;
            let done = Instant::now();
            // Bytes this party read: every message is read by a party that
            // needs it before it finishes, so the sum over the parties is
            // what they sent. (What a party sent may still sit in its
            // writer's queue here: counting sends undercounted the last
            // message, the layer's opening, under load.)
            let bytes = mesh.bytes_received();
            mesh.close().await;
            result.map(|out| (out, done, bytes))
        }));
    }
    let mut last = started;
    let mut rounds = 0;
    let mut bytes_sent = Vec::new();
    for (me, task) in tasks.into_iter().enumerate() {
        let (out, done, bytes) = task.await.map_err(|e| BenchError::Task(e.to_string()))??;
        let value = out.outputs.first().and_then(|o| o.value.as_ref()).map(|v| v.expose().to_vec());
        if !job.accepts(value.as_deref()) {
            return Err(BenchError::WrongResult(me));
        }
        last = last.max(done);
        rounds = out.stats.rounds as usize;
        bytes_sent.push(bytes);
    }
    Ok(JobRun { seconds: (last - started).as_secs_f64(), prefetch_seconds, mesh_seconds, rounds, bytes_sent, suite })
}

/// One party's side of the job.
#[allow(clippy::too_many_arguments)]
async fn party(
    mesh: &Mesh,
    circuit: &Circuit,
    (consent, protocol): ([u8; 32], ProtocolName),
    own: OwnInputs,
    material: Option<Prefetched>,
    hub: DealerHub,
    me: usize,
    ot: bool,
) -> Result<crate::executor::JobOutput, BenchError> {
    // Under a protocol without material `execute` never asks for any.
    let mut options = ExecuteOptions { protocol, ..ExecuteOptions::new(consent) };
    let result = match material {
        Some(m) => execute(mesh, circuit, &own, &options, |_| async move { Ok(m) }).await,
        None if ot => {
            options.quotients = crate::executor::Quotients::of(crate::preprocessing::Mode::Ot);
            let job = mesh.job();
            execute(mesh, circuit, &own, &options, |plan| async move {
                crate::preprocessing::ot::generate_for_plan(mesh, job, &plan).await
            })
            .await
        }
        None => execute(mesh, circuit, &own, &options, |plan| async move { hub.take(me, plan) }).await,
    };
    result.map_err(|source| BenchError::Job { party: me, source })
}

/// Triples per second of `TrustedDealer::deal` on this thread, dealing
/// `mults` triples in the batch size local runs use.
fn dealer_generation(parties: usize, mults: usize) -> Result<f64, BenchError> {
    let mut dealer = TrustedDealer::new(parties)?;
    let batch = 1 << 16;
    let started = Instant::now();
    let mut left = mults;
    while left > 0 {
        let take = left.min(batch);
        std::hint::black_box(dealer.deal(&Demand { triples: take, div_pairs: vec![], ..Default::default() })?);
        left -= take;
    }
    Ok(mults as f64 / started.elapsed().as_secs_f64())
}

/// Raw loopback TLS 1.3 throughput with the transport's rustls setup
/// (`ring` provider, TLS 1.3 only, mutual authentication with certificates
/// from a [`PartyCa`]) restricted to `suite`: `connections` connections at
/// once, each sending `bytes_per_stream` application bytes in one direction
/// (or in both, `duplex`), in writes of 4 MiB (the transport's frame size).
/// Measured from all handshakes done to the last byte read.
pub async fn measure_tls(
    suite: rustls::SupportedCipherSuite,
    connections: usize,
    duplex: bool,
    bytes_per_stream: usize,
) -> Result<TlsThroughput, BenchError> {
    let err = |what: &str, e: &dyn std::fmt::Display| BenchError::Tls(format!("{what}: {e}"));
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..rustls::crypto::ring::default_provider()
    });
    let lifetime = Duration::from_secs(3600);
    let ca = PartyCa::generate("bench", "tls", lifetime)?;
    let now = SystemTime::now();
    let leaf = ca.issue_party_cert("tls", &["localhost".to_string()], now - Duration::from_secs(60), now + lifetime)?;
    let pem = |s: &str| -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, BenchError> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::pem_slice_iter(s.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("certificate PEM", &e))
    };
    let key = || -> Result<rustls::pki_types::PrivateKeyDer<'static>, BenchError> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
            .map_err(|_| BenchError::Tls("cannot parse the key".into()))
    };
    let chain = pem(&leaf.cert_pem)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in pem(&ca.cert_pem())? {
        roots.add(c).map_err(|e| err("CA", &e))?;
    }
    let roots = Arc::new(roots);
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| err("client verifier", &e))?;
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err("server config", &e))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key()?)
        .map_err(|e| err("server certificate", &e))?;
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err("client config", &e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key()?)
        .map_err(|e| err("client certificate", &e))?;
    client.resumption = rustls::client::Resumption::disabled();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| err("bind", &e))?;
    let addr = listener.local_addr().map_err(|e| err("bind", &e))?;

    let mut pairs = Vec::new();
    for _ in 0..connections {
        let dial = async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
            connector.connect(name, tcp).await
        };
        let accept = async {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            acceptor.accept(tcp).await
        };
        let (c, s) = tokio::join!(dial, accept);
        pairs.push((c.map_err(|e| err("client handshake", &e))?, s.map_err(|e| err("server handshake", &e))?));
    }
    let suite_name = pairs
        .first()
        .and_then(|(c, _)| c.get_ref().1.negotiated_cipher_suite())
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown")
        .to_string();

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, s) in pairs {
        let (cr, cw) = tokio::io::split(c);
        let (sr, sw) = tokio::io::split(s);
        tasks.spawn(pump_write(cw, bytes_per_stream));
        tasks.spawn(pump_read(sr, bytes_per_stream));
        if duplex {
            tasks.spawn(pump_write(sw, bytes_per_stream));
            tasks.spawn(pump_read(cr, bytes_per_stream));
        } else {
            // Keep the idle halves open until the readers are done.
            tasks.spawn(async move {
                let _keep = (sw, cr);
                std::future::pending::<std::io::Result<bool>>().await
            });
        }
    }
    let streams = connections * if duplex { 2 } else { 1 };
    let mut finished_readers = 0;
    while finished_readers < streams {
        match tasks.join_next().await {
            Some(Ok(Ok(true))) => finished_readers += 1,
            Some(Ok(Ok(false))) => {}
            Some(Ok(Err(e))) => return Err(err("transfer", &e)),
            Some(Err(e)) => return Err(BenchError::Task(e.to_string())),
            None => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    tasks.abort_all();
    Ok(TlsThroughput {
        suite: suite_name,
        connections,
        streams,
        bytes_per_second: (streams * bytes_per_stream) as f64 / seconds,
    })
}

/// Bytes per `write_all` call in the TLS measurement.
const TLS_WRITE: usize = 4 << 20;

/// Write `total` bytes; `Ok(false)` (a writer, not a reader).
async fn pump_write<W: tokio::io::AsyncWrite + Unpin>(mut w: W, total: usize) -> std::io::Result<bool> {
    let buf = vec![0x5au8; TLS_WRITE.min(total.max(1))];
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len());
        w.write_all(&buf[..n]).await?;
        left -= n;
    }
    w.flush().await?;
    // Stay open until aborted, so the peer's reader sees no early EOF.
    std::future::pending::<()>().await;
    Ok(false)
}

/// Read exactly `total` bytes; `Ok(true)` when done.
async fn pump_read<R: tokio::io::AsyncRead + Unpin>(mut r: R, total: usize) -> std::io::Result<bool> {
    let mut buf = vec![0u8; TLS_WRITE.min(total.max(1))];
    let mut left = total;
    while left > 0 {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left = left.saturating_sub(n);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::CpuInfo;

    #[test]
    fn cpu_info_reads_model_vendor_count_and_features() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\n\
                    flags\t\t: fpu sse2 aes pclmulqdq avx2 avx512f avx512bw vaes vpclmulqdq\n\n\
                    processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\n\
                    flags\t\t: fpu sse2 aes\n";
        let cpu = CpuInfo::parse(text);
        assert_eq!(cpu.model, "Intel(R) Xeon(R) Platinum 8488C");
        assert_eq!(cpu.vendor, "GenuineIntel");
        assert_eq!(cpu.logical_cpus, 2);
        assert_eq!(cpu.features, ["aes", "pclmulqdq", "avx2", "avx512f", "avx512bw", "vaes", "vpclmulqdq"]);
        assert_eq!(CpuInfo::parse(""), CpuInfo::default());
    }
}
