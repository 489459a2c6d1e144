//! Connection caps on the worker's control API and metrics port: thousands
//! of idle connections held open to each port (the worker limited to 512
//! descriptors, as in the review that found the defect) hold a bounded
//! number of the worker's descriptors, and stop neither a real job nor a
//! `/metrics` scrape. Real `cohort-worker` processes over loopback mTLS.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cohort_cli::launch::Federation;
use cohort_e2e::launch_options;
use cohort_worker::service::api::{JobTimeouts, Phase};
use tokio::net::TcpStream;

/// GET `/metrics`, or `None` when the connection is closed or reset (as a
/// worker at its connection cap does).
async fn scrape(addr: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.ok()?;
    Some(out)
}

/// Descriptors `pid` has open.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Set the descriptor limit of `pid` with util-linux `prlimit`.
fn set_nofile(pid: u32, soft: u64, hard: Option<u64>) {
    let limit = match hard {
        Some(h) => format!("--nofile={soft}:{h}"),
        None => format!("--nofile={soft}:"),
    };
    let status = std::process::Command::new("prlimit").arg(format!("--pid={pid}")).arg(limit).status();
    assert!(status.is_ok_and(|s| s.success()), "prlimit failed (is util-linux installed?)");
}

/// This process's hard descriptor limit.
fn hard_nofile() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files");
    line.split_whitespace().nth(4).and_then(|h| h.parse().ok()).unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_stop_neither_a_job_nor_a_scrape() {
    let names: Vec<String> = (0..2).map(|i| format!("party-{i}")).collect();
    let federation = Federation::start(&names, &launch_options("warn", None)).await.expect("federation starts");
    let pid = federation.workers[0].child.id().expect("worker pid");
    set_nofile(pid, 512, Some(512));
    // Hold more idle connections per port than the worker has descriptors.
    let per_port: usize = 1500;
    let need = (2 * per_port + 512) as u64;
    assert!(hard_nofile() >= need, "this test needs RLIMIT_NOFILE of at least {need}");
    set_nofile(std::process::id(), need, None);
    let baseline = descriptors(pid);

    let mut idle = Vec::new();
    let mut peak = 0;
    for addr in [&federation.workers[0].control, &federation.workers[0].metrics] {
        for i in 0..per_port {
            // A connection the worker cannot accept waits in its backlog;
            // give up on it rather than wait for the kernel's retries.
            if let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
                idle.push(tcp);
            }
            if i % 100 == 0 {
                peak = peak.max(descriptors(pid));
            }
        }
    }
    peak = peak.max(descriptors(pid));
    assert!(idle.len() >= per_port, "only {} idle connections opened", idle.len());
    // The caps (64 control, 16 metrics) and a margin for the worker's own.
    assert!(
        peak <= baseline + 64 + 16 + 32,
        "the worker held {peak} descriptors (from {baseline}) for {} idle connections",
        idle.len()
    );

    // With every idle connection still open: a scrape and a real job.
    let settle = Instant::now() + Duration::from_secs(60);
    loop {
        let scraped = tokio::time::timeout(Duration::from_secs(5), scrape(&federation.workers[0].metrics)).await;
        if let Ok(Some(text)) = scraped
            && text.contains("cohort_worker_jobs_total")
        {
            break;
        }
        assert!(Instant::now() < settle, "no /metrics scrape succeeded while idle connections were held");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let program = "input x: fixed[] from each\noutput s = sum(concat(x))\n";
    let inputs = (0..2)
        .map(|p| {
            BTreeMap::from([(
                "x".to_string(),
                vec![serde_json::Number::from_f64(p as f64 + 1.0).expect("finite").into()],
            )])
        })
        .collect();
    let timeouts = JobTimeouts { connect_seconds: Some(20.0), round_seconds: Some(20.0), total_seconds: Some(60.0) };
    let statuses = federation.run(program, inputs, timeouts, |_| {}).await.expect("the job runs");
    for status in &statuses {
        assert_eq!(status.phase, Phase::Succeeded, "{:?}", status.failure);
    }
    assert!(descriptors(pid) <= baseline + 64 + 16 + 32, "descriptors after the job: {}", descriptors(pid));
    drop(idle);
}
