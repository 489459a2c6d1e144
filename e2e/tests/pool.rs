//! The preprocessing pool through real `cohort-worker` processes: fills
//! through the control API, jobs with `preprocessing: pool` that take
//! agreed batches, wait while the pool is short and fail at their deadline,
//! and a party killed (SIGKILL) in the middle of jobs: no batch is ever
//! used twice, and the parties' stores converge.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cohort_cli::launch::{Federation, PoolWatermarks};
use cohort_e2e::{http_get, launch_options};
use cohort_worker::preprocessing::Mode;
use cohort_worker::service::api::{JobRequest, JobStatus, JobTimeouts, MaterialKind, OutputValue, Phase};
use cohort_worker::transport::JobId;

const PARTIES: usize = 3;
/// One product and one truncation per element: triples and division pairs
/// for 2^16 (the default precision).
const PROGRAM: &str = "input x: fixed[] from each\nlet all = concat(x)\noutput s = sum(all * all)\n";
const DIVISOR: u64 = 1 << 16;

fn names() -> Vec<String> {
    (0..PARTIES).map(|i| format!("party-{i}")).collect()
}

async fn start() -> Federation {
    start_with(None).await
}

async fn start_with(watermarks: Option<PoolWatermarks>) -> Federation {
    let mut options = launch_options("warn", None);
    options.preprocessing = Mode::Pool;
    options.pool_watermarks = watermarks;
    Federation::start(&names(), &options).await.expect("federation starts")
}

async fn fill(federation: &Federation, per_batch: usize, batches: usize) {
    for (kind, divisor) in [(MaterialKind::Triples, None), (MaterialKind::DivPairs, Some(DIVISOR))] {
        for status in federation.fill(kind, divisor, per_batch, batches).await.expect("fill") {
            assert_eq!(status.phase, Phase::Succeeded, "{status:?}");
            assert_eq!(status.batches_stored, batches);
        }
    }
}

fn inputs(values: &[f64]) -> BTreeMap<String, Vec<cohort_worker::service::api::InputValue>> {
    let numbers = values.iter().map(|x| serde_json::Number::from_f64(*x).expect("finite").into()).collect();
    BTreeMap::from([("x".to_string(), numbers)])
}

/// Party `p`'s values in job `k` (`len` of them), and the job's answer.
fn values(k: usize, p: usize, len: usize) -> Vec<f64> {
    (0..len).map(|i| ((k * 7 + p * 3 + i) % 11) as f64 * 0.5 - 2.0).collect()
}

fn expected(k: usize, len: usize) -> f64 {
    (0..PARTIES).flat_map(|p| values(k, p, len)).map(|x| x * x).sum()
}

async fn submit(federation: &Federation, k: usize, len: usize, total: f64) -> String {
    let id = JobId::random().to_string();
    for (p, w) in federation.workers.iter().enumerate() {
        let request = JobRequest {
            id: id.clone(),
            program: PROGRAM.into(),
            parties: names(),
            inputs: inputs(&values(k, p, len)),
            timeouts: JobTimeouts { connect_seconds: Some(3.0), round_seconds: Some(3.0), total_seconds: Some(total) },
            preprocessing: Some(Mode::Pool),
        };
        w.client.submit(&request).await.expect("submit");
    }
    id
}

/// Submit `program` as a pool job to every worker, party `p` giving
/// `per_party[p]` as `x`; the job's id.
async fn submit_program(federation: &Federation, program: &str, per_party: &[Vec<f64>], total: f64) -> String {
    let id = JobId::random().to_string();
    for (p, w) in federation.workers.iter().enumerate() {
        let request = JobRequest {
            id: id.clone(),
            program: program.into(),
            parties: names(),
            inputs: inputs(&per_party[p]),
            timeouts: JobTimeouts {
                connect_seconds: Some(10.0),
                round_seconds: Some(10.0),
                total_seconds: Some(total),
            },
            preprocessing: Some(Mode::Pool),
        };
        w.client.submit(&request).await.expect("submit");
    }
    id
}

fn answer(status: &JobStatus) -> f64 {
    match status.outputs.as_ref().and_then(|o| o.get("s")) {
        Some(v @ OutputValue::Scalar(_)) => v.as_f64().expect("a number"),
        other => panic!("output s: {other:?}"),
    }
}

/// Every party's final status of job `id`, checked against the plaintext
/// when it succeeded; the batches it used (the same at every party).
async fn settle(federation: &Federation, id: &str, k: usize, len: usize) -> Option<Vec<String>> {
    let mut batches = None;
    for w in &federation.workers {
        let status = w.client.wait(id, Duration::from_millis(10)).await.expect("status");
        if status.phase != Phase::Succeeded {
            continue;
        }
        assert!((answer(&status) - expected(k, len)).abs() < 1e-2, "job {k} at {}: {status:?}", w.name);
        let used = status.stats.as_ref().expect("stats").batches.clone();
        assert!(!used.is_empty(), "a pool job names its batches");
        if let Some(b) = &batches {
            assert_eq!(b, &used, "every party used the same batches");
        }
        batches = Some(used);
    }
    batches
}

/// What every party's pool holds.
async fn pools(federation: &Federation) -> Vec<cohort_worker::service::api::PoolStatus> {
    let mut out = Vec::new();
    for w in &federation.workers {
        out.push(w.client.pool().await.expect("pool status"));
    }
    out
}

/// Every id a party's ledger records, checking none is recorded twice.
fn ledger_ids(federation: &Federation, party: &str) -> BTreeSet<String> {
    let path = federation.dir.join(format!("{party}-pool")).join("ledger");
    let text = std::fs::read_to_string(&path).expect("ledger");
    let mut ids = BTreeSet::new();
    for line in text.lines().skip(1) {
        let id = line.split_whitespace().nth(1).expect("`verb id`").to_string();
        assert!(ids.insert(id.clone()), "{party}: batch {id} recorded twice in {}", path.display());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_jobs_use_agreed_batches_once_wait_while_short_and_fail_at_their_deadline() {
    let federation = start().await;
    fill(&federation, 10, 12).await;
    let mut used = BTreeSet::new();
    for k in 0..3 {
        let id = submit(&federation, k, 1, 30.0).await;
        let batches = settle(&federation, &id, k, 1).await.expect("succeeded");
        // 3 products take one batch of each kind.
        assert_eq!(batches.len(), 2, "{batches:?}");
        for b in batches {
            assert!(used.insert(b.clone()), "batch {b} used twice");
        }
    }
    let pools = pools(&federation).await;
    assert!(pools.iter().all(|p| p.kinds == pools[0].kinds), "{pools:?}");
    assert_eq!(pools[0].kinds.iter().map(|k| k.items).collect::<Vec<_>>(), [90, 90]);
    let metrics = http_get(&federation.workers[0].metrics, "/metrics").await;
    assert!(metrics.contains("cohort_worker_pool_available_items{kind=\"triples\",divisor=\"\"} 90"), "{metrics}");
    assert!(metrics.contains("cohort_worker_pool_consumed_batches_total 6"), "{metrics}");
    assert!(metrics.contains("cohort_worker_pool_generated_items_total{kind=\"div_pairs\",divisor=\"65536\"} 120"));

    // 40 elements need 120 of each kind; 90 are there: the job waits,
    // saying why, until a fill brings more.
    let id = submit(&federation, 10, 40, 60.0).await;
    loop {
        let status = federation.workers[1].client.status(&id).await.expect("status");
        assert!(!status.phase.is_final(), "{status:?}");
        if status.step.as_deref().is_some_and(|s| s.contains("waiting for preprocessing")) {
            assert!(status.step.as_deref().is_some_and(|s| s.contains("holds 90 of the 120 triples")), "{status:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fill(&federation, 50, 1).await;
    assert!(settle(&federation, &id, 10, 40).await.is_some(), "the waiting job ran once the pool was filled");

    // Too much for the pool and a short deadline: every party fails the
    // job, saying what was missing.
    let id = submit(&federation, 11, 400, 2.0).await;
    for w in &federation.workers {
        let status = w.client.wait(&id, Duration::from_millis(10)).await.expect("status");
        assert_eq!(status.phase, Phase::Failed);
        let failure = status.failure.expect("failure");
        assert!(failure.message.contains("of the 1200 triples this job needs"), "{failure:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_killed_mid_jobs_never_reuses_a_batch_and_the_stores_converge() {
    let mut federation = start().await;
    fill(&federation, 10, 40).await;
    // Every batch a job used, and by which job.
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    // Kill each party in turn (the leader too) at a different moment of a
    // job, restart it, go on.
    let mut interrupted = 0;
    for k in 0..6 {
        let victim = k % PARTIES;
        let id = submit(&federation, k, 1, 20.0).await;
        // Once the victim has connected (the agreement on batches comes
        // next), a few milliseconds more or less.
        loop {
            let status = federation.workers[victim].client.status(&id).await.expect("status");
            if status.phase != Phase::Pending {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis((k as u64 * 3) % 8)).await;
        federation.kill_worker(victim).await.expect("kill");
        for (p, w) in federation.workers.iter().enumerate() {
            if p != victim {
                let status = w.client.wait(&id, Duration::from_millis(10)).await.expect("status");
                if status.phase != Phase::Succeeded {
                    interrupted += 1;
                } else {
                    assert!((answer(&status) - expected(k, 1)).abs() < 1e-2, "job {k}: {status:?}");
                    for b in status.stats.expect("stats").batches {
                        // Each survivor reports the job's batches.
                        let earlier = *used.entry(b.clone()).or_insert(k);
                        assert_eq!(earlier, k, "batch {b} used by jobs {earlier} and {k}");
                    }
                }
            }
        }
        federation.restart_worker(victim).await.expect("restart");
    }
    assert!(interrupted > 0, "no kill landed in the middle of a job");
    // More jobs after the kills: they run, and use batches never used.
    for k in 6..10 {
        let id = submit(&federation, k, 1, 30.0).await;
        let batches = settle(&federation, &id, k, 1).await.expect("a job after the restarts succeeds");
        for b in batches {
            if let Some(earlier) = used.insert(b.clone(), k) {
                panic!("batch {b} used by jobs {earlier} and {k}");
            }
        }
    }
    // Use once, per party: no id is recorded twice in any ledger (checked
    // in ledger_ids), and every batch a job used is recorded everywhere.
    for name in names() {
        let ids = ledger_ids(&federation, &name);
        for b in used.keys() {
            let text = b.replace(':', "-");
            assert!(ids.contains(&text), "{name}: used batch {b} is not recorded");
        }
    }
    // The last agreement repaired every difference a kill left: the stores
    // hold the same batches.
    let pools = pools(&federation).await;
    assert!(pools.iter().all(|p| p.kinds == pools[0].kinds), "the stores converged: {pools:?}");
}

/// Items of each kind (triples, division pairs) in each party's pool.
async fn items(federation: &Federation) -> Vec<Vec<usize>> {
    pools(federation).await.iter().map(|p| p.kinds.iter().map(|k| k.items).collect()).collect()
}

/// Wait until every party's pool holds at least `least` of both kinds.
async fn await_stocked(federation: &Federation, least: usize) -> Vec<Vec<usize>> {
    let started = std::time::Instant::now();
    loop {
        let now = items(federation).await;
        if now.iter().all(|kinds| kinds.len() == 2 && kinds.iter().all(|n| *n >= least)) {
            return now;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the pools never reached {least}: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_fills_itself_between_its_watermarks_as_jobs_drain_it() {
    let watermarks = PoolWatermarks {
        low_watermark: 100,
        target: 200,
        per_batch: 20,
        check_interval: Duration::from_millis(100),
        binary: None,
    };
    let federation = start_with(Some(watermarks)).await;
    // Nobody filled it: the fill leader (the last party by name) did, with
    // every party, up to the target.
    let stocked = await_stocked(&federation, 200).await;
    assert!(stocked.iter().all(|kinds| kinds == &stocked[0]), "{stocked:?}");
    // Jobs of 40 elements take 120 of each kind: the first leaves 80
    // (below the low watermark), so the leader fills again.
    for k in 0..3 {
        let id = submit(&federation, k, 40, 60.0).await;
        assert!(settle(&federation, &id, k, 40).await.is_some(), "job {k} ran on the pool's own material");
        await_stocked(&federation, 100).await;
    }
    let metrics = http_get(&federation.workers[0].metrics, "/metrics").await;
    let generated = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cohort_worker_pool_generated_items_total{kind=\"triples\",divisor=\"\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("generated triples counted");
    assert!(generated >= 400, "{generated} triples generated");
}

/// Items of `kind` at each party.
async fn items_of(federation: &Federation, kind: MaterialKind) -> Vec<usize> {
    pools(federation).await.iter().map(|p| p.kinds.iter().filter(|k| k.kind == kind).map(|k| k.items).sum()).collect()
}

/// The binary kinds keep their own watermarks (issue 16): with no
/// controller fill, the fill leader stocks bit triples, edaBits and daBits
/// to their target with every party, a comparison job takes them from the
/// pool, and the leader refills what it drained below the low watermark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_keeps_the_binary_kinds_between_their_watermarks() {
    let watermarks = PoolWatermarks {
        low_watermark: 100,
        target: 200,
        per_batch: 100,
        check_interval: Duration::from_millis(100),
        binary: Some((990, 1000)),
    };
    let federation = start_with(Some(watermarks)).await;
    let binary = [MaterialKind::BitTriples, MaterialKind::EdaBits, MaterialKind::DaBits];
    let stocked = |least: usize| {
        let federation = &federation;
        async move {
            let started = std::time::Instant::now();
            loop {
                let mut all = true;
                for kind in binary {
                    all &= items_of(federation, kind).await.iter().all(|n| *n >= least);
                }
                if all {
                    return;
                }
                assert!(started.elapsed() < Duration::from_secs(120), "the binary kinds never reached {least}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    stocked(1000).await;
    // 30 comparisons take 30 edaBits, 30 daBits and 3,776 bit triples (59
    // words, more with each layer's rounding; `cohort check`): every kind
    // ends below its low watermark of 990.
    let program = "input x: fixed[] from each\nlet all = concat(x)\noutput above = count(all > 0.5)\n";
    let per_party: Vec<Vec<f64>> = (0..PARTIES).map(|p| values(3, p, 10)).collect();
    let above = per_party.concat().iter().filter(|x| **x > 0.5).count() as f64;
    let id = submit_program(&federation, program, &per_party, 60.0).await;
    for w in &federation.workers {
        let status = w.client.wait(&id, Duration::from_millis(10)).await.expect("status");
        assert_eq!(status.phase, Phase::Succeeded, "at {}: {status:?}", w.name);
        match status.outputs.as_ref().and_then(|o| o.get("above")) {
            Some(v @ OutputValue::Scalar(_)) => assert_eq!(v.as_f64(), Some(above)),
            other => panic!("above: {other:?}"),
        }
    }
    // Refilled to the target: the leader saw every kind below 990.
    stocked(1000).await;
    let metrics = http_get(&federation.workers[0].metrics, "/metrics").await;
    let generated = |kind: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("cohort_worker_pool_generated_items_total{{kind=\"{kind}\",divisor=\"\"}} "))
            })
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    for kind in ["bit_triple_words", "edabits", "dabits"] {
        assert!(generated(kind) > 1000, "{kind} were refilled: {} generated", generated(kind));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_older_than_the_ttl_are_overwritten_and_deleted() {
    let mut options = launch_options("warn", None);
    options.preprocessing = Mode::Pool;
    options.pool_ttl = Some(Duration::from_secs(1));
    let federation = Federation::start(&names(), &options).await.expect("federation starts");
    for status in federation.fill(MaterialKind::Triples, None, 10, 3).await.expect("fill") {
        assert_eq!((status.phase, status.batches_stored), (Phase::Succeeded, 3), "{status:?}");
    }
    // Stored at second t, a batch is older than 1 s from t + 2; the expiry
    // task runs every second.
    let started = std::time::Instant::now();
    while items(&federation).await.iter().any(|kinds| !kinds.is_empty()) {
        assert!(started.elapsed() < Duration::from_secs(20), "never expired: {:?}", items(&federation).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in names() {
        let dir = federation.dir.join(format!("{name}-pool"));
        let ledger = std::fs::read_to_string(dir.join("ledger")).expect("ledger");
        assert_eq!(ledger.lines().filter(|l| l.starts_with("discard ")).count(), 3, "{name}: {ledger}");
        let left = std::fs::read_dir(dir.join("batches")).expect("batches").count();
        assert_eq!(left, 0, "{name}: the files are gone");
    }
    let metrics = http_get(&federation.workers[0].metrics, "/metrics").await;
    assert!(metrics.contains("cohort_worker_pool_discarded_batches_total 3"), "{metrics}");
    // Used up, the kind reads 0 rather than vanishing from the dashboards.
    assert!(metrics.contains("cohort_worker_pool_available_items{kind=\"triples\",divisor=\"\"} 0"), "{metrics}");
    assert!(metrics.contains("cohort_worker_pool_available_batches{kind=\"triples\",divisor=\"\"} 0"), "{metrics}");
}

/// Issue 15, item 1: mean and variance over lengths that are not powers of
/// two in pool mode (refused before: pools stock pairs for powers of two
/// only). The pool serves the triples and the truncation pairs; the pairs
/// for the length are generated during the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_jobs_divide_by_lengths_that_are_not_powers_of_two() {
    let federation = start().await;
    fill(&federation, 1100, 3).await;
    let program = "input x: fixed[] from each\nlet all = concat(x)\noutput m = mean(all)\noutput v = variance(all)\n";
    for (k, total) in [3usize, 50, 1000].into_iter().enumerate() {
        let per_party: Vec<Vec<f64>> =
            (0..PARTIES).map(|p| values(k, p, total / PARTIES + usize::from(p < total % PARTIES))).collect();
        let all: Vec<f64> = per_party.concat();
        assert_eq!(all.len(), total);
        let mean = all.iter().sum::<f64>() / total as f64;
        let variance = all.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / total as f64;
        let id = submit_program(&federation, program, &per_party, 60.0).await;
        for w in &federation.workers {
            let status = w.client.wait(&id, Duration::from_millis(10)).await.expect("status");
            assert_eq!(status.phase, Phase::Succeeded, "{total} values at {}: {status:?}", w.name);
            let get = |name: &str| match status.outputs.as_ref().and_then(|o| o.get(name)) {
                Some(v @ OutputValue::Scalar(_)) => v.as_f64().expect("a number"),
                other => panic!("output {name}: {other:?}"),
            };
            assert!((get("m") - mean).abs() < 1e-3, "{total} values: mean {} vs {mean}", get("m"));
            assert!((get("v") - variance).abs() < 1e-2, "{total} values: variance {} vs {variance}", get("v"));
            assert!(!status.stats.as_ref().expect("stats").batches.is_empty(), "the pool served the job");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fill_requests_are_refused_naming_the_field() {
    use cohort_worker::service::api::FillRequest;
    let federation = start().await;
    let client = &federation.workers[0].client;
    let good = FillRequest {
        id: JobId::random().to_string(),
        parties: names(),
        kind: MaterialKind::Triples,
        divisor: None,
        per_batch: 10,
        batches: 1,
        timeouts: JobTimeouts::default(),
    };
    type Edit = fn(&mut FillRequest);
    let cases: [(Edit, &str); 8] = [
        (|r| r.per_batch = 0, "perBatch: must be between 1"),
        (|r| r.batches = 1_000_000, "batches: must be between 1 and 4096"),
        (|r| (r.kind, r.divisor) = (MaterialKind::DivPairs, Some(3)), "powers of two only, not 3"),
        (|r| r.divisor = Some(4), "divisor: only division pairs have one"),
        (|r| (r.kind, r.divisor) = (MaterialKind::EdaBits, Some(4)), "divisor: only division pairs have one"),
        // One batch is one generator call: 2^18 bit-triple words at most.
        (|r| (r.kind, r.per_batch) = (MaterialKind::BitTriples, 1 << 19), "perBatch: must be between 1 and 262144"),
        (|r| r.parties = vec!["party-0".into(), "mallory".into()], "party mallory is not in"),
        (|r| r.id = format!("f1115e55{}", &r.id[8..]), "reserved"),
    ];
    for (edit, needle) in cases {
        let mut request = FillRequest { id: JobId::random().to_string(), ..good.clone() };
        edit(&mut request);
        let e = client.fill(&request).await.expect_err("refused");
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
    // The same id with another request is a conflict.
    client.fill(&good).await.expect("a fill");
    let other = FillRequest { batches: 2, ..good.clone() };
    assert_eq!(client.fill(&other).await.expect_err("conflict").status(), Some(409));
}

/// Comparisons in pool mode (issue 16): the pool serves the job's
/// arithmetic and binary material (bit triples, edaBits, daBits), agreed
/// and used once like triples; with no binary material the job waits,
/// naming the kind, until a fill brings it; every party gets the
/// plaintext's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_jobs_compare_select_and_reduce() {
    let federation = start().await;
    fill(&federation, 200, 3).await;
    let program = "input x: fixed[] from each\nlet all = concat(x)\noutput above = count(all > 0.5)\n\
                   output top = max(all)\noutput at = argmin(all)\noutput flags = all < 0\n\
                   output clipped = sum(clamp(all, -1, 1)) * 0.5\n";
    let per_party: Vec<Vec<f64>> = (0..PARTIES).map(|p| values(7, p, 40 + p)).collect();
    let all: Vec<f64> = per_party.concat();
    let id = submit_program(&federation, program, &per_party, 120.0).await;
    // No binary material yet: the job waits, saying for which kind.
    loop {
        let status = federation.workers[1].client.status(&id).await.expect("status");
        assert!(!status.phase.is_final(), "{status:?}");
        if status.step.as_deref().is_some_and(|s| s.contains("waiting for preprocessing")) {
            let step = status.step.as_deref().unwrap_or_default();
            assert!(step.contains("holds 0 of the") && step.contains("bit triples (in words of 64) needed"), "{step}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The job needs about 1,400 bit-triple words, 736 edaBits and 735
    // daBits (`cohort check --lengths`): fill more, in several batches.
    let mut binary_fills = Vec::new();
    for (kind, per_batch, batches) in
        [(MaterialKind::BitTriples, 1000, 2), (MaterialKind::EdaBits, 500, 2), (MaterialKind::DaBits, 500, 2)]
    {
        for status in federation.fill(kind, None, per_batch, batches).await.expect("fill") {
            assert_eq!(status.phase, Phase::Succeeded, "{status:?}");
            assert_eq!(status.batches_stored, batches);
            binary_fills.push((kind, status.id));
        }
    }
    let above = all.iter().filter(|x| **x > 0.5).count() as f64;
    let top = all.iter().copied().fold(f64::MIN, f64::max);
    let at = all.iter().enumerate().fold(0, |best, (i, x)| if *x < all[best] { i } else { best }) as f64;
    let clipped = all.iter().map(|x| x.clamp(-1.0, 1.0)).sum::<f64>() * 0.5;
    let mut used: Option<Vec<String>> = None;
    for w in &federation.workers {
        let status = w.client.wait(&id, Duration::from_millis(10)).await.expect("status");
        assert_eq!(status.phase, Phase::Succeeded, "at {}: {status:?}", w.name);
        let outputs = status.outputs.as_ref().expect("outputs");
        let number = |name: &str| match outputs.get(name) {
            Some(v @ OutputValue::Scalar(_)) => v.as_f64().expect("a number"),
            other => panic!("output {name}: {other:?}"),
        };
        assert_eq!(number("above"), above);
        assert_eq!(number("top"), top);
        assert_eq!(number("at"), at);
        assert!((number("clipped") - clipped).abs() < 1e-3, "clipped {} vs {clipped}", number("clipped"));
        match outputs.get("flags") {
            Some(OutputValue::Bools(flags)) => {
                assert_eq!(flags, &all.iter().map(|x| *x < 0.0).collect::<Vec<_>>());
            }
            other => panic!("flags: {other:?}"),
        }
        let batches = status.stats.as_ref().expect("stats").batches.clone();
        if let Some(u) = &used {
            assert_eq!(u, &batches, "every party used the same batches");
        }
        used = Some(batches);
    }
    // The job's batches include the binary fills' (a batch is named after
    // its fill session), and the pools hold less of every binary kind.
    let used = used.expect("a party");
    for (kind, fill) in &binary_fills {
        assert!(used.iter().any(|b| b.starts_with(fill.as_str())), "{kind:?}: no batch of fill {fill} in {used:?}");
    }
    let pools = pools(&federation).await;
    assert!(pools.iter().all(|p| p.kinds == pools[0].kinds), "{pools:?}");
    for (kind, filled) in
        [(MaterialKind::BitTriples, 2000), (MaterialKind::EdaBits, 1000), (MaterialKind::DaBits, 1000)]
    {
        let left: usize = pools[0].kinds.iter().filter(|k| k.kind == kind).map(|k| k.items).sum();
        assert!(left < filled, "{kind:?}: {left} of {filled} left");
    }
    // Used once: every party's ledger records each batch, none twice.
    for party in names() {
        let ids = ledger_ids(&federation, &party);
        assert!(used.iter().all(|b| ids.contains(&b.replace(':', "-"))), "{party}: {ids:?}");
    }
}
