//! A CA key replacement against the in-memory API server, with real
//! `cohort-worker` processes as the shards: every phase in order, both CAs
//! in every bundle during the overlap, leaves reissued by the new CA, the
//! old CA retired only once every shard serves the new one, and only the
//! new CA at the end. The workers of this branch read their files at start,
//! so the test restarts them where the kubelet would refresh the volumes
//! and the workers reload them.

mod support;

use std::time::Duration;

use cohort_crds::MpcCluster;
use cohort_crds::cluster::{CaRotationPhase, CaRotationStatus};
use cohort_operator::controller;
use cohort_operator::leader::stopped;
use cohort_worker::transport::PartyCa;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use support::*;

const NS: &str = "bank-a";
const SHARDS: usize = 2;
const WAIT: Duration = Duration::from_secs(60);

fn certs_in(pem: &str) -> usize {
    pem.matches("BEGIN CERTIFICATE").count()
}

async fn rotation(clusters: &Api<MpcCluster>) -> Result<CaRotationStatus, String> {
    let c = clusters.get("consortium").await.map_err(|e| e.to_string())?;
    c.status.and_then(|s| s.certificates).and_then(|c| c.ca_rotation).ok_or_else(|| "no rotation".to_string())
}

async fn wait_phase(clusters: &Api<MpcCluster>, phase: CaRotationPhase) -> CaRotationStatus {
    eventually(&format!("{phase:?}"), WAIT, || async {
        let r = rotation(clusters).await?;
        if r.phase == phase { Ok(r) } else { Err(format!("{r:?}")) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_key_replacement_overlaps_both_cas_and_retires_the_old_one_once_every_shard_serves_the_new() {
    let server = api_server().await;
    let client = server.client();
    let peer_ca = PartyCa::generate("consortium", "bank-b", Duration::from_secs(3600)).expect("a CA").cert_pem();
    put_secret(&client, NS, "bank-b-ca", &[("ca.crt", peer_ca.as_bytes())]).await;
    // The peer's endpoint answers (the operator checks peers before retiring).
    let peer = std::net::TcpListener::bind("127.0.0.1:0").expect("a peer port");
    let peer_endpoint = peer.local_addr().expect("address").to_string();
    let cluster: MpcCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "cohort.dev/v1alpha1", "kind": "MpcCluster",
        "metadata": {"name": "consortium", "namespace": NS},
        "spec": {
            "self": "bank-a", "federation": "consortium",
            "parties": [
                {"name": "bank-a", "endpoint": "127.0.0.1:17443"},
                {"name": "bank-b", "endpoint": peer_endpoint, "trust": {"secretRef": {"name": "bank-b-ca"}}},
            ],
            "shards": SHARDS,
            "tls": {"caRotation": {"minPhaseDuration": "3s"}},
        }
    }))
    .expect("an MpcCluster");
    let clusters: Api<MpcCluster> = Api::namespaced(client.clone(), NS);
    clusters.create(&PostParams::default(), &cluster).await.expect("create");

    let (endpoints, control) = shard_endpoints();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = context(operator_client(&server), "test", control);
    let metrics = ctx.metrics.clone();
    let running = tokio::spawn(controller::cluster::run(ctx, Some(NS.into()), stopped(stop_rx)));
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    eventually("the StatefulSet", WAIT, || async {
        sets.get_opt("consortium").await.map_err(|e| e.to_string())?.map(|_| ()).ok_or_else(|| "absent".to_string())
    })
    .await;
    let shards = Shards::new(&client, NS, SHARDS, &peer_ca, endpoints).await;
    let mut workers = Vec::new();
    for i in 0..SHARDS {
        workers.push(shards.start(i).await);
    }

    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let ca_secret = || async { secrets.get("consortium-ca").await.expect("the CA Secret") };
    let old_ca = secret_text(&ca_secret().await, "tls.crt");
    assert_eq!(secret_text(&ca_secret().await, "ca.crt").trim(), old_ca.trim(), "one CA, published as ca.crt");
    let old_leaf = secret_text(&secrets.get("consortium-worker-0").await.expect("leaf"), "tls.crt");

    // TrustNewCa: the new CA beside the old, in every bundle; leaves unchanged.
    let patch = serde_json::json!({"metadata": {"annotations": {"cohort.dev/rotate-ca-key": "2026-01"}}});
    clusters.patch("consortium", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");
    let r = wait_phase(&clusters, CaRotationPhase::TrustNewCa).await;
    assert_eq!(r.token, "2026-01");
    assert!(r.started_at.is_some());
    let s = ca_secret().await;
    let next_ca = secret_text(&s, "next.crt");
    let bundle = secret_text(&s, "ca.crt");
    assert_eq!(certs_in(&bundle), 2);
    assert!(bundle.contains(old_ca.trim()) && bundle.contains(next_ca.trim()));
    assert_eq!(secret_text(&s, "tls.crt"), old_ca, "the old CA still signs");
    let trust = maps.get("consortium-trust").await.expect("trust").data.expect("data");
    assert_eq!(certs_in(&trust["bank-a.pem"]), 2);
    assert_eq!(secret_text(&secrets.get("consortium-worker-0").await.expect("leaf"), "tls.crt"), old_leaf);

    // ReissueLeaves: the new CA signs, the old stays trusted; the leaves
    // are reissued, but the running workers still serve the old ones, so
    // the old CA is not retired.
    wait_phase(&clusters, CaRotationPhase::ReissueLeaves).await;
    let s = ca_secret().await;
    assert_eq!(secret_text(&s, "tls.crt").trim(), next_ca.trim());
    assert_eq!(secret_text(&s, "previous.crt").trim(), old_ca.trim());
    assert_eq!(certs_in(&secret_text(&s, "ca.crt")), 2);
    let new_leaf = eventually("the reissued leaf", WAIT, || async {
        let leaf = secret_text(&secrets.get("consortium-worker-0").await.map_err(|e| e.to_string())?, "tls.crt");
        if leaf.contains(next_ca.trim()) { Ok(leaf) } else { Err("the old leaf".to_string()) }
    })
    .await;
    assert_ne!(new_leaf, old_leaf);
    let r = eventually("the probe finds the old leaves", WAIT, || async {
        let r = rotation(&clusters).await?;
        let m = r.message.clone().unwrap_or_default();
        if m.contains("not every shard serves") { Ok(r) } else { Err(format!("{r:?}")) }
    })
    .await;
    assert_eq!(r.phase, CaRotationPhase::ReissueLeaves);

    // The kubelet refreshes the volumes and the workers reload them.
    shards.refresh().await;
    for (i, w) in workers.iter_mut().enumerate() {
        let _ = w.kill().await;
        *w = shards.start(i).await;
    }
    wait_phase(&clusters, CaRotationPhase::Complete).await;
    let s = ca_secret().await;
    let data = s.data.clone().expect("data");
    assert_eq!(data.keys().cloned().collect::<Vec<_>>(), ["ca.crt", "tls.crt", "tls.key"]);
    assert_eq!(secret_text(&s, "ca.crt").trim(), next_ca.trim(), "only the new CA is published");
    let trust = maps.get("consortium-trust").await.expect("trust").data.expect("data");
    assert_eq!(trust["bank-a.pem"].trim(), next_ca.trim());
    let reasons: Vec<String> =
        server.objects("events").iter().filter_map(|e| e["reason"].as_str().map(String::from)).collect();
    for want in ["CaRotationStarted", "CaRotationReissuing", "CaRotationRetiring", "CaRotationComplete"] {
        assert!(reasons.iter().any(|r| r == want), "event {want} in {reasons:?}");
    }
    // The shards still answer the operator, trusting the new CA only.
    shards.refresh().await;
    for i in 0..SHARDS {
        shards.client(i).expect("client").health().await.expect("health through the new CA");
    }
    assert!(metrics.encode().contains("cohort_operator_certificate_expiry_timestamp_seconds"));

    assert_chart_rbac_allows(&server);
    stop_tx.send(true).expect("stop");
    tokio::time::timeout(WAIT, running).await.expect("the controller stops").expect("no panic");
    drop(peer);
}
