//! The PreprocessingPool controller (with the MpcCluster controller it
//! depends on) against the in-memory API server: a pool hosting the trusted
//! dealer gets its certificate from the party CA, a one-replica StatefulSet
//! with the journal on a volume, and a status that follows the pod; the
//! cluster's workers trust that dealer through the party's own CA. A pool
//! in OT mode owns no pod: every shard's worker configuration gains the
//! pool's settings, and the pool reports what the workers hold (here, that
//! they cannot be reached).

mod support;

use std::time::Duration;

use cohort_crds::conditions::{find_condition, types};
use cohort_crds::{MpcCluster, PreprocessingPool};
use cohort_operator::controller::{self, cluster_dns_endpoints};
use cohort_worker::transport::PartyCa;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use support::*;

const NS: &str = "bank-a";
const WAIT: Duration = Duration::from_secs(20);

fn condition(p: &PreprocessingPool, type_: &str) -> Option<(String, String)> {
    let c = find_condition(&p.status.as_ref()?.conditions, type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

async fn wait_reason(pools: &Api<PreprocessingPool>, name: &str, type_: &str, want: (&str, &str)) -> PreprocessingPool {
    eventually(&format!("{name} {type_}={want:?}"), WAIT, || async {
        let p = pools.get(name).await.map_err(|e| e.to_string())?;
        match condition(&p, type_) {
            Some((s, r)) if s == want.0 && r == want.1 => Ok(p),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

fn pool(name: &str, generator: serde_json::Value) -> PreprocessingPool {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "cohort.dev/v1alpha1", "kind": "PreprocessingPool",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"clusterRef": {"name": "consortium"},
                 "material": [{"kind": "beaver-triple", "target": 1000, "lowWatermark": 10}],
                 "generator": generator, "storage": {"size": "1Gi"}}
    }))
    .expect("a pool")
}

async fn peer_cas(client: &Client) {
    for party in ["bank-b", "bank-c"] {
        let ca = PartyCa::generate("consortium", party, Duration::from_secs(3600)).expect("a CA");
        put_secret(client, NS, &format!("{party}-ca"), &[("ca.crt", ca.cert_pem().as_bytes())]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_hosts_the_dealer_and_an_ot_pool_configures_the_workers() {
    let server = api_server().await;
    let client = server.client();
    peer_cas(&client).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = context(operator_client(&server), "test", cluster_dns_endpoints());
    let running = tokio::spawn(controller::run_all(ctx, Some(NS.into()), stop_rx));

    // bank-a hosts dealer `main` (a test federation): its workers trust
    // the dealer through bank-a's own CA.
    let mut cluster: MpcCluster = example("examples/k8s/bank-a.yaml", "MpcCluster");
    let dealer = serde_json::json!({"name": "main", "endpoint": "dealer.bank-a.example:7500",
        "trust": {"secretRef": {"name": "consortium-ca", "key": "tls.crt"}}});
    cluster.spec.dealer = Some(serde_json::from_value(dealer).expect("a dealer"));
    Api::<MpcCluster>::namespaced(client.clone(), NS).create(&PostParams::default(), &cluster).await.expect("create");
    let pools: Api<PreprocessingPool> = Api::namespaced(client.clone(), NS);
    let hosted =
        pool("dealer", serde_json::json!({"mode": "dealer", "replicas": 1, "dealer": {"host": true, "name": "main"}}));
    pools.create(&PostParams::default(), &hosted).await.expect("create the pool");

    // The cluster's trust ConfigMap carries its own CA as the dealer's.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let trust = eventually("the trust ConfigMap", WAIT, || async {
        maps.get_opt("consortium-trust").await.map_err(|e| e.to_string())?.ok_or_else(|| "absent".to_string())
    })
    .await;
    let ca = secrets.get("consortium-ca").await.expect("the party CA");
    assert_eq!(trust.data.expect("data")["_dealer.pem"].trim(), secret_text(&ca, "tls.crt").trim());

    // The dealer's objects.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let sts = eventually("the dealer StatefulSet", WAIT, || async {
        sets.get_opt("dealer-dealer").await.map_err(|e| e.to_string())?.ok_or_else(|| "absent".to_string())
    })
    .await;
    let spec = sts.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    let claims = spec.volume_claim_templates.expect("a volume for the journal");
    let size =
        claims[0].spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.clone()).expect("requests");
    assert_eq!(size["storage"].0, "1Gi");
    let container = &spec.template.spec.expect("pod").containers[0];
    let args = container.args.clone().unwrap_or_default();
    assert!(args.iter().any(|a| a == "--state-dir"), "{args:?}");
    assert_eq!(container.security_context.as_ref().and_then(|s| s.read_only_root_filesystem), Some(true));
    let tls = secrets.get("dealer-dealer-tls").await.expect("the dealer certificate");
    let chain = secret_text(&tls, "tls.crt");
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    let sans = format!("{:?}", cert.subject_alternative_name().expect("SAN").expect("a SAN").value.general_names);
    assert!(sans.contains("dealer.bank-a.example") && sans.contains("spiffe://consortium/dealer/main"), "{sans}");

    // Status: not ready until the pod is, and honest about stock.
    let p = wait_reason(&pools, "dealer", types::READY, ("False", "DealerNotReady")).await;
    assert_eq!(condition(&p, types::BELOW_WATERMARK), Some(("False".into(), "OnDemand".into())));
    assert!(p.status.expect("status").available.is_empty(), "a dealer keeps no stock to count");
    let generation = sets.get("dealer-dealer").await.expect("sts").metadata.generation;
    let ready = serde_json::json!({"status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": generation}});
    sets.patch_status("dealer-dealer", &PatchParams::default(), &Patch::Merge(&ready)).await.expect("mark ready");
    wait_reason(&pools, "dealer", types::READY, ("True", "DealerReady")).await;

    // OT mode: the workers generate and keep the material. Every shard's
    // configuration gains the pool (on the results volume), and the pool
    // reports the workers' stock: here no worker runs to answer.
    // With the binary kinds of comparisons: bit triples are counted in
    // triples here and kept in words of 64 by the workers.
    let mut ot = pool("ot", serde_json::json!({"mode": "ot", "replicas": 1}));
    let binary = serde_json::json!([{"kind": "bit-triple", "target": 6400, "lowWatermark": 640},
        {"kind": "eda-bit", "target": 500, "lowWatermark": 50}]);
    ot.spec.material.extend(serde_json::from_value::<Vec<cohort_crds::pool::MaterialTarget>>(binary).expect("kinds"));
    pools.create(&PostParams::default(), &ot).await.expect("create");
    let p = wait_reason(&pools, "ot", types::READY, ("False", "WorkersUnreachable")).await;
    let ready = find_condition(&p.status.as_ref().expect("status").conditions, types::READY).expect("ready");
    assert!(ready.message.contains("worker shard 0 did not report its pool"), "{}", ready.message);
    assert_eq!(condition(&p, types::BELOW_WATERMARK), Some(("Unknown".into(), "WorkersUnreachable".into())));
    assert!(sets.get_opt("ot-dealer").await.expect("read").is_none(), "an OT pool runs no dealer");
    let shard = eventually("the pool in the workers' configuration", WAIT, || async {
        let config = maps.get("consortium-config").await.map_err(|e| e.to_string())?;
        let text = config.data.and_then(|d| d.get("shard-0.yaml").cloned()).ok_or("no shard-0.yaml")?;
        if text.contains("pool:") { Ok(text) } else { Err(text) }
    })
    .await;
    let parsed: cohort_worker::service::config::WorkerConfig = serde_saphyr::from_str(&shard).expect("a worker config");
    let pool = parsed.pool.expect("pool settings");
    assert_eq!(pool.dir, std::path::Path::new("/var/lib/cohort/results/pool"));
    assert_eq!((pool.low_watermark, pool.target), (10, 1000));
    assert_eq!(pool.ttl, Duration::from_secs(24 * 3600));
    use cohort_worker::preprocessing::store::StoredKind;
    use cohort_worker::service::config::Watermarks;
    assert_eq!(pool.watermarks(StoredKind::BitTriples), Watermarks { low_watermark: 10, target: 100 });
    assert_eq!(pool.watermarks(StoredKind::EdaBits), Watermarks { low_watermark: 50, target: 500 });
    assert_eq!(pool.watermarks(StoredKind::DaBits), Watermarks { low_watermark: 0, target: 0 }, "not listed");

    // The federation switches to replicated-3, which takes no material (so
    // the cluster drops its dealer, which replicated-3 refuses): both pools
    // are refused, the hosted dealer goes, and the workers' configuration
    // loses the pool.
    let switch = serde_json::json!({"spec": {"protocol": {"name": "replicated-3"}, "dealer": null}});
    Api::<MpcCluster>::namespaced(client.clone(), NS)
        .patch("consortium", &PatchParams::default(), &Patch::Merge(&switch))
        .await
        .expect("switch the protocol");
    for name in ["dealer", "ot"] {
        let p = wait_reason(&pools, name, types::READY, ("False", "ProtocolTakesNoPreprocessing")).await;
        let ready = find_condition(&p.status.as_ref().expect("status").conditions, types::READY).expect("ready");
        assert!(
            ready
                .message
                .contains("the MpcCluster consortium runs replicated-3, which takes no preprocessing material"),
            "{}",
            ready.message
        );
        assert_eq!(condition(&p, types::DEGRADED), Some(("True".into(), "ProtocolTakesNoPreprocessing".into())));
    }
    eventually("the hosted dealer removed", WAIT, || async {
        let set = sets.get_opt("dealer-dealer").await.map_err(|e| e.to_string())?;
        let tls = secrets.get_opt("dealer-dealer-tls").await.map_err(|e| e.to_string())?;
        if set.is_none() && tls.is_none() { Ok(()) } else { Err("still there".to_string()) }
    })
    .await;
    eventually("no pool in the workers' configuration", WAIT, || async {
        let config = maps.get("consortium-config").await.map_err(|e| e.to_string())?;
        let files = config.data.unwrap_or_default();
        let rendered = files.values().all(|t| t.contains("name: replicated-3") && !t.contains("pool:"));
        if rendered { Ok(()) } else { Err(format!("{files:?}")) }
    })
    .await;

    assert_chart_rbac_allows(&server);
    stop_tx.send(true).expect("stop");
    tokio::time::timeout(WAIT, running).await.expect("the controllers stop").expect("no panic");
}
