//! One party's execution of a job over the mesh.

use super::net::Net;
use super::netlist::{GateId, GateOp, Kind, PublicValue};
use super::plan::{InputLengths, Instance, Lowering, PlanError, Quotients};
use crate::fixed::{self, EncodeError, FixedPoint};
use crate::gf2::Bits;
use crate::preprocessing::{MaterialPlan, MaterialSource, PreprocessingError};
use crate::program::ir::{Circuit, ElemType, OutputDecl, PartyIndex};
use crate::protocol::additive::Additive;
use crate::protocol::replicated::Replicated;
use crate::protocol::{Protocol, ProtocolName};
use crate::ring;
use crate::sharing::{Secret, Share};
use crate::transport::{Mesh, Step, TransportError};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, debug, field, info_span};

/// Why a job failed. Every variant names what it can of the party and the
/// step, and none carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The network failed: a peer disconnected, stalled, or sent garbage.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A peer sent a well-formed message with the wrong content.
    #[error("party {party}, step {step}: {reason}")]
    Protocol { party: String, step: Step, reason: String },
    /// The circuit cannot be run with the declared lengths.
    #[error("program {0}")]
    Plan(#[from] PlanError),
    /// This party's own input is missing or cannot be encoded.
    #[error("input `{input}`: {reason}")]
    Input { input: String, reason: String },
    /// Preprocessed material was missing, reused or mismatched.
    #[error("preprocessing, step {step}: {source}")]
    Preprocessing { step: Step, source: PreprocessingError },
    /// This party's source of randomness failed.
    #[error("this party's random source failed: {0}")]
    Entropy(#[from] crate::prg::EntropyError),
    /// The job ran past its deadline.
    #[error("the job exceeded its time limit of {limit:?} at step {step}")]
    Deadline { limit: Duration, step: Step },
}

/// This party's own inputs, ring-encoded, by input index.
#[derive(Debug, Default)]
pub struct OwnInputs(BTreeMap<usize, Secret>);

impl OwnInputs {
    pub fn new() -> OwnInputs {
        OwnInputs::default()
    }

    /// The encoded values of input `index`, if this party provided them.
    pub fn get(&self, index: usize) -> Option<&Secret> {
        self.0.get(&index)
    }

    /// Provide already-encoded values for input `name`.
    pub fn insert_encoded(&mut self, circuit: &Circuit, name: &str, values: Secret) -> Result<(), JobError> {
        let index = input_index(circuit, name)?;
        self.0.insert(index, values);
        Ok(())
    }

    /// Encode and provide real values for input `name` (integers must be
    /// whole numbers). Errors name the input and the element index, never
    /// the value.
    pub fn insert_values(&mut self, circuit: &Circuit, name: &str, values: &[f64]) -> Result<(), JobError> {
        let index = input_index(circuit, name)?;
        let fp = FixedPoint::new(circuit.frac_bits).ok_or_else(|| JobError::Input {
            input: name.to_string(),
            reason: format!("unsupported fixed-point precision {}", circuit.frac_bits),
        })?;
        let elem = circuit.inputs[index].elem;
        let encoded = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let result = match elem {
                    ElemType::Fixed => fp.encode(*v),
                    ElemType::Int if v.fract() != 0.0 || !v.is_finite() => Err(EncodeError::NotFinite),
                    ElemType::Int if v.abs() >= fixed::SAFE_BOUND as f64 => Err(EncodeError::IntOutOfRange),
                    ElemType::Int => fixed::encode_int(*v as i64),
                    ElemType::Bool if *v == 0.0 || *v == 1.0 => Ok(*v as u64),
                    ElemType::Bool => Err(EncodeError::NotFinite),
                };
                result.map_err(|e| JobError::Input {
                    input: name.to_string(),
                    reason: match (elem, e) {
                        (ElemType::Int, EncodeError::NotFinite) => format!("element {i} is not an integer"),
                        (ElemType::Bool, _) => format!("element {i} is not a bool (0 or 1)"),
                        _ => format!("element {i}: {e}"),
                    },
                })
            })
            .collect::<Result<Vec<u64>, JobError>>()?;
        self.0.insert(index, Secret::new(encoded));
        Ok(())
    }
}

fn input_index(circuit: &Circuit, name: &str) -> Result<usize, JobError> {
    circuit.inputs.iter().position(|i| i.name == name).ok_or_else(|| JobError::Input {
        input: name.to_string(),
        reason: "the program declares no input of that name".into(),
    })
}

/// Limits and identity of one execution.
#[derive(Clone, Debug)]
pub struct ExecuteOptions {
    /// Digest every party must agree on: the program, the party list and
    /// the protocol. Compared in the setup step.
    pub consent_digest: [u8; 32],
    /// Total time limit for the job.
    pub job_timeout: Duration,
    /// Largest input vector a peer may declare.
    pub max_vector_len: usize,
    /// The kind of division pairs the material source provides
    /// ([`Quotients::of`] the job's preprocessing mode).
    pub quotients: Quotients,
    /// The protocol that runs the job (every party's must be the same;
    /// the consent digest covers it).
    pub protocol: ProtocolName,
}

impl ExecuteOptions {
    pub fn new(consent_digest: [u8; 32]) -> ExecuteOptions {
        ExecuteOptions {
            consent_digest,
            job_timeout: Duration::from_secs(600),
            max_vector_len: 1 << 27,
            quotients: Quotients::Exact,
            protocol: ProtocolName::AdditiveSemiHonest,
        }
    }

    /// What the planner needs to know of the protocol.
    pub fn lowering(&self) -> Lowering {
        Lowering { protocol: self.protocol, quotients: self.quotients }
    }
}

/// One output as this party sees it.
#[derive(Debug)]
pub struct OutputValue {
    pub name: String,
    pub elem: ElemType,
    /// Whether the value is a vector (otherwise one element).
    pub is_vector: bool,
    /// The value, if this party is a recipient.
    pub value: Option<Secret>,
}

impl OutputValue {
    /// The value decoded to reals (integers are exact), if received.
    pub fn decode(&self, frac_bits: u32) -> Option<Vec<f64>> {
        let fp = FixedPoint::new(frac_bits).unwrap_or_default();
        self.value.as_ref().map(|v| {
            v.expose()
                .iter()
                .map(|x| match self.elem {
                    ElemType::Int => fixed::decode_int(*x) as f64,
                    ElemType::Fixed => fp.decode(*x),
                    ElemType::Bool => (*x & 1) as f64,
                })
                .collect()
        })
    }
}

/// What a job cost. Public.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobStats {
    /// Communication rounds, setup and output included.
    pub rounds: u32,
    /// Online layers (the circuit's interactive depth).
    pub layers: u32,
    /// Bytes this party sent.
    pub bytes_sent: u64,
    pub triples_used: u64,
    pub div_pairs_used: u64,
    /// The protocol version the job ran at.
    pub protocol_version: u32,
}

/// The result of a job at one party.
#[derive(Debug)]
pub struct JobOutput {
    pub outputs: Vec<OutputValue>,
    pub stats: JobStats,
}

/// A gate's value at this party.
pub enum Value {
    /// Ring elements every party knows.
    Public(Vec<u64>),
    /// This party's share of ring elements: one vector per component of
    /// the protocol's sharing ([`Protocol::public_parts`]).
    Secret(Vec<Share>),
    /// A bundle every party knows.
    PublicBits(Bits),
    /// This party's XOR shares of a bundle, one per component.
    SecretBits(Vec<Bits>),
}

impl Value {
    /// This party's components of a secret ring value.
    pub fn shares(&self) -> &[Share] {
        match self {
            Value::Secret(s) => s,
            _ => unreachable!("a secret ring value"),
        }
    }

    /// This party's components of a secret bundle.
    pub fn bit_shares(&self) -> &[Bits] {
        match self {
            Value::SecretBits(b) => b,
            _ => unreachable!("a secret bundle"),
        }
    }

    /// The elements of a public ring value.
    pub fn public(&self) -> &[u64] {
        match self {
            Value::Public(p) => p,
            _ => unreachable!("a public ring value"),
        }
    }
}

/// Run `circuit` as this party of `mesh`, under `options.protocol`.
/// Under a protocol that takes material (`additive-semi-honest`),
/// `provide` is called once, after setup, with the job's material plan, and
/// returns this party's material source (e.g. its stream from a dealer);
/// other protocols never call it.
///
/// Call [`Mesh::close`] afterwards, whatever the outcome: it flushes the
/// messages already queued, so that peers see this party's last messages
/// (and their own errors) rather than a reset connection.
pub async fn execute<S, F, Fut>(
    mesh: &Mesh,
    circuit: &Circuit,
    inputs: &OwnInputs,
    options: &ExecuteOptions,
    provide: F,
) -> Result<JobOutput, JobError>
where
    S: MaterialSource,
    F: FnOnce(MaterialPlan) -> Fut,
    Fut: Future<Output = Result<S, PreprocessingError>>,
{
    let me = mesh.self_index();
    match options.protocol {
        ProtocolName::AdditiveSemiHonest => {
            let start = |instance: &Instance| {
                let plan = instance.plan.clone();
                let span = info_span!(
                    "preprocessing",
                    layers = instance.depth(),
                    material.triples = plan.total_triples(),
                    material.div_pairs = plan.total_div_pairs()
                );
                async move {
                    let source = provide(plan)
                        .instrument(span)
                        .await
                        .map_err(|source| preprocessing_failed(Step::Setup, source))?;
                    Ok(Additive::new(source, me))
                }
            };
            run_job(mesh, circuit, inputs, options, start).await
        }
        ProtocolName::Replicated3 => {
            let start = |_: &Instance| async move { Replicated::new(me, mesh.party_count()) };
            run_job(mesh, circuit, inputs, options, start).await
        }
    }
}

/// The protocol-independent driver: setup, plan, input sharing, the
/// layers, outputs. `start` makes the protocol's state once the instance
/// is planned.
async fn run_job<P, F, Fut>(
    mesh: &Mesh,
    circuit: &Circuit,
    inputs: &OwnInputs,
    options: &ExecuteOptions,
    start: F,
) -> Result<JobOutput, JobError>
where
    P: Protocol,
    F: FnOnce(&Instance) -> Fut,
    Fut: Future<Output = Result<P, JobError>>,
{
    let mut net = Net::new(mesh, options.job_timeout);
    // One span per phase, children of the caller's (the job's) span. Their
    // fields are public by the protocol: counts and sizes, never values.
    check_own_inputs(circuit, net.me, inputs)?;
    let lengths = setup(&mut net, circuit, inputs, options).instrument(info_span!("setup")).await?;

    let instance = Instance::plan(circuit, &lengths, options.lowering())?;
    let mut protocol = start(&instance).await?;
    let mut values: Vec<Option<Value>> = (0..instance.netlist.gates.len()).map(|_| None).collect();
    let span = info_span!("input", inputs = inputs.0.len());
    protocol.share_inputs(&mut net, &instance, circuit, inputs, &mut values).instrument(span).await?;

    for layer in 0..instance.depth() {
        let l = &instance.layers[layer];
        let span = info_span!(
            "online.layer",
            layer = layer + 1,
            multiplications = l.muls.len(),
            divisions = l.divs.iter().map(|(_, nodes)| nodes.len()).sum::<usize>(),
            ands = l.ands.len(),
            conversions = l.opens.len() + l.injects.len() + l.splits.len(),
            material.triples = field::Empty,
            material.div_pairs = field::Empty,
            opened = field::Empty,
        );
        async {
            evaluate_local(&mut protocol, &instance, layer, &mut values);
            protocol.run_layer(&mut net, &instance, layer, &mut values).await?;
            for &sort in &l.sorts {
                values[sort] = Some(run_dynamic_sort(&mut protocol, &mut net, &instance, sort, &values).await?);
            }
            Ok::<(), JobError>(())
        }
        .instrument(span)
        .await?;
    }
    evaluate_local(&mut protocol, &instance, instance.depth(), &mut values);
    if !circuit.checks.is_empty() {
        reveal_checks(&mut protocol, &mut net, &instance, circuit, &values)
            .instrument(info_span!("range_checks", checks = circuit.checks.len()))
            .await?;
    }
    let span = info_span!("output", outputs = circuit.outputs.len());
    let revealed = protocol.reveal_outputs(&mut net, &instance, circuit, &values).instrument(span).await?;
    let outputs = outputs_of(&instance, circuit, net.me, &values, revealed);

    let stats = JobStats {
        rounds: net.rounds,
        layers: instance.depth() as u32,
        bytes_sent: mesh.bytes_sent(),
        triples_used: instance.plan.total_triples() as u64,
        div_pairs_used: instance.plan.total_div_pairs() as u64,
        protocol_version: mesh.protocol_version(),
    };
    debug!(rounds = stats.rounds, bytes_sent = stats.bytes_sent, "job finished");
    Ok(JobOutput { outputs, stats })
}

/// Reveal the range checks (`range_check`) to every party, before any
/// output, and fail the job at the first that did not hold: one round,
/// one bit per checked operation.
async fn reveal_checks<P: Protocol>(
    protocol: &mut P,
    net: &mut Net<'_>,
    instance: &Instance,
    circuit: &Circuit,
    values: &[Option<Value>],
) -> Result<(), JobError> {
    let everyone: Vec<PartyIndex> = (0..circuit.parties.len()).collect();
    let shadow = Circuit {
        outputs: circuit
            .checks
            .iter()
            .map(|c| OutputDecl {
                name: "range check".into(),
                value: c.value,
                elem: ElemType::Bool,
                recipients: everyone.clone(),
                span: c.span,
            })
            .collect(),
        checks: Vec::new(),
        ..circuit.clone()
    };
    let revealed = protocol.reveal_outputs(net, instance, &shadow, values).await?;
    for (check, opened) in circuit.checks.iter().zip(revealed) {
        let held = match opened {
            Some(bits) => bits.expose().iter().all(|b| *b & 1 == 1),
            None => match operand(values, instance.node_gate[check.value]) {
                Value::PublicBits(b) => bools_of(b).iter().all(|b| *b == 1),
                _ => false,
            },
        };
        if !held {
            return Err(JobError::Plan(PlanError {
                span: check.span,
                reason:
                    "a secret intermediate left the range at this operation (`range_check`; see \"Range checks\" in \
                         docs/language.md)"
                        .into(),
            }));
        }
    }
    Ok(())
}

/// A sort gate's dynamic step ([`super::sort`]), inside its material
/// budget: the budget's unused part is drawn and discarded even when the
/// sort fails, so the error is the sort's.
async fn run_dynamic_sort<P: Protocol>(
    protocol: &mut P,
    net: &mut Net<'_>,
    instance: &Instance,
    sort: GateId,
    values: &[Option<Value>],
) -> Result<Value, JobError> {
    let budget = instance.sort_budgets.get(&sort).cloned().unwrap_or_default();
    protocol.begin_dynamic(budget.first, &budget.chunks);
    let span = info_span!("sort", comparisons = field::Empty, levels = field::Empty, rounds = field::Empty);
    let before = net.rounds;
    let result = super::sort::run_sort(protocol, net, instance, sort, values).instrument(span.clone()).await;
    let ended = protocol.end_dynamic().await;
    let (value, stats) = result?;
    ended?;
    span.record("comparisons", stats.comparisons);
    span.record("levels", stats.levels);
    span.record("rounds", net.rounds - before);
    Ok(value)
}

/// Run a dynamic step's sub-instance (its externals already in `values`):
/// its layers through the same protocol, as a job's.
pub async fn run_sub<P: Protocol>(
    protocol: &mut P,
    net: &mut Net<'_>,
    sub: &Instance,
    values: &mut [Option<Value>],
) -> Result<(), JobError> {
    for layer in 0..sub.depth() {
        evaluate_local(protocol, sub, layer, values);
        protocol.run_layer(net, sub, layer, values).await?;
    }
    evaluate_local(protocol, sub, sub.depth(), values);
    Ok(())
}

fn check_own_inputs(circuit: &Circuit, me: PartyIndex, inputs: &OwnInputs) -> Result<(), JobError> {
    for (index, decl) in circuit.inputs.iter().enumerate() {
        let owned = decl.is_owned_by(me);
        match (owned, inputs.0.get(&index)) {
            (true, None) => {
                return Err(JobError::Input {
                    input: decl.name.clone(),
                    reason: "no data provided by this party".into(),
                });
            }
            (false, Some(_)) => {
                return Err(JobError::Input {
                    input: decl.name.clone(),
                    reason: "this party does not own this input but provided data for it".into(),
                });
            }
            (true, Some(v)) if decl.shape == crate::program::ir::InputShape::Scalar && v.len() != 1 => {
                return Err(JobError::Input {
                    input: decl.name.clone(),
                    reason: format!("a scalar input needs exactly one value, got {}", v.len()),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// A failure to provide material, as a job error. A transport error (a peer
/// lost while the parties generate material) stays one, so that the job's
/// failure names that party, the step and the kind, as in the online phase.
pub fn preprocessing_failed(step: Step, source: PreprocessingError) -> JobError {
    match source {
        PreprocessingError::Transport(t) => JobError::Transport(*t),
        source => JobError::Preprocessing { step, source },
    }
}

const SETUP_VERSION: u8 = 1;

/// Step 1: agree on the job and learn every input's length.
async fn setup(
    net: &mut Net<'_>,
    circuit: &Circuit,
    inputs: &OwnInputs,
    options: &ExecuteOptions,
) -> Result<InputLengths, JobError> {
    let mut mine = Vec::with_capacity(1 + 32 + 4 + 8 * inputs.0.len());
    mine.push(SETUP_VERSION);
    mine.extend_from_slice(&options.consent_digest);
    mine.extend_from_slice(&(inputs.0.len() as u32).to_le_bytes());
    for (index, values) in &inputs.0 {
        mine.extend_from_slice(&(*index as u32).to_le_bytes());
        mine.extend_from_slice(&(values.len() as u64).to_le_bytes());
    }
    let received = net.exchange(Step::Setup, net.to_every_peer(Arc::new(mine))).await?;

    let mut lengths = InputLengths(vec![vec![None; net.n]; circuit.inputs.len()]);
    for (index, values) in &inputs.0 {
        lengths.0[*index][net.me] = Some(values.len());
    }
    for peer in net.peers() {
        let msg = &received[peer];
        let bad = |reason: &str| net.protocol_error(peer, Step::Setup, reason.to_string());
        if msg.len() < 37 || msg[0] != SETUP_VERSION {
            return Err(bad("malformed setup message"));
        }
        if msg[1..33] != options.consent_digest {
            return Err(bad(
                "the party applied a different program, party list, protocol or preprocessing mode (consent digest differs); no input was shared (compare what each party reviews with `cohort check`)",
            ));
        }
        let count = u32::from_le_bytes(msg[33..37].try_into().expect("4 bytes")) as usize;
        if msg.len() != 37 + 12 * count {
            return Err(bad("malformed setup message (length)"));
        }
        for entry in msg[37..].chunks_exact(12) {
            let index = u32::from_le_bytes(entry[..4].try_into().expect("4 bytes")) as usize;
            let len = u64::from_le_bytes(entry[4..].try_into().expect("8 bytes"));
            let Some(decl) = circuit.inputs.get(index) else {
                return Err(bad("declared an input the program does not have"));
            };
            if !decl.is_owned_by(peer) {
                return Err(net.protocol_error(
                    peer,
                    Step::Setup,
                    format!("declared input `{}`, which it does not own", decl.name),
                ));
            }
            if len > options.max_vector_len as u64 {
                return Err(net.protocol_error(
                    peer,
                    Step::Setup,
                    format!(
                        "declared {len} values for input `{}`, over the limit of {}",
                        decl.name, options.max_vector_len
                    ),
                ));
            }
            lengths.0[index][peer] = Some(len as usize);
        }
        for (index, decl) in circuit.inputs.iter().enumerate() {
            if decl.is_owned_by(peer) && lengths.0[index][peer].is_none() {
                return Err(net.protocol_error(
                    peer,
                    Step::Setup,
                    format!("declared no data for input `{}`", decl.name),
                ));
            }
        }
    }
    Ok(lengths)
}

/// Evaluate every local gate at `depth` (its operands are all ready), then
/// drop (and wipe) the values no later gate reads: a comparison's
/// intermediate bundles would otherwise all live until the job ends.
fn evaluate_local<P: Protocol>(protocol: &mut P, instance: &Instance, depth: usize, values: &mut [Option<Value>]) {
    for (id, gate) in instance.netlist.gates.iter().enumerate() {
        if gate.depth != depth || gate.interactive || values[id].is_some() {
            continue;
        }
        let value = match protocol.local_gate(instance, id, values) {
            Some(value) => value,
            None => match in_place(instance, id, values, protocol.public_parts()) {
                Some(value) => value,
                None => local_gate(instance, id, values, protocol.public_parts()),
            },
        };
        values[id] = Some(value);
    }
    for (id, last) in instance.last_use.iter().enumerate() {
        if *last <= depth {
            values[id] = None;
        }
    }
}

/// The common local gates on a secret first operand that this gate alone
/// reads, at the gate's width: its value is taken and updated in place
/// rather than copied (a comparison's carry circuit is mostly such XORs
/// and NOTs). `None` where that does not apply.
fn in_place(instance: &Instance, id: GateId, values: &mut [Option<Value>], public_parts: &[bool]) -> Option<Value> {
    let gates = &instance.netlist.gates;
    let gate = &gates[id];
    let width = gate.width();
    let sole = |g: GateId| instance.readers[g] == 1 && gates[g].secret && gates[g].width() == width;
    match gate.op {
        GateOp::Xor(a, b) if sole(a) && a != b => {
            let Some(Value::SecretBits(mut parts)) = values[a].take() else { unreachable!("a secret bundle") };
            match operand(values, b) {
                Value::SecretBits(other) => {
                    for (p, o) in parts.iter_mut().zip(other) {
                        p.xor_assign(&broadcast_bits(o, width));
                    }
                }
                Value::PublicBits(public) => {
                    let public = broadcast_bits(public, width);
                    for (p, enters) in parts.iter_mut().zip(public_parts) {
                        if *enters {
                            p.xor_assign(&public);
                        }
                    }
                }
                _ => unreachable!("a bits operand"),
            }
            Some(Value::SecretBits(parts))
        }
        GateOp::Not(a) if sole(a) => {
            let Some(Value::SecretBits(mut parts)) = values[a].take() else { unreachable!("a secret bundle") };
            for (p, enters) in parts.iter_mut().zip(public_parts) {
                if *enters {
                    p.not_assign();
                }
            }
            Some(Value::SecretBits(parts))
        }
        GateOp::Add(a, b) | GateOp::Sub(a, b) if sole(a) && a != b => {
            let Some(Value::Secret(mut parts)) = values[a].take() else { unreachable!("a secret ring value") };
            let sub = matches!(gate.op, GateOp::Sub(..));
            for (j, (p, enters)) in parts.iter_mut().zip(public_parts).enumerate() {
                let other: Cow<'_, [u64]> = match operand(values, b) {
                    Value::Secret(s) if s[j].len() == width => Cow::Borrowed(s[j].expose()),
                    Value::Secret(s) => Cow::Owned(broadcast_ring(s[j].expose(), width)),
                    Value::Public(v) if v.len() == width && *enters => Cow::Borrowed(v),
                    Value::Public(v) if *enters => Cow::Owned(broadcast_ring(v, width)),
                    Value::Public(_) => continue,
                    _ => unreachable!("a ring operand"),
                };
                if sub { ring::sub_assign(p.expose_mut(), &other) } else { ring::add_assign(p.expose_mut(), &other) }
            }
            Some(Value::Secret(parts))
        }
        _ => None,
    }
}

/// A gate that needs no communication: on public values, or component by
/// component on this party's shares. A public operand enters a component
/// of a sum (or XOR) only where `public_parts` says so, so that the
/// constant is added once to the secret; products with a public value
/// scale every component.
fn local_gate(instance: &Instance, id: GateId, values: &[Option<Value>], public_parts: &[bool]) -> Value {
    let gate = &instance.netlist.gates[id];
    if !gate.secret {
        return public_gate(instance, id, values);
    }
    match gate.kind {
        Kind::Ring => Value::Secret(
            public_parts.iter().enumerate().map(|(j, e)| ring_part(instance, id, values, j, *e)).collect(),
        ),
        Kind::Bits(_) => Value::SecretBits(
            public_parts.iter().enumerate().map(|(j, e)| bits_part(instance, id, values, j, *e)).collect(),
        ),
    }
}

fn operand(values: &[Option<Value>], g: GateId) -> &Value {
    values[g].as_ref().expect("operands are evaluated before their users")
}

/// A local gate whose operands are all public.
fn public_gate(instance: &Instance, id: GateId, values: &[Option<Value>]) -> Value {
    let gate = &instance.netlist.gates[id];
    let width = gate.width();
    let ring = |g: &GateId| broadcast_ring(operand(values, *g).public(), width);
    let bits = |g: &GateId| match operand(values, *g) {
        Value::PublicBits(b) => broadcast_bits(b, width),
        _ => unreachable!("a public bundle"),
    };
    match &gate.op {
        GateOp::Public(PublicValue::Ring(v)) => Value::Public(v.clone()),
        GateOp::Public(PublicValue::Bits(b)) => Value::PublicBits(b.clone()),
        GateOp::Add(a, b) => {
            let mut x = ring(a);
            ring::add_assign(&mut x, &ring(b));
            Value::Public(x)
        }
        GateOp::Sub(a, b) => {
            let mut x = ring(a);
            ring::sub_assign(&mut x, &ring(b));
            Value::Public(x)
        }
        GateOp::Neg(a) => {
            let mut x = ring(a);
            ring::neg_assign(&mut x);
            Value::Public(x)
        }
        GateOp::Mul(a, b) => {
            let mut x = ring(a);
            ring::mul_assign(&mut x, &ring(b));
            Value::Public(x)
        }
        // A public dividend divides exactly.
        GateOp::Div(a, division) => {
            Value::Public(ring(a).iter().map(|x| ring::floor_div(*x, division.divisor)).collect())
        }
        GateOp::Sum(a) => Value::Public(vec![ring::sum(operand(values, *a).public())]),
        GateOp::Concat(parts) => match gate.kind {
            Kind::Ring => Value::Public(parts.iter().flat_map(|p| operand(values, *p).public().to_vec()).collect()),
            Kind::Bits(_) => {
                let pieces: Vec<&Bits> = parts
                    .iter()
                    .map(|p| match operand(values, *p) {
                        Value::PublicBits(b) => b,
                        _ => unreachable!("a public bundle"),
                    })
                    .collect();
                Value::PublicBits(Bits::concat_elements(&pieces))
            }
        },
        GateOp::Strided { a, start, step, count } => {
            let v = operand(values, *a).public();
            Value::Public((0..*count).map(|k| v[start + k * step]).collect())
        }
        // Rewirings: the operands at their own widths.
        GateOp::Gather { a, indices } => Value::Public(gather(operand(values, *a).public(), indices)),
        GateOp::Pairs { a, stride, upper } => Value::Public(pairs(operand(values, *a).public(), *stride, *upper)),
        GateOp::Unpair { lo, hi, stride } => {
            Value::Public(unpair(operand(values, *lo).public(), operand(values, *hi).public(), *stride))
        }
        GateOp::Sort { key, columns, descending, ranks } => {
            let n = width / (columns.len() + usize::from(*ranks)).max(1);
            let key = broadcast_ring(operand(values, *key).public(), n);
            let mut sorted: Vec<u64> = columns
                .iter()
                .flat_map(|c| {
                    crate::program::plain::sort_by(&key, &broadcast_ring(operand(values, *c).public(), n), *descending)
                })
                .collect();
            if *ranks {
                sorted.extend(crate::program::plain::rank(&key, *descending));
            }
            Value::Public(sorted)
        }
        GateOp::Decompose(a) => Value::PublicBits(Bits::decompose(&ring(a), 64)),
        GateOp::Xor(a, b) | GateOp::And(a, b) => {
            let mut x = bits(a).into_owned();
            if matches!(gate.op, GateOp::Xor(..)) {
                x.xor_assign(&bits(b))
            } else {
                x.and_assign(&bits(b))
            }
            Value::PublicBits(x)
        }
        GateOp::Not(a) => {
            let mut x = bits(a).into_owned();
            x.not_assign();
            Value::PublicBits(x)
        }
        GateOp::Planes(a, indices) => Value::PublicBits(bits(a).gather(indices)),
        GateOp::Stack(parts) => {
            let pieces: Vec<Cow<'_, Bits>> = parts.iter().map(bits).collect();
            Value::PublicBits(Bits::concat(&pieces.iter().map(|p| p.as_ref()).collect::<Vec<_>>()))
        }
        GateOp::Inject(b, x) => {
            let bit = bits(b);
            let mut v = ring(x);
            keep_where_set(&mut v, &bit);
            Value::Public(v)
        }
        op => unreachable!("a public {op:?} gate"),
    }
}

/// Component `j` of a secret ring gate. `enters`: whether public operands
/// of sums enter this component.
fn ring_part(instance: &Instance, id: GateId, values: &[Option<Value>], j: usize, enters: bool) -> Share {
    let gates = &instance.netlist.gates;
    let gate = &gates[id];
    let width = gate.width();
    // An operand as this component of a `width`-element share.
    let part = |g: &GateId| -> Vec<u64> {
        match operand(values, *g) {
            Value::Secret(s) => broadcast_ring(s[j].expose(), width),
            Value::Public(p) if enters => broadcast_ring(p, width),
            Value::Public(_) => crate::memory::zeroed(width),
            _ => unreachable!("a ring operand"),
        }
    };
    let public = |g: &GateId| broadcast_ring(operand(values, *g).public(), width);
    // An operand as this component, at its own width.
    let own = |g: &GateId| -> Cow<'_, [u64]> {
        match operand(values, *g) {
            Value::Secret(s) => Cow::Borrowed(s[j].expose()),
            Value::Public(p) if enters => Cow::Borrowed(p),
            Value::Public(p) => Cow::Owned(crate::memory::zeroed(p.len())),
            _ => unreachable!("a ring operand"),
        }
    };
    let out = match &gate.op {
        GateOp::Add(a, b) => {
            let mut x = part(a);
            ring::add_assign(&mut x, &part(b));
            x
        }
        GateOp::Sub(a, b) => {
            let mut x = part(a);
            ring::sub_assign(&mut x, &part(b));
            x
        }
        GateOp::Neg(a) => {
            let mut x = part(a);
            ring::neg_assign(&mut x);
            x
        }
        GateOp::Mul(a, b) => {
            // One operand is public (secret-by-secret is interactive).
            let (s, p) = if gates[*a].secret { (a, b) } else { (b, a) };
            let mut x = part(s);
            ring::mul_assign(&mut x, &public(p));
            x
        }
        GateOp::Sum(a) => vec![ring::sum(operand(values, *a).shares()[j].expose())],
        GateOp::Concat(parts) => {
            let mut out = Vec::with_capacity(width);
            for p in parts {
                match operand(values, *p) {
                    Value::Secret(s) => out.extend_from_slice(s[j].expose()),
                    Value::Public(v) if enters => out.extend_from_slice(v),
                    Value::Public(v) => out.extend(std::iter::repeat_n(0, v.len())),
                    _ => unreachable!("a ring operand"),
                }
            }
            out
        }
        GateOp::Strided { a, start, step, count } => {
            let v = operand(values, *a).shares()[j].expose();
            (0..*count).map(|k| v[start + k * step]).collect()
        }
        // Rewirings: the operands at their own widths.
        GateOp::Gather { a, indices } => gather(&own(a), indices),
        GateOp::Pairs { a, stride, upper } => pairs(&own(a), *stride, *upper),
        GateOp::Unpair { lo, hi, stride } => unpair(&own(lo), &own(hi), *stride),
        GateOp::Inject(b, x) => {
            // A public bit: keep `x` where it is set.
            let bit = match operand(values, *b) {
                Value::PublicBits(bit) => broadcast_bits(bit, width),
                _ => unreachable!("a secret bit injection is interactive"),
            };
            let mut v = part(x);
            keep_where_set(&mut v, &bit);
            v
        }
        op => unreachable!("a secret local ring gate {op:?}"),
    };
    Share::new(out)
}

/// Component `j` of a secret bundle gate.
fn bits_part(instance: &Instance, id: GateId, values: &[Option<Value>], j: usize, enters: bool) -> Bits {
    let gate = &instance.netlist.gates[id];
    let width = gate.width();
    // An operand as this component (public bits where they enter, zeros
    // elsewhere), borrowed unless a scalar is broadcast.
    let part = |g: &GateId| -> Cow<'_, Bits> {
        match operand(values, *g) {
            Value::SecretBits(b) => broadcast_bits(&b[j], width),
            Value::PublicBits(b) if enters => broadcast_bits(b, width),
            Value::PublicBits(b) => Cow::Owned(Bits::zeros(b.width(), width)),
            _ => unreachable!("a bits operand"),
        }
    };
    // For a product: the secret operand's component, the public one whole.
    let factor = |g: &GateId| -> Cow<'_, Bits> {
        match operand(values, *g) {
            Value::SecretBits(b) => broadcast_bits(&b[j], width),
            Value::PublicBits(b) => broadcast_bits(b, width),
            _ => unreachable!("a bits operand"),
        }
    };
    match &gate.op {
        GateOp::Xor(a, b) => {
            let mut x = part(a).into_owned();
            x.xor_assign(&part(b));
            x
        }
        GateOp::And(a, b) => {
            // One operand is public: AND with it is local in XOR sharing.
            let mut x = factor(a).into_owned();
            x.and_assign(&factor(b));
            x
        }
        GateOp::Not(a) => {
            let mut x = part(a).into_owned();
            if enters {
                x.not_assign();
            }
            x
        }
        GateOp::Planes(a, indices) => operand(values, *a).bit_shares()[j].gather(indices),
        GateOp::Stack(parts) => {
            let pieces: Vec<Cow<'_, Bits>> = parts.iter().map(part).collect();
            Bits::concat(&pieces.iter().map(|p| p.as_ref()).collect::<Vec<_>>())
        }
        GateOp::Concat(parts) => {
            let pieces: Vec<Cow<'_, Bits>> = parts
                .iter()
                .map(|p| match operand(values, *p) {
                    Value::SecretBits(b) => Cow::Borrowed(&b[j]),
                    Value::PublicBits(b) if enters => Cow::Borrowed(b),
                    Value::PublicBits(b) => Cow::Owned(Bits::zeros(b.width(), b.len())),
                    _ => unreachable!("a bits operand"),
                })
                .collect();
            Bits::concat_elements(&pieces.iter().map(|p| p.as_ref()).collect::<Vec<_>>())
        }
        op => unreachable!("a secret local bits gate {op:?}"),
    }
}

/// `v[indices[k]]` at `k`.
fn gather(v: &[u64], indices: &[u32]) -> Vec<u64> {
    indices.iter().map(|i| v[*i as usize]).collect()
}

/// The elements `x` of `v` with `x & stride == 0` (or `x + stride` for
/// each, `upper`), in order ([`GateOp::Pairs`]).
fn pairs(v: &[u64], stride: usize, upper: bool) -> Vec<u64> {
    let offset = if upper { stride } else { 0 };
    let mut out = Vec::with_capacity(v.len() / 2);
    for block in v.chunks_exact(2 * stride) {
        out.extend_from_slice(&block[offset..offset + stride]);
    }
    out
}

/// The inverse of [`pairs`]: `lo` and `hi` back at `x` and `x + stride`.
fn unpair(lo: &[u64], hi: &[u64], stride: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(2 * lo.len());
    for (l, h) in lo.chunks_exact(stride).zip(hi.chunks_exact(stride)) {
        out.extend_from_slice(l);
        out.extend_from_slice(h);
    }
    out
}

/// Zero the elements of `v` whose bit in the one-plane `bit` is clear.
fn keep_where_set(v: &mut [u64], bit: &Bits) {
    for (i, v) in v.iter_mut().enumerate() {
        if !bit.get(0, i) {
            *v = 0;
        }
    }
}

/// Step 4's result at this party: public outputs as they are, secret ones
/// as the protocol revealed them.
fn outputs_of(
    instance: &Instance,
    circuit: &Circuit,
    me: PartyIndex,
    values: &[Option<Value>],
    revealed: Vec<Option<Secret>>,
) -> Vec<OutputValue> {
    circuit
        .outputs
        .iter()
        .zip(revealed)
        .map(|(output, revealed)| {
            let gate = instance.gate_of(output.value);
            let value = match &values[instance.node_gate[output.value]] {
                _ if !output.recipients.contains(&me) => None,
                Some(Value::Public(v)) => Some(Secret::new(v.clone())),
                Some(Value::PublicBits(b)) => Some(Secret::new(bools_of(b))),
                Some(_) => revealed,
                None => unreachable!("outputs are evaluated"),
            };
            OutputValue { name: output.name.clone(), elem: output.elem, is_vector: gate.len.is_some(), value }
        })
        .collect()
}

/// A ring value as `width` elements (a scalar repeated).
pub fn broadcast_ring(v: &[u64], width: usize) -> Vec<u64> {
    if v.len() == width { v.to_vec() } else { vec![v[0]; width] }
}

/// A bundle over `width` elements (a one-element bundle repeated).
pub fn broadcast_bits(b: &Bits, width: usize) -> Cow<'_, Bits> {
    if b.len() == width { Cow::Borrowed(b) } else { Cow::Owned(b.repeat(width)) }
}

/// A one-plane bundle as ring elements 0 and 1.
pub fn bools_of(b: &Bits) -> Vec<u64> {
    (0..b.len()).map(|i| u64::from(b.get(0, i))).collect()
}

/// Step 4 for protocols where a secret is the sum (or XOR) of
/// components: each party sends component `part_for(r)` of every secret
/// output to each of its recipients `r` (if `Some`), and a recipient adds
/// its own components to what it receives from `senders_to(r)`. Additive
/// sharing sends its one component to every recipient; replicated sharing
/// has one neighbour send the component the recipient lacks.
pub async fn reveal_by_parts(
    net: &mut Net<'_>,
    instance: &Instance,
    circuit: &Circuit,
    values: &[Option<Value>],
    part_for: impl Fn(PartyIndex) -> Option<usize>,
    senders_to: impl Fn(PartyIndex) -> Vec<PartyIndex>,
) -> Result<Vec<Option<Secret>>, JobError> {
    let me = net.me;
    let mut messages = vec![Vec::new(); net.n];
    for output in &circuit.outputs {
        for &r in output.recipients.iter().filter(|r| **r != me) {
            let Some(j) = part_for(r) else { continue };
            match &values[instance.node_gate[output.value]] {
                Some(Value::Secret(parts)) => ring::extend_le_bytes(&mut messages[r], parts[j].expose()),
                Some(Value::SecretBits(parts)) => ring::extend_le_bytes(&mut messages[r], parts[j].words()),
                _ => {}
            }
        }
    }
    let senders = senders_to(me);
    // Every party this one sends to expects a message, empty or not.
    let sends: Vec<(usize, Arc<Vec<u8>>)> = net
        .peers()
        .filter(|p| senders_to(*p).contains(&me))
        .map(|p| (p, Arc::new(std::mem::take(&mut messages[p]))))
        .collect();
    let sent: Vec<Arc<Vec<u8>>> = sends.iter().map(|(_, m)| m.clone()).collect();
    let received = net.round(Step::Output, sends, &senders).await?;
    let mut offsets = vec![0usize; net.n];
    let mut revealed = Vec::with_capacity(circuit.outputs.len());
    for output in &circuit.outputs {
        let value = &values[instance.node_gate[output.value]];
        let secret = matches!(value, Some(Value::Secret(_)) | Some(Value::SecretBits(_)));
        if !secret || !output.recipients.contains(&me) {
            revealed.push(None);
            continue;
        }
        let (mut sum, xor) = match value {
            Some(Value::Secret(parts)) => {
                let mut sum = parts[0].expose().to_vec();
                parts[1..].iter().for_each(|p| ring::add_assign(&mut sum, p.expose()));
                (sum, false)
            }
            Some(Value::SecretBits(parts)) => {
                let mut sum = parts[0].words().to_vec();
                parts[1..].iter().for_each(|p| sum.iter_mut().zip(p.words()).for_each(|(a, b)| *a ^= b));
                (sum, true)
            }
            _ => unreachable!("a secret output"),
        };
        for &peer in &senders {
            let msg = &received[peer];
            let range = offsets[peer]..offsets[peer] + 8 * sum.len();
            let theirs = msg.get(range).and_then(ring::from_le_bytes).map(crate::memory::Wiped).ok_or_else(|| {
                net.protocol_error(peer, Step::Output, format!("output message too short for `{}`", output.name))
            })?;
            if xor {
                sum.iter_mut().zip(theirs.iter()).for_each(|(a, b)| *a ^= b);
            } else {
                ring::add_assign(&mut sum, &theirs);
            }
            offsets[peer] += 8 * sum.len();
        }
        let width = instance.gate_of(output.value).width();
        revealed.push(Some(if xor {
            let bits = Bits::from_words(1, width, sum).expect("one plane of the output's width");
            Secret::new(bools_of(&bits))
        } else {
            Secret::new(sum)
        }));
    }
    for &peer in &senders {
        if offsets[peer] != received[peer].len() {
            return Err(net.protocol_error(peer, Step::Output, "sent output shares this party is not entitled to"));
        }
    }
    // Output messages are shares until combined: wipe them.
    net.wipe(received, sent);
    Ok(revealed)
}
