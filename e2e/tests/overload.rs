//! Overload: a burst of jobs larger than the workers' `limits.maxJobs`.
//! A party with no free slot refuses a job (429) and tells the parties that
//! admitted it, which fail it at once with a retryable failure instead of
//! holding their slots until the connect timeout; the controllers resubmit
//! the same ids (the documented retry path, `ControlClient::run_retrying`)
//! and every job completes, none failing for lack of a slot elsewhere.
//! Real `cohort-worker` and `cohort-dealer` processes over loopback mTLS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cohort_cli::launch::Federation;
use cohort_e2e::{http_get, launch_options};
use cohort_worker::service::api::{JobRequest, JobTimeouts, Phase};
use cohort_worker::transport::JobId;

const JOBS: usize = 50;
const PROGRAM: &str = "input x: int[] from each\noutput s = sum(concat(x))\n";

/// The value of `name` in a worker's metrics text (0 when absent).
fn sample(metrics: &str, name: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_fifty_jobs_against_max_jobs_four_completes_every_job_through_the_retry_path() {
    let names: Vec<String> = (0..3).map(|i| format!("party-{i}")).collect();
    // The workers' default limits: maxJobs 4.
    let federation = Federation::start(&names, &launch_options("warn", None)).await.expect("federation starts");
    let until = Instant::now() + Duration::from_secs(600);
    let mut tasks = tokio::task::JoinSet::new();
    for job in 0..JOBS {
        let id = JobId::random().to_string();
        for (p, w) in federation.workers.iter().enumerate() {
            let value = (job * 10 + p) as i64;
            let request = JobRequest {
                id: id.clone(),
                program: PROGRAM.into(),
                parties: names.clone(),
                inputs: BTreeMap::from([("x".to_string(), vec![serde_json::Number::from(value).into()])]),
                timeouts: JobTimeouts {
                    connect_seconds: Some(20.0),
                    round_seconds: Some(20.0),
                    total_seconds: Some(120.0),
                },
                preprocessing: Default::default(),
            };
            let client = w.client.clone();
            tasks.spawn(async move {
                let status = client.run_retrying(&request, Duration::from_millis(20), until).await;
                (job, p, status)
            });
        }
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        let (job, p, status) = joined.expect("task");
        let status = status.unwrap_or_else(|e| panic!("job {job} at party {p}: {e}"));
        assert_eq!(status.phase, Phase::Succeeded, "job {job} at party {p}: {:?}", status.failure);
        let want = (job * 30 + 3) as f64;
        let s = status.outputs.as_ref().and_then(|o| o.get("s")).expect("output s");
        let s = serde_json::to_value(s).ok().and_then(|v| v.as_f64());
        assert_eq!(s, Some(want), "job {job} at party {p}");
        done += 1;
    }
    assert_eq!(done, JOBS * 3);
    // The burst did meet the limit, and no job failed: every refusal went
    // through the retry path.
    let mut refused = 0.0;
    for w in &federation.workers {
        let metrics = http_get(&w.metrics, "/metrics").await;
        assert_eq!(sample(&metrics, "cohort_worker_jobs_total{outcome=\"succeeded\"}"), JOBS as f64, "{metrics}");
        assert_eq!(sample(&metrics, "cohort_worker_jobs_total{outcome=\"failed\"}"), 0.0, "{metrics}");
        refused += sample(&metrics, "cohort_worker_jobs_refused_total{reason=\"capacity\"}");
    }
    assert!(refused > 0.0, "50 jobs at once against maxJobs 4 must meet the limit");
}
