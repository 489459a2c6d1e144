//! One party's execution of a job over the mesh.

use super::netlist::{GateId, GateOp, Kind, PublicValue};
use super::plan::{InputLengths, Instance, PlanError, Quotients};
use crate::fixed::{self, EncodeError, FixedPoint};
use crate::gf2::{Bits, Packed, words_for};
use crate::preprocessing::{MaterialPlan, MaterialSource, MaterialTag, PreprocessingError};
use crate::prg::Seed;
use crate::program::ir::{Circuit, ElemType, PartyIndex};
use crate::protocol::division::{CORRECTION_DIVISOR, Division};
use crate::protocol::{beaver, boolean, conversion};
use crate::ring;
use crate::sharing::{self, Secret, Share};
use crate::transport::{Mesh, Step, TransportError};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
}

impl ExecuteOptions {
    pub fn new(consent_digest: [u8; 32]) -> ExecuteOptions {
        ExecuteOptions {
            consent_digest,
            job_timeout: Duration::from_secs(600),
            max_vector_len: 1 << 27,
            quotients: Quotients::Exact,
        }
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
enum Value {
    /// Ring elements every party knows.
    Public(Vec<u64>),
    /// This party's additive shares.
    Secret(Share),
    /// A bundle every party knows.
    PublicBits(Bits),
    /// This party's XOR shares of a bundle.
    SecretBits(Bits),
}

/// Run `circuit` as this party of `mesh`. `provide` is called once, after
/// setup, with the job's material plan, and returns this party's material
/// source (e.g. its stream from a dealer).
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
    let mut job = Job {
        mesh,
        circuit,
        me: mesh.self_index(),
        n: mesh.party_count(),
        rounds: 0,
        deadline: Instant::now() + options.job_timeout,
        limit: options.job_timeout,
        pending: BTreeMap::new(),
        mask_bits: BTreeMap::new(),
    };
    // One span per phase, children of the caller's (the job's) span. Their
    // fields are public by the protocol: counts and sizes, never values.
    async move {
        check_own_inputs(circuit, job.me, inputs)?;
        let lengths = job.setup(inputs, options).instrument(info_span!("setup")).await?;

        let instance = Instance::with_quotients(circuit, &lengths, options.quotients)?;
        let plan = &instance.plan;
        let span = info_span!(
            "preprocessing",
            layers = instance.depth(),
            material.triples = plan.total_triples(),
            material.div_pairs = plan.total_div_pairs()
        );
        let mut source =
            provide(plan.clone()).instrument(span).await.map_err(|source| preprocessing_failed(Step::Setup, source))?;
        let mut values: Vec<Option<Value>> = (0..instance.netlist.gates.len()).map(|_| None).collect();
        let span = info_span!("input", inputs = inputs.0.len());
        job.share_inputs(&instance, inputs, &mut values).instrument(span).await?;

        for layer in 0..instance.depth() {
            let l = &instance.layers[layer];
            let span = info_span!(
                "online.layer",
                layer = layer + 1,
                multiplications = l.muls.len(),
                divisions = l.divs.iter().map(|(_, nodes)| nodes.len()).sum::<usize>(),
                ands = l.ands.len(),
                conversions = l.opens.len() + l.injects.len(),
                material.triples = field::Empty,
                material.div_pairs = field::Empty,
                opened = field::Empty,
            );
            async {
                job.evaluate_local(&instance, layer, &mut values)?;
                job.run_layer(&instance, layer, &mut source, &mut values).await
            }
            .instrument(span)
            .await?;
        }
        job.evaluate_local(&instance, instance.depth(), &mut values)?;
        let span = info_span!("output", outputs = circuit.outputs.len());
        let outputs = job.deliver_outputs(&instance, &mut values).instrument(span).await?;

        let stats = JobStats {
            rounds: job.rounds,
            layers: instance.depth() as u32,
            bytes_sent: mesh.bytes_sent(),
            triples_used: instance.plan.total_triples() as u64,
            div_pairs_used: instance.plan.total_div_pairs() as u64,
            protocol_version: mesh.protocol_version(),
        };
        debug!(rounds = stats.rounds, bytes_sent = stats.bytes_sent, "job finished");
        Ok(JobOutput { outputs, stats })
    }
    .await
}

/// Check a layer's division pairs against what the layer will use: one
/// group per divisor with the planned count, and `g` exactly for the
/// divisions that take the correction round. Material made for the other
/// construction is an error here, never a wrong result.
fn check_div_material(
    layer: &super::plan::Layer,
    planned: &[(u64, usize)],
    pairs: &[crate::preprocessing::DivPairShares],
) -> Result<(), PreprocessingError> {
    let mismatch = |what: String| PreprocessingError::Mismatch(what);
    if pairs.len() != layer.divs.len() || planned.len() != layer.divs.len() {
        return Err(mismatch(format!("{} divisor groups, the layer uses {}", pairs.len(), layer.divs.len())));
    }
    for (((division, _), &(_, count)), p) in layer.divs.iter().zip(planned).zip(pairs) {
        let d = division.divisor;
        if p.divisor != d || [&p.r, &p.msb, &p.q].iter().any(|s| s.len() != count) {
            return Err(mismatch(format!(
                "the division pairs for {} do not match the {count} planned for {d}",
                p.divisor
            )));
        }
        let expected_g = if division.corrected() { count } else { 0 };
        if p.g.len() != expected_g {
            return Err(mismatch(format!(
                "division pairs for {d} with {} correction values, expected {expected_g} (material made for another \
                 preprocessing mode?)",
                p.g.len()
            )));
        }
    }
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

/// Per-job state of the party.
struct Job<'a> {
    mesh: &'a Mesh,
    circuit: &'a Circuit,
    me: PartyIndex,
    n: usize,
    rounds: u32,
    deadline: Instant,
    limit: Duration,
    /// Divisions between their two rounds: this party's shares of `y1`
    /// and `V` (see `protocol::division`).
    pending: BTreeMap<GateId, (Share, Share)>,
    /// The bits of each masked opening's edaBit, from its layer until the
    /// gate that reads them.
    mask_bits: BTreeMap<GateId, Bits>,
}

const SETUP_VERSION: u8 = 1;

impl Job<'_> {
    fn peers(&self) -> impl Iterator<Item = usize> + use<> {
        let me = self.me;
        (0..self.n).filter(move |p| *p != me)
    }

    fn protocol_error(&self, party: usize, step: Step, reason: impl Into<String>) -> JobError {
        JobError::Protocol { party: self.mesh.party_name(party).to_string(), step, reason: reason.into() }
    }

    /// The same message for every peer (shared, never copied per peer).
    fn to_every_peer(&self, message: Arc<Vec<u8>>) -> Vec<Arc<Vec<u8>>> {
        vec![message; self.n]
    }

    /// One message per peer (`messages[p]` for peer `p`).
    fn per_peer(messages: Vec<Vec<u8>>) -> Vec<Arc<Vec<u8>>> {
        messages.into_iter().map(Arc::new).collect()
    }

    /// One round: send `messages[p]` to every peer `p` and receive one
    /// message from each, concurrently (so large messages cannot deadlock),
    /// all within the job's deadline.
    async fn exchange(&mut self, step: Step, messages: Vec<Arc<Vec<u8>>>) -> Result<Vec<Vec<u8>>, JobError> {
        self.rounds += 1;
        let mesh = self.mesh;
        let peers: Vec<usize> = self.peers().collect();
        let sends = async {
            for p in &peers {
                mesh.send_shared(*p, step, messages[*p].clone()).await?;
            }
            Ok::<(), TransportError>(())
        };
        let recvs = async {
            let mut received = vec![Vec::new(); self.n];
            for p in &peers {
                received[*p] = mesh.recv(*p, step).await?;
            }
            Ok::<Vec<Vec<u8>>, TransportError>(received)
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, async { tokio::join!(sends, recvs) }).await {
            Err(_) => Err(JobError::Deadline { limit: self.limit, step }),
            Ok((sent, received)) => {
                sent?;
                Ok(received?)
            }
        }
    }

    /// Step 1: agree on the job and learn every input's length.
    async fn setup(&mut self, inputs: &OwnInputs, options: &ExecuteOptions) -> Result<InputLengths, JobError> {
        let mut mine = Vec::with_capacity(1 + 32 + 4 + 8 * inputs.0.len());
        mine.push(SETUP_VERSION);
        mine.extend_from_slice(&options.consent_digest);
        mine.extend_from_slice(&(inputs.0.len() as u32).to_le_bytes());
        for (index, values) in &inputs.0 {
            mine.extend_from_slice(&(*index as u32).to_le_bytes());
            mine.extend_from_slice(&(values.len() as u64).to_le_bytes());
        }
        let received = self.exchange(Step::Setup, self.to_every_peer(Arc::new(mine))).await?;

        let mut lengths = InputLengths(vec![vec![None; self.n]; self.circuit.inputs.len()]);
        for (index, values) in &inputs.0 {
            lengths.0[*index][self.me] = Some(values.len());
        }
        for peer in self.peers() {
            let msg = &received[peer];
            let bad = |reason: &str| self.protocol_error(peer, Step::Setup, reason.to_string());
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
                let Some(decl) = self.circuit.inputs.get(index) else {
                    return Err(bad("declared an input the program does not have"));
                };
                if !decl.is_owned_by(peer) {
                    return Err(self.protocol_error(
                        peer,
                        Step::Setup,
                        format!("declared input `{}`, which it does not own", decl.name),
                    ));
                }
                if len > options.max_vector_len as u64 {
                    return Err(self.protocol_error(
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
            for (index, decl) in self.circuit.inputs.iter().enumerate() {
                if decl.is_owned_by(peer) && lengths.0[index][peer].is_none() {
                    return Err(self.protocol_error(
                        peer,
                        Step::Setup,
                        format!("declared no data for input `{}`", decl.name),
                    ));
                }
            }
        }
        Ok(lengths)
    }

    /// Step 2: secret-share every input (PRG-seed compressed: one seed per
    /// input per receiving party). Ring inputs are shared additively, bool
    /// inputs by XOR.
    async fn share_inputs(
        &mut self,
        instance: &Instance,
        inputs: &OwnInputs,
        values: &mut [Option<Value>],
    ) -> Result<(), JobError> {
        let input_gates: Vec<(GateId, usize, PartyIndex)> = instance
            .netlist
            .gates
            .iter()
            .enumerate()
            .filter_map(|(id, gate)| match gate.op {
                GateOp::Input { input, party } => Some((id, input, party)),
                _ => None,
            })
            .collect();
        let mut messages = vec![Vec::new(); self.n];
        for (id, input, party) in &input_gates {
            if *party != self.me {
                continue;
            }
            let seeds: Vec<Seed> = self.peers().map(|_| Seed::random()).collect::<Result<_, _>>().map_err(|e| {
                JobError::Input { input: self.circuit.inputs[*input].name.clone(), reason: e.to_string() }
            })?;
            for (peer, seed) in self.peers().zip(&seeds) {
                messages[peer].extend_from_slice(seed.as_bytes());
            }
            let secret = inputs.0.get(input).expect("checked before setup");
            values[*id] = Some(match instance.netlist.gates[*id].kind {
                Kind::Ring => Value::Secret(sharing::share_with_seeds(secret, &seeds)),
                Kind::Bits(_) => {
                    let bools: Vec<bool> = secret.expose().iter().map(|v| *v & 1 == 1).collect();
                    let mut mine = Bits::from_bools(&bools);
                    for seed in &seeds {
                        mine.xor_assign(&bits_from_seed(seed, bools.len()));
                    }
                    Value::SecretBits(mine)
                }
            });
        }
        let received = self.exchange(Step::Input, Self::per_peer(messages)).await?;
        for peer in self.peers() {
            let owned: Vec<GateId> = input_gates.iter().filter(|(_, _, p)| *p == peer).map(|(id, _, _)| *id).collect();
            let msg = &received[peer];
            if msg.len() != owned.len() * 16 {
                return Err(self.protocol_error(
                    peer,
                    Step::Input,
                    format!("expected {} input seeds, got {} bytes", owned.len(), msg.len()),
                ));
            }
            for (id, seed) in owned.iter().zip(msg.chunks_exact(16)) {
                let seed = Seed::from_bytes(seed.try_into().expect("16 bytes"));
                let gate = &instance.netlist.gates[*id];
                values[*id] = Some(match gate.kind {
                    Kind::Ring => Value::Secret(sharing::share_from_seed(&seed, gate.width())),
                    Kind::Bits(_) => Value::SecretBits(bits_from_seed(&seed, gate.width())),
                });
            }
        }
        Ok(())
    }

    /// Evaluate every local gate at `depth` (its operands are all ready).
    fn evaluate_local(
        &mut self,
        instance: &Instance,
        depth: usize,
        values: &mut [Option<Value>],
    ) -> Result<(), JobError> {
        for (id, gate) in instance.netlist.gates.iter().enumerate() {
            if gate.depth != depth || gate.interactive || values[id].is_some() {
                continue;
            }
            let value = match gate.op {
                // Read once: the edaBit's bits leave the map with it.
                GateOp::MaskBits(open) => Value::SecretBits(
                    self.mask_bits.remove(&open).expect("the opening ran in an earlier layer and is read once"),
                ),
                _ => self.local_gate(instance, id, values),
            };
            values[id] = Some(value);
        }
        // Values no later gate reads are dropped (and wiped) now: a
        // comparison's intermediate bundles would otherwise all live until
        // the job ends.
        for (id, last) in instance.last_use.iter().enumerate() {
            if *last <= depth {
                values[id] = None;
            }
        }
        Ok(())
    }

    /// A gate that needs no communication, on public values or on this
    /// party's shares. A public value enters a share as itself at party 0
    /// and as zero elsewhere, so that the shares still sum (or XOR)
    /// correctly.
    fn local_gate(&self, instance: &Instance, id: GateId, values: &[Option<Value>]) -> Value {
        let first = self.me == 0;
        let gates = &instance.netlist.gates;
        let gate = &gates[id];
        let width = gate.width();
        let get = |g: &GateId| values[*g].as_ref().expect("operands are evaluated before their users");
        let public_ring = |g: &GateId| match get(g) {
            Value::Public(p) => broadcast_ring(p, width),
            _ => unreachable!("a public operand"),
        };
        // An operand as this party's share of a `width`-element value.
        let ring_share = |g: &GateId| -> Share {
            match get(g) {
                Value::Secret(s) => Share::new(broadcast_ring(s.expose(), width)),
                Value::Public(_) if first => Share::new(public_ring(g)),
                Value::Public(_) => Share::zeros(width),
                _ => unreachable!("a ring operand"),
            }
        };
        // Borrowed unless a scalar is broadcast.
        let bits_of = |g: &GateId| -> (Cow<'_, Bits>, bool) {
            match get(g) {
                Value::SecretBits(b) => (broadcast_bits(b, width), true),
                Value::PublicBits(b) => (broadcast_bits(b, width), false),
                _ => unreachable!("a bits operand"),
            }
        };
        // As a share: public bits at party 0, zeros elsewhere.
        let bits_share = |g: &GateId| -> Cow<'_, Bits> {
            let (b, secret) = bits_of(g);
            if secret || first { b } else { Cow::Owned(Bits::zeros(b.width(), width)) }
        };
        let secret = gate.secret;
        match &gate.op {
            GateOp::Public(PublicValue::Ring(v)) => Value::Public(v.clone()),
            GateOp::Public(PublicValue::Bits(b)) => Value::PublicBits(b.clone()),
            GateOp::Add(a, b) | GateOp::Sub(a, b) => {
                let sub = matches!(gate.op, GateOp::Sub(..));
                if !secret {
                    let (mut x, y) = (public_ring(a), public_ring(b));
                    if sub {
                        ring::sub_assign(&mut x, &y)
                    } else {
                        ring::add_assign(&mut x, &y)
                    }
                    return Value::Public(x);
                }
                let mut x = ring_share(a);
                let y = ring_share(b);
                if sub {
                    ring::sub_assign(x.expose_mut(), y.expose())
                } else {
                    ring::add_assign(x.expose_mut(), y.expose())
                }
                Value::Secret(x)
            }
            GateOp::Neg(a) => {
                if !secret {
                    let mut x = public_ring(a);
                    ring::neg_assign(&mut x);
                    return Value::Public(x);
                }
                let mut x = ring_share(a);
                ring::neg_assign(x.expose_mut());
                Value::Secret(x)
            }
            GateOp::Mul(a, b) => {
                // At most one operand is secret (secret-by-secret is interactive).
                let (s, p) = if gates[*a].secret { (a, b) } else { (b, a) };
                let public = public_ring(p);
                if !secret {
                    let mut x = public_ring(s);
                    ring::mul_assign(&mut x, &public);
                    return Value::Public(x);
                }
                let mut x = ring_share(s);
                ring::mul_assign(x.expose_mut(), &public);
                Value::Secret(x)
            }
            GateOp::Div(a, division) => {
                // Interactive when secret; a public dividend divides exactly.
                Value::Public(public_ring(a).iter().map(|x| ring::floor_div(*x, division.divisor)).collect())
            }
            GateOp::Sum(a) => match get(a) {
                Value::Secret(s) => Value::Secret(Share::new(vec![ring::sum(s.expose())])),
                Value::Public(p) => Value::Public(vec![ring::sum(p)]),
                _ => unreachable!("a ring operand"),
            },
            GateOp::Concat(parts) => match gate.kind {
                Kind::Ring => {
                    let mut out = Vec::with_capacity(width);
                    for p in parts {
                        match get(p) {
                            Value::Secret(s) => out.extend_from_slice(s.expose()),
                            Value::Public(v) if first || !secret => out.extend_from_slice(v),
                            Value::Public(v) => out.extend(std::iter::repeat_n(0, v.len())),
                            _ => unreachable!("a ring operand"),
                        }
                    }
                    if secret { Value::Secret(Share::new(out)) } else { Value::Public(out) }
                }
                Kind::Bits(_) => {
                    let pieces: Vec<Bits> = parts
                        .iter()
                        .map(|p| match get(p) {
                            Value::SecretBits(b) => b.clone(),
                            Value::PublicBits(b) if first || !secret => b.clone(),
                            Value::PublicBits(b) => Bits::zeros(b.width(), b.len()),
                            _ => unreachable!("a bits operand"),
                        })
                        .collect();
                    let joined = Bits::concat_elements(&pieces.iter().collect::<Vec<_>>());
                    if secret { Value::SecretBits(joined) } else { Value::PublicBits(joined) }
                }
            },
            GateOp::Strided { a, start, step, count } => {
                let pick = |v: &[u64]| -> Vec<u64> { (0..*count).map(|k| v[start + k * step]).collect() };
                match get(a) {
                    Value::Secret(s) => Value::Secret(Share::new(pick(s.expose()))),
                    Value::Public(p) => Value::Public(pick(p)),
                    _ => unreachable!("a ring operand"),
                }
            }
            GateOp::Decompose(a) => Value::PublicBits(Bits::decompose(&public_ring(a), 64)),
            GateOp::MaskBits(open) => {
                unreachable!("masked bits of opening {open} are taken in evaluate_local")
            }
            GateOp::Xor(a, b) => {
                if !secret {
                    let mut x = bits_of(a).0.into_owned();
                    x.xor_assign(&bits_of(b).0);
                    return Value::PublicBits(x);
                }
                let mut x = bits_share(a).into_owned();
                x.xor_assign(&bits_share(b));
                Value::SecretBits(x)
            }
            GateOp::And(a, b) => {
                // At most one operand is secret: AND with a public bundle is
                // local in XOR sharing.
                let mut x = bits_of(a).0.into_owned();
                x.and_assign(&bits_of(b).0);
                if secret { Value::SecretBits(x) } else { Value::PublicBits(x) }
            }
            GateOp::Not(a) => {
                let (x, is_secret) = bits_of(a);
                let mut x = x.into_owned();
                if !is_secret || first {
                    x.not_assign();
                }
                if secret { Value::SecretBits(x) } else { Value::PublicBits(x) }
            }
            GateOp::Planes(a, indices) => match get(a) {
                Value::SecretBits(b) => Value::SecretBits(b.gather(indices)),
                Value::PublicBits(b) => Value::PublicBits(b.gather(indices)),
                _ => unreachable!("a bits operand"),
            },
            GateOp::Stack(parts) => {
                let pieces: Vec<Cow<'_, Bits>> =
                    parts.iter().map(|p| if secret { bits_share(p) } else { bits_of(p).0 }).collect();
                let stacked = Bits::concat(&pieces.iter().map(|p| p.as_ref()).collect::<Vec<_>>());
                if secret { Value::SecretBits(stacked) } else { Value::PublicBits(stacked) }
            }
            GateOp::Inject(b, x) => {
                // A public bit: keep `x` where it is set.
                let (bit, _) = bits_of(b);
                let keep = |v: &mut [u64]| {
                    for (i, v) in v.iter_mut().enumerate() {
                        if !bit.get(0, i) {
                            *v = 0;
                        }
                    }
                };
                if !secret {
                    let mut v = public_ring(x);
                    keep(&mut v);
                    return Value::Public(v);
                }
                let mut v = ring_share(x);
                keep(v.expose_mut());
                Value::Secret(v)
            }
            GateOp::Input { .. } | GateOp::MaskedOpen(_) => unreachable!("not a local gate"),
        }
    }

    /// Step 3, one layer: mask, open everything in one round, finish.
    ///
    /// The opening message is `[tag]`, then ring elements (summed when
    /// opened): `[d for every Beaver product][e for every Beaver product]
    /// [c for every division][c for every masked opening]`, then words
    /// (XORed when opened): `[d for every AND][e for every AND][e for every
    /// injection]`, all little-endian `u64`s. The Beaver products are the
    /// layer's multiplications, then its injections of a secret bit into a
    /// secret value (`s·x` with the daBit's arithmetic share `s`).
    async fn run_layer<S: MaterialSource>(
        &mut self,
        instance: &Instance,
        index: usize,
        source: &mut S,
        values: &mut [Option<Value>],
    ) -> Result<(), JobError> {
        let layer = &instance.layers[index];
        let gates = &instance.netlist.gates;
        let step = Step::Layer(index as u32 + 1);
        let first = self.me == 0;
        let demand = &instance.plan.layers[index];
        let mut material =
            source.next_layer(index, demand).await.map_err(|source| preprocessing_failed(step, source))?;
        check_div_material(layer, &demand.div_pairs, &material.div_pairs)
            .and_then(|()| check_binary_material(demand, &material))
            .map_err(|source| JobError::Preprocessing { step, source })?;
        // A kind a layer uses on empty vectors only comes as an empty
        // default: give it its planes, so that zero-element slices match.
        if material.edabits.bits.is_empty() {
            material.edabits.bits = Bits::zeros(64, 0);
        }
        if material.dabits.bits.is_empty() {
            material.dabits.bits = Bits::zeros(1, 0);
        }
        let triples = material.triples.a.len();
        let div_count: usize = material.div_pairs.iter().map(|p| p.r.len()).sum();
        let open_count = material.edabits.r.len();
        let and_words = material.bit_triples.words();
        let inject_words: usize = layer.injects.iter().map(|id| words_for(gates[*id].width())).sum();
        let ring_len = 2 * triples + div_count + open_count;
        let message_len = 8 * (1 + ring_len + 2 * and_words + inject_words);
        let span = tracing::Span::current();
        span.record("material.triples", triples);
        span.record("material.div_pairs", div_count);
        span.record("opened", ring_len + 64 * (2 * and_words + inject_words));
        for peer in self.peers() {
            self.mesh.expect_message(peer, step, message_len);
        }

        // Operands, broadcast to the gate's width.
        let ring_at = |v: GateId, width: usize| -> std::borrow::Cow<'_, Share> {
            match values[v].as_ref().expect("operand ready") {
                Value::Secret(s) if s.len() == width => std::borrow::Cow::Borrowed(s),
                // A scalar broadcast over a vector: a copy, wiped on drop.
                Value::Secret(s) => std::borrow::Cow::Owned(Share::new(vec![s.expose()[0]; width])),
                _ => unreachable!("interactive ring operands are secret"),
            }
        };
        let bits_at = |v: GateId, width: usize| -> Cow<'_, Bits> {
            match values[v].as_ref().expect("operand ready") {
                Value::SecretBits(b) => broadcast_bits(b, width),
                _ => unreachable!("interactive bit operands are secret"),
            }
        };
        let secret_injections: Vec<GateId> = layer
            .injects
            .iter()
            .copied()
            .filter(|id| matches!(gates[*id].op, GateOp::Inject(_, x) if gates[x].secret))
            .collect();
        // The daBits of the layer's injections, by gate, in order.
        let mut dabit_offsets = BTreeMap::new();
        let mut offset = 0;
        for &id in &layer.injects {
            dabit_offsets.insert(id, offset);
            offset += gates[id].width();
        }

        // Mask: the ring section.
        let mut payload = self.mesh.take_buffer(message_len);
        payload.extend_from_slice(&material.tag.0.to_le_bytes());
        for operand in [0, 1] {
            let (mut offset, t) = (0, &material.triples);
            let mask = if operand == 0 { &t.a } else { &t.b };
            for &id in &layer.muls {
                let GateOp::Mul(x, y) = gates[id].op else { unreachable!() };
                let w = gates[id].width();
                let v = if operand == 0 { x } else { y };
                beaver::mask_into(ring_at(v, w).expose(), &mask.expose()[offset..offset + w], &mut payload);
                offset += w;
            }
            for &id in &secret_injections {
                let GateOp::Inject(_, x) = gates[id].op else { unreachable!() };
                let w = gates[id].width();
                let at = dabit_offsets[&id];
                let s = &material.dabits.arith.expose()[at..at + w];
                let v = if operand == 0 {
                    std::borrow::Cow::Borrowed(s)
                } else {
                    std::borrow::Cow::Owned(ring_at(x, w).expose().to_vec())
                };
                beaver::mask_into(&v, &mask.expose()[offset..offset + w], &mut payload);
                offset += w;
            }
        }
        let mut ring_tail = Vec::with_capacity(div_count + open_count);
        for ((division, nodes), pairs) in layer.divs.iter().zip(&material.div_pairs) {
            let mut offset = 0;
            for &id in nodes {
                let GateOp::Div(x, _) = gates[id].op else { unreachable!() };
                let w = gates[id].width();
                division.mask(ring_at(x, w).expose(), &pairs.r.expose()[offset..offset + w], first, &mut ring_tail);
                offset += w;
            }
            if division.divisor == CORRECTION_DIVISOR {
                for id in &layer.corrections {
                    let w = gates[*id].width();
                    let (_, v) = self.pending.get(id).expect("the first round ran in the layer before");
                    division.mask(v.expose(), &pairs.r.expose()[offset..offset + w], first, &mut ring_tail);
                    offset += w;
                }
            }
        }
        let mut offset = 0;
        for &id in &layer.opens {
            let GateOp::MaskedOpen(x) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            conversion::mask_open(
                ring_at(x, w).expose(),
                &material.edabits.r.expose()[offset..offset + w],
                &mut ring_tail,
            );
            offset += w;
        }
        ring::extend_le_bytes(&mut payload, &ring_tail);
        drop(ring_tail);

        // Mask: the binary section. The ANDs' operands are packed densely
        // (plane after plane, gate after gate) against the layer's triples.
        let mut bit_words = Vec::with_capacity(2 * and_words + inject_words);
        for operand in [0, 1] {
            let t = &material.bit_triples;
            let mask = if operand == 0 { &t.a } else { &t.b };
            let mut packed = Packed::with_capacity(64 * and_words);
            for &id in &layer.ands {
                let GateOp::And(x, y) = gates[id].op else { unreachable!() };
                packed.push(&bits_at(if operand == 0 { x } else { y }, gates[id].width()));
            }
            let mut words = packed.words().to_vec();
            words.resize(and_words, 0);
            boolean::mask_into(&words, mask.words(), &mut bit_words);
            zeroize::Zeroize::zeroize(&mut words);
        }
        for &id in &layer.injects {
            let GateOp::Inject(b, _) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            let at = dabit_offsets[&id];
            let mut e = bits_at(b, w).into_owned();
            e.xor_assign(&material.dabits.bits.slice(at..at + w));
            bit_words.extend_from_slice(e.words());
        }
        ring::extend_le_bytes(&mut payload, &bit_words);
        drop(bit_words);
        debug_assert_eq!(payload.len(), message_len);

        // Open: one round.
        let payload = Arc::new(payload);
        let received = self.exchange(step, self.to_every_peer(payload.clone())).await?;
        for peer in self.peers() {
            let msg = &received[peer];
            if msg.len() != message_len {
                return Err(self.protocol_error(
                    peer,
                    step,
                    format!("expected {} opened values, got {} bytes", message_len / 8, msg.len()),
                ));
            }
            let theirs = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
            if theirs != material.tag.0 {
                return Err(self.protocol_error(
                    peer,
                    step,
                    format!(
                        "preprocessing material mismatch (ours {}, theirs {}); refusing to use it",
                        material.tag,
                        MaterialTag(theirs)
                    ),
                ));
            }
        }
        let parts: Vec<&[u8]> = std::iter::once(payload.as_slice())
            .chain(self.peers().map(|p| received[p].as_slice()))
            .map(|m| &m[8..])
            .collect();

        let mut done: Vec<(GateId, Value)> = Vec::new();
        // Finish the Beaver products: z = c + d*b + e*a (+ d*e), over c.
        let d_parts: Vec<&[u8]> = parts.iter().map(|m| &m[..8 * triples]).collect();
        let e_parts: Vec<&[u8]> = parts.iter().map(|m| &m[8 * triples..16 * triples]).collect();
        let t = &mut material.triples;
        beaver::combine_opened_in_place(&d_parts, &e_parts, t.a.expose(), t.b.expose(), t.c.expose_mut(), first);
        if let ([id], []) = (&layer.muls[..], &secret_injections[..]) {
            // One gate takes the whole vector: hand it over, no copy.
            done.push((*id, Value::Secret(Share::new(std::mem::take(t.c.expose_mut())))));
        } else {
            let mut offset = 0;
            for &id in &layer.muls {
                let w = gates[id].width();
                done.push((id, Value::Secret(Share::new(t.c.expose()[offset..offset + w].to_vec()))));
                offset += w;
            }
        }

        // Open the tail of the ring section and the binary section.
        let mut tail = vec![0u64; div_count + open_count];
        for m in &parts {
            ring::add_le_bytes(&mut tail, &m[16 * triples..8 * ring_len]);
        }
        let bit_len = 2 * and_words + inject_words;
        let mut opened_bits = vec![0u64; bit_len];
        for m in &parts {
            for (o, chunk) in opened_bits.iter_mut().zip(m[8 * ring_len..].chunks_exact(8)) {
                *o ^= u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            }
        }

        // Finish the divisions.
        let mut c = &tail[..div_count];
        for ((division, nodes), pairs) in layer.divs.iter().zip(&material.div_pairs) {
            let mut offset = 0;
            for &id in nodes {
                let w = gates[id].width();
                let r = offset..offset + w;
                let (msb, q) = (&pairs.msb.expose()[r.clone()], &pairs.q.expose()[r.clone()]);
                if division.corrected() {
                    let first_round = division.finish_first(&c[..w], msb, q, &pairs.g.expose()[r], first);
                    self.pending.insert(id, first_round);
                } else {
                    done.push((id, Value::Secret(division.finish(&c[..w], msb, q, first))));
                }
                c = &c[w..];
                offset += w;
            }
            if division.divisor == CORRECTION_DIVISOR {
                for &id in &layer.corrections {
                    let w = gates[id].width();
                    let r = offset..offset + w;
                    let t = division.finish(&c[..w], &pairs.msb.expose()[r.clone()], &pairs.q.expose()[r], first);
                    let (mut y, _) = self.pending.remove(&id).expect("the first round ran in the layer before");
                    Division::correct(&mut y, t.expose(), first);
                    done.push((id, Value::Secret(y)));
                    c = &c[w..];
                    offset += w;
                }
            }
        }

        // Finish the masked openings: `c` is public; the edaBit's bits wait
        // for the gate that reads them.
        let mut c = &tail[div_count..];
        let mut offset = 0;
        for &id in &layer.opens {
            let w = gates[id].width();
            done.push((id, Value::Public(c[..w].to_vec())));
            self.mask_bits.insert(id, material.edabits.bits.slice(offset..offset + w));
            c = &c[w..];
            offset += w;
        }

        // Finish the ANDs: z = c ^ d&b ^ e&a (^ d&e), over c.
        let (d_bits, rest) = opened_bits.split_at(and_words);
        let (e_bits, inject_e) = rest.split_at(and_words);
        let bt = &mut material.bit_triples;
        let mut z = bt.c.words().to_vec();
        boolean::combine(d_bits, e_bits, bt.a.words(), bt.b.words(), &mut z, first);
        let mut offset = 0;
        for &id in &layer.ands {
            let Kind::Bits(width) = gates[id].kind else { unreachable!("an AND of bundles") };
            let len = gates[id].width();
            done.push((id, Value::SecretBits(Packed::unpack(&z, offset, width, len))));
            offset += width * len;
        }
        zeroize::Zeroize::zeroize(&mut z);

        // Finish the injections: b·x = e·x + (1 - 2e)·s·x.
        let mut e_at = inject_e;
        let mut sx_offset = layer.muls.iter().map(|id| gates[*id].width()).sum::<usize>();
        for &id in &layer.injects {
            let GateOp::Inject(_, x) = gates[id].op else { unreachable!() };
            let w = gates[id].width();
            let words = words_for(w);
            let e = &e_at[..words];
            let out = if gates[x].secret {
                let mut sx = material.triples.c.expose()[sx_offset..sx_offset + w].to_vec();
                conversion::inject_secret(e, ring_at(x, w).expose(), &mut sx);
                sx_offset += w;
                sx
            } else {
                let public = match values[x].as_ref().expect("operand ready") {
                    Value::Public(p) => broadcast_ring(p, w),
                    _ => unreachable!("a public operand"),
                };
                let at = dabit_offsets[&id];
                conversion::inject_public(e, &public, &material.dabits.arith.expose()[at..at + w], first)
            };
            done.push((id, Value::Secret(Share::new(out))));
            e_at = &e_at[words..];
        }

        for (id, value) in done {
            values[id] = Some(value);
        }

        // Large message buffers go back to the transport's pool (zeroed
        // there) instead of to the allocator: the next large message reuses
        // their pages. The payload is reused only if no send holds it still.
        drop(parts);
        for msg in received {
            self.mesh.recycle(msg);
        }
        if let Ok(payload) = Arc::try_unwrap(payload) {
            self.mesh.recycle(payload);
        }
        Ok(())
    }

    /// Step 4: send each output's shares to its recipients only (words of
    /// XOR shares for a bool output).
    async fn deliver_outputs(
        &mut self,
        instance: &Instance,
        values: &mut [Option<Value>],
    ) -> Result<Vec<OutputValue>, JobError> {
        let mut messages = vec![Vec::new(); self.n];
        for output in &self.circuit.outputs {
            let words = match &values[instance.node_gate[output.value]] {
                Some(Value::Secret(share)) => share.expose(),
                Some(Value::SecretBits(bits)) => bits.words(),
                _ => continue,
            };
            for &r in output.recipients.iter().filter(|r| **r != self.me) {
                messages[r].extend_from_slice(&ring::to_le_bytes(words));
            }
        }
        let received = self.exchange(Step::Output, Self::per_peer(messages)).await?;
        let mut offsets = vec![0usize; self.n];
        let mut outputs = Vec::with_capacity(self.circuit.outputs.len());
        for output in &self.circuit.outputs {
            let is_recipient = output.recipients.contains(&self.me);
            let gate = instance.gate_of(output.value);
            let width = gate.width();
            let value = match &values[instance.node_gate[output.value]] {
                _ if !is_recipient => None,
                Some(Value::Public(v)) => Some(Secret::new(v.clone())),
                Some(Value::PublicBits(b)) => Some(Secret::new(bools_of(b))),
                Some(Value::Secret(_)) | Some(Value::SecretBits(_)) => {
                    let (mine, xor) = match &values[instance.node_gate[output.value]] {
                        Some(Value::Secret(share)) => (share.expose().to_vec(), false),
                        Some(Value::SecretBits(bits)) => (bits.words().to_vec(), true),
                        _ => unreachable!(),
                    };
                    let mut sum = mine;
                    for peer in self.peers() {
                        let msg = &received[peer];
                        let range = offsets[peer]..offsets[peer] + 8 * sum.len();
                        let theirs = msg.get(range).and_then(ring::from_le_bytes).ok_or_else(|| {
                            self.protocol_error(
                                peer,
                                Step::Output,
                                format!("output message too short for `{}`", output.name),
                            )
                        })?;
                        if xor {
                            sum.iter_mut().zip(&theirs).for_each(|(a, b)| *a ^= b);
                        } else {
                            ring::add_assign(&mut sum, &theirs);
                        }
                        offsets[peer] += 8 * sum.len();
                    }
                    if xor {
                        let bits = Bits::from_words(1, width, sum).expect("one plane of the output's width");
                        Some(Secret::new(bools_of(&bits)))
                    } else {
                        Some(Secret::new(sum))
                    }
                }
                None => unreachable!("outputs are evaluated"),
            };
            outputs.push(OutputValue {
                name: output.name.clone(),
                elem: output.elem,
                is_vector: gate.len.is_some(),
                value,
            });
        }
        for peer in self.peers() {
            if offsets[peer] != received[peer].len() {
                return Err(self.protocol_error(
                    peer,
                    Step::Output,
                    "sent output shares this party is not entitled to",
                ));
            }
        }
        Ok(outputs)
    }
}

/// A ring value as `width` elements (a scalar repeated).
fn broadcast_ring(v: &[u64], width: usize) -> Vec<u64> {
    if v.len() == width { v.to_vec() } else { vec![v[0]; width] }
}

/// A bundle over `width` elements (a one-element bundle repeated).
fn broadcast_bits(b: &Bits, width: usize) -> Cow<'_, Bits> {
    if b.len() == width { Cow::Borrowed(b) } else { Cow::Owned(b.repeat(width)) }
}

/// A one-plane bundle as ring elements 0 and 1.
fn bools_of(b: &Bits) -> Vec<u64> {
    (0..b.len()).map(|i| u64::from(b.get(0, i))).collect()
}

/// The words of `PRG(seed)` as a one-plane bundle of `len` elements: an
/// XOR share of a bool input.
fn bits_from_seed(seed: &Seed, len: usize) -> Bits {
    let words = crate::prg::Prg::new(seed).next_vec(words_for(len));
    Bits::from_words(1, len, words).expect("one plane of words")
}

/// Check a layer's binary material against the plan: exactly the planned
/// amount of each kind.
fn check_binary_material(
    demand: &crate::preprocessing::Demand,
    material: &crate::preprocessing::LayerMaterial,
) -> Result<(), PreprocessingError> {
    let t = &material.bit_triples;
    let (e, d) = (&material.edabits, &material.dabits);
    let words = demand.bit_triple_words;
    let bits_ok = [&t.a, &t.b, &t.c].iter().all(|b| b.width() == 1 && b.words().len() == words)
        || (words == 0 && t.a.is_empty() && t.b.is_empty() && t.c.is_empty());
    let eda_ok =
        e.r.len() == demand.edabits && e.bits.len() == demand.edabits && (demand.edabits == 0 || e.bits.width() == 64);
    let da_ok =
        d.arith.len() == demand.dabits && d.bits.len() == demand.dabits && (demand.dabits == 0 || d.bits.width() == 1);
    if bits_ok && eda_ok && da_ok {
        Ok(())
    } else {
        Err(PreprocessingError::Mismatch(format!(
            "binary material does not match the plan ({} bit-triple words, {} edaBits, {} daBits planned; {} words, {} \
             edaBits, {} daBits provided)",
            words,
            demand.edabits,
            demand.dabits,
            t.a.words().len(),
            e.r.len(),
            d.arith.len()
        )))
    }
}
