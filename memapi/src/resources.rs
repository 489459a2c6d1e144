//! The resource types the server knows: the built-in kinds the operator
//! uses and the CustomResourceDefinitions registered at run time.

use std::collections::HashMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// One resource type, as discovery would describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceType {
    /// Empty for the core group.
    pub group: String,
    pub versions: Vec<String>,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    /// Whether `status` is a subresource (writes to the main resource keep it).
    pub status: bool,
}

impl ResourceType {
    pub(crate) fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() { version.to_string() } else { format!("{}/{version}", self.group) }
    }

    /// `plural.group`, as the real server names a resource in messages.
    pub(crate) fn group_resource(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }
}

/// All known resource types, by (group, plural).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    types: HashMap<(String, String), ResourceType>,
}

impl Registry {
    pub(crate) fn builtin() -> Registry {
        // (group, version, plural, kind, namespaced, status subresource)
        const BUILTIN: &[(&str, &str, &str, &str, bool, bool)] = &[
            ("", "v1", "namespaces", "Namespace", false, true),
            ("", "v1", "secrets", "Secret", true, false),
            ("", "v1", "configmaps", "ConfigMap", true, false),
            ("", "v1", "services", "Service", true, true),
            ("", "v1", "pods", "Pod", true, true),
            ("", "v1", "events", "Event", true, false),
            ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true, true),
            ("", "v1", "serviceaccounts", "ServiceAccount", true, false),
            ("apps", "v1", "statefulsets", "StatefulSet", true, true),
            ("apps", "v1", "deployments", "Deployment", true, true),
            ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, true),
            ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true, false),
            ("coordination.k8s.io", "v1", "leases", "Lease", true, false),
            ("events.k8s.io", "v1", "events", "Event", true, false),
            ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, true),
        ];
        let mut registry = Registry::default();
        for &(group, version, plural, kind, namespaced, status) in BUILTIN {
            registry.insert(ResourceType {
                group: group.into(),
                versions: vec![version.into()],
                plural: plural.into(),
                kind: kind.into(),
                namespaced,
                status,
            });
        }
        registry
    }

    pub(crate) fn insert(&mut self, rt: ResourceType) {
        self.types.insert((rt.group.clone(), rt.plural.clone()), rt);
    }

    /// The type served at `/{prefix}/{group}/{version}/.../{plural}`.
    pub(crate) fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types.get(&(group.to_string(), plural.to_string())).filter(|rt| rt.versions.iter().any(|v| v == version))
    }
}

/// The resource type a CustomResourceDefinition declares.
pub(crate) fn from_crd(crd: &CustomResourceDefinition) -> ResourceType {
    let spec = &crd.spec;
    ResourceType {
        group: spec.group.clone(),
        versions: spec.versions.iter().map(|v| v.name.clone()).collect(),
        plural: spec.names.plural.clone(),
        kind: spec.names.kind.clone(),
        namespaced: spec.scope == "Namespaced",
        status: spec.versions.iter().any(|v| v.subresources.as_ref().is_some_and(|s| s.status.is_some())),
    }
}
