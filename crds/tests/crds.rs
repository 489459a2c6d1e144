//! The generated CRDs: committed copies are current, schemas are
//! structural, list-maps and CEL rules are where the docs promise, and the
//! rules accept the examples and reject the mistakes they are for.

use std::path::{Path, PathBuf};

use cohort_crds::{crds, crds_yaml};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{Validator, compile_schema, estimate_rule_cost};
use serde_json::{Value, json};

const REFRESH: &str = "COHORT_UPDATE_CRDS=1 cargo test -p cohort-crds";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn committed_paths() -> [PathBuf; 2] {
    [repo_root().join("crds/crds.yaml"), repo_root().join("charts/cohort/files/crds.yaml")]
}

/// `(kind, openAPIV3Schema as JSON)` for every CRD.
fn schemas() -> Vec<(String, Value)> {
    crds()
        .into_iter()
        .map(|crd| {
            let kind = crd.spec.names.kind.clone();
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .map(|s| serde_json::to_value(s).expect("schema serializes"))
                .expect("every CRD has an openAPIV3Schema");
            (kind, schema)
        })
        .collect()
}

fn schema_of(kind: &str) -> Value {
    schemas().into_iter().find(|(k, _)| k == kind).map(|(_, s)| s).expect("known kind")
}

#[test]
fn committed_crd_yaml_is_current() {
    let generated = crds_yaml().expect("CRDs serialize to YAML");
    let update = std::env::var_os("COHORT_UPDATE_CRDS").is_some();
    let mut stale = Vec::new();
    for path in committed_paths() {
        if update {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).expect("create the directory");
            }
            std::fs::write(&path, &generated).expect("write the CRD YAML");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == generated => {}
            Ok(_) => stale.push(format!("{} differs from the types", path.display())),
            Err(e) => stale.push(format!("{} cannot be read: {e}", path.display())),
        }
    }
    assert!(stale.is_empty(), "the committed CRDs are stale:\n  {}\nrefresh them with `{REFRESH}`", stale.join("\n  "));
}

#[test]
fn committed_yaml_reads_back_as_the_same_crds() {
    let yaml = crds_yaml().expect("CRDs serialize to YAML");
    let parsed: Vec<CustomResourceDefinition> = serde_saphyr::from_multiple(&yaml).expect("the YAML parses");
    assert_eq!(parsed, crds());
}

#[test]
fn names_short_names_scope_and_subresources() {
    let expected = [
        ("MpcCluster", "mpcclusters", "mpcc"),
        ("PreprocessingPool", "preprocessingpools", "mpcpool"),
        ("MpcJob", "mpcjobs", "mpcjob"),
    ];
    let all = crds();
    assert_eq!(all.len(), 3);
    for (crd, (kind, plural, short)) in all.iter().zip(expected) {
        assert_eq!(crd.spec.group, "cohort.dev");
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(crd.spec.names.plural, plural);
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&[short.to_string()][..]));
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["cohort".to_string()][..]));
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.versions.len(), 1);
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.served && v.storage);
        assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{kind} has a status subresource");
    }
}

#[test]
fn printer_columns_are_the_promised_ones() {
    let expected: [(&str, &[&str]); 3] = [
        ("MpcCluster", &["Party", "Shards", "Protocol", "Ready", "Reason", "Federation", "Age"]),
        ("PreprocessingPool", &["Cluster", "Mode", "Available", "Ready", "Reason", "Age"]),
        ("MpcJob", &["Cluster", "Phase", "Rounds", "Reason", "Job ID", "Age"]),
    ];
    for (crd, (kind, names)) in crds().iter().zip(expected) {
        assert_eq!(crd.spec.names.kind, kind);
        let columns = crd.spec.versions[0].additional_printer_columns.as_deref().unwrap_or_default();
        let got: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(got, names, "{kind}");
        for c in columns {
            assert!(c.json_path.starts_with('.'), "{kind} column {}: {}", c.name, c.json_path);
            assert!(["string", "integer", "number", "boolean", "date"].contains(&c.type_.as_str()));
            // Every column other than Age reads a field that exists in the schema.
            if c.name != "Age" {
                assert!(path_exists(&schema_of(kind), &c.json_path), "{kind} column {} reads {}", c.name, c.json_path);
            }
        }
    }
}

/// Whether a printer-column path names a field of the schema (filters and
/// map keys are accepted where the schema allows them).
fn path_exists(schema: &Value, json_path: &str) -> bool {
    let mut node = schema;
    let mut rest = json_path.trim_start_matches('.');
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let field = &rest[..end];
        rest = &rest[end..];
        node = match (node.pointer(&format!("/properties/{field}")), node.get("additionalProperties")) {
            (Some(n), _) => n,
            (None, Some(n)) => n,
            (None, None) => return false,
        };
        if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = after.find(']') else { return false };
            rest = &after[close + 1..];
            node = match node.get("items") {
                Some(n) => n,
                None => return false,
            };
        }
        rest = rest.trim_start_matches('.');
    }
    true
}

// ---- structural schemas ----------------------------------------------------

const ALLOWED_X_KUBERNETES: &[&str] = &[
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-preserve-unknown-fields",
];

const ALLOWED_KEYS: &[&str] = &[
    "type",
    "format",
    "description",
    "properties",
    "additionalProperties",
    "items",
    "required",
    "enum",
    "default",
    "nullable",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "title",
    "anyOf",
    "allOf",
    "oneOf",
    "not",
];

/// Keys a schema inside `anyOf`/`allOf`/`oneOf`/`not` must not set
/// (structural rule 3: only value validations there).
const FORBIDDEN_IN_JUNCTORS: &[&str] = &[
    "type",
    "description",
    "default",
    "additionalProperties",
    "nullable",
    "title",
    "x-kubernetes-preserve-unknown-fields",
];

fn structural_errors(node: &Value, path: &str, in_junctor: bool, errors: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        errors.push(format!("{path}: a schema must be an object"));
        return;
    };
    for key in obj.keys() {
        if key.starts_with("x-kubernetes-") {
            if !ALLOWED_X_KUBERNETES.contains(&key.as_str()) {
                errors.push(format!("{path}: {key} is not an allowed extension"));
            }
        } else if key.starts_with('$') || key == "definitions" || key == "$defs" {
            errors.push(format!("{path}: {key} is not allowed (references are not structural)"));
        } else if !ALLOWED_KEYS.contains(&key.as_str()) {
            errors.push(format!("{path}: unexpected key {key}"));
        }
        if in_junctor && FORBIDDEN_IN_JUNCTORS.contains(&key.as_str()) {
            errors.push(format!("{path}: {key} inside anyOf/allOf/oneOf/not"));
        }
    }
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !in_junctor && !int_or_string && !preserve {
        match obj.get("type").and_then(Value::as_str) {
            Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
            other => errors.push(format!("{path}: type must be one of the JSON types, found {other:?}")),
        }
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        errors.push(format!("{path}: properties and additionalProperties are mutually exclusive"));
    }
    let ty = obj.get("type").and_then(Value::as_str);
    if obj.contains_key("items") && ty != Some("array") {
        errors.push(format!("{path}: items on a non-array"));
    }
    if ty == Some("array") && !obj.contains_key("items") {
        errors.push(format!("{path}: an array without items"));
    }
    if (obj.contains_key("properties") || obj.contains_key("additionalProperties")) && ty != Some("object") {
        errors.push(format!("{path}: properties on a non-object"));
    }
    if let Some(list_type) = obj.get("x-kubernetes-list-type") {
        if ty != Some("array") {
            errors.push(format!("{path}: x-kubernetes-list-type on a non-array"));
        }
        if list_type == "map" {
            let keys: Vec<&str> = obj
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|ks| ks.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if keys.is_empty() {
                errors.push(format!("{path}: a map list needs x-kubernetes-list-map-keys"));
            }
            let item = obj.get("items").cloned().unwrap_or(Value::Null);
            for k in keys {
                let required = item.get("required").and_then(Value::as_array).is_some_and(|r| r.iter().any(|x| x == k));
                let defaulted = item.pointer(&format!("/properties/{k}/default")).is_some();
                if !(required || defaulted) {
                    errors.push(format!("{path}: map key {k} must be required or defaulted in the items"));
                }
            }
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            structural_errors(sub, &format!("{path}.{name}"), in_junctor, errors);
        }
    }
    if let Some(sub) = obj.get("additionalProperties") {
        if sub.is_boolean() {
            errors.push(format!("{path}: additionalProperties must be a schema"));
        } else {
            structural_errors(sub, &format!("{path}[*]"), in_junctor, errors);
        }
    }
    if let Some(sub) = obj.get("items") {
        structural_errors(sub, &format!("{path}[]"), in_junctor, errors);
    }
    for junctor in ["anyOf", "allOf", "oneOf"] {
        if let Some(list) = obj.get(junctor).and_then(Value::as_array) {
            for (i, sub) in list.iter().enumerate() {
                structural_errors(sub, &format!("{path}.{junctor}[{i}]"), true, errors);
            }
        }
    }
    if let Some(sub) = obj.get("not") {
        structural_errors(sub, &format!("{path}.not"), true, errors);
    }
}

#[test]
fn schemas_are_structural() {
    for (kind, schema) in schemas() {
        let mut errors = Vec::new();
        structural_errors(&schema, &kind, false, &mut errors);
        assert!(errors.is_empty(), "{kind} is not structural:\n  {}", errors.join("\n  "));
        let text = schema.to_string();
        assert!(!text.contains("\"$ref\""), "{kind} has a $ref");
        // The root may only describe apiVersion, kind, metadata, spec, status.
        let root: Vec<&String> = schema["properties"].as_object().map(|p| p.keys().collect()).unwrap_or_default();
        for key in root {
            assert!(["apiVersion", "kind", "metadata", "spec", "status"].contains(&key.as_str()), "{kind}: {key}");
        }
        // metadata, if described at all, is an unrestricted object (the API
        // server owns its schema).
        if let Some(meta) = schema.pointer("/properties/metadata") {
            assert_eq!(meta.get("type"), Some(&json!("object")), "{kind}");
            assert!(meta.get("properties").is_none(), "{kind}: metadata must not be restricted");
        }
    }
}

#[test]
fn the_structural_check_catches_what_it_should() {
    let bad = json!({
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "ref": {"$ref": "#/definitions/x"},
            "ext": {"type": "string", "x-kubernetes-made-up": true},
            "junctor": {"type": "string", "anyOf": [{"type": "string"}]},
            "list": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                     "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"]},
            "ios": {"x-kubernetes-int-or-string": true}
        }
    });
    let mut errors = Vec::new();
    structural_errors(&bad, "bad", false, &mut errors);
    let joined = errors.join("\n");
    assert!(joined.contains("bad.untyped: type must be"), "{joined}");
    assert!(joined.contains("bad.ref: $ref"), "{joined}");
    assert!(joined.contains("x-kubernetes-made-up"), "{joined}");
    assert!(joined.contains("bad.junctor.anyOf[0]: type inside"), "{joined}");
    assert!(joined.contains("map key k must be required"), "{joined}");
    assert!(!joined.contains("bad.ios"), "int-or-string needs no type: {joined}");
}

fn assert_map_list(schema: &Value, pointer: &str, key: &str) {
    let node = schema.pointer(pointer).unwrap_or_else(|| panic!("{pointer} exists"));
    assert_eq!(node["type"], "array", "{pointer}");
    assert_eq!(node["x-kubernetes-list-type"], "map", "{pointer}");
    assert_eq!(node["x-kubernetes-list-map-keys"], json!([key]), "{pointer}");
}

#[test]
fn conditions_and_keyed_lists_are_list_maps() {
    for (kind, schema) in schemas() {
        assert_map_list(&schema, "/properties/status/properties/conditions", "type");
        let item = &schema["properties"]["status"]["properties"]["conditions"]["items"];
        for field in ["type", "status", "reason", "message", "lastTransitionTime"] {
            assert!(item["required"].as_array().is_some_and(|r| r.contains(&json!(field))), "{kind}: {field}");
        }
    }
    assert_map_list(&schema_of("MpcCluster"), "/properties/spec/properties/parties", "name");
    assert_map_list(&schema_of("MpcCluster"), "/properties/status/properties/peers", "name");
    assert_map_list(&schema_of("PreprocessingPool"), "/properties/spec/properties/material", "kind");
}

// ---- CEL rules ---------------------------------------------------------------

fn rules_at(schema: &Value, pointer: &str) -> Vec<String> {
    schema
        .pointer(pointer)
        .and_then(|n| n.get("x-kubernetes-validations"))
        .and_then(Value::as_array)
        .map(|rs| rs.iter().filter_map(|r| r["rule"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[test]
fn cel_rules_are_where_promised() {
    let promised: &[(&str, &str, &str)] = &[
        ("MpcCluster", "/properties/spec", "self.parties.exists(p, p.name == self.self)"),
        ("MpcCluster", "/properties/spec", "self.parties.all(p, p.name == self.self || has(p.trust))"),
        ("MpcCluster", "/properties/spec", "self.parties.all(p, p.name != self.self || !has(p.trust))"),
        ("MpcCluster", "/properties/spec/properties/self", "self == oldSelf"),
        ("MpcCluster", "/properties/spec/properties/federation", "self == oldSelf"),
        ("MpcCluster", "/properties/spec/properties/tls", "duration(self.renewBefore) < duration(self.certLifetime)"),
        ("MpcCluster", "/properties/spec/properties/network/properties/peerCidrs", "self.all(c, isCIDR(c))"),
        ("MpcCluster", "", "size(self.metadata.name) <= 52"),
        ("MpcCluster", "/properties/spec", cohort_crds::cluster::REPLICATED_3_PARTIES_RULE),
        ("MpcCluster", "/properties/spec", cohort_crds::cluster::REPLICATED_3_NO_DEALER_RULE),
        ("PreprocessingPool", "", "size(self.metadata.name) <= 45"),
        ("PreprocessingPool", "/properties/spec/properties/clusterRef", "self == oldSelf"),
        ("PreprocessingPool", "/properties/spec/properties/material/items", "self.lowWatermark <= self.target"),
        ("PreprocessingPool", "/properties/spec/properties/generator", "self.mode != 'dealer' || has(self.dealer)"),
        ("MpcJob", "/properties/spec", "self == oldSelf"),
        (
            "MpcJob",
            "/properties/spec/properties/inputs/additionalProperties",
            "has(self.secretKeyRef) != has(self.configMapKeyRef)",
        ),
    ];
    for (kind, pointer, rule) in promised {
        let rules = rules_at(&schema_of(kind), pointer);
        assert!(rules.iter().any(|r| r == rule), "{kind} {pointer} lacks `{rule}`; it has {rules:?}");
    }
    // Every rule carries a message a person can act on.
    for (kind, schema) in schemas() {
        let mut missing = Vec::new();
        each_rule(&schema, "", &mut |path, rule| {
            if rule.get("message").and_then(Value::as_str).is_none_or(str::is_empty) {
                missing.push(format!("{path}: {}", rule["rule"]));
            }
        });
        assert!(missing.is_empty(), "{kind}: rules without a message: {missing:?}");
    }
}

fn each_rule(node: &Value, path: &str, f: &mut dyn FnMut(&str, &Value)) {
    if let Some(rules) = node.get("x-kubernetes-validations").and_then(Value::as_array) {
        for r in rules {
            f(path, r);
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            each_rule(v, &format!("{path}.{k}"), f);
        }
    }
    if let Some(v) = node.get("items") {
        each_rule(v, &format!("{path}[]"), f);
    }
    if let Some(v) = node.get("additionalProperties") {
        each_rule(v, &format!("{path}[*]"), f);
    }
}

#[test]
fn cel_rules_compile_and_fit_the_cost_budget() {
    for (kind, schema) in schemas() {
        let compiled = compile_schema(&schema);
        let errors: Vec<String> = compiled.compilation_errors().iter().map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{kind}: rules that do not compile: {errors:?}");
        // Cost is estimated against the node each rule sits on (a coarse
        // check: unbounded lists and strings under comprehensions).
        let mut warnings = Vec::new();
        check_node(&schema, &mut warnings);
        assert!(warnings.is_empty(), "{kind}: {warnings:#?}");
    }

    fn check_node(node: &Value, warnings: &mut Vec<String>) {
        if let Some(rules) = node.get("x-kubernetes-validations").and_then(Value::as_array) {
            let compiled = compile_schema(node);
            for r in rules {
                let rule = r["rule"].as_str().unwrap_or_default();
                for w in estimate_rule_cost(rule, &compiled) {
                    warnings.push(format!("{rule}: {}", w.message));
                }
            }
        }
        for key in ["properties"] {
            if let Some(props) = node.get(key).and_then(Value::as_object) {
                for v in props.values() {
                    check_node(v, warnings);
                }
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(v) = node.get(key) {
                check_node(v, warnings);
            }
        }
    }
}

// ---- CEL evaluation against good and bad objects ---------------------------------

fn example(party: &str, kind: &str) -> Value {
    let path = repo_root().join(format!("examples/k8s/{party}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    docs.into_iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("{} has a {kind}", path.display()))
}

/// The failure messages of validating `object` (as an update of `old`, if given).
fn cel_failures(kind: &str, object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema_of(kind), object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn expect_rejected(kind: &str, object: &Value, old: Option<&Value>, needle: &str) {
    let failures = cel_failures(kind, object, old);
    assert!(
        failures.iter().any(|f| f.contains(needle)),
        "{kind}: expected a failure containing {needle:?}, got {failures:?}"
    );
}

#[test]
fn cel_accepts_every_example() {
    for party in ["bank-a", "bank-b", "bank-c"] {
        for kind in ["MpcCluster", "PreprocessingPool", "MpcJob"] {
            let obj = example(party, kind);
            assert_eq!(cel_failures(kind, &obj, None), Vec::<String>::new(), "{party} {kind} on create");
            assert_eq!(cel_failures(kind, &obj, Some(&obj)), Vec::<String>::new(), "{party} {kind} unchanged");
        }
    }
    // The replicated-3 federation has no pool.
    for kind in ["MpcCluster", "MpcJob"] {
        let obj = example(REPLICATED_3, kind);
        assert_eq!(cel_failures(kind, &obj, None), Vec::<String>::new(), "{REPLICATED_3} {kind} on create");
        assert_eq!(cel_failures(kind, &obj, Some(&obj)), Vec::<String>::new(), "{REPLICATED_3} {kind} unchanged");
    }
}

/// The example of a replicated-3 federation (bank-a's side).
const REPLICATED_3: &str = "bank-a-replicated-3";

#[test]
fn cel_rejects_mpccluster_mistakes() {
    let good = example("bank-a", "MpcCluster");

    let mut bad = good.clone();
    bad["spec"]["self"] = json!("bank-z");
    expect_rejected("MpcCluster", &bad, None, "spec.self must name one of spec.parties");

    let mut bad = good.clone();
    bad["spec"]["parties"][1].as_object_mut().map(|p| p.remove("trust"));
    expect_rejected("MpcCluster", &bad, None, "needs trust.secretRef");

    let mut bad = good.clone();
    bad["spec"]["parties"][0]["trust"] = json!({"secretRef": {"name": "bank-a-ca"}});
    expect_rejected("MpcCluster", &bad, None, "must not set trust");

    let mut bad = good.clone();
    bad["spec"]["tls"] = json!({"certLifetime": "24h", "renewBefore": "48h"});
    expect_rejected("MpcCluster", &bad, None, "renewBefore must be shorter");

    let mut bad = good.clone();
    bad["spec"]["tls"] = json!({"certLifetime": "30m", "renewBefore": "10m"});
    expect_rejected("MpcCluster", &bad, None, "at least 1h");

    let mut bad = good.clone();
    bad["spec"]["network"]["peerCidrs"] = json!(["10.0.0.0/8", "not-a-cidr"]);
    expect_rejected("MpcCluster", &bad, None, "must be CIDRs");

    // Transitions: self and federation are immutable; shards may change.
    let mut changed = good.clone();
    changed["spec"]["federation"] = json!("other");
    expect_rejected("MpcCluster", &changed, Some(&good), "spec.federation is immutable");
    let mut changed = good.clone();
    changed["spec"]["self"] = json!("bank-b");
    changed["spec"]["parties"][0]["trust"] = json!({"secretRef": {"name": "bank-a-ca"}});
    changed["spec"]["parties"][1].as_object_mut().map(|p| p.remove("trust"));
    expect_rejected("MpcCluster", &changed, Some(&good), "spec.self is immutable");
    let mut long = good.clone();
    long["metadata"]["name"] = json!("a".repeat(53));
    expect_rejected("MpcCluster", &long, None, "at most 52 characters");

    let mut scaled = good.clone();
    scaled["spec"]["shards"] = json!(2);
    assert_eq!(cel_failures("MpcCluster", &scaled, Some(&good)), Vec::<String>::new());

    // Defaults are applied before the rules, as the API server does.
    let mut minimal = good.clone();
    for field in ["tls", "service", "network", "protocol", "shards", "worker", "dealer"] {
        minimal["spec"].as_object_mut().map(|s| s.remove(field));
    }
    assert_eq!(cel_failures("MpcCluster", &minimal, None), Vec::<String>::new());
}

#[test]
fn cel_refuses_replicated_3_unless_there_are_exactly_three_parties() {
    use cohort_crds::cluster::ProtocolName;
    // bank-a's example names a dealer, which replicated-3 refuses (below).
    let mut three = example("bank-a", "MpcCluster");
    three["spec"].as_object_mut().map(|s| s.remove("dealer"));
    let mut rep3 = three.clone();
    rep3["spec"]["protocol"]["name"] = json!("replicated-3");
    assert_eq!(cel_failures("MpcCluster", &rep3, None), Vec::<String>::new(), "three parties");

    let mut two = rep3.clone();
    two["spec"]["parties"].as_array_mut().map(|p| p.pop());
    expect_rejected("MpcCluster", &two, None, "replicated-3 runs with exactly 3 parties");
    let mut four = rep3.clone();
    let bank_d =
        json!({"name": "bank-d", "endpoint": "mpc.bank-d.example:7443", "trust": {"secretRef": {"name": "bank-d-ca"}}});
    if let Some(parties) = four["spec"]["parties"].as_array_mut() {
        parties.push(bank_d);
    }
    expect_rejected("MpcCluster", &four, None, "replicated-3 runs with exactly 3 parties");
    // A change of protocol is checked like a new object.
    let mut two_additive = two.clone();
    two_additive["spec"]["protocol"]["name"] = json!("additive-semi-honest");
    assert_eq!(cel_failures("MpcCluster", &two_additive, None), Vec::<String>::new());
    expect_rejected("MpcCluster", &two, Some(&two_additive), "replicated-3 runs with exactly 3 parties");

    // The rule and ProtocolName::check_parties (what the operator checks in
    // code) agree on every party count the schema allows around three.
    for protocol in ProtocolName::ALL {
        for n in 2..=5usize {
            let mut obj = three.clone();
            obj["spec"]["protocol"]["name"] = json!(protocol.as_str());
            let parties: Vec<Value> = (0..n)
                .map(|i| {
                    let mut p = json!({"name": format!("p{i}"), "endpoint": format!("mpc.p{i}.example:7443")});
                    if i > 0 {
                        p["trust"] = json!({"secretRef": {"name": format!("p{i}-ca")}});
                    }
                    p
                })
                .collect();
            obj["spec"]["parties"] = json!(parties);
            obj["spec"]["self"] = json!("p0");
            let cel_ok = cel_failures("MpcCluster", &obj, None).is_empty();
            assert_eq!(cel_ok, protocol.check_parties(n).is_ok(), "{protocol} with {n} parties");
        }
    }
}

#[test]
fn cel_refuses_a_dealer_with_replicated_3() {
    use cohort_crds::cluster::ProtocolName;
    // bank-a's example (three parties) names a dealer.
    let with_dealer = example("bank-a", "MpcCluster");
    assert!(with_dealer["spec"]["dealer"].is_object(), "the example names a dealer");
    let mut rep3 = with_dealer.clone();
    rep3["spec"]["protocol"]["name"] = json!("replicated-3");
    expect_rejected(
        "MpcCluster",
        &rep3,
        None,
        "spec.dealer: protocol.name replicated-3 takes no preprocessing material",
    );
    // A change of protocol that keeps the dealer is refused as well.
    expect_rejected("MpcCluster", &rep3, Some(&with_dealer), "remove spec.dealer, or choose additive-semi-honest");
    let mut without = rep3.clone();
    without["spec"].as_object_mut().map(|s| s.remove("dealer"));
    assert_eq!(cel_failures("MpcCluster", &without, None), Vec::<String>::new());
    assert_eq!(cel_failures("MpcCluster", &without, Some(&with_dealer)), Vec::<String>::new());

    // The rule and ProtocolName::check_dealer (what the operator checks in
    // code) agree for every protocol, with and without a dealer.
    for protocol in ProtocolName::ALL {
        for dealer in [false, true] {
            let mut obj = with_dealer.clone();
            obj["spec"]["protocol"]["name"] = json!(protocol.as_str());
            if !dealer {
                obj["spec"].as_object_mut().map(|s| s.remove("dealer"));
            }
            let cel_ok = cel_failures("MpcCluster", &obj, None).is_empty();
            assert_eq!(cel_ok, protocol.check_dealer(dealer).is_ok(), "{protocol}, dealer {dealer}");
        }
    }
}

#[test]
fn cel_rejects_pool_mistakes() {
    // The example's pool generates with OT; the dealer rules need a dealer pool.
    let mut good = example("bank-a", "PreprocessingPool");
    assert_eq!(cel_failures("PreprocessingPool", &good, None), Vec::<String>::new());
    good["spec"]["generator"] = json!({"mode": "dealer", "replicas": 1, "dealer":
        {"name": "main", "endpoint": "dealer.neutral.example:7500", "trust": {"secretRef": {"name": "dealer-ca"}}}});
    assert_eq!(cel_failures("PreprocessingPool", &good, None), Vec::<String>::new());

    let mut bad = good.clone();
    bad["spec"]["material"][0]["lowWatermark"] = json!(20_000_000);
    expect_rejected("PreprocessingPool", &bad, None, "lowWatermark must not exceed target");

    let mut bad = good.clone();
    bad["spec"]["generator"].as_object_mut().map(|g| g.remove("dealer"));
    expect_rejected("PreprocessingPool", &bad, None, "generator.dealer is required");

    let mut bad = good.clone();
    bad["spec"]["generator"]["mode"] = json!("ot");
    expect_rejected("PreprocessingPool", &bad, None, "only allowed when mode is dealer");

    let mut bad = good.clone();
    bad["spec"]["generator"]["dealer"]["host"] = json!(true);
    expect_rejected("PreprocessingPool", &bad, None, "set either host: true");

    let mut bad = good.clone();
    bad["spec"]["generator"]["dealer"].as_object_mut().map(|d| d.remove("trust"));
    expect_rejected("PreprocessingPool", &bad, None, "set either host: true");

    let mut hosted = good.clone();
    hosted["spec"]["generator"]["dealer"] = json!({"host": true});
    assert_eq!(cel_failures("PreprocessingPool", &hosted, None), Vec::<String>::new());

    let mut ot = good.clone();
    ot["spec"]["generator"] = json!({"mode": "ot", "replicas": 2});
    assert_eq!(cel_failures("PreprocessingPool", &ot, None), Vec::<String>::new());

    let mut moved = good.clone();
    moved["spec"]["clusterRef"]["name"] = json!("elsewhere");
    expect_rejected("PreprocessingPool", &moved, Some(&good), "spec.clusterRef is immutable");
    let mut resized = good.clone();
    resized["spec"]["material"][0]["target"] = json!(20_000_000);
    assert_eq!(cel_failures("PreprocessingPool", &resized, Some(&good)), Vec::<String>::new());
}

#[test]
fn cel_rejects_job_mistakes() {
    let good = example("bank-a", "MpcJob");

    let mut bad = good.clone();
    bad["spec"]["inputs"]["salaries"]["configMapKeyRef"] = json!({"name": "public", "key": "x"});
    expect_rejected("MpcJob", &bad, None, "exactly one of secretKeyRef and configMapKeyRef");

    let mut bad = good.clone();
    bad["spec"]["inputs"]["salaries"] = json!({"column": "salary"});
    expect_rejected("MpcJob", &bad, None, "exactly one of secretKeyRef and configMapKeyRef");

    let mut changed = good.clone();
    changed["spec"]["program"] = json!("input x: int from bank-a\noutput y = x to all\n");
    expect_rejected("MpcJob", &changed, Some(&good), "spec is immutable");

    // Status and metadata may change freely.
    let mut progressed = good.clone();
    progressed["status"] = json!({"phase": "Running", "rounds": 2});
    progressed["metadata"]["labels"] = json!({"team": "risk"});
    assert_eq!(cel_failures("MpcJob", &progressed, Some(&good)), Vec::<String>::new());
}
