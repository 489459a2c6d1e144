//! Sorting with `preprocessing: pool` through real `cohort-worker`
//! processes: the sort's material budget (the shuffle's triples, the
//! padding's opening, the comparisons' edaBits and bit triples;
//! `docs/sorting.md`) is taken from the pool like any plan's, and every
//! party gets the plaintext's sorted vector.

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_cli::launch::Federation;
use cohort_e2e::launch_options;
use cohort_worker::preprocessing::Mode;
use cohort_worker::service::api::{JobRequest, JobTimeouts, MaterialKind, OutputValue, Phase};
use cohort_worker::transport::JobId;

const PARTIES: usize = 3;

fn names() -> Vec<String> {
    (0..PARTIES).map(|i| format!("party-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_job_sorts_with_its_budget_from_the_pool() {
    let mut options = launch_options("warn", None);
    options.preprocessing = Mode::Pool;
    let federation = Federation::start(&names(), &options).await.expect("federation starts");
    // Per sort of 120 elements: a network of 128 slots, 3 parties × 13
    // stages × 128 triples, 128 edaBits to drop the padding, and a budget
    // of 1,600 comparisons (2 edaBits and about 150 bit triples each).
    // Two sorts.
    for (kind, per_batch, batches) in
        [(MaterialKind::Triples, 3000, 4), (MaterialKind::BitTriples, 2500, 4), (MaterialKind::EdaBits, 2000, 4)]
    {
        for status in federation.fill(kind, None, per_batch, batches).await.expect("fill") {
            assert_eq!(status.phase, Phase::Succeeded, "{status:?}");
        }
    }
    let program = "input x: fixed[] from each\nlet all = concat(x)\noutput s = sort(all)\noutput d = sort_desc(all)\n";
    let per_party: Vec<Vec<f64>> =
        (0..PARTIES).map(|p| (0..40).map(|i| ((i * 7 + p * 13) % 23) as f64 * 0.25 - 2.0).collect()).collect();
    let mut all: Vec<f64> = per_party.concat();
    all.sort_by(f64::total_cmp);
    let id = JobId::random().to_string();
    for (p, w) in federation.workers.iter().enumerate() {
        let numbers = per_party[p].iter().map(|x| serde_json::Number::from_f64(*x).expect("finite").into()).collect();
        let request = JobRequest {
            id: id.clone(),
            program: program.into(),
            parties: names(),
            inputs: BTreeMap::from([("x".to_string(), numbers)]),
            timeouts: JobTimeouts {
                connect_seconds: Some(10.0),
                round_seconds: Some(10.0),
                total_seconds: Some(120.0),
            },
            preprocessing: Some(Mode::Pool),
        };
        w.client.submit(&request).await.expect("submit");
    }
    for w in &federation.workers {
        let status = w.client.wait(&id, Duration::from_millis(10)).await.expect("status");
        assert_eq!(status.phase, Phase::Succeeded, "at {}: {status:?}", w.name);
        let outputs = status.outputs.as_ref().expect("outputs");
        let vector = |name: &str| match outputs.get(name) {
            Some(OutputValue::Vector(v)) => v.iter().map(|x| x.as_f64().expect("a number")).collect::<Vec<f64>>(),
            other => panic!("output {name}: {other:?}"),
        };
        assert_eq!(vector("s"), all);
        assert_eq!(vector("d"), all.iter().rev().copied().collect::<Vec<_>>());
        assert!(!status.stats.as_ref().expect("stats").batches.is_empty(), "a pool job names its batches");
    }
}
