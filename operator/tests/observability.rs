//! Every metric the chart's Grafana dashboards and PrometheusRule name is
//! exported by the real binaries: a local federation of `cohort-worker`
//! processes (and its `cohort-dealer`) after a succeeded and a failed job, and the `cohort-operator`
//! process reconciling an MpcCluster and a PreprocessingPool against the
//! in-memory API server. No exported label value carries a job id or a
//! canary input value.
//!
//! Needs the workspace's binaries (`cargo build --workspace --bins`;
//! `cargo test --workspace` builds them).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cohort_cli::launch::Federation;
use cohort_crds::{MpcCluster, PreprocessingPool};
use cohort_e2e::{launch_options, repo_root};
use cohort_worker::service::api::{JobRequest, JobTimeouts, Phase};
use cohort_worker::transport::JobId;
use kube::Api;
use kube::api::PostParams;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

/// Canary inputs: none of their renderings may appear in a label value.
const SENTINELS: [f64; 3] = [7_351_946.125, -4_826_193.5, 6_190_437.75];

/// Metric names (`cohort_` then lowercase letters, digits and `_`) in
/// `text`, not counting ones glued to a longer identifier.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("cohort_").map(|i| i + from) {
        let glued = at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let end = text[at..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |i| i + at);
        if !glued {
            names.insert(text[at..end].to_string());
        }
        from = end;
    }
    names
}

/// The PromQL of a Grafana dashboard: every `expr`, and the templating
/// variables' queries.
fn dashboard_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// Every metric named by the chart's dashboards and alert rules, with the
/// file that names it.
fn referenced() -> BTreeMap<String, BTreeSet<String>> {
    let chart = repo_root().join("charts/cohort");
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for board in ["overview", "oncall", "debug"] {
        let path = chart.join(format!("dashboards/{board}.json"));
        let text = std::fs::read_to_string(&path).expect("the dashboard");
        let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
        assert_eq!(json["schemaVersion"].as_u64(), Some(39), "{board}");
        assert!(json["panels"].as_array().is_some_and(|p| p.len() > 3), "{board} has panels");
        let mut queries = Vec::new();
        dashboard_queries(&json, &mut queries);
        let found: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
        assert!(!found.is_empty(), "{board} names metrics");
        for n in found {
            names.entry(n).or_default().insert(format!("dashboards/{board}.json"));
        }
    }
    let rule = std::fs::read_to_string(chart.join("templates/prometheusrule.yaml")).expect("the rule template");
    let found = metric_names(&rule);
    assert!(found.len() > 5, "the PrometheusRule names metrics: {found:?}");
    for n in found {
        names.entry(n).or_default().insert("templates/prometheusrule.yaml".into());
    }
    names
}

/// The metric names an exposition exports: every sample's name and every
/// family's `# TYPE` (a counter family `x` exports `x_total`, a histogram
/// `x` exports `x_bucket`, `x_sum` and `x_count`).
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
            names.insert(name.to_string());
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for s in ["bucket", "sum", "count"] {
                        names.insert(format!("{name}_{s}"));
                    }
                }
                _ => {}
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Every label value of the samples in an exposition.
fn label_values(text: &str) -> Vec<String> {
    let mut values = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, labels)) = line.split_once('{') else { continue };
        let Some((labels, _)) = labels.rsplit_once('}') else { continue };
        let mut rest = labels;
        while let Some((_, after)) = rest.split_once("=\"") {
            let Some(end) = after.find('"') else { break };
            values.push(after[..end].to_string());
            rest = &after[end + 1..];
        }
    }
    values
}

fn numbers(values: &[f64]) -> Vec<cohort_worker::service::api::InputValue> {
    values.iter().map(|x| serde_json::Number::from_f64(*x).expect("finite").into()).collect()
}

/// A local federation of three workers: one job with canary inputs that
/// succeeds, one that fails at setup (the parties submit different
/// programs). Returns each worker's `/metrics`, the dealer's (the federation
/// runs in dealer mode) and the job ids.
async fn worker_expositions() -> (Vec<String>, String, Vec<String>) {
    let parties: Vec<String> = (0..3).map(|i| format!("party-{i}")).collect();
    let federation = Federation::start(&parties, &launch_options("warn", None)).await.expect("federation starts");
    let timeouts = JobTimeouts { connect_seconds: Some(10.0), round_seconds: Some(5.0), total_seconds: Some(30.0) };
    let program = "input x: fixed[] from each\nlet all = concat(x)\noutput m = mean(all)\noutput v = variance(all)\n";
    let inputs = SENTINELS.iter().map(|s| BTreeMap::from([("x".to_string(), numbers(&[*s, *s + 1.0]))])).collect();
    let ok = federation.run(program, inputs, timeouts, |_| {}).await.expect("the job runs");
    assert!(ok.iter().all(|s| s.phase == Phase::Succeeded), "{ok:?}");

    let failed_id = JobId::random().to_string();
    for (i, w) in federation.workers.iter().enumerate() {
        let p = if i == 0 { "input x: fixed[] from each\noutput m = mean(concat(x)) + 1\n" } else { program };
        let inputs = BTreeMap::from([("x".to_string(), numbers(&[SENTINELS[i]]))]);
        let request = JobRequest {
            id: failed_id.clone(),
            program: p.into(),
            parties: parties.clone(),
            inputs,
            timeouts,
            preprocessing: Default::default(),
        };
        w.client.submit(&request).await.expect("submit");
    }
    for w in &federation.workers {
        let s = w.client.wait(&failed_id, Duration::from_millis(10)).await.expect("wait");
        assert_eq!(s.phase, Phase::Failed, "{s:?}");
    }
    let mut texts = Vec::new();
    for w in &federation.workers {
        let (code, body) = http_get(&w.metrics, "/metrics").await.expect("worker metrics");
        assert_eq!(code, 200);
        texts.push(body);
    }
    let (code, dealer) = http_get(&federation.dealer_metrics, "/metrics").await.expect("dealer metrics");
    assert_eq!(code, 200);
    let ids = vec![ok[0].id.clone(), failed_id];
    (texts, dealer, ids)
}

/// The `cohort-operator` process against the in-memory API server, once it
/// leads and has reconciled an MpcCluster (peer probes, certificate plan)
/// and a PreprocessingPool.
async fn operator_exposition() -> String {
    let server = api_server().await;
    let client = server.client();
    let operator = spawn_operator(&server, "bank-a");
    let metrics = operator.metrics.clone();
    eventually("the Lease", WAIT, || async {
        let (_, body) = http_get(&metrics, "/metrics").await?;
        if body.contains("cohort_operator_leader 1") { Ok(()) } else { Err("not the leader yet".into()) }
    })
    .await;

    bank_a_trust(&client).await;
    let cluster: MpcCluster = example("examples/k8s/bank-a.yaml", "MpcCluster");
    Api::<MpcCluster>::namespaced(client.clone(), "bank-a")
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create the MpcCluster");
    let pool: PreprocessingPool = example("examples/k8s/bank-a.yaml", "PreprocessingPool");
    Api::<PreprocessingPool>::namespaced(client.clone(), "bank-a")
        .create(&PostParams::default(), &pool)
        .await
        .expect("create the PreprocessingPool");

    let body = eventually("the cluster and pool gauges", WAIT, || async {
        let (_, body) = http_get(&metrics, "/metrics").await?;
        let wanted = [
            "cohort_operator_cluster_peers{namespace=\"bank-a\",name=\"consortium\"} 2",
            "cohort_operator_cluster_peers_reachable{namespace=\"bank-a\",name=\"consortium\"}",
            "cohort_operator_certificate_expiry_timestamp_seconds{namespace=\"bank-a\",name=\"consortium\",certificate=\"ca\"}",
            "cohort_operator_certificate_expiry_timestamp_seconds{namespace=\"bank-a\",name=\"consortium\",certificate=\"worker\"}",
            "cohort_operator_certificate_expiry_timestamp_seconds{namespace=\"bank-a\",name=\"consortium\",certificate=\"operator\"}",
            "cohort_operator_pool_ready{namespace=\"bank-a\",name=\"default\"}",
            "cohort_operator_pool_below_watermark{namespace=\"bank-a\",name=\"default\"} 0",
            "cohort_operator_leader_transitions_total 1",
        ];
        match wanted.iter().find(|w| !body.contains(*w)) {
            None => Ok(body),
            Some(missing) => Err(format!("no {missing}")),
        }
    })
    .await;
    // The binary's requests (the Lease included) are what the chart grants.
    assert_chart_rbac_allows(&server);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboards_and_alerts_name_is_exported_and_labels_leak_nothing() {
    let (workers, dealer, job_ids) = worker_expositions().await;
    let operator = operator_exposition().await;

    // The failed job was classified: every party saw the consent digests
    // differ at setup.
    for text in &workers {
        assert!(text.contains("cohort_worker_jobs_total{outcome=\"succeeded\"} 1"), "{text}");
        assert!(text.contains("cohort_worker_jobs_total{outcome=\"failed\"} 1"), "{text}");
        assert!(text.contains("cohort_worker_job_failures_total{reason=\"setup_mismatch\"} 1"), "{text}");
        assert!(text.contains("cohort_worker_job_failures_total{reason=\"protocol\"} 0"), "{text}");
    }

    let mut exports = exported(&operator);
    exports.extend(exported(&dealer));
    for text in &workers {
        exports.extend(exported(text));
    }
    let mut missing = Vec::new();
    for (name, files) in referenced() {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        if !exports.contains(&name) && !exports.contains(base) {
            missing.push(format!("{name} (named in {})", files.into_iter().collect::<Vec<_>>().join(", ")));
        }
    }
    assert!(missing.is_empty(), "not exported by the binaries: {missing:#?}\nexported: {exports:#?}");

    // Labels are bounded and public: no job id, no input value. (Sample
    // values are numbers; a sentinel's digits may recur in one by chance,
    // so only job ids are searched for in the whole text.)
    for text in workers.iter().chain([&operator, &dealer]) {
        for id in &job_ids {
            assert!(!text.contains(id.as_str()), "the exposition carries job id {id}");
        }
    }
    let mut needles: Vec<String> = job_ids;
    for s in SENTINELS {
        let fp = cohort_worker::fixed::FixedPoint::new(16).expect("fp");
        let encoded = fp.encode(s).expect("encodes");
        needles.extend([format!("{s}"), format!("{}", s.trunc() as i64), format!("{encoded}"), format!("{encoded:x}")]);
    }
    for text in workers.iter().chain([&operator, &dealer]) {
        for value in label_values(text) {
            for needle in &needles {
                assert!(!value.contains(needle.as_str()), "label value {value:?} carries {needle}");
            }
        }
    }
}
