//! `cohort check` as a person runs it: the real `cohort` binary on the
//! repository's examples and on programs written to a temporary directory,
//! checked against the planner and the program hash computed here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cohort_worker::executor::{InputLengths, Instance, Quotients};
use cohort_worker::preprocessing::Mode;
use cohort_worker::program::{self, hex, program_hash};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn cohort(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cohort")).args(args).env_remove("NO_COLOR").output().expect("cohort runs")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

fn stderr(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr.clone()).expect("UTF-8")
}

/// The salary example's run file: parties from the file, one length per
/// party's salaries, dealer and generated material planned apart (`mean`
/// and `variance` divide by the count, not a power of two), and every
/// formula equal to the planner at lengths the fit never saw.
#[test]
fn the_salary_example_is_reviewed_from_its_run_file() {
    let run = repo().join("examples/salary-stats/run.yaml");
    let out = cohort(&["check", run.to_str().unwrap(), "--format", "json"]);
    let review: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let source = std::fs::read_to_string(repo().join("examples/salary-stats/salary.cohort")).unwrap();
    assert_eq!(review["fileKind"], "run file");
    assert_eq!(review["programHash"], hex(&program_hash(&source)));
    assert_eq!(review["parties"], serde_json::json!(["alice", "bob", "carol"]));
    assert_eq!(
        review["inputs"],
        serde_json::json!([{"name": "salaries", "type": "fixed[]", "owners": ["alice", "bob", "carol"], "each": true}])
    );
    assert_eq!(
        review["outputs"][0],
        serde_json::json!({"name": "count", "type": "int", "recipients": ["alice", "bob", "carol"]})
    );
    assert_eq!(
        review["outputs"][2],
        serde_json::json!({"name": "variance", "type": "fixed", "recipients": ["alice", "bob"]})
    );
    assert_eq!(review["lengths"]["names"], serde_json::json!(["salaries@alice", "salaries@bob", "salaries@carol"]));

    let parties: Vec<String> = ["alice", "bob", "carol"].map(String::from).to_vec();
    let circuit = program::compile(&source, &parties).unwrap();
    let cost = review["cost"].as_array().expect("groups");
    assert_eq!(cost.len(), 2, "{cost:?}");
    for group in cost {
        let modes: Vec<Mode> = serde_json::from_value(group["preprocessing"].clone()).unwrap();
        let quotients = Quotients::of(modes[0]);
        for lengths in [[1, 2, 3], [7, 1000, 64], [65, 63, 4096]] {
            let instance = Instance::with_quotients(
                &circuit,
                &InputLengths(vec![lengths.iter().map(|&l| Some(l)).collect()]),
                quotients,
            )
            .unwrap();
            let at = |cost: &serde_json::Value| -> u64 {
                let per = cost["perLength"].as_object().expect("affine");
                let names = ["salaries@alice", "salaries@bob", "salaries@carol"];
                let linear: i64 = names
                    .iter()
                    .zip(lengths)
                    .map(|(n, l)| per.get(*n).map_or(0, |c| c.as_i64().unwrap()) * l as i64)
                    .sum();
                (cost["constant"].as_i64().unwrap() + linear) as u64
            };
            assert_eq!(at(&group["rounds"]), 3 + instance.depth() as u64, "{modes:?} {lengths:?}");
            let totals = instance.plan.totals();
            assert_eq!(at(&group["material"]["triples"]), totals.triples, "{modes:?} {lengths:?}");
            assert_eq!(at(&group["material"]["divPairs"]), totals.div_pairs, "{modes:?} {lengths:?}");
            assert_eq!(at(&group["material"]["bitTriples"]), totals.bit_triples);
        }
    }
    assert_eq!(cost[0]["preprocessing"], serde_json::json!(["dealer"]));
    assert_eq!(cost[1]["preprocessing"], serde_json::json!(["ot", "pool"]));
    assert!(cost[1]["rounds"]["constant"].as_i64() > cost[0]["rounds"]["constant"].as_i64(), "{cost:?}");
}

/// A program file with `--parties`, in text, with exact figures for
/// `--lengths`.
#[test]
fn a_program_file_is_reviewed_for_the_parties_given() {
    let program = repo().join("examples/private-dot/score.cohort");
    let out = cohort(&[
        "check",
        program.to_str().unwrap(),
        "--parties",
        "advertiser,publisher",
        "--lengths",
        "weights=1000,features=1000",
    ]);
    let text = stdout(&out);
    let source = std::fs::read_to_string(&program).unwrap();
    assert!(text.contains(&format!("hash     {}", hex(&program_hash(&source)))), "{text}");
    assert!(text.contains("parties  advertiser, publisher\n"), "{text}");
    assert!(text.contains("  weights   fixed[]  from advertiser\n"), "{text}");
    assert!(text.contains("  score     fixed    to publisher\n"), "{text}");
    assert!(text.contains("cost, with every vector input of length n"), "{text}");
    assert!(text.contains("    triples       n\n"), "{text}");
    assert!(text.contains("exact, with features=1000, weights=1000 (preprocessing dealer, ot, pool)\n"), "{text}");
    assert!(text.contains("    triples       1000\n"), "{text}");

    // Without parties a program cannot be compiled; a run file names them.
    let out = cohort(&["check", program.to_str().unwrap()]);
    assert!(stderr(&out).contains("--parties a,b,c"), "{}", stderr(&out));
    // Lengths the program cannot run with fail at the operation, with a caret.
    let out = cohort(&[
        "check",
        program.to_str().unwrap(),
        "--parties",
        "advertiser,publisher",
        "--lengths",
        "weights=3,features=4",
    ]);
    let err = stderr(&out);
    assert!(err.contains("score.cohort:6:"), "{err}");
    assert!(err.contains("(3 and 4)") && err.contains("(with --lengths weights=3,features=4)"), "{err}");
    assert!(err.contains(" | output score = dot(weights, features) to publisher\n"), "{err}");
    assert!(err.contains('^'), "{err}");
}

/// Compile errors show the line and a caret under the column, in `cohort
/// check` and in `cohort run`, without colour when stderr is not a
/// terminal.
#[test]
fn compile_errors_show_the_line_and_a_caret() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("bad.cohort");
    std::fs::write(&program, "input x: int[] from a\nlet y = x + z\noutput s = sum(y)\n").unwrap();
    let out = cohort(&["check", program.to_str().unwrap(), "--parties", "a,b"]);
    let err = stderr(&out);
    let shown = format!("{}:2:13", program.display());
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(&format!(" --> {shown}\n")), "{err}");
    assert!(err.contains("2 | let y = x + z\n  |             ^"), "{err}");
    assert!(!err.contains('\x1b'), "no colour on a pipe: {err:?}");

    // The same through a run file (detected without its extension), and
    // through `cohort run`, which stops before starting any process.
    let run = dir.path().join("job");
    std::fs::write(&run, "program: bad.cohort\nparties:\n  - name: a\n    inputs: {x: {file: x.txt}}\n  - name: b\n")
        .unwrap();
    std::fs::write(dir.path().join("x.txt"), "1\n").unwrap();
    for args in [vec!["check", run.to_str().unwrap()], vec!["run", run.to_str().unwrap()]] {
        let out = cohort(&args);
        let err = stderr(&out);
        assert!(err.contains(&format!(" --> {shown}\n")), "{args:?}: {err}");
        assert!(err.contains("  |             ^"), "{args:?}: {err}");
    }
}

/// A comparison program: bool outputs are typed `bool[]`, material the
/// planner packs 64 to a word or that grows with a reduction's tree is
/// either a formula that holds or a table, and `--lengths` gives the
/// planner's exact figures in every mode.
#[test]
fn a_comparison_program_is_reviewed_with_its_tables_and_exact_figures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cmp.cohort");
    let source = "input x: int[] from a\ninput t: int from b\nlet f = x > t\noutput n = count(f)\n\
                  output flags = f to a\noutput top = max(x) to b\n";
    std::fs::write(&path, source).unwrap();
    let out = cohort(&["check", path.to_str().unwrap(), "--parties", "a,b", "--lengths", "x=1000", "--format", "json"]);
    let review: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(review["outputs"][1], serde_json::json!({"name": "flags", "type": "bool[]", "recipients": ["a"]}));
    assert_eq!(review["outputs"][2]["type"], "int");
    let parties = vec!["a".to_string(), "b".to_string()];
    let circuit = program::compile(source, &parties).unwrap();
    let plan = |n: usize| {
        Instance::with_quotients(
            &circuit,
            &InputLengths(vec![vec![Some(n), None], vec![None, Some(1)]]),
            Quotients::Exact,
        )
        .unwrap()
    };
    let group = &review["cost"][0];
    // max(x) is a tree of comparisons: its rounds grow with log2 of the
    // length, so they are a table, each entry the planner's.
    let rounds = group["rounds"]["samples"].as_array().expect("rounds are not affine in the length");
    for sample in rounds {
        let n = sample["n"].as_u64().unwrap() as usize;
        assert_eq!(sample["value"].as_u64(), Some(3 + plan(n).depth() as u64), "n = {n}");
    }
    assert!(rounds[4]["value"].as_u64() > rounds[1]["value"].as_u64());
    // Every kind, formula or table, agrees with the planner.
    for n in [1usize, 7, 64, 129, 3000] {
        let totals = plan(n).plan.totals();
        for (kind, want) in [
            ("triples", totals.triples),
            ("divPairs", totals.div_pairs),
            ("bitTriples", totals.bit_triples),
            ("edabits", totals.edabits),
            ("dabits", totals.dabits),
            ("permutations", totals.permutations),
        ] {
            let cost = &group["material"][kind];
            if let Some(per) = cost["perLength"].as_object() {
                let scale = |l: usize| match cost["scale"].as_str() {
                    Some("length") => l as i64,
                    Some("ceil(length/64)") => l.div_ceil(64) as i64,
                    Some("ceil(log2 length)") => i64::from(usize::BITS - l.saturating_sub(1).leading_zeros()),
                    other => panic!("scale {other:?}"),
                };
                let got =
                    cost["constant"].as_i64().unwrap() + per.get("x").map_or(0, |c| c.as_i64().unwrap()) * scale(n);
                assert_eq!(got as u64, want, "{kind} at {n}: {cost}");
            } else if let Some(sample) = cost["samples"].as_array().unwrap().iter().find(|s| s["n"] == n as u64) {
                assert_eq!(sample["value"].as_u64(), Some(want), "{kind} at {n}");
            }
        }
    }
    let exact = &review["exact"][0];
    let at_1000 = plan(1000);
    assert_eq!(exact["rounds"].as_u64(), Some(3 + at_1000.depth() as u64));
    assert_eq!(exact["material"]["bitTriples"].as_u64(), Some(at_1000.plan.totals().bit_triples));
    assert_eq!(exact["lengths"], serde_json::json!({"x": 1000}));
}
