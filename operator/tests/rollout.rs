//! The partitioned rollout of the worker StatefulSet, against the in-memory
//! API server and real `cohort-worker` processes (one per shard, with the
//! certificates the operator issued, on loopback).
//!
//! memapi has no StatefulSet controller, so the test plays it: it watches
//! the partition and the pod template, "replaces" a pod whose ordinal is at
//! least the partition and whose revision differs (kills the worker and
//! starts a fresh one, or — for the broken image — starts nothing), and
//! writes `updatedReplicas`/`readyReplicas`/revisions like the real one.
//! Before each replacement it asks the doomed worker for its health, to
//! check the operator drained it first.
//!
//! Checked: an image change rolls the shards highest first, each drained
//! before the partition reached it; the status reports the rollout and the
//! version the shards serve; a shard that never becomes healthy pauses the
//! rollout with `RolloutPaused=True`/`ShardUnhealthy` and a Warning event,
//! and no other shard moves; reverting the spec rolls back only that shard
//! and clears the pause.
//!
//! A change of protocol (`spec.protocol.name`, to `replicated-3` among three
//! parties) rolls the same way: each shard drained and replaced in turn, and
//! counted healthy only once its worker reports the new protocol. On that
//! cluster a PreprocessingPool is refused (`ProtocolTakesNoPreprocessing`)
//! and the workers get no pool; an MpcJob naming a pool is refused before
//! dispatch, and one without reaches its worker with no preprocessing mode.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_crds::cluster::RolloutPhase;
use cohort_crds::conditions::{find_condition, types};
use cohort_crds::job::JobPhase;
use cohort_crds::{MpcCluster, MpcJob, PreprocessingPool};
use cohort_operator::cluster::desired::ANNOTATION_TEMPLATE_HASH;
use cohort_operator::controller;
use cohort_operator::leader::stopped;
use cohort_worker::transport::PartyCa;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use support::*;
use tokio::process::Child;

const NS: &str = "bank-a";
const SHARDS: usize = 3;
const WAIT: Duration = Duration::from_secs(60);
const BROKEN_IMAGE: &str = "registry.example/cohort-worker:broken";

fn cluster() -> MpcCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "cohort.dev/v1alpha1", "kind": "MpcCluster",
        "metadata": {"name": "consortium", "namespace": NS},
        "spec": {
            "self": "bank-a", "federation": "consortium",
            "parties": [
                {"name": "bank-a", "endpoint": "127.0.0.1:17443"},
                {"name": "bank-b", "endpoint": "127.0.0.1:18443", "trust": {"secretRef": {"name": "bank-b-ca"}}},
            ],
            "shards": SHARDS,
            "worker": {"image": "registry.example/cohort-worker:1.0.0"},
            "rollout": {"shardTimeout": "4s", "drainTimeout": "30s"},
        }
    }))
    .expect("an MpcCluster")
}

/// One simulated pod: the template revision it was created from, and its
/// worker process (none for a pod of the broken image).
struct Pod {
    revision: String,
    worker: Option<Child>,
}

/// A replacement the simulated StatefulSet controller made.
#[derive(Clone, Debug, PartialEq)]
struct Replacement {
    shard: usize,
    partition: i32,
    revision: String,
    /// What the replaced worker said just before: draining, active jobs.
    was_draining: Option<bool>,
}

fn template_of(set: &StatefulSet) -> (String, String, i32) {
    let hash = set
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_TEMPLATE_HASH))
        .cloned()
        .expect("a template hash");
    let spec = set.spec.as_ref().expect("spec");
    let image = spec.template.spec.as_ref().and_then(|p| p.containers[0].image.clone()).expect("an image");
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .expect("a partition");
    (hash, image, partition)
}

/// The StatefulSet controller and kubelet, for the pods of `consortium`.
async fn simulate(
    sets: Api<StatefulSet>,
    shards: Arc<Shards>,
    log: Arc<Mutex<Vec<Replacement>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut pods: Vec<Pod> = Vec::new();
    loop {
        if *stop.borrow() {
            return;
        }
        if let Ok(Some(set)) = sets.get_opt("consortium").await {
            let (hash, image, partition) = template_of(&set);
            if pods.is_empty() {
                for i in 0..SHARDS {
                    pods.push(Pod { revision: hash.clone(), worker: Some(shards.start(i).await) });
                }
            }
            // Like the real controller: the highest pod at or above the
            // partition that is not at the update revision, one at a time.
            let stale = (0..SHARDS).rev().find(|&i| i as i32 >= partition && pods[i].revision != hash);
            if let Some(i) = stale {
                let was_draining = match shards.client(i) {
                    Some(c) if pods[i].worker.is_some() => c.health().await.ok().map(|h| h.draining),
                    _ => None,
                };
                if let Some(mut old) = pods[i].worker.take() {
                    let _ = old.kill().await;
                }
                let worker = if image == BROKEN_IMAGE { None } else { Some(shards.start(i).await) };
                pods[i] = Pod { revision: hash.clone(), worker };
                log.lock().expect("lock").push(Replacement {
                    shard: i,
                    partition,
                    revision: hash.clone(),
                    was_draining,
                });
            }
            let ready = pods.iter().filter(|p| p.worker.is_some()).count();
            let updated = pods.iter().filter(|p| p.revision == hash).count();
            let status = serde_json::json!({"status": {
                "replicas": SHARDS, "readyReplicas": ready, "updatedReplicas": updated,
                "updateRevision": format!("consortium-{}", &hash[..10]),
                "observedGeneration": set.metadata.generation,
            }});
            let _ = sets.patch_status("consortium", &PatchParams::default(), &Patch::Merge(&status)).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => {}
        }
    }
}

fn condition(c: &MpcCluster, type_: &str) -> Option<(String, String, String)> {
    let cond = find_condition(&c.status.as_ref()?.conditions, type_)?;
    Some((cond.status.clone(), cond.reason.clone(), cond.message.clone()))
}

async fn wait_rollout(clusters: &Api<MpcCluster>, what: &str, hash: &str, phase: RolloutPhase) -> MpcCluster {
    eventually(what, WAIT, || async {
        let c = clusters.get("consortium").await.map_err(|e| e.to_string())?;
        let r = c.status.as_ref().and_then(|s| s.rollout.clone()).ok_or("no rollout status")?;
        if r.target_hash == hash && r.phase == phase { Ok(c) } else { Err(format!("{r:?}")) }
    })
    .await
}

async fn set_image(clusters: &Api<MpcCluster>, image: &str) {
    let patch = serde_json::json!({"spec": {"worker": {"image": image}}});
    clusters.patch("consortium", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch the image");
}

async fn current_hash(sets: &Api<StatefulSet>, image: &str) -> String {
    eventually(&format!("the template of {image}"), WAIT, || async {
        let set = sets.get("consortium").await.map_err(|e| e.to_string())?;
        let (hash, found, _) = template_of(&set);
        if found == image { Ok(hash) } else { Err(found) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_changes_roll_one_drained_shard_at_a_time_pause_on_a_broken_shard_and_roll_back() {
    let server = api_server().await;
    let client = server.client();
    let peer_ca = PartyCa::generate("consortium", "bank-b", Duration::from_secs(3600)).expect("a CA").cert_pem();
    put_secret(&client, NS, "bank-b-ca", &[("ca.crt", peer_ca.as_bytes())]).await;
    let clusters: Api<MpcCluster> = Api::namespaced(client.clone(), NS);
    clusters.create(&PostParams::default(), &cluster()).await.expect("create the MpcCluster");

    // The operator, its control endpoints resolved to the shard workers.
    let (endpoints, control) = shard_endpoints();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = context(operator_client(&server), "test", control);
    let running = tokio::spawn(controller::cluster::run(ctx, Some(NS.into()), stopped(stop_rx.clone())));

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let first = current_hash(&sets, "registry.example/cohort-worker:1.0.0").await;
    let shards = Arc::new(Shards::new(&client, NS, SHARDS, &peer_ca, endpoints).await);
    let log: Arc<Mutex<Vec<Replacement>>> = Arc::new(Mutex::new(Vec::new()));
    let sim = tokio::spawn(simulate(sets.clone(), shards.clone(), log.clone(), stop_rx.clone()));

    // Created from the template: nothing to roll; the shards' version is read.
    let c = wait_rollout(&clusters, "the first template at rest", &first, RolloutPhase::Complete).await;
    assert_eq!(template_of(&sets.get("consortium").await.expect("sts")).2, 0);
    eventually("the served protocol version", WAIT, || async {
        let c = clusters.get("consortium").await.map_err(|e| e.to_string())?;
        match c.status.as_ref().and_then(|s| s.protocol_version) {
            Some(1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(log.lock().expect("lock").is_empty(), "{c:?}");

    // A new image: shards 2, 1, 0, each drained before its partition.
    set_image(&clusters, "registry.example/cohort-worker:1.1.0").await;
    let second = current_hash(&sets, "registry.example/cohort-worker:1.1.0").await;
    let c = wait_rollout(&clusters, "the new image rolled out", &second, RolloutPhase::Complete).await;
    let rolled: Vec<Replacement> = log.lock().expect("lock").clone();
    assert_eq!(rolled.iter().map(|r| (r.shard, r.partition)).collect::<Vec<_>>(), [(2, 2), (1, 1), (0, 0)]);
    for r in &rolled {
        assert_eq!(r.revision, second);
        assert_eq!(r.was_draining, Some(true), "shard {} was replaced without a drain", r.shard);
    }
    let status = c.status.clone().expect("status");
    let rollout = status.rollout.expect("rollout");
    assert_eq!((rollout.shards_updated, rollout.already_updated), (3, 0));
    assert!(rollout.started_at.is_some());
    assert_eq!(
        condition(&c, types::ROLLOUT_PROGRESSING).map(|c| (c.0, c.1)),
        Some(("False".into(), "Complete".into()))
    );
    assert_eq!(condition(&c, types::ROLLOUT_PAUSED).map(|c| c.0), Some("False".into()));
    assert_eq!(status.protocol_version, Some(1));
    assert_eq!(template_of(&sets.get("consortium").await.expect("sts")).2, 0, "at rest, partition 0");
    let reasons: Vec<String> =
        server.objects("events").iter().filter_map(|e| e["reason"].as_str().map(String::from)).collect();
    assert!(reasons.iter().any(|r| r == "RolloutStarted") && reasons.iter().any(|r| r == "RolloutComplete"));
    // The replaced shards serve and are not draining.
    for i in 0..SHARDS {
        let h = shards.client(i).expect("client").health().await.expect("health");
        assert!(!h.draining && h.active_jobs == 0, "shard {i}: {h:?}");
    }

    // A broken image: shard 2 is drained and replaced, never becomes
    // healthy, and the rollout pauses there.
    set_image(&clusters, BROKEN_IMAGE).await;
    let broken = current_hash(&sets, BROKEN_IMAGE).await;
    let c = eventually("the rollout pauses", WAIT, || async {
        let c = clusters.get("consortium").await.map_err(|e| e.to_string())?;
        let message = c.status.as_ref().and_then(|s| s.rollout.as_ref()).and_then(|r| r.message.clone());
        // The "paused:" message is written by a reconcile after the pause.
        match (condition(&c, types::ROLLOUT_PAUSED), message) {
            (Some((s, _, _)), Some(m)) if s == "True" && m.starts_with("paused:") => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (_, reason, message) = condition(&c, types::ROLLOUT_PAUSED).expect("RolloutPaused");
    assert_eq!(reason, "ShardUnhealthy");
    assert!(message.contains("shard 2"), "{message}");
    assert_eq!(condition(&c, types::DEGRADED).map(|c| c.1), Some("RolloutPaused".into()));
    assert_eq!(c.status.as_ref().and_then(|s| s.rollout.as_ref()).map(|r| r.phase), Some(RolloutPhase::Paused));
    assert_eq!(template_of(&sets.get("consortium").await.expect("sts")).2, 2, "the partition stays at shard 2");
    let to_broken: Vec<usize> =
        log.lock().expect("lock").iter().filter(|r| r.revision == broken).map(|r| r.shard).collect();
    assert_eq!(to_broken, [2], "no other shard is touched");
    assert!(
        server.objects("events").iter().any(|e| e["reason"] == "ShardUnhealthy" && e["type"] == "Warning"),
        "a Warning event"
    );
    for i in 0..2 {
        let h = shards.client(i).expect("client").health().await.expect("health");
        assert!(!h.draining, "shard {i} keeps serving: {h:?}");
    }

    // Reverting the spec rolls back shard 2 only, and clears the pause.
    let before_revert = log.lock().expect("lock").len();
    set_image(&clusters, "registry.example/cohort-worker:1.1.0").await;
    let c = wait_rollout(&clusters, "the rollback", &second, RolloutPhase::Complete).await;
    let back: Vec<Replacement> = log.lock().expect("lock")[before_revert..].to_vec();
    assert_eq!(back.iter().map(|r| (r.shard, r.partition)).collect::<Vec<_>>(), [(2, 2)]);
    assert_eq!(back[0].revision, second);
    let rollout = c.status.as_ref().and_then(|s| s.rollout.clone()).expect("rollout");
    assert_eq!((rollout.shards_updated, rollout.already_updated), (1, 2));
    assert_eq!(condition(&c, types::ROLLOUT_PAUSED).map(|c| (c.0, c.1)), Some(("False".into(), "NotPaused".into())));
    eventually("Ready after the rollback", WAIT, || async {
        let c = clusters.get("consortium").await.map_err(|e| e.to_string())?;
        match condition(&c, types::READY) {
            Some((s, _, _)) if s == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(template_of(&sets.get("consortium").await.expect("sts")).2, 0);
    for i in 0..SHARDS {
        let h = shards.client(i).expect("client").health().await.expect("health");
        assert!(!h.draining, "shard {i}: {h:?}");
    }

    assert_chart_rbac_allows(&server);
    stop_tx.send(true).expect("stop");
    tokio::time::timeout(WAIT, running).await.expect("the controller stops").expect("no panic");
    tokio::time::timeout(WAIT, sim).await.expect("the simulation stops").expect("no panic");
}

/// Three parties (replicated-3 needs exactly three), additive to begin with.
fn three_party_cluster() -> MpcCluster {
    let mut c = cluster();
    let bank_c = serde_json::json!({"name": "bank-c", "endpoint": "127.0.0.1:19443",
        "trust": {"secretRef": {"name": "bank-c-ca"}}});
    c.spec.parties.push(serde_json::from_value(bank_c).expect("a party"));
    c
}

async fn hash_other_than(sets: &Api<StatefulSet>, old: &str) -> String {
    eventually("a new template", WAIT, || async {
        let set = sets.get("consortium").await.map_err(|e| e.to_string())?;
        let (hash, _, _) = template_of(&set);
        if hash != old { Ok(hash) } else { Err(hash) }
    })
    .await
}

async fn job_phase(jobs: &Api<MpcJob>, name: &str, want: &[JobPhase]) -> MpcJob {
    eventually(&format!("MpcJob {name} in {want:?}"), WAIT, || async {
        let j = jobs.get(name).await.map_err(|e| e.to_string())?;
        match j.status.as_ref().and_then(|s| s.phase) {
            Some(p) if want.contains(&p) => Ok(j),
            other => Err(format!("{other:?}: {:?}", j.status.as_ref().and_then(|s| s.reason.clone()))),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_change_rolls_shard_by_shard_and_replicated_3_takes_no_preprocessing() {
    let server = api_server().await;
    let client = server.client();
    let peer_ca = PartyCa::generate("consortium", "bank-b", Duration::from_secs(3600)).expect("a CA").cert_pem();
    put_secret(&client, NS, "bank-b-ca", &[("ca.crt", peer_ca.as_bytes())]).await;
    let c_ca = PartyCa::generate("consortium", "bank-c", Duration::from_secs(3600)).expect("a CA").cert_pem();
    put_secret(&client, NS, "bank-c-ca", &[("ca.crt", c_ca.as_bytes())]).await;
    let clusters: Api<MpcCluster> = Api::namespaced(client.clone(), NS);
    clusters.create(&PostParams::default(), &three_party_cluster()).await.expect("create the MpcCluster");

    // Every controller (the job and pool controllers read the cluster's protocol).
    let (endpoints, control) = shard_endpoints();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = context(operator_client(&server), "test", control);
    let running = tokio::spawn(controller::run_all(ctx, Some(NS.into()), stop_rx.clone()));

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let first = current_hash(&sets, "registry.example/cohort-worker:1.0.0").await;
    let shards = Arc::new(Shards::new(&client, NS, SHARDS, &peer_ca, endpoints).await);
    let log: Arc<Mutex<Vec<Replacement>>> = Arc::new(Mutex::new(Vec::new()));
    let sim = tokio::spawn(simulate(sets.clone(), shards.clone(), log.clone(), stop_rx.clone()));
    wait_rollout(&clusters, "the first template at rest", &first, RolloutPhase::Complete).await;
    // Every shard's worker answers with the protocol it runs.
    let protocols = |want: &'static str| {
        let shards = shards.clone();
        async move {
            let running = eventually("every shard answers", WAIT, || async {
                let mut running = Vec::new();
                for i in 0..SHARDS {
                    let client = shards.client(i).ok_or(format!("shard {i} not started"))?;
                    running.push(client.health().await.map_err(|e| format!("shard {i}: {e}"))?.protocol);
                }
                Ok(running)
            })
            .await;
            assert_eq!(running, [want; SHARDS]);
        }
    };
    protocols("additive-semi-honest").await;

    // The protocol changes: shards 2, 1, 0, each drained before its
    // partition, each back only once it runs replicated-3.
    let patch = serde_json::json!({"spec": {"protocol": {"name": "replicated-3"}}});
    clusters.patch("consortium", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch the protocol");
    let second = hash_other_than(&sets, &first).await;
    let c = wait_rollout(&clusters, "the new protocol rolled out", &second, RolloutPhase::Complete).await;
    let rolled: Vec<Replacement> = log.lock().expect("lock").clone();
    assert_eq!(rolled.iter().map(|r| (r.shard, r.partition)).collect::<Vec<_>>(), [(2, 2), (1, 1), (0, 0)]);
    for r in &rolled {
        assert_eq!(r.revision, second);
        assert_eq!(r.was_draining, Some(true), "shard {} was replaced without a drain", r.shard);
    }
    let rollout = c.status.as_ref().and_then(|s| s.rollout.clone()).expect("rollout");
    assert_eq!((rollout.shards_updated, rollout.already_updated), (3, 0));
    protocols("replicated-3").await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let config = maps.get("consortium-config").await.expect("the config ConfigMap").data.unwrap_or_default();
    assert!(config.values().all(|t| t.contains("name: replicated-3")), "{config:?}");

    // A pool for this cluster is refused, owns nothing, and configures no worker.
    let pools: Api<PreprocessingPool> = Api::namespaced(client.clone(), NS);
    let pool: PreprocessingPool = serde_json::from_value(serde_json::json!({
        "apiVersion": "cohort.dev/v1alpha1", "kind": "PreprocessingPool",
        "metadata": {"name": "default", "namespace": NS},
        "spec": {"clusterRef": {"name": "consortium"}, "generator": {"mode": "ot"},
                 "material": [{"kind": "beaver-triple", "target": 1000, "lowWatermark": 10}]}
    }))
    .expect("a pool");
    pools.create(&PostParams::default(), &pool).await.expect("create the pool");
    let refused = eventually("the pool refused", WAIT, || async {
        let p = pools.get("default").await.map_err(|e| e.to_string())?;
        let ready = p.status.as_ref().and_then(|s| find_condition(&s.conditions, types::READY).cloned());
        match ready {
            Some(r) if r.status == "False" && r.reason == "ProtocolTakesNoPreprocessing" => Ok(r),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        refused.message.contains("MpcCluster consortium runs replicated-3, which takes no preprocessing material"),
        "{}",
        refused.message
    );
    // The cluster reconciles after the pool appears (it watches pools): still no pool section.
    let config = maps.get("consortium-config").await.expect("the config ConfigMap").data.unwrap_or_default();
    assert!(config.values().all(|t| !t.contains("pool")), "{config:?}");
    assert!(sets.get_opt("default-dealer").await.expect("read").is_none(), "no generator");

    // Jobs. The cluster is Ready (the simulated pods are).
    eventually("Ready", WAIT, || async {
        let c = clusters.get("consortium").await.map_err(|e| e.to_string())?;
        match condition(&c, types::READY) {
            Some((s, _, _)) if s == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let jobs: Api<MpcJob> = Api::namespaced(client.clone(), NS);
    let job = |name: &str, pool: bool| -> MpcJob {
        let mut spec = serde_json::json!({"clusterRef": {"name": "consortium"},
            // bank-a binds nothing: the input is bank-b's.
            "program": "input x: int from bank-b\noutput y = x + 1 to bank-b\n",
            "timeouts": {"connect": "2s", "round": "2s", "total": "5s"}});
        if pool {
            spec["preprocessing"] = serde_json::json!({"poolRef": {"name": "default"}});
        }
        serde_json::from_value(serde_json::json!({"apiVersion": "cohort.dev/v1alpha1", "kind": "MpcJob",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}))
        .expect("an MpcJob")
    };
    let worker_job = |id: String| {
        let shards = shards.clone();
        async move {
            let shard = cohort_operator::dispatch::shard_for(&id, SHARDS);
            shards.client(shard).expect("client").status(&id).await
        }
    };

    // Naming a pool: refused before dispatch.
    jobs.create(&PostParams::default(), &job("with-pool", true)).await.expect("create the job");
    let j = job_phase(&jobs, "with-pool", &[JobPhase::Failed]).await;
    let status = j.status.clone().expect("status");
    assert_eq!(status.reason.as_deref(), Some("ProtocolTakesNoPreprocessing"));
    let failure = status.failure.clone().expect("failure");
    assert_eq!(failure.step.as_deref(), Some("preprocessing"));
    assert!(failure.message.contains("runs replicated-3, which takes no preprocessing material"), "{failure:?}");
    let id = status.job_id.clone().expect("a job id");
    assert!(worker_job(id).await.is_err(), "never dispatched");

    // Without a pool: dispatched with no preprocessing mode, which a
    // replicated-3 worker requires (it refuses a job naming any mode).
    jobs.create(&PostParams::default(), &job("plain", false)).await.expect("create the job");
    let j = job_phase(&jobs, "plain", &[JobPhase::Running, JobPhase::Failed, JobPhase::Succeeded]).await;
    let id = j.status.as_ref().and_then(|s| s.job_id.clone()).expect("a job id");
    let at_worker =
        eventually("the job at its worker", WAIT, || async { worker_job(id.clone()).await.map_err(|e| e.to_string()) })
            .await;
    if let Some(f) = &at_worker.failure {
        // The peers do not exist here, so the job may fail, but never for
        // the mode it was given.
        assert!(!f.message.contains("preprocessing"), "{f:?}");
    }

    assert_chart_rbac_allows(&server);
    stop_tx.send(true).expect("stop");
    tokio::time::timeout(WAIT, running).await.expect("the controllers stop").expect("no panic");
    tokio::time::timeout(WAIT, sim).await.expect("the simulation stops").expect("no panic");
}
