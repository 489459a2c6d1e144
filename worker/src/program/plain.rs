//! Plaintext reference semantics of the IR.
//!
//! [`evaluate`] runs a [`Circuit`] on cleartext ring values. It is the
//! oracle the MPC executor is tested against, and what the compiler tests
//! use to check lowering. Semantics match the executor's, except that
//! `DivPublic` here is the *exact* floor division of the signed dividend
//! ([`crate::ring::floor_div`]); the secure protocol may be off by one.
//! Secret values wrap in the ring (the range is the program's contract);
//! public values are checked: a public addition, subtraction,
//! multiplication, negation or sum whose result leaves `|v| < 2^62` is an
//! error at its position ([`EvalErrorKind::PublicOutOfRange`]), as in the
//! executor.
//!
//! Bools are the ring elements 0 and 1. `Less(a, b)` is the top bit of
//! `a - b` (mod 2^64): the signed order whenever the difference does not
//! wrap, i.e. for operands with |v| < 2^62. `Min`, `Max`, `ArgMin` and
//! `ArgMax` use that same order, the arg-functions return the first index
//! of the extreme, and all four fail on an empty vector
//! ([`EvalErrorKind::EmptyVector`]). Comparisons of public values are
//! public.
//!
//! ```
//! use cohort_worker::program::{compile, plain::{evaluate, PlainInputs}};
//! let parties = vec!["a".to_string(), "b".to_string()];
//! let c = compile("input x: int[] from each\noutput s = sum(aggregate(x))", &parties).unwrap();
//! let inputs = PlainInputs::new().set(0, 0, vec![1, 2]).set(0, 1, vec![10, 20]);
//! assert_eq!(evaluate(&c, &inputs).unwrap(), vec![vec![33]]);
//! ```

use std::collections::HashMap;

use super::ir::{Circuit, ElemType, Func, InputShape, Op, PartyIndex, Span};
use crate::fixed::SAFE_BOUND;
use crate::ring::{floor_div, from_signed, to_signed};

/// Input values per (input index, party): the ring-encoded values each owner
/// provides. A scalar input is a vector of length 1.
#[derive(Clone, Debug, Default)]
pub struct PlainInputs {
    values: HashMap<(usize, PartyIndex), Vec<u64>>,
}

impl PlainInputs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder form of [`PlainInputs::insert`].
    pub fn set(mut self, input: usize, party: PartyIndex, values: Vec<u64>) -> Self {
        self.insert(input, party, values);
        self
    }

    /// Party `party`'s values for input `input` (an index into
    /// [`Circuit::inputs`]); replaces earlier values.
    pub fn insert(&mut self, input: usize, party: PartyIndex, values: Vec<u64>) {
        self.values.insert((input, party), values);
    }

    pub fn get(&self, input: usize, party: PartyIndex) -> Option<&[u64]> {
        self.values.get(&(input, party)).map(Vec::as_slice)
    }
}

/// Why evaluation failed, and at which source position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{span}: {kind}")]
pub struct EvalError {
    pub span: Span,
    pub kind: EvalErrorKind,
}

/// The kinds of evaluation failure. Messages carry only public facts
/// (lengths, party indices, public divisors), never secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalErrorKind {
    #[error("no value for input `{name}` from party {party}")]
    MissingInput { input: usize, party: PartyIndex, name: String },
    #[error("scalar input `{name}` from party {party} must have exactly one value, found {len}")]
    NotAScalar { input: usize, party: PartyIndex, name: String, len: usize },
    #[error("elementwise operands have different lengths ({left} and {right})")]
    LengthMismatch { left: usize, right: usize },
    #[error("the divisor {divisor} is not positive")]
    NonPositiveDivisor { divisor: i64 },
    #[error("the divisor must be a scalar")]
    DivisorNotScalar,
    #[error("invalid circuit: {0}")]
    InvalidCircuit(String),
    #[error(
        "the {0} of public values leaves the range (its encoded value must lie strictly between -2^62 and 2^62; see \"Range\" in docs/language.md)"
    )]
    PublicOutOfRange(&'static str),
    #[error("`{op}` of an empty vector")]
    EmptyVector { op: &'static str },
    #[error("bool input `{name}` from party {party} must be 0 (false) or 1 (true)")]
    NotABool { input: usize, party: PartyIndex, name: String },
    #[error("elements {start}..{start}+{count} are not within a vector of {len}")]
    SliceOutOfRange { start: i64, count: i64, len: usize },
    #[error("`{op}` needs a public scalar {what}")]
    NotPublicScalar { op: &'static str, what: &'static str },
    #[error(
        "a secret intermediate left the range at this operation (`range_check`; see \"Range checks\" in docs/language.md)"
    )]
    OutOfRange,
}

/// A value during evaluation: elements and whether it is a scalar.
#[derive(Clone, Debug)]
struct Value {
    data: Vec<u64>,
    scalar: bool,
}

impl Value {
    fn scalar(v: u64) -> Self {
        Value { data: vec![v], scalar: true }
    }
}

/// `f` is `None` where a public result leaves the range.
fn elementwise(
    a: &Value,
    b: &Value,
    span: Span,
    what: &'static str,
    f: impl Fn(u64, u64) -> Option<u64>,
) -> Result<Value, EvalError> {
    let data: Option<Vec<u64>> = match (a.scalar, b.scalar) {
        (true, true) => vec![f(a.data[0], b.data[0])].into_iter().collect(),
        (true, false) => b.data.iter().map(|&y| f(a.data[0], y)).collect(),
        (false, true) => a.data.iter().map(|&x| f(x, b.data[0])).collect(),
        (false, false) => {
            if a.data.len() != b.data.len() {
                return Err(EvalError {
                    span,
                    kind: EvalErrorKind::LengthMismatch { left: a.data.len(), right: b.data.len() },
                });
            }
            a.data.iter().zip(&b.data).map(|(&x, &y)| f(x, y)).collect()
        }
    };
    let data = data.ok_or(EvalError { span, kind: EvalErrorKind::PublicOutOfRange(what) })?;
    Ok(Value { data, scalar: a.scalar && b.scalar })
}

/// `[a < b]` as the ring's 0/1: the top bit of `a - b` (see [`Op::Less`]).
pub fn less(a: u64, b: u64) -> u64 {
    a.wrapping_sub(b) >> 63
}

/// Elementwise `c ? a : b`, broadcasting scalars; every vector operand
/// must have the same length.
fn select(c: &Value, a: &Value, b: &Value, span: Span) -> Result<Value, EvalError> {
    let vectors: Vec<usize> = [c, a, b].iter().filter(|v| !v.scalar).map(|v| v.data.len()).collect();
    if let Some(&first) = vectors.first()
        && let Some(&other) = vectors.iter().find(|&&l| l != first)
    {
        return Err(EvalError { span, kind: EvalErrorKind::LengthMismatch { left: first, right: other } });
    }
    let n = vectors.first().copied().unwrap_or(1);
    let at = |v: &Value, i: usize| if v.scalar { v.data[0] } else { v.data[i] };
    let data = (0..n).map(|i| if at(c, i) & 1 == 1 { at(a, i) } else { at(b, i) }).collect();
    Ok(Value { data, scalar: vectors.is_empty() })
}

/// The index of the first extreme element under [`less`]: the smallest
/// when `largest` is false. `None` for an empty vector.
fn arg_extreme(data: &[u64], largest: bool) -> Option<usize> {
    let mut best = 0;
    for (i, &x) in data.iter().enumerate().skip(1) {
        let better = if largest { less(data[best], x) } else { less(x, data[best]) };
        if better == 1 {
            best = i;
        }
    }
    (!data.is_empty()).then_some(best)
}

/// `value` reordered by the signed order of `key`, ascending or
/// descending, stable ([`Op::SortBy`]). `key` and `value` have one length.
pub fn sort_by(key: &[u64], value: &[u64], descending: bool) -> Vec<u64> {
    let mut order: Vec<usize> = (0..key.len()).collect();
    if descending {
        order.sort_by_key(|&i| std::cmp::Reverse(to_signed(key[i])));
    } else {
        order.sort_by_key(|&i| to_signed(key[i]));
    }
    order.into_iter().map(|i| value[i]).collect()
}

/// The rank of every element of `v` ([`Op::Rank`]): `rank[i]` is the
/// position of element `i` in the stable order [`sort_by`] sorts by.
pub fn rank(v: &[u64], descending: bool) -> Vec<u64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    if descending {
        order.sort_by_key(|&i| std::cmp::Reverse(to_signed(v[i])));
    } else {
        order.sort_by_key(|&i| to_signed(v[i]));
    }
    let mut rank = vec![0u64; v.len()];
    for (position, i) in order.into_iter().enumerate() {
        rank[i] = position as u64;
    }
    rank
}

/// Elements `start .. start + count` of `v` ([`Op::Slice`]), `None` when
/// they are not all within it.
pub fn slice(v: &[u64], start: i64, count: i64) -> Option<Vec<u64>> {
    let (start, count) = (usize::try_from(start).ok()?, usize::try_from(count).ok()?);
    v.get(start..start.checked_add(count)?).map(<[u64]>::to_vec)
}

/// The `q`-quantile of `v` ([`Op::Quantile`]): `q` in units of
/// `2^-q_bits`, the interpolation floored to the elements' grid. `None` for
/// an empty vector.
pub fn quantile(v: &[u64], q: u64, q_bits: u32) -> Option<u64> {
    let sorted = sort_by(v, v, false);
    let n = sorted.len() as u128;
    let last = n.checked_sub(1)?;
    let h = last * u128::from(q);
    let lo = ((h >> q_bits) as usize).min(last as usize);
    let frac = if lo == last as usize { 0 } else { (h & ((1u128 << q_bits) - 1)) as i128 };
    let low = i128::from(to_signed(sorted[lo]));
    if frac == 0 {
        return Some(sorted[lo]);
    }
    let high = i128::from(to_signed(sorted[lo + 1]));
    let step = ((high - low) * frac).div_euclid(1i128 << q_bits);
    Some((low + step) as u64)
}

/// The number of distinct keys present in both `a` and `b`
/// ([`Op::JoinCount`]).
pub fn join_count(a: &[u64], b: &[u64]) -> u64 {
    let left: std::collections::HashSet<u64> = a.iter().copied().collect();
    let both: std::collections::HashSet<u64> = b.iter().copied().filter(|k| left.contains(k)).collect();
    both.len() as u64
}

/// The sum of `values[j]` over the rows `j` of `b` whose key occurs in `a`
/// ([`Op::JoinSum`]), wrapping in the ring like every secret sum.
pub fn join_sum(a: &[u64], b: &[u64], values: &[u64]) -> u64 {
    let left: std::collections::HashSet<u64> = a.iter().copied().collect();
    b.iter().zip(values).filter(|(k, _)| left.contains(k)).fold(0u64, |acc, (_, v)| acc.wrapping_add(*v))
}

/// `a / b` of fixed-point encodings ([`Op::DivSecret`]): the exact
/// quotient floored to the grid; 0 when `b` is 0.
pub fn div_secret(a: u64, b: u64, frac_bits: u32) -> u64 {
    let (a, b) = (i128::from(to_signed(a)), i128::from(to_signed(b)));
    if b == 0 {
        return 0;
    }
    // Floor for either sign of b (div_euclid alone rounds up for b < 0).
    let q = if b < 0 { (-(a << frac_bits)).div_euclid(-b) } else { (a << frac_bits).div_euclid(b) };
    // Results are clamped to the range |v| < 2^62.
    let limit = i128::from(SAFE_BOUND) - 1;
    q.clamp(-limit, limit) as i64 as u64
}

/// A fixed-point function of an encoding ([`Op::Func`]): the exact value
/// rounded to the nearest grid point, clamped to the range; `sqrt` and
/// `log` of a non-positive value are 0.
pub fn func(f: Func, x: u64, frac_bits: u32) -> u64 {
    let scale = (frac_bits as f64).exp2();
    let mut x = to_signed(x);
    if f == Func::Exp {
        // `exp` saturates where the circuit clamps its argument: at the
        // largest grid point with x·log2(e) <= 62 - f - 2^-22 (exactly
        // `executor::nonlinear::exp_limits`: ln 2 at 2^-60), so that the
        // result stays below 2^(62-f) by a margin the circuit's error cannot
        // cross.
        let f = i128::from(frac_bits);
        let hi_y = ((62 - f) << 60) - (1 << 38);
        x = x.min(((hi_y * 799_144_290_325_165_979) >> (120 - f)) as i64);
    }
    let real = x as f64 / scale;
    let y = match f {
        Func::Sqrt if real <= 0.0 => 0.0,
        Func::Log if real <= 0.0 => 0.0,
        Func::Sqrt => real.sqrt(),
        Func::Log => real.ln(),
        Func::Exp => real.exp(),
        Func::Sigmoid => 1.0 / (1.0 + (-real).exp()),
    };
    // Clamped to the range |v| < 2^62 in integers (2^62 - 1 as an f64 is
    // 2^62 itself); `as` saturates.
    let limit = (SAFE_BOUND - 1) as i64;
    from_signed(((y * scale).round() as i64).clamp(-limit, limit))
}

/// [`Op::RunEnds`] of a sorted vector.
pub fn run_ends(keys: &[u64]) -> Vec<u64> {
    (0..keys.len()).map(|i| u64::from(i + 1 == keys.len() || keys[i + 1] != keys[i])).collect()
}

/// [`Op::RunTotals`]: running sums (or counts, with no values) within
/// runs of equal keys, wrapping in the ring.
pub fn run_totals(keys: &[u64], values: Option<&[u64]>) -> Vec<u64> {
    let mut out = Vec::with_capacity(keys.len());
    let mut acc = 0u64;
    for i in 0..keys.len() {
        if i == 0 || keys[i] != keys[i - 1] {
            acc = 0;
        }
        acc = acc.wrapping_add(values.map_or(1, |v| v[i]));
        out.push(acc);
    }
    out
}

/// Whether a ring value lies in `[-2^62, 2^62)` ([`Op::InRange`]).
pub fn in_range(x: u64) -> bool {
    let v = to_signed(x);
    (-(SAFE_BOUND as i64)..SAFE_BOUND as i64).contains(&v)
}

/// The significant bits of a signed value: of `v`, or of `-v - 1` when
/// negative (so `|v| <= 2^bits`).
pub fn significant_bits(x: u64) -> u32 {
    let v = to_signed(x);
    let m = if v < 0 { !v } else { v };
    64 - m.leading_zeros()
}

/// Whether the product of `a` and `b` fits the range ([`Op::ProductFits`]):
/// exactly when one of them is public, by the bit-length rule when both
/// are secret.
pub fn product_fits(a: u64, b: u64, both_secret: bool) -> bool {
    if both_secret {
        significant_bits(a) + significant_bits(b) <= 61
    } else {
        (i128::from(to_signed(a)) * i128::from(to_signed(b))).unsigned_abs() < u128::from(SAFE_BOUND)
    }
}

/// Ring arithmetic for a secret result (wrapping), checked arithmetic in
/// the safe range for a public one.
fn arith(
    public: bool,
    wrapping: fn(u64, u64) -> u64,
    checked: fn(i64, i64) -> Option<i64>,
) -> impl Fn(u64, u64) -> Option<u64> {
    move |x, y| {
        if public {
            checked(to_signed(x), to_signed(y)).filter(|r| r.unsigned_abs() < SAFE_BOUND).map(from_signed)
        } else {
            Some(wrapping(x, y))
        }
    }
}

/// Evaluate `circuit` on cleartext `inputs`: one ring vector per output, in
/// [`Circuit::outputs`] order (a scalar output is a vector of length 1).
pub fn evaluate(circuit: &Circuit, inputs: &PlainInputs) -> Result<Vec<Vec<u64>>, EvalError> {
    let mut values: Vec<Value> = Vec::with_capacity(circuit.nodes.len());
    let secret = super::secret_nodes(circuit);
    for (i, node) in circuit.nodes.iter().enumerate() {
        let span = node.span;
        let public = !secret[i];
        let out_of_range = |what| EvalError { span, kind: EvalErrorKind::PublicOutOfRange(what) };
        let invalid = |msg: String| EvalError { span, kind: EvalErrorKind::InvalidCircuit(msg) };
        if let Some(&bad) = node.op.operands().iter().find(|&&a| a >= i) {
            return Err(invalid(format!("node {i} uses node {bad}, which does not precede it")));
        }
        let v = |id: usize| &values[id];
        let value = match &node.op {
            Op::Input { input, party } => {
                let decl = circuit
                    .inputs
                    .get(*input)
                    .ok_or_else(|| invalid(format!("node {i} reads unknown input {input}")))?;
                let data = inputs.get(*input, *party).ok_or_else(|| EvalError {
                    span,
                    kind: EvalErrorKind::MissingInput { input: *input, party: *party, name: decl.name.clone() },
                })?;
                let scalar = decl.shape == InputShape::Scalar;
                if scalar && data.len() != 1 {
                    return Err(EvalError {
                        span,
                        kind: EvalErrorKind::NotAScalar {
                            input: *input,
                            party: *party,
                            name: decl.name.clone(),
                            len: data.len(),
                        },
                    });
                }
                if decl.elem == ElemType::Bool && data.iter().any(|&b| b > 1) {
                    return Err(EvalError {
                        span,
                        kind: EvalErrorKind::NotABool { input: *input, party: *party, name: decl.name.clone() },
                    });
                }
                Value { data: data.to_vec(), scalar }
            }
            Op::Const(c) => Value::scalar(*c),
            Op::Len(a) => Value::scalar(if v(*a).scalar { 1 } else { v(*a).data.len() as u64 }),
            Op::Add(a, b) => {
                elementwise(v(*a), v(*b), span, "addition", arith(public, u64::wrapping_add, i64::checked_add))?
            }
            Op::Sub(a, b) => {
                elementwise(v(*a), v(*b), span, "subtraction", arith(public, u64::wrapping_sub, i64::checked_sub))?
            }
            Op::Mul(a, b) => {
                elementwise(v(*a), v(*b), span, "multiplication", arith(public, u64::wrapping_mul, i64::checked_mul))?
            }
            Op::Neg(a) => {
                let negate = arith(public, |_, x| x.wrapping_neg(), |_, x| x.checked_neg());
                let data = v(*a).data.iter().map(|&x| negate(0, x)).collect::<Option<_>>();
                Value { data: data.ok_or_else(|| out_of_range("negation"))?, scalar: v(*a).scalar }
            }
            Op::DivPublic(a, b) => {
                let d = v(*b);
                if !d.scalar {
                    return Err(EvalError { span, kind: EvalErrorKind::DivisorNotScalar });
                }
                let divisor = to_signed(d.data[0]);
                if divisor <= 0 {
                    return Err(EvalError { span, kind: EvalErrorKind::NonPositiveDivisor { divisor } });
                }
                let x = v(*a);
                Value { data: x.data.iter().map(|&e| floor_div(e, divisor as u64)).collect(), scalar: x.scalar }
            }
            Op::Sum(a) if public => {
                let total: i128 = v(*a).data.iter().map(|&x| i128::from(to_signed(x))).sum();
                match i64::try_from(total) {
                    Ok(t) if t.unsigned_abs() < SAFE_BOUND => Value::scalar(from_signed(t)),
                    _ => return Err(out_of_range("sum")),
                }
            }
            Op::Sum(a) => Value::scalar(crate::ring::sum(&v(*a).data)),
            Op::Concat(parts) => {
                let data = parts.iter().flat_map(|&p| v(p).data.iter().copied()).collect();
                Value { data, scalar: false }
            }
            Op::Less(a, b) => elementwise(v(*a), v(*b), span, "comparison", |x, y| Some(less(x, y)))?,
            Op::Equal(a, b) => elementwise(v(*a), v(*b), span, "comparison", |x, y| Some(u64::from(x == y)))?,
            Op::Bool(b) => Value::scalar(u64::from(*b)),
            Op::Not(a) => Value { data: v(*a).data.iter().map(|&x| x ^ 1).collect(), scalar: v(*a).scalar },
            Op::And(a, b) => elementwise(v(*a), v(*b), span, "and", |x, y| Some(x & y))?,
            Op::Or(a, b) => elementwise(v(*a), v(*b), span, "or", |x, y| Some(x | y))?,
            Op::Xor(a, b) => elementwise(v(*a), v(*b), span, "xor", |x, y| Some(x ^ y))?,
            Op::Select(c, a, b) => select(v(*c), v(*a), v(*b), span)?,
            Op::ToRing(a) => v(*a).clone(),
            Op::Min(a) | Op::Max(a) | Op::ArgMin(a) | Op::ArgMax(a) => {
                let (op, largest, index) = match &node.op {
                    Op::Min(_) => ("min", false, false),
                    Op::Max(_) => ("max", true, false),
                    Op::ArgMin(_) => ("argmin", false, true),
                    _ => ("argmax", true, true),
                };
                let data = &v(*a).data;
                let best =
                    arg_extreme(data, largest).ok_or(EvalError { span, kind: EvalErrorKind::EmptyVector { op } })?;
                Value::scalar(if index { best as u64 } else { data[best] })
            }
            Op::SortBy { key, value, descending } => {
                let (k, x) = (v(*key), v(*value));
                if k.data.len() != x.data.len() {
                    return Err(EvalError {
                        span,
                        kind: EvalErrorKind::LengthMismatch { left: k.data.len(), right: x.data.len() },
                    });
                }
                Value { data: sort_by(&k.data, &x.data, *descending), scalar: false }
            }
            Op::Rank { v: a, descending } => Value { data: rank(&v(*a).data, *descending), scalar: false },
            Op::Slice { v: a, start, count } => {
                let bound = |id: usize, what| match v(id) {
                    Value { data, scalar: true } if !secret[id] => Ok(to_signed(data[0])),
                    _ => Err(EvalError { span, kind: EvalErrorKind::NotPublicScalar { op: "slice", what } }),
                };
                let (start, count) = (bound(*start, "start")?, bound(*count, "count")?);
                let len = v(*a).data.len();
                let data = slice(&v(*a).data, start, count)
                    .ok_or(EvalError { span, kind: EvalErrorKind::SliceOutOfRange { start, count, len } })?;
                Value { data, scalar: false }
            }
            Op::Quantile { v: a, q } => {
                let op = "quantile";
                Value::scalar(
                    quantile(&v(*a).data, *q, super::ir::QUANTILE_BITS)
                        .ok_or(EvalError { span, kind: EvalErrorKind::EmptyVector { op } })?,
                )
            }
            Op::JoinCount(a, b) => Value::scalar(join_count(&v(*a).data, &v(*b).data)),
            Op::JoinSum(a, b, c) => {
                let (keys, values) = (&v(*b).data, &v(*c).data);
                if keys.len() != values.len() {
                    return Err(EvalError {
                        span,
                        kind: EvalErrorKind::LengthMismatch { left: keys.len(), right: values.len() },
                    });
                }
                Value::scalar(join_sum(&v(*a).data, keys, values))
            }
            Op::DivSecret(a, b) => {
                let f = circuit.frac_bits;
                elementwise(v(*a), v(*b), span, "division", |x, y| Some(div_secret(x, y, f)))?
            }
            Op::Func(f, a) => {
                let x = v(*a);
                Value { data: x.data.iter().map(|&e| func(*f, e, circuit.frac_bits)).collect(), scalar: x.scalar }
            }
            Op::RunEnds(a) => Value { data: run_ends(&v(*a).data), scalar: false },
            Op::RunTotals { keys, values } => {
                let k = &v(*keys).data;
                if let Some(x) = values
                    && v(*x).data.len() != k.len()
                {
                    return Err(EvalError {
                        span,
                        kind: EvalErrorKind::LengthMismatch { left: k.len(), right: v(*x).data.len() },
                    });
                }
                Value { data: run_totals(k, values.map(|x| v(x).data.as_slice())), scalar: false }
            }
            Op::InRange(a) => {
                let x = v(*a);
                Value { data: x.data.iter().map(|&e| u64::from(in_range(e))).collect(), scalar: x.scalar }
            }
            Op::ProductFits(a, b) => {
                let both = secret[*a] && secret[*b];
                elementwise(v(*a), v(*b), span, "range check", |x, y| Some(u64::from(product_fits(x, y, both))))?
            }
        };
        values.push(value);
    }
    // Range checks come before any output, in program order, as the
    // executor reveals them.
    for check in &circuit.checks {
        match values.get(check.value) {
            Some(Value { data, .. }) if data.iter().all(|&ok| ok == 1) => {}
            Some(_) => return Err(EvalError { span: check.span, kind: EvalErrorKind::OutOfRange }),
            None => {
                return Err(EvalError {
                    span: check.span,
                    kind: EvalErrorKind::InvalidCircuit(format!("a range check names unknown node {}", check.value)),
                });
            }
        }
    }
    circuit
        .outputs
        .iter()
        .map(|o| {
            values.get(o.value).map(|v| v.data.clone()).ok_or_else(|| EvalError {
                span: o.span,
                kind: EvalErrorKind::InvalidCircuit(format!("output `{}` names unknown node {}", o.name, o.value)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::ir::{ElemType, InputDecl, Node, OutputDecl, Owners};
    use crate::ring::from_signed;

    fn circuit(nodes: Vec<Op>, input_shape: InputShape) -> Circuit {
        Circuit {
            frac_bits: 16,
            parties: vec!["a".into(), "b".into()],
            inputs: vec![InputDecl {
                name: "x".into(),
                elem: ElemType::Int,
                shape: input_shape,
                owners: Owners::Each,
                span: Span { line: 1, column: 7 },
            }],
            nodes: nodes
                .into_iter()
                .enumerate()
                .map(|(i, op)| Node { op, span: Span { line: i as u32 + 1, column: 1 } })
                .collect(),
            outputs: vec![OutputDecl {
                name: "o".into(),
                value: 0,
                elem: ElemType::Int,
                recipients: vec![0, 1],
                span: Span::default(),
            }],
            checks: Vec::new(),
        }
    }

    #[test]
    fn ops_and_broadcasting() {
        let mut c = circuit(
            vec![
                Op::Input { input: 0, party: 0 },
                Op::Const(from_signed(-7)),
                Op::Mul(0, 1),
                Op::Const(2),
                Op::DivPublic(2, 3),
                Op::Concat(vec![4, 1]),
                Op::Len(5),
                Op::Sum(5),
                Op::Neg(5),
                Op::Sub(5, 8),
            ],
            InputShape::Vector,
        );
        for v in [4, 5, 6, 7, 9] {
            c.outputs.push(OutputDecl { value: v, ..c.outputs[0].clone() });
        }
        let out = evaluate(&c, &PlainInputs::new().set(0, 0, vec![1, 2, 0])).unwrap();
        let signed = |v: &Vec<u64>| v.iter().map(|&x| to_signed(x)).collect::<Vec<_>>();
        assert_eq!(signed(&out[1]), vec![-4, -7, 0]);
        assert_eq!(signed(&out[2]), vec![-4, -7, 0, -7]);
        assert_eq!(out[3], vec![4]);
        assert_eq!(signed(&out[4]), vec![-18]);
        assert_eq!(signed(&out[5]), vec![-8, -14, 0, -14]);
    }

    #[test]
    fn errors_carry_spans() {
        let c = circuit(vec![Op::Input { input: 0, party: 1 }], InputShape::Vector);
        let e = evaluate(&c, &PlainInputs::new().set(0, 0, vec![1])).unwrap_err();
        assert_eq!(e.span, Span { line: 1, column: 1 });
        assert!(matches!(e.kind, EvalErrorKind::MissingInput { input: 0, party: 1, .. }));

        let c = circuit(vec![Op::Input { input: 0, party: 0 }], InputShape::Scalar);
        let e = evaluate(&c, &PlainInputs::new().set(0, 0, vec![1, 2])).unwrap_err();
        assert!(matches!(e.kind, EvalErrorKind::NotAScalar { len: 2, .. }));

        let c = circuit(
            vec![Op::Input { input: 0, party: 0 }, Op::Input { input: 0, party: 1 }, Op::Add(0, 1)],
            InputShape::Vector,
        );
        let e = evaluate(&c, &PlainInputs::new().set(0, 0, vec![1, 2]).set(0, 1, vec![1])).unwrap_err();
        assert_eq!(e.span.line, 3);
        assert_eq!(e.kind, EvalErrorKind::LengthMismatch { left: 2, right: 1 });
        assert_eq!(e.to_string(), "line 3, column 1: elementwise operands have different lengths (2 and 1)");

        for d in [0, from_signed(-2)] {
            let c = circuit(vec![Op::Const(5), Op::Const(d), Op::DivPublic(0, 1)], InputShape::Vector);
            let e = evaluate(&c, &PlainInputs::new()).unwrap_err();
            assert!(matches!(e.kind, EvalErrorKind::NonPositiveDivisor { .. }));
        }

        let c = circuit(vec![Op::Add(0, 1)], InputShape::Vector);
        assert!(matches!(evaluate(&c, &PlainInputs::new()).unwrap_err().kind, EvalErrorKind::InvalidCircuit(_)));
    }

    fn bool_circuit(nodes: Vec<Op>, outputs: &[usize]) -> Circuit {
        let mut c = circuit(nodes, InputShape::Vector);
        c.outputs = outputs.iter().map(|&value| OutputDecl { value, ..c.outputs[0].clone() }).collect();
        c
    }

    #[test]
    fn comparison_family() {
        let m = |v: i64| from_signed(v);
        let c = bool_circuit(
            vec![
                Op::Input { input: 0, party: 0 }, // 0: x
                Op::Const(m(2)),                  // 1
                Op::Less(0, 1),                   // 2: x < 2
                Op::Equal(0, 1),                  // 3: x == 2
                Op::Not(2),                       // 4
                Op::And(2, 3),                    // 5
                Op::Or(2, 3),                     // 6
                Op::Xor(4, 3),                    // 7
                Op::Bool(true),                   // 8
                Op::Select(2, 0, 1),              // 9: min(x, 2)
                Op::ToRing(4),                    // 10
                Op::Min(0),                       // 11
                Op::Max(0),                       // 12
                Op::ArgMin(0),                    // 13
                Op::ArgMax(0),                    // 14
                Op::Concat(vec![2, 8]),           // 15: a bool vector
                Op::Select(8, 1, 0),              // 16: public condition, scalar branch
            ],
            &[2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16],
        );
        let x = [5, 2, -7, 2, -7, 9].map(m).to_vec();
        let out = evaluate(&c, &PlainInputs::new().set(0, 0, x)).unwrap();
        assert_eq!(out[0], vec![0, 0, 1, 0, 1, 0], "less");
        assert_eq!(out[1], vec![0, 1, 0, 1, 0, 0], "equal");
        assert_eq!(out[2], vec![1, 1, 0, 1, 0, 1], "not");
        assert_eq!(out[3], vec![0; 6], "and");
        assert_eq!(out[4], vec![0, 1, 1, 1, 1, 0], "or");
        assert_eq!(out[5], vec![1, 0, 0, 0, 0, 1], "xor");
        assert_eq!(out[6], [2, 2, -7, 2, -7, 2].map(m).to_vec(), "select");
        assert_eq!(out[7], vec![1, 1, 0, 1, 0, 1], "to ring");
        assert_eq!(out[8], vec![m(-7)], "min");
        assert_eq!(out[9], vec![m(9)], "max");
        assert_eq!(out[10], vec![2], "argmin: the first of the tied minima");
        assert_eq!(out[11], vec![5], "argmax");
        assert_eq!(out[12], vec![0, 0, 1, 0, 1, 0, 1], "concat of bools");
        assert_eq!(out[13], vec![m(2); 6], "select broadcasts a scalar branch over the vector");
    }

    #[test]
    fn extremes_of_an_empty_vector_fail_at_their_node() {
        for (op, name) in
            [(Op::Min(0), "min"), (Op::Max(0), "max"), (Op::ArgMin(0), "argmin"), (Op::ArgMax(0), "argmax")]
        {
            let c = bool_circuit(vec![Op::Input { input: 0, party: 0 }, op], &[1]);
            let e = evaluate(&c, &PlainInputs::new().set(0, 0, vec![])).unwrap_err();
            assert_eq!(e.span, Span { line: 2, column: 1 });
            assert_eq!(e.kind, EvalErrorKind::EmptyVector { op: name });
            assert_eq!(e.to_string(), format!("line 2, column 1: `{name}` of an empty vector"));
        }
    }

    #[test]
    fn bool_inputs_must_be_zero_or_one() {
        let mut c = bool_circuit(vec![Op::Input { input: 0, party: 0 }, Op::Not(0)], &[1]);
        c.inputs[0].elem = ElemType::Bool;
        assert_eq!(evaluate(&c, &PlainInputs::new().set(0, 0, vec![0, 1])).unwrap(), vec![vec![1, 0]]);
        let e = evaluate(&c, &PlainInputs::new().set(0, 0, vec![0, 2])).unwrap_err();
        assert!(matches!(e.kind, EvalErrorKind::NotABool { input: 0, party: 0, .. }), "{e}");
    }

    #[test]
    fn select_checks_lengths() {
        let c = bool_circuit(
            vec![
                Op::Input { input: 0, party: 0 },
                Op::Input { input: 0, party: 1 },
                Op::Less(0, 0),
                Op::Select(2, 0, 1),
            ],
            &[3],
        );
        let e = evaluate(&c, &PlainInputs::new().set(0, 0, vec![1, 2]).set(0, 1, vec![3])).unwrap_err();
        assert_eq!(e.kind, EvalErrorKind::LengthMismatch { left: 2, right: 1 });
    }

    proptest::proptest! {
        /// `less` is the signed order for operands with |v| < 2^62, and
        /// argmin/argmax pick the first extreme.
        #[test]
        fn less_is_the_signed_order_in_range(
            a in -(1i64 << 62) + 1..(1i64 << 62),
            b in -(1i64 << 62) + 1..(1i64 << 62),
            v in proptest::collection::vec(-3i64..3, 1..20),
        ) {
            proptest::prop_assert_eq!(less(from_signed(a), from_signed(b)), u64::from(a < b));
            proptest::prop_assert_eq!(less(from_signed(a), from_signed(a)), 0);
            let enc: Vec<u64> = v.iter().map(|&x| from_signed(x)).collect();
            let min = *v.iter().min().unwrap();
            let max = *v.iter().max().unwrap();
            proptest::prop_assert_eq!(arg_extreme(&enc, false), v.iter().position(|&x| x == min));
            proptest::prop_assert_eq!(arg_extreme(&enc, true), v.iter().position(|&x| x == max));
        }
    }
}
