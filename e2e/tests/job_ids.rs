//! A job id never runs twice at a worker: not after its status fell out of
//! `limits.history`, not after a restart when the job had failed, and not
//! after a restart that interrupted it. Resubmitting answers what the
//! worker's durable ledger (`<resultsDir>/job-ids`) recorded. Also: a
//! cancelled job counts in `jobs_total{outcome="cancelled"}`, and a scalar
//! input given two values is refused at submission. Real `cohort-worker`
//! processes over loopback mTLS.

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_cli::launch::Federation;
use cohort_e2e::{http_get, launch_options};
use cohort_worker::service::api::{JobRequest, JobStatus, JobTimeouts, Phase};
use cohort_worker::transport::JobId;

const PROGRAM: &str = "input x: fixed[] from each\noutput s = sum(concat(x))\n";

fn request(id: &str, parties: &[String], value: f64, connect: f64) -> JobRequest {
    JobRequest {
        id: id.into(),
        program: PROGRAM.into(),
        parties: parties.to_vec(),
        inputs: BTreeMap::from([("x".to_string(), vec![serde_json::Number::from_f64(value).expect("finite").into()])]),
        timeouts: JobTimeouts { connect_seconds: Some(connect), round_seconds: Some(10.0), total_seconds: Some(60.0) },
        preprocessing: Default::default(),
    }
}

/// Run a job at both workers; worker 0's final status.
async fn run_both(federation: &Federation, parties: &[String], id: &str) -> JobStatus {
    for (i, w) in federation.workers.iter().enumerate() {
        w.client.submit(&request(id, parties, i as f64 + 1.0, 10.0)).await.expect("submit");
    }
    let status = federation.workers[0].client.wait(id, Duration::from_millis(10)).await.expect("wait");
    assert_eq!(status.phase, Phase::Succeeded, "{:?}", status.failure);
    status
}

/// Set worker `i`'s `limits.history` and restart it.
async fn with_history(federation: &mut Federation, i: usize, history: usize) {
    let path = federation.workers[i].config.clone();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read config")).expect("JSON config");
    config["limits"] = serde_json::json!({ "history": history });
    std::fs::write(&path, config.to_string()).expect("write config");
    federation.restart_worker(i).await.expect("restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_id_never_runs_twice_after_history_eviction_or_a_restart() {
    let parties: Vec<String> = (0..2).map(|i| format!("party-{i}")).collect();
    let mut federation = Federation::start(&parties, &launch_options("warn", None)).await.expect("starts");
    with_history(&mut federation, 0, 1).await;
    let w0 = federation.workers[0].client.clone();

    // Evicted from history (1): the resubmission answers the stored result.
    let first = JobId::random().to_string();
    let done = run_both(&federation, &parties, &first).await;
    run_both(&federation, &parties, &JobId::random().to_string()).await;
    let again = w0.submit(&request(&first, &parties, 1.0, 10.0)).await.expect("resubmit");
    assert_eq!(again, done, "a job evicted from the history must not run again");

    // Failed (its peer never came), evicted and lost in a restart: the
    // resubmission answers that it failed.
    let failed = JobId::random().to_string();
    w0.submit(&request(&failed, &parties, 1.0, 0.5)).await.expect("submit");
    let status = w0.wait(&failed, Duration::from_millis(10)).await.expect("wait");
    assert_eq!(status.phase, Phase::Failed);
    // Interrupted by a restart while connecting.
    let interrupted = JobId::random().to_string();
    w0.submit(&request(&interrupted, &parties, 1.0, 60.0)).await.expect("submit");
    federation.restart_worker(0).await.expect("restart");
    let w0 = federation.workers[0].client.clone();
    for id in [&failed, &interrupted] {
        let again = w0.submit(&request(id, &parties, 1.0, 10.0)).await.expect("resubmit");
        assert_eq!(again.phase, Phase::Failed, "{id} must not run again: {again:?}");
        let message = again.failure.as_ref().map(|f| f.message.as_str()).unwrap_or_default();
        assert!(message.contains("never runs twice"), "{message}");
    }
    // The same id with another program is still a conflict.
    let mut other = request(&failed, &parties, 1.0, 10.0);
    other.program = "input x: fixed[] from each\noutput n = len(concat(x))\n".into();
    assert_eq!(w0.submit(&other).await.err().and_then(|e| e.status()), Some(409));
    // And the federation still runs new jobs.
    run_both(&federation, &parties, &JobId::random().to_string()).await;
    let ledger = federation.dir.join("party-0-results").join("job-ids");
    assert!(ledger.exists(), "{} must exist", ledger.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_is_counted_and_a_scalar_given_two_values_is_refused_at_submission() {
    let parties: Vec<String> = (0..2).map(|i| format!("party-{i}")).collect();
    let federation = Federation::start(&parties, &launch_options("warn", None)).await.expect("starts");
    let w0 = &federation.workers[0];
    let id = JobId::random().to_string();
    w0.client.submit(&request(&id, &parties, 1.0, 60.0)).await.expect("submit");
    assert_eq!(w0.client.cancel(&id).await.expect("cancel").phase, Phase::Cancelled);
    let metrics = http_get(&w0.metrics, "/metrics").await;
    assert!(metrics.contains("cohort_worker_jobs_total{outcome=\"cancelled\"} 1"), "{metrics}");

    // A scalar input with two values, or none: refused at submission with
    // the input named, before any party connects.
    for values in [vec![1.0, 2.0], vec![]] {
        let mut r = request(&JobId::random().to_string(), &parties, 1.0, 10.0);
        r.program = "input x: fixed from party-0\ninput y: fixed from party-1\noutput s = x + y\n".into();
        r.inputs = BTreeMap::from([(
            "x".to_string(),
            values.iter().map(|v| serde_json::Number::from_f64(*v).expect("finite").into()).collect(),
        )]);
        // Like every input check: the job fails at once, with the reason.
        let status = w0.client.submit(&r).await.expect("submit");
        assert_eq!(status.phase, Phase::Failed, "a scalar given {} values was admitted: {status:?}", values.len());
        let message = status.failure.as_ref().map(|f| f.message.as_str()).unwrap_or_default();
        assert!(message.contains("input `x`") && message.contains("exactly one value"), "{message}");
    }
}
