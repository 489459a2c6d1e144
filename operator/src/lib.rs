//! The Cohort operator: one per party (per cluster), the only writer of
//! Cohort custom-resource status, and its workers' controller.
//!
//! - [`cluster`]: the pure half of the `MpcCluster` reconciler — validation,
//!   certificate planning and issuance, worker configuration files and every
//!   owned object built as `k8s-openapi` types.
//! - [`pool`]: the pure half of the `PreprocessingPool` reconciler —
//!   validation against the MpcCluster (and its `spec.dealer`), the hosted
//!   trusted dealer's certificate, its owned objects (a one-replica
//!   `cohort-dealer` StatefulSet with a durable journal), and status.
//! - [`dispatch`]: runs an `MpcJob` on this party's workers through their
//!   mTLS control API — shard choice, idempotent submission, following the
//!   job to a final status. No Kubernetes involved, so it is tested against
//!   real worker processes.
//!
//! The controllers (kube-runtime), the pure builders of each kind's desired
//! objects, certificates and leader election arrive in this crate next.

pub mod cluster;
pub mod dispatch;
pub mod pool;
