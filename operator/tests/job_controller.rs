//! The MpcJob controller end to end, without a cluster: three parties in
//! three namespaces of the in-memory API server, each with its MpcCluster,
//! its control-API client Secret and its inputs in Secrets; the workers are
//! real `cohort-worker` processes over mTLS. The controller compiles,
//! resolves inputs, dispatches, and stores the result Secret before
//! `Succeeded`; the result matches the program evaluated in the clear. A
//! restarted controller neither reruns the job nor loses its result;
//! deleting a running job cancels it on the worker; a compile error and a
//! missing input become conditions. A federation running `replicated-3`
//! runs the same job with no preprocessing at all (the controller sends no
//! mode, which such workers require). A job drawing on an `ot` pool is
//! resubmitted, after a peer refused it for capacity, in the same
//! `preprocessing: pool` mode as it was first submitted.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cohort_cli::launch::{FEDERATION, Federation};
use cohort_crds::conditions::{find_condition, types};
use cohort_crds::job::JobPhase;
use cohort_crds::{MpcCluster, MpcJob, PreprocessingPool};
use cohort_e2e::{expected_outputs, json_values, launch_options, repo_root};
use cohort_operator::controller::{self, ControlEndpoints, ShardRef};
use cohort_operator::leader::stopped;
use cohort_worker::service::api::Phase;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use support::*;

const PARTIES: [&str; 3] = ["alice", "bob", "carol"];
const WAIT: Duration = Duration::from_secs(60);

/// Each party's namespace is its name; its workers are the federation's.
/// A result Secret's outputs against the plaintext answers, within the
/// fixed-point truncation error.
fn assert_outputs_close(
    party: &str,
    data: BTreeMap<String, k8s_openapi::ByteString>,
    expected: &BTreeMap<String, Vec<f64>>,
) {
    for (name, bytes) in data {
        let got = json_values(&serde_json::from_slice(&bytes.0).expect("JSON"));
        for (g, w) in got.iter().zip(&expected[&name]) {
            let tolerance = 1e-2 + 1e-4 * w.abs();
            assert!((g - w).abs() <= tolerance, "{party}: {name}: got {g}, expected {w}");
        }
    }
}

fn endpoints(federation: &Federation) -> ControlEndpoints {
    let by_party: BTreeMap<String, String> =
        federation.workers.iter().map(|w| (w.name.clone(), w.control.clone())).collect();
    Arc::new(move |s: &ShardRef<'_>| by_party.get(s.party).cloned().unwrap_or_default())
}

fn cluster(party: &str, protocol: &str) -> MpcCluster {
    let parties: Vec<serde_json::Value> = PARTIES
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut v = serde_json::json!({"name": p, "endpoint": format!("{p}.example:{}", 7443 + i)});
            if *p != party {
                v["trust"] = serde_json::json!({"secretRef": {"name": format!("{p}-ca")}});
            }
            v
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "cohort.dev/v1alpha1", "kind": "MpcCluster",
        "metadata": {"name": "federation", "namespace": party},
        "spec": {"self": party, "federation": FEDERATION, "parties": parties,
                 "protocol": {"name": protocol, "version": 1}, "shards": 1}
    }))
    .expect("an MpcCluster")
}

fn job(party: &str, name: &str, program: &str, bind: bool) -> MpcJob {
    let (key, column) = if party == "bob" { ("salaries.txt", None) } else { ("salaries.csv", Some("salary")) };
    let mut inputs = serde_json::json!({});
    if bind {
        inputs["salaries"] = serde_json::json!({"secretKeyRef": {"name": "payroll", "key": key}, "column": column});
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "cohort.dev/v1alpha1", "kind": "MpcJob",
        "metadata": {"name": name, "namespace": party},
        "spec": {"clusterRef": {"name": "federation"}, "program": program, "inputs": inputs,
                 "timeouts": {"connect": "10s", "round": "10s", "total": "60s"}}
    }))
    .expect("an MpcJob")
}

/// What the operator finds in a party's namespace: a Ready MpcCluster and
/// the operator-client Secret (the controller identity the workers trust,
/// and this party's CA that issued the workers' certificates).
async fn party_namespace(client: &Client, federation: &Federation, party: &str, protocol: &str) {
    let clusters: Api<MpcCluster> = Api::namespaced(client.clone(), party);
    clusters.create(&PostParams::default(), &cluster(party, protocol)).await.expect("create the MpcCluster");
    let ready = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "AllShardsReady",
        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    clusters.patch_status("federation", &PatchParams::default(), &Patch::Merge(&ready)).await.expect("mark Ready");
    let (_, cert, key) = federation.controller_files();
    let (party_ca, _, _) = federation.party_files(party);
    let read = |p: std::path::PathBuf| std::fs::read(p).expect("credential file");
    put_secret(
        client,
        party,
        "federation-operator-client",
        &[("tls.crt", &read(cert)), ("tls.key", &read(key)), ("ca.crt", &read(party_ca))],
    )
    .await;
    let data = repo_root().join("examples/salary-stats");
    let (key, file) =
        if party == "bob" { ("salaries.txt", "bob.txt".to_string()) } else { ("salaries.csv", format!("{party}.csv")) };
    put_secret(client, party, "payroll", &[(key, &read(data.join(file)))]).await;
}

async fn phase_of(api: &Api<MpcJob>, name: &str) -> Result<(MpcJob, JobPhase), String> {
    let j = api.get(name).await.map_err(|e| e.to_string())?;
    let phase = j.status.as_ref().and_then(|s| s.phase).ok_or("no phase yet")?;
    Ok((j, phase))
}

async fn wait_phase(api: &Api<MpcJob>, name: &str, want: JobPhase) -> MpcJob {
    eventually(&format!("{name} {want:?}"), WAIT, || async {
        let (j, phase) = phase_of(api, name).await?;
        if phase == want {
            Ok(j)
        } else {
            Err(format!("{phase:?}: {:?}", j.status.as_ref().and_then(|s| s.reason.clone())))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_parties_run_a_job_through_the_controller_and_get_the_plaintext_answer() {
    let mut options = launch_options("warn", None);
    options.controller_name = "operator".into();
    let names: Vec<String> = PARTIES.map(String::from).to_vec();
    let federation = Federation::start(&names, &options).await.expect("workers start");
    let server = api_server().await;
    let client = server.client();
    for party in PARTIES {
        party_namespace(&client, &federation, party, "additive-semi-honest").await;
    }
    let program = std::fs::read_to_string(repo_root().join("examples/salary-stats/salary.cohort")).expect("program");
    let start = |instance: &str| {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let ctx = context(operator_client(&server), instance, endpoints(&federation));
        let metrics = ctx.metrics.clone();
        (stop_tx, tokio::spawn(controller::job::run(ctx, None, stopped(stop_rx))), metrics)
    };
    let (stop_tx, running, _) = start("first");

    for party in PARTIES {
        let api: Api<MpcJob> = Api::namespaced(client.clone(), party);
        api.create(&PostParams::default(), &job(party, "salary-stats", &program, true))
            .await
            .expect("create the MpcJob");
    }
    let mut results = BTreeMap::new();
    for party in PARTIES {
        let api: Api<MpcJob> = Api::namespaced(client.clone(), party);
        let done = wait_phase(&api, "salary-stats", JobPhase::Succeeded).await;
        let status = done.status.clone().expect("status");
        assert!(status.rounds.unwrap_or(0) > 0 && status.bytes_sent.unwrap_or(0) > 0, "{status:?}");
        assert_eq!(status.program_hash, Some(cohort_crds::program_hash(&program)));
        assert_eq!(status.job_id, Some(cohort_crds::derive_job_id(FEDERATION, "salary-stats")));
        assert!(status.start_time.is_some() && status.completion_time.is_some());
        assert!(find_condition(&status.conditions, types::COMPLETE).is_some_and(|c| c.status == "True"));
        let secret_name = status.result.expect("result").secret_name;
        let secret = Api::<Secret>::namespaced(client.clone(), party).get(&secret_name).await.expect("result Secret");
        let owner = &secret.metadata.owner_references.clone().expect("owned")[0];
        assert_eq!((owner.kind.as_str(), Some(owner.uid.clone())), ("MpcJob", done.metadata.uid.clone()));
        results.insert(party, secret);
    }
    let expected = expected_outputs(&repo_root().join("examples/salary-stats/run.yaml"));
    for (party, secret) in &results {
        let data = secret.data.clone().unwrap_or_default();
        // variance goes to alice and bob only.
        let want: Vec<&str> = if *party == "carol" { vec!["count", "mean"] } else { vec!["count", "mean", "variance"] };
        assert_eq!(data.keys().map(String::as_str).collect::<Vec<_>>(), want, "{party}'s outputs");
        assert_outputs_close(party, data, &expected);
    }

    // A restarted controller (a new leader) resubmits: the workers return
    // the stored result, nothing runs twice, the status stays.
    assert_chart_rbac_allows(&server);
    stop_tx.send(true).expect("stop");
    tokio::time::timeout(WAIT, running).await.expect("stops").expect("no panic");
    let jobs_a: Api<MpcJob> = Api::namespaced(client.clone(), "alice");
    let before = jobs_a.get("salary-stats").await.expect("job").status;
    let (stop_tx, running, metrics) = start("second");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(jobs_a.get("salary-stats").await.expect("job").status, before, "a finished job is left alone");
    for w in &federation.workers {
        let metrics = reqwest_metrics(&w.metrics).await;
        assert!(metrics.contains("cohort_worker_jobs_total{outcome=\"succeeded\"} 1"), "{}: {metrics}", w.name);
    }

    // A compile error fails the job, naming line and column.
    jobs_a
        .create(&PostParams::default(), &{
            let mut broken = job("alice", "broken", "input x: fixed[] from each\noutput y = sum(z)\n", false);
            broken.spec.ttl_seconds_after_finished = Some(1);
            broken
        })
        .await
        .expect("create");
    let broken = wait_phase(&jobs_a, "broken", JobPhase::Failed).await;
    let status = broken.status.expect("status");
    assert_eq!(status.reason.as_deref(), Some("CompileError"));
    let valid = find_condition(&status.conditions, types::PROGRAM_VALID).expect("ProgramValid");
    assert!(valid.status == "False" && valid.message.starts_with("line 2, column"), "{valid:?}");
    // Its TTL (1 s) deletes it once it finished.
    eventually("the TTL deletes the finished job", WAIT, || async {
        match jobs_a.get_opt("broken").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".to_string()),
        }
    })
    .await;

    // A result Secret name that is taken (here: the input Secret) fails
    // the job before it runs, and the Secret is left alone.
    let mut taken = job("alice", "taken", &program, true);
    taken.spec.outputs = Some(cohort_crds::job::OutputsSpec { secret_name: Some("payroll".into()) });
    jobs_a.create(&PostParams::default(), &taken).await.expect("create");
    let failed = wait_phase(&jobs_a, "taken", JobPhase::Failed).await;
    assert_eq!(failed.status.expect("status").reason.as_deref(), Some("ResultSecretConflict"));
    let payroll = Api::<Secret>::namespaced(client.clone(), "alice").get("payroll").await.expect("payroll");
    assert!(payroll.metadata.owner_references.is_none(), "a user's Secret is never adopted");

    // A missing input Secret: Waiting with the reason, until it appears.
    let jobs_c: Api<MpcJob> = Api::namespaced(client.clone(), "carol");
    let mut lonely = job("carol", "lonely", &program, true);
    lonely.spec.inputs.get_mut("salaries").expect("bound").secret_key_ref.as_mut().expect("secret").name =
        "absent".into();
    jobs_c.create(&PostParams::default(), &lonely).await.expect("create");
    let waiting = wait_phase(&jobs_c, "lonely", JobPhase::Waiting).await;
    assert_eq!(waiting.status.expect("status").reason.as_deref(), Some("InputNotFound"));

    // Once the input exists, carol alone runs it: her worker waits for the
    // other parties, and deleting the MpcJob cancels it there.
    let data = std::fs::read(repo_root().join("examples/salary-stats/carol.csv")).expect("data");
    put_secret(&client, "carol", "absent", &[("salaries.csv", &data)]).await;
    let running_job = wait_phase(&jobs_c, "lonely", JobPhase::Running).await;
    let id = running_job.status.expect("status").job_id.expect("job id");
    jobs_c.delete("lonely", &DeleteParams::default()).await.expect("delete");
    eventually("the MpcJob is gone", WAIT, || async {
        match jobs_c.get_opt("lonely").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(j) => Err(format!("finalizers {:?}", j.metadata.finalizers)),
        }
    })
    .await;
    let carol = federation.workers.iter().find(|w| w.name == "carol").expect("carol");
    let on_worker = carol.client.status(&id).await.expect("the worker knows the job");
    assert_eq!(on_worker.phase, Phase::Cancelled);
    let counted = metrics.encode();
    let cancelled =
        |l: &&str| l.starts_with("cohort_operator_jobs_finished_total{") && l.contains("outcome=\"cancelled\"");
    assert!(counted.lines().filter(cancelled).any(|l| l.ends_with(" 1")), "{counted}");

    assert_chart_rbac_allows(&server);
    stop_tx.send(true).expect("stop");
    tokio::time::timeout(WAIT, running).await.expect("stops").expect("no panic");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_3_federation_runs_a_job_through_the_controller_without_preprocessing() {
    let mut options = launch_options("warn", None);
    options.controller_name = "operator".into();
    options.protocol = cohort_worker::protocol::ProtocolName::Replicated3;
    let names: Vec<String> = PARTIES.map(String::from).to_vec();
    let federation = Federation::start(&names, &options).await.expect("workers start");
    for w in &federation.workers {
        assert_eq!(w.client.health().await.expect("health").protocol, "replicated-3", "{}", w.name);
    }
    let server = api_server().await;
    let client = server.client();
    for party in PARTIES {
        party_namespace(&client, &federation, party, "replicated-3").await;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = context(operator_client(&server), "rep3", endpoints(&federation));
    let running = tokio::spawn(controller::job::run(ctx, None, stopped(stop_rx)));

    let program = std::fs::read_to_string(repo_root().join("examples/salary-stats/salary.cohort")).expect("program");
    for party in PARTIES {
        let api: Api<MpcJob> = Api::namespaced(client.clone(), party);
        api.create(&PostParams::default(), &job(party, "salary-stats", &program, true)).await.expect("create");
    }
    let expected = expected_outputs(&repo_root().join("examples/salary-stats/run.yaml"));
    for party in PARTIES {
        let api: Api<MpcJob> = Api::namespaced(client.clone(), party);
        let done = wait_phase(&api, "salary-stats", JobPhase::Succeeded).await;
        let status = done.status.clone().expect("status");
        assert!(status.rounds.unwrap_or(0) > 0, "{status:?}");
        let secret_name = status.result.expect("result").secret_name;
        let secret = Api::<Secret>::namespaced(client.clone(), party).get(&secret_name).await.expect("result Secret");
        assert_outputs_close(party, secret.data.unwrap_or_default(), &expected);
    }

    assert_chart_rbac_allows(&server);
    stop_tx.send(true).expect("stop");
    tokio::time::timeout(WAIT, running).await.expect("stops").expect("no panic");
}

/// A job whose PreprocessingPool is in mode `ot` is dispatched with
/// `preprocessing: pool`, and so is every resubmission of it once it runs:
/// here carol's worker (`limits.maxJobs: 1`) is busy, refuses the job for
/// capacity and fails it at alice and bob with a retryable failure, their
/// controllers resubmit it while it is Running, and once carol has a slot
/// all three run it. A resubmission in another mode would be refused by
/// the worker that holds the job (the mode is in its consent digest) and
/// fail the MpcJob with `JobIdConflict`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_job_resubmitted_after_a_retryable_failure_keeps_the_pool_mode() {
    use cohort_worker::preprocessing::Mode;
    use cohort_worker::service::api::{JobRequest, JobTimeouts};
    let mut options = launch_options("warn", None);
    options.controller_name = "operator".into();
    options.preprocessing = Mode::Pool;
    let names: Vec<String> = PARTIES.map(String::from).to_vec();
    let mut federation = Federation::start(&names, &options).await.expect("workers start");
    // carol's worker runs one job at a time.
    let carol = PARTIES.iter().position(|p| *p == "carol").expect("carol");
    let path = federation.workers[carol].config.clone();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("carol's configuration")).expect("JSON");
    config["limits"] = serde_json::json!({"maxJobs": 1});
    std::fs::write(&path, config.to_string()).expect("write carol's configuration");
    federation.restart_worker(carol).await.expect("carol's worker restarts");

    let server = api_server().await;
    let client = server.client();
    for party in PARTIES {
        party_namespace(&client, &federation, party, "additive-semi-honest").await;
        // An `ot` pool, Ready: its material is in the workers' own pools.
        let pools: Api<PreprocessingPool> = Api::namespaced(client.clone(), party);
        let pool: PreprocessingPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "cohort.dev/v1alpha1", "kind": "PreprocessingPool",
            "metadata": {"name": "pool", "namespace": party},
            "spec": {"clusterRef": {"name": "federation"}, "generator": {"mode": "ot"},
                     "material": [{"kind": "beaver-triple", "target": 1000, "lowWatermark": 10}]}
        }))
        .expect("a pool");
        pools.create(&PostParams::default(), &pool).await.expect("create the pool");
        let ready = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True",
            "reason": "PoolReady", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        pools.patch_status("pool", &PatchParams::default(), &Patch::Merge(&ready)).await.expect("mark Ready");
    }

    // carol's only slot is taken by a job no other party runs.
    let blocker = cohort_worker::transport::JobId::random().to_string();
    let waits = JobTimeouts { connect_seconds: Some(120.0), round_seconds: Some(120.0), total_seconds: Some(120.0) };
    let request = JobRequest {
        id: blocker.clone(),
        program: "input x: int from alice\noutput y = x to alice\n".into(),
        parties: names.clone(),
        inputs: BTreeMap::new(),
        timeouts: waits,
        preprocessing: Some(Mode::Pool),
    };
    federation.workers[carol].client.submit(&request).await.expect("carol admits the blocker");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = context(operator_client(&server), "pool", endpoints(&federation));
    let running = tokio::spawn(controller::job::run(ctx, None, stopped(stop_rx)));
    // No material is needed, so the pools may be empty: what is checked is
    // the mode every party's workers are told.
    let program = "fixed_point 8\ninput salaries: fixed[] from each\nlet all = concat(salaries)\n\
                   output count = len(all)\noutput total = sum(all)\n";
    for party in PARTIES {
        let mut j = job(party, "pooled", program, true);
        j.spec.preprocessing =
            Some(serde_json::from_value(serde_json::json!({"poolRef": {"name": "pool"}})).expect("a ref"));
        Api::<MpcJob>::namespaced(client.clone(), party).create(&PostParams::default(), &j).await.expect("create");
    }

    // carol refuses the job twice (her controller retries every 5 s), so
    // alice's controller resubmitted it at least once while it was Running,
    // unless that resubmission failed the job.
    let jobs_a: Api<MpcJob> = Api::namespaced(client.clone(), "alice");
    let alice = &federation.workers[PARTIES.iter().position(|p| *p == "alice").expect("alice")];
    let resubmitted = eventually("alice's job refused by carol twice", WAIT, || async {
        let (j, phase) = phase_of(&jobs_a, "pooled").await?;
        if phase == JobPhase::Failed {
            return Ok(Err(j.status));
        }
        let metrics = reqwest_metrics(&alice.metrics).await;
        let refused = metrics
            .lines()
            .find(|l| l.starts_with("cohort_worker_jobs_refused_total{reason=\"peer_capacity\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if refused >= 2.0 { Ok(Ok(())) } else { Err(format!("{phase:?}, {refused} refusal(s)")) }
    })
    .await;
    if let Err(status) = resubmitted {
        panic!("the resubmission failed alice's job: {status:?}");
    }

    // carol's slot frees: every party runs the job, in the same mode.
    federation.workers[carol].client.cancel(&blocker).await.expect("cancel the blocker");
    let expected = expected_outputs(&repo_root().join("examples/salary-stats/run.yaml"));
    let count = expected["count"][0];
    let total = expected["mean"][0] * count;
    for party in PARTIES {
        let api: Api<MpcJob> = Api::namespaced(client.clone(), party);
        let done = wait_phase(&api, "pooled", JobPhase::Succeeded).await;
        let secret_name = done.status.expect("status").result.expect("result").secret_name;
        let secret = Api::<Secret>::namespaced(client.clone(), party).get(&secret_name).await.expect("result Secret");
        let data = secret.data.unwrap_or_default();
        let value = |name: &str| json_values(&serde_json::from_slice(&data[name].0).expect("JSON"))[0];
        assert_eq!(value("count"), count, "{party}");
        // The plaintext mean is rounded to 1/256, so its product with the count is off by up to count/256.
        assert!(
            (value("total") - total).abs() <= count / 128.0 + 1e-6 * total.abs(),
            "{party}: {} vs {total}",
            value("total")
        );
    }

    assert_chart_rbac_allows(&server);
    stop_tx.send(true).expect("stop");
    tokio::time::timeout(WAIT, running).await.expect("stops").expect("no panic");
}

/// GET a worker's `/metrics` (plain HTTP on loopback).
async fn reqwest_metrics(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("metrics port");
    tcp.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut body = String::new();
    tcp.read_to_string(&mut body).await.expect("response");
    body
}
