//! Peer probes between real `cohort-worker` processes: each worker knows,
//! between jobs, which peers are up and how long reaching them takes, and
//! why a peer is down.

use std::time::Duration;

use cohort_cli::launch::Federation;
use cohort_e2e::{http_get, launch_options};
use cohort_worker::service::api::PeerHealth;

fn names() -> Vec<String> {
    (0..3).map(|i| format!("party-{i}")).collect()
}

/// Wait until worker `i`'s health shows `peer` in the state `want` and
/// its error (if down) contains `reason`.
async fn peer_state(federation: &Federation, i: usize, peer: &str, want: bool, reason: &str) -> PeerHealth {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let health = federation.workers[i].client.health().await.expect("health");
        let found = health.peers.iter().find(|p| {
            p.party == peer && p.up == want && (want || p.error.as_deref().is_some_and(|e| e.contains(reason)))
        });
        if let Some(p) = found {
            return p.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{peer} never became up={want} ({reason}) at party-{i}: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(text: &str, name: &str, peer: &str) -> Option<f64> {
    let prefix = format!("{name}{{peer=\"{peer}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_probe_their_peers_and_say_why_one_is_down() {
    let mut options = launch_options("warn", None);
    options.peer_probe = Duration::from_millis(200);
    let mut federation = Federation::start(&names(), &options).await.expect("workers start");

    for peer in ["party-1", "party-2"] {
        let p = peer_state(&federation, 0, peer, true, "").await;
        assert!(p.connect_seconds.is_some_and(|s| s > 0.0 && s < 30.0), "{p:?}");
        assert_eq!((p.min_version, p.max_version), (Some(1), Some(cohort_worker::protocol::SUPPORTED_VERSIONS.1)));
    }
    let text = http_get(&federation.workers[0].metrics, "/metrics").await;
    assert_eq!(metric(&text, "cohort_worker_peer_up", "party-2"), Some(1.0), "{text}");
    assert!(metric(&text, "cohort_worker_peer_connect_seconds", "party-2").is_some_and(|s| s > 0.0), "{text}");

    // party-2 goes away: party-0 sees it down, with the reason.
    federation.kill_worker(2).await.expect("killed");
    peer_state(&federation, 0, "party-2", false, "party party-2, step handshake").await;
    let text = http_get(&federation.workers[0].metrics, "/metrics").await;
    assert_eq!(metric(&text, "cohort_worker_peer_up", "party-2"), Some(0.0), "{text}");

    // party-2 comes back with a certificate from a CA nobody trusts: up at
    // the TCP level, refused by TLS, and the probe says so.
    let rogue = cohort_worker::transport::PartyCa::generate(
        cohort_cli::launch::FEDERATION,
        "party-2",
        Duration::from_secs(3600),
    )
    .expect("CA");
    federation.renew_leaf("party-2", Some(&rogue), Duration::from_secs(3600)).expect("leaf");
    federation.restart_worker(2).await.expect("restarts");
    peer_state(&federation, 1, "party-2", false, "certificate of party party-2 is not signed by a trusted CA").await;

    // A proper certificate again: up.
    federation.renew_leaf("party-2", None, Duration::from_secs(3600)).expect("leaf");
    federation.restart_worker(2).await.expect("restarts");
    peer_state(&federation, 0, "party-2", true, "").await;
    peer_state(&federation, 1, "party-2", true, "").await;
}
