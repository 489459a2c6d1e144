//! Runs a compiled circuit among the parties, layer by layer.
//!
//! [`plan`] turns a circuit and the declared input lengths into an
//! [`Instance`]: the circuit lowered to gates ([`netlist`]: ring gates,
//! bit-sliced binary gates and the conversions between them), layers and
//! the material plan. [`run`] executes an instance for one party over an
//! established [`crate::transport::Mesh`]:
//!
//! 1. **setup** — every party announces the consent digest (program, party
//!    list, protocol) and the lengths of its inputs; a party that disagrees
//!    ends the job here, before any input is shared;
//! 2. **input sharing** — each input owner sends every other party a fresh
//!    PRG seed per input, keeping `input - sum PRG(seed)` as its share
//!    (`input XOR PRG(seed)…` for a bool input);
//! 3. **layers** — local gates run as soon as their operands exist; all
//!    interactive gates of a layer (multiplications, divisions, ANDs,
//!    masked openings, bit injections) open their masked values in ONE
//!    round, after checking every party holds the same material;
//! 4. **output** — each party sends its shares of an output to that output's
//!    recipients only; recipients reconstruct.
//!
//! A job therefore takes `3 + D` rounds, `D` the circuit's interactive
//! depth, independent of vector lengths.

mod checks;
pub mod net;
pub mod netlist;
mod nonlinear;
pub mod plan;
pub mod run;
pub mod shuffle;
pub mod sort;
mod statistics;

pub use plan::{InputLengths, Instance, Layer, Lowering, PlanError, Quotients};
pub use run::{ExecuteOptions, JobError, JobOutput, JobStats, OutputValue, OwnInputs, execute};
