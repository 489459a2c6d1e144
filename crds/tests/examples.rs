//! The manifests in examples/k8s deserialize into the types, with no field
//! the types do not know (a typo would be pruned silently by the API
//! server), and survive a serde round trip.

use std::path::Path;

use cohort_crds::cluster::ProtocolName;
use cohort_crds::pool::{GeneratorMode, MaterialKind};
use cohort_crds::{MpcCluster, MpcJob, PreprocessingPool};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const PARTIES: [&str; 3] = ["bank-a", "bank-b", "bank-c"];

fn documents(party: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/k8s/{party}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every key of `written` is present in `typed` (the value after a round
/// trip through the Rust type), with the same scalar values.
fn assert_covered(written: &Value, typed: &Value, path: &str) {
    match (written, typed) {
        (Value::Object(w), Value::Object(t)) => {
            for (k, v) in w {
                let Some(tv) = t.get(k) else {
                    panic!("{path}.{k} is not a field of the type (typo?)");
                };
                assert_covered(v, tv, &format!("{path}.{k}"));
            }
        }
        (Value::Array(w), Value::Array(t)) => {
            assert_eq!(w.len(), t.len(), "{path}");
            for (i, (a, b)) in w.iter().zip(t).enumerate() {
                assert_covered(a, b, &format!("{path}[{i}]"));
            }
        }
        (w, t) => assert_eq!(w, t, "{path}"),
    }
}

fn typed<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(doc: &Value, what: &str) -> T {
    let value: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&value).expect("serializes");
    assert_covered(doc, &back, what);
    let again: T = serde_json::from_value(back).expect("round trip");
    assert_eq!(again, value, "{what}: round trip");
    value
}

#[test]
fn every_example_is_typed_and_round_trips() {
    for party in PARTIES {
        let docs = documents(party);
        assert_eq!(docs.len(), 3, "{party}: an MpcCluster, a PreprocessingPool and an MpcJob");
        for doc in &docs {
            assert_eq!(doc["apiVersion"], "cohort.dev/v1alpha1");
            let what = format!("{party} {}", doc["kind"]);
            match doc["kind"].as_str() {
                Some("MpcCluster") => {
                    let c: MpcCluster = typed(doc, &what);
                    assert_eq!(c.spec.self_, party);
                    assert_eq!(c.spec.self_party().map(|p| p.name.as_str()), Some(party));
                    assert_eq!(c.spec.peers().count(), 2);
                    assert_eq!(c.spec.protocol.name, ProtocolName::AdditiveSemiHonest);
                    assert_eq!(c.spec.tls.cert_lifetime.to_std(), Ok(std::time::Duration::from_secs(720 * 3600)));
                }
                Some("PreprocessingPool") => {
                    let p: PreprocessingPool = typed(doc, &what);
                    assert_eq!(p.spec.generator.mode, GeneratorMode::Ot, "no trusted party");
                    assert!(p.spec.generator.dealer.is_none());
                    assert_eq!(p.spec.material[0].kind, MaterialKind::BeaverTriple);
                    assert!(p.spec.ttl.to_std().is_ok());
                }
                Some("MpcJob") => {
                    let j: MpcJob = typed(doc, &what);
                    assert!(j.spec.inputs.contains_key("salaries"));
                }
                other => panic!("{party}: unexpected kind {other:?}"),
            }
        }
    }
}

#[test]
fn the_replicated_3_example_has_three_parties_no_dealer_and_a_job_without_a_pool() {
    let docs = documents("bank-a-replicated-3");
    assert_eq!(docs.len(), 2, "an MpcCluster and an MpcJob (no pool: the protocol takes no preprocessing)");
    let cluster: MpcCluster = typed(&docs[0], "replicated-3 MpcCluster");
    assert_eq!(cluster.spec.protocol.name, ProtocolName::Replicated3);
    assert_eq!(cluster.spec.parties.len(), 3);
    assert_eq!(cluster.spec.protocol.name.check_parties(cluster.spec.parties.len()), Ok(()));
    assert!(!cluster.spec.protocol.name.uses_preprocessing());
    assert!(cluster.spec.dealer.is_none(), "no dealer: nothing would use it");
    assert_eq!(cluster.spec.self_party().map(|p| p.name.as_str()), Some("bank-a"));
    let job: MpcJob = typed(&docs[1], "replicated-3 MpcJob");
    assert_eq!(job.spec.cluster_ref.name, cluster.metadata.name.clone().expect("a name"));
    assert!(job.spec.preprocessing.is_none(), "a job naming a pool is refused on a replicated-3 cluster");
    assert!(job.spec.inputs.contains_key("signal"));
}

#[test]
fn the_parties_agree_on_what_must_match() {
    let clusters: Vec<MpcCluster> = PARTIES
        .iter()
        .map(|p| documents(p).into_iter().find(|d| d["kind"] == "MpcCluster").expect("a cluster"))
        .map(|d| serde_json::from_value(d).expect("typed"))
        .collect();
    let jobs: Vec<MpcJob> = PARTIES
        .iter()
        .map(|p| documents(p).into_iter().find(|d| d["kind"] == "MpcJob").expect("a job"))
        .map(|d| serde_json::from_value(d).expect("typed"))
        .collect();
    let names = |c: &MpcCluster| -> Vec<(String, String)> {
        c.spec.parties.iter().map(|p| (p.name.clone(), p.endpoint.clone())).collect()
    };
    for c in &clusters[1..] {
        assert_eq!(c.spec.federation, clusters[0].spec.federation);
        assert_eq!(names(c), names(&clusters[0]), "the same parties in the same order");
        assert_eq!(c.spec.protocol, clusters[0].spec.protocol);
        assert_eq!(c.spec.shards, clusters[0].spec.shards);
    }
    let federation = &clusters[0].spec.federation;
    for j in &jobs[1..] {
        assert_eq!(j.spec.program, jobs[0].spec.program);
        assert_eq!(j.job_id(federation), jobs[0].job_id(federation));
    }
}

#[test]
fn defaults_fill_a_minimal_cluster() {
    let minimal = serde_json::json!({
        "apiVersion": "cohort.dev/v1alpha1",
        "kind": "MpcCluster",
        "metadata": {"name": "consortium"},
        "spec": {
            "self": "a",
            "federation": "f",
            "parties": [{"name": "a", "endpoint": "a.example:7443"},
                        {"name": "b", "endpoint": "b.example:7443", "trust": {"secretRef": {"name": "b-ca"}}}]
        }
    });
    let c: MpcCluster = serde_json::from_value(minimal).expect("typed");
    assert_eq!(c.spec.shards, 1);
    assert_eq!(c.spec.tls.cert_lifetime.as_str(), "720h");
    assert_eq!(c.spec.tls.renew_before.as_str(), "240h");
    assert_eq!(c.spec.parties[1].trust.as_ref().map(|t| t.secret_ref.key.as_str()), Some("ca.crt"));
    assert!(c.spec.dealer.is_none());
}
