//! `cohort bench --op sort`: how fast the parties sort `n` secret 64-bit
//! keys (`docs/sorting.md`), in process over real loopback mTLS.
//!
//! The job is `output s = sort(x + y)` with `x` (party-0) and `y`
//! (party-1) vectors of `n` integers, so that every key is a secret no
//! party holds; the sorted vector is opened to every party and checked
//! against the plaintext sort at every run.
//!
//! - **job** (`seconds`, `keys_per_second`): the whole job, meshes
//!   established to outputs at every party, with the material produced
//!   during it (an in-process dealer thread in dealer mode, the parties'
//!   OT generation over the job's mesh in OT mode; none under
//!   `replicated-3`).
//! - **online** (`online_seconds`, dealer mode, up to 2·10^5 keys): the
//!   same job with the dealer's material (the sort's whole budget
//!   included) drawn before the clock starts. Larger sorts skip it (and the
//!   warm-up run): prefetching holds all the material at once, about 5 GB
//!   per party at 10^6 keys, which the streamed job never does.
//! - **rounds**: the job's communication rounds (setup, input, the sort's
//!   dynamic step, output); `bytes_per_key_per_party`: what a party's mesh
//!   carried, per key.
//! - **memory** (`peak_rss_bytes`): the process's peak resident set during
//!   the job (Linux `VmHWM`, reset before each run through
//!   `/proc/self/clear_refs`): every party, the dealer thread and the
//!   transport together; `peak_rss_bytes_per_party` divides it by the
//!   number of parties.
//! - **material** (`triples`, `edabits`, `bit_triples`): what the job's
//!   plan reserves (the shuffle's triples exactly, the comparisons'
//!   budget: see `executor::sort::comparison_budget`).

use super::{BenchError, CpuInfo, JobSpec, Material, median, one_job};
use crate::executor::plan::Lowering;
use crate::executor::{InputLengths, Instance};
use crate::local::LocalFederation;
use crate::preprocessing::Mode;
use crate::program::compile;
use crate::protocol::ProtocolName;
use std::sync::Arc;

/// What to measure.
#[derive(Clone, Debug)]
pub struct SortBenchOptions {
    /// Number of parties (at least 2; 3 under `replicated-3`).
    pub parties: usize,
    /// Keys to sort (at least 2).
    pub n: usize,
    /// Runs of each variant; timings are the median.
    pub repeats: usize,
    /// Dealer or OT; not used under a protocol without material.
    pub mode: Mode,
    pub protocol: ProtocolName,
}

/// The result of [`run`]. Times are seconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SortBenchReport {
    pub cpu: CpuInfo,
    pub op: &'static str,
    pub protocol: ProtocolName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<Mode>,
    pub parties: usize,
    pub n: usize,
    pub repeats: usize,
    /// Rounds of the last job (the sort's are random: quicksort's levels).
    pub rounds: usize,
    /// Median job time, material produced during the job.
    pub seconds: f64,
    pub keys_per_second: f64,
    /// Dealer mode: median job time with the material prefetched (0
    /// otherwise).
    pub online_seconds: f64,
    /// Mean over parties of the bytes a party's mesh carried, per key.
    pub bytes_per_key_per_party: f64,
    /// Peak resident set of the whole process during a job (the median
    /// over the runs), and that divided by the parties.
    pub peak_rss_bytes: u64,
    pub peak_rss_bytes_per_party: u64,
    /// The material the plan reserves for the job.
    pub triples: u64,
    pub edabits: u64,
    pub bit_triples: u64,
    pub samples: Vec<f64>,
    pub online_samples: Vec<f64>,
}

/// Above this many keys the benchmark skips the warm-up and the online
/// (prefetched) variant.
const LARGE: usize = 200_000;

/// Deterministic summands of signed keys below 2^61 in magnitude, with
/// some ties.
fn inputs(n: usize) -> (Vec<u64>, Vec<u64>) {
    let value = |i: u64, salt: u64| {
        let v = ((i / 3) ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 4; // < 2^60
        if i % 4 < 2 { v } else { v.wrapping_neg() }
    };
    ((0..n as u64).map(|i| value(i, 1)).collect(), (0..n as u64).map(|i| value(i, 2)).collect())
}

/// Reset the process's peak resident set (Linux), so that the next
/// reading of `VmHWM` is this job's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set since the last reset, in bytes (0 where
/// `/proc` is not available).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Run the sort benchmark (see the module documentation).
pub async fn run(options: &SortBenchOptions) -> Result<SortBenchReport, BenchError> {
    let SortBenchOptions { parties, n, repeats, mode, protocol } = *options;
    protocol.check_parties(parties).map_err(BenchError::Options)?;
    if n < 2 || repeats == 0 {
        return Err(BenchError::Options("n must be at least 2 and repeats at least 1".into()));
    }
    let material = protocol.uses_preprocessing();
    if material && mode == Mode::Pool {
        return Err(BenchError::Options(
            "the sort benchmark runs in dealer or ot mode (pool jobs: see docs/benchmarks.md)".into(),
        ));
    }
    let federation = LocalFederation::with_parties(parties).await?.with_protocol(protocol);
    let names = &federation.names;
    let source = format!("input x: int[] from {}\ninput y: int[] from {}\noutput s = sort(x + y)", names[0], names[1]);
    let circuit = Arc::new(compile(&source, names).map_err(|e| BenchError::Compile(e.to_string()))?);
    let mut lengths = InputLengths(vec![vec![None; parties]; 2]);
    lengths.0[0][0] = Some(n);
    lengths.0[1][1] = Some(n);
    let lowering = Lowering { protocol, quotients: crate::executor::Quotients::of(mode) };
    let instance = Instance::plan(&circuit, &lengths, lowering).map_err(|e| BenchError::Compile(e.to_string()))?;
    let totals = if material { instance.plan.totals() } else { Default::default() };
    let (x, y) = inputs(n);
    let keys: Vec<u64> = x.iter().zip(&y).map(|(a, b)| a.wrapping_add(*b)).collect();
    let expected = crate::program::plain::sort_by(&keys, &keys, false);
    let consent = crate::local::job_consent_digest(protocol, &source, names, mode);
    let job = JobSpec { circuit, consent, x: Arc::new(x), y: Arc::new(y), expected, protocol };
    let during = match mode {
        _ if !material => Material::None,
        Mode::Ot => Material::Ot,
        _ => Material::Dealer,
    };

    // Large sorts: no warm-up, and no online variant (prefetching the
    // whole budget would hold every party's material for the whole sort
    // in memory at once, which the streamed job never does).
    let large = n > LARGE;
    if !large {
        one_job(&federation, &job, during).await?;
    }
    let (mut samples, mut online_samples, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rounds, mut bytes) = (0, 0.0);
    for _ in 0..repeats {
        reset_peak_rss();
        let run = one_job(&federation, &job, during).await?;
        peaks.push(peak_rss() as f64);
        samples.push(run.seconds);
        rounds = run.rounds;
        bytes = run.bytes_sent.iter().sum::<u64>() as f64 / parties as f64 / n as f64;
        if material && mode == Mode::Dealer && !large {
            online_samples.push(one_job(&federation, &job, Material::Prefetch(&instance.plan)).await?.seconds);
        }
    }
    let seconds = median(&samples);
    let peak = median(&peaks) as u64;
    Ok(SortBenchReport {
        cpu: CpuInfo::current(),
        op: "sort",
        protocol,
        preprocessing: material.then_some(mode),
        parties,
        n,
        repeats,
        rounds,
        seconds,
        keys_per_second: n as f64 / seconds,
        online_seconds: median(&online_samples),
        bytes_per_key_per_party: bytes,
        peak_rss_bytes: peak,
        peak_rss_bytes_per_party: peak / parties as u64,
        triples: totals.triples,
        edabits: totals.edabits,
        bit_triples: totals.bit_triples,
        samples,
        online_samples,
    })
}
