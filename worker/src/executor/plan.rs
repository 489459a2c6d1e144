//! Instantiating a circuit: shapes, visibility, layers and the material plan.
//!
//! Everything here is a pure function of public information — the circuit
//! and the input lengths every party declares — so every party (and the
//! producer of preprocessing material) derives the same [`Instance`].
//!
//! Layering: a node is *interactive* when it needs an opening (a
//! [`Op::Mul`] of two secrets, a [`Op::DivPublic`] of a secret). Its layer is
//! one more than the deepest layer among its operands; a local node's layer
//! is the deepest among its operands. All interactive nodes of one layer
//! share one communication round, so a job takes as many online rounds as
//! the circuit's interactive depth, whatever the vector lengths.

use crate::fixed::SAFE_BOUND;
use crate::preprocessing::{Demand, MaterialPlan};
use crate::program::ir::{Circuit, InputShape, Op, PartyIndex, Span, ValueId};
use crate::protocol::division::{Division, MAX_DIVISOR};
use crate::ring;
use std::collections::BTreeMap;

/// An error in instantiating a circuit with concrete lengths, at a source
/// position. Mentions only public facts (lengths, divisors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{span}: {reason}")]
pub struct PlanError {
    pub span: Span,
    pub reason: String,
}

/// The declared length of every input value: `lengths[input][party]` is
/// `Some(len)` for each party that owns input `input`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputLengths(pub Vec<Vec<Option<usize>>>);

/// The interactive nodes of one layer, in node order, and the material
/// they consume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layer {
    /// Secret-by-secret multiplications.
    pub muls: Vec<ValueId>,
    /// Divisions of secrets, grouped by divisor (ascending, as in
    /// [`Demand::div_pairs`]); node order within a group.
    pub divs: Vec<(Division, Vec<ValueId>)>,
}

/// A circuit together with everything its public shape determines.
#[derive(Clone, Debug)]
pub struct Instance {
    /// Per node: `None` for a scalar, `Some(len)` for a vector.
    pub shapes: Vec<Option<usize>>,
    /// Per node: whether the value is secret.
    pub secret: Vec<bool>,
    /// Per node: the value, for public nodes.
    pub public: Vec<Option<Vec<u64>>>,
    /// Per node: its layer (0 for nodes that need no interaction).
    pub depth: Vec<usize>,
    /// Layers 1..=D (index 0 is layer 1).
    pub layers: Vec<Layer>,
    /// What the layers consume, in the same order.
    pub plan: MaterialPlan,
}

impl Instance {
    /// The number of elements a node's value holds (1 for a scalar).
    pub fn width(&self, node: ValueId) -> usize {
        self.shapes[node].unwrap_or(1)
    }

    /// The number of online layers (the circuit's interactive depth).
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Derive the instance of `circuit` for the given input lengths.
    pub fn new(circuit: &Circuit, lengths: &InputLengths) -> Result<Instance, PlanError> {
        let n = circuit.nodes.len();
        let mut shapes: Vec<Option<usize>> = Vec::with_capacity(n);
        let mut secret = Vec::with_capacity(n);
        let mut public: Vec<Option<Vec<u64>>> = Vec::with_capacity(n);
        let mut depth = Vec::with_capacity(n);
        let mut divisors: BTreeMap<ValueId, Division> = BTreeMap::new();

        for (id, node) in circuit.nodes.iter().enumerate() {
            let err = |reason: String| PlanError { span: node.span, reason };
            for operand in node.op.operands() {
                if operand >= id {
                    return Err(err(format!("internal: node {id} uses node {operand}, which does not precede it")));
                }
            }
            let elementwise = |a: ValueId, b: ValueId, what: &str| -> Result<Option<usize>, PlanError> {
                match (shapes[a], shapes[b]) {
                    (Some(x), Some(y)) if x != y => {
                        Err(err(format!("{what} of vectors of different lengths ({x} and {y})")))
                    }
                    (Some(x), _) | (_, Some(x)) => Ok(Some(x)),
                    (None, None) => Ok(None),
                }
            };
            let (shape, is_secret, interactive) = match &node.op {
                Op::Input { input, party } => {
                    let decl =
                        circuit.inputs.get(*input).ok_or_else(|| err(format!("internal: unknown input {input}")))?;
                    let len = lengths
                        .0
                        .get(*input)
                        .and_then(|per_party| per_party.get(*party))
                        .copied()
                        .flatten()
                        .ok_or_else(|| {
                            err(format!(
                                "no length declared for input `{}` of party {}",
                                decl.name,
                                party_name(circuit, *party)
                            ))
                        })?;
                    let shape = match decl.shape {
                        InputShape::Scalar if len != 1 => {
                            return Err(err(format!(
                                "input `{}` is a scalar but party {} declared {len} values",
                                decl.name,
                                party_name(circuit, *party)
                            )));
                        }
                        InputShape::Scalar => None,
                        InputShape::Vector => Some(len),
                    };
                    (shape, true, false)
                }
                Op::Const(_) | Op::Len(_) => (None, false, false),
                Op::Add(a, b) => (elementwise(*a, *b, "addition")?, secret[*a] || secret[*b], false),
                Op::Sub(a, b) => (elementwise(*a, *b, "subtraction")?, secret[*a] || secret[*b], false),
                Op::Neg(a) => (shapes[*a], secret[*a], false),
                Op::Mul(a, b) => {
                    let both = secret[*a] && secret[*b];
                    (elementwise(*a, *b, "multiplication")?, secret[*a] || secret[*b], both)
                }
                Op::DivPublic(a, b) => {
                    if secret[*b] {
                        return Err(err("the divisor of a division must be public".into()));
                    }
                    let d = match public[*b].as_deref() {
                        Some([d]) if shapes[*b].is_none() => ring::to_signed(*d),
                        _ => return Err(err("the divisor of a division must be a public scalar".into())),
                    };
                    if d <= 0 || d as u64 > MAX_DIVISOR {
                        return Err(err(format!("division by {d}: the divisor must be between 1 and 2^62")));
                    }
                    let division = Division::new(d as u64).expect("checked range");
                    if secret[*a] {
                        divisors.insert(id, division);
                    }
                    (shapes[*a], secret[*a], secret[*a])
                }
                Op::Sum(_) => (None, node.op.operands().iter().any(|o| secret[*o]), false),
                Op::Concat(parts) => {
                    let len = parts.iter().map(|p| shapes[*p].unwrap_or(1)).sum();
                    (Some(len), parts.iter().any(|p| secret[*p]), false)
                }
            };
            let operand_depth = node.op.operands().iter().map(|o| depth[*o]).max().unwrap_or(0);
            depth.push(operand_depth + usize::from(interactive));
            shapes.push(shape);
            secret.push(is_secret);
            let value =
                if is_secret { None } else { Some(evaluate_public(&node.op, &public, &shapes, shape).map_err(err)?) };
            public.push(value);
        }

        for output in &circuit.outputs {
            if output.value >= n {
                return Err(PlanError {
                    span: output.span,
                    reason: format!("internal: output `{}` names an unknown node", output.name),
                });
            }
        }

        let max_depth = depth.iter().copied().max().unwrap_or(0);
        let mut layers = vec![Layer::default(); max_depth];
        let mut grouped: Vec<BTreeMap<u64, (Division, Vec<ValueId>)>> = vec![BTreeMap::new(); max_depth];
        for (id, node) in circuit.nodes.iter().enumerate() {
            match node.op {
                Op::Mul(a, b) if secret[a] && secret[b] => layers[depth[id] - 1].muls.push(id),
                Op::DivPublic(..) if secret[id] => {
                    let division = divisors[&id];
                    grouped[depth[id] - 1].entry(division.divisor).or_insert_with(|| (division, Vec::new())).1.push(id);
                }
                _ => {}
            }
        }
        let width = |id: &ValueId| shapes[*id].unwrap_or(1);
        let mut plan = MaterialPlan::default();
        for (layer, groups) in layers.iter_mut().zip(grouped) {
            layer.divs = groups.into_values().collect();
            plan.layers.push(Demand {
                triples: layer.muls.iter().map(width).sum(),
                div_pairs: layer.divs.iter().map(|(d, nodes)| (d.divisor, nodes.iter().map(width).sum())).collect(),
            });
        }
        Ok(Instance { shapes, secret, public, depth, layers, plan })
    }
}

fn party_name(circuit: &Circuit, party: PartyIndex) -> &str {
    circuit.parties.get(party).map(String::as_str).unwrap_or("?")
}

/// Evaluate a node all of whose operands are public. Arithmetic is checked
/// against the safe range `|v| < 2^62` (the ring elements' signed values)
/// instead of wrapping: a public value out of range is an error at the
/// operator's position, as a folded constant is at compile time.
fn evaluate_public(
    op: &Op,
    public: &[Option<Vec<u64>>],
    shapes: &[Option<usize>],
    shape: Option<usize>,
) -> Result<Vec<u64>, String> {
    let value = |id: &ValueId| public[*id].as_deref().expect("operand of a public node is public");
    let width = shape.unwrap_or(1);
    let at = |v: &[u64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
    let what = match op {
        Op::Add(..) => "addition",
        Op::Sub(..) => "subtraction",
        Op::Mul(..) => "multiplication",
        Op::Neg(_) => "negation",
        _ => "sum",
    };
    let checked = |x: Option<i64>| match x {
        Some(v) if v.unsigned_abs() < SAFE_BOUND => Ok(ring::from_signed(v)),
        _ => Err(format!(
            "the {what} of public values leaves the range (its encoded value must lie strictly between -2^62 and \
             2^62; see \"Range\" in docs/language.md)"
        )),
    };
    let zip = |a: &ValueId, b: &ValueId, f: fn(i64, i64) -> Option<i64>| -> Result<Vec<u64>, String> {
        let (a, b) = (value(a), value(b));
        (0..width).map(|i| checked(f(ring::to_signed(at(a, i)), ring::to_signed(at(b, i))))).collect()
    };
    Ok(match op {
        Op::Input { .. } => unreachable!("inputs are secret"),
        Op::Const(c) => vec![*c],
        Op::Len(a) => vec![shapes[*a].unwrap_or(1) as u64],
        Op::Add(a, b) => zip(a, b, i64::checked_add)?,
        Op::Sub(a, b) => zip(a, b, i64::checked_sub)?,
        Op::Mul(a, b) => zip(a, b, i64::checked_mul)?,
        Op::Neg(a) => value(a).iter().map(|x| checked(ring::to_signed(*x).checked_neg())).collect::<Result<_, _>>()?,
        Op::DivPublic(a, b) => {
            let d = value(b)[0];
            value(a).iter().map(|x| ring::floor_div(*x, d)).collect()
        }
        Op::Sum(a) => {
            // Exact in i128: 2^27 elements of at most 2^63 cannot overflow it.
            let total: i128 = value(a).iter().map(|x| i128::from(ring::to_signed(*x))).sum();
            vec![checked(i64::try_from(total).ok())?]
        }
        Op::Concat(parts) => parts.iter().flat_map(|p| value(p).iter().copied()).collect(),
    })
}
