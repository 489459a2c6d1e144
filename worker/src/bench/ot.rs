//! `cohort bench --preprocessing ot`: how fast the parties generate Beaver
//! triples among themselves with OT extension, over real loopback mTLS.
//!
//! Every party of a [`LocalFederation`] runs an [`OtGenerator`] on its own
//! [`Mesh`]; all parties, their TLS and their computations share the cores
//! of the runtime. After the base OTs (timed separately, `base_ot_seconds`)
//! and one unreported warm-up batch, each run generates `triples` triples;
//! its time runs from starting every party to the last party holding its
//! shares. Every run is checked: the reconstructed `c` equals `a·b` for
//! every triple.
//!
//! - `triples_per_second`: `triples` over the median run time.
//! - `bytes_per_triple`: the bytes all parties' meshes carried during a run
//!   (frame headers and payload, counted as received), divided by
//!   `triples`: the federation's traffic per triple.
//! - `protocol_bytes_per_triple`: what the construction must send,
//!   `n(n−1) · (64 · 16 + 288) = n(n−1) · 1312` bytes: per ordered pair of
//!   parties, 64 IKNP matrix columns-bits of κ = 128 bits and the Gilboa
//!   corrections.
//! - `bit_triples_per_second`, `edabits_per_second`, `dabits_per_second`:
//!   the binary kinds comparisons consume, one checked run each after the
//!   triples' runs (`8 · triples` bit triples, `triples / 16` edaBits,
//!   `4 · triples` daBits: counts in the report).
//! - `bound_triples_per_second`: the mesh-shaped loopback TLS throughput
//!   (see the parent module) divided by `bytes_per_triple`: no
//!   implementation moving these bytes through this TLS stack on these
//!   cores can go faster.

use super::{BenchError, measure_tls, median};
use crate::local::LocalFederation;
use crate::preprocessing::TripleShares;
use crate::preprocessing::ot::OtGenerator;
use crate::preprocessing::ot::gilboa::CORRECTION_BYTES_PER_PRODUCT;
use crate::preprocessing::ot::iknp::KAPPA;
use crate::transport::{JobId, Mesh};
use std::time::Instant;

/// What to measure.
#[derive(Clone, Debug)]
pub struct OtBenchOptions {
    /// Number of parties (at least 2).
    pub parties: usize,
    /// Triples generated per run.
    pub triples: usize,
    /// Runs; the time is the median.
    pub repeats: usize,
    /// Application bytes per stream for the TLS bound (0 skips it).
    pub tls_bytes_per_stream: usize,
}

/// The result of [`run`]. Times are seconds, rates per second.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OtBenchReport {
    /// The processor this ran on.
    pub cpu: super::CpuInfo,
    pub preprocessing: &'static str,
    pub parties: usize,
    pub triples: usize,
    pub repeats: usize,
    pub cipher_suite: String,
    /// Base OTs with every peer (one round trip, 128 OTs per direction).
    pub base_ot_seconds: f64,
    pub seconds: f64,
    pub triples_per_second: f64,
    pub bytes_per_triple: f64,
    pub protocol_bytes_per_triple: f64,
    pub tls_loopback_bytes_per_second: f64,
    pub bound_triples_per_second: f64,
    pub fraction_of_bound: f64,
    pub samples: Vec<f64>,
    /// The binary kinds (comparisons' material), one checked run each after
    /// the triples: `8 · triples` bit triples (rounded up to words of 64),
    /// `triples / 16` edaBits and `4 · triples` daBits.
    pub bit_triples: usize,
    pub bit_triples_per_second: f64,
    pub edabits: usize,
    pub edabits_per_second: f64,
    pub dabits: usize,
    pub dabits_per_second: f64,
}

/// What the construction sends per triple among `parties` parties.
pub fn protocol_bytes_per_triple(parties: usize) -> f64 {
    let per_pair = (64 * KAPPA / 8 + CORRECTION_BYTES_PER_PRODUCT) as f64;
    (parties * (parties - 1)) as f64 * per_pair
}

type Party = (OtGenerator, Mesh);

/// Generate `triples` at every party at once; the time until the last
/// party is done, and every party's shares.
async fn one_run(parties: Vec<Party>, triples: usize) -> Result<(f64, Vec<Party>, Vec<TripleShares>), BenchError> {
    at_once(parties, move |mut generator, mesh| async move {
        let shares = generator.triples(&mesh, triples).await;
        (generator, mesh, shares)
    })
    .await
}

/// Run `work` at every party at once; the time until the last party is
/// done, the parties back, and their results.
async fn at_once<T, Fut>(
    parties: Vec<Party>,
    work: impl Fn(OtGenerator, Mesh) -> Fut,
) -> Result<(f64, Vec<Party>, Vec<T>), BenchError>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = (OtGenerator, Mesh, Result<T, crate::preprocessing::ot::OtError>)>
        + Send
        + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = parties.into_iter().map(|(generator, mesh)| tokio::spawn(work(generator, mesh))).collect();
    let mut back = Vec::new();
    let mut results = Vec::new();
    for (party, task) in tasks.into_iter().enumerate() {
        let (generator, mesh, result) = task.await.map_err(|e| BenchError::Task(e.to_string()))?;
        results.push(result.map_err(|e| BenchError::Task(format!("party {party}: {e}")))?);
        back.push((generator, mesh));
    }
    Ok((started.elapsed().as_secs_f64(), back, results))
}

fn check(shares: &[TripleShares]) -> Result<(), BenchError> {
    let n = shares[0].a.len();
    for i in 0..n {
        let (mut a, mut b, mut c) = (0u64, 0u64, 0u64);
        for s in shares {
            a = a.wrapping_add(s.a.expose()[i]);
            b = b.wrapping_add(s.b.expose()[i]);
            c = c.wrapping_add(s.c.expose()[i]);
        }
        if c != a.wrapping_mul(b) {
            return Err(BenchError::Task(format!("triple {i} does not satisfy c = a·b")));
        }
    }
    Ok(())
}

/// Run the benchmark (see the module documentation).
pub async fn run(options: &OtBenchOptions) -> Result<OtBenchReport, BenchError> {
    let OtBenchOptions { parties, triples, repeats, tls_bytes_per_stream } = *options;
    if parties < 2 || triples == 0 || repeats == 0 {
        return Err(BenchError::Options("at least 2 parties, 1 triple and 1 run are needed".into()));
    }
    let federation = LocalFederation::with_parties(parties).await?;
    let meshes = federation.meshes(JobId::random()).await?;
    let suite = meshes[0].cipher_suite(1).unwrap_or("unknown").to_string();
    let started = Instant::now();
    let setups: Vec<_> = meshes
        .into_iter()
        .map(|mesh| {
            tokio::spawn(async move {
                let generator = OtGenerator::setup(&mesh).await;
                (generator, mesh)
            })
        })
        .collect();
    let mut state = Vec::new();
    for task in setups {
        let (generator, mesh) = task.await.map_err(|e| BenchError::Task(e.to_string()))?;
        state.push((generator.map_err(|e| BenchError::Task(e.to_string()))?, mesh));
    }
    let base_ot_seconds = started.elapsed().as_secs_f64();
    let (_, mut state, warm) = one_run(state, triples).await?;
    check(&warm)?;
    let mut samples = Vec::new();
    let mut bytes = 0u64;
    for _ in 0..repeats {
        // Counted on receipt: a party is done only once it has received
        // every message of the run, while a sender's count may trail its
        // last write.
        let before: u64 = state.iter().map(|(_, m)| m.bytes_received()).sum();
        let (seconds, back, shares) = one_run(state, triples).await?;
        state = back;
        bytes = state.iter().map(|(_, m)| m.bytes_received()).sum::<u64>() - before;
        check(&shares)?;
        samples.push(seconds);
    }
    let words = (8 * triples).div_ceil(64);
    let (edabits, dabits) = ((triples / 16).max(1), 4 * triples);
    let (bit_seconds, state) = binary_run(state, Binary::BitTriples(words)).await?;
    let (eda_seconds, state) = binary_run(state, Binary::EdaBits(edabits)).await?;
    let (da_seconds, state) = binary_run(state, Binary::DaBits(dabits)).await?;
    for (_, mesh) in state {
        mesh.close().await;
    }
    let mut aggregate = 0.0;
    if tls_bytes_per_stream > 0 {
        let aes128 = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
        measure_tls(aes128, 1, false, tls_bytes_per_stream.min(32 << 20)).await?;
        aggregate =
            measure_tls(aes128, parties * (parties - 1) / 2, true, tls_bytes_per_stream).await?.bytes_per_second;
    }
    let seconds = median(&samples);
    let rate = triples as f64 / seconds;
    let bytes_per_triple = bytes as f64 / triples as f64;
    let bound = if aggregate > 0.0 { aggregate / bytes_per_triple } else { 0.0 };
    Ok(OtBenchReport {
        cpu: super::CpuInfo::current(),
        preprocessing: "ot",
        parties,
        triples,
        repeats,
        cipher_suite: suite,
        base_ot_seconds,
        seconds,
        triples_per_second: rate,
        bytes_per_triple,
        protocol_bytes_per_triple: protocol_bytes_per_triple(parties),
        tls_loopback_bytes_per_second: aggregate,
        bound_triples_per_second: bound,
        fraction_of_bound: if bound > 0.0 { rate / bound } else { 0.0 },
        samples,
        bit_triples: 64 * words,
        bit_triples_per_second: (64 * words) as f64 / bit_seconds,
        edabits,
        edabits_per_second: edabits as f64 / eda_seconds,
        dabits,
        dabits_per_second: dabits as f64 / da_seconds,
    })
}

/// A binary kind and how many to generate.
#[derive(Clone, Copy)]
enum Binary {
    /// Words of 64 bit triples.
    BitTriples(usize),
    EdaBits(usize),
    DaBits(usize),
}

/// What one party generated of a binary kind, reduced to what the check
/// needs: XOR-combined words and summed ring elements.
struct BinaryShares {
    /// Bit triples: `a`, `b`, `c` words; edaBits: the bits' words; daBits:
    /// the bit's words.
    words: Vec<Vec<u64>>,
    /// edaBits: `r`; daBits: the ring share.
    ring: Vec<u64>,
}

/// Generate `what` at every party at once and check it against its
/// definition: the time until the last party is done.
async fn binary_run(parties: Vec<Party>, what: Binary) -> Result<(f64, Vec<Party>), BenchError> {
    let (seconds, back, shares) = at_once(parties, move |mut generator, mesh| async move {
        let shares = match what {
            Binary::BitTriples(words) => generator.bit_triples(&mesh, words).await.map(|t| BinaryShares {
                words: vec![t.a.words().to_vec(), t.b.words().to_vec(), t.c.words().to_vec()],
                ring: Vec::new(),
            }),
            Binary::EdaBits(n) => generator
                .edabits(&mesh, n)
                .await
                .map(|e| BinaryShares { words: vec![e.bits.compose()], ring: e.r.expose().to_vec() }),
            Binary::DaBits(n) => generator
                .dabits(&mesh, n)
                .await
                .map(|d| BinaryShares { words: vec![d.bits.words().to_vec()], ring: d.arith.expose().to_vec() }),
        };
        (generator, mesh, shares)
    })
    .await?;
    check_binary(&shares, what)?;
    Ok((seconds, back))
}

/// The reconstructed material satisfies its definition
/// (`preprocessing::BitTripleShares`, `EdaBitShares`, `DaBitShares`).
fn check_binary(shares: &[BinaryShares], what: Binary) -> Result<(), BenchError> {
    let xor = |k: usize| -> Vec<u64> {
        let mut out = shares[0].words[k].clone();
        for s in &shares[1..] {
            out.iter_mut().zip(&s.words[k]).for_each(|(o, w)| *o ^= w);
        }
        out
    };
    let sum = || -> Vec<u64> {
        let mut out = shares[0].ring.clone();
        for s in &shares[1..] {
            crate::ring::add_assign(&mut out, &s.ring);
        }
        out
    };
    let ok = match what {
        Binary::BitTriples(_) => {
            let (a, b, c) = (xor(0), xor(1), xor(2));
            a.iter().zip(&b).zip(&c).all(|((a, b), c)| a & b == *c)
        }
        // The composed bits of every edaBit are its ring value.
        Binary::EdaBits(_) => xor(0) == sum(),
        Binary::DaBits(n) => {
            let bits = xor(0);
            sum().iter().enumerate().all(|(i, v)| *v == bits[i / 64] >> (i % 64) & 1) && sum().len() == n
        }
    };
    if ok { Ok(()) } else { Err(BenchError::Task("generated binary material does not satisfy its definition".into())) }
}
