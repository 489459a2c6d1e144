//! kube-runtime's Controller and kube-lease-manager against the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_memapi::ApiServer;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use serde_json::json;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

/// Reconciles per ConfigMap name.
type Counts = Arc<Mutex<HashMap<String, usize>>>;

struct Ctx {
    secrets: Api<Secret>,
    counts: Counts,
}

#[tokio::test]
async fn controller_reconciles_when_an_owned_object_changes() {
    let server = ApiServer::start().await.expect("start");
    let client = server.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let counts: Counts = Arc::default();

    let reconcile = |cm: Arc<ConfigMap>, ctx: Arc<Ctx>| async move {
        let Ctx { secrets, counts } = &*ctx;
        *counts.lock().expect("counts").entry(cm.name_any()).or_default() += 1;
        // Own a Secret, server-side applied with a controller reference.
        let owner = cm.controller_owner_ref(&()).expect("owner ref");
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": cm.name_any(), "ownerReferences": [owner]},
            "stringData": {"from": "controller"},
        });
        secrets
            .patch(&cm.name_any(), &PatchParams::apply("test-controller").force(), &Patch::Apply(&secret))
            .await
            .map_err(|_| Never)?;
        Ok::<_, Never>(Action::await_change())
    };
    let controller = Controller::new(cms.clone(), watcher::Config::default())
        .owns(secrets.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _: &Never, _| Action::requeue(Duration::from_secs(1)),
            Arc::new(Ctx { secrets: secrets.clone(), counts: counts.clone() }),
        )
        .for_each(|_| async {});
    let task = tokio::spawn(controller);

    let count = |name: &str| counts.lock().expect("counts").get(name).copied().unwrap_or(0);
    let wait_for = |what: &'static str, cond: Box<dyn Fn() -> bool + Send>| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "app"}})).expect("cm");
    cms.create(&PostParams::default(), &cm).await.expect("create");
    let c = counts.clone();
    wait_for("the first reconcile", Box::new(move || c.lock().expect("counts").get("app").is_some())).await;
    let secret = secrets.get("app").await.expect("owned secret exists");
    assert!(secret.owner_references().iter().any(|o| o.controller == Some(true)));

    // Settle, then change the owned Secret: the owner is reconciled again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = count("app");
    let drift = json!({"metadata": {"labels": {"touched": "yes"}}});
    secrets.patch("app", &PatchParams::default(), &Patch::Merge(&drift)).await.expect("touch the secret");
    let c = counts.clone();
    wait_for(
        "a reconcile after the owned change",
        Box::new(move || c.lock().expect("counts").get("app").copied().unwrap_or(0) > before),
    )
    .await;
    task.abort();
}

async fn manager(server: &ApiServer, identity: &str) -> LeaseManager {
    LeaseManagerBuilder::new(server.client(), "leader")
        .with_namespace("default")
        .with_identity(identity)
        .with_duration(2)
        .with_grace(1)
        .build()
        .await
        .expect("lease manager")
}

/// Waits until exactly one of the two is leader, returns its index.
async fn one_leader(rx: &[watch::Receiver<bool>; 2], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let (a, b) = (*rx[0].borrow(), *rx[1].borrow());
        assert!(!(a && b), "two leaders at once");
        if a != b {
            return if a { 0 } else { 1 };
        }
        assert!(Instant::now() < deadline, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_manager_elects_one_leader_and_fails_over() {
    let server = ApiServer::start().await.expect("start");
    let leases: Api<Lease> = Api::default_namespaced(server.client());
    let (rx_a, task_a) = manager(&server, "a").await.watch().await;
    let (rx_b, task_b) = manager(&server, "b").await.watch().await;
    let mut rx = [rx_a, rx_b];
    let mut tasks = [Some(task_a), Some(task_b)];
    let names = ["a", "b"];

    let leader = one_leader(&rx, Duration::from_secs(5)).await;
    // It stays one leader through several renewals.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(one_leader(&rx, Duration::ZERO).await, leader, "leadership moved without a failure");
        let holder = leases.get("leader").await.expect("lease").spec.and_then(|s| s.holder_identity);
        assert_eq!(holder.as_deref(), Some(names[leader]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The leader releases (its receiver is dropped): the other takes over
    // within the lease duration plus grace.
    let follower = 1 - leader;
    let dropped = std::mem::replace(&mut rx[leader], watch::channel(false).1);
    drop(dropped);
    let released_at = Instant::now();
    if let Some(task) = tasks[leader].take() {
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await.expect("the old leader stops");
        ended.expect("join").expect("released cleanly");
    }
    let deadline = released_at + Duration::from_secs(2 + 1) + Duration::from_millis(500);
    while !*rx[follower].borrow() {
        assert!(Instant::now() < deadline, "no failover within duration + grace");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let holder = leases.get("leader").await.expect("lease").spec.and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some(names[follower]));

    // While held, the lease refuses another identity's non-forced apply
    // (what kube-lease-manager relies on): 409 Conflict.
    let grab = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 2},
    });
    let err = leases
        .patch("leader", &PatchParams::apply("kube-lease-manager-intruder"), &Patch::Apply(&grab))
        .await
        .expect_err("conflict");
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"), "{err:?}");
    if let Some(task) = tasks[follower].take() {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_manager_takes_over_an_abandoned_lease() {
    let server = ApiServer::start().await.expect("start");
    let (rx_a, task_a) = manager(&server, "a").await.watch().await;
    let rx = [rx_a, watch::channel(false).1];
    one_leader(&rx, Duration::from_secs(5)).await;
    // The leader dies without releasing.
    task_a.abort();
    let died_at = Instant::now();
    let (rx_b, task_b) = manager(&server, "b").await.watch().await;
    // Expiry (duration), then a forced release and up to a second of
    // jitter before locking.
    let deadline = died_at + Duration::from_secs(2 + 1 + 2);
    while !*rx_b.borrow() {
        assert!(Instant::now() < deadline, "no takeover after expiry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task_b.abort();
}
