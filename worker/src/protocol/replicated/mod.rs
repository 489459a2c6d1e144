//! The `replicated-3` protocol: three parties, honest majority, no
//! preprocessing.
//!
//! Construction: replicated secret sharing over Z_2^64 and, bit-sliced,
//! over GF(2) (Araki, Furukawa, Lindell, Nof and Ohara, CCS 2016;
//! Mohassel and Rindal, ABY3, CCS 2018). A secret `x = x_0 + x_1 + x_2`
//! (XOR for bits) has three *components*; party `i` holds `x_i` and
//! `x_{i+1}` (indices mod 3), its parts 0 and 1. Any two parties can
//! reconstruct; one alone sees two uniformly random components.
//!
//! Security: semi-honest adversary corrupting one party of three (honest
//! majority). Two colluding parties learn every secret; no preprocessing,
//! no dealer.
//!
//! Correlated randomness comes from pairwise PRG keys agreed in the input
//! round ([`keys`]): key `k_j` belongs to component `j`, so the two
//! holders of a component draw the same stream. The steps:
//!
//! - [`arithmetic`]: inputs (one message to one party), multiplication
//!   and AND with a zero-sharing from the keys and one message to one
//!   neighbour — 8 bytes per multiplication per party, 1 bit per AND;
//! - [`division`]: division by a public value (fixed-point truncation) in
//!   two rounds, with the error bound of the additive protocol's;
//! - [`conversion`]: arithmetic to binary by splitting a secret into a
//!   component two parties know and a sum the third knows (then the
//!   generic comparison circuits run on the two), and bit injection with
//!   daBits the parties make in the input round and one more round.
//!
//! [`online`] runs these steps for the executor ([`super::Protocol`]).

pub mod arithmetic;
pub mod conversion;
pub mod division;
pub mod keys;
pub mod online;

pub use online::Replicated;

/// The three parties, by index.
pub const PARTIES: usize = 3;

/// The party after `i` (mod 3).
pub fn next(i: usize) -> usize {
    (i + 1) % PARTIES
}

/// The party before `i` (mod 3).
pub fn prev(i: usize) -> usize {
    (i + PARTIES - 1) % PARTIES
}
