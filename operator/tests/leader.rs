//! Leader election between two operator replicas on one API server: only
//! the Lease holder reconciles; when it dies without releasing the Lease,
//! the standby takes over once the Lease expires; a replica that shuts down
//! releases the Lease.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_crds::MpcCluster;
use cohort_operator::controller::{self, Context, cluster_dns_endpoints};
use cohort_operator::leader::{LeaseConfig, lead};
use cohort_operator::metrics::Metrics;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use support::*;

const LEASE: Duration = Duration::from_secs(3);

fn lease(identity: &str) -> LeaseConfig {
    LeaseConfig {
        name: "cohort-operator-leader".into(),
        namespace: "cohort-system".into(),
        identity: identity.into(),
        duration: LEASE,
    }
}

fn replica(client: &Client, identity: &str) -> (Arc<Context>, Arc<Metrics>) {
    let metrics = Metrics::shared();
    let reporter = Reporter { controller: "cohort-operator".into(), instance: Some(identity.into()) };
    let ctx = Context::new(client.clone(), settings(), reporter, metrics.clone(), cluster_dns_endpoints());
    (Arc::new(ctx), metrics)
}

async fn holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "cohort-system");
    leases.get_opt("cohort-operator-leader").await.ok().flatten()?.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_reconciles_and_a_standby_takes_over() {
    let server = api_server().await;
    let client = server.client();
    bank_a_trust(&client).await;

    // Replica a runs on a runtime of its own, so it can die abruptly
    // (no release of the Lease) by shutting that runtime down.
    let runtime_a =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (ctx_a, metrics_a) = replica(&client, "a");
    let (_shutdown_a, rx_a) = tokio::sync::watch::channel(false);
    let (client_a, m) = (client.clone(), metrics_a.clone());
    runtime_a.spawn(async move {
        let _ = lead(client_a, &lease("a"), m, rx_a, |stop| controller::run_all(ctx_a.clone(), None, stop)).await;
    });
    eventually("a leads", Duration::from_secs(20), || async {
        if metrics_a.is_leader() { Ok(()) } else { Err("not yet".to_string()) }
    })
    .await;

    let (ctx_b, metrics_b) = replica(&client, "b");
    let (shutdown_b, rx_b) = tokio::sync::watch::channel(false);
    let (client_b, m) = (client.clone(), metrics_b.clone());
    let replica_b = tokio::spawn(async move {
        lead(client_b, &lease("b"), m, rx_b, |stop| controller::run_all(ctx_b.clone(), None, stop)).await
    });

    let cluster: MpcCluster = example("examples/k8s/bank-a.yaml", "MpcCluster");
    Api::<MpcCluster>::namespaced(client.clone(), "bank-a")
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create");
    eventually("a reconciles", Duration::from_secs(20), || async {
        match metrics_a.reconciliations("MpcCluster") {
            0 => Err("no reconcile yet".to_string()),
            _ => Ok(()),
        }
    })
    .await;
    tokio::time::sleep(LEASE).await;
    assert_eq!(metrics_b.reconciliations("MpcCluster"), 0, "the standby must not reconcile");
    assert!(!metrics_b.is_leader());
    assert_eq!(holder(&client).await.as_deref(), Some("a"));

    // a dies without releasing: b takes over once the Lease expires.
    let died = Instant::now();
    runtime_a.shutdown_background();
    eventually("b leads", LEASE * 4, || async {
        if metrics_b.is_leader() { Ok(()) } else { Err(format!("holder {:?}", holder(&client).await)) }
    })
    .await;
    let took = died.elapsed();
    // Expiry (the Lease duration) plus the renewal grace and the manager's
    // random back-off of at most a second before it locks.
    assert!(took <= LEASE + LEASE / 3 + Duration::from_secs(3), "takeover took {took:?}");
    assert_eq!(holder(&client).await.as_deref(), Some("b"));
    eventually("b reconciles", Duration::from_secs(20), || async {
        match metrics_b.reconciliations("MpcCluster") {
            0 => Err("no reconcile yet".to_string()),
            _ => Ok(()),
        }
    })
    .await;

    // b shuts down gracefully and releases the Lease.
    shutdown_b.send(true).expect("shutdown");
    tokio::time::timeout(Duration::from_secs(20), replica_b)
        .await
        .expect("b stops")
        .expect("no panic")
        .expect("clean stop");
    assert!(!metrics_b.is_leader());
    assert_eq!(holder(&client).await, None, "the Lease is released");
}
