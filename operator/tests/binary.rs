//! The `cohort-operator` process as the chart runs it: flags and
//! environment per docs/operator.md, a kubeconfig pointing at the
//! in-memory API server. It becomes ready, takes the Lease, reconciles an
//! MpcCluster, serves its metrics, and on SIGTERM releases the Lease and
//! exits cleanly.

mod support;

use std::time::Duration;

use cohort_crds::MpcCluster;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::PostParams;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_process_leads_reconciles_and_releases_the_lease_on_sigterm() {
    let server = api_server().await;
    let client = server.client();
    let operator = spawn_operator(&server, "bank-a");
    let (health, metrics, mut child) = (operator.health.clone(), operator.metrics.clone(), operator.child);

    eventually("ready", WAIT, || async {
        match http_get(&health, "/readyz").await? {
            (200, _) => Ok(()),
            (code, _) => Err(format!("HTTP {code}")),
        }
    })
    .await;
    eventually("the Lease", WAIT, || async {
        let (_, body) = http_get(&metrics, "/metrics").await?;
        if body.contains("cohort_operator_leader 1") { Ok(()) } else { Err("not the leader yet".into()) }
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "cohort-system");
    let lease = leases.get("cohort-operator").await.expect("the Lease");
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some("cohort-operator-0"));

    bank_a_trust(&client).await;
    let cluster: MpcCluster = example("examples/k8s/bank-a.yaml", "MpcCluster");
    Api::<MpcCluster>::namespaced(client.clone(), "bank-a")
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create the MpcCluster");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "bank-a");
    let sts = eventually("the workers' StatefulSet", WAIT, || async {
        sets.get_opt("consortium").await.map_err(|e| e.to_string())?.ok_or_else(|| "absent".to_string())
    })
    .await;
    let image = sts.spec.and_then(|s| s.template.spec).map(|p| p.containers[0].image.clone());
    assert_eq!(image.flatten(), Some(format!("ghcr.io/cohort-mpc/cohort-worker:{}", env!("CARGO_PKG_VERSION"))));
    let (_, body) = http_get(&metrics, "/metrics").await.expect("metrics");
    assert!(body.contains("cohort_operator_reconciliations_total{kind=\"MpcCluster\"}"), "{body}");

    // SIGTERM: stop reconciling, release the Lease, exit 0.
    let pid = child.id().expect("a pid").to_string();
    let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(sent.success());
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("exits in time").expect("exit status");
    assert!(status.success(), "{status}");
    let lease = leases.get("cohort-operator").await.expect("the Lease");
    assert_eq!(lease.spec.and_then(|s| s.holder_identity), None, "the Lease is released");
    assert_chart_rbac_allows(&server);
}

#[test]
fn bad_flags_are_refused_with_a_clear_message() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cohort-operator"))
        .args(["--lease-namespace", "x", "--lease-duration", "soon"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--lease-duration") && err.contains("soon"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cohort-operator"))
        .args(["--lease-namespace", "x", "--operator-pod-labels", "app"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not key=value"));
}
