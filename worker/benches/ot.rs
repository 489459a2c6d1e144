//! The computation of OT-based preprocessing on one core, without the
//! network: per 65,536 Gilboa products (one direction of one pair of
//! parties, 4 Mi OTs), the IKNP receiver's extension with its row hashes,
//! the sender's extension with the products and corrections, and the
//! receiver's shares from the corrections. A 2-party triple needs two
//! products per party, one in each role. The end-to-end rate over mTLS is
//! `cohort bench --preprocessing ot` (docs/benchmarks.md).
//!
//! The same for bit triples (issue 16): per 4 Mi random OTs (65,536 words
//! of bit triples, one direction of one pair), the receiver's extension with
//! its packed bit hashes and the sender's extension with both. A two-party
//! bit triple needs one random OT in each role per party.
//!
//! `cargo bench --bench ot`

use cohort_worker::preprocessing::ot::gilboa::{CorrectionWriter, receive_products, send_products};
use cohort_worker::preprocessing::ot::hash::CcrHash;
use cohort_worker::preprocessing::ot::iknp::{ExtReceiver, ExtSender, KAPPA, delta_choices};
use cohort_worker::preprocessing::ot::{TRIPLES_PER_CHUNK, base};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

const PRODUCTS: usize = 16 * TRIPLES_PER_CHUNK;

fn pair() -> (ExtSender, ExtReceiver) {
    let delta = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
    let (sender, a) = base::BaseOtSender::start().expect("entropy");
    let (chosen, reply) = base::receive(&delta_choices(delta), &a).expect("receive");
    let keys = sender.finish(&reply, KAPPA).expect("finish");
    (ExtSender::new(delta, &chosen), ExtReceiver::new(&keys))
}

fn ot(c: &mut Criterion) {
    let mut group = c.benchmark_group("ot");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(PRODUCTS as u64));
    let (mut sender, mut receiver) = pair();
    let hash = CcrHash::new();
    let b: Vec<u64> = (0..PRODUCTS as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let a: Vec<u64> = b.iter().map(|x| x.rotate_left(17)).collect();
    let mut u = Vec::new();
    let mut h = vec![0u64; 64 * PRODUCTS];
    group.bench_function("receiver_extend_and_hash", |bench| {
        bench.iter(|| {
            u.clear();
            receiver.extend(&b, &mut u, |j0, rows| hash.hash_low64(rows, 0, &mut h[j0..j0 + rows.len()]));
            black_box(&u);
        })
    });
    let mut share = vec![0u64; PRODUCTS];
    let mut corrections = Vec::new();
    group.bench_function("sender_extend_and_products", |bench| {
        bench.iter(|| {
            let mut writer = CorrectionWriter::for_products(PRODUCTS);
            let delta = sender.delta();
            sender.extend(&u, PRODUCTS, |j0, rows| {
                let (t0, n) = (j0 / 64, rows.len() / 64);
                send_products(&hash, delta, rows, &a[t0..t0 + n], &mut share[t0..t0 + n], &mut writer);
            });
            corrections = writer.finish();
        })
    });
    group.bench_function("receive_products", |bench| {
        bench.iter(|| receive_products(&h, &b, &corrections, &mut share).expect("well-formed"))
    });
    group.finish();

    // Bit triples: the same number of OTs, as 65,536 words of choices.
    let mut group = c.benchmark_group("ot_bit_triples");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(64 * PRODUCTS as u64));
    let mut v = vec![0u64; PRODUCTS];
    group.bench_function("receiver_extend_and_hash_bits", |bench| {
        bench.iter(|| {
            u.clear();
            receiver.extend(&b, &mut u, |j0, rows| hash.hash_bits(rows, &mut v[j0 / 64..(j0 + rows.len()) / 64]));
            black_box(&u);
        })
    });
    let (mut m0, mut m1) = (vec![0u64; PRODUCTS], vec![0u64; PRODUCTS]);
    group.bench_function("sender_extend_and_hash_pair_bits", |bench| {
        bench.iter(|| {
            let delta = sender.delta();
            sender.extend(&u, PRODUCTS, |j0, rows| {
                let (k, n) = (j0 / 64, rows.len() / 64);
                hash.hash_pair_bits(rows, delta, &mut m0[k..k + n], &mut m1[k..k + n]);
            });
            black_box(&m1);
        })
    });
    group.finish();
}

criterion_group!(benches, ot);
criterion_main!(benches);
