//! Garbage on the wire against a real worker process: the test plays a
//! party of the federation (it holds a certificate from that party's CA),
//! connects to the worker's peer port for a job, and sends a corrupted or
//! an oversized frame. The worker's job fails with a protocol error that
//! names the party and the step, within the round timeout; the worker does
//! not crash or hang and runs the next job. Under both protocols: two
//! parties under `additive-semi-honest`, three under `replicated-3`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cohort_cli::launch::{Federation, Options};
use cohort_e2e::launch_options;
use cohort_worker::protocol::ProtocolName;
use cohort_worker::service::api::{JobRequest, JobTimeouts, Phase};
use cohort_worker::transport::frame::FrameHeader;
use cohort_worker::transport::{JobId, Step};

const PROGRAM: &str = "input x: fixed[] from each\noutput s = sum(concat(x))\n";
const ROUND: f64 = 2.0;

fn parties() -> Vec<String> {
    vec!["party-0".into(), "party-1".into()]
}

/// The parties of a federation running `protocol`: two, or the three
/// replicated-3 takes.
fn parties_for(protocol: ProtocolName) -> Vec<String> {
    match protocol {
        ProtocolName::AdditiveSemiHonest => parties(),
        ProtocolName::Replicated3 => vec!["party-0".into(), "party-1".into(), "party-2".into()],
    }
}

fn inputs(x: f64) -> BTreeMap<String, Vec<cohort_worker::service::api::InputValue>> {
    BTreeMap::from([("x".to_string(), vec![serde_json::Number::from_f64(x).expect("finite").into()])])
}

/// Submit a job to every worker but the last party's, then join it as the
/// last party from this test, send `raw` to party-0 and return party-0's
/// failure (party, step, message).
async fn inject(
    federation: &Federation,
    protocol: ProtocolName,
    make: impl FnOnce(JobId) -> Vec<u8>,
) -> (Option<String>, Option<String>, String) {
    let job = JobId::random();
    let timeouts = JobTimeouts { connect_seconds: Some(10.0), round_seconds: Some(ROUND), total_seconds: Some(30.0) };
    let request = JobRequest {
        id: job.to_string(),
        program: PROGRAM.into(),
        parties: parties_for(protocol),
        inputs: inputs(1.0),
        timeouts,
        preprocessing: Default::default(),
    };
    let last = federation.workers.len() - 1;
    for w in &federation.workers[..last] {
        w.client.submit(&request).await.expect("submit");
    }

    let mesh = cohort_e2e::join_as_last(federation, job, protocol).await;
    let sent = Instant::now();
    mesh.send_raw(0, make(job)).await.expect("raw bytes");
    let status = federation.workers[0].client.wait(&job.to_string(), Duration::from_millis(10)).await.expect("wait");
    assert!(sent.elapsed() < Duration::from_secs_f64(ROUND + 5.0), "no hang");
    assert_eq!(status.phase, Phase::Failed);
    let f = status.failure.expect("failure");
    (f.party, f.step, f.message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_and_oversized_frames_fail_the_job_not_the_worker() {
    garbage_fails_the_job_not_the_worker(ProtocolName::AdditiveSemiHonest).await;
}

/// Issue 17: the same against replicated-3 workers (the test plays party-2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_and_oversized_frames_fail_the_job_not_the_worker_under_replicated_3() {
    garbage_fails_the_job_not_the_worker(ProtocolName::Replicated3).await;
}

async fn garbage_fails_the_job_not_the_worker(protocol: ProtocolName) {
    let names = parties_for(protocol);
    let bad = names.last().expect("a last party").clone();
    let options = Options { protocol, ..launch_options("warn", None) };
    let federation = Federation::start(&names, &options).await.expect("start");
    // A setup frame whose header has a corrupted magic.
    let (party, step, message) = inject(&federation, protocol, |job| {
        let mut h = FrameHeader { job, step: Step::Setup, last: true, len: 8 }.encode().to_vec();
        h[0] ^= 0xff;
        h.extend_from_slice(b"SENTINEL");
        h
    })
    .await;
    let setup = (Some(bad.as_str()), Some("setup"));
    assert_eq!((party.as_deref(), step.as_deref()), setup, "{protocol}: {message}");
    assert!(message.contains("magic") && !message.contains("SENTINEL"), "{protocol}: {message}");

    // A frame header announcing 4 GiB: refused from the header alone.
    let (party, step, message) = inject(&federation, protocol, |job| {
        FrameHeader { job, step: Step::Setup, last: true, len: u32::MAX }.encode().to_vec()
    })
    .await;
    assert_eq!((party.as_deref(), step.as_deref()), setup, "{protocol}: {message}");
    assert!(message.contains("exceeds the maximum frame size"), "{protocol}: {message}");

    // Pure garbage.
    let (party, step, message) = inject(&federation, protocol, |_| vec![0x5a; 100]).await;
    assert_eq!(party.as_deref(), Some(bad.as_str()), "{protocol}: {message}");
    assert!(step.is_some(), "{protocol}: the step is named: {message}");

    // The worker is alive and runs a real job with the real parties.
    let health = federation.workers[0].client.health().await.expect("alive");
    assert_eq!(health.active_jobs, 0);
    let all = (0..names.len()).map(|i| inputs(i as f64 + 1.0)).collect();
    let statuses = federation.run(PROGRAM, all, JobTimeouts::default(), |_| {}).await.expect("next job");
    assert!(statuses.iter().all(|s| s.phase == Phase::Succeeded), "{protocol}: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_dir_picks_the_shard_file_from_the_pod_name() {
    use tokio::io::AsyncBufReadExt;
    let mut federation = Federation::start(&parties(), &launch_options("warn", None)).await.expect("start");
    federation.kill_worker(1).await.expect("kill");
    let dir = federation.dir.join("per-shard");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::copy(&federation.workers[1].config, dir.join("shard-3.yaml")).expect("copy");
    let mut child = tokio::process::Command::new(cohort_e2e::bin("cohort-worker"))
        .arg("--config-dir")
        .arg(&dir)
        .env("POD_NAME", "cohort-3")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(Duration::from_secs(20), tokio::io::BufReader::new(stdout).lines().next_line())
        .await
        .expect("listening in time")
        .expect("read")
        .expect("a line");
    let listening: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(listening["party"], "party-1", "{line}");
}

/// A worker whose peer port is taken says so and exits with
/// `EXIT_ADDRESS_IN_USE`, which tells `cohort run` (which picked the port)
/// to start again on fresh ports rather than fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_peer_port_exits_with_the_retry_status() {
    let federation = Federation::start(&parties(), &launch_options("warn", None)).await.expect("start");
    // Worker 0 is running, so its peer port is taken.
    let output = tokio::process::Command::new(cohort_e2e::bin("cohort-worker"))
        .arg("--config")
        .arg(&federation.workers[0].config)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(cohort_worker::service::EXIT_ADDRESS_IN_USE)),
        "{}: {stderr}",
        output.status
    );
    let want = format!("listen.peer: cannot listen on {}", federation.workers[0].peer);
    assert!(stderr.contains(&want), "{stderr}");
}
