//! Bools at every boundary, with real worker processes on loopback mTLS:
//! JSON booleans into the control API, JSON booleans out of the worker
//! status, a number for a bool input refused at submission, and `cohort
//! run`'s text form of a bool output.

use std::collections::BTreeMap;
use std::process::Command;

use cohort_cli::launch::Federation;
use cohort_e2e::{Dir, bin, launch_options};
use cohort_worker::service::api::{InputValue, JobRequest, JobTimeouts, OutputValue, Phase};
use cohort_worker::transport::JobId;

const PROGRAM: &str = "\
input flags: bool[] from party-0
input x: int[] from party-1
let big = x > 10
output both = flags and big to party-0
output either = count(flags or big)
output any = count(flags) > 0
";

fn timeouts() -> JobTimeouts {
    JobTimeouts { connect_seconds: Some(30.0), round_seconds: Some(60.0), total_seconds: Some(300.0) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bools_cross_the_control_api_as_json_booleans() {
    let names: Vec<String> = (0..2).map(|i| format!("party-{i}")).collect();
    let federation = Federation::start(&names, &launch_options("warn", None)).await.expect("federation starts");
    let flags = [true, false, true, false, false];
    let x = [11i64, 12, -3, 10, 4];
    let inputs = vec![
        BTreeMap::from([("flags".to_string(), flags.iter().map(|b| InputValue::from(*b)).collect())]),
        BTreeMap::from([("x".to_string(), x.iter().map(|v| InputValue::from(*v)).collect())]),
    ];
    let statuses = federation.run(PROGRAM, inputs, timeouts(), |_| {}).await.expect("job runs");
    let both: Vec<bool> = flags.iter().zip(&x).map(|(f, v)| *f && *v > 10).collect();
    let either = flags.iter().zip(&x).filter(|(f, v)| **f || **v > 10).count() as i64;
    for (p, status) in statuses.iter().enumerate() {
        assert_eq!(status.phase, Phase::Succeeded, "party {p}: {:?}", status.failure);
        let outputs = status.outputs.as_ref().expect("outputs");
        // Parsed from the worker's JSON: `Bools`/`Bool` only if the wire
        // carried JSON booleans (numbers would read as `Vector`/`Scalar`).
        assert_eq!(outputs.get("any"), Some(&OutputValue::Bool(true)), "party {p}");
        assert_eq!(outputs.get("either"), Some(&OutputValue::Scalar(either.into())), "party {p}");
        if p == 0 {
            assert_eq!(outputs.get("both"), Some(&OutputValue::Bools(both.clone())));
        } else {
            assert!(!outputs.contains_key("both"), "only party-0 receives `both`");
        }
    }
    let json = serde_json::to_value(statuses[0].outputs.as_ref().expect("outputs")).expect("JSON");
    assert_eq!(json["both"], serde_json::json!([true, false, false, false, false]));

    // A number for a bool input: refused at submission, naming the input
    // and the element, never the value.
    let request = JobRequest {
        id: JobId::random().to_string(),
        program: PROGRAM.into(),
        parties: names.clone(),
        inputs: BTreeMap::from([("flags".to_string(), vec![true.into(), InputValue::from(987_654)])]),
        timeouts: timeouts(),
        preprocessing: Default::default(),
    };
    let status = federation.workers[0].client.submit(&request).await.expect("submit");
    assert_eq!(status.phase, Phase::Failed, "{status:?}");
    let message = status.failure.as_ref().map(|f| f.message.as_str()).unwrap_or_default();
    assert!(message.contains("input `flags`, element 1: not a bool"), "{message}");
    assert!(!message.contains("987654"), "{message}");
}

/// `cohort run` reads bools from data files (`true`, `FALSE`, `1`, `0`)
/// and prints bool outputs as `true`/`false` in its text form and as JSON
/// booleans with `--format json`.
#[test]
fn cohort_run_prints_bools_as_true_and_false() {
    let dir = Dir::new("bools");
    dir.write("flags.cohort", PROGRAM);
    dir.write("flags.csv", "id,flag\n1,true\n2,FALSE\n3,1\n4,0\n5,false\n");
    dir.write("x.txt", "11\n12\n-3\n10\n4\n");
    let run = dir.write(
        "run.yaml",
        "program: flags.cohort\nparties:\n  - name: party-0\n    inputs: {flags: {file: flags.csv, column: flag}}\n  \
         - name: party-1\n    inputs: {x: {file: x.txt}}\n",
    );
    let cohort = |json: bool| {
        let mut command = Command::new(bin("cohort"));
        command.arg("run").arg(&run);
        if json {
            command.args(["--format", "json"]);
        }
        let out = command.output().expect("cohort runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let text = cohort(false);
    assert!(text.contains("  any    = true   (to party-0, party-1)\n"), "{text}");
    assert!(text.contains("  both   = [true, false, false, false, false]   (to party-0)\n"), "{text}");
    assert!(text.contains("  either = 3   (to party-0, party-1)\n"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&cohort(true)).expect("JSON");
    assert_eq!(json["outputs"]["any"], serde_json::json!(true));
    assert_eq!(json["outputs"]["both"], serde_json::json!([true, false, false, false, false]));
    assert_eq!(json["outputs"]["either"], serde_json::json!(3));
}
