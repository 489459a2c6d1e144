//! `cohort run` on every example under `examples/`, as a user runs it: the
//! real `cohort` binary starting real worker and dealer processes. Each
//! output must match the program evaluated in the clear on the same files;
//! outputs reach only their recipients; `--format json` prints exactly one
//! JSON document on stdout.

use std::path::Path;
use std::process::Command;

use cohort_e2e::{bin, expected_outputs, json_values, repo_root};
use cohort_worker::program::interactive_depth;

/// Run `cohort run --format json --preprocessing MODE FILE`; the parsed
/// stdout.
fn run_json(file: &Path, mode: &str) -> serde_json::Value {
    let out = Command::new(bin("cohort"))
        .arg("run")
        .args(["--format", "json", "--preprocessing", mode])
        .arg(file)
        .output()
        .expect("cohort runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cohort run {} failed:\n{stderr}", file.display());
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 stdout");
    assert_eq!(stdout.trim_end().lines().count(), 1, "stdout must be one JSON document:\n{stdout}");
    serde_json::from_str(&stdout).expect("stdout is JSON")
}

/// Run the example with the material from the parties' OT generation and
/// from a trusted dealer: both must match the plaintext evaluation.
fn check_example(dir: &str, recipients: &[(&str, &[&str])]) {
    for mode in ["ot", "dealer"] {
        check_example_with(dir, recipients, mode);
    }
}

fn check_example_with(dir: &str, recipients: &[(&str, &[&str])], mode: &str) {
    let dir_name = dir;
    let dir = &format!("{dir_name} ({mode})");
    let file = repo_root().join("examples").join(dir_name).join("run.yaml");
    let report = run_json(&file, mode);
    let expected = expected_outputs(&file);
    let outputs = report["outputs"].as_object().expect("outputs object");
    assert_eq!(outputs.len(), expected.len(), "{dir}: every output is reported");
    for (name, want) in &expected {
        let got = json_values(&outputs[name]);
        assert_eq!(got.len(), want.len(), "{dir}: output {name} length");
        for (g, w) in got.iter().zip(want) {
            let tolerance = 1e-2 + 1e-4 * w.abs();
            assert!((g - w).abs() <= tolerance, "{dir}: output {name}: got {g}, expected {w}");
        }
    }
    for (output, parties) in recipients {
        let got: Vec<&str> = report["stats"]["recipients"][output]
            .as_array()
            .expect("recipients")
            .iter()
            .map(|p| p.as_str().expect("name"))
            .collect();
        assert_eq!(&got, parties, "{dir}: recipients of {output}");
    }
    let (run, _) = cohort_cli::runfile::RunFile::load(&file).expect("loads");
    let rounds = report["stats"]["rounds"].as_u64().expect("rounds");
    assert_eq!(rounds, 3 + interactive_depth(&run.circuit) as u64, "{dir}: rounds = setup + inputs + layers + output");
    let per_party = report["stats"]["bytes_sent_per_party"].as_object().expect("bytes per party");
    assert_eq!(per_party.len(), run.parties.len());
    assert!(per_party.values().all(|b| b.as_u64().is_some_and(|b| b > 0)));
    assert!(report["stats"]["wall_seconds"].as_f64().is_some_and(|s| s > 0.0));
}

#[test]
fn salary_statistics_three_parties() {
    check_example("salary-stats", &[("count", &["alice", "bob", "carol"]), ("mean", &["alice", "bob", "carol"])]);
}

#[test]
fn private_dot_product_two_parties_only_the_publisher_learns_it() {
    check_example("private-dot", &[("score", &["publisher"])]);
}

#[test]
fn secure_aggregation_five_parties_of_100k_elements() {
    check_example("aggregation", &[("total", &["hospital-1", "hospital-2", "hospital-3", "hospital-4", "hospital-5"])]);
}

#[test]
fn text_format_reports_outputs_and_stats() {
    let file = repo_root().join("examples/private-dot/run.yaml");
    let out = Command::new(bin("cohort")).arg("run").arg(&file).output().expect("cohort runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["score", "(to publisher)", "rounds", "bytes sent", "wall time"] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
