//! The Cohort MPC engine.
//!
//! Everything a party needs to take part in a secure multiparty computation,
//! independent of how the process is deployed (local `cohort run`, or a
//! Kubernetes pod managed by the operator):
//!
//! - [`ring`]: arithmetic in Z_2^64 over vectors;
//! - [`fixed`]: the fixed-point encoding of real numbers into the ring;
//! - [`sharing`]: additive secret sharing and the secret-holding types;
//! - [`gf2`]: bit-sliced vectors over GF(2), the binary counterpart of `ring`;
//! - [`circuits`]: binary circuits (comparison, equality) written once
//!   against the primitives every protocol provides;
//! - [`prg`]: the AES-CTR pseudorandom generator used to expand seeds;
//! - [`preprocessing`]: correlated randomness (Beaver triples, division
//!   pairs) and where it comes from (today: a trusted dealer);
//! - [`program`]: the program language, its compiler and the circuit IR;
//! - [`data`]: parsing a party's secret input values (CSV or one number per
//!   line), shared by `cohort run` and the operator;
//! - [`transport`]: the mutually authenticated TLS mesh between parties;
//! - [`protocol`]: the `additive-semi-honest` protocol steps;
//! - [`executor`]: runs a compiled circuit layer by layer over the mesh;
//! - [`service`]: the `cohort-worker` process (peer port, control API, metrics);
//! - [`local`]: a whole federation in one process (tests, examples, benches).

pub mod bench;
pub mod circuits;
pub mod data;
pub mod executor;
pub mod fixed;
pub mod gf2;
pub mod local;
pub mod memory;
pub mod preprocessing;
pub mod prg;
pub mod program;
pub mod protocol;
pub mod ring;
pub mod service;
pub mod sharing;
pub mod telemetry;
pub mod transport;
