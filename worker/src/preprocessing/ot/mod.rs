//! Dealer-free preprocessing: the parties generate their Beaver triples and
//! division pairs among themselves with oblivious transfer.
//!
//! **Trust model.** No third party. Security is semi-honest with a
//! dishonest majority: any coalition of up to `n − 1` parties that follows
//! the protocol learns nothing about the other parties' shares of the
//! material (and so, later, nothing about their inputs). A party that
//! deviates — sends a wrong correction, a malformed matrix — can make the
//! material wrong (`c ≠ a·b`) and so the result wrong, and may learn bits
//! of an honest party's shares through selective failure; stopping that
//! needs the checks of a maliciously secure protocol (MASCOT-style
//! sacrificing, SPDZ_2k MACs), which `docs/security.md` places on the
//! roadmap.
//!
//! The constructions, bottom up, each in its own module with its paper:
//!
//! - [`base`]: κ = 128 base OTs per ordered pair of parties, Chou–Orlandi
//!   over Ristretto255 (CDH, random oracle);
//! - [`iknp`]: IKNP OT extension (ALSZ13 form) to millions of correlated
//!   OTs (a PRG and a correlation-robust hash);
//! - [`hash`]: the fixed-key-AES circular-correlation-robust hash of Guo,
//!   Katz, Wang and Yu;
//! - [`transpose`]: the bit-matrix transposition IKNP needs;
//! - [`gilboa`]: Gilboa's OT-based product sharing over Z_2^64, with ABY's
//!   packing, and plain correlated OT over Z_2^64;
//! - [`session`]: one party's generator over the transport: pairwise
//!   products combined into `n`-party Beaver triples, random shared bits
//!   and, from them, division pairs for power-of-two divisors.

pub mod base;
pub mod gilboa;
pub mod hash;
pub mod iknp;
pub mod session;
pub mod transpose;

pub use session::{OtGenerator, TRIPLES_PER_CHUNK};

use crate::transport::TransportError;

/// Why OT-based generation failed. Carries no secret: messages name sizes,
/// parties and steps, never values.
#[derive(Debug, thiserror::Error)]
pub enum OtError {
    /// A peer's message does not have the expected form.
    #[error("malformed OT message: {0}")]
    Malformed(String),
    /// A request this generator does not serve.
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Entropy(#[from] crate::prg::EntropyError),
    /// A blocking computation task panicked or was cancelled.
    #[error("an OT computation task failed: {0}")]
    Task(String),
}
