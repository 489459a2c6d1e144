//! Field paths over JSON objects: map keys are path segments; everything
//! that is not a map (scalars, `null`, lists) is a leaf. Lists are atomic,
//! as `x-kubernetes-list-type: atomic` would make them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// A path of map keys from the object root, e.g. `["spec", "replicas"]`.
pub(crate) type FieldPath = Vec<String>;
/// A set of leaf paths.
pub(crate) type FieldSet = BTreeSet<FieldPath>;

/// Which part of an object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The main resource; `status` is out of scope when it is a subresource.
    Main { status_subresource: bool },
    /// The `/status` subresource: only `status`.
    Status,
}

impl Scope {
    /// Whether a leaf at `path` is owned and compared at all. Server-managed
    /// metadata and the type identity are never tracked.
    pub(crate) fn tracks(self, path: &[String]) -> bool {
        let first = path.first().map(String::as_str);
        match (self, first) {
            (Scope::Status, first) => first == Some("status"),
            (_, Some("apiVersion" | "kind")) | (_, None) => false,
            (Scope::Main { status_subresource: true }, Some("status")) => false,
            (_, Some("metadata")) => match path.get(1).map(String::as_str) {
                None => false,
                Some(field) => !SERVER_METADATA.contains(&field),
            },
            _ => true,
        }
    }
}

/// `metadata` fields the server sets; clients cannot own them.
pub(crate) const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The tracked leaves of `value` with their values.
pub(crate) fn leaves(value: &Value, scope: Scope) -> BTreeMap<FieldPath, Value> {
    fn walk(value: &Value, path: &mut FieldPath, scope: Scope, out: &mut BTreeMap<FieldPath, Value>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    path.push(k.clone());
                    walk(v, path, scope, out);
                    path.pop();
                }
            }
            leaf => {
                if scope.tracks(path) {
                    out.insert(path.clone(), leaf.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(value, &mut Vec::new(), scope, &mut out);
    out
}

/// One path is a prefix of the other (they name the same or nested fields).
pub(crate) fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

pub(crate) fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, seg| v.as_object()?.get(seg))
}

/// Sets `path` to `leaf`, creating (or replacing non-map) parents.
pub(crate) fn set(value: &mut Value, path: &[String], leaf: Value) {
    let Some((last, parents)) = path.split_last() else {
        *value = leaf;
        return;
    };
    let mut current = value;
    for seg in parents {
        current = object_mut(current).entry(seg.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
    object_mut(current).insert(last.clone(), leaf);
}

fn object_mut(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}

/// Removes `path`, then any map left empty by it below the top level
/// (`spec` itself stays, so typed clients still find it).
pub(crate) fn remove(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let Some(parent) = get_mut(value, parents).and_then(Value::as_object_mut) else { return };
    parent.remove(last);
    for depth in (2..path.len()).rev() {
        let empty = get(value, &path[..depth]).and_then(Value::as_object).is_some_and(Map::is_empty);
        if !empty {
            break;
        }
        if let Some(parent) = get_mut(value, &path[..depth - 1]).and_then(Value::as_object_mut) {
            parent.remove(&path[depth - 1]);
        }
    }
}

fn get_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, seg| v.as_object_mut()?.get_mut(seg))
}

/// The `.spec.replicas` spelling used in conflict messages.
pub(crate) fn display(path: &[String]) -> String {
    path.iter().map(|s| format!(".{s}")).collect()
}

/// The FieldsV1 tree of a field set: `{"f:spec":{"f:replicas":{}}}`.
pub(crate) fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in set {
        let keyed: Vec<String> = path.iter().map(|s| format!("f:{s}")).collect();
        let mut current = &mut root;
        for seg in keyed {
            current = object_mut(current).entry(seg).or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> FieldPath {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn leaves_skip_server_metadata_and_status_when_a_subresource() {
        let obj = json!({
            "apiVersion": "v1", "kind": "X",
            "metadata": {"name": "a", "labels": {"x": "1"}, "resourceVersion": "3"},
            "spec": {"list": [1, 2], "m": {"k": null}},
            "status": {"ok": true},
        });
        let main: Vec<FieldPath> = leaves(&obj, Scope::Main { status_subresource: true }).into_keys().collect();
        assert_eq!(main, vec![p("metadata.labels.x"), p("spec.list"), p("spec.m.k")]);
        let status: Vec<FieldPath> = leaves(&obj, Scope::Status).into_keys().collect();
        assert_eq!(status, vec![p("status.ok")]);
    }

    #[test]
    fn set_and_remove_prune_empty_maps_below_top_level() {
        let mut obj = json!({"spec": {"a": {"b": 1}}});
        set(&mut obj, &p("spec.c.d"), json!(2));
        remove(&mut obj, &p("spec.a.b"));
        assert_eq!(obj, json!({"spec": {"c": {"d": 2}}}));
        remove(&mut obj, &p("spec.c.d"));
        assert_eq!(obj, json!({"spec": {}}));
        assert_eq!(
            to_fields_v1(&[p("spec.x"), p("spec.y.z")].into()),
            json!({"f:spec": {"f:x": {}, "f:y": {"f:z": {}}}})
        );
    }
}
