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
//! - [`job`]: the pure half of the `MpcJob` reconciler — input bindings and
//!   parsing, the result Secret, worker status to job status.
//! - [`controller`]: the kube-runtime controllers that run those pipelines
//!   against the API server (server-side apply, status, events, backoff).
//! - [`leader`]: leader election over a Lease (only the holder reconciles).
//! - [`pod`]: the hardening every pod the operator runs shares.
//! - [`metrics`], [`http`]: Prometheus metrics and the probe/metrics endpoints.

pub mod cluster;
pub mod controller;
pub mod dispatch;
pub mod http;
pub mod job;
pub mod leader;
pub mod metrics;
pub mod pod;
pub mod pool;
