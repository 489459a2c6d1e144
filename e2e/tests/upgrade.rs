//! Rolling protocol upgrades on real `cohort-worker` processes.
//!
//! Every party starts on an "old build" that offers protocol version 1
//! only (`protocol.maxVersion: 1`, exactly what a build implementing only
//! version 1 offers). One party at a time is drained through the control
//! API, stopped, and restarted offering 1..=2 — the new build. Jobs run
//! back to back throughout and must all succeed: at version 1 while any
//! party is old, at version 2 once every party is new. Then a party that
//! offers only version 2 meets one that offers only version 1, and the job
//! is refused with the reason.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cohort_cli::launch::Federation;
use cohort_e2e::launch_options;
use cohort_worker::service::api::{JobRequest, JobStatus, JobTimeouts, Phase};
use cohort_worker::service::control::ControlClient;
use cohort_worker::transport::JobId;

const POLL: Duration = Duration::from_millis(20);
const PROGRAM: &str = "input x: int[] from each\nlet v = concat(x)\noutput s = sum(v * v)\n";

fn names() -> Vec<String> {
    (0..3).map(|i| format!("party-{i}")).collect()
}

fn request(id: &str, i: usize, connect_seconds: f64) -> JobRequest {
    JobRequest {
        id: id.into(),
        program: PROGRAM.into(),
        parties: names(),
        inputs: BTreeMap::from([("x".to_string(), vec![serde_json::Number::from(i as i64 + 2).into()])]),
        timeouts: JobTimeouts {
            connect_seconds: Some(connect_seconds),
            round_seconds: Some(20.0),
            total_seconds: Some(120.0),
        },
        preprocessing: Default::default(),
    }
}

/// Restart worker `i` offering protocol versions `min..=max`.
async fn restart_offering(federation: &mut Federation, i: usize, min: u32, max: u32) {
    let path = federation.workers[i].config.clone();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("JSON config");
    config["protocol"] = serde_json::json!({"minVersion": min, "maxVersion": max});
    std::fs::write(&path, config.to_string()).expect("write config");
    federation.restart_worker(i).await.expect("restarts");
    let health = federation.workers[i].client.health().await.expect("health");
    assert_eq!((health.min_version, health.max_version), (min, max));
}

/// Submit until the worker takes it: a draining or restarting worker
/// refuses, and a controller (the operator) retries the same way.
async fn submit(clients: &RwLock<Vec<ControlClient>>, i: usize, request: &JobRequest) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let client = clients.read().expect("lock")[i].clone();
        match client.submit(request).await {
            Ok(_) => return,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "party-{i} never took the job: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Party `i`'s final status of job `id`, asking whichever worker serves
/// party `i` now (a restarted worker serves the results it stored).
async fn wait(clients: &RwLock<Vec<ControlClient>>, i: usize, id: &str) -> JobStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let client = clients.read().expect("lock")[i].clone();
        match client.status(id).await {
            Ok(s) if s.phase.is_final() => return s,
            Ok(_) => {}
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "party-{i}: {e}"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Run one job at every party; each party's final status. The parties
/// wait `connect_seconds` for each other (long enough, during the upgrade,
/// for a party being replaced).
async fn run(clients: &RwLock<Vec<ControlClient>>, connect_seconds: f64) -> Vec<JobStatus> {
    let id = JobId::random().to_string();
    for i in 0..3 {
        submit(clients, i, &request(&id, i, connect_seconds)).await;
    }
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(wait(clients, i, &id).await);
    }
    out
}

/// A job of the upgrade: how many parties were upgraded when it was
/// submitted, and the version it ran at, per party.
type Ran = (usize, Vec<u32>);

fn clients_of(federation: &Federation) -> Vec<ControlClient> {
    federation.workers.iter().map(|w| w.client.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_upgrade_one_by_one_while_jobs_keep_completing() {
    let mut federation = Federation::start(&names(), &launch_options("warn", None)).await.expect("workers start");
    for i in 0..3 {
        restart_offering(&mut federation, i, 1, 1).await;
    }
    let clients = Arc::new(RwLock::new(clients_of(&federation)));
    let ran: Arc<Mutex<Vec<Ran>>> = Arc::default();
    let upgraded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let jobs = {
        let (clients, ran, upgraded) = (clients.clone(), ran.clone(), upgraded.clone());
        tokio::spawn(async move {
            loop {
                let before = upgraded.load(std::sync::atomic::Ordering::SeqCst);
                let statuses = run(&clients, 60.0).await;
                let mut versions = Vec::new();
                for s in &statuses {
                    assert_eq!(s.phase, Phase::Succeeded, "job {} failed during the upgrade: {:?}", s.id, s.failure);
                    versions.push(s.stats.as_ref().expect("stats").protocol_version);
                }
                ran.lock().expect("lock").push((before, versions));
            }
        })
    };
    let more_jobs = |n: usize| {
        let (ran, jobs) = (ran.clone(), &jobs);
        async move {
            let target = ran.lock().expect("lock").len() + n;
            while ran.lock().expect("lock").len() < target {
                assert!(!jobs.is_finished(), "the job loop stopped: a job failed");
                tokio::time::sleep(POLL).await;
            }
        }
    };

    more_jobs(1).await;
    for i in 0..3 {
        // Drain: no new jobs; the one in flight finishes.
        federation.workers[i].client.drain().await.expect("drain");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while federation.workers[i].client.health().await.expect("health").active_jobs > 0 {
            assert!(tokio::time::Instant::now() < deadline, "party-{i} never drained");
            tokio::time::sleep(POLL).await;
        }
        restart_offering(&mut federation, i, 1, 2).await;
        *clients.write().expect("lock") = clients_of(&federation);
        upgraded.store(i + 1, std::sync::atomic::Ordering::SeqCst);
        more_jobs(2).await;
    }
    jobs.abort();

    let ran = ran.lock().expect("lock").clone();
    assert!(ran.len() >= 7, "{ran:?}");
    for (upgraded, versions) in &ran {
        // Every party ran the job at the same version.
        assert!(versions.iter().all(|v| *v == versions[0]), "{versions:?}");
        // Version 1 while two parties are old; version 2 once all are new.
        // (A job submitted while the last party was being replaced waits
        // for it and runs at whatever the new worker offers.)
        match upgraded {
            0 | 1 => assert_eq!(versions[0], 1, "{ran:?}"),
            2 => {}
            _ => assert_eq!(versions[0], 2, "{ran:?}"),
        }
    }
    let versions: Vec<u32> = ran.iter().map(|(_, v)| v[0]).collect();
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{versions:?}");
    assert_eq!(versions.last(), Some(&2), "{versions:?}");

    // No common version: party-0 offers only 1, party-2 only 2.
    restart_offering(&mut federation, 0, 1, 1).await;
    restart_offering(&mut federation, 2, 2, 2).await;
    let clients = RwLock::new(clients_of(&federation));
    let statuses = run(&clients, 3.0).await;
    let refused = statuses[0].failure.as_ref().expect("party-0 refuses");
    assert_eq!(statuses[0].phase, Phase::Failed);
    assert_eq!(refused.party.as_deref(), Some("party-2"), "{refused:?}");
    assert!(refused.message.contains("no common protocol version"), "{refused:?}");
    let at_2 = statuses[2].failure.as_ref().expect("party-2 refuses");
    assert!(at_2.message.contains("no common protocol version") && at_2.message.contains("party-0"), "{at_2:?}");
}
