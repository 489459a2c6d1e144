//! `cohort bench --op compare`: how fast the parties compare secret
//! integers, in dealer and OT modes, over real loopback mTLS.
//!
//! The job is `output z = count(x < y)` with `x` (party-0) and `y`
//! (party-1) vectors of `comparisons` secret 64-bit integers: one masked
//! opening with an edaBit, the 6 AND levels of the borrow circuit and one
//! bit injection per element, 3 + 8 rounds. Every run checks `z`.
//!
//! - **online** (`online_comparisons_per_second`, dealer mode only): the
//!   whole job with the dealer's material already drawn by every party, as
//!   the multiplication benchmark's online figure (see the parent module).
//! - **job** (`comparisons_per_second`): the whole job with the material
//!   produced during it — by an in-process dealer thread (dealer mode: no
//!   dealer process, no dealer TLS; the deployed figure of `cohort bench`
//!   adds those) or by the parties' OT generation over the job's mesh (OT
//!   mode: this *is* the deployed path's work, minus the worker process and
//!   its control API).
//! - **bytes** (`bytes_per_comparison_per_party`): what every party's mesh
//!   carried during the job, averaged over the parties, per comparison.
//!   `online_protocol_bytes_per_comparison_per_party` is what the online
//!   construction must send: `(n − 1) · (8 + 2 · g / 8 + 1 / 8)` bytes
//!   for the `g` = 118 AND gates of the borrow circuit (the masked value,
//!   the AND gates' `d` and `e`, the injection's bit).
//!
//! Under `replicated-3` (`CompareBenchOptions::protocol`) there is no
//! material: **job** is the whole job, `online_*` repeats it, the material
//! figures are 0 and `preprocessing` is absent from the JSON. Its
//! comparison is a split conversion (party 1 inputs the bits of one
//! summand) and the borrow circuit on two secret bundles, 8 rounds, plus
//! the bit injection of `count`.
//!
//! Mesh establishment is excluded, as in the parent module.

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
pub struct CompareBenchOptions {
    /// Number of parties (at least 2).
    pub parties: usize,
    /// Comparisons in the job (at least 1).
    pub comparisons: usize,
    /// Runs of each variant; timings are the median.
    pub repeats: usize,
    /// Dealer (an in-process dealer) or OT (generated in the job); not
    /// used under a protocol without material.
    pub mode: Mode,
    /// The protocol the parties run.
    pub protocol: ProtocolName,
}

/// The result of [`run`]. Times are seconds, rates per second.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompareBenchReport {
    pub cpu: CpuInfo,
    pub op: &'static str,
    /// The protocol the parties ran (`additive-semi-honest`, `replicated-3`).
    pub protocol: ProtocolName,
    /// The material's source; absent under `replicated-3`, which takes none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<Mode>,
    pub parties: usize,
    pub comparisons: usize,
    pub repeats: usize,
    /// Communication rounds of the online job (setup, input, layers, output).
    pub rounds: usize,
    /// Material the job consumes, per comparison (bit triples come in
    /// words of 64 per layer, so a little above the circuit's 118 AND gates).
    pub bit_triples_per_comparison: f64,
    pub edabits_per_comparison: f64,
    pub dabits_per_comparison: f64,
    /// Median job time with the material produced during the job.
    pub seconds: f64,
    pub comparisons_per_second: f64,
    /// Dealer mode: median job time with the material prefetched (0 in OT
    /// mode, where generation is part of every job).
    pub online_seconds: f64,
    pub online_comparisons_per_second: f64,
    /// Mean over parties of the bytes a party's mesh carried during the
    /// job, per comparison.
    pub bytes_per_comparison_per_party: f64,
    /// What the online construction must send per comparison per party.
    pub online_protocol_bytes_per_comparison_per_party: f64,
    pub samples: Vec<f64>,
    pub online_samples: Vec<f64>,
}

/// The benchmark program for the parties `names`.
fn program(names: &[String]) -> String {
    format!("input x: int[] from {}\ninput y: int[] from {}\noutput z = count(x < y)", names[0], names[1])
}

/// Deterministic signed inputs over the whole documented range.
fn inputs(n: usize) -> (Vec<u64>, Vec<u64>) {
    let value = |i: u64, salt: u64| {
        let v = (i ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 2; // < 2^62
        if i.is_multiple_of(2) { v } else { v.wrapping_neg() }
    };
    ((0..n as u64).map(|i| value(i, 1)).collect(), (0..n as u64).map(|i| value(i, 2)).collect())
}

/// Run the comparison benchmark (see the module documentation).
pub async fn run(options: &CompareBenchOptions) -> Result<CompareBenchReport, BenchError> {
    let CompareBenchOptions { parties, comparisons, repeats, mode, protocol } = *options;
    if parties < 2 {
        return Err(BenchError::Options(format!("at least 2 parties are needed, not {parties}")));
    }
    protocol.check_parties(parties).map_err(BenchError::Options)?;
    let material = protocol.uses_preprocessing();
    if comparisons == 0 || repeats == 0 {
        return Err(BenchError::Options("comparisons and repeats must be at least 1".into()));
    }
    if material && mode == Mode::Pool {
        return Err(BenchError::Options(
            "the comparison benchmark runs in dealer or ot mode (a pool job generates its binary material with OT \
             in the job: measure --preprocessing ot)"
                .into(),
        ));
    }
    let federation = LocalFederation::with_parties(parties).await?.with_protocol(protocol);
    let source = program(&federation.names);
    let circuit = Arc::new(compile(&source, &federation.names).map_err(|e| BenchError::Compile(e.to_string()))?);
    let mut lengths = InputLengths(vec![vec![None; parties]; 2]);
    lengths.0[0][0] = Some(comparisons);
    lengths.0[1][1] = Some(comparisons);
    let lowering = Lowering { protocol, quotients: crate::executor::Quotients::of(mode) };
    let instance = Instance::plan(&circuit, &lengths, lowering).map_err(|e| BenchError::Compile(e.to_string()))?;
    // The material a job takes (none without preprocessing).
    let totals = if material { instance.plan.totals() } else { Default::default() };
    let (x, y) = inputs(comparisons);
    let expected =
        x.iter().zip(&y).filter(|(a, b)| crate::ring::to_signed(**a) < crate::ring::to_signed(**b)).count() as u64;
    let consent = crate::local::job_consent_digest(protocol, &source, &federation.names, mode);
    let job = JobSpec {
        circuit,
        consent,
        x: Arc::new(x),
        y: Arc::new(y),
        expected: vec![expected],
        tolerance: super::exact,
        protocol,
    };
    let during = match mode {
        _ if !material => Material::None,
        Mode::Ot => Material::Ot,
        _ => Material::Dealer,
    };

    // Warm-up (unreported).
    one_job(&federation, &job, during).await?;
    let (mut samples, mut online_samples) = (Vec::new(), Vec::new());
    let (mut rounds, mut bytes) = (0, 0.0);
    for _ in 0..repeats {
        let run = one_job(&federation, &job, during).await?;
        samples.push(run.seconds);
        rounds = run.rounds;
        bytes = run.bytes_sent.iter().sum::<u64>() as f64 / parties as f64 / comparisons as f64;
        if !material {
            // The job is all online.
            online_samples.push(run.seconds);
        } else if mode == Mode::Dealer {
            online_samples.push(one_job(&federation, &job, Material::Prefetch(&instance.plan)).await?.seconds);
        }
    }
    let seconds = median(&samples);
    let online_seconds = median(&online_samples);
    let per = |v: u64| v as f64 / comparisons as f64;
    Ok(CompareBenchReport {
        cpu: CpuInfo::current(),
        op: "compare",
        protocol,
        preprocessing: material.then_some(mode),
        parties,
        comparisons,
        repeats,
        rounds,
        bit_triples_per_comparison: per(totals.bit_triples),
        edabits_per_comparison: per(totals.edabits),
        dabits_per_comparison: per(totals.dabits),
        seconds,
        comparisons_per_second: comparisons as f64 / seconds,
        online_seconds,
        online_comparisons_per_second: if online_seconds > 0.0 { comparisons as f64 / online_seconds } else { 0.0 },
        bytes_per_comparison_per_party: bytes,
        online_protocol_bytes_per_comparison_per_party: match protocol {
            ProtocolName::AdditiveSemiHonest => {
                (parties - 1) as f64 * (8.0 + 2.0 * and_gates_per_comparison() as f64 / 8.0 + 1.0 / 8.0)
            }
            // One bit per AND gate (both operands secret) to one neighbour;
            // party 1's 64 input bits of the split (8 bytes, averaged over
            // the three parties); the count's daBit: one product (8 bytes)
            // and party 0's input of its bit (8, averaged). The inputs' own
            // sharing (one element per input element) is not counted.
            ProtocolName::Replicated3 => secret_and_gates_per_comparison() as f64 / 8.0 + 8.0 / 3.0 + 8.0 + 8.0 / 3.0,
        },
        samples,
        online_samples,
    })
}

/// The AND gates of one 64-bit comparison of two secret bundles (replicated
/// sharing's split conversion).
fn secret_and_gates_per_comparison() -> usize {
    let mut cost = crate::circuits::Cost::default();
    let (a, b) = (crate::circuits::Shape::secret(64), crate::circuits::Shape::secret(64));
    crate::circuits::compare::msb_of_difference(&mut cost, &a, &b);
    cost.and_gates
}

/// The AND gates of one 64-bit comparison with one public operand.
fn and_gates_per_comparison() -> usize {
    let mut cost = crate::circuits::Cost::default();
    let (c, r) = (crate::circuits::Shape::public(64), crate::circuits::Shape::secret(64));
    crate::circuits::compare::msb_of_difference(&mut cost, &c, &r);
    cost.and_gates
}
