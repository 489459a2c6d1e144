//! `cohort bench --format json` prints one JSON object with the keys the
//! issue names, consistent with the protocol (a small layer: this checks
//! the report, not the speed; figures live in docs/benchmarks.md).

use std::process::Command;

use cohort_e2e::bin;

/// `cohort bench ARGS --repeats 1 --tls-mib 4 --format json`, parsed.
fn bench_json(args: &[&str]) -> serde_json::Value {
    run_json(&[args, &["--tls-mib", "4"]].concat())
}

/// `cohort bench ARGS --repeats 1 --format json`, parsed: it must succeed
/// and print exactly one JSON document.
fn run_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin("cohort"))
        .arg("bench")
        .args(args)
        .args(["--repeats", "1", "--format", "json"])
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
            "in_process_dealer_mults_per_second",
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
        for key in [
            "triples_per_second",
            "bound_triples_per_second",
            "tls_loopback_bytes_per_second",
            "bit_triples_per_second",
            "edabits_per_second",
            "dabits_per_second",
        ] {
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

#[test]
fn the_deployed_figure_and_the_cpu_are_reported() {
    let report = bench_json(&["--preprocessing", "dealer", "--parties", "2", "--mults", "20000"]);
    for key in [
        "deployed_mults_per_second",
        "deployed_seconds",
        "deployed_party_seconds",
        "in_process_dealer_mults_per_second",
    ] {
        assert!(report[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {}", report[key]);
    }
    assert_eq!(report["deployed_samples"].as_array().map(Vec::len), Some(1));
    assert!(report.get("end_to_end_mults_per_second").is_none(), "the in-process figure is named for what it is");
    let cpu = std::fs::read_to_string("/proc/cpuinfo").expect("Linux");
    let model = cpu.lines().find_map(|l| l.strip_prefix("model name")).map(|l| l.trim_start_matches([' ', '\t', ':']));
    assert_eq!(report["cpu"]["model"].as_str(), model, "the CPU the bench ran on");
    let ot = bench_json(&["--parties", "2", "--triples", "5000"]);
    assert_eq!(ot["cpu"]["model"].as_str(), model);
}

#[test]
fn flags_of_the_other_mode_are_refused() {
    for (args, flag) in [
        (&["--mults", "1000"][..], "--mults"),
        (&["--preprocessing", "ot", "--mults", "1000"][..], "--mults"),
        (&["--preprocessing", "dealer", "--triples", "1000"][..], "--triples"),
        (&["--preprocessing", "ot", "--no-deployed"][..], "--no-deployed"),
    ] {
        let out = Command::new(bin("cohort")).arg("bench").args(args).output().expect("cohort bench runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} is refused: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing measured");
    }
}

/// `cohort bench --op compare ARGS --repeats 1 --format json`, parsed.
fn compare_json(args: &[&str]) -> serde_json::Value {
    run_json(&[&["--op", "compare"], args].concat())
}

#[test]
fn compare_bench_reports_comparisons_per_second_in_both_modes() {
    for (mode, parties) in [("dealer", 2u64), ("dealer", 3), ("ot", 2)] {
        let report =
            compare_json(&["--preprocessing", mode, "--parties", &parties.to_string(), "--comparisons", "3000"]);
        assert_eq!(report["op"], "compare");
        assert_eq!(report["preprocessing"], mode);
        assert_eq!(report["comparisons"], 3000);
        assert_eq!(report["rounds"], 11, "setup, input, a masked opening, 6 AND levels, an injection, output");
        // 118 AND gates; each layer's triples are dealt in words of 64.
        let bit_triples = report["bit_triples_per_comparison"].as_f64().expect("bit triples");
        assert!((118.0..118.0 + 6.0 * 64.0 / 3000.0).contains(&bit_triples), "{mode}: {bit_triples}");
        assert_eq!(report["edabits_per_comparison"], 1.0);
        assert_eq!(report["dabits_per_comparison"], 1.0);
        for key in ["comparisons_per_second", "deployed_comparisons_per_second", "deployed_seconds"] {
            assert!(report[key].as_f64().is_some_and(|x| x > 0.0), "{mode}: {key}: {}", report[key]);
        }
        let online = report["online_comparisons_per_second"].as_f64().expect("online");
        assert_eq!(online > 0.0, mode == "dealer", "{mode}: an online figure only with prefetched material");
        let bytes = report["bytes_per_comparison_per_party"].as_f64().expect("bytes");
        let construction = report["online_protocol_bytes_per_comparison_per_party"].as_f64().expect("protocol");
        assert!(bytes >= construction, "{mode}: {bytes} vs {construction}");
        if mode == "dealer" {
            assert!(bytes < construction * 1.1, "{mode}: {bytes} vs {construction}");
        }
    }
}

#[test]
fn flags_that_do_not_apply_to_the_comparison_benchmark_are_refused() {
    for (args, flag) in [
        (&["--op", "compare", "--mults", "1000"][..], "--mults"),
        (&["--op", "compare", "--triples", "1000"][..], "--triples"),
        (&["--op", "compare", "--tls-mib", "4"][..], "--tls-mib"),
        (&["--comparisons", "1000"][..], "--comparisons"),
    ] {
        let out = Command::new(bin("cohort")).arg("bench").args(args).output().expect("cohort bench runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} is refused: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing measured");
    }
}

/// Issue 17: `--protocol replicated-3` measures the layer of
/// multiplications and the comparisons without material, in process and
/// deployed (worker processes, no dealer), and says which protocol ran.
#[test]
fn replicated_3_bench_reports_the_protocol_and_no_material() {
    let report = bench_json(&["--protocol", "replicated-3", "--mults", "20000"]);
    assert_eq!(report["protocol"], "replicated-3");
    assert_eq!(report["parties"], 3);
    assert_eq!(report["rounds"], 4, "setup, input, one layer, output");
    for key in ["online_mults_per_second", "deployed_mults_per_second", "tls_loopback_bytes_per_second"] {
        assert!(report[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {}", report[key]);
    }
    for key in ["in_process_dealer_mults_per_second", "dealer_triples_per_second"] {
        assert_eq!(report[key].as_f64(), Some(0.0), "{key}: no dealer runs");
    }
    // One element to one neighbour per multiplication, plus the inputs'
    // second components (two vectors, one element each, from their owners)
    // and framing.
    assert_eq!(report["protocol_bytes_per_mult_per_party"].as_f64(), Some(8.0));
    let per_mult = report["bytes_per_mult_per_party"].as_f64().expect("bytes");
    let expected = 8.0 + 16.0 / 3.0;
    assert!(per_mult >= expected && per_mult < expected * 1.05, "{per_mult} vs {expected}");

    let report = compare_json(&["--protocol", "replicated-3", "--comparisons", "3000"]);
    assert_eq!(report["protocol"], "replicated-3");
    assert!(report.get("preprocessing").is_none(), "no material, no mode: {report}");
    assert_eq!(report["rounds"], 13, "setup, input, the daBit round, 8 comparison rounds, an injection, output");
    for key in ["bit_triples_per_comparison", "edabits_per_comparison", "dabits_per_comparison"] {
        assert_eq!(report[key].as_f64(), Some(0.0), "{key}");
    }
    for key in ["comparisons_per_second", "online_comparisons_per_second", "deployed_comparisons_per_second"] {
        assert!(report[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {}", report[key]);
    }
    let bytes = report["bytes_per_comparison_per_party"].as_f64().expect("bytes");
    let construction = report["online_protocol_bytes_per_comparison_per_party"].as_f64().expect("protocol");
    assert!(bytes >= construction && bytes < (construction + 16.0 / 3.0) * 1.1, "{bytes} vs {construction}");

    // The additive reports say so too.
    let additive =
        compare_json(&["--preprocessing", "dealer", "--parties", "2", "--comparisons", "500", "--no-deployed"]);
    assert_eq!(additive["protocol"], "additive-semi-honest");
}

/// Under replicated-3 a preprocessing flag is refused, never ignored, and
/// so is a party count other than three.
#[test]
fn replicated_3_bench_refuses_preprocessing_and_other_party_counts() {
    for (args, needle) in [
        (&["--preprocessing", "dealer"][..], "--preprocessing: replicated-3 takes no preprocessing material"),
        (&["--preprocessing", "ot"][..], "--preprocessing: replicated-3 takes no preprocessing material"),
        (&["--op", "compare", "--preprocessing", "ot"][..], "--preprocessing: replicated-3"),
        (&["--triples", "1000"][..], "--triples"),
        (&["--parties", "2"][..], "replicated-3 needs exactly 3 parties, got 2"),
        (&["--op", "compare", "--parties", "5"][..], "replicated-3 needs exactly 3 parties, got 5"),
    ] {
        let out = Command::new(bin("cohort"))
            .args(["bench", "--protocol", "replicated-3"])
            .args(args)
            .output()
            .expect("cohort bench runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} is refused: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing measured");
    }
}

/// `cohort bench --op OP --n N ...` for every operation of issue 18: the
/// run checks each result against `program::plain` itself (a wrong result
/// fails the command), and the report names the operation and its
/// material: a dealt shuffle's permutation steps under the dealer, the
/// networks' triples under OT, nothing under replicated-3.
#[test]
fn operation_benches_check_their_results_and_report_their_material() {
    let ops = ["sort", "median", "rank", "join-sum", "group-sum", "divide", "sigmoid", "exp", "log", "sqrt"];
    for op in ops {
        for how in [&["--preprocessing", "dealer"][..], &["--protocol", "replicated-3"]] {
            let report = run_json(&[&["--op", op, "--n", "150"], how].concat());
            assert_eq!(report["op"], op, "{how:?}");
            assert_eq!(report["n"], 150, "{op} {how:?}");
            assert!(report["seconds"].as_f64().is_some_and(|s| s > 0.0), "{op} {how:?}");
            let sorts = !matches!(op, "divide" | "sigmoid" | "exp" | "log" | "sqrt");
            let dealt = report["permutation_elements"].as_u64().expect("permutation_elements");
            assert_eq!(dealt > 0, sorts && how[0] == "--preprocessing", "{op} {how:?}: {dealt} permutation elements");
        }
    }
    // OT material: the networks' triples, no permutation step.
    let report = run_json(&["--op", "rank", "--n", "40", "--preprocessing", "ot", "--parties", "2"]);
    assert_eq!(report["permutation_elements"], 0);
    assert!(report["triples"].as_u64().is_some_and(|t| t > 0), "{report}");
}
