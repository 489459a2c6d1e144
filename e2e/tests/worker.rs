//! The worker processes through their control API: real `cohort-worker`
//! and `cohort-dealer` processes on loopback mTLS, driven the way the
//! operator drives them. Covers 2, 3 and 5 parties, idempotent submission,
//! access control, draining, consent (program mismatch), a party killed
//! mid-job, certificates refused at the handshake, and a canary: sentinel
//! inputs never appear in a log line (debug level) or an error.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use cohort_cli::launch::Federation;
use cohort_e2e::{http_get, launch_options};
use cohort_worker::preprocessing::Mode;
use cohort_worker::protocol::ProtocolName;
use cohort_worker::service::api::{JobRequest, JobStatus, JobTimeouts, OutputValue, Phase};
use cohort_worker::service::control::ControlClient;
use cohort_worker::transport::{JobId, PartyCa, Role, TlsIdentity};

type Inputs = BTreeMap<String, Vec<cohort_worker::service::api::InputValue>>;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("party-{i}")).collect()
}

fn fixed(name: &str, values: &[f64]) -> Inputs {
    let numbers = values.iter().map(|x| serde_json::Number::from_f64(*x).expect("finite").into()).collect();
    BTreeMap::from([(name.to_string(), numbers)])
}

fn timeouts(total: f64) -> JobTimeouts {
    JobTimeouts { connect_seconds: Some(10.0), round_seconds: Some(5.0), total_seconds: Some(total) }
}

async fn start(n: usize, log_dir: Option<std::path::PathBuf>) -> Federation {
    Federation::start(&names(n), &launch_options("warn", log_dir)).await.expect("federation starts")
}

fn scalar(status: &JobStatus, name: &str) -> f64 {
    match status.outputs.as_ref().and_then(|o| o.get(name)) {
        Some(v @ OutputValue::Scalar(_)) => v.as_f64().expect("a number"),
        other => panic!("output {name}: {other:?} in {status:?}"),
    }
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-2 + 1e-4 * want.abs()
}

const STATS: &str = "\
input x: fixed[] from each
let all = concat(x)
output n = len(all)
output total = sum(all)
output mean = mean(all)
output first_dot = dot(x[party-0], x[party-1]) to party-0
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_with_two_three_and_five_parties_match_the_clear_computation() {
    for n in [2, 3, 5] {
        let federation = start(n, None).await;
        let data: Vec<Vec<f64>> =
            (0..n).map(|p| (0..50).map(|i| ((p * 131 + i * 17) % 200) as f64 * 0.75 - 40.0).collect()).collect();
        let all: Vec<f64> = data.concat();
        let inputs = data.iter().map(|d| fixed("x", d)).collect();
        let statuses = federation.run(STATS, inputs, timeouts(60.0), |_| {}).await.expect("job runs");
        let total: f64 = all.iter().sum();
        let dot: f64 = data[0].iter().zip(&data[1]).map(|(a, b)| a * b).sum();
        for (p, status) in statuses.iter().enumerate() {
            assert_eq!(status.phase, Phase::Succeeded, "{n} parties, party {p}: {:?}", status.failure);
            assert_eq!(scalar(status, "n"), all.len() as f64);
            assert!(close(scalar(status, "total"), total));
            assert!(close(scalar(status, "mean"), total / all.len() as f64));
            let outputs = status.outputs.as_ref().expect("outputs");
            if p == 0 {
                assert!(close(scalar(status, "first_dot"), dot), "dot at party 0");
            } else {
                assert!(!outputs.contains_key("first_dot"), "only party-0 receives first_dot");
            }
            let stats = status.stats.as_ref().expect("stats");
            assert_eq!(stats.protocol_version, cohort_worker::protocol::SUPPORTED_VERSIONS.1);
            assert!(stats.bytes_sent > 0 && stats.rounds >= 4);
        }
    }
}

/// A request for `federation`'s parties.
fn request(id: &str, program: &str, parties: &[String], inputs: Inputs) -> JobRequest {
    JobRequest {
        id: id.into(),
        program: program.into(),
        parties: parties.to_vec(),
        inputs,
        timeouts: timeouts(30.0),
        preprocessing: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_is_idempotent_access_is_controlled_and_draining_refuses_jobs() {
    let federation = start(2, None).await;
    let parties = names(2);
    let program = "input x: fixed[] from each\noutput s = sum(concat(x))\n";
    let id = JobId::random().to_string();
    let mut first = Vec::new();
    for (i, w) in federation.workers.iter().enumerate() {
        first.push(
            w.client.submit(&request(&id, program, &parties, fixed("x", &[i as f64 + 1.0]))).await.expect("submit"),
        );
    }
    let done = federation.workers[0].client.wait(&id, Duration::from_millis(10)).await.expect("wait");
    assert_eq!(done.phase, Phase::Succeeded, "{:?}", done.failure);
    assert!(close(scalar(&done, "s"), 3.0));
    // The same job again: the stored result, not a second run.
    let again = federation.workers[0]
        .client
        .submit(&request(&id, program, &parties, fixed("x", &[1.0])))
        .await
        .expect("resubmit");
    assert_eq!(again, done);
    // The result was stored before it was reported: a restarted worker
    // still has it (and still refuses to run the job again).
    let mut federation = federation;
    federation.restart_worker(0).await.expect("restart");
    let restored = federation.workers[0].client.status(&id).await.expect("status after restart");
    assert_eq!(restored, done);
    let federation = federation;
    // Another program under the same id: a conflict.
    let conflict = federation.workers[0]
        .client
        .submit(&request(&id, "input x: fixed[] from each\noutput t = len(concat(x))\n", &parties, fixed("x", &[1.0])))
        .await;
    assert_eq!(conflict.err().and_then(|e| e.status()), Some(409));
    // Unknown jobs and malformed requests.
    let missing = federation.workers[0].client.status(&JobId::random().to_string()).await;
    assert_eq!(missing.err().and_then(|e| e.status()), Some(404));
    let bad = federation.workers[0].client.submit(&request("not-hex", program, &parties, Inputs::new())).await;
    assert_eq!(bad.err().and_then(|e| e.status()), Some(400));
    // A job that cannot be prepared fails with a reason, without running.
    let unknown_party = vec!["party-0".to_string(), "mallory".to_string()];
    let failed = federation.workers[0]
        .client
        .submit(&request(&JobId::random().to_string(), program, &unknown_party, fixed("x", &[1.0])))
        .await
        .expect("admitted as failed");
    assert_eq!(failed.phase, Phase::Failed);
    assert!(failed.failure.expect("failure").message.contains("mallory"));

    // A client that is not the configured controller fails the handshake,
    // even with a certificate from a party's own CA.
    let ca = &federation.cas["party-0"];
    let now = SystemTime::now();
    let intruder = Role::Controller.principal("intruder");
    let leaf = ca.issue_party_cert(&intruder, &[], now, now + Duration::from_secs(600)).expect("leaf");
    let trust = vec![("party-0".to_string(), ca.cert_pem())];
    let identity = TlsIdentity::from_pem_pinned("local", &intruder, &leaf.cert_pem, &leaf.key_pem, &trust).expect("id");
    let client = ControlClient::new(identity, federation.workers[0].control.clone(), "party-0");
    let refused = client.health().await;
    assert!(refused.is_err(), "an intruder must be refused: {refused:?}");

    // Health, then drain: no new jobs.
    let health = federation.workers[1].client.health().await.expect("health");
    assert_eq!((health.party.as_str(), health.draining, health.active_jobs), ("party-1", false, 0));
    assert!(health.certificate_expires_in_seconds > 3600.0);
    let drained = federation.workers[1].client.drain().await.expect("drain");
    assert!(drained.draining);
    let refused = federation.workers[1]
        .client
        .submit(&request(&JobId::random().to_string(), program, &parties, fixed("x", &[1.0])))
        .await;
    assert_eq!(refused.err().and_then(|e| e.status()), Some(503));
    // Metrics are served in the Prometheus text format.
    let metrics = http_get(&federation.workers[1].metrics, "/metrics").await;
    assert!(metrics.contains("cohort_worker_jobs_total{outcome=\"succeeded\"} 1"), "{metrics}");
    assert!(metrics.contains("cohort_worker_certificate_expiry_seconds"), "{metrics}");
    assert!(http_get(&federation.workers[1].metrics, "/readyz").await.contains("draining"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn program_mismatch_is_refused_before_any_input_is_shared() {
    let federation = start(3, None).await;
    let parties = names(3);
    let id = JobId::random().to_string();
    let program = "input x: fixed[] from each\noutput s = sum(concat(x))\n";
    let other = "input x: fixed[] from each\noutput s = sum(concat(x)) * 2\n";
    for (i, w) in federation.workers.iter().enumerate() {
        let p = if i == 2 { other } else { program };
        w.client.submit(&request(&id, p, &parties, fixed("x", &[1.0]))).await.expect("submit");
    }
    for (i, w) in federation.workers.iter().enumerate() {
        let status = w.client.wait(&id, Duration::from_millis(10)).await.expect("wait");
        assert_eq!(status.phase, Phase::Failed);
        let failure = status.failure.expect("failure");
        assert_eq!(failure.step.as_deref(), Some("setup"), "refused in setup, before input sharing: {failure:?}");
        let blamed = if i == 2 { "party-0" } else { "party-2" };
        assert_eq!(failure.party.as_deref(), Some(blamed), "{failure:?}");
        assert!(failure.message.contains("different program"), "{failure:?}");
        assert!(status.stats.is_none() && status.outputs.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_told_different_preprocessing_modes_refuse_the_job_in_setup() {
    let federation = start(3, None).await;
    let parties = names(3);
    let id = JobId::random().to_string();
    // Secret products and fixed-point truncation: triples and division
    // pairs for 2^f.
    let program = "input x: fixed[] from each\nlet all = concat(x)\noutput s = sum(all * all)\n";
    for (i, w) in federation.workers.iter().enumerate() {
        let mut r = request(&id, program, &parties, fixed("x", &[1.0]));
        // Party 2 would generate material with its peers; the others
        // expect the dealer's. The mode is part of the consent digest.
        r.preprocessing = if i == 2 { Some(Mode::Ot) } else { Some(Mode::Dealer) };
        w.client.submit(&r).await.expect("submit");
    }
    for w in &federation.workers {
        let status = w.client.wait(&id, Duration::from_millis(10)).await.expect("wait");
        assert_eq!(status.phase, Phase::Failed);
        let failure = status.failure.expect("failure");
        assert_eq!(failure.step.as_deref(), Some("setup"), "refused before input sharing: {failure:?}");
        assert!(failure.message.contains("preprocessing mode"), "{failure:?}");
    }
    // The same job with every party on OT runs, without the dealer.
    let id = JobId::random().to_string();
    for (i, w) in federation.workers.iter().enumerate() {
        let mut r = request(&id, program, &parties, fixed("x", &[i as f64 + 0.5]));
        r.preprocessing = Some(Mode::Ot);
        w.client.submit(&r).await.expect("submit");
    }
    for w in &federation.workers {
        let status = w.client.wait(&id, Duration::from_millis(10)).await.expect("wait");
        assert_eq!(status.phase, Phase::Succeeded, "{:?}", status.failure);
        assert!(close(scalar(&status, "s"), 0.25 + 2.25 + 6.25), "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_killed_mid_job_is_named_and_the_next_job_runs() {
    killed_mid_job(ProtocolName::AdditiveSemiHonest).await;
}

/// Issue 17: the same under replicated sharing, where each party talks to
/// its two neighbours in a ring and no dealer runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_killed_mid_job_is_named_and_the_next_job_runs_under_replicated_3() {
    killed_mid_job(ProtocolName::Replicated3).await;
}

/// Kill party-2 in the middle of a long job under `protocol`: the
/// survivors fail naming it and the step; restarted, the next job runs.
async fn killed_mid_job(protocol: ProtocolName) {
    let options = cohort_cli::launch::Options { protocol, ..launch_options("warn", None) };
    let mut federation = Federation::start(&names(3), &options).await.expect("federation starts");
    let parties = names(3);
    // Long enough to be killed in the middle: many layers over big vectors.
    let program = "input x: int[] from each\nlet a = aggregate(x)\nlet b = a * a\nlet c = b * a\nlet d = c * b\nlet e = d * c\nlet f = e * d\nlet g = f * e\nlet h = g * f\nlet i = h * g\nlet j = i * h\noutput s = sum(j)\n";
    let big: Vec<cohort_worker::service::api::InputValue> =
        (0..400_000).map(|i| cohort_worker::service::api::InputValue::from(i % 7)).collect();
    let id = JobId::random().to_string();
    let round = 3.0;
    for w in &federation.workers {
        let mut r = request(&id, program, &parties, BTreeMap::from([("x".to_string(), big.clone())]));
        r.timeouts.round_seconds = Some(round);
        w.client.submit(&r).await.expect("submit");
    }
    // Kill party-2 once the job runs everywhere.
    loop {
        let running = federation.workers[0].client.status(&id).await.expect("status");
        assert!(!running.phase.is_final(), "finished before the kill: {running:?}");
        if running.phase == Phase::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = Instant::now();
    federation.kill_worker(2).await.expect("kill");
    let mut blamed = BTreeMap::new();
    for w in &federation.workers[..2] {
        let status = w.client.wait(&id, Duration::from_millis(10)).await.expect("wait");
        assert!(killed.elapsed() < Duration::from_secs_f64(round + 5.0), "reported within the round timeout");
        assert_eq!(status.phase, Phase::Failed);
        let failure = status.failure.expect("failure");
        assert!(failure.step.is_some(), "{protocol}: {failure:?}");
        blamed.insert(w.name.clone(), failure.party.clone().unwrap_or_default());
    }
    // Every survivor names party-2, or a survivor that itself names
    // party-2: a party that fails closes its connections, and a peer
    // blocked on it may notice that first (workers send no abort frame
    // naming the cause yet).
    for (who, party) in &blamed {
        let root = if party.as_str() == "party-2" { party } else { &blamed[party] };
        assert_eq!(root, "party-2", "{protocol}: {who} blames {party}: {blamed:?}");
    }
    // The killed party comes back; the federation runs the next job.
    federation.restart_worker(2).await.expect("restart");
    let inputs = (0..3).map(|i| fixed("x", &[i as f64])).collect();
    let statuses = federation
        .run("input x: fixed[] from each\noutput s = sum(concat(x))\n", inputs, timeouts(30.0), |_| {})
        .await
        .expect("next job");
    for s in &statuses {
        assert_eq!(s.phase, Phase::Succeeded, "{:?}", s.failure);
        assert!(close(scalar(s, "s"), 3.0));
    }
}

/// Replace `party`'s certificate with `leaf` (chained to `ca`) and restart
/// its worker.
async fn replace_certificate(federation: &mut Federation, party: usize, ca: &PartyCa, leaf: &str, key: &str) {
    let name = federation.workers[party].name.clone();
    let (_, cert_path, key_path) = federation.party_files(&name);
    std::fs::write(&cert_path, format!("{leaf}{}", ca.cert_pem())).expect("write cert");
    std::fs::write(&key_path, key).expect("write key");
    federation.restart_worker(party).await.expect("restart");
}

/// Submit a job to the workers `at` only; the first one's final status.
async fn job_at(federation: &Federation, at: &[usize]) -> JobStatus {
    let parties = names(federation.workers.len());
    let id = JobId::random().to_string();
    for &i in at {
        let mut r =
            request(&id, "input x: fixed[] from each\noutput s = sum(concat(x))\n", &parties, fixed("x", &[1.0]));
        r.timeouts.connect_seconds = Some(3.0);
        federation.workers[i].client.submit(&r).await.expect("submit");
    }
    federation.workers[at[0]].client.wait(&id, Duration::from_millis(10)).await.expect("wait")
}

fn handshake_failure(status: &JobStatus) -> String {
    assert_eq!(status.phase, Phase::Failed);
    let f = status.failure.as_ref().expect("failure");
    assert_eq!(f.step.as_deref(), Some("handshake"), "{f:?}");
    f.message.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_expired_and_wrong_party_certificates_are_refused_at_the_handshake() {
    let mut federation = start(3, None).await;
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    // Party-1 dials party-0, whose certificate it checks against party-0's CA.
    // Untrusted: party-0 serves a certificate from a CA nobody trusts for it.
    let rogue = PartyCa::generate("local", "party-0", hour).expect("CA");
    let leaf = rogue.issue_party_cert("party-0", &[], now - hour, now + hour).expect("leaf");
    replace_certificate(&mut federation, 0, &rogue, &leaf.cert_pem, &leaf.key_pem).await;
    let message = handshake_failure(&job_at(&federation, &[1]).await);
    assert!(message.contains("party-0") && message.contains("untrusted issuer"), "{message}");

    // Expired: issued by party-0's own CA, but expired an hour ago.
    let ca = federation.cas.remove("party-0").expect("ca");
    let leaf = ca.issue_party_cert("party-0", &[], now - 2 * hour, now - hour).expect("leaf");
    replace_certificate(&mut federation, 0, &ca, &leaf.cert_pem, &leaf.key_pem).await;
    let message = handshake_failure(&job_at(&federation, &[1]).await);
    assert!(message.contains("party-0") && message.contains("expired at"), "{message}");
    // The controller refuses it too, saying so.
    let control = federation.workers[0].client.health().await.expect_err("expired worker");
    assert!(control.to_string().contains("expired"), "{control}");

    // Wrong party: party-2's configuration sends its dial for party-1 to
    // party-0's worker, which presents a (valid) certificate for party-0.
    let leaf = ca.issue_party_cert("party-0", &[], now - hour, now + hour).expect("leaf");
    replace_certificate(&mut federation, 0, &ca, &leaf.cert_pem, &leaf.key_pem).await;
    let config_path = federation.workers[2].config.clone();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).expect("config")).expect("JSON");
    let endpoint_0 = config["parties"][0]["endpoint"].clone();
    config["parties"][1]["endpoint"] = endpoint_0;
    std::fs::write(&config_path, config.to_string()).expect("write config");
    federation.restart_worker(2).await.expect("restart");
    let message = handshake_failure(&job_at(&federation, &[2]).await);
    assert!(message.contains("expected party party-1") && message.contains("names party-0"), "{message}");

    // A worker does not even start with a certificate for another party.
    let leaf = ca.issue_party_cert("party-0", &[], now - hour, now + hour).expect("leaf");
    let (_, cert_path, key_path) = federation.party_files("party-1");
    std::fs::write(&cert_path, format!("{}{}", leaf.cert_pem, ca.cert_pem())).expect("write");
    std::fs::write(&key_path, &leaf.key_pem).expect("write");
    assert!(federation.restart_worker(1).await.is_err(), "must refuse another party's certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_sentinel_inputs_never_reach_logs_or_errors() {
    let logs = std::env::temp_dir().join(format!("cohort-canary-{}", JobId::random()));
    std::fs::create_dir_all(&logs).expect("log dir");
    let options = launch_options("debug", Some(logs.clone()));
    let mut federation = Federation::start(&names(3), &options).await.expect("start");
    let sentinels = [7_351_946.125_f64, -4_826_193.5, 6_190_437.75];
    let program = "input x: fixed[] from each\nlet all = concat(x)\noutput m = mean(all)\noutput v = variance(all)\n";
    let inputs = sentinels.iter().map(|s| fixed("x", &[*s, *s + 1.0])).collect();
    let ok = federation.run(program, inputs, timeouts(30.0), |_| {}).await.expect("job");
    assert!(ok.iter().all(|s| s.phase == Phase::Succeeded));
    // A failing job too: mismatch, then a party killed mid-job.
    let id = JobId::random().to_string();
    let parties = names(3);
    for (i, w) in federation.workers.iter().enumerate() {
        let p = if i == 0 { "input x: fixed[] from each\noutput m = mean(concat(x)) + 1\n" } else { program };
        w.client.submit(&request(&id, p, &parties, fixed("x", &[sentinels[i]]))).await.expect("submit");
    }
    let mut texts = Vec::new();
    for w in &federation.workers {
        let s = w.client.wait(&id, Duration::from_millis(10)).await.expect("wait");
        texts.push(format!("{s:?} {}", serde_json::to_string(&s.failure).expect("json")));
    }
    let bad = federation.workers[0]
        .client
        .submit(&request(&JobId::random().to_string(), program, &parties, fixed("x", &[1e300])))
        .await;
    texts.push(format!("{bad:?}"));
    federation.kill_worker(1).await.expect("kill");
    drop(federation);
    let mut all = texts.join("\n");
    for entry in std::fs::read_dir(&logs).expect("logs") {
        all.push_str(&std::fs::read_to_string(entry.expect("entry").path()).expect("log"));
    }
    assert!(all.contains("DEBUG"), "logs were written at debug level");
    for s in sentinels {
        let fp = cohort_worker::fixed::FixedPoint::new(16).expect("fp");
        let encoded = fp.encode(s).expect("encodes");
        for needle in [format!("{s}"), format!("{}", s.trunc() as i64), format!("{encoded}"), format!("{encoded:x}")] {
            assert!(!all.contains(&needle), "sentinel {needle} leaked");
        }
    }
    let _ = std::fs::remove_dir_all(&logs);
}
