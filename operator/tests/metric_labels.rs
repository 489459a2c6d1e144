//! Per-object operator metrics follow cert-manager's convention: labelled
//! by the object's namespace and name, so two MpcClusters (or pools) with
//! one name in two namespaces are two series, and removed when the object
//! is deleted, so its alerts stop. The controllers run against the
//! in-memory API server in every namespace, as with `scope: Cluster`.

mod support;

use std::time::Duration;

use cohort_crds::{MpcCluster, PreprocessingPool};
use cohort_operator::controller::{self, cluster_dns_endpoints};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn cluster_series(ns: &str) -> Vec<String> {
    let l = format!("namespace=\"{ns}\",name=\"consortium\"");
    vec![
        format!("cohort_operator_cluster_peers{{{l}}} 2"),
        format!("cohort_operator_cluster_peers_reachable{{{l}}}"),
        format!("cohort_operator_certificate_expiry_timestamp_seconds{{{l},certificate=\"ca\"}}"),
        format!("cohort_operator_certificate_expiry_timestamp_seconds{{{l},certificate=\"worker\"}}"),
        format!("cohort_operator_certificate_expiry_timestamp_seconds{{{l},certificate=\"operator\"}}"),
    ]
}

fn pool_series(ns: &str) -> Vec<String> {
    let l = format!("namespace=\"{ns}\",name=\"default\"");
    vec![format!("cohort_operator_pool_ready{{{l}}}"), format!("cohort_operator_pool_below_watermark{{{l}}}")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_with_one_name_in_two_namespaces_are_two_series_and_a_deleted_ones_go() {
    let server = api_server().await;
    let client = server.client();
    bank_a_trust(&client).await;
    // bank-b's copy of the same objects trusts the same CAs.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "bank-a");
    for name in ["bank-b-ca", "bank-c-ca", "dealer-ca"] {
        let s = secrets.get(name).await.expect("the CA Secret");
        put_secret(&client, "bank-b", name, &[("ca.crt", secret_text(&s, "ca.crt").as_bytes())]).await;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = context(operator_client(&server), "test", cluster_dns_endpoints());
    let metrics = ctx.metrics.clone();
    let running = tokio::spawn(controller::run_all(ctx, None, stop_rx));

    let cluster: MpcCluster = example("examples/k8s/bank-a.yaml", "MpcCluster");
    let pool: PreprocessingPool = example("examples/k8s/bank-a.yaml", "PreprocessingPool");
    for ns in ["bank-a", "bank-b"] {
        let (mut c, mut p) = (cluster.clone(), pool.clone());
        c.metadata.namespace = Some(ns.into());
        p.metadata.namespace = Some(ns.into());
        Api::<MpcCluster>::namespaced(client.clone(), ns).create(&PostParams::default(), &c).await.expect("cluster");
        Api::<PreprocessingPool>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &p)
            .await
            .expect("pool");
    }

    let all: Vec<String> =
        ["bank-a", "bank-b"].iter().flat_map(|ns| [cluster_series(ns), pool_series(ns)].concat()).collect();
    eventually("a series per object", WAIT, || async {
        let text = metrics.encode();
        match all.iter().find(|s| !text.contains(s.as_str())) {
            None => Ok(()),
            Some(missing) => Err(format!("no {missing} in\n{text}")),
        }
    })
    .await;

    Api::<MpcCluster>::namespaced(client.clone(), "bank-b")
        .delete("consortium", &DeleteParams::default())
        .await
        .expect("delete bank-b's cluster");
    Api::<PreprocessingPool>::namespaced(client.clone(), "bank-b")
        .delete("default", &DeleteParams::default())
        .await
        .expect("delete bank-b's pool");
    eventually("bank-b's series to go", WAIT, || async {
        let text = metrics.encode();
        if text.contains("namespace=\"bank-b\"") { Err(text) } else { Ok(()) }
    })
    .await;
    let text = metrics.encode();
    for kept in [cluster_series("bank-a"), pool_series("bank-a")].concat() {
        assert!(text.contains(kept.as_str()), "bank-a's {kept} stays:\n{text}");
    }

    assert_chart_rbac_allows(&server);
    stop_tx.send(true).expect("stop");
    running.await.expect("the controllers stop");
}
