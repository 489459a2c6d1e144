//! CRUD, errors, selectors, the status subresource and generation, through
//! kube's own client.

use cohort_crds::MpcJob;
use cohort_memapi::ApiServer;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::CustomResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    }))
    .expect("a ConfigMap")
}

fn api_error(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn job(name: &str) -> MpcJob {
    serde_json::from_value(json!({
        "apiVersion": "cohort.dev/v1alpha1",
        "kind": "MpcJob",
        "metadata": {"name": name},
        "spec": {"clusterRef": {"name": "c"}, "program": "output x = 1"},
    }))
    .expect("an MpcJob")
}

#[tokio::test]
async fn create_get_list_delete() {
    let server = ApiServer::start().await.expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());

    let created = cms.create(&PostParams::default(), &config_map("a", json!({}))).await.expect("create");
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert_eq!(meta.uid.as_ref().map(String::len), Some(36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let rv: u64 = meta.resource_version.as_deref().and_then(|rv| rv.parse().ok()).expect("numeric rv");

    let got = cms.get("a").await.expect("get");
    assert_eq!(got, created);
    cms.create(&PostParams::default(), &config_map("b", json!({}))).await.expect("create b");
    let list = cms.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.iter().map(|c| c.metadata.name.clone().unwrap_or_default()).collect::<Vec<_>>(), ["a", "b"]);
    let list_rv: u64 = list.metadata.resource_version.as_deref().and_then(|rv| rv.parse().ok()).expect("list rv");
    assert!(list_rv > rv);

    // Other namespaces are separate; the cluster-wide list sees all.
    let other: Api<ConfigMap> = Api::namespaced(server.client(), "other");
    other.create(&PostParams::default(), &config_map("a", json!({}))).await.expect("same name, other namespace");
    let all: Api<ConfigMap> = Api::all(server.client());
    assert_eq!(all.list(&ListParams::default()).await.expect("all").items.len(), 3);

    let deleted = cms.delete("a", &DeleteParams::default()).await.expect("delete");
    assert!(deleted.left().is_some(), "a delete returns the object");
    assert_eq!(api_error(cms.get("a").await.expect_err("gone")), (404, "NotFound".into()));
    assert_eq!(api_error(cms.delete("a", &DeleteParams::default()).await.expect_err("gone")).0, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn create_conflicts_and_stale_replace() {
    let server = ApiServer::start().await.expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let first = cms.create(&PostParams::default(), &config_map("a", json!({}))).await.expect("create");
    let err = cms.create(&PostParams::default(), &config_map("a", json!({}))).await.expect_err("exists");
    assert_eq!(api_error(err), (409, "AlreadyExists".into()));

    let mut newer = first.clone();
    newer.data = Some([("k".to_string(), "v2".to_string())].into());
    let newer = cms.replace("a", &PostParams::default(), &newer).await.expect("replace with current rv");
    assert_ne!(newer.metadata.resource_version, first.metadata.resource_version);

    let mut stale = first.clone();
    stale.data = Some([("k".to_string(), "v3".to_string())].into());
    let err = cms.replace("a", &PostParams::default(), &stale).await.expect_err("stale");
    assert_eq!(api_error(err), (409, "Conflict".into()));

    // A merge patch carrying a stale resourceVersion conflicts too.
    let patch = json!({"metadata": {"resourceVersion": first.metadata.resource_version}, "data": {"k": "v4"}});
    let err = cms.patch("a", &PatchParams::default(), &Patch::Merge(&patch)).await.expect_err("stale patch");
    assert_eq!(api_error(err), (409, "Conflict".into()));

    // The name in the body must be the name in the URL.
    let err = cms.replace("b", &PostParams::default(), &newer).await.expect_err("name mismatch");
    assert_eq!(api_error(err).0, 400);
}

#[tokio::test]
async fn malformed_requests_answer_status_errors() {
    let server = ApiServer::start().await.expect("start");
    let client = server.client();
    let request = |method: &str, path: &str, content_type: &str, body: &str| {
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .body(body.as_bytes().to_vec())
            .expect("request")
    };
    let cases = [
        (request("POST", "/api/v1/namespaces/default/configmaps", "application/json", "{not json"), 400),
        (request("POST", "/api/v1/namespaces/default/configmaps", "application/json", "[1]"), 400),
        (request("POST", "/api/v1/namespaces/default/configmaps", "application/json", r#"{"metadata":{}}"#), 422),
        (
            request(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                "application/json",
                r#"{"metadata":{"name":"Bad_Name"}}"#,
            ),
            422,
        ),
        (request("PATCH", "/api/v1/namespaces/default/configmaps/x", "text/plain", "{}"), 415),
        (request("GET", "/api/v1/namespaces/default/configmaps?labelSelector=a+in+(b", "", ""), 400),
        (request("GET", "/api/v1/namespaces/default/widgets", "", ""), 404),
        (request("GET", "/apis/cohort.dev/v1alpha1/namespaces/default/mpcjobs", "", ""), 404),
        (request("GET", "/nowhere/at/all", "", ""), 404),
        (request("PUT", "/api/v1/namespaces/default/configmaps", "application/json", "{}"), 405),
    ];
    for (req, code) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let err = client.request::<serde_json::Value>(req).await.expect_err(&what);
        match err {
            kube::Error::Api(status) => {
                assert_eq!(status.code, code, "{what}: {status:?}");
                assert!(!status.reason.is_empty() && !status.message.is_empty(), "{what}: {status:?}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn label_and_field_selectors() {
    let server = ApiServer::start().await.expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    for (name, labels) in [
        ("web", json!({"app": "web", "tier": "front"})),
        ("db", json!({"app": "db", "tier": "back"})),
        ("bare", json!({})),
    ] {
        cms.create(&PostParams::default(), &config_map(name, labels)).await.expect("create");
    }
    let names = |selector: &'static str| {
        let cms = cms.clone();
        async move {
            let list = cms.list(&ListParams::default().labels(selector)).await.expect(selector);
            list.items.into_iter().filter_map(|c| c.metadata.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("app=web").await, ["web"]);
    assert_eq!(names("app==db").await, ["db"]);
    assert_eq!(names("app!=web").await, ["bare", "db"]);
    assert_eq!(names("app in (web,db)").await, ["db", "web"]);
    assert_eq!(names("app notin (web)").await, ["bare", "db"]);
    assert_eq!(names("tier").await, ["db", "web"]);
    assert_eq!(names("!tier").await, ["bare"]);
    assert_eq!(names("app in (web,db),tier=back").await, ["db"]);
    let by_name = cms.list(&ListParams::default().fields("metadata.name=db")).await.expect("field selector");
    assert_eq!(by_name.items.len(), 1);
}

#[tokio::test]
async fn status_subresource_isolation_and_generation() {
    let server = ApiServer::start().await.expect("start");
    server.register_crd(&MpcJob::crd());
    let jobs: Api<MpcJob> = Api::default_namespaced(server.client());

    let mut with_status = job("j");
    with_status.status = Some(serde_json::from_value(json!({"reason": "Ignored"})).expect("status"));
    let created = jobs.create(&PostParams::default(), &with_status).await.expect("create");
    assert_eq!(created.status, None, "a create drops status when it is a subresource");
    assert_eq!(created.metadata.generation, Some(1));

    // Status writes change only status, and not the generation.
    let patch = json!({"spec": {"program": "ignored"}, "status": {"reason": "Waiting"}});
    let after = jobs.patch_status("j", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("status");
    assert_eq!(after.spec.program, "output x = 1");
    assert_eq!(after.status.as_ref().and_then(|s| s.reason.as_deref()), Some("Waiting"));
    assert_eq!(after.metadata.generation, Some(1));

    // Main-resource writes keep status, and bump the generation on spec changes only.
    let patch = json!({"spec": {"program": "output y = 2"}, "status": {"reason": "Overwritten"}});
    let after = jobs.patch("j", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("spec");
    assert_eq!(after.spec.program, "output y = 2");
    assert_eq!(after.status.as_ref().and_then(|s| s.reason.as_deref()), Some("Waiting"));
    assert_eq!(after.metadata.generation, Some(2));
    let labels = json!({"metadata": {"labels": {"a": "b"}}});
    let after = jobs.patch("j", &PatchParams::default(), &Patch::Merge(&labels)).await.expect("labels");
    assert_eq!(after.metadata.generation, Some(2));

    // A no-op write keeps the resourceVersion.
    let again = jobs.patch("j", &PatchParams::default(), &Patch::Merge(&labels)).await.expect("no-op");
    assert_eq!(again.metadata.resource_version, after.metadata.resource_version);

    // A PUT of the whole object with a different status keeps the stored one.
    let mut replaced = again.clone();
    replaced.status = None;
    let replaced = jobs.replace("j", &PostParams::default(), &replaced).await.expect("replace");
    assert_eq!(replaced.status.as_ref().and_then(|s| s.reason.as_deref()), Some("Waiting"));

    // Without a status subresource, status is an ordinary field and there
    // is no /status path.
    let client = server.client();
    let raw = |method: &str, path: &str, body: serde_json::Value| {
        hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).expect("json"))
            .expect("request")
    };
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "status": {"x": 1}});
    let created: serde_json::Value =
        client.request(raw("POST", "/api/v1/namespaces/default/configmaps", cm)).await.expect("create");
    assert_eq!(created["status"], json!({"x": 1}));
    let err = client
        .request::<serde_json::Value>(raw("GET", "/api/v1/namespaces/default/configmaps/s/status", json!(null)))
        .await
        .expect_err("no status subresource");
    assert_eq!(api_error(err).0, 404);

    // Pods have one: missing pods are 404 there too.
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    let err = pods.get_status("missing").await.expect_err("no such pod");
    assert_eq!(api_error(err).0, 404);
}

#[tokio::test]
async fn metadata_only_lists() {
    let server = ApiServer::start().await.expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &config_map("m", json!({"a": "b"}))).await.expect("create");
    let list = cms.list_metadata(&ListParams::default()).await.expect("metadata list");
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.labels.as_ref().and_then(|l| l.get("a")).map(String::as_str), Some("b"));
}

#[tokio::test]
async fn injected_failures_and_the_write_log() {
    let server = ApiServer::start().await.expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    server.fail_next("POST", "configmaps", 2, 500);
    for _ in 0..2 {
        let err = cms.create(&PostParams::default(), &config_map("a", json!({}))).await.expect_err("injected");
        assert_eq!(api_error(err), (500, "InternalError".into()));
    }
    cms.create(&PostParams::default(), &config_map("a", json!({}))).await.expect("third succeeds");
    server.fail_next("patch", "configmaps", 1, 409);
    let pp = PatchParams::apply("me");
    let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "y"}});
    let err = cms.patch("a", &pp, &Patch::Apply(&patch)).await.expect_err("injected conflict");
    assert_eq!(api_error(err), (409, "Conflict".into()));
    cms.patch("a", &pp, &Patch::Apply(&patch)).await.expect("apply");
    let writes = server.writes();
    let summary: Vec<(&str, Option<&str>, u16)> =
        writes.iter().map(|w| (w.method.as_str(), w.field_manager.as_deref(), w.code)).collect();
    assert_eq!(
        summary,
        [
            ("POST", None, 500),
            ("POST", None, 500),
            ("POST", None, 201),
            ("PATCH", Some("me"), 409),
            ("PATCH", Some("me"), 200)
        ]
    );
    assert!(writes.iter().all(|w| w.path.starts_with("/api/v1/namespaces/default/configmaps")));
}
