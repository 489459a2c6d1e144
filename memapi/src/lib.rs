//! An in-memory Kubernetes API server over real HTTP, for testing
//! controllers with kube's own [`kube::Client`] — no mocked client, no
//! cluster.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! let server = cohort_memapi::ApiServer::start().await?;
//! let cms: kube::Api<ConfigMap> = kube::Api::default_namespaced(server.client());
//! // ... run controllers against `server.client()`, inspect `server.writes()` ...
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What it serves
//!
//! Plain HTTP/1.1 on `127.0.0.1`, the resource paths `/api/v1/...` and
//! `/apis/{group}/{version}/...` (namespaced, cluster-wide and
//! cluster-scoped, plus `/status`) for namespaces, secrets, configmaps,
//! services, pods, events, persistentvolumeclaims, serviceaccounts,
//! statefulsets, deployments, poddisruptionbudgets, networkpolicies, leases,
//! events.k8s.io events, customresourcedefinitions, and every CRD registered
//! with [`ApiServer::register_crd`] (or created through the API). Anything
//! else answers 404 with a `Status`, as a real server does for an unknown
//! resource.
//!
//! # What it honours
//!
//! - **Metadata**: random UUID `uid`, RFC 3339 `creationTimestamp`, one
//!   global increasing `resourceVersion`, `generation` starting at 1 and
//!   bumped when anything outside `metadata` and `status` changes or the
//!   deletion starts, `generateName`, RFC 1123 names.
//! - **Errors** as `meta/v1 Status` objects (which kube returns as
//!   `kube::Error::Api`): 404 NotFound, 409 AlreadyExists, 409 Conflict for
//!   a stale `metadata.resourceVersion` in a PUT or any patch, 409 Conflict
//!   with `FieldManagerConflict` causes for apply conflicts, 400 BadRequest
//!   for unparseable bodies, bad selectors and a name or namespace that
//!   disagrees with the URL (the real server's code for that), 422 Invalid
//!   for invalid names and JSON patches that do not apply (a failed
//!   `test`), 415 for an unknown patch type, 410 Expired for a watch from a
//!   compacted resourceVersion.
//! - **Verbs**: get, list, watch, create, update (PUT), patch (JSON patch
//!   RFC 6902, merge patch RFC 7386, strategic merge patch, server-side
//!   apply as JSON or YAML; a JSON patch `test` for `null` passes on a
//!   missing path, as in the real server and as kube-runtime's `finalizer()`
//!   needs), delete with `DeleteOptions` (preconditions,
//!   `propagationPolicy`, `dryRun`), deletecollection; `dryRun=All`.
//! - **Status subresource**: writes to the main resource keep the stored
//!   `status` (a create drops it); writes to `/status` change only `status`.
//! - **No-op writes** (nothing but bookkeeping changes) keep the
//!   resourceVersion and emit no event.
//! - **Finalizers**: deleting an object with finalizers sets
//!   `deletionTimestamp` (answer 202); the write that empties its finalizers
//!   deletes it (watchers see one DELETED); adding a finalizer to a
//!   deleting object is 422.
//! - **Garbage collection** (background, transitive): when an object is
//!   removed, every object whose owners (`ownerReferences[].uid`) are all
//!   gone is deleted too, respecting its finalizers; a removed Namespace
//!   takes its contents with it. `propagationPolicy: Orphan` strips the
//!   references instead.
//! - **Field ownership and server-side apply**: `metadata.managedFields` in
//!   the FieldsV1 shape, per (manager, Apply|Update, subresource). Apply
//!   requires `fieldManager`, conflicts (409, reason `Conflict`) on fields
//!   another manager owns with a different value unless `force=true` (which
//!   takes them), removes fields its manager applied before and omits now
//!   unless someone else owns them, and creates missing objects. Updates
//!   take the fields they change from everyone and never conflict.
//! - **Watches**: `watch=true` with `resourceVersion` (resumable from the
//!   last 10,000 events; older answers an `ERROR` event with a 410 Status;
//!   empty or `0` sends the current state as ADDED first),
//!   `timeoutSeconds`, label and field selectors (an object leaving the
//!   selector is DELETED for that watch, one entering it ADDED),
//!   `sendInitialEvents` with the `k8s.io/initial-events-end` bookmark, and
//!   `as=PartialObjectMetadata` (metadata-only) lists and watches.
//! - **Test hooks**: [`ApiServer::fail_next`] injects failures,
//!   [`ApiServer::writes`] logs every mutating request and its outcome,
//!   [`ApiServer::objects`] reads the store directly, [`ApiServer::compact`]
//!   forgets the event history.
//!
//! # Deviations from a real API server
//!
//! - No authentication, authorization, admission, defaulting, OpenAPI or
//!   CRD schema validation, and no discovery beyond `/version`; bodies are
//!   stored as sent (unknown fields are kept, not pruned).
//! - Lists ignore `limit`/`continue` (everything in one page, no continue
//!   token) and `resourceVersion` (always the latest state); GET ignores
//!   `resourceVersion`.
//! - Field paths treat map keys as segments and **every list as atomic**
//!   (apply, ownership and strategic merge replace lists whole; there are no
//!   list-map keys such as `containers[name=...]`). A strategic merge patch
//!   is a JSON merge patch; `$patch`-style directives are refused with 400.
//! - Ownership is by leaf field: a manager never owns a map itself. An
//!   apply does not conflict with its own manager's Update entry, and
//!   managedFields sent by clients are ignored rather than honoured.
//! - The name/namespace check answers 400 BadRequest (the real server's
//!   code), not 422.
//! - PUT never creates, and does not require `metadata.resourceVersion`
//!   (unconditional updates are allowed for every type, custom ones too).
//! - Multi-version CRDs share one stored object; reads just relabel
//!   `apiVersion` (no conversion). core/v1 and events.k8s.io/v1 Events are
//!   separate stores.
//! - `propagationPolicy: Foreground` behaves like Background; owners must
//!   not exist at all (no namespace or kind check on the reference), and
//!   there is no namespace finalizer or `Terminating` phase.
//! - Field selectors accept any dotted path, compared as strings.
//! - Watches send no periodic bookmarks; without `timeoutSeconds` they run
//!   until the client or the server goes away.

mod apply;
mod error;
mod fields;
mod query;
mod resources;
mod route;
mod selector;
mod server;
mod store;
mod watch;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::server::Shared;
use crate::store::Fault;
pub use crate::store::{RequestRecord, Write};

/// A running in-memory API server. Dropping it stops serving.
pub struct ApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Binds 127.0.0.1 on a free port and serves plain HTTP/1.1 in a tokio task.
    pub async fn start() -> std::io::Result<ApiServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let task = tokio::spawn(serve(listener, shared.clone()));
        Ok(ApiServer { addr, shared, task })
    }

    /// A client for this server (default namespace `default`).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as every kube client does.
    pub fn client(&self) -> kube::Client {
        let uri = self.url().parse().unwrap_or_else(|_| unreachable!("http://127.0.0.1:PORT is a valid URI"));
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        kube::Client::try_from(config).unwrap_or_else(|e| panic!("a kube client for plain HTTP: {e}"))
    }

    /// A client whose requests carry `Authorization: Bearer <user>`: the
    /// server records `user` with each of them ([`ApiServer::requests`]),
    /// as an API server records the authenticated user (nothing is refused).
    pub fn client_as(&self, user: &str) -> kube::Client {
        let uri = self.url().parse().unwrap_or_else(|_| unreachable!("http://127.0.0.1:PORT is a valid URI"));
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        config.auth_info.token = Some(user.to_string().into());
        kube::Client::try_from(config).unwrap_or_else(|e| panic!("a kube client for plain HTTP: {e}"))
    }

    /// Every resource request so far, in order, with what RBAC would
    /// authorize: user, verb, group, resource, subresource, namespace and
    /// name.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves the CRD's resource type (plural, kind, group, versions,
    /// scope, status subresource) and stores the CRD object itself.
    pub fn register_crd(&self, crd: &CustomResourceDefinition) {
        let mut store = self.shared.lock();
        store.register_crd(crd);
    }

    /// Makes the next `count` requests matching `method` and `plural` fail
    /// with `code` and a matching Status. `method` is an HTTP method
    /// (`PATCH`) or a verb (`list`, `watch`, `get`, `create`, `update`,
    /// `patch`, `delete`); `plural` is `pods` for the resource itself or
    /// `pods/status` for its status subresource.
    pub fn fail_next(&self, method: &str, plural: &str, count: usize, code: u16) {
        let (plural, status) = match plural.split_once('/') {
            Some((p, sub)) => (p, sub == "status"),
            None => (plural, false),
        };
        self.shared.lock().faults.push(Fault {
            method: method.to_string(),
            plural: plural.to_string(),
            status,
            remaining: count,
            code,
        });
    }

    /// Every mutating request so far (POST, PUT, PATCH, DELETE), in order,
    /// with its `fieldManager` and response code.
    pub fn writes(&self) -> Vec<Write> {
        self.shared.lock().writes.clone()
    }

    /// The stored objects of a plural (in any group), as JSON.
    pub fn objects(&self, plural: &str) -> Vec<serde_json::Value> {
        self.shared.lock().objects_of(plural)
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Forgets the event history, as etcd compaction does: a watch resuming
    /// from an older resourceVersion gets an `ERROR` event with 410 Gone
    /// (kube's watcher then re-lists).
    pub fn compact(&self) {
        let mut store = self.shared.lock();
        store.history.clear();
        store.compacted = store.rv;
    }

    /// Stops serving: the listener closes and open connections (watches
    /// included) are dropped.
    pub async fn shutdown(mut self) {
        self.task.abort();
        // The accept task ends as cancelled; nothing to report.
        let _ = (&mut self.task).await;
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until aborted; dropping the JoinSet aborts every
/// connection task with it.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(server::handle(shared, req).await) }
                    });
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
