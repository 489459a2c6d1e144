//! Finalizers, JSON patches and garbage collection.

use cohort_memapi::ApiServer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use serde_json::json;
use std::sync::Arc;

fn owned<K: serde::de::DeserializeOwned>(name: &str, owner: Option<(&str, &str, &str)>) -> K {
    let refs: Vec<serde_json::Value> = owner
        .into_iter()
        .map(|(kind, name, uid)| json!({"apiVersion": "v1", "kind": kind, "name": name, "uid": uid}))
        .collect();
    serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": refs}})).expect("object")
}

fn uid<K: kube::Resource>(obj: &K) -> String {
    obj.meta().uid.clone().expect("uid")
}

#[tokio::test]
async fn owner_references_cascade_two_levels() {
    let server = ApiServer::start().await.expect("start");
    let client = server.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();

    let root = cms.create(&pp, &owned("root", None)).await.expect("root");
    let child = secrets.create(&pp, &owned("child", Some(("ConfigMap", "root", &uid(&root))))).await.expect("child");
    let grandchild: Pod = owned("grandchild", Some(("Secret", "child", &uid(&child))));
    pods.create(&pp, &grandchild).await.expect("grandchild");
    // Two owners: survives while one of them lives.
    let other = cms.create(&pp, &owned("other", None)).await.expect("other");
    let mut shared: Secret = owned("shared", Some(("ConfigMap", "root", &uid(&root))));
    if let Some(refs) = shared.metadata.owner_references.as_mut() {
        refs.push(
            serde_json::from_value(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": uid(&other)}),
            )
            .expect("ref"),
        );
    }
    secrets.create(&pp, &shared).await.expect("shared");
    let unrelated = secrets.create(&pp, &owned("unrelated", None)).await.expect("unrelated");

    cms.delete("root", &DeleteParams::default()).await.expect("delete root");
    assert!(secrets.get_opt("child").await.expect("get").is_none(), "child collected");
    assert!(pods.get_opt("grandchild").await.expect("get").is_none(), "grandchild collected");
    assert!(secrets.get_opt("shared").await.expect("get").is_some(), "another owner lives");
    assert_eq!(secrets.get("unrelated").await.expect("kept").metadata.uid, unrelated.metadata.uid);

    cms.delete("other", &DeleteParams::default()).await.expect("delete other");
    assert!(secrets.get_opt("shared").await.expect("get").is_none(), "last owner gone");

    // Orphan propagation keeps dependents and strips the reference.
    let sts: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let owner = cms.create(&pp, &owned("owner", None)).await.expect("owner");
    let dependent: StatefulSet = owned("dep", Some(("ConfigMap", "owner", &uid(&owner))));
    sts.create(&pp, &dependent).await.expect("dependent");
    cms.delete("owner", &DeleteParams::orphan()).await.expect("orphan delete");
    let kept = sts.get("dep").await.expect("orphaned, not deleted");
    assert!(kept.metadata.owner_references.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = ApiServer::start().await.expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})).expect("cm");
    let created = cms.create(&PostParams::default(), &cm).await.expect("create");
    let deleting = cms.delete("f", &DeleteParams::default()).await.expect("delete").left().expect("still there");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(deleting.metadata.generation, Some(2), "starting the deletion bumps the generation");
    assert_eq!(deleting.metadata.uid, created.metadata.uid);
    assert!(cms.get("f").await.expect("kept").metadata.deletion_timestamp.is_some());

    // No new finalizers on a deleting object.
    let add = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}});
    let err = cms.patch("f", &PatchParams::default(), &Patch::Merge(&add)).await.expect_err("forbidden");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 422));

    // A JSON patch whose `test` fails is 422 Invalid and changes nothing.
    let failing = json_patch::Patch(
        serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "someone-else"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]))
        .expect("ops"),
    );
    let err = cms.patch("f", &PatchParams::default(), &Patch::Json::<()>(failing)).await.expect_err("test fails");
    assert!(matches!(&err, kube::Error::Api(s) if s.code == 422 && s.reason == "Invalid"), "{err:?}");
    assert!(cms.get_opt("f").await.expect("get").is_some());

    let removing = json_patch::Patch(
        serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "example.com/hold"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]))
        .expect("ops"),
    );
    cms.patch("f", &PatchParams::default(), &Patch::Json::<()>(removing)).await.expect("remove finalizer");
    assert!(cms.get_opt("f").await.expect("get").is_none(), "gone once the finalizers are");
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[tokio::test]
async fn kube_runtime_finalizer_helper_round_trip() {
    let server = ApiServer::start().await.expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &owned("x", None)).await.expect("create");
    const NAME: &str = "cohort.dev/cleanup";

    let reconcile = |cms: Api<ConfigMap>| async move {
        let obj = Arc::new(cms.get("x").await.expect("get"));
        finalizer(&cms, NAME, obj, |event| async move {
            match event {
                Finalizer::Apply(_) | Finalizer::Cleanup(_) => Ok::<_, Never>(Action::await_change()),
            }
        })
        .await
    };
    // First pass adds the finalizer (test + add on /metadata/finalizers).
    reconcile(cms.clone()).await.expect("adds the finalizer");
    let got = cms.get("x").await.expect("get");
    assert_eq!(got.metadata.finalizers.as_deref(), Some(&[NAME.to_string()][..]));
    reconcile(cms.clone()).await.expect("apply");

    cms.delete("x", &DeleteParams::default()).await.expect("delete");
    // Cleanup then removes it (test + remove), which completes the deletion.
    reconcile(cms.clone()).await.expect("cleanup");
    assert!(cms.get_opt("x").await.expect("get").is_none());
}
