//! `cohort run` refuses bad input before starting anything: a malformed
//! run file, program or data file, or an out-of-range value, gives a clear
//! error naming the file, line and field, exit code 1, nothing on stdout,
//! and never the offending value.

use std::path::{Path, PathBuf};
use std::process::Command;

use cohort_e2e::{Dir, bin};

/// Run `cohort run FILE`, expect failure; its stderr.
fn fails(file: &Path) -> String {
    let out = Command::new(bin("cohort")).arg("run").arg("--format").arg("json").arg(file).output().expect("runs");
    assert_eq!(out.status.code(), Some(1), "must fail with exit code 1");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const PROGRAM: &str = "input x: fixed[] from each\noutput s = sum(concat(x))\n";

fn run_file(dir: &Dir, program: &str, a: &str, b: &str) -> PathBuf {
    dir.write("p.cohort", program);
    dir.write("a.csv", a);
    dir.write("b.txt", b);
    dir.write(
        "run.yaml",
        "program: p.cohort\nparties:\n  - name: a\n    inputs: {x: {file: a.csv, column: v}}\n  - name: b\n    inputs: {x: {file: b.txt}}\n",
    )
}

#[test]
fn malformed_run_file_names_the_file_and_line() {
    let dir = Dir::new("yaml");
    let file = dir.write("run.yaml", "program: p.cohort\nparties:\n  - name: a\n    inputs: [oops\n");
    let err = fails(&file);
    assert!(err.contains("run.yaml") && err.contains("line"), "{err}");
    let file = dir.write("run.yaml", "program: p.cohort\nparties: []\nbogus: 1\n");
    let err = fails(&file);
    assert!(err.contains("bogus"), "{err}");
    let err = fails(&dir.0.join("missing.yaml"));
    assert!(err.contains("missing.yaml"), "{err}");
}

#[test]
fn malformed_program_names_line_and_column() {
    let dir = Dir::new("program");
    let file = run_file(&dir, "input x: fixed[] from each\noutput s = sum(concat(x)) + * 2\n", "v\n1\n", "2\n");
    let err = fails(&file);
    // As rustc shows an error: file:line:column, the line, a caret.
    assert!(err.contains("p.cohort:2:29\n"), "{err}");
    assert!(err.contains("2 | output s = sum(concat(x)) + * 2\n  |                             ^"), "{err}");
}

#[test]
fn malformed_csv_names_file_line_and_column() {
    let dir = Dir::new("csv");
    let file = run_file(&dir, PROGRAM, "v\n1.5\n2.5\nabc\n", "2\n");
    let err = fails(&file);
    assert!(err.contains("a.csv") && err.contains('4') && err.contains("\"v\""), "{err}");
    let file = run_file(&dir, PROGRAM, "w\n1\n", "2\n");
    let err = fails(&file);
    assert!(err.contains("a.csv") && err.contains("w"), "lists the columns there are: {err}");
}

#[test]
fn out_of_range_fixed_point_value_is_refused_without_echoing_it() {
    let dir = Dir::new("range");
    let file = run_file(&dir, PROGRAM, "v\n1\n", "1\n98765432109876543210\n");
    let err = fails(&file);
    assert!(err.contains("b.txt:2") && err.contains("range"), "{err}");
    assert!(!err.contains("98765432109876543210") && !err.contains("9876543"), "echoes the value: {err}");
}

#[test]
fn ot_preprocessing_divides_by_a_divisor_that_is_not_a_power_of_two_as_the_dealer_does() {
    // Issue 15, item 1: `cohort run` defaults to OT-based preprocessing,
    // which refused every divisor but a power of two; now it serves any
    // divisor (a constant, and a run-time one: `mean` divides by the
    // length), within the dealer's bound.
    let dir = Dir::new("divisor");
    let file = run_file(
        &dir,
        "input x: int[] from each\nlet v = concat(x)\noutput m = sum(v) / 3\noutput avg = mean(v)\n",
        "v\n1\n2\n",
        "3\n",
    );
    for mode in ["ot", "dealer"] {
        let out = Command::new(bin("cohort"))
            .args(["run", "--format", "json", "--preprocessing", mode])
            .arg(&file)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        for name in ["m", "avg"] {
            let got = report["outputs"][name].as_f64().expect(name);
            assert!((got - 2.0).abs() < 0.01, "{mode}, {name}: {report}");
        }
    }
}
