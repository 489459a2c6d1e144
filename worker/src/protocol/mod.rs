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

/// Wire name of the additive protocol, carried in the transport's version
/// hello ([`ProtocolName::as_str`]).
pub const PROTOCOL_NAME: &str = "additive-semi-honest";

/// The protocols a federation can choose (`MpcCluster.spec.protocol.name`,
/// the worker configuration's `protocol.name`, a run file's `protocol:`).
/// The name is bound into the consent digest and the transport's hello, so
/// parties configured for different protocols refuse each other's jobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
pub enum ProtocolName {
    /// Additive sharing among `n >= 2` parties, semi-honest adversary,
    /// dishonest majority; material from a dealer, OT or a pool.
    #[default]
    #[serde(rename = "additive-semi-honest")]
    AdditiveSemiHonest,
    /// Replicated sharing among exactly three parties, semi-honest
    /// adversary, honest majority; no preprocessing.
    #[serde(rename = "replicated-3")]
    Replicated3,
}

impl ProtocolName {
    pub const ALL: [ProtocolName; 2] = [ProtocolName::AdditiveSemiHonest, ProtocolName::Replicated3];

    /// The name as written in manifests, run files and the hello.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolName::AdditiveSemiHonest => PROTOCOL_NAME,
            ProtocolName::Replicated3 => "replicated-3",
        }
    }

    /// Whether the protocol runs with `parties` parties; the reason if not.
    pub fn check_parties(self, parties: usize) -> Result<(), String> {
        match self {
            ProtocolName::AdditiveSemiHonest if parties < 2 => {
                Err(format!("{self} needs at least 2 parties, got {parties}"))
            }
            ProtocolName::Replicated3 if parties != 3 => Err(format!("{self} needs exactly 3 parties, got {parties}")),
            _ => Ok(()),
        }
    }

    /// Whether jobs take preprocessing material (a dealer, OT or a pool).
    pub fn uses_preprocessing(self) -> bool {
        matches!(self, ProtocolName::AdditiveSemiHonest)
    }
}

impl std::fmt::Display for ProtocolName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProtocolName {
    type Err = String;

    fn from_str(s: &str) -> Result<ProtocolName, String> {
        ProtocolName::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = ProtocolName::ALL.iter().map(|p| p.as_str()).collect();
            format!("unknown protocol `{s}` (known: {})", known.join(", "))
        })
    }
}

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
