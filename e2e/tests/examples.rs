//! `cohort run` on every example under `examples/`, as a user runs it: the
//! real `cohort` binary starting real worker and dealer processes. Each
//! output must match the program evaluated in the clear on the same files;
//! outputs reach only their recipients; `--format json` prints exactly one
//! JSON document on stdout.

use std::path::Path;
use std::process::Command;

use cohort_e2e::{bin, expected_outputs, json_has_type, json_values, repo_root};
use cohort_worker::executor::plan::Lowering;
use cohort_worker::executor::{InputLengths, Instance, Quotients};
use cohort_worker::preprocessing::Mode;
use cohort_worker::protocol::ProtocolName;

/// Run `cohort run --format json ARGS FILE`; the parsed stdout.
fn run_json(file: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin("cohort"))
        .arg("run")
        .args(["--format", "json"])
        .args(args)
        .arg(file)
        .output()
        .expect("cohort runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cohort run {} failed:\n{stderr}", file.display());
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 stdout");
    assert_eq!(stdout.trim_end().lines().count(), 1, "stdout must be one JSON document:\n{stdout}");
    serde_json::from_str(&stdout).expect("stdout is JSON")
}

/// How an example is run.
#[derive(Clone, Copy)]
enum How {
    /// The additive protocol with this preprocessing mode (`--preprocessing`).
    Additive(Mode),
    /// replicated-3 from the run file's `protocol:` key: the example's run
    /// file, copied beside its data with its `preprocessing` replaced by
    /// `protocol: replicated-3`.
    Rep3File,
    /// replicated-3 from `cohort run --protocol replicated-3` on the
    /// example's own run file (one without a `preprocessing` key).
    Rep3Flag,
}

/// Run the example with the material from the parties' OT generation and
/// from a trusted dealer: both must match the plaintext evaluation.
fn check_example(dir: &str, recipients: &[(&str, &[&str])]) {
    for mode in [Mode::Ot, Mode::Dealer] {
        check_example_with(dir, recipients, How::Additive(mode));
    }
}

/// The example's directory copied to a scratch directory, its run file
/// under replicated-3 (`protocol:` in place of `preprocessing:`).
fn rep3_copy(dir_name: &str) -> cohort_e2e::Dir {
    let copy = cohort_e2e::Dir::new(&format!("rep3-{dir_name}"));
    for entry in std::fs::read_dir(repo_root().join("examples").join(dir_name)).expect("example").flatten() {
        std::fs::copy(entry.path(), copy.0.join(entry.file_name())).expect("copy");
    }
    let text = std::fs::read_to_string(copy.0.join("run.yaml")).expect("run file");
    let mut run: String = text.lines().filter(|l| !l.starts_with("preprocessing:")).map(|l| format!("{l}\n")).collect();
    run.push_str("protocol: replicated-3\n");
    copy.write("run.yaml", &run);
    copy
}

fn check_example_with(dir_name: &str, recipients: &[(&str, &[&str])], how: How) {
    let (label, args, lowering) = match how {
        How::Additive(mode) => {
            let args = vec!["--preprocessing", if mode == Mode::Ot { "ot" } else { "dealer" }];
            (format!("{dir_name} ({mode})"), args, Lowering::additive(Quotients::of(mode)))
        }
        How::Rep3File | How::Rep3Flag => {
            let args = if matches!(how, How::Rep3Flag) { vec!["--protocol", "replicated-3"] } else { vec![] };
            let lowering = Lowering { protocol: ProtocolName::Replicated3, ..Default::default() };
            (format!("{dir_name} (replicated-3)"), args, lowering)
        }
    };
    let dir = &label;
    let copy = matches!(how, How::Rep3File).then(|| rep3_copy(dir_name));
    let file = match &copy {
        Some(copy) => copy.0.join("run.yaml"),
        None => repo_root().join("examples").join(dir_name).join("run.yaml"),
    };
    let report = run_json(&file, &args);
    let expected = expected_outputs(&file);
    let outputs = report["outputs"].as_object().expect("outputs object");
    assert_eq!(outputs.len(), expected.len(), "{dir}: every output is reported");
    let protocol = if matches!(how, How::Additive(_)) { "additive-semi-honest" } else { "replicated-3" };
    assert_eq!(report["stats"]["protocol"], protocol, "{dir}: the protocol that ran");
    let (run, inputs) = cohort_cli::runfile::RunFile::load(&file).expect("loads");
    for (name, want) in &expected {
        let decl = run.circuit.outputs.iter().find(|o| &o.name == name).expect("declared");
        assert!(json_has_type(&outputs[name], decl.elem), "{dir}: output {name} has its declared JSON type");
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
    // The planner's depth for these files' lengths, under this protocol and mode.
    let circuit = &run.circuit;
    let lengths = InputLengths(
        circuit
            .inputs
            .iter()
            .map(|decl| {
                inputs
                    .iter()
                    .map(|party| party.inputs.iter().find(|i| i.name == decl.name).map(|i| i.values.len()))
                    .collect()
            })
            .collect(),
    );
    let instance = Instance::plan(circuit, &lengths, lowering).expect("plans");
    // Replicated sharing makes the daBits of a job that injects bits in
    // one round after the inputs.
    let dabits =
        lowering.protocol == ProtocolName::Replicated3 && instance.layers.iter().any(|layer| !layer.injects.is_empty());
    let rounds = report["stats"]["rounds"].as_u64().expect("rounds");
    let planned = 3 + instance.depth() as u64 + u64::from(dabits);
    if instance.layers.iter().all(|layer| layer.sorts.is_empty()) {
        assert_eq!(rounds, planned, "{dir}: rounds = setup + inputs (+ daBits) + layers + output");
    } else {
        // A sort's quicksort levels are known only as it runs.
        assert!(rounds > planned, "{dir}: rounds {rounds} = the planned {planned} and the sorts' levels");
    }
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
fn fraud_flags_three_banks_compare_and_count() {
    check_example("fraud-flags", &[("flagged_count", &["bank-a", "bank-b", "bank-c"]), ("flags", &["bank-a"])]);
}

#[test]
fn sealed_auction_max_argmax_and_second_price() {
    check_example(
        "sealed-auction",
        &[("highest", &["seller", "bidder-1", "bidder-2", "bidder-3", "bidder-4"]), ("winner", &["seller"])],
    );
}

#[test]
fn secure_aggregation_five_parties_of_100k_elements() {
    check_example("aggregation", &[("total", &["hospital-1", "hospital-2", "hospital-3", "hospital-4", "hospital-5"])]);
}

/// Issue 18: medians, quartiles, a histogram and a group-by over a public
/// ward list, from three hospitals' patient records.
#[test]
fn hospital_statistics_three_hospitals() {
    check_example("hospital-stats", HOSPITALS);
}

const HOSPITALS: &[(&str, &[&str])] = &[
    ("median_age", &["st-mary", "city-general", "northside"]),
    ("by_age_band", &["st-mary", "city-general", "northside"]),
    ("mean_stay_per_ward", &["st-mary", "city-general", "northside"]),
];

/// Issue 18: an advertiser's exposed users joined with a merchant's
/// purchases; only the advertiser learns the two totals.
#[test]
fn ad_conversions_join_learned_by_the_advertiser_only() {
    check_example("ad-conversions", &[("converted_users", &["advertiser"]), ("conversion_value", &["advertiser"])]);
}

/// Issue 18: a logistic-regression score over two banks' features.
#[test]
fn fraud_model_sigmoid_score_over_two_banks() {
    check_example(
        "fraud-model",
        &[("scores", &["bank-a"]), ("flags", &["bank-a"]), ("flagged_count", &["bank-a", "bank-b"])],
    );
}

/// Issue 17: every three-party example under replicated-3 (no dealer, no
/// pool, no preprocessing) matches the plaintext evaluation, chosen by the
/// run file's `protocol:` and by `--protocol`.
#[test]
fn three_party_examples_under_replicated_3() {
    let salary: &[(&str, &[&str])] = &[("count", &["alice", "bob", "carol"]), ("mean", &["alice", "bob", "carol"])];
    let fraud: &[(&str, &[&str])] = &[("flagged_count", &["bank-a", "bank-b", "bank-c"]), ("flags", &["bank-a"])];
    let mut three_party = 0;
    for entry in std::fs::read_dir(repo_root().join("examples")).expect("examples").flatten() {
        let Ok(run) = cohort_cli::runfile::RunFile::open(&entry.path().join("run.yaml")) else { continue };
        if run.parties.len() != 3 {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let recipients = match name.as_str() {
            "salary-stats" => salary,
            "fraud-flags" => fraud,
            "hospital-stats" => HOSPITALS,
            other => panic!("a new three-party example, {other}: add its recipients here"),
        };
        check_example_with(&name, recipients, How::Rep3File);
        three_party += 1;
    }
    assert_eq!(three_party, 3, "salary-stats, fraud-flags and hospital-stats");
    // --protocol on a run file without `preprocessing`.
    check_example_with("fraud-flags", fraud, How::Rep3Flag);
    // A run file that names a preprocessing mode is refused under
    // --protocol replicated-3, naming the line, before any worker starts.
    let stderr = refused_run("salary-stats", &["--protocol", "replicated-3"]);
    assert!(stderr.contains("run.yaml:14: preprocessing: replicated-3 takes no preprocessing material"), "{stderr}");
    assert!(!stderr.contains("starting"), "{stderr}");
    // So is the --preprocessing flag.
    let stderr = refused_run("fraud-flags", &["--protocol", "replicated-3", "--preprocessing", "dealer"]);
    assert!(stderr.contains("--preprocessing: replicated-3 takes no preprocessing material"), "{stderr}");
}

/// `cohort run FLAGS examples/EXAMPLE/run.yaml` with no worker binary to
/// start: it must fail (exit status 1) before starting one. Its stderr.
fn refused_run(example: &str, flags: &[&str]) -> String {
    let file = repo_root().join(format!("examples/{example}/run.yaml"));
    let out = Command::new(bin("cohort"))
        .arg("run")
        .args(flags)
        .arg(&file)
        .env("COHORT_WORKER_BIN", "/nonexistent/cohort-worker")
        .output()
        .expect("cohort runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
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

// ---- how `cohort run` ends (issue 15, items 21-23) ----

/// A fresh directory for `TMPDIR`, so that a run's working directory can
/// be looked for afterwards.
fn fresh_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cohort-e2e-{what}-{}", cohort_worker::transport::JobId::random()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The run directories (`cohort-run-<id>`) under `dir`.
fn run_dirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("readable")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cohort-run-"))
        .collect()
}

/// `(pid, parent pid, start time)` of every process, from `/proc`.
fn processes() -> Vec<(u32, u32, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // After the command name's closing parenthesis: state, ppid, ...;
        // the start time is field 22 of the whole line.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(ppid), Some(start)) = (fields.get(1), fields.get(19)) else { continue };
        if let (Ok(ppid), Ok(start)) = (ppid.parse(), start.parse()) {
            out.push((pid, ppid, start));
        }
    }
    out
}

/// A run file whose job takes long enough to interrupt: three parties,
/// 3 × 10^5 secret integers (3 × 10^6 with the faster dealer), a chain of
/// 24 layers of multiplications.
fn long_run(dir: &Path, mode: &str) -> std::path::PathBuf {
    let mut program = String::from("input x: int[] from each\nlet a0 = concat(x)\n");
    for i in 1..=24 {
        program.push_str(&format!("let a{i} = a{} * a0\n", i - 1));
    }
    program.push_str("output s = sum(a24)\n");
    std::fs::write(dir.join("long.cohort"), program).expect("program");
    let count = if mode == "dealer" { 1_000_000 } else { 100_000 };
    let values: String = (0..count).map(|i| format!("{}\n", i % 3)).collect();
    let mut run = String::from("program: long.cohort\nparties:\n");
    for p in ["alice", "bob", "carol"] {
        std::fs::write(dir.join(format!("{p}.txt")), &values).expect("data");
        run.push_str(&format!("  - name: {p}\n    inputs:\n      x: {{file: {p}.txt}}\n"));
    }
    run.push_str(&format!("preprocessing: {mode}\n"));
    let file = dir.join("run.yaml");
    std::fs::write(&file, run).expect("run file");
    file
}

/// Start `cohort run` on a long job, send `signal` once the job is
/// submitted, and check that it stopped every process it started and
/// removed its directory (with the parties' private keys).
fn interrupt_mid_job(mode: &str, signal: &str, exit_code: i32) {
    use std::io::BufRead;
    let data = fresh_dir("data");
    let tmp = fresh_dir("tmp");
    let file = long_run(&data, mode);
    let mut child = Command::new(bin("cohort"))
        .arg("run")
        .arg(&file)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cohort starts");
    let pid = child.id();
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("stderr");
        assert!(n > 0, "cohort run ended before submitting the job:\n{seen}");
        seen.push_str(&line);
        if line.contains("submitting the job") {
            break;
        }
    }
    // Every process this run started, and its directory, exist now.
    let children: Vec<(u32, u64)> =
        processes().into_iter().filter(|&(_, ppid, _)| ppid == pid).map(|(p, _, start)| (p, start)).collect();
    let expected_children = if mode == "dealer" { 4 } else { 3 };
    assert_eq!(children.len(), expected_children, "the workers (and dealer) of the run:\n{seen}");
    assert_eq!(run_dirs(&tmp).len(), 1, "the run's directory exists while it runs");
    // Let the workers get into the job (not an assertion on time).
    std::thread::sleep(std::time::Duration::from_millis(500));

    let sent = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().expect("kill");
    assert!(sent.success());
    // Wait for `cohort` itself, not for its stderr: processes it left
    // behind would hold the pipe open.
    let status = child.wait().expect("cohort exits");
    let alive: Vec<(u32, u64)> = processes().into_iter().map(|(p, _, start)| (p, start)).collect();
    let left: Vec<u32> = children.iter().filter(|c| alive.contains(c)).map(|c| c.0).collect();
    assert_eq!(left, Vec::<u32>::new(), "processes of the run that outlived it ({status})");
    assert_eq!(run_dirs(&tmp), Vec::<String>::new(), "the run's directory (private keys) is gone ({status})");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("stderr");
    seen.push_str(&rest);
    assert_eq!(status.code(), Some(exit_code), "cohort run exits as interrupted by {signal}:\n{seen}");
    assert!(seen.contains(&format!("interrupted by SIG{signal}")), "{seen}");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn sigterm_mid_job_stops_every_process_and_removes_the_keys() {
    interrupt_mid_job("dealer", "TERM", 143);
}

#[test]
fn sigint_mid_job_stops_every_process_and_removes_the_keys() {
    interrupt_mid_job("ot", "INT", 130);
}

#[test]
fn a_finished_run_leaves_no_directory() {
    let tmp = fresh_dir("tmp");
    let file = repo_root().join("examples/private-dot/run.yaml");
    let out = Command::new(bin("cohort")).arg("run").arg(&file).env("TMPDIR", &tmp).output().expect("cohort runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(run_dirs(&tmp), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn a_timeout_over_a_week_is_refused_before_any_worker_starts() {
    let data = fresh_dir("data");
    let tmp = fresh_dir("tmp");
    let file = long_run(&data, "ot");
    let text = std::fs::read_to_string(&file).expect("run file");
    std::fs::write(&file, format!("{text}timeouts: {{total: 200h}}\n")).expect("run file");
    let out = Command::new(bin("cohort"))
        .arg("run")
        .arg(&file)
        .env("TMPDIR", &tmp)
        // Were a worker started, this would be the error instead.
        .env("COHORT_WORKER_BIN", data.join("no-such-worker"))
        .output()
        .expect("cohort runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("run.yaml:13: timeouts.total: 200h is longer than a week (168h)"), "{stderr}");
    assert!(!stderr.contains("no-such-worker") && !stderr.contains("starting"), "{stderr}");
    assert_eq!(run_dirs(&tmp), Vec::<String>::new(), "nothing was created");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn a_missing_worker_binary_is_named_with_its_path() {
    let data = fresh_dir("data");
    let tmp = fresh_dir("tmp");
    let missing = data.join("bin/cohort-worker");
    let file = repo_root().join("examples/private-dot/run.yaml");
    let out = Command::new(bin("cohort"))
        .arg("run")
        .arg(&file)
        .env("TMPDIR", &tmp)
        .env("COHORT_WORKER_BIN", &missing)
        .output()
        .expect("cohort runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "the path is named: {stderr}");
    assert!(stderr.contains("COHORT_WORKER_BIN"), "and how to point at another: {stderr}");
    assert_eq!(run_dirs(&tmp), Vec::<String>::new(), "the half-started run's directory is gone");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn logs_carry_no_colour_codes_unless_on_a_terminal() {
    let logs = fresh_dir("logs");
    let file = repo_root().join("examples/private-dot/run.yaml");
    let out = Command::new(bin("cohort"))
        .arg("run")
        .arg("--log-dir")
        .arg(&logs)
        .arg(&file)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .expect("cohort runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.stderr.contains(&0x1b), "stderr is a pipe: no ANSI codes");
    let mut files = 0;
    for entry in std::fs::read_dir(&logs).expect("logs").flatten() {
        let text = std::fs::read(entry.path()).expect("log");
        assert!(!text.is_empty(), "{} logs at info", entry.path().display());
        assert!(!text.contains(&0x1b), "{} holds ANSI codes", entry.path().display());
        files += 1;
    }
    assert_eq!(files, 2, "one log per process (two workers, no dealer in OT mode)");
    let _ = std::fs::remove_dir_all(&logs);
}
