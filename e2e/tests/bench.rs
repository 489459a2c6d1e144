//! `cohort bench --format json` prints one JSON object with the keys the
//! issue names, consistent with the protocol (a small layer: this checks
//! the report, not the speed; figures live in docs/benchmarks.md).

use std::process::Command;

use cohort_e2e::bin;

#[test]
fn bench_json_report_has_the_required_keys() {
    for parties in [2u64, 3] {
        let out = Command::new(bin("cohort"))
            .args(["bench", "--parties", &parties.to_string(), "--mults", "20000", "--repeats", "1"])
            .args(["--tls-mib", "4", "--format", "json"])
            .output()
            .expect("cohort bench runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("UTF-8");
        assert_eq!(stdout.trim_end().lines().count(), 1, "one JSON document: {stdout}");
        let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
        assert_eq!(report["parties"], parties);
        assert_eq!(report["rounds"], 4, "setup, input, one layer, output");
        for key in [
            "online_mults_per_second",
            "end_to_end_mults_per_second",
            "dealer_triples_per_second",
            "tls_loopback_bytes_per_second",
        ] {
            assert!(report[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {}", report[key]);
        }
        // 16 bytes (shares of d and e) to every peer, plus framing and the
        // small setup, input and output messages.
        let per_mult = report["bytes_per_mult_per_party"].as_f64().expect("bytes");
        let protocol = 16.0 * (parties as f64 - 1.0);
        assert!(per_mult >= protocol && per_mult < protocol * 1.05, "{per_mult} vs {protocol}");
    }
}
