//! The online phase: one layer of 10^6 secret-by-secret multiplications
//! among 3 (and 5) local parties over loopback TLS 1.3, with material
//! prefetched from the trusted dealer (online only), and the same job with
//! the dealer streaming material during the run (end to end).
//!
//! ```sh
//! cargo bench -p cohort-worker --bench online
//! ```

use cohort_worker::executor::{ExecuteOptions, InputLengths, Instance, OwnInputs, execute};
use cohort_worker::local::{DealerHub, LocalFederation};
use cohort_worker::preprocessing::Prefetched;
use cohort_worker::program::compile;
use cohort_worker::sharing::Secret;
use cohort_worker::transport::JobId;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MULTS: usize = 1_000_000;

/// One layer: an elementwise product of two secret int vectors, summed so
/// that the output is a single value.
const PROGRAM: &str = "input x: int[] from party-0\ninput y: int[] from party-1\noutput z = sum(x * y)";

/// Time one job among `n` parties; `prefetch` draws all material before
/// the clock starts.
async fn one_job(federation: &LocalFederation, prefetch: bool) -> Duration {
    let n = federation.names.len();
    let circuit = Arc::new(compile(PROGRAM, &federation.names).expect("compiles"));
    let mut lengths = InputLengths(vec![vec![None; n]; 2]);
    lengths.0[0][0] = Some(MULTS);
    lengths.0[1][1] = Some(MULTS);
    let plan = Instance::new(&circuit, &lengths).expect("plan").plan;
    let hub = DealerHub::new(n);
    // The dealer deals to all parties in lockstep, so drain their streams
    // concurrently.
    let mut drains = Vec::new();
    for me in 0..n {
        let (hub, plan) = (hub.clone(), plan.clone());
        drains.push(tokio::spawn(async move {
            if !prefetch {
                return None;
            }
            let mut stream = hub.take(me, plan.clone()).expect("dealer stream");
            Some(Prefetched::drain(&mut stream, &plan).await.expect("material"))
        }));
    }
    let mut prefetched = Vec::new();
    for drain in drains {
        prefetched.push(drain.await.expect("drain task"));
    }
    let meshes = federation.meshes(JobId::random()).await.expect("meshes");
    let consent = federation.consent(PROGRAM);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (me, (mesh, material)) in meshes.into_iter().zip(prefetched).enumerate() {
        let (circuit, hub) = (circuit.clone(), hub.clone());
        tasks.push(tokio::spawn(async move {
            let mut own = OwnInputs::new();
            if me < 2 {
                let values: Vec<u64> = (0..MULTS as u64).map(|i| i.wrapping_mul(2654435761) >> 40).collect();
                own.insert_encoded(&circuit, if me == 0 { "x" } else { "y" }, Secret::new(values)).expect("input");
            }
            let options = ExecuteOptions::new(consent);
            let result = match material {
                Some(m) => execute(&mesh, &circuit, &own, &options, |_| async move { Ok(m) }).await,
                // The dealer streams material while the job runs.
                None => execute(&mesh, &circuit, &own, &options, |plan| async move { hub.take(me, plan) }).await,
            };
            result.expect("job succeeds");
            mesh.close().await;
        }));
    }
    for t in tasks {
        t.await.expect("party");
    }
    started.elapsed()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("one_layer_1e6_mults");
    group.sample_size(10).measurement_time(Duration::from_secs(20)).throughput(Throughput::Elements(MULTS as u64));
    for parties in [3, 5] {
        let federation = runtime.block_on(LocalFederation::with_parties(parties)).expect("federation");
        group.bench_function(format!("online/{parties}_parties"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| runtime.block_on(one_job(&federation, true))).sum())
        });
        group.bench_function(format!("end_to_end_with_dealer/{parties}_parties"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| runtime.block_on(one_job(&federation, false))).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
