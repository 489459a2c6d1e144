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
//! And [`shuffle`]: an oblivious shuffle from permutation correlations a
//! trusted dealer deals, one round per party (material from OT or the pool
//! shuffles through the generic Beneš networks instead).
//!
//! The step functions in the submodules are pure: they take this party's
//! shares and the opened values and return shares. [`online`] runs them
//! for the executor ([`super::Protocol`]) and does the communication.

pub mod beaver;
pub mod boolean;
pub mod conversion;
pub mod division;
pub mod online;
pub mod reservoir;
pub mod shuffle;

pub use online::Additive;
