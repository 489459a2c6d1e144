//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Each manager entry — (manager, operation, subresource) — owns a set of
//! leaf paths (see [`crate::fields`]). Updates (PUT and the non-apply
//! patches) take the fields they change from everyone and never conflict;
//! an apply conflicts on fields another manager owns with a different value
//! unless forced, and removes the fields its manager applied before but
//! omits now (when nobody else owns them).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, FieldConflict};
use crate::fields::{self, FieldPath, FieldSet, Scope};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Apply,
    Update,
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ManagedEntry {
    pub manager: String,
    pub operation: Operation,
    /// `Some("status")` for writes to the status subresource.
    pub subresource: Option<String>,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

/// All entries of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Managed(pub Vec<ManagedEntry>);

/// Who is writing and with which apiVersion, for a new entry.
#[derive(Debug, Clone)]
pub(crate) struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub scope: Scope,
    pub now: &'a str,
}

impl Writer<'_> {
    fn subresource(&self) -> Option<String> {
        (self.scope == Scope::Status).then(|| "status".to_string())
    }

    fn is_own(&self, entry: &ManagedEntry, operation: Operation) -> bool {
        entry.manager == self.manager && entry.operation == operation && entry.subresource == self.subresource()
    }
}

impl Managed {
    /// Same ownership, ignoring timestamps (a no-op write must not count
    /// as a change).
    pub(crate) fn same_sets(&self, other: &Managed) -> bool {
        let key = |m: &Managed| {
            m.0.iter()
                .map(|e| (e.manager.clone(), e.operation, e.subresource.clone(), e.fields.clone()))
                .collect::<Vec<_>>()
        };
        key(self) == key(other)
    }

    /// The entry of `writer` for `operation`, created if missing.
    fn entry(&mut self, writer: &Writer<'_>, operation: Operation) -> &mut ManagedEntry {
        let index = match self.0.iter().position(|e| writer.is_own(e, operation)) {
            Some(i) => i,
            None => {
                self.0.push(ManagedEntry {
                    manager: writer.manager.to_string(),
                    operation,
                    subresource: writer.subresource(),
                    api_version: writer.api_version.to_string(),
                    time: writer.now.to_string(),
                    fields: FieldSet::new(),
                });
                self.0.len() - 1
            }
        };
        &mut self.0[index]
    }

    /// Records an update from `old` to `new`: the changed fields move to
    /// (writer, Update).
    pub(crate) fn record_update(&mut self, writer: &Writer<'_>, old: &Value, new: &Value) {
        let before = fields::leaves(old, writer.scope);
        let changed: Vec<FieldPath> = fields::leaves(new, writer.scope)
            .into_iter()
            .filter(|(path, value)| before.get(path) != Some(value))
            .map(|(path, _)| path)
            .collect();
        if !changed.is_empty() {
            for entry in self.0.iter_mut().filter(|e| !writer.is_own(e, Operation::Update)) {
                let len = entry.fields.len();
                entry.fields.retain(|owned| !changed.iter().any(|c| fields::overlaps(owned, c)));
                if entry.fields.len() != len {
                    entry.time = writer.now.to_string();
                }
            }
            let own = self.entry(writer, Operation::Update);
            own.fields.extend(changed);
            own.time = writer.now.to_string();
            own.api_version = writer.api_version.to_string();
        }
        self.prune(new);
    }

    /// Drops owned paths that no longer exist in `obj`, and empty entries.
    pub(crate) fn prune(&mut self, obj: &Value) {
        for entry in &mut self.0 {
            entry.fields.retain(|path| fields::get(obj, path).is_some());
        }
        self.0.retain(|e| !e.fields.is_empty());
    }

    /// The `metadata.managedFields` list in FieldsV1 form.
    pub(crate) fn render(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|e| {
                    let mut entry = json!({
                        "manager": e.manager,
                        "operation": match e.operation { Operation::Apply => "Apply", Operation::Update => "Update" },
                        "apiVersion": e.api_version,
                        "time": e.time,
                        "fieldsType": "FieldsV1",
                        "fieldsV1": fields::to_fields_v1(&e.fields),
                    });
                    if let (Some(sub), Some(obj)) = (&e.subresource, entry.as_object_mut()) {
                        obj.insert("subresource".into(), Value::String(sub.clone()));
                    }
                    entry
                })
                .collect(),
        )
    }
}

/// What an object is named, for conflict errors.
pub(crate) struct Target<'a> {
    pub resource: &'a str,
    pub group: &'a str,
    pub name: &'a str,
}

/// Server-side apply of `config` by `writer` to `current` (an empty object
/// when creating). Returns the new object and ownership, or a 409 listing
/// the conflicting fields when not forced.
pub(crate) fn apply(
    current: &Value,
    managed: &Managed,
    config: &Value,
    writer: &Writer<'_>,
    force: bool,
    target: &Target<'_>,
) -> Result<(Value, Managed), ApiError> {
    // `null` in an applied config asks for the field to be absent; it is
    // not owned.
    let applied: BTreeMap<FieldPath, Value> =
        fields::leaves(config, writer.scope).into_iter().filter(|(_, v)| !v.is_null()).collect();

    let mut conflicts = Vec::new();
    for entry in managed.0.iter().filter(|e| e.manager != writer.manager) {
        for owned in &entry.fields {
            let differs = applied
                .iter()
                .any(|(path, value)| fields::overlaps(owned, path) && fields::get(current, path) != Some(value));
            if differs {
                conflicts.push(FieldConflict { manager: entry.manager.clone(), field: fields::display(owned) });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApiError::ApplyConflict {
            resource: target.resource.to_string(),
            group: target.group.to_string(),
            name: target.name.to_string(),
            conflicts,
        });
    }

    let mut managed = managed.clone();
    let previous =
        managed.0.iter().find(|e| writer.is_own(e, Operation::Apply)).map(|e| e.fields.clone()).unwrap_or_default();
    let mut obj = current.clone();
    // Fields this manager applied before and omits now go, unless another
    // entry still owns them or the new config nests under/over them.
    for path in previous.iter().filter(|p| !applied.keys().any(|a| fields::overlaps(a, p))) {
        let owned_elsewhere = managed.0.iter().any(|e| !writer.is_own(e, Operation::Apply) && e.fields.contains(path));
        if !owned_elsewhere {
            fields::remove(&mut obj, path);
        }
    }
    merge_config(&mut obj, config, writer.scope, &mut Vec::new());

    if force {
        for entry in managed.0.iter_mut().filter(|e| e.manager != writer.manager) {
            let len = entry.fields.len();
            entry.fields.retain(|owned| !applied.keys().any(|a| fields::overlaps(owned, a)));
            if entry.fields.len() != len {
                entry.time = writer.now.to_string();
            }
        }
    }
    let new_set: FieldSet = applied.into_keys().collect();
    let own = managed.entry(writer, Operation::Apply);
    if own.fields != new_set {
        own.fields = new_set;
        own.time = writer.now.to_string();
    }
    own.api_version = writer.api_version.to_string();
    managed.prune(&obj);
    Ok((obj, managed))
}

/// Writes every tracked field of the applied `config` into `obj`; maps
/// merge key by key, anything else replaces, `null` removes.
fn merge_config(obj: &mut Value, config: &Value, scope: Scope, path: &mut FieldPath) {
    let Some(config) = config.as_object() else { return };
    for (key, value) in config {
        path.push(key.clone());
        match value {
            Value::Object(_) => {
                // Only descend where something may be tracked (`metadata`
                // itself is not, its labels are).
                let metadata = path.len() == 1 && path[0] == "metadata" && scope != Scope::Status;
                if scope.tracks(path) || metadata {
                    if !fields::get(obj, path).is_some_and(Value::is_object) {
                        fields::set(obj, path, Value::Object(Map::new()));
                    }
                    merge_config(obj, value, scope, path);
                }
            }
            Value::Null if scope.tracks(path) => fields::remove(obj, path),
            leaf if scope.tracks(path) => fields::set(obj, path, leaf.clone()),
            _ => {}
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: Scope = Scope::Main { status_subresource: true };

    fn writer(manager: &str) -> Writer<'_> {
        Writer { manager, api_version: "v1", scope: MAIN, now: "2025-01-01T00:00:00Z" }
    }

    fn target() -> Target<'static> {
        Target { resource: "things", group: "", name: "x" }
    }

    #[test]
    fn conflicts_name_the_field_and_manager_and_force_moves_ownership() {
        let (obj, managed) =
            apply(&json!({}), &Managed::default(), &json!({"spec": {"a": 1, "b": 2}}), &writer("m1"), false, &target())
                .expect("first apply");
        // Same value: shared, no conflict.
        let (obj, managed) =
            apply(&obj, &managed, &json!({"spec": {"a": 1}}), &writer("m2"), false, &target()).expect("shared");
        let err =
            apply(&obj, &managed, &json!({"spec": {"b": 3}}), &writer("m2"), false, &target()).expect_err("conflict");
        assert_eq!(err.code(), 409);
        assert!(err.to_string().contains("\"m1\": .spec.b"), "{err}");
        let (obj, managed) =
            apply(&obj, &managed, &json!({"spec": {"b": 3}}), &writer("m2"), true, &target()).expect("forced");
        assert_eq!(obj, json!({"spec": {"a": 1, "b": 3}}));
        let m1 = managed.0.iter().find(|e| e.manager == "m1").expect("m1 keeps a");
        assert_eq!(m1.fields, [vec!["spec".to_string(), "a".to_string()]].into());
    }

    #[test]
    fn omitted_fields_are_removed_unless_shared() {
        let (obj, managed) =
            apply(&json!({}), &Managed::default(), &json!({"spec": {"a": 1, "b": 2}}), &writer("m1"), false, &target())
                .expect("apply");
        let (obj, managed) =
            apply(&obj, &managed, &json!({"spec": {"b": 2}}), &writer("m2"), false, &target()).expect("share b");
        let (obj, _) = apply(&obj, &managed, &json!({"spec": {}}), &writer("m1"), false, &target()).expect("omit");
        assert_eq!(obj, json!({"spec": {"b": 2}}));
    }

    #[test]
    fn updates_take_changed_fields() {
        let (obj, mut managed) =
            apply(&json!({}), &Managed::default(), &json!({"spec": {"a": 1, "b": 2}}), &writer("m1"), false, &target())
                .expect("apply");
        let new = json!({"spec": {"a": 5, "b": 2}});
        managed.record_update(&writer("kubectl"), &obj, &new);
        let err = apply(&new, &managed, &json!({"spec": {"a": 1, "b": 2}}), &writer("m1"), false, &target())
            .expect_err("drift conflicts");
        assert!(err.to_string().contains("kubectl"), "{err}");
    }
}
