//! `cohort bench --op sort` (and `median`, `rank`, `join-sum`, `group-sum`,
//! `divide`, `sigmoid`): how fast the parties sort `n` secret 64-bit keys
//! (`docs/sorting.md`), or run one of the operations built on the sort
//! and the fixed-point functions, in process over real loopback mTLS.
//!
//! The sort's job is `output s = sort(x + y)` with `x` (party-0) and `y`
//! (party-1) vectors of `n` integers, so that every key is a secret no
//! party holds; the result is opened to every party and checked against
//! `program::plain` at every run (within the documented bound for the
//! approximate operations). The other operations: [`ProgramOp`].
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
//! - **material** (`triples`, `edabits`, `bit_triples`,
//!   `permutation_elements`): what the job's plan reserves (the shuffle's
//!   material exactly — dealt permutation steps with `--preprocessing
//!   dealer`, the Beneš networks' triples otherwise — and the
//!   comparisons' budget: see `executor::sort::comparison_budget`).

use super::{BenchError, CpuInfo, JobSpec, Material, median, one_job};
use crate::executor::plan::Lowering;
use crate::executor::{InputLengths, Instance};
use crate::local::LocalFederation;
use crate::preprocessing::Mode;
use crate::program::compile;
use crate::protocol::ProtocolName;
use std::sync::Arc;

/// The operation measured: a sort, or one of the operations of issue 18
/// built on it or beside it. Each is one job over `n` elements of `x`
/// (party 0) and `y` (party 1), its result checked against
/// `program::plain` within the operation's documented bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ProgramOp {
    /// `sort(x + y)`.
    #[default]
    Sort,
    /// `median(x + y)`.
    Median,
    /// `rank(x + y)`: each element's position in the stable order.
    Rank,
    /// `join_sum(x, y, y)`: two tables of `n` rows with overlapping keys.
    JoinSum,
    /// `group_sum(x, y)`: the group-by of secret keys (with ties) through
    /// sorting.
    GroupSum,
    /// `x / y` of fixed-point values, `y` secret.
    Divide,
    /// `sigmoid(x + y)` of fixed-point values.
    Sigmoid,
    /// `exp(x + y)` of fixed-point values.
    Exp,
    /// `log(x + y)` of fixed-point values.
    Log,
    /// `sqrt(x + y)` of fixed-point values.
    Sqrt,
}

impl ProgramOp {
    /// The program's output expression and the inputs' element type.
    fn program(self) -> (&'static str, &'static str) {
        match self {
            ProgramOp::Sort => ("sort(x + y)", "int"),
            ProgramOp::Median => ("median(x + y)", "int"),
            ProgramOp::Rank => ("rank(x + y)", "int"),
            ProgramOp::JoinSum => ("join_sum(x, y, y)", "int"),
            ProgramOp::GroupSum => ("group_sum(x, y)", "int"),
            ProgramOp::Divide => ("x / y", "fixed"),
            ProgramOp::Sigmoid => ("sigmoid(x + y)", "fixed"),
            ProgramOp::Exp => ("exp(x + y)", "fixed"),
            ProgramOp::Log => ("log(x + y)", "fixed"),
            ProgramOp::Sqrt => ("sqrt(x + y)", "fixed"),
        }
    }

    /// The documented error bound, in ring units, of a result element.
    fn tolerance(self) -> fn(u64) -> u64 {
        match self {
            ProgramOp::Sort | ProgramOp::Rank | ProgramOp::JoinSum | ProgramOp::GroupSum => super::exact,
            // One truncation when the middle falls between two elements.
            ProgramOp::Median => |_| 1,
            // docs/fixed-point-functions.md: 2^-25 of the quotient and 2 ulps.
            ProgramOp::Divide => |w| 2 + (crate::ring::to_signed(w).unsigned_abs() >> 25),
            ProgramOp::Sigmoid | ProgramOp::Log => |_| 3,
            ProgramOp::Exp => |w| 2 + (crate::ring::to_signed(w).unsigned_abs() >> 26),
            ProgramOp::Sqrt => |w| 2 + (crate::ring::to_signed(w).unsigned_abs() >> 27),
        }
    }

    /// The inputs: `x` and `y`, `n` elements each.
    fn inputs(self, n: usize) -> (Vec<u64>, Vec<u64>) {
        let mix = |i: u64, salt: u64| (i ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        match self {
            ProgramOp::Sort | ProgramOp::Rank | ProgramOp::GroupSum => inputs(n),
            // The median is `fixed`: keys below 2^40, so that 2^f times
            // them stays in range.
            ProgramOp::Median => {
                let (x, y) = inputs(n);
                let small = |v: Vec<u64>| {
                    v.into_iter().map(|e| crate::ring::from_signed(crate::ring::to_signed(e) >> 21)).collect()
                };
                (small(x), small(y))
            }
            // Keys below 2n on both sides: about 40 % of the rows match.
            ProgramOp::JoinSum => {
                let key = |i: u64, salt: u64| mix(i, salt) % (2 * n as u64);
                ((0..n as u64).map(|i| key(i, 1)).collect(), (0..n as u64).map(|i| key(i, 2)).collect())
            }
            // |x| < 2^36 (reals below 2^20 at f = 16), 2^16 <= |y| < 2^30.
            ProgramOp::Divide => {
                let x = (0..n as u64).map(|i| crate::ring::from_signed((mix(i, 3) >> 27) as i64 - (1 << 36))).collect();
                let y = (0..n as u64)
                    .map(|i| {
                        let m = (1u64 << 16) + (mix(i, 4) >> 35);
                        if i % 2 == 0 { m } else { m.wrapping_neg() }
                    })
                    .collect();
                (x, y)
            }
            // |x + y| < 2^21 (reals below 32 at f = 16): the whole curve
            // of the sigmoid, exp up to e^32, log and sqrt of both signs.
            ProgramOp::Sigmoid | ProgramOp::Exp | ProgramOp::Log | ProgramOp::Sqrt => {
                let v = |i: u64, salt: u64| crate::ring::from_signed((mix(i, salt) >> 44) as i64 - (1 << 19));
                ((0..n as u64).map(|i| v(i, 5)).collect(), (0..n as u64).map(|i| v(i, 6)).collect())
            }
        }
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct SortBenchOptions {
    /// The operation (`sort` by default).
    pub op: ProgramOp,
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
    pub op: ProgramOp,
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
    /// Dealt permutation correlations, in elements over every step.
    pub permutation_elements: u64,
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
    let SortBenchOptions { op, parties, n, repeats, mode, protocol } = *options;
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
    let (expression, elem) = op.program();
    let source =
        format!("input x: {elem}[] from {}\ninput y: {elem}[] from {}\noutput s = {expression}", names[0], names[1]);
    let circuit = Arc::new(compile(&source, names).map_err(|e| BenchError::Compile(e.to_string()))?);
    let mut lengths = InputLengths(vec![vec![None; parties]; 2]);
    lengths.0[0][0] = Some(n);
    lengths.0[1][1] = Some(n);
    let lowering = Lowering { protocol, quotients: crate::executor::Quotients::of(mode) };
    let instance = Instance::plan(&circuit, &lengths, lowering).map_err(|e| BenchError::Compile(e.to_string()))?;
    let totals = if material { instance.plan.totals() } else { Default::default() };
    let (x, y) = op.inputs(n);
    let plain_inputs = crate::program::plain::PlainInputs::new().set(0, 0, x.clone()).set(1, 1, y.clone());
    let expected = crate::program::plain::evaluate(&circuit, &plain_inputs)
        .map_err(|e| BenchError::Compile(format!("plaintext evaluation: {e}")))?
        .swap_remove(0);
    let consent = crate::local::job_consent_digest(protocol, &source, names, mode);
    let job =
        JobSpec { circuit, consent, x: Arc::new(x), y: Arc::new(y), expected, tolerance: op.tolerance(), protocol };
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
        op,
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
        permutation_elements: totals.permutations,
        samples,
        online_samples,
    })
}
