//! `bench::run` produces a consistent report (no timing assertions: the
//! figures themselves are measured by `cohort bench`, never by tests).

use cohort_worker::bench::{BenchOptions, run};
use cohort_worker::transport::frame::HEADER_LEN;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_benchmark_report_is_consistent() {
    for parties in [2, 3] {
        let mults = 10_000;
        let options = BenchOptions { parties, mults, repeats: 2, tls_bytes_per_stream: 1 << 20, ..Default::default() };
        let report = run(&options).await.expect("benchmark runs (and checks its result)");
        assert_eq!((report.parties, report.mults, report.repeats), (parties, mults, 2));
        // setup, input sharing, one layer, output.
        assert_eq!(report.rounds, 4);
        assert_eq!(report.cipher_suite, "TLS13_AES_128_GCM_SHA256");
        // The protocol's bytes per multiplication, plus framing and the
        // small setup, input and output messages (a few frames per peer).
        let protocol = 16.0 * (parties - 1) as f64;
        assert_eq!(report.protocol_bytes_per_mult_per_party, protocol);
        let overhead = report.bytes_per_mult_per_party - protocol;
        let max_overhead = (parties - 1) as f64 * (8.0 * HEADER_LEN as f64 + 200.0) / mults as f64;
        assert!(overhead > 0.0 && overhead < max_overhead, "overhead {overhead} per mult");
        assert_eq!(report.online_samples.len(), 2);
        assert_eq!(report.in_process_dealer_samples.len(), 2);
        assert!(report.online_samples.iter().chain(&report.in_process_dealer_samples).all(|s| *s > 0.0));
        assert!(report.online_mults_per_second > 0.0 && report.in_process_dealer_mults_per_second > 0.0);
        assert!(report.dealer_triples_per_second > 0.0 && report.dealer_generation_triples_per_second > 0.0);
        // Three suites, one stream and the mesh's shape each.
        assert_eq!(report.tls.len(), 6);
        let links = parties * (parties - 1) / 2;
        assert!(report.tls.iter().any(|t| t.connections == links && t.streams == 2 * links));
        assert!(report.tls.iter().all(|t| t.bytes_per_second > 0.0));
        let bound = report.tls_loopback_bytes_per_second / (report.bytes_per_mult_per_party * parties as f64);
        assert!((report.online_bound_mults_per_second - bound).abs() <= 1e-9 * bound);
        // The processor is recorded (this suite runs on Linux).
        assert!(!report.cpu.model.is_empty() && report.cpu.logical_cpus > 0, "{:?}", report.cpu);
        let json = serde_json::to_value(&report).expect("serializes");
        for key in [
            "online_mults_per_second",
            "bytes_per_mult_per_party",
            "rounds",
            "parties",
            "in_process_dealer_mults_per_second",
            "dealer_triples_per_second",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
    }
}

#[tokio::test]
async fn invalid_options_are_refused() {
    for options in [
        BenchOptions { parties: 1, ..BenchOptions::default() },
        BenchOptions { mults: 0, ..BenchOptions::default() },
        BenchOptions { repeats: 0, ..BenchOptions::default() },
        // replicated-3 runs with exactly three parties.
        BenchOptions {
            parties: 2,
            protocol: cohort_worker::protocol::ProtocolName::Replicated3,
            ..BenchOptions::default()
        },
    ] {
        assert!(run(&options).await.is_err());
    }
}
