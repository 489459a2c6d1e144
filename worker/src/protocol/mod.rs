//! The `additive-semi-honest` protocol: the local steps of each party.
//!
//! Secrets are additively shared over Z_2^64 among `n >= 2` parties
//! ([`crate::sharing`]). Linear operations are local. The two interactive
//! operations each consume preprocessed material and need one *opening*
//! (every party broadcasts a masked share and sums what it receives):
//!
//! - [`beaver`]: multiplication of two secrets with a Beaver triple
//!   (Beaver, CRYPTO '91);
//! - [`division`]: division by a public value — and hence fixed-point
//!   truncation — with a division pair, the probabilistic truncation of
//!   Escudero, Ghosh, Keller, Rachuri and Scholl (CRYPTO 2020, "Improved
//!   primitives for MPC over mixed arithmetic-binary circuits") generalized
//!   from `2^m` to any public divisor.
//!
//! Security: semi-honest (passive) adversary corrupting up to `n-1` parties.
//! Every opened value is a secret plus a uniformly random mask that no
//! coalition of `n-1` parties knows, so openings reveal nothing. Correlated
//! randomness comes from [`crate::preprocessing`]; with the trusted dealer,
//! privacy additionally assumes the dealer does not collude with a party.
//!
//! The binary half of the engine (XOR sharing over GF(2), bit-sliced):
//!
//! - [`boolean`]: AND with a bit triple, one opening;
//! - [`conversion`]: arithmetic to binary by a masked opening with an
//!   edaBit, binary to arithmetic (fused with a product) with a daBit.
//!
//! The functions here are pure: they take this party's shares and the
//! opened values and return shares. The executor does the communication.

pub mod beaver;
pub mod boolean;
pub mod conversion;
pub mod division;

/// Wire name of the protocol, carried in the transport's version hello.
pub const PROTOCOL_NAME: &str = "additive-semi-honest";

/// The protocol versions this build implements (inclusive range).
///
/// - 1: the protocol above.
/// - 2: as 1, plus the abort frame: a party that gives up on a job tells
///   every peer why ([`crate::transport::frame::Step::Abort`]), so that a
///   failure is reported with its cause at every party.
///
/// Each job runs at the highest version every party offers
/// (`docs/upgrades.md`).
pub const SUPPORTED_VERSIONS: (u32, u32) = (1, 2);
