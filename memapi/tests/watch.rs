//! Watches, raw and through kube-runtime's watcher.

use std::time::Duration;

use cohort_memapi::ApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

fn config_map(name: &str, app: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": app}}})).expect("cm")
}

const STEP: Duration = Duration::from_secs(5);

async fn next<S: futures::Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(STEP, stream.next()).await.expect("an event in time").expect("stream open")
}

/// (type, name) of a raw watch event.
fn summary(ev: &WatchEvent<ConfigMap>) -> (&'static str, String) {
    let name = |cm: &ConfigMap| cm.metadata.name.clone().unwrap_or_default();
    match ev {
        WatchEvent::Added(cm) => ("ADDED", name(cm)),
        WatchEvent::Modified(cm) => ("MODIFIED", name(cm)),
        WatchEvent::Deleted(cm) => ("DELETED", name(cm)),
        WatchEvent::Bookmark(_) => ("BOOKMARK", String::new()),
        WatchEvent::Error(e) => ("ERROR", e.code.to_string()),
    }
}

#[tokio::test]
async fn raw_watch_resumes_filters_and_expires() {
    let server = ApiServer::start().await.expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let a = cms.create(&pp, &config_map("a", "web")).await.expect("a");
    cms.create(&pp, &config_map("b", "db")).await.expect("b");
    let from = a.metadata.resource_version.clone().expect("rv");

    // From "0": the current state first.
    let mut stream = cms.watch(&WatchParams::default().timeout(2), "0").await.expect("watch").boxed();
    assert_eq!(summary(&next(&mut stream).await.expect("event")), ("ADDED", "a".into()));
    assert_eq!(summary(&next(&mut stream).await.expect("event")), ("ADDED", "b".into()));

    // From a resourceVersion: what came after it; a label selector sees an
    // object leave (DELETED) and enter (ADDED).
    let mut web = cms.watch(&WatchParams::default().labels("app=web").timeout(3), &from).await.expect("watch").boxed();
    let relabel = |app: &str| json!({"metadata": {"labels": {"app": app}}});
    cms.patch("a", &PatchParams::default(), &Patch::Merge(relabel("db"))).await.expect("leave");
    cms.patch("a", &PatchParams::default(), &Patch::Merge(relabel("web"))).await.expect("enter");
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"x": "y"}}))).await.expect("modify");
    cms.delete("a", &DeleteParams::default()).await.expect("delete");
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(summary(&next(&mut web).await.expect("event")));
    }
    assert_eq!(
        seen,
        [("DELETED", "a".into()), ("ADDED", "a".into()), ("MODIFIED", "a".into()), ("DELETED", "a".into())]
    );

    // The stream ends at timeoutSeconds.
    let ended = tokio::time::timeout(STEP, web.next()).await.expect("ends in time");
    assert!(ended.is_none());

    // A compacted resourceVersion answers 410 Gone in the stream.
    server.compact();
    let mut old = cms.watch(&WatchParams::default(), &from).await.expect("watch").boxed();
    assert_eq!(summary(&next(&mut old).await.expect("event")), ("ERROR", "410".into()));
}

#[tokio::test]
async fn runtime_watcher_sees_changes_in_order_and_relists_after_compaction() {
    let server = ApiServer::start().await.expect("start");
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    cms.create(&pp, &config_map("before", "x")).await.expect("before");

    // Short server-side timeouts make the watcher reconnect often, from its
    // last resourceVersion.
    let config = watcher::Config::default().timeout(1);
    let mut events = watcher::watcher(cms.clone(), config).boxed();
    let mut initial = Vec::new();
    loop {
        match next(&mut events).await.expect("event") {
            Event::Init => {}
            Event::InitApply(cm) => initial.push(cm.metadata.name.unwrap_or_default()),
            Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(initial, ["before"]);

    cms.create(&pp, &config_map("c", "x")).await.expect("create");
    cms.patch("c", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "v"}}))).await.expect("modify");
    cms.delete("c", &DeleteParams::default()).await.expect("delete");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match next(&mut events).await.expect("event") {
            Event::Apply(cm) => seen.push(("apply", cm.data.unwrap_or_default().len())),
            Event::Delete(_) => seen.push(("delete", 0)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, [("apply", 0), ("apply", 1), ("delete", 0)]);

    // Writes the watcher does not see (another namespace), then compaction:
    // its resourceVersion is now too old, so its next reconnect gets 410 and
    // it re-lists.
    let elsewhere: Api<ConfigMap> = Api::namespaced(server.client(), "elsewhere");
    elsewhere.create(&pp, &config_map("unseen", "x")).await.expect("elsewhere");
    server.compact();
    let relisted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.try_next().await {
                Ok(Some(Event::Init)) => return true,
                Ok(Some(_)) | Err(_) => continue,
                Ok(None) => return false,
            }
        }
    })
    .await
    .expect("re-lists in time");
    assert!(relisted);
}
