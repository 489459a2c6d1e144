//! Numbers through the real `cohort` binary and workers (issue 15, items
//! 2, 3 and 4): `int` outputs are exact JSON integers, `fixed` outputs the
//! shortest text of their grid point, inputs are parsed exactly, public
//! run-time arithmetic out of range fails at the operator, and dividing an
//! empty vector works with the dealer and with OT-generated material.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cohort_e2e::{Dir, bin};

/// A two-party run file: `program`, party a's data file `a.txt`, party
/// b's `b.txt` (one number per line), inputs named in `inputs_a`/`inputs_b`.
fn run_file(dir: &Dir, program: &str, a: &[(&str, &str)], b: &[(&str, &str)]) -> PathBuf {
    dir.write("p.cohort", program);
    let inputs = |party: &str, files: &[(&str, &str)]| {
        let entries: Vec<String> = files
            .iter()
            .map(|(input, text)| {
                let file = format!("{party}-{input}.txt");
                dir.write(&file, text);
                format!("{input}: {{file: {file}}}")
            })
            .collect();
        format!("{{{}}}", entries.join(", "))
    };
    dir.write(
        "run.yaml",
        &format!(
            "program: p.cohort\nparties:\n  - name: a\n    inputs: {}\n  - name: b\n    inputs: {}\n",
            inputs("a", a),
            inputs("b", b)
        ),
    )
}

fn cohort_run(file: &Path, preprocessing: &str) -> Output {
    Command::new(bin("cohort"))
        .args(["run", "--format", "json", "--preprocessing", preprocessing])
        .arg(file)
        .output()
        .expect("runs")
}

fn succeeds(file: &Path, preprocessing: &str) -> (String, serde_json::Value) {
    let out = cohort_run(file, preprocessing);
    assert!(out.status.success(), "{preprocessing}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let report = serde_json::from_str(&text).expect("JSON");
    (text, report)
}

#[test]
fn int_and_fixed_outputs_are_exact() {
    let dir = Dir::new("exact-outputs");
    let program = "input x: int[] from each\ninput y: fixed from a\ninput z: fixed from b\n\
                   let all = concat(x)\n\
                   output total = sum(all)\noutput count = len(all)\noutput y = y\noutput z = z\n";
    // 2^53 + 1 is not an f64; 70368744177663.999 is below 2^46 although
    // f64 parsing rounds it up to 2^46 (out of range at 16 bits).
    let file = run_file(
        &dir,
        program,
        &[("x", "9007199254740992\n"), ("y", "243.4\n")],
        &[("x", "1\n"), ("z", "70368744177663.999\n")],
    );
    let (text, report) = succeeds(&file, "dealer");
    let outputs = &report["outputs"];
    assert!(text.contains("\"total\":9007199254740993") || text.contains("\"total\": 9007199254740993"), "{text}");
    assert_eq!(outputs["total"].as_u64(), Some(9007199254740993), "{text}");
    assert!(outputs["count"].is_u64() && outputs["count"] == 2, "an int prints as an integer: {text}");
    assert!(text.contains("243.39999389648438"), "the grid point of 243.4, read back exactly: {text}");
    assert_eq!(outputs["y"].as_f64(), Some(15951462.0 / 65536.0));
    // The grid point just below 2^46 (read toward zero as a double).
    let z = outputs["z"].as_f64().expect("z");
    assert!(z < 70368744177664.0 && z > 70368744177663.98, "{text}");

    // The same outputs for a person: integers without a decimal point.
    let out = Command::new(bin("cohort")).args(["run", "--preprocessing", "dealer"]).arg(&file).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("= 9007199254740993 "), "{shown}");
    assert!(shown.contains("= 2 "), "{shown}");
    assert!(shown.contains("= 243.39999389648438 "), "{shown}");
}

#[test]
fn an_integer_input_above_2_64_is_out_of_range() {
    let dir = Dir::new("exact-bigint");
    let file = run_file(
        &dir,
        "input x: int[] from each\noutput s = sum(concat(x))\n",
        &[("x", "1\n")],
        &[("x", "2\n123456789012345678901234567890\n")],
    );
    let out = cohort_run(&file, "dealer");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("b-x.txt:2") && err.contains("out of range"), "{err}");
    assert!(!err.contains("not an integer") && !err.contains("1234567890"), "{err}");
}

#[test]
fn public_runtime_arithmetic_out_of_range_fails_at_the_operator() {
    let dir = Dir::new("exact-public");
    let program = "input x: fixed[] from each\nlet n = len(concat(x))\noutput p = (n*50000.5) * (n*50000.5)\n";
    let file = run_file(&dir, program, &[("x", "1\n")], &[("x", "2\n")]);
    let out = cohort_run(&file, "dealer");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3, column 24") && err.contains("multiplication of public values"), "{err}");
}

#[test]
fn dividing_an_empty_vector_works_in_every_mode() {
    let dir = Dir::new("exact-empty");
    let program = "input x: fixed[] from a\ninput y: fixed[] from b\n\
                   output q = x / 2\noutput r = x / 3\noutput s = sum(y) / 2\n";
    let file = run_file(&dir, program, &[("x", "")], &[("y", "3\n")]);
    for mode in ["dealer", "ot"] {
        let (text, report) = succeeds(&file, mode);
        assert_eq!(report["outputs"]["q"], serde_json::json!([]), "{mode}: {text}");
        assert_eq!(report["outputs"]["r"], serde_json::json!([]), "{mode}: {text}");
        assert!((report["outputs"]["s"].as_f64().expect("s") - 1.5).abs() < 0.01, "{mode}: {text}");
    }
}

#[test]
fn empty_programs_and_unclosed_quotes_are_refused_before_anything_runs() {
    let dir = Dir::new("exact-refusals");
    let file = run_file(&dir, "input x: int[] from each\n", &[("x", "1\n")], &[("x", "2\n")]);
    let out = cohort_run(&file, "dealer");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.cohort") && err.contains("no outputs"), "{err}");

    dir.write("p.cohort", "input x: fixed[] from each\noutput s = sum(concat(x))\n");
    dir.write("a.csv", "name,v\nalice,1\nbob,\"2\ncarol,3\n");
    let file = dir.write(
        "run.yaml",
        "program: p.cohort\nparties:\n  - name: a\n    inputs: {x: {file: a.csv, column: v}}\n  - name: b\n    inputs: {x: {file: b-x.txt}}\n",
    );
    let out = cohort_run(&file, "dealer");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a.csv:3") && err.contains("unclosed quote"), "{err}");
    assert!(!err.contains("not a number"), "{err}");
}
