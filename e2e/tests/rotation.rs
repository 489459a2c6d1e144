//! Certificate rotation without downtime, on real `cohort-worker`
//! processes whose certificates live seconds.
//!
//! Workers re-read their TLS files (`tls.reloadInterval`): new handshakes
//! use the new material, established connections finish on the old. The
//! tests here renew leaves under a running job, replace a party's CA key in
//! phases while jobs keep running, and let a certificate expire to check
//! that the refusal says whose certificate expired.
//!
//! Every time limit here is generous for a slow, loaded 2-core machine:
//! job timeouts only bound how long a broken run takes to fail (a passing
//! job never waits them out, refusals are final at once), certificates
//! that must stay valid outlive any plausible stall by a wide margin, and
//! a certificate that must expire is waited out on the wall clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use cohort_cli::launch::Federation;
use cohort_e2e::{http_get, launch_options};
use cohort_worker::service::api::{JobRequest, JobStatus, JobTimeouts, OutputValue, Phase};
use cohort_worker::transport::{JobId, PartyCa};

const POLL: Duration = Duration::from_millis(20);
/// How long a worker may take to apply TLS files it polls every 100 ms, or
/// to establish a job's connections: only a hang takes this long.
const PATIENCE: Duration = Duration::from_secs(300);

fn names() -> Vec<String> {
    (0..3).map(|i| format!("party-{i}")).collect()
}

/// A program of `depth` sequential multiplications: `v^(depth+1)` summed,
/// one communication round per layer.
fn chain(depth: usize) -> String {
    let mut p = String::from("input x: int[] from each\nlet v = concat(x)\nlet y0 = v\n");
    for k in 1..=depth {
        p.push_str(&format!("let y{k} = y{} * v\n", k - 1));
    }
    p.push_str(&format!("output s = sum(y{depth})\n"));
    p
}

/// Party `i`'s input: ±1 values, so every power is ±1 and the sum exact.
fn input(i: usize, len: usize) -> Vec<i64> {
    (0..len).map(|j| if (i * 7 + j * 3).is_multiple_of(5) { -1 } else { 1 }).collect()
}

fn expected(depth: usize, len: usize) -> f64 {
    (0..3).flat_map(|i| input(i, len)).map(|e| if depth.is_multiple_of(2) { e } else { 1 }).sum::<i64>() as f64
}

/// Party `i`'s request for job `id` of the chain program.
fn request(id: &str, i: usize, depth: usize, len: usize, connect_seconds: f64) -> JobRequest {
    JobRequest {
        id: id.into(),
        program: chain(depth),
        parties: names(),
        inputs: BTreeMap::from([(
            "x".to_string(),
            input(i, len).into_iter().map(|x| cohort_worker::service::api::InputValue::Number(x.into())).collect(),
        )]),
        timeouts: JobTimeouts {
            connect_seconds: Some(connect_seconds),
            round_seconds: Some(PATIENCE.as_secs_f64()),
            total_seconds: Some(2.0 * PATIENCE.as_secs_f64()),
        },
        preprocessing: Default::default(),
    }
}

/// Run the chain program at every party; every party's final status.
async fn run(federation: &Federation, depth: usize, len: usize) -> Vec<JobStatus> {
    let id = JobId::random().to_string();
    for (i, w) in federation.workers.iter().enumerate() {
        w.client.submit(&request(&id, i, depth, len, PATIENCE.as_secs_f64())).await.expect("submitted");
    }
    let mut out = Vec::new();
    for w in &federation.workers {
        out.push(w.client.wait(&id, POLL).await.expect("finishes"));
    }
    out
}

fn assert_correct(statuses: &[JobStatus], depth: usize, len: usize) {
    for s in statuses {
        assert_eq!(s.phase, Phase::Succeeded, "{:?}", s.failure);
        let outputs = s.outputs.as_ref().expect("outputs");
        assert_eq!(outputs.get("s").and_then(OutputValue::as_f64), Some(expected(depth, len)));
    }
}

/// `cohort_worker_tls_reloads_total{result}` of worker `i`.
async fn reloads(federation: &Federation, i: usize, result: &str) -> u64 {
    let text = http_get(&federation.workers[i].metrics, "/metrics").await;
    let prefix = format!("cohort_worker_tls_reloads_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Wait until each of `workers` has applied more reloads than `before`.
async fn applied_since(federation: &Federation, workers: &[usize], before: &[u64]) {
    for &i in workers {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while reloads(federation, i, "applied").await <= before[i] {
            assert!(tokio::time::Instant::now() < deadline, "worker {i} never applied the new TLS files");
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A sample of the dealer's metrics (`-1` when the series is absent).
async fn dealer_sample(federation: &Federation, series: &str) -> f64 {
    let text = http_get(&federation.dealer_metrics, "/metrics").await;
    let prefix = format!("{series} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(-1.0)
}

const DEALER_APPLIED: &str = "cohort_dealer_tls_reloads_total{result=\"applied\"}";

/// Wait until the dealer has applied more reloads than `before` (it trusts
/// the parties through the same CA bundle files as the workers).
async fn dealer_applied_since(federation: &Federation, before: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while dealer_sample(federation, DEALER_APPLIED).await <= before {
        assert!(tokio::time::Instant::now() < deadline, "the dealer never applied the new CA bundle");
        tokio::time::sleep(POLL).await;
    }
}

async fn applied_counts(federation: &Federation) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..federation.workers.len() {
        out.push(reloads(federation, i, "applied").await);
    }
    out
}

fn options() -> cohort_cli::launch::Options {
    let mut o = launch_options("warn", None);
    o.tls_reload = Duration::from_millis(100);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_outlives_several_leaf_renewals() {
    // Each leaf outlives the next renewal by 11 s: a loaded machine that
    // stalls the renewer or a worker's reload for seconds still presents
    // valid certificates on every new handshake.
    const LIFETIME: Duration = Duration::from_secs(12);
    const RENEW_EVERY: Duration = Duration::from_secs(1);
    let mut opts = options();
    opts.leaf_lifetime = LIFETIME;
    let federation = Arc::new(Federation::start(&names(), &opts).await.expect("workers start"));
    let first_expiry = SystemTime::now() + LIFETIME;

    // Renew every party's leaf, again and again, while jobs run.
    let renewals = Arc::new(AtomicUsize::new(0));
    let renewer = {
        let (federation, renewals) = (federation.clone(), renewals.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                for p in names() {
                    federation.renew_leaf(&p, None, LIFETIME).expect("renewed");
                }
                renewals.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // A job long enough to span several renewals: deepen it until one
    // does (how long a layer takes depends on the machine), and keep
    // running such jobs until the first certificates have expired. Every
    // job, short or long, must succeed.
    let len = 2000;
    let mut depth = 400;
    loop {
        let before = renewals.load(Ordering::SeqCst);
        let statuses = run(&federation, depth, len).await;
        let during = renewals.load(Ordering::SeqCst) - before;
        assert_correct(&statuses, depth, len);
        if during >= 4 && SystemTime::now() > first_expiry {
            break;
        }
        if during < 4 {
            assert!(depth < 50_000, "even {depth} layers spanned only {during} renewals");
            depth *= 2;
        }
    }
    // The certificates the federation started with have expired by now; a
    // new job handshakes with the renewed ones.
    assert!(SystemTime::now() > first_expiry, "the federation did not outlive its first certificates");
    assert_correct(&run(&federation, 3, 10).await, 3, 10);
    for i in 0..3 {
        assert!(reloads(&federation, i, "applied").await >= 3, "worker {i} applied too few renewals");
    }
    renewer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_key_replacement_completes_while_jobs_run() {
    let federation = Arc::new(Federation::start(&names(), &options()).await.expect("workers start"));
    let old = federation.cas["party-1"].cert_pem();
    let next =
        PartyCa::generate(cohort_cli::launch::FEDERATION, "party-1", Duration::from_secs(86_400)).expect("new CA");

    // Jobs run back to back through every phase; `done` counts finished
    // jobs. They stop between two jobs when asked (never half-submitted).
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let jobs = {
        let (federation, done, stop, failures) = (federation.clone(), done.clone(), stop.clone(), failures.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for s in run(&federation, 20, 500).await {
                    if s.phase != Phase::Succeeded {
                        failures.lock().expect("lock").push(format!("{}: {:?}", s.id, s.failure));
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Let at least `n` more jobs finish.
    let more_jobs = |n: usize| {
        let done = done.clone();
        async move {
            let target = done.load(Ordering::SeqCst) + n;
            while done.load(Ordering::SeqCst) < target {
                tokio::time::sleep(POLL).await;
            }
        }
    };
    let others = [0, 2];
    more_jobs(1).await;

    // Phase 1: every peer, and the dealer, trusts both CAs of party-1 —
    // all of them before party-1 presents a leaf from the new one.
    let before = applied_counts(&federation).await;
    let dealer_before = dealer_sample(&federation, DEALER_APPLIED).await;
    federation.set_trusted_cas("party-1", &format!("{old}{}", next.cert_pem())).expect("bundle");
    applied_since(&federation, &others, &before).await;
    dealer_applied_since(&federation, dealer_before).await;
    more_jobs(2).await;
    // Phase 2: party-1's leaf comes from the new CA.
    let before = applied_counts(&federation).await;
    federation.renew_leaf("party-1", Some(&next), Duration::from_secs(3600)).expect("reissued");
    applied_since(&federation, &[1], &before).await;
    more_jobs(2).await;
    // Phase 3: the old CA leaves the bundle.
    let before = applied_counts(&federation).await;
    let dealer_before = dealer_sample(&federation, DEALER_APPLIED).await;
    federation.set_trusted_cas("party-1", &next.cert_pem()).expect("bundle");
    applied_since(&federation, &others, &before).await;
    dealer_applied_since(&federation, dealer_before).await;
    more_jobs(2).await;
    stop.store(true, Ordering::SeqCst);
    jobs.await.expect("the job loop ends after its current job");
    assert_eq!(*failures.lock().expect("lock"), Vec::<String>::new(), "jobs failed during the replacement");
    // The dealer trusts party-1 through the same bundle file and reloaded
    // it at each phase; its metrics show the reloads and the jobs dealt.
    let dealer = http_get(&federation.dealer_metrics, "/metrics").await;
    let sample = |line: &str| {
        dealer.lines().find_map(|l| l.strip_prefix(line)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(-1.0)
    };
    assert!(sample("cohort_dealer_tls_reloads_total{result=\"applied\"} ") >= 2.0, "{dealer}");
    assert!(sample("cohort_dealer_jobs_total{outcome=\"dealt\"} ") >= 7.0, "{dealer}");
    assert_eq!(sample("cohort_dealer_jobs_total{outcome=\"failed\"} "), 0.0, "{dealer}");
    assert!(sample("cohort_dealer_material_dealt_total{kind=\"triple\"} ") > 0.0, "{dealer}");
    assert!(sample("cohort_dealer_certificate_expiry_seconds ") > 0.0, "{dealer}");

    // The old CA is no longer trusted: a leaf it issues is refused by the
    // controller and by the peers, each naming the party and the reason.
    let before = applied_counts(&federation).await;
    federation.renew_leaf("party-1", Some(&federation.cas["party-1"]), Duration::from_secs(3600)).expect("old");
    applied_since(&federation, &[1], &before).await;
    let id = JobId::random().to_string();
    let connect = PATIENCE.as_secs_f64();
    let refused = federation.workers[1].client.submit(&request(&id, 1, 1, 4, connect)).await.expect_err("untrusted");
    assert!(refused.to_string().contains("certificate of party party-1 is not signed by a trusted CA"), "{refused}");
    // party-2 dials party-1 for the job and refuses its certificate: a
    // final refusal at once, whatever the connect timeout.
    for i in [0, 2] {
        federation.workers[i].client.submit(&request(&id, i, 1, 4, connect)).await.expect("submitted");
    }
    let s = federation.workers[2].client.wait(&id, POLL).await.expect("finishes");
    assert_eq!(s.phase, Phase::Failed);
    let failure = s.failure.expect("failure");
    assert!(failure.message.contains("certificate of party party-1 is not signed by a trusted CA"), "{failure:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_naming_whose_it_is() {
    let federation = Federation::start(&names(), &options()).await.expect("workers start");
    let connect = PATIENCE.as_secs_f64();
    // party-0 takes the job while its certificate is still valid; its peers
    // get it only after the certificate expired, and dial party-0. The leaf
    // lives 3 s; a machine too slow to apply it and submit within that
    // gets a leaf twice as long, until one is in time.
    let mut lifetime = Duration::from_secs(3);
    let (id, expiry) = loop {
        let before = applied_counts(&federation).await;
        let expiry = federation.renew_leaf("party-0", None, lifetime).expect("short leaf");
        applied_since(&federation, &[0], &before).await;
        let id = JobId::random().to_string();
        match federation.workers[0].client.submit(&request(&id, 0, 1, 4, connect)).await {
            Ok(_) => break (id, expiry),
            Err(e) if e.to_string().contains("certificate of party party-0 expired at") && lifetime < PATIENCE => {
                eprintln!("the {lifetime:?} leaf expired before the job was submitted ({e}); doubling it");
                lifetime *= 2;
            }
            Err(e) => panic!("submitted while valid: {e}"),
        }
    };
    while SystemTime::now() <= expiry + Duration::from_secs(1) {
        tokio::time::sleep(POLL).await;
    }
    for i in 1..3 {
        federation.workers[i].client.submit(&request(&id, i, 1, 4, connect)).await.expect("submitted");
    }
    for w in &federation.workers[1..] {
        let s = w.client.wait(&id, POLL).await.expect("finishes");
        assert_eq!(s.phase, Phase::Failed);
        let failure = s.failure.as_ref().expect("failure");
        assert!(failure.message.contains("certificate of party party-0 expired at"), "{failure:?}");
        assert_eq!(failure.party.as_deref(), Some("party-0"), "{failure:?}");
    }
    // The controller refuses it the same way, and the worker's own metric
    // shows it.
    let refused = federation.workers[0].client.health().await.expect_err("expired").to_string();
    assert!(refused.contains("certificate of party party-0 expired at"), "{refused}");
    let text = http_get(&federation.workers[0].metrics, "/metrics").await;
    let gauge = text
        .lines()
        .find_map(|l| l.strip_prefix("cohort_worker_certificate_expiry_seconds "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("expiry gauge");
    assert!(gauge < 0.0, "{gauge}");
}
