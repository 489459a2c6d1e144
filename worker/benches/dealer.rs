//! Throughput of the trusted dealer (a TRUSTED THIRD PARTY): how fast
//! `TrustedDealer::deal` generates Beaver triples and division pairs, on one
//! core, including the seeds and the last party's corrections (but not the
//! parties' expansion).
//!
//! `cargo bench --bench dealer`

use cohort_worker::preprocessing::Demand;
use cohort_worker::preprocessing::dealer::TrustedDealer;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

const ITEMS: usize = 1_000_000;

fn deal(c: &mut Criterion) {
    let mut group = c.benchmark_group("dealer");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(ITEMS as u64));
    for parties in [3, 5] {
        let mut dealer = TrustedDealer::new(parties).expect("dealer");
        let triples = Demand { triples: ITEMS, div_pairs: vec![], ..Default::default() };
        group.bench_with_input(BenchmarkId::new("triples", parties), &triples, |b, d| {
            b.iter(|| black_box(dealer.deal(d).expect("deal")))
        });
        // Truncation pairs (divisor 2^16) and pairs for a general divisor.
        for divisor in [1u64 << 16, 1000] {
            let pairs = Demand { triples: 0, div_pairs: vec![(divisor, ITEMS)], ..Default::default() };
            group.bench_with_input(BenchmarkId::new(format!("div_pairs_d{divisor}"), parties), &pairs, |b, d| {
                b.iter(|| black_box(dealer.deal(d).expect("deal")))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, deal);
criterion_main!(benches);
