//! Server-side apply with field ownership.

use cohort_crds::MpcJob;
use cohort_memapi::ApiServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

fn deployment(replicas: i32, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}}},
    })
}

fn rv<K: kube::Resource>(obj: &K) -> String {
    obj.meta().resource_version.clone().expect("rv")
}

fn conflict(err: kube::Error) -> String {
    match err {
        kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict" => s.message.clone(),
        other => panic!("expected a 409 Conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn apply_creates_is_idempotent_and_removes_omitted_fields() {
    let server = ApiServer::start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(server.client());
    let pp = PatchParams::apply("op");

    let created =
        deploys.patch("d", &pp, &Patch::Apply(deployment(3, json!({"a": "1", "b": "2"})))).await.expect("create");
    assert_eq!(created.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(created.metadata.generation, Some(1));
    let managed = created.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!(managed.len(), 1);
    assert_eq!((managed[0].manager.as_deref(), managed[0].operation.as_deref()), (Some("op"), Some("Apply")));
    let fields = serde_json::to_value(&managed[0].fields_v1).expect("fieldsV1");
    assert_eq!(fields.pointer("/f:spec/f:replicas"), Some(&json!({})), "{fields}");

    let again =
        deploys.patch("d", &pp, &Patch::Apply(deployment(3, json!({"a": "1", "b": "2"})))).await.expect("re-apply");
    assert_eq!(rv(&again), rv(&created), "a no-op apply keeps the resourceVersion");

    let fewer = deploys.patch("d", &pp, &Patch::Apply(deployment(3, json!({"a": "1"})))).await.expect("omit b");
    let labels = fewer.metadata.labels.unwrap_or_default();
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["a"], "an omitted field the manager owned goes");
    assert_eq!(fewer.metadata.generation, Some(1), "labels are metadata");

    // YAML bodies work too.
    let client = server.client();
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: v\n";
    let req = hyper::Request::builder()
        .method("PATCH")
        .uri("/api/v1/namespaces/default/configmaps/y?fieldManager=yaml")
        .header("content-type", "application/apply-patch+yaml")
        .body(yaml.as_bytes().to_vec())
        .expect("request");
    let cm: ConfigMap = client.request(req).await.expect("yaml apply");
    assert_eq!(cm.data.unwrap_or_default().get("k").map(String::as_str), Some("v"));

    // Apply needs a field manager.
    let req = hyper::Request::builder()
        .method("PATCH")
        .uri("/api/v1/namespaces/default/configmaps/y")
        .header("content-type", "application/apply-patch+yaml")
        .body(yaml.as_bytes().to_vec())
        .expect("request");
    assert!(matches!(client.request::<ConfigMap>(req).await, Err(kube::Error::Api(s)) if s.code == 400));
}

#[tokio::test]
async fn conflicts_force_and_drift_repair() {
    let server = ApiServer::start().await.expect("start");
    let deploys: Api<Deployment> = Api::default_namespaced(server.client());
    let first = PatchParams::apply("first");
    let second = PatchParams::apply("second");
    deploys.patch("d", &first, &Patch::Apply(deployment(3, json!({})))).await.expect("first");

    // Same value: no conflict, shared ownership.
    deploys.patch("d", &second, &Patch::Apply(deployment(3, json!({})))).await.expect("same values share");
    // Different value: conflict naming the field and the manager.
    let message =
        conflict(deploys.patch("d", &second, &Patch::Apply(deployment(5, json!({})))).await.expect_err("conflict"));
    assert!(message.contains(".spec.replicas") && message.contains("first"), "{message}");
    // Forced: the second manager takes it.
    let forced =
        deploys.patch("d", &second.clone().force(), &Patch::Apply(deployment(5, json!({})))).await.expect("force");
    assert_eq!(forced.spec.as_ref().and_then(|s| s.replicas), Some(5));
    let message = conflict(
        deploys.patch("d", &first, &Patch::Apply(deployment(3, json!({})))).await.expect_err("now first conflicts"),
    );
    assert!(message.contains("second"), "{message}");

    // Drift: another writer's merge patch takes the field; a forced
    // re-apply repairs it.
    let op = PatchParams::apply("op").force();
    deploys.patch("d", &op, &Patch::Apply(deployment(7, json!({})))).await.expect("op applies");
    let kubectl = PatchParams { field_manager: Some("kubectl-edit".into()), ..Default::default() };
    let drifted = deploys.patch("d", &kubectl, &Patch::Merge(json!({"spec": {"replicas": 1}}))).await.expect("drift");
    assert_eq!(drifted.spec.as_ref().and_then(|s| s.replicas), Some(1));
    assert!(
        drifted
            .metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .any(|m| m.manager.as_deref() == Some("kubectl-edit") && m.operation.as_deref() == Some("Update")),
        "the update is recorded"
    );
    conflict(
        deploys
            .patch("d", &PatchParams::apply("op"), &Patch::Apply(deployment(7, json!({}))))
            .await
            .expect_err("drift conflicts"),
    );
    let repaired = deploys.patch("d", &op, &Patch::Apply(deployment(7, json!({})))).await.expect("repair");
    assert_eq!(repaired.spec.as_ref().and_then(|s| s.replicas), Some(7));
}

#[tokio::test]
async fn apply_to_status_subresource() {
    let server = ApiServer::start().await.expect("start");
    server.register_crd(&MpcJob::crd());
    let jobs: Api<MpcJob> = Api::default_namespaced(server.client());
    let job = json!({
        "apiVersion": "cohort.dev/v1alpha1", "kind": "MpcJob", "metadata": {"name": "j"},
        "spec": {"clusterRef": {"name": "c"}, "program": "output x = 1"},
        "status": {"reason": "IgnoredOnMain"},
    });
    let created = jobs.patch("j", &PatchParams::apply("user"), &Patch::Apply(&job)).await.expect("create");
    assert_eq!(created.status, None);
    let status = json!({"apiVersion": "cohort.dev/v1alpha1", "kind": "MpcJob", "status": {"reason": "Waiting"}});
    let op = PatchParams::apply("operator");
    let after = jobs.patch_status("j", &op, &Patch::Apply(&status)).await.expect("status apply");
    assert_eq!(after.status.as_ref().and_then(|s| s.reason.as_deref()), Some("Waiting"));
    assert_eq!(after.spec.program, "output x = 1", "a status apply does not touch spec");
    let entry = after
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("operator"))
        .expect("operator entry");
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    // Another manager's different status value conflicts.
    let other = json!({"apiVersion": "cohort.dev/v1alpha1", "kind": "MpcJob", "status": {"reason": "Mine"}});
    conflict(jobs.patch_status("j", &PatchParams::apply("other"), &Patch::Apply(&other)).await.expect_err("conflict"));
}
