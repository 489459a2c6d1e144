//! The protocols, and the seam between them and the rest of the engine.
//!
//! The compiler's IR ([`crate::program`]), the planner and the circuits
//! ([`crate::executor::plan`], [`crate::circuits`]) and the executor's
//! driver ([`crate::executor::run`]) do not know which protocol runs a job.
//! A protocol gives a secret value two forms — arithmetic shares over
//! Z_2^64 and bit-sliced XOR shares over GF(2) — and implements
//! [`Protocol`]: sharing inputs, the interactive gates of one layer
//! (multiplication, division by a public value, AND, the conversions
//! between the two forms) and revealing outputs. Everything local is
//! generic: a party's share is a list of *components* (one under additive
//! sharing, two under replicated sharing), every linear operation acts on
//! each component, and a public constant enters the components
//! [`Protocol::public_parts`] names, so that it is added exactly once to
//! the secret.
//!
//! - [`additive`]: `additive-semi-honest`, n >= 2 parties, dishonest
//!   majority, preprocessed material (dealer, OT, pool);
//! - [`replicated`]: `replicated-3`, three parties, honest majority, no
//!   preprocessing.
//!
//! Adding a protocol means a module here that implements [`Protocol`], a
//! [`ProtocolName`], the planner's [`crate::executor::plan::Lowering`] for
//! it (how many rounds its division takes, how it converts arithmetic to
//! binary), and instantiating the conformance suite
//! (`worker/tests/conformance.rs`) with it.

pub mod additive;
pub mod replicated;

use crate::executor::Instance;
use crate::executor::net::Net;
use crate::executor::netlist::GateId;
use crate::executor::run::{JobError, OwnInputs, Value};
use crate::preprocessing::Demand;
use crate::program::ir::Circuit;
use crate::sharing::{Secret, Share};

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

/// The kernel API a protocol implements for the executor. Values are
/// [`Value`]s: public, or this party's shares as components. The executor
/// evaluates every local gate itself (component by component) except the
/// ones [`Protocol::local_gate`] claims, and calls the protocol once per
/// layer with every interactive gate of that layer, so that a protocol
/// can put all of them in one round.
// The futures are polled where the protocol type is concrete, so their
// `Send`-ness is checked there; no `Send` bound is needed in the trait.
#[allow(async_fn_in_trait)]
pub trait Protocol {
    /// Per component of this party's share: whether a public value enters
    /// it (e.g. additive sharing: the single component, at party 0 only).
    fn public_parts(&self) -> &[bool];

    /// Step 2: secret-share every input gate of the instance (this party's
    /// own inputs from `inputs`) into `values`.
    async fn share_inputs(
        &mut self,
        net: &mut Net<'_>,
        instance: &Instance,
        circuit: &Circuit,
        inputs: &OwnInputs,
        values: &mut [Option<Value>],
    ) -> Result<(), JobError>;

    /// A local gate whose value this protocol computes (the local halves
    /// of its conversions); `None` for every gate the executor evaluates.
    fn local_gate(&mut self, instance: &Instance, id: GateId, values: &[Option<Value>]) -> Option<Value>;

    /// Step 3, layer `index`: evaluate every interactive gate of
    /// `instance.layers[index]` and store their values.
    async fn run_layer(
        &mut self,
        net: &mut Net<'_>,
        instance: &Instance,
        index: usize,
        values: &mut [Option<Value>],
    ) -> Result<(), JobError>;

    /// Step 4: reveal each secret output of `circuit` to its recipients
    /// only. Per output: `Some` at a recipient of a secret output (ring
    /// elements, or 0/1 for a bool output), `None` otherwise.
    async fn reveal_outputs(
        &mut self,
        net: &mut Net<'_>,
        instance: &Instance,
        circuit: &Circuit,
        values: &[Option<Value>],
    ) -> Result<Vec<Option<Secret>>, JobError>;

    /// A dynamic step begins (a sort, [`crate::executor::sort`]): the
    /// sub-instances it runs number their gates from 0, so the protocol
    /// sets aside what it keeps of the outer instance by gate id. Under a
    /// protocol that takes material, the step's budget is `chunks`, the
    /// plan's entries from `first` on, drawn as the sub-instances need it.
    fn begin_dynamic(&mut self, first: usize, chunks: &[Demand]);

    /// The dynamic step ends: the outer state comes back, and the material
    /// of the budget the step did not use is drawn and discarded, so that
    /// the next layer's material follows in order.
    async fn end_dynamic(&mut self) -> Result<(), JobError>;

    /// Private ring inputs inside a dynamic step (a shuffle's switch
    /// settings): `lens[p]` elements from each party `p`, this party's own
    /// in `mine`, shared in one round. Per party, this party's share.
    async fn private_inputs(
        &mut self,
        net: &mut Net<'_>,
        lens: &[usize],
        mine: &Secret,
    ) -> Result<Vec<Value>, JobError>;

    /// A protocol's own oblivious shuffle, if it has one cheaper than the
    /// generic one (a Beneš network per party, [`crate::executor::shuffle`]):
    /// permute the `parts.len() / len` columns of `len` elements each,
    /// concatenated in `parts` (this party's components), by one uniformly
    /// random permutation no single party learns. `false` (and `parts`
    /// untouched) when the protocol has none.
    async fn shuffle(&mut self, net: &mut Net<'_>, parts: &mut [Share], len: usize) -> Result<bool, JobError>;
}
