//! The chart, rendered (tests/support/chart.rs): its RBAC grants the
//! operator nothing it never calls (every request it does make is checked
//! against the same rules by the controller tests,
//! `support::assert_chart_rbac_allows`), and its values schema takes image
//! tags as strings only (a YAML number `1.20` would render as `:1.2`;
//! `.ci/chart-checks` has Helm itself refuse one).

mod support;

use support::chart_rbac_grants;

#[test]
fn the_chart_rbac_grants_no_verb_the_operator_never_uses() {
    let unused = [
        ("update", "cohort.dev", "mpcclusters"),
        ("update", "cohort.dev", "mpcjobs"),
        ("update", "cohort.dev", "mpcjobs/status"),
        ("update", "apps", "statefulsets"),
        ("update", "", "secrets"),
        ("update", "", "configmaps"),
        ("update", "", "services"),
        ("patch", "cohort.dev", "mpcclusters"),
        ("patch", "cohort.dev", "preprocessingpools"),
        ("get", "cohort.dev", "mpcclusters/status"),
        ("create", "", "events"),
        ("patch", "", "events"),
        ("get", "policy", "poddisruptionbudgets"),
        ("list", "policy", "poddisruptionbudgets"),
        ("watch", "policy", "poddisruptionbudgets"),
        ("delete", "policy", "poddisruptionbudgets"),
        ("list", "networking.k8s.io", "networkpolicies"),
        ("watch", "networking.k8s.io", "networkpolicies"),
        ("delete", "", "configmaps"),
    ];
    let granted: Vec<_> = unused.iter().filter(|(v, g, r)| chart_rbac_grants(v, g, r)).collect();
    assert!(granted.is_empty(), "the chart grants what the operator never calls: {granted:?}");
    // And still what it does call.
    for (v, g, r) in [
        ("patch", "cohort.dev", "mpcclusters/status"),
        ("watch", "", "secrets"),
        ("create", "events.k8s.io", "events"),
        ("patch", "policy", "poddisruptionbudgets"),
    ] {
        assert!(chart_rbac_grants(v, g, r), "{v} {g}/{r}");
    }
}

#[test]
fn image_tags_are_strings_in_the_values_schema() {
    let path = cohort_e2e::repo_root().join("charts/cohort/values.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the schema")).expect("JSON");
    let mut tags = Vec::new();
    fn find<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(tag) = m.get("properties").and_then(|p| p.get("tag")) {
                    out.push(tag);
                }
                m.values().for_each(|v| find(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| find(v, out)),
            _ => {}
        }
    }
    find(&schema, &mut tags);
    assert_eq!(tags.len(), 2, "the operator's and the worker's image tags");
    for tag in tags {
        assert_eq!(tag["type"], "string", "{tag}");
    }
}

#[test]
fn the_values_schema_knows_every_protocol_and_that_replicated_3_takes_three_parties_and_no_dealer() {
    let path = cohort_e2e::repo_root().join("charts/cohort/values.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the schema")).expect("JSON");
    let spec = &schema["properties"]["mpcCluster"]["properties"]["spec"];
    let names: Vec<&str> = spec["properties"]["protocol"]["properties"]["name"]["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let crd: Vec<&str> = cohort_crds::cluster::ProtocolName::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(names, crd, "the chart's values accept the CRD's protocols");
    // The CRD's CEL rule, for values checked before anything is applied.
    assert_eq!(spec["if"]["properties"]["protocol"]["properties"]["name"]["const"], "replicated-3");
    let parties = &spec["then"]["properties"]["parties"];
    assert_eq!((parties["minItems"].as_u64(), parties["maxItems"].as_u64()), (Some(3), Some(3)));
    // And the one refusing a dealer with replicated-3 (it takes no material).
    assert_eq!(spec["then"]["properties"]["dealer"]["not"], serde_json::json!({}), "{}", spec["then"]);
}
