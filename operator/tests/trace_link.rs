//! The operator's dispatch span and the worker's job span are one trace:
//! the dispatcher sends its span's W3C `traceparent` on submit, and the
//! worker (a real `cohort-worker` process exporting over OTLP to an
//! in-process receiver) parents the job's root span on it — once, however
//! often the job is submitted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_cli::launch::Federation;
use cohort_e2e::launch_options;
use cohort_e2e::otlp::{Receiver, terminate};
use cohort_operator::dispatch::{Dispatcher, Job};
use cohort_worker::service::api::{JobTimeouts, Phase};
use cohort_worker::transport::JobId;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::Instrument;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

/// The test process's spans, kept in memory.
#[derive(Clone, Debug, Default)]
struct Kept(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Kept {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().expect("lock").extend(batch);
        Ok(())
    }
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatch_span_is_the_parent_of_the_workers_job_span() {
    let receiver = Receiver::start().await;
    let mut options = launch_options("warn", None);
    options.env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint())];
    let names: Vec<String> = ["bank-a", "bank-b"].map(String::from).to_vec();
    let mut federation = Federation::start(&names, &options).await.expect("workers start");

    let kept = Kept::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(kept.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("cohort-operator-test")));

    let id = JobId::random().to_string();
    let timeouts = JobTimeouts { connect_seconds: Some(10.0), round_seconds: Some(20.0), total_seconds: Some(60.0) };
    let workers: Vec<(String, String)> =
        federation.workers.iter().map(|w| (w.name.clone(), w.control.clone())).collect();
    let controller = federation.controller.clone();
    let dispatch_all = async {
        let mut dispatchers = Vec::new();
        for (i, (party, control)) in workers.iter().enumerate() {
            let dispatcher = Dispatcher::new(controller.current(), party.clone(), Duration::from_millis(20));
            let job = Job {
                id: id.clone(),
                program: "input x: int[] from each\noutput total = sum(concat(x))\n".into(),
                parties: names.clone(),
                inputs: BTreeMap::from([("x".to_string(), vec![serde_json::Number::from(i as i64 + 1).into()])]),
                timeouts,
                preprocessing: Some(cohort_worker::preprocessing::Mode::Dealer),
            };
            dispatcher.submit(control, &job).await.expect("submitted");
            // Idempotent: the worker starts no second job span.
            dispatcher.submit(control, &job).await.expect("submitted again");
            dispatchers.push((dispatcher, control));
        }
        for (dispatcher, control) in &dispatchers {
            let status = dispatcher.follow(control, &id, |_| {}).await.expect("followed");
            assert_eq!(status.phase, Phase::Succeeded, "{:?}", status.failure);
        }
    };
    // The span is made under the test's subscriber, as the operator's
    // reconcile span is under its own.
    async { dispatch_all.instrument(tracing::info_span!("reconcile", kind = "MpcJob")).await }
        .with_subscriber(subscriber)
        .await;
    provider.shutdown().expect("the test's spans are kept");
    for w in &mut federation.workers {
        terminate(&mut w.child).await;
    }

    let ours = kept.0.lock().expect("lock").clone();
    let reconcile = ours.iter().find(|s| s.name == "reconcile").expect("the reconcile span");
    let trace_id = reconcile.span_context.trace_id().to_string();
    let worker_spans = receiver.spans();
    let jobs: Vec<_> = worker_spans.iter().filter(|s| s.span.name == "job").collect();
    assert_eq!(jobs.len(), 2, "one job span per worker, however often it was submitted: {jobs:#?}");
    for job in jobs {
        let party = job.attr("party").expect("party");
        assert_eq!(job.trace_id(), trace_id, "{party}'s job span is in the operator's trace");
        // Its parent: the first dispatch.submit to this party.
        let mut submits: Vec<&SpanData> = ours
            .iter()
            .filter(|s| s.name == "dispatch.submit" && attr(s, "party").as_deref() == Some(party.as_str()))
            .collect();
        submits.sort_by_key(|s| s.start_time);
        assert_eq!(submits.len(), 2);
        assert_eq!(job.parent_span_id(), submits[0].span_context.span_id().to_string(), "{party}");
        assert_eq!(submits[0].parent_span_id, reconcile.span_context.span_id());
        assert_eq!(attr(submits[0], "job.id").as_deref(), Some(id.as_str()));
        // The job's phases follow in the same trace.
        let phases = worker_spans.iter().filter(|s| s.trace_id() == trace_id && s.parent_span_id() == job.span_id());
        assert!(phases.clone().any(|s| s.span.name == "setup"), "{party}: setup under job");
    }
}
