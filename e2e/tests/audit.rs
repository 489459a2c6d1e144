//! The audit trail of real `cohort-worker` processes: every finished job —
//! succeeded, refused at setup, cancelled — leaves exactly one JSON line at
//! each party that ran it, with the public facts and nothing secret.

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_cli::launch::Federation;
use cohort_e2e::launch_options;
use cohort_worker::service::api::{JobRequest, JobTimeouts, Phase};
use cohort_worker::transport::JobId;

/// Input values no record may contain.
const SENTINELS: [i64; 3] = [7_355_608, 4_815_162, 3_141_592];

fn request(id: &str, program: &str, parties: &[String], x: i64) -> JobRequest {
    JobRequest {
        id: id.into(),
        program: program.into(),
        parties: parties.to_vec(),
        inputs: BTreeMap::from([("x".to_string(), vec![serde_json::Number::from(x).into()])]),
        timeouts: JobTimeouts { connect_seconds: Some(5.0), round_seconds: Some(10.0), total_seconds: Some(30.0) },
        preprocessing: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finished_job_leaves_one_public_audit_record() {
    let names: Vec<String> = ["bank-a", "bank-b", "bank-c"].map(String::from).to_vec();
    let federation = Federation::start(&names, &launch_options("warn", None)).await.expect("workers start");
    let program = "input x: int[] from each\noutput total = sum(concat(x))\n";
    let total = "input x: int[] from each\noutput total = sum(concat(x)) + 1\n";
    let poll = Duration::from_millis(20);

    // Succeeds everywhere.
    let ok = JobId::random().to_string();
    for (w, x) in federation.workers.iter().zip(SENTINELS) {
        w.client.submit(&request(&ok, program, &names, x)).await.expect("submitted");
    }
    for w in &federation.workers {
        let s = w.client.wait(&ok, poll).await.expect("finishes");
        assert_eq!(s.phase, Phase::Succeeded, "{:?}", s.failure);
    }
    // Refused at setup: bank-c runs another program.
    let mismatch = JobId::random().to_string();
    for (w, x) in federation.workers.iter().zip(SENTINELS) {
        let p = if w.name == "bank-c" { total } else { program };
        w.client.submit(&request(&mismatch, p, &names, x)).await.expect("submitted");
    }
    for w in &federation.workers {
        assert_eq!(w.client.wait(&mismatch, poll).await.expect("finishes").phase, Phase::Failed);
    }
    // Cancelled at bank-a before its peers ever submit.
    let cancelled = JobId::random().to_string();
    let a = &federation.workers[0];
    a.client.submit(&request(&cancelled, program, &names, SENTINELS[0])).await.expect("submitted");
    assert_eq!(a.client.cancel(&cancelled).await.expect("cancelled").phase, Phase::Cancelled);

    // Records are appended off the request path: give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for w in &federation.workers {
        let path = federation.dir.join(format!("{}-audit.jsonl", w.name));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for s in SENTINELS {
            assert!(!text.contains(&s.to_string()), "{}: the audit log holds an input value", w.name);
        }
        let records: BTreeMap<String, serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("one JSON record per line"))
            .map(|r| (r["jobId"].as_str().expect("a job id").to_string(), r))
            .collect();
        let want = if w.name == "bank-a" { 3 } else { 2 };
        assert_eq!(text.lines().count(), want, "{}: one record per job", w.name);
        let r = &records[&ok];
        assert_eq!(
            (r["outcome"].as_str(), r["party"].as_str(), r["v"].as_u64()),
            (Some("succeeded"), Some(w.name.as_str()), Some(1))
        );
        assert_eq!(r["parties"], serde_json::json!(names));
        assert!(r["rounds"].as_u64().unwrap_or(0) > 0 && r["bytesSent"].as_u64().unwrap_or(0) > 0, "{r}");
        assert!(r["protocolVersion"].as_u64().is_some());
        assert_eq!(r["programHash"].as_str().map(str::len), Some(64));
        assert!(r["admitted"].as_str() <= r["finished"].as_str());
        let f = &records[&mismatch];
        assert_eq!(f["outcome"], "failed");
        assert!(f.get("failedStep").is_some() || f.get("failedParty").is_some(), "{f}");
        if w.name == "bank-a" {
            assert_eq!(records[&cancelled]["outcome"], "cancelled");
        }
    }
}
