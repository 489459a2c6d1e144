//! Resource URL paths: `/api/v1/...` (core) and `/apis/{group}/{version}/...`,
//! namespaced as `namespaces/{ns}/{plural}[/{name}[/status]]`, cluster-wide
//! or cluster-scoped as `{plural}[/{name}[/status]]`.

use crate::error::ApiError;
use crate::resources::{Registry, ResourceType};

/// A request's target.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub rt: ResourceType,
    pub version: String,
    /// `None` for cluster-scoped types and cluster-wide lists/watches.
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Only `status`, and only where the type has that subresource.
    pub status: bool,
}

impl Route {
    pub(crate) fn parse(path: &str, registry: &Registry) -> Result<Route, ApiError> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest) = match segs.as_slice() {
            ["api", "v1", rest @ ..] => ("", "v1", rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return Err(ApiError::NoRoute),
        };
        let (rt, namespace, tail) = match rest {
            ["namespaces", ns, plural, tail @ ..]
                if registry.lookup(group, version, plural).is_some_and(|rt| rt.namespaced) =>
            {
                (registry.lookup(group, version, plural), Some(ns.to_string()), tail)
            }
            [plural, tail @ ..] => match registry.lookup(group, version, plural) {
                // A namespaced type is reachable without a namespace only
                // as a cluster-wide collection.
                Some(rt) if rt.namespaced && !tail.is_empty() => return Err(ApiError::NoRoute),
                found => (found, None, tail),
            },
            [] => return Err(ApiError::NoRoute),
        };
        let rt = rt.ok_or(ApiError::NoRoute)?.clone();
        let (name, status) = match tail {
            [] => (None, false),
            [name] => (Some(name.to_string()), false),
            [name, "status"] if rt.status => (Some(name.to_string()), true),
            _ => return Err(ApiError::NoRoute),
        };
        Ok(Route { rt, version: version.to_string(), namespace, name, status })
    }

    pub(crate) fn api_version(&self) -> String {
        self.rt.api_version(&self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Result<Route, ApiError> {
        Route::parse(path, &Registry::builtin())
    }

    #[test]
    fn namespaced_cluster_wide_and_subresources() {
        let r = parse("/api/v1/namespaces/ns/pods/p/status").expect("pod status");
        assert_eq!(
            (r.rt.plural.as_str(), r.namespace.as_deref(), r.name.as_deref(), r.status),
            ("pods", Some("ns"), Some("p"), true)
        );
        let r = parse("/apis/apps/v1/statefulsets").expect("cluster-wide list");
        assert!(r.namespace.is_none() && r.name.is_none());
        let r = parse("/api/v1/namespaces/ns").expect("a namespace");
        assert_eq!((r.rt.plural.as_str(), r.name.as_deref()), ("namespaces", Some("ns")));
        let r = parse("/api/v1/namespaces/ns/status").expect("namespace status");
        assert!(r.status);
        for bad in ["/api/v1/pods/p", "/api/v1/namespaces/ns/configmaps/c/status", "/apis/x.io/v1/things", "/healthz"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
