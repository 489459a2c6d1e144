//! The object store and its write semantics: resourceVersion, generation,
//! uid, the status subresource, finalizers, garbage collection, field
//! ownership; every change is recorded as a watch event.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::apply::{self, Managed, Writer};
use crate::error::ApiError;
use crate::fields::Scope;
use crate::resources::Registry;
use crate::route::Route;
use crate::selector::{FieldSelector, LabelSelector};

/// How many events a watch can resume from (older ones answer 410 Gone).
pub(crate) const HISTORY: usize = 10_000;

/// Where an object lives. Cluster-scoped objects have an empty namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub obj: Value,
    pub managed: Managed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as watches see it.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub key: Key,
    pub kind: EventType,
    pub object: Value,
    /// The previous state, for watches whose selector the object enters or leaves.
    pub old: Option<Value>,
}

/// A failure to inject into the next matching requests.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub method: String,
    pub plural: String,
    pub status: bool,
    pub remaining: usize,
    pub code: u16,
}

/// A mutating request and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub method: String,
    pub path: String,
    pub field_manager: Option<String>,
    pub code: u16,
}

/// One request, as an authorizer sees it (RBAC's request attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The bearer token the client sent (see [`crate::ApiServer::client_as`]),
    /// standing in for the authenticated user.
    pub user: Option<String>,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`.
    pub verb: String,
    /// Empty for the core group.
    pub group: String,
    /// The plural, e.g. `statefulsets`.
    pub resource: String,
    /// `status` for the status subresource.
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// The kind of a PATCH body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub(crate) const ACCEPTED: &'static str = "application/json-patch+json, application/merge-patch+json, \
         application/strategic-merge-patch+json, application/apply-patch+yaml";

    pub(crate) fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Options shared by writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteOpts {
    pub manager: String,
    /// Whether `fieldManager` was given (apply requires it).
    pub explicit_manager: bool,
    pub force: bool,
    pub dry_run: bool,
}

pub(crate) struct Store {
    pub registry: Registry,
    objects: BTreeMap<Key, Stored>,
    pub rv: u64,
    pub history: VecDeque<Arc<Event>>,
    /// The newest resourceVersion evicted from `history`.
    pub compacted: u64,
    pub events: broadcast::Sender<Arc<Event>>,
    pub faults: Vec<Fault>,
    pub writes: Vec<Write>,
    pub requests: Vec<RequestRecord>,
}

impl Store {
    pub(crate) fn new() -> Store {
        let (events, _) = broadcast::channel(HISTORY);
        Store {
            registry: Registry::builtin(),
            objects: BTreeMap::new(),
            rv: 0,
            history: VecDeque::new(),
            compacted: 0,
            events,
            faults: Vec::new(),
            writes: Vec::new(),
            requests: Vec::new(),
        }
    }

    /// Objects of the route's type in its namespace (all namespaces when
    /// none), in (namespace, name) order.
    pub(crate) fn select<'a>(
        &'a self,
        group: &'a str,
        plural: &'a str,
        namespace: Option<&'a str>,
        labels: &'a LabelSelector,
        fields: &'a FieldSelector,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        self.objects
            .iter()
            .filter(move |(k, _)| k.group == group && k.plural == plural)
            .filter(move |(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
            .filter(move |(_, s)| labels.matches(&s.obj) && fields.matches(&s.obj))
            .map(|(k, s)| (k, &s.obj))
    }

    /// Every object of a plural, in any group (for test helpers).
    pub(crate) fn objects_of(&self, plural: &str) -> Vec<Value> {
        self.objects.iter().filter(|(k, _)| k.plural == plural).map(|(_, s)| s.obj.clone()).collect()
    }

    /// Serves a CRD's type and stores the CRD object (once).
    pub(crate) fn register_crd(&mut self, crd: &CustomResourceDefinition) {
        self.registry.insert(crate::resources::from_crd(crd));
        let (Some(name), Ok(obj)) = (crd.metadata.name.clone(), serde_json::to_value(crd)) else { return };
        let Some(rt) = self.registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions").cloned() else {
            return;
        };
        let key =
            Key { group: rt.group.clone(), plural: rt.plural.clone(), namespace: String::new(), name: name.clone() };
        if self.objects.contains_key(&key) {
            return;
        }
        let route = Route { rt, version: "v1".into(), namespace: None, name: Some(name), status: false };
        let obj = prepare_new(obj, &route);
        self.commit(key, obj, Managed::default());
    }

    pub(crate) fn get(&self, r: &Route) -> Result<Value, ApiError> {
        let key = key(r)?;
        self.objects.get(&key).map(|s| s.obj.clone()).ok_or_else(|| not_found(r, &key.name))
    }

    pub(crate) fn create(&mut self, r: &Route, body: Value, opts: &WriteOpts) -> Result<Value, ApiError> {
        let namespace = r.namespace.clone().ok_or(ApiError::MethodNotAllowed)?;
        let mut obj = expect_object(body)?;
        check_type(&obj, r)?;
        check_namespace(&obj, r)?;
        let name = match meta_str(&obj, "name") {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => match meta_str(&obj, "generateName") {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
                _ => return Err(invalid(r, "", "metadata.name: Required value: name or generateName is required")),
            },
        };
        validate_name(r, &name)?;
        set_meta(&mut obj, "name", Value::String(name.clone()));
        let key = Key { group: r.rt.group.clone(), plural: r.rt.plural.clone(), namespace, name: name.clone() };
        if self.objects.contains_key(&key) {
            return Err(ApiError::AlreadyExists { resource: r.rt.plural.clone(), group: r.rt.group.clone(), name });
        }
        let obj = prepare_new(obj, r);
        let mut managed = Managed::default();
        let now = now();
        let writer = Writer {
            manager: &opts.manager,
            api_version: &r.api_version(),
            scope: Scope::Main { status_subresource: r.rt.status },
            now: &now,
        };
        managed.record_update(&writer, &json!({}), &obj);
        if opts.dry_run {
            return Ok(obj);
        }
        Ok(self.commit(key, obj, managed))
    }

    /// PUT: replace the main resource or the status.
    pub(crate) fn replace(&mut self, r: &Route, body: Value, opts: &WriteOpts) -> Result<Value, ApiError> {
        let body = expect_object(body)?;
        // The URL check comes first, as in the real handler: a mismatched
        // name is 400 even when the URL names nothing.
        check_name(&body, &key(r)?.name)?;
        self.update(r, opts, |_| Ok(body))
    }

    /// PATCH with any of the four patch types.
    pub(crate) fn patch(
        &mut self,
        r: &Route,
        patch_type: PatchType,
        body: &[u8],
        opts: &WriteOpts,
    ) -> Result<(u16, Value), ApiError> {
        match patch_type {
            PatchType::Json => {
                let patch: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?;
                let obj = self.update(r, opts, |current| {
                    let mut doc = current.clone();
                    apply_json_patch(&mut doc, &patch.0)?;
                    Ok(doc)
                })?;
                Ok((200, obj))
            }
            PatchType::Merge | PatchType::Strategic => {
                let patch: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::BadRequest(format!("invalid merge patch: {e}")))?;
                if !patch.is_object() {
                    return Err(ApiError::BadRequest("a merge patch must be a JSON object".into()));
                }
                if patch_type == PatchType::Strategic && has_directive(&patch) {
                    return Err(ApiError::BadRequest(
                        "strategic merge patch directives ($patch, $setElementOrder, ...) are not supported by \
                         cohort-memapi"
                            .into(),
                    ));
                }
                let obj = self.update(r, opts, |current| {
                    let mut doc = current.clone();
                    json_patch::merge(&mut doc, &patch);
                    Ok(doc)
                })?;
                Ok((200, obj))
            }
            PatchType::Apply => self.apply(r, body, opts),
        }
    }

    /// The shared path of PUT and the update patches: `mutate` turns the
    /// current object into the requested one.
    fn update(
        &mut self,
        r: &Route,
        opts: &WriteOpts,
        mutate: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let key = key(r)?;
        let stored = self.objects.get(&key).cloned().ok_or_else(|| not_found(r, &key.name))?;
        let requested = expect_object(mutate(&stored.obj)?)?;
        check_type(&requested, r)?;
        check_namespace(&requested, r)?;
        check_name(&requested, &key.name)?;
        check_resource_version(&requested, &stored.obj, r, &key.name)?;
        let obj = merge_scope(&stored.obj, requested, r);
        check_finalizers_while_deleting(&stored.obj, &obj, r, &key.name)?;
        let mut managed = stored.managed.clone();
        let now = now();
        let writer = Writer { manager: &opts.manager, api_version: &r.api_version(), scope: scope(r), now: &now };
        managed.record_update(&writer, &stored.obj, &obj);
        Ok(self.finish(key, &stored, obj, managed, opts.dry_run))
    }

    fn apply(&mut self, r: &Route, body: &[u8], opts: &WriteOpts) -> Result<(u16, Value), ApiError> {
        if !opts.explicit_manager {
            return Err(ApiError::BadRequest("PATCH, application/apply-patch+yaml requires fieldManager".into()));
        }
        let config = expect_object(parse_apply_body(body)?)?;
        let key = key(r)?;
        if config.get("apiVersion").is_none() || config.get("kind").is_none() {
            return Err(ApiError::BadRequest("apply configuration must set apiVersion and kind".into()));
        }
        check_type(&config, r)?;
        check_namespace(&config, r)?;
        check_name(&config, &key.name)?;
        let now = now();
        let writer = Writer { manager: &opts.manager, api_version: &r.api_version(), scope: scope(r), now: &now };
        let target = apply::Target { resource: &r.rt.plural, group: &r.rt.group, name: &key.name };
        match self.objects.get(&key).cloned() {
            None if r.status => Err(not_found(r, &key.name)),
            None => {
                if meta_str(&config, "resourceVersion").is_some_and(|rv| !rv.is_empty()) {
                    return Err(ApiError::Conflict {
                        resource: r.rt.plural.clone(),
                        group: r.rt.group.clone(),
                        name: key.name.clone(),
                    });
                }
                validate_name(r, &key.name)?;
                let (mut obj, managed) =
                    apply::apply(&json!({}), &Managed::default(), &config, &writer, opts.force, &target)?;
                set_meta(&mut obj, "name", Value::String(key.name.clone()));
                let obj = prepare_new(obj, r);
                if opts.dry_run {
                    return Ok((201, obj));
                }
                Ok((201, self.commit(key, obj, managed)))
            }
            Some(stored) => {
                check_resource_version(&config, &stored.obj, r, &key.name)?;
                let (obj, managed) = apply::apply(&stored.obj, &stored.managed, &config, &writer, opts.force, &target)?;
                check_finalizers_while_deleting(&stored.obj, &obj, r, &key.name)?;
                Ok((200, self.finish(key, &stored, obj, managed, opts.dry_run)))
            }
        }
    }

    /// Commits an update unless it changes nothing (a real server keeps
    /// the resourceVersion of a no-op write).
    fn finish(&mut self, key: Key, old: &Stored, obj: Value, managed: Managed, dry_run: bool) -> Value {
        if without_bookkeeping(&old.obj) == without_bookkeeping(&obj) && old.managed.same_sets(&managed) {
            return old.obj.clone();
        }
        if dry_run {
            return obj;
        }
        self.commit(key, obj, managed)
    }

    /// DELETE of one object, with `DeleteOptions` (preconditions,
    /// propagationPolicy, dryRun). Returns the code (200 removed, 202 kept
    /// for finalizers) and the object.
    pub(crate) fn delete(&mut self, r: &Route, options: &Value, dry_run: bool) -> Result<(u16, Value), ApiError> {
        let key = key(r)?;
        let stored = self.objects.get(&key).ok_or_else(|| not_found(r, &key.name))?;
        for (field, actual) in
            [("uid", meta_str(&stored.obj, "uid")), ("resourceVersion", meta_str(&stored.obj, "resourceVersion"))]
        {
            let wanted = options.pointer(&format!("/preconditions/{field}")).and_then(Value::as_str);
            if let Some(wanted) = wanted.filter(|w| Some(*w) != actual) {
                return Err(ApiError::Precondition {
                    resource: r.rt.plural.clone(),
                    group: r.rt.group.clone(),
                    name: key.name.clone(),
                    message: format!(
                        "Precondition failed: {field} in precondition: {wanted}, {field} in object meta: {}",
                        actual.unwrap_or_default()
                    ),
                });
            }
        }
        if dry_run || options.get("dryRun").and_then(Value::as_array).is_some_and(|d| !d.is_empty()) {
            return Ok((200, stored.obj.clone()));
        }
        let orphan = options.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan")
            || options.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        if orphan && let Some(uid) = meta_str(&stored.obj, "uid").map(str::to_string) {
            self.orphan_dependents(&uid);
        }
        match self.delete_key(&key) {
            Deletion::Removed(obj, uid) => {
                if !orphan {
                    self.collect_garbage(vec![(key, uid)]);
                }
                Ok((200, obj))
            }
            Deletion::Pending(obj) => Ok((202, obj)),
            Deletion::Missing => Err(not_found(r, &key.name)),
        }
    }

    /// DELETE on a collection: every selected object, as a list.
    pub(crate) fn delete_collection(
        &mut self,
        r: &Route,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        let keys: Vec<Key> = self
            .select(&r.rt.group, &r.rt.plural, r.namespace.as_deref(), labels, fields)
            .map(|(k, _)| k.clone())
            .collect();
        let mut deleted = Vec::new();
        for key in keys {
            match self.delete_key(&key) {
                Deletion::Removed(obj, uid) => {
                    self.collect_garbage(vec![(key, uid)]);
                    deleted.push(obj);
                }
                Deletion::Pending(obj) => deleted.push(obj),
                Deletion::Missing => {}
            }
        }
        deleted
    }

    /// Deletes `key` as the API does: objects with finalizers only get a
    /// `deletionTimestamp`.
    fn delete_key(&mut self, key: &Key) -> Deletion {
        let Some(stored) = self.objects.get(key).cloned() else { return Deletion::Missing };
        if finalizers(&stored.obj).is_empty() {
            let uid = meta_str(&stored.obj, "uid").unwrap_or_default().to_string();
            let obj = self.remove(key);
            return Deletion::Removed(obj.unwrap_or(stored.obj), uid);
        }
        if stored.obj.pointer("/metadata/deletionTimestamp").is_some() {
            return Deletion::Pending(stored.obj);
        }
        let mut obj = stored.obj.clone();
        set_meta(&mut obj, "deletionTimestamp", Value::String(now()));
        set_meta(&mut obj, "deletionGracePeriodSeconds", json!(0));
        Deletion::Pending(self.commit(key.clone(), obj, stored.managed))
    }

    /// Stores a new state of `key`: bumps the resourceVersion (and the
    /// generation when the spec or deletion changed), renders
    /// managedFields, emits the event, and removes the object when it is
    /// being deleted and has no finalizers left.
    fn commit(&mut self, key: Key, mut obj: Value, managed: Managed) -> Value {
        let old = self.objects.get(&key).map(|s| s.obj.clone());
        let generation = match &old {
            None => 1,
            Some(old) => {
                let old_gen = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
                let newly_deleting = old.pointer("/metadata/deletionTimestamp").is_none()
                    && obj.pointer("/metadata/deletionTimestamp").is_some();
                old_gen + i64::from(spec_of(old) != spec_of(&obj) || newly_deleting)
            }
        };
        set_meta(&mut obj, "generation", json!(generation));
        self.rv += 1;
        set_meta(&mut obj, "resourceVersion", Value::String(self.rv.to_string()));
        if managed.0.is_empty() {
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
        } else {
            set_meta(&mut obj, "managedFields", managed.render());
        }
        if key.group == "apiextensions.k8s.io"
            && key.plural == "customresourcedefinitions"
            && let Ok(crd) = serde_json::from_value(obj.clone())
        {
            self.registry.insert(crate::resources::from_crd(&crd));
        }
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
        if obj.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&obj).is_empty() {
            // The write emptied the finalizers of a deleting object: it is
            // deleted instead of updated, as a real server does.
            self.objects.remove(&key);
            self.emit(key.clone(), EventType::Deleted, obj.clone(), old);
            self.collect_garbage(vec![(key, uid)]);
            return obj;
        }
        let kind = if old.is_some() { EventType::Modified } else { EventType::Added };
        self.objects.insert(key.clone(), Stored { obj: obj.clone(), managed });
        self.emit(key, kind, obj.clone(), old);
        obj
    }

    /// Removes an object for good (emitting DELETED); not the collection
    /// of its dependents.
    fn remove(&mut self, key: &Key) -> Option<Value> {
        let stored = self.objects.remove(key)?;
        self.rv += 1;
        let mut obj = stored.obj;
        set_meta(&mut obj, "resourceVersion", Value::String(self.rv.to_string()));
        self.emit(key.clone(), EventType::Deleted, obj.clone(), None);
        Some(obj)
    }

    /// Background garbage collection: deletes every object whose owners
    /// are all gone, and the contents of removed namespaces, transitively.
    fn collect_garbage(&mut self, mut removed: Vec<(Key, String)>) {
        while let Some((gone, uid)) = removed.pop() {
            let live: HashSet<String> =
                self.objects.values().filter_map(|s| meta_str(&s.obj, "uid").map(str::to_string)).collect();
            let namespace_gone = gone.group.is_empty() && gone.plural == "namespaces";
            let dependents: Vec<Key> = self
                .objects
                .iter()
                .filter(|(k, s)| {
                    let owners = owner_uids(&s.obj);
                    (namespace_gone && k.namespace == gone.name)
                        || (owners.contains(&uid) && owners.iter().all(|o| !live.contains(o)))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in dependents {
                if let Deletion::Removed(_, uid) = self.delete_key(&key) {
                    removed.push((key, uid));
                }
            }
        }
    }

    /// `propagationPolicy: Orphan`: dependents lose their reference.
    fn orphan_dependents(&mut self, uid: &str) {
        let dependents: Vec<(Key, Stored)> = self
            .objects
            .iter()
            .filter(|(_, s)| owner_uids(&s.obj).iter().any(|o| o == uid))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        for (key, stored) in dependents {
            let mut obj = stored.obj.clone();
            if let Some(refs) = obj.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            }
            let mut managed = stored.managed.clone();
            managed.prune(&obj);
            self.commit(key, obj, managed);
        }
    }

    fn emit(&mut self, key: Key, kind: EventType, object: Value, old: Option<Value>) {
        let event = Arc::new(Event { rv: self.rv, key, kind, object, old });
        self.history.push_back(event.clone());
        while self.history.len() > HISTORY {
            if let Some(evicted) = self.history.pop_front() {
                self.compacted = evicted.rv;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = self.events.send(event);
    }
}

enum Deletion {
    Removed(Value, String),
    Pending(Value),
    Missing,
}

fn key(r: &Route) -> Result<Key, ApiError> {
    let name = r.name.clone().ok_or(ApiError::MethodNotAllowed)?;
    Ok(Key {
        group: r.rt.group.clone(),
        plural: r.rt.plural.clone(),
        namespace: r.namespace.clone().unwrap_or_default(),
        name,
    })
}

fn scope(r: &Route) -> Scope {
    if r.status { Scope::Status } else { Scope::Main { status_subresource: r.rt.status } }
}

pub(crate) fn not_found(r: &Route, name: &str) -> ApiError {
    ApiError::NotFound { resource: r.rt.group_resource(), group: r.rt.group.clone(), name: name.to_string() }
}

fn invalid(r: &Route, name: &str, message: &str) -> ApiError {
    ApiError::Invalid {
        kind: r.rt.kind.clone(),
        group: r.rt.group.clone(),
        name: name.to_string(),
        message: message.to_string(),
    }
}

fn expect_object(v: Value) -> Result<Value, ApiError> {
    if v.is_object() { Ok(v) } else { Err(ApiError::BadRequest("the request body must be a JSON object".into())) }
}

/// An apply body is YAML, of which JSON is a subset; try the strict JSON
/// parser first for its better messages.
fn parse_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("apply body is not UTF-8".into()))?;
    serde_saphyr::from_str::<Value>(text).map_err(|e| ApiError::BadRequest(format!("invalid apply body: {e}")))
}

/// `kind`/`apiVersion` in a body, when present, must name the route's type.
fn check_type(obj: &Value, r: &Route) -> Result<(), ApiError> {
    if let Some(kind) = obj.get("kind").and_then(Value::as_str).filter(|k| *k != r.rt.kind) {
        return Err(ApiError::BadRequest(format!("the kind {kind} does not match the expected kind {}", r.rt.kind)));
    }
    if let Some(api_version) = obj.get("apiVersion").and_then(Value::as_str) {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
        if group != r.rt.group {
            return Err(ApiError::BadRequest(format!(
                "the apiVersion {api_version} does not match the expected group {:?}",
                r.rt.group
            )));
        }
    }
    Ok(())
}

fn check_namespace(obj: &Value, r: &Route) -> Result<(), ApiError> {
    let body_ns = meta_str(obj, "namespace").filter(|ns| !ns.is_empty());
    match (body_ns, r.namespace.as_deref()) {
        (Some(b), Some(p)) if b != p => Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        )),
        // Cluster-scoped objects ignore a namespace, as the real server does.
        _ => Ok(()),
    }
}

fn check_name(obj: &Value, url_name: &str) -> Result<(), ApiError> {
    match meta_str(obj, "name") {
        Some(name) if name != url_name => Err(ApiError::BadRequest(format!(
            "the name of the object ({name}) does not match the name on the URL ({url_name})"
        ))),
        _ => Ok(()),
    }
}

fn check_resource_version(requested: &Value, current: &Value, r: &Route, name: &str) -> Result<(), ApiError> {
    let wanted = meta_str(requested, "resourceVersion").filter(|rv| !rv.is_empty());
    if wanted.is_some_and(|w| Some(w) != meta_str(current, "resourceVersion")) {
        return Err(ApiError::Conflict { resource: r.rt.plural.clone(), group: r.rt.group.clone(), name: name.into() });
    }
    Ok(())
}

/// A real server forbids adding finalizers to an object being deleted.
fn check_finalizers_while_deleting(old: &Value, new: &Value, r: &Route, name: &str) -> Result<(), ApiError> {
    if old.pointer("/metadata/deletionTimestamp").is_none() {
        return Ok(());
    }
    let before = finalizers(old);
    if finalizers(new).iter().any(|f| !before.contains(f)) {
        return Err(invalid(
            r,
            name,
            "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
        ));
    }
    Ok(())
}

/// Names are DNS subdomains (lowercase alphanumerics, `-`, `.`).
fn validate_name(r: &Route, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && name.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            r,
            name,
            &format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
            ),
        ))
    }
}

/// A new object as stored: identity filled, server metadata fresh, and no
/// status when status is a subresource.
fn prepare_new(mut obj: Value, r: &Route) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(r.api_version()));
        map.insert("kind".into(), Value::String(r.rt.kind.clone()));
        if r.rt.status {
            map.remove("status");
        }
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"]
        {
            meta.remove(field);
        }
    }
    match &r.namespace {
        Some(ns) if r.rt.namespaced => set_meta(&mut obj, "namespace", Value::String(ns.clone())),
        _ => {
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("namespace");
            }
        }
    }
    set_meta(&mut obj, "uid", Value::String(new_uid()));
    set_meta(&mut obj, "creationTimestamp", Value::String(now()));
    obj
}

/// The requested object reduced to what the write may change: a main
/// write keeps server metadata (and status when it is a subresource), a
/// status write keeps everything but `status`.
fn merge_scope(current: &Value, mut requested: Value, r: &Route) -> Value {
    if r.status {
        let mut obj = current.clone();
        if let Some(map) = obj.as_object_mut() {
            match requested.get_mut("status").map(Value::take) {
                Some(status) => map.insert("status".into(), status),
                None => map.remove("status"),
            };
        }
        return obj;
    }
    if let Some(map) = requested.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(r.api_version()));
        map.insert("kind".into(), Value::String(r.rt.kind.clone()));
        if r.rt.status {
            match current.get("status") {
                Some(status) => map.insert("status".into(), status.clone()),
                None => map.remove("status"),
            };
        }
    }
    for field in crate::fields::SERVER_METADATA {
        match current.pointer(&format!("/metadata/{field}")) {
            Some(v) => set_meta(&mut requested, field, v.clone()),
            None => {
                if let Some(meta) = requested.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove(*field);
                }
            }
        }
    }
    requested
}

/// The object without what every write changes by itself.
fn without_bookkeeping(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["resourceVersion", "managedFields", "generation"] {
            meta.remove(field);
        }
    }
    obj
}

/// Everything but `metadata` and `status`: what moves the generation.
fn spec_of(obj: &Value) -> Map<String, Value> {
    let mut map = obj.as_object().cloned().unwrap_or_default();
    for field in ["metadata", "status", "apiVersion", "kind"] {
        map.remove(field);
    }
    map
}

/// RFC 6902 as the real server (evanphx/json-patch) applies it: a `test`
/// for `null` passes on a missing path, which kube-runtime's finalizer
/// helper relies on when `metadata.finalizers` is absent.
fn apply_json_patch(doc: &mut Value, ops: &[json_patch::PatchOperation]) -> Result<(), ApiError> {
    for (i, op) in ops.iter().enumerate() {
        if let json_patch::PatchOperation::Test(test) = op
            && test.value.is_null()
            && doc.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(doc, std::slice::from_ref(op))
            .map_err(|e| ApiError::PatchFailed(format!("operation {i}: {e}")))?;
    }
    Ok(())
}

fn has_directive(v: &Value) -> bool {
    match v {
        Value::Object(map) => map.iter().any(|(k, v)| k.starts_with('$') || has_directive(v)),
        Value::Array(items) => items.iter().any(has_directive),
        _ => false,
    }
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn set_meta(obj: &mut Value, field: &str, value: Value) {
    crate::fields::set(obj, &["metadata".to_string(), field.to_string()], value);
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| refs.iter().filter_map(|r| r.get("uid")?.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// RFC 3339 in whole seconds, as `metav1.Time` serializes.
pub(crate) fn now() -> String {
    use k8s_openapi::jiff::Timestamp;
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to the clock, still unique enough
        // for one test process.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    bytes
}

/// A random version-4 UUID.
fn new_uid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Five characters, as the real server appends to `generateName`.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>().iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}
