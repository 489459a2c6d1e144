//! The MpcCluster controller against the in-memory API server (kube's own
//! client, watches, server-side apply): every owned object is created with
//! the right labels, owner, ports, names and hardening; status follows the
//! StatefulSet; drift is repaired; a changed peer CA reaches the trust bundle without rolling the pods; an
//! invalid spec becomes a condition; a settled cluster writes nothing; and
//! deleting the cluster deletes what it owns.

mod support;

use std::time::Duration;

use cohort_crds::MpcCluster;
use cohort_crds::conditions::{find_condition, types};
use cohort_operator::cluster::desired::ANNOTATION_TEMPLATE_HASH;
use cohort_operator::controller::{self, cluster_dns_endpoints};
use cohort_operator::leader::stopped;
use cohort_worker::transport::PartyCa;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use support::*;
use x509_parser::prelude::*;

const NS: &str = "bank-a";
const WAIT: Duration = Duration::from_secs(20);

fn cluster_status(c: &MpcCluster, type_: &str) -> Option<(String, String)> {
    let cond = find_condition(&c.status.as_ref()?.conditions, type_)?;
    Some((cond.status.clone(), cond.reason.clone()))
}

fn san_dns_names(chain_pem: &str) -> Vec<String> {
    let (_, pem) = parse_x509_pem(chain_pem.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    let san = cert.subject_alternative_name().expect("SAN ok").expect("a SAN");
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_controller_builds_repairs_rolls_and_cleans_up() {
    let server = api_server().await;
    let client = server.client();
    bank_a_trust(&client).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = context(operator_client(&server), "test", cluster_dns_endpoints());
    let metrics = ctx.metrics.clone();
    let running = tokio::spawn(controller::cluster::run(ctx, Some(NS.into()), stopped(stop_rx)));

    // The API server fails the first two applies of the StatefulSet: the
    // reconcile errors, backs off, records a Warning event and converges.
    server.fail_next("PATCH", "statefulsets", 2, 500);
    let clusters: Api<MpcCluster> = Api::namespaced(client.clone(), NS);
    let cluster: MpcCluster = example("examples/k8s/bank-a.yaml", "MpcCluster");
    let created = clusters.create(&PostParams::default(), &cluster).await.expect("create the MpcCluster");
    let uid = created.uid().expect("a uid");

    // Every owned object, owned by the cluster.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let sts = eventually("the StatefulSet", WAIT, || async {
        sets.get_opt("consortium").await.map_err(|e| e.to_string())?.ok_or_else(|| "absent".to_string())
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let owned_by_cluster = |meta: &kube::api::ObjectMeta| {
        let owners = meta.owner_references.clone().unwrap_or_default();
        owners.len() == 1
            && owners[0].uid == uid
            && owners[0].kind == "MpcCluster"
            && owners[0].controller == Some(true)
    };
    let managed = |meta: &kube::api::ObjectMeta| {
        let l = meta.labels.clone().unwrap_or_default();
        l.get("app.kubernetes.io/managed-by").map(String::as_str) == Some("cohort-operator")
            && l.get("cohort.dev/party").map(String::as_str) == Some("bank-a")
    };
    assert!(owned_by_cluster(&sts.metadata) && managed(&sts.metadata));
    assert!(
        metrics.encode().contains("cohort_operator_reconcile_errors_total{kind=\"MpcCluster\",reason=\"ApiError\"} 2")
    );
    assert!(server.objects("events").iter().any(|e| e["reason"] == "ApiError" && e["type"] == "Warning"));
    for name in ["consortium-worker-0", "consortium-operator-client"] {
        let s = secrets.get(name).await.unwrap_or_else(|e| panic!("Secret {name}: {e}"));
        assert!(owned_by_cluster(&s.metadata) && managed(&s.metadata), "{name}");
    }
    // The party CA is the party's identity towards its peers: managed, but
    // not owned, so it outlives the MpcCluster.
    let ca = secrets.get("consortium-ca").await.expect("the party CA");
    assert!(managed(&ca.metadata) && ca.metadata.owner_references.is_none());
    let worker = secrets.get("consortium-worker-0").await.expect("worker Secret");
    let names = san_dns_names(&secret_text(&worker, "tls.crt"));
    for want in ["consortium-0.consortium-workers.bank-a.svc", "consortium-peer-0.bank-a.svc", "mpc.bank-a.example"] {
        assert!(names.iter().any(|n| n == want), "SAN {want} missing from {names:?}");
    }
    let trust = maps.get("consortium-trust").await.expect("trust ConfigMap");
    let keys: Vec<String> = trust.data.clone().unwrap_or_default().into_keys().collect();
    assert_eq!(keys, ["_dealer.pem", "bank-a.pem", "bank-b.pem", "bank-c.pem"]);
    assert!(owned_by_cluster(&maps.get("consortium-config").await.expect("config").metadata));
    let headless = services.get("consortium-workers").await.expect("headless Service");
    assert_eq!(headless.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()), Some("None"));
    let peer = services.get("consortium-peer-0").await.expect("peer Service");
    let peer_spec = peer.spec.expect("spec");
    assert_eq!(peer_spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(peer_spec.ports.expect("ports")[0].port, 7443);
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), NS).get("consortium").await.expect("PDB");
    assert!(owned_by_cluster(&pdb.metadata));
    let policy = Api::<NetworkPolicy>::namespaced(client.clone(), NS).get("consortium").await.expect("NetworkPolicy");
    let ingress = policy.spec.expect("spec").ingress.expect("ingress");
    let control = ingress
        .iter()
        .find(|r| {
            r.ports.as_ref().is_some_and(|p| {
                p[0].port == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(7444))
            })
        })
        .expect("a control-port rule");
    let from = &control.from.as_ref().expect("restricted")[0];
    assert_eq!(
        from.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default()
            .get("app.kubernetes.io/name")
            .map(String::as_str),
        Some("cohort-operator")
    );

    // Pod hardening.
    let pod = sts.spec.as_ref().expect("spec").template.spec.clone().expect("pod spec");
    assert_eq!(pod.automount_service_account_token, Some(false));
    let container = &pod.containers[0];
    let sc = container.security_context.as_ref().expect("container securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_string()]));
    let pod_sc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert_eq!(pod_sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()), Some("RuntimeDefault"));
    let readiness = container.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("HTTP readiness");
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));

    // Status before the pods are ready.
    let c = eventually("a status", WAIT, || async {
        let c = clusters.get("consortium").await.map_err(|e| e.to_string())?;
        match cluster_status(&c, types::READY) {
            Some(_) => Ok(c),
            None => Err(format!("{:?}", c.status)),
        }
    })
    .await;
    assert_eq!(cluster_status(&c, types::READY), Some(("False".into(), "ShardsNotReady".into())));
    assert_eq!(cluster_status(&c, types::CERTIFICATES_READY), Some(("True".into(), "Valid".into())));
    assert_eq!(cluster_status(&c, types::PEERS_REACHABLE).map(|s| s.0), Some("False".into()));
    let status = c.status.clone().expect("status");
    assert_eq!(status.observed_generation, c.metadata.generation);
    assert_eq!(status.shards_ready.as_deref(), Some("0/1"));
    assert!(status.certificates.as_ref().and_then(|x| x.worker_not_after.as_ref()).is_some());

    // The kubelet's part: the shard becomes ready, so the cluster does.
    let generation = sets.get("consortium").await.expect("sts").metadata.generation;
    let ready = serde_json::json!({"status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": generation}});
    sets.patch_status("consortium", &PatchParams::default(), &Patch::Merge(&ready)).await.expect("mark ready");
    eventually("Ready", WAIT, || async {
        let c = clusters.get("consortium").await.map_err(|e| e.to_string())?;
        match cluster_status(&c, types::READY) {
            Some((s, r)) if s == "True" && r == "AllShardsReady" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Drift: someone scales the StatefulSet; the operator scales it back.
    let scale = serde_json::json!({"spec": {"replicas": 3}});
    sets.patch(
        "consortium",
        &PatchParams { field_manager: Some("kubectl".into()), ..PatchParams::default() },
        &Patch::Merge(&scale),
    )
    .await
    .expect("drift");
    eventually("drift repaired", WAIT, || async {
        let s = sets.get("consortium").await.map_err(|e| e.to_string())?;
        match s.spec.and_then(|s| s.replicas) {
            Some(1) => Ok(()),
            other => Err(format!("replicas {other:?}")),
        }
    })
    .await;

    // A settled cluster writes nothing (no status churn, no re-apply). The
    // repair's own StatefulSet write triggers one more reconcile, which a
    // loaded machine may run late: one window may hold that reconcile's
    // writes, the next must hold none.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let window = || async {
        let before = server.writes().len();
        tokio::time::sleep(Duration::from_secs(3)).await;
        server.writes().into_iter().skip(before).filter(|w| !w.path.contains("/events")).collect::<Vec<_>>()
    };
    if !window().await.is_empty() {
        let quiet = window().await;
        assert!(quiet.is_empty(), "a settled cluster keeps writing: {quiet:?}");
    }

    // A peer's new CA reaches the trust ConfigMap, which the workers
    // reload: the pod template does not change, nothing rolls.
    let template_hash =
        |s: &StatefulSet| s.metadata.annotations.clone().unwrap_or_default().get(ANNOTATION_TEMPLATE_HASH).cloned();
    let old_hash = template_hash(&sets.get("consortium").await.expect("sts")).expect("a template hash");
    let new_ca = PartyCa::generate("consortium", "bank-b", Duration::from_secs(3600)).expect("a CA");
    put_secret(&client, NS, "bank-b-ca", &[("ca.crt", new_ca.cert_pem().as_bytes())]).await;
    eventually("the new peer CA in the trust bundle", WAIT, || async {
        let trust = maps.get("consortium-trust").await.map_err(|e| e.to_string())?;
        let pem = trust.data.unwrap_or_default().get("bank-b.pem").cloned().unwrap_or_default();
        if pem.trim() == new_ca.cert_pem().trim() { Ok(()) } else { Err("the old CA".to_string()) }
    })
    .await;
    let s = sets.get("consortium").await.expect("sts");
    assert_eq!(template_hash(&s), Some(old_hash), "a trust change restarts no pod");
    let c = clusters.get("consortium").await.expect("cluster");
    assert_eq!(
        c.status.as_ref().and_then(|s| s.rollout.as_ref()).map(|r| r.phase),
        Some(cohort_crds::cluster::RolloutPhase::Complete)
    );

    // An invalid spec is a condition, with an event.
    let mut broken: MpcCluster = example("examples/k8s/bank-a.yaml", "MpcCluster");
    broken.metadata.name = Some("broken".into());
    broken.spec.self_ = "bank-z".into();
    clusters.create(&PostParams::default(), &broken).await.expect("create");
    let b = eventually("InvalidSpec", WAIT, || async {
        let c = clusters.get("broken").await.map_err(|e| e.to_string())?;
        match cluster_status(&c, types::READY) {
            Some((_, r)) if r == "InvalidSpec" => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let message = find_condition(&b.status.expect("status").conditions, types::READY).expect("Ready").message.clone();
    assert!(message.contains("spec.self"), "{message}");
    assert!(sets.get_opt("broken").await.expect("read").is_none(), "nothing is built from an invalid spec");
    eventually("an InvalidSpec event", WAIT, || async {
        let events = server.objects("events");
        if events.iter().any(|e| e["reason"] == "InvalidSpec") {
            Ok(())
        } else {
            Err(format!("{} events", events.len()))
        }
    })
    .await;

    // Scaling to two shards and back: the second shard's peer Service and
    // certificate (a live party key) are pruned.
    let shards = |n: i32| serde_json::json!({"spec": {"shards": n}});
    clusters.patch("consortium", &PatchParams::default(), &Patch::Merge(&shards(2))).await.expect("scale up");
    eventually("shard 1's objects", WAIT, || async {
        let found = secrets.get_opt("consortium-worker-1").await.map_err(|e| e.to_string())?.is_some()
            && services.get_opt("consortium-peer-1").await.map_err(|e| e.to_string())?.is_some();
        if found { Ok(()) } else { Err("not yet".into()) }
    })
    .await;
    clusters.patch("consortium", &PatchParams::default(), &Patch::Merge(&shards(1))).await.expect("scale down");
    eventually("shard 1's objects pruned", WAIT, || async {
        let left = secrets.get_opt("consortium-worker-1").await.map_err(|e| e.to_string())?.is_some()
            || services.get_opt("consortium-peer-1").await.map_err(|e| e.to_string())?.is_some();
        if left { Err("still there".into()) } else { Ok(()) }
    })
    .await;
    assert!(secrets.get_opt("consortium-worker-0").await.expect("read").is_some());

    // Deleting the cluster deletes what it owns, and keeps the party CA.
    clusters.delete("consortium", &DeleteParams::default()).await.expect("delete");
    eventually("owned objects deleted", WAIT, || async {
        let left = (
            sets.get_opt("consortium").await.map_err(|e| e.to_string())?.is_some(),
            secrets.get_opt("consortium-worker-0").await.map_err(|e| e.to_string())?.is_some(),
        );
        if left == (false, false) { Ok(()) } else { Err(format!("{left:?}")) }
    })
    .await;
    assert!(secrets.get_opt("consortium-ca").await.expect("read").is_some(), "the party CA outlives the cluster");
    assert!(secrets.get_opt("bank-b-ca").await.expect("read").is_some(), "referenced Secrets are not owned");

    assert_chart_rbac_allows(&server);
    stop_tx.send(true).expect("stop");
    tokio::time::timeout(WAIT, running).await.expect("the controller stops").expect("no panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_peer_ca_is_a_condition_and_its_arrival_resumes_the_reconcile() {
    let server = api_server().await;
    let client = server.client();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctx = context(operator_client(&server), "test", cluster_dns_endpoints());
    let running = tokio::spawn(controller::cluster::run(ctx, Some(NS.into()), stopped(stop_rx)));
    let clusters: Api<MpcCluster> = Api::namespaced(client.clone(), NS);
    let cluster: MpcCluster = example("examples/k8s/bank-a.yaml", "MpcCluster");
    clusters.create(&PostParams::default(), &cluster).await.expect("create");
    let c = eventually("SecretNotFound", WAIT, || async {
        let c = clusters.get("consortium").await.map_err(|e| e.to_string())?;
        match cluster_status(&c, types::READY) {
            Some((_, r)) if r == "SecretNotFound" => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let message = find_condition(&c.status.expect("status").conditions, types::READY).expect("Ready").message.clone();
    assert!(message.contains("bank-b-ca") && message.contains("spec.parties[1].trust.secretRef"), "{message}");
    // The party CA does not wait for the peers' (they wait for it).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let ca = secrets.get("consortium-ca").await.expect("the party CA exists before the peers' CAs");
    assert!(secret_text(&ca, "tls.crt").contains("BEGIN CERTIFICATE"));

    // A Secret that is not a CA bundle is named, without its content.
    put_secret(&client, NS, "bank-b-ca", &[("ca.crt", b"not a certificate 4242")]).await;
    let c = eventually("InvalidTrust", WAIT, || async {
        let c = clusters.get("consortium").await.map_err(|e| e.to_string())?;
        match cluster_status(&c, types::READY) {
            Some((_, r)) if r == "InvalidTrust" => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let message = find_condition(&c.status.expect("status").conditions, types::READY).expect("Ready").message.clone();
    assert!(!message.contains("4242"), "{message}");

    bank_a_trust(&client).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    eventually("the StatefulSet once the CAs exist", WAIT, || async {
        sets.get_opt("consortium").await.map_err(|e| e.to_string())?.map(|_| ()).ok_or_else(|| "absent".to_string())
    })
    .await;
    assert_chart_rbac_allows(&server);
    stop_tx.send(true).expect("stop");
    tokio::time::timeout(WAIT, running).await.expect("the controller stops").expect("no panic");
}
