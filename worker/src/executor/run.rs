//! One party's execution of a job over the mesh.

use super::plan::{InputLengths, Instance, PlanError, Quotients};
use crate::fixed::{self, EncodeError, FixedPoint};
use crate::preprocessing::{MaterialPlan, MaterialSource, MaterialTag, PreprocessingError};
use crate::prg::Seed;
use crate::program::ir::{Circuit, ElemType, Op, PartyIndex, ValueId};
use crate::protocol::beaver;
use crate::protocol::division::{CORRECTION_DIVISOR, Division};
use crate::ring;
use crate::sharing::{self, Secret, Share};
use crate::transport::{Mesh, Step, TransportError};
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

/// A node's value at this party.
enum Value {
    Public(Vec<u64>),
    Secret(Share),
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
        let mut values: Vec<Option<Value>> = (0..circuit.nodes.len()).map(|_| None).collect();
        let span = info_span!("input", inputs = inputs.0.len());
        job.share_inputs(&instance, inputs, &mut values).instrument(span).await?;

        for layer in 0..instance.depth() {
            let l = &instance.layers[layer];
            let span = info_span!(
                "online.layer",
                layer = layer + 1,
                multiplications = l.muls.len(),
                divisions = l.divs.iter().map(|(_, nodes)| nodes.len()).sum::<usize>(),
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
    pending: BTreeMap<ValueId, (Share, Share)>,
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
                    "the party applied a different program, party list, protocol or preprocessing mode (consent digest differs); no input was shared",
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
    /// input per receiving party).
    async fn share_inputs(
        &mut self,
        instance: &Instance,
        inputs: &OwnInputs,
        values: &mut [Option<Value>],
    ) -> Result<(), JobError> {
        let input_nodes: Vec<(ValueId, usize, PartyIndex)> = self
            .circuit
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(id, node)| match node.op {
                Op::Input { input, party } => Some((id, input, party)),
                _ => None,
            })
            .collect();
        let mut messages = vec![Vec::new(); self.n];
        for (id, input, party) in &input_nodes {
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
            values[*id] = Some(Value::Secret(sharing::share_with_seeds(secret, &seeds)));
        }
        let received = self.exchange(Step::Input, Self::per_peer(messages)).await?;
        for peer in self.peers() {
            let owned: Vec<ValueId> = input_nodes.iter().filter(|(_, _, p)| *p == peer).map(|(id, _, _)| *id).collect();
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
                values[*id] = Some(Value::Secret(sharing::share_from_seed(&seed, instance.width(*id))));
            }
        }
        Ok(())
    }

    /// Evaluate every local node at `depth` (its operands are all ready).
    fn evaluate_local(&self, instance: &Instance, depth: usize, values: &mut [Option<Value>]) -> Result<(), JobError> {
        for (id, node) in self.circuit.nodes.iter().enumerate() {
            if instance.depth[id] != depth || values[id].is_some() {
                continue;
            }
            if let Some(public) = &instance.public[id] {
                values[id] = Some(Value::Public(public.clone()));
                continue;
            }
            let value = self.local_op(instance, id, &node.op, values);
            values[id] = Some(Value::Secret(value));
        }
        Ok(())
    }

    /// A secret-valued local operation on this party's shares.
    fn local_op(&self, instance: &Instance, id: ValueId, op: &Op, values: &[Option<Value>]) -> Share {
        let first = self.me == 0;
        let width = instance.width(id);
        let get = |v: &ValueId| values[*v].as_ref().expect("operands are evaluated before their users");
        // Operands as this party's share of a `width`-element value. Copies
        // are `Share`s, so they are wiped when dropped.
        let expand = |v: &ValueId| -> Share {
            let (elems, public) = match get(v) {
                Value::Public(p) => (p.as_slice(), true),
                Value::Secret(s) => (s.expose(), false),
            };
            // A public value enters a share as itself at party 0 and as
            // zero elsewhere, so that the shares still sum correctly.
            if public && !first {
                return Share::zeros(width);
            }
            Share::new(if elems.len() == width { elems.to_vec() } else { vec![elems[0]; width] })
        };
        match op {
            Op::Add(a, b) => {
                let mut x = expand(a);
                ring::add_assign(x.expose_mut(), expand(b).expose());
                x
            }
            Op::Sub(a, b) => {
                let mut x = expand(a);
                ring::sub_assign(x.expose_mut(), expand(b).expose());
                x
            }
            Op::Neg(a) => {
                let mut x = expand(a);
                ring::neg_assign(x.expose_mut());
                x
            }
            Op::Mul(a, b) => {
                // Exactly one operand is public (secret-by-secret is interactive).
                let (secret, public) = match (get(a), get(b)) {
                    (Value::Secret(_), Value::Public(p)) => (a, p),
                    (Value::Public(p), Value::Secret(_)) => (b, p),
                    _ => unreachable!("local multiplication has one public operand"),
                };
                let mut x = expand(secret);
                if public.len() == 1 {
                    ring::scale_assign(x.expose_mut(), public[0]);
                } else {
                    ring::mul_assign(x.expose_mut(), public);
                }
                x
            }
            Op::Sum(a) => match get(a) {
                Value::Secret(s) => Share::new(vec![ring::sum(s.expose())]),
                Value::Public(_) => unreachable!("the sum of a public vector is public"),
            },
            Op::Concat(parts) => {
                let mut out = Share::new(Vec::with_capacity(width));
                for p in parts {
                    let elems = out.expose_mut();
                    match get(p) {
                        Value::Secret(s) => elems.extend_from_slice(s.expose()),
                        Value::Public(v) if first => elems.extend_from_slice(v),
                        Value::Public(v) => elems.extend(std::iter::repeat_n(0, v.len())),
                    }
                }
                out
            }
            _ => {
                unreachable!("not a secret local operation")
            }
        }
    }

    /// Step 3, one layer: mask, open everything in one round, finish.
    ///
    /// The opening message is `[tag][d for every mul][e for every mul][c
    /// for every division]`, little-endian `u64`s. The masked values are
    /// written straight into that byte payload, which is shared by the
    /// sends to every peer; the opened values are summed from the payloads
    /// block by block and combined at once, and each product is written
    /// over the triple's `c` share it replaces.
    async fn run_layer<S: MaterialSource>(
        &mut self,
        instance: &Instance,
        index: usize,
        source: &mut S,
        values: &mut [Option<Value>],
    ) -> Result<(), JobError> {
        let layer = &instance.layers[index];
        let step = Step::Layer(index as u32 + 1);
        let first = self.me == 0;
        let mut material = source
            .next_layer(index, &instance.plan.layers[index])
            .await
            .map_err(|source| preprocessing_failed(step, source))?;
        check_div_material(layer, &instance.plan.layers[index].div_pairs, &material.div_pairs)
            .map_err(|source| JobError::Preprocessing { step, source })?;
        let triples = material.triples.a.len();
        let div_count: usize = material.div_pairs.iter().map(|p| p.r.len()).sum();
        let message_len = 8 * (1 + 2 * triples + div_count);
        let span = tracing::Span::current();
        span.record("material.triples", triples);
        span.record("material.div_pairs", div_count);
        span.record("opened", 2 * triples + div_count);
        for peer in self.peers() {
            self.mesh.expect_message(peer, step, message_len);
        }

        // Mask.
        let secret_at = |v: ValueId, width: usize| -> std::borrow::Cow<'_, Share> {
            match values[v].as_ref().expect("operand ready") {
                Value::Secret(s) if s.len() == width => std::borrow::Cow::Borrowed(s),
                // A scalar broadcast over a vector: a copy, wiped on drop.
                Value::Secret(s) => std::borrow::Cow::Owned(Share::new(vec![s.expose()[0]; width])),
                Value::Public(_) => unreachable!("interactive operands are secret"),
            }
        };
        let mut payload = self.mesh.take_buffer(message_len);
        payload.extend_from_slice(&material.tag.0.to_le_bytes());
        for operand in [0, 1] {
            let (mut offset, t) = (0, &material.triples);
            for &id in &layer.muls {
                let Op::Mul(x, y) = self.circuit.nodes[id].op else { unreachable!() };
                let w = instance.width(id);
                let (v, mask) = if operand == 0 { (x, &t.a) } else { (y, &t.b) };
                beaver::mask_into(secret_at(v, w).expose(), &mask.expose()[offset..offset + w], &mut payload);
                offset += w;
            }
        }
        let mut div_masked = Vec::with_capacity(div_count);
        for ((division, nodes), pairs) in layer.divs.iter().zip(&material.div_pairs) {
            let mut offset = 0;
            for &id in nodes {
                let Op::DivPublic(x, _) = self.circuit.nodes[id].op else { unreachable!() };
                let w = instance.width(id);
                division.mask(secret_at(x, w).expose(), &pairs.r.expose()[offset..offset + w], first, &mut div_masked);
                offset += w;
            }
            if division.divisor == CORRECTION_DIVISOR {
                for id in &layer.corrections {
                    let w = instance.width(*id);
                    let (_, v) = self.pending.get(id).expect("the first round ran in the layer before");
                    division.mask(v.expose(), &pairs.r.expose()[offset..offset + w], first, &mut div_masked);
                    offset += w;
                }
            }
        }
        ring::extend_le_bytes(&mut payload, &div_masked);
        debug_assert_eq!(payload.len(), message_len);

        // Open: one round, everyone's masked shares summed.
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

        // Finish the multiplications: z = c + d*b + e*a (+ d*e), over c.
        let d_parts: Vec<&[u8]> = parts.iter().map(|m| &m[..8 * triples]).collect();
        let e_parts: Vec<&[u8]> = parts.iter().map(|m| &m[8 * triples..16 * triples]).collect();
        let t = &mut material.triples;
        beaver::combine_opened_in_place(&d_parts, &e_parts, t.a.expose(), t.b.expose(), t.c.expose_mut(), first);
        if let [id] = layer.muls[..] {
            // One node takes the whole vector: hand it over, no copy.
            values[id] = Some(Value::Secret(Share::new(std::mem::take(t.c.expose_mut()))));
        } else {
            let mut offset = 0;
            for &id in &layer.muls {
                let w = instance.width(id);
                values[id] = Some(Value::Secret(Share::new(t.c.expose()[offset..offset + w].to_vec())));
                offset += w;
            }
        }

        // Finish the divisions.
        let mut c = vec![0u64; div_count];
        for m in &parts {
            ring::add_le_bytes(&mut c, &m[16 * triples..]);
        }
        let mut c = c.as_slice();
        for ((division, nodes), pairs) in layer.divs.iter().zip(&material.div_pairs) {
            let mut offset = 0;
            for &id in nodes {
                let w = instance.width(id);
                let r = offset..offset + w;
                let (msb, q) = (&pairs.msb.expose()[r.clone()], &pairs.q.expose()[r.clone()]);
                if division.corrected() {
                    let first_round = division.finish_first(&c[..w], msb, q, &pairs.g.expose()[r], first);
                    self.pending.insert(id, first_round);
                } else {
                    values[id] = Some(Value::Secret(division.finish(&c[..w], msb, q, first)));
                }
                c = &c[w..];
                offset += w;
            }
            if division.divisor == CORRECTION_DIVISOR {
                for &id in &layer.corrections {
                    let w = instance.width(id);
                    let r = offset..offset + w;
                    let t = division.finish(&c[..w], &pairs.msb.expose()[r.clone()], &pairs.q.expose()[r], first);
                    let (mut y, _) = self.pending.remove(&id).expect("the first round ran in the layer before");
                    Division::correct(&mut y, t.expose(), first);
                    values[id] = Some(Value::Secret(y));
                    c = &c[w..];
                    offset += w;
                }
            }
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

    /// Step 4: send each output's shares to its recipients only.
    async fn deliver_outputs(
        &mut self,
        instance: &Instance,
        values: &mut [Option<Value>],
    ) -> Result<Vec<OutputValue>, JobError> {
        let mut messages = vec![Vec::new(); self.n];
        for output in &self.circuit.outputs {
            if let Some(Value::Secret(share)) = &values[output.value] {
                for &r in output.recipients.iter().filter(|r| **r != self.me) {
                    messages[r].extend_from_slice(&ring::to_le_bytes(share.expose()));
                }
            }
        }
        let received = self.exchange(Step::Output, Self::per_peer(messages)).await?;
        let mut offsets = vec![0usize; self.n];
        let mut outputs = Vec::with_capacity(self.circuit.outputs.len());
        for output in &self.circuit.outputs {
            let is_recipient = output.recipients.contains(&self.me);
            let width = instance.width(output.value);
            let value = match &values[output.value] {
                _ if !is_recipient => None,
                Some(Value::Public(v)) => Some(Secret::new(v.clone())),
                Some(Value::Secret(share)) => {
                    let mut sum = share.expose().to_vec();
                    for peer in self.peers() {
                        let msg = &received[peer];
                        let range = offsets[peer]..offsets[peer] + 8 * width;
                        let theirs = msg.get(range).and_then(ring::from_le_bytes).ok_or_else(|| {
                            self.protocol_error(
                                peer,
                                Step::Output,
                                format!("output message too short for `{}`", output.name),
                            )
                        })?;
                        ring::add_assign(&mut sum, &theirs);
                        offsets[peer] += 8 * width;
                    }
                    Some(Secret::new(sum))
                }
                None => unreachable!("outputs are evaluated"),
            };
            outputs.push(OutputValue {
                name: output.name.clone(),
                elem: output.elem,
                is_vector: instance.shapes[output.value].is_some(),
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
