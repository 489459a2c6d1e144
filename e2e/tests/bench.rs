//! `cohort bench --format json` prints one JSON object with the keys the
//! issue names, consistent with the protocol (a small layer: this checks
//! the report, not the speed; figures live in docs/benchmarks.md).

use std::process::Command;

use cohort_e2e::bin;

/// `cohort bench ARGS --repeats 1 --tls-mib 4 --format json`, parsed: it
/// must succeed and print exactly one JSON document.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin("cohort"))
        .arg("bench")
        .args(args)
        .args(["--repeats", "1", "--tls-mib", "4", "--format", "json"])
        .output()
        .expect("cohort bench runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(stdout.trim_end().lines().count(), 1, "one JSON document: {stdout}");
    serde_json::from_str(&stdout).expect("JSON")
}

#[test]
fn bench_json_report_has_the_required_keys() {
    for parties in [2u64, 3] {
        let report = bench_json(&["--preprocessing", "dealer", "--parties", &parties.to_string(), "--mults", "20000"]);
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

#[test]
fn ot_bench_reports_triples_per_second_and_bytes_per_triple() {
    for parties in [2u64, 3] {
        let report = bench_json(&["--preprocessing", "ot", "--parties", &parties.to_string(), "--triples", "20000"]);
        assert_eq!(report["parties"], parties);
        assert_eq!(report["preprocessing"], "ot");
        for key in ["triples_per_second", "bound_triples_per_second", "tls_loopback_bytes_per_second"] {
            assert!(report[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {}", report[key]);
        }
        // n(n-1) directed products of 64 IKNP columns-bits (16 bytes each)
        // and 288 bytes of corrections, plus framing.
        let per_triple = report["bytes_per_triple"].as_f64().expect("bytes");
        let construction = (parties * (parties - 1)) as f64 * 1312.0;
        assert_eq!(report["protocol_bytes_per_triple"].as_f64(), Some(construction));
        assert!(per_triple >= construction && per_triple < construction * 1.01, "{per_triple} vs {construction}");
    }
}
