//! The Cohort operator: one per party (per cluster), the only writer of
//! Cohort custom-resource status, and its workers' controller.
//!
//! - [`dispatch`]: runs an `MpcJob` on this party's workers through their
//!   mTLS control API — shard choice, idempotent submission, following the
//!   job to a final status. No Kubernetes involved, so it is tested against
//!   real worker processes.
//!
//! The controllers (kube-runtime), the pure builders of each kind's desired
//! objects, certificates and leader election arrive in this crate next.

pub mod dispatch;
