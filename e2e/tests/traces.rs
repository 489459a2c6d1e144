//! OpenTelemetry traces of real `cohort-worker` and `cohort-dealer`
//! processes, received by an in-process OTLP/HTTP receiver: one trace per
//! party with the job's phases and public attributes, and never an input.

use std::collections::{BTreeMap, BTreeSet};

use cohort_cli::launch::Federation;
use cohort_e2e::launch_options;
use cohort_e2e::otlp::{ReceivedSpan, Receiver, terminate, threads_named, threads_named_settled};
use cohort_worker::fixed::{FixedPoint, encode_int};
use cohort_worker::service::api::{JobStatus, JobTimeouts, Phase};

/// Inputs no span may carry, in any form.
const INT_CANARY: i64 = 7_777_123;
const FIXED_CANARY: f64 = 424_242.5;
const FRAC_BITS: u32 = 8;

const PROGRAM: &str = "fixed_point 8
input x: fixed[] from each
input k: int[] from each
let all = concat(x)
output mean = mean(all)
output variance = variance(all) to bank-a, bank-b
output ktotal = sum(concat(k))
";

/// The batch span processor's thread (names are cut at 15 bytes).
const EXPORTER_THREAD: &str = "OpenTelemetry";

fn parties() -> Vec<String> {
    ["bank-a", "bank-b", "bank-c"].map(String::from).to_vec()
}

fn inputs() -> Vec<BTreeMap<String, Vec<cohort_worker::service::api::InputValue>>> {
    let num = |x: f64| cohort_worker::service::api::InputValue::from(serde_json::Number::from_f64(x).expect("finite"));
    let party = |x: Vec<f64>, k: i64| {
        BTreeMap::from([("x".to_string(), x.into_iter().map(num).collect()), ("k".to_string(), vec![k.into()])])
    };
    vec![party(vec![FIXED_CANARY, 1000.25], INT_CANARY), party(vec![2000.0], 5), party(vec![3000.5, 12.0], 6)]
}

fn timeouts() -> JobTimeouts {
    JobTimeouts { connect_seconds: Some(10.0), round_seconds: Some(20.0), total_seconds: Some(60.0) }
}

/// Byte strings that would betray a canary: decimal forms and the ring
/// encodings (both byte orders).
fn canary_patterns() -> Vec<Vec<u8>> {
    let fixed = FixedPoint::new(FRAC_BITS).expect("precision").encode(FIXED_CANARY).expect("encodes");
    let int = encode_int(INT_CANARY).expect("encodes");
    let mut out: Vec<Vec<u8>> = ["7777123", "424242.5", "424242,5", "4242425"].map(|s| s.as_bytes().to_vec()).to_vec();
    for v in [fixed, int, FIXED_CANARY.to_bits(), (INT_CANARY as f64).to_bits()] {
        out.push(v.to_le_bytes().to_vec());
        out.push(v.to_be_bytes().to_vec());
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn run_job(federation: &Federation) -> (String, Vec<JobStatus>) {
    let statuses = federation.run(PROGRAM, inputs(), timeouts(), |_| {}).await.expect("the job runs");
    for s in &statuses {
        assert_eq!(s.phase, Phase::Succeeded, "{:?}", s.failure);
    }
    (statuses[0].id.clone(), statuses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_one_trace_per_party_with_its_phases_and_no_input() {
    let receiver = Receiver::start().await;
    let mut options = launch_options("warn", None);
    options.env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint())];
    let mut federation = Federation::start(&parties(), &options).await.expect("workers start");
    for w in &federation.workers {
        let pid = w.child.id().expect("running");
        assert_eq!(
            threads_named_settled(pid, EXPORTER_THREAD, 1).await,
            1,
            "worker of {} has one exporter thread",
            w.name
        );
    }
    let (id, statuses) = run_job(&federation).await;

    // Workers drain and flush on SIGTERM: every finished job's spans are
    // exported before the process exits (the batch delay has not passed).
    for w in &mut federation.workers {
        terminate(&mut w.child).await;
    }
    if let Some(dealer) = &mut federation.dealer {
        terminate(dealer).await;
    }

    let spans = receiver.spans();
    let worker_spans: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.service == "cohort-worker").collect();
    let roots: Vec<&ReceivedSpan> = worker_spans.iter().copied().filter(|s| s.span.name == "job").collect();
    assert_eq!(roots.len(), 3, "one job span per party: {roots:#?}");
    let traces = receiver.traces();
    let mut seen_parties = BTreeSet::new();
    for root in &roots {
        let party = root.attr("party").expect("party attribute");
        let index = parties().iter().position(|p| *p == party).expect("a party of the job");
        let stats = statuses[index].stats.as_ref().expect("stats");
        assert!(seen_parties.insert(party.clone()), "two traces for {party}");
        assert_eq!(root.attr("job.id").as_deref(), Some(id.as_str()));
        assert!(root.span.parent_span_id.is_empty(), "`cohort run` sends no trace context: the job span is a root");
        assert_eq!(root.int("protocol.version"), Some(i64::from(stats.protocol_version)));
        assert_eq!(root.int("rounds"), Some(i64::from(stats.rounds)));
        assert_eq!(root.int("layers"), Some(i64::from(stats.layers)));
        assert_eq!(root.int("parties"), Some(3));
        assert_eq!(root.attr("outcome").as_deref(), Some("succeeded"));
        assert_eq!(root.attr("program.hash").as_deref(), Some(statuses[index].program_hash.as_str()));
        assert_eq!(root.int("material.triples"), Some(stats.triples_used as i64));
        assert_eq!(root.int("material.div_pairs"), Some(stats.div_pairs_used as i64));
        let sent = root.int("bytes.sent").expect("bytes.sent");
        assert!(sent >= stats.bytes_sent as i64 && stats.bytes_sent > 0, "bytes.sent {sent} vs {}", stats.bytes_sent);
        assert!(root.int("bytes.received").expect("bytes.received") > 0);

        // The party's trace: the root and its phases, nothing from others.
        let trace = &traces[&root.trace_id()];
        assert!(trace.iter().all(|s| s.service == "cohort-worker"));
        let ids: BTreeSet<String> = trace.iter().map(ReceivedSpan::span_id).collect();
        for s in trace.iter().filter(|s| s.span.name != "job") {
            assert!(ids.contains(&s.parent_span_id()), "{} has its parent in the trace", s.span.name);
        }
        let children: Vec<&str> =
            trace.iter().filter(|s| s.parent_span_id() == root.span_id()).map(|s| s.span.name.as_str()).collect();
        for phase in ["connect", "setup", "preprocessing", "input", "online.layer", "output"] {
            assert!(children.contains(&phase), "{party}: no {phase} span under job (children: {children:?})");
        }
        let layers: Vec<&ReceivedSpan> = trace.iter().filter(|s| s.span.name == "online.layer").collect();
        assert_eq!(layers.len(), stats.layers as usize, "one span per online layer");
        let mut numbers: Vec<i64> = layers.iter().map(|l| l.int("layer").expect("layer index")).collect();
        numbers.sort();
        assert_eq!(numbers, (1..=i64::from(stats.layers)).collect::<Vec<_>>());
        let triples: i64 = layers.iter().map(|l| l.int("material.triples").expect("triples")).sum();
        let div_pairs: i64 = layers.iter().map(|l| l.int("material.div_pairs").expect("div pairs")).sum();
        assert_eq!((triples, div_pairs), (stats.triples_used as i64, stats.div_pairs_used as i64));
    }
    assert_eq!(roots.iter().map(|r| r.trace_id()).collect::<BTreeSet<_>>().len(), 3, "one trace per party");

    // The dealer's span for the job, under its own service name.
    let deal = spans.iter().find(|s| s.service == "cohort-dealer" && s.span.name == "deal").expect("a deal span");
    assert_eq!(deal.attr("job.id").as_deref(), Some(id.as_str()));
    assert_eq!(deal.int("parties"), Some(3));

    // No canary anywhere: not in the raw protobuf, not in any decoded text.
    let patterns = canary_patterns();
    let bodies = receiver.bodies();
    assert!(!bodies.is_empty());
    for body in &bodies {
        for p in &patterns {
            assert!(!contains(body, p), "an exported request carries a canary ({p:?})");
        }
    }
    for s in &spans {
        for text in s.texts() {
            assert!(!text.contains("7777123") && !text.contains("424242"), "span {} carries {text:?}", s.span.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_otel_variables_nothing_is_exported_and_no_exporter_runs() {
    // A receiver exists, but nobody is told about it.
    let receiver = Receiver::start().await;
    let mut federation = Federation::start(&parties(), &launch_options("warn", None)).await.expect("workers start");
    for w in &federation.workers {
        let pid = w.child.id().expect("running");
        assert_eq!(threads_named(pid, EXPORTER_THREAD), 0, "worker of {} runs no exporter thread", w.name);
    }
    run_job(&federation).await;
    for w in &mut federation.workers {
        terminate(&mut w.child).await;
    }
    assert!(receiver.bodies().is_empty());
}

#[tokio::test]
async fn an_unsupported_otlp_protocol_stops_the_processes_at_start() {
    let mut options = launch_options("warn", None);
    options.env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), "http://127.0.0.1:4317".into()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
    ];
    let log_dir = tempfile_dir();
    options.log_dir = Some(log_dir.clone());
    let error = Federation::start(&parties(), &options).await.err().expect("the federation cannot start");
    let logs: String = std::fs::read_dir(&log_dir)
        .expect("logs")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(logs.contains("http/protobuf") && logs.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{error}: {logs}");
    let _ = std::fs::remove_dir_all(&log_dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cohort-traces-{}", cohort_worker::transport::JobId::random()));
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

/// The documented local recipe (docs/observability.md):
/// `OTEL_EXPORTER_OTLP_ENDPOINT=... cohort run examples/salary-stats/run.yaml`.
/// `cohort run` stops its workers and dealer with SIGTERM, so each exports
/// its job's trace before exiting: when `cohort` has exited, the receiver
/// holds one succeeded job trace per party, and the dealer's span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_run_exports_every_partys_job_trace() {
    let receiver = Receiver::start().await;
    let file = cohort_e2e::repo_root().join("examples/salary-stats/run.yaml");
    let out = tokio::process::Command::new(cohort_e2e::bin("cohort"))
        .args(["run", "--format", "json", "--preprocessing", "dealer"])
        .arg(&file)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .output()
        .await
        .expect("cohort runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let spans = receiver.spans();
    let roots: Vec<&ReceivedSpan> =
        spans.iter().filter(|s| s.service == "cohort-worker" && s.span.name == "job").collect();
    let parties: BTreeSet<String> = roots.iter().filter_map(|r| r.attr("party")).collect();
    assert_eq!(
        parties,
        ["alice", "bob", "carol"].map(String::from).into(),
        "every party's job span reached the receiver ({} spans in all)",
        spans.len()
    );
    assert_eq!(roots.len(), 3, "one job span per party");
    let ids: BTreeSet<String> = roots.iter().filter_map(|r| r.attr("job.id")).collect();
    assert_eq!(ids.len(), 1, "one job");
    assert!(roots.iter().all(|r| r.attr("outcome").as_deref() == Some("succeeded")));
    let traces = receiver.traces();
    for root in &roots {
        let trace = &traces[&root.trace_id()];
        assert!(trace.iter().any(|s| s.span.name == "online.layer"), "the trace has its phases");
    }
    let id = ids.into_iter().next().expect("an id");
    let deal = spans.iter().find(|s| s.service == "cohort-dealer" && s.span.name == "deal").expect("the dealer's span");
    assert_eq!(deal.attr("job.id"), Some(id));
}
