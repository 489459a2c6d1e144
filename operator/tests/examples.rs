//! The manifests in examples/k8s are what a person applies: the operator's
//! own validation accepts every one of them (cluster, pool, job bindings),
//! and builds every object from them.

mod support;

use std::collections::BTreeSet;

use cohort_crds::{MpcCluster, MpcJob, PreprocessingPool};
use cohort_operator::cluster::Cluster;
use cohort_operator::pool::Pool;

#[test]
fn every_example_is_accepted_by_the_operator() {
    for party in ["bank-a", "bank-b", "bank-c"] {
        let file = format!("examples/k8s/{party}.yaml");
        let mut cluster: MpcCluster = support::example(&file, "MpcCluster");
        cluster.metadata.uid = Some(format!("uid-{party}"));
        let checked = Cluster::from_resource(&cluster).unwrap_or_else(|e| panic!("{file}: MpcCluster: {e}"));
        assert_eq!(checked.spec.self_, party);

        let mut pool: PreprocessingPool = support::example(&file, "PreprocessingPool");
        pool.metadata.uid = Some(format!("pool-{party}"));
        Pool::from_resource(&pool, &cluster).unwrap_or_else(|e| panic!("{file}: PreprocessingPool: {e}"));

        let job: MpcJob = support::example(&file, "MpcJob");
        let parties: Vec<String> = cluster.spec.parties.iter().map(|p| p.name.clone()).collect();
        let circuit = cohort_worker::program::compile(&job.spec.program, &parties)
            .unwrap_or_else(|e| panic!("{file}: MpcJob program: line {}, column {}: {}", e.line, e.column, e.message));
        let index = parties.iter().position(|p| p == party).expect("self is a party");
        let bound: BTreeSet<&str> = job.spec.inputs.keys().map(String::as_str).collect();
        cohort_operator::job::check_bindings(&circuit, party, index, &bound)
            .unwrap_or_else(|e| panic!("{file}: MpcJob inputs: {e}"));
        assert_eq!(job.spec.preprocessing.as_ref().map(|p| p.pool_ref.name.as_str()), pool.metadata.name.as_deref());
    }
}

#[test]
fn the_replicated_3_example_is_accepted_and_renders_a_replicated_3_worker() {
    let file = "examples/k8s/bank-a-replicated-3.yaml";
    let mut cluster: MpcCluster = support::example(file, "MpcCluster");
    cluster.metadata.uid = Some("uid-trio".into());
    let checked = Cluster::from_resource(&cluster).unwrap_or_else(|e| panic!("{file}: MpcCluster: {e}"));
    for (shard, text) in cohort_operator::cluster::config::render(&checked).expect("renders") {
        let cfg: cohort_worker::service::config::WorkerConfig =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{shard}: {e}"));
        assert_eq!(cfg.protocol.name, cohort_worker::protocol::ProtocolName::Replicated3, "{shard}");
        assert!(cfg.pool.is_none() && cfg.dealer.is_none(), "{shard}: {text}");
    }
    let job: MpcJob = support::example(file, "MpcJob");
    let parties: Vec<String> = cluster.spec.parties.iter().map(|p| p.name.clone()).collect();
    let circuit = cohort_worker::program::compile(&job.spec.program, &parties)
        .unwrap_or_else(|e| panic!("{file}: MpcJob program: line {}, column {}: {}", e.line, e.column, e.message));
    let bound: BTreeSet<&str> = job.spec.inputs.keys().map(String::as_str).collect();
    cohort_operator::job::check_bindings(&circuit, "bank-a", 0, &bound)
        .unwrap_or_else(|e| panic!("{file}: MpcJob inputs: {e}"));
    assert!(job.spec.preprocessing.is_none());
}
