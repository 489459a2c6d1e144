//! HTTP/1.1 serving: one hyper connection task per client connection,
//! requests routed to the store under one lock, watches streamed as
//! chunked bodies.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::query::Query;
use crate::route::Route;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{PatchType, RequestRecord, Store, Write, WriteOpts};
use crate::watch::{Filter, View, Watch, WatchParams};

pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The state every connection shares.
pub(crate) struct Shared {
    store: Mutex<Store>,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared { store: Mutex::new(Store::new()) }
    }

    /// The store; a panic elsewhere while holding it leaves data that is
    /// still consistent enough for tests, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A successful answer.
enum Reply {
    Json(u16, Value),
    Text(&'static str),
    Watch(Box<Watch>),
}

/// The parts of a request that dispatch needs.
struct ParsedRequest {
    method: String,
    path: String,
    query: Query,
    content_type: Option<String>,
    partial: bool,
    user_agent: Option<String>,
    /// The bearer token, if any.
    user: Option<String>,
    body: Bytes,
}

pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let header = |name| parts.headers.get(name).and_then(|v: &hyper::header::HeaderValue| v.to_str().ok());
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return error_response(&ApiError::BadRequest(format!("reading the request body: {e}"))),
    };
    let request = ParsedRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: Query::parse(parts.uri.query()),
        content_type: header(CONTENT_TYPE).map(str::to_string),
        partial: header(ACCEPT).is_some_and(|a| a.contains("as=PartialObjectMetadata")),
        user_agent: header(USER_AGENT).map(str::to_string),
        user: header(AUTHORIZATION).and_then(|a| a.strip_prefix("Bearer ")).map(str::to_string),
        body,
    };
    let result = {
        let mut store = shared.lock();
        let result = dispatch(&mut store, &request);
        if matches!(request.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") {
            let code = match &result {
                Ok(Reply::Json(code, _)) => *code,
                Ok(_) => 200,
                Err(e) => e.code(),
            };
            store.writes.push(Write {
                method: request.method.clone(),
                path: request.path.clone(),
                field_manager: request.query.get("fieldManager").map(str::to_string),
                code,
            });
        }
        result
    };
    match result {
        Ok(Reply::Json(code, value)) => json_response(code, &value),
        Ok(Reply::Text(text)) => {
            let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed_unsync());
            res.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
            res
        }
        Ok(Reply::Watch(watch)) => {
            let stream = watch.into_stream().map(|line| Ok::<_, Infallible>(Frame::data(line)));
            let mut res = Response::new(StreamBody::new(stream).boxed_unsync());
            res.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
            res
        }
        Err(e) => {
            tracing::debug!(method = %request.method, path = %request.path, error = %e, "request failed");
            error_response(&e)
        }
    }
}

fn dispatch(store: &mut Store, req: &ParsedRequest) -> Result<Reply, ApiError> {
    match req.path.as_str() {
        "/version" => {
            return Ok(Reply::Json(
                200,
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-cohort-memapi", "platform": "linux/amd64"}),
            ));
        }
        "/healthz" | "/livez" | "/readyz" => return Ok(Reply::Text("ok")),
        _ => {}
    }
    let route = Route::parse(&req.path, &store.registry)?;
    let watching = req.query.flag("watch");
    store.requests.push(RequestRecord {
        user: req.user.clone(),
        verb: verb(req, &route, watching).to_string(),
        group: route.rt.group.clone(),
        resource: route.rt.plural.clone(),
        subresource: route.status.then(|| "status".to_string()),
        namespace: route.namespace.clone(),
        name: route.name.clone(),
    });
    if let Some(code) = take_fault(store, req, &route, watching) {
        return Err(ApiError::Injected { code });
    }
    let view = View { api_version: route.api_version(), kind: route.rt.kind.clone(), partial: req.partial };
    let manager = req.query.get("fieldManager");
    let opts = WriteOpts {
        manager: manager.map(str::to_string).unwrap_or_else(|| default_manager(req.user_agent.as_deref())),
        explicit_manager: manager.is_some_and(|m| !m.is_empty()),
        force: req.query.flag("force"),
        dry_run: req.query.get("dryRun").is_some_and(|d| !d.is_empty()),
    };
    match (req.method.as_str(), route.name.is_some()) {
        ("GET", false) if watching => {
            let filter = Filter {
                group: route.rt.group.clone(),
                plural: route.rt.plural.clone(),
                namespace: route.namespace.clone(),
                labels: LabelSelector::parse(req.query.get("labelSelector").unwrap_or_default())?,
                fields: FieldSelector::parse(req.query.get("fieldSelector").unwrap_or_default())?,
                view,
            };
            let timeout = match req.query.get("timeoutSeconds") {
                Some(t) => Some(std::time::Duration::from_secs(
                    t.parse().map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds {t:?}")))?,
                )),
                None => None,
            };
            let params = WatchParams {
                resource_version: req.query.get("resourceVersion").unwrap_or_default().to_string(),
                send_initial_events: req.query.flag("sendInitialEvents"),
                bookmarks: req.query.flag("allowWatchBookmarks"),
                timeout,
            };
            Ok(Reply::Watch(Box::new(Watch::start(store, filter, &params)?)))
        }
        ("GET", false) => {
            let labels = LabelSelector::parse(req.query.get("labelSelector").unwrap_or_default())?;
            let fields = FieldSelector::parse(req.query.get("fieldSelector").unwrap_or_default())?;
            let items: Vec<Value> = store
                .select(&route.rt.group, &route.rt.plural, route.namespace.as_deref(), &labels, &fields)
                .map(|(_, obj)| view.present(obj))
                .collect();
            Ok(Reply::Json(200, list(&view, items, store.rv)))
        }
        ("GET", true) => Ok(Reply::Json(200, view.present(&store.get(&route)?))),
        ("POST", false) => {
            let obj = store.create(&route, parse_json(&req.body)?, &opts)?;
            Ok(Reply::Json(201, view.present(&obj)))
        }
        ("PUT", true) => {
            let obj = store.replace(&route, parse_json(&req.body)?, &opts)?;
            Ok(Reply::Json(200, view.present(&obj)))
        }
        ("PATCH", true) => {
            let ct = req.content_type.as_deref().unwrap_or_default();
            let patch_type = PatchType::from_content_type(ct)
                .ok_or(ApiError::UnsupportedMediaType { accepted: PatchType::ACCEPTED })?;
            let (code, obj) = store.patch(&route, patch_type, &req.body, &opts)?;
            Ok(Reply::Json(code, view.present(&obj)))
        }
        ("DELETE", true) => {
            let options = if req.body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { parse_json(&req.body)? };
            let (code, obj) = store.delete(&route, &options, opts.dry_run)?;
            Ok(Reply::Json(code, view.present(&obj)))
        }
        ("DELETE", false) => {
            let labels = LabelSelector::parse(req.query.get("labelSelector").unwrap_or_default())?;
            let fields = FieldSelector::parse(req.query.get("fieldSelector").unwrap_or_default())?;
            let items = store.delete_collection(&route, &labels, &fields).iter().map(|o| view.present(o)).collect();
            Ok(Reply::Json(200, list(&view, items, store.rv)))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// The Kubernetes verb of a request (what RBAC authorizes).
fn verb(req: &ParsedRequest, route: &Route, watching: bool) -> &'static str {
    match (req.method.as_str(), route.name.is_some()) {
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "",
    }
}

/// A `<Kind>List` (or `PartialObjectMetadataList`).
fn list(view: &View, items: Vec<Value>, rv: u64) -> Value {
    let (api_version, kind) = if view.partial {
        ("meta.k8s.io/v1".to_string(), "PartialObjectMetadataList".to_string())
    } else {
        (view.api_version.clone(), format!("{}List", view.kind))
    };
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": rv.to_string()}, "items": items})
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}

/// Without `fieldManager`, a real server names the writer after the
/// User-Agent's program name.
fn default_manager(user_agent: Option<&str>) -> String {
    user_agent.and_then(|ua| ua.split('/').next()).filter(|m| !m.is_empty()).unwrap_or("unknown").to_string()
}

/// Consumes one injected failure matching this request, if any. A fault's
/// method matches the HTTP method or the verb (`list`, `watch`, ...).
fn take_fault(store: &mut Store, req: &ParsedRequest, route: &Route, watching: bool) -> Option<u16> {
    let verb = verb(req, route, watching);
    let fault = store.faults.iter_mut().find(|f| {
        f.remaining > 0
            && (f.method.eq_ignore_ascii_case(&req.method) || f.method.eq_ignore_ascii_case(verb))
            && f.plural == route.rt.plural
            && f.status == route.status
    })?;
    fault.remaining -= 1;
    let code = fault.code;
    store.faults.retain(|f| f.remaining > 0);
    Some(code)
}

fn json_response(code: u16, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut res = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
    *res.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    res.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    res
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code(), &e.to_status())
}
