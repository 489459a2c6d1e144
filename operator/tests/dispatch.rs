//! The operator's dispatch component against real `cohort-worker`
//! processes over mTLS, with no Kubernetes: every party's dispatcher sends
//! the same job to its own worker, the result is right, and dispatching the
//! same job again returns the stored result without running it twice.

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_cli::launch::Federation;
use cohort_e2e::launch_options;
use cohort_operator::dispatch::{DispatchError, Dispatcher, Job, shard_for};
use cohort_worker::preprocessing::Mode;
use cohort_worker::service::api::{JobTimeouts, MaterialKind, OutputValue, Phase};
use cohort_worker::transport::JobId;

fn job(id: &str, parties: &[String], program: &str, x: f64) -> Job {
    Job {
        id: id.into(),
        program: program.into(),
        parties: parties.to_vec(),
        inputs: BTreeMap::from([("x".to_string(), vec![serde_json::Number::from_f64(x).expect("finite").into()])]),
        timeouts: JobTimeouts { connect_seconds: Some(10.0), round_seconds: Some(10.0), total_seconds: Some(60.0) },
        preprocessing: Some(Mode::Dealer),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_runs_a_job_once_and_returns_its_result_again() {
    let names: Vec<String> = ["bank-a", "bank-b", "bank-c"].map(String::from).to_vec();
    let federation = Federation::start(&names, &launch_options("warn", None)).await.expect("workers start");
    let program = "input x: fixed[] from each\noutput total = sum(concat(x))\n";
    let id = JobId::random().to_string();
    // One worker (shard) per party here; the shard choice is still made the
    // way the operator makes it.
    assert_eq!(shard_for(&id, 1), 0);

    let mut runs = Vec::new();
    for (i, w) in federation.workers.iter().enumerate() {
        let dispatcher = Dispatcher::new(federation.controller.current(), w.name.clone(), Duration::from_millis(10));
        let (endpoint, job) = (w.control.clone(), job(&id, &names, program, i as f64 + 1.5));
        runs.push(tokio::spawn(async move { dispatcher.run(&endpoint, &job).await }));
    }
    let mut first = Vec::new();
    for run in runs {
        let status = run.await.expect("no panic").expect("dispatched");
        assert_eq!(status.phase, Phase::Succeeded, "{:?}", status.failure);
        assert_eq!(
            status.outputs.as_ref().and_then(|o| o.get("total")),
            Some(&OutputValue::Scalar(serde_json::Number::from_f64(7.5).expect("finite")))
        );
        first.push(status);
    }

    // A second dispatch (an operator restarted mid-job, a retry after a
    // lost reply) returns the same result and runs nothing.
    for (w, before) in federation.workers.iter().zip(&first) {
        let dispatcher = Dispatcher::new(federation.controller.current(), w.name.clone(), Duration::from_millis(10));
        let again = dispatcher.run(&w.control, &job(&id, &names, program, 100.0)).await.expect("redispatch");
        assert_eq!(&again, before);
        let health = w.client.health().await.expect("health");
        assert_eq!(health.active_jobs, 0, "nothing started");
    }
    // The same id with another program is a conflict, never retried.
    let w = &federation.workers[0];
    let dispatcher = Dispatcher::new(federation.controller.current(), w.name.clone(), Duration::from_millis(10));
    let conflict = dispatcher
        .submit(&w.control, &job(&id, &names, "input x: fixed[] from each\noutput n = len(concat(x))\n", 1.0))
        .await;
    match conflict {
        Err(e @ DispatchError::Conflict { .. }) => assert!(!e.is_retryable()),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Cancelling a finished job changes nothing.
    let cancelled = dispatcher.cancel(&w.control, &id).await.expect("cancel");
    assert_eq!(cancelled, first[0]);
}

/// A job that names an OT PreprocessingPool is dispatched with
/// `preprocessing: pool`: the workers take agreed batches from their pools,
/// and the operator reads their stock through the same client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_job_takes_its_material_from_the_workers_pools() {
    let names: Vec<String> = ["bank-a", "bank-b"].map(String::from).to_vec();
    let mut options = launch_options("warn", None);
    options.preprocessing = Mode::Pool;
    let federation = Federation::start(&names, &options).await.expect("workers start");
    for (kind, divisor) in [(MaterialKind::Triples, None), (MaterialKind::DivPairs, Some(1 << 16))] {
        let filled = federation.fill(kind, divisor, 100, 2).await.expect("fill");
        assert!(filled.iter().all(|s| s.phase == Phase::Succeeded), "{filled:?}");
    }
    let program = "input x: fixed[] from each\nlet all = concat(x)\noutput s = sum(all * all)\n";
    let id = JobId::random().to_string();
    let mut runs = Vec::new();
    for (i, w) in federation.workers.iter().enumerate() {
        let dispatcher = Dispatcher::new(federation.controller.current(), w.name.clone(), Duration::from_millis(10));
        let mut job = job(&id, &names, program, i as f64 + 1.5);
        job.preprocessing = Some(Mode::Pool);
        let endpoint = w.control.clone();
        runs.push(tokio::spawn(async move { (dispatcher.run(&endpoint, &job).await, dispatcher, endpoint) }));
    }
    for run in runs {
        let (status, dispatcher, endpoint) = run.await.expect("no panic");
        let status = status.expect("dispatched");
        assert_eq!(status.phase, Phase::Succeeded, "{:?}", status.failure);
        assert_eq!(
            status.outputs.as_ref().and_then(|o| o.get("s")),
            Some(&OutputValue::Scalar(serde_json::Number::from_f64(1.5 * 1.5 + 2.5 * 2.5).expect("finite")))
        );
        assert_eq!(status.stats.as_ref().map(|s| s.batches.len()), Some(2), "one batch of each kind");
        let pool = dispatcher.pool(&endpoint).await.expect("pool status");
        assert_eq!(pool.kinds.iter().map(|k| k.items).collect::<Vec<_>>(), [100, 100], "one batch of each left");
    }
}
