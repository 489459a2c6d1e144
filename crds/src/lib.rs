//! Cohort's Kubernetes custom resources, group `cohort.dev`, version
//! `v1alpha1`:
//!
//! - [`MpcCluster`] (`mpcc`): one party's membership in a federation;
//! - [`PreprocessingPool`] (`mpcpool`): material generated ahead of jobs;
//! - [`MpcJob`] (`mpcjob`): one computation, applied by every party.
//!
//! The CRDs are generated from these types ([`crds`], [`crds_yaml`]) and
//! committed at `crds/crds.yaml` and `charts/cohort/files/crds.yaml`; a test
//! fails when either is stale (`COHORT_UPDATE_CRDS=1 cargo test -p
//! cohort-crds` refreshes them). Field documentation becomes the schema
//! descriptions that `kubectl explain` prints. See docs/operator.md.
//!
//! This is a library: it does not pick a Kubernetes version for
//! `k8s-openapi` (binaries enable `k8s-openapi/v1_33`; this crate's tests
//! do so through a dev-dependency).

pub mod cluster;
pub mod common;
pub mod conditions;
pub mod job;
pub mod pool;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use cluster::{MpcCluster, MpcClusterSpec, MpcClusterStatus};
pub use conditions::{ConditionStatus, find_condition, is_condition_true, remove_condition, set_condition};
pub use job::{MpcJob, MpcJobSpec, MpcJobStatus, derive_job_id, program_hash};
pub use pool::{PreprocessingPool, PreprocessingPoolSpec, PreprocessingPoolStatus};

/// The API group of every Cohort resource.
pub const GROUP: &str = "cohort.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";

/// The three CRDs, in a stable order: MpcCluster, PreprocessingPool, MpcJob.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![MpcCluster::crd(), PreprocessingPool::crd(), MpcJob::crd()]
}

/// The header of the generated YAML file.
pub const YAML_HEADER: &str = "# Generated from the cohort-crds crate (crds/src). Do not edit by hand:\n\
# refresh with `COHORT_UPDATE_CRDS=1 cargo test -p cohort-crds`.\n";

/// The CRDs as one YAML stream (documents separated by `---`), as committed
/// in `crds/crds.yaml` and `charts/cohort/files/crds.yaml`.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::from(YAML_HEADER);
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}
